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
} PublishJob;

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
extern void job_txn_commit_claiming_next(PublishJob *job);

/* A job claimed ahead, in the previous job's final transaction. */
extern void job_allow_claim_ahead(bool allowed);
extern bool job_has_claimed_next(void);
extern PublishJob *job_take_claimed_next(MemoryContext mcxt);

/* Each of these runs inside job_txn_begin/job_txn_commit. */
extern bool job_extension_present(void);
extern void job_sweep_needed(SweepFindings *found);
extern uint64 job_recover_interrupted(void);
extern PublishJob *job_claim_next(MemoryContext mcxt);
extern void job_step_done(PublishJob *job, int progress, const char *message);
extern void job_log(PublishJob *job, const char *level, const char *message);
extern void job_record_end(PublishJob *job, const char *status, const char *error);
extern void job_purge_expired(void);
extern void job_forget_current(void);

/* Outside a transaction: stops the job if it was cancelled or timed out. */
extern void job_checkpoint(PublishJob *job);

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

#endif							/* PUBLISH_JOB_H */
