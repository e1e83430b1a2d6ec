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

typedef struct PublishJob
{
	char	   *id;
	char	   *job_type;
	char	   *version_id;		/* NULL when the version was deleted */
	char	   *env;
	int			attempts;		/* including this one */
} PublishJob;

/* A short transaction with SPI connected and a snapshot pushed. */
extern void job_txn_begin(const char *activity);
extern void job_txn_commit(bool durable);

/* Each of these runs inside job_txn_begin/job_txn_commit. */
extern bool job_extension_present(void);
extern void job_recover_interrupted(void);
extern PublishJob *job_claim_next(MemoryContext mcxt);
extern void job_step_done(PublishJob *job, int progress, const char *message);
extern void job_log(PublishJob *job, const char *level, const char *message);
extern void job_record_failure(PublishJob *job, const char *error);

/* job_publish.c */
extern void publish_job_run(PublishJob *job, MemoryContext mcxt);

#endif							/* PUBLISH_JOB_H */
