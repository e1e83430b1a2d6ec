-- 32_postgrest.sql: PostgREST in front of schema publish, emulated request
-- by request (PostgREST cannot run here).  Per request: BEGIN ISOLATION
-- LEVEL READ COMMITTED READ WRITE (READ ONLY for GET), one set_config(...,
-- true) statement for search_path, role, request.jwt.claims, request.method,
-- request.path and request.headers, the call PostgREST generates, then
-- COMMIT or ABORT.  POST /rpc/publish_version unpacks the JSON body with
-- json_to_record() and calls the function with named arguments (a key left
-- out of the body is left out of the call, so its default applies); GET
-- /jobs?id=eq.X filters the view with the value untyped.  POST
-- /rpc/rollback (its version left out: the default), GET /release_history
-- and POST /rpc/retry_job too, POST /rpc/purge_releases and GET /stats.  Each SQLSTATE is mapped to its HTTP status
-- by PostgREST's rules (pgrst_test.http_status) and checked against the
-- table of docs/postgrest.md.
--
-- Roles tap_authenticator (LOGIN NOINHERIT), tap_web_anon, tap_web_viewer
-- (a publish_viewer), tap_web_admin (a publish_admin); schema pgrst_test;
-- project rest-*, environment tap-rest.  All dropped at the end.

