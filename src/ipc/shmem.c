/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state: who the launcher is, and one slot per database.
 *
 * A database slot holds its workers (pid and latch of each, by worker
 * number), whether the last worker found no extension there (so the
 * launcher leaves the database alone until someone asks again), whether a
 * utility command (DROP DATABASE, ...) needs the database to itself, a
 * count of wake-up requests (its worker skips a sweep when the count has
 * not moved and nothing else says the sweep can find work: worker_sweep.c),
 * a condition variable broadcast whenever one of its jobs ends
 * (wait_job sleeps on it), and the job each worker runs now: that says
 * which 'running' jobs have a live worker (job_recover_interrupted) and
 * which worker a cancel_job() interrupts, numbered, so that the worker's
 * SIGINT handler can tell a cancel meant for the job it runs from one that
 * arrives after that job ended.
 *
 * Locking: one LWLock guards everything here but the condition variables.
 * Latches are set after the lock is released.  A worker's pid is cleared by
 * its exit callback; a crashed worker restarts the whole cluster, which
 * re-initialises this memory, so a pid found here belongs to a live worker.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "publish.h"
#include "ipc/ipc.h"

#define PUBLISH_MAX_DATABASES	256

typedef struct PublishWorkerSlot
{
	pid_t		pid;			/* 0: no worker attached */
	Latch	   *latch;
	char		running_job[37];	/* the job it runs now, or "" */
	uint32		running_seq;	/* bumped (never 0) whenever it starts a job */
	pg_atomic_uint32 cancel_seq;	/* running_seq of the job a cancel's
									 * SIGINT is meant for; 0: none */
	bool		last_exit_failed;	/* the last worker here exited with an
									 * error */
	bool		sleeping;		/* waiting on its latch for work */
	bool		wake_owed;		/* woken for new work, has not looked yet */
} PublishWorkerSlot;

typedef struct PublishDbSlot
{
	Oid			dboid;			/* InvalidOid: slot is free */
	bool		no_extension;	/* last worker found no extension here */
	bool		has_extension;	/* a worker found the extension here */
	int			paused;			/* >0: a utility command needs the database */
	uint64		wake_count;		/* bumped by every wake-up request */
	ConditionVariable job_ended;	/* broadcast when a job of this database
									 * ends */
	PublishWorkerSlot workers[PUBLISH_MAX_WORKERS_PER_DATABASE];
} PublishDbSlot;

typedef struct PublishShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	uint64		worker_exits;	/* workers that have exited, since startup */
	PublishDbSlot dbs[PUBLISH_MAX_DATABASES];
} PublishShared;

static PublishShared *shared = NULL;

/* In a worker: its slot, and the running_seq of the job it runs (0: none) */
static PublishWorkerSlot *my_worker_slot = NULL;
static volatile uint32 my_running_seq = 0;

void
publish_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PublishShared)));
	RequestNamedLWLockTranche("publish", 1);
}

