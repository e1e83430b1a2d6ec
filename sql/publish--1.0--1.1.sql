/*
 * publish--1.0--1.1.sql: what version 1.1 adds to 1.0.
 *
 * ALTER EXTENSION publish UPDATE runs this file on a 1.0 install.  A fresh
 * CREATE EXTENSION publish runs publish--1.1.sql, which the Makefile makes
 * from publish--1.0.sql followed by this file: both ways run the same
 * statements and end with the same objects (test/t/021_upgrade.pl compares
 * their catalogues).  So every statement here must work on an empty 1.0
 * install as well as on one with data.
 *
 * The order of an upgrade is: the new library, a restart, then this file
 * (docs/operations.md, "Upgrading").  Between the restart and the UPDATE
 * the 1.1 library meets 1.0 objects and works with them as 1.0 did
 * (release history starts at the UPDATE, which fills it from the jobs of
 * 1.0).  The other way round is refused: the first section fails while
 * the server still runs an older library.
 *
 * The file is in sections, each between two lines of dashes and named, so
 * that work on different sections merges cleanly:
 *
 *   Preconditions         the library is 1.1 or later; writers of live
 *                         releases wait for the upgrade
 *   Job types             the job_type values the queue accepts
 *   Release history       publish.release_history
 *   Rollback              publish.rollback
 *   Purge                 publish.purge_releases
 *   Retry                 publish.retry_job
 *   Queue statistics      publish.stats
 *   Privileges
 *   Wake the workers
 *
 * The conventions of publish--1.0.sql's header hold here too: SQLSTATEs
 * that PostgREST maps to the right HTTP status, nothing for PUBLIC,
 * SECURITY DEFINER only where needed and said, search_path pinned, the
 * extension's objects named with their schema.
 */

\echo Use "ALTER EXTENSION publish UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Preconditions
-- ---------------------------------------------------------------------------

-- A job's final transaction writes project_versions (a publish), then
-- locks live_releases (ROW EXCLUSIVE), and only then reads the installed
-- version to know whether to write the history (src/jobs/job_live.c).
-- Locked here in the same order, first: either the job's transaction
-- committed before, and the history below is filled from its job, or it
-- waits for this upgrade's commit and writes its history row itself.
-- Nothing is recorded twice or lost, and the two never wait for each other
-- in turn.
LOCK TABLE publish.project_versions, publish.live_releases IN SHARE ROW EXCLUSIVE MODE;

-- The library the server runs must be 1.1 or later: publish is preloaded,
-- so a make install takes effect at the next restart, and the 1.0 library
-- knows neither the job types nor the history of 1.1.  Its symbol is new
-- in 1.1, so creating this function fails while an older library runs.
DO $$
BEGIN
	CREATE FUNCTION publish._library_version()
	RETURNS text
	LANGUAGE c IMMUTABLE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'publish_library_version';
EXCEPTION WHEN undefined_function THEN
	RAISE EXCEPTION 'the publish library this server runs is older than 1.1'
		USING ERRCODE = 'object_not_in_prerequisite_state',
		      DETAIL = 'PostgreSQL loads publish when it starts: a library installed since then runs after the next restart.',
		      HINT = 'Restart PostgreSQL, then run ALTER EXTENSION publish UPDATE again.';
END
$$;
COMMENT ON FUNCTION publish._library_version() IS
	'Internal: the version of the publish library the server runs (the upgrade scripts check it).';

-- ---------------------------------------------------------------------------
-- Job types
-- ---------------------------------------------------------------------------

-- The job_type values the queue accepts: 1.0's, and each type 1.1 adds
-- (src/jobs/job_types.c names the same; test/sql/08_shared_definitions.sql
-- checks that they agree).  A type added in 1.1 joins this one list.
ALTER TABLE publish.job_queue
	DROP CONSTRAINT job_queue_type_valid,
	ADD CONSTRAINT job_queue_type_valid CHECK (job_type IN ('publish', 'build_tiles', 'rollback', 'purge'));

