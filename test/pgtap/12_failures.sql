-- 12_failures.sql: jobs that fail, through the real worker.  A failed job is
-- 'failed' with a clear error, an error log entry and completed_at; the
-- version, publish.releases and the live release.json stay as they were;
-- and the worker goes on to the next job.
--
-- Environments tap-fail (:storage/fail) and tap-bad (a directory under a
-- regular file, which cannot exist).  Projects fail-*.

-- If an earlier run of 11_progress.sql died (a server crash) while holding
-- its prepared transactions, let them go: they would block the worker.
SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_prog\_%' AND database = current_database() \gexec

-- Leftovers of an earlier run that stopped half-way.
DELETE FROM publish.projects WHERE slug LIKE 'fail-%';

SELECT plan(58);

SELECT :'storage' || '/fail' AS root \gset
SELECT publish.set_storage_target('tap-fail', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-bad', 'file:///etc/passwd/x') \g /dev/null
SELECT publish.set_storage_credentials('tap-bad', 'bad-key-id', 'bad-secret-51c2e') \g /dev/null

-- ---------------------------------------------------------------------------
-- Errors at call time create no job.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('fail-invalid', 5) AS invalid_id \gset
SELECT count(*) AS jobs_before FROM publish.job_queue \gset

SELECT throws_ok($$SELECT publish.publish_version('fail-invalid', 1, 'no-such-env')$$, 'PT404', NULL,
                 'publishing to an environment without a target fails at call time');
SELECT throws_ok($$SELECT publish.publish_version('fail-invalid', 9, 'tap-fail')$$, 'PT404', NULL,
                 'publishing a version that does not exist fails at call time');
UPDATE publish.project_versions SET status = 'draft' WHERE project_id = :'invalid_id';
SELECT throws_ok($$SELECT publish.publish_version('fail-invalid', 1, 'tap-fail')$$, 'PT409', NULL,
                 'publishing a draft fails at call time');
UPDATE publish.project_versions SET status = 'ready' WHERE project_id = :'invalid_id';
SELECT is(count(*), :'jobs_before'::bigint, '... and none of these created a job') FROM publish.job_queue;

-- ---------------------------------------------------------------------------
-- A version that does not validate: every problem is reported.
-- ---------------------------------------------------------------------------

-- Five problems: a marker that is a line, a polygon whose ring is not
-- closed, an image without its asset, an asset without sha256 and one
-- without byte_size.
UPDATE publish.overlays o SET geometry = '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'
  FROM publish.project_versions v
 WHERE o.version_id = v.id AND v.project_id = :'invalid_id' AND o.key = 'ov-001';
UPDATE publish.overlays o SET geometry = '{"type":"Polygon","coordinates":[[[13.4,52.5],[13.5,52.5],[13.5,52.6],[13.4,52.6]]]}'
  FROM publish.project_versions v
 WHERE o.version_id = v.id AND v.project_id = :'invalid_id' AND o.key = 'ov-004';
UPDATE publish.overlays o SET asset_id = NULL
  FROM publish.project_versions v
 WHERE o.version_id = v.id AND v.project_id = :'invalid_id' AND o.key = 'ov-005';
UPDATE publish.assets a SET sha256 = NULL
  FROM publish.project_versions v
 WHERE a.version_id = v.id AND v.project_id = :'invalid_id' AND a.key = 'icon';
UPDATE publish.assets a SET byte_size = NULL
  FROM publish.project_versions v
 WHERE a.version_id = v.id AND v.project_id = :'invalid_id' AND a.key = 'photo';

SELECT id AS job_invalid FROM publish.publish_version('fail-invalid', 1, 'tap-fail') \gset
CREATE TEMP TABLE invalid AS SELECT * FROM test_helpers.wait_job(:'job_invalid');

SELECT is(status, 'failed', 'an invalid version: the job fails') FROM invalid;
SELECT ok(error ~ 'version 1 of project "fail-invalid"' AND error ~ '5 problems',
          'the error names the version and counts the problems') FROM invalid;
SELECT is((SELECT count(*) FROM regexp_split_to_table(error, E'\n') AS line WHERE line ~ '^- '),
          5::bigint, 'the error lists all five problems, one per line') FROM invalid;
SELECT set_eq(
	format($$SELECT substr(line, 3) FROM regexp_split_to_table(%L, E'\n') AS line WHERE line ~ '^- '$$,
	       (SELECT error FROM invalid)),
	$$SELECT * FROM publish.validate_version('fail-invalid', 1)$$,
	'the listed problems are those validate_version() reports');
SELECT ok(error ~ 'ov-001' AND error ~ 'ov-004' AND error ~ 'ov-005'
          AND error ~ '"icon"' AND error ~ '"photo"',
          'each problem names its overlay or asset') FROM invalid;
SELECT is(logs->-1->>'level', 'error', 'the last log entry is an error') FROM invalid;
SELECT ok(logs->-1->>'message' ~ '5 problems', '... that says what went wrong') FROM invalid;
SELECT ok(completed_at IS NOT NULL AND completed_at >= started_at, 'completed_at is set') FROM invalid;
SELECT ok(progress < 100 AND result IS NULL, 'a failed job is not at 100% and has no result') FROM invalid;
SELECT results_eq(
	format($$SELECT status, published_at FROM publish.project_versions WHERE project_id = %L$$, :'invalid_id'),
	$$VALUES ('ready'::text, NULL::timestamptz)$$,
	'the version is untouched');
SELECT is(count(*), 0::bigint, 'publish.releases has no row for it')
  FROM publish.releases WHERE project = 'fail-invalid';
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-fail/fail-invalid/release.json')
          AND NOT test_helpers.file_exists(:'root' || '/tap-fail/fail-invalid/releases/v1.json'),
          'no release.json is written');

