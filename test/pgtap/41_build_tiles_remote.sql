-- 41_build_tiles_remote.sql: tiles built on remote targets, through the
-- worker: the source image is downloaded from the target, the tiles go to
-- the build location there and step 4 publishes them.  A real nginx with
-- WebDAV (what it stores is read back from its directory, :dav_dir) and
-- s3rver behind the SigV4 check (read back with the curl command), as in
-- 30_storage_webdav.sql and 31_storage_s3.sql.  And a download that is
-- retried (the fault server answers its first request 503).
--
-- Environments tap-build-dav (/open/tapb), tap-build-s3 (bucket prefix
-- tapb), tap-build-src and tap-build-retry (the fault server, one store
-- tbsrc).  Projects rbuild-*.

DELETE FROM publish.projects WHERE slug LIKE 'rbuild-%';

SELECT plan(18);

-- the expected tiles of a 700 x 300 source (zooms 0-2): 1 + 2 + 6
SELECT sum(n) AS n_tiles FROM test_helpers.expected_tiles(700, 300, 256, 2) \gset

-- ---------------------------------------------------------------------------
-- WebDAV
-- ---------------------------------------------------------------------------

SELECT :'dav_url' || '/open/tapb' AS dav_target, :'dav_dir' || '/open/tapb' AS dav_root \gset
SELECT publish.set_storage_target('tap-build-dav', :'dav_target') \g /dev/null
SELECT test_helpers.make_project('rbuild-dav', 2) AS dav_project \gset
SELECT test_helpers.make_image(:'dav_root' || '/assets/rbuild-dav/map.png', 700, 300) \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'dav_root', 'assets/rbuild-dav/map.png')
  FROM publish.project_versions v WHERE v.project_id = :'dav_project' \g /dev/null

SELECT id AS dav_job FROM publish.publish_version('rbuild-dav', 1, 'tap-build-dav') \gset
CREATE TEMP TABLE dav AS SELECT * FROM test_helpers.wait_job(:'dav_job', '60 s');
SELECT is(status, 'completed', 'WebDAV: publish_version downloads the source, builds and publishes') FROM dav;
SELECT is((result->>'tile_count')::bigint, :'n_tiles'::bigint, 'WebDAV: all 9 tiles are published') FROM dav;

CREATE TEMP TABLE dav_tiles AS
SELECT t.z, t.x, t.y, t.sha256, t.byte_size,
       format('%s/tap-build-dav/rbuild-dav/builds/v1/tiles/%s/%s/%s.png', :'dav_root', t.z, t.x, t.y) AS built,
       format('%s/tap-build-dav/rbuild-dav/tiles/v1/%s/%s/%s.png', :'dav_root', t.z, t.x, t.y) AS published
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
  JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'dav_project';
SELECT is((SELECT count(*) FROM dav_tiles
            WHERE test_helpers.file_sha256(built) = sha256 AND (pg_stat_file(built)).size = byte_size),
          :'n_tiles'::bigint, 'WebDAV: the build location on the server matches the manifest');
SELECT is((SELECT count(*) FROM dav_tiles WHERE pg_read_binary_file(published) = pg_read_binary_file(built)),
          :'n_tiles'::bigint, 'WebDAV: every published tile is on the server, byte-identical');
SELECT is(test_helpers.pixel(:'dav_root' || '/tap-build-dav/rbuild-dav/tiles/v1/2/2/1.png', 5, 6),
          '5 6 128 255', 'WebDAV: pixel (5, 6) of tile 2/2/1 is pixel (517, 262) of the source');

-- a download is capped at 8 bytes a pixel of publish.max_source_pixels (1
-- megapixel here: 8 MB): a bigger object stops the download (PT413)
SELECT test_helpers.run(format('head -c 9000000 /dev/urandom > %s; echo ok',
                               test_helpers.sh_quote(:'dav_root' || '/assets/rbuild-dav/huge.png'))) \g /dev/null
UPDATE publish.assets SET storage_path = 'assets/rbuild-dav/huge.png'
 WHERE version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'dav_project');
ALTER SYSTEM SET publish.max_source_pixels = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT id AS huge FROM publish.build_tiles('rbuild-dav', 1, 'tap-build-dav') \gset
SELECT is(status, 'failed', 'WebDAV: a source larger than the download cap fails the build')
  FROM test_helpers.wait_job(:'huge', '60 s');
SELECT matches(error, '^the download of assets/rbuild-dav/huge.png was stopped: it is larger than 8000000 bytes',
               '... stopping the download at the cap') FROM publish.jobs WHERE id = :'huge';
ALTER SYSTEM RESET publish.max_source_pixels;
SELECT pg_reload_conf() \g /dev/null

-- ---------------------------------------------------------------------------
-- S3
-- ---------------------------------------------------------------------------

SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/tapb' AS bucket_url,
       :'storage' || '/rbuild-src' AS src_root \gset
