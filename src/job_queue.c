/*-------------------------------------------------------------------------
 *
 * job_queue.c
 *	  The job queue as the workers use it: claim the next job, record its
 *	  progress and log, how it ended, jobs interrupted by a crash, and the
 *	  deletion of old finished jobs.
 *
 * The functions here that open a transaction of their own say so (outside
 * a transaction); the others run inside a short transaction opened with
 * job_txn_begin and closed with job_txn_commit.  No transaction is open
 * while a job does file or network I/O.  Progress and log commits may be
 * asynchronous (a crash loses at most a progress figure, and the job is
 * retried); claims and ends are durable.
 *
 * Progress is committed at most every PROGRESS_WRITE_INTERVAL_MS: a step
 * that ends sooner after the last write (job_step_reached) is held, its
 * log line with its own time and progress, and written first by the job's
 * next statement that writes progress, a log line or its end.  A publish
 * of a small project runs its middle steps in about a millisecond; two
 * transactions less per job, each of which would wait for PostgreSQL's
 * NOTIFY lock behind every durable commit that notifies.
 *
 * Who runs a job: the worker that claims it takes a session advisory lock
 * on it (JOB_LOCK_CLASS) in the claiming transaction and keeps it until the
 * job ends.  A 'running' job whose lock anyone can take belongs to a worker
 * that is gone, and job_recover_interrupted requeues or fails it.
 *
 * Ordering: jobs of one project and environment run one at a time, in the
 * order they were asked for; a claim skips a job while an older job of the
 * same project and environment is queued or running.
 *
 * Claiming several: while jobs are queued, a worker claims a few at once
 * (job_claim, at most its share), in one durable commit, and runs them one
 * after the other; the final transaction of a group of publishes (job_group.c)
 * records them all and claims the next few.  Each job's lock is released
 * after the commit that records how it ended (job_release_lock).
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "job.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#define JOB_LOCK_CLASS		1886741101
#define PURGE_BATCH_SIZE	500
#define PROGRESS_WRITE_INTERVAL_MS	100

/* The job the worker is running, for the lock timeout of its transactions. */
static PublishJob *current_job = NULL;

/*
 * Jobs claimed together (job_claim), in order, in their own memory context
 * until the worker takes each (job_take_claimed_next).
 */
static List *claimed = NIL;
static MemoryContext claimed_cxt = NULL;

/*
 * Log lines of the running job not written yet (job_step_reached), oldest
 * first, in held_cxt.  A statement that writes them sets held_written;
 * they are forgotten once that transaction commits (job_txn_commit), kept
 * if it aborts.
 */
typedef struct HeldLine
{
	TimestampTz at;
	int			progress;
	char	   *message;
} HeldLine;

static List *held = NIL;
static char *held_job_id = NULL;
static bool held_written = false;
static MemoryContext held_cxt = NULL;
static TimestampTz progress_written_at;	/* the running job's last write */

static long
job_ms_left(PublishJob *job)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(job->started,
													   (int64) publish_job_timeout * 1000);

	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
}

bool
job_deadline_passed(PublishJob *job)
{
	return publish_job_timeout > 0 && job_ms_left(job) <= 0;
}

/*
 * While a job runs, outside a transaction: records the publishes of its
 * group that wait for the group's commit (job_group.c) now, releasing
 * their versions' locks; the running job stays the current one.
 */
void
job_record_group_now(void)
{
	PublishJob *job = current_job;

	(void) job_group_commit(false);
	current_job = job;
}

/* The held log lines are written, or belong to a job that has ended. */
static void
forget_held_lines(void)
{
	held = NIL;
	held_job_id = NULL;
	held_written = false;
	if (held_cxt != NULL)
		MemoryContextReset(held_cxt);
}

/*
 * Starts a short transaction with SPI connected and a snapshot pushed.
 * While a job runs, no lock wait may outlast the job's deadline: its
 * transactions carry the time left as lock_timeout (statement_timeout is
 * not armed in a background worker), so a job blocked on a lock still
 * times out.
 */
