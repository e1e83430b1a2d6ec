-- 15_concurrency.sql: requests for one project and environment, with the
-- database's two workers (publish.workers_per_database = 2).
--
--   * dedupe: asking again for a publish that is queued, or running with
--     nothing asked after it, returns that job; asked again after other
--     publishes, a queued duplicate is superseded (cancelled) and a new job
--     is queued last, so the last publish asked for is the one that ends up
--     live;
--   * ordering: the jobs of one project and environment run one at a time,
--     in the order they were asked for, while another project's jobs run
--     beside them on the other worker.
--
-- The worker is paused with locks held by another session (dblink, see
-- helpers/setup.sql; they go away with this session if the test stops):
--   creds    ACCESS EXCLUSIVE on publish.storage_credentials, read by every
--            job in step 1 only: a claimed job waits there, running at 0%;
--   ord_a1   a row lock on version 1 of ord-a, which only step 5 of its
--            publish updates: that job waits at 80%, on one worker.
--
--   * a burst of publishes from four clients at once: none lost, one at a
--     time, and the last one asked for is live.
--
-- Projects conc-one, ord-a, ord-b, burst-one; environments tap-conc, tap-conc2.

DELETE FROM publish.projects WHERE slug IN ('conc-one', 'ord-a', 'ord-b', 'burst-one');

SELECT plan(51);

SELECT :'storage' || '/conc' AS root \gset
SELECT publish.set_storage_target('tap-conc', 'file://' || :'root') \g /dev/null
SELECT publish.set_storage_target('tap-conc2', 'file://' || :'root') \g /dev/null
SELECT test_helpers.make_project('conc-one', 5) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', n, 3) FROM generate_series(2, 3) AS n \g /dev/null
SELECT :'root' || '/tap-conc/conc-one' AS out_dir \gset

-- ---------------------------------------------------------------------------
-- Dedupe and supersede, while the worker is held in step 1 of the first job.
-- ---------------------------------------------------------------------------

SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null

SELECT id AS j0 FROM publish.publish_version('conc-one', 1, 'tap-conc') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'the first job (version 1) is claimed and held in step 1');

CREATE TEMP TABLE again_running AS SELECT * FROM publish.publish_version('conc-one', 1, 'tap-conc');
SELECT is(id, :'j0'::uuid, 'version 1 asked again while its job runs, nothing asked after it: the running job is returned')
  FROM again_running;
SELECT is(status, 'running', '... and it is running') FROM again_running;

SELECT id AS j2a FROM publish.publish_version('conc-one', 2, 'tap-conc') \gset
SELECT is(status, 'queued', 'version 2 is queued behind it') FROM publish.jobs WHERE id = :'j2a';
SELECT is(id, :'j2a'::uuid, 'version 2 asked again while queued last: the same queued job is returned')
  FROM publish.publish_version('conc-one', 2, 'tap-conc');
SELECT is(count(*), 2::bigint, '... so there are two jobs, not four')
  FROM publish.job_queue WHERE project_id = :'project_id';

SELECT id AS j_other_env FROM publish.publish_version('conc-one', 2, 'tap-conc2') \gset
SELECT isnt(:'j_other_env'::uuid, :'j2a'::uuid, 'the same version to another environment is a job of its own');

-- Version 1 again, now that version 2 was asked for after it: a new job,
-- behind version 2, so that version 1 ends up live (the running job is not
-- cancelled: it stops nowhere half-way).
SELECT id AS j1b FROM publish.publish_version('conc-one', 1, 'tap-conc') \gset
SELECT isnt(:'j1b'::uuid, :'j0'::uuid,
            'version 1 asked again after version 2: a new job, not the running one');
SELECT is(status, 'queued', '... queued') FROM publish.jobs WHERE id = :'j1b';
SELECT is(status, 'running', 'the running job of version 1 goes on') FROM publish.jobs WHERE id = :'j0';

SELECT id AS j3 FROM publish.publish_version('conc-one', 3, 'tap-conc') \gset

