-- 30_storage_webdav.sql: publishing to an http:// target, a real nginx with
-- WebDAV (scripts/storage-servers.sh), through the worker.  What nginx
-- stored is read back from its directory (:dav_dir) and what the worker
-- sent from its access log (:dav_log, which shows Content-Type and
-- Cache-Control of each request).
--
-- Environments tap-dav (/open/, no auth), tap-dav-auth (/private/, basic
-- auth), tap-dav-bad (/private/, a wrong password).  Projects dav-*.

DELETE FROM publish.projects WHERE slug LIKE 'dav-%';

SELECT plan(25);

SELECT :'dav_url' || '/open/tap' AS open_url, :'dav_dir' || '/open/tap' AS open_dir \gset
SELECT publish.set_storage_target('tap-dav', :'open_url') \g /dev/null
SELECT publish.set_storage_target('tap-dav-auth', :'dav_url' || '/private/tap') \g /dev/null
SELECT publish.set_storage_credentials('tap-dav-auth', :'dav_user', :'dav_password') \g /dev/null
SELECT publish.set_storage_target('tap-dav-bad', :'dav_url' || '/private/tap') \g /dev/null
SELECT publish.set_storage_credentials('tap-dav-bad', :'dav_user', 'wrong-dav-pw-0c41d9') \g /dev/null

-- ---------------------------------------------------------------------------
-- A version with tiles: release.json, the versioned copy and the tiles land.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('dav-one', 6, true, 2) AS project_id \gset
SELECT test_helpers.write_tiles(:'open_dir', 'dav-one', 1) AS tiles_written \gset

SELECT id AS job FROM publish.publish_version('dav-one', 1, 'tap-dav') \gset
CREATE TEMP TABLE d AS SELECT * FROM test_helpers.wait_job(:'job');

SELECT is(status, 'completed', 'a publish to a WebDAV target completes') FROM d;
SELECT is(error, NULL, '... without error') FROM d;
SELECT is(result->>'release_url', :'open_url' || '/tap-dav/dav-one/release.json',
          'release_url is the object''s URL on the server') FROM d;
SELECT is(pg_read_binary_file(:'open_dir' || '/tap-dav/dav-one/release.json'),
          convert_to(publish._release_document(v.id, 'tap-dav', v.published_at)::text, 'UTF8'),
          'release.json on the server is byte for byte what build_release() gives')
  FROM publish.project_versions v WHERE v.project_id = :'project_id';
SELECT is(pg_read_binary_file(:'open_dir' || '/tap-dav/dav-one/release.json'),
          convert_to(publish.build_release('dav-one', 1, 'tap-dav', v.published_at)::text, 'UTF8'),
          '... and byte for byte what build_release() returns')
  FROM publish.project_versions v WHERE v.project_id = :'project_id';
SELECT is(test_helpers.file_sha256(:'open_dir' || '/tap-dav/dav-one/release.json'), result->>'release_sha256',
          'its sha256 is the one the job reports') FROM d;
SELECT is(pg_read_binary_file(:'open_dir' || '/tap-dav/dav-one/releases/v1.json'),
          pg_read_binary_file(:'open_dir' || '/tap-dav/dav-one/release.json'),
          'the versioned copy releases/v1.json has the same bytes');
SELECT is(test_helpers.http_get(:'open_url' || '/tap-dav/dav-one/release.json'),
          pg_read_binary_file(:'open_dir' || '/tap-dav/dav-one/release.json'),
          'nginx serves it back with the same bytes');
SELECT is((SELECT count(*)::int FROM test_helpers.list_files(:'open_dir' || '/tap-dav/dav-one/tiles/v1')),
          :'tiles_written'::int, 'every tile landed under tiles/v1 (WebDAV COPY)');
SELECT is((result->>'tiles_copied')::int, :'tiles_written'::int, 'the job counts them as copied') FROM d;
SELECT ok(bool_and(pg_read_binary_file(format('%s/tap-dav/dav-one/tiles/v1/%s/%s/%s.png', :'open_dir', t.z, t.x, t.y))
                   = test_helpers.tile_bytes('dav-one', 1, t.z, t.x, t.y)),
          'each published tile has the bytes of its build tile')
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
 WHERE s.version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'project_id');

-- What the worker sent: nginx's access log has one line per request.
CREATE TEMP TABLE dav_log (line text);
COPY dav_log FROM :'dav_log';
SELECT is((SELECT line FROM dav_log WHERE line ~ '^PUT /open/tap/tap-dav/dav-one/release.json ' LIMIT 1),
          'PUT /open/tap/tap-dav/dav-one/release.json 201 ct="application/json" cc="no-cache" ce="-"',
          'release.json is PUT as application/json, Cache-Control no-cache (readers revalidate)');