SET client_min_messages = warning;
DO $$
DECLARE r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['tap_authenticator', 'tap_web_anon', 'tap_web_viewer', 'tap_web_admin'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DROP SCHEMA IF EXISTS pgrst_test CASCADE;
DELETE FROM publish.projects WHERE slug LIKE 'rest-%';

SELECT plan(124);

-- the role setup of docs/postgrest.md
CREATE ROLE tap_authenticator LOGIN NOINHERIT;
CREATE ROLE tap_web_anon NOLOGIN;
CREATE ROLE tap_web_viewer NOLOGIN IN ROLE publish_viewer;
CREATE ROLE tap_web_admin NOLOGIN IN ROLE publish_admin;
GRANT tap_web_anon, tap_web_viewer, tap_web_admin TO tap_authenticator;

SELECT :'storage' || '/rest' AS root \gset
SELECT publish.set_storage_target('tap-rest', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('rest-campus', 5) \g /dev/null
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 2, 'draft' FROM publish.projects WHERE slug = 'rest-campus';

-- ---------------------------------------------------------------------------
-- What PostgREST sends, and how it maps SQLSTATEs to HTTP
-- ---------------------------------------------------------------------------
CREATE SCHEMA pgrst_test;
GRANT USAGE ON SCHEMA pgrst_test TO PUBLIC;

-- PostgREST's mapping (docs: "Errors", SQLSTATE -> HTTP status)
CREATE FUNCTION pgrst_test.http_status(st text, anonymous boolean)
RETURNS int
LANGUAGE sql IMMUTABLE
AS $$
	SELECT CASE
	       WHEN st IS NULL THEN 200
	       WHEN st ~ '^PT[0-9]{3}$' THEN substr(st, 3)::int
	       WHEN st = '42501' THEN CASE WHEN anonymous THEN 401 ELSE 403 END
	       WHEN st IN ('23503', '23505') THEN 409
	       WHEN st = '25006' THEN 405
	       WHEN st IN ('42883', '42P01') THEN 404
	       WHEN st = 'P0001' THEN 400
	       WHEN st ~ '^(08|53)' THEN 503
	       WHEN st ~ '^(0L|0P|28)' THEN 403
	       WHEN st ~ '^(09|25|2D|38|39|3B|40|54|55|57|58|F0|HV|P0|XX)' OR st = '42P17' THEN 500
	       ELSE 400 END
$$;

-- POST /rpc/<fn> with a JSON body: the statement PostgREST generates, with
-- the body as parameter $1.  argdefs are the function's parameters; only
-- those that are keys of the body are unpacked and passed.  scalar: the
-- function returns a scalar (json, say), which PostgREST selects as column
-- pgrst_scalar and aggregates alone, so that a json value is the body as it
-- is; otherwise the row is aggregated.
CREATE FUNCTION pgrst_test.rpc(fn text, body text, argdefs text[], scalar boolean DEFAULT false,
                               OUT r_ok boolean, OUT r_sqlstate text, OUT r_http int, OUT r_body text,
                               OUT r_message text)
LANGUAGE plpgsql
AS $$
DECLARE
	keys text[] := ARRAY(SELECT json_object_keys(body::json));
	cols text;
	names text;
	call_args text;
	stmt text;
	total bigint;
	n bigint;
BEGIN
	SELECT string_agg(format('%I %s', split_part(d, ' ', 1), substr(d, strpos(d, ' ') + 1)), ', '),
	       string_agg(format('%I', split_part(d, ' ', 1)), ', '),
	       string_agg(format('%1$I := pgrst_body.%1$I', split_part(d, ' ', 1)), ', ')
	  INTO cols, names, call_args
	  FROM unnest(argdefs) AS d
	 WHERE split_part(d, ' ', 1) = ANY (keys);
	IF scalar THEN
		stmt := format($s$
			WITH pgrst_source AS (
				SELECT pgrst_call.pgrst_scalar
				  FROM (SELECT $1::json AS json_data) pgrst_payload,
				       LATERAL (SELECT %2$s FROM json_to_record(pgrst_payload.json_data) AS _(%1$s) LIMIT 1) pgrst_body,
				       LATERAL (SELECT "publish".%3$I(%4$s) pgrst_scalar) pgrst_call
			)
			SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total,
			       coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')::text AS body
			  FROM (SELECT %3$I.* FROM "pgrst_source" AS %3$I) _postgrest_t$s$,
			  cols, names, fn, call_args);
	ELSE
		stmt := format($s$
			WITH pgrst_source AS (
				SELECT pgrst_call.*
				  FROM (SELECT $1::json AS json_data) pgrst_payload,
				       LATERAL (SELECT %2$s FROM json_to_record(pgrst_payload.json_data) AS _(%1$s) LIMIT 1) pgrst_body,
				       LATERAL "publish".%3$I(%4$s) pgrst_call
			)
			SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total,
			       coalesce(json_agg(_postgrest_t)->0, 'null')::text AS body
			  FROM (SELECT "pgrst_source".* FROM "pgrst_source") _postgrest_t$s$,
			  cols, names, fn, call_args);
	END IF;
	BEGIN
		EXECUTE stmt INTO total, n, r_body USING body;
		r_ok := true;
	EXCEPTION WHEN OTHERS THEN
		r_ok := false;
		r_sqlstate := SQLSTATE;
		r_message := SQLERRM;
		r_body := NULL;
	END;
	r_http := pgrst_test.http_status(r_sqlstate, current_user = 'tap_web_anon');
	-- psql's \gset leaves a NULL unset: send '' for "none"
	r_sqlstate := coalesce(r_sqlstate, '');
	r_message := coalesce(r_message, '');
	r_body := coalesce(r_body, '');
END
$$;

-- GET /<view>?<col>=eq.<value>: the value goes as an untyped literal, as
-- PostgREST sends it (an unknown-typed parameter the server resolves).
CREATE FUNCTION pgrst_test.get(relation text, col text, val text,
                               OUT r_ok boolean, OUT r_sqlstate text, OUT r_http int, OUT r_body text,
                               OUT r_message text)
LANGUAGE plpgsql
AS $$
DECLARE
	stmt text := format($s$
		WITH pgrst_source AS (SELECT %1$I.%2$I.* FROM %1$I.%2$I WHERE %1$I.%2$I.%3$I = %4$s)
		SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total,
		       coalesce(json_agg(_postgrest_t), '[]')::text AS body
		  FROM (SELECT * FROM pgrst_source) _postgrest_t$s$,
		'publish', relation, col, quote_literal(val));
	total bigint;
	n bigint;
BEGIN
	BEGIN
		EXECUTE stmt INTO total, n, r_body;
		r_ok := true;
	EXCEPTION WHEN OTHERS THEN
		r_ok := false;
		r_sqlstate := SQLSTATE;
		r_message := SQLERRM;
	END;
	r_http := pgrst_test.http_status(r_sqlstate, current_user = 'tap_web_anon');
	-- psql's \gset leaves a NULL unset: send '' for "none"
	r_sqlstate := coalesce(r_sqlstate, '');
	r_message := coalesce(r_message, '');
	r_body := coalesce(r_body, '');
END
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgrst_test TO PUBLIC;

\set publish_args 'ARRAY[''slug text'', ''version integer'', ''env text'']'
\set anon_claims '{"role":"tap_web_anon"}'
\set viewer_claims '{"role":"tap_web_viewer","sub":"vera@example.com","exp":4102444800}'
\set admin_claims '{"role":"tap_web_admin","sub":"alice@example.com","exp":4102444800}'
SELECT count(*) AS jobs_before FROM publish.job_queue \gset
-- every (SQLSTATE, HTTP status) a request got, checked against docs/postgrest.md
CREATE TEMP TABLE pgrst_seen (sqlstate text, http int);

-- ---------------------------------------------------------------------------
-- Anonymous: 401
-- ---------------------------------------------------------------------------
\set role tap_web_anon
\set claims :anon_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous POST /rpc/publish_version: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_anon
\set claims :anon_claims
\set method GET
\set path /jobs
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('jobs', 'id', '00000000-0000-0000-0000-000000000000') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous GET /jobs: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_anon
\set claims :anon_claims
\set method GET
\set path /releases
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('releases', 'project', 'rest-campus') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous GET /releases: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);

-- ---------------------------------------------------------------------------
-- A viewer: can poll, cannot publish (403)
-- ---------------------------------------------------------------------------
\set role tap_web_viewer
\set claims :viewer_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'viewer POST /rpc/publish_version: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_viewer
\set claims :viewer_claims
\set method POST
\set path /rpc/set_storage_target
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('set_storage_target', '{"env":"tap-rest","url":"file:///tmp/x"}', ARRAY['env text','url text','options jsonb']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'viewer POST /rpc/set_storage_target: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_viewer
\set claims :viewer_claims
\set method GET
\set path /jobs
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('jobs', 'id', 'not-a-uuid') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22P02'::text, 'viewer GET /jobs?id=eq.not-a-uuid: SQLSTATE 22P02');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(count(*), :'jobs_before'::bigint, 'no request so far queued a job') FROM publish.job_queue;

-- ---------------------------------------------------------------------------
-- An admin: bad requests first (each ABORTed, no job), then a publish
-- ---------------------------------------------------------------------------
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST without env (the default, production, has no target here): SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":"three","env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22P02'::text, 'admin POST with a version that is not a number: SQLSTATE 22P02');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":99999999999,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22003'::text, 'admin POST with a version over 32 bits: SQLSTATE 22003');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":null,"version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22004'::text, 'admin POST with a null slug: SQLSTATE 22004');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"Rest Campus","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22023'::text, 'admin POST with a malformed slug: SQLSTATE 22023');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1,"env":"../../etc"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22023'::text, 'admin POST with env ../../etc: SQLSTATE 22023');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-nowhere","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST for an unknown project: SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":7,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST for an unknown version: SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":2,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT409'::text, 'admin POST for a draft: SQLSTATE PT409');
SELECT is(:r_http, 409, '... HTTP 409');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT ok(:'r_message' ~ 'version 2 of project "rest-campus" is draft', '... and the message says why');
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/set_storage_target
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('set_storage_target', '{"env":"tap-rest","url":"file:///tmp/elsewhere"}', ARRAY['env text','url text','options jsonb']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'admin POST /rpc/set_storage_target: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/set_storage_credentials
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('set_storage_credentials', '{"env":"tap-rest","key_id":"k","secret":"s"}', ARRAY['env text','key_id text','secret text']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'admin POST /rpc/set_storage_credentials: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method GET
\set path /rpc/publish_version
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '25006'::text, 'admin GET /rpc/publish_version (a read-only transaction): SQLSTATE 25006');
SELECT is(:r_http, 405, '... HTTP 405');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(count(*), :'jobs_before'::bigint, 'none of the refused requests queued a job') FROM publish.job_queue;
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/publish_version
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('publish_version', '{"slug":"rest-campus","version":1,"env":"tap-rest"}', :publish_args) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'admin POST /rpc/publish_version: no error');
SELECT is(:r_http, 200, '... HTTP 200');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT (:'r_body')::json->>'id' AS job_id \gset
SELECT is((:'r_body')::json->>'status', 'queued', 'the response is the queued job');
SELECT is(status, 'completed', 'the worker ran it after COMMIT') FROM test_helpers.wait_job(:'job_id');
\set role tap_web_viewer
\set claims :viewer_claims
\set method GET
\set path /jobs
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('jobs', 'id', :'job_id') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'viewer GET /jobs?id=eq.<job>: no error');
SELECT is(:r_http, 200, '... HTTP 200');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(json_array_length((:'r_body')::json), 1, '... one job');
SELECT is((:'r_body')::json->0->>'status', 'completed', '... completed');
SELECT is(((:'r_body')::json->0->>'progress')::int, 100, '... at 100%');
SELECT is((:'r_body')::json->0->>'created_by', 'tap_web_admin', '... created by the role PostgREST switched to, not the authenticator');
SELECT is((:'r_body')::json->0->'params'->>'requested_sub', 'alice@example.com', '... with the JWT sub');
SELECT ok(test_helpers.file_exists(:'root' || '/tap-rest/rest-campus/release.json'), 'release.json is on storage');
-- the preview of what was published: PostgREST sends build_release's json
-- as the response body, which is then the document the worker wrote
SELECT json_build_object('slug', 'rest-campus', 'version', 1, 'env', 'tap-rest', 'published_at', v.published_at)::text
       AS preview_body
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'rest-campus' AND v.version_number = 1 \gset
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/build_release
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('build_release', :'preview_body',
                             ARRAY['slug text', 'version integer', 'env text', 'published_at timestamptz'], true) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'admin POST /rpc/build_release: no error');
