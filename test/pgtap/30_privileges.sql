-- 30_privileges.sql: roles and least privilege.  publish_viewer reads,
-- publish_admin manages content and publishes, PUBLIC gets nothing, storage
-- targets and secrets are for superusers only; SECURITY DEFINER only where
-- needed, search_path pinned on every function (and in the worker), so
-- objects a user creates in a schema on the caller's search_path are never
-- used; jobs record the role that asked, not the definer.
--
-- Roles tap_sec_*, schema tap_mallory, project sec-*; all dropped at the end.

SET client_min_messages = warning;
DO $$
DECLARE r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tap_sec_admin', 'tap_sec_viewer', 'tap_sec_nobody', 'tap_mallory'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DROP SCHEMA IF EXISTS tap_mallory CASCADE;
DELETE FROM publish.projects WHERE slug LIKE 'sec-%';
ALTER DATABASE publish_tap RESET search_path;

SELECT plan(74);

CREATE ROLE tap_sec_admin NOLOGIN IN ROLE publish_admin;
CREATE ROLE tap_sec_viewer NOLOGIN IN ROLE publish_viewer;
CREATE ROLE tap_sec_nobody NOLOGIN;
CREATE ROLE tap_mallory NOLOGIN;

SELECT :'storage' || '/sec' AS root \gset
SELECT publish.set_storage_target('tap-sec', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_credentials('tap-sec', 'sec-key-id', 'sec-secret-8d1e4f') \g /dev/null
SELECT test_helpers.make_project('sec-campus', 5) \g /dev/null

-- ---------------------------------------------------------------------------
-- The roles and what PUBLIC has
-- ---------------------------------------------------------------------------

SELECT ok(EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'publish_admin' AND NOT rolcanlogin AND NOT rolsuper),
          'the extension made publish_admin, NOLOGIN');
SELECT ok(EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'publish_viewer' AND NOT rolcanlogin AND NOT rolsuper),
          'the extension made publish_viewer, NOLOGIN');
SELECT ok(pg_has_role('publish_admin', 'publish_viewer', 'MEMBER'), 'publish_admin is a publish_viewer');
SELECT ok(NOT has_schema_privilege('public', 'publish', 'USAGE') AND NOT has_schema_privilege('public', 'publish', 'CREATE'),
          'PUBLIC has no USAGE or CREATE on schema publish');
SELECT is(count(*), 0::bigint, 'PUBLIC has no privilege on any table, view or sequence of publish')
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace
   AND ((c.relkind IN ('r', 'v') AND has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))
        OR (c.relkind = 'S' AND has_sequence_privilege('public', c.oid, 'USAGE, SELECT, UPDATE')));
SELECT is(count(*), 0::bigint, 'PUBLIC cannot execute any function of publish')
  FROM pg_proc p WHERE p.pronamespace = 'publish'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT is(array_agg(p.proname::text ORDER BY p.proname), NULL::text[],
          'every function of publish pins search_path = pg_catalog, pg_temp, but the job queue''s C triggers and _jsonb_text_size')
  FROM pg_proc p WHERE p.pronamespace = 'publish'::regnamespace
   AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']
   AND p.oid NOT IN ('publish._notify_job_change()'::regprocedure, 'publish._wake_worker_on_queued()'::regprocedure,
                     'publish._jsonb_text_size(jsonb)'::regprocedure);
SELECT is(array_agg(p.proname || ' ' || l.lanname || ' ' || p.prosecdef::text || ' ' || p.prorettype::regtype::text
                    ORDER BY p.proname),
          ARRAY['_jsonb_text_size c false bigint', '_notify_job_change c false trigger', '_wake_worker_on_queued c false trigger'],
          '... which are C (they run no SQL and resolve no name) and run as the invoker')
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid IN ('publish._notify_job_change()'::regprocedure, 'publish._wake_worker_on_queued()'::regprocedure,
                 'publish._jsonb_text_size(jsonb)'::regprocedure);
SELECT is(array_agg(p.proname::text ORDER BY p.proname),
          ARRAY['build_tiles', 'cancel_job', 'publish_version', 'purge_jobs', 'purge_releases', 'retry_job', 'rollback',
                'set_storage_credentials', 'set_storage_target'],
          'only build_tiles, cancel_job, publish_version, purge_jobs, purge_releases, retry_job, rollback, set_storage_credentials and set_storage_target are SECURITY DEFINER')
  FROM pg_proc p WHERE p.pronamespace = 'publish'::regnamespace AND p.prosecdef;
