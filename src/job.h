/*-------------------------------------------------------------------------
 *
 * job.h
 *	  A job as the worker sees it, and the job queue's operations.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_JOB_H
#define PUBLISH_JOB_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef struct PublishJob
{
	char	   *id;
	char	   *job_type;
	char	   *version_id;		/* NULL when the version was deleted */
	char	   *env;
	int			attempts;		/* including this one */
	TimestampTz started;		/* when this worker claimed it */
	bool		cancelled;		/* cancel_job() asked, and we noticed */
	bool		version_locked; /* holds its version's session lock (job_publish.c) */
	bool		pending;		/* switched: its group records it (job_group.c) */
} PublishJob;

/*
 * A publish that has switched release.json and waits, with the others of
 * its group, for the group's sync and durable commit (job_group.c): what
 * its final transaction records.
 */
typedef struct PendingRelease
{
	PublishJob *job;
	char	   *project_id;
	char	   *env;
	char	   *published_at;
	char	   *release_url;
	char	   *release_sha256;
	int64		overlay_count;
	int32		asset_count;
	int64		tile_count;
	int64		tiles_copied;
	int64		tiles_skipped;
	int64		tiles_verified;
	int64		release_bytes;
} PendingRelease;

/* at most this many jobs are claimed, run and recorded together */
#define PUBLISH_GROUP_MAX	8

/* What a sweep found (job_sweep_needed), for the worker and the sweep gate. */
typedef struct SweepFindings
{
	bool		queue_busy;		/* jobs queued or running */
	bool		prepared;		/* prepared transactions in this database */
	bool		purge_due;		/* finished jobs past publish.job_retention */
	TimestampTz purge_at;		/* when the oldest finished job will be; DT_NOEND: never */
} SweepFindings;

/* A short transaction with SPI connected and a snapshot pushed. */
extern void job_record_group_now(void);
extern void job_txn_begin(const char *activity);
extern void job_txn_commit(bool durable);

/* Jobs claimed together, waiting to run (job_queue.c). */
extern bool job_has_claimed_next(void);
extern PublishJob *job_take_claimed_next(MemoryContext mcxt);
extern void job_release_lock(PublishJob *job);
extern void job_drop_claimed(void);

/* Each of these runs inside job_txn_begin/job_txn_commit. */
extern bool job_extension_present(void);
extern void job_sweep_needed(SweepFindings *found);
extern uint64 job_recover_interrupted(void);
extern int	job_claim(int max);
extern void job_step_done(PublishJob *job, int progress, const char *message);
extern void job_log(PublishJob *job, const char *level, const char *message);
extern void job_record_end(PublishJob *job, const char *status, const char *error);
extern void job_record_end_alone(PublishJob *job, const char *status, const char *error);
extern ErrorData *job_catch_error(MemoryContext mcxt);
extern PublishJob *job_copy(const PublishJob *job, MemoryContext mcxt);
extern void job_purge_expired(void);
extern void job_forget_current(void);

/* Outside a transaction: stops the job if it was cancelled or timed out. */
extern void job_checkpoint(PublishJob *job);

/* Outside a transaction: a step's progress and line, written now or held (job_queue.c). */
extern void job_step_reached(PublishJob *job, const char *activity, int progress, const char *message,
							 bool next_is_short);
extern void job_write_held_lines(PublishJob *job);

/* A storage target's warn callback (arg: the PublishJob): a warn line, at once. */
extern void job_storage_warning(void *arg, const char *message);
extern void job_progress(PublishJob *job, int progress);
extern bool job_deadline_passed(PublishJob *job);
extern bool job_cancel_was_requested(PublishJob *job);

/* worker_sweep.c: may a timed sweep be skipped, and how long to sleep */
extern bool worker_sweep_gate(Oid dboid);
extern void worker_sweep_record(const SweepFindings *found);
extern void worker_sweep_forget(void);
extern long worker_sweep_timeout(Oid dboid);

/* job_publish.c */
extern void publish_job_run(PublishJob *job, MemoryContext mcxt);
extern bool publish_record_release(const PendingRelease *rel);
extern void publish_unlock_version(PublishJob *job);

/* job_group.c: publishes switched, recorded together */
struct StorageTarget;
extern void job_group_defer(const PendingRelease *rel, struct StorageTarget *target);
extern bool job_group_pending(void);
extern bool job_group_overdue(void);
extern int	job_group_commit(bool claim);

#endif							/* PUBLISH_JOB_H */
