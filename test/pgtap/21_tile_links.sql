-- 21_tile_links.sql: published tiles are copies of the built tiles, not
-- hard links:
--   1. they get the published mode 0644 even when the build wrote 0600
--      (the server runs with umask 077), so a web server can read them;
--   2. rewriting a built tile in place does not change the published,
--      immutable tile.

DELETE FROM publish.projects WHERE slug = 'links-one';

SELECT plan(3);

SELECT :'storage' || '/links' AS root \gset
SELECT publish.set_storage_target('tap-links', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('links-one', 5, true) AS project_id \gset
SELECT test_helpers.write_tiles(:'root', 'links-one', 1) \g /dev/null
SELECT :'root' || '/builds/links-one/v1/tiles' AS build_dir,
       :'root' || '/tap-links/links-one/tiles/v1' AS tiles_dir \gset

SELECT id AS job1 FROM publish.publish_version('links-one', 1, 'tap-links') \gset
SELECT is(status, 'completed', 'the version publishes') FROM test_helpers.wait_job(:'job1');

SELECT is(test_helpers.file_mode(:'tiles_dir' || '/1/0/0.png'), '644',
          'a published tile is readable by everyone (0644), like release.json');

SELECT test_helpers.overwrite_file_in_place(:'build_dir' || '/1/1/1.png',
                                            test_helpers.tile_bytes('links-other', 1, 1, 1, 1)) \g /dev/null
SELECT is(pg_read_binary_file(:'tiles_dir' || '/1/1/1.png'), test_helpers.tile_bytes('links-one', 1, 1, 1, 1),
          'rewriting a built tile in place does not change the published tile');

DELETE FROM publish.projects WHERE slug = 'links-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-links';
SELECT * FROM finish();