SELECT ok(NOT has_function_privilege(r, 'publish._wake_worker_at_commit()', 'EXECUTE'),
          format('%s cannot call publish._wake_worker_at_commit()', r))
  FROM unnest(ARRAY['public', 'publish_viewer', 'publish_admin']) AS r;
SELECT ok(NOT has_table_privilege(r, 'publish.storage_credentials', 'SELECT')
          AND NOT has_column_privilege(r, 'publish.storage_credentials', 'secret', 'SELECT'),
          format('%s cannot read publish.storage_credentials', r))
  FROM unnest(ARRAY['publish_viewer', 'publish_admin']) AS r;

-- ---------------------------------------------------------------------------
-- A role without the grants, and a viewer
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.sqlstate_as('tap_sec_nobody', $$SELECT * FROM publish.jobs$$), '42501',
          'a role without a publish role cannot poll publish.jobs');
SELECT is(test_helpers.sqlstate_as('tap_sec_nobody', $$SELECT publish.publish_version('sec-campus', 1, 'tap-sec')$$), '42501',
          '... nor publish');

SELECT is(test_helpers.sqlstate_as('tap_sec_viewer', format('SELECT %s FROM publish.%s', c, t)), 'ok',
          format('a viewer can read publish.%s', t))
  FROM (VALUES ('jobs', 'id, status, progress, logs, created_by'), ('releases', '*'), ('release_history', '*'),
               ('projects', '*'),
               ('project_versions', '*'), ('assets', '*'), ('overlays', '*'), ('tilesets', '*'),
               ('tiles', '*')) AS v(t, c);
SELECT is(test_helpers.sqlstate_as('tap_sec_viewer', sql), '42501', what)
  FROM (VALUES
	($$SELECT publish.publish_version('sec-campus', 1, 'tap-sec')$$, 'a viewer cannot publish'),
	($$SELECT publish.build_tiles('sec-campus', 1, 'tap-sec')$$, 'a viewer cannot build tiles'),
	($$SELECT publish.build_release('sec-campus', 1, 'tap-sec')$$, 'a viewer cannot build a release'),
	($$SELECT publish.rollback('sec-campus', 'tap-sec')$$, 'a viewer cannot roll back'),
	($$SELECT publish.retry_job('00000000-0000-0000-0000-000000000000')$$, 'a viewer cannot retry a job'),
	($$INSERT INTO publish.projects (slug, name) VALUES ('sec-viewer', 'x')$$, 'a viewer cannot add content'),
	($$UPDATE publish.project_versions SET status = 'archived'$$, 'a viewer cannot change a version'),
	($$SELECT * FROM publish.storage_targets$$, 'a viewer cannot read the storage targets'),
	($$SELECT * FROM publish.storage_credentials$$, 'a viewer cannot read the secrets'),
	($$SELECT * FROM publish.job_queue$$, 'a viewer reads jobs only through publish.jobs')
  ) AS c(sql, what);

-- ---------------------------------------------------------------------------
-- An admin
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.sqlstate_as('tap_sec_admin', sql), 'ok', what)
  FROM (VALUES
	($$INSERT INTO publish.projects (slug, name) VALUES ('sec-admin', 'Made by an admin')$$, 'an admin adds a project'),
	($$INSERT INTO publish.project_versions (project_id, version_number, status)
	   SELECT id, 1, 'draft' FROM publish.projects WHERE slug = 'sec-admin'$$, '... and a version'),
	($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
	   SELECT v.id, 'gate', 'marker', '{"type":"Point","coordinates":[1,2]}'
	     FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'sec-admin'$$,
	 '... and an overlay'),
	($$UPDATE publish.project_versions v SET status = 'ready' FROM publish.projects p
	    WHERE p.id = v.project_id AND p.slug = 'sec-admin'$$, '... marks it ready'),
	($$SELECT * FROM publish.validate_version('sec-admin', 1)$$, '... validates it'),
	($$SELECT publish.build_release('sec-admin', 1, 'tap-sec')$$, '... previews its release'),
	($$SELECT env, url, options FROM publish.storage_targets$$, '... and reads the storage targets')
  ) AS c(sql, what);
