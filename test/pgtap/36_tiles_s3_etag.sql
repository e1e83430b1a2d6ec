-- 36_tiles_s3_etag.sql: on S3, a tile whose MD5 the manifest knows (what
-- build_tiles records) is copied and verified by one request: CopyObject,
-- whose answer carries the MD5 the server computed of the copy (its ETag).
-- The requests are counted in the access log of the SigV4 proxy in front
-- of s3rver (:s3_log).  A corrupt or missing build tile still fails the job
-- naming it, a corrupt copy is not taken for a good one by the next
-- publish, a copy changed behind publish's back is noticed by its ETag even
-- with its sha256 metadata kept, and an ETag that is not the manifest's MD5
-- (a server whose ETags are no MD5) falls back to hashing the copy.
--
-- Environment tap-etag (bucket prefix etag).  Projects etag-*.

DELETE FROM publish.projects WHERE slug LIKE 'etag-%';

SELECT plan(23);

SELECT 21 AS ntiles \gset
SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/etag' AS bucket_url,
       '/' || :'s3_bucket' || '/etag' AS bucket_path \gset
SELECT publish.set_storage_target('tap-etag', 's3://' || :'s3_bucket' || '/etag',
       jsonb_build_object('endpoint', :'s3_endpoint')) \g /dev/null
SELECT publish.set_storage_credentials('tap-etag', :'s3_key_id', :'s3_secret') \g /dev/null

-- Projects with 21 tiles (zooms 0-2) whose manifest has the MD5 of each tile.
CREATE FUNCTION pg_temp.make(slug text, md5_of text DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	SELECT test_helpers.make_project(slug, 3, true, 2);
	UPDATE publish.tiles tl
	   SET md5 = md5(coalesce(convert_to(md5_of, 'UTF8'), test_helpers.tile_bytes(slug, 1, tl.z, tl.x, tl.y)))
	  FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
	  JOIN publish.projects p ON p.id = v.project_id
	 WHERE tl.tileset_id = s.id AND p.slug = make.slug;
$$;

-- The published key of each tile of a project, with its bytes.
CREATE FUNCTION pg_temp.published(slug text)
RETURNS TABLE (z int, x int, y int, key text, bytes bytea)
LANGUAGE sql STABLE
AS $$
	SELECT tl.z, tl.x, tl.y, format('tap-etag/%s/tiles/v1/%s/%s/%s.png', slug, tl.z, tl.x, tl.y),
	       test_helpers.tile_bytes(slug, 1, tl.z, tl.x, tl.y)
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	  JOIN publish.tilesets s ON s.version_id = v.id
	  JOIN publish.tiles tl ON tl.tileset_id = s.id
	 WHERE p.slug = published.slug AND v.version_number = 1
$$;

-- The requests the proxy passed on so far whose line matches pattern.
CREATE TEMP TABLE s3_log (line text);
CREATE FUNCTION pg_temp.requests(pattern text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM pg_sleep(0.2);		-- the proxy writes its log asynchronously
	TRUNCATE s3_log;
	EXECUTE format('COPY s3_log FROM %L', current_setting('etag.s3_log'));
	RETURN (SELECT count(*) FROM s3_log WHERE line ~ pattern);
END
$$;
SELECT set_config('etag.s3_log', :'s3_log', false) \g /dev/null

-- ---------------------------------------------------------------------------
-- A first publish: one CopyObject per tile, nothing else per tile.
-- ---------------------------------------------------------------------------

SELECT pg_temp.make('etag-ok') \g /dev/null
SELECT is(test_helpers.upload_tiles('tap-etag', 'etag-ok', 1), :ntiles, 'the build tiles are in the bucket');
SELECT pg_temp.requests('') AS before_ok \gset
SELECT id AS job_ok FROM publish.publish_version('etag-ok', 1, 'tap-etag') \gset
CREATE TEMP TABLE ok1 AS SELECT * FROM test_helpers.wait_job(:'job_ok', '60 s');
SELECT is(status, 'completed', 'a version whose manifest has MD5s publishes') FROM ok1;
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, 0, :ntiles], 'result counts 21 copied, 0 skipped, 21 verified') FROM ok1;
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(:'bucket_url' || '/' || key) = bytes), :ntiles::bigint,
          'every tile is in the bucket, byte for byte') FROM pg_temp.published('etag-ok');