-- ---------------------------------------------------------------------------
-- Release history: every change of what is live in an environment
-- ---------------------------------------------------------------------------

-- One row each time a job changes an environment's live release (a
-- publish, a rollback), written in the job's final transaction together
-- with the row of live_releases (src/jobs/job_live.c): the version that
-- went live, the one live before it, the job and who asked for it (its
-- params: the role, and the JWT sub behind PostgREST), when, and the
-- document that went live: its published_at, its URL and its sha256, by
-- which a rollback checks the immutable copy it puts back.  Rows stay when
-- their job is deleted (publish.job_retention) and go with their project.
-- pg_dump keeps them.
CREATE TABLE publish.live_release_history (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	project_id       uuid NOT NULL REFERENCES publish.projects (id) ON DELETE CASCADE,
	env              text NOT NULL,
	version_id       uuid REFERENCES publish.project_versions (id) ON DELETE SET NULL,
	version          integer NOT NULL,
	previous_version integer,
	job_id           uuid,
	job_type         text,
	requested_by     text,
	requested_sub    text,
	changed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
	published_at     timestamptz NOT NULL,
	release_url      text,
	release_sha256   text
	                 CONSTRAINT live_release_history_sha256_hex CHECK (release_sha256 ~ '^[0-9a-f]{64}$')
);
-- an environment's history, newest first (rollback, the view's readers)
CREATE INDEX live_release_history_target_idx ON publish.live_release_history (project_id, env, id);
COMMENT ON TABLE publish.live_release_history IS
	'Every change of an environment''s live release; read it through the publish.release_history view.';
SELECT pg_catalog.pg_extension_config_dump('publish.live_release_history', '');
SELECT pg_catalog.pg_extension_config_dump('publish.live_release_history_id_seq', '');

-- The history of a 1.0 install, from what it kept: each completed publish
-- job (the jobs of publish.job_retention) changed its environment's live
-- release, and its result names the document (published_at, release_url,
-- release_sha256).  A live release whose job is gone gets a row of its own,
-- without a checksum.  The lock taken above keeps jobs from completing
-- meanwhile.
INSERT INTO publish.live_release_history
	(project_id, env, version_id, version, previous_version, job_id, job_type,
	 requested_by, requested_sub, changed_at, published_at, release_url, release_sha256)
SELECT j.project_id, j.env, j.version_id, v.version_number,
       lag(v.version_number) OVER target, j.id, j.job_type,
       j.params ->> 'requested_by', j.params ->> 'requested_sub', j.completed_at,
       (j.result ->> 'published_at')::timestamptz, j.result ->> 'release_url',
       CASE WHEN j.result ->> 'release_sha256' ~ '^[0-9a-f]{64}$' THEN j.result ->> 'release_sha256' END
  FROM publish.job_queue j
  JOIN publish.project_versions v ON v.id = j.version_id
 WHERE j.job_type = 'publish' AND j.status = 'completed'
   AND j.project_id IS NOT NULL AND j.env IS NOT NULL
   AND j.result ? 'published_at'
WINDOW target AS (PARTITION BY j.project_id, j.env ORDER BY j.completed_at, j.id)
 ORDER BY j.completed_at, j.id;
INSERT INTO publish.live_release_history
	(project_id, env, version_id, version, job_id, job_type, changed_at, published_at, release_url)
SELECT r.project_id, r.env, r.version_id, v.version_number, r.job_id, 'publish',
       r.published_at, r.published_at, r.release_url
  FROM publish.live_releases r
  JOIN publish.project_versions v ON v.id = r.version_id
 WHERE NOT EXISTS (SELECT 1 FROM publish.live_release_history h
                    WHERE h.project_id = r.project_id AND h.env = r.env AND h.job_id = r.job_id);

CREATE VIEW publish.release_history AS
SELECT p.slug AS project,
       h.env,
       h.version,
       h.previous_version,
       h.job_id,
       h.job_type,
       h.requested_by,
       h.requested_sub,
       h.changed_at,
       h.published_at,
       h.release_url,
       h.release_sha256,
       h.id,
       h.project_id,
       h.version_id
  FROM publish.live_release_history h
  JOIN publish.projects p ON p.id = h.project_id;
