-- 31_hostile_input.sql: a table of hostile calls, each refused with a clear
-- error and the right SQLSTATE (docs/postgrest.md's table gives its HTTP status),
-- and nothing written: no row in any table of publish, no job, no file.  A
-- publish of the nastiest content that is allowed then proves that every
-- path built from user data stays under the target's root.
--
-- Calls run as an admin (tap_hostile_admin, a publish_admin), the targets'
-- as the superuser (nobody else may call them).  Project hostile-*,
-- environment tap-hostile.

SET client_min_messages = warning;
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tap_hostile_admin') THEN
		DROP OWNED BY tap_hostile_admin CASCADE;
		DROP ROLE tap_hostile_admin;
	END IF;
END $$;
DELETE FROM publish.projects WHERE slug LIKE 'hostile%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-hostile%';
ALTER DATABASE publish_tap RESET publish.max_release_size;

SELECT plan(139);

CREATE ROLE tap_hostile_admin NOLOGIN IN ROLE publish_admin;
SELECT :'storage' || '/hostile' AS root \gset
SELECT publish.set_storage_target('tap-hostile', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('hostile', 5, true, 1) \g /dev/null
SELECT v.id AS vid, t.id AS tsid
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
  LEFT JOIN publish.tilesets t ON t.version_id = v.id
 WHERE p.slug = 'hostile' AND v.version_number = 1 \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 2, 'draft' FROM publish.projects WHERE slug = 'hostile';

-- What is written, before: every table of publish, and the files.
CREATE TEMP VIEW fingerprint AS
SELECT md5(string_agg(r, E'\n' ORDER BY r)) AS rows
  FROM (SELECT 'p' || t::text AS r FROM publish.projects t
        UNION ALL SELECT 'v' || t::text FROM publish.project_versions t
        UNION ALL SELECT 'a' || t::text FROM publish.assets t
        UNION ALL SELECT 'o' || t::text FROM publish.overlays t
        UNION ALL SELECT 's' || t::text FROM publish.tilesets t
        UNION ALL SELECT 't' || t::text FROM publish.tiles t
        UNION ALL SELECT 'e' || t::text FROM publish.storage_targets t
        UNION ALL SELECT 'c' || t::text FROM publish.storage_credentials t
        UNION ALL SELECT 'j' || t.id::text FROM publish.job_queue t
        UNION ALL SELECT 'r' || t::text FROM publish.live_releases t) AS all_rows;
SELECT rows AS rows_before FROM fingerprint \gset
CREATE TEMP TABLE files_before AS SELECT * FROM test_helpers.list_files(:'storage') AS f;

-- ---------------------------------------------------------------------------
-- The cases.  @vid@ is version 1 of "hostile", @ts@ its tileset, @big@ a
-- 10 MB string; r is the role that calls.
-- ---------------------------------------------------------------------------

CREATE TEMP TABLE cases (n serial, r text, sql text, expected text, what text);
INSERT INTO cases (r, sql, expected, what) VALUES
-- publish_version: NULLs, malformed names, versions, types
('a', $c$SELECT publish.publish_version(NULL, 1, 'tap-hostile')$c$, '22004', 'publish_version: NULL slug'),
('a', $c$SELECT publish.publish_version('hostile', NULL, 'tap-hostile')$c$, '22004', 'publish_version: NULL version'),
('a', $c$SELECT publish.publish_version('hostile', 1, NULL)$c$, '22004', 'publish_version: NULL env'),
('a', $c$SELECT publish.publish_version('', 1, 'tap-hostile')$c$, '22023', 'publish_version: empty slug'),
('a', $c$SELECT publish.publish_version(@big@, 1, 'tap-hostile')$c$, '22023', 'publish_version: 10 MB slug'),
('a', $c$SELECT publish.publish_version('hostile', 1, @big@)$c$, '22023', 'publish_version: 10 MB env'),
('a', $c$SELECT publish.publish_version('', 1, '')$c$, '22023', 'publish_version: empty slug and env'),
('a', $c$SELECT publish.publish_version('host''ile', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug with a quote'),
('a', $c$SELECT publish.publish_version('hostile; DROP TABLE publish.projects; --', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug with ; and --'),
('a', $c$SELECT publish.publish_version('--', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug --'),
('a', $c$SELECT publish.publish_version('../hostile', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug ../'),
('a', $c$SELECT publish.publish_version('hostile/../../etc', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug with /'),
('a', $c$SELECT publish.publish_version('%2e%2e', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug %2e%2e'),
('a', $c$SELECT publish.publish_version(E'hostile\x01', 1, 'tap-hostile')$c$, '22023', 'publish_version: slug with a control character'),
('a', $c$SELECT publish.publish_version('hostilé', 1, 'tap-hostile')$c$, '22023', 'publish_version: non-ASCII slug'),
('a', $c$SELECT publish.publish_version('HOSTILE', 1, 'tap-hostile')$c$, '22023', 'publish_version: upper-case slug'),
('a', $c$SELECT publish.publish_version('hostile', 1, '../../etc')$c$, '22023', 'publish_version: env ../../etc'),
('a', $c$SELECT publish.publish_version('hostile', 1, '/')$c$, '22023', 'publish_version: env /'),
('a', $c$SELECT publish.publish_version('hostile', 1, '%2e%2e')$c$, '22023', 'publish_version: env %2e%2e'),
('a', $c$SELECT publish.publish_version('hostile', 1, 'tap-hostile''--')$c$, '22023', 'publish_version: env with a quote and --'),
('a', $c$SELECT publish.publish_version('hostile', 1, 'prödüction')$c$, '22023', 'publish_version: non-ASCII env'),
('a', $c$SELECT publish.publish_version('hostile', 1, E'tap-hostile\n')$c$, '22023', 'publish_version: env with a newline'),
('a', $c$SELECT publish.publish_version('hostile', 0, 'tap-hostile')$c$, '22023', 'publish_version: version 0'),
('a', $c$SELECT publish.publish_version('hostile', -1, 'tap-hostile')$c$, '22023', 'publish_version: negative version'),
('a', $c$SELECT publish.publish_version('hostile', '-2147483648', 'tap-hostile')$c$, '22023', 'publish_version: most negative version'),
('a', $c$SELECT publish.publish_version('hostile', 2147483647, 'tap-hostile')$c$, 'PT404', 'publish_version: huge version that does not exist'),
('a', $c$SELECT publish.publish_version('hostile', '2147483648', 'tap-hostile')$c$, '22003', 'publish_version: version over 32 bits'),
('a', $c$SELECT publish.publish_version('hostile', '99999999999999999999999', 'tap-hostile')$c$, '22003', 'publish_version: version of 23 digits'),
('a', $c$SELECT publish.publish_version('hostile', 'three', 'tap-hostile')$c$, '22P02', 'publish_version: version that is not a number'),
('a', $c$SELECT publish.publish_version('hostile', '1.5', 'tap-hostile')$c$, '22P02', 'publish_version: fractional version'),
('a', $c$SELECT publish.publish_version(slug => ARRAY['hostile'], version => 1)$c$, '42883', 'publish_version: an array for the slug'),
('a', $c$SELECT publish.publish_version('hostile-nowhere', 1, 'tap-hostile')$c$, 'PT404', 'publish_version: unknown project'),
('a', $c$SELECT publish.publish_version('hostile', 2, 'tap-hostile')$c$, 'PT409', 'publish_version: a draft'),
('a', $c$SELECT publish.publish_version('hostile', 1, 'nowhere')$c$, 'PT404', 'publish_version: environment without a target'),
('a', $c$SELECT publish.build_release('hostile', 1, 'tap-hostile', 'infinity')$c$, '22008', 'build_release: published_at infinity'),
-- content: projects and versions
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('../hostile', 'x')$c$, '23514', 'project slug ../'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES (@big@, 'x')$c$, '23514', 'project slug of 10 MB'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('hostile-x', @big@)$c$, '23514', 'project name of 10 MB'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('hostile-x', '')$c$, '23514', 'empty project name'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('hostile-x', NULL)$c$, '23502', 'NULL project name'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('hostilé', 'x')$c$, '23514', 'non-ASCII project slug'),
('a', $c$INSERT INTO publish.projects (slug, name) VALUES ('hostile', 'again')$c$, '23505', 'duplicate project slug'),
('a', $c$UPDATE publish.projects SET description = @big@ WHERE slug = 'hostile'$c$, '23514', 'project description of 10 MB'),
('a', $c$INSERT INTO publish.project_versions (project_id, version_number) SELECT project_id, -1 FROM publish.project_versions WHERE id = @vid@$c$, '23514', 'negative version number'),
('a', $c$INSERT INTO publish.project_versions (project_id, version_number) SELECT project_id, 1 FROM publish.project_versions WHERE id = @vid@$c$, '23505', 'duplicate version number'),
('a', $c$UPDATE publish.project_versions SET status = 'hacked' WHERE id = @vid@$c$, '23514', 'version status not in the list'),
('a', $c$INSERT INTO publish.project_versions (project_id, version_number) VALUES (gen_random_uuid(), 7)$c$, '23503', 'version of a project that does not exist'),
-- overlays
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, '../x', 'marker', '{}')$c$, '23514', 'overlay key ../x'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'a/b', 'marker', '{}')$c$, '23514', 'overlay key with /'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'x''; DROP TABLE publish.overlays; --', 'marker', '{}')$c$, '23514', 'overlay key with a quote, ; and --'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, @big@, 'marker', '{}')$c$, '23514', 'overlay key of 10 MB'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'clé', 'marker', '{}')$c$, '23514', 'non-ASCII overlay key'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, '%2e%2e', 'marker', '{}')$c$, '23514', 'overlay key %2e%2e'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, E'k\x01', 'marker', '{}')$c$, '23514', 'overlay key with a control character'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'ov-001', 'marker', '{}')$c$, '23505', 'duplicate overlay key'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'circle', '{}')$c$, '23514', 'overlay type not in the list'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', NULL)$c$, '23502', 'NULL geometry'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', '{"type":"Point","coordinates":[NaN,1]}')$c$, '22P02', 'geometry with NaN'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', '{"type":"Point","coordinates":[Infinity,1]}')$c$, '22P02', 'geometry with Infinity'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', '{"type":"Point","coordinates":[1,2]')$c$, '22P02', 'geometry that is not JSON'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', '{"type":"Point\u0000","coordinates":[1,2]}')$c$, '22P05', 'geometry with \u0000'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) VALUES (@vid@, 'k', 'marker', (repeat('[', 100000) || '1' || repeat(']', 100000))::jsonb)$c$, '54001', 'geometry nested 100,000 levels (jsonb refuses it)'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) VALUES (@vid@, 'k', 'marker', '{}', '[1,2]')$c$, '23514', 'properties that are an array'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) VALUES (@vid@, 'k', 'marker', '{}', '"../../etc/passwd"')$c$, '23514', 'properties that are a string'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) VALUES (@vid@, 'k', 'marker', '{}', 'null')$c$, '23514', 'properties that are JSON null'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) VALUES (@vid@, 'k', 'marker', '{}', ('{"a":' || repeat('[', 10000) || '1' || repeat(']', 10000) || '}')::jsonb)$c$, '23514', 'properties nested 10,000 levels'),
('a', $c$INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry) VALUES (@vid@, 'k', @big@, 'marker', '{}')$c$, '23514', 'overlay name of 10 MB'),
('a', $c$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id) VALUES (@vid@, 'k', 'image', '{}', gen_random_uuid())$c$, '23503', 'overlay with an asset of another version'),
-- assets
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', '../../etc/passwd')$c$, '23514', 'asset storage_path ../../etc/passwd'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', '/etc/passwd')$c$, '23514', 'absolute asset storage_path'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'file:///etc/passwd')$c$, '23514', 'asset storage_path file://'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'https://evil.example.com/x.png')$c$, '23514', 'asset storage_path that is a URL'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'assets/%2e%2e/%2E%2E/etc/passwd')$c$, '23514', 'asset storage_path with %2e%2e'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'assets/./x.png')$c$, '23514', 'asset storage_path with a . segment'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'assets//x.png')$c$, '23514', 'asset storage_path with //'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'assets\..\..\x.png')$c$, '23514', 'asset storage_path with backslashes'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', E'assets/x\n.png')$c$, '23514', 'asset storage_path with a newline'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', 'assets/' || @big@)$c$, '23514', 'asset storage_path of 10 MB'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, 'k', '')$c$, '23514', 'empty asset storage_path'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path) VALUES (@vid@, '../k', 'assets/k')$c$, '23514', 'asset key ../k'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path, sha256) VALUES (@vid@, 'k', 'assets/k', 'not-a-checksum')$c$, '23514', 'asset sha256 that is not hex'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path, byte_size) VALUES (@vid@, 'k', 'assets/k', -1)$c$, '23514', 'negative asset byte_size'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path, content_type) VALUES (@vid@, 'k', 'assets/k', E'text/html\r\nX-Injected: 1')$c$, '23514', 'asset content_type with a header injection'),
('a', $c$INSERT INTO publish.assets (version_id, key, storage_path, kind) VALUES (@vid@, 'k', 'assets/k', '../kind')$c$, '23514', 'asset kind ../kind'),
-- tilesets and tiles
('a', $c$UPDATE publish.tilesets SET source_path = '../../etc' WHERE id = @ts@$c$, '23514', 'tileset source_path ../../etc'),
('a', $c$UPDATE publish.tilesets SET source_path = '/etc' WHERE id = @ts@$c$, '23514', 'absolute tileset source_path'),
('a', $c$UPDATE publish.tilesets SET source_path = 'builds/%2e%2e/%2e%2e' WHERE id = @ts@$c$, '23514', 'tileset source_path with %2e%2e'),
('a', $c$UPDATE publish.tilesets SET source_path = 'file:///etc' WHERE id = @ts@$c$, '23514', 'tileset source_path file://'),
('a', $c$UPDATE publish.tilesets SET source_path = '' WHERE id = @ts@$c$, '23514', 'empty tileset source_path'),
('a', $c$UPDATE publish.tilesets SET format = 'png/../../x' WHERE id = @ts@$c$, '23514', 'tileset format with a path'),
('a', $c$UPDATE publish.tilesets SET max_zoom = 99 WHERE id = @ts@$c$, '23514', 'tileset zoom over 30'),
('a', $c$INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256) VALUES (@ts@, 31, 0, 0, 1, repeat('0', 64))$c$, '23514', 'tile zoom 31'),
('a', $c$INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256) VALUES (@ts@, 1, 2, 0, 1, repeat('0', 64))$c$, '23514', 'tile x outside its zoom'),
('a', $c$INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256) VALUES (@ts@, 1, 0, -1, 1, repeat('0', 64))$c$, '23514', 'negative tile y'),
-- storage targets and credentials (superuser)
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file://user:pass@localhost/tmp/x')$c$, '22023', 'target URL file:// with credentials'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'https://user:pass@example.com/maps')$c$, '22023', 'target URL https:// with credentials'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'gopher://example.com/maps')$c$, '22023', 'target URL gopher://'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'dict://127.0.0.1:11211/stats')$c$, '22023', 'target URL dict://'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'ftp://example.com/maps')$c$, '22023', 'target URL ftp://'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'javascript:alert(1)')$c$, '22023', 'target URL javascript:'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///tmp/%2e%2e/etc')$c$, '22023', 'target URL with %2e%2e'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///tmp/../etc')$c$, '22023', 'target URL with ..'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:relative/dir')$c$, '22023', 'relative file URL'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', E'file:///tmp/a\nb')$c$, '22023', 'target URL with a newline'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///' || @big@)$c$, '22023', 'target URL of 10 MB'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///tmp/x', '{"public_url": "javascript:alert(1)"}')$c$, '22023', 'public_url javascript:'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///tmp/x', '{"public_url": "https://u:p@cdn.example.com/"}')$c$, '22023', 'public_url with credentials'),
('s', $c$SELECT publish.set_storage_target('tap-hostile-2', 'file:///tmp/x', 'not json')$c$, '22P02', 'options that are not JSON'),
('s', $c$SELECT publish.set_storage_target('../hostile', 'file:///tmp/x')$c$, '22023', 'target env ../hostile'),
('s', $c$SELECT publish.set_storage_target(@big@, 'file:///tmp/x')$c$, '22023', 'target env of 10 MB'),
('s', $c$SELECT publish.set_storage_credentials('tap-hostile-nowhere', 'k', 's')$c$, 'PT404', 'credentials of an unknown env'),
('s', $c$SELECT publish.set_storage_credentials(NULL, 'k', 's')$c$, '22004', 'credentials with a NULL env');

