/*-------------------------------------------------------------------------
 *
 * job_rollback.c
 *	  The rollback job: an earlier release of an environment made live
 *	  again from its immutable copy, without rebuilding anything.
 *
 *	  1  find the release in the history: the latest document the version
 *	     made live in this environment, and its sha256            10%
 *	  2  check its copy {env}/{slug}/releases/v{N}.json on the target
 *	     against that sha256                                       40%
 *	  3  check a sample of its tiles {env}/{slug}/tiles/v{N}/...   70%
 *	  4  switch {env}/{slug}/release.json to the copy, record the
 *	     live release and its history row                         100%
 *
 * The copy is checked by what the target tells cheaply: S3 answers a HEAD
 * with the sha256 that publish stored with the object (x-amz-meta-sha256);
 * file:// and WebDAV keep none, so the copy is read and hashed (a local
 * read, a download).  Either is the sha256 of the document itself, also
 * for a copy stored compressed (storage_stat_document decompresses what it
 * downloads).  A copy missing, or whose sha256 is not the one the
 * history recorded, fails the job before anything changes.  The tiles are
 * sampled, not all checked: the first tile of each zoom level of the
 * version's manifest and its last tile must be in place with their
 * manifest size (and sha256, where a HEAD tells it).  That finds tiles
 * removed with their version's directory or bucket prefix, for a few
 * requests run in parallel, not a tile removed alone.
 *
 * The switch is a publish's step 5: marked durably first
 * (job_mark_switched), then release.json becomes the copy as it is stored,
 * as a publish's undo makes it (storage_switch_document: on file:// a hard
 * link renamed over it, with its release.json.gz or without one; S3 and
 * WebDAV: a server-side copy, with the copy's encoding), made durable; the
 * final transaction records the live release and the history row
 * (job_live.c).  The version's status is left as it is (a
 * rollback often goes back to a version archived since).  A failure after
 * the mark puts back what publish.releases says is live, as a publish's
 * does (its undo is the publish's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
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

/* the tiles checked: one per zoom level and the last, at most */
#define ROLLBACK_MAX_TILES	(31 + 1)

/* A tile of the sample, and what its check found. */
typedef struct SampleTile
{
	char	   *key;
	int64		byte_size;
	char	   *sha256;
	bool		ok;
	bool		checked;
} SampleTile;

/* What step 1 found. */
typedef struct RollbackPlan
{
	char	   *project_id;
	char	   *slug;
	int			version;
	char	   *live_version;	/* NULL: nothing live */
	char	   *published_at;	/* of the document, ISO 8601 UTC */
	char	   *sha256;
	SampleTile	tiles[ROLLBACK_MAX_TILES];
	int			ntiles;
} RollbackPlan;

/*
 * Step 1 (in a transaction): the release to put back, from the history,
 * and the sample of its tiles.  Throws when there is none to put back.
 */
