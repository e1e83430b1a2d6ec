-- 33_storage_secrets.sql: the secrets of the remote targets used by
-- 30_storage_webdav.sql and 31_storage_s3.sql (right and wrong passwords
-- and bearer tokens, S3 secret keys) appear in no job row, no log line, not in the server log
-- and not in pg_stat_activity.  The secrets are read from
-- publish.storage_credentials inside each query, so that no query text
-- (which pg_stat_activity shows) contains one.

SELECT plan(6);

SELECT cmp_ok((SELECT count(*)::int FROM publish.storage_credentials
                WHERE env IN ('tap-dav-auth', 'tap-dav-bad', 'tap-s3', 'tap-s3-bad', 'tap-bearer', 'tap-bearer-bad')), '=', 6,
              'the six secrets of the remote tests are there to look for');
SELECT cmp_ok((SELECT count(*)::int FROM publish.job_queue j JOIN publish.storage_credentials c ON c.env = j.env
                WHERE c.env IN ('tap-dav-auth', 'tap-dav-bad', 'tap-s3', 'tap-s3-bad', 'tap-bearer', 'tap-bearer-bad')), '>=', 6,
              'and so are jobs that used them');

SELECT is((SELECT count(*)::int FROM publish.jobs j, publish.storage_credentials c
            WHERE strpos(j::text, c.secret) > 0), 0,
          'no secret in any row of publish.jobs (params, result, error, logs)');
SELECT is((SELECT count(*)::int FROM publish.job_log l, publish.storage_credentials c
            WHERE strpos(l::text, c.secret) > 0), 0,
          'no secret in publish.job_log');
SELECT is((SELECT count(*)::int FROM publish.storage_credentials c
            WHERE strpos(pg_read_file(:'server_log'), c.secret) > 0), 0,
          'no secret in the server log');
SELECT is((SELECT count(*)::int FROM pg_stat_activity a, publish.storage_credentials c
            WHERE strpos(coalesce(a.query, ''), c.secret) > 0), 0,
          'no secret in pg_stat_activity (the worker''s activity included)');

SELECT * FROM finish();
