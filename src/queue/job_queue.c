/*-------------------------------------------------------------------------
 *
 * job_queue.c
 *	  The job queue as the workers use it: claim a job, record its progress
 *	  and log, how it ended, jobs interrupted by a crash, and the deletion
 *	  of old finished jobs.
 *
 * The functions here that open a transaction of their own say so (outside
 * a transaction); the others run inside a short transaction opened with
 * job_txn_begin and closed with job_txn_commit.  No transaction is open
 * while a job does file or network I/O.  Progress and log commits are
 * asynchronous (a crash loses at most a progress figure, and the job is
 * retried); claims, switches and ends are durable.
 *
 * Who runs a job: the worker that claims it says so in shared memory
 * (publish_shmem_set_running_job) before the claim commits, and until the
 * commit that records how the job ended.  A 'running' job that no live
 * worker runs was interrupted, and job_recover_interrupted queues it again
 * or fails it.  No lock is held across a job, so no other session can
 * stall a worker by taking one.
 *
 * Ordering: the jobs of one project and environment run one at a time, in
 * the order they were asked for (publish._claim_job, in the install
 * script, explains how without a scan of the queue).
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "ipc/ipc.h"
#include "queue/queue.h"
#include "util/util.h"

#define PURGE_BATCH_SIZE	500

const char *const job_statuses[] = {
	JOB_STATUS_QUEUED, JOB_STATUS_RUNNING, JOB_STATUS_COMPLETED,
	JOB_STATUS_FAILED, JOB_STATUS_CANCELLED, NULL
};

const char *const job_log_levels[] = {
	JOB_LOG_INFO, JOB_LOG_WARN, JOB_LOG_ERROR, NULL
};

/* How long a worker waits for a lock when it runs no job. */
#define IDLE_LOCK_TIMEOUT_MS	10000

/* The job the worker is running, for the lock timeout of its transactions. */
static PublishJob *current_job = NULL;

/* When the job runs out of time (publish.job_timeout), or 0: never. */
TimestampTz
job_deadline(PublishJob *job)
{
	if (publish_job_timeout <= 0)
		return 0;
	return TimestampTzPlusMilliseconds(job->started, (int64) publish_job_timeout * 1000);
}

/* Caller checked that publish.job_timeout is set. */
static long
job_ms_left(PublishJob *job)
{
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), job_deadline(job));
}

bool
job_deadline_passed(PublishJob *job)
{
	return publish_job_timeout > 0 && job_ms_left(job) <= 0;
}

/* The caller's memory context at job_txn_begin, current again after the commit. */
static MemoryContext txn_caller_cxt = NULL;

/*
 * Starts a short transaction with SPI connected and a snapshot pushed.  No
 * lock wait of a worker is unbounded: a running job's transactions wait at
 * most until its deadline (statement_timeout is not armed in a background
 * worker), the others IDLE_LOCK_TIMEOUT_MS.  What is palloc'd inside is
 * SPI's, freed at the commit: results that outlive it go in a context of
 * the caller's.
 */
