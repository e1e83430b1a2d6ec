/*-------------------------------------------------------------------------
 *
 * job_live.c
 *	  What is live: the record a job makes when it changes an environment's
 *	  live release (publish, rollback), in its final transaction.
 *
 * The row of publish.live_releases names the live version and its
 * document; from version 1.1 of the extension's objects a row of
 * publish.live_release_history records the change too: the version live
 * before, the job and who asked for it (the job's params), and the
 * document's published_at, URL and sha256.  A 1.0 install has no history:
 * between the restart with this library and ALTER EXTENSION ... UPDATE,
 * the record is what 1.0's was, and the upgrade fills the history from
 * the completed jobs.
 *
 * Which it is, is read once live_releases is locked (ROW EXCLUSIVE): the
 * upgrade script's first statement locks project_versions (which a
 * publish's final transaction writes first) and live_releases, in that
 * order, against writers.  So either this transaction waits for the
 * upgrade's commit and then sees 1.1, or the upgrade waits for this commit
 * and then finds the job among the completed ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "publish.h"
#include "jobs/jobs.h"
#include "util/util.h"

/*
 * Records, in the job's final transaction, that version_id is live in the
 * job's environment (see the file's comment).  false, with nothing
 * recorded, when the version no longer exists.
 */
bool
job_live_record(PublishJob *job, const LiveRelease *rel)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr plan_1_0 = NULL;
	static SPIPlanPtr plan_1_1 = NULL;
	Oid			types[7] = {UUIDOID, UUIDOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		history;
	int			rc;

	if (spi_execute_cached(&lock_plan, "LOCK TABLE publish.live_releases IN ROW EXCLUSIVE MODE",
						   0, NULL, NULL, NULL, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "publish: could not lock publish.live_releases");
	history = job_schema_version(NULL, CurrentMemoryContext) != JOB_SCHEMA_1_0;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	values[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(rel->project_id));
	values[2] = CStringGetTextDatum(job->env);
	values[3] = DirectFunctionCall1(uuid_in, CStringGetDatum(rel->version_id));
	values[4] = CStringGetTextDatum(rel->published_at);
	values[5] = CStringGetTextDatum(rel->release_url);
	if (rel->sha256 != NULL && rel->sha256[0] != '\0')
		values[6] = CStringGetTextDatum(rel->sha256);
	else
		nulls[6] = 'n';

	if (!history)
		rc = spi_execute_cached(&plan_1_0,
								"INSERT INTO publish.live_releases AS r"
								"       (project_id, env, version_id, published_at, release_url, job_id)"
								"SELECT $2, $3, v.id, $5::timestamptz, $6, $1"
								"  FROM publish.project_versions v WHERE v.id = $4"
								"    ON CONFLICT (project_id, env) DO UPDATE"
								"   SET version_id = excluded.version_id, published_at = excluded.published_at,"
								"       release_url = excluded.release_url, job_id = excluded.job_id",
								6, types, values, nulls, false, 0);
	else
		rc = spi_execute_cached(&plan_1_1,
								"WITH before AS ("
								"  SELECT v.version_number FROM publish.live_releases r"
								"    JOIN publish.project_versions v ON v.id = r.version_id"
								"   WHERE r.project_id = $2 AND r.env = $3"
								"), live AS ("
								"  INSERT INTO publish.live_releases AS r"
								"         (project_id, env, version_id, published_at, release_url, job_id)"
								"  SELECT $2, $3, v.id, $5::timestamptz, $6, $1"
								"    FROM publish.project_versions v WHERE v.id = $4"
								"      ON CONFLICT (project_id, env) DO UPDATE"
								"     SET version_id = excluded.version_id, published_at = excluded.published_at,"
								"         release_url = excluded.release_url, job_id = excluded.job_id"
								"  RETURNING r.version_id"
								")"
								"INSERT INTO publish.live_release_history"
								"       (project_id, env, version_id, version, previous_version, job_id, job_type,"
								"        requested_by, requested_sub, published_at, release_url, release_sha256)"
								"SELECT $2, $3, v.id, v.version_number, (SELECT version_number FROM before),"
								"       j.id, j.job_type, j.params->>'requested_by', j.params->>'requested_sub',"
								"       $5::timestamptz, $6, $7"
								"  FROM live"
								"  JOIN publish.project_versions v ON v.id = live.version_id"
								"  JOIN publish.job_queue j ON j.id = $1",
								7, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "publish: could not record the live release");
	return SPI_processed > 0;
}
