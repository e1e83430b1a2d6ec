-- 18_timeout_retention.sql: two settings the workers apply, changed with
-- ALTER SYSTEM and a reload (reset at the end).
--
-- publish.job_timeout.  A job that runs longer than the
-- limit is stopped at its next checkpoint and 'failed' with an error that
-- starts with "timed out"; nothing is published and the worker goes on with
-- the next job.  (That a job blocked on a lock is stopped while it still
-- waits is not tested here yet: see the report of this test's author.)
--
-- publish.job_retention: worker 0 deletes, at each sweep, the finished jobs
-- that ended longer ago than that (with their log); the others stay.
--
-- Sets publish.job_timeout = 1, then publish.job_retention = 1 day with
-- publish.sweep_interval = 1 (ALTER SYSTEM + reload), and resets them at the
-- end; between the two an error must not stop the script (ON_ERROR_STOP
-- off: a failed statement shows up as a missing test instead).  The job is
-- held in step 1 by a lock another session (dblink) holds on
-- publish.storage_credentials.
--
-- Project timeout-one; environment tap-timeout under :storage/timeout.

DELETE FROM publish.projects WHERE slug = 'timeout-one';

SELECT plan(22);

SELECT :'storage' || '/timeout' AS root \gset
SELECT publish.set_storage_target('tap-timeout', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('timeout-one', 3) AS project_id \gset
SELECT :'root' || '/tap-timeout/timeout-one' AS out_dir \gset
-- (a release.json left by an earlier run would hide what this run wrote)
SELECT test_helpers.remove_file(:'out_dir' || '/release.json') \g /dev/null

\set ON_ERROR_STOP off
ALTER SYSTEM SET publish.job_timeout = 1;
SELECT pg_reload_conf() \g /dev/null
-- the workers reload when their latch is set by the SIGHUP: give them a moment
SELECT pg_sleep(0.5) \g /dev/null
SELECT is(current_setting('publish.job_timeout'), '1s', 'publish.job_timeout is 1 s after a reload');

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job1 FROM publish.publish_version('timeout-one', 1, 'tap-timeout') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the job is claimed and held in step 1');
-- held twice as long as the limit, then let go: the step's checkpoint stops it
SELECT pg_sleep(2) \g /dev/null
SELECT test_helpers.let_go('creds') \g /dev/null
CREATE TEMP TABLE timed_out AS SELECT * FROM test_helpers.wait_job(:'job1', '10 s');

SELECT is(status, 'failed', 'a job held on a lock longer than publish.job_timeout fails') FROM timed_out;
SELECT ok(error ~ '^timed out', '... with an error that starts with "timed out"') FROM timed_out;
SELECT ok(error ~ 'publish.job_timeout', '... and names the setting') FROM timed_out;
SELECT cmp_ok(completed_at - started_at, '>=', interval '0.9 s', '... not before its time was up') FROM timed_out;
SELECT cmp_ok(completed_at - started_at, '<', interval '5 s', '... and as soon as it could go on') FROM timed_out;
SELECT is(progress, 0, '... before any step was recorded') FROM timed_out;
SELECT is(logs->-1->>'level', 'error', '... its last log entry is an error') FROM timed_out;
SELECT is(logs->-1->>'message', error, '... with its error') FROM timed_out;
SELECT is(attempts, 1, '... on its first attempt: a timeout is not retried') FROM timed_out;
SELECT is(status, 'ready', 'the version is untouched')
  FROM publish.project_versions WHERE project_id = :'project_id';
SELECT ok(NOT test_helpers.file_exists(:'out_dir' || '/release.json'), 'release.json was not written');

-- The worker goes on: a job that takes less than the limit completes.
SELECT id AS job2 FROM publish.publish_version('timeout-one', 1, 'tap-timeout') \gset
SELECT is(status, 'completed', 'a job that ends in time completes with the same limit')
  FROM test_helpers.wait_job(:'job2', '10 s');

ALTER SYSTEM RESET publish.job_timeout;

-- ---------------------------------------------------------------------------
-- publish.job_retention: the worker deletes old finished jobs by itself.
-- ---------------------------------------------------------------------------

-- job2 (completed) and job1 (failed) "ended" two days ago, job3 just now.
SELECT id AS job3 FROM publish.publish_version('timeout-one', 1, 'tap-timeout') \gset
SELECT test_helpers.wait_job(:'job3', '10 s') \g /dev/null
UPDATE publish.job_queue SET completed_at = now() - interval '2 days' WHERE id IN (:'job1', :'job2');
-- a sweep every second: the worker sweeps (and purges) at once, then again
ALTER SYSTEM SET publish.sweep_interval = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(2) \g /dev/null
SELECT is(count(*), 2::bigint, 'with the default retention (30 days) the worker''s sweeps keep jobs that ended two days ago')
  FROM publish.job_queue WHERE id IN (:'job1', :'job2');

ALTER SYSTEM SET publish.job_retention = '1d';
SELECT pg_reload_conf() \g /dev/null
CREATE FUNCTION pg_temp.wait_purged(ids uuid[], timeout interval) RETURNS boolean
LANGUAGE sql AS $$
	SELECT test_helpers.wait_until(format('NOT EXISTS (SELECT 1 FROM publish.job_queue WHERE id = ANY (%L::uuid[]))', ids),
	                               timeout)
$$;
SELECT ok(pg_temp.wait_purged(ARRAY[:'job1', :'job2']::uuid[], '10 s'),
          'with publish.job_retention = 1 day, the worker deletes the jobs that ended two days ago');
SELECT is(count(*), 0::bigint, '... with their log entries')
  FROM publish.job_log WHERE job_id IN (:'job1', :'job2');
SELECT is(status, 'completed', 'the job that ended just now stays') FROM publish.jobs WHERE id = :'job3';
SELECT ok(count(*) > 0, '... with its log') FROM publish.job_log WHERE job_id = :'job3';
SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'timeout-one'$$,
	format($$VALUES (1, %L::uuid)$$, :'job3'),
	'publish.releases is untouched');

ALTER SYSTEM RESET publish.job_retention;
ALTER SYSTEM RESET publish.sweep_interval;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
\set ON_ERROR_STOP on
SELECT is(current_setting('publish.job_timeout'), '1h', 'publish.job_timeout is back to its default, 1 h');
SELECT is(count(*), 0::bigint, 'no setting of this file is left in postgresql.auto.conf')
  FROM pg_file_settings
 WHERE name IN ('publish.job_timeout', 'publish.job_retention', 'publish.sweep_interval')
   AND sourcefile ~ 'postgresql\.auto\.conf$';

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'timeout-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-timeout';

SELECT * FROM finish();