-- ---------------------------------------------------------------------------
-- A target that cannot be written.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('fail-target', 5) AS target_id \gset
SELECT id AS job_target FROM publish.publish_version('fail-target', 1, 'tap-bad') \gset
CREATE TEMP TABLE target_fail AS SELECT * FROM test_helpers.wait_job(:'job_target');

SELECT is(status, 'failed', 'an unwritable target: the job fails') FROM target_fail;
SELECT ok(error ~ '/etc/passwd', 'the error names the path that could not be written') FROM target_fail;
SELECT ok(error ~* 'not a directory', 'the error says why') FROM target_fail;
SELECT is(logs->-1->>'level', 'error', 'the last log entry is an error') FROM target_fail;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs, ARRAY['^validated', '^built', '/etc/passwd'])),
          'the log shows the steps that passed, then the error') FROM target_fail;
SELECT ok(completed_at IS NOT NULL, 'completed_at is set') FROM target_fail;
SELECT is(progress::text || ' ' || (logs->-1->>'progress'), '30 30',
          'its progress is the last step it reached (30 %, built), and so is its error line''s') FROM target_fail;
SELECT ok(target_fail::text !~ 'bad-secret-51c2e', 'the target''s secret appears nowhere in the failed job')
  FROM target_fail;

SELECT is(status, 'ready', 'the version is untouched')
  FROM publish.project_versions WHERE project_id = :'target_id';
SELECT is(count(*), 0::bigint, 'publish.releases has no row for it')
  FROM publish.releases WHERE project = 'fail-target';

-- ---------------------------------------------------------------------------
-- Tiles that are missing or do not match the manifest.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('fail-tiles', 5, true) AS tiles_id \gset
SELECT test_helpers.write_tiles(:'root', 'fail-tiles', 1) \g /dev/null
SELECT :'root' || '/builds/fail-tiles/v1/tiles' AS tiles_dir \gset
SELECT test_helpers.remove_file(:'tiles_dir' || '/1/0/1.png') \g /dev/null

SELECT id AS job_missing FROM publish.publish_version('fail-tiles', 1, 'tap-fail') \gset
CREATE TEMP TABLE missing AS SELECT * FROM test_helpers.wait_job(:'job_missing');

