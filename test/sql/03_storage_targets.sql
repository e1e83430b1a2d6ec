--
-- 03_storage_targets: publish.set_storage_target and
-- publish.set_storage_credentials; secrets are not readable by other roles.
--

-- NULL arguments: 22004
SELECT regress_try_full($$SELECT publish.set_storage_target(NULL, 'file:///srv/maps')$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('st-dev', NULL)$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('st-dev', 'file:///srv/maps', NULL)$$);

-- malformed environment name or options: 22023
SELECT regress_try_full($$SELECT publish.set_storage_target('St Dev', 'file:///srv/maps')$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('', 'file:///srv/maps')$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('st-dev', 'file:///srv/maps', '[]')$$);
SELECT regress_try_full($$SELECT publish.set_storage_target('st-dev', 'file:///srv/maps', '"public_url"')$$);

-- URLs
SELECT url, regress_try_full(format('SELECT publish.set_storage_target(%L, %L)', 'st-dev', url)) AS result
  FROM unnest(ARRAY['/srv/maps',
                    'srv/maps',
                    '',
                    'ftp://example.com/maps',
                    'file://relative/dir',
                    'file:relative',
                    'file:///a/../b',
                    'file:///srv/maps/..',
                    'http://user:hunter2@example.com/maps',
                    'https://example.com/maps?sig=1',
                    'https://example.com/maps#x',
                    'http:///maps',
                    's3://Bucket/prefix',
                    's3://ab',
                    's3://bucket_1/prefix']) AS url;
SELECT count(*) AS targets_after_errors FROM publish.storage_targets;

-- remote targets: http(s) (HTTP PUT / WebDAV) and s3, with their options
SELECT url, options, regress_try_full(format('SELECT publish.set_storage_target(%L, %L, %L)', 'st-remote', url, options)) AS result
  FROM (VALUES ('http://example.com/maps', '{}'::jsonb),
               ('https://example.com:8443/maps/', '{}'),
               ('HTTPS://EXAMPLE.COM/maps', '{"public_url": "https://cdn.example.com/maps"}'),
               ('s3://bucket/prefix', '{}'),
               ('s3://my.bucket-1', '{"endpoint": "http://127.0.0.1:9000", "region": "eu-central-1", "path_style": true}'),
               ('s3://bucket/prefix', '{"endpoint": "ftp://127.0.0.1:9000"}'),
               ('s3://bucket/prefix', '{"endpoint": "http://127.0.0.1:9000/path"}'),
               ('s3://bucket/prefix', '{"endpoint": 9000}'),
               ('s3://bucket/prefix', '{"region": "EU central"}'),
               ('s3://bucket/prefix', '{"path_style": "yes"}'),
               ('https://example.com/maps', '{"public_url": 1}')) AS t(url, options);
SELECT env, url, options FROM publish.storage_targets WHERE env = 'st-remote';
DELETE FROM publish.storage_targets WHERE env = 'st-remote';

-- dot segments ("." and "..", plain or percent-encoded, %2f as a slash) in
-- any target URL, endpoint or public_url: 22023, and nothing is written
SELECT url, options, regress_try_full(format('SELECT publish.set_storage_target(%L, %L, %L)', 'st-dots', url, options)) AS result
  FROM (VALUES ('http://example.com/maps/../other', '{}'::jsonb),
               ('http://example.com/maps/..', '{}'),
               ('https://example.com/maps/./x', '{}'),
               ('https://example.com/maps/%2e%2e/x', '{}'),
               ('https://example.com/maps/%2E./x', '{}'),
               ('https://example.com/a%2f..%2fb', '{}'),
               ('http://../maps', '{}'),
               ('s3://bucket-one/a/../../x', '{}'),
               ('s3://bucket-one/a/%2e%2e/x', '{}'),
               ('s3://bucket-one/.', '{}'),
               ('file:///srv/./maps', '{}'),
               ('s3://bucket-one/x', '{"endpoint": "http://../"}'),
               ('s3://bucket-one/x', '{"endpoint": "http://127.0.0.1:9000/%2e%2e"}'),
               ('https://example.com/maps', '{"public_url": "https://cdn.example.com/a/../b"}'),
               ('https://example.com/maps', '{"public_url": "https://cdn.example.com/%2e"}')) AS t(url, options);
SELECT count(*) AS targets_after_dot_segments FROM publish.storage_targets WHERE env = 'st-dots';
-- dots inside a name are no dot segment
SELECT env, url, options
  FROM publish.set_storage_target('st-dots', 'https://dav.example.com/maps.v2/..hidden/x...',
                                  '{"public_url": "https://cdn.example.com/a.b/"}');
