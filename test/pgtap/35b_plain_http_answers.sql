-- 35b_plain_http_answers.sql: answers of plain HTTP servers that are
-- allowed but unusual (test/servers/fault-server.js).
--
-- A server without WebDAV COPY gets each tile copy as a GET and a PUT, its
-- bytes through memory, bounded by the size a HEAD tells.  The /nolength
-- mode tells none: the copy is then bounded by publish.max_release_size,
-- and the tiles still arrive whole.
--
-- A DELETE of a collection answered 207 Multi-Status removed only part of
-- it (RFC 4918): the /delete207 mode answers so, and a purge fails, saying
-- so, instead of counting the version's tiles removed.
--
-- Environments tap-nolength, tap-delete207.  Projects nolength-one,
-- delete207-one.

DELETE FROM publish.projects WHERE slug IN ('nolength-one', 'delete207-one');

SELECT plan(6);

SELECT :'fault_url' || '/nolength/tnl' AS root \gset
SELECT publish.set_storage_target('tap-nolength', :'root') \g /dev/null
SELECT test_helpers.make_project('nolength-one', 3, true, 1) AS project_id \gset
SELECT test_helpers.upload_tiles('tap-nolength', 'nolength-one', 1) AS tiles \gset

SELECT id AS job FROM publish.publish_version('nolength-one', 1, 'tap-nolength') \gset
CREATE TEMP TABLE d AS SELECT * FROM test_helpers.wait_job(:'job', '60 s');

SELECT is(status, 'completed', 'tiles copied by GET and PUT from a server whose HEAD tells no size: the job completes') FROM d;
SELECT is((result->>'tiles_copied')::int, :'tiles'::int, '... every tile copied') FROM d;
SELECT is(count(*) FILTER (WHERE test_helpers.http_get(format('%s/tap-nolength/nolength-one/tiles/v1/%s/%s/%s.png', :'root', t.z, t.x, t.y))
                                 = test_helpers.tile_bytes('nolength-one', 1, t.z, t.x, t.y)),
          :'tiles'::bigint, '... each on the server, byte for byte')
  FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
 WHERE s.version_id = (SELECT id FROM publish.project_versions WHERE project_id = :'project_id');

-- ---------------------------------------------------------------------------
-- A purge whose DELETE of a version's tiles is answered 207.
-- ---------------------------------------------------------------------------

SELECT publish.set_storage_target('tap-delete207', :'fault_url' || '/delete207/td207') \g /dev/null
SELECT test_helpers.make_two_versions('delete207-one', 'tap-delete207') \g /dev/null
\set slug delete207-one
\set env tap-delete207
\ir helpers/purge_second_version.sql
SELECT is(status, 'failed', 'a purge whose DELETE was answered 207 Multi-Status fails') FROM dp;
SELECT ok(error ~ '^removal of tap-delete207/delete207-one/tiles/v1/ failed on target "tap-delete207": the server could not remove all of it',
          '... saying which removal the server did not complete') FROM dp;

DELETE FROM publish.projects WHERE slug IN ('nolength-one', 'delete207-one');

SELECT * FROM finish();