COMMENT ON VIEW publish.release_history IS
	'Every change of what is live in an environment, oldest first by id: project, env, version, previous_version, job_id and job_type (publish or rollback), requested_by and requested_sub (who asked), changed_at, and the document that went live (published_at, release_url, release_sha256).';

-- ---------------------------------------------------------------------------
-- Rollback: an earlier release made live again, without rebuilding
-- ---------------------------------------------------------------------------

-- Queues a job (type rollback, src/jobs/job_rollback.c) that makes the
-- release that version last made live in env live again, from its
-- immutable copy on the target, checked against the sha256 the history
-- recorded.  version NULL: the version live before the current one (the
-- last one in env's history that is not the live version: two rollbacks
-- in a row go back and forth; a version published again is no step back).  Refused at call time, with nothing queued: nothing live, or
-- nothing live before it (PT409); a version that was never live in env, or
-- is live now, or whose checksum was never recorded (PT409); an unknown
-- project, version or environment (PT404); NULL or malformed arguments
-- (22004, 22023).  Ordered with the publishes of the project and
-- environment, and the same rollback asked again while it waits is that
-- job, as publish_version does (see there).  SECURITY DEFINER: it writes
-- the job queue, which admins only read through publish.jobs.
CREATE FUNCTION publish.rollback(slug text, env text, version integer DEFAULT NULL)
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	proj      publish.projects;
	ver       publish.project_versions;
	live      record;
	latest    record;
	chosen    record;
	dup       record;
	earlier   text;
	job       publish.jobs;
	requester text := publish._requesting_role();	-- SECURITY DEFINER: not current_user
	sub       text := publish._requesting_sub();
