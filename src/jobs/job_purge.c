/*-------------------------------------------------------------------------
 *
 * job_purge.c
 *	  The purge job: the versions of a project that an environment no
 *	  longer needs, removed from its target: their immutable copies
 *	  ({env}/{slug}/releases/v{N}.json) and tiles ({env}/{slug}/tiles/v{N}/).
 *
 *	  1  the plan, in one snapshot: what is live, the versions kept (the
 *	     live one and the last keep live ones, by publish.release_history),
 *	     the versions this environment may hold (its history and its
 *	     publish jobs), and the paths that content rows name under the
 *	     project's prefix                                           10%
 *	  2  the versions on storage: a listing of {env}/{slug}/releases/,
 *	     where the target can list (file://, S3)                    20%
 *	  3  each version neither live nor kept: its tiles, then its copy,
 *	     removed, a log line each                                20-95%
 *	  4  made durable (storage_sync), and the result: what was removed 100%
 *
 * What is removed is only ever under {env}/{slug}/tiles/v{N}/ and at
 * {env}/{slug}/releases/v{N}.json, for a version N outside the kept set:
 * never release.json, a kept version, the project's tile builds
 * (builds/), or anything of another project or environment.  A version
 * under whose prefix a row of publish.assets or publish.tilesets (of any
 * project) names a path is skipped, with a warning: a live or kept
 * release, or a publish to come, may read it.  Tiles go before the copy,
 * and a publish writes the copy before the tiles, so a version that has
 * tiles on storage has its copy too, and the listing of releases/ finds
 * every version a purge stopped half-way.
 *
 * Which tiles: all that is under the version's prefix, not those its
 * manifest lists.  A version's tileset may have been rebuilt since it was
 * published (another zoom range) or deleted with the version, and the
 * objects stay either way; the prefix is the version's alone.  So file://
 * removes the directory's tree, WebDAV the collection (one DELETE), and S3
 * lists the prefix and deletes each page of 1,000 keys with one
 * DeleteObjects.
 *
 * A purge is a job of its project and environment, so it runs after the
 * publishes and rollbacks asked for before it, and those asked for after
 * it wait for it: what is live cannot change while it runs.  It changes
 * nothing readers see (no switch, no undo); a cancel or a failure stops it
 * between two versions or inside one, and what is left of a version is
 * found by the next purge.  publish.keep_releases queues one after each
 * publish (job_purge_after_publish).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/uuid.h"

#include "publish.h"
#include "jobs/jobs.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "util/util.h"

/* A version the purge looks at. */
typedef struct PurgeVersion
{
	int			version;
	bool		kept;
	char	   *protected_path; /* a path a row names under its prefix */
	bool		on_storage;		/* step 2 found its copy */
	bool		removed;		/* step 3 removed it */
	StorageRemoved counted;
	bool		copy_found;
} PurgeVersion;

typedef struct PurgePlan
{
	char	   *project_id;
	char	   *slug;
	int			keep;
	int			live;			/* 0: nothing live */
	List	   *kept;			/* int: the versions kept, newest first */
	List	   *versions;		/* PurgeVersion, by version number */
	List	   *paths;			/* char *: paths rows name under the prefix */
} PurgePlan;

/* The version in plan, added (not kept) when new. */
static PurgeVersion *
plan_version(PurgePlan *plan, int version)
{
	ListCell   *lc;
	PurgeVersion *v;

	foreach(lc, plan->versions)
	{
		v = lfirst(lc);
		if (v->version == version)
			return v;
	}
	v = palloc0(sizeof(PurgeVersion));
	v->version = version;
	plan->versions = lappend(plan->versions, v);
	return v;
}

static int
version_cmp(const ListCell *a, const ListCell *b)
{
	int			va = ((PurgeVersion *) lfirst(a))->version;
	int			vb = ((PurgeVersion *) lfirst(b))->version;

	return (va > vb) - (va < vb);
}

/*
 * Step 1 (in a transaction): the project, what is live and kept, the
 * versions the database knows the environment may hold, and the paths
 * rows name under {env}/{slug}/.  Throws when the project is gone.
 */
