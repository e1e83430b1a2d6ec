-- 31_storage_s3.sql: publishing to an s3:// target, through the worker, to
-- s3rver behind a proxy that checks each request's AWS Signature V4 with an
-- independent signer (aws4) and its x-amz-content-sha256, as AWS does
-- (scripts/storage-servers.sh).  Objects are read back from s3rver
-- directly (:s3rver_url, no signature needed) with the curl command.
--
-- Environments tap-s3 (right key), tap-s3-bad (wrong secret), tap-s3-anon
-- (no credentials).  Projects s3-*.

DELETE FROM publish.projects WHERE slug LIKE 's3-%';

SELECT plan(24);

SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/tap' AS bucket_url \gset
SELECT publish.set_storage_target('tap-s3', 's3://' || :'s3_bucket' || '/tap',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT publish.set_storage_target('tap-s3-bad', 's3://' || :'s3_bucket' || '/tap',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-s3-bad', :'s3_key_id', 'wrong-s3-secret-77ab3e') \g /dev/null
SELECT publish.set_storage_target('tap-s3-anon', 's3://' || :'s3_bucket' || '/tap',
       jsonb_build_object('endpoint', :'s3_endpoint')) \g /dev/null

-- ---------------------------------------------------------------------------
-- A version with tiles, whose build tiles are on the bucket.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('s3-one', 6, true, 2) AS project_id \gset
SELECT test_helpers.upload_tiles('tap-s3', 's3-one', 1) AS tiles_uploaded \gset
SELECT is(test_helpers.http_get(:'bucket_url' || '/builds/s3-one/v1/tiles/2/1/3.png'),
          test_helpers.tile_bytes('s3-one', 1, 2, 1, 3),
          'publish._storage_put put the build tiles on the bucket (signed requests accepted)');

SELECT id AS job FROM publish.publish_version('s3-one', 1, 'tap-s3') \gset
CREATE TEMP TABLE d AS SELECT * FROM test_helpers.wait_job(:'job');

SELECT is(status, 'completed', 'a publish to an S3 target completes') FROM d;
SELECT is(error, NULL, '... without error') FROM d;
SELECT is(result->>'release_url', 's3://' || :'s3_bucket' || '/tap/tap-s3/s3-one/release.json',
          'release_url is under the target URL') FROM d;
SELECT is(test_helpers.http_get(:'bucket_url' || '/tap-s3/s3-one/release.json'),
          convert_to(publish._release_document(v.id, 'tap-s3', v.published_at)::text, 'UTF8'),
          'release.json in the bucket is byte for byte what build_release() gives')
  FROM publish.project_versions v WHERE v.project_id = :'project_id';
SELECT is(test_helpers.http_get(:'bucket_url' || '/tap-s3/s3-one/release.json'),
          convert_to(publish.build_release('s3-one', 1, 'tap-s3', v.published_at)::text, 'UTF8'),
          '... byte for byte what build_release() returns')
  FROM publish.project_versions v WHERE v.project_id = :'project_id';
SELECT is(encode(sha256(test_helpers.http_get(:'bucket_url' || '/tap-s3/s3-one/release.json')), 'hex'),
          result->>'release_sha256', 'its sha256 is the one the job reports') FROM d;
SELECT is(test_helpers.http_get(:'bucket_url' || '/tap-s3/s3-one/releases/v1.json'),
          test_helpers.http_get(:'bucket_url' || '/tap-s3/s3-one/release.json'),
          'the versioned copy has the same bytes');
SELECT is((result->>'tiles_copied')::int, :'tiles_uploaded'::int, 'every tile was copied (CopyObject)') FROM d;
SELECT ok(bool_and(test_helpers.http_get(format('%s/tap-s3/s3-one/tiles/v1/%s/%s/%s.png', :'bucket_url', t.z, t.x, t.y))
                   = test_helpers.tile_bytes('s3-one', 1, t.z, t.x, t.y)),
          'each published tile is in the bucket with the bytes of its build tile')
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
 WHERE s.version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'project_id');

-- Content types and cache headers, as the bucket keeps them.
SELECT test_helpers.http_head(:'bucket_url' || '/tap-s3/s3-one/release.json') AS head_live \gset
SELECT test_helpers.http_head(:'bucket_url' || '/tap-s3/s3-one/releases/v1.json') AS head_v1 \gset
SELECT test_helpers.http_head(:'bucket_url' || '/tap-s3/s3-one/tiles/v1/2/1/3.png') AS head_tile \gset
SELECT ok(:'head_live' ~ E'\ncontent-type: application/json' AND :'head_live' ~ E'\ncache-control: no-cache',
          'release.json: application/json, Cache-Control no-cache');
SELECT ok(:'head_v1' ~ E'\ncontent-type: application/json'
          AND :'head_v1' ~ E'\ncache-control: public, max-age=31536000, immutable',
          'releases/v1.json: application/json, immutable for a year');
SELECT ok(:'head_tile' ~ E'\ncontent-type: image/png'
          AND :'head_tile' ~ E'\ncache-control: public, max-age=31536000, immutable',
          'a tile copy: image/png, immutable for a year (CopyObject replaces the metadata)');

-- Publishing again: the tiles in place are recognised, not copied again.
SELECT id AS job2 FROM publish.publish_version('s3-one', 1, 'tap-s3') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job2');
SELECT is(status, 'completed', 'publishing the same version again completes') FROM d2;
SELECT ok((result->>'tiles_copied')::int = 0 AND (result->>'tiles_skipped')::int = :'tiles_uploaded'::int,
          '... and finds every tile already in place') FROM d2;

-- ---------------------------------------------------------------------------
-- A wrong secret; no credentials at all.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('s3-bad', 3) \g /dev/null
SELECT id AS job_bad FROM publish.publish_version('s3-bad', 1, 'tap-s3-bad') \gset
CREATE TEMP TABLE b AS SELECT * FROM test_helpers.wait_job(:'job_bad');
SELECT is(status, 'failed', 'with a wrong secret, the job fails') FROM b;
SELECT ok(error ~ '^S3 rejected the upload of tap-s3-bad/s3-bad/releases/v1.json: 403 Forbidden: SignatureDoesNotMatch'
          AND error ~ 'check the key id and secret of target "tap-s3-bad"',
          'the error says S3 rejected the upload, with SignatureDoesNotMatch, and names the target') FROM b;
SELECT ok(strpos(b::text, 'wrong-s3-secret-77ab3e') = 0 AND strpos(b::text, :'s3_secret') = 0,
          'no secret appears in the job') FROM b;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 0,
          'a 403 is not retried') FROM b;
