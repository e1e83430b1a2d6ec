-- 46_tiles_listing.sql: step 4 learns what is in place from listings
-- (tile_publish.c, list_destination): on S3 one ListObjectsV2 of each zoom
-- level, 1,000 keys a page, each key's ETag compared with the manifest's
-- MD5; on WebDAV one PROPFIND (Depth: 1) of each folder of tiles, where
-- the server has it.  A tile missing or changed in place is found by the
-- listing and copied again; a listing of more than one page is followed
-- to its end; a server without PROPFIND gets each tile checked as before.
-- Requests are counted in the access logs of the SigV4 proxy (:s3_log) and
-- of nginx (:dav_log).
--
-- Environments tap-list-*.  Projects list-*.

DELETE FROM publish.projects WHERE slug LIKE 'list-%';

SELECT plan(19);

SELECT '/' || :'s3_bucket' || '/list' AS bucket_path,
       :'s3rver_url' || '/' || :'s3_bucket' || '/list' AS bucket_url,
       :'dav_dir' || '/open/list' AS dav_dir \gset
SELECT publish.set_storage_target('tap-list-s3', 's3://' || :'s3_bucket' || '/list',
       jsonb_build_object('endpoint', :'s3_endpoint')) \g /dev/null
SELECT publish.set_storage_credentials('tap-list-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT publish.set_storage_target('tap-list-dav', :'dav_url' || '/open/list') \g /dev/null
SELECT publish.set_storage_target('tap-list-nolist', :'dav_url' || '/nolist/list') \g /dev/null

-- Zooms 0-5: 1,365 tiles, of which zoom 5 has 1,024, more than a page.
SELECT 1365 AS ntiles \gset
SELECT test_helpers.make_project('list-s3', 3, true, 5) \g /dev/null
UPDATE publish.tiles tl SET md5 = md5(test_helpers.tile_bytes('list-s3', 1, tl.z, tl.x, tl.y))
  FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
  JOIN publish.projects p ON p.id = v.project_id
 WHERE tl.tileset_id = s.id AND p.slug = 'list-s3';

-- The requests a log holds so far whose line matches pattern.
CREATE TEMP TABLE access_log (line text);
CREATE FUNCTION pg_temp.requests(log text, pattern text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM pg_sleep(0.2);		-- the proxy writes its log asynchronously
	TRUNCATE access_log;
	EXECUTE format('COPY access_log FROM %L', log);
	RETURN (SELECT count(*) FROM access_log WHERE line ~ pattern);
END
$$;

CREATE FUNCTION pg_temp.counts(result jsonb) RETURNS int[]
LANGUAGE sql IMMUTABLE
AS $$
	SELECT ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int,
	             (result->>'tiles_verified')::int]
$$;

-- ---------------------------------------------------------------------------
-- S3
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.upload_tiles('tap-list-s3', 'list-s3', 1), :ntiles, 'the 1,365 build tiles are in the bucket');
SELECT id AS job_s1 FROM publish.publish_version('list-s3', 1, 'tap-list-s3') \gset
CREATE TEMP TABLE s1 AS SELECT * FROM test_helpers.wait_job(:'job_s1', '120 s');
SELECT is(ARRAY[s1.status, array_to_string(pg_temp.counts(s1.result), ',')],
          ARRAY['completed', :ntiles || ',0,' || :ntiles], 'S3: a first publish copies every tile') FROM s1;

SELECT pg_temp.requests(:'s3_log', '^(HEAD|GET) ' || :'bucket_path' || '/tap-list-s3/list-s3/tiles/v1/') AS tile_reads_1,
       pg_temp.requests(:'s3_log', '^GET /' || :'s3_bucket' || '/\?.*list-type=2&max-keys=1000&prefix=list%2Ftap-list-s3%2Flist-s3%2Ftiles%2Fv1%2F') AS listings_1,
       pg_temp.requests(:'s3_log', '^GET /' || :'s3_bucket' || '/\?continuation-token=.*&prefix=list%2Ftap-list-s3%2Flist-s3%2Ftiles%2Fv1%2F5%2F$') AS continued_1 \gset
