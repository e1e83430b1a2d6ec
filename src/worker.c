/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A database's publish worker: sleeps on its latch, runs queued jobs.
 *
 * The launcher starts one worker per database.  The worker attaches to the
 * database's slot (so that committing transactions can set its latch), then:
 *
 *	  - on start, jobs left 'running' by a previous worker are queued again
 *		or failed (job_recover_interrupted);
 *	  - it claims and runs jobs one at a time until none is queued;
 *	  - it sleeps until its latch is set (a publish committed, SIGHUP,
 *		SIGTERM) or the safety sweep (publish.sweep_interval) is due.
 *
 * A job's error is caught: the ErrorData is copied, the transaction (if
 * any) aborted, and the failure recorded in a fresh transaction; the worker
 * goes on with the next job.  Memory: a job's allocations live in a context
 * that is reset after every job.  When the extension is not (or no longer)
 * installed, the worker says so in its slot and exits quietly; the launcher
 * starts it again when CREATE EXTENSION commits.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "job.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

typedef enum NextJob
{
	NEXT_JOB_NONE,
	NEXT_JOB_RAN,
	NEXT_JOB_NO_EXTENSION
} NextJob;

static Oid	worker_dboid = InvalidOid;

static void
worker_exit_callback(int code, Datum arg)
{
	publish_shmem_detach_worker(worker_dboid, false, 0, code != 0);
}

/* Flattens an error into the job's error text: message, then detail. */
static char *
error_text(ErrorData *edata)
{
	if (edata->detail)
		return psprintf("%s\n%s", edata->message, edata->detail);
	return pstrdup(edata->message ? edata->message : "unknown error");
}

/* Records job's failure in a fresh transaction; a failure to do so is logged. */
static void
record_failure(PublishJob *job, const char *error, MemoryContext mcxt)
{
	PG_TRY();
	{
		job_txn_begin("publish: recording failure");
		job_record_failure(job, error);
		job_txn_commit(true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errmsg("publish worker could not record the failure of job %s: %s",
						job->id, edata->message)));
	}
	PG_END_TRY();
}

/* Runs one job; any error becomes the job's failure. */
static void
run_job(PublishJob *job, MemoryContext mcxt)
{
	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		publish_job_run(job, mcxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		/* a failed publish may still hold its version's session lock */
		LockReleaseSession(USER_LOCKMETHOD);
		record_failure(job, error_text(edata), mcxt);
		ereport(LOG,
				(errmsg("publish job %s failed: %s", job->id, edata->message)));
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Claims the next job and runs it. */
static NextJob
run_next_job(MemoryContext mcxt, bool first)
{
	PublishJob *job = NULL;
	uint64		wakes = publish_shmem_wake_count(worker_dboid);

	job_txn_begin("publish: looking for jobs");
	if (!job_extension_present())
	{
		job_txn_commit(false);
		publish_shmem_detach_worker(worker_dboid, true, wakes, false);
		return NEXT_JOB_NO_EXTENSION;
	}
	if (first)
		job_recover_interrupted();
	job = job_claim_next(mcxt);
	/* durable: a job that crashes the server must see its attempts counted */
	job_txn_commit(job != NULL);

	if (job == NULL)
		return NEXT_JOB_NONE;
	run_job(job, mcxt);
	return NEXT_JOB_RAN;
}

void
publish_worker_main(Datum main_arg)
{
	MemoryContext job_context;
	bool		first = true;

	worker_dboid = DatumGetObjectId(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(worker_dboid, InvalidOid, 0);

	/*
	 * The worker runs as the bootstrap superuser: its queries must not find
	 * objects of a schema someone put on the database's search_path (ALTER
	 * DATABASE ... SET search_path), so only pg_catalog is searched.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	if (!publish_shmem_attach_worker(worker_dboid))
		proc_exit(0);
	before_shmem_exit(worker_exit_callback, (Datum) 0);

	pgstat_report_appname("publish worker");
	job_context = AllocSetContextCreate(TopMemoryContext, "publish job",
										ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		NextJob		next;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		next = run_next_job(job_context, first);
		first = false;
		MemoryContextReset(job_context);
		checksum_release_resources();

		if (next == NEXT_JOB_NO_EXTENSION)
			proc_exit(0);
		if (next == NEXT_JOB_RAN)
			continue;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 publish_sweep_interval * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
