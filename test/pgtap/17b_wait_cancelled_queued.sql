-- 17b_wait_cancelled_queued.sql: wait_job() wakes at once when a queued job
-- ends without a worker (cancel_job, a superseded duplicate): the
-- transaction that ends it wakes the sleepers at commit.
--
-- Uses the dblink helpers of test/pgtap/helpers/setup.sql.

DELETE FROM publish.projects WHERE slug = 'waitc-one';
SELECT plan(6);

SELECT :'storage' || '/waitc' AS root \gset
SELECT publish.set_storage_target('tap-waitc', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('waitc-one', 3) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', n, 3) FROM generate_series(2, 3) AS n \g /dev/null

-- Hold the first job in step 1; the next ones stay queued behind it.
SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS j_run FROM publish.publish_version('waitc-one', 1, 'tap-waitc') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the first job is held in step 1');

-- 1. cancel_job on a queued job that another session waits for.
SELECT id AS j_q FROM publish.publish_version('waitc-one', 2, 'tap-waitc') \gset
SELECT test_helpers.session_send('waiter',
	format('SELECT status, clock_timestamp() FROM publish.wait_job(%L, %L)', :'j_q', '8 s')) \g /dev/null
SELECT ok(test_helpers.wait_session_event('waiter', 'Extension'), 'the waiter sleeps');
SELECT clock_timestamp() AS t_cancel \gset
SELECT publish.cancel_job(:'j_q') \g /dev/null
SELECT test_helpers.session_wait('waiter', '20 s') \g /dev/null
CREATE TEMP TABLE w1 AS SELECT * FROM test_helpers.dblink_get_result('waiter') AS t(status text, returned_at timestamptz);
SELECT test_helpers.session_close('waiter') \g /dev/null
SELECT is(status, 'cancelled', 'the waiter gets the cancelled job') FROM w1;
SELECT cmp_ok(returned_at - :'t_cancel'::timestamptz, '<', interval '2 s',
              '... soon after the cancel (BUG: it sleeps until its 8 s timeout)') FROM w1;

-- 2. a queued duplicate superseded by publish_version.
SELECT id AS j_dup FROM publish.publish_version('waitc-one', 2, 'tap-waitc') \gset
SELECT publish.publish_version('waitc-one', 3, 'tap-waitc') \g /dev/null
SELECT test_helpers.session_send('waiter',
	format('SELECT status, clock_timestamp() FROM publish.wait_job(%L, %L)', :'j_dup', '8 s')) \g /dev/null
SELECT test_helpers.wait_session_event('waiter', 'Extension') \g /dev/null
SELECT clock_timestamp() AS t_super \gset
SELECT publish.publish_version('waitc-one', 2, 'tap-waitc') \g /dev/null
SELECT test_helpers.session_wait('waiter', '20 s') \g /dev/null
CREATE TEMP TABLE w2 AS SELECT * FROM test_helpers.dblink_get_result('waiter') AS t(status text, returned_at timestamptz);
SELECT test_helpers.session_close('waiter') \g /dev/null
SELECT is(status, 'cancelled', 'the waiter gets the superseded job') FROM w2;
SELECT cmp_ok(returned_at - :'t_super'::timestamptz, '<', interval '2 s',
              '... soon after it was superseded (BUG: it sleeps until its 8 s timeout)') FROM w2;

SELECT test_helpers.let_go('creds') \g /dev/null
SELECT test_helpers.wait_job(id, '20 s') FROM publish.job_queue
 WHERE project_id = :'project_id' AND status IN ('queued', 'running') \g /dev/null
DELETE FROM publish.projects WHERE slug = 'waitc-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-waitc';
SELECT * FROM finish();