SELECT is(test_helpers.sqlstate_as(CASE r WHEN 'a' THEN 'tap_hostile_admin' ELSE 'postgres' END,
                                   replace(replace(replace(sql, '@vid@', quote_literal(:'vid')),
                                                   '@ts@', quote_literal(:'tsid')),
                                           '@big@', 'repeat(''a'', 10 * 1024 * 1024)')),
          expected, format('%s: %s', n, what))
  FROM cases ORDER BY n;

SELECT is(rows, :'rows_before', 'none of the hostile calls wrote anything to a table of publish')
  FROM fingerprint;

-- ---------------------------------------------------------------------------
-- Hostile geometry: stored (a version may be saved half-done), then refused
-- by validation with a clear problem each, and by a publish job.
-- ---------------------------------------------------------------------------

INSERT INTO publish.projects (slug, name) VALUES ('hostile-geo', 'Hostile geometry');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'hostile-geo';
SELECT v.id AS geo_vid FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'hostile-geo' \gset
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', format($c$
	INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
	VALUES (%1$L, 'deep', 'polyline', ('{"type":"LineString","coordinates":' || repeat('[', 10000) || '1' || repeat(']', 10000) || '}')::jsonb),
	       (%1$L, 'huge', 'polyline', jsonb_build_object('type', 'LineString', 'coordinates',
	            (SELECT jsonb_agg(jsonb_build_array(13 + i * 1e-6, 52 + i * 1e-6)) FROM generate_series(1, 100000) AS i))),
	       (%1$L, 'huge-bad', 'polyline', jsonb_build_object('type', 'LineString', 'coordinates',
	            (SELECT jsonb_agg(jsonb_build_array(CASE WHEN i = 99999 THEN 1e400 ELSE 13 END, 52)) FROM generate_series(1, 100000) AS i))),
	       (%1$L, 'wrong', 'marker', '{"type":"Point","coordinates":"here"}'),
	       (%1$L, 'not-geojson', 'polygon', '[[0,0],[1,1]]')$c$, :'geo_vid')), 'ok',
          'an admin can store hostile geometry (10,000 levels deep, 100k points) in a draft of work');

