-- 11_progress.sql: a poller sees a job move, and a job starts only once the
-- transaction that queued it commits.
--
-- To look at a running job without racing the worker, the test holds locks
-- the worker needs in PREPAREd transactions (which keep their locks after
-- this session moves on), and lets go of them one at a time:
--   tap_prog_s1  ACCESS EXCLUSIVE on publish.storage_credentials, read by the
--                worker in step 1 only (publish_version never reads it):
--                the job is claimed (running) but has done no step;
--   tap_prog_s5  a row lock on the version, which only step 5 (mark
--                published) updates: steps 1-4 are done and committed.
-- (A prepared transaction may not touch temporary tables, so no pgTAP call
-- runs inside them.)
--
-- Project prog-one, with tiles; environment tap-prog under :storage/prog.

-- If an earlier run of 11_progress.sql died (a server crash) while holding
-- its prepared transactions, let them go: they would block the worker.
SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_prog\_%' AND database = current_database() \gexec

-- Leftovers of an earlier run that stopped half-way.
DELETE FROM publish.projects WHERE slug = 'prog-one';

SELECT plan(32);

SELECT :'storage' || '/prog' AS root \gset
SELECT publish.set_storage_target('tap-prog', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('prog-one', 5, true) AS project_id \gset
SELECT test_helpers.write_tiles(:'root', 'prog-one', 1) \g /dev/null
SELECT id AS version_id FROM publish.project_versions
 WHERE project_id = :'project_id' AND version_number = 1 \gset
SELECT :'root' || '/tap-prog/prog-one' AS out_dir \gset

SELECT isnt(test_helpers.worker_pid(), NULL, 'this database has a publish worker');

-- ---------------------------------------------------------------------------
-- A job, stopped at each stage by a lock.
-- ---------------------------------------------------------------------------

-- Until both are let go, an error must not stop the script (that would leave
-- the locks held and the worker stuck): a failed statement shows up as a
-- missing test instead.
\set ON_ERROR_STOP off
BEGIN;
LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE;
PREPARE TRANSACTION 'tap_prog_s1';
BEGIN;
SELECT 1 FROM publish.project_versions WHERE id = :'version_id' FOR NO KEY UPDATE \g /dev/null
PREPARE TRANSACTION 'tap_prog_s5';

SELECT id AS job1 FROM publish.publish_version('prog-one', 1, 'tap-prog') \gset

-- Stage 1: claimed, held before its first step.
SELECT ok(test_helpers.wait_worker_blocked(), 'the worker picks up the job and waits for the first lock');
CREATE TEMP TABLE at_claim AS SELECT * FROM publish.jobs WHERE id = :'job1';
SELECT is(status, 'running', 'once claimed, a poller sees the job running') FROM at_claim;
SELECT is(progress, 0, '... at 0%') FROM at_claim;
SELECT ok(started_at IS NOT NULL AND completed_at IS NULL, '... with started_at and no completed_at') FROM at_claim;
SELECT is(jsonb_array_length(logs), 1, '... and one log entry') FROM at_claim;
SELECT ok(NOT test_helpers.file_exists(:'out_dir' || '/releases/v1.json'),
          'nothing is on storage before the first step');

ROLLBACK PREPARED 'tap_prog_s1';

-- Stage 2: steps 1 to 4 done, held before step 5.
CREATE TEMP TABLE at_80 AS SELECT * FROM test_helpers.wait_progress(:'job1', 80, '20 s');
SELECT ok(test_helpers.wait_worker_blocked(), 'the worker goes on and waits for the second lock');
SELECT is(status, 'running', 'after steps 1-4, a poller sees the job still running') FROM at_80;
SELECT is(progress, 80, '... at 80%') FROM at_80;
SELECT is(completed_at, NULL, '... not completed') FROM at_80;
SELECT is((SELECT array_agg((e->>'progress')::int ORDER BY i)
             FROM jsonb_array_elements(logs) WITH ORDINALITY AS x(e, i)),
          ARRAY[0, 10, 30, 50, 80],
          '... with a log entry for the claim and each of steps 1-4 (10%, 30%, 50%, 80%)') FROM at_80;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs,
          ARRAY['^validated', '^built', '^uploaded', '^tiles'])),
          '... validate, build, upload and tiles, in that order') FROM at_80;
SELECT is(v.status, 'ready', 'the version is not marked published before the last step')
  FROM publish.project_versions v WHERE v.id = :'version_id';
