-- 49_purge.sql: publish.purge_releases on a file:// target.
--
--   - purge_releases(slug, env, keep) removes the copies and tiles of the
--     versions neither live nor among the last keep that were live: the
--     whole tree of tiles/v{N}/ (a file the manifest does not list, a
--     symlink, whose target stays), and versions on storage that only the
--     listing knows; nothing of the live and kept versions, release.json,
--     another environment, another project, the tile builds;
--   - its result says what it kept and removed, counted;
--   - a version under whose prefix a content row names a path is kept;
--   - a purge between publishes, queued with them, leaves every live and
--     kept release whole;
--   - every refusal at call time, with its SQLSTATE, writes nothing;
--   - admins may purge, viewers may not; a cancelled purge can be retried.
--
-- Projects pg-*, environments tap-pg and tap-pg-other; roles tap_pg_*.

SET client_min_messages = warning;
ALTER SYSTEM RESET publish.pause_at;
ALTER SYSTEM RESET publish.keep_releases;
SELECT pg_reload_conf() \g /dev/null
DO $$
DECLARE r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tap_pg_admin', 'tap_pg_viewer', 'tap_pg_nobody'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DELETE FROM publish.projects WHERE slug LIKE 'pg-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-pg%';

SELECT plan(85);

CREATE ROLE tap_pg_admin NOLOGIN IN ROLE publish_admin;
CREATE ROLE tap_pg_viewer NOLOGIN IN ROLE publish_viewer;
CREATE ROLE tap_pg_nobody NOLOGIN;

SELECT :'storage' || '/pg' AS root \gset
SELECT :'root' || '/tap-pg/pg-one' AS dir, :'root' || '/tap-pg-other/pg-one' AS other_dir \gset
SELECT test_helpers.run(format('rm -rf %s', test_helpers.sh_quote(:'root'))) \g /dev/null
SELECT publish.set_storage_target('tap-pg', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-pg-other', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('pg-one', 3, true, 1) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', n, 3, true, 1) FROM generate_series(2, 6) AS n \g /dev/null
SELECT sum(test_helpers.write_tiles(:'root', 'pg-one', n)) FROM generate_series(1, 6) AS n \g /dev/null
SELECT test_helpers.make_project('pg-two', 2, true, 1) \g /dev/null
SELECT test_helpers.write_tiles(:'root', 'pg-two', 1) \g /dev/null
SELECT count(*) AS tiles_per_version FROM test_helpers.manifest_tiles('pg-one', 1) \gset

-- Is a version whole on storage: its copy the document the history
-- recorded, and every tile of its manifest in place with its bytes?
CREATE FUNCTION pg_temp.whole(root text, slug text, env text, v int) RETURNS boolean LANGUAGE sql AS $$
	SELECT test_helpers.file_sha256(format('%s/%s/%s/releases/v%s.json', root, env, slug, v))
	       = (SELECT h.release_sha256 FROM publish.release_history h
	           WHERE h.project = whole.slug AND h.env = whole.env AND h.version = whole.v
	           ORDER BY h.id DESC LIMIT 1)
	   AND (SELECT bool_and(pg_read_binary_file(format('%s/%s/%s/tiles/v%s/%s', root, env, slug, v,
	                                                   regexp_replace(t.path, '^.*/tiles/', ''))) = t.bytes)
	          FROM test_helpers.manifest_tiles(slug, v) AS t)
$$;
-- Is anything of version v left under env's prefix?
CREATE FUNCTION pg_temp.gone(dir text, v int) RETURNS boolean LANGUAGE sql AS $$
	SELECT pg_stat_file(format('%s/tiles/v%s', dir, v), true) IS NULL
	   AND pg_stat_file(format('%s/releases/v%s.json', dir, v), true) IS NULL
$$;
-- The sizes of the regular files under dir (symlinks not followed).
CREATE FUNCTION pg_temp.bytes_under(dir text) RETURNS bigint LANGUAGE sql AS $$
	SELECT coalesce(sum((pg_stat_file(dir || '/' || f)).size), 0)::bigint
	  FROM test_helpers.list_files(dir) AS f WHERE f !~ 'link'
$$;

-- ---------------------------------------------------------------------------
-- Versions 1-4 live one after the other; storage holds more than the
-- manifests say
-- ---------------------------------------------------------------------------

