-- 52_rollback_gzip.sql: publish.rollback on targets with the option
-- "compress": "gzip", on file://, WebDAV (nginx) and S3 (s3rver behind the
-- SigV4 proxy), between versions published with the option on, off and on
-- again (1 and 3 compressed, 2 plain).
--
--   - the check of the copy means the document itself: S3's
--     x-amz-meta-sha256 and a hashed GET of a compressed copy (WebDAV) are
--     those of the decompressed document, so a rollback to a compressed
--     release passes, and one to a copy changed on the server fails;
--   - release.json becomes the copy as it is stored: on file:// with its
--     release.json.gz (what gzip_static serves) or without one, on S3 with
--     or without Content-Encoding: gzip; what a reader has after
--     decompressing is always the document whose sha256 the history
--     recorded.
--
-- Environments tap-rbz-*; projects rbz-*.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug LIKE 'rbz-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-rbz-%';

SELECT plan(31);

SELECT :'storage' || '/rbz' AS root, :'dav_dir' || '/open/rbz' AS dav_dir,
       :'s3rver_url' || '/' || :'s3_bucket' || '/rbz' AS bucket_url \gset
SELECT :'root' || '/tap-rbz-file/rbz-file' AS fdir, :'dav_dir' || '/tap-rbz-dav/rbz-dav' AS ddir,
       :'bucket_url' || '/tap-rbz-s3/rbz-s3' AS sdir \gset
-- what the functions below need of psql's variables
CREATE TEMP TABLE conf AS
SELECT :'root' AS root, :'dav_url' || '/open/rbz' AS dav_root, :'s3_bucket' AS bucket,
       :'s3_endpoint' AS endpoint, :'s3_key_id' AS key_id, :'s3_secret' AS secret,
       :'fdir' AS fdir, :'ddir' AS ddir, :'sdir' AS sdir;

-- targets, with compress gzip or (opts '{}') without
CREATE FUNCTION pg_temp.set_targets(opts jsonb) RETURNS void LANGUAGE sql AS $$
	SELECT publish.set_storage_target('tap-rbz-file', 'file://' || root, opts) FROM conf;
	SELECT publish.set_storage_target('tap-rbz-dav', dav_root, opts) FROM conf;
	SELECT publish.set_storage_target('tap-rbz-s3', 's3://' || bucket || '/rbz',
	                                  jsonb_build_object('endpoint', endpoint) || opts) FROM conf;
	SELECT publish.set_storage_credentials('tap-rbz-s3', key_id, secret) FROM conf;
$$;

-- The bytes of a file or URL after gunzip; a URL fetched as a viewer does
-- (Accept-Encoding: gzip, decoded by curl when the server says gzip).
CREATE FUNCTION pg_temp.gunzip_file(path text) RETURNS bytea LANGUAGE sql VOLATILE AS $$
	SELECT decode(test_helpers.run(format('gunzip -c %s | base64 -w0; echo', test_helpers.sh_quote(path))), 'base64')
$$;
CREATE FUNCTION pg_temp.viewer_sha256(url text) RETURNS text LANGUAGE sql VOLATILE AS $$
	SELECT test_helpers.run(format('curl -sf --compressed --max-time 10 %s | sha256sum | cut -c1-64',
	                               test_helpers.sh_quote(url)))
