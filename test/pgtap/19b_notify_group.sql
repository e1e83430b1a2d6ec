-- 19b_notify_group.sql: notifications of jobs that a worker claimed
-- together (job_claim) and recorded in one commit (job_group_commit):
-- none may be lost, duplicated or reordered.
--
--   * four jobs queued in one transaction while the versions' locks
--     (job_publish.c's lock_version) are held by another session: the
--     database's two workers claim them two and two, and each is held in
--     its first job;
--   * let go: every job's notifications are, in order, running, each
--     step's progress as written (steps 2 and 3, held, are written before
--     the job waits for its version's lock), completed, once each, as for a
--     job alone (19_notify), the ends of a group coming from one commit.
--
-- Environment tap-ng under :storage/ng.

DELETE FROM publish.projects WHERE slug LIKE 'ng-%';

SELECT plan(7);

SELECT :'storage' || '/ng' AS root \gset
SELECT publish.set_storage_target('tap-ng', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('ng-' || n, 3) FROM generate_series(1, 4) n \g /dev/null

SELECT test_helpers.session_open('ng_listener') \g /dev/null
SELECT test_helpers.dblink_exec('ng_listener', 'LISTEN publish_jobs') \g /dev/null

SELECT test_helpers.hold('ng_vlocks', $q$DO $$ BEGIN PERFORM pg_advisory_lock(1886741100, hashtext(v.id::text))
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug LIKE 'ng-%'; END $$$q$) \g /dev/null
BEGIN;
CREATE TEMP TABLE ng AS
SELECT (publish.publish_version('ng-' || n, 1, 'tap-ng')).id FROM generate_series(1, 4) n;
COMMIT;

SELECT ok(test_helpers.wait_until($$(SELECT count(*) FROM publish.job_queue q JOIN ng USING (id)
                                       WHERE q.status = 'running') = 4$$)
          AND test_helpers.wait_worker_blocked(),
          'the four jobs are claimed together, and the workers held in their first jobs');
SELECT test_helpers.wait_until($$(SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                                   WHERE a.datname = current_database() AND a.application_name = 'publish worker'
                                     AND NOT l.granted) = 2$$) \g /dev/null
SELECT is(array_agg(q.progress ORDER BY q.progress), ARRAY[0, 0, 50, 50],
          '... the two waiting for their versions'' locks at 50 %: the steps they held were written before the wait')
  FROM publish.job_queue q JOIN ng USING (id);
SELECT test_helpers.let_go('ng_vlocks') \g /dev/null

SELECT is(count(*) FILTER (WHERE w.status = 'completed'), 4::bigint, 'the four jobs complete')
  FROM ng, test_helpers.wait_job(ng.id, '20 s') w;

-- everything sent by now has reached the listener's connection
CREATE TEMP TABLE got AS
SELECT n, sender, payload::jsonb AS p FROM test_helpers.collect_notifications('ng_listener', '^$', '1 s');
DELETE FROM got WHERE NOT (p->>'id')::uuid IN (SELECT id FROM ng);

SELECT is(count(*), 4::bigint,
          'each job''s notifications are, in order, running, each step''s progress as written, completed')
  FROM (SELECT p->>'id' AS id, string_agg(p->>'status' || ' ' || (p->>'progress'), ', ' ORDER BY n) AS seq
          FROM got GROUP BY 1) s
 WHERE seq ~ '^running 0, running 10, (running 30, )?(running 50, )?running 80, completed 100$';
SELECT is(count(*), count(DISTINCT p), '... none twice') FROM got;
SELECT ok(bool_and(sender IN (SELECT pid FROM pg_stat_activity WHERE application_name = 'publish worker')),
          '... all from the workers')
  FROM got;
SELECT is(count(DISTINCT sender), 2::bigint, '... which ran two each')
  FROM got;

SELECT test_helpers.session_close('ng_listener') \g /dev/null

DELETE FROM publish.projects WHERE slug LIKE 'ng-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-ng';

SELECT * FROM finish();
