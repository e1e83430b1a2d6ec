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
 * happens between them, with no transaction or snapshot open.  Each step is
 * a checkpoint: a cancelled or timed-out job stops there (and every second
 * in the tile loop, tile_publish.c).  What readers see is always complete:
 * the versioned copy and the tiles land before release.json, and
 * release.json is replaced atomically.
 *
 * Storage and database agree: outside a running step 5, the release.json
 * on a target names the version that publish.releases names for that
 * environment.  Step 5 marks the switch durably before it makes it
 * (job_mark_switched); the version and publish.releases change only in the
 * job's final, durable transaction.  Any failure in between (an error, a
 * failed commit, a cancel, a timeout) puts the live release back
 * (publish_undo) before the job is recorded failed; a crash leaves the
 * job to its next attempt, which does the same or completes.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/uuid.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "jobs/jobs.h"
#include "queue/queue.h"
#include "release/release.h"
#include "storage/storage.h"
#include "tile/tile.h"
#include "util/util.h"


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
	*doc = tiles_pending ? NULL : release_doc_create(mcxt, true);
	problems = release_build(in, *doc, RELEASE_REPORTED_PROBLEMS);
	if (problems != NIL)
		release_report_problems(in, problems);
	if (in->tileset != NULL)
		tile_manifest_summarize(in->tileset->id, manifest, mcxt);
	return in;
}

/* How a document was stored, for a log line: "" when plain. */
static char *
stored_as(const StorageDocument *sdoc)
{
	if (sdoc->encoded == NULL)
		return "";
	return psprintf(" (gzip: %zu bytes)", sdoc->encoded_len);
}

/*
 * In the job's final transaction (job_record_completed): the version
 * published, and the release live in its environment (job_live_record).
 * false, with nothing changed, when the version is no longer ready or
 * published (archived or deleted since step 4): the job then fails and
 * release.json is put back.  The UPDATE waits for a session that holds the
 * version's row, at most as long as any wait outside a job's deadline
 * (job_txn_begin).
 */
static bool
publish_record_release(PublishJob *job, void *arg)
{
	LiveRelease *rel = arg;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];
	static SPIPlanPtr plan = NULL;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->version_id));
	values[1] = CStringGetTextDatum(rel->published_at);
	if (spi_execute_cached(&plan,
						   "UPDATE publish.project_versions SET status = 'published', published_at = $2::timestamptz"
						   " WHERE id = $1 AND status IN ('ready', 'published')",
						   2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "publish: could not mark the version published");
	if (SPI_processed == 0 || !job_live_record(job, rel))
		return false;
	job_purge_after_publish(job, rel->project_id);
	return true;
}

/* The result of a publish, as publish.jobs shows it. */
static char *
publish_result(ReleaseInput *in, ReleaseDoc *doc, const StorageDocument *sdoc,
			   const char *release_url, const TileManifest *manifest,
			   const TileCounts *counts)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"release_url\": ");
	escape_json(&buf, release_url);
	appendStringInfoString(&buf, ", \"published_at\": ");
	escape_json(&buf, in->published_at);
	appendStringInfo(&buf, ", \"overlay_count\": %lld, \"asset_count\": %d, \"tile_count\": %lld,"
					 " \"tiles_copied\": %lld, \"tiles_skipped\": %lld, \"tiles_verified\": %lld,"
					 " \"release_bytes\": %zu, \"release_sha256\": \"%s\","
					 " \"release_stored_bytes\": %zu, \"release_encoding\": %s}",
					 (long long) in->overlay_count, list_length(in->assets),
					 (long long) manifest->ntiles, (long long) counts->copied,
					 (long long) counts->skipped, (long long) counts->verified,
					 doc->len, doc->sha256,
					 sdoc->encoded ? sdoc->encoded_len : sdoc->len,
					 sdoc->encoded ? "\"gzip\"" : "null");
	return buf.data;
}

/*
 * Runs a publish job's steps, up to the switch of release.json, and hands
 * back what its final transaction records (worker.c), or throws.
 * Everything is allocated in mcxt, reset after the job.
 */