SELECT is((SELECT line FROM dav_log WHERE line ~ '^PUT /open/tap/tap-dav/dav-one/releases/v1.json ' LIMIT 1),
          'PUT /open/tap/tap-dav/dav-one/releases/v1.json 201 ct="application/json" cc="public, max-age=31536000, immutable" ce="-"',
          'the versioned copy is PUT as immutable, cached for a year');
SELECT ok(EXISTS (SELECT 1 FROM dav_log WHERE line ~ '^HEAD /open/tap/tap-dav/dav-one/release.json 200'),
          'each upload is checked with a HEAD afterwards');
SELECT ok(EXISTS (SELECT 1 FROM dav_log WHERE line ~ '^COPY /open/tap/builds/dav-one/v1/tiles/2/3/3.png 20[14]'),
          'tiles are copied on the server (WebDAV COPY), not downloaded and uploaded');

-- ---------------------------------------------------------------------------
-- Basic auth: the right password works, a wrong one fails clearly.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('dav-auth', 3) \g /dev/null
SELECT id AS job_auth FROM publish.publish_version('dav-auth', 1, 'tap-dav-auth') \gset
CREATE TEMP TABLE a AS SELECT * FROM test_helpers.wait_job(:'job_auth');
SELECT is(status, 'completed', 'with the right password, the publish to the basic-auth location completes') FROM a;
SELECT ok(test_helpers.file_exists(:'dav_dir' || '/private/tap/tap-dav-auth/dav-auth/release.json'),
          '... and release.json is there');

SELECT test_helpers.make_project('dav-bad', 3) \g /dev/null
SELECT id AS job_bad FROM publish.publish_version('dav-bad', 1, 'tap-dav-bad') \gset
CREATE TEMP TABLE b AS SELECT * FROM test_helpers.wait_job(:'job_bad');
SELECT is(status, 'failed', 'with a wrong password, the job fails') FROM b;
SELECT ok(error ~ '401' AND error ~ 'upload of tap-dav-bad/dav-bad/releases/v1.json'
          AND error ~ 'check the credentials of target "tap-dav-bad"',
          'the error gives the status, the object and names the target') FROM b;
SELECT ok(strpos(b::text, 'wrong-dav-pw-0c41d9') = 0 AND strpos(b::text, :'dav_password') = 0,
          'no password appears in the job') FROM b;
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(logs) e WHERE e->>'level' = 'warn'), 0,
          'a 401 is not retried') FROM b;
SELECT ok(NOT test_helpers.file_exists(:'dav_dir' || '/private/tap/tap-dav-bad/dav-bad/release.json'),
          'nothing was published');
SELECT is(v.status, 'ready', 'the version stays ready')
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'dav-bad';

-- A bearer token (a secret without key id), against the fault server's
-- /bearer/ location, which wants "Bearer bearer-token-6a0f2c".
SELECT publish.set_storage_target('tap-bearer', :'fault_url' || '/bearer/tb') \g /dev/null
SELECT publish.set_storage_credentials('tap-bearer', NULL, 'bearer-token-6a0f2c') \g /dev/null
SELECT publish.set_storage_target('tap-bearer-bad', :'fault_url' || '/bearer/tb') \g /dev/null
SELECT publish.set_storage_credentials('tap-bearer-bad', NULL, 'bearer-token-wrong-9e1') \g /dev/null
SELECT test_helpers.make_project('dav-bearer', 3) \g /dev/null
SELECT id AS job_bearer FROM publish.publish_version('dav-bearer', 1, 'tap-bearer') \gset
SELECT id AS job_bearer_bad FROM publish.publish_version('dav-bearer', 1, 'tap-bearer-bad') \gset
SELECT is(status, 'completed', 'a bearer token (key_id NULL) is sent as Authorization: Bearer')
  FROM test_helpers.wait_job(:'job_bearer');
SELECT ok(status = 'failed' AND error ~ '401 Unauthorized: Unauthorized: a bearer token is required'
          AND error ~ 'check the credentials of target "tap-bearer-bad"'
          AND strpos(error, 'bearer-token-wrong-9e1') = 0,
          'a wrong token fails with the server''s words, naming the target, without the token')
  FROM test_helpers.wait_job(:'job_bearer_bad');

-- Keep the jobs for 33_storage_secrets.sql; drop the content.
DELETE FROM publish.projects WHERE slug LIKE 'dav-%';

SELECT * FROM finish();