SELECT id AS job_s2 FROM publish.publish_version('list-s3', 1, 'tap-list-s3') \gset
CREATE TEMP TABLE s2 AS SELECT * FROM test_helpers.wait_job(:'job_s2', '120 s');
SELECT is(pg_temp.counts(s2.result), ARRAY[0, :ntiles, :ntiles], 'S3: a re-publish skips and verifies every tile') FROM s2;
SELECT is(pg_temp.requests(:'s3_log', '^(HEAD|GET) ' || :'bucket_path' || '/tap-list-s3/list-s3/tiles/v1/') - :tile_reads_1,
          0::bigint, '... without a request of its own for any tile');
SELECT is(pg_temp.requests(:'s3_log', '^GET /' || :'s3_bucket' || '/\?.*list-type=2&max-keys=1000&prefix=list%2Ftap-list-s3%2Flist-s3%2Ftiles%2Fv1%2F') - :listings_1,
          7::bigint, '... but 7 listings: one of each of zooms 0-4, and two pages of zoom 5');
SELECT is(pg_temp.requests(:'s3_log', '^GET /' || :'s3_bucket' || '/\?continuation-token=.*&prefix=list%2Ftap-list-s3%2Flist-s3%2Ftiles%2Fv1%2F5%2F$') - :continued_1,
          1::bigint, '... the second page of zoom 5 asked for with the continuation token of the first');
SELECT ok(logs::text ~ 'Listed list-s3|Listed tap-list-s3/list-s3/tiles/v1/: 7 pages', 'the job''s log says how many pages it listed') FROM s2;

-- A tile removed and one changed in place, its sha256 metadata claiming the
-- manifest's (only its ETag tells): both found by the listing, both copied.
SELECT test_helpers.run(format('curl -sSf -o /dev/null -X DELETE %s && echo ok',
         test_helpers.sh_quote(:'s3rver_url' || '/' || :'s3_bucket' || '/list/tap-list-s3/list-s3/tiles/v1/5/31/7.png'))) \g /dev/null
SELECT :'storage' || '/list-changed.png' AS changed_file \gset
SELECT test_helpers.write_file(:'changed_file', test_helpers.tile_bytes('list-s3', 9, 5, 2, 30)) \g /dev/null
SELECT test_helpers.run(format(
         'curl -sSf -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user %s -T %s -H %s -H %s -H %s %s && echo ok',
         test_helpers.sh_quote(:'s3_key_id' || ':' || :'s3_secret'), test_helpers.sh_quote(:'changed_file'),
         test_helpers.sh_quote('Content-Type: image/png'),
         test_helpers.sh_quote('x-amz-content-sha256: ' || encode(sha256(test_helpers.tile_bytes('list-s3', 9, 5, 2, 30)), 'hex')),
         test_helpers.sh_quote('x-amz-meta-sha256: ' || encode(sha256(test_helpers.tile_bytes('list-s3', 1, 5, 2, 30)), 'hex')),
         test_helpers.sh_quote(:'s3_endpoint' || '/' || :'s3_bucket' || '/list/tap-list-s3/list-s3/tiles/v1/5/2/30.png'))) \g /dev/null
SELECT pg_temp.requests(:'s3_log', '^(HEAD|GET) ' || :'bucket_path' || '/tap-list-s3/list-s3/tiles/v1/5/31/7.png') AS tile_reads_2 \gset
SELECT id AS job_s3 FROM publish.publish_version('list-s3', 1, 'tap-list-s3') \gset
CREATE TEMP TABLE s3 AS SELECT * FROM test_helpers.wait_job(:'job_s3', '120 s');
SELECT is(pg_temp.counts(s3.result), ARRAY[2, :ntiles - 2, :ntiles],
          'S3: a tile missing and one changed in place are copied again, the others skipped') FROM s3;
SELECT is(ARRAY[test_helpers.http_get(:'bucket_url' || '/tap-list-s3/list-s3/tiles/v1/5/31/7.png'),
                test_helpers.http_get(:'bucket_url' || '/tap-list-s3/list-s3/tiles/v1/5/2/30.png')],
          ARRAY[test_helpers.tile_bytes('list-s3', 1, 5, 31, 7), test_helpers.tile_bytes('list-s3', 1, 5, 2, 30)],
          '... and both have their right bytes again');
SELECT is(pg_temp.requests(:'s3_log', '^(HEAD|GET) ' || :'bucket_path' || '/tap-list-s3/list-s3/tiles/v1/5/31/7.png') - :tile_reads_2,
          0::bigint, '... the missing one verified by its copy''s ETag: not read');

