-- 43_rollback.sql: publish.release_history and publish.rollback on a
-- file:// target.
--
--   - each publish and rollback adds one row to the history: the version,
--     the one live before, the job, who asked, the document's sha256;
--   - rollback(slug, env) puts back the release live before the current
--     one (twice in a row: back and forth), rollback(slug, env, N) version
--     N's; release.json becomes a hard link to releases/vN.json, the
--     version's status is left alone;
--   - a copy missing or changed, or a tile missing, fails the job with
--     nothing changed; a failure after the switch puts the live release
--     back;
--   - every refusal at call time, with its SQLSTATE, writes nothing;
--   - admins may roll back, viewers read the history, nobody else either.
--
-- Projects rb-*, environments tap-rb and tap-rb-other; roles tap_rb_*.

SET client_min_messages = warning;
DO $$
DECLARE r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tap_rb_admin', 'tap_rb_viewer', 'tap_rb_nobody'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DELETE FROM publish.projects WHERE slug LIKE 'rb-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-rb%';
DROP TRIGGER IF EXISTS tap_rb_fail ON publish.live_releases;
DROP FUNCTION IF EXISTS public.tap_rb_fail();

SELECT plan(85);

CREATE ROLE tap_rb_admin NOLOGIN IN ROLE publish_admin;
CREATE ROLE tap_rb_viewer NOLOGIN IN ROLE publish_viewer;
CREATE ROLE tap_rb_nobody NOLOGIN;

SELECT :'storage' || '/rb' AS root \gset
SELECT :'root' || '/tap-rb/rb-one' AS dir \gset
SELECT publish.set_storage_target('tap-rb', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-rb-other', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('rb-one', 5, true, 2) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 7, true, 2) \g /dev/null
SELECT test_helpers.make_version(:'project_id', 3, 3) \g /dev/null
SELECT test_helpers.write_tiles(:'root', 'rb-one', 1) + test_helpers.write_tiles(:'root', 'rb-one', 2) \g /dev/null

-- the version live in tap-rb, as publish.releases says
CREATE FUNCTION pg_temp.live() RETURNS int LANGUAGE sql AS
$$ SELECT version FROM publish.releases WHERE project = 'rb-one' AND env = 'tap-rb' $$;
-- the history of rb-one in tap-rb, as "version previous type, ..."
CREATE FUNCTION pg_temp.history() RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(format('%s %s %s', version, coalesce(previous_version::text, '-'), job_type), ', ' ORDER BY id)
	  FROM publish.release_history WHERE project = 'rb-one' AND env = 'tap-rb' $$;

-- ---------------------------------------------------------------------------
-- Publishes, and their history
-- ---------------------------------------------------------------------------

SELECT id AS p1 FROM publish.publish_version('rb-one', 1, 'tap-rb') \gset
SELECT is(status, 'completed', 'version 1 is published') FROM test_helpers.wait_job(:'p1');
SELECT id AS p2 FROM publish.publish_version('rb-one', 2, 'tap-rb') \gset
SELECT is(status, 'completed', 'version 2 is published') FROM test_helpers.wait_job(:'p2');
SELECT test_helpers.file_sha256(:'dir' || '/releases/v1.json') AS sha1,
       test_helpers.file_sha256(:'dir' || '/releases/v2.json') AS sha2 \gset

SELECT is(pg_temp.history(), '1 - publish, 2 1 publish', 'the history has one row per publish, with the version live before');
SELECT is(array_agg(h.job_id ORDER BY h.id), ARRAY[:'p1', :'p2']::uuid[], '... each names its job')
  FROM publish.release_history h WHERE h.project = 'rb-one';
SELECT is(array_agg(h.release_sha256 ORDER BY h.id), ARRAY[:'sha1', :'sha2'],
          '... and the sha256 of the document it made live, as on storage')
  FROM publish.release_history h WHERE h.project = 'rb-one';
SELECT is(h.release_sha256, j.result->>'release_sha256', '... which is the job''s result''s')
  FROM publish.release_history h JOIN publish.jobs j ON j.id = h.job_id WHERE h.job_id = :'p2';
SELECT is(h.requested_by, current_user::text, '... who asked')
  FROM publish.release_history h WHERE h.job_id = :'p2';
SELECT is(h.published_at, v.published_at, '... and the published_at the document carries')
  FROM publish.release_history h JOIN publish.project_versions v ON v.id = h.version_id WHERE h.job_id = :'p2';
SELECT ok(h.changed_at BETWEEN j.started_at AND j.completed_at, '... and when it changed')
  FROM publish.release_history h JOIN publish.jobs j ON j.id = h.job_id WHERE h.job_id = :'p2';

-- ---------------------------------------------------------------------------
-- Rollbacks
-- ---------------------------------------------------------------------------

UPDATE publish.project_versions SET status = 'archived'
 WHERE project_id = :'project_id' AND version_number = 1;
SELECT id AS r1 FROM publish.rollback('rb-one', 'tap-rb') \gset
CREATE TEMP TABLE r1 AS SELECT * FROM test_helpers.wait_job(:'r1');
SELECT is(status, 'completed', 'rollback(slug, env) completes') FROM r1;
SELECT is(job_type, 'rollback', '... as a job of type rollback') FROM r1;
SELECT is(pg_temp.live(), 1, '... and version 1, live before 2, is live again');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), :'sha1', '... release.json is version 1''s document');
SELECT is(test_helpers.run(format('stat -c %%h %s', test_helpers.sh_quote(:'dir' || '/releases/v1.json'))), '2',
          '... a hard link to releases/v1.json, not a copy');
