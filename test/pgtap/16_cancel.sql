-- 16_cancel.sql: publish.cancel_job(id).
--
--   * a queued job is cancelled at once, and the worker never starts it;
--   * a running job is asked to stop (cancel_requested): when the cancel
--     commits the worker is interrupted (here in a lock wait; otherwise at its
--     next checkpoint) and ends it 'cancelled' with nothing published: the
--     version, publish.releases and the live release.json stay as they were;
--   * a finished job is returned unchanged; bad ids get PT404 / 22004.
--
-- The worker is held in step 1 by a lock another session (dblink) holds on
-- publish.storage_credentials, which every job reads in step 1 only.
--
-- Project cancel-one (version 1 live, version 2 cancelled); environment
-- tap-cancel under :storage/cancel.

DELETE FROM publish.projects WHERE slug = 'cancel-one';

SELECT plan(39);

SELECT :'storage' || '/cancel' AS root \gset
SELECT publish.set_storage_target('tap-cancel', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('cancel-one', 5) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', 2, 3) AS v2 \gset
SELECT :'root' || '/tap-cancel/cancel-one' AS out_dir \gset

-- Version 1 is live.
SELECT id AS job_live FROM publish.publish_version('cancel-one', 1, 'tap-cancel') \gset
SELECT is(status, 'completed', 'version 1 is published first') FROM test_helpers.wait_job(:'job_live');
SELECT test_helpers.file_sha256(:'out_dir' || '/release.json') AS live_sha \gset

-- ---------------------------------------------------------------------------
-- A running job, held in step 1, and a job queued behind it, are cancelled.
-- ---------------------------------------------------------------------------

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job_run FROM publish.publish_version('cancel-one', 2, 'tap-cancel') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the job of version 2 is claimed and held in step 1');
SELECT is(status, 'running', '... it is running') FROM publish.jobs WHERE id = :'job_run';

-- A queued job behind it (the same project and environment wait their turn).
SELECT id AS job_queued FROM publish.publish_version('cancel-one', 1, 'tap-cancel') \gset
SELECT is(status, 'queued', 'another job is queued behind it') FROM publish.jobs WHERE id = :'job_queued';
SELECT clock_timestamp() AS before_cancel \gset
CREATE TEMP TABLE cq AS SELECT * FROM publish.cancel_job(:'job_queued');
SELECT is(status, 'cancelled', 'cancel_job on a queued job cancels it at once') FROM cq;
SELECT ok(completed_at >= :'before_cancel'::timestamptz AND completed_at <= clock_timestamp(),
          '... completed_at is the time of the cancel') FROM cq;
SELECT ok(error ~ ('^cancelled by ' || current_user || ' before it started'),
          '... its error says who cancelled it, before it started') FROM cq;
SELECT is(logs->-1->>'level', 'warn', '... with a warn log entry') FROM cq;
SELECT is(logs->-1->>'message', error, '... saying the same') FROM cq;
SELECT is(status, 'cancelled', 'the cancel is committed: another session''s view')
  FROM test_helpers.dblink(
	(SELECT format('host=%s port=%s dbname=%s user=%s',
	               split_part(current_setting('unix_socket_directories'), ',', 1),
	               current_setting('port'), current_database(), current_user)),
	format('SELECT status FROM publish.job_queue WHERE id = %L', :'job_queued')) AS t(status text);

-- The running job: cancel_job answers at once; when it commits, the worker
-- is interrupted (here: in its wait for the lock) and ends the job.
SELECT clock_timestamp() AS before_run_cancel \gset
CREATE TEMP TABLE asked AS SELECT * FROM publish.cancel_job(:'job_run');
SELECT is(status, 'running', 'cancel_job on a running job returns it still running') FROM asked;
SELECT is(cancel_requested, true, '... with cancel_requested') FROM asked;
SELECT is(completed_at, NULL, '... not ended') FROM asked;
SELECT is(logs->-1->>'level', 'warn', '... with a warn log entry') FROM asked;
SELECT ok(logs->-1->>'message' ~ ('^cancel requested by ' || current_user), '... saying who asked') FROM asked;
CREATE TEMP TABLE ended AS SELECT * FROM test_helpers.wait_job(:'job_run', '20 s');
SELECT is(status, 'cancelled', 'the worker, interrupted at commit, ends the running job: cancelled') FROM ended;
SELECT cmp_ok(extract(epoch FROM completed_at - :'before_run_cancel'::timestamptz)::numeric, '<', 1.5,
              '... within a second, although the lock that held it is still held') FROM ended;
SELECT test_helpers.let_go('creds') \g /dev/null
SELECT ok(error ~* 'cancel' AND error ~* 'nothing was published', '... its error says nothing was published') FROM ended;
SELECT ok(completed_at IS NOT NULL AND completed_at >= started_at, '... with completed_at') FROM ended;
SELECT cmp_ok(progress, '<', 100, '... short of 100%') FROM ended;
SELECT is(logs->-1->>'level', 'warn', '... its last log entry is a warn') FROM ended;
SELECT is(logs->-1->>'message', error, '... with its error') FROM ended;
SELECT ok(test_helpers.in_order(test_helpers.log_positions(logs, ARRAY['^started', '^cancel requested', 'nothing was published'])),
          '... the log shows the start, the request and the cancellation, in order') FROM ended;
SELECT is(count(*), 0::bigint, '... and no log entry at level error')
  FROM ended, jsonb_array_elements(ended.logs) AS e WHERE e->>'level' = 'error';
SELECT is(count(*), 0::bigint, '... nor a step done after the cancel was asked for')
  FROM ended, jsonb_array_elements(ended.logs) AS e WHERE e->>'message' ~ '^(Validated|Built|Uploaded|Tiles|No tileset)';

SELECT results_eq(
	format($$SELECT status, published_at FROM publish.project_versions WHERE id = %L$$, :'v2'),
	$$VALUES ('ready'::text, NULL::timestamptz)$$,
	'version 2 is untouched: still ready, never published');
SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'cancel-one'$$,
	format($$VALUES (1, %L::uuid)$$, :'job_live'),
	'publish.releases still shows version 1 from its job');
