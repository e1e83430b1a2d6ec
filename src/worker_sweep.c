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
 *	  - a job committed since the last full sweep: every publish_version and
 *		build_tiles bumps the database's wake count at commit (wakeup.c), and
 *		so do CREATE EXTENSION, COMMIT PREPARED and DROP EXTENSION
 *		(utility_hook.c), and PREPARE TRANSACTION of a transaction that queued
 *		a job;
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
 *	  - anything else (a superuser's INSERT or UPDATE of publish.job_queue,
 *		a restore of the table's data, a job queued in a prepared transaction
 *		by hand): the backstop, one full sweep in every SWEEP_BACKSTOP timed
 *		sweeps (5 minutes at the default 30 s interval).
 *
 * So a sweep is full when: no full sweep has run in this process yet (start,
 * restart after a crash, promotion: recovery of jobs left running needs it,
 * and prepared transactions survive a restart), the configuration was
 * reloaded (publish.job_retention may have changed), the wake count moved,
 * the last full sweep saw queued or running jobs or prepared transactions,
 * a purge is due, or the backstop says so.  Otherwise it is skipped: a read
 * of the wake count under the shared lock, and back to sleep.
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
#include "publish.h"
#include "job.h"

#include "utils/timestamp.h"

/* one timed sweep in this many is full even when nothing says it must be */
#define SWEEP_BACKSTOP	10

static bool known = false;		/* a full sweep has run since start/reload */
static uint64 counted_wakes;	/* wake count read before that sweep */
static uint64 pending_wakes;	/* read before the full sweep now running */
static bool saw_work;			/* it saw jobs queued or running */
static bool saw_prepared;		/* it saw prepared transactions here */
static TimestampTz purge_at;	/* when the oldest finished job expires */
static int	skipped;			/* sweeps skipped since it */

/*
 * Must the sweep now due be a full one?  Reads the database's wake count
 * (to be recorded by worker_sweep_record when the full sweep has run), and
 * counts a skipped sweep.  Says which at DEBUG1.
 */
bool
worker_sweep_gate(Oid dboid)
{
	const char *why = NULL;

	pending_wakes = publish_shmem_wake_count(dboid);
	if (!known)
		why = "first sweep since the worker started or reloaded its configuration";
	else if (pending_wakes != counted_wakes)
		why = "wake-ups since the last full sweep";
	else if (saw_work)
		why = "jobs were queued or running at the last full sweep";
	else if (saw_prepared)
		why = "prepared transactions at the last full sweep";
	else if (GetCurrentTimestamp() >= purge_at)
		why = "finished jobs are due for deletion (publish.job_retention)";
	else if (skipped >= SWEEP_BACKSTOP - 1)
		why = "backstop (one sweep in " CppAsString2(SWEEP_BACKSTOP) " is full)";

	if (why == NULL)
	{
		skipped++;
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
	counted_wakes = pending_wakes;
	saw_work = found->queue_busy;
	saw_prepared = found->prepared;
	/* a purge runs now: the next sweep computes the next expiry */
	purge_at = found->purge_due ? 0 : found->purge_at;
	skipped = 0;
}

/* The configuration was reloaded: the next sweep is full. */
void
worker_sweep_forget(void)
{
	known = false;
}
