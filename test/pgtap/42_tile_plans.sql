-- 42_tile_plans.sql: no tile build may end the worker's process.  A SIGFPE
-- that reaches a job fails that job and leaves the signal deliverable.
--
--   - a SIGFPE sent to a worker between two storage attempts;
--   - the server log of this file has no process ended by a signal, and the
--     workers are the ones it started with.
--
-- Environments tap-plan under :storage/plan, tap-plan-fpe on the fault
-- server.  Projects plan-*.

DELETE FROM publish.projects WHERE slug LIKE 'plan-%';

SELECT plan(7);

SELECT :'storage' || '/plan' AS root \gset
SELECT publish.set_storage_target('tap-plan', 'file://' || :'root') \g /dev/null
SELECT (pg_stat_file(:'server_log')).size AS log_start \gset
SELECT array_agg(pid ORDER BY pid) AS workers FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker' \gset

-- ---------------------------------------------------------------------------
-- A SIGFPE that reaches a job fails that job, and the worker's error
-- recovery unblocks SIGFPE again (the signal handler blocked it, and no
-- transaction was open whose abort would have restored the mask): the next
-- one must be an error again, not the end of the process.  Sent here while
-- the worker waits, outside any transaction, to retry a storage request the
-- fault server answered with 503 (retry delay raised to 15-30 s for this).
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('plan-fpe', 1) \g /dev/null
SELECT publish.set_storage_target('tap-plan-fpe', :'fault_url' || '/fail503-5/tplanfpe') \g /dev/null
\set ON_ERROR_STOP off
ALTER SYSTEM SET publish.storage_retry_delay = '30s';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT id AS fjob FROM publish.publish_version('plan-fpe', 1, 'tap-plan-fpe') \gset
SELECT ok(test_helpers.wait_until($$EXISTS (SELECT 1 FROM pg_stat_activity
                                             WHERE datname = current_database() AND application_name = 'publish worker'
                                               AND query = 'publish: retrying a storage request'
                                               AND wait_event_type = 'Extension' AND xact_start IS NULL)$$, '20 s'),
          'a worker waits to retry a storage request, outside any transaction');
SELECT pid AS fpid FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker'
   AND query = 'publish: retrying a storage request' \gset
SELECT test_helpers.run(format('kill -FPE %s && echo sent', :fpid)) \g /dev/null
CREATE TEMP TABLE fpe AS SELECT * FROM test_helpers.wait_job(:'fjob', '60 s');
ALTER SYSTEM RESET publish.storage_retry_delay;
SELECT pg_reload_conf() \g /dev/null
\set ON_ERROR_STOP on
SELECT is(status || ': ' || split_part(error, E'\n', 1), 'failed: floating-point exception',
          'the SIGFPE fails the job it interrupts') FROM fpe;
SELECT is(('x' || lpad(test_helpers.run(format('awk ''/^SigBlk:/ {print $2}'' /proc/%s/status', :fpid)), 16, '0'))::bit(64)::bigint & 128,
          0::bigint, 'the worker that caught it does not block SIGFPE afterwards');
SELECT is(count(*), 1::bigint, '... and is still running') FROM pg_stat_activity WHERE pid = :fpid;

-- ---------------------------------------------------------------------------
-- No process of the server ended by a signal meanwhile.
-- ---------------------------------------------------------------------------

SELECT pg_read_file(:'server_log', :log_start, (pg_stat_file(:'server_log')).size - :log_start) AS log_text \gset
SELECT is(substring(:'log_text' FROM '[^\n]*terminated by signal[^\n]*'), NULL,
          'the server log of this test has no process terminated by a signal');
SELECT is(substring(:'log_text' FROM '[^\n]*(terminating any other active server processes|reinitializing)[^\n]*'), NULL,
          '... and no crash recovery');
SELECT is(array_agg(pid ORDER BY pid), :'workers'::int[], 'the workers are the ones this test started with')
  FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'publish worker';

DELETE FROM publish.projects WHERE slug LIKE 'plan-%';

SELECT * FROM finish();
