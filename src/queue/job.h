/*-------------------------------------------------------------------------
 *
 * job.h
 *	  A job as the worker sees it, the job types, and the job queue's
 *	  operations (job_queue.c).
 *
 * A worker claims one job, runs it through its type's run function, and
 * records how it ended in a durable transaction of its own (worker.c).
 * Only the queue writes a job's row: its progress and log while it runs,
 * and completed, failed or cancelled at its end.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_JOB_H
#define PUBLISH_JOB_H

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
	bool		switched;		/* release.json may show this job's work,
								 * not yet recorded (job_mark_switched) */
} PublishJob;

/*
 * What a job that succeeded hands back: its result (jsonb text) and last
 * log line, and what its final transaction records besides the job's row
 * (NULL: nothing).  record runs inside that transaction and returns false
 * when what it would record no longer holds (the job then fails).
 */
typedef struct JobOutcome
{
	char	   *result;
	char	   *message;
	bool		(*record) (PublishJob *job, void *arg);
	void	   *record_arg;
} JobOutcome;

/*
 * A job type: run does the work outside any transaction (opening short
 * ones of its own) and fills the outcome, or throws.  undo, called after a
 * failure of a job that switched (PublishJob.switched), puts the storage
 * back as publish.releases says it is; it throws when it cannot.
 */
typedef struct JobType
{
	const char *name;
	void		(*run) (PublishJob *job, JobOutcome *outcome, MemoryContext mcxt);
	void		(*undo) (PublishJob *job, MemoryContext mcxt);
} JobType;

/* What a sweep found (job_sweep_needed), for the worker and the sweep gate. */
typedef struct SweepFindings
{
	bool		queue_busy;		/* jobs queued or running */
	bool		prepared;		/* prepared transactions in this database */
	bool		purge_due;		/* finished jobs past publish.job_retention */
	TimestampTz purge_at;		/* when the oldest finished job will be; DT_NOEND: never */
} SweepFindings;

/* A short transaction with SPI connected and a snapshot pushed. */
extern void job_txn_begin(const char *activity);
extern void job_txn_commit(bool durable);

/* Each of these runs inside job_txn_begin/job_txn_commit. */
extern bool job_extension_present(void);
extern void job_sweep_needed(SweepFindings *found);
extern uint64 job_recover_interrupted(void);
extern PublishJob *job_claim(MemoryContext mcxt);
extern void job_step_done(PublishJob *job, int progress, const char *message);
extern void job_log(PublishJob *job, const char *level, const char *message);
extern void job_mark_switched(PublishJob *job);

/* Each of these opens a short transaction of its own. */
extern void job_step(PublishJob *job, const char *activity, int progress,
					 const char *message);
extern void job_progress(PublishJob *job, int progress);
extern void job_checkpoint(PublishJob *job);
extern void job_record_completed(PublishJob *job, const JobOutcome *outcome);
extern bool job_record_end(PublishJob *job, const char *status, const char *error);
extern bool job_cancel_was_requested(PublishJob *job);
extern void job_purge_expired(void);

/*
 * For tests (publish.pause_at): waits, outside a transaction, while the
 * setting names this point.  The points: "claimed" (before the job runs);
 * for a publish "validated", "built", "uploaded" (after steps 1-3),
 * "marked" (step 4 done, the switch marked) and "switched" (release.json
 * switched, before the final transaction).
 */
extern void job_pause_point(const char *point);

/* A storage target's warn callback (arg: the PublishJob): a warn line, at once. */
extern void job_storage_warning(void *arg, const char *message);

extern TimestampTz job_deadline(PublishJob *job);
extern bool job_deadline_passed(PublishJob *job);
extern void job_forget_current(void);
extern ErrorData *job_catch_error(MemoryContext mcxt);

/* worker_sweep.c: may a timed sweep be skipped, and how long to sleep */
extern bool worker_sweep_gate(Oid dboid);
extern void worker_sweep_record(const SweepFindings *found);
extern void worker_sweep_forget(void);
extern long worker_sweep_timeout(Oid dboid);

/* the job types */
extern void publish_job_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt);
extern void publish_job_undo(PublishJob *job, MemoryContext mcxt);

#endif							/* PUBLISH_JOB_H */