-- Version 2 again: its queued job is superseded, a new one is queued last.
SELECT id AS j2b FROM publish.publish_version('conc-one', 2, 'tap-conc') \gset
CREATE TEMP TABLE superseded AS SELECT * FROM publish.jobs WHERE id = :'j2a';
SELECT isnt(:'j2b'::uuid, :'j2a'::uuid, 'version 2 asked again after version 3: a new job');
SELECT is(status, 'cancelled', 'the queued job of version 2 is cancelled at once') FROM superseded;
SELECT ok(error ~ '^superseded', '... with an error that starts with "superseded"') FROM superseded;
SELECT ok(completed_at IS NOT NULL AND started_at IS NULL, '... ended, never started') FROM superseded;
SELECT is(logs->-1->>'level', 'warn', '... with a warn log entry') FROM superseded;
SELECT is(logs->-1->>'message', error, '... that says so') FROM superseded;
SELECT results_eq(
	format($$SELECT id, status FROM publish.job_queue
	          WHERE project_id = %L AND env = 'tap-conc' AND status IN ('queued', 'running')
	          ORDER BY created_at$$, :'project_id'),
	format($$VALUES (%L::uuid, 'running'::text), (%L::uuid, 'queued'::text), (%L::uuid, 'queued'::text),
	                (%L::uuid, 'queued'::text)$$, :'j0', :'j1b', :'j3', :'j2b'),
	'the queue of tap-conc: version 1 running, then 1, 3 and 2 queued, in the order last asked for');

SELECT test_helpers.let_go('creds') \g /dev/null

CREATE TEMP TABLE dedupe_done AS
SELECT j.* FROM unnest(ARRAY[:'j0', :'j1b', :'j3', :'j2b']::uuid[]) WITH ORDINALITY AS u(id, n),
       LATERAL test_helpers.wait_job(u.id, '20 s') AS j
 ORDER BY u.n;
SELECT is(count(*) FILTER (WHERE status = 'completed'), 4::bigint,
          'released, the four live jobs complete') FROM dedupe_done;
SELECT is(array_agg(id ORDER BY started_at), ARRAY[:'j0', :'j1b', :'j3', :'j2b']::uuid[],
          '... one after the other, in the order asked for') FROM dedupe_done;
SELECT is(count(*), 0::bigint, '... never two at once')
  FROM (SELECT started_at, lag(completed_at) OVER (ORDER BY started_at) AS before FROM dedupe_done) AS s
 WHERE started_at < before;
SELECT ok(status = 'cancelled' AND started_at IS NULL AND attempts = 0,
          'the superseded job was never started')
  FROM publish.jobs WHERE id = :'j2a';

SELECT results_eq(
	$$SELECT version, job_id FROM publish.releases WHERE project = 'conc-one' AND env = 'tap-conc'$$,
	format($$VALUES (2, %L::uuid)$$, :'j2b'),
	'publish.releases shows version 2, the last one asked for, from the last job');
SELECT is(pg_read_binary_file(:'out_dir' || '/release.json'),
          convert_to(publish.build_release('conc-one', 2, 'tap-conc', (result->>'published_at')::timestamptz)::text, 'UTF8'),
          'release.json on storage is version 2''s, as the last job built it, byte for byte')
  FROM dedupe_done WHERE id = :'j2b';

-- Nothing held: asking twice in a row while the first is still queued (one
-- transaction: the worker only sees it at commit) gives one job.
BEGIN;
SELECT id AS jt1 FROM publish.publish_version('conc-one', 3, 'tap-conc') \gset
SELECT id AS jt2 FROM publish.publish_version('conc-one', 3, 'tap-conc') \gset
COMMIT;
SELECT is(:'jt2'::uuid, :'jt1'::uuid, 'two requests in one transaction for the same version: one job');
SELECT is(status, 'completed', '... that completes') FROM test_helpers.wait_job(:'jt1', '20 s');
SELECT is(status, 'completed', 'the job of the other environment completed too')
  FROM test_helpers.wait_job(:'j_other_env', '20 s');

-- ---------------------------------------------------------------------------
-- Ordering with two workers: ord-a's first job is held at step 5 on one
-- worker; ord-b's jobs run meanwhile on the other; ord-a's others wait.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('ord-a', 3) AS a_id \gset
SELECT test_helpers.make_project('ord-b', 3) AS b_id \gset
SELECT test_helpers.make_version(:'a_id', n, 3) FROM generate_series(2, 3) AS n \g /dev/null
SELECT test_helpers.make_version(:'b_id', n, 3) FROM generate_series(2, 3) AS n \g /dev/null
SELECT id AS a_v1 FROM publish.project_versions WHERE project_id = :'a_id' AND version_number = 1 \gset

SELECT test_helpers.hold('ord_a1',
	format('DO $$BEGIN PERFORM FROM publish.project_versions WHERE id = %L FOR NO KEY UPDATE; END$$', :'a_v1')) \g /dev/null

