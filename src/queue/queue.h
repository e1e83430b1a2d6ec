/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  The job queue as the workers use it (job_queue.c): a short
 *	  transaction's begin and commit, claim, progress and log lines,
 *	  cancel and timeout checkpoints, the end of a job, recovery after a
 *	  crash, the deletion of old jobs, and the test pause points; and the
 *	  queue's NOTIFY trigger (job_notify.c).
 *
 * Contract: only this folder writes a job's row.  The functions say
 * whether they run inside a transaction opened with job_txn_begin or open
 * a short one of their own; none holds a transaction or a lock across a
 * job's file or network I/O.  Progress and log commits are asynchronous,
 * claims, switches and ends durable.  The job types (jobs/), tile/ and the
 * worker loop (bgw/) call it; it calls only ipc/, util/ and the settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_QUEUE_H
#define PUBLISH_QUEUE_H

#include "datatype/timestamp.h"

/*
 * A job's status and its log lines' levels, as publish.job_queue's and
 * publish.job_log's constraints name them (job_queue_status_valid,
 * job_log_level_valid; test/sql/08_shared_definitions.sql checks that they
 * agree with job_statuses[] and job_log_levels[]).
 */
#define JOB_STATUS_QUEUED		"queued"
#define JOB_STATUS_RUNNING		"running"
#define JOB_STATUS_COMPLETED	"completed"
#define JOB_STATUS_FAILED		"failed"
#define JOB_STATUS_CANCELLED	"cancelled"
#define JOB_LOG_INFO			"info"
#define JOB_LOG_WARN			"warn"
#define JOB_LOG_ERROR			"error"

/* Each of them, NULL-terminated (job_queue.c). */
extern const char *const job_statuses[];
extern const char *const job_log_levels[];

typedef struct PublishJob
{
	char	   *id;
	char	   *job_type;
	char	   *version_id;		/* NULL when the version was deleted */
	char	   *env;
	int			attempts;		/* including this one */
	TimestampTz started;		/* when this worker claimed it */
	bool		cancelled;		/* cancel_job() asked, and we noticed */
	bool		switched;		/* release.json may show this job's work, not
								 * yet recorded (job_mark_switched) */
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
 * The versions of the extension's SQL objects this library works with
 * (job_schema_version): 1.0, whose objects it uses as 1.0's library did,
 * and its own.  A database whose objects are of a version it does not
 * know runs no job until they are (bgw/worker.c).
 */
typedef enum JobSchema
{
	JOB_SCHEMA_UNKNOWN = 0,
	JOB_SCHEMA_1_0,
	JOB_SCHEMA_1_1
} JobSchema;

/* What a sweep found (job_sweep_needed), for the worker and the sweep gate. */
typedef struct SweepFindings
{
	bool		queue_busy;		/* jobs queued or running */
	bool		prepared;		/* prepared transactions in this database */
	bool		purge_due;		/* finished jobs past publish.job_retention */
	TimestampTz purge_at;		/* when the oldest finished job will be;
								 * DT_NOEND: never */
} SweepFindings;

/* A short transaction with SPI connected and a snapshot pushed. */
extern void job_txn_begin(const char *activity);
extern void job_txn_commit(bool durable);

/* Each of these runs inside job_txn_begin/job_txn_commit. */
extern bool job_extension_present(void);
extern JobSchema job_schema_version(char **version, MemoryContext mcxt);
extern void job_queue_check_plans(void);
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
extern bool job_record_end(PublishJob *job, const char *status,
						   const char *error);
extern bool job_cancel_was_requested(PublishJob *job);
extern void job_purge_expired(void);

/*
 * For tests (publish.pause_at): waits, outside a transaction, while the
 * setting names this point.  The points: "claimed" (before the job runs);
 * for a publish "validated", "built", "uploaded" (after steps 1-3),
 * "marked" (step 4 done, the switch marked) and "switched" (release.json
 * switched, before the final transaction); for a rollback "validated"
 * (after step 1), "marked" and "switched".
 */
extern void job_pause_point(const char *point);

/*
 * A storage target's warn callback (arg: the PublishJob): a warn line of
 * the job, committed at once; a checkpoint.
 */
extern void job_storage_warning(void *arg, const char *message);

extern TimestampTz job_deadline(PublishJob *job);
extern bool job_deadline_passed(PublishJob *job);
extern void job_forget_current(void);
extern ErrorData *job_catch_error(MemoryContext mcxt);

#endif							/* PUBLISH_QUEUE_H */
