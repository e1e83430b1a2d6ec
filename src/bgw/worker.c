/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A publish worker: sleeps on its latch, runs queued jobs.
 *
 * The launcher starts publish.workers_per_database workers per database,
 * numbered from 0.  A worker attaches to its database's slot (so that
 * committing transactions can set its latch), then loops:
 *
 *	  - it claims one job (job_claim, FOR UPDATE SKIP LOCKED), runs it
 *		through its type's run function (job_types, below) and records how
 *		it ended in a durable transaction of its own, until none may run;
 *		a commit that queued work wakes one sleeping worker, which wakes
 *		another when its claim leaves jobs that may run;
 *	  - it sleeps until its latch is set (a publish committed, SIGHUP,
 *		SIGTERM) or the safety sweep (publish.sweep_interval) is due;
 *	  - at start and at every sweep it recovers jobs left 'running' by a
 *		worker that is gone (job_recover_interrupted), and worker 0 deletes
 *		finished jobs older than publish.job_retention, in small batches.
 *		Only worker 0 sweeps on a timer; the others sweep at start and are
 *		woken by commits, or by worker 0 when its sweep finds a job.
 *	  - a timed sweep that can find nothing (the sweep gate, worker_sweep.c:
 *		no wake-up since the last full sweep, which saw no job queued or
 *		running, no prepared transaction, no purge due, and not the
 *		backstop's turn) is skipped: no transaction, back to sleep.  So is
 *		a latch set with no wake-up counted since the worker last looked
 *		(the server's cache catch-up signal wakes idle processes too; it is
 *		answered with an empty transaction, as an idle backend does).
 *
 * A job's error is caught: the ErrorData is copied, the transaction (if
 * any) aborted, and the job recorded as failed, cancelled (cancel_job) or
 * timed out (publish.job_timeout) in a fresh transaction; the worker goes
 * on with the next job.  A job that failed after it switched release.json
 * first has its type put the live release back (run_job).  Every job end is
 * broadcast to wait_job() sleepers.
 * Memory: a job's allocations live in a context reset after every job.
 * When the extension is not (or no longer) installed, the worker says so in
 * its slot and exits quietly; the launcher starts it again when CREATE
 * EXTENSION commits.  A worker whose number is no longer below
 * publish.workers_per_database (after a reload) exits when idle.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <signal.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "libpq/pqsignal.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/sinval.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "bgw/bgw.h"
#include "ipc/ipc.h"
#include "jobs/jobs.h"
#include "queue/queue.h"
#include "util/util.h"

/* a job whose memory context grew past this hands its heap back after it */
#define BIG_JOB_BYTES	(8 * 1024 * 1024)

typedef enum NextJob
{
	NEXT_JOB_NONE,
	NEXT_JOB_RAN,
	NEXT_JOB_NO_EXTENSION
} NextJob;

static Oid	worker_dboid = InvalidOid;
static TimestampTz last_sweep = 0;
static int	worker_number = 0;
static bool found_extension = false;	/* told the launcher it is here */

static void
worker_exit_callback(int code, Datum arg)
{
	publish_shmem_detach_worker(worker_dboid, worker_number, false, 0, code != 0);
}

/* Has a sweep interval passed since the last sweep? */
static bool
sweep_due(void)
{
	return TimestampDifferenceExceeds(last_sweep, GetCurrentTimestamp(),
									  publish_sweep_interval * 1000);
}

/* Flattens an error into the job's error text: message, then detail. */
static char *
error_text(ErrorData *edata)
{
	if (edata->detail)
		return psprintf("%s\n%s", edata->message, edata->detail);
	return pstrdup(edata->message ? edata->message : "unknown error");
}

/*
 * SIGINT: a cancel_job() of the job this worker runs, or pg_cancel_backend().
 * cancel_job() aims the signal at the job (publish_shmem_aim_cancel); a
 * worker that ended the job in between must not interrupt the next one:
 * such a signal, stale, is dropped (publish_shmem_cancel_is_stale).
 */
static void
worker_sigint(SIGNAL_ARGS)
{
	if (!publish_shmem_cancel_is_stale())
		StatementCancelHandler(postgres_signal_arg);
}

/* The job's type (jobs/job_types.c), or an error. */
static const JobType *
job_type_of(PublishJob *job)
{
	const JobType *type = job_type_find(job->job_type);

	if (type != NULL)
		return type;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("job type \"%s\" is not supported by this version of publish",
					job->job_type)));
	return NULL;				/* keep the compiler quiet */
}

