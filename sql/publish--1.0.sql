/*
 * publish--1.0.sql: the schema of the publish extension.
 *
 * Content tables (projects, versions, assets, overlays, tilesets, tiles),
 * storage targets and their secrets, the job queue with its log and the
 * publish.jobs view, the live releases, and the SQL entry points
 * (publish_version, build_release, validate_version, set_storage_target,
 * set_storage_credentials; publish._storage_put for the benchmark and tests).  The background worker lives in publish.so and
 * serves every database in which this script has run.
 *
 * SQLSTATEs raised for bad input are chosen so that a PostgREST front end
 * answers with the right HTTP status (see README, "Errors"):
 *   PT404 not found -> 404, PT409 wrong state -> 409,
 *   22004/22023 malformed or NULL argument -> 400, 23514 invalid content -> 400.
 */

\echo Use "CREATE EXTENSION publish" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Content
-- ---------------------------------------------------------------------------

CREATE TABLE publish.projects (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	slug        text NOT NULL UNIQUE
	            CONSTRAINT projects_slug_format
	            CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 63),
	name        text NOT NULL CONSTRAINT projects_name_not_blank CHECK (btrim(name) <> ''),
	description text,
	created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE publish.projects IS 'Map projects; slug is lowercase letters, digits and hyphens.';

CREATE TABLE publish.project_versions (
	id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id     uuid NOT NULL REFERENCES publish.projects (id) ON DELETE CASCADE,
	version_number integer NOT NULL CONSTRAINT project_versions_number_positive CHECK (version_number > 0),
	status         text NOT NULL DEFAULT 'draft'
	               CONSTRAINT project_versions_status_valid
	               CHECK (status IN ('draft', 'ready', 'published', 'archived')),
	notes          text,
	published_at   timestamptz,
	created_at     timestamptz NOT NULL DEFAULT now(),
	UNIQUE (project_id, version_number)
);
COMMENT ON TABLE publish.project_versions IS
	'Versions of a project; only ready or published versions can be published.';

-- A version whose release.json is being switched must not be archived or
-- deleted until the worker has recorded it: the worker holds a session
-- advisory lock on the version while it writes release.json and commits
-- (no transaction is open during that write), and this trigger makes such
-- changes wait for it.
CREATE FUNCTION publish._wait_for_publishing_worker()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' OR NEW.status NOT IN ('ready', 'published') THEN
		PERFORM pg_advisory_xact_lock(1886741100, hashtext(OLD.id::text));
	END IF;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION publish._wait_for_publishing_worker() IS
	'Internal: an archive or delete of a version waits while the worker switches its release.json.';

CREATE TRIGGER project_versions_wait_for_worker
	BEFORE UPDATE OF status OR DELETE ON publish.project_versions
	FOR EACH ROW EXECUTE FUNCTION publish._wait_for_publishing_worker();

CREATE TABLE publish.assets (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	key          text NOT NULL CONSTRAINT assets_key_not_blank CHECK (btrim(key) <> ''),
	kind         text NOT NULL DEFAULT 'file',
	storage_path text NOT NULL
	             CONSTRAINT assets_storage_path_relative
	             CHECK (storage_path <> '' AND storage_path !~ '^/' AND storage_path !~ '(^|/)\.\.(/|$)'),
	content_type text NOT NULL DEFAULT 'application/octet-stream',
	byte_size    bigint CONSTRAINT assets_byte_size_nonnegative CHECK (byte_size >= 0),
	sha256       text CONSTRAINT assets_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (version_id, key),
	UNIQUE (version_id, id)
);
COMMENT ON TABLE publish.assets IS
	'Files of a version that are already on storage; storage_path is relative to the target''s root.';

CREATE TABLE publish.overlays (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	key          text NOT NULL CONSTRAINT overlays_key_not_blank CHECK (btrim(key) <> ''),
	name         text NOT NULL DEFAULT '',
	overlay_type text NOT NULL
	             CONSTRAINT overlays_type_valid
	             CHECK (overlay_type IN ('marker', 'label', 'polyline', 'polygon', 'image')),
	geometry     jsonb NOT NULL,
	properties   jsonb NOT NULL DEFAULT '{}'
	             CONSTRAINT overlays_properties_object CHECK (jsonb_typeof(properties) = 'object'),
	asset_id     uuid,
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (version_id, key),
	FOREIGN KEY (version_id, asset_id) REFERENCES publish.assets (version_id, id)
		ON DELETE SET NULL (asset_id)
);
CREATE INDEX overlays_asset_idx ON publish.overlays (asset_id) WHERE asset_id IS NOT NULL;
COMMENT ON TABLE publish.overlays IS
	'Map overlays of a version: marker/label (Point), polyline (LineString), polygon (Polygon), image (Polygon + asset). Geometry is checked when the version is published.';