void
job_txn_begin(const char *activity)
{
	/* a running job's transaction: record an overdue group first */
	if (current_job != NULL && job_group_overdue())
		job_record_group_now();

	held_written = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	if (current_job != NULL && publish_job_timeout > 0)
	{
		char		ms[32];

		if (job_deadline_passed(current_job))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("job timed out")));
		snprintf(ms, sizeof(ms), "%ld", Max(job_ms_left(current_job), 1));
		(void) set_config_option("lock_timeout", ms,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	}
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
	if (held_written)
		forget_held_lines();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Is the extension installed in this database (as of this transaction)?
 * Asked before every claim, so it is answered from the system caches: the
 * queue table publish.job_queue is a member of the extension, created and
 * dropped with it (a scan of pg_extension cost a quarter of an idle
 * sweep).  The table is locked, as the queries that follow would lock it:
 * DROP EXTENSION wakes the worker at commit (utility_hook.c), before it
 * sends its cache invalidations and releases its lock, so the caches may
 * still show the table; once the lock is ours they are current.
 */
bool
job_extension_present(void)
{
	Oid			nsp = get_namespace_oid(PUBLISH_SCHEMA_NAME, true);
	Oid			rel;

	if (!OidIsValid(nsp))
		return false;
	rel = get_relname_relid("job_queue", nsp);
	if (!OidIsValid(rel))
		return false;
	LockRelationOid(rel, AccessShareLock);
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel));
}

/*
 * Runs sql through the plan kept in *plan (spi_util.c), nulls as SPI takes
 * them (NULL: none); errors unless rc is expected.
 */
static void
exec_sql(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
		 const char *nulls, int expected)
{
	int			rc = spi_execute_cached(plan, sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "publish: SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/*
 * Jobs left 'running' by a worker that is gone (nobody holds their lock)
 * are queued again, or fail once they have had publish.max_attempts
 * attempts.  A job that fails past its last checkpoint (80%) may have
 * switched release.json already: the live release of its target is queued
 * to be published again, which puts storage back in line with
 * publish.releases.
 */
uint64
job_recover_interrupted(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(publish_max_attempts), Int32GetDatum(JOB_LOCK_CLASS)};

	exec_sql(&plan, "WITH interrupted AS ("
			 "  SELECT id, attempts,"
			 "         EXISTS (SELECT 1 FROM publish.job_queue d"
			 "                  WHERE d.status = 'queued' AND d.job_type = q.job_type"
			 "                    AND d.version_id = q.version_id AND d.env = q.env) AS superseded"
			 "    FROM publish.job_queue q"
			 "   WHERE status = 'running'"
			 "     AND pg_try_advisory_xact_lock($2, hashtext(id::text))"
			 "     FOR UPDATE SKIP LOCKED"
			 "), requeued AS ("
			 "  UPDATE publish.job_queue j SET status = 'queued', progress = 0, started_at = NULL"
			 "    FROM interrupted i WHERE j.id = i.id AND i.attempts < $1 AND NOT i.superseded"
			 "  RETURNING j.id, j.attempts"
			 "), failed AS ("
			 "  UPDATE publish.job_queue j SET status = 'failed', completed_at = clock_timestamp(),"
			 "         error = CASE WHEN i.superseded"
			 "                 THEN 'interrupted: the worker stopped while the job was running;"
			 " the same publish is queued again'"
			 "                 ELSE format('interrupted: the worker stopped while the job was running,"
			 " %s of %s attempts used', i.attempts, $1) END"
			 "    FROM interrupted i WHERE j.id = i.id AND (i.attempts >= $1 OR i.superseded)"
			 "  RETURNING j.id, j.error, j.progress, j.project_id, j.env, j.job_type"
			 "), restore AS ("
			 /*
			  * A job that failed past its last checkpoint may have switched
			  * release.json already: publish the live release again, so that
			  * storage and publish.releases agree.
			  */
			 "  INSERT INTO publish.job_queue (job_type, params, project_id, version_id, env, created_by)"
			 "  SELECT 'publish', jsonb_build_object('project_slug', p.slug,"
			 "         'version_number', v.version_number, 'target_env', r.env,"
			 "         'requested_by', 'publish', 'restores_after', f.id), r.project_id, r.version_id, r.env, 'publish'"
			 "    FROM failed f"
			 "    JOIN publish.live_releases r ON r.project_id = f.project_id AND r.env = f.env"
			 "    JOIN publish.projects p ON p.id = r.project_id"
			 "    JOIN publish.project_versions v ON v.id = r.version_id"
			 "   WHERE f.progress >= 80 AND f.job_type = 'publish'"
			 "  ON CONFLICT DO NOTHING"
			 "  RETURNING id, params->>'restores_after' AS failed_id"
			 ")"
			 "INSERT INTO publish.job_log (job_id, level, message, progress)"
			 " SELECT id, 'warn', format('interrupted: the worker stopped while the job was running"
			 " (attempt %s of %s); queued again', attempts, $1), 0 FROM requeued"
			 " UNION ALL SELECT id, 'error', error, progress FROM failed"
			 " UNION ALL SELECT id, 'info', format('Queued to publish the live release again: job %s"
			 " may have switched release.json before it was interrupted', failed_id), 0 FROM restore",
			 2, types, values, NULL, SPI_OK_INSERT);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("publish worker recovered %llu interrupted job(s)",
						(unsigned long long) SPI_processed)));
	return SPI_processed;
}

