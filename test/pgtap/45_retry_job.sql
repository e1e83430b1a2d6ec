-- 45_retry_job.sql: publish.retry_job(id), on a file:// target.
--
--   - a failed publish, a cancelled publish, a failed rollback and a failed
--     tile build are retried: a new job of the same type with the same
--     parameters, params.retry_of naming the old one, params.requested_by
--     the role that retried;
--   - the same publish already queued is the answer, as publish_version's;
--   - queued, running and completed jobs are refused (PT409), unknown ones
--     and jobs whose project or version is gone too (PT404), as is NULL
--     (22004); a retry is checked as a new request (an archived version:
--     PT409); nothing is written by a refusal;
--   - admins may retry, nobody else.
--
-- Projects rt-*, environment tap-rt; roles tap_rt_*.

SET client_min_messages = warning;
DO $$
DECLARE r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tap_rt_admin', 'tap_rt_viewer'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DELETE FROM publish.projects WHERE slug LIKE 'rt-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-rt';
ALTER SYSTEM RESET publish.pause_at;
SELECT pg_reload_conf() \g /dev/null

SELECT plan(40);

CREATE ROLE tap_rt_admin NOLOGIN IN ROLE publish_admin;
CREATE ROLE tap_rt_viewer NOLOGIN IN ROLE publish_viewer;

SELECT :'storage' || '/rt' AS root \gset
SELECT publish.set_storage_target('tap-rt', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('rt-one', 5, true, 1) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) \g /dev/null

-- ---------------------------------------------------------------------------
-- A failed publish (its tiles are not there yet), retried
-- ---------------------------------------------------------------------------

SELECT id AS failed FROM publish.publish_version('rt-one', 1, 'tap-rt') \gset
SELECT is(status, 'failed', 'a publish whose tiles are missing fails') FROM test_helpers.wait_job(:'failed');
SELECT test_helpers.write_tiles(:'root', 'rt-one', 1) \g /dev/null

SET ROLE tap_rt_admin;
SELECT * FROM publish.retry_job(:'failed') \gset retry_
RESET ROLE;
SELECT isnt(:'retry_id'::uuid, :'failed'::uuid, 'retry_job returns a new job');
SELECT is(:'retry_job_type'::text, 'publish', '... of the same type');
SELECT is(:'retry_status'::text, 'queued', '... queued');
SELECT is((:'retry_params')::jsonb->>'retry_of', :'failed', '... whose params name the job it retries');
SELECT is((:'retry_params')::jsonb - 'retry_of' - 'requested_by' - 'requested_sub',
          params - 'requested_by' - 'requested_sub', '... with its parameters')
  FROM publish.jobs WHERE id = :'failed';
SELECT is((:'retry_params')::jsonb->>'requested_by', 'tap_rt_admin', '... asked for by the role that retried');
SELECT is(params->>'retry_of', :'failed', '... as publish.jobs shows it') FROM publish.jobs WHERE id = :'retry_id';
SELECT is(status, 'completed', '... and it completes') FROM test_helpers.wait_job(:'retry_id');
SELECT is(status, 'failed', 'the job it retried stays failed') FROM publish.jobs WHERE id = :'failed';
SELECT is(version, 1, 'version 1 is live') FROM publish.releases WHERE project = 'rt-one' AND env = 'tap-rt';

-- ---------------------------------------------------------------------------
-- A cancelled publish
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS cancelled FROM publish.publish_version('rt-one', 2, 'tap-rt') \gset
SELECT publish.cancel_job(:'cancelled') \g /dev/null
COMMIT;
SELECT is(status, 'cancelled', 'a publish cancelled while queued') FROM publish.jobs WHERE id = :'cancelled';
SELECT id AS retry2 FROM publish.retry_job(:'cancelled') \gset
SELECT is(job_type || ' ' || (params->>'version_number') || ' ' || (params->>'retry_of'), 'publish 2 ' || :'cancelled',
          '... is retried') FROM publish.jobs WHERE id = :'retry2';
