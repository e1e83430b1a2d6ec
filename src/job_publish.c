/*-------------------------------------------------------------------------
 *
 * job_publish.c
 *	  The five steps of a publish job.
 *
 *	  1  validate the version (every problem listed)          10%
 *	  2  build release.json (json-c), in the same pass as 1  30%
 *	  3  upload it as {env}/{slug}/releases/v{N}.json         50%
 *	  4  tiles: built first from the base_map asset when none are
 *	     built for this environment (tile_build.c, 50-75%); verify
 *	     each against the manifest, copy them
 *	     to {env}/{slug}/tiles/v{N}/{z}/{x}/{y}.{format}       80%
 *	  5  switch {env}/{slug}/release.json to this version,
 *	     mark the version published, record the live release 100%
 *
 * Database work happens in short transactions that also commit the step's
 * progress and log line, so a poller sees the job move; file and network I/O
 * happens between them, with no transaction or snapshot open.  Steps 2 and
 * 3 of a small publish come less than 100 ms after the last write and are
 * held for the next (job_step_reached).  Each step is a checkpoint: a
 * cancelled or timed-out job stops there (and every second in the tile
 * loop, tile_publish.c), before release.json is switched.  What readers
 * see is always complete: the versioned copy and the tiles land before
 * release.json, and release.json is replaced atomically.  Any error ends the
 * job (worker.c records it); the version and publish.releases change only in
 * the last, durable transaction, which the job shares with the others of
 * its group (job_group.c).
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "job.h"
#include "storage.h"
#include "tile.h"
#include "tile_publish.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"


/* The publish time of this attempt, as ISO 8601 UTC text (caller in a transaction). */
static char *
publish_time(MemoryContext mcxt)
{
	static SPIPlanPtr plan = NULL;

	if (spi_execute_cached(&plan, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
						   " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", 0, NULL, NULL, NULL,
						   true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the clock");
	return MemoryContextStrdup(mcxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
}

/*
 * Errors unless the version may still be published (caller in a
 * transaction).  The query takes a fresh snapshot, so it sees changes
 * committed while this transaction waited for the version's lock.
 */
static void
check_version_publishable(const char *version_id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(version_id)};
	char	   *status;
	static SPIPlanPtr plan = NULL;

	if (spi_execute_cached(&plan, "SELECT status FROM publish.project_versions WHERE id = $1::uuid",
						   1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the version");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the version was deleted while it was being published")));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(status, "ready") != 0 && strcmp(status, "published") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_CONFLICT),
				 errmsg("the version became %s while it was being published", status),
				 errdetail("Only a version whose status is ready or published can be published.")));
}

/*
 * Session advisory lock on the version, held from the last status check
 * until the release is recorded, across the write of release.json (a
 * session lock, not a transaction).  project_versions_wait_for_worker makes
 * an archive or delete of the version wait for it.  Released
 * (publish_unlock_version) after the commit that records how the job
 * ended: its group's (job_group.c), or its failure's (worker.c).
 */
#define VERSION_LOCK_CLASS 1886741100