SELECT is(status, 'failed', 'a tile missing from the build: the job fails') FROM missing;
SELECT ok(error ~ 'tile 1/0/1 ' AND error ~ 'missing', 'the error names the missing tile z/x/y') FROM missing;
SELECT ok(error !~ 'tile 1/1/0 ' AND error !~ 'tile 0/0/0 ', 'it names no tile that is fine') FROM missing;
SELECT is(logs->-1->>'level', 'error', 'the last log entry is an error') FROM missing;
SELECT is(status, 'ready', 'the version is untouched')
  FROM publish.project_versions WHERE project_id = :'tiles_id';
SELECT is(count(*), 0::bigint, 'publish.releases has no row for it')
  FROM publish.releases WHERE project = 'fail-tiles';
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-fail/fail-tiles/release.json'),
          'release.json is not written when a tile is missing');

-- Put it back, then corrupt two others: same size, other bytes; and cut short.
-- (Two that the failed job did not copy: 0/0/0 and 1/0/0, before the
-- missing one, are in place with the manifest's content and are skipped
-- without reading the build.)
SELECT test_helpers.write_file(:'tiles_dir' || '/1/0/1.png',
                               test_helpers.tile_bytes('fail-tiles', 1, 1, 0, 1)) \g /dev/null
SELECT test_helpers.write_file(:'tiles_dir' || '/1/1/0.png',
                               test_helpers.tile_bytes('fail-tilez', 1, 1, 1, 0)) \g /dev/null
SELECT test_helpers.write_file(:'tiles_dir' || '/1/1/1.png',
                               substring(test_helpers.tile_bytes('fail-tiles', 1, 1, 1, 1) FROM 1 FOR 50)) \g /dev/null

SELECT id AS job_corrupt FROM publish.publish_version('fail-tiles', 1, 'tap-fail') \gset
CREATE TEMP TABLE corrupt AS SELECT * FROM test_helpers.wait_job(:'job_corrupt');

SELECT is(status, 'failed', 'tiles that do not match the manifest: the job fails') FROM corrupt;
SELECT ok(error ~ '2 tiles', 'the error counts the bad tiles') FROM corrupt;
SELECT ok(error ~ 'tile 1/1/0 [^\n]*sha256', 'a tile with other bytes is named, for its sha256') FROM corrupt;
SELECT ok(error ~ 'tile 1/1/1 [^\n]*50 bytes', 'a tile of the wrong size is named, with its size') FROM corrupt;
SELECT ok(error !~ 'tile 1/0/1 ', 'the restored tile is not named') FROM corrupt;
SELECT is(status, 'ready', 'the version is still untouched')
  FROM publish.project_versions WHERE project_id = :'tiles_id';

-- Fixed, it publishes.
SELECT test_helpers.write_tiles(:'root', 'fail-tiles', 1) \g /dev/null
SELECT id AS job_fixed FROM publish.publish_version('fail-tiles', 1, 'tap-fail') \gset
CREATE TEMP TABLE fixed AS SELECT * FROM test_helpers.wait_job(:'job_fixed');
SELECT is(status, 'completed', 'after the failures the worker still runs jobs: fixed, the version publishes') FROM fixed;
SELECT is((result->>'tile_count')::int, 5, '... with all its tiles') FROM fixed;
SELECT is(status, 'published', '... and is published')
  FROM publish.project_versions WHERE project_id = :'tiles_id';

-- ---------------------------------------------------------------------------
-- A failed publish of a newer version leaves the live release alone.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('fail-live', 5) AS live_id \gset
-- Version 2 has a tileset whose tiles are never written.
SELECT test_helpers.make_version(:'live_id', 2, 5, true) \g /dev/null
SELECT id AS job_live1 FROM publish.publish_version('fail-live', 1, 'tap-fail') \gset
CREATE TEMP TABLE live1 AS SELECT * FROM test_helpers.wait_job(:'job_live1');
SELECT id AS job_live2 FROM publish.publish_version('fail-live', 2, 'tap-fail') \gset
CREATE TEMP TABLE live2 AS SELECT * FROM test_helpers.wait_job(:'job_live2');

