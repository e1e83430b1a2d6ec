/*
 * publish--1.0.sql: the schema of the publish extension, in reading order.
 *
 *   Roles                 publish_viewer, publish_admin
 *   Helpers               of the functions below
 *   Content               projects, versions, assets, overlays, tilesets, tiles
 *   Storage targets       and their secrets
 *   Jobs                  the queue, its log, the publish.jobs view, the
 *                         triggers that wake the worker and announce changes,
 *                         the claim the worker makes
 *   Releases              what is live in each environment
 *   C entry points        internal, called by the functions below
 *   Checks and limits     shared by the entry points
 *   Public entry points   publish_version, build_tiles, build_release,
 *                         validate_version, set_storage_target,
 *                         set_storage_credentials, cancel_job, purge_jobs,
 *                         wait_job
 *   Privileges
 *
 * Each table comes with all its constraints, indexes and comment; each
 * function with its security and settings.  The background worker lives in
 * publish.so and serves every database in which this script has run.
 *
 * SQLSTATEs raised for bad input are chosen so that a PostgREST front end
 * answers with the right HTTP status (docs/postgrest.md, "Errors and HTTP statuses"):
 *   PT404 not found -> 404, PT409 wrong state -> 409, PT413 too large -> 413,
 *   22004/22023 malformed or NULL argument -> 400, 23514 invalid content -> 400.
 *
 * Security.  PUBLIC gets nothing: under PostgREST the anonymous role is a
 * member of PUBLIC, so anything granted to PUBLIC would be open to the
 * internet.  Functions are SECURITY INVOKER but six, which run as the
 * extension's owner and say so: publish_version and build_tiles (they
 * insert into job_queue and wake the worker, which admins cannot do
 * directly), cancel_job and purge_jobs (they change job_queue, which admins
 * only read through publish.jobs), set_storage_target and
 * set_storage_credentials (they write tables no caller can read or write,
 * so validation cannot be bypassed and secrets stay write-only).  Every
 * function pins search_path to pg_catalog, pg_temp and names the
 * extension's objects schema-qualified, so objects made by a user with
 * CREATE on some schema (a public.lower(), an operator) are never found;
 * three C functions that resolve no name and run per row say why they do
 * not.  Names and numbers the C code knows too (the job types, statuses
 * and log levels, the nesting depth of properties, the zoom range, the
 * settings' defaults) are stated once here, in the constraints and checks
 * that use them, and once in the C headers; test/sql/08_shared_definitions.sql
 * checks that both sides agree.
 */

\echo Use "CREATE EXTENSION publish" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------

-- Cluster-wide, NOLOGIN, made here when missing and left in place by DROP
-- EXTENSION:
--   publish_viewer  reads content, publish.jobs and publish.releases, waits
--                   for jobs (wait_job)
--   publish_admin   a viewer that also manages content (plain INSERT/UPDATE/
--                   DELETE), publishes, previews and validates versions and
--                   reads the storage targets (never their secrets), cancels
--                   jobs and purges old ones
-- Storage targets and secrets are set by superusers only (set_storage_target
-- and set_storage_credentials are executable by no one else); a superuser
-- may delegate with GRANT EXECUTE on them, knowing that a file:// target
-- lets the grantee make the server write into any directory its OS user can.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'publish_viewer') THEN
		CREATE ROLE publish_viewer NOLOGIN;
		COMMENT ON ROLE publish_viewer IS
			'publish extension: reads content, publish.jobs and publish.releases.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'publish_admin') THEN
		CREATE ROLE publish_admin NOLOGIN;
		COMMENT ON ROLE publish_admin IS
			'publish extension: manages content, publishes versions, reads storage targets (not secrets).';
	END IF;
	IF NOT pg_catalog.pg_has_role('publish_admin', 'publish_viewer', 'MEMBER') THEN
		GRANT publish_viewer TO publish_admin;
	END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Helpers of the functions below
-- ---------------------------------------------------------------------------

-- The text of a value for an error message: long input (a 10 MB slug) is
-- cut, so that errors and the server log stay readable.
CREATE FUNCTION publish._shown(value text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.length(value) > 64
	            THEN pg_catalog.left(value, 64) OPERATOR(pg_catalog.||) '...'
	            ELSE value END
$$;
COMMENT ON FUNCTION publish._shown(text) IS
	'Internal: a value for an error message, cut after 64 characters.';

-- The role that asked, as seen from a SECURITY DEFINER function (where
-- current_user is the function's owner): the role set by SET ROLE (which
-- PostgREST does per request from the JWT), else the session's login role.
CREATE FUNCTION publish._requesting_role()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none'
	            THEN session_user::text
	            ELSE pg_catalog.current_setting('role') END
$$;
COMMENT ON FUNCTION publish._requesting_role() IS
	'Internal: the role that asked (SET ROLE, as PostgREST does, else the login role), as seen from a SECURITY DEFINER function.';

-- The "sub" claim of the JWT of a PostgREST request, or NULL (no request,
-- no sub, or claims that are not JSON).  Informational: a direct SQL client
-- can set request.jwt.claims to anything.
CREATE FUNCTION publish._requesting_sub()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims text := pg_catalog.current_setting('request.jwt.claims', true);
BEGIN
	IF claims IS NULL OR claims = '' THEN
		RETURN NULL;
	END IF;
	BEGIN
		RETURN pg_catalog.left(claims::jsonb ->> 'sub', 256);
	EXCEPTION WHEN invalid_text_representation OR invalid_parameter_value THEN
		RETURN NULL;
	END;
END
$$;
COMMENT ON FUNCTION publish._requesting_sub() IS
	'Internal: the sub claim of the PostgREST request''s JWT, or NULL.';

-- ---------------------------------------------------------------------------
-- Content
-- ---------------------------------------------------------------------------

-- Content that could escape a path or break a reader is refused when it is
-- written (23514, HTTP 400): keys are names a reader may use as file names;
-- storage paths are relative paths without dot segments (plain or
-- percent-encoded), empty segments, a scheme, backslashes or control
-- characters; text has sane lengths; properties are nested at most 32
-- levels (json-c, which many readers use, stops at 32).  Geometry is checked
-- when a version is validated (it may be saved half-done).  pg_dump keeps
-- the rows of every table (pg_extension_config_dump): they hold user data.

CREATE TABLE publish.projects (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	slug        text NOT NULL UNIQUE
	            CONSTRAINT projects_slug_format
	            CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 63),
	name        text NOT NULL CONSTRAINT projects_name_not_blank CHECK (btrim(name) <> ''),
	description text,
	created_at  timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT projects_text_lengths
	CHECK (length(name) <= 200 AND length(description) <= 10000)
);
COMMENT ON TABLE publish.projects IS 'Map projects; slug is lowercase letters, digits and hyphens.';
SELECT pg_catalog.pg_extension_config_dump('publish.projects', '');

CREATE TABLE publish.project_versions (
	id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id     uuid NOT NULL REFERENCES publish.projects (id) ON DELETE CASCADE,
	version_number integer NOT NULL CONSTRAINT project_versions_number_positive CHECK (version_number > 0),
	status         text NOT NULL DEFAULT 'draft'
	               CONSTRAINT project_versions_status_valid
	               CHECK (status IN ('draft', 'ready', 'published', 'archived')),
	notes          text,
	published_at   timestamptz,
	created_at     timestamptz NOT NULL DEFAULT now(),
	UNIQUE (project_id, version_number),
	CONSTRAINT project_versions_notes_length CHECK (length(notes) <= 10000)
);
COMMENT ON TABLE publish.project_versions IS
	'Versions of a project; only ready or published versions can be published.';
