-- 34_storage_tls_redirects.sql: TLS certificates are verified (nginx over
-- https with a self-signed certificate: refused until
-- publish.storage_ca_file names it), and redirects are not followed (the
-- fault server answers 307 to another host).
--
-- Environments tap-tls, tap-redirect.  Project tls-one.

DELETE FROM publish.projects WHERE slug = 'tls-one';

SELECT plan(9);

SELECT publish.set_storage_target('tap-tls', :'davs_url' || '/open/tls') \g /dev/null
SELECT publish.set_storage_target('tap-redirect', :'fault_url' || '/redirect/tr') \g /dev/null
SELECT test_helpers.make_project('tls-one', 3) \g /dev/null

-- ---------------------------------------------------------------------------
-- A certificate no known CA signed: refused, not retried.
-- ---------------------------------------------------------------------------

SELECT id AS job1 FROM publish.publish_version('tls-one', 1, 'tap-tls') \gset
CREATE TEMP TABLE t1 AS SELECT * FROM test_helpers.wait_job(:'job1');
SELECT is(status, 'failed', 'https with a self-signed certificate: the job fails') FROM t1;
SELECT ok(error ~ 'TLS verification failed' AND error ~ 'target "tap-tls"',
          'the error says TLS verification failed and names the target') FROM t1;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 0,
          'a certificate problem is not retried') FROM t1;

-- ---------------------------------------------------------------------------
-- With publish.storage_ca_file naming the certificate, it works.
-- ---------------------------------------------------------------------------

ALTER SYSTEM SET publish.storage_ca_file = :'tls_ca_file';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT id AS job2 FROM publish.publish_version('tls-one', 1, 'tap-tls') \gset
CREATE TEMP TABLE t2 AS SELECT * FROM test_helpers.wait_job(:'job2');
ALTER SYSTEM RESET publish.storage_ca_file;
SELECT pg_reload_conf() \g /dev/null

SELECT is(status, 'completed', 'with publish.storage_ca_file set to its CA, the publish over https completes') FROM t2;
SELECT is(pg_read_binary_file(:'dav_dir' || '/open/tls/tap-tls/tls-one/release.json'),
          convert_to(publish._release_document(v.id, 'tap-tls', v.published_at)::text, 'UTF8'),
          'release.json landed, byte for byte')
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'tls-one';

-- ---------------------------------------------------------------------------
-- A redirect to another host is not followed.
-- ---------------------------------------------------------------------------

SELECT id AS job3 FROM publish.publish_version('tls-one', 1, 'tap-redirect') \gset
CREATE TEMP TABLE r AS SELECT * FROM test_helpers.wait_job(:'job3');
SELECT is(status, 'failed', 'a redirect: the job fails') FROM r;
SELECT ok(error ~ '307' AND error ~ 'redirected to "http://127\.0\.0\.2:' AND error ~ 'redirects are not followed',
          'the error gives the status and where it pointed, and says redirects are not followed') FROM r;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 0,
          'a redirect is not retried') FROM r;
SELECT ok(NOT EXISTS (SELECT 1 FROM publish.releases WHERE env = 'tap-redirect'), 'nothing is recorded as live');

DELETE FROM publish.projects WHERE slug = 'tls-one';

SELECT * FROM finish();