static void
read_plan(PublishJob *job, RollbackPlan *plan, MemoryContext mcxt)
{
	static SPIPlanPtr release_plan = NULL;
	static SPIPlanPtr tiles_plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	HeapTuple	row;
	bool		isnull;
	char	   *prefix;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	if (spi_execute_cached(&release_plan,
						   "SELECT j.project_id, p.slug, (j.params->>'version_number')::integer,"
						   "       (SELECT v.version_number FROM publish.live_releases r"
						   "          JOIN publish.project_versions v ON v.id = r.version_id"
						   "         WHERE r.project_id = j.project_id AND r.env = j.env),"
						   "       h.id IS NOT NULL,"
						   "       to_char(h.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
						   "       h.release_sha256"
						   "  FROM publish.job_queue j"
						   "  JOIN publish.projects p ON p.id = j.project_id"
						   "  LEFT JOIN LATERAL ("
						   "       SELECT h.id, h.published_at, h.release_sha256"
						   "         FROM publish.live_release_history h"
						   "        WHERE h.project_id = j.project_id AND h.env = j.env"
						   "          AND h.version_id = j.version_id"
						   "        ORDER BY h.id DESC LIMIT 1) h ON true"
						   " WHERE j.id = $1",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the release history");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the project was deleted before the job started")));
	row = SPI_tuptable->vals[0];
	plan->project_id = spi_text(row, 1, mcxt);
	plan->slug = spi_text(row, 2, mcxt);
	plan->version = DatumGetInt32(SPI_getbinval(row, SPI_tuptable->tupdesc, 3, &isnull));
	plan->live_version = spi_text(row, 4, mcxt);
	if (!DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 5, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_CONFLICT),
				 errmsg("version %d of project \"%s\" was never live in \"%s\"",
						plan->version, plan->slug, job->env),
				 errdetail("A rollback puts back a release that publish.release_history records.")));
	plan->published_at = spi_text(row, 6, mcxt);
	plan->sha256 = spi_text(row, 7, mcxt);
	if (plan->sha256 == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_CONFLICT),
				 errmsg("no checksum is recorded for version %d of project \"%s\" in \"%s\"",
						plan->version, plan->slug, job->env),
				 errdetail("Its copy on storage cannot be checked, so it is not put back."),
				 errhint("Publish the version again instead.")));

	/* one tile per zoom level, and the last: an index probe each */
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->version_id));
	if (spi_execute_cached(&tiles_plan,
						   "SELECT s.format, t.z, t.x, t.y, t.byte_size, t.sha256"
						   "  FROM publish.tilesets s,"
						   "  LATERAL ("
						   "       SELECT f.z, f.x, f.y, f.byte_size, f.sha256"
						   "         FROM generate_series(s.min_zoom, s.max_zoom) AS zz(z),"
						   "         LATERAL (SELECT t.z, t.x, t.y, t.byte_size, t.sha256 FROM publish.tiles t"
						   "                   WHERE t.tileset_id = s.id AND t.z = zz.z"
						   "                   ORDER BY t.x, t.y LIMIT 1) f"
						   "       UNION"
						   "       (SELECT t.z, t.x, t.y, t.byte_size, t.sha256 FROM publish.tiles t"
						   "         WHERE t.tileset_id = s.id"
						   "         ORDER BY t.z DESC, t.x DESC, t.y DESC LIMIT 1)) t"
						   " WHERE s.version_id = $1"
						   " ORDER BY t.z, t.x, t.y",
						   1, types, values, NULL, true, ROLLBACK_MAX_TILES) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the tile manifest");
	prefix = psprintf("%s/%s/tiles/v%d", job->env, plan->slug, plan->version);
	plan->ntiles = (int) SPI_processed;
	for (int i = 0; i < plan->ntiles; i++)
	{
		SampleTile *t = &plan->tiles[i];

		row = SPI_tuptable->vals[i];
		t->key = MemoryContextStrdup(mcxt,
									 psprintf("%s/%s/%s/%s.%s", prefix,
											  SPI_getvalue(row, SPI_tuptable->tupdesc, 2),
											  SPI_getvalue(row, SPI_tuptable->tupdesc, 3),
											  SPI_getvalue(row, SPI_tuptable->tupdesc, 4),
											  SPI_getvalue(row, SPI_tuptable->tupdesc, 1)));
		t->byte_size = DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 5, &isnull));
		t->sha256 = spi_text(row, 6, mcxt);
	}
}

/* Does what the target told of a tile agree with its manifest row? */
static bool
tile_matches(const SampleTile *t, const StorageObjectInfo *info)
{
	return info->exists && info->size == t->byte_size &&
		(info->sha256[0] == '\0' || strcmp(info->sha256, t->sha256) == 0);
}

/* Step 3: the tiles of the sample, in parallel where the target can. */
static void
check_tiles(PublishJob *job, StorageTarget *target, RollbackPlan *plan)
{
	if (storage_batch_supported(target))
	{
		StorageBatch *volatile b = NULL;
		int			next = 0;
		int			done = 0;

		PG_TRY();
		{
			b = storage_batch_begin(target, Max(publish_storage_concurrency, 1));
			while (done < plan->ntiles)
			{
				StorageResult res;

				while (next < plan->ntiles && !storage_batch_full(b))
				{
					storage_batch_stat(b, plan->tiles[next].key, false, &plan->tiles[next]);
					next++;
				}
				if (storage_batch_wait(b, 1000, &res))
				{
					SampleTile *t = res.tag;

					t->ok = tile_matches(t, &res.info);
					t->checked = true;
					done++;
				}
				else
					job_checkpoint(job);
			}
		}
		PG_FINALLY();
		{
			if (b != NULL)
				storage_batch_end(b);
		}
		PG_END_TRY();
	}
	else
	{
		for (int i = 0; i < plan->ntiles; i++)
		{
			StorageObjectInfo info;

			CHECK_FOR_INTERRUPTS();
			storage_stat(target, plan->tiles[i].key, &info, false);
			plan->tiles[i].ok = tile_matches(&plan->tiles[i], &info);
			plan->tiles[i].checked = true;
		}
	}

	for (int i = 0; i < plan->ntiles; i++)
		if (!plan->tiles[i].ok)
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_NOT_FOUND),
					 errmsg("tile %s of version %d is missing on target \"%s\", or not the one its manifest describes",
							plan->tiles[i].key, plan->version, job->env),
					 errdetail("Nothing was changed: release.json still names version %s.",
							   plan->live_version ? plan->live_version : "(none)"),
					 errhint("Publish the version again instead: it copies its tiles.")));
}

/* In the job's final transaction: the release live again (job_live.c). */
static bool
rollback_record(PublishJob *job, void *arg)
{
	return job_live_record(job, (LiveRelease *) arg);
}

