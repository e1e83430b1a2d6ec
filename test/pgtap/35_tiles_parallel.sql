-- 35_tiles_parallel.sql: a tileset of 341 tiles (zooms 0-4) published to
-- the local, WebDAV and S3 targets through the parallel tile loop
-- (tile_publish.c): every tile lands byte for byte, a re-publish skips
-- them all, a corrupt build tile fails the job naming it, a 503 inside the
-- parallel loop is retried and logged, and progress within step 4 stays
-- between 50 and 80 and is written a few times a second at most.
--
-- Environments tap-par-*.  Projects par-*.

DELETE FROM publish.projects WHERE slug LIKE 'par-%';

SELECT plan(34);

SELECT 341 AS ntiles \gset
SELECT :'storage' || '/par' AS root,
       :'dav_url' || '/open/par' AS dav_open_url, :'dav_dir' || '/open/par' AS dav_open_dir,
       :'s3rver_url' || '/' || :'s3_bucket' || '/par' AS bucket_url \gset
SELECT publish.set_storage_target('tap-par-local', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-par-dav', :'dav_open_url') \g /dev/null
SELECT publish.set_storage_target('tap-par-s3', 's3://' || :'s3_bucket' || '/par',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-par-s3', :'s3_key_id', :'s3_secret') \g /dev/null
SELECT publish.set_storage_target('tap-par-fault', :'fault_url' || '/fail503get-3/tpar') \g /dev/null
SELECT publish.set_storage_target('tap-par-hang', :'fault_url' || '/hangget/tparhang') \g /dev/null

SELECT test_helpers.make_project('par-local', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('par-dav', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('par-s3', 3, true, 4) \g /dev/null
SELECT test_helpers.make_project('par-bad', 3, true, 2) \g /dev/null
SELECT test_helpers.make_project('par-fault', 3, true, 2) \g /dev/null
SELECT test_helpers.make_project('par-hang', 3, true, 2) \g /dev/null

-- Where each tile of a project's manifest is published, with its bytes.
CREATE FUNCTION pg_temp.published(slug text, env text)
RETURNS TABLE (z int, x int, y int, key text, bytes bytea, sha256 text)
LANGUAGE sql STABLE
AS $$
	SELECT tl.z, tl.x, tl.y, format('%s/%s/tiles/v1/%s/%s/%s.png', env, slug, tl.z, tl.x, tl.y),
	       test_helpers.tile_bytes(slug, 1, tl.z, tl.x, tl.y), tl.sha256
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	  JOIN publish.tilesets s ON s.version_id = v.id
	  JOIN publish.tiles tl ON tl.tileset_id = s.id
	 WHERE p.slug = published.slug AND v.version_number = 1
$$;

-- ---------------------------------------------------------------------------
-- Local target.
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.write_tiles(:'root', 'par-local', 1), :ntiles, 'the 341 tiles of zooms 0-4 are built');
SELECT id AS job_l1 FROM publish.publish_version('par-local', 1, 'tap-par-local') \gset
CREATE TEMP TABLE l1 AS SELECT * FROM test_helpers.wait_job(:'job_l1', '60 s');
SELECT is(status, 'completed', 'local: the version publishes') FROM l1;
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, 0, :ntiles], 'local: result counts 341 copied, 0 skipped, 341 verified') FROM l1;
SELECT is(count(*) FILTER (WHERE pg_read_binary_file(:'root' || '/' || key) = bytes), :ntiles::bigint,
          'local: every tile is in place, byte for byte') FROM pg_temp.published('par-local', 'tap-par-local');

SELECT id AS job_l2 FROM publish.publish_version('par-local', 1, 'tap-par-local') \gset
CREATE TEMP TABLE l2 AS SELECT * FROM test_helpers.wait_job(:'job_l2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'local: a re-publish copies none, skips all 341, verifies all 341') FROM l2;

-- ---------------------------------------------------------------------------
-- WebDAV (nginx): the build tiles are files under its root.
-- ---------------------------------------------------------------------------

SELECT test_helpers.write_tiles(:'dav_open_dir', 'par-dav', 1) \g /dev/null
SELECT id AS job_d1 FROM publish.publish_version('par-dav', 1, 'tap-par-dav') \gset
CREATE TEMP TABLE d1 AS SELECT * FROM test_helpers.wait_job(:'job_d1', '60 s');
SELECT is(status, 'completed', 'WebDAV: the version publishes') FROM d1;
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, 0, :ntiles], 'WebDAV: result counts 341 copied, 0 skipped, 341 verified') FROM d1;
SELECT is(count(*) FILTER (WHERE pg_read_binary_file(:'dav_open_dir' || '/' || key) = bytes), :ntiles::bigint,
          'WebDAV: every tile is on the server, byte for byte')
  FROM pg_temp.published('par-dav', 'tap-par-dav');