/*
 * What a sweep has to do, in one cheap query (index probes of the queue's
 * partial indexes): is any job queued or running (then recovery and a claim
 * are worth running), has this database prepared transactions (they may
 * hold jobs that no wake-up will announce), and when does the oldest
 * finished job pass publish.job_retention (at or after that time,
 * job_purge_expired has work)?  An idle database's full sweep is this query
 * and nothing else; the sweep gate (worker_sweep.c) keeps what it found.
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
 * Claims the oldest jobs that may run now (FOR UPDATE SKIP LOCKED), at
 * most max and at most this worker's share of the queue (below), marks
 * them running and takes their locks; they wait in claimed (their own
 * memory context) for job_take_claimed_next, in order.  Returns how many.
 * The caller commits durably: every claimed job's attempt is counted
 * before it runs.
 *
 * The share: of the jobs queued (counted up to max per worker, and one
 * more to tell whether any are left), a worker takes its part, rounded up,
 * among itself and the database's workers that are asleep, which would
 * take theirs; so one job queued is one job
 * claimed, and two idle workers split a short queue instead of one taking
 * it all, while a worker whose siblings are busy takes up to max.  When
 * jobs are left, another worker is woken at commit (a wake-up for new work
 * wakes only one: publish_shmem_wake_database).  A job claimed
 * with others is 'running' at progress 0 until its turn comes: max is
 * small (PUBLISH_GROUP_MAX) to keep that short.
 *
 * The plan (kept, spi_util.c) walks job_queue_queued_idx in order and, for
 * each queued job, probes job_queue_target_idx for an older job of its
 * project and environment, stopping once enough may run: OFFSET 0 keeps the
 * NOT EXISTS a per-row probe rather than an anti join, whose shape would
 * depend on the queue's size when the plan was made.  One statement sees
 * every job of a project and environment still queued, so it claims at
 * most one of them: they still run one at a time, in order.
 */
