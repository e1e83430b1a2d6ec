/*-------------------------------------------------------------------------
 *
 * job_group.c
 *	  Publishes recorded together: one sync and one durable commit for the
 *	  jobs a worker claimed together.
 *
 * While jobs are queued a worker claims a few at once (job_claim, at most
 * PUBLISH_GROUP_MAX and its share) and runs them one after the other.
 * Each publish goes through its steps as when it runs alone (progress
 * commits asynchronous) and switches release.json; then, instead of its
 * own storage_sync and durable final transaction, it waits here
 * (job_group_defer): its sync is handed to the group's set, what its final
 * transaction records is kept.  Once the worker has run the last claimed
 * job it calls job_group_commit: ONE sync for the group (file://: each
 * directory whose entries changed, once), then ONE durable transaction that
 * records every job of the group (each with its own check: one that fails
 * is recorded failed in the same transaction, the others completed) and
 * claims the next jobs.  Each job's session locks (its own, its version's)
 * are released after that commit.  A job run alone is a group of one: the
 * same sync, and the same final transaction, as before groups.
 *
 * Crash safety (docs/performance.md, "Which commits and fsyncs are
 * durable"): a job is recorded completed only after every file and name of
 * its release is durable (the sync precedes the commit); release.json was
 * switched after the versioned copy's data was fsync'd (storage_local.c).
 * A crash, or SIGTERM, before the commit leaves every job of the group
 * 'running' with its lock free: the sweep requeues it (its attempt was
 * counted when it was claimed) or, out of attempts, fails it and queues the
 * live release again (job_recover_interrupted).  A job that fails before
 * its switch is recorded failed at once (worker.c), the others unchanged.
 *
 * Memory: what the group keeps lives in a context of its own, reset after
 * the group's commit; the jobs' contexts are reset after each job.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "job.h"
#include "storage.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/*
 * How long a switched publish may wait for the jobs after it in its group:
 * past this, the next transaction of the job running then (a step, or a
 * tile loop's checkpoint, about once a second) records the group first.
 */
#define GROUP_MAX_WAIT_MS	50

static MemoryContext group_cxt = NULL;
static List *pending = NIL;		/* PendingRelease *, in the order they switched */
static TimestampTz first_pending_at;	/* when the first of them switched */
static StorageSyncSet syncs;

/*
 * The job (switched) waits for its group: its sync is handed to the
 * group's set, what its final transaction records is copied.  Its version
 * lock now belongs to the group (released after the group's commit).
 * Outside a transaction, cancel interrupts held.
 */
void
job_group_defer(const PendingRelease *rel, StorageTarget *target)
{
	MemoryContext old;
	PendingRelease *copy;

	if (group_cxt == NULL)
		group_cxt = AllocSetContextCreate(TopMemoryContext, "publish job group",
										  ALLOCSET_SMALL_SIZES);
	storage_defer_sync(target, &syncs, group_cxt);

	old = MemoryContextSwitchTo(group_cxt);
	copy = palloc(sizeof(PendingRelease));
	*copy = *rel;
	copy->job = job_copy(rel->job, group_cxt);
	copy->project_id = pstrdup(rel->project_id);
	copy->env = pstrdup(rel->env);
	copy->published_at = pstrdup(rel->published_at);
	copy->release_url = pstrdup(rel->release_url);
	copy->release_sha256 = pstrdup(rel->release_sha256);
	if (pending == NIL)
		first_pending_at = GetCurrentTimestamp();
	pending = lappend(pending, copy);
	MemoryContextSwitchTo(old);

	rel->job->pending = true;
	rel->job->version_locked = false;
}

/* Is a switched publish waiting for its group's commit? */
bool
job_group_pending(void)
{
	return pending != NIL;
}

/*
 * Records one job's end in a transaction of its own, after the group's
 * failed: its release if the group's sync was made (synced), else (or if
 * that fails too) its failure with the error's text.
 */
