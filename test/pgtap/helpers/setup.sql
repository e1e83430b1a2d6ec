-- helpers/setup.sql: functions shared by the pgTAP tests in test/pgtap/*.sql.
--
-- scripts/test.sh runs this file once, as the superuser, in the database
-- publish_tap (where pgtap and publish are installed), before pg_prove runs
-- the tests.  The tests run in autocommit: the publish worker sees a job only
-- once the transaction that queued it has committed.
--
--   test_helpers.wait_job(job_id, timeout)      waits for a job to end
--   test_helpers.wait_progress(job_id, p, timeout)
--                                               waits until a job reaches p%
--   test_helpers.wait_logs(job_id, n, timeout)  waits for a job's n-th log entry
--   test_helpers.worker_pid()                   this database's publish worker
--   test_helpers.wait_until(condition, timeout) waits until a SQL condition holds
--   test_helpers.wait_worker_blocked(timeout)   waits until a worker waits for a lock
--   test_helpers.make_project(slug, n_overlays, with_tiles, max_zoom)
--                                               a small valid project, v1 ready
--   test_helpers.make_version(project_id, n, n_overlays, with_tiles, max_zoom, status)
--                                               another version of it
--   test_helpers.tile_bytes(slug, version, z, x, y)
--                                               the content of a test tile
--   test_helpers.write_tiles(root, slug, version)
--                                               writes a version's tiles to disk
--   test_helpers.write_file(path, bytes) / overwrite_file_in_place(path, bytes)
--   test_helpers.remove_file(path)
--   test_helpers.file_exists(path) / read_json(path) / file_sha256(path)
--   test_helpers.list_files(dir)                every file under dir, relative
--   test_helpers.file_mode(path)                its permission bits, e.g. '644'
--   test_helpers.log_positions(logs, patterns) / in_order(positions)
--   test_helpers.log_lines(log) / requests(log, after, pattern)
--                                               a storage server's access log
--   test_helpers.http_get(url) / http_head(url)  an object on a storage server,
--                                               through the curl command
--   test_helpers.upload_tiles(env, slug, version) puts a version's build tiles
--                                               on env's target (publish._storage_put)
--   test_helpers.make_two_versions(slug, env)   a project with versions 1 and 2
--                                               ready, their tiles on env's target

\set ON_ERROR_STOP on
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS test_helpers CASCADE;
CREATE SCHEMA test_helpers;

-- ---------------------------------------------------------------------------
-- Waiting for the worker.  Each statement of a VOLATILE plpgsql function
-- takes a new snapshot, so the loop sees what the worker commits (also from
-- inside an open READ COMMITTED transaction).
-- ---------------------------------------------------------------------------

CREATE FUNCTION test_helpers.wait_job(job_id uuid, timeout interval DEFAULT '30 s')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	j publish.jobs;
BEGIN
	LOOP
		SELECT * INTO j FROM publish.jobs WHERE id = job_id;
		EXIT WHEN j.status IN ('completed', 'failed', 'cancelled')
		       OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN j;
END
$$;

-- Waits until the job's progress is at least min_progress, or it ended.
CREATE FUNCTION test_helpers.wait_progress(job_id uuid, min_progress int,
                                           timeout interval DEFAULT '30 s')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	j publish.jobs;
BEGIN
	LOOP
		SELECT * INTO j FROM publish.jobs WHERE id = job_id;
		EXIT WHEN j.progress >= min_progress
		       OR j.status IN ('completed', 'failed', 'cancelled')
		       OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN j;
END
$$;

-- Waits until the job has at least n log entries, or it ended.
CREATE FUNCTION test_helpers.wait_logs(job_id uuid, n int, timeout interval DEFAULT '30 s')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	j publish.jobs;
BEGIN
	LOOP
		SELECT * INTO j FROM publish.jobs WHERE id = job_id;
		EXIT WHEN jsonb_array_length(j.logs) >= n
		       OR j.status IN ('completed', 'failed', 'cancelled')
		       OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN j;
END
$$;

-- ---------------------------------------------------------------------------
-- Files on the database server (the worker writes as the server's user;
-- these run as the superuser that runs the tests).
-- ---------------------------------------------------------------------------

CREATE FUNCTION test_helpers.sh_quote(s text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT '''' || replace(s, '''', '''\''''') || '''' $$;

-- Writes bytes to path (creating its directory), byte for byte: the content
-- goes through COPY as one line of base64 that base64 -d decodes.  The file
-- is written beside its destination and renamed over it, as a tile builder
-- would, so an existing file is replaced by a new one (a new inode).
CREATE FUNCTION test_helpers.write_file(path text, content bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	dir text := regexp_replace(path, '/[^/]*$', '');
BEGIN
	EXECUTE format('COPY (SELECT %L) TO PROGRAM %L',
	               translate(encode(content, 'base64'), E'\n', ''),
	               format('mkdir -p %s && base64 -d > %s && mv -f %s %s',
	                      test_helpers.sh_quote(dir),
	                      test_helpers.sh_quote(path || '.tmp'),
	                      test_helpers.sh_quote(path || '.tmp'),
	                      test_helpers.sh_quote(path)));
END
$$;

-- Overwrites the existing file at path in place (same inode), as a careless
-- tool would.
CREATE FUNCTION test_helpers.overwrite_file_in_place(path text, content bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	EXECUTE format('COPY (SELECT %L) TO PROGRAM %L',
	               translate(encode(content, 'base64'), E'\n', ''),
	               format('base64 -d > %s', test_helpers.sh_quote(path)));
END
$$;

CREATE FUNCTION test_helpers.remove_file(path text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L',
	               format('cat > /dev/null; rm -f %s', test_helpers.sh_quote(path)));
END
$$;

CREATE FUNCTION test_helpers.file_exists(path text)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT coalesce((pg_stat_file(path, true)).isdir = false, false) $$;

-- Every regular file under dir, as paths relative to it.
CREATE FUNCTION test_helpers.list_files(dir text)
RETURNS SETOF text
LANGUAGE sql VOLATILE STRICT
AS $$
	WITH RECURSIVE walk(rel, isdir) AS (
		SELECT e, (pg_stat_file(dir || '/' || e)).isdir
		  FROM pg_ls_dir(dir) AS e
		UNION ALL
		SELECT w.rel || '/' || e, (pg_stat_file(dir || '/' || w.rel || '/' || e)).isdir
		  FROM walk w, LATERAL pg_ls_dir(dir || '/' || w.rel) AS e
		 WHERE w.isdir
	)
	SELECT rel FROM walk WHERE NOT isdir
$$;

-- The permission bits of path, in octal (stat -c %a), e.g. '644'.
CREATE TABLE test_helpers.command_output (line text);
CREATE FUNCTION test_helpers.file_mode(path text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
	mode text;
BEGIN
	DELETE FROM test_helpers.command_output;
	EXECUTE format('COPY test_helpers.command_output FROM PROGRAM %L',
	               format('stat -c %%a %s', test_helpers.sh_quote(path)));
	SELECT line INTO mode FROM test_helpers.command_output;
	RETURN mode;
END
$$;

-- A storage server's access log (:dav_log, :s3_log), line by line:
-- log_lines(log) loads it into test_helpers.access_log and counts its lines;
-- requests(log, after, last_pattern) gives the lines after line number
-- after, once one of them matches last_pattern (the S3 proxy writes its log
-- asynchronously), or after 10 s.
CREATE TABLE test_helpers.access_log (n bigint GENERATED ALWAYS AS IDENTITY, line text);
CREATE FUNCTION test_helpers.log_lines(log text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	TRUNCATE test_helpers.access_log RESTART IDENTITY;
	EXECUTE format('COPY test_helpers.access_log (line) FROM %L', log);
	RETURN (SELECT count(*) FROM test_helpers.access_log);
END $$;
CREATE FUNCTION test_helpers.requests(log text, after bigint, last_pattern text) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '10 s';
BEGIN
	LOOP
		PERFORM test_helpers.log_lines(log);
		EXIT WHEN EXISTS (SELECT 1 FROM test_helpers.access_log WHERE n > after AND line ~ last_pattern)
		       OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN QUERY SELECT line FROM test_helpers.access_log WHERE n > after ORDER BY n;
END $$;

CREATE FUNCTION test_helpers.read_json(path text)
RETURNS jsonb
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT convert_from(pg_read_binary_file(path), 'UTF8')::jsonb $$;

CREATE FUNCTION test_helpers.file_sha256(path text)
RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT encode(sha256(pg_read_binary_file(path)), 'hex') $$;

-- ---------------------------------------------------------------------------
-- Sample content
-- ---------------------------------------------------------------------------

-- A test tile: a real 256x256 PNG (the one demo/make_tiles.sh uses) followed
-- by a line naming the tile, so that every tile has its own checksum.
CREATE FUNCTION test_helpers.tile_bytes(slug text, version int, z int, x int, y int)
RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT
AS $$
	SELECT decode('89504e470d0a1a0a0000000d494844520000010000000100010300000066bc3a25'
	              '00000003504c5445f2efe9110a2f9b0000001f4944415478daedc1010d000000c2'
	              'a0f74f6d0e37a00000000000000000be0d2100000160e49d970000000049454e44'
	              'ae426082', 'hex')
	       || convert_to(format(E'%s v%s tile %s/%s/%s\n', slug, version, z, x, y), 'UTF8')
$$;

-- Adds version n to a project: two assets (with byte_size and sha256),
-- n_overlays overlays cycling through every overlay type (marker, label,
-- polyline, polygon, image; the image overlays use the "photo" asset) and,
-- with with_tiles, a built tileset of zooms 0..max_zoom with its manifest
-- (source_path builds/<slug>/v<n>/tiles; test_helpers.write_tiles writes the
-- files).  Returns the version's id.
CREATE FUNCTION test_helpers.make_version(project_id uuid, n int, n_overlays int DEFAULT 5,
                                          with_tiles boolean DEFAULT false,
                                          max_zoom int DEFAULT 1,
                                          status text DEFAULT 'ready')
RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	slug text;
	vid uuid;
	photo uuid;
	ts uuid;
BEGIN
	SELECT p.slug INTO STRICT slug FROM publish.projects p WHERE p.id = make_version.project_id;

	INSERT INTO publish.project_versions (project_id, version_number, status, notes)
	VALUES (make_version.project_id, n, make_version.status, format('test version %s', n))
	RETURNING id INTO vid;

	INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
	VALUES (vid, 'photo', 'image', format('assets/%s/v%s/photo.jpg', slug, n), 'image/jpeg', 12345,
	        encode(sha256(convert_to(format('%s v%s photo', slug, n), 'UTF8')), 'hex')),
	       (vid, 'icon', 'icon', format('assets/%s/v%s/icon.svg', slug, n), 'image/svg+xml', 321,
	        encode(sha256(convert_to(format('%s v%s icon', slug, n), 'UTF8')), 'hex'));
	SELECT a.id INTO STRICT photo FROM publish.assets a WHERE a.version_id = vid AND a.key = 'photo';

	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
	SELECT vid, format('ov-%s', to_char(i, 'FM000')), format('Overlay %s', i), t.type,
	       CASE t.type
	       WHEN 'marker' THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.40 + i * 0.001, 52.52))
	       WHEN 'label' THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.40, 52.52 + i * 0.001))
	       WHEN 'polyline' THEN '{"type":"LineString","coordinates":[[13.40,52.52],[13.41,52.521],[13.42,52.519]]}'::jsonb
	       ELSE '{"type":"Polygon","coordinates":[[[13.40,52.51],[13.41,52.51],[13.41,52.52],[13.40,52.52],[13.40,52.51]]]}'::jsonb
	       END,
	       jsonb_build_object('n', i, 'version', n),
	       CASE WHEN t.type = 'image' THEN photo END
	  FROM generate_series(1, n_overlays) AS i,
	       LATERAL (SELECT (ARRAY['marker', 'label', 'polyline', 'polygon', 'image'])[(i - 1) % 5 + 1] AS type) AS t;

	IF with_tiles THEN
		INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom, bounds, source_path, built_at)
		VALUES (vid, 'png', 256, 0, make_version.max_zoom, ARRAY[13.39, 52.51, 13.42, 52.53],
		        format('builds/%s/v%s/tiles', slug, n), now())
		RETURNING id INTO ts;

		INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
		SELECT ts, z, x, y, length(b), encode(sha256(b), 'hex')
		  FROM generate_series(0, make_version.max_zoom) AS z,
		       generate_series(0, (1 << z) - 1) AS x,
		       generate_series(0, (1 << z) - 1) AS y,
		       LATERAL (SELECT test_helpers.tile_bytes(slug, n, z, x, y) AS b) AS t;
	END IF;
	RETURN vid;
END
$$;

-- A new project "slug" whose version 1 is ready to publish; returns its id.
CREATE FUNCTION test_helpers.make_project(slug text, n_overlays int DEFAULT 5,
                                          with_tiles boolean DEFAULT false,
                                          max_zoom int DEFAULT 1)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	pid uuid;
BEGIN
	INSERT INTO publish.projects (slug, name, description)
	VALUES (slug, format('Test project %s', slug), 'made by test_helpers.make_project')
	RETURNING id INTO pid;
	PERFORM test_helpers.make_version(pid, 1, n_overlays, with_tiles, max_zoom);
	RETURN pid;
END
$$;

-- The tiles of a version's manifest: where each lies under the target's root
-- ({source_path}/z/x/y.{format}) and its bytes (tile_bytes).
CREATE FUNCTION test_helpers.manifest_tiles(slug text, version int)
RETURNS TABLE (path text, bytes bytea)
LANGUAGE sql STABLE
AS $$
	SELECT format('%s/%s/%s/%s.%s', s.source_path, tl.z, tl.x, tl.y, s.format),
	       test_helpers.tile_bytes(slug, version, tl.z, tl.x, tl.y)
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	  JOIN publish.tilesets s ON s.version_id = v.id
	  JOIN publish.tiles tl ON tl.tileset_id = s.id
	 WHERE p.slug = manifest_tiles.slug AND v.version_number = manifest_tiles.version
	 ORDER BY tl.z, tl.x, tl.y
$$;

-- Writes the tiles of a version's manifest under root (the directory of the
-- file:// target), at root/<source_path>/z/x/y.<format>, with the bytes
-- tile_bytes gives.  Returns how many it wrote.
CREATE FUNCTION test_helpers.write_tiles(root text, slug text, version int)
RETURNS int
LANGUAGE sql VOLATILE
AS $$
	SELECT count(*)::int
	  FROM (SELECT test_helpers.write_file(root || '/' || t.path, t.bytes)
	          FROM test_helpers.manifest_tiles(slug, version) AS t) AS written
$$;

-- ---------------------------------------------------------------------------
-- Logs
-- ---------------------------------------------------------------------------

-- For each pattern (case-insensitive regex), the 1-based position of the
-- first log entry whose message matches it, or NULL.
CREATE FUNCTION test_helpers.log_positions(logs jsonb, patterns text[])
RETURNS int[]
LANGUAGE sql IMMUTABLE STRICT
AS $$
	SELECT array_agg((SELECT min(e.ord)::int
	                    FROM jsonb_array_elements(logs) WITH ORDINALITY AS e(entry, ord)
	                   WHERE e.entry->>'message' ~* p.pattern)
	                 ORDER BY p.i)
	  FROM unnest(patterns) WITH ORDINALITY AS p(pattern, i)
$$;

-- Are all positions present and strictly increasing?
CREATE FUNCTION test_helpers.in_order(positions int[])
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT
AS $$
	SELECT coalesce(bool_and(p IS NOT NULL AND (prev IS NULL OR p > prev)), false)
	  FROM (SELECT p, lag(p) OVER (ORDER BY i) AS prev
	          FROM unnest(positions) WITH ORDINALITY AS u(p, i)) AS s
$$;

-- ---------------------------------------------------------------------------
-- The worker of this database
-- ---------------------------------------------------------------------------

-- The pid of this database's publish worker (NULL when none is running).
CREATE FUNCTION test_helpers.worker_pid()
RETURNS int
LANGUAGE sql VOLATILE
AS $$
	SELECT pid FROM pg_stat_activity
	 WHERE datname = current_database() AND application_name = 'publish worker'
	 ORDER BY backend_start DESC LIMIT 1
$$;

-- Waits until condition (a boolean SQL expression, evaluated afresh each
-- time, statistics snapshot cleared) is true; true if it was before the
-- timeout.
CREATE FUNCTION test_helpers.wait_until(condition text, timeout interval DEFAULT '10 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	ok boolean;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		EXECUTE 'SELECT (' || condition || ')' INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() >= deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END
$$;

-- Waits until this database's worker waits for a heavyweight lock (a table
-- or row lock that a test holds); true if it did before the timeout.
-- pg_locks is read live (pg_stat_activity would be a per-transaction
-- snapshot).
CREATE FUNCTION test_helpers.wait_worker_blocked(timeout interval DEFAULT '10 s')
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
	SELECT test_helpers.wait_until($c$EXISTS (SELECT 1 FROM pg_locks l
	                                  JOIN pg_stat_activity a ON a.pid = l.pid
	                                 WHERE a.datname = current_database()
	                                   AND a.application_name = 'publish worker' AND NOT l.granted)$c$,
	                               timeout)
$$;

-- ---------------------------------------------------------------------------
-- Remote storage servers (scripts/storage-servers.sh), read with the curl
-- command, independently of the extension's own HTTP code.
-- ---------------------------------------------------------------------------

-- The body at url (NULL unless the server answers 2xx), byte for byte: curl
-- writes it as one line of base64.
CREATE FUNCTION test_helpers.http_get(url text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
	b64 text;
BEGIN
	DELETE FROM test_helpers.command_output;
	EXECUTE format('COPY test_helpers.command_output FROM PROGRAM %L',
	               format('curl -sf --max-time 10 %s | base64 -w0; echo', test_helpers.sh_quote(url)));
	SELECT line INTO b64 FROM test_helpers.command_output;
	IF b64 IS NULL OR b64 = '' THEN
		RETURN NULL;
	END IF;
	RETURN decode(b64, 'base64');
END
$$;

-- The status line and headers of a HEAD of url, one per line, names lowercased.
CREATE FUNCTION test_helpers.http_head(url text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
	head text;
BEGIN
	DELETE FROM test_helpers.command_output;
	EXECUTE format('COPY test_helpers.command_output FROM PROGRAM %L',
	               format('curl -s -I --max-time 10 %s | tr -d %s', test_helpers.sh_quote(url),
	                      test_helpers.sh_quote(E'\r')));
	SELECT string_agg(coalesce(lower(substring(line FROM '^([^:]+):')) || substring(line FROM ':.*$'), line),
	                  E'\n')
	  INTO head FROM test_helpers.command_output;
	RETURN head;
END
$$;

-- Puts the build tiles of a version (tile_bytes) at {source_path}/z/x/y.{format}
-- on env's storage target, through the extension's storage code.
CREATE FUNCTION test_helpers.upload_tiles(env text, slug text, version int)
RETURNS int
LANGUAGE sql VOLATILE
AS $$
	SELECT count(*)::int
	  FROM (SELECT publish._storage_put(env, t.path, t.bytes, 'image/png')
	          FROM test_helpers.manifest_tiles(slug, version) AS t) AS uploaded
$$;

-- A project slug whose versions 1 and 2 (3 overlays, tiles of zooms 0-1)
-- are ready, their build tiles on env's target; returns its id.
CREATE FUNCTION test_helpers.make_two_versions(slug text, env text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	pid uuid := test_helpers.make_project(slug, 3, true, 1);
BEGIN
	PERFORM test_helpers.make_version(pid, 2, 3, true, 1);
	PERFORM test_helpers.upload_tiles(env, slug, n) FROM generate_series(1, 2) AS n;
	RETURN pid;
END
$$;

-- ---------------------------------------------------------------------------
-- Running SQL as another role (test/pgtap/3*_*.sql)
-- ---------------------------------------------------------------------------

-- test_helpers.sqlstate_as(role, sql, path): runs sql as role (SET LOCAL
-- ROLE, inside a subtransaction), with search_path path when given, and
-- returns 'ok' or the SQLSTATE of the error it raised.  What a successful
-- statement wrote stays written (the tests check that nothing was); the
-- role and search_path are restored either way.  pgTAP itself keeps
-- running as the caller (its temporary tables belong to it).
CREATE FUNCTION test_helpers.sqlstate_as(r text, sql text, path text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	old_role text := current_setting('role');
	old_path text := current_setting('search_path');
	st text := 'ok';
BEGIN
	BEGIN
		PERFORM set_config('role', r, true);
		IF path IS NOT NULL THEN
			PERFORM set_config('search_path', path, true);
		END IF;
		EXECUTE sql;
		PERFORM set_config('search_path', old_path, true);
		PERFORM set_config('role', old_role, true);
	EXCEPTION WHEN OTHERS THEN
		st := SQLSTATE;
	END;
	RETURN st;
END
$$;

-- test_helpers.error_as(role, sql): as sqlstate_as, 'SQLSTATE: message'.
CREATE FUNCTION test_helpers.error_as(r text, sql text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	old_role text := current_setting('role');
	res text := 'ok';
BEGIN
	BEGIN
		PERFORM set_config('role', r, true);
		EXECUTE sql;
		PERFORM set_config('role', old_role, true);
	EXCEPTION WHEN OTHERS THEN
		res := SQLSTATE || ': ' || SQLERRM;
	END;
	RETURN res;
END
$$;

-- ---------------------------------------------------------------------------
-- Other sessions (dblink), for the tests that need a second client: to hold
-- a lock that pauses the worker, or to wait (or LISTEN) while this session
-- acts.  Such a session belongs to the test's own backend, so whatever it
-- holds is let go when the test ends, even if the test stops half-way (a
-- PREPAREd transaction would stay).  Its application_name is its name.
--
--   test_helpers.session_open(name)             connects a session
--   test_helpers.hold(name, sql)                BEGIN; sql (a LOCK, a DO block that
--                                               locks rows: sql returns no rows)
--                                               in that session (opened if needed)
--   test_helpers.let_go(name)                   ROLLBACK there, and disconnect
--   test_helpers.session_send(name, sql)        runs sql there without waiting
--   test_helpers.session_wait(name, timeout)    waits until that sql has finished
--   test_helpers.session_close(name)            drains and disconnects
--   test_helpers.wait_session_event(name, type, timeout)
--                                               waits until the session waits on
--                                               wait_event_type type
--   test_helpers.wait_workers_blocked(n, timeout)
--                                               waits until n workers wait for a lock
--   test_helpers.collect_notifications(name, until_regex, timeout)
--                                               NOTIFYs the session received
-- ---------------------------------------------------------------------------

CREATE EXTENSION IF NOT EXISTS dblink SCHEMA test_helpers;

CREATE FUNCTION test_helpers.session_open(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF name = ANY (coalesce(test_helpers.dblink_get_connections(), '{}')) THEN
		RETURN;
	END IF;
	PERFORM test_helpers.dblink_connect(name,
		format('host=%s port=%s dbname=%s user=%s application_name=%s',
		       split_part(current_setting('unix_socket_directories'), ',', 1),
		       current_setting('port'), current_database(), current_user, name));
END
$$;

CREATE FUNCTION test_helpers.hold(name text, sql text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM test_helpers.session_open(name);
	PERFORM test_helpers.dblink_exec(name, 'BEGIN');
	PERFORM test_helpers.dblink_exec(name, sql);
END
$$;

CREATE FUNCTION test_helpers.session_send(name text, sql text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM test_helpers.session_open(name);
	IF test_helpers.dblink_send_query(name, sql) <> 1 THEN
		RAISE EXCEPTION 'could not send a query to session %', name;
	END IF;
END
$$;

-- True once what session_send started has finished (its results are left
-- for dblink_get_result).
CREATE FUNCTION test_helpers.session_wait(name text, timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	WHILE test_helpers.dblink_is_busy(name) = 1 LOOP
		IF clock_timestamp() >= deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN true;
END
$$;

CREATE FUNCTION test_helpers.session_close(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF NOT name = ANY (coalesce(test_helpers.dblink_get_connections(), '{}')) THEN
		RETURN;
	END IF;
	IF test_helpers.dblink_is_busy(name) = 1 THEN
		PERFORM test_helpers.dblink_cancel_query(name);
	END IF;
	-- drain what an asynchronous query left (one result per statement)
	LOOP
		BEGIN
			EXIT WHEN NOT EXISTS (SELECT 1 FROM test_helpers.dblink_get_result(name, false) AS t(x text));
		EXCEPTION WHEN OTHERS THEN
			EXIT;
		END;
	END LOOP;
	PERFORM test_helpers.dblink_disconnect(name);
END
$$;

CREATE FUNCTION test_helpers.let_go(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF NOT name = ANY (coalesce(test_helpers.dblink_get_connections(), '{}')) THEN
		RETURN;
	END IF;
	IF test_helpers.dblink_is_busy(name) = 0 THEN
		PERFORM test_helpers.dblink_exec(name, 'ROLLBACK', false);
	END IF;
	PERFORM test_helpers.session_close(name);
END
$$;

-- Waits until the backend of session name waits on an event of the given
-- type (e.g. 'Extension' for wait_job's sleep, 'Lock').
CREATE FUNCTION test_helpers.wait_session_event(name text, event_type text,
                                                timeout interval DEFAULT '10 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		IF EXISTS (SELECT 1 FROM pg_stat_activity a
		            WHERE a.datname = current_database() AND a.application_name = name
		              AND a.state = 'active' AND a.wait_event_type = event_type) THEN
			RETURN true;
		END IF;
		IF clock_timestamp() >= deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;

-- Waits until at least n of this database's workers wait for a lock.
CREATE FUNCTION test_helpers.wait_workers_blocked(n int, timeout interval DEFAULT '10 s')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		IF (SELECT count(DISTINCT l.pid) FROM pg_locks l
		      JOIN pg_stat_activity a ON a.pid = l.pid
		     WHERE a.datname = current_database()
		       AND a.application_name = 'publish worker' AND NOT l.granted) >= n THEN
			RETURN true;
		END IF;
		IF clock_timestamp() >= deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;

-- The notifications session name has received (it must have run LISTEN),
-- in order, collected until one's payload matches until_regex or the
-- timeout passes.
CREATE FUNCTION test_helpers.collect_notifications(name text, until_regex text,
                                                   timeout interval DEFAULT '10 s')
RETURNS TABLE (n int, channel text, sender int, payload text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	got record;
	done boolean := false;
	i int := 0;
BEGIN
	LOOP
		FOR got IN SELECT * FROM test_helpers.dblink_get_notify(name) LOOP
			i := i + 1;
			n := i;
			channel := got.notify_name;
			sender := got.be_pid;
			payload := got.extra;
			RETURN NEXT;
			done := done OR got.extra ~ until_regex;
		END LOOP;
		EXIT WHEN done OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.02);
	END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Source images for tile builds (test/pgtap/40_build_tiles*.sql), made and
-- read with the vips command (libvips-tools), independently of the
-- extension's own libvips code.
-- ---------------------------------------------------------------------------

-- The output of a shell command, its lines joined with newlines.
CREATE FUNCTION test_helpers.run(command text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
	out text;
BEGIN
	DELETE FROM test_helpers.command_output;
	EXECUTE format('COPY test_helpers.command_output FROM PROGRAM %L', command);
	SELECT string_agg(line, E'\n') INTO out FROM test_helpers.command_output;
	RETURN out;
END
$$;

-- Writes a width x height RGB image at path (png, jpg or tif by its
-- extension; its directory is made) whose pixel (x, y) is
-- (x mod 256, y mod 256, 128): any pixel of a tile tells where it came from.
CREATE FUNCTION test_helpers.make_image(path text, width int, height int)
RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$
	SELECT test_helpers.run(format(
		'set -e; d=$(mktemp -d); mkdir -p "$(dirname %1$s)";'
		' vips xyz "$d/xy.v" %2$s %3$s; vips remainder_const "$d/xy.v" "$d/r.v" 256;'
		' vips bandjoin_const "$d/r.v" "$d/rgb.v" 128; vips cast "$d/rgb.v" "$d/u.v" uchar;'
		' vips copy "$d/u.v" %1$s;'
		' rm -rf "$d"; echo ok',
		test_helpers.sh_quote(path), width, height))
$$;

-- The pixel at (x, y) of the image at path, as vips getpoint prints it
-- (band values separated by spaces, e.g. '10 20 128 255').
CREATE FUNCTION test_helpers.pixel(path text, x int, y int)
RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$
	SELECT regexp_replace(btrim(test_helpers.run(format('vips getpoint %s %s %s 2>&1',
	                                                    test_helpers.sh_quote(path), x, y))),
	                      '\s+', ' ', 'g')
$$;

-- width x height of the image at path, as vipsheader reads it.
CREATE FUNCTION test_helpers.image_size(path text)
RETURNS text
LANGUAGE sql VOLATILE STRICT
AS $$
	SELECT test_helpers.run(format('vipsheader -f width %1$s; vipsheader -f height %1$s',
	                               test_helpers.sh_quote(path)))
$$;

-- The tiles an image of width x height cuts into at each zoom of a pyramid
-- whose top zoom is max_zoom: ceil(w / (tile_size * 2^(max_zoom - z))) columns
-- by as many rows of the height (docs/tiles.md, "Which tiles exist").
CREATE FUNCTION test_helpers.expected_tiles(width int, height int, tile_size int, max_zoom int)
RETURNS TABLE (z int, n bigint)
LANGUAGE sql IMMUTABLE STRICT
AS $$
	SELECT z, (ceil(width / (tile_size * 2.0 ^ (max_zoom - z)))
	           * ceil(height / (tile_size * 2.0 ^ (max_zoom - z))))::bigint
	  FROM generate_series(0, max_zoom) AS z
$$;

-- Adds the file at root/storage_path as the base_map asset of the version
-- (with its size and sha256, as validation wants).
CREATE FUNCTION test_helpers.add_base_map(version_id uuid, root text, storage_path text)
RETURNS uuid
LANGUAGE sql VOLATILE
AS $$
	INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
	VALUES (version_id, 'map', 'base_map', storage_path, 'image/png',
	        (pg_stat_file(root || '/' || storage_path)).size,
	        test_helpers.file_sha256(root || '/' || storage_path))
	RETURNING id
$$;