CREATE TEMP TABLE dav_log (line text);
COPY dav_log FROM :'dav_log';
SELECT is(count(*), :ntiles::bigint, 'WebDAV: each tile was copied once, on the server (COPY)')
  FROM dav_log WHERE line ~ '^COPY /open/par/builds/par-dav/v1/tiles/';

SELECT id AS job_d2 FROM publish.publish_version('par-dav', 1, 'tap-par-dav') \gset
CREATE TEMP TABLE d2 AS SELECT * FROM test_helpers.wait_job(:'job_d2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'WebDAV: a re-publish copies none, skips all 341, verifies all 341') FROM d2;
TRUNCATE dav_log;
COPY dav_log FROM :'dav_log';
SELECT is(count(*), :ntiles::bigint, '... and nothing more was copied or uploaded for it')
  FROM dav_log WHERE line ~ '^(COPY|PUT) /open/par/(builds|tap-par-dav)/par-dav/(v1/)?tiles/';

-- ---------------------------------------------------------------------------
-- S3, with two transfers at once: progress is watched on publish_jobs.
-- ---------------------------------------------------------------------------

SELECT is(test_helpers.upload_tiles('tap-par-s3', 'par-s3', 1), :ntiles, 'S3: the build tiles are on the bucket');
ALTER SYSTEM SET publish.storage_concurrency = 2;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null

SELECT test_helpers.session_open('par_listener') \g /dev/null
SELECT test_helpers.dblink_exec('par_listener', 'LISTEN publish_jobs') \g /dev/null
SELECT id AS job_s1 FROM publish.publish_version('par-s3', 1, 'tap-par-s3') \gset
CREATE TEMP TABLE s1 AS SELECT * FROM test_helpers.wait_job(:'job_s1', '120 s');
CREATE TEMP TABLE s1_notes AS
SELECT n, payload::jsonb AS p
  FROM test_helpers.collect_notifications('par_listener', '"status" *: *"completed"', '5 s');
DELETE FROM s1_notes WHERE p->>'id' <> :'job_s1';
SELECT test_helpers.dblink_exec('par_listener', 'UNLISTEN *') \g /dev/null
ALTER SYSTEM RESET publish.storage_concurrency;
SELECT pg_reload_conf() \g /dev/null

SELECT is(status, 'completed', 'S3: the version publishes') FROM s1;
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[:ntiles, 0, :ntiles], 'S3: result counts 341 copied, 0 skipped, 341 verified') FROM s1;
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(:'bucket_url' || '/' || key) = bytes), :ntiles::bigint,
          'S3: every tile is in the bucket, byte for byte')
  FROM pg_temp.published('par-s3', 'tap-par-s3');
SELECT test_helpers.http_head(:'bucket_url' || '/tap-par-s3/par-s3/tiles/v1/4/9/5.png') AS head_tile \gset
SELECT ok(:'head_tile' ~ ('x-amz-meta-sha256: ' || sha256),
          'S3: a copied tile carries its sha256 as x-amz-meta-sha256 (read back by a HEAD)')
  FROM pg_temp.published('par-s3', 'tap-par-s3') WHERE (z, x, y) = (4, 9, 5);

-- progress: 50 before the tiles, 80 after, in between only values from 51 to 79
SELECT ok(min(n) FILTER (WHERE (p->>'progress')::int = 50) < min(n) FILTER (WHERE (p->>'progress')::int = 80),
          'progress: 50 is announced before 80') FROM s1_notes;
CREATE TEMP TABLE s1_step4 AS
SELECT n, (p->>'progress')::int AS progress FROM s1_notes
 WHERE n > (SELECT min(n) FROM s1_notes WHERE (p->>'progress')::int = 50)
   AND n < (SELECT min(n) FROM s1_notes WHERE (p->>'progress')::int = 80);
SELECT ok(bool_and(progress BETWEEN 51 AND 79), 'progress inside step 4 stays between 50 and 80')
  FROM s1_step4;
SELECT ok(count(*) > 0, 'progress moves inside step 4 (the tiles took seconds with two transfers)')
  FROM s1_step4;
SELECT ok(count(*) <= 4 * ceil(extract(epoch FROM s1.completed_at - s1.started_at)) + 2,
          format('progress is written a few times a second at most, not per tile (%s updates in %s s)',
                 count(*), round(extract(epoch FROM s1.completed_at - s1.started_at)::numeric, 1)))
  FROM s1_step4, s1 GROUP BY s1.completed_at, s1.started_at;
SELECT ok(bool_and(progress >= prev), 'progress never goes back')
  FROM (SELECT progress, lag(progress, 1, 50) OVER (ORDER BY n) AS prev FROM s1_step4) AS s;