SELECT is(pg_temp.requests('^PUT ' || :'bucket_path' || '/tap-etag/etag-ok/tiles/v1/\S+ copy-from /'
                           || :'s3_bucket' || '/etag/builds/etag-ok/v1/tiles/'),
          :ntiles::bigint, 'each tile was copied on the server once (CopyObject)');
SELECT is(pg_temp.requests('^(GET|HEAD) ' || :'bucket_path' || '/(builds/etag-ok/v1/tiles|tap-etag/etag-ok/tiles)/'),
          0::bigint, '... and no tile was read or checked besides: one request per tile');
SELECT test_helpers.http_head(:'bucket_url' || '/tap-etag/etag-ok/tiles/v1/2/1/3.png') AS head_tile \gset
SELECT ok(:'head_tile' ~* ('etag: "' || md5(test_helpers.tile_bytes('etag-ok', 1, 2, 1, 3)) || '"')
          AND :'head_tile' !~* 'x-amz-meta-sha256',
          'a copy has the tile''s MD5 as its ETag, and no sha256 metadata (it was not checked when it was made)');

SELECT id AS job_ok2 FROM publish.publish_version('etag-ok', 1, 'tap-etag') \gset
CREATE TEMP TABLE ok2 AS SELECT * FROM test_helpers.wait_job(:'job_ok2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'a re-publish copies none, skips all 21, verifies all 21') FROM ok2;
SELECT is(pg_temp.requests('^HEAD ' || :'bucket_path' || '/tap-etag/etag-ok/tiles/v1/'), 0::bigint,
          '... without a request of any tile: the listing tells each copy''s ETag, the manifest''s MD5');
SELECT is(pg_temp.requests('^GET /' || :'s3_bucket' || '/\?list-type=2&max-keys=1000&prefix=etag%2Ftap-etag%2Fetag-ok%2Ftiles%2Fv1%2F[0-9]'),
          3::bigint, '... one listing of each zoom level');

-- A published tile changed behind publish's back, its x-amz-meta-sha256
-- claiming the manifest's sha256: the ETag tells, the tile is copied again.
SELECT :'storage' || '/etag-tampered.png' AS tampered_file \gset
SELECT test_helpers.write_file(:'tampered_file', test_helpers.tile_bytes('etag-ok', 9, 2, 1, 3)) \g /dev/null
SELECT test_helpers.run(format(
         'curl -sSf -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user %s -T %s -H %s -H %s -H %s %s && echo ok',
         test_helpers.sh_quote(:'s3_key_id' || ':' || :'s3_secret'), test_helpers.sh_quote(:'tampered_file'),
         test_helpers.sh_quote('Content-Type: image/png'),
         test_helpers.sh_quote('x-amz-content-sha256: ' || encode(sha256(test_helpers.tile_bytes('etag-ok', 9, 2, 1, 3)), 'hex')),
         test_helpers.sh_quote('x-amz-meta-sha256: ' || encode(sha256(test_helpers.tile_bytes('etag-ok', 1, 2, 1, 3)), 'hex')),
         test_helpers.sh_quote(:'s3_endpoint' || '/' || :'s3_bucket' || '/etag/tap-etag/etag-ok/tiles/v1/2/1/3.png'))) \g /dev/null
SELECT id AS job_ok3 FROM publish.publish_version('etag-ok', 1, 'tap-etag') \gset
CREATE TEMP TABLE ok3 AS SELECT * FROM test_helpers.wait_job(:'job_ok3', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int],
          ARRAY[1, :ntiles - 1], 'a tile changed in place with its sha256 metadata kept is not skipped: its ETag differs') FROM ok3;
SELECT is(test_helpers.http_get(:'bucket_url' || '/tap-etag/etag-ok/tiles/v1/2/1/3.png'),
          test_helpers.tile_bytes('etag-ok', 1, 2, 1, 3), '... and has its right bytes again');

-- ---------------------------------------------------------------------------
-- A corrupt build tile: the copy's ETag is not the MD5, the copy is hashed,
-- the job fails naming the tile; the next publish does not skip the bad copy.
-- ---------------------------------------------------------------------------

