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
 *   Retry                 publish.retry_job
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

-- A worker's final transaction records a live release under a ROW
-- EXCLUSIVE lock of live_releases, and only then looks at the installed
-- version (src/jobs/job_live.c): either it committed before this lock was
-- granted, and the history below is filled from its job, or it waits for
-- this upgrade's commit and records its history row itself.  Nothing is
-- recorded twice or lost.
LOCK TABLE publish.live_releases IN SHARE ROW EXCLUSIVE MODE;

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
-- Privileges: nothing for PUBLIC (as in 1.0), then what each role needs
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA publish FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA publish FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Wake the workers at commit: they look at the queue with the new objects.
-- ---------------------------------------------------------------------------
SELECT publish._wake_worker_at_commit();
