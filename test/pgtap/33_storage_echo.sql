-- 33_storage_echo.sql: a storage server that echoes the request it refuses
-- (the fault server's /echo-* modes: the Authorization header, the secret
-- it carries upper-cased, lower-cased, percent-encoded and JSON-quoted, the
-- session token, the whole request; in the status line, the body, an S3
-- error's Message, a Location) gets no form of a secret into the job's
-- error, its log or the server log.  Basic auth (a 500: retried, so the
-- retry notices in the job's log are checked too), a bearer token, an S3
-- key with a session token, and a redirect.
--
-- Environments tap-echo-*.  Project echo-one.

DELETE FROM publish.projects WHERE slug = 'echo-one';

SELECT plan(21);

SELECT publish.set_storage_target('tap-echo-basic', :'fault_url' || '/echo-500/tbasic') \g /dev/null
SELECT publish.set_storage_credentials('tap-echo-basic', 'echo-user', 'S3cr3t/PW+ü&xyz') \g /dev/null
SELECT publish.set_storage_target('tap-echo-bearer', :'fault_url' || '/echo-400/tbearer') \g /dev/null
SELECT publish.set_storage_credentials('tap-echo-bearer', NULL, 'Echo-Bearer/Tok+9f2Qz') \g /dev/null
SELECT publish.set_storage_target('tap-echo-s3', 's3://echo-xml-403/ts3',
       jsonb_build_object('endpoint', :'fault_url', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('tap-echo-s3', 'AKIAECHOTEST0001', 'Echo-S3-Secret/k9+Vw',
                                       'FwoGZXIvYXdzEchoSession/7c41+Ab==') \g /dev/null
SELECT publish.set_storage_target('tap-echo-redirect', :'fault_url' || '/echo-redirect/tredirect') \g /dev/null
SELECT publish.set_storage_credentials('tap-echo-redirect', 'echo-user', 'R3direct/PW+ü&xyz') \g /dev/null
SELECT test_helpers.make_project('echo-one', 3) \g /dev/null

-- Every form in which a server could echo a secret.
CREATE FUNCTION pg_temp.percent_encoded(s text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT string_agg(CASE WHEN b < 128 AND chr(b) ~ '^[A-Za-z0-9._~-]$' THEN chr(b)
	                       ELSE '%' || upper(lpad(to_hex(b), 2, '0')) END, '' ORDER BY i)
	  FROM generate_series(0, octet_length(convert_to(s, 'UTF8')) - 1) AS i,
	       LATERAL get_byte(convert_to(s, 'UTF8'), i) AS b
$$;
CREATE TEMP TABLE forms AS
SELECT c.env, f.what, f.form
  FROM publish.storage_credentials c
 CROSS JOIN LATERAL (VALUES
	('the secret', c.secret),
	('the secret upper-cased', upper(c.secret)),
	('the secret lower-cased', lower(c.secret)),
	('the secret percent-encoded', pg_temp.percent_encoded(c.secret)),
	('base64 of the secret', rtrim(encode(convert_to(c.secret, 'UTF8'), 'base64'), '=')),
	('base64 of user:secret', rtrim(encode(convert_to(c.key_id || ':' || c.secret, 'UTF8'), 'base64'), '=')),
	('the session token', c.session_token),
	('the session token upper-cased', upper(c.session_token))) AS f(what, form)
 WHERE c.env LIKE 'tap-echo-%' AND f.form IS NOT NULL;

-- leaks(env, text): the forms of env's secrets that text contains.
CREATE FUNCTION pg_temp.leaks(env text, t text) RETURNS text[]
LANGUAGE sql STABLE AS $$
	SELECT coalesce(array_agg(f.what ORDER BY f.what), '{}') FROM forms f
	 WHERE f.env = leaks.env AND strpos(t, f.form) > 0
$$;

SELECT id AS job_basic FROM publish.publish_version('echo-one', 1, 'tap-echo-basic') \gset
SELECT id AS job_bearer FROM publish.publish_version('echo-one', 1, 'tap-echo-bearer') \gset
SELECT id AS job_s3 FROM publish.publish_version('echo-one', 1, 'tap-echo-s3') \gset
SELECT id AS job_redirect FROM publish.publish_version('echo-one', 1, 'tap-echo-redirect') \gset
CREATE TEMP TABLE done AS
SELECT 'tap-echo-basic' AS env, * FROM test_helpers.wait_job(:'job_basic')
UNION ALL SELECT 'tap-echo-bearer', * FROM test_helpers.wait_job(:'job_bearer')
UNION ALL SELECT 'tap-echo-s3', * FROM test_helpers.wait_job(:'job_s3')
UNION ALL SELECT 'tap-echo-redirect', * FROM test_helpers.wait_job(:'job_redirect');
-- the worker writes its LOG line of a failed job after recording it
SELECT test_helpers.wait_until(format('strpos(pg_read_file(%L), %L) > 0', :'server_log',
                                      'publish job ' || id || ' ended without publishing'))
  FROM done \g /dev/null

SELECT ok(bool_and(convert_from(test_helpers.http_get(:'fault_url' || '/_requests/' || t), 'UTF8') ~ '/echo-'),
          'the server saw the four requests it echoed')
  FROM unnest(ARRAY['tbasic', 'tbearer', 'ts3', 'tredirect']) AS t;

-- Basic auth, 500 twice retried then failed.
SELECT ok(status = 'failed' AND error ~ '^upload of .* failed on target "tap-echo-basic" after 3 attempts: 500 Rejected Basic \[redacted\]',
          'basic auth: the job fails with the status, the echoed Authorization masked') FROM done WHERE env = 'tap-echo-basic';
SELECT ok(error ~ ': rejected: secret \[redacted\] \[redacted\] \[redacted\] "\[redacted\]"; session token',
          '... the secret upper-cased, lower-cased, percent-encoded and JSON-quoted in the body masked') FROM done WHERE env = 'tap-echo-basic';
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 2,
          '... after two retry notices') FROM done WHERE env = 'tap-echo-basic';
SELECT is(pg_temp.leaks(env, error), '{}', '... no form of the secret in the error') FROM done WHERE env = 'tap-echo-basic';
SELECT is(pg_temp.leaks(env, logs::text), '{}', '... nor in the job''s log') FROM done WHERE env = 'tap-echo-basic';

-- A bearer token, 400.
SELECT ok(status = 'failed' AND error ~ 'failed on target "tap-echo-bearer": 400 Rejected Bearer \[redacted\]: rejected: secret \[redacted\]',
          'a bearer token: the job fails with the status, the echoed token masked') FROM done WHERE env = 'tap-echo-bearer';
SELECT is(pg_temp.leaks(env, error), '{}', '... no form of the token in the error') FROM done WHERE env = 'tap-echo-bearer';
SELECT is(pg_temp.leaks(env, logs::text), '{}', '... nor in the job''s log') FROM done WHERE env = 'tap-echo-bearer';

-- S3 with a session token: an XML error whose Message echoes the request.
SELECT ok(status = 'failed' AND error ~ '^S3 rejected the upload of .*: 403 Forbidden: AccessDenied — session token \[redacted\] \(\[redacted\]\); Signature=\[redacted\]; Authorization: \[redacted\]',
          'S3: the job fails with the error code and message, the token, the signature and the Authorization masked') FROM done WHERE env = 'tap-echo-s3';
SELECT is(pg_temp.leaks(env, error), '{}', '... no form of the secret or the session token in the error') FROM done WHERE env = 'tap-echo-s3';
SELECT ok(error !~* 'signature=[0-9a-f]{16}', '... nor the request''s signature') FROM done WHERE env = 'tap-echo-s3';
SELECT is(pg_temp.leaks(env, logs::text), '{}', '... nor in the job''s log') FROM done WHERE env = 'tap-echo-s3';

-- A redirect whose Location carries the secret and the Authorization.
SELECT ok(status = 'failed' AND error ~ '307 Temporary Redirect: redirected to "http://echo:\[redacted\]@127\.0\.0\.2:\d+/echo-redirect/tredirect/.*\?authorization=\[redacted\]"',
          'a redirect: the job fails naming the Location, the secret and the Authorization in it masked') FROM done WHERE env = 'tap-echo-redirect';
SELECT is(pg_temp.leaks(env, error), '{}', '... no form of the secret in the error') FROM done WHERE env = 'tap-echo-redirect';
SELECT is(pg_temp.leaks(env, logs::text), '{}', '... nor in the job''s log') FROM done WHERE env = 'tap-echo-redirect';

-- The server log (the worker's LOG line of each failed job).
SELECT is(pg_temp.leaks('tap-echo-basic', pg_read_file(:'server_log')), '{}', 'no form of the basic auth secret in the server log');
SELECT is(pg_temp.leaks('tap-echo-bearer', pg_read_file(:'server_log')), '{}', 'no form of the bearer token in the server log');
SELECT is(pg_temp.leaks('tap-echo-s3', pg_read_file(:'server_log')), '{}', 'no form of the S3 secret or session token in the server log');
SELECT is(pg_temp.leaks('tap-echo-redirect', pg_read_file(:'server_log')), '{}', 'no form of the redirected secret in the server log');
SELECT ok(pg_read_file(:'server_log') ~ ('publish job ' || :'job_s3' || ' ended without publishing: S3 rejected .*\[redacted\]'),
          'the server log has the S3 job''s error, masked');

DELETE FROM publish.projects WHERE slug = 'echo-one';

SELECT * FROM finish();
