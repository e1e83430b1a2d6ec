/*-------------------------------------------------------------------------
 *
 * job_queue.c
 *	  The job queue as the worker uses it: claim the next job, record its
 *	  progress and log, its failure, and jobs interrupted by a crash.
 *
 * Every function here runs inside a short transaction opened with
 * job_txn_begin and closed with job_txn_commit; no transaction is open
 * while a job does file or network I/O.  Progress and log commits may be
 * asynchronous (a crash loses at most a progress figure, and the job is
 * retried); the commit that publishes is durable.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "job.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

void
job_txn_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
job_txn_commit(bool durable)
{
	if (!durable)
		(void) set_config_option("synchronous_commit", "off",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Is the extension installed in this database (as of this transaction)? */
bool
job_extension_present(void)
{
	return OidIsValid(get_extension_oid(PUBLISH_EXTENSION_NAME, true));
}

static void
exec_sql(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "publish: SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/*
 * Jobs left 'running' by a worker that is gone (this runs when a database's
 * worker starts, and only one runs per database) are queued again, or fail
 * once they have had publish.max_attempts attempts.
 */
void
job_recover_interrupted(void)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(publish_max_attempts)};

	exec_sql("WITH interrupted AS ("
			 "  SELECT id, attempts FROM publish.job_queue WHERE status = 'running' FOR UPDATE"
			 "), requeued AS ("
			 "  UPDATE publish.job_queue j SET status = 'queued', progress = 0, started_at = NULL"
			 "    FROM interrupted i WHERE j.id = i.id AND i.attempts < $1"
			 "  RETURNING j.id, j.attempts"
			 "), failed AS ("
			 "  UPDATE publish.job_queue j SET status = 'failed', completed_at = clock_timestamp(),"
			 "         error = format('interrupted: the worker stopped while the job was running,"
			 " %s of %s attempts used', i.attempts, $1)"
			 "    FROM interrupted i WHERE j.id = i.id AND i.attempts >= $1"
			 "  RETURNING j.id, j.error, j.progress"
			 ")"
			 "INSERT INTO publish.job_log (job_id, level, message, progress)"
			 " SELECT id, 'warn', format('interrupted: the worker stopped while the job was running"
			 " (attempt %s of %s); queued again', attempts, $1), 0 FROM requeued"
			 " UNION ALL SELECT id, 'error', error, progress FROM failed",
			 1, types, values, SPI_OK_INSERT);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("publish worker recovered %llu interrupted job(s)",
						(unsigned long long) SPI_processed)));
}

/*
 * Claims the oldest queued job (FOR UPDATE SKIP LOCKED) and marks it
 * running; NULL when there is none.  The job is allocated in mcxt.
 */
PublishJob *
job_claim_next(MemoryContext mcxt)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(MyProcPid), Int32GetDatum(publish_max_attempts)};
	PublishJob *job;
	HeapTuple	row;
	TupleDesc	desc;

	exec_sql("WITH claimed AS ("
			 "  UPDATE publish.job_queue j"
			 "     SET status = 'running', started_at = clock_timestamp(),"
			 "         attempts = j.attempts + 1, progress = 0"
			 "   WHERE j.id = (SELECT q.id FROM publish.job_queue q WHERE q.status = 'queued'"
			 "                  ORDER BY q.created_at, q.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
			 "  RETURNING j.id, j.job_type, j.version_id, j.env, j.attempts"
			 "), logged AS ("
			 "  INSERT INTO publish.job_log (job_id, level, message, progress)"
			 "  SELECT id, 'info', format('Started by the publish worker (pid %s), attempt %s of %s',"
			 "                            $1, attempts, $2), 0 FROM claimed"
			 ")"
			 "SELECT id, job_type, version_id, env, attempts FROM claimed",
			 2, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;

	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	job = MemoryContextAllocZero(mcxt, sizeof(PublishJob));
	job->id = spi_text(row, 1, mcxt);
	job->job_type = spi_text(row, 2, mcxt);
	job->version_id = spi_text(row, 3, mcxt);
	job->env = spi_text(row, 4, mcxt);
	job->attempts = pg_strtoint32(SPI_getvalue(row, desc, 5));
	return job;
}

static void
insert_log(PublishJob *job, int progress, const char *level, const char *message)
{
	Oid			types[4] = {TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', progress < 0 ? 'n' : ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(job->id);
	values[1] = Int32GetDatum(progress);
	values[2] = CStringGetTextDatum(level);
	values[3] = CStringGetTextDatum(message);

	if (SPI_execute_with_args("WITH j AS ("
							  "  UPDATE publish.job_queue SET progress = coalesce($2, progress)"
							  "   WHERE id = $1::uuid AND status = 'running' RETURNING id, progress"
							  ")"
							  "INSERT INTO publish.job_log (job_id, level, message, progress)"
							  " SELECT id, $3, $4, progress FROM j",
							  4, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "publish: could not record job progress");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job %s is no longer running", job->id),
				 errdetail("Its row was changed or deleted by someone else.")));
}

/* Records a finished step: its progress figure and one info log line. */
void
job_step_done(PublishJob *job, int progress, const char *message)
{
	insert_log(job, progress, "info", message);
}

/* Adds a log line (level info, warn or error) without changing progress. */
void
job_log(PublishJob *job, const char *level, const char *message)
{
	insert_log(job, -1, level, message);
}

/* Marks the job failed with error, and logs it at level error. */
void
job_record_failure(PublishJob *job, const char *error)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(job->id), CStringGetTextDatum(error)};

	exec_sql("WITH j AS ("
			 "  UPDATE publish.job_queue SET status = 'failed', error = $2,"
			 "         completed_at = clock_timestamp()"
			 "   WHERE id = $1::uuid AND status IN ('queued', 'running') RETURNING id, progress"
			 ")"
			 "INSERT INTO publish.job_log (job_id, level, message, progress)"
			 " SELECT id, 'error', $2, progress FROM j",
			 2, types, values, SPI_OK_INSERT);
}