$$;
-- what a reader of release.json on e has after decompressing, as a sha256
CREATE FUNCTION pg_temp.served(e text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	path text;
BEGIN
	CASE e
	WHEN 'file' THEN
		RETURN test_helpers.file_sha256((SELECT fdir FROM conf) || '/release.json');
	WHEN 'dav' THEN
		path := (SELECT ddir FROM conf) || '/release.json';
		-- nginx keeps no Content-Encoding: the bytes say it
		IF substring(pg_read_binary_file(path) FROM 1 FOR 2) = '\x1f8b'::bytea THEN
			RETURN encode(sha256(pg_temp.gunzip_file(path)), 'hex');
		END IF;
		RETURN encode(sha256(pg_read_binary_file(path)), 'hex');
	ELSE
		RETURN pg_temp.viewer_sha256((SELECT sdir FROM conf) || '/release.json');
	END CASE;
END $$;
-- the sha256 of version n's document in e, as the history recorded it
CREATE FUNCTION pg_temp.sha(e text, n int) RETURNS text LANGUAGE sql AS $$
	SELECT release_sha256 FROM publish.release_history
	 WHERE project = 'rbz-' || e AND env = 'tap-rbz-' || e AND version = n AND job_type = 'publish'
	 ORDER BY id DESC LIMIT 1
$$;
-- how a job ended: its status, and its error if any (jobs are queued in
-- a statement of their own, so that the worker sees them committed)
CREATE FUNCTION pg_temp.ended(job uuid) RETURNS text LANGUAGE sql AS $$
	SELECT status || coalesce(': ' || error, '') FROM test_helpers.wait_job(job, '60 s')
$$;

-- three versions of 60 overlays each, published with compress on, off,
-- on again: 1 and 3 compressed, 2 plain
SELECT test_helpers.make_project('rbz-' || e, 60) FROM unnest(ARRAY['file', 'dav', 's3']) AS e \g /dev/null
SELECT test_helpers.make_version(p.id, n, 60)
  FROM publish.projects p, generate_series(2, 3) AS n WHERE p.slug LIKE 'rbz-%' \g /dev/null
CREATE TEMP TABLE jobs (n int, id uuid);
CREATE FUNCTION pg_temp.queue(n int) RETURNS void LANGUAGE sql AS $$
	INSERT INTO jobs SELECT n, (publish.publish_version('rbz-' || e, n, 'tap-rbz-' || e)).id
	  FROM unnest(ARRAY['file', 'dav', 's3']) AS e;
$$;
SELECT pg_temp.set_targets('{"compress": "gzip"}'), pg_temp.queue(1) \g /dev/null
SELECT is(array_agg(pg_temp.ended(id)), array_fill('completed'::text, ARRAY[3]),
          'version 1 is published compressed on file://, WebDAV and S3') FROM jobs WHERE n = 1;
SELECT pg_temp.set_targets('{}'), pg_temp.queue(2) \g /dev/null
SELECT is(array_agg(pg_temp.ended(id)), array_fill('completed'::text, ARRAY[3]),
          'version 2 is published without compress') FROM jobs WHERE n = 2;
SELECT pg_temp.set_targets('{"compress": "gzip"}'), pg_temp.queue(3) \g /dev/null
SELECT is(array_agg(pg_temp.ended(id)), array_fill('completed'::text, ARRAY[3]),
          'version 3 is published compressed') FROM jobs WHERE n = 3;

-- S3 stores the document's sha256 with its compressed copy
SELECT ok(test_helpers.http_head(:'sdir' || '/releases/v1.json')
          ~ ('x-amz-meta-sha256: ' || pg_temp.sha('s3', 1)),
          'S3: the compressed copy''s x-amz-meta-sha256 is the document''s');

-- ---------------------------------------------------------------------------
-- file://
-- ---------------------------------------------------------------------------

SELECT id AS job FROM publish.rollback('rbz-file', 'tap-rbz-file', 2) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'file://: from compressed version 3 back to plain version 2');
SELECT is(pg_temp.served('file'), pg_temp.sha('file', 2), '... release.json is version 2''s document');
SELECT ok(NOT test_helpers.file_exists(:'fdir' || '/release.json.gz'),
          '... and version 3''s release.json.gz is gone: gzip_static would serve it');
SELECT id AS job FROM publish.rollback('rbz-file', 'tap-rbz-file', 1) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'file://: from plain version 2 to compressed version 1');
SELECT is(pg_temp.served('file'), pg_temp.sha('file', 1), '... release.json is version 1''s document');
SELECT is(encode(sha256(pg_temp.gunzip_file(:'fdir' || '/release.json.gz')), 'hex'), pg_temp.sha('file', 1),
          '... and so is the release.json.gz beside it');