CREATE TABLE publish.tilesets (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id  uuid NOT NULL UNIQUE REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	format      text NOT NULL DEFAULT 'png' CONSTRAINT tilesets_format_valid CHECK (format IN ('png', 'jpg', 'webp')),
	tile_size   integer NOT NULL DEFAULT 256 CONSTRAINT tilesets_tile_size_valid CHECK (tile_size IN (256, 512)),
	min_zoom    integer NOT NULL DEFAULT 0,
	max_zoom    integer NOT NULL,
	bounds      double precision[]
	            CONSTRAINT tilesets_bounds_wsen
	            CHECK (bounds IS NULL OR (cardinality(bounds) = 4 AND array_ndims(bounds) = 1
	                                      AND array_position(bounds, NULL) IS NULL
	                                      AND NOT bounds && '{NaN,Infinity,-Infinity}'::double precision[])),
	source_path text
	            CONSTRAINT tilesets_source_path_relative
	            CHECK (source_path IS NULL OR (source_path !~ '^/' AND source_path !~ '(^|/)\.\.(/|$)')),
	built_at    timestamptz,
	CONSTRAINT tilesets_zoom_range CHECK (min_zoom >= 0 AND max_zoom <= 30 AND min_zoom <= max_zoom)
);
COMMENT ON TABLE publish.tilesets IS
	'The tileset of a version: built tiles are at {source_path}/{z}/{x}/{y}.{format} under the target''s root.';

CREATE TABLE publish.tiles (
	tileset_id uuid NOT NULL REFERENCES publish.tilesets (id) ON DELETE CASCADE,
	z          integer NOT NULL CONSTRAINT tiles_z_range CHECK (z BETWEEN 0 AND 30),
	x          integer NOT NULL,
	y          integer NOT NULL,
	byte_size  bigint NOT NULL CONSTRAINT tiles_byte_size_nonnegative CHECK (byte_size >= 0),
	sha256     text NOT NULL CONSTRAINT tiles_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	PRIMARY KEY (tileset_id, z, x, y),
	CONSTRAINT tiles_xy_in_zoom CHECK (x >= 0 AND y >= 0 AND x::bigint < (1::bigint << z) AND y::bigint < (1::bigint << z))
);
COMMENT ON TABLE publish.tiles IS 'Manifest of the built tiles of a tileset.';

-- ---------------------------------------------------------------------------
-- Storage targets
-- ---------------------------------------------------------------------------