void
job_txn_begin(const char *activity)
{
	long		timeout = IDLE_LOCK_TIMEOUT_MS;
	char		ms[32];

	txn_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	if (current_job != NULL && publish_job_timeout > 0)
	{
		if (job_deadline_passed(current_job))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("job timed out")));
		timeout = Max(job_ms_left(current_job), 1);
	}
	else if (current_job != NULL)
		timeout = 0;			/* publish.job_timeout = 0: no limit */
	snprintf(ms, sizeof(ms), "%ld", timeout);
	(void) set_config_option("lock_timeout", ms, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Commits the transaction job_txn_begin started, and makes the caller's
 * memory context current again (not TopMemoryContext, where a commit
 * leaves it).  A durable commit returns once its WAL is flushed, even where
 * the server or database sets synchronous_commit = off (then it is "local"
 * for this commit); any other is asynchronous.
 */
void
job_txn_commit(bool durable)
{
	if (!durable || synchronous_commit == SYNCHRONOUS_COMMIT_OFF)
		(void) set_config_option("synchronous_commit", durable ? "local" : "off",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (txn_caller_cxt != NULL)
		MemoryContextSwitchTo(txn_caller_cxt);
	txn_caller_cxt = NULL;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Is the extension installed in this database (as of this transaction)?
 * Asked before every claim, so it is answered from the system caches: the
 * queue table publish.job_queue is a member of the extension, created and
 * dropped with it.  The table is locked, as the queries that follow would
 * lock it: DROP EXTENSION wakes the worker at commit (utility_hook.c),
 * before it sends its cache invalidations and releases its lock, so the
 * caches may still show the table; once the lock is ours they are current.
 */
/* publish.job_queue's oid, or InvalidOid when there is none. */
static Oid
job_queue_relid(void)
{
	Oid			nsp = get_namespace_oid(PUBLISH_SCHEMA_NAME, true);

	return OidIsValid(nsp) ? get_relname_relid("job_queue", nsp) : InvalidOid;
}

bool
job_extension_present(void)
{
	Oid			rel = job_queue_relid();

	if (!OidIsValid(rel))
		return false;
	LockRelationOid(rel, AccessShareLock);
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel));
}

/* Is a relation of n blocks no longer the size its plans were made for? */
static bool
resized(BlockNumber planned, BlockNumber n)
{
	return Max(planned, n) > 2 * Min(planned, n) + 4;
}

/*
 * The worker's queries keep generic plans, which cost no planning per job.
 * A plan chosen while the queue was short can be wrong for a long one (a
 * walk of every queued job for each write of a running one), and
 * PostgreSQL replans only after the table's next ANALYZE.  So before each
 * claim the worker drops its plans when publish.job_queue or one of its
 * indexes has doubled or halved in size since they were made: the sizes a
 * plan made now would be costed with.  Caller in a transaction, with the
 * extension present.
 */
void
job_queue_check_plans(void)
{
	static BlockNumber planned[16];
	static int	nplanned = -1;
	BlockNumber sizes[lengthof(planned)];
	int			n = 0;
	bool		changed;
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;

	rel = table_open(job_queue_relid(), AccessShareLock);
	sizes[n++] = RelationGetNumberOfBlocks(rel);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index;

		if (n == lengthof(sizes))
			break;
		index = index_open(lfirst_oid(lc), AccessShareLock);
		sizes[n++] = RelationGetNumberOfBlocks(index);
		index_close(index, AccessShareLock);
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);

	changed = n != nplanned;
	for (int i = 0; !changed && i < n; i++)
		changed = resized(planned[i], sizes[i]);
	if (!changed)
		return;
	if (nplanned >= 0)
		ResetPlanCache();
	memcpy(planned, sizes, sizeof(BlockNumber) * n);
	nplanned = n;
}

/*
 * Runs sql on the job queue through the plan kept in *plan (see
 * job_queue_check_plans), nulls as SPI takes them (NULL: none); errors
 * unless rc is expected.
 */
static void
exec_sql(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
		 const char *nulls, int expected)
{
	int			rc = spi_execute_cached(plan, sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "publish: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/*
 * The version of the extension's objects in this database (pg_extension's
 * extversion, copied into mcxt when version is not NULL), read with a
 * snapshot of its own: a caller that has just waited for a lock that
 * ALTER EXTENSION ... UPDATE held sees the version it committed.
 */
JobSchema
job_schema_version(char **version, MemoryContext mcxt)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(PUBLISH_EXTENSION_NAME)};
	char	   *v = NULL;

	exec_sql(&plan, "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		v = spi_text(SPI_tuptable->vals[0], 1, mcxt);
	if (version != NULL)
		*version = v;
	if (v == NULL)
		return JOB_SCHEMA_UNKNOWN;
	if (strcmp(v, "1.0") == 0)
		return JOB_SCHEMA_1_0;
	if (strcmp(v, "1.1") == 0)
		return JOB_SCHEMA_1_1;
	return JOB_SCHEMA_UNKNOWN;
}

/* The job's row was changed or deleted by someone else: the job stops. */
static void
no_longer_running(PublishJob *job)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("job %s is no longer running", job->id),
			 errdetail("Its row was changed or deleted by someone else.")));
}