BEGIN
	IF slug IS NULL OR env IS NULL THEN
		RAISE EXCEPTION 'project slug and environment must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF slug !~ '^[a-z0-9]+(-[a-z0-9]+)*$' OR length(slug) > 63 THEN
		RAISE EXCEPTION 'invalid project slug "%"', publish._shown(slug)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A slug is lowercase letters, digits and hyphens, such as "campus" or "city-center".';
	END IF;
	IF rollback.version <= 0 THEN
		RAISE EXCEPTION 'invalid version number %', rollback.version
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Version numbers start at 1; leave the version out to go back to the release live before the current one.';
	END IF;
	PERFORM publish._check_env(env);
	SELECT * INTO proj FROM publish.projects p WHERE p.slug = rollback.slug;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'project "%" does not exist', slug
			USING ERRCODE = 'PT404',
			      HINT = 'SELECT slug FROM publish.projects lists the projects.';
	END IF;
	IF rollback.version IS NOT NULL THEN
		ver := publish._resolve_version(slug, rollback.version);
	END IF;

	PERFORM publish._wake_worker_at_commit();
	-- ordered with the project's other requests, as publish_version is
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'rollback needs READ COMMITTED isolation'
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'With a snapshot older than other sessions'' requests it could not put this one after them.';
	END IF;
	PERFORM 1 FROM publish.projects p WHERE p.id = proj.id FOR NO KEY UPDATE;

	SELECT r.version_id, v.version_number INTO live
	  FROM publish.live_releases r JOIN publish.project_versions v ON v.id = r.version_id
	 WHERE r.project_id = proj.id AND r.env = rollback.env;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'nothing of project "%" is live in "%", so there is nothing to roll back', slug, env
			USING ERRCODE = 'PT409',
			      HINT = format('Publish a version first: SELECT publish.publish_version(%L, 1, %L);', slug, env);
	END IF;
	IF rollback.version IS NULL THEN
		SELECT h.version, h.version_id INTO latest
		  FROM publish.live_release_history h
		 WHERE h.project_id = proj.id AND h.env = rollback.env
		   AND h.version_id IS DISTINCT FROM live.version_id
		 ORDER BY h.id DESC LIMIT 1;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'nothing to roll back to: no version of project "%" but % was live in "%"',
			                slug, live.version_number, env
				USING ERRCODE = 'PT409',
				      DETAIL = 'publish.release_history records no other version live there.';
		END IF;
		SELECT * INTO ver FROM publish.project_versions v WHERE v.id = latest.version_id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'version % of project "%", live in "%" before version %, no longer exists',
			                latest.version, slug, env, live.version_number
				USING ERRCODE = 'PT404',
				      HINT = 'Name the version to go back to: publish.rollback(slug, env, version).';
		END IF;
	END IF;
	IF ver.id = live.version_id THEN
		RAISE EXCEPTION 'version % of project "%" is already live in "%"', ver.version_number, slug, env
			USING ERRCODE = 'PT409',
			      HINT = format('To write its release.json again, publish it: SELECT publish.publish_version(%L, %s, %L);',
			                    slug, ver.version_number, env);
	END IF;
	SELECT h.release_sha256 INTO chosen
	  FROM publish.live_release_history h
	 WHERE h.project_id = proj.id AND h.env = rollback.env AND h.version_id = ver.id
	 ORDER BY h.id DESC LIMIT 1;
	IF NOT FOUND THEN
		SELECT string_agg(DISTINCT h.version::text, ', ') INTO earlier
		  FROM publish.live_release_history h
		 WHERE h.project_id = proj.id AND h.env = rollback.env AND h.version_id IS DISTINCT FROM live.version_id;
		RAISE EXCEPTION 'version % of project "%" was never live in "%"', ver.version_number, slug, env
			USING ERRCODE = 'PT409',
			      DETAIL = CASE WHEN earlier IS NULL THEN 'No other version was live there.'
			                    ELSE format('Versions that were live there: %s.', earlier) END,
			      HINT = 'A rollback puts back a release that was live; publish this version instead.';
	END IF;
	IF chosen.release_sha256 IS NULL THEN
		RAISE EXCEPTION 'no checksum is recorded for version % of project "%" in "%"', ver.version_number, slug, env
			USING ERRCODE = 'PT409',
			      DETAIL = 'It went live before publish recorded the checksum of release.json, so its copy on storage cannot be checked.',
			      HINT = format('Publish it again instead: SELECT publish.publish_version(%L, %s, %L);',
			                    slug, ver.version_number, env);
	END IF;

	-- the same rollback waiting, with nothing asked after it, is the answer
	SELECT q.id INTO dup
	  FROM publish.job_queue q
	 WHERE q.project_id = proj.id AND q.env = rollback.env
	   AND q.job_type = 'rollback' AND q.version_id = ver.id
	   AND q.status = 'queued' AND NOT q.cancel_requested
	   AND NOT EXISTS (SELECT 1 FROM publish.job_queue o
	                    WHERE o.project_id = proj.id AND o.env = rollback.env
	                      AND o.status = 'queued' AND o.created_at > q.created_at)
	 ORDER BY q.created_at DESC LIMIT 1;
	IF FOUND THEN
		SELECT * INTO job FROM publish.jobs j WHERE j.id = dup.id;
		RETURN job;
	END IF;

	INSERT INTO publish.job_queue AS q (job_type, params, project_id, version_id, env, created_by)
	VALUES ('rollback',
	        jsonb_build_object('project_slug', slug,
	                           'version_number', ver.version_number,
	                           'target_env', env,
	                           'requested_by', requester)
	        || CASE WHEN sub IS NULL THEN '{}'::jsonb
	                ELSE jsonb_build_object('requested_sub', sub) END,
	        proj.id, ver.id, env, requester)
	RETURNING q.id, q.job_type, q.status, q.progress, q.params, q.result, q.error, '[]'::jsonb,
	          q.created_at, q.started_at, q.completed_at, q.attempts, q.created_by, q.cancel_requested
	INTO job;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.rollback(text, text, integer) IS
	'Queues a job that makes the release version last made live in env live again, from its immutable copy on the target, checked against the sha256 the history recorded; version NULL: the one live before the current one. Returns the job. SECURITY DEFINER: publish_admin may call it.';

