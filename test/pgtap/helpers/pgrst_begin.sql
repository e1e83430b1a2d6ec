-- pgrst_begin.sql: the start of a request as PostgREST sends it, included
-- by 32_postgrest.sql with psql variables role, claims, method, path and
-- txmode (READ WRITE, or READ ONLY for GET).  The session is the
-- authenticator's (session_user, as under PostgREST); one statement of
-- set_config(..., true) switches the role and sets the request settings.
SET SESSION AUTHORIZATION tap_authenticator;
BEGIN ISOLATION LEVEL READ COMMITTED :txmode;
SELECT set_config('search_path', '"publish", "public"', true),
       set_config('role', :'role', true),
       set_config('request.jwt.claims', :'claims', true),
       set_config('request.method', :'method', true),
       set_config('request.path', :'path', true),
       set_config('request.headers', '{"host":"localhost:3000","accept":"application/json","content-type":"application/json"}', true)
\g /dev/null
