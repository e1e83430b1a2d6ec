-- 38_storage_file_symlinks.sql: whoever can write in a file:// target's
-- directory cannot make the worker write outside it.  Temporary files were
-- opened at {name}.tmp-{pid} (the pid shows in every job's log) without
-- O_EXCL or O_NOFOLLOW, so a symlink planted at that name had the worker
-- write release.json, or a tile, through it and chmod the file it points
-- to 0644.  Here symlinks to a file outside the root are planted at those
-- names for every worker of this database, at a name of the new form
-- ({name}.tmp-{pid}-{16 hex digits}), and at the final names of the
-- versioned copy, of release.json and of a tile; the publish must complete,
-- leave that file as it was (content and mode), and put regular files with
-- the right bytes in place of the symlinks at the final names.
--
-- Project symlink (zooms 0-1: 5 tiles), environment tap-symlink under
-- :storage/symlink.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug = 'symlink';

SELECT plan(9);

-- runs a shell command on the database server, as the server's user
CREATE FUNCTION pg_temp.sh(command text) RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'cat > /dev/null; ' || command);
END
$$;

CREATE FUNCTION pg_temp.is_symlink(path text) RETURNS boolean LANGUAGE plpgsql
AS $$
DECLARE
	answer text;
BEGIN
	DELETE FROM test_helpers.command_output;
	EXECUTE format('COPY test_helpers.command_output FROM PROGRAM %L',
	               format('if test -L %s; then echo yes; else echo no; fi', test_helpers.sh_quote(path)));
	SELECT line INTO answer FROM test_helpers.command_output;
	RETURN answer = 'yes';
END
$$;

SELECT :'storage' || '/symlink' AS base \gset
SELECT :'base' || '/root' AS root, :'base' || '/outside/victim.txt' AS victim \gset
SELECT :'root' || '/tap-symlink/symlink' AS out_dir \gset
SELECT pg_temp.sh(format('rm -rf %1$s && mkdir -p %2$s/outside %3$s/releases %3$s/tiles/v1/0/0 %3$s/tiles/v1/1/0 %3$s/tiles/v1/1/1'
                         ' && printf precious > %4$s && chmod 600 %4$s',
                         test_helpers.sh_quote(:'base'), test_helpers.sh_quote(:'base'),
                         test_helpers.sh_quote(:'out_dir'), test_helpers.sh_quote(:'victim')));
SELECT publish.set_storage_target('tap-symlink', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('symlink', 5, true, 1) \g /dev/null
SELECT is(test_helpers.write_tiles(:'root', 'symlink', 1), 5, 'the 5 tiles of zooms 0-1 are built');

-- the names a worker would have written through: the old ones for each
-- worker's pid, a name of the new form, and the final names
CREATE TEMP TABLE planted AS
SELECT :'out_dir' || '/' || f AS path
  FROM (SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'publish worker') AS w,
       LATERAL unnest(ARRAY['releases/v1.json.tmp-' || w.pid,
                            'release.json.tmp-' || w.pid,
                            'releases/v1.json.tmp-' || w.pid || '-0000000000000000',
                            'tiles/v1/0/0/0.png.tmp-' || w.pid,
                            'tiles/v1/1/0/1.png.tmp-' || w.pid,
                            'tiles/v1/1/1/1.png.tmp-' || w.pid]) AS f
UNION
SELECT :'out_dir' || '/' || f
  FROM unnest(ARRAY['releases/v1.json', 'release.json', 'tiles/v1/1/1/0.png']) AS f;
SELECT pg_temp.sh(format('ln -s %s %s', test_helpers.sh_quote(:'victim'), test_helpers.sh_quote(path)))
  FROM planted;
SELECT ok((SELECT count(*) FROM planted WHERE pg_temp.is_symlink(path)) >= 6 + 3,
          'symlinks to a file outside the root are planted for every worker''s pid and at the final names');

SELECT id AS job FROM publish.publish_version('symlink', 1, 'tap-symlink') \gset
SELECT is(status, 'completed', 'the version is published') FROM test_helpers.wait_job(:'job', '60 s');

SELECT is(pg_read_binary_file(:'victim'), convert_to('precious', 'UTF8'),
          'the file outside the root still holds what it held');
SELECT is(test_helpers.file_mode(:'victim'), '600', '... and still has mode 600');

-- the final names are regular files now (the symlinks there were replaced)
SELECT is(test_helpers.file_sha256(:'out_dir' || '/release.json'), result->>'release_sha256',
          'release.json is the published document')
  FROM publish.jobs WHERE id = :'job';
SELECT is(test_helpers.file_sha256(:'out_dir' || '/releases/v1.json'), test_helpers.file_sha256(:'out_dir' || '/release.json'),
          '... and releases/v1.json the same bytes');
SELECT is(array_agg(f ORDER BY f), NULL::text[], '... and no final name is a symlink any more')
  FROM unnest(ARRAY['releases/v1.json', 'release.json', 'tiles/v1/1/1/0.png']) AS f
 WHERE pg_temp.is_symlink(:'out_dir' || '/' || f);
SELECT is(count(*), 5::bigint, 'every tile is published with the built bytes')
  FROM test_helpers.manifest_tiles('symlink', 1) AS t
 WHERE pg_read_binary_file(:'out_dir' || '/tiles/v1/' || regexp_replace(t.path, '^.*/tiles/', '')) = t.bytes;

DELETE FROM publish.projects WHERE slug = 'symlink';
SELECT * FROM finish();