DELETE FROM publish.storage_targets WHERE env = 'st-dots';

-- create, then replace (upsert); a trailing slash is trimmed
SELECT env, url, options FROM publish.set_storage_target('st-dev', 'file:///srv/publish-regress/dev/');
SELECT env, url, options FROM publish.storage_targets WHERE env = 'st-dev';
SELECT env, url, options
  FROM publish.set_storage_target('st-dev', 'file:///srv/publish-regress/dev2//',
                                  '{"public_url": "https://cdn.example.com/maps"}');
SELECT env, url, options, updated_at IS NOT NULL AS has_updated_at
  FROM publish.storage_targets WHERE env = 'st-dev';
-- named arguments, as PostgREST calls it
SELECT env, url, options
  FROM publish.set_storage_target(env => 'st-qa_2', url => 'file:///srv/publish-regress/my..maps');
SELECT env, url FROM publish.storage_targets ORDER BY env COLLATE "C";

-- credentials
SELECT regress_try_full($$SELECT publish.set_storage_credentials(NULL, 'key', 'hunter2')$$);
SELECT regress_try_full($$SELECT publish.set_storage_credentials('Dev', 'key', 'hunter2')$$);
SELECT regress_try_full($$SELECT publish.set_storage_credentials('st-nowhere', 'key', 'hunter2')$$);
SELECT count(*) AS credentials_after_errors FROM publish.storage_credentials;

SELECT publish.set_storage_credentials('st-dev', 'user', 'hunter2');
SELECT env, key_id, secret FROM publish.storage_credentials ORDER BY env;
-- an S3 key with a session token
SELECT publish.set_storage_credentials('st-dev', 'AKIA1', 's3-secret', 'token-1');
SELECT env, key_id, secret, session_token FROM publish.storage_credentials ORDER BY env;
-- replace; a NULL key_id is a bearer token
SELECT publish.set_storage_credentials('st-dev', NULL, 'token-2');
SELECT env, key_id, secret FROM publish.storage_credentials ORDER BY env;
-- a NULL secret removes them
SELECT publish.set_storage_credentials('st-dev', 'user', NULL);
SELECT count(*) AS credentials_after_removal FROM publish.storage_credentials;
-- replacing a target keeps its credentials; deleting it removes them
SELECT publish.set_storage_credentials('st-dev', 'user', 'hunter3');
SELECT env FROM publish.set_storage_target('st-dev', 'file:///srv/publish-regress/dev3');
SELECT env, key_id FROM publish.storage_credentials ORDER BY env;
DELETE FROM publish.storage_targets WHERE env = 'st-dev';
SELECT count(*) AS credentials_after_target_deleted FROM publish.storage_credentials;

-- another role cannot read the secrets, even with USAGE on the schema
SELECT publish.set_storage_target('st-dev', 'file:///srv/publish-regress/dev') IS NOT NULL AS target_set;
SELECT publish.set_storage_credentials('st-dev', 'user', 'hunter2');
CREATE ROLE regress_publish_other LOGIN;
GRANT USAGE ON SCHEMA publish TO regress_publish_other;
SET ROLE regress_publish_other;
SELECT regress_try($$SELECT secret FROM publish.storage_credentials$$) AS read_secret;
SELECT regress_try($$SELECT count(*) FROM publish.storage_credentials$$) AS count_secrets;
SELECT regress_try($$UPDATE publish.storage_credentials SET secret = 'x'$$) AS overwrite_secret;
SELECT regress_try($$SELECT publish.set_storage_credentials('st-dev', 'me', 'mine')$$) AS set_credentials;
SELECT regress_try($$SELECT publish.set_storage_target('st-dev', 'file:///tmp/elsewhere')$$) AS set_target;
SELECT regress_try($$SELECT publish._storage_put('st-dev', 'x', '\x00')$$) AS storage_put;
RESET ROLE;
SELECT env, key_id, secret FROM publish.storage_credentials ORDER BY env;
SELECT env, url FROM publish.storage_targets ORDER BY env COLLATE "C";
REVOKE USAGE ON SCHEMA publish FROM regress_publish_other;
DROP ROLE regress_publish_other;

-- clean up
DELETE FROM publish.storage_targets WHERE env IN ('st-dev', 'st-qa_2');
SELECT count(*) AS targets_left FROM publish.storage_targets;
