-- 44b_rollback_move_lost.sql: a rollback on a WebDAV server copies the
-- earlier release to a temporary name and MOVEs it over release.json.
-- When the MOVE is made but its answer is lost, the retry finds the
-- temporary gone (404): the switch happened, and the rollback completes.
-- The fault server's /moveloss mode (test/servers/fault-server.js) drops
-- the connection of the first MOVE it makes; /_requests/TAG lists what
-- reached it.
--
-- Environment tap-moveloss.  Project moveloss-one.

DELETE FROM publish.projects WHERE slug = 'moveloss-one';

SELECT plan(5);

SELECT :'fault_url' || '/moveloss/tml' AS root \gset
SELECT publish.set_storage_target('tap-moveloss', :'root') \g /dev/null
SELECT test_helpers.make_project('moveloss-one', 3) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) \g /dev/null

SELECT id AS p1 FROM publish.publish_version('moveloss-one', 1, 'tap-moveloss') \gset
SELECT status AS p1_status FROM test_helpers.wait_job(:'p1') \gset
SELECT id AS p2 FROM publish.publish_version('moveloss-one', 2, 'tap-moveloss') \gset
SELECT is(ARRAY[:'p1_status', (SELECT status FROM test_helpers.wait_job(:'p2'))],
          ARRAY['completed', 'completed'], 'versions 1 and 2 are published on the fault server');

SELECT id AS rb FROM publish.rollback('moveloss-one', 'tap-moveloss') \gset
CREATE TEMP TABLE rb AS SELECT * FROM test_helpers.wait_job(:'rb');

SELECT is(status, 'completed', 'a rollback whose MOVE was made but not answered completes') FROM rb;
SELECT is((SELECT count(*)::int
             FROM regexp_split_to_table(convert_from(test_helpers.http_get(:'fault_url' || '/_requests/tml'), 'UTF8'), E'\n') AS l
            WHERE l ~ '^MOVE /moveloss/tml/tap-moveloss/moveloss-one/release\.json\.'), 2,
          '... after its MOVE was sent twice');
SELECT is(test_helpers.http_get(:'root' || '/tap-moveloss/moveloss-one/release.json'),
          test_helpers.http_get(:'root' || '/tap-moveloss/moveloss-one/releases/v1.json'),
          '... release.json holds version 1''s document');
SELECT is((SELECT version FROM publish.releases WHERE env = 'tap-moveloss' AND project = 'moveloss-one'), 1,
          '... and publish.releases names version 1');

DELETE FROM publish.projects WHERE slug = 'moveloss-one';

SELECT * FROM finish();
