-- 20_release_consistency.sql: release.json on storage and publish.releases
-- never disagree.  Step 5 writes {env}/{slug}/release.json, then records the
-- release; a version archived or deleted meanwhile must not go live.  The
-- worker holds a session advisory lock on the version from its last status
-- check until the release is recorded, and an archive waits for it.
--
-- Deterministic: a PREPAREd transaction archives version 2 and holds the
-- version's lock, so the worker waits before its last check; after COMMIT
-- PREPARED it sees the archive and fails without switching release.json.

SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_rc\_%' AND database = current_database() \gexec
DELETE FROM publish.projects WHERE slug = 'rc-one';

SELECT plan(6);

SELECT :'storage' || '/rc' AS root \gset
SELECT publish.set_storage_target('tap-rc', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('rc-one', 5) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) AS v2 \gset
SELECT :'root' || '/tap-rc/rc-one/release.json' AS live \gset

SELECT id AS job1 FROM publish.publish_version('rc-one', 1, 'tap-rc') \gset
SELECT is(status, 'completed', 'version 1 is live') FROM test_helpers.wait_job(:'job1');

\set ON_ERROR_STOP off
BEGIN;
UPDATE publish.project_versions SET status = 'archived' WHERE id = :'v2';
PREPARE TRANSACTION 'tap_rc_archive';
SELECT id AS job2 FROM publish.publish_version('rc-one', 2, 'tap-rc') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the worker reaches step 5 and waits for the version row');
COMMIT PREPARED 'tap_rc_archive';
\set ON_ERROR_STOP on

SELECT is(status, 'failed', 'version 2 was archived meanwhile: the job fails')
  FROM test_helpers.wait_job(:'job2');
SELECT results_eq($$SELECT version FROM publish.releases WHERE project = 'rc-one'$$, $$VALUES (1)$$,
                  'publish.releases still shows version 1');
SELECT is((test_helpers.read_json(:'live')->>'version')::int, 1,
          'release.json on storage still serves version 1');
SELECT is(test_helpers.read_json(:'live')->>'published_at', j.result->>'published_at',
          '... exactly as job 1 wrote it')
  FROM publish.jobs j WHERE j.id = :'job1';

DELETE FROM publish.projects WHERE slug = 'rc-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-rc';
SELECT * FROM finish();