SELECT is(status, 'completed', 'version 1 publishes') FROM live1;
SELECT is(status, 'failed', 'version 2, whose tiles are missing, fails') FROM live2;
SELECT ok(error ~ '5 tiles', 'its error counts all five missing tiles') FROM live2;
SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'fail-live'$$,
	format($$VALUES (1, %L::uuid)$$, :'job_live1'),
	'publish.releases still shows version 1');
SELECT is(test_helpers.file_sha256(:'root' || '/tap-fail/fail-live/release.json'), live1.result->>'release_sha256',
          'the live release.json is still version 1''s') FROM live1;
SELECT results_eq(
	format($$SELECT version_number, status FROM publish.project_versions
	          WHERE project_id = %L ORDER BY version_number$$, :'live_id'),
	$$VALUES (1, 'published'::text), (2, 'ready'::text)$$,
	'version 1 stays published, version 2 stays ready');

-- ---------------------------------------------------------------------------
-- The version changes between publish_version() and the job.
-- ---------------------------------------------------------------------------

-- Deleted in the same transaction: the job's version_id becomes NULL.
SELECT test_helpers.make_project('fail-deleted', 5) AS deleted_id \gset
BEGIN;
SELECT id AS job_deleted FROM publish.publish_version('fail-deleted', 1, 'tap-fail') \gset
DELETE FROM publish.projects WHERE id = :'deleted_id';
COMMIT;
CREATE TEMP TABLE deleted AS SELECT * FROM test_helpers.wait_job(:'job_deleted');
SELECT is(status, 'failed', 'a job whose version was deleted fails') FROM deleted;
SELECT ok(error ~* 'deleted', '... saying the version was deleted') FROM deleted;
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-fail/fail-deleted/release.json'),
          '... and writes nothing');

-- Archived in the same transaction.
SELECT test_helpers.make_project('fail-archived', 5) AS archived_id \gset
BEGIN;
SELECT id AS job_archived FROM publish.publish_version('fail-archived', 1, 'tap-fail') \gset
UPDATE publish.project_versions SET status = 'archived' WHERE project_id = :'archived_id';
COMMIT;
CREATE TEMP TABLE archived AS SELECT * FROM test_helpers.wait_job(:'job_archived');
SELECT is(status, 'failed', 'a job whose version was archived meanwhile fails') FROM archived;
SELECT ok(error ~ 'archived', '... saying the version is archived') FROM archived;
SELECT is(status, 'archived', '... and leaves the version archived')
  FROM publish.project_versions WHERE project_id = :'archived_id';
SELECT is(count(*), 0::bigint, '... with no publish.releases row')
  FROM publish.releases WHERE project = 'fail-archived';

-- ---------------------------------------------------------------------------
-- Every failure of this file is in publish.jobs the same way.
-- ---------------------------------------------------------------------------

SELECT is(count(*), 7::bigint, 'this file''s seven failing jobs are failed')
  FROM publish.jobs
 WHERE id IN (:'job_invalid', :'job_target', :'job_missing', :'job_corrupt', :'job_live2',
              :'job_deleted', :'job_archived')
   AND status = 'failed';
SELECT ok(bool_and(error IS NOT NULL AND completed_at IS NOT NULL AND logs->-1->>'level' = 'error'
                   AND logs->-1->>'message' = error),
          'each has an error, completed_at, and its error as the last log entry')
  FROM publish.jobs
 WHERE id IN (:'job_invalid', :'job_target', :'job_missing', :'job_corrupt', :'job_live2',
              :'job_deleted', :'job_archived');
SELECT is(count(*), 0::bigint, 'no job of this file is left queued or running')
  FROM publish.job_queue
 WHERE params->>'target_env' IN ('tap-fail', 'tap-bad') AND status IN ('queued', 'running');

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'fail-%';
DELETE FROM publish.storage_targets WHERE env IN ('tap-fail', 'tap-bad');

SELECT * FROM finish();