SELECT is(pg_temp.history(), '1 - publish, 2 1 publish, 1 2 rollback', '... the history has the rollback');
SELECT is((SELECT job_id FROM publish.releases WHERE project = 'rb-one' AND env = 'tap-rb'), :'r1'::uuid,
          '... publish.releases names the rollback''s job');
SELECT is((SELECT published_at FROM publish.releases WHERE project = 'rb-one' AND env = 'tap-rb'),
          (SELECT published_at FROM publish.release_history WHERE job_id = :'p1'),
          '... and the published_at of the document that is live again');
SELECT is(result->>'version', '1', '... its result names the version') FROM r1;
SELECT is(result->>'previous_version', '2', '... the one it replaced') FROM r1;
SELECT is(result->>'release_sha256', :'sha1', '... and the sha256 it checked') FROM r1;
SELECT is(result->>'tiles_checked', '4', '... after checking four tiles: the first of zooms 0, 1, 2, and the last') FROM r1;
SELECT is(status, 'archived', '... the version stays archived') FROM publish.project_versions
 WHERE project_id = :'project_id' AND version_number = 1;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs,
          ARRAY['Rolling back rb-one in tap-rb from version 2 to version 1', 'Checked tap-rb/rb-one/releases/v1.json',
                'Checked 4 tiles', 'Switching', 'Version 1 is live again'])), '... and logs each step')
  FROM r1;

SELECT id AS r2 FROM publish.rollback('rb-one', 'tap-rb') \gset
SELECT is(status, 'completed', 'a second rollback(slug, env) completes') FROM test_helpers.wait_job(:'r2');
SELECT is(pg_temp.live(), 2, '... and goes back to version 2, which was live before the first');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), :'sha2', '... release.json is version 2''s document');

-- version 2 published again: the release before it is still version 1
SELECT id AS p2b FROM publish.publish_version('rb-one', 2, 'tap-rb') \gset
SELECT is(status, 'completed', 'version 2 is published again') FROM test_helpers.wait_job(:'p2b');
SELECT test_helpers.file_sha256(:'dir' || '/releases/v2.json') AS sha2 \gset
SELECT id AS r3 FROM publish.rollback('rb-one', 'tap-rb') \gset
SELECT is(status, 'completed', 'rollback(slug, env) after it completes') FROM test_helpers.wait_job(:'r3');
SELECT is(pg_temp.live(), 1, '... and goes back to version 1, not to version 2''s earlier document');
SELECT is(pg_temp.history(), '1 - publish, 2 1 publish, 1 2 rollback, 2 1 rollback, 2 2 publish, 1 2 rollback',
          '... and the history has every change');

