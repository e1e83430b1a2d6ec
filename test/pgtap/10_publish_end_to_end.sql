-- 10_publish_end_to_end.sql: a publish through the real background worker,
-- from publish_version() to release.json on disk, then the same version to a
-- second environment, then a newer version.
--
-- Runs in autocommit: the worker only sees a job once it is committed.
-- Project e2e-one; environments tap-e2e and tap-e2e-stg under :storage/e2e.

-- If an earlier run of 11_progress.sql died (a server crash) while holding
-- its prepared transactions, let them go: they would block the worker.
SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_prog\_%' AND database = current_database() \gexec

-- Leftovers of an earlier run that stopped half-way.
DELETE FROM publish.projects WHERE slug = 'e2e-one';

SELECT plan(48);

SELECT :'storage' || '/e2e' AS root \gset
SELECT publish.set_storage_target('tap-e2e', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-e2e-stg', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_credentials('tap-e2e', 'e2e-key-id', 'e2e-secret-7f3a9') \g /dev/null
SELECT test_helpers.make_project('e2e-one', 7) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) \g /dev/null
SELECT :'root' || '/tap-e2e/e2e-one' AS prod_dir,
       :'root' || '/tap-e2e-stg/e2e-one' AS stg_dir \gset

-- ---------------------------------------------------------------------------
-- Publish version 1 to tap-e2e: the returned row is the queued job.
-- ---------------------------------------------------------------------------

BEGIN;
CREATE TEMP TABLE j1 AS SELECT * FROM publish.publish_version('e2e-one', 1, 'tap-e2e');
SELECT id AS job1 FROM j1 \gset
SELECT is(to_jsonb(j1), (SELECT to_jsonb(v) FROM publish.jobs v WHERE v.id = j1.id),
          'the row publish_version returns is the job as publish.jobs shows it') FROM j1;
COMMIT;

SELECT is(status, 'queued', 'publish_version returns the job, queued') FROM j1;
SELECT is(progress, 0, 'the new job is at 0%') FROM j1;
SELECT is(job_type, 'publish', 'its job_type is publish') FROM j1;
SELECT ok(started_at IS NULL AND completed_at IS NULL AND result IS NULL AND error IS NULL
          AND created_at IS NOT NULL,
          'the new job has created_at, and no started_at, completed_at, result or error') FROM j1;
SELECT ok(params @> '{"project_slug": "e2e-one", "version_number": 1, "target_env": "tap-e2e"}',
          'its params name the project, the version and the environment') FROM j1;
SELECT is(logs, '[]'::jsonb, 'the new job has an empty log') FROM j1;

-- The worker runs it once the statement above committed.
CREATE TEMP TABLE d1 AS SELECT * FROM test_helpers.wait_job(:'job1');

SELECT is(status, 'completed', 'the worker completes the job') FROM d1;
SELECT is(progress, 100, 'a completed job is at 100%') FROM d1;
SELECT is(error, NULL, 'a completed job has no error') FROM d1;
SELECT ok(started_at >= created_at AND completed_at >= started_at,
          'created_at <= started_at <= completed_at') FROM d1;
SELECT is(result->>'release_url', 'file://' || :'prod_dir' || '/release.json',
          'result.release_url is {target}/{env}/{slug}/release.json') FROM d1;
SELECT is((result->>'overlay_count')::int, 7, 'result.overlay_count counts the overlays') FROM d1;
SELECT is((d1.result->>'published_at')::timestamptz, v.published_at,
          'result.published_at is the version''s new published_at')
  FROM d1, publish.project_versions v
 WHERE v.project_id = :'project_id' AND v.version_number = 1;
SELECT is(v.status, 'published', 'the version is now published')
  FROM publish.project_versions v
 WHERE v.project_id = :'project_id' AND v.version_number = 1;

SELECT results_eq(
	$$SELECT project, version, env, release_url, job_id, published_at
	    FROM publish.releases WHERE project = 'e2e-one'$$,
	format($$SELECT 'e2e-one'::text, 1, 'tap-e2e'::text, %L::text, %L::uuid, (%L::jsonb->>'published_at')::timestamptz$$,
	       'file://' || :'prod_dir' || '/release.json', :'job1',
	       (SELECT result FROM d1)),
	'publish.releases has one row: the version live in tap-e2e, with the job');