static void
publish_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt)
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
	StorageDocument sdoc;
	bool		build_first;
	LiveRelease *rel;

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
	job_pause_point("validated");

	prefix = psprintf("%s/%s", in->env, in->project_slug);
	versioned_key = psprintf("%s/releases/v%d.json", prefix, in->version_number);
	live_key = psprintf("%s/release.json", prefix);
	release_url = storage_public_url(target, live_key);

	/* Step 2: release.json was built with the validation pass (30%) */
	job_step(job, "publish: built release.json", 30, build_first ?
			 "Checked the content of release.json; it is built once the tiles are" :
			 psprintf("Built release.json: %zu bytes, sha256 %s", doc->len, doc->sha256));
	job_pause_point("built");

	/* Step 3: upload the immutable copy (50%) */
	if (!build_first)
	{
		pgstat_report_activity(STATE_RUNNING, "publish: uploading release.json");
		storage_document_prepare(target, &sdoc, doc->data, doc->len, doc->sha256);
		storage_put_document(target, versioned_key, NULL, &sdoc, "application/json",
							 STORAGE_CACHE_IMMUTABLE);
	}
	job_step(job, "publish: uploaded release.json", 50, build_first ?
			 psprintf("Tiles to build first: release.json is uploaded as %s once they are", versioned_key) :
			 psprintf("Uploaded release.json as %s%s", versioned_key, stored_as(&sdoc)));
	job_pause_point("uploaded");

	/*
	 * Step 4: tiles (80%).  Built first when the version has a base_map and
	 * no tileset built for this environment (50-75%); then release.json,
	 * which describes the new tileset, is built and its immutable copy
	 * uploaded (step 3 left that until now, so it is written once).
	 */
	if (build_first)
	{
		tile_build(job, target, 50, 75, NULL, CurrentMemoryContext);
		job_txn_begin("publish: describing the built tiles");
		check_version_publishable(job->version_id);
		in = load_release(job, published_at, false, mcxt, &doc, &manifest);
		job_txn_commit(false);
		MemoryContextSwitchTo(mcxt);
		pgstat_report_activity(STATE_RUNNING, "publish: uploading release.json");
		storage_document_prepare(target, &sdoc, doc->data, doc->len, doc->sha256);
		storage_put_document(target, versioned_key, NULL, &sdoc, "application/json",
							 STORAGE_CACHE_IMMUTABLE);
		job_step(job, "publish: uploaded release.json with the tiles", 76,
				 psprintf("Built release.json with the new tileset and uploaded it as %s: %zu bytes, sha256 %s%s",
						  versioned_key, doc->len, doc->sha256, stored_as(&sdoc)));
	}
	if (in->tileset != NULL)
		tile_publish(job, target, in, &manifest, build_first ? 76 : 50, &counts);

	/*
	 * Step 5: go live (100%).  The switch is marked durably first, with step
	 * 4's end; then release.json becomes the versioned copy (file://: a hard
	 * link to it, no second write), made durable; then the final transaction
	 * records the version published (publish_record_release) and the job
	 * completed.  A failure from the mark on puts the live release back
	 * (publish_undo).
	 */
	job_txn_begin("publish: tiles done");
	check_version_publishable(job->version_id);
	job_step_done(job, 80,
				  in->tileset == NULL ? pstrdup("No tileset: no tiles to publish") :
				  psprintf("Tiles: %lld verified, %lld copied, %lld already in place, under %s/tiles/v%d",
						   (long long) counts.verified, (long long) counts.copied,
						   (long long) counts.skipped, prefix, in->version_number));
	job_mark_switched(job);
	job_txn_commit(true);
	MemoryContextSwitchTo(mcxt);
	job_pause_point("marked");

	pgstat_report_activity(STATE_RUNNING, "publish: switching release.json");
	storage_put_document(target, live_key, versioned_key, &sdoc,
						 "application/json", STORAGE_CACHE_LIVE);
	storage_sync(target);
	job_pause_point("switched");

	rel = palloc(sizeof(LiveRelease));
	rel->project_id = in->project_id;
	rel->version_id = job->version_id;
	rel->published_at = published_at;
	rel->release_url = release_url;
	rel->sha256 = doc->sha256;
	outcome->result = publish_result(in, doc, &sdoc, release_url, &manifest, &counts);
	outcome->message = "Version marked published; publish completed successfully";
	outcome->record = publish_record_release;
	outcome->record_arg = rel;
}

/*
 * After a failure of a publish that may have switched release.json: puts
 * back what publish.releases says is live in the job's environment (the
 * live version's immutable copy, copied over release.json), or removes
 * release.json when nothing is live there, and logs it.  Throws when that
 * fails.  The job still runs, first in its project and environment's
 * line, so nothing else publishes there meanwhile.
 */
static void
publish_undo(PublishJob *job, MemoryContext mcxt)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	StorageTarget *target;
	char	   *slug;
	char	   *live_version;
	char	   *live_key;

	job_txn_begin("publish: putting the live release back");
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	if (spi_execute_cached(&plan,
						   "SELECT j.params->>'project_slug', v.version_number"
						   "  FROM publish.job_queue j"
						   "  LEFT JOIN publish.live_releases r ON r.project_id = j.project_id AND r.env = j.env"
						   "  LEFT JOIN publish.project_versions v ON v.id = r.version_id"
						   " WHERE j.id = $1",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed == 0)
		elog(ERROR, "publish: could not read the live release");
	slug = spi_text(SPI_tuptable->vals[0], 1, mcxt);
	live_version = spi_text(SPI_tuptable->vals[0], 2, mcxt);
	target = storage_target_load(job->env, mcxt);
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);
	if (slug == NULL)
		elog(ERROR, "publish: the job does not name its project");

	pgstat_report_activity(STATE_RUNNING, "publish: putting the live release back");
	live_key = psprintf("%s/%s/release.json", job->env, slug);
	if (live_version != NULL)
		storage_switch_document(target, psprintf("%s/%s/releases/v%s.json", job->env, slug, live_version),
								live_key, job->id, "application/json", STORAGE_CACHE_LIVE);
	else
		storage_delete_document(target, live_key);
	storage_sync(target);

	job_txn_begin("publish: put the live release back");
	job_log(job, JOB_LOG_WARN, live_version != NULL ?
			psprintf("Put %s back to version %s, the live release", live_key, live_version) :
			psprintf("Removed %s: no release is live in %s", live_key, job->env));
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);
	job->switched = false;
}

const JobType job_type_publish = {
	.name = "publish",
	.run = publish_run,
	.undo = publish_undo,
};