/*
 * Runs a rollback's steps, up to the switch of release.json, and hands
 * back what its final transaction records, or throws.  Everything is
 * allocated in mcxt, reset after the job.
 */
static void
rollback_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt)
{
	RollbackPlan *plan = palloc0(sizeof(RollbackPlan));
	StorageTarget *target;
	StorageObjectInfo info;
	char	   *versioned_key;
	char	   *live_key;
	char	   *release_url;
	LiveRelease *rel;
	StringInfoData result;

	if (job->version_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the version was deleted before the job started")));

	/* Step 1: the release to put back (10%) */
	job_txn_begin("publish: rollback: reading the history");
	read_plan(job, plan, mcxt);
	target = storage_target_load(job->env, mcxt);
	target->warn = job_storage_warning;
	target->warn_arg = job;
	job_step_done(job, 10,
				  psprintf("Rolling back %s in %s from version %s to version %d: release.json of %s, sha256 %s",
						   plan->slug, job->env, plan->live_version ? plan->live_version : "(none)",
						   plan->version, plan->published_at, plan->sha256));
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);
	job_pause_point("validated");

	versioned_key = psprintf("%s/%s/releases/v%d.json", job->env, plan->slug, plan->version);
	live_key = psprintf("%s/%s/release.json", job->env, plan->slug);
	release_url = storage_public_url(target, live_key);

	/*
	 * Step 2: its immutable copy (40%), by the checksum a HEAD tells where
	 * the target keeps one, else by its bytes, decompressed where it is
	 * stored compressed: the sha256 is the document's.
	 */
	pgstat_report_activity(STATE_RUNNING, "publish: rollback: checking the release");
	storage_stat_document(target, versioned_key, &info);
	if (!info.exists)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("%s is missing on target \"%s\"", versioned_key, job->env),
				 errdetail("Nothing was changed: release.json still names version %s.",
						   plan->live_version ? plan->live_version : "(none)"),
				 errhint("Publish the version again instead.")));
	if (strcmp(info.sha256, plan->sha256) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s on target \"%s\" is not the release that was live", versioned_key, job->env),
				 errdetail("Its sha256 is %s; publish.release_history recorded %s. Nothing was changed: release.json still names version %s.",
						   info.sha256, plan->sha256,
						   plan->live_version ? plan->live_version : "(none)"),
				 errhint("Publish the version again instead.")));
	job_step(job, "publish: rollback: checked the release", 40,
			 psprintf("Checked %s: %lld bytes, its sha256 is the one recorded",
					  versioned_key, (long long) info.size));

	/* Step 3: a sample of its tiles (70%) */
	pgstat_report_activity(STATE_RUNNING, "publish: rollback: checking tiles");
	check_tiles(job, target, plan);
	job_step(job, "publish: rollback: checked tiles", 70, plan->ntiles == 0 ?
			 pstrdup("No tiles to check") :
			 psprintf("Checked %d tiles under %s/%s/tiles/v%d: the first of each zoom level and the last",
					  plan->ntiles, job->env, plan->slug, plan->version));

	/* Step 4: go live (100%), marked first (see the file's comment) */
	job_txn_begin("publish: rollback: switching");
	job_step_done(job, 80, psprintf("Switching %s to version %d", live_key, plan->version));
	job_mark_switched(job);
	job_txn_commit(true);
	MemoryContextSwitchTo(mcxt);
	job_pause_point("marked");

	pgstat_report_activity(STATE_RUNNING, "publish: switching release.json");
	storage_switch_document(target, versioned_key, live_key, job->id, "application/json",
							STORAGE_CACHE_LIVE);
	storage_sync(target);
	job_pause_point("switched");

	rel = palloc(sizeof(LiveRelease));
	rel->project_id = plan->project_id;
	rel->version_id = job->version_id;
	rel->published_at = plan->published_at;
	rel->release_url = release_url;
	rel->sha256 = plan->sha256;

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"release_url\": ");
	escape_json(&result, release_url);
	appendStringInfo(&result, ", \"version\": %d, \"previous_version\": %s, \"published_at\": ",
					 plan->version, plan->live_version ? plan->live_version : "null");
	escape_json(&result, plan->published_at);
	appendStringInfo(&result, ", \"release_bytes\": %lld, \"release_sha256\": \"%s\", \"tiles_checked\": %d}",
					 (long long) info.size, plan->sha256, plan->ntiles);
	outcome->result = result.data;
	outcome->message = psprintf("Version %d is live again in %s; rollback completed successfully",
								plan->version, job->env);
	outcome->record = rollback_record;
	outcome->record_arg = rel;
}

/* After a failure past the switch: what publish.releases says is live goes back, as for a publish. */
static void
rollback_undo(PublishJob *job, MemoryContext mcxt)
{
	job_type_publish.undo(job, mcxt);
}

const JobType job_type_rollback = {
	.name = "rollback",
	.run = rollback_run,
	.undo = rollback_undo,
};