static void
record_alone(PendingRelease *rel, bool synced, const char *why)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool recorded = false;
	uint32		holdoff = QueryCancelHoldoffCount;

	if (synced)
	{
		PG_TRY();
		{
			job_txn_begin("publish: marking published");
			recorded = publish_record_release(rel);
			if (!recorded)
				job_record_end(rel->job, "failed",
							   "the version or the job changed while it was being published");
			job_txn_commit(true);
			recorded = true;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			edata = job_catch_error(mcxt);
			why = edata->message ? edata->message : "unknown error";
			recorded = false;
		}
		PG_END_TRY();
		QueryCancelHoldoffCount = holdoff;	/* an ERROR resets it to 0 */
	}
	if (recorded)
		return;
	job_record_end_alone(rel->job, "failed", why);
	ereport(LOG,
			(errmsg("publish job %s ended without being recorded as published: %s",
					rel->job->id, why)));
}

/*
 * Has the group's first publish waited GROUP_MAX_WAIT_MS?  A long job (tiles,
 * a big release) after it would otherwise keep it unrecorded, and its
 * wait_job() callers waiting, until that job ended.
 */
bool
job_group_overdue(void)
{
	return pending != NIL &&
		TimestampDifferenceExceeds(first_pending_at, GetCurrentTimestamp(), GROUP_MAX_WAIT_MS);
}

/*
 * Makes the group's one sync, then records every job of the group in one
 * durable transaction that also claims the next jobs (claim: up to
 * PUBLISH_GROUP_MAX; only when the caller has no claimed job left to run);
 * then releases the jobs' locks and wakes wait_job() sleepers.  Returns how
 * many jobs ended (0: no group).  Outside a transaction: between two jobs,
 * or between two transactions of a job when the group is overdue
 * (job_txn_begin; the running job's own files are not the group's).  Cancels wait meanwhile (every job of the group is past
 * its last checkpoint).  Should the sync or the transaction fail, each job
 * is recorded alone (record_alone), and nothing is claimed.
 */
int
job_group_commit(bool claim)
{
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool synced = false;
	ErrorData  *volatile edata = NULL;
	ListCell   *lc;
	int			n;
	uint32		holdoff;

	if (pending == NIL)
		return 0;
	Assert(!claim || !job_has_claimed_next());

	HOLD_CANCEL_INTERRUPTS();
	holdoff = QueryCancelHoldoffCount;
	job_forget_current();		/* no job's deadline applies here */
	PG_TRY();
	{
		pgstat_report_activity(STATE_RUNNING, "publish: syncing a group of releases");
		storage_sync_deferred(&syncs);
		synced = true;
		job_txn_begin("publish: marking published");
		foreach(lc, pending)
		{
			PendingRelease *rel = lfirst(lc);

			if (!publish_record_release(rel))
				job_record_end(rel->job, "failed",
							   "the version or the job changed while it was being published");
		}
		if (claim)
			(void) job_claim(PUBLISH_GROUP_MAX);
		/* durable: the releases, and the next claims' attempts */
		job_txn_commit(true);
	}
	PG_CATCH();
	{
		edata = job_catch_error(mcxt);
		job_drop_claimed();
	}
	PG_END_TRY();
	QueryCancelHoldoffCount = holdoff;	/* an ERROR resets it to 0: still held */

	if (edata != NULL)
	{
		ereport(LOG,
				(errmsg("publish worker could not record a group of %d jobs together: %s",
						list_length(pending), edata->message)));
		foreach(lc, pending)
			record_alone(lfirst(lc), synced, edata->message ? edata->message : "unknown error");
	}

	/* after the commit that recorded them: their locks */
	foreach(lc, pending)
	{
		PendingRelease *rel = lfirst(lc);

		publish_unlock_version(rel->job);
		job_release_lock(rel->job);
	}
	n = list_length(pending);
	publish_shmem_broadcast_job_ended(MyDatabaseId);
	pending = NIL;
	syncs.dirs = NIL;
	syncs.roots = NIL;
	MemoryContextReset(group_cxt);
	RESUME_CANCEL_INTERRUPTS();
	MemoryContextSwitchTo(mcxt);
	return n;
}
