-- 15c_wake_one.sql: a commit that queues one job wakes one worker of the
-- database, not every worker to race for it (publish_shmem_wake_database):
-- with both workers asleep, one runs the job and the other sleeps on.
-- (Jobs left queued by a claim wake the next worker: 16c_cancel_in_group
-- queues three at once, and both workers claim theirs.)
--
-- A worker's pg_stat_activity.state_change moves whenever it starts a
-- transaction of its own (job_txn_begin reports the activity); an empty
-- one answering PostgreSQL's cache catch-up signal does not report.
--
-- Project wake-one; environment tap-wake under :storage/wake.

DELETE FROM publish.projects WHERE slug = 'wake-one';

SELECT plan(3);

SELECT :'storage' || '/wake' AS root \gset
SELECT publish.set_storage_target('tap-wake', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('wake-one', 3) \g /dev/null

SELECT ok(test_helpers.wait_until($$(SELECT count(*) FROM pg_stat_activity
                                      WHERE datname = current_database() AND application_name = 'publish worker'
                                        AND state = 'idle' AND wait_event_type = 'Extension'
                                        AND state_change < clock_timestamp() - interval '0.2 s') = 2$$, '20 s'),
          'the database''s two workers are asleep');

SELECT pg_stat_clear_snapshot();
CREATE TEMP TABLE before AS
SELECT pid, state_change FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker';

SELECT id AS job FROM publish.publish_version('wake-one', 1, 'tap-wake') \gset
SELECT is(status, 'completed', 'the job is run') FROM test_helpers.wait_job(:'job', '20 s');

SELECT pg_stat_clear_snapshot();
SELECT is(count(*) FILTER (WHERE a.state_change IS DISTINCT FROM b.state_change), 1::bigint,
          'one worker woke for it; the other slept on')
  FROM before b JOIN pg_stat_activity a USING (pid);

DELETE FROM publish.projects WHERE slug = 'wake-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-wake';

SELECT * FROM finish();
