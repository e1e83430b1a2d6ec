-- 50_purge_remote.sql: publish.purge_releases on WebDAV (nginx) and S3
-- (s3rver behind the SigV4 proxy), both storing release.json compressed
-- (option compress: gzip, with Content-Encoding).  WebDAV removes a
-- version's tiles with one DELETE of its collection, and its copy with a
-- DELETE; S3 lists the version's tiles and deletes them with DeleteObjects,
-- at most 1,000 keys a request.  The servers' access logs (:dav_log,
-- :s3_log) show that nothing outside the versions purged was asked for.
--
-- Environments tap-pgr-dav and tap-pgr-s3; projects pgr-*.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug LIKE 'pgr-%';

SELECT plan(19);

SELECT :'dav_url' || '/open/pgr' AS dav_root, :'dav_dir' || '/open/pgr' AS dav_dir \gset
SELECT publish.set_storage_target('tap-pgr-dav', :'dav_root', '{"compress": "gzip"}') \g /dev/null
SELECT :'s3rver_url' || '/' || :'s3_bucket' || '/pgr' AS bucket_url \gset
SELECT publish.set_storage_target('tap-pgr-s3', 's3://' || :'s3_bucket' || '/pgr',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1', 'compress', 'gzip')) \g /dev/null
SELECT publish.set_storage_credentials('tap-pgr-s3', :'s3_key_id', :'s3_secret') \g /dev/null

-- ---------------------------------------------------------------------------
-- WebDAV
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('pgr-dav', 3, true, 1) AS dav_project \gset
SELECT test_helpers.make_version(:'dav_project', n, 3, true, 1) FROM generate_series(2, 3) AS n \g /dev/null
SELECT sum(test_helpers.write_tiles(:'dav_dir', 'pgr-dav', n)) FROM generate_series(1, 3) AS n \g /dev/null
SELECT id AS d1 FROM publish.publish_version('pgr-dav', 1, 'tap-pgr-dav') \gset
SELECT id AS d2 FROM publish.publish_version('pgr-dav', 2, 'tap-pgr-dav') \gset
SELECT id AS d3 FROM publish.publish_version('pgr-dav', 3, 'tap-pgr-dav') \gset
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n),
          ARRAY['completed', 'completed', 'completed'], 'WebDAV: versions 1 to 3 are published')
  FROM unnest(ARRAY[:'d1', :'d2', :'d3']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT :'dav_dir' || '/tap-pgr-dav/pgr-dav' AS dav_prj \gset
SELECT test_helpers.file_sha256(:'dav_prj' || '/release.json') AS dav_live_sha \gset

SELECT test_helpers.log_lines(:'dav_log') AS dav_before \gset
SELECT id AS dp FROM publish.purge_releases('pgr-dav', 'tap-pgr-dav', 2) \gset
CREATE TEMP TABLE dp AS SELECT * FROM test_helpers.wait_job(:'dp', '60 s');
SELECT is(status, 'completed', 'WebDAV: purge_releases(slug, env, 2) completes') FROM dp;
SELECT is(result->'kept_versions', '[3, 2]'::jsonb, '... keeping versions 3 and 2') FROM dp;
SELECT is((result->'purged_versions'->0) - 'bytes',
          '{"version": 1, "objects": 1, "uncounted_folders": 1, "release_copy": true}'::jsonb,
          '... removing version 1: its tile collection (uncounted) and its copy') FROM dp;
SELECT is((SELECT string_agg(f, ',') FROM test_helpers.list_files(:'dav_prj') AS f WHERE f ~ '(^|/)v1(\.json|/)'),
          NULL, 'WebDAV: nothing of version 1 is left on the server');
SELECT is((SELECT string_agg(f, ',' ORDER BY f) FROM test_helpers.list_files(:'dav_prj' || '/releases') AS f),
          'v2.json,v3.json', '... releases/ holds the copies of versions 2 and 3');
SELECT ok((SELECT count(*) FROM test_helpers.list_files(:'dav_prj' || '/tiles/v2')) > 0
          AND (SELECT count(*) FROM test_helpers.list_files(:'dav_prj' || '/tiles/v3')) > 0,
          '... and their tiles stay');
SELECT is(test_helpers.file_sha256(:'dav_prj' || '/release.json'), :'dav_live_sha', '... release.json is untouched');
CREATE TEMP TABLE dav_requests AS
SELECT * FROM test_helpers.requests(:'dav_log', :dav_before, '^DELETE .*/releases/v1\.json') AS r(line);
SELECT is(array_agg(split_part(line, ' ', 1) || ' ' || split_part(line, ' ', 2) ORDER BY line),
          ARRAY['DELETE /open/pgr/tap-pgr-dav/pgr-dav/releases/v1.json',
                'DELETE /open/pgr/tap-pgr-dav/pgr-dav/tiles/v1/'],
          'WebDAV: the purge deleted version 1''s tile collection and its copy, and nothing else')
  FROM dav_requests WHERE line ~ '^DELETE ';

-- ---------------------------------------------------------------------------
-- S3: more than 1,000 objects under a version's tiles
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('pgr-s3', 3, true, 1) AS s3_project \gset
SELECT test_helpers.make_version(:'s3_project', n, 3, true, 1) FROM generate_series(2, 3) AS n \g /dev/null
SELECT sum(test_helpers.upload_tiles('tap-pgr-s3', 'pgr-s3', n)) FROM generate_series(1, 3) AS n \g /dev/null
SELECT id AS s1 FROM publish.publish_version('pgr-s3', 1, 'tap-pgr-s3') \gset
SELECT id AS s2 FROM publish.publish_version('pgr-s3', 2, 'tap-pgr-s3') \gset
SELECT id AS s3 FROM publish.publish_version('pgr-s3', 3, 'tap-pgr-s3') \gset
SELECT is(array_agg((SELECT status FROM test_helpers.wait_job(j, '60 s')) ORDER BY n),
          ARRAY['completed', 'completed', 'completed'], 'S3: versions 1 to 3 are published')
  FROM unnest(ARRAY[:'s1', :'s2', :'s3']::uuid[]) WITH ORDINALITY AS c(j, n);
SELECT :'bucket_url' || '/tap-pgr-s3/pgr-s3' AS s3_prj \gset
-- 1,000 more objects under version 1's tiles, and one beside its prefix
SELECT count(publish._storage_put('tap-pgr-s3', format('tap-pgr-s3/pgr-s3/tiles/v1/extra/%s.png', n),
                                  convert_to('extra', 'UTF8'), 'image/png'))
  FROM generate_series(1, 1000) AS n \g /dev/null
SELECT publish._storage_put('tap-pgr-s3', 'tap-pgr-s3/pgr-s3/tiles/v1x/keep.png', convert_to('beside', 'UTF8'),
                            'image/png') \g /dev/null
SELECT (SELECT count(*) FROM test_helpers.manifest_tiles('pgr-s3', 1)) + 1000 + 1 AS s3_expected_objects,
       test_helpers.http_get(:'s3_prj' || '/release.json') AS s3_live \gset

SELECT test_helpers.log_lines(:'s3_log') AS s3_before \gset
SELECT id AS sp FROM publish.purge_releases('pgr-s3', 'tap-pgr-s3', 2) \gset
CREATE TEMP TABLE sp AS SELECT * FROM test_helpers.wait_job(:'sp', '120 s');
SELECT is(status, 'completed', 'S3: purge_releases(slug, env, 2) completes') FROM sp;
SELECT is(result->'kept_versions', '[3, 2]'::jsonb, '... keeping versions 3 and 2') FROM sp;
SELECT is((result->>'objects_deleted')::bigint, :s3_expected_objects::bigint,
          '... counting every object of version 1: its tiles, the 1,000 more, its copy') FROM sp;
CREATE TEMP TABLE s3_requests AS
SELECT * FROM test_helpers.requests(:'s3_log', :s3_before, '^DELETE .*/releases/v1\.json') AS r(line);
-- (s3rver answers some DeleteObjects with a 500, deleting in parallel, and
-- the retry completes it: the requests are counted by the listings)
SELECT is(count(*), 3::bigint,
          '... in two pages of its tiles'' listing, at most 1,000 keys each, each deleted with DeleteObjects, and a last, empty one')
  FROM s3_requests WHERE line ~ ('^GET .*list-type=2.*prefix=pgr%2Ftap-pgr-s3%2Fpgr-s3%2Ftiles%2Fv1%2F$');
SELECT ok(count(*) >= 2 AND bool_and(line = 'POST /' || :'s3_bucket' || '/?delete='), '... (POST ?delete)')
  FROM s3_requests WHERE line ~ '^POST ';
SELECT is(array_agg(line), NULL, '... and no other DELETE than of version 1''s copy')
  FROM s3_requests WHERE line ~ '^DELETE ' AND line !~ '/tap-pgr-s3/pgr-s3/releases/v1\.json';
SELECT ok(test_helpers.http_get(:'s3_prj' || '/releases/v1.json') IS NULL
          AND test_helpers.http_get(:'s3_prj' || '/tiles/v1/extra/1000.png') IS NULL
          AND test_helpers.http_get(:'s3_prj' || '/tiles/v1/0/0/0.png') IS NULL,
          'S3: version 1''s copy and tiles are gone');
SELECT ok(test_helpers.http_get(:'s3_prj' || '/releases/v2.json') IS NOT NULL
          AND test_helpers.http_get(:'s3_prj' || '/tiles/v2/0/0/0.png') IS NOT NULL
          AND test_helpers.http_get(:'s3_prj' || '/tiles/v3/0/0/0.png') IS NOT NULL,
          '... versions 2 and 3 stay');
SELECT ok(test_helpers.http_get(:'s3_prj' || '/tiles/v1x/keep.png') IS NOT NULL
          AND test_helpers.http_get(:'s3_prj' || '/release.json') = :'s3_live'::bytea,
          '... and so do a key that only starts like version 1''s prefix, and release.json, compressed');

DELETE FROM publish.projects WHERE slug LIKE 'pgr-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-pgr-%';

SELECT * FROM finish();