/*
 * After a failure of a job that may have switched release.json: the job
 * type's undo, cancels held off.  NULL when it succeeded, else the last
 * error's text.
 */
static char *
undo_once(const JobType *type, PublishJob *job, MemoryContext mcxt)
{
	uint32		holdoff = QueryCancelHoldoffCount;
	char	   *volatile failure = NULL;

	PG_TRY();
	{
		HOLD_CANCEL_INTERRUPTS();
		type->undo(job, mcxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = job_catch_error(mcxt);

		failure = pstrdup(edata->message ? edata->message : "unknown error");
		ereport(WARNING,
				(errmsg("publish job %s could not put the live release back: %s",
						job->id, failure)));
	}
	PG_END_TRY();
	QueryCancelHoldoffCount = holdoff;
	MemoryContextSwitchTo(mcxt);
	return failure;
}

/*
 * The undo, tried again after 1, 2, 4 ... 60 s while it fails (storage
 * down), for up to publish.job_timeout (0: until it succeeds).  The job
 * stays this worker's meanwhile, first in its project and environment's
 * line; a shutdown ends the wait, and the job's next attempt undoes.
 * NULL when it succeeded, else the last error's text.
 */
static char *
undo_switch(const JobType *type, PublishJob *job, MemoryContext mcxt)
{
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  (int64) publish_job_timeout * 1000);
	long		delay_ms = 1000;
	char	   *failure;

	while ((failure = undo_once(type, job, mcxt)) != NULL &&
		   (publish_job_timeout == 0 || GetCurrentTimestamp() < give_up))
	{
		pgstat_report_activity(STATE_RUNNING, "publish: waiting to put the live release back");
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ProcDiePending)
			CHECK_FOR_INTERRUPTS();
		delay_ms = Min(delay_ms * 2, 60000L);
	}
	return failure;
}

/*
 * Runs one claimed job and records how it ended.  A job that switched and
 * then failed is recorded only once its type's undo has put the storage
 * back (undo_switch).  A switched job past its last attempt (queued again
 * by job_recover_interrupted), or one cancelled before this attempt
 * (cancel_job leaves such a job queued), only undoes.
 */
static void
run_job(PublishJob *job, MemoryContext mcxt)
{
	const JobType *volatile type = NULL;
	JobOutcome	outcome;

	memset(&outcome, 0, sizeof(outcome));
	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		type = job_type_of(job);
		job_pause_point("claimed");
		if (job->cancelled)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("job %s was cancelled", job->id)));
		if (job->switched && job->attempts > publish_max_attempts)
			ereport(ERROR,
					(errmsg("interrupted: the worker stopped while the job was running, %d of %d attempts used",
							job->attempts - 1, publish_max_attempts)));
		type->run(job, &outcome, mcxt);
		job_record_completed(job, &outcome);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const char *status = JOB_STATUS_FAILED;
		char	   *error;

		/*
		 * An ERROR raised from a signal handler (SIGFPE) left that signal
		 * blocked, and PG_TRY does not restore the mask: do it as
		 * PostgresMain does, or the next SIGFPE kills the worker.
		 */
		sigprocmask(SIG_SETMASK, &UnBlockSig, NULL);
		edata = job_catch_error(mcxt);
		/* the undo and the record of the end must not time out */
		job_forget_current();

		/* a cancel_job() signal interrupts whatever the job was doing */
		if (!job->cancelled && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			job->cancelled = job_cancel_was_requested(job);
		if (job->cancelled)
		{
			status = JOB_STATUS_CANCELLED;
			error = pstrdup("cancelled while running; nothing was published");
		}
		else if (job_deadline_passed(job))
			error = psprintf("timed out: the job ran longer than publish.job_timeout (%d s)",
							 publish_job_timeout);
		else
			error = error_text(edata);

		if (job->switched && type != NULL && type->undo != NULL)
		{
			char	   *failure = undo_switch(type, job, mcxt);

			if (failure != NULL)
				error = psprintf("%s\nrelease.json could not be put back, and may name this job's version: %s",
								 error, failure);
		}
		(void) job_record_end(job, status, error);
		ereport(LOG,
				(errmsg("publish job %s ended without publishing: %s", job->id, edata->message)));
	}
	PG_END_TRY();
}

