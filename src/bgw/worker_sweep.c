/*-------------------------------------------------------------------------
 *
 * worker_sweep.c
 *	  The sweep gate: whether a worker's safety sweep can find anything,
 *	  decided from shared memory alone, so that an idle sweep costs no
 *	  transaction and no query.
 *
 * A full sweep (worker.c) is a transaction running job_sweep_needed, then,
 * if it says so, recovery of interrupted jobs, a claim, and the retention
 * purge.  What could it find that no wake-up announced?
 *
 *	  - a job committed since the last full sweep: every row of
 *		publish.job_queue inserted as 'queued' or 'running', or updated to
 *		'queued' (publish_version, build_tiles, a superuser's INSERT, a
 *		restore's COPY: the job_queue_wake triggers) bumps the database's
 *		wake count at commit (wakeup.c), and so do CREATE EXTENSION, COMMIT
 *		PREPARED and DROP EXTENSION (utility_hook.c), and PREPARE
 *		TRANSACTION of a transaction that queued a job;
 *	  - a job queued or running when the last full sweep looked: queued
 *		jobs wait for a worker, and running ones may be cancelled, time out
 *		or lose their worker (recovery); these keep every sweep full until
 *		the queue is empty, as before the gate;
 *	  - a job in a prepared transaction: the last full sweep saw prepared
 *		transactions in this database (pg_prepared_xact()), which may hold
 *		jobs, and COMMIT PREPARED may come from a session that did not load
 *		the library's hooks in time; sweeps stay full while there are any;
 *	  - a finished job past publish.job_retention: the last full sweep
 *		computed when the oldest finished job expires, and the sweep at or
 *		after that time is full (and so is the one after a purge, which
 *		computes the next time);
 *	  - anything else (rows written with triggers off: session_replication_role
 *		= replica, a restore with --disable-triggers; a lost wake-up): the
 *		backstop, a full sweep at least every publish.sweep_backstop (an
 *		hour by default).
 *
 * So a sweep is full when: no full sweep has run in this process yet (start,
 * restart after a crash, promotion: recovery of jobs left running needs it,
 * and prepared transactions survive a restart), the configuration was
 * reloaded (publish.job_retention may have changed), the wake count moved,
 * the last full sweep saw queued or running jobs or prepared transactions,
 * a purge is due, or the backstop says so.  Otherwise it is skipped: a read
 * of the wake count under the shared lock, and back to sleep.
 *
 * Better still, an idle worker does not wake for a sweep it would skip.
 * Every bump of the wake count also sets a latch: worker 0's whenever it
 * sleeps (a wake-up for new work picks the lowest-numbered worker asleep,
 * shmem.c), every worker's when none sleeps; and worker 0 marks itself
 * asleep before it reads the count for its timeout.  So between
 * two full sweeps that saw nothing to watch only time can open the gate:
 * the purge time or the backstop.  worker_sweep_timeout tells worker 0 to
 * sleep until then; after a wake-up it sleeps one sweep interval again, and
 * the sweep that follows is full.  An idle database's worker wakes once per
 * backstop period, for one full sweep (each wake-up from a long sleep costs
 * about as much CPU as a query, cold caches: skipping the sweep is not
 * enough).
 *
 * The wake count is read before the full sweep's transaction takes its
 * snapshot, and a bump happens after the commit it announces is visible:
 * a bump the sweep did not count makes the next sweep full, and one it did
 * count announced a commit its snapshot sees.  The same holds for PREPARE:
 * the prepared transaction is in pg_prepared_xact() before the bump.
 *
 * State is per process (only the worker that sweeps keeps it); a worker
 * that starts again starts with a full sweep.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "utils/timestamp.h"

#include "publish.h"
#include "bgw/bgw.h"
#include "ipc/ipc.h"

static bool known = false;		/* a full sweep has run since start/reload */
static TimestampTz last_full;	/* when it ran */
static uint64 counted_wakes;	/* wake count read before it */
static uint64 pending_wakes;	/* read before the full sweep now running */
static bool saw_work;			/* it saw jobs queued or running */
static bool saw_prepared;		/* it saw prepared transactions here */
static TimestampTz purge_at;	/* when the oldest finished job expires */

static TimestampTz
backstop_at(void)
{
	return TimestampTzPlusMilliseconds(last_full, (int64) publish_sweep_backstop * 1000);
}

/*
 * Must the sweep now due be a full one?  Reads the database's wake count
 * (to be recorded by worker_sweep_record when the full sweep has run).
 * Says which at DEBUG1.
 */
bool
worker_sweep_gate(Oid dboid)
{
	const char *why = NULL;
	TimestampTz now = GetCurrentTimestamp();

	pending_wakes = publish_shmem_wake_count(dboid);
	if (!known)
		why = "first sweep since the worker started or reloaded its configuration";
	else if (pending_wakes != counted_wakes)
		why = "wake-ups since the last full sweep";
	else if (saw_work)
		why = "jobs were queued or running at the last full sweep";
	else if (saw_prepared)
		why = "prepared transactions at the last full sweep";
	else if (now >= purge_at)
		why = "finished jobs are due for deletion (publish.job_retention)";
	else if (now >= backstop_at())
		why = "backstop (publish.sweep_backstop)";

	if (why == NULL)
	{
		ereport(DEBUG1,
				(errmsg_internal("publish sweep skipped: nothing changed since the last full sweep")));
		return false;
	}
	ereport(DEBUG1, (errmsg_internal("publish sweep: full, %s", why)));
	return true;
}

/* A full sweep ran and found this (job_sweep_needed). */
void
worker_sweep_record(const SweepFindings *found)
{
	known = true;
	last_full = GetCurrentTimestamp();
	counted_wakes = pending_wakes;
	saw_work = found->queue_busy;
	saw_prepared = found->prepared;
	/* a purge runs now: the next sweep computes the next expiry */
	purge_at = found->purge_due ? 0 : found->purge_at;
}

/* The configuration was reloaded: the next sweep is full. */
void
worker_sweep_forget(void)
{
	known = false;
}

/*
 * How long worker 0 may sleep before its next timed sweep, in
 * milliseconds.  publish.sweep_interval while the gate has something to
 * watch (no full sweep yet, wake-ups since the last one, jobs queued or
 * running, prepared transactions).  When it has nothing to watch, until the
 * first time it opens by itself: the retention purge or the backstop.  In
 * between, only a wake-up could open it, and a wake-up after this worker
 * marked itself asleep (before this is called) sets its latch (see above).
 */
long
worker_sweep_timeout(Oid dboid)
{
	long		interval = publish_sweep_interval * 1000L;
	TimestampTz until;

	if (!known || saw_work || saw_prepared ||
		publish_shmem_wake_count(dboid) != counted_wakes)
		return interval;
	until = Min(purge_at, backstop_at());
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until), 10);
}