SELECT is(test_helpers.sqlstate_as('tap_sec_admin', sql), '42501', what)
  FROM (VALUES
	($$SELECT secret FROM publish.storage_credentials$$, 'an admin cannot read the secrets'),
	($$SELECT count(*) FROM publish.storage_credentials$$, '... nor count them'),
	($$SELECT publish.set_storage_credentials('tap-sec', 'mine', 'mine')$$, '... nor set them'),
	($$SELECT publish.set_storage_target('tap-sec', 'file:///tmp/elsewhere')$$, '... nor set a storage target'),
	($$UPDATE publish.storage_targets SET url = 'file:///tmp/elsewhere'$$, '... nor change one'),
	($$DELETE FROM publish.storage_targets$$, '... nor delete one'),
	($$INSERT INTO publish.job_queue (job_type, env) VALUES ('publish', 'tap-sec')$$, '... nor queue a job behind publish_version''s back'),
	($$UPDATE publish.job_queue SET status = 'failed'$$, '... nor change a job'),
	($$DELETE FROM publish.live_releases$$, '... nor change what is live'),
	($$DELETE FROM publish.live_release_history$$, '... nor the history of it'),
	($$SELECT publish._wake_worker_at_commit()$$, '... nor call the worker''s wake-up'),
	($$TRUNCATE publish.projects$$, '... nor truncate content')
  ) AS c(sql, what);

-- ---------------------------------------------------------------------------
-- Who asked: the role PostgREST (or SET ROLE) switched to, not the definer
-- ---------------------------------------------------------------------------

BEGIN;
SET LOCAL ROLE tap_sec_admin;
SELECT set_config('request.jwt.claims', '{"role":"tap_sec_admin","sub":"alice@example.com"}', true) \g /dev/null
SELECT id AS job_admin FROM publish.publish_version('sec-admin', 1, 'tap-sec') \gset
COMMIT;
SELECT is(created_by, 'tap_sec_admin', 'a job records the role that asked (created_by), not the function''s owner')
  FROM publish.jobs WHERE id = :'job_admin';
SELECT is(params->>'requested_by', 'tap_sec_admin', '... in params.requested_by too')
  FROM publish.jobs WHERE id = :'job_admin';
SELECT is(params->>'requested_sub', 'alice@example.com', '... with the JWT sub when a request has one')
  FROM publish.jobs WHERE id = :'job_admin';
SELECT is(status, 'completed', 'the worker ran the admin''s job')
  FROM test_helpers.wait_job(:'job_admin');

BEGIN;
SELECT set_config('request.jwt.claims', 'not json', true) \g /dev/null
SELECT id AS job_su FROM publish.publish_version('sec-admin', 1, 'tap-sec') \gset
COMMIT;
SELECT ok(created_by = session_user AND NOT params ? 'requested_sub',
          'without SET ROLE the login role asked; claims that are not JSON are ignored')
  FROM publish.jobs WHERE id = :'job_su';
SELECT is(status, 'completed', '... and that job completes')
  FROM test_helpers.wait_job(:'job_su');

-- the secret never shows in what admins and viewers can read
SELECT is(count(*), 0::bigint, 'the secret is in no job row or log an admin can read')
  FROM publish.jobs WHERE jobs::text LIKE '%sec-secret-8d1e4f%';
SELECT is(count(*), 0::bigint, '... nor in a storage target')
  FROM publish.storage_targets WHERE storage_targets::text LIKE '%sec-secret-8d1e4f%';

-- ---------------------------------------------------------------------------
-- Hijacking: a user with CREATE on a schema on the caller's search_path
-- shadows pg_catalog's functions and operators.  None is ever called.
-- ---------------------------------------------------------------------------

