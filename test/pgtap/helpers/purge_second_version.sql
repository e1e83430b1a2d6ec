-- purge_second_version.sql: included by tests of purges that storage
-- answers badly, with psql variables slug and env (a project that
-- test_helpers.make_two_versions made for env).  Publishes versions 1 and
-- 2 (one test: both complete), then purges all but the live one and waits:
-- its job's row is the temporary table dp.
SELECT id AS d1 FROM publish.publish_version(:'slug', 1, :'env') \gset
SELECT id AS d2 FROM publish.publish_version(:'slug', 2, :'env') \gset
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n),
          ARRAY['completed', 'completed'], format('versions 1 and 2 of %s are published', :'slug'))
  FROM unnest(ARRAY[:'d1', :'d2']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT id AS dp FROM publish.purge_releases(:'slug', :'env', 1) \gset
CREATE TEMP TABLE dp AS SELECT * FROM test_helpers.wait_job(:'dp', '60 s');