SELECT is(test_helpers.file_sha256(:'out_dir' || '/release.json'), :'live_sha',
          'release.json on storage is still version 1''s, byte for byte');
SELECT ok(NOT test_helpers.file_exists(:'out_dir' || '/releases/v2.json'),
          'version 2''s release.json was never written, not even its versioned copy');

-- The worker never starts the cancelled queued job: a job asked for after
-- it runs, and it stays as it was.
SELECT id AS job_after FROM publish.publish_version('cancel-one', 1, 'tap-cancel') \gset
SELECT is(status, 'completed', 'a job asked for after the cancelled one runs and completes')
  FROM test_helpers.wait_job(:'job_after', '20 s');
SELECT isnt(:'job_after'::uuid, :'job_queued'::uuid, '... as a new job (a cancelled job is never reused)');
SELECT ok(status = 'cancelled' AND started_at IS NULL AND attempts = 0,
          'the cancelled queued job was never started')
  FROM publish.jobs WHERE id = :'job_queued';
SELECT is(jsonb_array_length(logs), 1, '... its log has only the cancellation') FROM publish.jobs WHERE id = :'job_queued';

-- ---------------------------------------------------------------------------
-- Finished jobs are returned unchanged; bad ids.
-- ---------------------------------------------------------------------------

CREATE TEMP TABLE before_cancel AS SELECT * FROM publish.jobs WHERE id IN (:'job_live', :'job_run');
SELECT is(c::text, b::text, 'cancel_job on a completed job returns it unchanged')
  FROM publish.cancel_job(:'job_live') AS c, before_cancel b WHERE b.id = :'job_live';
SELECT is(j::text, b::text, '... and leaves it so')
  FROM publish.jobs j, before_cancel b WHERE j.id = :'job_live' AND b.id = :'job_live';
SELECT is(c::text, b::text, 'cancel_job on a cancelled job returns it unchanged')
  FROM publish.cancel_job(:'job_run') AS c, before_cancel b WHERE b.id = :'job_run';
SELECT is(cancel_requested, false, 'a completed job does not become cancel_requested')
  FROM publish.job_queue WHERE id = :'job_live';

SELECT throws_ok($$SELECT publish.cancel_job('00000000-0000-0000-0000-000000000000')$$, 'PT404', NULL,
                 'cancel_job of an unknown job: PT404');
SELECT throws_ok($$SELECT publish.cancel_job(NULL)$$, '22004', NULL, 'cancel_job(NULL): 22004');

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug = 'cancel-one';
DELETE FROM publish.storage_targets WHERE env = 'tap-cancel';

SELECT * FROM finish();