static void
read_plan(PublishJob *job, PurgePlan *plan, MemoryContext mcxt)
{
	static SPIPlanPtr job_plan = NULL;
	static SPIPlanPtr versions_plan = NULL;
	static SPIPlanPtr paths_plan = NULL;
	Oid			job_types[1] = {UUIDOID};
	Oid			types[3] = {UUIDOID, TEXTOID, INT4OID};
	Datum		values[3];
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	if (spi_execute_cached(&job_plan,
						   "SELECT j.project_id, p.slug,"
						   "       CASE WHEN j.params->>'keep' ~ '^[0-9]{1,9}$' THEN (j.params->>'keep')::integer END,"
						   "       (SELECT v.version_number FROM publish.live_releases r"
						   "          JOIN publish.project_versions v ON v.id = r.version_id"
						   "         WHERE r.project_id = j.project_id AND r.env = j.env)"
						   "  FROM publish.job_queue j"
						   "  JOIN publish.projects p ON p.id = j.project_id"
						   " WHERE j.id = $1",
						   1, job_types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the purge's project");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the project was deleted before the job started")));
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	plan->project_id = spi_text(row, 1, mcxt);
	plan->slug = spi_text(row, 2, mcxt);
	d = SPI_getbinval(row, desc, 3, &isnull);
	plan->keep = isnull ? 0 : DatumGetInt32(d);
	if (plan->keep < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the purge's params name no keep of at least 1")));
	d = SPI_getbinval(row, desc, 4, &isnull);
	plan->live = isnull ? 0 : DatumGetInt32(d);

	/*
	 * Every version the environment's history or publish jobs name, whether
	 * it is kept: the live one, and the keep last distinct versions that were
	 * live (by their last change).  The jobs are found through the project's
	 * versions (job_queue_version_idx); those of a deleted version are left
	 * to the listing.
	 */
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(plan->project_id));
	values[1] = CStringGetTextDatum(job->env);
	values[2] = Int32GetDatum(plan->keep);
	if (spi_execute_cached(&versions_plan,
						   "WITH history AS ("
						   "  SELECT h.version, max(h.id) AS last"
						   "    FROM publish.live_release_history h"
						   "   WHERE h.project_id = $1 AND h.env = $2"
						   "   GROUP BY h.version"
						   "), kept AS ("
						   "  SELECT version, last FROM history ORDER BY last DESC LIMIT $3"
						   "), known AS ("
						   "  SELECT version FROM history"
						   "  UNION"
						   "  SELECT (j.params->>'version_number')::integer"
						   "    FROM publish.project_versions v"
						   "    JOIN publish.job_queue j ON j.version_id = v.id"
						   "   WHERE v.project_id = $1 AND j.env = $2 AND j.job_type = 'publish'"
						   "     AND j.params->>'version_number' ~ '^[1-9][0-9]{0,8}$'"
						   ")"
						   "SELECT k.version, kept.last IS NOT NULL"
						   "  FROM known k LEFT JOIN kept USING (version)"
						   " ORDER BY kept.last DESC NULLS LAST, k.version",
						   3, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the release history");
	old = MemoryContextSwitchTo(mcxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		PurgeVersion *v;

		row = SPI_tuptable->vals[i];
		v = plan_version(plan, DatumGetInt32(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull)));
		v->kept = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull));
		if (v->kept)
			plan->kept = lappend_int(plan->kept, v->version);
	}
	if (plan->live > 0 && !plan_version(plan, plan->live)->kept)
	{
		/* live, and (a history older than the live release) not named */
		plan_version(plan, plan->live)->kept = true;
		plan->kept = lcons_int(plan->live, plan->kept);
	}
	MemoryContextSwitchTo(old);

	/*
	 * Paths that content rows name under the project's prefix in this
	 * environment: an asset's file, a tileset's build location.
	 */
	values[0] = CStringGetTextDatum(psprintf("%s/%s/", job->env, plan->slug));
	if (spi_execute_cached(&paths_plan,
						   "SELECT a.storage_path FROM publish.assets a WHERE starts_with(a.storage_path, $1)"
						   " UNION "
						   "SELECT s.source_path FROM publish.tilesets s WHERE starts_with(s.source_path, $1)",
						   1, types + 1, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the paths of the content");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *path = spi_text(SPI_tuptable->vals[i], 1, mcxt);

		old = MemoryContextSwitchTo(mcxt);
		plan->paths = lappend(plan->paths, path);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Step 2: the versions whose copy is on storage ({prefix}releases/v{N}.json),
 * added to the plan and marked on_storage; false when the target cannot
 * list.
 */
static bool
find_on_storage(StorageTarget *target, PurgePlan *plan, const char *prefix, int *found)
{
	char	   *releases = psprintf("%sreleases/", prefix);
	bool		supported;
	List	   *keys = storage_list_keys(target, releases, &supported);
	ListCell   *lc;

	*found = 0;
	foreach(lc, keys)
	{
		const char *name = ((StorageListEntry *) lfirst(lc))->name;
		size_t		digits = strspn(name + 1, "0123456789");

		/* v{N}.json exactly: not release.json.gz, not a temporary file */
		if (name[0] != 'v' || digits == 0 || digits > 9 || name[1] == '0' ||
			strcmp(name + 1 + digits, ".json") != 0)
			continue;
		plan_version(plan, atoi(name + 1))->on_storage = true;
		(*found)++;
	}
	return supported;
}

/*
 * The first path a row names under version v's prefix, or NULL: its
 * tiles (the directory itself, or anything in it) or its copy.
 */
static char *
protected_path(PurgePlan *plan, const char *prefix, int v)
{
	char	   *tiles = psprintf("%stiles/v%d", prefix, v);
	char	   *copy = psprintf("%sreleases/v%d.json", prefix, v);
	size_t		n = strlen(tiles);
	ListCell   *lc;

	foreach(lc, plan->paths)
	{
		const char *path = lfirst(lc);

		if (strcmp(path, copy) == 0 ||
			(strncmp(path, tiles, n) == 0 && (path[n] == '\0' || path[n] == '/')))
			return (char *) path;
	}
	return NULL;
}

/* "1, 2, 3" of a list of ints, or "none". */
static char *
int_list_text(List *ints)
{
	StringInfoData buf;
	ListCell   *lc;

	if (ints == NIL)
		return "none";
	initStringInfo(&buf);
	foreach(lc, ints)
		appendStringInfo(&buf, "%s%d", buf.len > 0 ? ", " : "", lfirst_int(lc));
	return buf.data;
}

/* What removed counted, in words: "61 objects, 245 kB", and folders. */
static char *
removed_text(const StorageRemoved *r)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%lld object%s (%lld bytes)", (long long) r->objects,
					 r->objects == 1 ? "" : "s", (long long) r->bytes);
	if (r->uncounted_folders > 0)
		appendStringInfo(&buf, " and %lld folder%s whose objects the server does not count",
						 (long long) r->uncounted_folders, r->uncounted_folders == 1 ? "" : "s");
	return buf.data;
}

/* The job's result: what was kept, removed and skipped. */
static char *
purge_result(PurgePlan *plan, const StorageRemoved *total, bool listed)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"keep\": %d, \"live_version\": ", plan->keep);
	if (plan->live > 0)
		appendStringInfo(&buf, "%d", plan->live);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"kept_versions\": [");
	foreach(lc, plan->kept)
		appendStringInfo(&buf, "%s%d", foreach_current_index(lc) > 0 ? ", " : "", lfirst_int(lc));
	appendStringInfoString(&buf, "], \"purged_versions\": [");
	first = true;
	foreach(lc, plan->versions)
	{
		PurgeVersion *v = lfirst(lc);

		if (!v->removed)
			continue;
		appendStringInfo(&buf, "%s{\"version\": %d, \"objects\": %lld, \"bytes\": %lld, \"uncounted_folders\": %lld, \"release_copy\": %s}",
						 first ? "" : ", ", v->version, (long long) v->counted.objects,
						 (long long) v->counted.bytes, (long long) v->counted.uncounted_folders,
						 v->copy_found ? "true" : "false");
		first = false;
	}
	appendStringInfoString(&buf, "], \"skipped_versions\": [");
	first = true;
	foreach(lc, plan->versions)
	{
		PurgeVersion *v = lfirst(lc);

		if (v->protected_path == NULL)
			continue;
		appendStringInfo(&buf, "%s{\"version\": %d, \"path\": ", first ? "" : ", ", v->version);
		escape_json(&buf, v->protected_path);
		appendStringInfoChar(&buf, '}');
		first = false;
	}
	appendStringInfo(&buf, "], \"objects_deleted\": %lld, \"bytes_deleted\": %lld,"
					 " \"uncounted_folders_deleted\": %lld, \"storage_listed\": %s}",
					 (long long) total->objects, (long long) total->bytes,
					 (long long) total->uncounted_folders, listed ? "true" : "false");
	return buf.data;
}