/* The version's session lock: waits for it (wait), or says if it was free. */
static bool
take_version_lock(const char *version_id, bool wait)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const char *const sql[2] = {
		"SELECT pg_try_advisory_lock($1, hashtext($2))",
		"SELECT true FROM pg_advisory_lock($1, hashtext($2))"
	};
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(VERSION_LOCK_CLASS), CStringGetTextDatum(version_id)};
	bool		isnull;

	if (spi_execute_cached(&plans[wait], sql[wait], 2, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not lock the version");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Takes the job's version's lock in a transaction of its own (left open,
 * named activity), waiting if another job holds it.  A worker never waits
 * while its group's switched publishes hold their versions' locks: two
 * workers each waiting for a version that a publish pending in the other's
 * group holds would deadlock.  So if the lock is taken, the group is
 * recorded first (job_record_group_now), which releases them, and the
 * job's held progress is written, for pollers to see while it waits.
 */
static void
lock_version(PublishJob *job, const char *activity)
{
	job_txn_begin(activity);
	if (take_version_lock(job->version_id, false))
		return;
	job_txn_commit(false);
	if (job_group_pending())
		job_record_group_now();
	job_write_held_lines(job);
	job_txn_begin(activity);
	(void) take_version_lock(job->version_id, true);
}

/*
 * Loads the version and checks every overlay, writing release.json into a
 * new document (in mcxt's mapping, freed with it) in the same pass, in the
 * caller's transaction and snapshot: what is written is what was checked.
 * Throws listing every problem.  Summarizes the tile manifest too, in the
 * same snapshot (step 4 reads it in windows and checks it against that).  With
 * tiles_pending (tiles to build first, step 4) the tileset is left out and
 * nothing is written (*doc NULL): release.json describes the tileset, so it
 * is written once the tiles are built.
 */
static ReleaseInput *
load_release(PublishJob *job, const char *published_at, bool tiles_pending,
			 MemoryContext mcxt, ReleaseDoc **doc, TileManifest *manifest)
{
	ReleaseInput *in;
	List	   *problems;

	MemoryContextSwitchTo(mcxt);
	in = release_input_load(job->version_id, job->env, published_at, false, mcxt);
	if (tiles_pending)
		in->tileset = NULL;
	*doc = tiles_pending ? NULL : release_doc_create(mcxt);
	problems = release_build(in, *doc);
	if (problems != NIL)
		release_report_problems(in, problems);
	if (in->tileset != NULL)
		tile_manifest_summarize(in->tileset->id, manifest, mcxt);
	return in;
}

/*
 * Runs a publish job to completion, or throws; worker.c records a throw
 * as the job's failure.  Everything is allocated in mcxt, reset after the
 * job.
 */
void
publish_job_run(PublishJob *job, MemoryContext mcxt)
{
	StorageTarget *target;
	ReleaseInput *in;
	char	   *published_at;
	ReleaseDoc *doc;
	char	   *prefix;
	char	   *versioned_key;
	char	   *live_key;
	char	   *release_url;
	TileManifest manifest = {NULL, 0, 0};
	TileCounts	counts = {0, 0, 0};
	bool		build_first;

	if (strcmp(job->job_type, "build_tiles") == 0)
	{
		tile_build_job_run(job, mcxt);
		return;
	}
	if (strcmp(job->job_type, "publish") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("job type \"%s\" is not supported by this version of publish", job->job_type)));
	if (job->version_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the version was deleted before the job started")));

	/* Step 1: validate (10%) */
	job_txn_begin("publish: validating");
	check_version_publishable(job->version_id);
	target = storage_target_load(job->env, mcxt);
	target->warn = job_storage_warning;
	target->warn_arg = job;
	published_at = publish_time(mcxt);
	build_first = tile_build_needed(job->version_id, job->env);
	in = load_release(job, published_at, build_first, mcxt, &doc, &manifest);
	job_step_done(job, 10,
				  psprintf("Validated version %d of %s: %lld overlays, %d assets, %lld tiles",
						   in->version_number, in->project_slug, (long long) in->overlay_count,
						   list_length(in->assets), (long long) manifest.ntiles));
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);

	prefix = psprintf("%s/%s", in->env, in->project_slug);
	versioned_key = psprintf("%s/releases/v%d.json", prefix, in->version_number);
	live_key = psprintf("%s/release.json", prefix);
	release_url = storage_public_url(target, live_key);

	/*
	 * Step 2: release.json was built with the validation pass (30%).  This
	 * step and the next are written with the one after them when that one
	 * follows at once (a file:// upload; no tiles) and the last write was
	 * less than 100 ms ago (job_step_reached).
	 */
	job_step_reached(job, "publish: built release.json", 30, build_first ?
					 pstrdup("Checked the content of release.json; it is built once the tiles are") :
					 psprintf("Built release.json: %zu bytes, sha256 %s", doc->len, doc->sha256),
					 !build_first && target->root != NULL);
	MemoryContextSwitchTo(mcxt);

	/*
	 * Step 3: upload the immutable copy (50%).  In a group (jobs claimed
	 * after this one, or switched before it and waiting), file:// writes it
	 * now and syncs its data with the group's, before it is renamed into
	 * place and release.json switched to it (job_group.c); alone, as any
	 * put, fsync'd before its rename.
	 */
	if (!build_first)
	{
		pgstat_report_activity(STATE_RUNNING, "publish: uploading release.json");
		/* a retry: what the interrupted attempt may have left */
		if (job->attempts > 1)
			storage_remove_stale(target, versioned_key);
		if (job_has_claimed_next() || job_group_pending())
			storage_put_deferred(target, versioned_key, doc->data, doc->len,
								 "application/json", STORAGE_CACHE_IMMUTABLE);
		else
			storage_put(target, versioned_key, doc->data, doc->len, "application/json", STORAGE_CACHE_IMMUTABLE);
	}
	job_step_reached(job, "publish: uploaded release.json", 50, build_first ?
					 psprintf("Tiles to build first: release.json is uploaded as %s once they are", versioned_key) :
					 psprintf("Uploaded release.json as %s", versioned_key),
					 !build_first && in->tileset == NULL);
	MemoryContextSwitchTo(mcxt);

	/*
	 * Step 4: tiles (80%).  Built first when the version has a base_map
	 * and no tileset built for this environment (50-75%); then release.json,
	 * which describes the new tileset, is built and its immutable copy
	 * uploaded (step 3 left that until now, so it is written once).
	 */
	if (build_first)
	{
		tile_build_for_publish(job, target, 50, 75);
		job_txn_begin("publish: describing the built tiles");
		check_version_publishable(job->version_id);
		in = load_release(job, published_at, false, mcxt, &doc, &manifest);
		job_txn_commit(false);
		MemoryContextSwitchTo(mcxt);
		pgstat_report_activity(STATE_RUNNING, "publish: uploading release.json");
		storage_put(target, versioned_key, doc->data, doc->len, "application/json", STORAGE_CACHE_IMMUTABLE);
		job_txn_begin("publish: uploaded release.json with the tiles");
		job_step_done(job, 76, psprintf("Built release.json with the new tileset and uploaded it as %s: %zu bytes, sha256 %s",
										versioned_key, doc->len, doc->sha256));
		job_txn_commit(false);
		MemoryContextSwitchTo(mcxt);
	}
	if (in->tileset != NULL)
		tile_publish(job, target, in, &manifest, build_first ? 76 : 50, &counts);
	lock_version(job, "publish: tiles done");
	job->version_locked = true;
	check_version_publishable(job->version_id);
	job_step_done(job, 80,
				  in->tileset == NULL ? pstrdup("No tileset: no tiles to publish") :
				  psprintf("Tiles: %lld verified, %lld copied, %lld already in place, under %s/tiles/v%d",
						   (long long) counts.verified, (long long) counts.copied,
						   (long long) counts.skipped, prefix, in->version_number));
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);

	/*
	 * Step 5: go live (100%), recorded durably with the group (job_group.c).
	 * release.json is the versioned copy again (file://: a hard link to it,
	 * no second write).  Then the job waits, switched, for its group's one
	 * sync (file://: the fsyncs of every directory whose entries changed,
	 * each once for the whole group) and one durable transaction that
	 * records every job of the group and claims the next ones; the worker
	 * makes them once no claimed job is left to run (alone: at once).
	 * That was the last checkpoint: from here a cancel would leave
	 * release.json switched but not recorded, so cancels wait (an error
	 * still ends the job).
	 */
	HOLD_CANCEL_INTERRUPTS();
	pgstat_report_activity(STATE_RUNNING, "publish: switching release.json");
	storage_put_same(target, live_key, versioned_key, doc->data, doc->len,
					 "application/json", STORAGE_CACHE_LIVE);
	{
		PendingRelease rel;

		rel.job = job;
		rel.project_id = in->project_id;
		rel.env = in->env;
		rel.published_at = published_at;
		rel.release_url = release_url;
		rel.release_sha256 = doc->sha256;
		rel.overlay_count = in->overlay_count;
		rel.asset_count = list_length(in->assets);
		rel.tile_count = manifest.ntiles;
		rel.tiles_copied = counts.copied;
		rel.tiles_skipped = counts.skipped;
		rel.tiles_verified = counts.verified;
		rel.release_bytes = (int64) doc->len;
		job_group_defer(&rel, target);
	}
	RESUME_CANCEL_INTERRUPTS();
	MemoryContextSwitchTo(mcxt);
}

