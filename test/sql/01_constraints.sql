--
-- 01_constraints: the table constraints keep bad content out, whatever
-- client writes it.  Each statement shows 'ok' or 'SQLSTATE: message'.
--
-- projects ------------------------------------------------------------------
SELECT CASE WHEN length(slug) > 20 THEN left(slug, 3) || '... (' || length(slug) || ' chars)' ELSE slug END AS slug,
       regress_try(format('INSERT INTO publish.projects (slug, name) VALUES (%L, %L)', slug, 'Test'))
  FROM unnest(ARRAY['Campus', 'a b', '-x', 'x-', 'a--b', '', 'café', 'a_b',
                    repeat('a', 64),
                    'c-one', 'c-two', 'c2', repeat('b', 63)]) AS slug;
SELECT regress_try($$INSERT INTO publish.projects (slug, name) VALUES ('c-one', 'Again')$$);
SELECT regress_try($$INSERT INTO publish.projects (slug, name) VALUES ('c-blank', '  ')$$);
SELECT regress_try($$INSERT INTO publish.projects (slug, name) VALUES (NULL, 'No slug')$$);
SELECT regress_try($$UPDATE publish.projects SET slug = 'C-One' WHERE slug = 'c-one'$$);
SELECT left(slug, 10) AS slug, length(slug) FROM publish.projects ORDER BY slug COLLATE "C";
DELETE FROM publish.projects WHERE slug IN ('c2', 'c-two') OR slug LIKE 'bbbb%';