int
job_claim(int max)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {INT4OID, INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		values[5] = {Int32GetDatum(MyProcPid), Int32GetDatum(publish_max_attempts),
		Int32GetDatum(JOB_LOCK_CLASS), Int32GetDatum(Max(max, 1)),
	Int32GetDatum(1 + Min(publish_shmem_workers_asleep(MyDatabaseId),
						  Max(publish_workers_per_database - 1, 0)))};
	MemoryContext old;
	bool		isnull;

	exec_sql(&plan, "WITH queued AS ("
			 "  SELECT count(*) AS n FROM (SELECT 1 FROM publish.job_queue WHERE status = 'queued'"
			 "                             LIMIT $4 * $5 + 1) q"
			 "), next AS ("
			 "  SELECT q.id FROM publish.job_queue q"
			 "   WHERE q.status = 'queued'"
			 "     AND NOT EXISTS (SELECT 1 FROM publish.job_queue o"
			 "                      WHERE o.project_id = q.project_id AND o.env = q.env"
			 "                        AND o.status IN ('queued', 'running')"
			 "                        AND (o.status = 'running' OR (o.created_at, o.id) < (q.created_at, q.id))"
			 "                     OFFSET 0)"
			 "   ORDER BY q.created_at, q.id"
			 "   LIMIT least($4, (SELECT (least(n, $4 * $5) + $5 - 1) / $5 FROM queued))"
			 "   FOR UPDATE SKIP LOCKED"
			 "), claimed AS ("
			 "  UPDATE publish.job_queue j"
			 "     SET status = 'running', started_at = clock_timestamp(),"
			 "         attempts = j.attempts + 1, progress = 0"
			 "    FROM next WHERE j.id = next.id"
			 "  RETURNING j.id, j.job_type, j.version_id, j.env, j.attempts, j.created_at"
			 "), logged AS ("
			 "  INSERT INTO publish.job_log (job_id, level, message, progress)"
			 "  SELECT id, 'info', format('Started by the publish worker (pid %s), attempt %s of %s',"
			 "                            $1, attempts, $2), 0 FROM claimed"
			 ")"
			 "SELECT id, job_type, version_id, env, attempts,"
			 "       pg_advisory_lock($3, hashtext(id::text)), (SELECT n FROM queued) FROM claimed"
			 " ORDER BY created_at, id",
			 5, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	/* jobs left for the others: wake one (it wakes the next, if need be) */
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull)) >
		(int64) SPI_processed)
		publish_wake_at_commit();

	if (claimed_cxt == NULL)
		claimed_cxt = AllocSetContextCreate(TopMemoryContext, "publish claimed jobs",
											ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(claimed_cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		PublishJob *job = palloc0(sizeof(PublishJob));

		job->id = spi_text(row, 1, claimed_cxt);
		job->job_type = spi_text(row, 2, claimed_cxt);
		job->version_id = spi_text(row, 3, claimed_cxt);
		job->env = spi_text(row, 4, claimed_cxt);
		job->attempts = pg_strtoint32(SPI_getvalue(row, SPI_tuptable->tupdesc, 5));
		claimed = lappend(claimed, job);
	}
	MemoryContextSwitchTo(old);
	return (int) SPI_processed;
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

static bool holds_lines(PublishJob *job);

/*
 * The lines a statement of job writes, oldest first, as four arrays for
 * unnest($n::timestamptz[], $n+1::text[], $n+2::text[], $n+3::int4[]):
 * the job's held lines (unless this transaction has written them), then
 * the new line unless message is NULL (time and progress NULL: now, and
 * the job's progress).
 */
static void
lines_to_arrays(PublishJob *job, const char *level, const char *message,
				Datum *values, char *nulls)
{
	bool		with_held = holds_lines(job);
	int			n = (with_held ? list_length(held) : 0) + (message != NULL ? 1 : 0);
	Datum	   *at = palloc(n * sizeof(Datum));
	Datum	   *levels = palloc(n * sizeof(Datum));
	Datum	   *messages = palloc(n * sizeof(Datum));
	Datum	   *progress = palloc(n * sizeof(Datum));
	bool	   *nulls_at = palloc0(n * sizeof(bool));
	bool	   *nulls_progress = palloc0(n * sizeof(bool));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i = 0;
	ListCell   *lc;

	if (with_held)
	{
		foreach(lc, held)
		{
			HeldLine   *line = lfirst(lc);

			at[i] = TimestampTzGetDatum(line->at);
			levels[i] = CStringGetTextDatum("info");
			messages[i] = CStringGetTextDatum(line->message);
			progress[i] = Int32GetDatum(line->progress);
			i++;
		}
		held_written = true;
	}
	if (message != NULL)
	{
		at[i] = (Datum) 0;
		nulls_at[i] = true;
		levels[i] = CStringGetTextDatum(level);
		messages[i] = CStringGetTextDatum(message);
		progress[i] = (Datum) 0;
		nulls_progress[i] = true;
	}

	values[0] = PointerGetDatum(construct_md_array(at, nulls_at, 1, dims, lbs, TIMESTAMPTZOID,
												   8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(levels, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(messages, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(progress, nulls_progress, 1, dims, lbs, INT4OID,
												   4, true, TYPALIGN_INT));
	memset(nulls, ' ', 4);
}

/* The INSERT of lines_to_arrays' lines ($3-$6) for the job row j of a CTE. */
#define INSERT_LINES \
	"  INSERT INTO publish.job_log (job_id, logged_at, level, message, progress)" \
	"  SELECT j.id, coalesce(e.at, clock_timestamp()), e.level, e.message, coalesce(e.progress, j.progress)" \
	"    FROM j, unnest($3::timestamptz[], $4::text[], $5::text[], $6::int4[])" \
	"            WITH ORDINALITY AS e(at, level, message, progress, n)" \
	"   ORDER BY e.n"

static void
insert_log(PublishJob *job, int progress, const char *level, const char *message)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {TEXTOID, INT4OID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4ARRAYOID};
	Datum		values[6];
	char		nulls[6];
	bool		isnull;

	values[0] = CStringGetTextDatum(job->id);
	values[1] = Int32GetDatum(progress);
	nulls[0] = ' ';
	nulls[1] = progress < 0 ? 'n' : ' ';
	lines_to_arrays(job, level, message, values + 2, nulls + 2);

	if (spi_execute_cached(&plan, "WITH j AS ("
						   "  UPDATE publish.job_queue SET progress = coalesce($2, progress)"
						   "   WHERE id = $1::uuid AND status = 'running'"
						   "  RETURNING id, progress, cancel_requested"
						   "), l AS (" INSERT_LINES ")"
						   "SELECT cancel_requested FROM j",
						   6, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not record job progress");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job %s is no longer running", job->id),
				 errdetail("Its row was changed or deleted by someone else.")));
	if (progress >= 0)
		progress_written_at = GetCurrentTimestamp();
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
	insert_log(job, progress, "info", message);
}

/* Adds a log line (level info, warn or error) without changing progress. */
void
job_log(PublishJob *job, const char *level, const char *message)
{
	insert_log(job, -1, level, message);
}

/*
 * A finished step, outside a transaction: its progress and info line are
 * held for the job's next write if what the job does next is short
 * (next_is_short: local file I/O, a transaction) and the job's last write
 * was less than PROGRESS_WRITE_INTERVAL_MS ago; else written at once, in a
 * transaction of their own (named activity).  A checkpoint either way, a
 * held step without reading the job's row: a cancel_job() signal or the
 * deadline stops the job here.  A job that must wait for a lock writes
 * its held lines first (job_write_held_lines).
 */
void
job_step_reached(PublishJob *job, const char *activity, int progress, const char *message,
				 bool next_is_short)
{
	MemoryContext old;
	HeldLine   *line;

	if (!next_is_short ||
		TimestampDifferenceExceeds(progress_written_at, GetCurrentTimestamp(),
								   PROGRESS_WRITE_INTERVAL_MS))
	{
		job_txn_begin(activity);
		job_step_done(job, progress, message);
		job_txn_commit(false);
		return;
	}

	CHECK_FOR_INTERRUPTS();
	stop_if_asked(job, false);
	if (held_cxt == NULL)
		held_cxt = AllocSetContextCreate(TopMemoryContext, "publish held log lines",
										 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(held_cxt);
	if (held_job_id == NULL)
		held_job_id = pstrdup(job->id);
	Assert(strcmp(held_job_id, job->id) == 0);
	line = palloc(sizeof(HeldLine));
	line->at = GetCurrentTimestamp();
	line->progress = progress;
	line->message = pstrdup(message);
	held = lappend(held, line);
	MemoryContextSwitchTo(old);
}

/* Does job hold lines that this transaction has not written? */
static bool
holds_lines(PublishJob *job)
{
	return held != NIL && !held_written &&
		held_job_id != NULL && strcmp(held_job_id, job->id) == 0;
}

/*
 * Writes the lines job holds, and their progress, in a transaction of
 * their own; outside a transaction.  Before the job waits for something
 * that may take long, so that pollers see how far it got.
 */
void
job_write_held_lines(PublishJob *job)
{
	if (!holds_lines(job))
		return;
	job_txn_begin("publish: progress");
	insert_log(job, ((HeldLine *) llast(held))->progress, NULL, NULL);
	job_txn_commit(false);
}

/*
 * A checkpoint between transactions (in a long loop of I/O): throws if the
 * job was cancelled or has timed out.  Opens a short transaction of its own.
 */
/* cancel_requested of the job, read in the caller's transaction. */
static bool
read_cancel_requested(PublishJob *job)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job->id)};
	bool		isnull;

	if (spi_execute_cached(&plan, "SELECT cancel_requested FROM publish.job_queue WHERE id = $1::uuid",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed == 0)
		return false;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

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
	volatile bool cancel = false;

	PG_TRY();
	{
		job_txn_begin("publish: was the job cancelled?");
		cancel = read_cancel_requested(job);
		job_txn_commit(false);
	}
	PG_CATCH();
	{
		FlushErrorState();
		AbortOutOfAnyTransaction();
	}
	PG_END_TRY();
	return cancel;
}

/*
 * Records how the job ended when it did not publish: status 'failed' or
 * 'cancelled', the error text, and an error (or, cancelled, warn) log line
 * after the lines the job held (job_step_reached), its progress that of the
 * last of them.
 */
void
job_record_end(PublishJob *job, const char *status, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {TEXTOID, TEXTOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4ARRAYOID, TEXTOID};
	Datum		values[7] = {CStringGetTextDatum(job->id), CStringGetTextDatum(status)};
	char		nulls[7] = {' ', ' '};

	/* the job's held lines first, then the error (cancelled: warn) line */
	lines_to_arrays(job, strcmp(status, "cancelled") == 0 ? "warn" : "error", error,
					values + 2, nulls + 2);
	values[6] = CStringGetTextDatum(error);
	nulls[6] = ' ';
	exec_sql(&plan, "WITH j AS ("
			 "  UPDATE publish.job_queue SET status = $2, error = $7, completed_at = clock_timestamp(),"
			 "         progress = greatest(progress, (SELECT max(p) FROM unnest($6::int4[]) AS p))"
			 "   WHERE id = $1::uuid AND status IN ('queued', 'running') RETURNING id, progress"
			 ")" INSERT_LINES,
			 7, types, values, nulls, SPI_OK_INSERT);
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

/*
 * job_record_end in a durable transaction of its own, cancels held off; a
 * failure to record is logged (the extension may have been dropped under
 * us).  Outside a transaction.
 */
void
job_record_end_alone(PublishJob *job, const char *status, const char *error)
{
	MemoryContext mcxt = CurrentMemoryContext;
	uint32		holdoff = QueryCancelHoldoffCount;

	PG_TRY();
	{
		/* a late cancel_job() signal must not stop us recording the end */
		HOLD_CANCEL_INTERRUPTS();
		job_txn_begin("publish: recording the end of a job");
		job_record_end(job, status, error);
		job_txn_commit(true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = job_catch_error(mcxt);
		ereport(WARNING,
				(errmsg("publish worker could not record the end of job %s: %s",
						job->id, edata->message)));
	}
	PG_END_TRY();
	QueryCancelHoldoffCount = holdoff;
	MemoryContextSwitchTo(mcxt);
}

/* The job has ended: its deadline no longer applies to our transactions. */
void
job_forget_current(void)
{
	current_job = NULL;
}

/* Is a claimed job waiting to run? */
bool
job_has_claimed_next(void)
{
	return claimed != NIL;
}

/* A copy of job, strings included, in mcxt. */
PublishJob *
job_copy(const PublishJob *job, MemoryContext mcxt)
{
	PublishJob *copy = MemoryContextAlloc(mcxt, sizeof(PublishJob));

	*copy = *job;
	copy->id = MemoryContextStrdup(mcxt, job->id);
	copy->job_type = MemoryContextStrdup(mcxt, job->job_type);
	copy->version_id = job->version_id ? MemoryContextStrdup(mcxt, job->version_id) : NULL;
	copy->env = job->env ? MemoryContextStrdup(mcxt, job->env) : NULL;
	return copy;
}

/*
 * The next claimed job, copied into mcxt, as the current job (its deadline
 * counts from now, when it starts); NULL when there is none.
 */
PublishJob *
job_take_claimed_next(MemoryContext mcxt)
{
	PublishJob *job;

	if (claimed == NIL)
		return NULL;
	job = job_copy(linitial(claimed), mcxt);
	job->started = GetCurrentTimestamp();
	progress_written_at = job->started;
	forget_held_lines();		/* a job before it whose end was not recorded */
	claimed = list_delete_first(claimed);
	if (claimed == NIL)
		MemoryContextReset(claimed_cxt);
	current_job = job;
	return job;
}

/*
 * Forgets the jobs just claimed in a transaction that then failed (their
 * claim is rolled back; their locks, session locks, are not: released
 * here).
 */
void
job_drop_claimed(void)
{
	ListCell   *lc;

	foreach(lc, claimed)
		job_release_lock((PublishJob *) lfirst(lc));
	claimed = NIL;
	if (claimed_cxt != NULL)
		MemoryContextReset(claimed_cxt);
}

/*
 * Releases the job's session lock, what pg_advisory_unlock(JOB_LOCK_CLASS,
 * hashtext(id)) releases.  Only after the commit that recorded how the job
 * ended: until then its row says running, and a worker that finds a
 * running job's lock free takes it for interrupted.
 */
void
job_release_lock(PublishJob *job)
{
	LOCKTAG		tag;
	int32		key;

	key = DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID,
												CStringGetTextDatum(job->id)));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) JOB_LOCK_CLASS, (uint32) key, 2);
	(void) LockRelease(&tag, ExclusiveLock, true);
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