CREATE SCHEMA tap_mallory AUTHORIZATION tap_mallory;
SET ROLE tap_mallory;
CREATE TABLE tap_mallory.calls (fn text, as_user text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON tap_mallory.calls TO PUBLIC;
GRANT USAGE ON SCHEMA tap_mallory TO PUBLIC;
CREATE FUNCTION tap_mallory.lower(t text) RETURNS text LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('lower', current_user); RETURN pg_catalog.lower(t); END $f$;
CREATE FUNCTION tap_mallory.length(t text) RETURNS int LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('length', current_user); RETURN pg_catalog.length(t); END $f$;
CREATE FUNCTION tap_mallory.btrim(t text) RETURNS text LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('btrim', current_user); RETURN pg_catalog.btrim(t); END $f$;
CREATE FUNCTION tap_mallory.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('jsonb_typeof', current_user); RETURN pg_catalog.jsonb_typeof(j); END $f$;
CREATE FUNCTION tap_mallory.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('=', current_user); RETURN pg_catalog.texteq(a, b); END $f$;
CREATE OPERATOR tap_mallory.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_mallory.texteq);
CREATE FUNCTION tap_mallory.textregexeq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('~', current_user); RETURN pg_catalog.textregexeq(a, b); END $f$;
CREATE OPERATOR tap_mallory.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_mallory.textregexeq);
CREATE FUNCTION tap_mallory.uuideq(a uuid, b uuid) RETURNS boolean LANGUAGE plpgsql AS
$f$ BEGIN INSERT INTO tap_mallory.calls (fn, as_user) VALUES ('uuid =', current_user); RETURN pg_catalog.uuid_eq(a, b); END $f$;
CREATE OPERATOR tap_mallory.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = tap_mallory.uuideq);
RESET ROLE;

-- the shadowing works on a caller that does not pin its search_path
SELECT is(test_helpers.sqlstate_as('tap_sec_admin', $$SELECT lower('X') = 'x'$$, 'tap_mallory, pg_catalog'), 'ok',
          'shadowing works on unpinned SQL ...');
SELECT ok(count(*) >= 2, '... (tap_mallory.lower and = were called)') FROM tap_mallory.calls;
DELETE FROM tap_mallory.calls;

SELECT is(test_helpers.sqlstate_as(r, sql, 'tap_mallory, pg_catalog, public'), 'ok', what)
  FROM (VALUES
	('tap_sec_admin', $$SELECT publish.publish_version('sec-admin', 1, 'tap-sec')$$,
	 'an admin publishes with a hostile search_path'),
	('tap_sec_admin', $$SELECT publish.build_release('sec-admin', 1, 'tap-sec')$$, '... previews'),
	('tap_sec_admin', $$SELECT * FROM publish.validate_version('sec-admin', 1)$$, '... validates'),
	('tap_sec_admin', $$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
	                    SELECT v.id, 'gate-2', 'marker', '{"type":"Point","coordinates":[1,2]}'
	                      FROM publish.project_versions v JOIN publish.projects p
	                        ON p.id OPERATOR(pg_catalog.=) v.project_id
	                     WHERE p.slug OPERATOR(pg_catalog.=) 'sec-admin'$$,
	 '... adds content (constraints and triggers run)'),
	('postgres', $$SELECT publish.set_storage_target('tap-sec', 'FILE://' || current_setting('publish_test.root'))$$,
	 'a superuser sets a target with a hostile search_path'),
	('postgres', $$SELECT publish.set_storage_credentials('tap-sec', 'sec-key-id', 'sec-secret-8d1e4f')$$,
	 '... and its credentials')
  ) AS c(r, sql, what)
   -- the target URL is read from a setting, so the statement is the same in every run
 WHERE set_config('publish_test.root', :'root', false) IS NOT NULL;
SELECT is(count(*), 0::bigint, 'none of the shadowing functions or operators was called by publish')
  FROM tap_mallory.calls;

DELETE FROM tap_mallory.calls;

-- The worker runs as a superuser: a search_path set on the database must
-- not reach it either.  Restart it with one, then run a job.
ALTER DATABASE publish_tap SET search_path = tap_mallory, pg_catalog, public;
SELECT test_helpers.worker_pid() AS old_worker \gset
SELECT pg_terminate_backend(:old_worker) \g /dev/null
SELECT id AS job_hostile_path FROM publish.publish_version('sec-campus', 1, 'tap-sec') \gset
SELECT is(status, 'completed', 'a worker started with a hostile database search_path completes a job')
  FROM test_helpers.wait_job(:'job_hostile_path', '60 s');
SELECT isnt(test_helpers.worker_pid(), :old_worker, '... (it is a new worker)');
ALTER DATABASE publish_tap RESET search_path;
SELECT is(array_agg(DISTINCT fn || ' as ' || as_user), NULL::text[],
          '... and it called none of the shadowing functions or operators')
  FROM tap_mallory.calls;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'sec-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-sec';
DROP SCHEMA tap_mallory CASCADE;
DROP ROLE tap_mallory;
DROP ROLE tap_sec_admin;
DROP ROLE tap_sec_viewer;
DROP ROLE tap_sec_nobody;

SELECT * FROM finish();