-- ---------------------------------------------------------------------------
-- Purge: the copies and tiles of versions no longer needed, removed
-- ---------------------------------------------------------------------------

-- Queues a job (type purge, src/jobs/job_purge.c) that removes from env's
-- target the immutable copies ({env}/{slug}/releases/v{N}.json) and tiles
-- ({env}/{slug}/tiles/v{N}/) of the project's versions that are neither
-- live there nor among the last keep versions that were live there
-- (publish.release_history; keep counts the live one).  Nothing outside
-- those prefixes, nor anything a row of publish.assets or publish.tilesets
-- names, is removed.  Ordered with the publishes and rollbacks of the
-- project and environment, so it runs after those asked for before it;
-- the same purge asked again while it waits, with nothing asked after it,
-- is that job.  Refused at call time, with nothing queued: NULL arguments
-- (22004), a malformed slug or environment, keep below 1 (22023), an
-- unknown project or environment (PT404).  SECURITY DEFINER: it writes the
-- job queue, which admins only read through publish.jobs.
CREATE FUNCTION publish.purge_releases(slug text, env text, keep integer DEFAULT 5)
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	proj      publish.projects;
	dup       record;
	job       publish.jobs;
	requester text := publish._requesting_role();	-- SECURITY DEFINER: not current_user
	sub       text := publish._requesting_sub();
BEGIN
	IF slug IS NULL OR env IS NULL OR keep IS NULL THEN
		RAISE EXCEPTION 'project slug, environment and keep must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF slug !~ '^[a-z0-9]+(-[a-z0-9]+)*$' OR length(slug) > 63 THEN
		RAISE EXCEPTION 'invalid project slug "%"', publish._shown(slug)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A slug is lowercase letters, digits and hyphens, such as "campus" or "city-center".';
	END IF;
	IF keep < 1 THEN
		RAISE EXCEPTION 'keep must be at least 1, not %', keep
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'keep counts the live release: 1 keeps only what is live.';
	END IF;
	PERFORM publish._check_env(env);
	SELECT * INTO proj FROM publish.projects p WHERE p.slug = purge_releases.slug;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'project "%" does not exist', slug
			USING ERRCODE = 'PT404',
			      HINT = 'SELECT slug FROM publish.projects lists the projects.';
	END IF;

	PERFORM publish._wake_worker_at_commit();
	-- ordered with the project's other requests, as publish_version is
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'purge_releases needs READ COMMITTED isolation'
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'With a snapshot older than other sessions'' requests it could not put this one after them.';
	END IF;
	PERFORM 1 FROM publish.projects p WHERE p.id = proj.id FOR NO KEY UPDATE;

	-- the same purge waiting, with nothing asked after it, is the answer
	SELECT q.id INTO dup
	  FROM publish.job_queue q
	 WHERE q.project_id = proj.id AND q.env = purge_releases.env
	   AND q.job_type = 'purge' AND q.params->>'keep' = keep::text
	   AND q.status = 'queued' AND NOT q.cancel_requested
	   AND NOT EXISTS (SELECT 1 FROM publish.job_queue o
	                    WHERE o.project_id = proj.id AND o.env = purge_releases.env
	                      AND o.status = 'queued' AND o.created_at > q.created_at)
	 ORDER BY q.created_at DESC LIMIT 1;
	IF FOUND THEN
		SELECT * INTO job FROM publish.jobs j WHERE j.id = dup.id;
		RETURN job;
	END IF;

	INSERT INTO publish.job_queue AS q (job_type, params, project_id, env, created_by)
	VALUES ('purge',
	        jsonb_build_object('project_slug', slug,
	                           'target_env', env,
	                           'keep', keep,
	                           'requested_by', requester)
	        || CASE WHEN sub IS NULL THEN '{}'::jsonb
	                ELSE jsonb_build_object('requested_sub', sub) END,
	        proj.id, env, requester)
	RETURNING q.id, q.job_type, q.status, q.progress, q.params, q.result, q.error, '[]'::jsonb,
	          q.created_at, q.started_at, q.completed_at, q.attempts, q.created_by, q.cancel_requested
	INTO job;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.purge_releases(text, text, integer) IS
	'Queues a job that removes from env''s target the immutable copies and tiles of the project''s versions that are neither live there nor among the last keep that were live (keep counts the live one); its result says what it removed. Returns the job. SECURITY DEFINER: publish_admin may call it.';