/*
 * Records the job's progress without a log line, in a short transaction of
 * its own (between two pieces of I/O of a long step); a checkpoint: throws
 * if the job was cancelled or has timed out.  Callers limit how often they
 * call it (a few times a second at most).
 */
void
job_progress(PublishJob *job, int progress)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(job->id), Int32GetDatum(progress)};
	bool		cancel = false;
	bool		isnull;
	static SPIPlanPtr plan = NULL;

	CHECK_FOR_INTERRUPTS();
	job_txn_begin("publish: progress");
	exec_sql(&plan, "UPDATE publish.job_queue SET progress = greatest(progress, $2)"
			 " WHERE id = $1::uuid AND status = 'running' RETURNING cancel_requested",
			 2, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job %s is no longer running", job->id),
				 errdetail("Its row was changed or deleted by someone else.")));
	cancel = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	job_txn_commit(false);
	stop_if_asked(job, cancel);
}

/*
 * The storage backends' retry notices become warn lines of the job.  They
 * come between two attempts of a request, when no transaction is open, so
 * each is written (and committed) at once in a short transaction of its
 * own: a poller sees the retries while they happen, not after the step.
 */
void
job_storage_warning(void *arg, const char *message)
{
	PublishJob *job = arg;
	MemoryContext saved = CurrentMemoryContext;

	job_txn_begin("publish: storage request failed, retrying");
	job_log(job, "warn", message);
	job_txn_commit(false);
	MemoryContextSwitchTo(saved);
	pgstat_report_activity(STATE_RUNNING, "publish: retrying a storage request");
}