CREATE TEMP TABLE geo_problems AS SELECT * FROM publish.validate_version('hostile-geo', 1) AS problem;
SELECT is((SELECT count(*) FROM geo_problems), 4::bigint, 'validation finds four problems');
SELECT ok(EXISTS (SELECT 1 FROM geo_problems WHERE problem ~ '^overlay "deep": geometry could not be read: geometry is nested deeper than 29 levels'),
          '... a 10,000-level geometry is a clear problem, not a crash');
SELECT ok(EXISTS (SELECT 1 FROM geo_problems WHERE problem ~ '^overlay "huge-bad": .*not a finite number'),
          '... a 100k-point line with one coordinate of 1e400 is found');
SELECT ok(EXISTS (SELECT 1 FROM geo_problems WHERE problem ~ '^overlay "wrong":')
          AND EXISTS (SELECT 1 FROM geo_problems WHERE problem ~ '^overlay "not-geojson":'),
          '... wrong structures are found');
SELECT ok(NOT EXISTS (SELECT 1 FROM geo_problems WHERE problem ~ '"huge"'),
          '... and a valid 100k-point line is fine');
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', $$SELECT publish.build_release('hostile-geo', 1, 'tap-hostile')$$),
          '23514', 'build_release refuses the version (23514)');
SELECT id AS geo_job FROM publish.publish_version('hostile-geo', 1, 'tap-hostile') \gset
SELECT ok(status = 'failed' AND error ~ 'nested deeper than 29 levels' AND error ~ '4 problems',
          'a publish job of it fails, naming every problem')
  FROM test_helpers.wait_job(:'geo_job');