SELECT is(status, 'completed', '... and the retry completes') FROM test_helpers.wait_job(:'retry2');

-- ---------------------------------------------------------------------------
-- A failed rollback, and a failed tile build
-- ---------------------------------------------------------------------------

SELECT :'root' || '/tap-rt/rt-one/releases/v1.json' AS v1_path \gset
SELECT pg_read_binary_file(:'v1_path') AS v1_bytes \gset
SELECT test_helpers.remove_file(:'v1_path') \g /dev/null
SELECT id AS rb FROM publish.rollback('rt-one', 'tap-rt') \gset
SELECT is(status, 'failed', 'a rollback whose copy is gone fails') FROM test_helpers.wait_job(:'rb');
SELECT test_helpers.write_file(:'v1_path', :'v1_bytes') \g /dev/null
SELECT id AS rb2 FROM publish.retry_job(:'rb') \gset
SELECT is(job_type || ' ' || (params->>'version_number') || ' ' || (params->>'retry_of'), 'rollback 1 ' || :'rb',
          '... is retried as a rollback to the same version') FROM publish.jobs WHERE id = :'rb2';
SELECT is(status, 'completed', '... which completes once the copy is back') FROM test_helpers.wait_job(:'rb2');
SELECT is(version, 1, '... and version 1 is live again') FROM publish.releases WHERE project = 'rt-one' AND env = 'tap-rt';

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type)
SELECT v.id, 'map', 'base_map', 'rt/nowhere.png', 'image/png'
  FROM publish.project_versions v WHERE v.project_id = :'project_id' AND v.version_number = 2;
SELECT id AS bt FROM publish.build_tiles('rt-one', 2, 'tap-rt') \gset
SELECT is(status, 'failed', 'a tile build whose source image is missing fails') FROM test_helpers.wait_job(:'bt');
SELECT id AS bt2 FROM publish.retry_job(:'bt') \gset
SELECT is(job_type || ' ' || (params->>'retry_of'), 'build_tiles ' || :'bt', '... is retried as a tile build')
  FROM publish.jobs WHERE id = :'bt2';
SELECT is(status, 'failed', '... (which fails again: the image is still missing)') FROM test_helpers.wait_job(:'bt2');
DELETE FROM publish.assets WHERE kind = 'base_map'
   AND version_id IN (SELECT id FROM publish.project_versions WHERE project_id = :'project_id');

-- ---------------------------------------------------------------------------
-- The same publish already waiting is the answer
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS waiting FROM publish.publish_version('rt-one', 1, 'tap-rt') \gset
SELECT id AS same FROM publish.retry_job(:'failed') \gset
SELECT is(:'same'::uuid, :'waiting'::uuid, 'a retry of a publish that is queued again returns the queued job');
SELECT ok(NOT params ? 'retry_of', '... unchanged') FROM publish.jobs WHERE id = :'waiting';
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Refused, with nothing written
-- ---------------------------------------------------------------------------

SELECT id AS completed FROM publish.jobs WHERE id = :'retry_id' \gset
BEGIN;
SELECT id AS queued FROM publish.publish_version('rt-one', 2, 'tap-rt') \gset
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'queued'), 'PT409',
                 format('job %s is queued, so it cannot be retried', :'queued'), 'a queued job cannot be retried (PT409)');
ROLLBACK;

ALTER SYSTEM SET publish.pause_at = 'claimed';
SELECT pg_reload_conf() \g /dev/null
SELECT test_helpers.wait_until($$current_setting('publish.pause_at') = 'claimed'$$) \g /dev/null
SELECT id AS running FROM publish.publish_version('rt-one', 2, 'tap-rt') \gset
SELECT test_helpers.wait_until(format($$(SELECT status FROM publish.jobs WHERE id = %L) = 'running'$$, :'running')) \g /dev/null
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'running'), 'PT409',
                 format('job %s is running, so it cannot be retried', :'running'), 'a running job cannot be retried (PT409)');