-- a1 first, held at step 5; then b1, a2, b2, a3, b3, asked for in that
-- order and committed together.
SELECT id AS a1 FROM publish.publish_version('ord-a', 1, 'tap-conc') \gset
SELECT ok(test_helpers.wait_worker_blocked(), 'ord-a''s first job is held at step 5');
BEGIN;
SELECT id AS b1 FROM publish.publish_version('ord-b', 1, 'tap-conc') \gset
SELECT id AS a2 FROM publish.publish_version('ord-a', 2, 'tap-conc') \gset
SELECT id AS b2 FROM publish.publish_version('ord-b', 2, 'tap-conc') \gset
SELECT id AS a3 FROM publish.publish_version('ord-a', 3, 'tap-conc') \gset
SELECT id AS b3 FROM publish.publish_version('ord-b', 3, 'tap-conc') \gset
COMMIT;

SELECT is(status, 'completed', 'while ord-a''s first job is held, ord-b''s last job completes')
  FROM test_helpers.wait_job(:'b3', '20 s');
SELECT ok(test_helpers.wait_worker_blocked(), 'ord-a''s first job is still held on a lock');
CREATE TEMP TABLE mid AS SELECT * FROM publish.jobs WHERE id IN (:'a1', :'a2', :'a3', :'b1', :'b2', :'b3');
SELECT is(status, 'running', 'ord-a''s first job is still running') FROM mid WHERE id = :'a1';
SELECT is(progress, 80, '... held at step 5 (80%)') FROM mid WHERE id = :'a1';
SELECT is(array_agg(status ORDER BY created_at), ARRAY['queued', 'queued'],
          'ord-a''s later jobs wait for it, queued, although a worker is free')
  FROM mid WHERE id IN (:'a2', :'a3');
SELECT is(array_agg(status ORDER BY created_at), ARRAY['completed', 'completed', 'completed'],
          'ord-b''s three jobs all completed meanwhile') FROM mid WHERE id IN (:'b1', :'b2', :'b3');
SELECT ok(b.started_at > a.started_at AND a.completed_at IS NULL,
          'jobs of two projects ran at the same time: ord-b''s started after ord-a''s first, which had not ended')
  FROM mid a, mid b WHERE a.id = :'a1' AND b.id = :'b1';
SELECT isnt(substring(a.logs->0->>'message' FROM 'pid (\d+)'), substring(b.logs->0->>'message' FROM 'pid (\d+)'),
            'ord-a''s and ord-b''s jobs ran on different workers')
  FROM mid a, mid b WHERE a.id = :'a1' AND b.id = :'b1';

SELECT test_helpers.let_go('ord_a1') \g /dev/null

SELECT test_helpers.wait_job(id, '20 s')
  FROM unnest(ARRAY[:'a1', :'a2', :'a3', :'b1', :'b2', :'b3']::uuid[]) AS id \g /dev/null
CREATE TEMP TABLE ord AS
SELECT j.*, p.slug, row_number() OVER (PARTITION BY p.slug ORDER BY j.created_at) AS n
  FROM publish.jobs j
  JOIN publish.job_queue q USING (id)
  JOIN publish.projects p ON p.id = q.project_id
 WHERE j.id IN (:'a1', :'a2', :'a3', :'b1', :'b2', :'b3');

SELECT is(count(*) FILTER (WHERE status = 'completed'), 6::bigint, 'released, all six jobs complete') FROM ord;
SELECT is(count(*), 0::bigint, 'within each project, each job started after the one before it completed')
  FROM (SELECT started_at, lag(completed_at) OVER (PARTITION BY slug ORDER BY n) AS before FROM ord) AS s
 WHERE started_at < before;
SELECT is(count(*), 0::bigint, 'within each project, the jobs started in the order they were asked for')
  FROM (SELECT n, row_number() OVER (PARTITION BY slug ORDER BY started_at) AS started FROM ord) AS s
 WHERE n <> started;
SELECT results_eq(
	$$SELECT project, version FROM publish.releases WHERE project IN ('ord-a', 'ord-b') ORDER BY project$$,
	$$VALUES ('ord-a'::text, 3), ('ord-b'::text, 3)$$,
	'each project ends with its last version live');
SELECT is((test_helpers.read_json(:'root' || '/tap-conc/ord-a/release.json')->>'version')::int, 3,
          'ord-a''s release.json is version 3, not the held version 1 that finished late');
SELECT is(count(*), 0::bigint, 'no job of this file is left queued or running')
  FROM publish.job_queue WHERE env IN ('tap-conc', 'tap-conc2') AND status IN ('queued', 'running');
