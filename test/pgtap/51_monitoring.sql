-- 51_monitoring.sql: publish.stats, and the queries.yaml of
-- docs/monitoring.md for postgres_exporter.
--
--   - publish.stats has a row per job type, with the counts and durations
--     of the jobs it is shown (rows made here, in a transaction rolled
--     back);
--   - each query of the documentation's queries.yaml runs as a role that is
--     only a publish_viewer (what the exporter's role is given), and
--     returns exactly the columns its metrics name, in order, the LABEL
--     ones text and the GAUGE/COUNTER ones numbers.
--
-- Role tap_mon; project mon-one.

SET client_min_messages = warning;
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tap_mon') THEN
		DROP OWNED BY tap_mon CASCADE;
		DROP TABLE yaml_columns, yaml_queries;
DROP ROLE tap_mon;
	END IF;
END $$;
DELETE FROM publish.projects WHERE slug LIKE 'mon-%';

SELECT plan(12);

CREATE ROLE tap_mon NOLOGIN IN ROLE publish_viewer;
SELECT set_config('publish_test.docs', :'demo_dir' || '/../docs', false) \g /dev/null

-- ---------------------------------------------------------------------------
-- publish.stats
-- ---------------------------------------------------------------------------

BEGIN;
SELECT test_helpers.make_project('mon-one', 1) AS project_id \gset
-- no worker sees these rows: they are never committed
DELETE FROM publish.job_queue;
INSERT INTO publish.job_queue (job_type, status, project_id, env, created_at, started_at, completed_at)
SELECT 'publish', s, :'project_id', 'mon', now() - interval '2 hours' - n * interval '1 s',
       CASE WHEN s <> 'queued' THEN now() - interval '2 hours' END,
       CASE WHEN s IN ('completed', 'failed', 'cancelled') THEN now() - interval '2 hours' + n * interval '1 s' END
  FROM (VALUES (1, 'completed'), (2, 'completed'), (3, 'completed'), (4, 'failed'), (5, 'queued'), (6, 'running')) AS v(n, s);
INSERT INTO publish.job_queue (job_type, status, project_id, env, created_at, started_at, completed_at)
VALUES ('purge', 'completed', :'project_id', 'mon', now() - interval '2 days', now() - interval '2 days',
        now() - interval '2 days' + interval '10 s'),
       ('rollback', 'failed', :'project_id', 'mon', now() - interval '10 min', now() - interval '10 min',
        now() - interval '9 min');
SELECT is((SELECT array_agg(job_type ORDER BY job_type) FROM publish.stats),
          ARRAY['build_tiles', 'publish', 'purge', 'rollback'], 'publish.stats has a row per job type');
SELECT is((SELECT format('%s %s %s %s %s %s', queued, running, completed_last_hour, completed_last_day,
                         failed_last_day, cancelled_last_day)
             FROM publish.stats WHERE job_type = 'publish'),
          '1 1 0 3 1 0', 'publish: 1 queued, 1 running, 3 completed and 1 failed in the last day, none in the last hour');
SELECT ok((SELECT oldest_queued_seconds BETWEEN 7200 AND 7300 FROM publish.stats WHERE job_type = 'publish'),
          '... the queued one waiting some two hours');
SELECT is((SELECT format('%s %s %s', duration_p50_seconds, round(duration_p95_seconds::numeric, 2), durations_counted)
             FROM publish.stats WHERE job_type = 'publish'),
          '2.5 3.85 4', '... durations 1, 2, 3 and 4 s: median 2.5 s, p95 3.85 s, of 4 jobs');
SELECT is((SELECT format('%s %s %s', failed_last_hour, completed_last_day, durations_counted)
             FROM publish.stats WHERE job_type = 'rollback'), '1 0 1',
          'rollback: 1 failed in the last hour');
SELECT is((SELECT format('%s %s %s %s', queued, completed_last_day, duration_p50_seconds, durations_counted)
             FROM publish.stats WHERE job_type = 'purge'), '0 0 10 1',
          'purge: a job of two days ago counts in the durations, not in the last day');
SELECT is((SELECT format('%s %s %s %s', queued, oldest_queued_seconds, completed_last_day,
                         coalesce(duration_p50_seconds::text, 'null'))
             FROM publish.stats WHERE job_type = 'build_tiles'), '0 0 0 null',
          'build_tiles, without jobs: zeros, and no duration');
SELECT is(test_helpers.sqlstate_as('tap_mon', 'SELECT count(*) FROM publish.stats'), 'ok',
          'a publish_viewer may read publish.stats');
ROLLBACK;

-- ---------------------------------------------------------------------------
-- queries.yaml of docs/monitoring.md
-- ---------------------------------------------------------------------------

-- The YAML block after "## queries.yaml": per query, its SQL and its
-- metrics (column, usage) in order.
CREATE TEMP TABLE yaml_metrics (query text, n int, col text, usage text);
CREATE TEMP TABLE yaml_queries (query text PRIMARY KEY, sql text);
DO $$
DECLARE
	doc text := pg_read_file(current_setting('publish_test.docs') || '/monitoring.md');
	block text := substring(doc FROM '## queries.yaml[^\n]*\n.*?```yaml\n(.*?)```');
	line text;
	cur text;
	col text;
	n int := 0;
BEGIN
	FOREACH line IN ARRAY string_to_array(block, E'\n') LOOP
		IF line ~ '^[a-z_]+:$' THEN
			cur := rtrim(line, ':');
			n := 0;
		ELSIF line ~ '^  query: ' THEN
			INSERT INTO yaml_queries VALUES (cur, substring(line FROM '^  query: "(.*)"$'));
		ELSIF line ~ '^    - [a-z_0-9]+:$' THEN
			col := substring(line FROM '^    - ([a-z_0-9]+):$');
			n := n + 1;
		ELSIF line ~ '^        usage: ' THEN
			INSERT INTO yaml_metrics VALUES (cur, n, col, substring(line FROM 'usage: "([A-Z]+)"'));
		END IF;
	END LOOP;
END $$;
SELECT is((SELECT array_agg(query ORDER BY query) FROM yaml_queries),
          ARRAY['publish_jobs', 'publish_releases', 'publish_workers'], 'docs/monitoring.md has three queries');

-- Each query's columns and their types, run as tap_mon (a publish_viewer).
CREATE TEMP TABLE yaml_columns (query text, n int, col text, type regtype);
GRANT INSERT ON yaml_columns TO tap_mon;
GRANT SELECT ON yaml_queries TO tap_mon;
SET ROLE tap_mon;
DO $$
DECLARE
	q record;
BEGIN
	FOR q IN SELECT * FROM yaml_queries LOOP
		EXECUTE format('CREATE TEMP TABLE yaml_result AS %s', q.sql);
		INSERT INTO yaml_columns
		SELECT q.query, a.attnum, a.attname, a.atttypid::regtype
		  FROM pg_attribute a WHERE a.attrelid = 'pg_temp.yaml_result'::regclass AND a.attnum > 0;
		DROP TABLE yaml_result;
	END LOOP;
END $$;
RESET ROLE;
SELECT is((SELECT string_agg(format('%s.%s', query, col), ', ' ORDER BY query, n) FROM yaml_columns),
          (SELECT string_agg(format('%s.%s', query, col), ', ' ORDER BY query, n) FROM yaml_metrics),
          'each query, run as a publish_viewer, returns the columns its metrics name, in order');
SELECT is((SELECT string_agg(format('%s.%s %s', c.query, c.col, c.type), ', ')
             FROM yaml_columns c JOIN yaml_metrics m USING (query, n)
            WHERE (m.usage = 'LABEL') <> (c.type IN ('text'::regtype, 'name'::regtype))
               OR m.usage NOT IN ('LABEL', 'GAUGE', 'COUNTER')),
          NULL, '... LABEL columns are text, the GAUGE ones numbers');
SELECT is((SELECT count(*) FROM yaml_metrics WHERE query = 'publish_jobs'), 13::bigint,
          '... publish_jobs exports every column of publish.stats but durations_counted');

DROP TABLE yaml_columns, yaml_queries;
DROP ROLE tap_mon;
DELETE FROM publish.projects WHERE slug LIKE 'mon-%';
SELECT * FROM finish();
