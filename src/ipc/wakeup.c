/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake a database's worker when the transaction that queued a job
 *	  commits, and never before.
 *
 * A transaction that queues a job (publish_version, build_tiles, or any
 * statement that writes a 'queued' row: the job_queue_wake triggers) only
 * notes, in backend-local state, that this database has new work.  A
 * transaction callback sets the worker's latch at XACT_EVENT_COMMIT, which
 * runs after the commit is visible to other backends, so the woken worker
 * finds the job.  An abort (or PREPARE TRANSACTION) forgets the note:
 * nobody is woken for work that does not exist yet, except that PREPARE of
 * a transaction that queued a job wakes the worker too: it finds nothing
 * yet, but its sweeps stay full while the transaction is prepared
 * (worker_sweep.c).  COMMIT PREPARED wakes the worker (utility_hook.c), and
 * the safety sweep (publish.sweep_interval, publish.sweep_backstop) is the
 * net under both.
 *
 * A publish_version() inside a savepoint that is rolled back still wakes the
 * worker at commit; it finds nothing to do and sleeps again.
 *
 * The same callback wakes the launcher when a transaction that created or
 * altered a database commits (utility_hook.c), wakes wait_job() sleepers
 * when a transaction that ended a job without a worker (cancel_job, a
 * superseded request) commits, and interrupts the worker running a job
 * that cancel_job() cancelled.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "access/xact.h"
#include <signal.h>

#include "miscadmin.h"

#include "publish.h"
#include "ipc/ipc.h"

static bool callback_registered = false;
static enum
{
	WAKE_NONE, WAKE_ONE, WAKE_ALL
}			wake_pending = WAKE_NONE;	/* the database's workers to wake */
static bool job_ended_pending = false;
static bool launcher_pending = false;	/* the list of databases changed */
static char cancel_job[37];		/* the worker running this job is interrupted
								 * at commit; "": none */

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_pending != WAKE_NONE)
			{
				publish_shmem_wake_database(MyDatabaseId, wake_pending == WAKE_ALL);
				wake_pending = WAKE_NONE;
			}
			if (launcher_pending)
			{
				launcher_pending = false;
				publish_shmem_wake_launcher();
			}
			if (cancel_job[0] != '\0')
			{
				int			pid = publish_shmem_aim_cancel(MyDatabaseId, cancel_job);

				if (pid != 0 && pid != MyProcPid)
					(void) kill(pid, SIGINT);
				cancel_job[0] = '\0';
			}
			if (job_ended_pending)
			{
				job_ended_pending = false;
				publish_shmem_broadcast_job_ended(MyDatabaseId);
			}
			break;
		case XACT_EVENT_PREPARE:

			/*
			 * The job is invisible until COMMIT PREPARED, but the worker's
			 * next sweep must be full, and see the prepared transaction.
			 */
			if (wake_pending != WAKE_NONE)
				publish_shmem_wake_database(MyDatabaseId, true);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
			wake_pending = WAKE_NONE;
			job_ended_pending = false;
			launcher_pending = false;
			cancel_job[0] = '\0';
			break;
		default:
			break;
	}
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
}

/*
 * Arranges for this database's worker to be woken when the current
 * transaction commits.  Caller has checked publish_shmem_ready().
 */
void
publish_wake_at_commit(void)
{
	register_callback();
	if (wake_pending == WAKE_NONE)
		wake_pending = WAKE_ONE;
}

/*
 * Arranges for every worker of this database to be woken when the current
 * transaction commits: a DROP EXTENSION or a COMMIT PREPARED
 * (utility_hook.c), which every worker must see.
 */
void
publish_wake_all_at_commit(void)
{
	register_callback();
	wake_pending = WAKE_ALL;
}

/*
 * Arranges for wait_job() sleepers of this database to be woken when the
 * current transaction commits: it ended a job without a worker (cancel_job
 * of a queued job, a superseded request).
 */
void
publish_job_ended_at_commit(void)
{
	register_callback();
	job_ended_pending = true;
}

/*
 * Arranges for the worker that runs job_id, whose cancel the current
 * transaction requests, to be interrupted (SIGINT, as pg_cancel_backend)
 * when the transaction commits, if a worker runs it then: a transfer then
 * stops within a second, and the worker, seeing the request committed,
 * records the job as cancelled.
 */
void
publish_cancel_worker_at_commit(const char *job_id)
{
	register_callback();
	strlcpy(cancel_job, job_id, sizeof(cancel_job));
}

/*
 * Arranges for the launcher to be woken when the current transaction
 * commits: it created or altered a database, and the launcher may have
 * workers to start (a database copied from one with the extension, one
 * that now allows connections).
 */
void
publish_wake_launcher_at_commit(void)
{
	register_callback();
	launcher_pending = true;
}
