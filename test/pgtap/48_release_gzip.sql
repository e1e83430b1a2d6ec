-- 48_release_gzip.sql: the target option "compress": "gzip" stores
-- release.json and its immutable copy compressed: with Content-Encoding:
-- gzip on S3 and WebDAV, as a release.json.gz beside the plain document on
-- file:// (for nginx's gzip_static).  The job's result reports both sizes;
-- release_sha256 stays that of the document itself.  A viewer asking the
-- S3 test server with Accept-Encoding: gzip (curl --compressed) gets the
-- same document.  A value of compress the worker does not know fails the
-- job, saying so; a target that stops compressing removes the sibling.
--
-- Environments tap-gz-*.  Projects gz-*.

DELETE FROM publish.projects WHERE slug LIKE 'gz-%';

SELECT plan(17);

SELECT :'storage' || '/gz' AS root, :'dav_dir' || '/open/gz' AS dav_dir,
       :'s3rver_url' || '/' || :'s3_bucket' || '/gz' AS bucket_url \gset
SELECT publish.set_storage_target('tap-gz-file', 'file://' || :'root', '{"compress": "gzip"}') \g /dev/null
SELECT publish.set_storage_target('tap-gz-dav', :'dav_url' || '/open/gz', '{"compress": "gzip"}') \g /dev/null
SELECT publish.set_storage_target('tap-gz-s3', 's3://' || :'s3_bucket' || '/gz',
       jsonb_build_object('endpoint', :'s3_endpoint', 'compress', 'gzip')) \g /dev/null
