--
-- 06_security: the roles and grants the extension makes, and the messages
-- of the checks against hostile input and oversized releases (their
-- SQLSTATEs, as seen by an admin and through PostgREST, are in
-- test/pgtap/3*_*.sql).
--

-- the roles
SELECT rolname, rolcanlogin, rolsuper, rolinherit
  FROM pg_roles WHERE rolname IN ('publish_admin', 'publish_viewer') ORDER BY rolname;
SELECT pg_has_role('publish_admin', 'publish_viewer', 'MEMBER') AS admin_is_viewer;

-- who may do what on each table and view (PUBLIC: nothing)
SELECT c.relname,
       array_to_string(ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
                              WHERE has_table_privilege('publish_viewer', c.oid, p)), ',') AS viewer,
       array_to_string(ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
                              WHERE has_table_privilege('publish_admin', c.oid, p)), ',') AS admin,
       array_to_string(ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
                              WHERE has_table_privilege('public', c.oid, p)), ',') AS public
  FROM pg_class c
 WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY c.relname COLLATE "C";

-- functions: who may execute them, which run as their owner
SELECT p.proname, p.prosecdef AS security_definer,
       has_function_privilege('publish_viewer', p.oid, 'EXECUTE') AS viewer,
       has_function_privilege('publish_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'publish'::regnamespace
 ORDER BY p.proname COLLATE "C";

-- storage URLs: credentials, control characters, encoded dot segments
SELECT url, regress_try_full(format('SELECT publish.set_storage_target(%L, %L)', 'sec-env', url)) AS result
  FROM unnest(ARRAY['file://user:secret@localhost/srv/maps',
                    'https://user:secret@example.com/maps',
                    E'file:///srv/maps\n',
                    'file:///srv/my maps',
                    'file:///srv/%2e%2e/etc',
                    'file:///srv/.%2E/etc',
                    'gopher://example.com/',
                    'dict://127.0.0.1:11211/']) AS url;
SELECT regress_try_full($$SELECT publish.set_storage_target('sec-env', 'file:///srv/maps', '{"public_url": "javascript:alert(1)"}')$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('sec-env', 'file:///srv/maps', '{"public_url": "https://u:p@cdn.example.com"}')$$);
-- long input is cut in messages
SELECT regress_try_full(format('SELECT publish.publish_version(%L, 1)', repeat('x', 100) || '!'));
SELECT length(regress_try_full(format('SELECT publish.set_storage_target(%L, %L)', 'sec-env', 'file:///' || repeat('a', 5000))));

-- content: which constraint refuses what
INSERT INTO publish.projects (slug, name) VALUES ('sec', 'Security');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'sec';
CREATE TEMP VIEW sec_v AS
SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'sec';
SELECT path, regress_try(format('INSERT INTO publish.assets (version_id, key, storage_path, byte_size, sha256) SELECT id, %L, %L, 1, repeat(''a'', 64) FROM sec_v',
                                'k' || n, path)) AS result
  FROM unnest(ARRAY['../../etc/passwd', '/etc/passwd', 'file:///etc/passwd', 'c:/windows', 'a/%2e%2e/b',
                    'a/./b', 'a//b', 'a\b', E'a\tb', 'a/..b/c..d/e.png', 'a/%41/b.png']) WITH ORDINALITY AS t(path, n);
SELECT key, regress_try(format('INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, %L, %L, %L FROM sec_v',
                               key, 'marker', '{"type":"Point","coordinates":[1,2]}')) AS result
  FROM unnest(ARRAY['../x', 'a/b', 'x''--', 'clé', '.hidden', 'ok.key-1_A']) AS key;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties)
                     SELECT id, 'deep-props', 'marker', '{"type":"Point","coordinates":[1,2]}',
                            ('{"a":' || repeat('[', 40) || '1' || repeat(']', 40) || '}')::jsonb FROM sec_v$$) AS deep_properties;
SELECT regress_try($$INSERT INTO publish.assets (version_id, key, storage_path, content_type)
                     SELECT id, 'ct', 'a/ct', E'text/html\r\nSet-Cookie: x=1' FROM sec_v$$) AS header_injection;

-- geometry nested 10,000 levels: stored, then a clear validation problem
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
SELECT id, 'deep', 'polyline',
       ('{"type":"LineString","coordinates":' || repeat('[', 10000) || '1' || repeat(']', 10000) || '}')::jsonb
  FROM sec_v;
-- (JSON null is no geometry either, and no parse error)
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, 'null', 'marker', 'null' FROM sec_v;
SELECT * FROM publish.validate_version('sec', 1);

-- limits: PT413 with what and by how much (a superuser may SET them in a session)
DELETE FROM publish.overlays WHERE key IN ('deep', 'null');
SELECT publish.set_storage_target('sec-env', 'file:///srv/publish-regress/sec') IS NOT NULL AS target_set;
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
SELECT id, 'line', 'polyline', jsonb_build_object('type', 'LineString', 'coordinates',
       (SELECT jsonb_agg(jsonb_build_array(i, i)) FROM generate_series(1, 20000) AS i))
  FROM sec_v;
SET publish.max_release_size = '64kB';
SELECT regress_try_full($$SELECT publish.publish_version('sec', 1, 'sec-env')$$);
SELECT regress_try_full($$SELECT publish.build_release('sec', 1, 'sec-env')$$);
RESET publish.max_release_size;
INSERT INTO publish.tilesets (version_id, max_zoom, source_path, built_at) SELECT id, 2, 'tiles', now() FROM sec_v;
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
SELECT t.id, 1, x, y, 1, repeat('0', 64) FROM publish.tilesets t JOIN sec_v ON sec_v.id = t.version_id,
       generate_series(0, 1) x, generate_series(0, 1) y;
SET publish.max_tiles = 3;
SELECT regress_try_full($$SELECT publish.publish_version('sec', 1, 'sec-env')$$);
RESET publish.max_tiles;
SELECT count(*) AS jobs FROM publish.job_queue j JOIN sec_v ON sec_v.id = j.version_id;
SHOW publish.max_release_size;
SHOW publish.max_tiles;

-- clean up
DROP VIEW sec_v;
DELETE FROM publish.projects WHERE slug = 'sec';
DELETE FROM publish.storage_targets WHERE env = 'sec-env';
