-- 47_build_tiles_parallel.sql: a build on a remote target uploads its
-- tiles through a storage batch, publish.storage_concurrency at once
-- (tile_build.c, upload_in_parallel): every tile lands, the manifest has
-- each one's size, sha256 and MD5 as stored, and the uploads overlap (the
-- fault server holds each tile's PUT for a while and says how many were in
-- flight when each arrived).  On S3 a put is verified by its ETag, without
-- a HEAD; on WebDAV a HEAD checks each tile's size.  A tileset whose format
-- changes while its tiles are uploaded fails the build (PT409); a rebuild
-- stopped while it overwrites a build's tiles leaves the tileset unbuilt.
--
-- Environments tap-pbuild-*.  Projects pbuild-*.

DELETE FROM publish.projects WHERE slug LIKE 'pbuild-%';

SELECT plan(13);

-- a 1500 x 1000 source, zooms 0-3: 1 + 2 + 6 + 24 tiles
SELECT sum(n) AS n_tiles FROM test_helpers.expected_tiles(1500, 1000, 256, 3) \gset
SELECT :'storage' || '/pbuild-src' AS src_root,
       :'s3rver_url' || '/' || :'s3_bucket' || '/pbuild' AS bucket_url,
       '/' || :'s3_bucket' || '/pbuild' AS bucket_path \gset

-- A project with a base map at storage_path, put on env's target.
CREATE FUNCTION pg_temp.project(slug text, env text) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	pid uuid := test_helpers.make_project(slug, 2);
	path text := format('assets/%s/map.png', slug);
	root text := current_setting('pbuild.src_root');
BEGIN
	PERFORM test_helpers.make_image(root || '/' || path, 1500, 1000);
	PERFORM publish._storage_put(env, path, pg_read_binary_file(root || '/' || path), 'image/png');
	PERFORM test_helpers.add_base_map(v.id, root, path) FROM publish.project_versions v WHERE v.project_id = pid;
	RETURN pid;
END
$$;
SELECT set_config('pbuild.src_root', :'src_root', false) \g /dev/null

-- ---------------------------------------------------------------------------
-- S3
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-pbuild-s3', 's3://' || :'s3_bucket' || '/pbuild',
       jsonb_build_object('endpoint', :'s3_endpoint')) \g /dev/null
SELECT publish.set_storage_credentials('tap-pbuild-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT pg_temp.project('pbuild-s3', 'tap-pbuild-s3') AS s3_project \gset
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom)
SELECT id, 'png', 256, 0, 3 FROM publish.project_versions WHERE project_id = :'s3_project';

SELECT id AS s3_job FROM publish.build_tiles('pbuild-s3', 1, 'tap-pbuild-s3') \gset
CREATE TEMP TABLE s3 AS SELECT * FROM test_helpers.wait_job(:'s3_job', '60 s');
SELECT is(status || coalesce(' ' || error, ''), 'completed', 'S3: the build completes') FROM s3;
CREATE TEMP TABLE s3_tiles AS
SELECT t.z, t.x, t.y, t.sha256, t.md5, t.byte_size,
       test_helpers.http_get(format('%s/tap-pbuild-s3/pbuild-s3/builds/v1/tiles/%s/%s/%s.png', :'bucket_url', t.z, t.x, t.y)) AS built
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
  JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'s3_project';
SELECT is((SELECT count(*) FROM s3_tiles), :'n_tiles'::bigint, 'S3: the manifest has all 33 tiles');
SELECT is((SELECT count(*) FROM s3_tiles
            WHERE octet_length(built) = byte_size AND encode(sha256(built), 'hex') = sha256 AND md5(built) = md5),
          :'n_tiles'::bigint, 'S3: each landed, with the size, sha256 and MD5 the manifest has');
CREATE TEMP TABLE s3_log (line text);
SELECT pg_sleep(0.2) \g /dev/null
COPY s3_log FROM :'s3_log';
SELECT is((SELECT count(*) FROM s3_log WHERE line ~ ('^PUT ' || :'bucket_path' || '/tap-pbuild-s3/pbuild-s3/builds/v1/tiles/')),
          :'n_tiles'::bigint, 'S3: one PutObject per tile');
SELECT is((SELECT count(*) FROM s3_log WHERE line ~ ('^HEAD ' || :'bucket_path' || '/tap-pbuild-s3/pbuild-s3/builds/')),
          0::bigint, '... and no HEAD: each put is verified by its ETag');

