-- 40_build_tiles.sql: publish.build_tiles() cuts the tile pyramid of a
-- version's base_map asset with libvips and records its manifest; a
-- publish_version of a version with a base_map and no tiles built for its
-- environment builds them first, in the same job.  Local target.
--
-- The source images are made with the vips command: pixel (x, y) is
-- (x mod 256, y mod 256, 128), so a pixel of a tile tells where it came from.
--
-- Environment tap-build under :storage/build.  Projects build-*.

DELETE FROM publish.projects WHERE slug LIKE 'build-%';

SELECT plan(51);

SELECT :'storage' || '/build' AS root \gset
SELECT publish.set_storage_target('tap-build', 'file://' || :'root') \g /dev/null

-- build-one: a 1000 x 600 PNG; zooms 0-2 (2^2 tiles of 256 px cover 1000)
SELECT test_helpers.make_project('build-one', 3) AS project_id \gset
SELECT id AS version_id FROM publish.project_versions
 WHERE project_id = :'project_id' AND version_number = 1 \gset
SELECT test_helpers.make_image(:'root' || '/assets/build-one/map.png', 1000, 600) \g /dev/null
SELECT test_helpers.add_base_map(:'version_id', :'root', 'assets/build-one/map.png') \g /dev/null
SELECT :'root' || '/tap-build/build-one/builds/v1/tiles' AS build_dir \gset

-- ---------------------------------------------------------------------------
-- Input checks at call time, with the SQLSTATEs of publish_version.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('build-none', 1) \g /dev/null
SELECT throws_ok($$SELECT publish.build_tiles('build-nope', 1, 'tap-build')$$, 'PT404', NULL,
                 'an unknown project is PT404');
SELECT throws_ok($$SELECT publish.build_tiles('build-one', 9, 'tap-build')$$, 'PT404', NULL,
                 'an unknown version is PT404');
SELECT throws_ok($$SELECT publish.build_tiles('build-one', 1, 'tap-nowhere')$$, 'PT404', NULL,
                 'an environment without a storage target is PT404');
SELECT throws_ok($$SELECT publish.build_tiles('build-none', 1, 'tap-build')$$, '22023',
                 'version 1 of project "build-none" has no source image to build tiles from',
                 'a version without a base_map asset is 22023, with a clear message');
UPDATE publish.project_versions SET status = 'archived'
 WHERE project_id = (SELECT id FROM publish.projects WHERE slug = 'build-none');
INSERT INTO publish.assets (version_id, key, kind, storage_path)
SELECT v.id, 'map', 'base_map', 'assets/x.png' FROM publish.project_versions v
  JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'build-none';
SELECT throws_ok($$SELECT publish.build_tiles('build-none', 1, 'tap-build')$$, 'PT409', NULL,
                 'an archived version is PT409');
SELECT is((SELECT count(*) FROM publish.job_queue q JOIN publish.projects p ON p.id = q.project_id
            WHERE p.slug IN ('build-none', 'build-nope')), 0::bigint, 'refused requests queue nothing');

-- ---------------------------------------------------------------------------
-- A build: one job, asked twice.
-- ---------------------------------------------------------------------------

BEGIN;
SELECT id AS job, job_type, status FROM publish.build_tiles('build-one', 1, 'tap-build') \gset
SELECT is(:'job_type'::text, 'build_tiles', 'build_tiles() returns a build_tiles job');
SELECT is((SELECT id FROM publish.build_tiles('build-one', 1, 'tap-build')), :'job'::uuid,
          'asked again while it waits, it returns the queued job');
COMMIT;

CREATE TEMP TABLE d AS SELECT * FROM test_helpers.wait_job(:'job', '60 s');
SELECT is(status, 'completed', 'the build completes') FROM d;
SELECT is(error, NULL, '... without error') FROM d;
SELECT is(progress, 100, '... at 100%') FROM d;

CREATE TEMP TABLE expected AS SELECT * FROM test_helpers.expected_tiles(1000, 600, 256, 2);
SELECT is((SELECT jsonb_object_agg(z::text, n) FROM expected), result->'tiles_per_zoom',
          'result.tiles_per_zoom is what the image size implies: {"0": 1, "1": 4, "2": 12}') FROM d;