void
publish_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("publish", sizeof(PublishShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(PublishShared));
		shared->lock = &(GetNamedLWLockTranche("publish"))->lock;
		for (int i = 0; i < PUBLISH_MAX_DATABASES; i++)
		{
			ConditionVariableInit(&shared->dbs[i].job_ended);
			for (int w = 0; w < PUBLISH_MAX_WORKERS_PER_DATABASE; w++)
				pg_atomic_init_u32(&shared->dbs[i].workers[w].cancel_seq, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* True when the library was preloaded and its shared memory exists. */
bool
publish_shmem_ready(void)
{
	return shared != NULL;
}

/* Caller holds the lock.  Returns NULL when absent (and create is false) or full. */
static PublishDbSlot *
find_slot(Oid dboid, bool create)
{
	PublishDbSlot *free_slot = NULL;

	for (int i = 0; i < PUBLISH_MAX_DATABASES; i++)
	{
		PublishDbSlot *slot = &shared->dbs[i];

		if (slot->dboid == dboid)
			return slot;
		if (slot->dboid == InvalidOid && free_slot == NULL)
			free_slot = slot;
	}
	if (create && free_slot != NULL)
	{
		free_slot->dboid = dboid;
		free_slot->no_extension = false;
		free_slot->has_extension = false;
		free_slot->paused = 0;
		free_slot->wake_count = 0;
		memset(free_slot->workers, 0, sizeof(free_slot->workers));
		for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
			pg_atomic_init_u32(&free_slot->workers[i].cancel_seq, 0);
		return free_slot;
	}
	return NULL;
}

/*
 * This worker's slot while it still holds it (a database's slot may be
 * forgotten, and reused, under a worker that is exiting); caller holds
 * the lock.
 */
static PublishWorkerSlot *
own_slot(void)
{
	return my_worker_slot != NULL && my_worker_slot->pid == MyProcPid ? my_worker_slot : NULL;
}

static bool
any_worker(PublishDbSlot *slot)
{
	for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
		if (slot->workers[i].pid != 0)
			return true;
	return false;
}

/* The launcher announces itself, so that wake-ups can reach it. */
void
publish_shmem_set_launcher(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_pid = MyProcPid;
	shared->launcher_latch = &MyProc->procLatch;
	LWLockRelease(shared->lock);
}

void
publish_shmem_clear_launcher(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (shared->launcher_pid == MyProcPid)
	{
		shared->launcher_pid = 0;
		shared->launcher_latch = NULL;
	}
	LWLockRelease(shared->lock);
}

/*
 * Caller holds the lock; returns the launcher's latch (NULL when there is no
 * launcher), to set after release.  The launcher looks at every database
 * each time it wakes, so waking it is all a request takes.
 */
static Latch *
launcher_latch_locked(void)
{
	return shared->launcher_pid != 0 ? shared->launcher_latch : NULL;
}

/*
 * Wakes the launcher: the list of databases may have changed (CREATE or
 * ALTER DATABASE committed).  Called from a commit callback: must not throw.
 */
void
publish_shmem_wake_launcher(void)
{
	Latch	   *latch;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	latch = launcher_latch_locked();
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Wakes a database's workers, or, when it has none, asks the launcher to
 * start them.  Called from a commit callback: must not throw.
 *
 * For new work (all false) one worker asleep on its latch is enough: it
 * claims a job, and wakes another if more may run (job_claim), so one job
 * queued wakes one worker, not every worker of the
 * database to race for it.  With none asleep, every worker's latch is set:
 * one between its last look at the queue and its sleep looks again.  all
 * (the extension created or dropped, a prepared transaction) wakes every
 * worker.
 */
void
publish_shmem_wake_database(Oid dboid, bool all)
{
	PublishDbSlot *slot;
	Latch	   *latches[PUBLISH_MAX_WORKERS_PER_DATABASE + 1];
	int			n = 0;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL)
	{
		slot->wake_count++;
		slot->no_extension = false;
		for (int i = 0; !all && i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
		{
			PublishWorkerSlot *w = &slot->workers[i];

			if (w->pid != 0 && w->sleeping)
			{
				w->sleeping = false;
				w->wake_owed = true;
				latches[n++] = w->latch;
				break;
			}
		}
		if (n == 0)				/* all, or none asleep: every worker */
			for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
				if (slot->workers[i].pid != 0)
					latches[n++] = slot->workers[i].latch;
	}
	if (n == 0 && (latches[0] = launcher_latch_locked()) != NULL)
		n = 1;
	LWLockRelease(shared->lock);
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * Worker number `number` attaches to its database's slot.  False when it
 * must not run: that number is taken, or a utility command needs the
 * database.
 */
bool
publish_shmem_attach_worker(Oid dboid, int number)
{
	PublishDbSlot *slot;
	bool		ok = false;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL && slot->paused == 0 &&
		(slot->workers[number].pid == 0 || slot->workers[number].pid == MyProcPid))
	{
		slot->workers[number].pid = MyProcPid;
		slot->workers[number].latch = &MyProc->procLatch;
		slot->workers[number].running_job[0] = '\0';
		pg_atomic_write_u32(&slot->workers[number].cancel_seq, 0);
		my_worker_slot = &slot->workers[number];
		slot->no_extension = false;
		ok = true;
	}
	LWLockRelease(shared->lock);
	return ok;
}

/*
 * The worker says which job it runs now (job_id NULL: none): set in the
 * transaction that claims the job, before it commits, and cleared after
 * the commit that records the job's end, so that a 'running' job that no
 * slot names has no worker (job_recover_interrupted).  A cancel_job()
 * committed before the claim is seen by the job (its first step reads
 * cancel_requested); one committed after it finds the job here
 * (publish_shmem_aim_cancel): the lock orders the two.
 */
void
publish_shmem_set_running_job(const char *job_id)
{
	PublishWorkerSlot *w;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if ((w = own_slot()) != NULL)
	{
		strlcpy(w->running_job, job_id ? job_id : "", sizeof(w->running_job));
		if (job_id != NULL && ++w->running_seq == 0)
			w->running_seq = 1;
		my_running_seq = job_id != NULL ? w->running_seq : 0;
	}
	LWLockRelease(shared->lock);
}

/* The worker is about to wait on its latch for work (true), or woke (false). */
void
publish_shmem_set_sleeping(bool sleeping)
{
	PublishWorkerSlot *w;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if ((w = own_slot()) != NULL)
		w->sleeping = sleeping;
	LWLockRelease(shared->lock);
}

/*
 * Does a live worker of the database run the job job_id (it claimed it,
 * and has not recorded its end yet)?
 */
bool
publish_shmem_job_has_worker(Oid dboid, const char *job_id)
{
	PublishDbSlot *slot;
	bool		runs = false;

	LWLockAcquire(shared->lock, LW_SHARED);
	slot = find_slot(dboid, false);
	for (int i = 0; slot != NULL && i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
		if (slot->workers[i].pid != 0 && strcmp(slot->workers[i].running_job, job_id) == 0)
			runs = true;
	LWLockRelease(shared->lock);
	return runs;
}

/*
 * The pid of the worker of the database that runs the job job_id now, or
 * 0; marks that job as the one the SIGINT the caller is about to send is
 * meant for (publish_shmem_cancel_is_stale).
 */
int
publish_shmem_aim_cancel(Oid dboid, const char *job_id)
{
	PublishDbSlot *slot;
	int			pid = 0;

	LWLockAcquire(shared->lock, LW_SHARED);
	slot = find_slot(dboid, false);
	for (int i = 0; slot != NULL && i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
	{
		PublishWorkerSlot *w = &slot->workers[i];

		if (w->pid != 0 && strcmp(w->running_job, job_id) == 0)
		{
			pg_atomic_write_u32(&w->cancel_seq, w->running_seq);
			pid = w->pid;
		}
	}
	LWLockRelease(shared->lock);
	return pid;
}

/*
 * In the worker's SIGINT handler (async-signal-safe: one atomic exchange):
 * true when the signal was sent by cancel_job() for a job this worker no
 * longer runs (it ended between publish_shmem_aim_cancel and the kill), so
 * must not interrupt the next one.  A SIGINT nobody aimed (pg_cancel_backend)
 * is not stale.  Consumes the aim.
 */
bool
publish_shmem_cancel_is_stale(void)
{
	uint32		aimed;

#ifdef PG_HAVE_ATOMIC_U32_SIMULATION
	/* atomics emulated with spinlocks are not async-signal-safe */
	return false;
#endif
	if (my_worker_slot == NULL)
		return false;
	aimed = pg_atomic_exchange_u32(&my_worker_slot->cancel_seq, 0);
	return aimed != 0 && aimed != my_running_seq;
}

/*
 * The worker is about to look at the queue: returns the database's wake
 * count (read before the look's snapshot) and clears the wake-up owed to
 * it (pass_wake_on).
 */
uint64
publish_shmem_look(Oid dboid, int number)
{
	PublishDbSlot *slot;
	uint64		count = 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL)
	{
		count = slot->wake_count;
		if (slot->workers[number].pid == MyProcPid)
			slot->workers[number].wake_owed = false;
	}
	LWLockRelease(shared->lock);
	return count;
}

/* The wake-up count of a database, read before looking for the extension. */
uint64
publish_shmem_wake_count(Oid dboid)
{
	PublishDbSlot *slot;
	uint64		count = 0;

	LWLockAcquire(shared->lock, LW_SHARED);
	slot = find_slot(dboid, false);
	if (slot != NULL)
		count = slot->wake_count;
	LWLockRelease(shared->lock);
	return count;
}

/*
 * Caller holds the lock.  Worker `number`, woken for new work, exits before
 * looking at the queue: one other worker asleep takes the wake-up over, or
 * with none asleep every other worker's latch is set.  Returns the latches
 * to set (after the lock is released).  Neither the wake count nor the
 * launcher: the wake-up was counted, and the database may have lost its
 * extension.
 */
static int
pass_wake_on(PublishDbSlot *slot, int number, Latch **latches)
{
	int			n = 0;

	for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
	{
		PublishWorkerSlot *w = &slot->workers[i];

		if (i != number && w->pid != 0 && w->sleeping)
		{
			w->sleeping = false;
			w->wake_owed = true;
			latches[n++] = w->latch;
			return n;
		}
	}
	for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
		if (i != number && slot->workers[i].pid != 0)
			latches[n++] = slot->workers[i].latch;
	return n;
}

/*
 * A worker leaves its slot.  no_extension says it found no extension at
 * wake-up count seen_wakes; a wake-up since then (CREATE EXTENSION committing
 * meanwhile) cancels that, and the launcher starts workers again.  failed
 * says it exits with an error (the launcher then waits before a restart),
 * unless a utility command stopped it.
 */
void
publish_shmem_detach_worker(Oid dboid, int number, bool no_extension,
							uint64 seen_wakes, bool failed)
{
	PublishDbSlot *slot;
	Latch	   *latch = NULL;
	Latch	   *latches[PUBLISH_MAX_WORKERS_PER_DATABASE];
	int			nlatches = 0;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	shared->worker_exits++;
	if (slot != NULL && slot->workers[number].pid == MyProcPid)
	{
		/* woken for work it did not look at: the wake-up goes to another */
		if (slot->workers[number].wake_owed)
			nlatches = pass_wake_on(slot, number, latches);
		slot->workers[number].pid = 0;
		slot->workers[number].latch = NULL;
		slot->workers[number].sleeping = false;
		slot->workers[number].wake_owed = false;
		my_worker_slot = NULL;
		slot->workers[number].last_exit_failed = failed && slot->paused == 0;
		if (no_extension)
		{
			slot->has_extension = false;
			slot->no_extension = slot->wake_count == seen_wakes;
			if (!slot->no_extension)
				latch = launcher_latch_locked();
		}
	}
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
	for (int i = 0; i < nlatches; i++)
		SetLatch(latches[i]);
}

/*
 * How many workers have exited since the server started (0 without the
 * shared state).  A worker that exits in the middle of a job may leave a
 * temporary file behind (storage_local.c); one that dies takes the server
 * through crash recovery instead, which starts every process again.
 */
uint64
publish_shmem_worker_exits(void)
{
	uint64		n;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	n = shared->worker_exits;
	LWLockRelease(shared->lock);
	return n;
}

/* Did the last worker with this number exit with an error?  Clears the flag. */
bool
publish_shmem_take_worker_failed(Oid dboid, int number)
{
	PublishDbSlot *slot;
	bool		failed = false;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL)
	{
		failed = slot->workers[number].last_exit_failed;
		slot->workers[number].last_exit_failed = false;
	}
	LWLockRelease(shared->lock);
	return failed;
}

/*
 * Should the launcher run worker `number` in this database now?  Worker 0
 * finds out whether the database has the extension; the others start only
 * once one has found it.
 */
bool
publish_shmem_worker_wanted(Oid dboid, int number)
{
	PublishDbSlot *slot;
	bool		wanted = (number == 0);

	LWLockAcquire(shared->lock, LW_SHARED);
	slot = find_slot(dboid, false);
	if (slot != NULL)
		wanted = slot->paused == 0 && !slot->no_extension &&
			slot->workers[number].pid == 0 &&
			(number == 0 || slot->has_extension);
	LWLockRelease(shared->lock);
	return wanted;
}

/*
 * A worker found the extension in its database: the launcher may start the
 * other workers there (it is woken when this is news).
 */
void
publish_shmem_found_extension(Oid dboid)
{
	PublishDbSlot *slot;
	Latch	   *latch = NULL;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL && !slot->has_extension)
	{
		slot->has_extension = true;
		latch = launcher_latch_locked();
	}
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Keeps the launcher out of a database and asks its workers to exit, so that
 * DROP DATABASE and friends do not find them connected.  Every call is
 * paired with publish_shmem_resume_database.
 */
void
publish_shmem_pause_database(Oid dboid)
{
	PublishDbSlot *slot;
	pid_t		pids[PUBLISH_MAX_WORKERS_PER_DATABASE];
	int			n = 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL)
	{
		slot->paused++;
		for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
			if (slot->workers[i].pid != 0)
				pids[n++] = slot->workers[i].pid;
	}
	LWLockRelease(shared->lock);
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGTERM);
}

void
publish_shmem_resume_database(Oid dboid)
{
	PublishDbSlot *slot;
	Latch	   *latch = NULL;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL && slot->paused > 0)
	{
		slot->paused--;
		latch = launcher_latch_locked();
	}
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * The launcher frees the slots of databases that no longer exist (alive is
 * the list of databases it found), unless a worker or a command still uses
 * them.
 */
void
publish_shmem_forget_databases(Oid *alive, int nalive)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PUBLISH_MAX_DATABASES; i++)
	{
		PublishDbSlot *slot = &shared->dbs[i];
		bool		found = false;

		if (slot->dboid == InvalidOid || any_worker(slot) || slot->paused > 0)
			continue;
		for (int j = 0; j < nalive && !found; j++)
			found = (alive[j] == slot->dboid);
		if (!found)
			slot->dboid = InvalidOid;
	}
	LWLockRelease(shared->lock);
}

/*
 * The condition variable broadcast when a job of this database ends; NULL
 * when there is no room for the database (callers then poll).
 */
ConditionVariable *
publish_shmem_job_ended_cv(Oid dboid)
{
	PublishDbSlot *slot;

	if (shared == NULL)
		return NULL;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	LWLockRelease(shared->lock);
	return slot ? &slot->job_ended : NULL;
}

/* Wakes the wait_job() sleepers of a database: some of its jobs ended. */
void
publish_shmem_broadcast_job_ended(Oid dboid)
{
	ConditionVariable *cv = publish_shmem_job_ended_cv(dboid);

	if (cv)
		ConditionVariableBroadcast(cv);
}