/*
 * Jobs left 'running' that no live worker runs (their worker crashed or
 * exited) are queued again, or fail once they have had
 * publish.max_attempts attempts.  A job that may have switched
 * release.json is queued again all the same (up to two attempts more): its
 * next run either completes or puts the live release back (worker.c), so
 * storage and publish.releases agree before anything else runs for its
 * project and environment (it stays first in their line).  The rows are
 * locked before the workers' slots are read: a worker ends a job (and
 * clears its slot) only after the commit that records the end, which the
 * lock waits for.
 */
uint64
job_recover_interrupted(void)
{
	static SPIPlanPtr select_plan = NULL;
	static SPIPlanPtr requeue_plan = NULL;
	static SPIPlanPtr fail_plan = NULL;
	Oid			types[2] = {UUIDOID, INT4OID};
	Datum		values[2];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		recovered = 0;

	exec_sql(&select_plan, "SELECT id, attempts, switched FROM publish.job_queue"
			 " WHERE status = 'running' FOR UPDATE SKIP LOCKED",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	values[1] = Int32GetDatum(publish_max_attempts);
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull);
		int			attempts = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
		bool		switched = DatumGetBool(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
		char	   *id_text = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);

		if (publish_shmem_job_has_worker(MyDatabaseId, id_text))
			continue;
		values[0] = id;
		if (attempts < publish_max_attempts ||
			(switched && attempts <= publish_max_attempts + 2))
			exec_sql(&requeue_plan, "WITH j AS ("
					 "  UPDATE publish.job_queue SET status = 'queued', progress = 0, started_at = NULL"
					 "   WHERE id = $1 RETURNING id, attempts"
					 ")"
					 "INSERT INTO publish.job_log (job_id, level, message, progress)"
					 " SELECT id, 'warn', format('interrupted: the worker stopped while the job was running"
					 " (attempt %s of %s); queued again', attempts, $2), 0 FROM j",
					 2, types, values, NULL, SPI_OK_INSERT);
		else
			exec_sql(&fail_plan, "WITH j AS ("
					 "  UPDATE publish.job_queue SET status = 'failed', completed_at = clock_timestamp(),"
					 "         error = format('interrupted: the worker stopped while the job was running,"
					 " %s of %s attempts used', attempts, $2)"
					 "   WHERE id = $1 RETURNING id, error, progress"
					 ")"
					 "INSERT INTO publish.job_log (job_id, level, message, progress)"
					 " SELECT id, 'error', error, progress FROM j",
					 2, types, values, NULL, SPI_OK_INSERT);
		recovered++;
	}
	if (recovered > 0)
		ereport(LOG,
				(errmsg("publish worker recovered %llu interrupted job(s)",
						(unsigned long long) recovered)));
	return recovered;
}

/*
 * What a sweep has to do, in one cheap query (index probes of the queue's
 * partial indexes): is any job queued or running (then recovery and a claim
 * are worth running), has this database prepared transactions (they may
 * hold jobs that no wake-up will announce), and when does the oldest
 * finished job pass publish.job_retention (at or after that time,
 * job_purge_expired has work)?  The sweep gate (worker_sweep.c) keeps what
 * it found.
 */
void
job_sweep_needed(SweepFindings *found)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, OIDOID};
	Datum		values[2] = {Int32GetDatum(Max(publish_job_retention, 0)),
	ObjectIdGetDatum(MyDatabaseId)};
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	Datum		purge_at;

	exec_sql(&plan, "SELECT EXISTS (SELECT 1 FROM publish.job_queue WHERE status = 'queued')"
			 "    OR EXISTS (SELECT 1 FROM publish.job_queue WHERE status = 'running'),"
			 "       EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xact() WHERE dbid = $2),"
			 "       (SELECT min(completed_at) FROM publish.job_queue"
			 "         WHERE status IN ('completed', 'failed', 'cancelled'))"
			 "       + make_interval(mins => $1)",
			 2, types, values, NULL, SPI_OK_SELECT);
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	found->queue_busy = DatumGetBool(SPI_getbinval(row, desc, 1, &isnull));
	found->prepared = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
	purge_at = SPI_getbinval(row, desc, 3, &isnull);
	found->purge_at = (isnull || publish_job_retention <= 0) ? DT_NOEND : DatumGetTimestampTz(purge_at);
	/* job_purge_expired deletes what ended before now() - retention */
	found->purge_due = found->purge_at < GetCurrentTransactionStartTimestamp();
}