-- ---------------------------------------------------------------------------
-- Retry: a failed or cancelled job asked for again
-- ---------------------------------------------------------------------------

-- A new job with the parameters of job id, which failed or was cancelled:
-- its type's entry function (publish_version, build_tiles, rollback,
-- purge_releases) is
-- called again with them, under the project's and version's names of now,
-- so every check of a new request applies and the caller is who asked;
-- the new job's params say retry_of.  When the entry function answers with
-- a job already waiting (the same publish queued), that job is returned as
-- it is.  PT404 for an unknown job, or one whose project or version is
-- gone; PT409 for one that is queued, running or completed.  SECURITY
-- DEFINER: it reads the job queue and adds retry_of to the new job's row.
CREATE FUNCTION publish.retry_job(id uuid)
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old     publish.job_queue;
	slug    text;
	version integer;
	waiting uuid[];
	job     publish.jobs;
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'job id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the project's row first, as the entry functions take it: the jobs
	-- waiting for it cannot change until this transaction ends
	PERFORM 1 FROM publish.projects p
	 WHERE p.id = (SELECT q.project_id FROM publish.job_queue q WHERE q.id = retry_job.id)
	   FOR NO KEY UPDATE;
	SELECT * INTO old FROM publish.job_queue q WHERE q.id = retry_job.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', id USING ERRCODE = 'PT404';
	END IF;
	IF old.status NOT IN ('failed', 'cancelled') THEN
		RAISE EXCEPTION 'job % is %, so it cannot be retried', id, old.status
			USING ERRCODE = 'PT409',
			      DETAIL = 'Only a failed or cancelled job can be retried.',
			      HINT = CASE WHEN old.status = 'completed' THEN 'It completed: ask for a new job instead.'
			                  ELSE format('Wait for it to end: SELECT status, error FROM publish.wait_job(%L);', id) END;
	END IF;
	SELECT p.slug INTO slug FROM publish.projects p WHERE p.id = old.project_id;
	IF slug IS NULL THEN
		RAISE EXCEPTION 'the project of job % no longer exists, so it cannot be retried', id
			USING ERRCODE = 'PT404';
	END IF;
	SELECT v.version_number INTO version FROM publish.project_versions v WHERE v.id = old.version_id;
	IF version IS NULL AND old.job_type <> 'purge' THEN
		RAISE EXCEPTION 'the version of job % no longer exists, so it cannot be retried', id
			USING ERRCODE = 'PT404';
	END IF;

	waiting := ARRAY(SELECT q.id FROM publish.job_queue q
	                  WHERE q.project_id = old.project_id AND q.env = old.env
	                    AND q.status IN ('queued', 'running'));
	CASE old.job_type
		WHEN 'publish' THEN
			job := publish.publish_version(slug, version, old.env);
		WHEN 'build_tiles' THEN
			job := publish.build_tiles(slug, version, old.env);
		WHEN 'rollback' THEN
			job := publish.rollback(slug, old.env, version);
		WHEN 'purge' THEN
			job := publish.purge_releases(slug, old.env,
			                              CASE WHEN old.params->>'keep' ~ '^[0-9]{1,9}$'
			                                   THEN (old.params->>'keep')::integer END);
		ELSE
			RAISE EXCEPTION 'job % is of type %, which cannot be retried', id, old.job_type
				USING ERRCODE = 'PT409';
	END CASE;
	IF NOT job.id = ANY (waiting) THEN
		UPDATE publish.job_queue q SET params = q.params || jsonb_build_object('retry_of', old.id)
		 WHERE q.id = job.id;
		job.params := job.params || jsonb_build_object('retry_of', old.id);
	END IF;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.retry_job(uuid) IS
	'Queues a new job with the parameters of a failed or cancelled one (params.retry_of names it), through the entry function of its type, so every check of a new request applies; returns the job. SECURITY DEFINER: publish_admin may call it.';

