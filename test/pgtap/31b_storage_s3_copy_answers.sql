-- 31b_storage_s3_copy_answers.sql: S3's 200 is not always a success.
-- CopyObject answers 200 when a copy starts, may send whitespace while it
-- copies, and then a CopyObjectResult or an <Error>; DeleteObjects answers
-- 200 listing the keys it could not delete.  The test S3 proxy
-- (test/servers/s3-sigv4-proxy.js) pads the copies of project
-- copy-answer-pad with 20 KB of whitespace before s3rver's result,
-- answers the copies of copy-answer-nocode 200 with an <Error> that has no
-- <Code>, without copying, and the removals of delete-answer-error's
-- objects with an AccessDenied for the first key.
--
-- Environment tap-s3-copy.  Projects copy-answer-*, delete-answer-error.

DELETE FROM publish.projects WHERE slug LIKE 'copy-answer-%' OR slug = 'delete-answer-error';

SELECT plan(11);

SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/tapcopy/tap-s3-copy' AS env_url \gset
SELECT publish.set_storage_target('tap-s3-copy', 's3://' || :'s3_bucket' || '/tapcopy',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-s3-copy', :'s3_key_id', :'s3_secret') \g /dev/null

-- ---------------------------------------------------------------------------
-- Padded answers: the tiles' copies and release.json's switch succeed.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('copy-answer-pad', 3, true, 1) AS pad_project \gset
SELECT test_helpers.upload_tiles('tap-s3-copy', 'copy-answer-pad', 1) AS pad_tiles \gset
SELECT id AS job_pad FROM publish.publish_version('copy-answer-pad', 1, 'tap-s3-copy') \gset
CREATE TEMP TABLE pad AS SELECT * FROM test_helpers.wait_job(:'job_pad');

SELECT is(status, 'completed', 'copies answered 200 after 20 KB of whitespace: the publish completes') FROM pad;
SELECT is((result->>'tiles_copied')::int, :'pad_tiles'::int, '... every tile copied') FROM pad;
SELECT is(encode(sha256(test_helpers.http_get(:'env_url' || '/copy-answer-pad/release.json')), 'hex'),
          result->>'release_sha256', '... and release.json is in place, with the job''s sha256') FROM pad;

-- ---------------------------------------------------------------------------
-- An <Error> without <Code> in a 200: the tile copies failed, and say so.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('copy-answer-nocode', 3, true, 1) \g /dev/null
SELECT test_helpers.upload_tiles('tap-s3-copy', 'copy-answer-nocode', 1) \g /dev/null
SELECT id AS job_nocode FROM publish.publish_version('copy-answer-nocode', 1, 'tap-s3-copy') \gset
CREATE TEMP TABLE nocode AS SELECT * FROM test_helpers.wait_job(:'job_nocode');

SELECT is(status, 'failed', 'a copy answered 200 with an error lacking its code: the publish fails') FROM nocode;
SELECT ok(error ~ '^copy of \S+ to tap-s3-copy/copy-answer-nocode/tiles/v1/\S+\.png on target "tap-s3-copy" got no CopyObjectResult',
          '... naming the copy that has no result') FROM nocode;
SELECT is(test_helpers.http_get(:'env_url' || '/copy-answer-nocode/release.json'), NULL,
          '... no release.json is on the bucket');
SELECT is((SELECT count(*)::int FROM publish.releases WHERE env = 'tap-s3-copy' AND project = 'copy-answer-nocode'), 0,
          '... and none is live in publish.releases');
SELECT is((SELECT published_at FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
            WHERE p.slug = 'copy-answer-nocode' AND v.version_number = 1), NULL,
          '... nor is the version marked published');

-- ---------------------------------------------------------------------------
-- DeleteObjects answered 200 with an error: the purge fails, naming the key.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_two_versions('delete-answer-error', 'tap-s3-copy') \g /dev/null
\set slug delete-answer-error
\set env tap-s3-copy
\ir helpers/purge_second_version.sql
SELECT is(status, 'failed', 'a removal answered 200 with an AccessDenied: the purge fails') FROM dp;
SELECT ok(error ~ '^removal of tap-s3-copy/delete-answer-error/tiles/v1/\S+\.png failed on target "tap-s3-copy": .*AccessDenied — Access Denied',
          '... naming the object and the server''s code and message') FROM dp;

DELETE FROM publish.projects WHERE slug LIKE 'copy-answer-%' OR slug = 'delete-answer-error';

SELECT * FROM finish();
