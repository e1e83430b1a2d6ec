-- 32_storage_faults.sql: remote storage that misbehaves.  The fault server
-- (test/servers/fault-server.js) answers 503 a few times, hangs, or drops
-- the connection mid-request; :down_url is a port where nothing listens.
-- test.sh sets publish.storage_max_attempts = 3, storage_retry_delay =
-- 100ms and storage_low_speed_time = 2s, so each case takes seconds.
--
-- Environments tap-fault-*.  Projects fault-*.

DELETE FROM publish.projects WHERE slug LIKE 'fault-%';

SELECT plan(25);

SELECT current_setting('publish.storage_max_attempts')::int AS max_attempts,
       extract(epoch FROM current_setting('publish.storage_low_speed_time')::interval)::int AS stall_s \gset

SELECT publish.set_storage_target('tap-fault-down', :'down_url' || '/maps') \g /dev/null
SELECT publish.set_storage_target('tap-fault-503', :'fault_url' || '/fail503-2/t503') \g /dev/null
SELECT publish.set_storage_target('tap-fault-hang', :'fault_url' || '/hang/thang') \g /dev/null
SELECT publish.set_storage_target('tap-fault-cut', :'fault_url' || '/cut/tcut') \g /dev/null
SELECT test_helpers.make_project('fault-one', 3) \g /dev/null

-- ---------------------------------------------------------------------------
-- Server down: every attempt is refused; each retry is a warn line.
-- ---------------------------------------------------------------------------

SELECT id AS job_down FROM publish.publish_version('fault-one', 1, 'tap-fault-down') \gset
CREATE TEMP TABLE down AS SELECT * FROM test_helpers.wait_job(:'job_down');
SELECT is(status, 'failed', 'server down: the job fails') FROM down;
SELECT ok(error ~ format('upload of tap-fault-down/fault-one/releases/v1.json failed on target "tap-fault-down" after %s attempts: could not connect', :max_attempts),
          'the error names the object and the target, counts the attempts and says the connection was refused') FROM down;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e
            WHERE e->>'level' = 'warn' AND e->>'message' ~ '^attempt \d of \d of the upload of .* could not connect.*retrying in'),
          :max_attempts - 1, 'each retry is a warn line of the job') FROM down;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs, ARRAY['^attempt 1 of', '^attempt 2 of'])),
          'the retries are logged in order') FROM down;

-- ---------------------------------------------------------------------------
-- 503 twice, then OK: retried, completed, two warn lines.
-- ---------------------------------------------------------------------------

SELECT id AS job_503 FROM publish.publish_version('fault-one', 1, 'tap-fault-503') \gset
CREATE TEMP TABLE s503 AS SELECT * FROM test_helpers.wait_job(:'job_503');
SELECT is(status, 'completed', '503 twice then OK: the job completes') FROM s503;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 2,
          'with two warn lines') FROM s503;
SELECT ok((SELECT bool_and(e->>'message' ~ '503 Service Unavailable: Service Unavailable \(request \d of 2 that fail\)')
             FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'),
          'each names the status and the first line of the body') FROM s503;
SELECT is(test_helpers.http_get(:'fault_url' || '/fail503-2/t503/tap-fault-503/fault-one/release.json'),
          convert_to(publish._release_document(v.id, 'tap-fault-503', v.published_at)::text, 'UTF8'),
          'release.json landed whole on the server')
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'fault-one';
SELECT is(e->>'progress', '30', 'the retries were logged while uploading (after step 2)')
  FROM s503, jsonb_array_elements(s503.logs) e WHERE e->>'level' = 'warn' LIMIT 1;

-- ---------------------------------------------------------------------------
-- A server that accepts the request and never answers: a timeout, within
-- publish.storage_low_speed_time per attempt.
-- ---------------------------------------------------------------------------

SELECT id AS job_hang FROM publish.publish_version('fault-one', 1, 'tap-fault-hang') \gset
CREATE TEMP TABLE hang AS SELECT * FROM test_helpers.wait_job(:'job_hang', '60 s');
SELECT is(status, 'failed', 'a hanging server: the job fails') FROM hang;
SELECT ok(error ~ 'timed out' AND error ~ 'target "tap-fault-hang"', 'with a timeout error naming the target') FROM hang;
SELECT cmp_ok(extract(epoch FROM completed_at - started_at)::numeric, '>=', (:max_attempts * :stall_s)::numeric,
              'each attempt waited publish.storage_low_speed_time') FROM hang;
SELECT cmp_ok(extract(epoch FROM completed_at - started_at)::numeric, '<', (:max_attempts * (:stall_s + 1) + 2)::numeric,
              '... and no longer (the configured time, plus the retry waits)') FROM hang;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'),
          :max_attempts - 1, 'a timeout is retried') FROM hang;