/*
 * Records a switched publish (job_group.c, in the group's final
 * transaction): the version published, the live release, the job completed
 * with its result and its last log line.  false, with nothing changed, when
 * the version or the job changed meanwhile (then the caller records the
 * job failed in the same transaction).
 */
bool
publish_record_release(const PendingRelease *rel)
{
	Oid			types[14] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID};
	Datum		values[14];
	static SPIPlanPtr plan = NULL;

	values[0] = CStringGetTextDatum(rel->job->id);
	values[1] = CStringGetTextDatum(rel->job->version_id);
	values[2] = CStringGetTextDatum(rel->project_id);
	values[3] = CStringGetTextDatum(rel->env);
	values[4] = CStringGetTextDatum(rel->published_at);
	values[5] = CStringGetTextDatum(rel->release_url);
	values[6] = Int64GetDatum(rel->overlay_count);
	values[7] = Int32GetDatum(rel->asset_count);
	values[8] = Int64GetDatum(rel->tile_count);
	values[9] = Int64GetDatum(rel->tiles_copied);
	values[10] = Int64GetDatum(rel->tiles_skipped);
	values[11] = Int64GetDatum(rel->release_bytes);
	values[12] = CStringGetTextDatum(rel->release_sha256);
	values[13] = Int64GetDatum(rel->tiles_verified);

	if (spi_execute_cached(&plan,
						   "WITH v AS ("
						   "  UPDATE publish.project_versions SET status = 'published', published_at = $5::timestamptz"
						   "   WHERE id = $2::uuid AND status IN ('ready', 'published') RETURNING id"
						   "), live AS ("
						   "  INSERT INTO publish.live_releases AS r (project_id, env, version_id, published_at, release_url, job_id)"
						   "  SELECT $3::uuid, $4, id, $5::timestamptz, $6, $1::uuid FROM v"
						   "  ON CONFLICT (project_id, env) DO UPDATE"
						   "     SET version_id = excluded.version_id, published_at = excluded.published_at,"
						   "         release_url = excluded.release_url, job_id = excluded.job_id"
						   "  RETURNING r.version_id"
						   "), done AS ("
						   "  UPDATE publish.job_queue SET status = 'completed', progress = 100, error = NULL,"
						   "         completed_at = clock_timestamp(),"
						   "         result = jsonb_build_object('release_url', $6, 'overlay_count', $7,"
						   "                  'asset_count', $8, 'tile_count', $9, 'tiles_copied', $10,"
						   "                  'tiles_skipped', $11, 'published_at', $5, 'release_bytes', $12,"
						   "                  'release_sha256', $13, 'tiles_verified', $14)"
						   "   WHERE id = $1::uuid AND status = 'running' AND EXISTS (SELECT 1 FROM live)"
						   "  RETURNING id"
						   ")"
						   "INSERT INTO publish.job_log (job_id, level, message, progress)"
						   " SELECT id, 'info', 'Version marked published; publish completed successfully', 100 FROM done",
						   14, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "publish: could not record the release");
	return SPI_processed > 0;
}

/*
 * Releases the job's version lock (lock_version), if it holds it: after
 * the commit that recorded how the job ended.  Outside a transaction or in
 * one.
 */
void
publish_unlock_version(PublishJob *job)
{
	LOCKTAG		tag;
	int32		key;

	if (!job->version_locked)
		return;
	/* what pg_advisory_unlock(VERSION_LOCK_CLASS, hashtext(version_id)) releases */
	key = DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID,
												CStringGetTextDatum(job->version_id)));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) VERSION_LOCK_CLASS, (uint32) key, 2);
	(void) LockRelease(&tag, ExclusiveLock, true);
	job->version_locked = false;
}