-- ---------------------------------------------------------------------------
-- Overlapping uploads: the fault server holds each tile's PUT for 300 ms.
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-pbuild-slow', :'fault_url' || '/slowput-300/tpbslow') \g /dev/null
SELECT pg_temp.project('pbuild-slow', 'tap-pbuild-slow') AS slow_project \gset
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom)
SELECT id, 'png', 256, 0, 3 FROM publish.project_versions WHERE project_id = :'slow_project';
SELECT id AS slow_job FROM publish.build_tiles('pbuild-slow', 1, 'tap-pbuild-slow') \gset
CREATE TEMP TABLE slow AS SELECT * FROM test_helpers.wait_job(:'slow_job', '60 s');
SELECT is(status || coalesce(' ' || error, ''), 'completed', 'a build on a slow server completes') FROM slow;
SELECT is((SELECT count(*) FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
            JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'slow_project'),
          :'n_tiles'::bigint, '... with all 33 tiles in its manifest');
SELECT format('curl -sf %s', :'fault_url' || '/_requests/tpbslow') AS requests_cmd \gset
CREATE TEMP TABLE slow_requests (line text);
COPY slow_requests FROM PROGRAM :'requests_cmd';
SELECT is((SELECT count(*) FROM slow_requests WHERE line ~ '^PUT /slowput-300/tpbslow/tap-pbuild-slow/pbuild-slow/builds/v1/tiles/'),
          :'n_tiles'::bigint, '... each uploaded once');
SELECT cmp_ok((SELECT max(substring(line FROM 'inflight=(\d+)$')::int) FROM slow_requests),
              '>=', 4, '... several at once (publish.storage_concurrency is 8): the zoom level of 24 tiles had 4 or more in flight');

-- ---------------------------------------------------------------------------
-- A rebuild of pbuild-slow, cancelled once it has begun to overwrite the
-- first build's tiles: the tileset no longer names them as built.
-- ---------------------------------------------------------------------------

SELECT id AS rebuild_job FROM publish.build_tiles('pbuild-slow', 1, 'tap-pbuild-slow') \gset
SELECT set_config('pbuild.slow_requests', :'fault_url' || '/_requests/tpbslow', false),
       set_config('pbuild.n_tiles', :'n_tiles', false) \g /dev/null
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT count(*) FROM regexp_matches(convert_from(test_helpers.http_get(current_setting('pbuild.slow_requests')), 'UTF8'),
		                                               'PUT [^\n]*/tiles/', 'g'))
		          > current_setting('pbuild.n_tiles')::int;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT publish.cancel_job(:'rebuild_job') \g /dev/null
SELECT is(status, 'cancelled', 'a rebuild cancelled while it uploads its tiles') FROM test_helpers.wait_job(:'rebuild_job', '60 s');
SELECT is(s.source_path, NULL, '... leaves the tileset without source_path: not built, so the next publish builds again')
  FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'slow_project';

-- ---------------------------------------------------------------------------
-- The tileset's format changed while its tiles are uploaded (500 ms a PUT):
-- the build's tiles are PNG, so it fails and records no manifest.
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-pbuild-race', :'fault_url' || '/slowput-500/tpbrace') \g /dev/null
SELECT pg_temp.project('pbuild-race', 'tap-pbuild-race') AS race_project \gset
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom)
SELECT id, 'png', 256, 0, 3 FROM publish.project_versions WHERE project_id = :'race_project';
SELECT id AS race_job FROM publish.build_tiles('pbuild-race', 1, 'tap-pbuild-race') \gset
SELECT set_config('pbuild.requests', :'fault_url' || '/_requests/tpbrace', false) \g /dev/null
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN convert_from(test_helpers.http_get(current_setting('pbuild.requests')), 'UTF8') ~ 'PUT [^\n]*/tiles/';
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
UPDATE publish.tilesets SET format = 'webp'
 WHERE version_id IN (SELECT id FROM publish.project_versions WHERE project_id = :'race_project');
CREATE TEMP TABLE race AS SELECT * FROM test_helpers.wait_job(:'race_job', '60 s');
SELECT ok(status = 'failed' AND error ~ '^the tileset of version 1 of project "pbuild-race" changed while its tiles were built: they are not png tiles of 256 px',
          'a tileset made webp while its png tiles were uploaded: the build fails, saying so') FROM race;
SELECT is((SELECT count(*) FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
            JOIN publish.project_versions v ON v.id = s.version_id WHERE v.project_id = :'race_project'),
          0::bigint, '... and records no manifest');

-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'pbuild-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-pbuild-%';
SELECT * FROM finish();