SELECT is(count(*), 0::bigint, 'every job of this file ran once')
  FROM publish.job_queue WHERE env IN ('tap-conc', 'tap-conc2') AND attempts > 1;

-- ---------------------------------------------------------------------------
-- A burst from four clients at once: 4 sessions (dblink) x 15 publishes of
-- versions 1-5 of one project, each committed on its own.  Each request is
-- recorded with the time it was answered (inside the request's
-- transaction, which holds the project's request lock until its commit).
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('burst-one', 3) AS burst_id \gset
SELECT test_helpers.make_version(:'burst_id', n, 3) FROM generate_series(2, 5) AS n \g /dev/null
SET client_min_messages = warning;
DROP TABLE IF EXISTS test_helpers.burst_requests;
RESET client_min_messages;
CREATE TABLE test_helpers.burst_requests (client int, i int, version int, job_id uuid, status text,
                                          answered_at timestamptz);

SELECT test_helpers.session_send('burst' || c, format($q$
	DO $do$
	DECLARE
		v int;
		j publish.jobs;
	BEGIN
		FOR i IN 1..15 LOOP
			v := 1 + (%s * 7 + i * 3) %% 5;
			j := publish.publish_version('burst-one', v, 'tap-conc');
			INSERT INTO test_helpers.burst_requests VALUES (%s, i, v, j.id, j.status, clock_timestamp());
			COMMIT;
		END LOOP;
	END
	$do$$q$, c, c))
  FROM generate_series(1, 4) AS c \g /dev/null
SELECT ok(bool_and(test_helpers.session_wait('burst' || c, '20 s')), 'four clients ask for 15 publishes each, at once')
  FROM generate_series(1, 4) AS c;
SELECT test_helpers.session_close('burst' || c) FROM generate_series(1, 4) AS c \g /dev/null

SELECT is(count(*), 60::bigint, 'all 60 requests were answered') FROM test_helpers.burst_requests;
SELECT test_helpers.wait_job(id, '20 s') FROM publish.job_queue WHERE project_id = :'burst_id' \g /dev/null
CREATE TEMP TABLE burst AS SELECT j.* FROM publish.jobs j JOIN publish.job_queue q USING (id)
 WHERE q.project_id = :'burst_id';

SELECT is(count(*), 0::bigint, 'every job of the burst ended')
  FROM burst WHERE status IN ('queued', 'running');
SELECT is(count(*) FILTER (WHERE status NOT IN ('completed', 'cancelled')
                              OR (status = 'cancelled' AND error !~ '^superseded')), 0::bigint,
          'each completed, or was superseded')
  FROM burst;
SELECT is(count(*), 0::bigint, 'every request''s job exists (none lost)')
  FROM test_helpers.burst_requests r WHERE NOT EXISTS (SELECT 1 FROM burst b WHERE b.id = r.job_id);
SELECT is(count(*), 0::bigint, 'no two of the burst''s jobs ran at once')
  FROM (SELECT started_at, lag(completed_at) OVER (ORDER BY started_at) AS before
          FROM burst WHERE started_at IS NOT NULL) AS s
 WHERE started_at < before;
SELECT is(count(*), 0::bigint, 'they started in the order they were queued')
  FROM (SELECT created_at, lag(created_at) OVER (ORDER BY started_at) AS before
          FROM burst WHERE started_at IS NOT NULL) AS s
 WHERE created_at < before;
SELECT results_eq(
	$$SELECT version FROM publish.releases WHERE project = 'burst-one' AND env = 'tap-conc'$$,
	$$SELECT version FROM test_helpers.burst_requests ORDER BY answered_at DESC LIMIT 1$$,
	'the live version is the last one asked for');
SELECT is((test_helpers.read_json(:'root' || '/tap-conc/burst-one/release.json')->>'version')::int, r.version,
          '... and release.json on storage says so')
  FROM (SELECT version FROM test_helpers.burst_requests ORDER BY answered_at DESC LIMIT 1) AS r;
DROP TABLE test_helpers.burst_requests;

-- ---------------------------------------------------------------------------
-- Clean up (files on disk stay).
-- ---------------------------------------------------------------------------
DELETE FROM publish.projects WHERE slug IN ('conc-one', 'ord-a', 'ord-b', 'burst-one');
DELETE FROM publish.storage_targets WHERE env IN ('tap-conc', 'tap-conc2');

SELECT * FROM finish();