SELECT is((result->>'tile_count')::bigint, (SELECT sum(n)::bigint FROM expected),
          'result.tile_count is their sum (17)') FROM d;
SELECT ok((result->>'bytes')::bigint > 0 AND result ? 'duration_ms',
          'result has the bytes and the duration') FROM d;
SELECT ok(logs::text ~ 'Zoom 2: 12 tiles \(4 x 3\)', 'the log has a line per zoom level') FROM d;
SELECT ok((SELECT count(DISTINCT (e->>'progress')::int) FROM jsonb_array_elements(logs) e) >= 4,
          'progress moved with the work (several figures in the log)') FROM d;

-- the tileset and its manifest
CREATE TEMP TABLE ts AS SELECT * FROM publish.tilesets WHERE version_id = :'version_id';
SELECT is((SELECT count(*) FROM ts), 1::bigint, 'the tileset was created');
SELECT is(jsonb_build_object('format', format, 'tile_size', tile_size, 'min_zoom', min_zoom,
                             'max_zoom', max_zoom, 'source_path', source_path, 'built_env', built_env),
          jsonb_build_object('format', 'png', 'tile_size', 256, 'min_zoom', 0, 'max_zoom', 2,
                             'source_path', 'tap-build/build-one/builds/v1/tiles', 'built_env', 'tap-build'),
          'with the defaults, the zoom range from the image, the build location and the environment')
  FROM ts;
SELECT isnt(built_at, NULL, 'built_at is set') FROM ts;

CREATE TEMP TABLE manifest AS
SELECT t.z, t.x, t.y, t.byte_size, t.sha256, format('%s/%s/%s/%s.png', :'build_dir', t.z, t.x, t.y) AS path
  FROM publish.tiles t JOIN ts ON ts.id = t.tileset_id;
SELECT set_eq($$SELECT z, count(*) FROM manifest GROUP BY z$$, $$SELECT z, n FROM expected$$,
              'the manifest has the expected tiles per zoom');
SELECT is((SELECT count(*) FROM manifest WHERE x < ceil(1000 / (256 * 2.0 ^ (2 - z)))
                                            AND y < ceil(600 / (256 * 2.0 ^ (2 - z)))),
          17::bigint, 'each tile is where the image is (columns and rows from the top-left)');
SELECT set_eq(format($$SELECT * FROM test_helpers.list_files(%L)$$, :'build_dir'),
              $$SELECT format('%s/%s/%s.png', z, x, y) FROM manifest$$,
              'the build location has exactly the tiles of the manifest, as {z}/{x}/{y}.png');
SELECT is((SELECT count(*) FROM manifest
            WHERE (pg_stat_file(path)).size = byte_size AND test_helpers.file_sha256(path) = sha256),
          17::bigint, 'every file has the size and sha256 of the manifest');

-- the pixels: tile 2/1/1 starts at (256, 256) of the source, at full size
SELECT is(test_helpers.image_size(:'build_dir' || '/2/1/1.png'), E'256\n256', 'tiles are 256 x 256');
SELECT is(test_helpers.pixel(:'build_dir' || '/2/1/1.png', 10, 20), '10 20 128 255',
          'pixel (10, 20) of tile 2/1/1 is pixel (266, 276) of the source');
SELECT is(test_helpers.pixel(:'build_dir' || '/2/3/2.png', 231, 87), '231 87 128 255',
          'pixel (231, 87) of the edge tile 2/3/2 is pixel (999, 599) of the source');
SELECT is(test_helpers.pixel(:'build_dir' || '/2/3/2.png', 232, 88), '0 0 0 0',
          'past the image, edge tiles are padded with transparent pixels');
SELECT is(test_helpers.image_size(:'build_dir' || '/0/0/0.png'), E'256\n256',
          'the zoom 0 tile is padded to 256 x 256 too');

-- ---------------------------------------------------------------------------
-- publish_version of a version with a base_map and no tiles built: it
-- builds them first, in the same job, then publishes them.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('build-pub', 2) AS pub_project \gset
SELECT test_helpers.make_image(:'root' || '/assets/build-pub/map.png', 700, 300) \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'root', 'assets/build-pub/map.png')
  FROM publish.project_versions v WHERE v.project_id = :'pub_project' \g /dev/null