-- ---------------------------------------------------------------------------
-- The claim wakes a sibling when another job is ready
-- ---------------------------------------------------------------------------

-- Having claimed a job, the claim reads the next ready one in the same scan
-- of job_queue_ready_idx and, when there is one, wakes a sibling worker at
-- commit.  A query of its own for that (1.0's worker asked one) was planned
-- from the table's statistics and could pass every finished job first.
-- Its queries keep their plans: planning them at every claim was most of
-- the time from a worker's wake-up to its claim.  The worker makes them
-- again when the queue's table or indexes have doubled or halved in size
-- (job_queue_check_plans in src/queue/job_queue.c).
CREATE OR REPLACE FUNCTION publish._claim_job(worker_pid integer, max_attempts integer)
RETURNS SETOF publish.job_queue
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	candidates refcursor;
	c       record;
	blocker uuid;
BEGIN
	OPEN candidates FOR
		SELECT q.id, q.project_id, q.env, q.created_at
		  FROM publish.job_queue q
		 WHERE q.status = 'queued' AND q.blocked_by IS NULL
		 ORDER BY q.created_at, q.id
		   FOR UPDATE SKIP LOCKED;
	LOOP
		FETCH candidates INTO c;
		EXIT WHEN NOT FOUND;
		blocker := NULL;
		IF c.project_id IS NOT NULL THEN
			SELECT o.id INTO blocker FROM publish.job_queue o
			 WHERE o.project_id = c.project_id AND o.env = c.env
			   AND o.status IN ('queued', 'running')
			   AND (o.created_at, o.id) < (c.created_at, c.id)
			 ORDER BY o.created_at DESC, o.id DESC LIMIT 1;
			IF blocker IS NULL THEN
				SELECT o.id INTO blocker FROM publish.job_queue o
				 WHERE o.project_id = c.project_id AND o.env = c.env
				   AND o.status = 'running' LIMIT 1;
			END IF;
		END IF;
		IF blocker IS NULL THEN
			RETURN QUERY
			WITH claimed AS (
				UPDATE publish.job_queue q
				   SET status = 'running', started_at = clock_timestamp(),
				       attempts = q.attempts + 1, progress = 0
				 WHERE q.id = c.id
				RETURNING q.*
			), logged AS (
				INSERT INTO publish.job_log (job_id, level, message, progress)
				SELECT l.id, 'info', format('Started by the publish worker (pid %s), attempt %s of %s',
				                            worker_pid, l.attempts, max_attempts), 0
				  FROM claimed l
			)
			SELECT * FROM claimed;
			-- another job ready: a sibling worker takes it
			FETCH candidates INTO c;
			IF FOUND THEN
				PERFORM publish._wake_worker_at_commit();
			END IF;
			CLOSE candidates;
			RETURN;
		END IF;
		PERFORM 1 FROM publish.job_queue b
		 WHERE b.id = blocker AND b.status IN ('queued', 'running')
		   FOR SHARE SKIP LOCKED;
		IF FOUND THEN
			UPDATE publish.job_queue q SET blocked_by = blocker WHERE q.id = c.id;
		END IF;
	END LOOP;
	CLOSE candidates;
END
$$;

-- ---------------------------------------------------------------------------
-- Queue statistics: publish.stats, for a scrape every few seconds
-- ---------------------------------------------------------------------------

-- The finished jobs of each type, newest last, with what the statistics
-- read of them: the counts of the last day and the durations of the last
-- 1,000 are index-only range scans, however many jobs the table keeps.
CREATE INDEX job_queue_stats_idx ON publish.job_queue (job_type, completed_at) INCLUDE (status, started_at)
	WHERE status IN ('completed', 'failed', 'cancelled');

-- One row per job type (the types of job_queue_type_valid, so that a
-- type with no jobs shows zeros, not nothing), for this database: jobs
-- queued and running, the age of the oldest queued job in seconds (0:
-- none), jobs completed, failed and cancelled in the last hour and day,
-- and the median and 95th percentile of the durations (started_at to
-- completed_at, of the last attempt) of the last 1,000 jobs that ended
-- after they started (NULL: none).  Queued and running jobs are read
-- through job_queue_target_idx, the finished ones through
-- job_queue_stats_idx (docs/monitoring.md says what it costs).
CREATE VIEW publish.stats AS
SELECT current_database() AS database,
       t.job_type,
       coalesce(a.queued, 0) AS queued,
       coalesce(a.running, 0) AS running,
       coalesce(a.oldest_queued_seconds, 0) AS oldest_queued_seconds,
       f.completed_last_hour,
       f.failed_last_hour,
       f.cancelled_last_hour,
       f.completed_last_day,
       f.failed_last_day,
       f.cancelled_last_day,
       d.duration_p50_seconds,
       d.duration_p95_seconds,
       d.durations_counted
  FROM unnest(ARRAY['publish', 'build_tiles', 'rollback', 'purge']) AS t(job_type)
  LEFT JOIN (
       SELECT q.job_type,
              count(*) FILTER (WHERE q.status = 'queued') AS queued,
              count(*) FILTER (WHERE q.status = 'running') AS running,
              extract(epoch FROM now() - min(q.created_at) FILTER (WHERE q.status = 'queued'))::double precision
                AS oldest_queued_seconds
         FROM publish.job_queue q
        WHERE q.status IN ('queued', 'running')
        GROUP BY q.job_type) a ON a.job_type = t.job_type
 CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE e.status = 'completed' AND e.completed_at > now() - interval '1 hour') AS completed_last_hour,
              count(*) FILTER (WHERE e.status = 'failed' AND e.completed_at > now() - interval '1 hour') AS failed_last_hour,
              count(*) FILTER (WHERE e.status = 'cancelled' AND e.completed_at > now() - interval '1 hour') AS cancelled_last_hour,
              count(*) FILTER (WHERE e.status = 'completed') AS completed_last_day,
              count(*) FILTER (WHERE e.status = 'failed') AS failed_last_day,
              count(*) FILTER (WHERE e.status = 'cancelled') AS cancelled_last_day
         FROM publish.job_queue e
        WHERE e.job_type = t.job_type AND e.status IN ('completed', 'failed', 'cancelled')
          AND e.completed_at > now() - interval '1 day') f
 CROSS JOIN LATERAL (
       SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l.seconds) AS duration_p50_seconds,
              percentile_cont(0.95) WITHIN GROUP (ORDER BY l.seconds) AS duration_p95_seconds,
              count(l.seconds) AS durations_counted
         FROM (SELECT extract(epoch FROM e.completed_at - e.started_at)::double precision AS seconds
                 FROM publish.job_queue e
                WHERE e.job_type = t.job_type AND e.status IN ('completed', 'failed', 'cancelled')
                ORDER BY e.completed_at DESC
                LIMIT 1000) l) d;
COMMENT ON VIEW publish.stats IS
	'Queue health per job type in this database, cheap enough to scrape every 15 s: queued, running, oldest_queued_seconds, completed/failed/cancelled in the last hour and day, duration_p50_seconds and duration_p95_seconds of the last 1,000 finished jobs (durations_counted of them had started).';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC (as in 1.0), then what each role needs
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA publish FROM PUBLIC;

GRANT SELECT ON publish.release_history TO publish_viewer, publish_admin;
GRANT EXECUTE ON FUNCTION publish.rollback(text, text, integer) TO publish_admin;
GRANT EXECUTE ON FUNCTION publish.retry_job(uuid) TO publish_admin;
GRANT EXECUTE ON FUNCTION publish.purge_releases(text, text, integer) TO publish_admin;
GRANT SELECT ON publish.stats TO publish_viewer, publish_admin;

-- ---------------------------------------------------------------------------
-- Wake the workers at commit: they look at the queue with the new objects.
-- ---------------------------------------------------------------------------
SELECT publish._wake_worker_at_commit();