-- ---------------------------------------------------------------------------
-- WebDAV with PROPFIND (nginx's dav_ext module): one listing per folder.
-- A tile the listing does not show gets no check; those it shows with the
-- manifest's size are hashed, as WebDAV keeps no checksum.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('list-dav', 3, true, 2) \g /dev/null
SELECT test_helpers.write_tiles(:'dav_dir', 'list-dav', 1) \g /dev/null
SELECT id AS job_d1 FROM publish.publish_version('list-dav', 1, 'tap-list-dav') \gset
CREATE TEMP TABLE d1 AS SELECT * FROM test_helpers.wait_job(:'job_d1', '120 s');
SELECT is(ARRAY[d1.status, array_to_string(pg_temp.counts(d1.result), ',')], ARRAY['completed', '21,0,21'],
          'WebDAV: a first publish copies the 21 tiles') FROM d1;
SELECT test_helpers.remove_file(:'dav_dir' || '/tap-list-dav/list-dav/tiles/v1/2/1/3.png') \g /dev/null
SELECT pg_temp.requests(:'dav_log', '^PROPFIND /open/list/tap-list-dav/list-dav/tiles/v1/') AS propfinds_1,
       pg_temp.requests(:'dav_log', '^GET /open/list/tap-list-dav/list-dav/tiles/v1/') AS gets_1 \gset
SELECT id AS job_d2 FROM publish.publish_version('list-dav', 1, 'tap-list-dav') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job_d2', '120 s');
SELECT is(pg_temp.counts(d2.result), ARRAY[1, 20, 21], 'WebDAV: the tile removed is copied again, the others skipped') FROM d2;
SELECT is(pg_temp.requests(:'dav_log', '^PROPFIND /open/list/tap-list-dav/list-dav/tiles/v1/[0-9]+/[0-9]+/ 207') - :propfinds_1,
          7::bigint, '... after one PROPFIND of each of the 7 folders of tiles');
SELECT is(pg_temp.requests(:'dav_log', '^GET /open/list/tap-list-dav/list-dav/tiles/v1/') - :gets_1,
          20::bigint, '... a hashed GET of each of the 20 tiles in place, none of the missing one');
SELECT is(pg_read_binary_file(:'dav_dir' || '/tap-list-dav/list-dav/tiles/v1/2/1/3.png'),
          test_helpers.tile_bytes('list-dav', 1, 2, 1, 3), '... which is back, byte for byte');

-- ---------------------------------------------------------------------------
-- WebDAV without PROPFIND (nginx's own dav module): each tile checked.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('list-nolist', 3, true, 2) \g /dev/null
SELECT test_helpers.write_tiles(:'dav_dir', 'list-nolist', 1) \g /dev/null
SELECT id AS job_n1 FROM publish.publish_version('list-nolist', 1, 'tap-list-nolist') \gset
CREATE TEMP TABLE n1 AS SELECT * FROM test_helpers.wait_job(:'job_n1', '120 s');
SELECT is(n1.status, 'completed', 'WebDAV without PROPFIND: a first publish completes') FROM n1;
SELECT test_helpers.remove_file(:'dav_dir' || '/tap-list-nolist/list-nolist/tiles/v1/2/1/3.png') \g /dev/null
SELECT id AS job_n2 FROM publish.publish_version('list-nolist', 1, 'tap-list-nolist') \gset
CREATE TEMP TABLE n2 AS SELECT * FROM test_helpers.wait_job(:'job_n2', '120 s');
SELECT is(pg_temp.counts(n2.result), ARRAY[1, 20, 21], '... a re-publish copies the tile removed and skips the others') FROM n2;
SELECT ok(logs::text ~ 'cannot list tap-list-nolist/list-nolist/tiles/v1/ \(no PROPFIND\): each tile is checked on its own',
          '... and its log says the server cannot list') FROM n2;
SELECT cmp_ok(pg_temp.requests(:'dav_log', '^PROPFIND /nolist/list/tap-list-nolist/list-nolist/tiles/v1/[0-9]+/[0-9]+/ 405'),
              '>', 0::bigint, '... which answered PROPFIND with 405');

-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'list-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-list-%';
SELECT * FROM finish();