-- ---------------------------------------------------------------------------
-- Resource limits: refused before anything is loaded, with PT413 (HTTP 413)
-- ---------------------------------------------------------------------------

DELETE FROM publish.overlays WHERE version_id = :'geo_vid' AND key <> 'huge';
SELECT count(*) AS jobs_before_limits FROM publish.job_queue \gset
SET publish.max_release_size = '1MB';
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', sql), 'PT413', what)
  FROM (VALUES ($$SELECT publish.publish_version('hostile-geo', 1, 'tap-hostile')$$,
                'a release over publish.max_release_size: publish_version refuses it (PT413)'),
               ($$SELECT publish.build_release('hostile-geo', 1, 'tap-hostile')$$, '... build_release too'),
               ($$SELECT * FROM publish.validate_version('hostile-geo', 1)$$, '... and validate_version')) AS c(sql, what);
SELECT ok(test_helpers.error_as('tap_hostile_admin', $$SELECT publish.publish_version('hostile-geo', 1, 'tap-hostile')$$)
          ~ '^PT413: version 1 of project "hostile-geo" is too large to publish: its release.json would be about [0-9]+ kB, over publish.max_release_size \(1024 kB\)$',
          '... with a message that says what and by how much');
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', $$SET publish.max_release_size = '1GB'$$), '42501',
          'an admin cannot raise the limit');