/*
 * Runs a purge (see the file's comment) and hands back its result, or
 * throws.  Everything is allocated in mcxt, reset after the job.
 */
static void
purge_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt)
{
	PurgePlan  *plan = palloc0(sizeof(PurgePlan));
	StorageTarget *target;
	StorageRemoved total = {0, 0, 0};
	char	   *prefix;
	bool		listed;
	int			found;
	int			todo = 0;
	int			done = 0;
	ListCell   *lc;

	/* Step 1: the plan (10%) */
	job_txn_begin("publish: purge: reading the history");
	read_plan(job, plan, mcxt);
	target = storage_target_load(job->env, mcxt);
	target->warn = job_storage_warning;
	target->warn_arg = job;
	job_step_done(job, 10,
				  psprintf("Purging %s in %s, keeping %d: live %s, kept %s",
						   plan->slug, job->env, plan->keep,
						   plan->live > 0 ? psprintf("version %d", plan->live) : "nothing",
						   int_list_text(plan->kept)));
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);
	prefix = psprintf("%s/%s/", job->env, plan->slug);

	/* Step 2: what is on storage (20%) */
	pgstat_report_activity(STATE_RUNNING, "publish: purge: listing releases");
	listed = find_on_storage(target, plan, prefix, &found);
	list_sort(plan->versions, version_cmp);
	foreach(lc, plan->versions)
	{
		PurgeVersion *v = lfirst(lc);

		/*
		 * Where the target lists, a version without a copy has nothing left
		 * (its tiles go first): only those found are visited.
		 */
		if (v->kept || (listed && !v->on_storage))
			continue;
		v->protected_path = protected_path(plan, prefix, v->version);
		if (v->protected_path == NULL)
			todo++;
	}
	job_step(job, "publish: purge: listed releases", 20, listed ?
			 psprintf("Found %d release copies under %sreleases/; %d versions to remove", found, prefix, todo) :
			 psprintf("The target cannot list: %d versions that the history and the jobs name to remove", todo));

	/* Step 3: each version, tiles first, then its copy (20-95%) */
	foreach(lc, plan->versions)
	{
		PurgeVersion *v = lfirst(lc);
		char	   *tiles = psprintf("%stiles/v%d/", prefix, v->version);

		if (v->kept || (listed && !v->on_storage))
			continue;
		if (v->protected_path != NULL)
		{
			job_txn_begin("publish: purge: a version skipped");
			job_log(job, JOB_LOG_WARN,
					psprintf("Kept version %d: %s, under its prefix, is named by a row of publish.assets or publish.tilesets",
							 v->version, v->protected_path));
			job_txn_commit(false);
			MemoryContextSwitchTo(mcxt);
			continue;
		}
		pgstat_report_activity(STATE_RUNNING, "publish: purge: removing a version");
		storage_remove_prefix(target, tiles, &v->counted);
		v->copy_found = storage_remove_counted(target, psprintf("%sreleases/v%d.json", prefix, v->version),
											   &v->counted);
		v->removed = true;
		total.objects += v->counted.objects;
		total.bytes += v->counted.bytes;
		total.uncounted_folders += v->counted.uncounted_folders;
		done++;
		job_step(job, "publish: purge: removed a version", 20 + 75 * done / Max(todo, 1),
				 psprintf("Removed version %d: %s", v->version, removed_text(&v->counted)));
	}

	/* Step 4: durable (100%) */
	storage_sync(target);
	outcome->result = purge_result(plan, &total, listed);
	outcome->message = psprintf("Purge completed: removed %d version%s of %s in %s, %s",
								done, done == 1 ? "" : "s", plan->slug, job->env,
								removed_text(&total));
}