SELECT is(:r_http, 200, '... HTTP 200');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(convert_to(:'r_body', 'UTF8'), pg_read_binary_file(:'root' || '/tap-rest/rest-campus/release.json'),
          '... and the response body is byte for byte the release.json the worker wrote');
\set role tap_web_viewer
\set claims :viewer_claims
\set method GET
\set path /releases
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('releases', 'project', 'rest-campus') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'viewer GET /releases?project=eq.rest-campus: no error');
SELECT is(:r_http, 200, '... HTTP 200');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(((:'r_body')::json->0->>'version')::int, 1, '... version 1 is live');
\set role tap_web_admin
\set claims :admin_claims
\set method GET
\set path /storage_credentials
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('storage_credentials', 'env', 'tap-rest') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'admin GET /storage_credentials: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);

-- ---------------------------------------------------------------------------
-- Release history, rollback and retry
-- ---------------------------------------------------------------------------

-- version 3 of rest-campus published over version 1 (as the superuser), and
-- a publish that fails (its tiles are missing), to retry
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 3, 'ready' FROM publish.projects WHERE slug = 'rest-campus';
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
SELECT v.id, 'gate', 'marker', '{"type":"Point","coordinates":[13.4,52.5]}'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'rest-campus' AND v.version_number = 3;
SELECT id AS v3_job FROM publish.publish_version('rest-campus', 3, 'tap-rest') \gset
SELECT is(status, 'completed', 'rest-campus: version 3 is published over version 1') FROM test_helpers.wait_job(:'v3_job');
SELECT test_helpers.make_project('rest-failing', 3, true, 1) \g /dev/null
SELECT id AS failed_job FROM publish.publish_version('rest-failing', 1, 'tap-rest') \gset
SELECT is(status, 'failed', 'rest-failing: a publish whose tiles are missing fails') FROM test_helpers.wait_job(:'failed_job');