SELECT id AS job FROM publish.rollback('rbz-file', 'tap-rbz-file', 3) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'file://: from compressed version 1 to compressed version 3');
SELECT is(pg_temp.served('file'), pg_temp.sha('file', 3), '... release.json is version 3''s document');
SELECT is(encode(sha256(pg_temp.gunzip_file(:'fdir' || '/release.json.gz')), 'hex'), pg_temp.sha('file', 3),
          '... and so is release.json.gz');

-- ---------------------------------------------------------------------------
-- WebDAV: the copy is checked by a GET, hashed after decompressing
-- ---------------------------------------------------------------------------

SELECT id AS job FROM publish.rollback('rbz-dav', 'tap-rbz-dav', 2) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'WebDAV: from compressed version 3 back to plain version 2');
SELECT is(pg_temp.served('dav'), pg_temp.sha('dav', 2), '... version 2''s document, stored plain');
SELECT id AS job FROM publish.rollback('rbz-dav', 'tap-rbz-dav', 1) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'WebDAV: from plain version 2 to compressed version 1');
SELECT is(pg_temp.served('dav'), pg_temp.sha('dav', 1), '... what is served decompresses to version 1''s document');
SELECT is(substring(pg_read_binary_file(:'ddir' || '/release.json') FROM 1 FOR 2), '\x1f8b'::bytea,
          '... stored compressed, as its copy is');
SELECT id AS job FROM publish.rollback('rbz-dav', 'tap-rbz-dav', 3) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'WebDAV: from compressed version 1 to compressed version 3');
SELECT is(pg_temp.served('dav'), pg_temp.sha('dav', 3), '... version 3''s document');

-- a compressed copy changed on the server still fails the check
SELECT test_helpers.run(format('printf %s | gzip -n > %s', test_helpers.sh_quote('{"changed": true}'),
                               test_helpers.sh_quote(:'ddir' || '/releases/v1.json'))) \g /dev/null
SELECT id AS job FROM publish.rollback('rbz-dav', 'tap-rbz-dav', 1) \gset
SELECT alike(pg_temp.ended(:'job'), 'failed: %is not the release that was live%',
             'WebDAV: a rollback to a compressed copy changed on the server fails, saying so');
SELECT is(pg_temp.served('dav'), pg_temp.sha('dav', 3), '... and release.json is still version 3''s');

-- ---------------------------------------------------------------------------
-- S3: the copy is checked by a HEAD (its x-amz-meta-sha256)
-- ---------------------------------------------------------------------------

SELECT id AS job FROM publish.rollback('rbz-s3', 'tap-rbz-s3', 2) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'S3: from compressed version 3 back to plain version 2');
SELECT is(pg_temp.served('s3'), pg_temp.sha('s3', 2), '... a viewer gets version 2''s document');
SELECT ok(test_helpers.http_head(:'sdir' || '/release.json') !~ 'content-encoding',
          '... sent without Content-Encoding');
SELECT id AS job FROM publish.rollback('rbz-s3', 'tap-rbz-s3', 1) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'S3: from plain version 2 to compressed version 1');
SELECT is(pg_temp.served('s3'), pg_temp.sha('s3', 1), '... a viewer gets version 1''s document');
SELECT ok(test_helpers.http_head(:'sdir' || '/release.json') ~ 'content-encoding: gzip',
          '... sent with Content-Encoding: gzip');
SELECT ok(test_helpers.http_head(:'sdir' || '/release.json') ~ ('x-amz-meta-sha256: ' || pg_temp.sha('s3', 1)),
          '... and the document''s sha256 as its x-amz-meta-sha256');
SELECT id AS job FROM publish.rollback('rbz-s3', 'tap-rbz-s3', 3) \gset
SELECT is(pg_temp.ended(:'job'), 'completed', 'S3: from compressed version 1 to compressed version 3');
SELECT is(pg_temp.served('s3'), pg_temp.sha('s3', 3), '... version 3''s document');

DELETE FROM publish.projects WHERE slug LIKE 'rbz-%';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-rbz-%';

SELECT * FROM finish();