SELECT id AS pjob FROM publish.publish_version('build-pub', 1, 'tap-build') \gset
CREATE TEMP TABLE p AS SELECT * FROM test_helpers.wait_job(:'pjob', '60 s');
SELECT is(status, 'completed', 'publish_version builds the missing tiles and publishes') FROM p;
SELECT is((result->>'tile_count')::bigint, (SELECT sum(n)::bigint FROM test_helpers.expected_tiles(700, 300, 256, 2)),
          'it publishes the 9 tiles a 700 x 300 image cuts into') FROM p;
SELECT ok(logs::text ~ 'Built 9 tiles', 'the log says it built them') FROM p;
SELECT ok(NOT EXISTS (SELECT 1 FROM jsonb_array_elements(logs) e
                       WHERE e->>'message' ~ '^(Zoom|Cut|Built [0-9]+ tiles)'
                         AND (e->>'progress')::int NOT BETWEEN 50 AND 80),
          'the build''s progress stays within the 50-80% band of step 4') FROM p;
SELECT is(test_helpers.read_json(:'root' || '/tap-build/build-pub/release.json')->'tileset'->>'tile_count', '9',
          'release.json describes the built tileset');
CREATE TEMP TABLE pub AS
SELECT t.z, t.x, t.y, t.sha256,
       format('%s/tap-build/build-pub/builds/v1/tiles/%s/%s/%s.png', :'root', t.z, t.x, t.y) AS built,
       format('%s/tap-build/build-pub/tiles/v1/%s/%s/%s.png', :'root', t.z, t.x, t.y) AS published
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
  JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'pub_project';
SELECT is((SELECT count(*) FROM pub WHERE pg_read_binary_file(published) = pg_read_binary_file(built)
                                      AND test_helpers.file_sha256(published) = sha256),
          9::bigint, 'every tile is published, byte-identical to the built one');

-- a publish again finds them built for this environment: no second build
SELECT id AS pjob2 FROM publish.publish_version('build-pub', 1, 'tap-build') \gset
SELECT is(status, 'completed', 'publishing again completes') FROM test_helpers.wait_job(:'pjob2', '60 s');
SELECT ok(logs::text !~ 'Built [0-9]+ tiles', '... without building the tiles again')
  FROM publish.jobs WHERE id = :'pjob2';

-- tiles built for one environment are built again for another: the build
-- records where it put them (tilesets.built_env)
SELECT :'storage' || '/build2' AS root2 \gset
SELECT publish.set_storage_target('tap-build2', 'file://' || :'root2') \g /dev/null
SELECT test_helpers.make_image(:'root2' || '/assets/build-pub/map.png', 700, 300) \g /dev/null
SELECT id AS pjob3 FROM publish.publish_version('build-pub', 1, 'tap-build2') \gset
SELECT is(status, 'completed', 'publishing to another environment completes') FROM test_helpers.wait_job(:'pjob3', '60 s');
SELECT ok(logs::text ~ 'Built 9 tiles', '... after building the tiles on that target')
  FROM publish.jobs WHERE id = :'pjob3';
SELECT is(s.built_env || ' ' || s.source_path, 'tap-build2 tap-build2/build-pub/builds/v1/tiles',
          '... which the tileset now records')
  FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
 WHERE v.project_id = :'pub_project';

-- ---------------------------------------------------------------------------
-- The tileset decides: webp tiles of 512 px, zooms 1-2 of a 1000 x 600
-- image whose own maximum at 512 px is zoom 1 (so it is scaled up 2x).
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('build-webp', 1) AS webp_project \gset
SELECT id AS webp_version FROM publish.project_versions WHERE project_id = :'webp_project' \gset
SELECT test_helpers.add_base_map(:'webp_version', :'root', 'assets/build-one/map.png') \g /dev/null
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom)
VALUES (:'webp_version', 'webp', 512, 1, 2);
SELECT id AS wjob FROM publish.build_tiles('build-webp', 1, 'tap-build') \gset
CREATE TEMP TABLE w AS SELECT * FROM test_helpers.wait_job(:'wjob', '60 s');
SELECT is(status, 'completed', 'a webp build of zooms 1-2 completes') FROM w;
SELECT is(result->'tiles_per_zoom',
          (SELECT jsonb_object_agg(z::text, n) FROM test_helpers.expected_tiles(2000, 1200, 512, 2) WHERE z >= 1),
          'zooms 1-2 only, of the image scaled up to 2000 x 1200: {"1": 4, "2": 12}') FROM w;