SELECT pg_catalog.pg_extension_config_dump('publish.project_versions', '');

CREATE TABLE publish.assets (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	key          text NOT NULL CONSTRAINT assets_key_not_blank CHECK (btrim(key) <> ''),
	kind         text NOT NULL DEFAULT 'file',
	storage_path text NOT NULL
	             CONSTRAINT assets_storage_path_relative
	             CHECK (storage_path <> '' AND storage_path !~ '^/' AND storage_path !~ '(^|/)\.\.(/|$)'),
	content_type text NOT NULL DEFAULT 'application/octet-stream',
	byte_size    bigint CONSTRAINT assets_byte_size_nonnegative CHECK (byte_size >= 0),
	sha256       text CONSTRAINT assets_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (version_id, key),
	UNIQUE (version_id, id),
	CONSTRAINT assets_key_format
	CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9._-]*$' AND length(key) <= 128),
	CONSTRAINT assets_storage_path_safe
	CHECK (length(storage_path) <= 1024
	       AND storage_path !~ '[[:cntrl:]\\]'
	       AND storage_path !~ '//'
	       AND storage_path !~ '^[^/]*:'
	       AND storage_path !~* '(^|/)(\.|%2e)+(/|$)'),
	CONSTRAINT assets_kind_format
	CHECK (kind ~ '^[a-z0-9][a-z0-9_-]*$' AND length(kind) <= 64),
	CONSTRAINT assets_content_type_format
	CHECK (length(content_type) <= 255
	       AND content_type ~* '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*( *; *[a-z0-9_.-]+=[^;[:cntrl:]]+)*$')
);
COMMENT ON TABLE publish.assets IS
	'Files of a version that are already on storage; storage_path is relative to the target''s root.';
SELECT pg_catalog.pg_extension_config_dump('publish.assets', '');

CREATE TABLE publish.overlays (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	key          text NOT NULL CONSTRAINT overlays_key_not_blank CHECK (btrim(key) <> ''),
	name         text NOT NULL DEFAULT '',
	overlay_type text NOT NULL
	             CONSTRAINT overlays_type_valid
	             CHECK (overlay_type IN ('marker', 'label', 'polyline', 'polygon', 'image')),
	geometry     jsonb NOT NULL,
	properties   jsonb NOT NULL DEFAULT '{}'
	             CONSTRAINT overlays_properties_object CHECK (jsonb_typeof(properties) = 'object'),
	asset_id     uuid,
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (version_id, key),
	FOREIGN KEY (version_id, asset_id) REFERENCES publish.assets (version_id, id)
		ON DELETE SET NULL (asset_id),
	CONSTRAINT overlays_key_format
	CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9._-]*$' AND length(key) <= 128),
	CONSTRAINT overlays_name_length CHECK (length(name) <= 500),
	-- release.json must parse with json-c's default depth (32 levels, its
	-- root the first), and holds properties 3 levels down (the document,
	-- the "overlays" array, the overlay): jsonpath counts their root as
	-- level 0, so nothing may be at level 29 (RELEASE_VALUE_MAX_DEPTH in
	-- src/release/release.h; validation.c checks the same of geometry, and
	-- of rows older than this constraint)
	CONSTRAINT overlays_properties_depth
	CHECK (NOT jsonb_path_exists(properties, 'strict $.**{29 to last}'))
);
CREATE INDEX overlays_asset_idx ON publish.overlays (asset_id) WHERE asset_id IS NOT NULL;
-- release.json lists overlays by key in the "C" collation: the worker reads
-- them in this index's order instead of sorting (an external sort on disk
-- for 100k overlays).
CREATE INDEX overlays_release_order_idx ON publish.overlays (version_id, key COLLATE "C");
COMMENT ON TABLE publish.overlays IS
	'Map overlays of a version: marker/label (Point), polyline (LineString), polygon (Polygon), image (Polygon + asset). Geometry is checked when the version is published.';
SELECT pg_catalog.pg_extension_config_dump('publish.overlays', '');

CREATE TABLE publish.tilesets (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	version_id  uuid NOT NULL UNIQUE REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	format      text NOT NULL DEFAULT 'png' CONSTRAINT tilesets_format_valid CHECK (format IN ('png', 'jpg', 'webp')),
	tile_size   integer NOT NULL DEFAULT 256 CONSTRAINT tilesets_tile_size_valid CHECK (tile_size IN (256, 512)),
	min_zoom    integer NOT NULL DEFAULT 0,
	max_zoom    integer NOT NULL,
	bounds      double precision[]
	            CONSTRAINT tilesets_bounds_wsen
	            CHECK (bounds IS NULL OR (cardinality(bounds) = 4 AND array_ndims(bounds) = 1
	                                      AND array_position(bounds, NULL) IS NULL
	                                      AND NOT bounds && '{NaN,Infinity,-Infinity}'::double precision[])),
	source_path text
	            CONSTRAINT tilesets_source_path_relative
	            CHECK (source_path IS NULL OR (source_path !~ '^/' AND source_path !~ '(^|/)\.\.(/|$)')),
	built_at    timestamptz,
	built_env   text,		-- the environment whose target build_tiles put the tiles on
	CONSTRAINT tilesets_zoom_range CHECK (min_zoom >= 0 AND max_zoom <= 30 AND min_zoom <= max_zoom),
	CONSTRAINT tilesets_source_path_safe
	CHECK (source_path IS NULL
	       OR (source_path <> ''
	           AND length(source_path) <= 1024
	           AND source_path !~ '[[:cntrl:]\\]'
	           AND source_path !~ '//'
	           AND source_path !~ '^[^/]*:'
	           AND source_path !~* '(^|/)(\.|%2e)+(/|$)'))
);
COMMENT ON TABLE publish.tilesets IS
	'The tileset of a version: built tiles are at {source_path}/{z}/{x}/{y}.{format} under the target''s root.';
COMMENT ON COLUMN publish.tilesets.built_env IS
	'The environment on whose storage target publish built the tiles (build_tiles, or publish_version from a base_map asset); NULL when they were put there by other means.';
SELECT pg_catalog.pg_extension_config_dump('publish.tilesets', '');

CREATE TABLE publish.tiles (
	tileset_id uuid NOT NULL REFERENCES publish.tilesets (id) ON DELETE CASCADE,
	z          integer NOT NULL CONSTRAINT tiles_z_range CHECK (z BETWEEN 0 AND 30),
	x          integer NOT NULL,
	y          integer NOT NULL,
	byte_size  bigint NOT NULL CONSTRAINT tiles_byte_size_nonnegative CHECK (byte_size >= 0),
	sha256     text NOT NULL CONSTRAINT tiles_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	md5        text CONSTRAINT tiles_md5_hex CHECK (md5 ~ '^[0-9a-f]{32}$'),
	PRIMARY KEY (tileset_id, z, x, y),
	CONSTRAINT tiles_xy_in_zoom CHECK (x >= 0 AND y >= 0 AND x::bigint < (1::bigint << z) AND y::bigint < (1::bigint << z))
);
COMMENT ON TABLE publish.tiles IS 'Manifest of the built tiles of a tileset.';
COMMENT ON COLUMN publish.tiles.md5 IS
	'Optional MD5 of the same bytes as sha256 (build_tiles fills it): an S3 copy is then verified by its ETag, without downloading the tile.';