-- project_versions ----------------------------------------------------------
SELECT n, regress_try(format(
         'INSERT INTO publish.project_versions (project_id, version_number)
          SELECT id, %s FROM publish.projects WHERE slug = ''c-one''', n))
  FROM unnest(ARRAY['0', '-1', 'NULL', '1', '2', '3']) AS n;
SELECT regress_try($$INSERT INTO publish.project_versions (project_id, version_number)
                     SELECT id, 1 FROM publish.projects WHERE slug = 'c-one'$$) AS duplicate_version;
SELECT regress_try($$INSERT INTO publish.project_versions (project_id, version_number)
                     VALUES ('00000000-0000-0000-0000-000000000000', 1)$$) AS unknown_project;
SELECT st, regress_try(format(
         'UPDATE publish.project_versions SET status = %L
           WHERE version_number = 3 AND project_id = (SELECT id FROM publish.projects WHERE slug = ''c-one'')', st))
  FROM unnest(ARRAY['live', 'Ready', '', 'draft', 'ready', 'published', 'archived']) AS st;
SELECT version_number, status FROM publish.project_versions v
  JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'c-one' ORDER BY version_number;

-- assets --------------------------------------------------------------------
CREATE TEMP VIEW v1 AS
SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'c-one' AND v.version_number = 1;
CREATE TEMP VIEW v2 AS
SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'c-one' AND v.version_number = 2;

SELECT path, regress_try(format(
         'INSERT INTO publish.assets (version_id, key, storage_path) SELECT id, %L, %L FROM v1',
         'k' || ord, path))
  FROM unnest(ARRAY['/etc/passwd', '../secret', 'a/../b', 'a/..', '..', '',
                    'img/a..b.png', '..hidden/x', 'maps/campus/plan.png']) WITH ORDINALITY AS t(path, ord);
SELECT CASE WHEN length(sha) > 20 THEN left(sha, 3) || '... (' || length(sha) || ' chars)' ELSE sha END AS sha,
       regress_try(format(
         'INSERT INTO publish.assets (version_id, key, storage_path, sha256) SELECT id, %L, ''f.bin'', %L FROM v1',
         'sha' || ord, sha))
  FROM unnest(ARRAY['abc', repeat('A', 64), repeat('g', 64), repeat('a', 63), repeat('a', 65),
                    repeat('0123456789abcdef', 4)]) WITH ORDINALITY AS t(sha, ord);
SELECT regress_try($$INSERT INTO publish.assets (version_id, key, storage_path, byte_size) SELECT id, 'neg', 'f', -1 FROM v1$$) AS negative_size;
SELECT regress_try($$INSERT INTO publish.assets (version_id, key, storage_path) SELECT id, ' ', 'f' FROM v1$$) AS blank_key;
SELECT regress_try($$INSERT INTO publish.assets (version_id, key, storage_path) SELECT id, 'k9', 'other.png' FROM v1$$) AS duplicate_key;
SELECT regress_try($$INSERT INTO publish.assets (version_id, key, storage_path) SELECT id, 'k9', 'other.png' FROM v2$$) AS same_key_other_version;
SELECT key, storage_path, kind, content_type, byte_size, left(sha256, 8) AS sha256
  FROM publish.assets WHERE version_id = (SELECT id FROM v1) ORDER BY key COLLATE "C";

-- overlays ------------------------------------------------------------------
SELECT t, regress_try(format(
         'INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, %L, %L, %L FROM v1',
         'ot-' || ord, t, '{"type":"Point","coordinates":[0,0]}'))
  FROM unnest(ARRAY['circle', 'Marker', '', 'marker', 'label', 'polyline', 'polygon', 'image'])
       WITH ORDINALITY AS x(t, ord);
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, 'ot-4', 'marker', '{}' FROM v1$$) AS duplicate_key;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, 'ot-4', 'marker', '{}' FROM v2$$) AS same_key_other_version;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, '', 'marker', '{}' FROM v1$$) AS blank_key;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry) SELECT id, 'nogeom', 'marker', NULL FROM v1$$) AS null_geometry;
SELECT props, regress_try(format(
         'INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) SELECT id, %L, ''marker'', ''{}'', %L FROM v1',
         'props-' || ord, props))
  FROM unnest(ARRAY['[]', '"text"', '1', 'null', 'true', '{"color":"red"}']) WITH ORDINALITY AS x(props, ord);
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties) SELECT id, 'props-null', 'marker', '{}', NULL FROM v1$$) AS sql_null_properties;
-- an overlay can only use an asset of its own version (composite foreign key)
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
                     SELECT (SELECT id FROM v1), 'img-foreign', 'image', '{}',
                            (SELECT a.id FROM publish.assets a WHERE a.version_id = (SELECT id FROM v2) AND a.key = 'k9')$$) AS asset_of_other_version;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
                     SELECT (SELECT id FROM v1), 'img-missing', 'image', '{}', '00000000-0000-0000-0000-000000000000'$$) AS missing_asset;
SELECT regress_try($$INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
                     SELECT (SELECT id FROM v1), 'img-own', 'image', '{}',
                            (SELECT a.id FROM publish.assets a WHERE a.version_id = (SELECT id FROM v1) AND a.key = 'k9')$$) AS asset_of_own_version;
SELECT regress_try($$UPDATE publish.overlays SET asset_id = (SELECT a.id FROM publish.assets a WHERE a.version_id = (SELECT id FROM v2) AND a.key = 'k9')
                      WHERE key = 'img-own'$$) AS update_to_asset_of_other_version;
-- deleting the asset clears asset_id only (ON DELETE SET NULL (asset_id))
DELETE FROM publish.assets WHERE version_id = (SELECT id FROM v1) AND key = 'k9';
SELECT o.key, o.asset_id IS NULL AS asset_cleared, o.version_id = (SELECT id FROM v1) AS version_kept
  FROM publish.overlays o WHERE o.key = 'img-own';
SELECT key, overlay_type, properties FROM publish.overlays
 WHERE version_id = (SELECT id FROM v1) ORDER BY key COLLATE "C";

-- tilesets ------------------------------------------------------------------
SELECT cols, regress_try(format('INSERT INTO publish.tilesets (version_id, %s) SELECT id, %s FROM v1',
                                split_part(cols, ' = ', 1), split_part(cols, ' = ', 2)))
  FROM unnest(ARRAY[
         'min_zoom, max_zoom = -1, 5',
         'min_zoom, max_zoom = 0, 31',
         'min_zoom, max_zoom = 6, 5',
         'max_zoom = NULL',
         'max_zoom, tile_size = 5, 300',
         'max_zoom, format = 5, ''gif''',
         'max_zoom, bounds = 5, ''{1,2,3}''',
         'max_zoom, bounds = 5, ''{{1,2},{3,4}}''',
         'max_zoom, source_path = 5, ''/abs/tiles''',
         'max_zoom, source_path = 5, ''tiles/../../x''',
         'min_zoom, max_zoom, bounds, source_path = 0, 30, ''{-180,-85,180,85}'', ''tiles/v1''']) AS cols;
