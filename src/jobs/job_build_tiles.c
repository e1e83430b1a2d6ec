/*-------------------------------------------------------------------------
 *
 * job_build_tiles.c
 *	  The build_tiles job: a version's tiles built from its base_map asset
 *	  onto the job's storage target, and its manifest written
 *	  (tile/tile_build.c does the work).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publish.h"
#include "jobs/jobs.h"
#include "tile/tile.h"

/* Runs a build_tiles job, or throws (the worker records its end). */
static void
build_tiles_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt)
{
	if (job->version_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the version was deleted before the job started")));
	tile_build(job, NULL, 0, 99, outcome, mcxt);
}

const JobType job_type_build_tiles = {
	.name = "build_tiles",
	.run = build_tiles_run,
	.undo = NULL,
};