SELECT pg_temp.make('etag-bad') \g /dev/null
SELECT test_helpers.upload_tiles('tap-etag', 'etag-bad', 1) \g /dev/null
SELECT publish._storage_put('tap-etag', 'builds/etag-bad/v1/tiles/2/1/3.png',
                            test_helpers.tile_bytes('etag-bax', 1, 2, 1, 3), 'image/png') \g /dev/null
SELECT id AS job_bad FROM publish.publish_version('etag-bad', 1, 'tap-etag') \gset
CREATE TEMP TABLE bad AS SELECT * FROM test_helpers.wait_job(:'job_bad', '60 s');
SELECT is(status, 'failed', 'a corrupt build tile fails the job') FROM bad;
SELECT ok(error ~ '^1 tile of version 1 of project "etag-bad" is missing or corrupt'
          AND error ~ 'tile 2/1/3 \(builds/etag-bad/v1/tiles/2/1/3.png\) does not match its sha256',
          'the error counts it and names it, with its build path') FROM bad;
SELECT is(pg_temp.requests('^GET ' || :'bucket_path' || '/tap-etag/etag-bad/tiles/v1/2/1/3.png$'), 1::bigint,
          'the copy whose ETag was not the MD5 was downloaded and hashed');
SELECT ok(test_helpers.http_get(:'bucket_url' || '/tap-etag/etag-bad/release.json') IS NULL,
          'no release.json is written');

SELECT publish._storage_put('tap-etag', 'builds/etag-bad/v1/tiles/2/1/3.png',
                            test_helpers.tile_bytes('etag-bad', 1, 2, 1, 3), 'image/png') \g /dev/null
SELECT id AS job_fixed FROM publish.publish_version('etag-bad', 1, 'tap-etag') \gset
CREATE TEMP TABLE fixed AS SELECT * FROM test_helpers.wait_job(:'job_fixed', '60 s');
SELECT is(status, 'completed', 'with the build tile mended, the version publishes') FROM fixed;
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(:'bucket_url' || '/' || key) = bytes), :ntiles::bigint,
          '... and every tile is right in the bucket: the corrupt copy was replaced, not skipped')
  FROM pg_temp.published('etag-bad');

-- ---------------------------------------------------------------------------
-- A missing build tile: CopyObject answers 404, the tile is named.
-- ---------------------------------------------------------------------------

SELECT pg_temp.make('etag-miss') \g /dev/null
SELECT count(*) FROM (SELECT publish._storage_put('tap-etag', t.path, t.bytes, 'image/png')
                        FROM test_helpers.manifest_tiles('etag-miss', 1) AS t
                       WHERE t.path !~ '/2/3/2\.png$') AS u \g /dev/null
SELECT id AS job_miss FROM publish.publish_version('etag-miss', 1, 'tap-etag') \gset
CREATE TEMP TABLE miss AS SELECT * FROM test_helpers.wait_job(:'job_miss', '60 s');
SELECT is(status, 'failed', 'a missing build tile fails the job') FROM miss;
SELECT ok(error ~ '^1 tile of version 1 of project "etag-miss" is missing or corrupt'
          AND error ~ 'tile 2/3/2 \(builds/etag-miss/v1/tiles/2/3/2.png\) is missing',
          'the error names it as missing') FROM miss;

-- ---------------------------------------------------------------------------
-- ETags that are not the manifest's MD5 (as on a server whose ETags are no
-- MD5, SSE-KMS): every copy is hashed, and the version publishes.
-- ---------------------------------------------------------------------------

SELECT pg_temp.make('etag-odd', 'not the bytes') \g /dev/null
SELECT test_helpers.upload_tiles('tap-etag', 'etag-odd', 1) \g /dev/null
SELECT id AS job_odd FROM publish.publish_version('etag-odd', 1, 'tap-etag') \gset
CREATE TEMP TABLE odd AS SELECT * FROM test_helpers.wait_job(:'job_odd', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, :ntiles], 'ETags other than the MD5: all 21 tiles copied and verified') FROM odd;
SELECT is(pg_temp.requests('^GET ' || :'bucket_path' || '/tap-etag/etag-odd/tiles/v1/'), :ntiles::bigint,
          '... each by hashing its copy');
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(:'bucket_url' || '/' || key) = bytes), :ntiles::bigint,
          '... byte for byte') FROM pg_temp.published('etag-odd');

-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'etag-%';
DELETE FROM publish.storage_targets WHERE env = 'tap-etag';
SELECT * FROM finish();
