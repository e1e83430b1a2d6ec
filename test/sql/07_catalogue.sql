--
-- 07_catalogue: every object the install script makes, as the catalogue
-- describes it, in a database of its own (so that no other test's grants
-- or rows show).  The expected output was made from the install script
-- before it was reordered: any change a user could see (a name, an
-- argument, a default, a constraint, a privilege, a comment, a function's
-- body, volatility, security or settings) changes this output.  Bodies are
-- shown by their MD5; aclitems are sorted and the installing role is shown
-- as "owner".
--
\set regress_db :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS publish_regress_catalogue;
CREATE DATABASE publish_regress_catalogue;
\c publish_regress_catalogue
SET client_min_messages = warning;
CREATE EXTENSION publish;

CREATE FUNCTION pg_temp.acl(a aclitem[]) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT string_agg(regexp_replace(regexp_replace(i::text,
	                                                '^' || current_user || '=', 'owner='),
	                                 '/' || current_user || '$', '/owner'),
	                  ' ' ORDER BY i::text COLLATE "C")
	  FROM unnest(a) AS i
$$;

-- what the extension owns, by catalogue
SELECT d.classid::regclass AS catalogue, count(*)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND e.extname = 'publish'
 GROUP BY 1 ORDER BY d.classid::regclass::text COLLATE "C";

-- the extension and its schema
SELECT e.extversion, e.extrelocatable, e.extnamespace::regnamespace AS schema,
       pg_temp.acl(n.nspacl) AS schema_acl,
       obj_description(n.oid, 'pg_namespace') AS schema_comment
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'publish';
SELECT c.table_name, c.condition
  FROM pg_extension e,
       unnest(e.extconfig::regclass[], e.extcondition) AS c(table_name, condition)
 WHERE e.extname = 'publish'
 ORDER BY c.table_name::text COLLATE "C";

-- relations
SELECT c.relname, c.relkind, c.relpersistence, c.reloptions,
       pg_temp.acl(c.relacl) AS acl,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace
 ORDER BY c.relname COLLATE "C";

-- columns
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(ad.adbin, ad.adrelid) AS default,
       a.attidentity AS identity, a.attgenerated AS generated,
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation END AS collation,
       pg_temp.acl(a.attacl) AS acl,
       col_description(c.oid, a.attnum) AS comment
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind IN ('r', 'v', 'p')
 ORDER BY c.relname COLLATE "C", a.attnum;

-- constraints
SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) AS definition,
       k.condeferrable, k.condeferred, k.convalidated,
       obj_description(k.oid, 'pg_constraint') AS comment
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE c.relnamespace = 'publish'::regnamespace
 ORDER BY c.relname COLLATE "C", k.conname COLLATE "C";

-- indexes
SELECT c.relname AS table_name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'publish'::regnamespace
 ORDER BY c.relname COLLATE "C", i.indexrelid::regclass::text COLLATE "C";

-- triggers (not those of foreign keys)
SELECT c.relname, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid) AS definition
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'publish'::regnamespace AND NOT t.tgisinternal
 ORDER BY c.relname COLLATE "C", t.tgname COLLATE "C";

-- views
SELECT c.relname, pg_get_viewdef(c.oid, true) AS definition
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind = 'v'
 ORDER BY c.relname COLLATE "C";

-- sequences
SELECT s.seqrelid::regclass AS sequence, format_type(s.seqtypid, NULL) AS type,
       s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = 'publish'::regnamespace
 ORDER BY s.seqrelid::regclass::text COLLATE "C";

-- functions
SELECT p.oid::regprocedure AS function,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       l.lanname AS language, p.prokind AS kind, p.provolatile AS volatility,
       p.proisstrict AS strict, p.prosecdef AS security_definer,
       p.proleakproof AS leakproof, p.proparallel AS parallel,
       p.procost AS cost, p.prorows AS rows, p.proretset AS returns_set,
       p.proconfig AS config,
       pg_temp.acl(p.proacl) AS acl,
       CASE WHEN l.lanname = 'c' THEN p.probin || ':' || p.prosrc
            ELSE md5(p.prosrc) END AS body,
       obj_description(p.oid, 'pg_proc') AS comment
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'publish'::regnamespace
 ORDER BY p.oid::regprocedure::text COLLATE "C";

-- the roles the script makes, and how they are related
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
       r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
       shobj_description(r.oid, 'pg_authid') AS comment
  FROM pg_roles r
 WHERE r.rolname IN ('publish_admin', 'publish_viewer')
 ORDER BY r.rolname COLLATE "C";
SELECT m.roleid::regrole AS role, m.member::regrole AS member, m.admin_option
  FROM pg_auth_members m
 WHERE m.roleid::regrole::text IN ('publish_admin', 'publish_viewer')
   AND m.member::regrole::text IN ('publish_admin', 'publish_viewer')
 ORDER BY m.roleid::regrole::text COLLATE "C", m.member::regrole::text COLLATE "C";

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE publish_regress_catalogue;
