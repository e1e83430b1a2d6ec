--
-- 02_publish_version_errors: publish.publish_version checks its input at
-- call time, with SQLSTATEs a PostgREST front end maps to HTTP statuses,
-- and creates no job when it refuses.  The successful calls run inside a
-- transaction that is rolled back, so the worker never sees their jobs.
--
INSERT INTO publish.projects (slug, name) VALUES ('pv-campus', 'Campus'), ('pv-empty', 'No versions');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT p.id, v.n, v.status
  FROM publish.projects p,
       (VALUES (1, 'ready'), (2, 'draft'), (3, 'archived'), (4, 'published'), (10, 'ready')) AS v(n, status)
 WHERE p.slug = 'pv-campus';
SELECT env, url FROM publish.set_storage_target('pv-staging', 'file:///srv/publish-regress/staging');

-- errors show the version id in a hint: hide it
CREATE FUNCTION pg_temp.try_publish(sql text) RETURNS text
LANGUAGE sql AS $$
	SELECT regexp_replace(regress_try_full(sql),
	                      '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<version id>', 'g')
$$;

SELECT count(*) AS jobs_before FROM publish.job_queue;

-- NULL arguments: 22004
SELECT pg_temp.try_publish($$SELECT publish.publish_version(NULL, 1, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', NULL, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, NULL)$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version(NULL, NULL, NULL)$$);

-- malformed slug, version or environment: 22023
SELECT pg_temp.try_publish($$SELECT publish.publish_version('Campus', 1, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('a b', 1, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('', 1, 'pv-staging')$$);
SELECT pg_temp.try_publish(format('SELECT publish.publish_version(%L, 1, %L)', repeat('a', 64), 'pv-staging')) LIKE '22023: invalid project slug%' AS slug_too_long;
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 0, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', -3, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, 'Staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, '../etc')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, '')$$);

-- unknown project, version or environment: PT404
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-nowhere', 1, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 5, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-empty', 1, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, 'qa')$$);
-- the default environment is production, which has no target yet
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1)$$);
-- no target at all
BEGIN;
DELETE FROM publish.storage_targets;
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 1, 'pv-staging')$$);
ROLLBACK;

-- a version that is not ready or published: PT409
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 2, 'pv-staging')$$);
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 3, 'pv-staging')$$);
-- checks run in order: project, version, environment, then state
SELECT pg_temp.try_publish($$SELECT publish.publish_version('pv-campus', 2, 'qa')$$);

-- none of these created a job
SELECT count(*) AS jobs_after_errors FROM publish.job_queue;

-- an error later in the caller's transaction takes the job with it
BEGIN;
SELECT status FROM publish.publish_version('pv-campus', 1, 'pv-staging');
SELECT 1 / 0;
ROLLBACK;
SELECT count(*) AS jobs_after_failed_transaction FROM publish.job_queue;

-- success: the new job, as a row of publish.jobs
SELECT set_storage_target.env FROM publish.set_storage_target('production', 'file:///srv/publish-regress/production');
BEGIN;
SELECT job_type, status, progress, params, result, error, logs, attempts, created_by,
       id IS NOT NULL AS has_id, created_at IS NOT NULL AS has_created_at,
       started_at, completed_at
  FROM publish.publish_version('pv-campus', 1, 'pv-staging');
-- a published version can be published again; env defaults to production
SELECT job_type, status, progress, params
  FROM publish.publish_version('pv-campus', 4);
-- named arguments, as PostgREST calls it
SELECT job_type, status, progress, params
  FROM publish.publish_version(slug => 'pv-campus', version => 10, env => 'pv-staging');
-- the queue knows the version and the environment of each job
SELECT j.job_type, j.status, v.version_number, j.env, j.params->>'target_env' AS target_env
  FROM publish.job_queue j JOIN publish.project_versions v ON v.id = j.version_id
 ORDER BY v.version_number;
SELECT count(*) AS jobs_in_transaction FROM publish.jobs;
-- publishing does not change the version yet: the worker does that
SELECT version_number, status, published_at FROM publish.project_versions v
  JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'pv-campus' ORDER BY version_number;
ROLLBACK;
SELECT count(*) AS jobs_after_rollback FROM publish.job_queue;

-- clean up
DELETE FROM publish.projects WHERE slug IN ('pv-campus', 'pv-empty');
DELETE FROM publish.storage_targets WHERE env IN ('pv-staging', 'production');