-- ---------------------------------------------------------------------------
-- What is on storage is checked first: a copy missing or changed, a tile
-- missing, fail the job and change nothing
-- ---------------------------------------------------------------------------

CREATE TEMP VIEW live_state AS
SELECT (SELECT string_agg(format('%s %s %s', version, job_id, published_at), ',') FROM publish.releases
         WHERE project = 'rb-one') AS releases,
       (SELECT count(*) FROM publish.live_release_history) AS history,
       test_helpers.file_sha256(:'dir' || '/release.json') AS release_json;
CREATE TEMP TABLE state_before AS SELECT * FROM live_state;
SELECT pg_read_binary_file(:'dir' || '/releases/v2.json') AS v2_bytes \gset

SELECT test_helpers.remove_file(:'dir' || '/releases/v2.json') \g /dev/null
SELECT id AS f1 FROM publish.rollback('rb-one', 'tap-rb', 2) \gset
CREATE TEMP TABLE f1 AS SELECT * FROM test_helpers.wait_job(:'f1');
SELECT is(status, 'failed', 'a rollback whose copy is gone fails') FROM f1;
SELECT alike(error, 'tap-rb/rb-one/releases/v2.json is missing on target "tap-rb"%', '... saying so') FROM f1;
SELECT is((SELECT s::text FROM live_state s), (SELECT s::text FROM state_before s), '... and changes nothing');

SELECT test_helpers.write_file(:'dir' || '/releases/v2.json', convert_to('{"not": "the release"}', 'UTF8')) \g /dev/null
SELECT id AS f2 FROM publish.rollback('rb-one', 'tap-rb', 2) \gset
CREATE TEMP TABLE f2 AS SELECT * FROM test_helpers.wait_job(:'f2');
SELECT is(status, 'failed', 'a rollback whose copy changed fails') FROM f2;
SELECT alike(error, E'tap-rb/rb-one/releases/v2.json on target "tap-rb" is not the release that was live\nIts sha256 is %; publish.release_history recorded ' || :'sha2' || '%',
            '... saying which sha256 it found and which it expected') FROM f2;
SELECT is((SELECT s::text FROM live_state s), (SELECT s::text FROM state_before s), '... and changes nothing');
SELECT test_helpers.write_file(:'dir' || '/releases/v2.json', :'v2_bytes') \g /dev/null

SELECT test_helpers.remove_file(:'dir' || '/tiles/v2/2/3/3.png') \g /dev/null
SELECT id AS f3 FROM publish.rollback('rb-one', 'tap-rb', 2) \gset
CREATE TEMP TABLE f3 AS SELECT * FROM test_helpers.wait_job(:'f3');
SELECT is(status, 'failed', 'a rollback whose last tile is gone fails') FROM f3;
SELECT alike(error, 'tile tap-rb/rb-one/tiles/v2/2/3/3.png of version 2 is missing on target "tap-rb"%', '... naming the tile') FROM f3;
SELECT is((SELECT s::text FROM live_state s), (SELECT s::text FROM state_before s), '... and changes nothing');
SELECT test_helpers.write_file(:'dir' || '/tiles/v2/2/3/3.png', test_helpers.tile_bytes('rb-one', 2, 2, 3, 3)) \g /dev/null

-- a failure after the switch: the final transaction fails, and release.json
-- goes back to the live release
CREATE FUNCTION public.tap_rb_fail() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'tap: the final transaction fails'; END $$;
CREATE TRIGGER tap_rb_fail BEFORE UPDATE ON publish.live_releases
	FOR EACH ROW EXECUTE FUNCTION public.tap_rb_fail();
SELECT id AS f4 FROM publish.rollback('rb-one', 'tap-rb', 2) \gset
CREATE TEMP TABLE f4 AS SELECT * FROM test_helpers.wait_job(:'f4');
DROP TRIGGER tap_rb_fail ON publish.live_releases;
DROP FUNCTION public.tap_rb_fail();
SELECT is(status, 'failed', 'a rollback whose final transaction fails after the switch fails') FROM f4;
SELECT alike(error, 'tap: the final transaction fails%', '... with that error') FROM f4;
SELECT ok(logs::text ~ 'Put tap-rb/rb-one/release.json back to version 1', '... after putting the live release back')
  FROM f4;
