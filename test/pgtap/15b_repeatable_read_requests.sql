-- 15b_repeatable_read_requests.sql: publish_version() needs READ COMMITTED.
--
-- It puts each request after the ones other sessions committed before it
-- (a per-target lock, then a look at the queue).  With an older snapshot
-- (REPEATABLE READ, SERIALIZABLE) it could miss them: a job asked for again
-- would be returned although another version was asked for after it, or a
-- second queued job would collide with the first.  So it refuses, with
-- 0A000 (HTTP 400 behind PostgREST), and writes nothing.

DELETE FROM publish.projects WHERE slug = 'rr-one';

SELECT plan(5);

SELECT publish.set_storage_target('tap-rr', 'file://' || :'storage' || '/rr') \g /dev/null
SELECT test_helpers.make_project('rr-one', 3) AS project_id \gset
SELECT count(*) AS jobs_before FROM publish.job_queue \gset

BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok($$SELECT publish.publish_version('rr-one', 1, 'tap-rr')$$, '0A000',
                 'publish_version needs READ COMMITTED isolation',
                 'publish_version in REPEATABLE READ: 0A000');
ROLLBACK;

BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT throws_ok($$SELECT publish.publish_version('rr-one', 1, 'tap-rr')$$, '0A000',
                 'publish_version needs READ COMMITTED isolation',
                 'publish_version in SERIALIZABLE: 0A000');
ROLLBACK;

SELECT is(count(*), :'jobs_before'::bigint, 'no job was written') FROM publish.job_queue;

BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT lives_ok($$SELECT publish.publish_version('rr-one', 1, 'tap-rr')$$,
                'in READ COMMITTED it queues the job');
COMMIT;
SELECT is(status, 'completed', '... which completes')
  FROM test_helpers.wait_job((SELECT id FROM publish.job_queue q
                               WHERE q.params->>'project_slug' = 'rr-one'
                               ORDER BY created_at DESC LIMIT 1));

DELETE FROM publish.projects WHERE slug = 'rr-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-rr';

SELECT * FROM finish();
