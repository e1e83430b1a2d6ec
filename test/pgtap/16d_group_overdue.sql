-- 16d_group_overdue.sql: a publish of a group (jobs claimed together) is
-- recorded soon after it switched even when the job after it takes long.
--
--   * three jobs queued at once, each to an environment on the fault server
--     whose first two requests answer 503 (each retry, 100 ms then 200 ms
--     later, is a warn line written in a transaction of the job): one
--     worker claims two of them (its share), the other one;
--   * the first job of the pair switches release.json and waits for its
--     group; the second's retries take 300 ms more.  Past 50 ms the second
--     job's next transaction records the first (job_group.c), so the first
--     completes while the second still retries, not with it.
--
-- Environments tap-ovd-*.  Projects ovd-*.

DELETE FROM publish.projects WHERE slug LIKE 'ovd-%';

SELECT plan(4);

SELECT publish.set_storage_target('tap-ovd-' || n, :'fault_url' || '/fail503-2/ovd' || n)
  FROM generate_series(1, 3) n \g /dev/null
SELECT test_helpers.make_project('ovd-' || n, 3) FROM generate_series(1, 3) n \g /dev/null

CREATE TEMP TABLE ovd AS
SELECT (publish.publish_version('ovd-' || n, 1, 'tap-ovd-' || n)).id FROM generate_series(1, 3) n;

SELECT is(count(*) FILTER (WHERE status = 'completed'), 3::bigint, 'the three jobs complete')
  FROM ovd, LATERAL test_helpers.wait_job(ovd.id, '20 s');

-- the pair: the two jobs claimed by one worker (the pid of their first line)
CREATE TEMP TABLE pair AS
SELECT q.id, q.completed_at, substring(l.message FROM 'pid (\d+)') AS pid,
       row_number() OVER (PARTITION BY substring(l.message FROM 'pid (\d+)') ORDER BY q.created_at, q.id) AS turn,
       count(*) OVER (PARTITION BY substring(l.message FROM 'pid (\d+)')) AS n
  FROM publish.job_queue q JOIN ovd USING (id)
  JOIN publish.job_log l ON l.job_id = q.id AND l.message ~ '^Started by the publish worker';
SELECT is((SELECT count(*) FROM pair WHERE n = 2), 2::bigint,
          'one worker claimed two of the jobs together (its share of three)');
SELECT ok((SELECT count(*) FROM publish.job_log l JOIN pair p ON p.id = l.job_id
            WHERE p.n = 2 AND p.turn = 2 AND l.level = 'warn' AND l.message ~ 'retrying') = 2,
          'the second job of the pair retried twice');
SELECT cmp_ok((SELECT completed_at FROM pair WHERE n = 2 AND turn = 2)
              - (SELECT completed_at FROM pair WHERE n = 2 AND turn = 1),
              '>=', interval '50 ms',
              'the first job of the pair was recorded while the second still retried, not with it');

SELECT * FROM finish();

DELETE FROM publish.projects WHERE slug LIKE 'ovd-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-ovd-%';