RESET publish.max_release_size;
SET publish.max_tiles = 2;
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', $$SELECT publish.publish_version('hostile', 1, 'tap-hostile')$$),
          'PT413', 'a tileset over publish.max_tiles is refused (PT413)');
RESET publish.max_tiles;
SELECT is(count(*), :'jobs_before_limits'::bigint, 'no job was queued over a limit') FROM publish.job_queue;

-- The worker checks again (content may grow after a job is queued): give
-- this database's worker a small limit, then queue a job under the default.
ALTER DATABASE publish_tap SET publish.max_release_size = '64kB';
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker' \g /dev/null
SELECT id AS big_job FROM publish.publish_version('hostile-geo', 1, 'tap-hostile') \gset
SELECT ok(status = 'failed'
          AND error ~ '^version 1 of project "hostile-geo" is too large to publish: .* over publish.max_release_size \(64 kB\)',
          'the worker refuses a release over its limit while writing it: the job fails, saying why')
  FROM test_helpers.wait_job(:'big_job', '60 s');
ALTER DATABASE publish_tap RESET publish.max_release_size;
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-hostile/hostile-geo/release.json')
          AND NOT test_helpers.file_exists(:'root' || '/tap-hostile/hostile-geo/releases/v1.json'),
          '... and writes nothing');