SELECT is(count(*), 0::bigint, 'publish.releases has no row before the last step')
  FROM publish.releases WHERE project = 'prog-one';
SELECT ok(test_helpers.file_exists(:'out_dir' || '/releases/v1.json'),
          'the versioned copy of release.json is uploaded by then');
SELECT is(count(*) FILTER (WHERE test_helpers.file_exists(
              format('%s/tiles/v1/%s/%s/%s.png', :'out_dir', t.z, t.x, t.y))),
          5::bigint, 'every tile is in place by then')
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
 WHERE s.version_id = :'version_id';

ROLLBACK PREPARED 'tap_prog_s5';
\set ON_ERROR_STOP on

-- Stage 3: done.
CREATE TEMP TABLE done1 AS SELECT * FROM test_helpers.wait_job(:'job1');
SELECT is(status, 'completed', 'released, the job completes') FROM done1;
SELECT is(progress, 100, '... at 100%') FROM done1;
SELECT is((SELECT array_agg((e->>'progress')::int ORDER BY i)
             FROM jsonb_array_elements(logs) WITH ORDINALITY AS x(e, i)),
          ARRAY[0, 10, 30, 50, 80, 100],
          '... its log shows every progress figure, 0 to 100') FROM done1;
SELECT is(count(DISTINCT l.xmin::text), 6::bigint,
          '... each entry written in a transaction of its own, as the step was reached')
  FROM publish.job_log l WHERE l.job_id = :'job1';
SELECT ok(bool_and(l.logged_at >= lag_at), '... each entry with the time it was reached, in order')
  FROM (SELECT logged_at, lag(logged_at, 1, '-infinity') OVER (ORDER BY id) AS lag_at
          FROM publish.job_log WHERE job_id = :'job1') l;
SELECT is(count(*), 0::bigint, 'no prepared transaction of this test is left')
  FROM pg_prepared_xacts WHERE gid LIKE 'tap_prog_%';

-- ---------------------------------------------------------------------------
-- An aborted transaction leaves no job.
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS job_aborted FROM publish.publish_version('prog-one', 1, 'tap-prog') \gset
ROLLBACK;
SELECT is(count(*), 0::bigint, 'a publish_version whose transaction aborts leaves no job')
  FROM publish.job_queue WHERE id = :'job_aborted';

-- ---------------------------------------------------------------------------
-- A job starts only after COMMIT, and the COMMIT wakes the worker.
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS job2 FROM publish.publish_version('prog-one', 1, 'tap-prog') \gset
SELECT pg_sleep(0.5) \g /dev/null
SELECT is(status, 'queued', 'half a second later, inside the transaction, the job is still queued')
  FROM publish.jobs WHERE id = :'job2';
SELECT is(started_at, NULL, '... and not started') FROM publish.jobs WHERE id = :'job2';
SELECT clock_timestamp() AS before_commit \gset
COMMIT;

CREATE TEMP TABLE done2 AS SELECT * FROM test_helpers.wait_job(:'job2', '20 s');
SELECT is(status, 'completed', 'once committed, the job runs and completes') FROM done2;
SELECT ok(started_at > :'before_commit'::timestamptz, 'it started after the transaction ended') FROM done2;
SELECT cmp_ok(started_at - :'before_commit'::timestamptz, '<', interval '3 s',
              'it started at once: the COMMIT woke the worker (the safety sweep runs every 30 s)')
  FROM done2;
SELECT is((result->>'tiles_skipped')::int, 5, 'the second publish found every tile already in place')
  FROM done2;
SELECT is(r.job_id, :'job2'::uuid, 'publish.releases names the latest job')
  FROM publish.releases r WHERE r.project = 'prog-one' AND r.env = 'tap-prog';

-- ---------------------------------------------------------------------------
-- Several jobs queued by one transaction all run (one wake-up, many jobs).
-- ---------------------------------------------------------------------------

CREATE TEMP TABLE batch AS
SELECT (publish.publish_version('prog-one', 1, 'tap-prog')).id AS id FROM generate_series(1, 3);
CREATE TEMP TABLE batch_done AS
SELECT j.* FROM batch b, LATERAL test_helpers.wait_job(b.id, '20 s') AS j;
SELECT is(count(*) FILTER (WHERE status = 'completed'), 3::bigint,
          'three jobs queued by one transaction all complete') FROM batch_done;

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'prog-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-prog';

SELECT * FROM finish();