SELECT id AS j1 FROM publish.publish_version('pg-one', 1, 'tap-pg') \gset
SELECT id AS j2 FROM publish.publish_version('pg-one', 2, 'tap-pg') \gset
SELECT id AS j3 FROM publish.publish_version('pg-one', 3, 'tap-pg') \gset
SELECT id AS j4 FROM publish.publish_version('pg-one', 4, 'tap-pg') \gset
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n),
          ARRAY['completed', 'completed', 'completed', 'completed'],
          'versions 1 to 4 of pg-one are published to tap-pg, one after the other')
  FROM unnest(ARRAY[:'j1', :'j2', :'j3', :'j4']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT id AS j5 FROM publish.publish_version('pg-one', 1, 'tap-pg-other') \gset
SELECT is(status, 'completed', 'version 1 is published to tap-pg-other') FROM test_helpers.wait_job(:'j5');
SELECT id AS j6 FROM publish.publish_version('pg-two', 1, 'tap-pg') \gset
SELECT is(status, 'completed', 'pg-two: version 1 is published to tap-pg') FROM test_helpers.wait_job(:'j6');

-- a file no manifest lists, a symlink to a file outside the prefix, and
-- a version only the storage knows (its copy and a tile)
SELECT test_helpers.write_file(:'dir' || '/tiles/v1/9/9/9.png', convert_to('left over', 'UTF8')) \g /dev/null
SELECT test_helpers.write_file(:'root' || '/sentinel.txt', convert_to('not to be removed', 'UTF8')) \g /dev/null
SELECT test_helpers.run(format('ln -s %s %s', test_helpers.sh_quote(:'root' || '/sentinel.txt'),
                               test_helpers.sh_quote(:'dir' || '/tiles/v2/link.png'))) \g /dev/null
SELECT test_helpers.write_file(:'dir' || '/releases/v9.json', convert_to('{"version": 9}', 'UTF8')) \g /dev/null
SELECT test_helpers.write_file(:'dir' || '/tiles/v9/0/0/0.png', convert_to('orphan', 'UTF8')) \g /dev/null

SELECT pg_temp.bytes_under(:'dir' || '/tiles/v1') + pg_temp.bytes_under(:'dir' || '/tiles/v2')
       + pg_temp.bytes_under(:'dir' || '/tiles/v9')
       + (pg_stat_file(:'dir' || '/releases/v1.json')).size + (pg_stat_file(:'dir' || '/releases/v2.json')).size
       + (pg_stat_file(:'dir' || '/releases/v9.json')).size AS expected_bytes,
       (SELECT count(*) FROM test_helpers.list_files(:'dir' || '/tiles/v1'))
       + (SELECT count(*) FROM test_helpers.list_files(:'dir' || '/tiles/v2'))
       + (SELECT count(*) FROM test_helpers.list_files(:'dir' || '/tiles/v9')) + 3 AS expected_objects,
       test_helpers.file_sha256(:'dir' || '/release.json') AS live_sha \gset

-- ---------------------------------------------------------------------------
-- purge_releases(slug, env, 2): versions 4 (live) and 3 stay
-- ---------------------------------------------------------------------------

SELECT id AS p1_id FROM publish.purge_releases('pg-one', 'tap-pg', 2) \gset
CREATE TEMP TABLE p1 AS SELECT * FROM test_helpers.wait_job(:'p1_id');
SELECT is(status, 'completed', 'purge_releases(slug, env, 2) completes') FROM p1;
SELECT is(job_type, 'purge', '... as a job of type purge') FROM p1;
SELECT is(result->'kept_versions', '[4, 3]'::jsonb, '... keeping the live version and the one live before') FROM p1;
SELECT is(result->'live_version', '4'::jsonb, '... of which 4 is live') FROM p1;
SELECT is((SELECT jsonb_agg(v->'version') FROM jsonb_array_elements(result->'purged_versions') AS v), '[1, 2, 9]'::jsonb,
          '... and removing versions 1 and 2, and 9, which only the storage knew') FROM p1;
SELECT is((result->>'objects_deleted')::bigint, :expected_objects::bigint,
          '... counting every object: tiles, the file no manifest lists, the symlink, the copies') FROM p1;
SELECT is((result->>'bytes_deleted')::bigint, :expected_bytes::bigint, '... and their bytes') FROM p1;
SELECT is(result->'storage_listed', 'true'::jsonb, '... having listed the copies on storage') FROM p1;
SELECT ok(pg_temp.gone(:'dir', 1) AND pg_temp.gone(:'dir', 2) AND pg_temp.gone(:'dir', 9),
          'the copies and tile directories of versions 1, 2 and 9 are gone');
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 3) AND pg_temp.whole(:'root', 'pg-one', 'tap-pg', 4),
          'versions 3 and 4 are whole: their copies and every tile');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), :'live_sha', 'release.json is untouched');