\set role tap_web_anon
\set claims :anon_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-campus","env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous POST /rpc/rollback: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_viewer
\set claims :viewer_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-campus","env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'viewer POST /rpc/rollback: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":null,"env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22004'::text, 'admin POST /rpc/rollback with a null slug: SQLSTATE 22004');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-nowhere","env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST /rpc/rollback for an unknown project: SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-campus","env":"tap-rest","version":2}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT409'::text, 'admin POST /rpc/rollback to a version never live there: SQLSTATE PT409');
SELECT is(:r_http, 409, '... HTTP 409');
SELECT ok(:'r_message' ~ 'version 2 of project "rest-campus" was never live in "tap-rest"', '... and the message says why');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-failing","env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT409'::text, 'admin POST /rpc/rollback with nothing live: SQLSTATE PT409');
SELECT is(:r_http, 409, '... HTTP 409');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(count(*), 0::bigint, 'none of the refused rollbacks queued a job') FROM publish.job_queue WHERE job_type = 'rollback';
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/rollback
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('rollback', '{"slug":"rest-campus","env":"tap-rest"}', ARRAY['slug text', 'env text', 'version integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'admin POST /rpc/rollback: no error');
SELECT is(:r_http, 200, '... HTTP 200');
SELECT (:'r_body')::json->>'id' AS rollback_job \gset
SELECT is((:'r_body')::json->>'job_type', 'rollback', '... the response is the queued rollback job');
SELECT is(status, 'completed', '... which the worker runs after COMMIT') FROM test_helpers.wait_job(:'rollback_job');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_viewer
\set claims :viewer_claims
\set method GET
\set path /release_history
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('release_history', 'project', 'rest-campus') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'viewer GET /release_history?project=eq.rest-campus: no error');
SELECT is(:r_http, 200, '... HTTP 200');
SELECT is(json_array_length((:'r_body')::json), 3, '... three changes: version 1, version 3, the rollback');
SELECT is(((:'r_body')::json->2->>'version')::int, 1, '... the last makes version 1 live again');
SELECT is(((:'r_body')::json->2->>'previous_version')::int, 3, '... after version 3');
SELECT is((:'r_body')::json->2->>'requested_by', 'tap_web_admin', '... asked for by the role PostgREST switched to');
SELECT is((:'r_body')::json->2->>'requested_sub', 'alice@example.com', '... with the JWT sub');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_anon
\set claims :anon_claims
\set method GET
\set path /release_history
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('release_history', 'project', 'rest-campus') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous GET /release_history: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT ok(test_helpers.file_sha256(:'root' || '/tap-rest/rest-campus/release.json') = test_helpers.file_sha256(:'root' || '/tap-rest/rest-campus/releases/v1.json'), 'release.json on storage is version 1''s again');
\set role tap_web_viewer
\set claims :viewer_claims
\set method POST
\set path /rpc/retry_job
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('retry_job', format('{"id":"%s"}', :'failed_job'), ARRAY['id uuid']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'viewer POST /rpc/retry_job: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/retry_job
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('retry_job', format('{"id":"%s"}', :'v3_job'), ARRAY['id uuid']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT409'::text, 'admin POST /rpc/retry_job of a completed job: SQLSTATE PT409');
SELECT is(:r_http, 409, '... HTTP 409');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/retry_job
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('retry_job', '{"id":"00000000-0000-0000-0000-000000000000"}', ARRAY['id uuid']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST /rpc/retry_job of an unknown job: SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/retry_job
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('retry_job', '{"id":"not-a-uuid"}', ARRAY['id uuid']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22P02'::text, 'admin POST /rpc/retry_job with an id that is not a uuid: SQLSTATE 22P02');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/retry_job
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('retry_job', format('{"id":"%s"}', :'failed_job'), ARRAY['id uuid']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'admin POST /rpc/retry_job of a failed job: no error');
SELECT is(:r_http, 200, '... HTTP 200');
SELECT (:'r_body')::json->>'id' AS retried_job \gset
SELECT is((:'r_body')::json->'params'->>'retry_of', :'failed_job', '... the response is the new job, which names the one it retries');
SELECT is((:'r_body')::json->'params'->>'requested_sub', 'alice@example.com', '... asked for by the JWT sub');
SELECT is(status, 'failed', '... which runs after COMMIT (and fails again: the tiles are still missing)') FROM test_helpers.wait_job(:'retried_job');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);

-- ---------------------------------------------------------------------------
-- Purge and queue statistics
-- ---------------------------------------------------------------------------
\set role tap_web_anon
\set claims :anon_claims
\set method POST
\set path /rpc/purge_releases
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('purge_releases', '{"slug":"rest-campus","env":"tap-rest"}', ARRAY['slug text', 'env text', 'keep integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous POST /rpc/purge_releases: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_viewer
\set claims :viewer_claims
\set method POST
\set path /rpc/purge_releases
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('purge_releases', '{"slug":"rest-campus","env":"tap-rest"}', ARRAY['slug text', 'env text', 'keep integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'viewer POST /rpc/purge_releases: SQLSTATE 42501');
SELECT is(:r_http, 403, '... HTTP 403');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/purge_releases
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('purge_releases', '{"slug":"rest-campus","env":"tap-rest","keep":0}', ARRAY['slug text', 'env text', 'keep integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '22023'::text, 'admin POST /rpc/purge_releases with keep 0: SQLSTATE 22023');
SELECT is(:r_http, 400, '... HTTP 400');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/purge_releases
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('purge_releases', '{"slug":"rest-nowhere","env":"tap-rest"}', ARRAY['slug text', 'env text', 'keep integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, 'PT404'::text, 'admin POST /rpc/purge_releases for an unknown project: SQLSTATE PT404');
SELECT is(:r_http, 404, '... HTTP 404');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);
SELECT is(count(*), 0::bigint, 'none of the refused purges queued a job') FROM publish.job_queue WHERE job_type = 'purge' AND env = 'tap-rest';
\set role tap_web_admin
\set claims :admin_claims
\set method POST
\set path /rpc/purge_releases
\set txmode 'READ WRITE'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.rpc('purge_releases', '{"slug":"rest-campus","env":"tap-rest","keep":1}', ARRAY['slug text', 'env text', 'keep integer']) \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'admin POST /rpc/purge_releases with keep 1: no error');
SELECT is(:r_http, 200, '... HTTP 200');
SELECT (:'r_body')::json->>'id' AS purge_job \gset
SELECT is((:'r_body')::json->>'job_type', 'purge', '... the response is the queued purge job');
SELECT is(status, 'completed', '... which the worker runs after COMMIT') FROM test_helpers.wait_job(:'purge_job');
SELECT is(result->'purged_versions'->0->>'version', '3', '... and which removed version 3, no longer live') FROM publish.jobs WHERE id = :'purge_job';
SELECT ok((pg_stat_file(:'root' || '/tap-rest/rest-campus/releases/v3.json', true)).size IS NULL
          AND (pg_stat_file(:'root' || '/tap-rest/rest-campus/releases/v1.json', true)).size IS NOT NULL,
          '... from storage, and left the live version 1');
\set role tap_web_viewer
\set claims :viewer_claims
\set method GET
\set path /stats
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('stats', 'job_type', 'purge') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '', 'viewer GET /stats?job_type=eq.purge: no error');
SELECT is(:r_http, 200, '... HTTP 200');
SELECT ok(((:'r_body')::json->0->>'completed_last_hour')::int >= 1, '... one purge or more completed in the last hour');
\set role tap_web_anon
\set claims :anon_claims
\set method GET
\set path /stats
\set txmode 'READ ONLY'
\ir helpers/pgrst_begin.sql
SELECT * FROM pgrst_test.get('stats', 'job_type', 'purge') \gset
\ir helpers/pgrst_end.sql
SELECT is(:'r_sqlstate'::text, '42501'::text, 'anonymous GET /stats: SQLSTATE 42501');
SELECT is(:r_http, 401, '... HTTP 401');
INSERT INTO pgrst_seen VALUES (:'r_sqlstate', :r_http);

-- ---------------------------------------------------------------------------
-- The documentation's table says the same: for each SQLSTATE seen, a row
-- of docs/postgrest.md's "Errors and HTTP statuses" lists it with the
-- status PostgREST gave.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE readme_rows AS
SELECT split_part(line, '|', 3) AS codes, split_part(line, '|', 4) AS statuses
  FROM regexp_split_to_table(
         substring(pg_read_file(:'demo_dir' || '/../docs/postgrest.md')
                   FROM '## [0-9. ]*Errors and HTTP statuses(.*?)\n## '), E'\n') AS line
 WHERE line ~ '^\| .*`[0-9A-Z]{5}`';
CREATE TEMP TABLE readme_pairs AS
SELECT c.code, h.status
  FROM readme_rows r,
       LATERAL (SELECT m[1] AS code, i FROM regexp_matches(r.codes, '`([0-9A-Z]{5})`', 'g') WITH ORDINALITY AS x(m, i)) AS c,
       LATERAL (SELECT m[1]::int AS status, i FROM regexp_matches(r.statuses, '([0-9]{3})', 'g') WITH ORDINALITY AS y(m, i)) AS h
 WHERE c.i = h.i
    OR (SELECT count(*) FROM regexp_matches(r.codes, '`([0-9A-Z]{5})`', 'g'))
       <> (SELECT count(*) FROM regexp_matches(r.statuses, '([0-9]{3})', 'g'));
SELECT ok((SELECT count(*) FROM readme_rows) >= 10, 'docs/postgrest.md has a table of SQLSTATEs and HTTP statuses');
SELECT is(array_agg(DISTINCT s.sqlstate || ' -> ' || s.http), NULL,
          'every SQLSTATE a request got is in the table of docs/postgrest.md with the HTTP status PostgREST gave')
  FROM pgrst_seen s
 WHERE s.sqlstate <> ''
   AND NOT EXISTS (SELECT 1 FROM readme_pairs p WHERE p.code = s.sqlstate AND p.status = s.http);

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'rest-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-rest';
DROP SCHEMA pgrst_test CASCADE;
DROP ROLE tap_authenticator;
DROP ROLE tap_web_anon;
DROP ROLE tap_web_viewer;
DROP ROLE tap_web_admin;

SELECT * FROM finish();