-- A cancel ends a hanging transfer at once: libcurl's progress callback sees
-- the interrupt flags (here a statement_timeout, in the worker a SIGTERM).
CREATE TEMP TABLE cancelled (sqlstate text, took interval);
SET statement_timeout = '300ms';
DO $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	PERFORM publish._storage_put('tap-fault-hang', 'cancel/x.json', '\x7b7d', 'application/json');
	INSERT INTO cancelled VALUES ('none', clock_timestamp() - t0);
EXCEPTION WHEN query_canceled THEN
	INSERT INTO cancelled VALUES (SQLSTATE, clock_timestamp() - t0);
END
$$;
RESET statement_timeout;
SELECT is(sqlstate, '57014', 'a cancel (statement_timeout) ends a transfer to a server that hangs') FROM cancelled;
SELECT cmp_ok(extract(epoch FROM took)::numeric, '<', 1.5, '... within a second of the cancel') FROM cancelled;

-- In the worker: pg_cancel_backend() on it while it waits for the hanging
-- server ends the transfer, and the job fails at once; the worker goes on.
SELECT id AS job_cancel FROM publish.publish_version('fault-one', 1, 'tap-fault-hang') \gset
SELECT test_helpers.wait_progress(:'job_cancel', 30) \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
SELECT clock_timestamp() AS t_cancel \gset
-- (the worker that runs the job says its pid in the job's first log line;
-- with several workers the others must not be the ones cancelled)
SELECT pg_cancel_backend(substring(logs->0->>'message' FROM 'pid ([0-9]+)')::int)
  FROM publish.jobs WHERE id = :'job_cancel' \g /dev/null
CREATE TEMP TABLE cj AS SELECT * FROM test_helpers.wait_job(:'job_cancel');
SELECT ok(status = 'failed' AND error ~ 'canceling statement due to user request',
          'pg_cancel_backend() on the worker fails the job in the middle of a transfer') FROM cj;
SELECT cmp_ok(extract(epoch FROM completed_at - :'t_cancel'::timestamptz)::numeric, '<', 1.5,
              '... within a second') FROM cj;

-- publish.cancel_job() on a job in the middle of a transfer: the worker is
-- interrupted when the cancel commits, and the job ends 'cancelled' (not
-- failed) within a second, nothing published, the worker going on.
SELECT id AS job_cancel2 FROM publish.publish_version('fault-one', 1, 'tap-fault-hang') \gset
SELECT test_helpers.wait_progress(:'job_cancel2', 30) \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
SELECT clock_timestamp() AS t_cancel2 \gset
SELECT status AS cancel2_status FROM publish.cancel_job(:'job_cancel2') \gset
CREATE TEMP TABLE cj2 AS SELECT * FROM test_helpers.wait_job(:'job_cancel2');
SELECT is(:'cancel2_status'::text, 'running', 'cancel_job() of a job in the middle of a transfer answers at once: still running');
SELECT ok(status = 'cancelled' AND cancel_requested,
          '... and the worker, interrupted at commit, ends it cancelled') FROM cj2;
SELECT cmp_ok(extract(epoch FROM completed_at - :'t_cancel2'::timestamptz)::numeric, '<', 1.5,
              '... within a second') FROM cj2;

-- ---------------------------------------------------------------------------
-- The connection is cut in the middle of the upload: retried, then failed,
-- and nothing half-published.
-- ---------------------------------------------------------------------------

SELECT id AS job_cut FROM publish.publish_version('fault-one', 1, 'tap-fault-cut') \gset
CREATE TEMP TABLE cut AS SELECT * FROM test_helpers.wait_job(:'job_cut');
SELECT is(status, 'failed', 'a connection cut mid-upload: the job fails') FROM cut;
SELECT ok(error ~ 'connection lost' AND error ~ format('after %s attempts', :max_attempts),
          'the error says the connection was lost, after every attempt') FROM cut;
SELECT is(test_helpers.http_get(:'fault_url' || '/ok/tcut/tap-fault-cut/fault-one/releases/v1.json'), NULL,
          'nothing was stored');
SELECT is((SELECT count(*)::int FROM publish.releases WHERE project = 'fault-one'), 1,
          'publish.releases has only the release that completed (on tap-fault-503)');

DELETE FROM publish.projects WHERE slug LIKE 'fault-%';

SELECT * FROM finish();