SELECT is(convert_from(pg_read_binary_file(:'root' || '/sentinel.txt'), 'UTF8'), 'not to be removed',
          'the file the symlink pointed to is untouched');
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg-other', 1), 'version 1 in the other environment is whole');
SELECT ok(pg_temp.whole(:'root', 'pg-two', 'tap-pg', 1), 'the other project''s version is whole');
SELECT is((SELECT count(*) FROM test_helpers.list_files(:'root' || '/builds/pg-one')), 6 * :tiles_per_version::bigint,
          'the tile builds are untouched');
SELECT is((SELECT string_agg(e, ',' ORDER BY e) FROM pg_ls_dir(:'dir' || '/releases') AS e), 'v3.json,v4.json',
          'releases/ holds the copies of versions 3 and 4');
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs,
          ARRAY['Purging pg-one in tap-pg, keeping 2: live version 4, kept 4, 3', 'Found 5 release copies',
                'Removed version 1: ' || (:tiles_per_version + 2) || ' objects', 'Removed version 2',
                'Removed version 9: 2 objects', 'Purge completed: removed 3 versions'])),
          '... and the job logs each step') FROM p1;

SELECT id AS p2_id FROM publish.purge_releases('pg-one', 'tap-pg', 2) \gset
CREATE TEMP TABLE p2 AS SELECT * FROM test_helpers.wait_job(:'p2_id');
SELECT is(status, 'completed', 'the same purge again completes') FROM p2;
SELECT is(result->'purged_versions', '[]'::jsonb, '... and removes nothing') FROM p2;
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 3) AND pg_temp.whole(:'root', 'pg-one', 'tap-pg', 4),
          '... versions 3 and 4 are still whole');

-- ---------------------------------------------------------------------------
-- A path a content row names keeps its version
-- ---------------------------------------------------------------------------

INSERT INTO publish.assets (version_id, key, storage_path)
SELECT v.id, 'shared-tile', 'tap-pg/pg-one/tiles/v3/0/0/0.png'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'pg-two' AND v.version_number = 1;
SELECT id AS p3_id FROM publish.purge_releases('pg-one', 'tap-pg', 1) \gset
CREATE TEMP TABLE p3 AS SELECT * FROM test_helpers.wait_job(:'p3_id');
SELECT is(status, 'completed', 'purge_releases(slug, env, 1), with an asset of pg-two stored under version 3''s tiles, completes') FROM p3;
SELECT is(result->'kept_versions', '[4]'::jsonb, '... keeping only the live version') FROM p3;
SELECT is(result->'skipped_versions', '[{"version": 3, "path": "tap-pg/pg-one/tiles/v3/0/0/0.png"}]'::jsonb,
          '... and skipping version 3, naming the path') FROM p3;
SELECT ok(logs::text ~ 'Kept version 3: tap-pg/pg-one/tiles/v3/0/0/0.png, under its prefix, is named by a row',
          '... with a warning in its log') FROM p3;
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 3), '... and version 3 is whole');
DELETE FROM publish.assets WHERE key = 'shared-tile';

SELECT id AS rb FROM publish.rollback('pg-one', 'tap-pg', 3) \gset
SELECT is(status, 'completed', 'a rollback to version 3, kept, completes') FROM test_helpers.wait_job(:'rb');
SELECT id AS p4_id FROM publish.purge_releases('pg-one', 'tap-pg', 1) \gset
CREATE TEMP TABLE p4 AS SELECT * FROM test_helpers.wait_job(:'p4_id');
SELECT is(result->'kept_versions', '[3]'::jsonb, 'then purge_releases(slug, env, 1) keeps version 3, live again') FROM p4;
SELECT ok(pg_temp.gone(:'dir', 4), '... and removes version 4');
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 3), '... leaving version 3 whole');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), test_helpers.file_sha256(:'dir' || '/releases/v3.json'),
          '... and release.json version 3''s document');