ALTER SYSTEM RESET publish.pause_at;
SELECT pg_reload_conf() \g /dev/null
SELECT is(status, 'completed', '... and completes as it would have') FROM test_helpers.wait_job(:'running');

-- a version archived since: the retry is checked as a new publish
UPDATE publish.project_versions SET status = 'archived' WHERE project_id = :'project_id' AND version_number = 1;
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'failed'), 'PT409',
                 'version 1 of project "rt-one" is archived, so it cannot be published',
                 'a retry is checked as a new request: an archived version is refused (PT409)');
UPDATE publish.project_versions SET status = 'published' WHERE project_id = :'project_id' AND version_number = 1;

-- a job whose version, or project, is gone
SELECT test_helpers.make_project('rt-gone', 5, true, 1) AS gone_project \gset
SELECT id AS gone FROM publish.publish_version('rt-gone', 1, 'tap-rt') \gset
SELECT is(status, 'failed', 'rt-gone: a publish fails (no tiles)') FROM test_helpers.wait_job(:'gone');
DELETE FROM publish.project_versions WHERE project_id = :'gone_project';
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'gone'), 'PT404',
                 format('the version of job %s no longer exists, so it cannot be retried', :'gone'),
                 'a job whose version was deleted cannot be retried (PT404)');
DELETE FROM publish.projects WHERE id = :'gone_project';
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'gone'), 'PT404',
                 format('the project of job %s no longer exists, so it cannot be retried', :'gone'),
                 'a job whose project was deleted cannot be retried (PT404)');

CREATE TEMP VIEW fingerprint AS
SELECT md5(string_agg(r, E'\n' ORDER BY r)) AS rows
  FROM (SELECT 'j' || t::text AS r FROM publish.job_queue t
        UNION ALL SELECT 'l' || t.id::text FROM publish.job_log t
        UNION ALL SELECT 'r' || t::text FROM publish.live_releases t) AS all_rows;
SELECT rows AS rows_before FROM fingerprint \gset
SELECT is(test_helpers.sqlstate_as('tap_rt_admin', sql), expected, what)
  FROM (VALUES
	(format('SELECT publish.retry_job(%L)', :'completed'), 'PT409', 'a completed job cannot be retried (PT409)'),
	($$SELECT publish.retry_job('00000000-0000-0000-0000-000000000000')$$, 'PT404', 'an unknown job (PT404)'),
	($$SELECT publish.retry_job(NULL)$$, '22004', 'NULL (22004)'),
	($$SELECT publish.retry_job('not-a-uuid')$$, '22P02', 'not a uuid (22P02)'),
	($$SELECT publish.retry_job(repeat('a', 10 * 1024 * 1024)::uuid)$$, '22P02', '10 MB of text (22P02)')
  ) AS c(sql, expected, what);
SELECT is(rows, :'rows_before', 'none of the refused calls wrote anything') FROM fingerprint;
SELECT throws_ok(format('SELECT publish.retry_job(%L)', :'completed'), 'PT409',
                 format('job %s is completed, so it cannot be retried', :'completed'), 'the message says why');

-- ---------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.sqlstate_as('tap_rt_viewer', format('SELECT publish.retry_job(%L)', :'failed')), '42501',
          'a viewer may not retry a job');
SELECT ok(NOT has_function_privilege('public', 'publish.retry_job(uuid)', 'EXECUTE'), 'nor may PUBLIC');
SET ROLE tap_rt_admin;
SELECT id AS by_admin FROM publish.retry_job(:'failed') \gset
RESET ROLE;
SELECT is(status, 'completed', 'an admin may') FROM test_helpers.wait_job(:'by_admin');

DELETE FROM publish.projects WHERE slug LIKE 'rt-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-rt';
DROP ROLE tap_rt_admin;
DROP ROLE tap_rt_viewer;

SELECT * FROM finish();