SELECT pg_catalog.pg_extension_config_dump('publish.tiles', '');

-- ---------------------------------------------------------------------------
-- Storage targets
-- ---------------------------------------------------------------------------

CREATE TABLE publish.storage_targets (
	env        text PRIMARY KEY
	           CONSTRAINT storage_targets_env_format CHECK (env ~ '^[a-z0-9][a-z0-9_-]*$' AND length(env) <= 63),
	url        text NOT NULL,
	options    jsonb NOT NULL DEFAULT '{}'
	           CONSTRAINT storage_targets_options_object CHECK (jsonb_typeof(options) = 'object'),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE publish.storage_targets IS
	'Where each environment publishes to; set with publish.set_storage_target().';
SELECT pg_catalog.pg_extension_config_dump('publish.storage_targets', '');

-- Secrets live apart from the targets so that the targets can be readable
-- while the secrets are not: no view shows this table, and only its owner
-- (the superuser who created the extension, and the worker) can read it.
CREATE TABLE publish.storage_credentials (
	env        text PRIMARY KEY REFERENCES publish.storage_targets (env) ON DELETE CASCADE,
	key_id     text,
	secret     text NOT NULL,
	session_token text,
	updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON publish.storage_credentials FROM PUBLIC;
COMMENT ON TABLE publish.storage_credentials IS
	'Secrets of the storage targets; never shown by a view, a job or a log.';
SELECT pg_catalog.pg_extension_config_dump('publish.storage_credentials', '');

-- ---------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------

CREATE TABLE publish.job_queue (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	job_type     text NOT NULL CONSTRAINT job_queue_type_valid CHECK (job_type IN ('publish', 'build_tiles')),
	status       text NOT NULL DEFAULT 'queued'
	             CONSTRAINT job_queue_status_valid
	             CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
	progress     integer NOT NULL DEFAULT 0 CONSTRAINT job_queue_progress_range CHECK (progress BETWEEN 0 AND 100),
	params       jsonb NOT NULL DEFAULT '{}',
	result       jsonb,
	error        text,
	project_id   uuid REFERENCES publish.projects (id) ON DELETE SET NULL,
	version_id   uuid REFERENCES publish.project_versions (id) ON DELETE SET NULL,
	env          text,
	attempts     integer NOT NULL DEFAULT 0,
	cancel_requested boolean NOT NULL DEFAULT false,
	created_by   text NOT NULL DEFAULT current_user,
	created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	started_at   timestamptz,
	completed_at timestamptz,
	-- the job may have changed what readers see on storage, and has not
	-- recorded it yet: a failure puts the live release back (worker)
	switched     boolean NOT NULL DEFAULT false,
	-- a queued job that waits for this older job of its project and
	-- environment to end (publish._claim_job); NULL: it may be claimed
	blocked_by   uuid
);
CREATE INDEX job_queue_ready_idx ON publish.job_queue (created_at, id)
	WHERE status = 'queued' AND blocked_by IS NULL;
-- the running jobs: recovery reads them all, the claim those of a target
CREATE INDEX job_queue_running_idx ON publish.job_queue (project_id, env)
	WHERE status = 'running';
CREATE INDEX job_queue_version_idx ON publish.job_queue (version_id);
-- jobs of one project and environment run one at a time, in order
CREATE INDEX job_queue_target_idx ON publish.job_queue (project_id, env, created_at, id)
	WHERE status IN ('queued', 'running');
CREATE INDEX job_queue_blocked_idx ON publish.job_queue (blocked_by)
	WHERE blocked_by IS NOT NULL;
-- retention deletes finished jobs oldest first
CREATE INDEX job_queue_finished_idx ON publish.job_queue (completed_at)
	WHERE status IN ('completed', 'failed', 'cancelled');
COMMENT ON TABLE publish.job_queue IS
	'Every job, queued, running or finished; read it through the publish.jobs view.';
SELECT pg_catalog.pg_extension_config_dump('publish.job_queue', '');

CREATE TABLE publish.job_log (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_id    uuid NOT NULL REFERENCES publish.job_queue (id) ON DELETE CASCADE,
	logged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	level     text NOT NULL CONSTRAINT job_log_level_valid CHECK (level IN ('info', 'warn', 'error')),
	message   text NOT NULL,
	progress  integer			-- the job's progress when the entry was written
);
CREATE INDEX job_log_job_idx ON publish.job_log (job_id, id);
COMMENT ON TABLE publish.job_log IS 'Log entries of the jobs, shown as publish.jobs.logs.';
SELECT pg_catalog.pg_extension_config_dump('publish.job_log', '');
SELECT pg_catalog.pg_extension_config_dump('publish.job_log_id_seq', '');

CREATE VIEW publish.jobs AS
SELECT j.id,
       j.job_type,
       j.status,
       j.progress,
       j.params,
       j.result,
       j.error,
       coalesce((SELECT jsonb_agg(jsonb_build_object('timestamp', l.logged_at,
                                                     'level', l.level,
                                                     'message', l.message,
                                                     'progress', l.progress)
                                  ORDER BY l.id)
                   FROM publish.job_log l
                  WHERE l.job_id = j.id), '[]'::jsonb) AS logs,
       j.created_at,
       j.started_at,
       j.completed_at,
       j.attempts,
       j.created_by,
       j.cancel_requested
  FROM publish.job_queue j;
COMMENT ON VIEW publish.jobs IS
	'Jobs to poll: status queued|running|completed|failed|cancelled, progress 0-100, logs [{timestamp, level, message, progress}].';

-- Every change of a job's state or progress is announced on channel
-- publish_jobs, so that clients can LISTEN instead of polling.  Not the
-- INSERT of a queued job: PostgreSQL holds one cluster-wide lock from the
-- pre-commit of a transaction that notifies until its commit record is
-- flushed, so a NOTIFY in publish_version would make every request's
-- durable commit wait for every other notifying commit (no group commit),
-- and the workers' commits wait behind the requests' (docs/performance.md,
-- "Throughput").  The caller has the queued job in hand; listeners hear of
-- it when it starts.  The trigger is C (src/queue/job_notify.c); it runs no
-- SQL and resolves no name, so its search_path is not pinned (a pinned path
-- costs a GUC save and restore for every progress write of every job).
CREATE FUNCTION publish._notify_job_change()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'publish_notify_job_change';
COMMENT ON FUNCTION publish._notify_job_change() IS
	'Internal: NOTIFY publish_jobs, {"id", "status", "progress"} on every change of a job''s state or progress (not when it is queued).';

CREATE TRIGGER job_queue_notify
	AFTER UPDATE OF status, progress ON publish.job_queue
	FOR EACH ROW EXECUTE FUNCTION publish._notify_job_change();

-- Every job queued wakes a worker at commit, however it was queued:
-- publish_version and build_tiles, but also a superuser's INSERT, a
-- restore's COPY, a job set back to 'queued' by hand; so does a row
-- inserted as 'running' (restored from a dump taken while it ran): the
-- sweep that follows the wake-up finds that no worker runs it and queues
-- it again.  Only rows written with triggers off (session_replication_role
-- = replica, as logical replication's apply and pg_restore
-- --disable-triggers write) wait for the backstop sweep,
-- publish.sweep_backstop.  The workers' claims and progress writes do not
-- call it (a recovery that queues a job again does, and wakes a sibling).
-- C, and its search_path not pinned, as for job_queue_notify (it runs for
-- every job queued and every row of a restore's COPY).
CREATE FUNCTION publish._wake_worker_on_queued()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'publish_wake_worker_on_queued';
COMMENT ON FUNCTION publish._wake_worker_on_queued() IS
	'Internal: wake this database''s publish worker when a transaction that queued a job commits.';

CREATE TRIGGER job_queue_wake
	AFTER INSERT ON publish.job_queue
	FOR EACH ROW WHEN (NEW.status IN ('queued', 'running'))
	EXECUTE FUNCTION publish._wake_worker_on_queued();
CREATE TRIGGER job_queue_wake_requeued
	AFTER UPDATE OF status, blocked_by ON publish.job_queue
	FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.blocked_by IS NULL)
	EXECUTE FUNCTION publish._wake_worker_on_queued();

-- The oldest job that may run now, claimed for the worker with pid
-- worker_pid (called by the worker alone, in its claim transaction).
--
-- The jobs of one project and environment run one at a time, in the order
-- they were asked for, without a scan of the queue per claim.  A job is
-- queued claimable (blocked_by NULL).  The claim walks claimable jobs
-- oldest first (job_queue_ready_idx, FOR UPDATE SKIP LOCKED); one whose
-- project and environment have an older active job, or a running one, is
-- marked blocked_by that job (the newest such), which then holds it: when
-- that job leaves 'queued' and 'running', job_queue_unblock makes the jobs
-- it blocks claimable again.  So a job is walked over once per job ahead
-- of it, and a claim's cost does not grow with the queue.  The blocker is
-- locked (FOR SHARE) before the mark, and a job's status changes only
-- under its row lock: either the blocker's end comes after the mark, and
-- its unblock sees it, or before, and the mark is not made.  A blocker
-- locked by someone else is passed over this time.  Its queries are
-- planned at every call: a plan kept from when the queue was short would
-- walk a deep one (bench/deep_queue.sh).
--
CREATE FUNCTION publish._claim_job(worker_pid integer, max_attempts integer)
RETURNS SETOF publish.job_queue
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
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
COMMENT ON FUNCTION publish._claim_job(integer, integer) IS
	'Internal: claims the oldest job that may run now, for the worker.';

-- A job that leaves 'queued' and 'running' (or is deleted) lets the jobs it
-- blocked be claimed (see publish._claim_job).  Every mark on it is
-- cleared, those of jobs that ended while they waited too: so the query
-- names no status, and job_queue_blocked_idx is the only index that can
-- answer it, whatever the statistics said when its plan was made (the
-- active jobs' index, which would also match, is walked whole).
CREATE FUNCTION publish._unblock_jobs()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE publish.job_queue q SET blocked_by = NULL
	 WHERE q.blocked_by = OLD.id;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION publish._unblock_jobs() IS
	'Internal: a job that ended, or was deleted, lets the jobs it blocked be claimed.';

CREATE TRIGGER job_queue_unblock
	AFTER UPDATE OF status ON publish.job_queue
	FOR EACH ROW WHEN (OLD.status IN ('queued', 'running')
	                   AND NEW.status NOT IN ('queued', 'running'))
	EXECUTE FUNCTION publish._unblock_jobs();
CREATE TRIGGER job_queue_unblock_deleted
	AFTER DELETE ON publish.job_queue
	FOR EACH ROW WHEN (OLD.status IN ('queued', 'running'))
	EXECUTE FUNCTION publish._unblock_jobs();

-- ---------------------------------------------------------------------------
-- Releases: what is live in each environment
-- ---------------------------------------------------------------------------

CREATE TABLE publish.live_releases (
	project_id   uuid NOT NULL REFERENCES publish.projects (id) ON DELETE CASCADE,
	env          text NOT NULL,
	version_id   uuid NOT NULL REFERENCES publish.project_versions (id) ON DELETE CASCADE,
	published_at timestamptz NOT NULL,
	release_url  text NOT NULL,
	job_id       uuid REFERENCES publish.job_queue (id) ON DELETE SET NULL,
	PRIMARY KEY (project_id, env)
);
COMMENT ON TABLE publish.live_releases IS 'One row per project and environment: the live version.';

CREATE VIEW publish.releases AS
SELECT p.slug AS project,
       v.version_number AS version,
       r.env,
       r.published_at,
       r.release_url,
       r.job_id,
       r.project_id,
       r.version_id
  FROM publish.live_releases r
  JOIN publish.projects p ON p.id = r.project_id
  JOIN publish.project_versions v ON v.id = r.version_id;
COMMENT ON VIEW publish.releases IS 'What is live in each environment: project, version, env, published_at, release_url, job id.';
SELECT pg_catalog.pg_extension_config_dump('publish.live_releases', '');

-- ---------------------------------------------------------------------------
-- C entry points (internal; called by the functions below)
-- ---------------------------------------------------------------------------

CREATE FUNCTION publish._wake_worker_at_commit()
RETURNS void
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_wake_worker_at_commit';
COMMENT ON FUNCTION publish._wake_worker_at_commit() IS
	'Internal: wake this database''s publish worker when the calling transaction commits.';

CREATE FUNCTION publish._job_ended_at_commit()
RETURNS void
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_job_ended_at_commit_sql';
COMMENT ON FUNCTION publish._job_ended_at_commit() IS
	'Internal: wake wait_job() sleepers when this transaction commits (it ended a job without a worker).';

CREATE FUNCTION publish._cancel_worker_at_commit(job uuid)
RETURNS void
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_cancel_worker_at_commit_sql';
COMMENT ON FUNCTION publish._cancel_worker_at_commit(uuid) IS
	'Internal: interrupt the worker that runs a cancelled job when this transaction commits, if one runs it then (cancel_job).';

CREATE FUNCTION publish._job_event_prepare()
RETURNS void
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_job_event_prepare';
COMMENT ON FUNCTION publish._job_event_prepare() IS
	'Internal: start listening for the end of a job in this database (see wait_job).';

CREATE FUNCTION publish._job_event_sleep(timeout_ms integer)
RETURNS void
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_job_event_sleep';
COMMENT ON FUNCTION publish._job_event_sleep(integer) IS
	'Internal: sleep until a job of this database ends or timeout_ms passes (see wait_job).';

CREATE FUNCTION publish._release_document(version_id uuid, env text, published_at timestamptz)
RETURNS json
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_release_document';
COMMENT ON FUNCTION publish._release_document(uuid, text, timestamptz) IS
	'Internal: release.json of a version for an environment, exactly as the worker writes it.';

CREATE FUNCTION publish._validation_problems(version_id uuid)
RETURNS SETOF text
LANGUAGE c VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_validation_problems';
COMMENT ON FUNCTION publish._validation_problems(uuid) IS
	'Internal: every problem that stops a version from being published.';

-- Called twice for every overlay of a release by _check_release_limits, and
-- it resolves no name: its search_path is not pinned (a pinned path costs a
-- GUC save and restore per call).
CREATE FUNCTION publish._jsonb_text_size(value jsonb)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'publish_jsonb_text_size';
COMMENT ON FUNCTION publish._jsonb_text_size(jsonb) IS
	'Internal: octet_length(value::text), counted without making the text.';

-- Internal: the storage code from SQL, for superusers (bench/, tests).
CREATE FUNCTION publish._storage_put(env text, key text, data bytea,
                                     content_type text DEFAULT 'application/octet-stream',
                                     cache_control text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_storage_put';
REVOKE ALL ON FUNCTION publish._storage_put(text, text, bytea, text, text) FROM PUBLIC;
COMMENT ON FUNCTION publish._storage_put(text, text, bytea, text, text) IS
	'Internal, superusers only: writes data at key on env''s storage target, as the worker would (used by the benchmark and the tests).';

-- Internal: the plan of a tile build, for the tests (granted to no one).
CREATE FUNCTION publish._tile_plan(w integer, h integer, tile_size integer, min_zoom integer, max_zoom integer)
RETURNS jsonb
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'publish_tile_plan';
REVOKE ALL ON FUNCTION publish._tile_plan(integer, integer, integer, integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION publish._tile_plan(integer, integer, integer, integer, integer) IS
	'Internal, superusers only: the levels a tile build of a w x h source image would upload, as [[zoom, columns, rows, tiles], ...], or the error it would fail with (22023; PT413 over publish.max_tiles).';

-- ---------------------------------------------------------------------------
-- Argument checks and limits, shared by the entry points
-- ---------------------------------------------------------------------------

-- The version row of slug/version, or a PT404 (HTTP 404) error.
CREATE FUNCTION publish._resolve_version(slug text, version integer)
RETURNS publish.project_versions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	proj publish.projects;
	ver  publish.project_versions;
	existing text;
BEGIN
	IF slug IS NULL OR version IS NULL THEN
		RAISE EXCEPTION 'project slug and version number must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF slug !~ '^[a-z0-9]+(-[a-z0-9]+)*$' OR length(slug) > 63 THEN
		RAISE EXCEPTION 'invalid project slug "%"', publish._shown(slug)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A slug is lowercase letters, digits and hyphens, such as "campus" or "city-center".';
	END IF;
	IF version <= 0 THEN
		RAISE EXCEPTION 'invalid version number %', version
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Version numbers start at 1.';
	END IF;

	SELECT * INTO proj FROM publish.projects p WHERE p.slug = _resolve_version.slug;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'project "%" does not exist', slug
			USING ERRCODE = 'PT404',
			      HINT = 'SELECT slug FROM publish.projects lists the projects.';
	END IF;

	SELECT * INTO ver FROM publish.project_versions v
	 WHERE v.project_id = proj.id AND v.version_number = _resolve_version.version;
	IF NOT FOUND THEN
		SELECT string_agg(v.version_number::text, ', ' ORDER BY v.version_number) INTO existing
		  FROM publish.project_versions v WHERE v.project_id = proj.id;
		RAISE EXCEPTION 'version % of project "%" does not exist', version, slug
			USING ERRCODE = 'PT404',
			      DETAIL = CASE WHEN existing IS NULL THEN 'The project has no versions.'
			                    ELSE format('Its versions are: %s.', existing) END;
	END IF;
	RETURN ver;
END
$$;

-- Checks that env is a well-formed environment name, or raises (22004/22023).
CREATE FUNCTION publish._check_env_name(env text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF env IS NULL THEN
		RAISE EXCEPTION 'environment must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF env !~ '^[a-z0-9][a-z0-9_-]*$' OR length(env) > 63 THEN
		RAISE EXCEPTION 'invalid environment name "%"', publish._shown(env)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An environment name is lowercase letters, digits, "-" and "_", such as "staging".';
	END IF;
END
$$;

-- Checks that env names a configured storage target, or raises.
CREATE FUNCTION publish._check_env(env text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text;
BEGIN
	PERFORM publish._check_env_name(env);
	IF NOT EXISTS (SELECT 1 FROM publish.storage_targets t WHERE t.env = _check_env.env) THEN
		SELECT string_agg(t.env, ', ' ORDER BY t.env) INTO known FROM publish.storage_targets t;
		RAISE EXCEPTION 'environment "%" has no storage target', env
			USING ERRCODE = 'PT404',
			      DETAIL = CASE WHEN known IS NULL THEN 'No environment has a storage target yet.'
			                    ELSE format('Configured environments: %s.', known) END,
			      HINT = format('Configure one with SELECT publish.set_storage_target(%L, ''file:///srv/maps'');', env);
	END IF;
END
$$;

-- Checks a storage URL (and the URLs in its options) for what no target
-- may have, whatever its scheme: credentials (user:password@, readable by
-- every role that reads the targets), control characters or spaces, dot
-- segments ("." and "..", plain or percent-encoded, %2f counting as a
-- slash: libcurl and servers resolve them, so s3://bucket/a/../../x would
-- reach outside the bucket; a run of dots counts as one, as in storage
-- paths), and absurd lengths.  Scheme-specific checks follow in the
-- caller.  The worker checks dot segments again when it loads a target.
CREATE FUNCTION publish._check_storage_url(url text, options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	u text;
	what text;
BEGIN
	FOR what, u IN
		SELECT 'storage URL', url
		UNION ALL
		SELECT format('option %s', k), options ->> k
		  FROM unnest(ARRAY['public_url', 'endpoint']) AS k
		 WHERE jsonb_typeof(options -> k) = 'string'
	LOOP
		IF length(u) > 2048 THEN
			RAISE EXCEPTION 'invalid %: % characters, at most 2048 are allowed', what, length(u)
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF u ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@' THEN
			RAISE EXCEPTION 'invalid storage URL: credentials do not belong in the URL'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Set them with publish.set_storage_credentials(env, user, password); the URL is readable by others.';
		END IF;
		IF u ~ '[[:cntrl:][:space:]\\]' THEN
			RAISE EXCEPTION 'invalid %: it contains spaces, control characters or backslashes', what
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF u ~* '(^|/|%2f)(\.|%2e)+(/|%2f|[?#]|$)' THEN
			RAISE EXCEPTION 'invalid %: it contains a "." or ".." segment', what
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'HTTP clients and servers resolve dot segments, plain or percent-encoded, so the target would reach outside the path it names.',
				      HINT = 'Name the directory, bucket prefix or path without "." and ".." segments.';
		END IF;
	END LOOP;
	IF jsonb_typeof(options -> 'public_url') = 'string'
	   AND options ->> 'public_url' !~* '^(https?://[^/?#]+(/.*)?|file:///.*)$' THEN
		RAISE EXCEPTION 'invalid option public_url "%"', publish._shown(options ->> 'public_url')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'public_url is the http(s) URL readers use for the target''s root, such as https://cdn.example.com/maps.';
	END IF;
END
$$;
COMMENT ON FUNCTION publish._check_storage_url(text, jsonb) IS
	'Internal: refuses storage URLs with credentials, control characters, spaces or dot segments, plain or percent-encoded (22023).';

-- Resource limits: a release whose release.json would be larger than
-- publish.max_release_size, or whose tileset has more tiles than
-- publish.max_tiles, is refused with PT413 (HTTP 413) before anything is
-- loaded into memory: at call time by publish_version and validate_version
-- (release_input.c).  The size is an estimate from the rows, computed row
-- by row (no row set is held); the text of geometry and properties is
-- counted, never made (publish._jsonb_text_size: jsonb stores 1e131071 in a
-- few bytes, and its text has 131,072).  The worker checks again, since the
-- content can grow after a job is queued, but not with this estimate (a
-- pass over every overlay): it counts the tiles, and stops writing
-- release.json, with PT413, before the bytes it writes would go over
-- publish.max_release_size (release_text.c).  build_release, which writes
-- the same document, checks as the worker does.
CREATE FUNCTION publish._check_release_limits(version_id uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	max_bytes bigint := pg_size_bytes(coalesce(current_setting('publish.max_release_size', true), '16MB'));
	max_tiles bigint := coalesce(current_setting('publish.max_tiles', true), '1000000')::bigint;
	n_bytes   bigint;
	n_tiles   bigint;
	what      text;
BEGIN
	SELECT 1024
	       + coalesce((SELECT sum(octet_length(o.key) + octet_length(o.name) + octet_length(o.overlay_type)
	                              + publish._jsonb_text_size(o.geometry)
	                              + publish._jsonb_text_size(o.properties) + 128)
	                     FROM publish.overlays o WHERE o.version_id = _check_release_limits.version_id), 0)
	       + coalesce((SELECT sum(octet_length(a.key) + octet_length(a.kind) + 2 * octet_length(a.storage_path)
	                              + octet_length(a.content_type) + 256)
	                     FROM publish.assets a WHERE a.version_id = _check_release_limits.version_id), 0),
	       (SELECT count(*) FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
	         WHERE s.version_id = _check_release_limits.version_id)
	  INTO n_bytes, n_tiles;
	IF n_bytes <= max_bytes AND n_tiles <= max_tiles THEN
		RETURN;
	END IF;
	SELECT format('version %s of project "%s"', v.version_number, p.slug) INTO what
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
	 WHERE v.id = _check_release_limits.version_id;
	IF n_bytes > max_bytes THEN
		RAISE EXCEPTION '% is too large to publish: its release.json would be about %, over publish.max_release_size (%)',
		                what, pg_size_pretty(n_bytes), pg_size_pretty(max_bytes)
			USING ERRCODE = 'PT413',
			      HINT = 'Split its overlays over projects, simplify their geometry, or ask a superuser to raise publish.max_release_size.';
	END IF;
	RAISE EXCEPTION '% is too large to publish: its tileset has % tiles, over publish.max_tiles (%)',
	                what, n_tiles, max_tiles
		USING ERRCODE = 'PT413',
		      HINT = 'Reduce the zoom range or the bounds of the tileset, or ask a superuser to raise publish.max_tiles.';
END
$$;
COMMENT ON FUNCTION publish._check_release_limits(uuid) IS
	'Internal: refuses a version over publish.max_release_size or publish.max_tiles (PT413) before it is loaded.';

-- ---------------------------------------------------------------------------
-- Public entry points
-- ---------------------------------------------------------------------------

CREATE FUNCTION publish.publish_version(slug text, version integer, env text DEFAULT 'production')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
	ver    publish.project_versions;
	dup    record;
	job_id uuid;
	job    publish.jobs;
	requester text := publish._requesting_role();	-- SECURITY DEFINER: not current_user
	sub    text := publish._requesting_sub();
BEGIN
	ver := publish._resolve_version(slug, version);
	PERFORM publish._check_env(env);
	IF ver.status NOT IN ('ready', 'published') THEN
		RAISE EXCEPTION 'version % of project "%" is %, so it cannot be published', version, slug, ver.status
			USING ERRCODE = 'PT409',
			      DETAIL = 'Only a version whose status is ready or published can be published.',
			      HINT = CASE ver.status
			             WHEN 'draft' THEN format('Mark it ready first: UPDATE publish.project_versions SET status = ''ready'' WHERE id = %L;', ver.id)
			             ELSE 'An archived version stays archived; publish a newer version instead.' END;
	END IF;

	PERFORM publish._check_release_limits(ver.id);

	-- Fails with a hint when publish is not in shared_preload_libraries,
	-- before anything is written.
	PERFORM publish._wake_worker_at_commit();

	-- Requests for one project are taken one at a time (until commit), so
	-- their jobs are created, and run, in request order: the project's row
	-- is locked (a lock the worker never takes).  That needs each request
	-- to see the ones committed before it.
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'publish_version needs READ COMMITTED isolation'
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'With a snapshot older than other sessions'' requests it could not put this one after them.';
	END IF;
	PERFORM 1 FROM publish.projects p WHERE p.id = ver.project_id FOR NO KEY UPDATE;

	-- The same version already queued or running, with nothing asked after
	-- it, is the answer: no second job.  If other requests came after it,
	-- this one must run last: a queued duplicate is superseded, and a new
	-- job is queued behind the others.  (The queries are planned at every
	-- call, with the queue as it is: a plan kept by a pooled session from
	-- when the queue was short would walk a deep one.)
	SELECT q.id, q.status, q.created_at INTO dup
	  FROM publish.job_queue q
	 WHERE q.project_id = ver.project_id AND q.env = publish_version.env
	   AND q.job_type = 'publish' AND q.version_id = ver.id
	   AND q.status IN ('queued', 'running') AND NOT q.cancel_requested
	 ORDER BY q.created_at DESC LIMIT 1;
	IF FOUND AND NOT EXISTS (SELECT 1 FROM publish.job_queue o
	                          WHERE o.project_id = ver.project_id AND o.env = publish_version.env
	                            AND o.status = 'queued' AND o.created_at > dup.created_at) THEN
		job_id := dup.id;
	ELSE
		IF FOUND AND dup.status = 'queued' THEN
			-- unless a worker claimed it meanwhile, or it switched release.json
			-- before its worker stopped (it must run to complete or put the
			-- live release back): then it runs, and ours after
			WITH superseded AS (
				UPDATE publish.job_queue q
				   SET status = 'cancelled', completed_at = clock_timestamp(),
				       error = 'superseded: the same publish was asked for again after other publishes'
				 WHERE q.id = dup.id AND q.status = 'queued' AND NOT q.switched
				RETURNING q.id, q.error, q.progress)
			INSERT INTO publish.job_log (job_id, level, message, progress)
			SELECT id, 'warn', error, progress FROM superseded;
			IF FOUND THEN
				PERFORM publish._job_ended_at_commit();
			END IF;
		END IF;
		-- the new job as publish.jobs shows it (no log yet), without reading
		-- it back through the view
		INSERT INTO publish.job_queue AS q (job_type, params, project_id, version_id, env, created_by)
		VALUES ('publish',
		        jsonb_build_object('project_slug', slug,
		                           'version_number', version,
		                           'target_env', env,
		                           'requested_by', requester)
		        || CASE WHEN sub IS NULL THEN '{}'::jsonb
		                ELSE jsonb_build_object('requested_sub', sub) END,
		        ver.project_id, ver.id, env, requester)
		RETURNING q.id, q.job_type, q.status, q.progress, q.params, q.result, q.error, '[]'::jsonb,
		          q.created_at, q.started_at, q.completed_at, q.attempts, q.created_by, q.cancel_requested
		INTO job;
		RETURN job;
	END IF;

	SELECT * INTO job FROM publish.jobs j WHERE j.id = job_id;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.publish_version(text, integer, text) IS
	'Queues a job that publishes version N of project slug to environment env; returns the job. The worker starts it when the calling transaction commits. SECURITY DEFINER: publish_admin may call it.';

-- Tiles are built onto a storage target: the source image (the version's
-- base_map asset) is read from env's target and the tiles land there, at
-- {env}/{slug}/builds/v{N}/tiles/ (docs/tiles.md).
CREATE FUNCTION publish.build_tiles(slug text, version integer, env text DEFAULT 'production')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
	ver    publish.project_versions;
	n_maps bigint;
	job_id uuid;
	job    publish.jobs;
	requester text := publish._requesting_role();	-- SECURITY DEFINER: not current_user
	sub    text := publish._requesting_sub();
BEGIN
	ver := publish._resolve_version(slug, version);
	PERFORM publish._check_env(env);
	IF ver.status = 'archived' THEN
		RAISE EXCEPTION 'version % of project "%" is archived, so its tiles cannot be built', version, slug
			USING ERRCODE = 'PT409',
			      DETAIL = 'Tiles are built for draft, ready and published versions.',
			      HINT = 'An archived version stays archived; build the tiles of a newer version instead.';
	END IF;
	SELECT count(*) INTO n_maps FROM publish.assets a
	 WHERE a.version_id = ver.id AND a.kind = 'base_map';
	IF n_maps = 0 THEN
		RAISE EXCEPTION 'version % of project "%" has no source image to build tiles from', version, slug
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Add the image (PNG, JPEG or TIFF, on the storage target) as an asset of kind base_map.';
	ELSIF n_maps > 1 THEN
		RAISE EXCEPTION 'version % of project "%" has % assets of kind base_map', version, slug, n_maps
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Tiles are built from exactly one source image: keep one base_map asset.';
	END IF;

	PERFORM publish._wake_worker_at_commit();

	-- Ordered with the publishes of the same project and environment, as
	-- publish_version orders them (see there).
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'build_tiles needs READ COMMITTED isolation'
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'With a snapshot older than other sessions'' requests it could not put this one after them.';
	END IF;
	PERFORM 1 FROM publish.projects p WHERE p.id = ver.project_id FOR NO KEY UPDATE;

	-- the same build already waiting is the answer (looked up by project
	-- and environment first, as publish_version's duplicate)
	SELECT q.id INTO job_id FROM publish.job_queue q
	 WHERE q.project_id = ver.project_id AND q.env = build_tiles.env
	   AND q.job_type = 'build_tiles' AND q.version_id = ver.id
	   AND q.status = 'queued' AND NOT q.cancel_requested;
	IF NOT FOUND THEN
		INSERT INTO publish.job_queue AS q (job_type, params, project_id, version_id, env, created_by)
		VALUES ('build_tiles',
		        jsonb_build_object('project_slug', slug,
		                           'version_number', version,
		                           'target_env', env,
		                           'requested_by', requester)
		        || CASE WHEN sub IS NULL THEN '{}'::jsonb
		                ELSE jsonb_build_object('requested_sub', sub) END,
		        ver.project_id, ver.id, env, requester)
		RETURNING q.id INTO job_id;
	END IF;

	SELECT * INTO job FROM publish.jobs j WHERE j.id = job_id;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.build_tiles(text, integer, text) IS
	'Queues a job that builds the tiles of version N of project slug from its base_map asset, on env''s storage target; returns the job. SECURITY DEFINER: publish_admin may call it.';

CREATE FUNCTION publish.build_release(slug text, version integer, env text DEFAULT 'production',
                                      published_at timestamptz DEFAULT now())
RETURNS json
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ver publish.project_versions;
BEGIN
	ver := publish._resolve_version(slug, version);
	PERFORM publish._check_env(env);
	IF published_at IS NULL THEN
		RAISE EXCEPTION 'published_at must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	RETURN publish._release_document(ver.id, env, published_at);
END
$$;
COMMENT ON FUNCTION publish.build_release(text, integer, text, timestamptz) IS
	'The release.json that publishing this version to env would write, byte for byte, as json (a preview; nothing is published).';

CREATE FUNCTION publish.validate_version(slug text, version integer)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ver publish.project_versions;
BEGIN
	ver := publish._resolve_version(slug, version);
	RETURN QUERY SELECT * FROM publish._validation_problems(ver.id);
END
$$;
COMMENT ON FUNCTION publish.validate_version(text, integer) IS
	'Every problem that would make publishing this version fail; no rows when it is valid.';

CREATE FUNCTION publish.set_storage_target(env text, url text, options jsonb DEFAULT '{}')
RETURNS publish.storage_targets
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target publish.storage_targets;
	scheme text;
BEGIN
	IF env IS NULL OR url IS NULL OR options IS NULL THEN
		RAISE EXCEPTION 'env, url and options must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM publish._check_env_name(env);
	IF jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM publish._check_storage_url(url, options);	-- see "Security"

	scheme := lower(substring(url FROM '^([A-Za-z][A-Za-z0-9+.-]*)://'));
	IF scheme IS NULL THEN
		RAISE EXCEPTION 'invalid storage URL "%"', publish._shown(url)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use file:///absolute/directory, http(s)://host/prefix or s3://bucket/prefix.';
	ELSIF scheme = 'file' THEN
		IF url !~* '^file:///' OR url ~ '(^|/)\.\.(/|$)' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', publish._shown(url)
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'A file URL names an absolute directory on the database server, without "..".',
				      HINT = 'Use file:///absolute/directory, such as file:///srv/maps.';
		END IF;
	ELSIF scheme IN ('http', 'https') THEN
		IF url ~ '^[A-Za-z]+://[^/]*@' THEN
			RAISE EXCEPTION 'invalid storage URL: credentials do not belong in the URL'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Set them with publish.set_storage_credentials(env, user, password); the URL is readable by others.';
		END IF;
		IF url !~* '^https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?(/[^?#[:space:]]*)?$' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', url
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'An HTTP target is a host, an optional port and an optional path prefix, without query or fragment.',
				      HINT = 'Use http(s)://host[:port]/prefix, such as https://dav.example.com/maps.';
		END IF;
	ELSIF scheme = 's3' THEN
		IF url !~ '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#[:space:]]*)?$' THEN
			RAISE EXCEPTION 'invalid storage URL "%"', url
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = 'An S3 target is a bucket name (3 to 63 lowercase letters, digits, dots and hyphens) and an optional key prefix.',
				      HINT = 'Use s3://bucket/prefix, with options endpoint, region and path_style.';
		END IF;
		IF options ? 'endpoint' AND (jsonb_typeof(options->'endpoint') <> 'string'
		   OR options->>'endpoint' !~* '^https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?/?$') THEN
			RAISE EXCEPTION 'invalid S3 endpoint %', options->'endpoint'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The endpoint is scheme://host[:port], such as http://127.0.0.1:9000.';
		END IF;
		IF options ? 'region' AND (jsonb_typeof(options->'region') <> 'string'
		   OR options->>'region' !~ '^[a-z0-9-]+$') THEN
			RAISE EXCEPTION 'invalid S3 region %', options->'region'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'A region is lowercase letters, digits and hyphens, such as eu-central-1.';
		END IF;
		IF options ? 'path_style' AND jsonb_typeof(options->'path_style') <> 'boolean' THEN
			RAISE EXCEPTION 'invalid S3 option path_style %', options->'path_style'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'path_style is true or false.';
		END IF;
	ELSE
		RAISE EXCEPTION 'unsupported storage scheme "%"', publish._shown(scheme)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use file:///absolute/directory, http(s)://host/prefix or s3://bucket/prefix.';
	END IF;
	IF options ? 'public_url' AND jsonb_typeof(options->'public_url') <> 'string' THEN
		RAISE EXCEPTION 'invalid option public_url %', options->'public_url'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'public_url is the URL readers use for the target''s root, such as https://cdn.example.com/maps.';
	END IF;

	-- drop trailing slashes, but keep the one of a root directory (file:///)
	WHILE url ~ '/$' AND url !~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*/$' LOOP
		url := left(url, -1);
	END LOOP;

	INSERT INTO publish.storage_targets AS t (env, url, options, updated_at)
	VALUES (env, url, options, now())
	ON CONFLICT ON CONSTRAINT storage_targets_pkey
	DO UPDATE SET url = excluded.url, options = excluded.options, updated_at = excluded.updated_at
	RETURNING * INTO target;
	RETURN target;
END
$$;
COMMENT ON FUNCTION publish.set_storage_target(text, text, jsonb) IS
	'Creates or replaces the storage target of an environment: file:///abs/dir, http(s)://host/prefix (HTTP PUT / WebDAV) or s3://bucket/prefix (options endpoint, region, path_style).';

CREATE FUNCTION publish.set_storage_credentials(env text, key_id text, secret text,
                                                session_token text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM publish._check_env(env);
	IF secret IS NULL THEN
		DELETE FROM publish.storage_credentials c WHERE c.env = set_storage_credentials.env;
		RETURN;
	END IF;
	INSERT INTO publish.storage_credentials AS c (env, key_id, secret, session_token, updated_at)
	VALUES (env, key_id, secret, session_token, now())
	ON CONFLICT ON CONSTRAINT storage_credentials_pkey
	DO UPDATE SET key_id = excluded.key_id, secret = excluded.secret,
	              session_token = excluded.session_token, updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION publish.set_storage_credentials(text, text, text, text) IS
	'Sets (or, with a NULL secret, removes) the secret of an environment''s storage target: HTTP basic auth user and password, a bearer token (key_id NULL), or an S3 access key id, secret key and optional session token; it is never readable back.';

CREATE FUNCTION publish.cancel_job(id uuid)
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	state    text;
	switched boolean;
	job      publish.jobs;
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'job id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the project's row first, as publish_version takes it before the
	-- queued job it may supersede: the two never wait for each other in turn
	PERFORM 1 FROM publish.projects p
	 WHERE p.id = (SELECT q.project_id FROM publish.job_queue q WHERE q.id = cancel_job.id)
	   FOR NO KEY UPDATE;
	SELECT q.status, q.switched INTO state, switched
	  FROM publish.job_queue q WHERE q.id = cancel_job.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', id USING ERRCODE = 'PT404';
	END IF;

	-- A queued job that switched release.json before its worker stopped
	-- (queued again after a crash) is cancelled by a worker, as a running
	-- one is: it puts the live release back first.
	IF state = 'queued' AND NOT switched THEN
		UPDATE publish.job_queue q
		   SET status = 'cancelled', cancel_requested = true, completed_at = clock_timestamp(),
		       error = format('cancelled by %s before it started', publish._requesting_role())
		 WHERE q.id = cancel_job.id;
		INSERT INTO publish.job_log (job_id, level, message, progress)
		SELECT q.id, 'warn', q.error, q.progress FROM publish.job_queue q WHERE q.id = cancel_job.id;
		PERFORM publish._job_ended_at_commit();
	ELSIF state IN ('queued', 'running')
	      AND NOT (SELECT q.cancel_requested FROM publish.job_queue q WHERE q.id = cancel_job.id) THEN
		-- the worker stops at its next checkpoint and marks the job cancelled;
		-- one in the middle of a transfer is interrupted at commit
		UPDATE publish.job_queue q SET cancel_requested = true WHERE q.id = cancel_job.id;
		INSERT INTO publish.job_log (job_id, level, message, progress)
		SELECT q.id, 'warn', format('cancel requested by %s', publish._requesting_role()), q.progress
		  FROM publish.job_queue q WHERE q.id = cancel_job.id;
		PERFORM publish._cancel_worker_at_commit(cancel_job.id);
	END IF;
	-- a finished job stays as it is

	SELECT * INTO job FROM publish.jobs j WHERE j.id = cancel_job.id;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.cancel_job(uuid) IS
	'Cancels a job: a queued one at once, a running one at its next checkpoint (nothing half-published, the version untouched); one queued again after it switched release.json once a worker has put the live release back. A finished job is returned unchanged.';

CREATE FUNCTION publish.purge_jobs(older_than interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM publish.job_queue q
	 WHERE q.status IN ('completed', 'failed', 'cancelled')
	   AND q.completed_at < now() - older_than;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION publish.purge_jobs(interval) IS
	'Deletes finished jobs (and their logs) that ended more than older_than ago; returns how many. The worker does this by itself for jobs older than publish.job_retention.';

CREATE FUNCTION publish.wait_job(id uuid, timeout interval DEFAULT '1 min')
RETURNS publish.jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deadline timestamptz;
	state    text;
	job      publish.jobs;
	left_ms  double precision;
BEGIN
	IF id IS NULL OR timeout IS NULL THEN
		RAISE EXCEPTION 'id and timeout must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- never longer than publish.max_job_wait: the caller's snapshot, held
	-- while it waits, holds back VACUUM
	deadline := clock_timestamp()
	            + least(timeout, coalesce(current_setting('publish.max_job_wait', true), '5min')::interval);
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'wait_job needs READ COMMITTED isolation'
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'In a snapshot-based transaction the job would never be seen to change.';
	END IF;
	LOOP
		-- listen first, then look: an end between the two still wakes us
		PERFORM publish._job_event_prepare();
		SELECT j.status INTO state FROM publish.jobs j WHERE j.id = wait_job.id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'job % does not exist', id USING ERRCODE = 'PT404';
		END IF;
		left_ms := extract(epoch FROM deadline - clock_timestamp()) * 1000;
		EXIT WHEN state NOT IN ('queued', 'running') OR left_ms <= 0;
		PERFORM publish._job_event_sleep(least(left_ms, 60000)::integer);
	END LOOP;
	SELECT * INTO job FROM publish.jobs j WHERE j.id = wait_job.id;
	RETURN job;
END
$$;
COMMENT ON FUNCTION publish.wait_job(uuid, interval) IS
	'Returns the job once it has ended (completed, failed or cancelled), or as it is when timeout (at most publish.max_job_wait) passes. Sleeps until the worker signals a job end: no polling.';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC, then what each role needs
-- ---------------------------------------------------------------------------

REVOKE ALL ON SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA publish FROM PUBLIC;

GRANT USAGE ON SCHEMA publish TO publish_viewer, publish_admin;
GRANT SELECT ON publish.projects, publish.project_versions, publish.assets, publish.overlays,
                publish.tilesets, publish.tiles, publish.jobs, publish.releases
	TO publish_viewer, publish_admin;
GRANT INSERT, UPDATE, DELETE ON publish.projects, publish.project_versions, publish.assets,
                                publish.overlays, publish.tilesets, publish.tiles
	TO publish_admin;
GRANT SELECT ON publish.storage_targets TO publish_admin;
GRANT EXECUTE ON FUNCTION
	publish.publish_version(text, integer, text),
	publish.build_tiles(text, integer, text),
	publish.build_release(text, integer, text, timestamptz),
	publish.validate_version(text, integer),
	publish._resolve_version(text, integer),
	publish._check_env_name(text),
	publish._check_env(text),
	publish._shown(text),
	publish._check_release_limits(uuid),
	publish._jsonb_text_size(jsonb),
	publish._release_document(uuid, text, timestamptz),
	publish._validation_problems(uuid),
	publish.cancel_job(uuid),
	publish.purge_jobs(interval)
	TO publish_admin;
GRANT EXECUTE ON FUNCTION
	publish.wait_job(uuid, interval),
	publish._job_event_prepare(),
	publish._job_event_sleep(integer)
	TO publish_viewer, publish_admin;

-- ---------------------------------------------------------------------------
-- Tell the launcher that this database now has the extension (at commit).
-- ---------------------------------------------------------------------------
SELECT publish._wake_worker_at_commit();
