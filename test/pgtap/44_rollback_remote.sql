-- 44_rollback_remote.sql: publish.rollback on WebDAV (nginx) and S3 (s3rver
-- behind the SigV4 proxy).  The rollback checks the version's copy (S3: a
-- HEAD, whose x-amz-meta-sha256 publish stored; WebDAV: a GET, hashed) and
-- a sample of its tiles (HEADs), then switches release.json in one step for
-- readers: on S3 one CopyObject; on WebDAV a COPY to a temporary name
-- beside release.json and a MOVE over it (nginx writes a COPY in place but
-- renames a MOVE; t/024_dav_switch_atomic.pl watches a reader meanwhile).
-- The servers' access logs (:dav_log, :s3_log) show every request.  A copy
-- changed on the server fails the job with nothing changed.
--
-- Environments tap-rb-dav and tap-rb-s3; projects rbr-*.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug LIKE 'rbr-%';

SELECT plan(22);

SELECT :'dav_url' || '/open/rb' AS dav_root, :'dav_dir' || '/open/rb' AS dav_dir \gset
SELECT publish.set_storage_target('tap-rb-dav', :'dav_root') \g /dev/null
SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/rb' AS bucket_url \gset
SELECT publish.set_storage_target('tap-rb-s3', 's3://' || :'s3_bucket' || '/rb',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-rb-s3', :'s3_key_id', :'s3_secret') \g /dev/null

-- ---------------------------------------------------------------------------
-- WebDAV
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('rbr-dav', 4, true, 1) AS dav_project \gset
SELECT test_helpers.make_version(:'dav_project', 2, 6, true, 1) \g /dev/null
SELECT test_helpers.write_tiles(:'dav_dir', 'rbr-dav', 1) + test_helpers.write_tiles(:'dav_dir', 'rbr-dav', 2) \g /dev/null
SELECT id AS d1 FROM publish.publish_version('rbr-dav', 1, 'tap-rb-dav') \gset
SELECT is(status, 'completed', 'WebDAV: version 1 is published') FROM test_helpers.wait_job(:'d1');
SELECT id AS d2 FROM publish.publish_version('rbr-dav', 2, 'tap-rb-dav') \gset
SELECT is(status, 'completed', 'WebDAV: version 2 is published') FROM test_helpers.wait_job(:'d2');
SELECT :'dav_dir' || '/tap-rb-dav/rbr-dav' AS dav_dir1 \gset

SELECT test_helpers.log_lines(:'dav_log') AS dav_before \gset
SELECT id AS dr FROM publish.rollback('rbr-dav', 'tap-rb-dav') \gset
SELECT is(status, 'completed', 'WebDAV: a rollback completes') FROM test_helpers.wait_job(:'dr');
SELECT is(pg_read_binary_file(:'dav_dir1' || '/release.json'), pg_read_binary_file(:'dav_dir1' || '/releases/v1.json'),
          '... release.json on the server is version 1''s copy');
SELECT is(encode(sha256(pg_read_binary_file(:'dav_dir1' || '/release.json')), 'hex'),
          (SELECT release_sha256 FROM publish.release_history WHERE job_id = :'d1'),
          '... the document version 1 made live');
CREATE TEMP TABLE dav_requests AS
SELECT * FROM test_helpers.requests(:'dav_log', :dav_before, '^MOVE ') AS r(line);
SELECT is(array_agg(split_part(line, ' ', 1) || ' ' || split_part(line, ' ', 2) || ' ' || split_part(line, ' ', 3)),
          ARRAY['COPY /open/rb/tap-rb-dav/rbr-dav/releases/v1.json 204',
                'MOVE /open/rb/tap-rb-dav/rbr-dav/release.json.' || :'dr' || '.tmp 204'],
          '... switched with two requests: a COPY of the copy to a name of the job''s beside release.json, and its MOVE over release.json (no MKCOL, no upload)')
  FROM dav_requests WHERE line !~ '^(GET|HEAD) ';
SELECT is(count(*), 1::bigint, '... after one GET of the copy, hashed as it arrived')
  FROM dav_requests WHERE line ~ '^GET /open/rb/tap-rb-dav/rbr-dav/releases/v1.json 200';
SELECT is(count(*), 3::bigint, '... and a HEAD of three tiles: the first of zooms 0 and 1, and the last')
  FROM dav_requests WHERE line ~ '^HEAD /open/rb/tap-rb-dav/rbr-dav/tiles/v1/';

-- a copy changed on the server
SELECT test_helpers.write_file(:'dav_dir1' || '/releases/v2.json', convert_to('{"changed": true}', 'UTF8')) \g /dev/null
SELECT id AS dbad FROM publish.rollback('rbr-dav', 'tap-rb-dav') \gset
CREATE TEMP TABLE dbad AS SELECT * FROM test_helpers.wait_job(:'dbad');
SELECT is(status, 'failed', 'WebDAV: a rollback to a copy changed on the server fails') FROM dbad;
SELECT alike(error, '%is not the release that was live%', '... saying so') FROM dbad;
SELECT is(pg_read_binary_file(:'dav_dir1' || '/release.json'), pg_read_binary_file(:'dav_dir1' || '/releases/v1.json'),
          '... and release.json is still version 1''s');

-- ---------------------------------------------------------------------------
-- S3
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('rbr-s3', 4, true, 1) AS s3_project \gset
SELECT test_helpers.make_version(:'s3_project', 2, 6, true, 1) \g /dev/null
SELECT test_helpers.upload_tiles('tap-rb-s3', 'rbr-s3', 1) + test_helpers.upload_tiles('tap-rb-s3', 'rbr-s3', 2) \g /dev/null
SELECT id AS s1 FROM publish.publish_version('rbr-s3', 1, 'tap-rb-s3') \gset
SELECT is(status, 'completed', 'S3: version 1 is published') FROM test_helpers.wait_job(:'s1', '60 s');
SELECT id AS s2 FROM publish.publish_version('rbr-s3', 2, 'tap-rb-s3') \gset
SELECT is(status, 'completed', 'S3: version 2 is published') FROM test_helpers.wait_job(:'s2', '60 s');
SELECT :'bucket_url' || '/tap-rb-s3/rbr-s3' AS s3_dir \gset

SELECT test_helpers.log_lines(:'s3_log') AS s3_before \gset
SELECT id AS sr FROM publish.rollback('rbr-s3', 'tap-rb-s3') \gset
SELECT is(status, 'completed', 'S3: a rollback completes') FROM test_helpers.wait_job(:'sr', '60 s');
SELECT is(test_helpers.http_get(:'s3_dir' || '/release.json'), test_helpers.http_get(:'s3_dir' || '/releases/v1.json'),
          '... release.json in the bucket is version 1''s copy');
SELECT is(encode(sha256(test_helpers.http_get(:'s3_dir' || '/release.json')), 'hex'),
          (SELECT release_sha256 FROM publish.release_history WHERE job_id = :'s1'),
          '... the document version 1 made live');
CREATE TEMP TABLE s3_requests AS
SELECT * FROM test_helpers.requests(:'s3_log', :s3_before, 'copy-from') AS r(line);
SELECT is(array_agg(line), ARRAY['PUT /' || :'s3_bucket' || '/rb/tap-rb-s3/rbr-s3/release.json copy-from /'
                                 || :'s3_bucket' || '/rb/tap-rb-s3/rbr-s3/releases/v1.json'],
          '... switched with one request, a CopyObject of the copy')
  FROM s3_requests WHERE line !~ '^HEAD ';
SELECT is(count(*), 2::bigint,
          '... after two HEADs of the copy (no download): one tells its sha256, one its encoding and sha256 for the copy')
  FROM s3_requests WHERE line ~ ('^HEAD /' || :'s3_bucket' || '/rb/tap-rb-s3/rbr-s3/releases/v1.json$');
SELECT is(count(*), 3::bigint, '... and a HEAD of three tiles')
  FROM s3_requests WHERE line ~ ('^HEAD /' || :'s3_bucket' || '/rb/tap-rb-s3/rbr-s3/tiles/v1/');

-- a copy changed in the bucket: its stored sha256 is not the one recorded
SELECT publish._storage_put('tap-rb-s3', 'tap-rb-s3/rbr-s3/releases/v2.json', convert_to('{"changed": true}', 'UTF8'),
                            'application/json') \g /dev/null
SELECT id AS sbad FROM publish.rollback('rbr-s3', 'tap-rb-s3') \gset
CREATE TEMP TABLE sbad AS SELECT * FROM test_helpers.wait_job(:'sbad', '60 s');
SELECT is(status, 'failed', 'S3: a rollback to a copy changed in the bucket fails') FROM sbad;
SELECT alike(error, '%is not the release that was live%', '... saying so') FROM sbad;
SELECT is(test_helpers.http_get(:'s3_dir' || '/release.json'), test_helpers.http_get(:'s3_dir' || '/releases/v1.json'),
          '... and release.json is still version 1''s');

DELETE FROM publish.projects WHERE slug LIKE 'rbr-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-rb-%';

SELECT * FROM finish();