/*
 * Are this database's extension objects of a version this library knows
 * (JobSchema, queue.h)?  Not when the upgrade to a newer version ran
 * before the server restarted with that version's library: then the worker
 * runs nothing (queued jobs stay queued, running ones are not recovered)
 * and says so once in the server log, until an ALTER EXTENSION or a
 * restart with the right library changes that (ALTER EXTENSION wakes it
 * at commit, utility_hook.c).  Caller in a transaction.
 */
static bool
schema_known(MemoryContext mcxt)
{
	static bool waiting = false;
	char	   *version;

	if (job_schema_version(&version, mcxt) != JOB_SCHEMA_UNKNOWN)
	{
		if (waiting)
			ereport(LOG,
					(errmsg("publish worker resumes: the extension in database \"%s\" is version %s",
							get_database_name(MyDatabaseId), version)));
		waiting = false;
		return true;
	}
	if (!waiting)
		ereport(LOG,
				(errmsg("publish worker waits: the extension in database \"%s\" is version %s, which this library (%s) does not know",
						get_database_name(MyDatabaseId), version ? version : "(none)",
						PUBLISH_LIBRARY_VERSION),
				 errdetail("No job of this database runs until its extension has a version the library knows; queued jobs stay queued."),
				 errhint("Restart PostgreSQL if the library of version %s is installed.",
						 version ? version : "(none)")));
	waiting = true;
	return false;
}

/*
 * Claims the next job and runs it; or, with sweep, first recovers jobs
 * interrupted by a crash (and tells whether finished jobs are due for
 * deletion, *purge_due).
 */