/*
 * Claims the oldest job that may run now (publish._claim_job), marks it
 * running and says in shared memory that this worker runs it; returns it,
 * copied into mcxt, as the current job (its deadline counts from now), or
 * NULL.  A job whose cancel was asked for before this attempt (queued
 * again after a crash, cancel_job on it since) comes back cancelled: it
 * ends at once (run_job).  The caller commits durably: the attempt is
 * counted before the job runs.  Another worker is woken at commit when
 * more jobs may run.
 */
PublishJob *
job_claim(MemoryContext mcxt)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(MyProcPid), Int32GetDatum(publish_max_attempts)};
	HeapTuple	row;
	TupleDesc	desc;
	PublishJob *job;
	bool		isnull;

	exec_sql(&plan, "SELECT id, job_type, version_id, env, attempts, switched, cancel_requested"
			 "  FROM publish._claim_job($1, $2)",
			 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	job = MemoryContextAllocZero(mcxt, sizeof(PublishJob));
	job->id = spi_text(row, 1, mcxt);
	job->job_type = spi_text(row, 2, mcxt);
	job->version_id = spi_text(row, 3, mcxt);
	job->env = spi_text(row, 4, mcxt);
	job->attempts = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	job->switched = DatumGetBool(SPI_getbinval(row, desc, 6, &isnull));
	job->cancelled = DatumGetBool(SPI_getbinval(row, desc, 7, &isnull));
	job->started = GetCurrentTimestamp();
	publish_shmem_set_running_job(job->id);
	current_job = job;

	return job;
}

/* Stops the job (by throwing) if cancel_job() asked for it or time is up. */
static void
stop_if_asked(PublishJob *job, bool cancel_requested)
{
	if (cancel_requested)
	{
		job->cancelled = true;
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("job %s was cancelled", job->id)));
	}
	if (job_deadline_passed(job))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("job %s timed out", job->id)));
}

/*
 * Sets the job's progress (progress < 0: unchanged) and adds a log line;
 * with checkpoint, throws if the job was cancelled or has timed out.
 */
static void
insert_log(PublishJob *job, int progress, const char *level, const char *message,
		   bool checkpoint)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {UUIDOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	values[1] = Int32GetDatum(progress);
	values[2] = CStringGetTextDatum(level);
	values[3] = CStringGetTextDatum(message);
	if (progress < 0)
		nulls[1] = 'n';
	exec_sql(&plan, "WITH j AS ("
			 "  UPDATE publish.job_queue SET progress = coalesce($2, progress)"
			 "   WHERE id = $1 AND status = 'running'"
			 "  RETURNING id, progress, cancel_requested"
			 "), l AS ("
			 "  INSERT INTO publish.job_log (job_id, level, message, progress)"
			 "  SELECT id, $3, $4, progress FROM j"
			 ")"
			 "SELECT cancel_requested FROM j",
			 4, types, values, nulls, SPI_OK_SELECT);
	if (SPI_processed == 0)
		no_longer_running(job);
	if (checkpoint)
		stop_if_asked(job, DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull)));
}

/*
 * Records a finished step: its progress figure and one info log line.  A
 * checkpoint: throws if the job was cancelled or has timed out.
 */
void
job_step_done(PublishJob *job, int progress, const char *message)
{
	insert_log(job, progress, JOB_LOG_INFO, message, true);
}

/*
 * Adds a log line (level info, warn or error) without changing progress.
 * Not a checkpoint: what a failed job does before its end is recorded (a
 * publish putting the live release back after a cancel or a timeout) must
 * not be stopped by the cancel or timeout that ended it.
 */
void
job_log(PublishJob *job, const char *level, const char *message)
{
	insert_log(job, -1, level, message, false);
}

/* job_step_done in a transaction of its own (named activity); outside a transaction. */
void
job_step(PublishJob *job, const char *activity, int progress, const char *message)
{
	CHECK_FOR_INTERRUPTS();
	job_txn_begin(activity);
	job_step_done(job, progress, message);
	job_txn_commit(false);
}