SELECT is((SELECT s::text FROM live_state s), (SELECT s::text FROM state_before s), '... so that nothing changed');

SELECT id AS r4 FROM publish.rollback('rb-one', 'tap-rb', 2) \gset
SELECT is(status, 'completed', 'with the copy and the tile back, the rollback to version 2 completes')
  FROM test_helpers.wait_job(:'r4');
SELECT is(test_helpers.file_sha256(:'dir' || '/release.json'), :'sha2', '... release.json is version 2''s document');

-- ---------------------------------------------------------------------------
-- Refused at call time, with nothing written
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('rb-none') \g /dev/null
SELECT test_helpers.make_project('rb-first') \g /dev/null
SELECT id AS first FROM publish.publish_version('rb-first', 1, 'tap-rb') \gset
SELECT is(status, 'completed', 'rb-first: version 1 is published') FROM test_helpers.wait_job(:'first');
SELECT id AS other FROM publish.publish_version('rb-one', 3, 'tap-rb-other') \gset
SELECT is(status, 'completed', 'rb-one: version 3 is published to tap-rb-other') FROM test_helpers.wait_job(:'other');

CREATE TEMP VIEW fingerprint AS
SELECT md5(string_agg(r, E'\n' ORDER BY r)) AS rows
  FROM (SELECT 'j' || t::text AS r FROM publish.job_queue t
        UNION ALL SELECT 'l' || t.id::text FROM publish.job_log t
        UNION ALL SELECT 'r' || t::text FROM publish.live_releases t
        UNION ALL SELECT 'h' || t::text FROM publish.live_release_history t
        UNION ALL SELECT 'v' || t::text FROM publish.project_versions t) AS all_rows;
SELECT rows AS rows_before FROM fingerprint \gset

CREATE TEMP TABLE cases (n serial, sql text, expected text, what text);
INSERT INTO cases (sql, expected, what) VALUES
($c$SELECT publish.rollback(NULL, 'tap-rb')$c$, '22004', 'NULL slug'),
($c$SELECT publish.rollback('rb-one', NULL)$c$, '22004', 'NULL env'),
($c$SELECT publish.rollback(NULL, NULL, NULL)$c$, '22004', 'NULL everything'),
($c$SELECT publish.rollback('', 'tap-rb')$c$, '22023', 'empty slug'),
($c$SELECT publish.rollback('RB-ONE', 'tap-rb')$c$, '22023', 'upper-case slug'),
($c$SELECT publish.rollback('../rb-one', 'tap-rb')$c$, '22023', 'slug ../'),
($c$SELECT publish.rollback('rb-one''; DROP TABLE publish.projects; --', 'tap-rb')$c$, '22023', 'slug with a quote and --'),
($c$SELECT publish.rollback(repeat('a', 10 * 1024 * 1024), 'tap-rb')$c$, '22023', '10 MB slug'),
($c$SELECT publish.rollback('rb-one', repeat('a', 10 * 1024 * 1024))$c$, '22023', '10 MB env'),
($c$SELECT publish.rollback('rb-one', '../../etc')$c$, '22023', 'env ../../etc'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', 0)$c$, '22023', 'version 0'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', -1)$c$, '22023', 'a negative version'),
($c$SELECT publish.rollback('rb-nowhere', 'tap-rb')$c$, 'PT404', 'an unknown project'),
($c$SELECT publish.rollback('rb-one', 'tap-rb-nowhere')$c$, 'PT404', 'an environment without a target'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', 99)$c$, 'PT404', 'a version that does not exist'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', 2147483647)$c$, 'PT404', 'the largest version number'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', 2)$c$, 'PT409', 'the version that is live'),
($c$SELECT publish.rollback('rb-one', 'tap-rb', 3)$c$, 'PT409', 'a version never live in that environment (live in another)'),
($c$SELECT publish.rollback('rb-none', 'tap-rb')$c$, 'PT409', 'a project with nothing live'),
($c$SELECT publish.rollback('rb-none', 'tap-rb', 1)$c$, 'PT409', 'a version of a project with nothing live'),
($c$SELECT publish.rollback('rb-first', 'tap-rb')$c$, 'PT409', 'nothing live before the first release'),
($c$SELECT publish.rollback('rb-one', 'tap-rb-other')$c$, 'PT409', 'nothing live before, in the other environment');

