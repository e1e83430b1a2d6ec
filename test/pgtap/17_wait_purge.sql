-- 17_wait_purge.sql: publish.wait_job(id, timeout) and publish.purge_jobs(older_than).
--
--   * wait_job sleeps (wait event Extension, no polling) until the job ends
--     and returns it then; with a short timeout it returns the job as it is
--     once the timeout passed, or publish.max_job_wait if that is shorter;
--     unknown id PT404, NULL 22004, and it refuses
--     a snapshot-based transaction (0A000);
--   * purge_jobs deletes finished jobs that ended before now() - older_than,
--     with their log, and returns how many; queued, running and recent jobs
--     stay; a negative interval is 22023.
--
-- The worker is held in step 1 by a lock another session (dblink) holds on
-- publish.storage_credentials, which every job reads in step 1 only; a
-- second session (dblink) calls wait_job while this one lets the job go.
--
-- Projects wait-one, purge-one, purge-two; environment tap-wait.

DELETE FROM publish.projects WHERE slug IN ('wait-one', 'purge-one', 'purge-two');

SELECT plan(39);

SELECT :'storage' || '/wait' AS root \gset
SELECT publish.set_storage_target('tap-wait', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('wait-one', 3) AS wait_id \gset

-- ---------------------------------------------------------------------------
-- wait_job
-- ---------------------------------------------------------------------------

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS j1 FROM publish.publish_version('wait-one', 1, 'tap-wait') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'a job is claimed and held in step 1');

-- A short timeout: the job as it is, once the timeout passed.
SELECT clock_timestamp() AS t0 \gset
CREATE TEMP TABLE short_wait AS
SELECT w.*, clock_timestamp() AS returned_at FROM publish.wait_job(:'j1', '1 s') AS w;
SELECT is(status, 'running', 'wait_job with a 1 s timeout on a held job returns it still running') FROM short_wait;
SELECT is(id, :'j1'::uuid, '... the job asked for') FROM short_wait;
SELECT cmp_ok(returned_at - :'t0'::timestamptz, '>=', interval '0.95 s', '... after the timeout (not before)') FROM short_wait;
SELECT cmp_ok(returned_at - :'t0'::timestamptz, '<', interval '2 s', '... and soon after it') FROM short_wait;

-- publish.max_job_wait bounds any timeout asked for (it is for superusers
-- to set; this session is one)
SET publish.max_job_wait = '1s';
SELECT clock_timestamp() AS t0 \gset
CREATE TEMP TABLE capped_wait AS
SELECT w.*, clock_timestamp() AS returned_at FROM publish.wait_job(:'j1', '1 hour') AS w;
RESET publish.max_job_wait;
SELECT is(status, 'running', 'wait_job asked to wait an hour, with publish.max_job_wait = 1 s, returns the held job still running') FROM capped_wait;
SELECT cmp_ok(returned_at - :'t0'::timestamptz, '>=', interval '0.95 s', '... after publish.max_job_wait') FROM capped_wait;
SELECT cmp_ok(returned_at - :'t0'::timestamptz, '<', interval '5 s', '... not after the hour asked for') FROM capped_wait;

-- Another session waits; this one lets the job go.
SELECT test_helpers.session_send('waiter',
	format('SELECT status, progress, clock_timestamp() FROM publish.wait_job(%L, %L)', :'j1', '30 s')) \g /dev/null
SELECT ok(test_helpers.wait_session_event('waiter', 'Extension'),
          'a wait_job in another session sleeps on the publish event (wait event type Extension)');
SELECT pg_sleep(0.3) \g /dev/null
SELECT ok(test_helpers.dblink_is_busy('waiter') = 1 AND test_helpers.wait_session_event('waiter', 'Extension', '0 s'),
          '... and is still asleep 0.3 s later, while the job is held');

SELECT test_helpers.let_go('creds') \g /dev/null
SELECT ok(test_helpers.session_wait('waiter', '10 s'), 'let go, the job ends and the waiter returns');
CREATE TEMP TABLE waited AS
SELECT * FROM test_helpers.dblink_get_result('waiter') AS t(status text, progress int, returned_at timestamptz);
SELECT test_helpers.session_close('waiter') \g /dev/null
CREATE TEMP TABLE j1_done AS SELECT * FROM publish.jobs WHERE id = :'j1';

SELECT is(w.status, 'completed', 'wait_job returns the job completed') FROM waited w;
SELECT is(w.progress, 100, '... at 100%') FROM waited w;
SELECT ok(w.returned_at >= j.completed_at, '... after it completed') FROM waited w, j1_done j;
SELECT cmp_ok(w.returned_at - j.completed_at, '<', interval '2 s',
              '... and less than 2 s after it completed (woken, not timed out)') FROM waited w, j1_done j;

-- An ended job is returned at once.
SELECT clock_timestamp() AS t0 \gset
CREATE TEMP TABLE done_wait AS
SELECT w.*, clock_timestamp() AS returned_at FROM publish.wait_job(:'j1', '10 s') AS w;
SELECT is(status, 'completed', 'wait_job on an ended job returns it') FROM done_wait;
SELECT ok(result ? 'release_url' AND logs = (SELECT logs FROM j1_done),
          '... the whole job, with its result and log') FROM done_wait;
SELECT cmp_ok(returned_at - :'t0'::timestamptz, '<', interval '0.5 s', '... at once') FROM done_wait;

