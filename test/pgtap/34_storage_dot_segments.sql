-- 34_storage_dot_segments.sql: a target row written into
-- publish.storage_targets directly (by a superuser, past
-- set_storage_target's checks) with "." or ".." segments, plain or
-- percent-encoded, in its URL, endpoint or public_url makes the job fail
-- with a clear error before any request is sent: libcurl would resolve
-- s3://bucket/a/.. into a request outside the prefix.  The fault server's
-- /_requests/TAG lists what reached it.  Credentials in such a row's URL
-- (set_storage_target refuses them) are masked in the error.
--
-- Environments tap-dots-*.  Project dots-one.

DELETE FROM publish.projects WHERE slug = 'dots-one';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-dots-%';

SELECT plan(15);

INSERT INTO publish.storage_targets (env, url, options) VALUES
	('tap-dots-http', :'fault_url' || '/ok/tdots/sub/..', '{}'),
	('tap-dots-pct', :'fault_url' || '/ok/tdots2/%2E%2e', '{}'),
	('tap-dots-s3', 's3://ok/tdots3/..', jsonb_build_object('endpoint', :'fault_url')),
	('tap-dots-endpoint', 's3://ok/tdots4', jsonb_build_object('endpoint', :'fault_url' || '/..')),
	('tap-dots-public', 'file://' || :'storage' || '/dots',
	 '{"public_url": "https://cdn.example.com/maps/../other"}'),
	('tap-dots-userinfo', replace(:'fault_url', '://', '://someone:dots-secret-4417@') || '/ok/tdots5/..', '{}'),
	('tap-dots-scheme', 'ftp://someone:dots-secret-4417@example.com/maps', '{}');
SELECT test_helpers.make_project('dots-one', 3) \g /dev/null

-- requests(fault_url, tag): the requests the fault server saw under tag.
CREATE FUNCTION pg_temp.requests(fault_url text, tag text) RETURNS text
LANGUAGE sql VOLATILE AS $$
	SELECT btrim(convert_from(test_helpers.http_get(fault_url || '/_requests/' || tag), 'UTF8'), E'\n')
$$;

SELECT id AS job_http FROM publish.publish_version('dots-one', 1, 'tap-dots-http') \gset
SELECT id AS job_pct FROM publish.publish_version('dots-one', 1, 'tap-dots-pct') \gset
SELECT id AS job_s3 FROM publish.publish_version('dots-one', 1, 'tap-dots-s3') \gset
SELECT id AS job_endpoint FROM publish.publish_version('dots-one', 1, 'tap-dots-endpoint') \gset
SELECT id AS job_public FROM publish.publish_version('dots-one', 1, 'tap-dots-public') \gset
SELECT id AS job_userinfo FROM publish.publish_version('dots-one', 1, 'tap-dots-userinfo') \gset
SELECT id AS job_scheme FROM publish.publish_version('dots-one', 1, 'tap-dots-scheme') \gset
CREATE TEMP TABLE done AS
SELECT 'tap-dots-http' AS env, * FROM test_helpers.wait_job(:'job_http')
UNION ALL SELECT 'tap-dots-pct', * FROM test_helpers.wait_job(:'job_pct')
UNION ALL SELECT 'tap-dots-s3', * FROM test_helpers.wait_job(:'job_s3')
UNION ALL SELECT 'tap-dots-endpoint', * FROM test_helpers.wait_job(:'job_endpoint')
UNION ALL SELECT 'tap-dots-public', * FROM test_helpers.wait_job(:'job_public')
UNION ALL SELECT 'tap-dots-userinfo', * FROM test_helpers.wait_job(:'job_userinfo')
UNION ALL SELECT 'tap-dots-scheme', * FROM test_helpers.wait_job(:'job_scheme');

SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-http" has a "\." or "\.\." segment in its URL ".*/ok/tdots/sub/\.\."',
          'an http target with a ".." segment: the job fails, saying so') FROM done WHERE env = 'tap-dots-http';
SELECT ok(error ~ 'none was sent', '... and that no request was sent') FROM done WHERE env = 'tap-dots-http';
SELECT is(pg_temp.requests(:'fault_url', 'tdots'), '', '... and none reached the server');

SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-pct" has a "\." or "\.\." segment in its URL',
          'an http target with a percent-encoded ".." segment: the job fails, saying so') FROM done WHERE env = 'tap-dots-pct';
SELECT is(pg_temp.requests(:'fault_url', 'tdots2'), '', '... and no request reached the server');

SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-s3" has a "\." or "\.\." segment in its URL "s3://ok/tdots3/\.\."',
          'an s3 target whose prefix ends in "..": the job fails, saying so') FROM done WHERE env = 'tap-dots-s3';
SELECT is(pg_temp.requests(:'fault_url', 'tdots3') || pg_temp.requests(:'fault_url', 'tap-dots-s3'), '',
          '... and no request reached the server, in the prefix or out of it');

SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-endpoint" has a "\." or "\.\." segment in its option endpoint',
          'an s3 endpoint with a ".." segment: the job fails, saying so') FROM done WHERE env = 'tap-dots-endpoint';

SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-public" has a "\." or "\.\." segment in its option public_url',
          'a public_url with a ".." segment: the job fails, saying so') FROM done WHERE env = 'tap-dots-public';
SELECT ok(NOT test_helpers.file_exists(:'storage' || '/dots/tap-dots-public/dots-one/release.json'),
          '... and nothing was published');
SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-userinfo" has a "\." or "\.\." segment in its URL "http://\*\*\*@127\.0\.0\.1:\d+/ok/tdots5/\.\."',
          'a URL with credentials and a ".." segment: the error shows it with the credentials masked') FROM done WHERE env = 'tap-dots-userinfo';
SELECT ok(status = 'failed' AND error ~ '^storage target of environment "tap-dots-scheme" has an unsupported URL "ftp://\*\*\*@example\.com/maps"',
          'an unsupported URL with credentials: the same') FROM done WHERE env = 'tap-dots-scheme';
SELECT is((SELECT count(*)::int FROM publish.jobs WHERE params->>'target_env' LIKE 'tap-dots-%' AND strpos(jobs::text, 'dots-secret-4417') > 0), 0,
          'the credentials are in no job row and no log line');
SELECT is(strpos(pg_read_file(:'server_log'), 'dots-secret-4417'), 0, '... nor in the server log');
SELECT is((SELECT count(*)::int FROM publish.releases WHERE env LIKE 'tap-dots-%'), 0,
          'no target with a dot segment has a live release');

DELETE FROM publish.projects WHERE slug = 'dots-one';
DELETE FROM publish.storage_targets WHERE env LIKE 'tap-dots-%';

SELECT * FROM finish();