SELECT publish.set_storage_credentials('tap-gz-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT publish.set_storage_target('tap-gz-bad', 'file://' || :'root', '{"compress": "brotli"}') \g /dev/null

SELECT test_helpers.make_project('gz-file', 200) \g /dev/null
SELECT test_helpers.make_project('gz-dav', 200) \g /dev/null
SELECT test_helpers.make_project('gz-s3', 200) \g /dev/null
SELECT test_helpers.make_project('gz-bad', 5) \g /dev/null

-- The bytes of a file, or of a URL's body, decompressed by gunzip; curl
-- --compressed asks with Accept-Encoding and decodes what it is sent.
CREATE FUNCTION pg_temp.gunzip_file(path text) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$
	SELECT decode(test_helpers.run(format('gunzip -c %s | base64 -w0; echo', test_helpers.sh_quote(path))), 'base64')
$$;
CREATE FUNCTION pg_temp.gunzip_url(url text) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$
	SELECT decode(test_helpers.run(format('curl -sf --max-time 10 %s | gunzip -c | base64 -w0; echo',
	                                      test_helpers.sh_quote(url))), 'base64')
$$;
CREATE FUNCTION pg_temp.viewer_get(url text) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$
	SELECT decode(test_helpers.run(format('curl -sf --compressed --max-time 10 %s | base64 -w0; echo',
	                                      test_helpers.sh_quote(url))), 'base64')
$$;

SELECT id AS job_file FROM publish.publish_version('gz-file', 1, 'tap-gz-file') \gset
SELECT id AS job_dav FROM publish.publish_version('gz-dav', 1, 'tap-gz-dav') \gset
SELECT id AS job_s3 FROM publish.publish_version('gz-s3', 1, 'tap-gz-s3') \gset
SELECT id AS job_bad FROM publish.publish_version('gz-bad', 1, 'tap-gz-bad') \gset
CREATE TEMP TABLE f AS SELECT * FROM test_helpers.wait_job(:'job_file', '60 s');
CREATE TEMP TABLE d AS SELECT * FROM test_helpers.wait_job(:'job_dav', '60 s');
CREATE TEMP TABLE s AS SELECT * FROM test_helpers.wait_job(:'job_s3', '60 s');
CREATE TEMP TABLE b AS SELECT * FROM test_helpers.wait_job(:'job_bad', '60 s');

-- file://
SELECT is(ARRAY[status, result->>'release_encoding'], ARRAY['completed', 'gzip'],
          'file://: a version publishes with compress gzip, its result says so') FROM f;
SELECT is(test_helpers.file_sha256(:'root' || '/tap-gz-file/gz-file/release.json'), result->>'release_sha256',
          'file://: release.json is the plain document, whose sha256 the job reports') FROM f;
SELECT is(pg_temp.gunzip_file(:'root' || '/tap-gz-file/gz-file/release.json.gz'),
          pg_read_binary_file(:'root' || '/tap-gz-file/gz-file/release.json'),
          'file://: release.json.gz beside it decompresses to the same document');
SELECT is(ARRAY[(pg_stat_file(:'root' || '/tap-gz-file/gz-file/release.json.gz')).size,
                (pg_stat_file(:'root' || '/tap-gz-file/gz-file/release.json')).size],
          ARRAY[(result->>'release_stored_bytes')::bigint, (result->>'release_bytes')::bigint],
          'file://: the result reports the sizes of both') FROM f;
SELECT ok(test_helpers.file_exists(:'root' || '/tap-gz-file/gz-file/releases/v1.json.gz'),
          'file://: the immutable copy has its .gz too');

-- WebDAV
SELECT is(status, 'completed', 'WebDAV: a version publishes with compress gzip') FROM d;
CREATE TEMP TABLE dav_log (line text);
COPY dav_log FROM :'dav_log';
SELECT is((SELECT count(*) FROM dav_log
            WHERE line ~ '^PUT /open/gz/tap-gz-dav/gz-dav/(release\.json|releases/v1\.json) 201 ct="application/json" .* ce="gzip"$'),
          2::bigint, 'WebDAV: release.json and its immutable copy are PUT with Content-Encoding: gzip');
SELECT is(encode(sha256(pg_temp.gunzip_file(:'dav_dir' || '/tap-gz-dav/gz-dav/release.json')), 'hex'),
          result->>'release_sha256', 'WebDAV: what is stored decompresses to the document whose sha256 the job reports') FROM d;
SELECT is((pg_stat_file(:'dav_dir' || '/tap-gz-dav/gz-dav/release.json')).size, (result->>'release_stored_bytes')::bigint,
          'WebDAV: ... in release_stored_bytes bytes') FROM d;
SELECT cmp_ok((result->>'release_stored_bytes')::bigint * 4, '<=', (result->>'release_bytes')::bigint,
              'WebDAV: ... a quarter of the document or less') FROM d;

-- S3
SELECT is(status, 'completed', 'S3: a version publishes with compress gzip') FROM s;
SELECT test_helpers.http_head(:'bucket_url' || '/tap-gz-s3/gz-s3/release.json') AS s3_head \gset
SELECT ok(:'s3_head' ~ 'content-encoding: gzip' AND :'s3_head' ~ 'content-type: application/json',
          'S3: release.json is served as application/json with Content-Encoding: gzip');
SELECT is(encode(sha256(pg_temp.viewer_get(:'bucket_url' || '/tap-gz-s3/gz-s3/release.json')), 'hex'),
          result->>'release_sha256', 'S3: a viewer asking with Accept-Encoding: gzip gets the document itself') FROM s;
SELECT is(pg_temp.gunzip_url(:'bucket_url' || '/tap-gz-s3/gz-s3/releases/v1.json'),
          pg_temp.viewer_get(:'bucket_url' || '/tap-gz-s3/gz-s3/release.json'),
          'S3: the immutable copy is the same document, compressed');

-- A value the worker does not know
SELECT is(status, 'failed', 'an unknown value of compress fails the job') FROM b;
SELECT ok(error ~ '^storage target of environment "tap-gz-bad" has an invalid option compress "brotli"',
          '... saying which option and value') FROM b;

-- The option off again: the plain document, and no stale .gz for gzip_static
SELECT publish.set_storage_target('tap-gz-file', 'file://' || :'root') \g /dev/null
SELECT id AS job_plain FROM publish.publish_version('gz-file', 1, 'tap-gz-file') \gset
SELECT test_helpers.wait_job(:'job_plain', '60 s') \g /dev/null
SELECT ok(NOT test_helpers.file_exists(:'root' || '/tap-gz-file/gz-file/release.json.gz')
          AND NOT test_helpers.file_exists(:'root' || '/tap-gz-file/gz-file/releases/v1.json.gz'),
          'file://: publishing without compress removes the .gz files a reader would be served');

DELETE FROM publish.projects WHERE slug LIKE 'gz-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-gz-%';
SELECT * FROM finish();