-- The log: {timestamp, level, message} entries, one per step, in order.
SELECT is(jsonb_typeof(logs), 'array', 'logs is a JSON array') FROM d1;
SELECT ok(jsonb_array_length(logs) >= 5, 'there is a log entry for each of the five steps') FROM d1;
SELECT ok(bool_and(jsonb_typeof(e) = 'object' AND e ?& ARRAY['timestamp', 'level', 'message']
                   AND jsonb_typeof(e->'message') = 'string'),
          'every log entry is an object with timestamp, level and message')
  FROM d1, jsonb_array_elements(d1.logs) AS e;
SELECT is(array_agg(DISTINCT e->>'level'), ARRAY['info'], 'every log entry of a successful job is info')
  FROM d1, jsonb_array_elements(d1.logs) AS e;
SELECT ok(bool_and((e->>'timestamp')::timestamptz >= d1.started_at)
          AND bool_and(prev IS NULL OR (e->>'timestamp')::timestamptz > prev),
          'log timestamps are real timestamps after started_at, increasing')
  FROM d1, LATERAL (SELECT x.e, lag((x.e->>'timestamp')::timestamptz) OVER (ORDER BY x.i) AS prev
                      FROM jsonb_array_elements(d1.logs) WITH ORDINALITY AS x(e, i)) AS s;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs,
          ARRAY['^validated', '^built', '^uploaded', '^(tiles|no tileset)', 'completed'])),
          'the log covers validate, build, upload, tiles and completion, in that order') FROM d1;
SELECT is((SELECT array_agg((logs->(p - 1)->>'progress')::int ORDER BY i)
             FROM unnest(test_helpers.log_positions(logs,
                  ARRAY['^validated', '^built', '^uploaded', '^(tiles|no tileset)', 'completed']))
                  WITH ORDINALITY AS u(p, i)),
          ARRAY[10, 30, 50, 80, 100],
          'the steps reach 10%, 30%, 50%, 80% and 100%') FROM d1;
SELECT ok(logs->-1->>'message' ~* 'completed', 'the last log entry says the publish completed') FROM d1;

-- What landed on storage.
SELECT ok(test_helpers.file_exists(:'prod_dir' || '/release.json'),
          'release.json is at {root}/{env}/{slug}/release.json');
SELECT is(pg_read_binary_file(:'prod_dir' || '/release.json'),
          convert_to(publish.build_release('e2e-one', 1, 'tap-e2e', v.published_at)::text, 'UTF8'),
          'release.json is byte for byte what build_release() returns for the version''s published_at')
  FROM publish.project_versions v
 WHERE v.project_id = :'project_id' AND v.version_number = 1;
SELECT is(jsonb_build_object('slug', doc->'project'->>'slug', 'version', doc->'version',
                             'environment', doc->>'environment',
                             'overlays', jsonb_array_length(doc->'overlays'),
                             'assets', jsonb_array_length(doc->'assets'),
                             'published_at', doc->>'published_at'),
          jsonb_build_object('slug', 'e2e-one', 'version', 1, 'environment', 'tap-e2e',
                             'overlays', 7, 'assets', 2,
                             'published_at', (SELECT result->>'published_at' FROM d1)),
          'release.json names the project, version, environment, publish time and holds every overlay and asset')
  FROM (SELECT test_helpers.read_json(:'prod_dir' || '/release.json') AS doc) AS f;
SELECT is(test_helpers.file_sha256(:'prod_dir' || '/release.json'), result->>'release_sha256',
          'release.json has the sha256 the job reports') FROM d1;
SELECT is(pg_read_binary_file(:'prod_dir' || '/releases/v1.json'),
          pg_read_binary_file(:'prod_dir' || '/release.json'),
          'the immutable copy releases/v1.json has the same bytes');

SELECT ok(d1::text !~ 'e2e-secret-7f3a9' AND d1::text !~ 'e2e-key-id',
          'the target''s credentials appear nowhere in the job') FROM d1;
SELECT ok(convert_from(pg_read_binary_file(:'prod_dir' || '/release.json'), 'UTF8') !~ 'e2e-secret-7f3a9',
          '... nor in release.json');

-- ---------------------------------------------------------------------------
-- The same version to a second environment.
-- ---------------------------------------------------------------------------

SELECT id AS job2 FROM publish.publish_version('e2e-one', 1, 'tap-e2e-stg') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job2');

SELECT is(status, 'completed', 'the version publishes to a second environment') FROM d2;
SELECT is(result->>'release_url', 'file://' || :'stg_dir' || '/release.json',
          'its release_url is under the second environment') FROM d2;