SELECT is(test_helpers.sqlstate_as('tap_rb_admin', c.sql), c.expected, format('%s: %s', c.n, c.what))
  FROM cases c ORDER BY c.n;
SELECT is(rows, :'rows_before', 'none of the refused calls wrote anything') FROM fingerprint;

SELECT throws_like($$SELECT publish.rollback('rb-one', 'tap-rb', 3)$$,
                   'version 3 of project "rb-one" was never live in "tap-rb"',
                   'a version never live there: the message says so');
SELECT throws_like($$SELECT publish.rollback('rb-first', 'tap-rb')$$,
                   'nothing to roll back to: no version of project "rb-first" but 1 was live in "tap-rb"',
                   'nothing live before: the message says so');
SELECT throws_like($$SELECT publish.rollback('rb-none', 'tap-rb')$$,
                   'nothing of project "rb-none" is live in "tap-rb", so there is nothing to roll back',
                   'nothing live: the message says so');
SELECT throws_like($$SELECT publish.rollback(repeat('a', 100), 'tap-rb')$$,
                   'invalid project slug "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."',
                   'a long slug is cut in the message');

BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok($$SELECT publish.rollback('rb-one', 'tap-rb', 1)$$, '0A000', NULL,
                 'a rollback in REPEATABLE READ is refused (0A000)');
ROLLBACK;

-- asked twice while the first waits: one job
BEGIN;
SELECT id AS d1 FROM publish.rollback('rb-one', 'tap-rb', 1) \gset
SELECT id AS d2 FROM publish.rollback('rb-one', 'tap-rb', 1) \gset
SELECT is(:'d2'::uuid, :'d1'::uuid, 'the same rollback asked again while it waits is the same job');
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.sqlstate_as('tap_rb_viewer', $$SELECT publish.rollback('rb-one', 'tap-rb', 1)$$), '42501',
          'a viewer may not roll back');
SELECT is(test_helpers.sqlstate_as('tap_rb_nobody', $$SELECT publish.rollback('rb-one', 'tap-rb', 1)$$), '42501',
          'a role without publish roles may not roll back');
SELECT is(test_helpers.sqlstate_as('tap_rb_viewer', $$SELECT count(*) FROM publish.release_history$$), 'ok',
          'a viewer may read the history');
SELECT is(test_helpers.sqlstate_as('tap_rb_nobody', $$SELECT count(*) FROM publish.release_history$$), '42501',
          'a role without publish roles may not');
SELECT is(test_helpers.sqlstate_as('tap_rb_admin', $$SELECT count(*) FROM publish.live_release_history$$), '42501',
          'nobody reads the table under the view');
SELECT ok(NOT has_table_privilege('tap_rb_admin', 'publish.release_history', 'INSERT, UPDATE, DELETE, TRUNCATE'),
          'nor may an admin change the history');

SET ROLE tap_rb_admin;
SELECT id AS ra FROM publish.rollback('rb-one', 'tap-rb', 1) \gset
RESET ROLE;
SELECT is(status, 'completed', 'an admin may roll back') FROM test_helpers.wait_job(:'ra');
SELECT is(requested_by, 'tap_rb_admin', '... and the history says who asked')
  FROM publish.release_history WHERE job_id = :'ra';

-- the history goes with its project
DELETE FROM publish.projects WHERE slug = 'rb-first';
SELECT is(count(*), 0::bigint, 'deleting a project deletes its history')
  FROM publish.live_release_history h WHERE NOT EXISTS (SELECT 1 FROM publish.projects p WHERE p.id = h.project_id);

DELETE FROM publish.projects WHERE slug LIKE 'rb-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-rb%';
DROP ROLE tap_rb_admin;
DROP ROLE tap_rb_viewer;
DROP ROLE tap_rb_nobody;

SELECT * FROM finish();