/*
 * Records the job's progress without a log line, in a short transaction of
 * its own (between two pieces of I/O of a long step); a checkpoint: throws
 * if the job was cancelled or has timed out.  Callers limit how often they
 * call it (a few times a second at most).
 */
void
job_progress(PublishJob *job, int progress)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {UUIDOID, INT4OID};
	Datum		values[2];
	bool		cancel;
	bool		isnull;

	CHECK_FOR_INTERRUPTS();
	job_txn_begin("publish: progress");
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	values[1] = Int32GetDatum(progress);
	exec_sql(&plan, "UPDATE publish.job_queue SET progress = greatest(progress, $2)"
			 " WHERE id = $1 AND status = 'running' RETURNING cancel_requested",
			 2, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		no_longer_running(job);
	cancel = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	job_txn_commit(false);
	stop_if_asked(job, cancel);
}

/* cancel_requested of the job, read in the caller's transaction. */
static bool
read_cancel_requested(PublishJob *job)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	bool		isnull;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	if (spi_execute_cached(&plan, "SELECT cancel_requested FROM publish.job_queue WHERE id = $1",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed == 0)
		return false;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * A checkpoint between transactions (in a long loop of I/O): throws if the
 * job was cancelled or has timed out.  Opens a short transaction of its own.
 */
void
job_checkpoint(PublishJob *job)
{
	bool		cancel;

	CHECK_FOR_INTERRUPTS();
	job_txn_begin("publish: checkpoint");
	cancel = read_cancel_requested(job);
	job_txn_commit(false);
	stop_if_asked(job, cancel);
}

/*
 * Was the job's cancel requested?  For an interrupted job, outside any
 * transaction; false if that cannot be told.
 */
bool
job_cancel_was_requested(PublishJob *job)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool cancel = false;

	PG_TRY();
	{
		job_txn_begin("publish: was the job cancelled?");
		cancel = read_cancel_requested(job);
		job_txn_commit(false);
	}
	PG_CATCH();
	{
		(void) job_catch_error(mcxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mcxt);
	return cancel;
}

/*
 * The job is about to make its work visible on storage (a publish:
 * release.json switched): the caller commits this mark durably first.
 * From then until the commit that records the job's end, a failure puts
 * the storage back (PublishJob.switched, worker.c), and a crash leaves that
 * to the job's next attempt (job_recover_interrupted).
 */
void
job_mark_switched(PublishJob *job)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	exec_sql(&plan, "UPDATE publish.job_queue SET switched = true"
			 " WHERE id = $1 AND status = 'running'",
			 1, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		no_longer_running(job);
	job->switched = true;
}

/*
 * Records that the job completed, with its result and last log line, after
 * what its outcome records (JobOutcome.record), in one durable transaction
 * of its own; throws if that fails, or if the job's row or what the
 * outcome would record changed meanwhile.  Outside a transaction; cancels
 * are held off and the deadline no longer applies, as the job is past its
 * last checkpoint.
 */
void
job_record_completed(PublishJob *job, const JobOutcome *outcome)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[3] = {UUIDOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	HOLD_CANCEL_INTERRUPTS();
	job_forget_current();		/* past its deadline's last check */
	job_txn_begin("publish: recording the end of a job");
	if (outcome->record != NULL && !outcome->record(job, outcome->record_arg))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the version changed while it was being published")));
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	values[1] = CStringGetTextDatum(outcome->result ? outcome->result : "{}");
	values[2] = CStringGetTextDatum(outcome->message);
	exec_sql(&plan, "WITH j AS ("
			 "  UPDATE publish.job_queue SET status = 'completed', progress = 100, error = NULL,"
			 "         completed_at = clock_timestamp(), result = $2::jsonb, switched = false"
			 "   WHERE id = $1 AND status = 'running' RETURNING id"
			 ")"
			 "INSERT INTO publish.job_log (job_id, level, message, progress)"
			 " SELECT id, 'info', $3, 100 FROM j",
			 3, types, values, nulls, SPI_OK_INSERT);
	if (SPI_processed == 0)
		no_longer_running(job);
	job_txn_commit(true);
	RESUME_CANCEL_INTERRUPTS();
	MemoryContextSwitchTo(mcxt);
}

/*
 * Records how the job ended when it did not complete: status 'failed' or
 * 'cancelled', the error text, and an error (or, cancelled, warn) log
 * line, in a durable transaction of its own, cancels held off.  Never
 * throws: false, with a warning in the server log, when it could not (the
 * extension may have been dropped under us).  Outside a transaction.
 */
bool
job_record_end(PublishJob *job, const char *status, const char *error)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext mcxt = CurrentMemoryContext;
	uint32		holdoff = QueryCancelHoldoffCount;
	volatile bool recorded = false;

	PG_TRY();
	{
		Oid			types[4] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[4];

		HOLD_CANCEL_INTERRUPTS();
		job_txn_begin("publish: recording the end of a job");
		values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
		values[1] = CStringGetTextDatum(status);
		values[2] = CStringGetTextDatum(error);
		values[3] = CStringGetTextDatum(strcmp(status, JOB_STATUS_CANCELLED) == 0 ?
										JOB_LOG_WARN : JOB_LOG_ERROR);
		exec_sql(&plan, "WITH j AS ("
				 "  UPDATE publish.job_queue SET status = $2, error = $3, completed_at = clock_timestamp(),"
				 "         switched = false"
				 "   WHERE id = $1 AND status IN ('queued', 'running') RETURNING id, progress"
				 ")"
				 "INSERT INTO publish.job_log (job_id, level, message, progress)"
				 " SELECT id, $4, $3, progress FROM j",
				 4, types, values, NULL, SPI_OK_INSERT);
		job_txn_commit(true);
		recorded = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata = job_catch_error(mcxt);

		ereport(WARNING,
				(errmsg("publish worker could not record the end of job %s: %s",
						job->id, edata->message)));
	}
	PG_END_TRY();
	/* an ERROR resets the holdoff count: put it back as it was */
	QueryCancelHoldoffCount = holdoff;
	MemoryContextSwitchTo(mcxt);
	return recorded;
}

