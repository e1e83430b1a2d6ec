/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state: who the launcher is, and one slot per database.
 *
 * A database slot says whether a worker serves the database (its pid and
 * latch), whether the last worker found no extension there (so the launcher
 * leaves the database alone until someone asks again), and whether a
 * utility command (DROP DATABASE, ...) needs the database to itself.
 *
 * Locking: one LWLock guards everything here.  Latches are set after the lock
 * is released.  A slot's pid is cleared by the worker's exit callback; a
 * crashed worker restarts the whole cluster, which re-initialises this
 * memory, so a pid found here belongs to a live worker.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#define PUBLISH_MAX_DATABASES	256

typedef struct PublishDbSlot
{
	Oid			dboid;			/* InvalidOid: slot is free */
	pid_t		worker_pid;		/* 0: no worker attached */
	Latch	   *worker_latch;
	bool		no_extension;	/* last worker found no extension here */
	int			paused;			/* >0: a utility command needs the database */
	uint64		wake_count;		/* bumped by every wake-up request */
	bool		last_exit_failed;	/* the last worker exited with an error */
} PublishDbSlot;

typedef struct PublishShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		rescan;			/* launcher should look at the databases */
	PublishDbSlot dbs[PUBLISH_MAX_DATABASES];
} PublishShared;

static PublishShared *shared = NULL;

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
		memset(free_slot, 0, sizeof(PublishDbSlot));
		free_slot->dboid = dboid;
		return free_slot;
	}
	return NULL;
}

/* The launcher announces itself, so that wake-ups can reach it. */
void
publish_shmem_set_launcher(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_pid = MyProcPid;
	shared->launcher_latch = &MyProc->procLatch;
	shared->rescan = true;
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

/* Returns and clears the launcher's "look at the databases again" flag. */
bool
publish_shmem_take_rescan(void)
{
	bool		rescan;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	rescan = shared->rescan;
	shared->rescan = false;
	LWLockRelease(shared->lock);
	return rescan;
}

/* Caller holds the lock exclusively; returns the latch to set after release. */
static Latch *
request_rescan_locked(void)
{
	shared->rescan = true;
	return shared->launcher_pid != 0 ? shared->launcher_latch : NULL;
}

void
publish_shmem_wake_launcher(bool rescan)
{
	Latch	   *latch;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (rescan)
		latch = request_rescan_locked();
	else
		latch = shared->launcher_pid != 0 ? shared->launcher_latch : NULL;
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Wakes the worker of a database, or, when it has none, asks the launcher
 * to start one.  Called from a commit callback: must not throw.
 */
void
publish_shmem_wake_database(Oid dboid)
{
	PublishDbSlot *slot;
	Latch	   *latch = NULL;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL)
	{
		slot->wake_count++;
		slot->no_extension = false;
		if (slot->worker_pid != 0)
			latch = slot->worker_latch;
	}
	if (latch == NULL)
		latch = request_rescan_locked();
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * A worker attaches to its database's slot.  False when it must not run:
 * another worker is attached, or a utility command needs the database.
 */
bool
publish_shmem_attach_worker(Oid dboid)
{
	PublishDbSlot *slot;
	bool		ok = false;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL && slot->paused == 0 &&
		(slot->worker_pid == 0 || slot->worker_pid == MyProcPid))
	{
		slot->worker_pid = MyProcPid;
		slot->worker_latch = &MyProc->procLatch;
		slot->no_extension = false;
		ok = true;
	}
	LWLockRelease(shared->lock);
	return ok;
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
 * A worker leaves its slot.  no_extension says it found no extension at
 * wake-up count seen_wakes; a wake-up since then (CREATE EXTENSION committing
 * meanwhile) cancels that, and the launcher starts a worker again.
 */
void
publish_shmem_detach_worker(Oid dboid, bool no_extension, uint64 seen_wakes,
							bool failed)
{
	PublishDbSlot *slot;
	Latch	   *latch = NULL;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL && slot->worker_pid == MyProcPid)
	{
		slot->worker_pid = 0;
		slot->worker_latch = NULL;
		slot->no_extension = no_extension && slot->wake_count == seen_wakes;
		/* a worker stopped for a utility command did not fail */
		slot->last_exit_failed = failed && slot->paused == 0;
		if (no_extension && !slot->no_extension)
			latch = request_rescan_locked();
	}
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/* Did the last worker of this database exit with an error?  Clears the flag. */
bool
publish_shmem_take_worker_failed(Oid dboid)
{
	PublishDbSlot *slot;
	bool		failed = false;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, false);
	if (slot != NULL)
	{
		failed = slot->last_exit_failed;
		slot->last_exit_failed = false;
	}
	LWLockRelease(shared->lock);
	return failed;
}

/* Should the launcher run a worker in this database now? */
bool
publish_shmem_database_wanted(Oid dboid)
{
	PublishDbSlot *slot;
	bool		wanted = true;

	LWLockAcquire(shared->lock, LW_SHARED);
	slot = find_slot(dboid, false);
	if (slot != NULL)
		wanted = slot->paused == 0 && !slot->no_extension && slot->worker_pid == 0;
	LWLockRelease(shared->lock);
	return wanted;
}

/*
 * Keeps the launcher out of a database and asks its worker to exit, so that
 * DROP DATABASE and friends do not find it connected.  Every call is paired
 * with publish_shmem_resume_database.
 */
void
publish_shmem_pause_database(Oid dboid)
{
	PublishDbSlot *slot;
	pid_t		pid = 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = find_slot(dboid, true);
	if (slot != NULL)
	{
		slot->paused++;
		pid = slot->worker_pid;
	}
	LWLockRelease(shared->lock);
	if (pid != 0)
		kill(pid, SIGTERM);
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
		latch = request_rescan_locked();
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

		if (slot->dboid == InvalidOid || slot->worker_pid != 0 || slot->paused > 0)
			continue;
		for (int j = 0; j < nalive && !found; j++)
			found = (alive[j] == slot->dboid);
		if (!found)
			slot->dboid = InvalidOid;
	}
	LWLockRelease(shared->lock);
}