SELECT is(test_helpers.http_get(:'bucket_url' || '/tap-s3-bad/s3-bad/release.json'), NULL,
          'nothing was published');

SELECT test_helpers.make_project('s3-anon', 3) \g /dev/null
SELECT id AS job_anon FROM publish.publish_version('s3-anon', 1, 'tap-s3-anon') \gset
CREATE TEMP TABLE n AS SELECT * FROM test_helpers.wait_job(:'job_anon');
SELECT is(status, 'failed', 'without credentials (anonymous requests), the job fails') FROM n;
SELECT ok(error ~ 'AccessDenied' AND error ~ 'target "tap-s3-anon"', 'the error says access was denied') FROM n;

-- ---------------------------------------------------------------------------
-- The S3 front itself checks what AWS checks (the curl command signs with
-- the right key id and a wrong secret; the body checks come first).
-- ---------------------------------------------------------------------------

CREATE TEMP TABLE proxy_out (line text);
SELECT format('curl -s -X PUT --aws-sigv4 aws:amz:eu-central-1:s3 -u %s:not-the-secret %s --data-binary hello %s',
              :'s3_key_id', test_helpers.sh_quote('-Hx-amz-content-sha256: ' || repeat('0', 64)),
              test_helpers.sh_quote(:'s3_endpoint' || '/' || :'s3_bucket' || '/tap/proxy-check.txt')) AS cmd_bad_sha,
       format('curl -s -X PUT --aws-sigv4 aws:amz:eu-central-1:s3 -u %s:not-the-secret --data-binary hello %s',
              :'s3_key_id',
              test_helpers.sh_quote(:'s3_endpoint' || '/' || :'s3_bucket' || '/tap/proxy-check.txt')) AS cmd_no_sha \gset
COPY proxy_out FROM PROGRAM :'cmd_bad_sha';
SELECT ok(string_agg(line, ' ') ~ '<Code>XAmzContentSHA256Mismatch</Code>',
          'the S3 front refuses a body whose SHA-256 is not its x-amz-content-sha256') FROM proxy_out;
TRUNCATE proxy_out;
COPY proxy_out FROM PROGRAM :'cmd_no_sha';
SELECT ok(string_agg(line, ' ') ~ 'Missing required header for this request: x-amz-content-sha256',
          '... and a request without x-amz-content-sha256') FROM proxy_out;

DELETE FROM publish.projects WHERE slug LIKE 's3-%';

SELECT * FROM finish();
