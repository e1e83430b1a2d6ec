--
-- 00_setup: create the extension, the helpers the other files use, and
-- show the objects the extension installs.
--
CREATE EXTENSION publish;

-- regress_try(sql): runs sql and returns 'ok', or 'SQLSTATE: message' of the
-- error it raised (so that expected output shows SQLSTATEs without the
-- nondeterministic DETAIL of a failing row, which holds generated uuids).
CREATE FUNCTION public.regress_try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- regress_try_full(sql): as regress_try, with the DETAIL and HINT lines.
CREATE FUNCTION public.regress_try_full(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
	                        det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
	       || CASE WHEN det <> '' THEN E'\nDETAIL: ' || det ELSE '' END
	       || CASE WHEN hnt <> '' THEN E'\nHINT: ' || hnt ELSE '' END;
END
$$;

SELECT regress_try('SELECT 1');
SELECT regress_try('SELECT 1/0');
SELECT regress_try_full('DO $$ BEGIN RAISE EXCEPTION ''boom'' USING ERRCODE = ''PT404'', DETAIL = ''d'', HINT = ''h''; END $$');

-- the extension
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'publish';

-- tables, views and sequences of schema publish
SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p')
 ORDER BY c.relname COLLATE "C";

-- functions of schema publish, with their arguments and result
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result, l.lanname AS language
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'publish'::regnamespace
 ORDER BY p.proname COLLATE "C", 2;

-- every object belongs to the extension
SELECT count(*) AS objects_not_in_extension
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')
   AND c.relkind IN ('r', 'v', 'S');

-- the views people poll: publish.jobs and publish.releases
SELECT column_name, data_type
  FROM information_schema.columns
 WHERE table_schema = 'publish' AND table_name = 'jobs'
 ORDER BY ordinal_position;

SELECT column_name, data_type
  FROM information_schema.columns
 WHERE table_schema = 'publish' AND table_name = 'releases'
 ORDER BY ordinal_position;

-- user data is dumped by pg_dump: the tables are in extconfig
SELECT t.dumped_table
  FROM pg_extension e, unnest(e.extconfig::regclass[]) AS t(dumped_table)
 WHERE e.extname = 'publish'
 ORDER BY t.dumped_table::text COLLATE "C";

-- secrets are not readable by PUBLIC
SELECT has_table_privilege('public', 'publish.storage_credentials', 'SELECT') AS public_can_read_secrets;

-- a fresh installation has no content, no targets and no jobs
SELECT (SELECT count(*) FROM publish.projects) AS projects,
       (SELECT count(*) FROM publish.storage_targets) AS targets,
       (SELECT count(*) FROM publish.job_queue) AS jobs,
       (SELECT count(*) FROM publish.releases) AS releases;