SELECT is(test_helpers.run(format('vipsheader -f vips-loader %1$s; vipsheader -f width %1$s',
                                  :'root' || '/tap-build/build-webp/builds/v1/tiles/2/3/2.webp')),
          E'webpload\n512', 'the tiles are 512 px WebP images');

-- ---------------------------------------------------------------------------
-- cancel_job stops a build while it uploads, and nothing is recorded.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('build-cancel', 1) AS cancel_project \gset
SELECT test_helpers.make_image(:'root' || '/assets/build-cancel/map.png', 4000, 4000) \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'root', 'assets/build-cancel/map.png')
  FROM publish.project_versions v WHERE v.project_id = :'cancel_project' \g /dev/null
SELECT id AS cjob FROM publish.build_tiles('build-cancel', 1, 'tap-build') \gset
SELECT test_helpers.wait_progress(:'cjob', 29, '60 s') \g /dev/null
SELECT publish.cancel_job(:'cjob') \g /dev/null
SELECT is(status, 'cancelled', 'a build cancelled after the cut stops (at its next progress commit)')
  FROM test_helpers.wait_job(:'cjob', '60 s');
SELECT is((SELECT count(*) FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
            WHERE v.project_id = :'cancel_project'), 0::bigint, '... and records no tileset');

-- ---------------------------------------------------------------------------
-- Bad sources fail the build with a clear error.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('build-bad', 1) AS bad_project \gset
SELECT test_helpers.write_file(:'root' || '/assets/build-bad/map.png',
                               convert_to('this is not an image', 'UTF8')) \g /dev/null
INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type)
SELECT v.id, 'map', 'base_map', 'assets/build-bad/map.png', 'image/png'
  FROM publish.project_versions v WHERE v.project_id = :'bad_project';
SELECT id AS bjob FROM publish.build_tiles('build-bad', 1, 'tap-build') \gset
SELECT is(status, 'failed', 'a source that is not an image fails the build')
  FROM test_helpers.wait_job(:'bjob', '60 s');
SELECT matches(error, '^the source image "assets/build-bad/map.png" \(asset map\) is not an image libvips can read',
               '... saying which asset is not an image') FROM publish.jobs WHERE id = :'bjob';
SELECT is((SELECT count(*) FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
            WHERE v.project_id = :'bad_project'), 0::bigint, '... and records no tileset');

UPDATE publish.assets SET storage_path = 'assets/build-bad/missing.png'
 WHERE version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'bad_project');
SELECT id AS mjob FROM publish.build_tiles('build-bad', 1, 'tap-build') \gset
SELECT matches(error, 'is not on target "tap-build"', 'a missing source image fails the build, naming it')
  FROM test_helpers.wait_job(:'mjob', '60 s');

-- over publish.max_source_pixels (1 megapixel here): PT413, before decoding
ALTER SYSTEM SET publish.max_source_pixels = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT test_helpers.make_image(:'root' || '/assets/build-bad/big.png', 1200, 1000) \g /dev/null
UPDATE publish.assets SET storage_path = 'assets/build-bad/big.png'
 WHERE version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'bad_project');
SELECT id AS big FROM publish.build_tiles('build-bad', 1, 'tap-build') \gset
SELECT is(status, 'failed', 'a source image over publish.max_source_pixels fails the build')
  FROM test_helpers.wait_job(:'big', '60 s');
SELECT matches(error, 'too large: 1200 x 1000 pixels is 1.2 megapixels, over publish.max_source_pixels \(1\)',
               '... with the limit in the message (SQLSTATE PT413)') FROM publish.jobs WHERE id = :'big';
ALTER SYSTEM RESET publish.max_source_pixels;
SELECT pg_reload_conf() \g /dev/null

SELECT is((SELECT count(*) FROM pg_ls_dir('base/pgsql_tmp', true, false) AS f WHERE f LIKE 'pgsql_tmppublish_tiles%'),
          0::bigint, 'no temporary directory is left behind');

SELECT * FROM finish();