SELECT regress_try($$INSERT INTO publish.tilesets (version_id, max_zoom) SELECT id, 3 FROM v1$$) AS second_tileset;
SELECT format, tile_size, min_zoom, max_zoom, bounds, source_path
  FROM publish.tilesets WHERE version_id = (SELECT id FROM v1);

-- tiles: x and y within 0 .. 2^z - 1
SELECT zxy, regress_try(format(
         'INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
          SELECT t.id, %s, 10, %L FROM publish.tilesets t WHERE t.version_id = (SELECT id FROM v1)',
         zxy, repeat('ab', 32)))
  FROM unnest(ARRAY['0, 0, 0', '0, 1, 0', '0, 0, 1', '2, 3, 3', '2, 4, 0', '2, 0, 4',
                    '1, -1, 0', '-1, 0, 0', '31, 0, 0', '30, 1073741823, 1073741823',
                    '30, 1073741824, 0', '0, 0, 0']) AS zxy;
SELECT regress_try(format(
         'INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
          SELECT t.id, 1, 1, 1, %s, %L FROM publish.tilesets t WHERE t.version_id = (SELECT id FROM v1)',
         b, s))
  FROM (VALUES ('-1', repeat('ab', 32)), ('10', 'nothex'), ('10', NULL)) AS x(b, s);
SELECT z, x, y FROM publish.tiles ORDER BY z, x, y;

-- storage targets -----------------------------------------------------------
SELECT CASE WHEN length(env) > 20 THEN left(env, 3) || '... (' || length(env) || ' chars)' ELSE env END AS env,
       regress_try(format('INSERT INTO publish.storage_targets (env, url) VALUES (%L, ''file:///tmp/x'')', env))
  FROM unnest(ARRAY['Prod', 'a b', '_x', '-x', '', 'prod/x', repeat('e', 64),
                    'c-dev', 'c_stage_2', '9', repeat('e', 63)]) AS env;
SELECT regress_try($$INSERT INTO publish.storage_targets (env, url, options) VALUES ('c-opts', 'file:///tmp/x', '[]')$$) AS options_array;
SELECT regress_try($$INSERT INTO publish.storage_credentials (env, secret) VALUES ('c-nowhere', 's')$$) AS credentials_without_target;
SELECT regress_try($$INSERT INTO publish.storage_credentials (env, key_id) VALUES ('c-dev', 'k')$$) AS credentials_without_secret;
SELECT left(env, 10) AS env, length(env) FROM publish.storage_targets ORDER BY env COLLATE "C";

-- jobs ----------------------------------------------------------------------
SELECT regress_try($$INSERT INTO publish.job_queue (job_type) VALUES ('deploy')$$) AS bad_job_type;
SELECT regress_try($$INSERT INTO publish.job_queue (job_type, status) VALUES ('publish', 'done')$$) AS bad_job_status;
SELECT regress_try($$INSERT INTO publish.job_queue (job_type, status, progress) VALUES ('publish', 'failed', 101)$$) AS progress_over_100;
SELECT regress_try($$INSERT INTO publish.job_queue (job_type, status, progress) VALUES ('publish', 'failed', -1)$$) AS progress_negative;
SELECT regress_try($$INSERT INTO publish.job_log (job_id, level, message) VALUES ('00000000-0000-0000-0000-000000000000', 'info', 'x')$$) AS log_of_unknown_job;
SELECT count(*) AS jobs FROM publish.job_queue;

-- deleting a project removes its versions, assets, overlays, tilesets and tiles
DELETE FROM publish.projects WHERE slug = 'c-one';
SELECT (SELECT count(*) FROM publish.project_versions) AS versions,
       (SELECT count(*) FROM publish.assets) AS assets,
       (SELECT count(*) FROM publish.overlays) AS overlays,
       (SELECT count(*) FROM publish.tilesets) AS tilesets,
       (SELECT count(*) FROM publish.tiles) AS tiles;

-- clean up
DROP VIEW v1, v2;
DELETE FROM publish.storage_targets;
DELETE FROM publish.projects;
