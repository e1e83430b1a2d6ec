-- 16b_publish_after_cancel.sql: asking again for a publish whose running job
-- was asked to cancel queues a new job (a doomed job is never the answer).
--
-- Uses the dblink helpers of test/pgtap/helpers/setup.sql.

DELETE FROM publish.projects WHERE slug = 'pac-one';
SELECT plan(4);

SELECT :'storage' || '/pac' AS root \gset
SELECT publish.set_storage_target('tap-pac', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('pac-one', 3) AS project_id \gset

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS j_run FROM publish.publish_version('pac-one', 1, 'tap-pac') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the job is held in step 1');
SELECT publish.cancel_job(:'j_run') \g /dev/null

-- The user changes their mind: publish version 1 after all.
SELECT id AS j_again FROM publish.publish_version('pac-one', 1, 'tap-pac') \gset
SELECT isnt(:'j_again'::uuid, :'j_run'::uuid,
            'asked again after a cancel, the publish is a new job (BUG: the cancelled job is returned)');
SELECT test_helpers.let_go('creds') \g /dev/null
SELECT test_helpers.wait_job(:'j_run', '20 s') \g /dev/null
SELECT is(status, 'completed', 'the publish asked for after the cancel completes')
  FROM test_helpers.wait_job(:'j_again', '20 s');
SELECT is(count(*), 1::bigint, 'version 1 is live')
  FROM publish.releases WHERE project = 'pac-one' AND env = 'tap-pac';

DELETE FROM publish.projects WHERE slug = 'pac-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-pac';
SELECT * FROM finish();