/*
 * In a worker's PG_CATCH: the error being handled, copied into mcxt (the
 * current context after it), the error state flushed and any transaction
 * aborted.
 */
ErrorData *
job_catch_error(MemoryContext mcxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(mcxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	return edata;
}

/* The job has ended: its deadline no longer applies to our transactions. */
void
job_forget_current(void)
{
	current_job = NULL;
}

/*
 * Deletes finished jobs older than publish.job_retention, a batch per
 * transaction, so that no lock is held for long.  Outside a transaction.
 */
void
job_purge_expired(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(publish_job_retention), Int32GetDatum(PURGE_BATCH_SIZE)};
	uint64		deleted;

	if (publish_job_retention <= 0)
		return;
	do
	{
		CHECK_FOR_INTERRUPTS();
		job_txn_begin("publish: deleting old jobs");
		exec_sql(&plan, "DELETE FROM publish.job_queue WHERE id IN ("
				 "  SELECT id FROM publish.job_queue"
				 "   WHERE status IN ('completed', 'failed', 'cancelled')"
				 "     AND completed_at < now() - make_interval(mins => $1)"
				 "   ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
				 2, types, values, NULL, SPI_OK_DELETE);
		deleted = SPI_processed;
		job_txn_commit(false);
	} while (deleted == PURGE_BATCH_SIZE);
}

void
job_pause_point(const char *point)
{
	bool		reported = false;

	while (publish_pause_at != NULL && strcmp(publish_pause_at, point) == 0)
	{
		if (!reported)
			pgstat_report_activity(STATE_RUNNING, psprintf("publish: paused at %s", point));
		reported = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * The storage backends' retry notices become warn lines of the job.  They
 * come between two attempts of a request, when no transaction is open, so
 * each is written (and committed) at once in a short transaction of its
 * own: a poller sees the retries while they happen, not after the step.
 * Each is a checkpoint: a cancelled or timed-out job stops between two
 * attempts.
 */
void
job_storage_warning(void *arg, const char *message)
{
	PublishJob *job = arg;

	job_txn_begin("publish: storage request failed, retrying");
	insert_log(job, -1, JOB_LOG_WARN, message, true);
	job_txn_commit(false);
	pgstat_report_activity(STATE_RUNNING, "publish: retrying a storage request");
}
