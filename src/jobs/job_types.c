/*-------------------------------------------------------------------------
 *
 * job_types.c
 *	  The table of job types: what the worker runs for a row's job_type.
 *
 * A new job type is a file of this folder that defines its JobType, and a
 * line here; the install script's job_queue_type_valid names it too
 * (test/sql/08_shared_definitions.sql checks that they agree).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jobs/jobs.h"

const JobType *const job_types[] = {
	&job_type_publish,
	&job_type_build_tiles,
	&job_type_rollback,
	&job_type_purge,
	NULL
};

/* See jobs.h. */
const JobType *
job_type_find(const char *name)
{
	for (int i = 0; job_types[i] != NULL; i++)
		if (strcmp(job_types[i]->name, name) == 0)
			return job_types[i];
	return NULL;
}