const JobType job_type_purge = {
	.name = "purge",
	.run = purge_run,
	.undo = NULL,
};

/*
 * publish.keep_releases: in a publish's final transaction (job the
 * publish, project_id its project), a purge of its project and
 * environment queued after it, keeping that many, unless one is queued
 * already (it runs after this publish, and sees it).  Nothing with the
 * setting at 0, or on a 1.0 install (whose queue knows no purge).
 */
void
job_purge_after_publish(PublishJob *job, const char *project_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {UUIDOID, TEXTOID, INT4OID, UUIDOID};
	Datum		values[4];

	if (publish_keep_releases <= 0 ||
		job_schema_version(NULL, CurrentMemoryContext) == JOB_SCHEMA_1_0)
		return;
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(project_id));
	values[1] = CStringGetTextDatum(job->env);
	values[2] = Int32GetDatum(publish_keep_releases);
	values[3] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	if (spi_execute_cached(&plan,
						   "INSERT INTO publish.job_queue (job_type, params, project_id, env, created_by)"
						   "SELECT 'purge',"
						   "       jsonb_build_object('project_slug', p.slug, 'target_env', $2::text, 'keep', $3::integer,"
						   "                          'requested_by', j.created_by,"
						   "                          'queued_by', 'publish.keep_releases', 'after_job', j.id),"
						   "       p.id, $2, j.created_by"
						   "  FROM publish.projects p, publish.job_queue j"
						   " WHERE p.id = $1 AND j.id = $4"
						   "   AND NOT EXISTS (SELECT 1 FROM publish.job_queue q"
						   "                    WHERE q.project_id = $1 AND q.env = $2 AND q.job_type = 'purge'"
						   "                      AND q.status = 'queued' AND NOT q.cancel_requested)",
						   4, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "publish: could not queue a purge after the publish");
}