SELECT id AS job_s2 FROM publish.publish_version('par-s3', 1, 'tap-par-s3') \gset
CREATE TEMP TABLE s2 AS SELECT * FROM test_helpers.wait_job(:'job_s2', '60 s');
SELECT is(ARRAY[(result->>'tiles_copied')::int, (result->>'tiles_skipped')::int, (result->>'tiles_verified')::int],
          ARRAY[0, :ntiles, :ntiles], 'S3: a re-publish copies none, skips all 341 (one HEAD each), verifies all 341') FROM s2;

-- ---------------------------------------------------------------------------
-- A corrupt build tile on S3 fails the job, naming it.
-- ---------------------------------------------------------------------------

SELECT test_helpers.upload_tiles('tap-par-s3', 'par-bad', 1) \g /dev/null
SELECT publish._storage_put('tap-par-s3', 'builds/par-bad/v1/tiles/2/1/3.png',
                            test_helpers.tile_bytes('par-bax', 1, 2, 1, 3), 'image/png') \g /dev/null
SELECT id AS job_bad FROM publish.publish_version('par-bad', 1, 'tap-par-s3') \gset
CREATE TEMP TABLE bad AS SELECT * FROM test_helpers.wait_job(:'job_bad', '60 s');
SELECT is(status, 'failed', 'S3: a corrupt build tile fails the job') FROM bad;
SELECT ok(error ~ '^1 tile of version 1 of project "par-bad" is missing or corrupt'
          AND error ~ 'tile 2/1/3 \(builds/par-bad/v1/tiles/2/1/3.png\) does not match its sha256',
          'the error counts it and names it, with its build path') FROM bad;
SELECT ok(test_helpers.http_get(:'bucket_url' || '/tap-par-s3/par-bad/release.json') IS NULL,
          'no release.json is written') FROM bad;

-- ---------------------------------------------------------------------------
-- 503s inside the parallel loop: retried, logged, and the job completes.
-- ---------------------------------------------------------------------------

SELECT test_helpers.upload_tiles('tap-par-fault', 'par-fault', 1) \g /dev/null
SELECT id AS job_f FROM publish.publish_version('par-fault', 1, 'tap-par-fault') \gset
CREATE TEMP TABLE f AS SELECT * FROM test_helpers.wait_job(:'job_f', '60 s');
SELECT is(status, 'completed', 'three 503s on tiles: the job completes') FROM f;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e
            WHERE e->>'level' = 'warn'
              AND e->>'message' ~ '^attempt 1 of \d+ of the check of builds/par-fault/v1/tiles/.* failed: 503 Service Unavailable.*retrying in'),
          3, 'each 503 (on the first reads of build tiles, in the parallel loop) is a warn line of the job, naming the tile') FROM f;
SELECT ok((SELECT bool_and((e->>'progress')::int BETWEEN 50 AND 79) FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'),
          'the retries were logged while in step 4') FROM f;
SELECT is((result->>'tiles_copied')::int, 21, 'every tile was copied (GET + PUT: this server has no COPY)') FROM f;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'message' ~ '\m501 Not Implemented'), 0,
          '... its 501 to COPY is not retried: the copy falls back at once') FROM f;
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(:'fault_url' || '/ok/tpar/' || key) = bytes), 21::bigint,
          'every tile is on the server, byte for byte')
  FROM pg_temp.published('par-fault', 'tap-par-fault');

-- ---------------------------------------------------------------------------
-- A cancel while every transfer of the loop hangs: noticed at once.
-- ---------------------------------------------------------------------------

SELECT test_helpers.upload_tiles('tap-par-hang', 'par-hang', 1) \g /dev/null
SELECT id AS job_h FROM publish.publish_version('par-hang', 1, 'tap-par-hang') \gset
SELECT test_helpers.wait_progress(:'job_h', 50) \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT clock_timestamp() AS cancel_at \gset
SELECT publish.cancel_job(:'job_h') \g /dev/null
CREATE TEMP TABLE h AS SELECT * FROM test_helpers.wait_job(:'job_h', '30 s');
SELECT is(status, 'cancelled', 'a cancel during hanging tile transfers cancels the job') FROM h;
SELECT ok(completed_at - :'cancel_at'::timestamptz < interval '3 s',
          format('... within seconds (%s), not after the stalled transfers have timed out and been retried',
                 completed_at - :'cancel_at'::timestamptz)) FROM h;
SELECT id AS job_after FROM publish.publish_version('par-local', 1, 'tap-par-local') \gset
SELECT is(status, 'completed', 'the worker goes on with the next job') FROM test_helpers.wait_job(:'job_after', '60 s');

-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug LIKE 'par-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-par-%';
SELECT * FROM finish();
