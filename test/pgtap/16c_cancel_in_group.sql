-- 16c_cancel_in_group.sql: cancel_job() of a job that a worker claimed
-- together with others (job_claim) and has not started yet.
--
--   * three jobs queued at once are claimed by the two workers of the
--     database (each its share: one takes two, the other one), and every
--     worker is held in its first job's step 4 by the version's lock,
--     which another session (dblink) holds;
--   * the job that waits its turn behind another is cancelled: the worker
--     that holds it runs another job, so it is not interrupted (cancel_job
--     signals a worker only when it runs the cancelled job): the running
--     job goes on and runs once;
--   * let go: the cancelled job ends 'cancelled' (nothing published), the
--     two others complete, each once.
--
-- Environment tap-cig under :storage/cig.

DELETE FROM publish.projects WHERE slug LIKE 'cig-%';

SELECT plan(8);

SELECT :'storage' || '/cig' AS root \gset
SELECT publish.set_storage_target('tap-cig', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('cig-' || n, 3) FROM generate_series(1, 3) n \g /dev/null

-- the versions' locks (job_publish.c's lock_version), taken after step 3:
-- a job held there has logged its first steps, so running it again shows
SELECT test_helpers.hold('vlocks', $q$DO $$ BEGIN PERFORM pg_advisory_lock(1886741100, hashtext(v.id::text))
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug LIKE 'cig-%'; END $$$q$) \g /dev/null
CREATE TEMP TABLE cig AS
SELECT (publish.publish_version('cig-' || n, 1, 'tap-cig')).id FROM generate_series(1, 3) n;

-- every job claimed, the workers held in step 4
SELECT ok(test_helpers.wait_until($$(SELECT count(*) FROM publish.job_queue q JOIN cig USING (id)
                                       WHERE q.status = 'running') = 3$$)
          AND test_helpers.wait_worker_blocked(),
          'the three jobs are claimed, and the workers held before step 4 ends');

-- the job that waits its turn: of the two jobs one worker holds, the later
CREATE TEMP TABLE held AS
SELECT q.id, l.pid, row_number() OVER (PARTITION BY l.pid ORDER BY q.created_at, q.id) AS turn,
       count(*) OVER (PARTITION BY l.pid) AS n
  FROM publish.job_queue q JOIN cig USING (id)
  JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.classid = 1886741101 AND l.objsubid = 2
                 AND l.objid = (hashtext(q.id::text) & 4294967295)::bigint::oid
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
SELECT is((SELECT count(*) FROM held WHERE n = 2), 2::bigint,
          'one worker holds two of the jobs (its share of three), the other one');
SELECT id AS waiting FROM held WHERE n = 2 AND turn = 2 \gset
SELECT id AS current FROM held WHERE n = 2 AND turn = 1 \gset
SELECT id AS other FROM held WHERE n = 1 \gset

SELECT publish.cancel_job(:'waiting') \g /dev/null
SELECT pg_sleep(0.3);
SELECT test_helpers.let_go('vlocks') \g /dev/null

SELECT is(status, 'cancelled', 'the job cancelled while it waited its turn ends cancelled')
  FROM test_helpers.wait_job(:'waiting', '20 s');
SELECT is(status || coalesce(' ' || error, ''), 'completed',
          'the job that was running when the cancel came completes')
  FROM test_helpers.wait_job(:'current', '20 s');
SELECT is(status, 'completed', 'the other worker''s job completes')
  FROM test_helpers.wait_job(:'other', '20 s');
SELECT is(count(*), 1::bigint, '... the running job was recorded completed once')
  FROM publish.job_log WHERE job_id = :'current' AND message ~ '^Version marked published';
SELECT is(count(*), 1::bigint, '... and was not interrupted: it validated once, not again from its first step')
  FROM publish.job_log WHERE job_id = :'current' AND message ~ '^Validated';
SELECT ok(NOT EXISTS (SELECT 1 FROM publish.releases WHERE project = (SELECT p.slug FROM publish.projects p
            JOIN publish.job_queue q ON q.project_id = p.id WHERE q.id = :'waiting') AND env = 'tap-cig'),
          '... and nothing of the cancelled job is live');

SELECT * FROM finish();

DELETE FROM publish.projects WHERE slug LIKE 'cig-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-cig';
