-- 14_tiles.sql: tiles are verified against the manifest and land at
-- {env}/{slug}/tiles/v{N}/{z}/{x}/{y}.{format} with the built bytes;
-- publishing again copies only what changed; release.json points at them.
--
-- Project tiles-one (zooms 0-2: 21 tiles), tiles-unbuilt; environment
-- tap-tiles under :storage/tiles.

-- If an earlier run of 11_progress.sql died (a server crash) while holding
-- its prepared transactions, let them go: they would block the worker.
SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts
 WHERE gid LIKE 'tap\_prog\_%' AND database = current_database() \gexec

-- Leftovers of an earlier run that stopped half-way.
DELETE FROM publish.projects WHERE slug IN ('tiles-one', 'tiles-unbuilt');

SELECT plan(31);

SELECT :'storage' || '/tiles' AS root \gset
SELECT publish.set_storage_target('tap-tiles', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('tiles-one', 5, true, 2) AS project_id \gset
SELECT id AS version_id FROM publish.project_versions
 WHERE project_id = :'project_id' AND version_number = 1 \gset
SELECT id AS tileset_id FROM publish.tilesets WHERE version_id = :'version_id' \gset
SELECT :'root' || '/tap-tiles/tiles-one' AS out_dir,
       :'root' || '/builds/tiles-one/v1/tiles' AS build_dir \gset

SELECT is(test_helpers.write_tiles(:'root', 'tiles-one', 1), 21, 'the 21 tiles of zooms 0-2 are built');

-- The manifest, with where each tile is built and where it is published.
CREATE TEMP TABLE manifest AS
SELECT z, x, y, byte_size, sha256,
       format('%s/%s/%s/%s.png', :'build_dir', z, x, y) AS src,
       format('%s/tiles/v1/%s/%s/%s.png', :'out_dir', z, x, y) AS dst
  FROM publish.tiles WHERE tileset_id = :'tileset_id';

-- ---------------------------------------------------------------------------
-- First publish: every tile is verified and copied.
-- ---------------------------------------------------------------------------

SELECT id AS job1 FROM publish.publish_version('tiles-one', 1, 'tap-tiles') \gset
CREATE TEMP TABLE d1 AS SELECT * FROM test_helpers.wait_job(:'job1');

SELECT is(status, 'completed', 'a version with tiles publishes') FROM d1;
SELECT is((result->>'tile_count')::int, 21, 'result.tile_count is the size of the manifest') FROM d1;
SELECT is((result->>'tiles_copied')::int, 21, 'result.tiles_copied: all 21 were copied') FROM d1;
SELECT is((result->>'tiles_skipped')::int, 0, 'result.tiles_skipped: none was there already') FROM d1;
SELECT ok(logs::text ~ '21 verified', 'the log says how many tiles were verified') FROM d1;

SELECT is(count(*) FILTER (WHERE test_helpers.file_exists(dst)), 21::bigint,
          'every tile is at {env}/{slug}/tiles/v1/{z}/{x}/{y}.png') FROM manifest;
SELECT is(count(*) FILTER (WHERE pg_read_binary_file(dst) = pg_read_binary_file(src)), 21::bigint,
          'each published tile has the bytes of its built tile') FROM manifest;
SELECT is(count(*) FILTER (WHERE test_helpers.file_sha256(dst) = sha256
                             AND (pg_stat_file(dst)).size = byte_size), 21::bigint,
          'each published tile has the size and sha256 of the manifest') FROM manifest;
SELECT set_eq(
	format($$SELECT * FROM test_helpers.list_files(%L)$$, :'out_dir'),
	$$SELECT 'release.json' UNION ALL SELECT 'releases/v1.json'
	  UNION ALL SELECT format('tiles/v1/%s/%s/%s.png', z, x, y) FROM manifest$$,
	'nothing else lands under {env}/{slug}: no temporary files are left behind');

-- Readers (a web server, a CDN origin) are other users.
SELECT is(ARRAY[test_helpers.file_mode(:'out_dir' || '/release.json'),
                test_helpers.file_mode(:'out_dir' || '/releases/v1.json')],
          ARRAY['644', '644'], 'release.json and its versioned copy are readable by everyone (0644)');
SELECT is(ARRAY[test_helpers.file_mode(:'root' || '/tap-tiles'),
                test_helpers.file_mode(:'out_dir'),
                test_helpers.file_mode(:'out_dir' || '/releases'),
                test_helpers.file_mode(:'out_dir' || '/tiles/v1/2/3')],
          ARRAY['755', '755', '755', '755'], 'the directories it creates are 0755');

-- release.json points at them.
CREATE TEMP TABLE tileset AS
SELECT test_helpers.read_json(:'out_dir' || '/release.json')->'tileset' AS ts;
SELECT is(ts->>'url_template', 'file://' || :'out_dir' || '/tiles/v1/{z}/{x}/{y}.png',
          'release.json''s url_template is {target}/{env}/{slug}/tiles/v1/{z}/{x}/{y}.png') FROM tileset;
SELECT is((ts->>'tile_count')::int, 21, 'release.json''s tile_count is 21') FROM tileset;
SELECT is(jsonb_build_object('format', ts->'format', 'tile_size', ts->'tile_size',
                             'min_zoom', ts->'min_zoom', 'max_zoom', ts->'max_zoom'),
          '{"format": "png", "tile_size": 256, "min_zoom": 0, "max_zoom": 2}'::jsonb,
          'release.json''s tileset has the format, tile size and zoom range') FROM tileset;
SELECT is(ARRAY(SELECT jsonb_array_elements_text(ts->'bounds')::float8), ARRAY[13.39, 52.51, 13.42, 52.53]::float8[],
          'release.json''s tileset has the bounds') FROM tileset;
-- bounds stored from another first index ('[0:3]={...}' passes the table's
-- check) are read in order, not past the array's end
UPDATE publish.tilesets SET bounds = '[0:3]={13.39,52.51,13.42,52.53}' WHERE id = :'tileset_id';
SELECT is(ARRAY(SELECT jsonb_array_elements_text((publish.build_release('tiles-one', 1, 'tap-tiles')::jsonb)->'tileset'->'bounds')::float8),
          ARRAY[13.39, 52.51, 13.42, 52.53]::float8[], 'bounds stored from index 0 are the same four, in order');
-- ... each in its shortest exact form, whatever the session's extra_float_digits
UPDATE publish.tilesets SET bounds = '{13.395,52.515,13.41,52.52500000000001}' WHERE id = :'tileset_id';
SET extra_float_digits = 0;
SELECT ok(publish.build_release('tiles-one', 1, 'tap-tiles')::text ~ '"bounds": ?\[13\.395, ?52\.515, ?13\.41, ?52\.52500000000001\]',
          'bounds are written in their shortest exact form with extra_float_digits = 0 too');
RESET extra_float_digits;
UPDATE publish.tilesets SET bounds = '{13.39,52.51,13.42,52.53}' WHERE id = :'tileset_id';
SELECT is(count(*) FILTER (WHERE test_helpers.file_sha256(
              replace(replace(replace(regexp_replace(ts->>'url_template', '^file://', ''),
                                      '{z}', m.z::text), '{x}', m.x::text), '{y}', m.y::text)) = m.sha256),
          21::bigint, 'the url_template, filled in, reaches every tile of the manifest')
  FROM tileset, manifest m;

-- ---------------------------------------------------------------------------
-- Publishing again copies nothing.
-- ---------------------------------------------------------------------------

SELECT id AS job2 FROM publish.publish_version('tiles-one', 1, 'tap-tiles') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job2');
SELECT is(status, 'completed', 'publishing the same version again completes') FROM d2;
SELECT is((result->>'tiles_skipped')::int, 21, 'every tile is found in place: tiles_skipped = tile_count') FROM d2;
SELECT is((result->>'tiles_copied')::int, 0, 'tiles_copied = 0') FROM d2;
SELECT is(count(*) FILTER (WHERE test_helpers.file_sha256(dst) = sha256), 21::bigint,
          'the published tiles are unchanged') FROM manifest;

-- ---------------------------------------------------------------------------
-- A rebuilt tile (a new file, and its new manifest entry) is copied alone.
-- ---------------------------------------------------------------------------

SELECT test_helpers.write_file(:'build_dir' || '/1/0/0.png',
                               test_helpers.tile_bytes('tiles-one-rebuilt', 1, 1, 0, 0)) \g /dev/null
UPDATE publish.tiles
   SET byte_size = length(test_helpers.tile_bytes('tiles-one-rebuilt', 1, 1, 0, 0)),
       sha256 = encode(sha256(test_helpers.tile_bytes('tiles-one-rebuilt', 1, 1, 0, 0)), 'hex')
 WHERE tileset_id = :'tileset_id' AND (z, x, y) = (1, 0, 0);
SELECT ok(pg_read_binary_file(:'out_dir' || '/tiles/v1/1/0/0.png') = test_helpers.tile_bytes('tiles-one', 1, 1, 0, 0),
          'rebuilding a tile does not touch the published one');

SELECT id AS job3 FROM publish.publish_version('tiles-one', 1, 'tap-tiles') \gset
CREATE TEMP TABLE d3 AS SELECT * FROM test_helpers.wait_job(:'job3');
SELECT is(status, 'completed', 'publishing after a tile was rebuilt completes') FROM d3;
SELECT is((result->>'tiles_copied')::int, 1, 'only the rebuilt tile is copied') FROM d3;
SELECT is((result->>'tiles_skipped')::int, 20, 'the other 20 are skipped') FROM d3;
SELECT is(pg_read_binary_file(:'out_dir' || '/tiles/v1/1/0/0.png'),
          test_helpers.tile_bytes('tiles-one-rebuilt', 1, 1, 0, 0),
          'the published tile now has the rebuilt bytes');

-- ---------------------------------------------------------------------------
-- A tileset that was never built does not validate.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('tiles-unbuilt', 5) AS unbuilt_id \gset
INSERT INTO publish.tilesets (version_id, format, min_zoom, max_zoom)
SELECT id, 'png', 0, 3 FROM publish.project_versions WHERE project_id = :'unbuilt_id';
SELECT id AS job4 FROM publish.publish_version('tiles-unbuilt', 1, 'tap-tiles') \gset
CREATE TEMP TABLE d4 AS SELECT * FROM test_helpers.wait_job(:'job4');
SELECT is(status, 'failed', 'a version whose tileset was never built fails') FROM d4;
SELECT ok(error ~ 'not been built' AND error ~ 'no tiles', 'the error says it is not built and has no tiles') FROM d4;
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-tiles/tiles-unbuilt/release.json'),
          'no release.json is written for it');

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug IN ('tiles-one', 'tiles-unbuilt');
DELETE FROM publish.storage_targets WHERE env = 'tap-tiles';

SELECT * FROM finish();
