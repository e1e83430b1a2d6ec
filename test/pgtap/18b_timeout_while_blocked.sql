-- 18b_timeout_while_blocked.sql: a job blocked on a lock still times out
-- (its transactions carry the time left as lock_timeout).
--
-- publish.job_timeout.  A job that runs longer than the
-- limit is stopped and 'failed' with an error that starts with "timed out",
-- even while it waits for a lock; nothing is published and the worker goes
-- on with the next job.
--
-- Sets publish.job_timeout = 1 (ALTER SYSTEM + reload) and resets it at the
-- end; between the two an error must not stop the script (ON_ERROR_STOP
-- off: a failed statement shows up as a missing test instead).  The job is
-- held in step 1 by a lock another session (dblink) holds on
-- publish.storage_credentials.
--
-- Project timeout-one; environment tap-timeout under :storage/timeout.

DELETE FROM publish.projects WHERE slug = 'timeout-one';

SELECT plan(14);

SELECT :'storage' || '/timeout-b' AS root \gset
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
CREATE TEMP TABLE timed_out AS SELECT * FROM test_helpers.wait_job(:'job1', '10 s');
SELECT test_helpers.let_go('creds') \g /dev/null

SELECT is(status, 'failed', 'a job held on a lock longer than publish.job_timeout fails') FROM timed_out;
SELECT ok(error ~ '^timed out', '... with an error that starts with "timed out"') FROM timed_out;
SELECT ok(error ~ 'publish.job_timeout', '... and names the setting') FROM timed_out;
SELECT cmp_ok(completed_at - started_at, '>=', interval '0.9 s', '... not before its time was up') FROM timed_out;
SELECT cmp_ok(completed_at - started_at, '<', interval '4 s', '... and within a few seconds of it') FROM timed_out;
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
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
\set ON_ERROR_STOP on
SELECT is(current_setting('publish.job_timeout'), '1h', 'publish.job_timeout is back to its default, 1 h');
SELECT is(count(*), 0::bigint, 'no setting of this file is left in postgresql.auto.conf')
  FROM pg_file_settings WHERE name = 'publish.job_timeout' AND sourcefile ~ 'postgresql\.auto\.conf$';

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'timeout-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-timeout';

SELECT * FROM finish();