SELECT results_eq(
	$$SELECT env, version, job_id FROM publish.releases WHERE project = 'e2e-one' ORDER BY env$$,
	format($$VALUES ('tap-e2e'::text, 1, %L::uuid), ('tap-e2e-stg', 1, %L::uuid)$$, :'job1', :'job2'),
	'publish.releases has one row per environment');
SELECT is(r.published_at, (d1.result->>'published_at')::timestamptz,
          'the first environment''s release keeps its published_at')
  FROM publish.releases r, d1
 WHERE r.project = 'e2e-one' AND r.env = 'tap-e2e';
SELECT is(v.published_at, (d2.result->>'published_at')::timestamptz,
          'the version''s published_at is that of its latest publish')
  FROM publish.project_versions v, d2
 WHERE v.project_id = :'project_id' AND v.version_number = 1;
SELECT is(pg_read_binary_file(:'stg_dir' || '/release.json'),
          convert_to(publish.build_release('e2e-one', 1, 'tap-e2e-stg', (d2.result->>'published_at')::timestamptz)::text, 'UTF8'),
          'the second environment''s release.json is build_release() for that environment, byte for byte')
  FROM d2;
SELECT is(test_helpers.file_sha256(:'prod_dir' || '/release.json'), d1.result->>'release_sha256',
          'the first environment''s release.json is untouched')
  FROM d1;

-- ---------------------------------------------------------------------------
-- Version 2 replaces version 1 in tap-e2e.
-- ---------------------------------------------------------------------------

SELECT id AS job3 FROM publish.publish_version('e2e-one', 2, 'tap-e2e') \gset
CREATE TEMP TABLE d3 AS SELECT * FROM test_helpers.wait_job(:'job3');

SELECT is(status, 'completed', 'version 2 publishes') FROM d3;
SELECT is((result->>'overlay_count')::int, 3, 'its overlay_count is that of version 2') FROM d3;
SELECT results_eq(
	$$SELECT env, version, job_id FROM publish.releases WHERE project = 'e2e-one' ORDER BY env$$,
	format($$VALUES ('tap-e2e'::text, 2, %L::uuid), ('tap-e2e-stg', 1, %L::uuid)$$, :'job3', :'job2'),
	'publish.releases now shows version 2 in tap-e2e, still version 1 in tap-e2e-stg');
SELECT is(pg_read_binary_file(:'prod_dir' || '/release.json'),
          convert_to(publish.build_release('e2e-one', 2, 'tap-e2e', (d3.result->>'published_at')::timestamptz)::text, 'UTF8'),
          'release.json is now version 2''s, byte for byte')
  FROM d3;
SELECT is((test_helpers.read_json(:'prod_dir' || '/release.json')->>'version')::int, 2,
          'release.json says version 2');
SELECT is(test_helpers.file_sha256(:'prod_dir' || '/releases/v1.json'), d1.result->>'release_sha256',
          'releases/v1.json still holds version 1''s document')
  FROM d1;
SELECT is(pg_read_binary_file(:'prod_dir' || '/releases/v2.json'),
          pg_read_binary_file(:'prod_dir' || '/release.json'),
          'releases/v2.json is the new release.json');
SELECT results_eq(
	format($$SELECT version_number, status FROM publish.project_versions
	          WHERE project_id = %L ORDER BY version_number$$, :'project_id'),
	$$VALUES (1, 'published'::text), (2, 'published'::text)$$,
	'both versions are published');
SELECT is(test_helpers.read_json(:'stg_dir' || '/release.json')->>'version', '1',
          'the second environment still serves version 1');

-- An asset's url is its storage path percent-encoded, as the storage
-- requests name the object; its path stays as stored.
UPDATE publish.assets a SET storage_path = 'assets/e2e one/plan #2 %41.png'
  FROM publish.project_versions v
 WHERE v.id = a.version_id AND v.project_id = :'project_id' AND v.version_number = 2 AND a.key = 'photo';
SELECT is(jsonb_build_object('path', e->>'path', 'url', e->>'url'),
          jsonb_build_object('path', 'assets/e2e one/plan #2 %41.png',
                             'url', 'file://' || :'root' || '/assets/e2e%20one/plan%20%232%20%2541.png'),
          'an asset''s url is its path percent-encoded (space, #, %)')
  FROM jsonb_array_elements((publish.build_release('e2e-one', 2, 'tap-e2e')::jsonb)->'assets') AS e
 WHERE e->>'key' = 'photo';

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'e2e-one';
DELETE FROM publish.storage_targets WHERE env IN ('tap-e2e', 'tap-e2e-stg');

SELECT * FROM finish();