CREATE TABLE publish.storage_targets (
	env        text PRIMARY KEY
	           CONSTRAINT storage_targets_env_format CHECK (env ~ '^[a-z0-9][a-z0-9_-]*$' AND length(env) <= 63),
	url        text NOT NULL,
	options    jsonb NOT NULL DEFAULT '{}'
	           CONSTRAINT storage_targets_options_object CHECK (jsonb_typeof(options) = 'object'),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE publish.storage_targets IS
	'Where each environment publishes to; set with publish.set_storage_target().';

-- Secrets live apart from the targets so that the targets can be readable
-- while the secrets are not: no view shows this table, and only its owner
-- (the superuser who created the extension, and the worker) can read it.
CREATE TABLE publish.storage_credentials (
	env        text PRIMARY KEY REFERENCES publish.storage_targets (env) ON DELETE CASCADE,
	key_id     text,
	secret     text NOT NULL,
	session_token text,
	updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON publish.storage_credentials FROM PUBLIC;
COMMENT ON TABLE publish.storage_credentials IS
	'Secrets of the storage targets; never shown by a view, a job or a log.';

-- ---------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------

CREATE TABLE publish.job_queue (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	job_type     text NOT NULL CONSTRAINT job_queue_type_valid CHECK (job_type IN ('publish', 'build_tiles')),
	status       text NOT NULL DEFAULT 'queued'
	             CONSTRAINT job_queue_status_valid
	             CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
	progress     integer NOT NULL DEFAULT 0 CONSTRAINT job_queue_progress_range CHECK (progress BETWEEN 0 AND 100),
	params       jsonb NOT NULL DEFAULT '{}',
	result       jsonb,
	error        text,
	version_id   uuid REFERENCES publish.project_versions (id) ON DELETE SET NULL,
	env          text,
	attempts     integer NOT NULL DEFAULT 0,
	created_by   text NOT NULL DEFAULT current_user,
	created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	started_at   timestamptz,
	completed_at timestamptz
);
CREATE INDEX job_queue_queued_idx ON publish.job_queue (created_at, id) WHERE status = 'queued';
CREATE INDEX job_queue_running_idx ON publish.job_queue (id) WHERE status = 'running';
CREATE INDEX job_queue_version_idx ON publish.job_queue (version_id);
COMMENT ON TABLE publish.job_queue IS
	'Every job, queued, running or finished; read it through the publish.jobs view.';

CREATE TABLE publish.job_log (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_id    uuid NOT NULL REFERENCES publish.job_queue (id) ON DELETE CASCADE,
	logged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	level     text NOT NULL CONSTRAINT job_log_level_valid CHECK (level IN ('info', 'warn', 'error')),
	message   text NOT NULL,
	progress  integer			-- the job's progress when the entry was written
);
CREATE INDEX job_log_job_idx ON publish.job_log (job_id, id);
COMMENT ON TABLE publish.job_log IS 'Log entries of the jobs, shown as publish.jobs.logs.';

CREATE VIEW publish.jobs AS
SELECT j.id,
       j.job_type,
       j.status,
       j.progress,
       j.params,
       j.result,
       j.error,
       coalesce((SELECT jsonb_agg(jsonb_build_object('timestamp', l.logged_at,
                                                     'level', l.level,
                                                     'message', l.message,
                                                     'progress', l.progress)
                                  ORDER BY l.id)
                   FROM publish.job_log l
                  WHERE l.job_id = j.id), '[]'::jsonb) AS logs,
       j.created_at,
       j.started_at,
       j.completed_at,
       j.attempts,
       j.created_by
  FROM publish.job_queue j;
COMMENT ON VIEW publish.jobs IS
	'Jobs to poll: status queued|running|completed|failed|cancelled, progress 0-100, logs [{timestamp, level, message, progress}].';

-- ---------------------------------------------------------------------------
-- Releases: what is live in each environment
-- ---------------------------------------------------------------------------

CREATE TABLE publish.live_releases (
	project_id   uuid NOT NULL REFERENCES publish.projects (id) ON DELETE CASCADE,
	env          text NOT NULL,
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	published_at timestamptz NOT NULL,
	release_url  text NOT NULL,
	job_id       uuid REFERENCES publish.job_queue (id) ON DELETE SET NULL,
	PRIMARY KEY (project_id, env)
);
COMMENT ON TABLE publish.live_releases IS 'One row per project and environment: the live version.';

CREATE VIEW publish.releases AS
SELECT p.slug AS project,
       v.version_number AS version,
       r.env,
       r.published_at,
       r.release_url,
       r.job_id,
       r.project_id,
       r.version_id
  FROM publish.live_releases r
  JOIN publish.projects p ON p.id = r.project_id
  JOIN publish.project_versions v ON v.id = r.version_id;
COMMENT ON VIEW publish.releases IS 'What is live in each environment: project, version, env, published_at, release_url, job id.';

-- pg_dump keeps the rows of these tables (they hold user data, not setup).
SELECT pg_catalog.pg_extension_config_dump('publish.projects', '');
SELECT pg_catalog.pg_extension_config_dump('publish.project_versions', '');
SELECT pg_catalog.pg_extension_config_dump('publish.assets', '');
SELECT pg_catalog.pg_extension_config_dump('publish.overlays', '');
SELECT pg_catalog.pg_extension_config_dump('publish.tilesets', '');
SELECT pg_catalog.pg_extension_config_dump('publish.tiles', '');
SELECT pg_catalog.pg_extension_config_dump('publish.storage_targets', '');
SELECT pg_catalog.pg_extension_config_dump('publish.storage_credentials', '');
SELECT pg_catalog.pg_extension_config_dump('publish.job_queue', '');
SELECT pg_catalog.pg_extension_config_dump('publish.job_log', '');
SELECT pg_catalog.pg_extension_config_dump('publish.live_releases', '');
SELECT pg_catalog.pg_extension_config_dump('publish.job_log_id_seq', '');

-- ---------------------------------------------------------------------------
-- C entry points (internal; called by the functions below)
-- ---------------------------------------------------------------------------

CREATE FUNCTION publish._wake_worker_at_commit()
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'publish_wake_worker_at_commit';
COMMENT ON FUNCTION publish._wake_worker_at_commit() IS
	'Internal: wake this database''s publish worker when the calling transaction commits.';

CREATE FUNCTION publish._release_document(version_id uuid, env text, published_at timestamptz)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'publish_release_document';
COMMENT ON FUNCTION publish._release_document(uuid, text, timestamptz) IS
	'Internal: release.json of a version for an environment, exactly as the worker writes it.';

CREATE FUNCTION publish._validation_problems(version_id uuid)
RETURNS SETOF text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'publish_validation_problems';
COMMENT ON FUNCTION publish._validation_problems(uuid) IS
	'Internal: every problem that stops a version from being published.';

-- ---------------------------------------------------------------------------
-- Argument checks shared by the entry points
-- ---------------------------------------------------------------------------

-- The version row of slug/version, or a PT404 (HTTP 404) error.
CREATE FUNCTION publish._resolve_version(slug text, version integer)
RETURNS publish.project_versions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	proj publish.projects;
	ver  publish.project_versions;
	existing text;
BEGIN
	IF slug IS NULL OR version IS NULL THEN
		RAISE EXCEPTION 'project slug and version number must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF slug !~ '^[a-z0-9]+(-[a-z0-9]+)*$' OR length(slug) > 63 THEN
		RAISE EXCEPTION 'invalid project slug "%"', slug
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A slug is lowercase letters, digits and hyphens, such as "campus" or "city-center".';
	END IF;
	IF version <= 0 THEN
		RAISE EXCEPTION 'invalid version number %', version
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Version numbers start at 1.';
	END IF;

	SELECT * INTO proj FROM publish.projects p WHERE p.slug = _resolve_version.slug;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'project "%" does not exist', slug
			USING ERRCODE = 'PT404',
			      HINT = 'SELECT slug FROM publish.projects lists the projects.';
	END IF;

	SELECT * INTO ver FROM publish.project_versions v
	 WHERE v.project_id = proj.id AND v.version_number = _resolve_version.version;
	IF NOT FOUND THEN
		SELECT string_agg(v.version_number::text, ', ' ORDER BY v.version_number) INTO existing
		  FROM publish.project_versions v WHERE v.project_id = proj.id;
		RAISE EXCEPTION 'version % of project "%" does not exist', version, slug
			USING ERRCODE = 'PT404',
			      DETAIL = CASE WHEN existing IS NULL THEN 'The project has no versions.'
			                    ELSE format('Its versions are: %s.', existing) END;
	END IF;
	RETURN ver;
END
$$;

-- Checks that env is a well-formed environment name, or raises (22004/22023).
CREATE FUNCTION publish._check_env_name(env text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF env IS NULL THEN
		RAISE EXCEPTION 'environment must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF env !~ '^[a-z0-9][a-z0-9_-]*$' OR length(env) > 63 THEN
		RAISE EXCEPTION 'invalid environment name "%"', env
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An environment name is lowercase letters, digits, "-" and "_", such as "staging".';
	END IF;
END
$$;

-- Checks that env names a configured storage target, or raises.
CREATE FUNCTION publish._check_env(env text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text;
BEGIN
	PERFORM publish._check_env_name(env);
	IF NOT EXISTS (SELECT 1 FROM publish.storage_targets t WHERE t.env = _check_env.env) THEN
		SELECT string_agg(t.env, ', ' ORDER BY t.env) INTO known FROM publish.storage_targets t;
		RAISE EXCEPTION 'environment "%" has no storage target', env
			USING ERRCODE = 'PT404',
			      DETAIL = CASE WHEN known IS NULL THEN 'No environment has a storage target yet.'
			                    ELSE format('Configured environments: %s.', known) END,
			      HINT = format('Configure one with SELECT publish.set_storage_target(%L, ''file:///srv/maps'');', env);
	END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Public entry points
-- ---------------------------------------------------------------------------

CREATE FUNCTION publish.publish_version(slug text, version integer, env text DEFAULT 'production')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ver    publish.project_versions;
	job_id uuid;
	job    publish.jobs;
BEGIN
	ver := publish._resolve_version(slug, version);
	PERFORM publish._check_env(env);
	IF ver.status NOT IN ('ready', 'published') THEN
		RAISE EXCEPTION 'version % of project "%" is %, so it cannot be published', version, slug, ver.status
			USING ERRCODE = 'PT409',
			      DETAIL = 'Only a version whose status is ready or published can be published.',
			      HINT = CASE ver.status
			             WHEN 'draft' THEN format('Mark it ready first: UPDATE publish.project_versions SET status = ''ready'' WHERE id = %L;', ver.id)
			             ELSE 'An archived version stays archived; publish a newer version instead.' END;
	END IF;

	-- Fails with a hint when publish is not in shared_preload_libraries,
	-- before anything is written.
	PERFORM publish._wake_worker_at_commit();

	INSERT INTO publish.job_queue (job_type, params, version_id, env)
	VALUES ('publish',
	        jsonb_build_object('project_slug', slug,
	                           'version_number', version,
	                           'target_env', env,
	                           'requested_by', current_user),
	        ver.id, env)
	RETURNING id INTO job_id;

	SELECT * INTO job FROM publish.jobs j WHERE j.id = job_id;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.publish_version(text, integer, text) IS
	'Queues a job that publishes version N of project slug to environment env; returns the job. The worker starts it when the calling transaction commits.';

CREATE FUNCTION publish.build_release(slug text, version integer, env text DEFAULT 'production',
                                      published_at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ver publish.project_versions;
BEGIN
	ver := publish._resolve_version(slug, version);
	PERFORM publish._check_env(env);
	IF published_at IS NULL THEN
		RAISE EXCEPTION 'published_at must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	RETURN publish._release_document(ver.id, env, published_at)::jsonb;
END
$$;
COMMENT ON FUNCTION publish.build_release(text, integer, text, timestamptz) IS
	'The release.json that publishing this version to env would write (a preview; nothing is published).';

CREATE FUNCTION publish.validate_version(slug text, version integer)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ver publish.project_versions;
BEGIN
	ver := publish._resolve_version(slug, version);
	RETURN QUERY SELECT * FROM publish._validation_problems(ver.id);
END
$$;
COMMENT ON FUNCTION publish.validate_version(text, integer) IS
	'Every problem that would make publishing this version fail; no rows when it is valid.';

CREATE FUNCTION publish.set_storage_target(env text, url text, options jsonb DEFAULT '{}')
RETURNS publish.storage_targets
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target publish.storage_targets;
	scheme text;
BEGIN
	IF env IS NULL OR url IS NULL OR options IS NULL THEN
		RAISE EXCEPTION 'env, url and options must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM publish._check_env_name(env);
	IF jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	scheme := lower(substring(url FROM '^([A-Za-z][A-Za-z0-9+.-]*)://'));
	IF scheme IS NULL THEN
		RAISE EXCEPTION 'invalid storage URL "%"', url
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use file:///absolute/directory, http(s)://host/prefix or s3://bucket/prefix.';
	ELSIF scheme = 'file' THEN
		IF url !~* '^file:///' OR url ~ '(^|/)\.\.(/|$)' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', url
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'A file URL names an absolute directory on the database server, without "..".',
				      HINT = 'Use file:///absolute/directory, such as file:///srv/maps.';
		END IF;
	ELSIF scheme IN ('http', 'https') THEN
		IF url ~ '^[A-Za-z]+://[^/]*@' THEN
			RAISE EXCEPTION 'invalid storage URL: credentials do not belong in the URL'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Set them with publish.set_storage_credentials(env, user, password); the URL is readable by others.';
		END IF;
		IF url !~* '^https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?(/[^?#[:space:]]*)?$' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', url
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'An HTTP target is a host, an optional port and an optional path prefix, without query or fragment.',
				      HINT = 'Use http(s)://host[:port]/prefix, such as https://dav.example.com/maps.';
		END IF;
	ELSIF scheme = 's3' THEN
		IF url !~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#[:space:]]*)?$' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', url
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'An S3 target is a bucket name (3 to 63 lowercase letters, digits, dots and hyphens) and an optional key prefix.',
				      HINT = 'Use s3://bucket/prefix, with options endpoint, region and path_style.';
		END IF;
		IF options ? 'endpoint' AND (jsonb_typeof(options->'endpoint') <> 'string'
		   OR options->>'endpoint' !~* '^https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?/?$') THEN
			RAISE EXCEPTION 'invalid S3 endpoint %', options->'endpoint'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The endpoint is scheme://host[:port], such as http://127.0.0.1:9000.';
		END IF;
		IF options ? 'region' AND (jsonb_typeof(options->'region') <> 'string'
		   OR options->>'region' !~ '^[a-z0-9-]+$') THEN
			RAISE EXCEPTION 'invalid S3 region %', options->'region'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'A region is lowercase letters, digits and hyphens, such as eu-central-1.';
		END IF;
		IF options ? 'path_style' AND jsonb_typeof(options->'path_style') <> 'boolean' THEN
			RAISE EXCEPTION 'invalid S3 option path_style %', options->'path_style'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'path_style is true or false.';
		END IF;
	ELSE
		RAISE EXCEPTION 'unsupported storage scheme "%"', scheme
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use file:///absolute/directory, http(s)://host/prefix or s3://bucket/prefix.';
	END IF;
	IF options ? 'public_url' AND jsonb_typeof(options->'public_url') <> 'string' THEN
		RAISE EXCEPTION 'invalid option public_url %', options->'public_url'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'public_url is the URL readers use for the target''s root, such as https://cdn.example.com/maps.';
	END IF;

	-- drop trailing slashes, but keep the one of a root directory (file:///)
	WHILE url ~ '/$' AND url !~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*/$' LOOP
		url := left(url, -1);
	END LOOP;

	INSERT INTO publish.storage_targets AS t (env, url, options, updated_at)
	VALUES (env, url, options, now())
	ON CONFLICT ON CONSTRAINT storage_targets_pkey
	DO UPDATE SET url = excluded.url, options = excluded.options, updated_at = excluded.updated_at
	RETURNING * INTO target;
	RETURN target;
END
$$;
COMMENT ON FUNCTION publish.set_storage_target(text, text, jsonb) IS
	'Creates or replaces the storage target of an environment: file:///abs/dir, http(s)://host/prefix (HTTP PUT / WebDAV) or s3://bucket/prefix (options endpoint, region, path_style).';

CREATE FUNCTION publish.set_storage_credentials(env text, key_id text, secret text,
                                                session_token text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM publish._check_env(env);
	IF secret IS NULL THEN
		DELETE FROM publish.storage_credentials c WHERE c.env = set_storage_credentials.env;
		RETURN;
	END IF;
	INSERT INTO publish.storage_credentials AS c (env, key_id, secret, session_token, updated_at)
	VALUES (env, key_id, secret, session_token, now())
	ON CONFLICT ON CONSTRAINT storage_credentials_pkey
	DO UPDATE SET key_id = excluded.key_id, secret = excluded.secret,
	              session_token = excluded.session_token, updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION publish.set_storage_credentials(text, text, text, text) IS
	'Sets (or, with a NULL secret, removes) the secret of an environment''s storage target: HTTP basic auth user and password, a bearer token (key_id NULL), or an S3 access key id, secret key and optional session token; it is never readable back.';

-- Internal: the storage code from SQL, for superusers (bench/, tests).
CREATE FUNCTION publish._storage_put(env text, key text, data bytea,
                                     content_type text DEFAULT 'application/octet-stream',
                                     cache_control text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'publish_storage_put';
REVOKE ALL ON FUNCTION publish._storage_put(text, text, bytea, text, text) FROM PUBLIC;
COMMENT ON FUNCTION publish._storage_put(text, text, bytea, text, text) IS
	'Internal, superusers only: writes data at key on env''s storage target, as the worker would (used by the benchmark and the tests).';

-- ---------------------------------------------------------------------------
-- Tell the launcher that this database now has the extension (at commit).
-- ---------------------------------------------------------------------------
SELECT publish._wake_worker_at_commit();