-- the next test gets a worker with the default limit
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker' \g /dev/null

-- jsonb takes more room than its text (a coordinate of 10 bytes of text,
-- 16 stored): an overlay over the limit as stored, under it as text, is
-- published, not refused unread.
SELECT test_helpers.make_project('hostile-dense', 1) AS dense_project \gset
UPDATE publish.overlays o
   SET geometry = jsonb_build_object('type', 'LineString', 'coordinates',
                                     (SELECT jsonb_agg(jsonb_build_array(13.404954 + i * 0.000001, 52.520008))
                                        FROM generate_series(1, 1800) AS i)),
       overlay_type = 'polyline', properties = '{}'
  FROM publish.project_versions v
 WHERE v.id = o.version_id AND v.project_id = :'dense_project';
SET publish.max_release_size = '64kB';
SELECT ok(pg_column_size(o.geometry::text::jsonb) > 65536 AND octet_length(o.geometry::text) < 60000,
          'an overlay of 1,800 positions: over 64 kB as stored, under it as text')
  FROM publish.overlays o JOIN publish.project_versions v ON v.id = o.version_id
 WHERE v.project_id = :'dense_project';
SELECT cmp_ok(octet_length(publish.build_release('hostile-dense', 1, 'tap-hostile')::text), '<=', 65536,
              '... build_release writes it within publish.max_release_size (64 kB)');
