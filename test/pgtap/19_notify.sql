-- 19_notify.sql: every state or progress change of a job sends NOTIFY on
-- channel publish_jobs with the payload {"id", "status", "progress"}; a
-- job being queued does not (its commit would wait for PostgreSQL's NOTIFY
-- lock behind every other notifying commit).  Steps that follow each other
-- within 100 ms are written, and notified, together (job_step_reached).
--
-- A LISTEN in this session is not observable from SQL, so another session
-- (dblink) listens, and dblink_get_notify() reads what it received.
--
-- Project notify-one; environment tap-notify under :storage/notify.

DELETE FROM publish.projects WHERE slug = 'notify-one';

SELECT plan(15);

SELECT :'storage' || '/notify' AS root \gset
SELECT publish.set_storage_target('tap-notify', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('notify-one', 3) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) \g /dev/null

SELECT test_helpers.session_open('listener') \g /dev/null
SELECT test_helpers.dblink_exec('listener', 'LISTEN publish_jobs') \g /dev/null

-- ---------------------------------------------------------------------------
-- A job that completes.
-- ---------------------------------------------------------------------------

SELECT id AS job1 FROM publish.publish_version('notify-one', 1, 'tap-notify') \gset
SELECT is(status, 'completed', 'a job runs to completion') FROM test_helpers.wait_job(:'job1');

CREATE TEMP TABLE n1 AS
SELECT n, channel, sender, payload, payload::jsonb AS p
  FROM test_helpers.collect_notifications('listener', '"status" *: *"completed"', '5 s');
-- only this job's notifications (nothing else runs meanwhile, but be sure)
DELETE FROM n1 WHERE p->>'id' <> :'job1';

SELECT is(count(*) FILTER (WHERE channel <> 'publish_jobs'), 0::bigint,
          'every notification is on channel publish_jobs') FROM n1;
SELECT ok(bool_and(jsonb_typeof(p) = 'object' AND (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(p) AS k) = ARRAY['id', 'progress', 'status']),
          'every payload is a JSON object with exactly id, status and progress') FROM n1;
SELECT ok(bool_and(jsonb_typeof(p->'progress') = 'number' AND jsonb_typeof(p->'status') = 'string'),
          '... progress a number, status a string') FROM n1;
SELECT ok(bool_and(octet_length(payload) < 200), '... and small') FROM n1;
-- steps 2 and 3 (30 %, 50 %) come within 100 ms of step 1's write (a small
-- release, a file:// target, no tiles): they are written with step 4
SELECT matches(string_agg(p->>'status' || ' ' || (p->>'progress'), ', ' ORDER BY n),
               '^running 0, running 10, (running 30, )?(running 50, )?running 80, completed 100$',
               'one notification per change, in order: running, the steps'' progress as written, completed')
  FROM n1;
SELECT is(count(*) FILTER (WHERE p->>'status' = 'queued'), 0::bigint, 'none when the job was queued')
  FROM n1;
SELECT is(count(DISTINCT sender), 1::bigint, 'they come from one process...')
  FROM n1;
SELECT ok(sender IN (SELECT pid FROM pg_stat_activity WHERE application_name = 'publish worker'),
          '... a publish worker')
  FROM n1 WHERE p->>'status' = 'completed';

-- ---------------------------------------------------------------------------
-- Not at all before commit; one when a queued job is cancelled.
-- ---------------------------------------------------------------------------

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job_run FROM publish.publish_version('notify-one', 1, 'tap-notify') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'a job is held in step 1');
SELECT test_helpers.collect_notifications('listener', '"running"', '5 s') \g /dev/null

BEGIN;
SELECT id AS job_q FROM publish.publish_version('notify-one', 2, 'tap-notify') \gset
SELECT is(count(*), 0::bigint, 'nothing is sent before the transaction commits')
  FROM test_helpers.collect_notifications('listener', '.', '0.3 s');
COMMIT;
SELECT is(count(*), 0::bigint, 'nor at commit: a queued job is not announced (it waits behind the held one)')
  FROM test_helpers.collect_notifications('listener', '.', '0.5 s');
SELECT is(status, 'queued', '... and is queued') FROM publish.jobs WHERE id = :'job_q';

SELECT publish.cancel_job(:'job_q') \g /dev/null
CREATE TEMP TABLE n3 AS
SELECT n, payload::jsonb AS p FROM test_helpers.collect_notifications('listener', '"cancelled"', '5 s');
SELECT is(array_agg(p ORDER BY n), ARRAY[jsonb_build_object('id', :'job_q', 'status', 'cancelled', 'progress', 0)],
          'cancel_job of a queued job: one notification, cancelled') FROM n3;

-- A running job asked to cancel: notified when it stops.
SELECT publish.cancel_job(:'job_run') \g /dev/null
SELECT test_helpers.let_go('creds') \g /dev/null
CREATE TEMP TABLE n4 AS
SELECT n, payload::jsonb AS p FROM test_helpers.collect_notifications('listener', '"cancelled"', '10 s');
SELECT is((array_agg(p - 'progress' ORDER BY n DESC))[1], jsonb_build_object('id', :'job_run', 'status', 'cancelled'),
          'when it stops, the last notification says cancelled') FROM n4;

SELECT test_helpers.session_close('listener') \g /dev/null

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'notify-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-notify';

SELECT * FROM finish();