-- ---------------------------------------------------------------------------
-- Queued together: publishes and purges in two environments, and a publish
-- of another project, run by the workers in their order
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS c1 FROM publish.publish_version('pg-one', 5, 'tap-pg') \gset
SELECT id AS c2 FROM publish.purge_releases('pg-one', 'tap-pg', 2) \gset
SELECT id AS c3 FROM publish.publish_version('pg-one', 6, 'tap-pg') \gset
SELECT id AS c4 FROM publish.publish_version('pg-two', 1, 'tap-pg') \gset
SELECT id AS c5 FROM publish.publish_version('pg-one', 5, 'tap-pg-other') \gset
SELECT id AS c6 FROM publish.purge_releases('pg-one', 'tap-pg-other', 1) \gset
SELECT id AS c7 FROM publish.purge_releases('pg-one', 'tap-pg', 2) \gset
COMMIT;
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n),
          ARRAY['completed', 'completed', 'completed', 'completed', 'completed', 'completed', 'completed'],
          'publishes and purges queued together all complete')
  FROM unnest(ARRAY[:'c1', :'c2', :'c3', :'c4', :'c5', :'c6', :'c7']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT is((SELECT result->'kept_versions' FROM publish.jobs WHERE id = :'c2'), '[5, 3]'::jsonb,
          '... the purge between two publishes kept what was live when it ran, and the one before');
SELECT is((SELECT result->'kept_versions' FROM publish.jobs WHERE id = :'c7'), '[6, 5]'::jsonb,
          '... the one after them, the last two');
SELECT is((SELECT string_agg(format('%s %s', env, version), ', ' ORDER BY env) FROM publish.releases WHERE project = 'pg-one'),
          'tap-pg 6, tap-pg-other 5', '... and publish.releases names the last publishes');
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 6) AND pg_temp.whole(:'root', 'pg-one', 'tap-pg', 5),
          'the live and the kept release of tap-pg are whole');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), test_helpers.file_sha256(:'dir' || '/releases/v6.json'),
          '... release.json is version 6''s document');
SELECT ok(pg_temp.gone(:'dir', 3), '... and version 3 is gone');
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg-other', 5) AND pg_temp.gone(:'other_dir', 1),
          'in tap-pg-other, version 5 is whole and version 1 gone');
SELECT ok(pg_temp.whole(:'root', 'pg-two', 'tap-pg', 1), 'pg-two''s release is whole');

-- ---------------------------------------------------------------------------
-- Safe while a publish runs: a purge asked for while a publish of version 7
-- waits at the pause point "uploaded" (its copy and tiles on storage, not
-- yet live, nowhere in the history) runs after it, and leaves it whole
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_version(:'project_id', 7, 3, true, 1) \g /dev/null
SELECT test_helpers.write_tiles(:'root', 'pg-one', 7) \g /dev/null
ALTER SYSTEM SET publish.pause_at = 'uploaded';
SELECT pg_reload_conf() \g /dev/null
SELECT test_helpers.wait_until($$current_setting('publish.pause_at') = 'uploaded'$$) \g /dev/null
SELECT id AS w7 FROM publish.publish_version('pg-one', 7, 'tap-pg') \gset
SELECT test_helpers.wait_until($$EXISTS (SELECT 1 FROM pg_stat_activity WHERE query = 'publish: paused at uploaded')$$) \g /dev/null
SELECT ok((pg_stat_file(:'dir' || '/releases/v7.json', true)).size IS NOT NULL,
          'a publish of version 7 waits at "uploaded", its copy on storage');
SELECT id AS wp FROM publish.purge_releases('pg-one', 'tap-pg', 1) \gset
SELECT is(status, 'queued', '... a purge asked for meanwhile waits for it') FROM publish.jobs WHERE id = :'wp';
ALTER SYSTEM RESET publish.pause_at;
SELECT pg_reload_conf() \g /dev/null
SELECT is(status, 'completed', '... the publish then completes') FROM test_helpers.wait_job(:'w7', '60 s');
CREATE TEMP TABLE wp AS SELECT * FROM test_helpers.wait_job(:'wp', '60 s');
SELECT is(status, 'completed', '... and so does the purge, after it') FROM wp;
SELECT is(result->'kept_versions', '[7]'::jsonb, '... keeping version 7, live when it ran') FROM wp;
SELECT ok(pg_temp.whole(:'root', 'pg-one', 'tap-pg', 7), '... version 7 is whole: its copy and every tile');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), test_helpers.file_sha256(:'dir' || '/releases/v7.json'),
          '... and release.json is its document');
SELECT ok(pg_temp.gone(:'dir', 6) AND pg_temp.gone(:'dir', 5), '... versions 5 and 6 are gone');

