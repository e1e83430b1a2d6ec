/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  The job types: what a row of publish.job_queue runs, by its job_type.
 *
 * Each job type is one file here that defines a JobType (job_publish.c:
 * "publish"; job_build_tiles.c: "build_tiles"; job_rollback.c: "rollback";
 * job_purge.c: "purge")
 * and one line in the table of job_types.c.  job_live.c is the record of a
 * change of what is live, which publish and rollback share.  The worker loop (bgw/worker.c) claims a job, finds its
 * type with job_type_find, runs it and records how it ended.  A job type
 * calls tile/, release/, queue/ and storage/; nothing below calls it.
 *
 * Contract: run does the work outside any transaction (opening short ones
 * of its own through the queue) and fills the outcome, or throws.  undo,
 * when there is one, is called after a failure of a job that switched
 * (PublishJob.switched): it puts the storage back as publish.releases
 * says it is, or throws when it cannot (the worker tries again).
 * Everything is allocated in mcxt, which is reset after the job.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_JOBS_H
#define PUBLISH_JOBS_H

#include "queue/queue.h"

typedef struct JobType
{
	const char *name;			/* job_queue.job_type */
	void		(*run) (PublishJob *job, JobOutcome *outcome,
						MemoryContext mcxt);
	void		(*undo) (PublishJob *job, MemoryContext mcxt);
} JobType;

extern const JobType job_type_publish;
extern const JobType job_type_build_tiles;
extern const JobType job_type_rollback;
extern const JobType job_type_purge;

/*
 * A release that a job makes live in its environment (job_live.c): what
 * its final transaction records.  Strings, uuids and the timestamp as text.
 */
typedef struct LiveRelease
{
	char	   *project_id;
	char	   *version_id;
	char	   *published_at;	/* the document's */
	char	   *release_url;
	char	   *sha256;			/* of the document; NULL: not known */
} LiveRelease;

extern bool job_live_record(PublishJob *job, const LiveRelease *rel);

/*
 * publish.keep_releases: a purge queued in a publish's final transaction
 * (job_purge.c).
 */
extern void job_purge_after_publish(PublishJob *job, const char *project_id);

/* The type named name, or NULL (job_types.c). */
extern const JobType *job_type_find(const char *name);

/* Every job type, NULL-terminated, in the table's order. */
extern const JobType *const job_types[];

#endif							/* PUBLISH_JOBS_H */