static NextJob
run_next_job(MemoryContext mcxt, bool sweep, bool *purge_due)
{
	PublishJob *volatile job = NULL;
	uint64		wakes = publish_shmem_wake_count(worker_dboid);
	bool		queue_busy = true;

	job_txn_begin("publish: looking for jobs");
	if (!job_extension_present())
	{
		job_txn_commit(false);
		publish_shmem_detach_worker(worker_dboid, worker_number, true, wakes, false);
		return NEXT_JOB_NO_EXTENSION;
	}
	job_queue_check_plans();
	if (!found_extension)
	{
		/* the extension is here: the launcher may start our siblings */
		publish_shmem_found_extension(worker_dboid);
		found_extension = true;
	}
	if (sweep)
	{
		SweepFindings found;

		job_sweep_needed(&found);
		worker_sweep_record(&found);
		queue_busy = found.queue_busy;
		*purge_due = found.purge_due;
	}
	if (!queue_busy || !schema_known(mcxt))
	{
		/* nothing queued or running (the sweep is done), or not for us */
		job_txn_commit(false);
		return NEXT_JOB_NONE;
	}
	if (sweep && job_recover_interrupted() > 0)
		publish_job_ended_at_commit();	/* some may have failed: tell wait_job */

	/* durable: a job that crashes the server must see its attempts counted */
	PG_TRY();
	{
		job = job_claim(mcxt);
		job_txn_commit(job != NULL);
	}
	PG_CATCH();
	{
		publish_shmem_set_running_job(NULL);
		job_forget_current();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (job == NULL)
		return NEXT_JOB_NONE;

	pgstat_report_activity(STATE_RUNNING, "publish: running a job");
	run_job(job, mcxt);
	/* a cancel held off while the end was recorded was for this job alone */
	QueryCancelPending = false;
	/* after the commit that recorded the end, or with the job left to a sweep */
	job_forget_current();
	publish_shmem_set_running_job(NULL);
	publish_shmem_broadcast_job_ended(worker_dboid);
	pgstat_report_activity(STATE_IDLE, NULL);
	return NEXT_JOB_RAN;
}

/*
 * Runs the next job, or a sweep (sweep), then resets the job's memory;
 * after a sweep that found finished jobs past publish.job_retention, worker
 * 0 deletes them.  Exits when the extension is gone.
 */
static NextJob
look_for_work(MemoryContext job_context, bool sweep)
{
	NextJob		next;
	bool		purge_due = false;
	bool		big_job;

	next = run_next_job(job_context, sweep, &purge_due);
	big_job = MemoryContextMemAllocated(job_context, true) > BIG_JOB_BYTES;
	MemoryContextReset(job_context);
	checksum_release_resources();
#ifdef __GLIBC__
	/* give a big release's heap (json-c's too) back to the system */
	if (big_job)
		malloc_trim(0);
#endif

	if (next == NEXT_JOB_NO_EXTENSION)
		proc_exit(0);
	if (sweep && purge_due && worker_number == 0)
	{
		MemoryContextSwitchTo(job_context);
		job_purge_expired();
		MemoryContextReset(job_context);
	}
	return next;
}

void
publish_worker_main(Datum main_arg)
{
	MemoryContext job_context;
	bool		sweep = true;
	bool		woke = false;	/* back from WaitLatch */
	bool		reloaded;
	uint64		looked_wakes = 0;	/* wake count read before we last looked */
	int			rc = 0;			/* what ended the last WaitLatch */

	worker_dboid = DatumGetObjectId(main_arg);
	memcpy(&worker_number, MyBgworkerEntry->bgw_extra, sizeof(worker_number));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, worker_sigint);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(worker_dboid, InvalidOid, 0);

	/*
	 * The worker runs as the bootstrap superuser: its queries must not find
	 * objects of a schema someone put on the database's search_path (ALTER
	 * DATABASE ... SET search_path), so only pg_catalog is searched.  The
	 * queue's protocol (claim, blockers, the triggers that unblock and wake)
	 * needs read-write, read committed transactions with triggers firing,
	 * whatever the database or server sets by default.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("session_replication_role", "origin", PGC_SUSET, PGC_S_OVERRIDE);

	if (worker_number < 0 || worker_number >= PUBLISH_MAX_WORKERS_PER_DATABASE ||
		!publish_shmem_attach_worker(worker_dboid, worker_number))
		proc_exit(0);
	before_shmem_exit(worker_exit_callback, (Datum) 0);

	pgstat_report_appname("publish worker");
	job_context = AllocSetContextCreate(TopMemoryContext, "publish job",
										ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		NextJob		next;

		/* a query cancel only means something while a job runs */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		reloaded = ConfigReloadPending;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			worker_sweep_forget();	/* publish.job_retention may have changed */
		}
		if (worker_number >= publish_workers_per_database)
			proc_exit(0);		/* a wake-up it was owed goes to another */

		sweep = sweep || sweep_due();
		if (sweep)
		{
			last_sweep = GetCurrentTimestamp();
			/* can it find anything?  (worker_sweep.c) */
			sweep = worker_sweep_gate(worker_dboid);
		}

		/*
		 * Woken, but no wake-up was counted since we last looked, and no
		 * sweep is to be made: a timed sweep the gate skipped, or the latch
		 * set by something other than work (a reload is looked at; the
		 * server's cache catch-up signal is answered, below).  Every wake-up
		 * for work moves the count before it sets the latch, so nothing is
		 * missed: back to sleep without looking for work.
		 */
		if (woke && !sweep && !reloaded &&
			publish_shmem_wake_count(worker_dboid) == looked_wakes)
		{
			if (!(rc & WL_TIMEOUT))
				ereport(DEBUG1,
						(errmsg_internal("publish worker woken without a wake-up: not looking for work")));

			/*
			 * PostgreSQL's cache catch-up signal: answered as an idle backend
			 * answers it (an empty transaction reads the invalidations).  A
			 * worker that ignored it fell behind while asleep, had its caches
			 * reset, and paid for rebuilding them and re-planning at its next
			 * sweep (docs/performance.md, "Idle").
			 */
			if (catchupInterruptPending)
				ProcessCatchupInterrupt();
			next = NEXT_JOB_NONE;
		}
		else
		{
			/*
			 * read before the transaction's snapshot: a later wake-up is
			 * counted next time
			 */
			looked_wakes = publish_shmem_look(worker_dboid, worker_number);
			next = look_for_work(job_context, sweep);
		}
		sweep = false;
		woke = false;
		if (next == NEXT_JOB_RAN)
			continue;

		/*
		 * Only worker 0 keeps the sweep's timer: one worker per database is
		 * enough to find what no wake-up announced (a sibling is woken when a
		 * claim leaves jobs that may run: job_claim), and the others cost
		 * nothing while idle.  When its last full sweep left nothing to
		 * watch, it sleeps until the purge or the backstop is due
		 * (worker_sweep_timeout).
		 */
		publish_shmem_set_sleeping(true);
		rc = WaitLatch(MyLatch,
					   WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (worker_number == 0 ? WL_TIMEOUT : 0),
					   worker_number == 0 ? worker_sweep_timeout(worker_dboid) : -1L,
					   PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		publish_shmem_set_sleeping(false);
		/* WaitLatch reports one event: the timer, or the latch (which wins) */
		sweep = (rc & WL_TIMEOUT) != 0;
		woke = true;
	}
}
