-- 13_many.sql: 100 publishes in a row.  60 are committed one by one (each
-- commit wakes the worker, most while it is busy with an earlier job: no
-- wake-up may be lost), then 40 are queued by a single statement.  All
-- complete, one at a time, in the order they were created, and release.json
-- ends up as the last job wrote it.  Job i publishes version i (a repeated
-- request for a version already queued would return that job instead:
-- 15_concurrency.sql tests that).
--
-- Project many-one (versions 1-100); environment tap-many under :storage/many.

-- If an earlier run of 11_progress.sql died (a server crash) while holding
-- its prepared transactions, let them go: they would block the worker.
SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_prog\_%' AND database = current_database() \gexec

-- Leftovers of an earlier run that stopped half-way.
DELETE FROM publish.projects WHERE slug = 'many-one';

SELECT plan(14);

SELECT :'storage' || '/many' AS root \gset
SELECT publish.set_storage_target('tap-many', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('many-one', 5) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', n, 3) FROM generate_series(2, 100) AS n \g /dev/null
SELECT :'root' || '/tap-many/many-one' AS out_dir \gset

-- Job i publishes version i: the 100th publishes version 100.
DO $$
BEGIN
	FOR i IN 1..60 LOOP
		PERFORM publish.publish_version('many-one', i, 'tap-many');
		COMMIT;
	END LOOP;
END
$$;
SELECT count(*) FROM (SELECT publish.publish_version('many-one', i, 'tap-many')
                        FROM generate_series(61, 100) AS i) AS s \g /dev/null

CREATE TEMP TABLE many AS
SELECT row_number() OVER (ORDER BY created_at, id) AS n, id, created_at, version_id,
       (params->>'version_number')::int AS version
  FROM publish.job_queue
 WHERE params->>'project_slug' = 'many-one';
SELECT id AS last_job FROM many WHERE n = 100 \gset

SELECT is(count(*), 100::bigint, '100 jobs are queued') FROM many;
SELECT is(status, 'completed', 'the last one completes')
  FROM test_helpers.wait_job(:'last_job', '50 s');

CREATE TEMP TABLE ran AS
SELECT m.n, j.*
  FROM many m JOIN publish.jobs j USING (id);

SELECT is(count(*) FILTER (WHERE status = 'completed'), 100::bigint, 'all 100 jobs completed') FROM ran;
SELECT is(count(*) FILTER (WHERE status = 'failed'), 0::bigint, 'none failed') FROM ran;
SELECT ok(bool_and(progress = 100 AND attempts = 1 AND error IS NULL), 'each at 100%, on its first attempt, without error')
  FROM ran;
SELECT ok(bool_and(logs->-1->>'message' ~* 'completed' AND logs->-1->>'level' = 'info'),
          'each log ends with the completion') FROM ran;
SELECT is(count(*), 0::bigint, 'the jobs started in the order they were created')
  FROM (SELECT n, row_number() OVER (ORDER BY started_at) AS started FROM ran) AS s
 WHERE n <> started;
SELECT is(count(*), 0::bigint, 'one at a time: each started after the one before it completed')
  FROM (SELECT started_at, lag(completed_at) OVER (ORDER BY n) AS before FROM ran) AS s
 WHERE started_at < before;

SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'many-one' AND env = 'tap-many'$$,
	format($$VALUES (100, %L::uuid)$$, :'last_job'),
	'publish.releases shows the last job''s version');
SELECT is(pg_read_binary_file(:'out_dir' || '/release.json'),
          convert_to(publish.build_release('many-one', 100, 'tap-many', (result->>'published_at')::timestamptz)::text, 'UTF8'),
          'release.json is the one the last job built, byte for byte')
  FROM ran WHERE n = 100;
SELECT is(test_helpers.file_sha256(:'out_dir' || '/release.json'), result->>'release_sha256',
          'release.json has the last job''s checksum') FROM ran WHERE n = 100;
SELECT is(count(DISTINCT result->>'published_at'), 100::bigint, 'every job has its own published_at') FROM ran;
SELECT is(count(*) FILTER (WHERE status = 'published'), 100::bigint,
          'every version that was published is published')
  FROM publish.project_versions WHERE project_id = :'project_id';
SELECT is(pg_read_binary_file(:'out_dir' || '/releases/v100.json'),
          pg_read_binary_file(:'out_dir' || '/release.json'),
          'releases/v100.json is the live release.json');


-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'many-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-many';

SELECT * FROM finish();