SELECT publish.set_storage_target('tap-build-s3', 's3://' || :'s3_bucket' || '/tapb',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-build-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT test_helpers.make_project('rbuild-s3', 2) AS s3_project \gset
SELECT test_helpers.make_image(:'src_root' || '/assets/rbuild-s3/map.png', 700, 300) \g /dev/null
SELECT publish._storage_put('tap-build-s3', 'assets/rbuild-s3/map.png',
                            pg_read_binary_file(:'src_root' || '/assets/rbuild-s3/map.png'), 'image/png') \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'src_root', 'assets/rbuild-s3/map.png')
  FROM publish.project_versions v WHERE v.project_id = :'s3_project' \g /dev/null

SELECT id AS s3_job FROM publish.publish_version('rbuild-s3', 1, 'tap-build-s3') \gset
CREATE TEMP TABLE s3 AS SELECT * FROM test_helpers.wait_job(:'s3_job', '60 s');
SELECT is(status, 'completed', 'S3: publish_version downloads the source, builds and publishes') FROM s3;
SELECT is((result->>'tile_count')::bigint, :'n_tiles'::bigint, 'S3: all 9 tiles are published') FROM s3;

CREATE TEMP TABLE s3_tiles AS
SELECT t.z, t.x, t.y, t.sha256, t.md5, t.byte_size,
       test_helpers.http_get(format('%s/tap-build-s3/rbuild-s3/builds/v1/tiles/%s/%s/%s.png', :'bucket_url', t.z, t.x, t.y)) AS built,
       test_helpers.http_get(format('%s/tap-build-s3/rbuild-s3/tiles/v1/%s/%s/%s.png', :'bucket_url', t.z, t.x, t.y)) AS published
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
  JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'s3_project';
SELECT is((SELECT count(*) FROM s3_tiles
            WHERE encode(sha256(built), 'hex') = sha256 AND octet_length(built) = byte_size),
          :'n_tiles'::bigint, 'S3: the build location in the bucket matches the manifest');
SELECT is((SELECT count(*) FROM s3_tiles WHERE md5 = md5(built)), :'n_tiles'::bigint,
          'S3: the manifest has the MD5 of each built tile (its copy is verified by the ETag)');
SELECT is((SELECT count(*) FROM s3_tiles WHERE published = built),
          :'n_tiles'::bigint, 'S3: every published tile is in the bucket, byte-identical');
SELECT test_helpers.write_file(:'src_root' || '/check/2-2-1.png', published)
  FROM s3_tiles WHERE z = 2 AND x = 2 AND y = 1 \g /dev/null
SELECT is(test_helpers.pixel(:'src_root' || '/check/2-2-1.png', 5, 6),
          '5 6 128 255', 'S3: pixel (5, 6) of tile 2/2/1 is pixel (517, 262) of the source');

-- a source that is not in the bucket
UPDATE publish.assets SET storage_path = 'assets/rbuild-s3/missing.png'
 WHERE version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'s3_project');
SELECT id AS miss FROM publish.build_tiles('rbuild-s3', 1, 'tap-build-s3') \gset
SELECT is(status, 'failed', 'S3: a source image missing from the bucket fails the build')
  FROM test_helpers.wait_job(:'miss', '60 s');
SELECT matches(error, 'download of assets/rbuild-s3/missing.png failed on target "tap-build-s3": there is no such object',
               '... naming the object') FROM publish.jobs WHERE id = :'miss';

-- ---------------------------------------------------------------------------
-- A retried download: its retry notice is committed to the job's log while
-- the download file is open; the next attempt writes the file again
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-build-src', :'fault_url' || '/ok/tbsrc') \g /dev/null
SELECT publish.set_storage_target('tap-build-retry', :'fault_url' || '/fail503-1/tbsrc') \g /dev/null
SELECT test_helpers.make_project('rbuild-retry', 2) AS retry_project \gset
SELECT test_helpers.make_image(:'src_root' || '/assets/rbuild-retry/map.png', 700, 300) \g /dev/null
SELECT publish._storage_put('tap-build-src', 'assets/rbuild-retry/map.png',
                            pg_read_binary_file(:'src_root' || '/assets/rbuild-retry/map.png'), 'image/png') \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'src_root', 'assets/rbuild-retry/map.png')
  FROM publish.project_versions v WHERE v.project_id = :'retry_project' \g /dev/null

SELECT id AS retry_job FROM publish.build_tiles('rbuild-retry', 1, 'tap-build-retry') \gset
SELECT is(status || coalesce(' ' || error, ''), 'completed',
          'a build whose source download is retried completes')
  FROM test_helpers.wait_job(:'retry_job', '60 s');
SELECT ok(EXISTS (SELECT FROM publish.job_log WHERE job_id = :'retry_job'
                   AND message ~ '^attempt 1 of \d+ of the download of assets/rbuild-retry/map.png'),
          '... after its first attempt failed') ;
SELECT is((SELECT count(*) FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
            JOIN publish.project_versions v ON v.id = s.version_id
           WHERE v.project_id = :'retry_project'),
          :'n_tiles'::bigint, '... with all 9 tiles cut from the downloaded image');

SELECT * FROM finish();
