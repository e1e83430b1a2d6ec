-- 37_tiles_windows.sql: step 4 reads the tile manifest in windows of
-- publish.tile_window tiles (tile_publish.c), set here to 50, so that a
-- tileset of 341 tiles (zooms 0-4) spans seven of them: on the local target
-- (tile by tile) and on WebDAV (the parallel loop) every tile is published,
-- a re-publish skips them all, and a corrupt build tile in the last window
-- fails the job naming it.  A manifest changed after validation (in whose
-- snapshot release.json's tile count is read) fails the job (PT409) instead
-- of publishing tiles that are not the ones release.json counts.
--
-- Environments tap-win-*.  Projects win-*.

DELETE FROM publish.projects WHERE slug LIKE 'win-%';

SELECT plan(20);

SELECT 341 AS ntiles \gset
SELECT :'storage' || '/win' AS root,
       :'dav_url' || '/open/win' AS dav_open_url, :'dav_dir' || '/open/win' AS dav_open_dir \gset
SELECT publish.set_storage_target('tap-win-local', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-win-dav', :'dav_open_url') \g /dev/null

SELECT test_helpers.make_project('win-local', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('win-dav', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('win-bad', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('win-dav-bad', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('win-gone', 3, true, 2) \g /dev/null
SELECT test_helpers.make_project('win-edit', 3, true, 2) \g /dev/null

ALTER SYSTEM SET publish.tile_window = 50;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null

-- Where each tile of a project's manifest is published, with its bytes.
CREATE FUNCTION pg_temp.published(slug text, env text)
RETURNS TABLE (z int, x int, y int, key text, bytes bytea)
LANGUAGE sql STABLE
AS $$
	SELECT tl.z, tl.x, tl.y, format('%s/%s/tiles/v1/%s/%s/%s.png', env, slug, tl.z, tl.x, tl.y),
	       test_helpers.tile_bytes(slug, 1, tl.z, tl.x, tl.y)
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	  JOIN publish.tilesets s ON s.version_id = v.id
	  JOIN publish.tiles tl ON tl.tileset_id = s.id
	 WHERE p.slug = published.slug AND v.version_number = 1
$$;

-- ---------------------------------------------------------------------------
-- Local target: tile by tile, seven windows.
-- ---------------------------------------------------------------------------

SELECT test_helpers.write_tiles(:'root', 'win-local', 1) \g /dev/null
SELECT id AS job_l1 FROM publish.publish_version('win-local', 1, 'tap-win-local') \gset
CREATE TEMP TABLE l1 AS SELECT * FROM test_helpers.wait_job(:'job_l1', '60 s');
SELECT is(status, 'completed', 'local, windows of 50: the version publishes') FROM l1;
SELECT is(ARRAY[(result->>'tile_count')::int, (result->>'tiles_copied')::int,
                (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, :ntiles, 0, :ntiles], 'local: 341 tiles, 341 copied, 0 skipped, 341 verified') FROM l1;
SELECT is(count(*) FILTER (WHERE pg_read_binary_file(:'root' || '/' || key) = bytes), :ntiles::bigint,
          'local: every tile of every window is in place, byte for byte')
  FROM pg_temp.published('win-local', 'tap-win-local');
SELECT is((test_helpers.read_json(:'root' || '/tap-win-local/win-local/release.json')->'tileset'->>'tile_count')::int,
          :ntiles, 'local: release.json counts the 341 tiles');

SELECT id AS job_l2 FROM publish.publish_version('win-local', 1, 'tap-win-local') \gset
CREATE TEMP TABLE l2 AS SELECT * FROM test_helpers.wait_job(:'job_l2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'local: a re-publish copies none, skips all 341, verifies all 341') FROM l2;

-- A corrupt build tile in the last window.
SELECT test_helpers.write_tiles(:'root', 'win-bad', 1) \g /dev/null
SELECT test_helpers.write_file(:'root' || '/builds/win-bad/v1/tiles/4/15/14.png',
                               test_helpers.tile_bytes('win-bax', 1, 4, 15, 14)) \g /dev/null
SELECT id AS job_lb FROM publish.publish_version('win-bad', 1, 'tap-win-local') \gset
CREATE TEMP TABLE lb AS SELECT * FROM test_helpers.wait_job(:'job_lb', '60 s');
SELECT is(status, 'failed', 'local: a corrupt tile in the last window fails the job') FROM lb;
SELECT ok(error ~ '^1 tile of version 1 of project "win-bad" is missing or corrupt'
          AND error ~ 'tile 4/15/14 \(builds/win-bad/v1/tiles/4/15/14.png\) does not match its sha256',
          'local: the error names that tile') FROM lb;
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-win-local/win-bad/release.json'),
          'local: no release.json is written');

-- ---------------------------------------------------------------------------
-- WebDAV: the parallel loop reads the next window while tiles are in flight.
-- ---------------------------------------------------------------------------

SELECT test_helpers.write_tiles(:'dav_open_dir', 'win-dav', 1) \g /dev/null
SELECT id AS job_d1 FROM publish.publish_version('win-dav', 1, 'tap-win-dav') \gset
CREATE TEMP TABLE d1 AS SELECT * FROM test_helpers.wait_job(:'job_d1', '60 s');
SELECT is(status, 'completed', 'WebDAV, windows of 50: the version publishes') FROM d1;
SELECT is(ARRAY[(result->>'tile_count')::int, (result->>'tiles_copied')::int,
                (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, :ntiles, 0, :ntiles], 'WebDAV: 341 tiles, 341 copied, 0 skipped, 341 verified') FROM d1;
SELECT is(count(*) FILTER (WHERE pg_read_binary_file(:'dav_open_dir' || '/' || key) = bytes), :ntiles::bigint,
          'WebDAV: every tile of every window is on the server, byte for byte')
  FROM pg_temp.published('win-dav', 'tap-win-dav');

SELECT id AS job_d2 FROM publish.publish_version('win-dav', 1, 'tap-win-dav') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job_d2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'WebDAV: a re-publish copies none, skips all 341, verifies all 341') FROM d2;

SELECT test_helpers.write_tiles(:'dav_open_dir', 'win-dav-bad', 1) \g /dev/null
SELECT test_helpers.write_file(:'dav_open_dir' || '/builds/win-dav-bad/v1/tiles/4/15/14.png',
                               test_helpers.tile_bytes('win-dav-bax', 1, 4, 15, 14)) \g /dev/null
SELECT id AS job_db FROM publish.publish_version('win-dav-bad', 1, 'tap-win-dav') \gset
CREATE TEMP TABLE db AS SELECT * FROM test_helpers.wait_job(:'job_db', '60 s');
SELECT is(status, 'failed', 'WebDAV: a corrupt tile in the last window fails the job') FROM db;
SELECT ok(error ~ '^1 tile of version 1 of project "win-dav-bad" is missing or corrupt'
          AND error ~ 'tile 4/15/14 \(builds/win-dav-bad/v1/tiles/4/15/14.png\) does not match its sha256',
          'WebDAV: the error names that tile') FROM db;

-- ---------------------------------------------------------------------------
-- The manifest changes after validation: the job fails, nothing goes live.
-- The worker is held in step 1 by a lock on publish.storage_credentials,
-- after its snapshot was taken; the manifest is changed and committed
-- then, so validation (release.json's tile count) sees the manifest as it
-- was, and the windows, read later, see it changed.
-- ---------------------------------------------------------------------------

-- A tile deleted (local target): release.json would count one tile too many.
SELECT test_helpers.write_tiles(:'root', 'win-gone', 1) \g /dev/null
SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job_g FROM publish.publish_version('win-gone', 1, 'tap-win-local') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the worker is held in step 1');
DELETE FROM publish.tiles tl USING publish.tilesets s, publish.project_versions v, publish.projects p
 WHERE tl.tileset_id = s.id AND s.version_id = v.id AND v.project_id = p.id
   AND p.slug = 'win-gone' AND (tl.z, tl.x, tl.y) = (2, 3, 3);
SELECT test_helpers.let_go('creds') \g /dev/null
CREATE TEMP TABLE g AS SELECT * FROM test_helpers.wait_job(:'job_g', '60 s');
SELECT is(status, 'failed', 'a tile deleted from the manifest after validation fails the job') FROM g;
SELECT ok(error ~ '^the tile manifest of version 1 of project "win-gone" changed while it was being published'
          AND error ~ 'Validation read 21 tiles; the tiles published were read from 20 rows\.',
          'the error says the manifest changed, with the counts') FROM g;
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-win-local/win-gone/release.json'),
          'release.json is not written');

-- A tile edited (WebDAV), the count unchanged: caught by the fingerprint.
SELECT test_helpers.write_tiles(:'dav_open_dir', 'win-edit', 1) \g /dev/null
SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job_e FROM publish.publish_version('win-edit', 1, 'tap-win-dav') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the worker is held in step 1');
UPDATE publish.tiles tl SET md5 = md5('another tile')
  FROM publish.tilesets s, publish.project_versions v, publish.projects p
 WHERE tl.tileset_id = s.id AND s.version_id = v.id AND v.project_id = p.id
   AND p.slug = 'win-edit' AND (tl.z, tl.x, tl.y) = (2, 3, 3);
SELECT test_helpers.let_go('creds') \g /dev/null
CREATE TEMP TABLE e AS SELECT * FROM test_helpers.wait_job(:'job_e', '60 s');
SELECT ok(status = 'failed'
          AND error ~ '^the tile manifest of version 1 of project "win-edit" changed while it was being published'
          AND error ~ 'from 21 rows with other content',
          'a row edited after validation, the count unchanged, fails the job too') FROM e;

ALTER SYSTEM RESET publish.tile_window;
SELECT pg_reload_conf() \g /dev/null

-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'win-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-win-%';
SELECT * FROM finish();