RESET publish.max_release_size;
DELETE FROM publish.projects WHERE slug = 'hostile-dense';

-- 150 bad overlays: the error counts them all and lists the first 100
-- (the rest are counted, not kept); validate_version lists every one.
SELECT test_helpers.make_project('hostile-many', 150) AS many_project \gset
UPDATE publish.overlays o SET overlay_type = 'marker',
       geometry = '{"type": "LineString", "coordinates": [[13.4, 52.5], [13.5, 52.6]]}', asset_id = NULL
  FROM publish.project_versions v
 WHERE v.id = o.version_id AND v.project_id = :'many_project';
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	msg text;
	detail text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN check_violation THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
	RETURN msg || E'\n' || detail;
END
$$;
SELECT error_of AS many_error FROM pg_temp.error_of($$SELECT publish.build_release('hostile-many', 1, 'tap-hostile')$$) \gset
SELECT ok(:'many_error' ~ '^version 1 of project "hostile-many" cannot be published: 150 problems\n',
          '150 bad overlays: build_release''s error counts all 150');
SELECT ok((SELECT count(*) FROM regexp_matches(:'many_error', '\n- overlay "ov-\d+": ', 'g')) = 100
          AND :'many_error' ~ '\n\.\.\. and 50 more$',
          '... lists the first 100 and says "... and 50 more"');
SELECT is((SELECT count(*)::int FROM publish.validate_version('hostile-many', 1)), 150,
          'validate_version lists all 150');
DELETE FROM publish.projects WHERE slug = 'hostile-many';

-- ---------------------------------------------------------------------------
-- The nastiest content that is allowed: every file lands under the root
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('hostile-ok', 0) AS ok_pid \gset
SELECT v.id AS ok_vid FROM publish.project_versions v WHERE v.project_id = :'ok_pid' \gset
SELECT is(test_helpers.sqlstate_as('tap_hostile_admin', format($c$
	WITH a AS (
		INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
		VALUES (%1$L, 'x..y', 'image', 'assets/..hidden/x..png', 'image/png; charset=binary', 1, repeat('a', 64)),
		       (%1$L, 'Z.-_', 'file', 'assets/%%41%%42/ünï code.txt', 'text/plain', 2, repeat('b', 64))
		RETURNING id, key)
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
	VALUES (%1$L, 'a..b', '''; DROP TABLE publish.projects; --', 'marker', '{"type":"Point","coordinates":[1,2]}',
	        '{"path": "../../../etc/passwd", "url": "file:///etc/passwd", "html": "<script>alert(1)</script>"}', NULL),
	       (%1$L, 'img', '../../etc/passwd', 'image',
	        '{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}', '{"q": "%%2e%%2e/%%2e%%2e"}',
	        (SELECT id FROM a WHERE key = 'x..y'))$c$, :'ok_vid')), 'ok',
          'an admin stores odd but allowed content');
SELECT id AS ok_job FROM publish.publish_version('hostile-ok', 1, 'tap-hostile') \gset
SELECT is(status, 'completed', 'it publishes') FROM test_helpers.wait_job(:'ok_job');
SELECT set_config('publish_test.storage', :'storage', false) \g /dev/null
SELECT set_eq(
	$$SELECT f FROM test_helpers.list_files(current_setting('publish_test.storage')) AS f
	  EXCEPT SELECT f FROM files_before$$,
	ARRAY['hostile/tap-hostile/hostile-ok/release.json', 'hostile/tap-hostile/hostile-ok/releases/v1.json'],
	'the only new files under the storage directory are the release''s, under its root');
SELECT is((SELECT e->>'path' FROM jsonb_array_elements(test_helpers.read_json(:'root' || '/tap-hostile/hostile-ok/release.json')->'assets') AS e
            WHERE e->>'key' = 'x..y'),
          'assets/..hidden/x..png', 'release.json keeps the asset path as given, relative to the root');

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'hostile%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-hostile%';
DROP ROLE tap_hostile_admin;

SELECT * FROM finish();