SELECT throws_ok($$SELECT publish.wait_job('00000000-0000-0000-0000-000000000000', '1 s')$$, 'PT404', NULL,
                 'wait_job of an unknown job: PT404');
SELECT throws_ok($$SELECT publish.wait_job(NULL, '1 s')$$, '22004', NULL, 'wait_job(NULL): 22004');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok(format('SELECT publish.wait_job(%L, %L)', :'j1', '1 s'), '0A000', NULL,
                 'wait_job in a REPEATABLE READ transaction: 0A000 (it would never see the job change)');
COMMIT;
BEGIN;
SELECT is(status, 'completed', 'wait_job works in a READ COMMITTED transaction block')
  FROM publish.wait_job(:'j1', '1 s');
COMMIT;

-- ---------------------------------------------------------------------------
-- purge_jobs
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('purge-one', 3) AS p1_id \gset
SELECT test_helpers.make_project('purge-two', 3) AS p2_id \gset
SELECT test_helpers.make_version(:'p1_id', n, 3) FROM generate_series(2, 3) AS n \g /dev/null
-- version 2 does not validate: its marker is a line
UPDATE publish.overlays o SET geometry = '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'
  FROM publish.project_versions v
 WHERE o.version_id = v.id AND v.project_id = :'p1_id' AND v.version_number = 2 AND o.key = 'ov-001';

-- Finished jobs: completed, failed, cancelled; and a recent one.
SELECT id AS job_c FROM publish.publish_version('purge-one', 1, 'tap-wait') \gset
SELECT is(status, 'completed', 'a completed job') FROM test_helpers.wait_job(:'job_c');
SELECT id AS job_f FROM publish.publish_version('purge-one', 2, 'tap-wait') \gset
SELECT is(status, 'failed', 'a failed job') FROM test_helpers.wait_job(:'job_f');
SELECT id AS job_recent FROM publish.publish_version('purge-two', 1, 'tap-wait') \gset
SELECT is(status, 'completed', 'a recent completed job') FROM test_helpers.wait_job(:'job_recent');

-- A running job (held) and a queued one; a cancelled one.
SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job_r FROM publish.publish_version('purge-one', 1, 'tap-wait') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'a running job, held in step 1');
SELECT id AS job_x FROM publish.publish_version('purge-one', 3, 'tap-wait') \gset
SELECT is(status, 'cancelled', 'a cancelled job') FROM publish.cancel_job(:'job_x');
SELECT id AS job_q FROM publish.publish_version('purge-one', 3, 'tap-wait') \gset
SELECT is(status, 'queued', 'a queued job') FROM publish.jobs WHERE id = :'job_q';

-- Every one but the recent job "ended" two days ago: purge_jobs must go by
-- status too (the running and queued ones get a completed_at only here).
UPDATE publish.job_queue SET completed_at = now() - interval '2 days'
 WHERE id IN (:'job_c', :'job_f', :'job_x', :'job_r', :'job_q');
SELECT ok(count(*) FILTER (WHERE job_id IN (:'job_c', :'job_f', :'job_x')) >= 3
          AND count(*) FILTER (WHERE job_id = :'job_recent') > 0,
          'the old finished jobs and the recent one have log entries')
  FROM publish.job_log;
SELECT count(*) AS recent_logs FROM publish.job_log WHERE job_id = :'job_recent' \gset

SELECT is(publish.purge_jobs('1 day'), 3::bigint,
          'purge_jobs(''1 day'') deletes the three finished jobs that ended two days ago, and says so');
SELECT is(count(*), 0::bigint, '... they are gone')
  FROM publish.job_queue WHERE id IN (:'job_c', :'job_f', :'job_x');
SELECT is(count(*), 0::bigint, '... with their log entries')
  FROM publish.job_log WHERE job_id IN (:'job_c', :'job_f', :'job_x');
SELECT results_eq(
	format($$SELECT id, status FROM publish.job_queue WHERE id IN (%L, %L, %L) ORDER BY created_at$$,
	       :'job_recent', :'job_r', :'job_q'),
	format($$VALUES (%L::uuid, 'completed'::text), (%L::uuid, 'running'::text), (%L::uuid, 'queued'::text)$$,
	       :'job_recent', :'job_r', :'job_q'),
	'the recent job, the running one and the queued one are kept');
SELECT is(count(*), :'recent_logs'::bigint, '... the recent job with all its log entries')
  FROM publish.job_log WHERE job_id = :'job_recent';
SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'purge-one'$$,
	$$VALUES (1, NULL::uuid)$$,
	'the live release of a purged job stays, without its job');
SELECT is(publish.purge_jobs('1 day'), 0::bigint, 'purging again deletes nothing');
SELECT throws_ok($$SELECT publish.purge_jobs('-1 day')$$, '22023', NULL,
                 'purge_jobs with a negative interval: 22023');

SELECT test_helpers.let_go('creds') \g /dev/null
SELECT is(status, 'completed', 'let go, the kept queued job runs and completes')
  FROM test_helpers.wait_job(:'job_q', '20 s');
SELECT is(status, 'completed', '... after the kept running one') FROM publish.jobs WHERE id = :'job_r';

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug IN ('wait-one', 'purge-one', 'purge-two');
DELETE FROM publish.storage_targets WHERE env = 'tap-wait';

SELECT * FROM finish();