-- ---------------------------------------------------------------------------
-- Compressed copies on file://: the .gz siblings go with their versions
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-pg-gz', 'file://' || :'root', '{"compress": "gzip"}') \g /dev/null
SELECT :'root' || '/tap-pg-gz/pg-one' AS gz_dir \gset
SELECT id AS g1 FROM publish.publish_version('pg-one', 6, 'tap-pg-gz') \gset
SELECT id AS g2 FROM publish.publish_version('pg-one', 7, 'tap-pg-gz') \gset
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n), ARRAY['completed', 'completed'],
          'versions 6 and 7 are published to a file:// target that compresses')
  FROM unnest(ARRAY[:'g1', :'g2']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT is((SELECT string_agg(e, ',' ORDER BY e) FROM pg_ls_dir(:'gz_dir' || '/releases') AS e),
          'v6.json,v6.json.gz,v7.json,v7.json.gz', '... each copy with its .gz sibling');
SELECT id AS gp FROM publish.purge_releases('pg-one', 'tap-pg-gz', 1) \gset
CREATE TEMP TABLE gp AS SELECT * FROM test_helpers.wait_job(:'gp');
SELECT is(status, 'completed', 'purge_releases(slug, env, 1) there completes') FROM gp;
SELECT is((SELECT string_agg(e, ',' ORDER BY e) FROM pg_ls_dir(:'gz_dir' || '/releases') AS e),
          'v7.json,v7.json.gz', '... removing version 6''s copy and its sibling, not version 7''s');
SELECT is((result->'purged_versions'->0->>'objects')::int, :tiles_per_version + 2,
          '... counting the sibling: the tiles, the copy, the .gz') FROM gp;
SELECT ok((pg_stat_file(:'gz_dir' || '/release.json.gz', true)).size IS NOT NULL,
          '... and release.json.gz stays');

-- ---------------------------------------------------------------------------
-- publish.keep_releases: a purge after each publish
-- ---------------------------------------------------------------------------

ALTER SYSTEM SET publish.keep_releases = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT test_helpers.wait_until($$current_setting('publish.keep_releases') = '1'$$) \g /dev/null
SELECT test_helpers.wait_until($$(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish worker') > 0$$) \g /dev/null
SELECT id AS k1 FROM publish.publish_version('pg-one', 6, 'tap-pg-gz') \gset
SELECT is(status, 'completed', 'with publish.keep_releases = 1, a publish completes') FROM test_helpers.wait_job(:'k1');
SELECT id AS kp FROM publish.jobs WHERE job_type = 'purge' AND params->>'after_job' = :'k1' \gset
SELECT is(params->>'queued_by', 'publish.keep_releases', '... and queues a purge of its environment') FROM publish.jobs WHERE id = :'kp';
CREATE TEMP TABLE kp AS SELECT * FROM test_helpers.wait_job(:'kp');
SELECT is(status || ' ' || (result->'kept_versions')::text || ' ' || (result->'purged_versions'->0->>'version'),
          'completed [6] 7', '... which keeps version 6 and removes version 7') FROM kp;
ALTER SYSTEM RESET publish.keep_releases;
SELECT pg_reload_conf() \g /dev/null
SELECT test_helpers.wait_until($$current_setting('publish.keep_releases') = '0'$$) \g /dev/null

-- ---------------------------------------------------------------------------
-- Refused at call time, with nothing written
-- ---------------------------------------------------------------------------

CREATE TEMP VIEW fingerprint AS
SELECT md5(string_agg(r, E'\n' ORDER BY r)) AS rows
  FROM (SELECT 'j' || t::text AS r FROM publish.job_queue t
        UNION ALL SELECT 'l' || t.id::text FROM publish.job_log t) AS all_rows;
SELECT rows AS rows_before FROM fingerprint \gset

CREATE TEMP TABLE cases (n serial, sql text, expected text, what text);
INSERT INTO cases (sql, expected, what) VALUES
($c$SELECT publish.purge_releases(NULL, 'tap-pg')$c$, '22004', 'NULL slug'),
($c$SELECT publish.purge_releases('pg-one', NULL)$c$, '22004', 'NULL env'),
($c$SELECT publish.purge_releases('pg-one', 'tap-pg', NULL)$c$, '22004', 'NULL keep'),
($c$SELECT publish.purge_releases('pg-one', 'tap-pg', 0)$c$, '22023', 'keep 0'),
($c$SELECT publish.purge_releases('pg-one', 'tap-pg', -1)$c$, '22023', 'a negative keep'),
($c$SELECT publish.purge_releases('', 'tap-pg')$c$, '22023', 'empty slug'),
($c$SELECT publish.purge_releases('../pg-one', 'tap-pg')$c$, '22023', 'slug ../'),
($c$SELECT publish.purge_releases('pg-one', '../../etc')$c$, '22023', 'env ../../etc'),
($c$SELECT publish.purge_releases(repeat('a', 10 * 1024 * 1024), 'tap-pg')$c$, '22023', '10 MB slug'),
($c$SELECT publish.purge_releases('pg-nowhere', 'tap-pg')$c$, 'PT404', 'an unknown project'),
($c$SELECT publish.purge_releases('pg-one', 'tap-pg-nowhere')$c$, 'PT404', 'an environment without a target');
SELECT is(test_helpers.sqlstate_as('tap_pg_admin', c.sql), c.expected, format('%s: %s', c.n, c.what))
  FROM cases c ORDER BY c.n;
SELECT is(test_helpers.sqlstate_as('tap_pg_viewer', $$SELECT publish.purge_releases('pg-one', 'tap-pg')$$), '42501',
          'a viewer may not purge');
SELECT is(test_helpers.sqlstate_as('tap_pg_nobody', $$SELECT publish.purge_releases('pg-one', 'tap-pg')$$), '42501',
          'a role without publish roles may not purge');
SELECT is(rows, :'rows_before', 'none of the refused calls wrote anything') FROM fingerprint;
SELECT throws_like($$SELECT publish.purge_releases('pg-one', 'tap-pg', 0)$$, 'keep must be at least 1, not 0',
                   'keep 0: the message says so');

BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok($$SELECT publish.purge_releases('pg-one', 'tap-pg')$$, '0A000', NULL,
                 'a purge in REPEATABLE READ is refused (0A000)');
ROLLBACK;

BEGIN;
SELECT id AS d1 FROM publish.purge_releases('pg-one', 'tap-pg', 3) \gset
SELECT id AS d2 FROM publish.purge_releases('pg-one', 'tap-pg', 3) \gset
SELECT id AS d3 FROM publish.purge_releases('pg-one', 'tap-pg', 4) \gset
SELECT is(:'d2'::uuid, :'d1'::uuid, 'the same purge asked again while it waits is the same job');
SELECT isnt(:'d3'::uuid, :'d1'::uuid, '... one with another keep is another');
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Roles, cancel and retry
-- ---------------------------------------------------------------------------

BEGIN;
SET LOCAL ROLE tap_pg_admin;
SELECT id AS cj FROM publish.purge_releases('pg-one', 'tap-pg', 5) \gset
SELECT is(status, 'cancelled', 'an admin may purge, and cancel the purge while it waits') FROM publish.cancel_job(:'cj');
COMMIT;
SELECT is(created_by, 'tap_pg_admin', '... the job says who asked') FROM publish.jobs WHERE id = :'cj';
SELECT id AS rj FROM publish.retry_job(:'cj') \gset
CREATE TEMP TABLE rj AS SELECT * FROM test_helpers.wait_job(:'rj');
SELECT is(status, 'completed', 'retry_job of the cancelled purge completes') FROM rj;
SELECT is(params->>'retry_of', :'cj', '... naming the job it retries') FROM rj;
SELECT is(params->>'keep', '5', '... with its keep') FROM rj;
SELECT is(test_helpers.sqlstate_as('tap_pg_viewer', $$SELECT count(*) FROM publish.jobs WHERE job_type = 'purge'$$), 'ok',
          'a viewer may read the purges in publish.jobs');

-- a purge of a project deleted before it runs fails, saying so
BEGIN;
SELECT id AS gone_job FROM publish.purge_releases('pg-two', 'tap-pg') \gset
DELETE FROM publish.projects WHERE slug = 'pg-two';
COMMIT;
CREATE TEMP TABLE gj AS SELECT * FROM test_helpers.wait_job(:'gone_job');
SELECT is(status, 'failed', 'a purge whose project was deleted before it ran fails') FROM gj;
SELECT is(error, 'the project was deleted before the job started', '... saying so') FROM gj;

DELETE FROM publish.projects WHERE slug LIKE 'pg-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-pg%';
DROP ROLE tap_pg_admin;
DROP ROLE tap_pg_viewer;
DROP ROLE tap_pg_nobody;

SELECT * FROM finish();
