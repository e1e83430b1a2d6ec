/*-------------------------------------------------------------------------
 *
 * tile_publish.c
 *	  Step 4 of a publish job: every tile of the manifest verified and
 *	  copied from the build location ({source_path}/{z}/{x}/{y}.{format})
 *	  to the release's immutable place ({env}/{slug}/tiles/v{N}/...).
 *
 * Per tile, in this order:
 *	  1  the destination, unless one request showed nothing under the
 *		 version's tile prefix (a first publish): already there with the
 *		 manifest's size and sha256?  Then it is skipped (and counts as
 *		 verified: readers get those bytes).  S3 tells the checksum in a HEAD (x-amz-meta-sha256,
 *		 set by our put and copy); WebDAV and file:// hash the bytes.
 *	  2  the source, hashed as it is read: missing, or another size or
 *		 sha256 than the manifest's, makes the tile bad.
 *	  3  a server-side copy (S3 CopyObject carrying the sha256, WebDAV
 *		 COPY, a kernel copy on file://), or GET + PUT where the server
 *		 has no COPY.
 * On S3, a tile whose MD5 the manifest knows (build_tiles records it)
 * skips step 2: the CopyObject answers with the copy's ETag, the MD5 the
 * server computed of the bytes it wrote, so one request copies and
 * verifies.  Such a copy carries no x-amz-meta-sha256 (it is not checked
 * when it is made); a later skip check compares the ETag.  An ETag that is
 * not the manifest's MD5 (a corrupt source, or a server whose ETags are no
 * MD5: SSE-KMS) is settled by hashing the copy, as in step 2.
 * Bad tiles are counted and the first few named when the job fails; once
 * one is found nothing more is copied, but every tile is still checked.
 *
 * Remote targets run the requests in parallel, as a storage batch
 * (storage_batch_*), at most publish.storage_concurrency at once, each
 * tile with one request in flight; file:// runs them one by one (local
 * file operations need no waiting).
 *
 * The memory held does not grow with the tile count.  The manifest is
 * read in windows of publish.tile_window tiles, in (z, x, y) order: each
 * window is one query in a short transaction of its own (keyset
 * pagination on the primary key, an index scan, no sort), read while the
 * requests of the previous window's last tiles are in flight, but with no
 * request made while the transaction is open.  Each in-flight tile holds
 * a copy of its manifest entry and a memory context of its own, reset
 * when it is done; between windows only counters are kept.
 *
 * The manifest is not frozen while a job runs (build_tiles rewrites it,
 * an admin may edit it), and release.json, written later, carries the
 * tile count step 1 read.  So step 1 also takes a fingerprint of the
 * manifest in its snapshot (tile_manifest_summarize: the count and the
 * XOR of a 64-bit hash of each row), the windows compute the same over
 * the rows they read, and a difference fails the job (PT409) before
 * release.json is written: what is published is the manifest step 1 saw,
 * or nothing.
 *
 * Progress moves from 50 (76 after a tile build) to 79 % with the tiles
 * done, written at most four times a second (job_progress, no log line),
 * and every second at the latest the job's cancel and deadline are checked (job_checkpoint): a
 * cancel, a timeout or SIGTERM stops the loop between batches.  Retry
 * notices reach the job's log from the batch's loop, between two waits.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "tile/tile.h"
#include "util/util.h"

#define TILES_LAST_PCT		79	/* 80 is the end of step 4 */
#define PROGRESS_EVERY_MS	250
#define CHECKPOINT_EVERY_MS	1000
#define BAD_TILES_NAMED		5

/* What a tile in flight is waiting for. */
typedef enum TileStep
{
	TILE_DST_CHECK,				/* HEAD (S3) or hashed GET of the destination */
	TILE_DST_HASH,				/* hashed GET of the destination (no checksum
								 * in the HEAD) */
	TILE_SRC_CHECK,				/* hashed GET of the source */
	TILE_COPY,					/* the server-side copy */
	TILE_COPY_CHECK				/* hashed GET of a copy its ETag did not
								 * verify */
} TileStep;

typedef struct TileTask
{
	bool		busy;
	TileEntry	tile;			/* a copy: the window moves on */
	TileStep	step;
	bool		unverified;		/* copied without step 2: the copy's ETag
								 * verifies it */
	char	   *src;
	char	   *dst;
	MemoryContext cxt;			/* this tile's allocations; reset when done */
} TileTask;

typedef struct TileRun
{
	PublishJob *job;
	StorageTarget *target;
	ReleaseInput *in;
	const TileManifest *manifest;	/* what step 1 saw */
	TileCounts *counts;
	const char *content_type;
	bool		dst_empty;		/* nothing under the destination prefix yet */
	bool		listed;			/* the destination was listed: each window
								 * carries what the listing showed */
	int64		done;			/* tiles finished */
	int64		bad;
	StringInfoData problems;	/* the first BAD_TILES_NAMED, each "\n..." */
	int			first_pct;		/* progress when the loop starts (50, or after
								 * a build) */
	int			last_pct;
	TimestampTz last_report;
	TimestampTz last_check;

	/* the current window of the manifest, and what the windows saw */
	TileEntry  *window;			/* window_size entries, made once */
	int			window_size;
	int			window_len;		/* rows in it */
	int			window_pos;		/* the next tile to hand out */
	bool		window_last;	/* the manifest has no rows after it */
	int			key[3];			/* (z, x, y) of the last tile read */
	int64		seen;			/* rows read */
	int64		seen_fingerprint;	/* XOR of their hashes */
} TileRun;

/*
 * The hash of a manifest row that fingerprints it: any change of a row's
 * position, size or checksums changes it.  hash_record_extended hashes
 * each column with its type's hash function (text: the bytes, under the
 * default collation, which is deterministic).
 */
#define ROW_HASH "hash_record_extended(ROW(z, x, y, byte_size, sha256, md5), 0)"

/*
 * The listing of the destination (list_destination), one row per object
 * whose key names a tile; a temporary table of the worker's session,
 * emptied before and after each listing.  Its local buffers are capped
 * (LISTED_BUFFERS), so that the memory held stays the same whatever the
 * tile count: a bigger listing spills to a temporary file.
 */
#define LISTED_TABLE	"publish_listed_tiles"
#define LISTED_BUFFERS	"1MB"

/* See tile.h. */
void
tile_manifest_summarize(const char *tileset_id, TileManifest *m, MemoryContext mcxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(tileset_id)};
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	/* read_only: in the caller's snapshot, the one release.json comes from */
	if (spi_execute_cached(&plan, "SELECT count(*), coalesce(bit_xor(" ROW_HASH "), 0)"
						   "  FROM publish.tiles WHERE tileset_id = $1::uuid",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "publish: could not read the tile manifest");
	m->ntiles = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	m->fingerprint = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_freetuptable(SPI_tuptable);
	m->tileset_id = MemoryContextStrdup(mcxt, tileset_id);
}

static void manifest_check_unchanged(TileRun *run);

/*
 * Reads the next window of the manifest into run->window, in a short
 * transaction of its own (which is also a checkpoint of the job's
 * deadline); leaves the caller's memory context current.  The query walks
 * the primary key (tileset_id, z, x, y) from the last tile read, so each
 * window costs the same however far into the manifest it is.
 */
static void
window_read(TileRun *run)
{
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		values[5];
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr listed_plan = NULL;

	values[0] = CStringGetTextDatum(run->manifest->tileset_id);
	values[1] = Int32GetDatum(run->key[0]);
	values[2] = Int32GetDatum(run->key[1]);
	values[3] = Int32GetDatum(run->key[2]);
	values[4] = Int32GetDatum(run->window_size);

	job_txn_begin("publish: reading the tile manifest");
	if (run->listed)
	{
		/* each tile with what the listing showed at its destination */
		if (spi_execute_cached(&listed_plan, "SELECT z, x, y, byte_size, sha256, md5, " ROW_HASH ","
							   "       coalesce(l.lsize, -1), l.lmd5"
							   "  FROM publish.tiles"
							   "  LEFT JOIN pg_temp." LISTED_TABLE " l ON (l.lz, l.lx, l.ly) = (z, x, y)"
							   " WHERE tileset_id = $1::uuid AND (z, x, y) > ($2, $3, $4)"
							   " ORDER BY z, x, y LIMIT $5",
							   5, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "publish: could not read the tile manifest");
	}
	else if (spi_execute_cached(&plan, "SELECT z, x, y, byte_size, sha256, md5, " ROW_HASH
								"  FROM publish.tiles"
								" WHERE tileset_id = $1::uuid AND (z, x, y) > ($2, $3, $4)"
								" ORDER BY z, x, y LIMIT $5",
								5, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the tile manifest");
	run->window_len = (int) SPI_processed;
	run->window_pos = 0;
	run->window_last = run->window_len < run->window_size;
	for (int i = 0; i < run->window_len; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		TileEntry  *t = &run->window[i];
		bool		isnull;
		Datum		md5;

		t->z = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
		t->x = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		t->y = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
		t->byte_size = DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(row, desc, 5, &isnull)),
							   t->sha256, sizeof(t->sha256));
		md5 = SPI_getbinval(row, desc, 6, &isnull);
		if (isnull)
			t->md5[0] = '\0';
		else
			text_to_cstring_buffer(DatumGetTextPP(md5), t->md5, sizeof(t->md5));
		run->seen_fingerprint ^= DatumGetInt64(SPI_getbinval(row, desc, 7, &isnull));
		t->listed_size = -1;
		t->listed_md5[0] = '\0';
		if (run->listed)
		{
			Datum		lmd5;

			t->listed_size = DatumGetInt64(SPI_getbinval(row, desc, 8, &isnull));
			lmd5 = SPI_getbinval(row, desc, 9, &isnull);
			if (!isnull)
				text_to_cstring_buffer(DatumGetTextPP(lmd5), t->listed_md5, sizeof(t->listed_md5));
		}
	}
	run->seen += run->window_len;
	if (run->window_len > 0)
	{
		TileEntry  *last = &run->window[run->window_len - 1];

		run->key[0] = last->z;
		run->key[1] = last->x;
		run->key[2] = last->y;
	}
	job_txn_commit(false);
	pgstat_report_activity(STATE_RUNNING, "publish: copying tiles");
}

/*
 * Copies the next tile of the manifest into *t, reading the next window
 * when this one is used up; false when every tile was handed out.
 */
static bool
next_tile(TileRun *run, TileEntry *t)
{
	if (run->window_pos >= run->window_len)
	{
		if (run->window_last)
			return false;
		window_read(run);
		if (run->seen > run->manifest->ntiles)
			manifest_check_unchanged(run);	/* it grew: stop now */
		if (run->window_len == 0)
			return false;
	}
	*t = run->window[run->window_pos++];
	return true;
}

/*
 * Throws unless the windows read the manifest step 1 summarized: the
 * same number of rows, the same fingerprint.
 */
static void
manifest_check_unchanged(TileRun *run)
{
	if (run->seen == run->manifest->ntiles &&
		run->seen_fingerprint == run->manifest->fingerprint)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PUBLISH_CONFLICT),
			 errmsg("the tile manifest of version %d of project \"%s\" changed while it was being published",
					run->in->version_number, run->in->project_slug),
			 errdetail("Validation read %lld tiles; the tiles published were read from %lld rows%s.",
					   (long long) run->manifest->ntiles, (long long) run->seen,
					   run->seen == run->manifest->ntiles ? " with other content" : ""),
			 errhint("Publish the version again once its tiles are built; release.json was not switched.")));
}

/* See tile.h. */
const char *
tile_content_type(const char *format)
{
	if (pg_strcasecmp(format, "png") == 0)
		return "image/png";
	if (pg_strcasecmp(format, "jpg") == 0 || pg_strcasecmp(format, "jpeg") == 0)
		return "image/jpeg";
	if (pg_strcasecmp(format, "webp") == 0)
		return "image/webp";
	if (pg_strcasecmp(format, "pbf") == 0 || pg_strcasecmp(format, "mvt") == 0)
		return "application/vnd.mapbox-vector-tile";
	return "application/octet-stream";
}

/* Source and destination keys of tile t (palloc'd). */
static void
tile_keys(TileRun *run, const TileEntry *t, char **src, char **dst)
{
	ReleaseInput *in = run->in;
	const char *fmt = in->tileset->format;

	*src = psprintf("%s/%d/%d/%d.%s", in->tileset->source_path, t->z, t->x, t->y, fmt);
	*dst = psprintf("%s/%s/tiles/v%d/%d/%d/%d.%s", in->env, in->project_slug,
					in->version_number, t->z, t->x, t->y, fmt);
}

/*
 * Does info show the tile's content: the manifest's size and sha256, or,
 * when info has no sha256, the manifest's MD5 as the server computed it?
 * An MD5 of the server's that differs from the manifest's says no even
 * when a stored x-amz-meta-sha256 agrees: that is only a claim, kept
 * through changes of the bytes that the ETag follows.
 */
static bool
tile_matches(const TileEntry *t, StorageObjectInfo *info)
{
	bool		md5_known = t->md5[0] != '\0' && info->md5[0] != '\0';

	if (!info->exists || info->size != t->byte_size)
		return false;
	if (md5_known && strcmp(info->md5, t->md5) != 0)
		return false;
	if (info->sha256[0] != '\0')
		return strcmp(info->sha256, t->sha256) == 0;
	return md5_known;
}

/*
 * The step after a destination check that found no copy of the tile: the
 * copy itself when its answer will verify it (an S3 ETag against the
 * manifest's MD5; not once a bad tile was found: then nothing more is
 * copied), else the source's check.
 */
static TileStep
source_step(TileRun *run, TileTask *task)
{
	TileEntry  *t = &task->tile;

	task->unverified = run->target->backend->etag_is_md5 && t->md5[0] != '\0' && run->bad == 0;
	return task->unverified ? TILE_COPY : TILE_SRC_CHECK;
}

/*
 * Did the listing show the tile at its destination with the manifest's
 * size and MD5 (the ETag the server computed)?
 */
static bool
listed_in_place(const TileEntry *t)
{
	return t->listed_size == t->byte_size && t->md5[0] != '\0' &&
		strcmp(t->listed_md5, t->md5) == 0;
}

/*
 * The first step of a tile the listing did not show in place: missing, of
 * another size or another MD5, the destination needs no check; shown
 * with the right size but nothing to compare (no MD5 in the manifest or
 * the listing: WebDAV), it is checked as without a listing.
 */
static TileStep
listed_step(TileRun *run, TileTask *task)
{
	TileEntry  *t = &task->tile;

	if (t->listed_size == t->byte_size && (t->md5[0] == '\0' || t->listed_md5[0] == '\0'))
		return TILE_DST_CHECK;
	return source_step(run, task);
}

/* Checks the source's info; false (the tile recorded as bad) when it is wrong. */
static bool
tile_source_ok(TileRun *run, const TileEntry *t, const char *src, StorageObjectInfo *info)
{
	const char *problem = NULL;

	if (!info->exists)
		problem = "is missing";
	else if (info->size != t->byte_size)
		problem = psprintf("has %lld bytes, the manifest says %lld",
						   (long long) info->size, (long long) t->byte_size);
	else if (strcmp(info->sha256, t->sha256) != 0)
		problem = "does not match its sha256 in the manifest";
	if (problem == NULL)
		return true;
	if (++run->bad <= BAD_TILES_NAMED)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(run->problems.data));

		appendStringInfo(&run->problems, "\ntile %d/%d/%d (%s) %s", t->z, t->x, t->y, src, problem);
		MemoryContextSwitchTo(old);
	}
	return false;
}

/*
 * Progress and checkpoints, called often from the loops: the progress at
 * most every PROGRESS_EVERY_MS when it changed, a checkpoint at least
 * every CHECKPOINT_EVERY_MS.  Each is a short transaction of its own.
 */
static void
tiles_report(TileRun *run)
{
	TimestampTz now;
	int			pct;

	CHECK_FOR_INTERRUPTS();
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(run->last_report, now, PROGRESS_EVERY_MS))
		return;
	run->last_report = now;
	pct = run->first_pct +
		(int) ((TILES_LAST_PCT - run->first_pct) * (double) Min(run->done, run->manifest->ntiles) /
			   Max(run->manifest->ntiles, 1));
	if (pct != run->last_pct)
	{
		job_progress(run->job, pct);
		run->last_pct = pct;
		run->last_check = now;
	}
	else if (TimestampDifferenceExceeds(run->last_check, now, CHECKPOINT_EVERY_MS))
	{
		job_checkpoint(run->job);
		run->last_check = now;
	}
	pgstat_report_activity(STATE_RUNNING, "publish: copying tiles");
}

/* file://: one tile after the other. */
static void
tiles_one_by_one(TileRun *run)
{
	MemoryContext tilecxt = AllocSetContextCreate(CurrentMemoryContext, "publish tile",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext saved = MemoryContextSwitchTo(tilecxt);

	TileEntry	tile;

	while (next_tile(run, &tile))
	{
		TileEntry  *t = &tile;
		StorageObjectInfo info;
		char	   *src;
		char	   *dst;

		tile_keys(run, t, &src, &dst);
		storage_stat(run->target, dst, &info, true);
		if (tile_matches(t, &info))
		{
			run->counts->verified++;
			run->counts->skipped++;
		}
		else
		{
			storage_stat(run->target, src, &info, true);
			if (tile_source_ok(run, t, src, &info))
			{
				run->counts->verified++;
				if (run->bad == 0)
				{
					storage_copy(run->target, src, dst, run->content_type, STORAGE_CACHE_IMMUTABLE);
					run->counts->copied++;
				}
			}
		}
		run->done++;
		MemoryContextReset(tilecxt);
		tiles_report(run);
	}
	MemoryContextSwitchTo(saved);
	MemoryContextDelete(tilecxt);
}

/* Starts the next request of task: one for its step. */
static void
task_request(TileRun *run, StorageBatch *b, TileTask *task)
{
	const StorageBackend *be = run->target->backend;
	TileEntry  *t = &task->tile;
	MemoryContext old = MemoryContextSwitchTo(task->cxt);

	switch (task->step)
	{
		case TILE_DST_CHECK:
			storage_batch_stat(b, task->dst, !be->head_has_sha256, task);
			break;
		case TILE_DST_HASH:
		case TILE_COPY_CHECK:
			storage_batch_stat(b, task->dst, true, task);
			break;
		case TILE_SRC_CHECK:
			storage_batch_stat(b, task->src, true, task);
			break;
		case TILE_COPY:
			/* without step 2, a missing source is a bad tile, not an error */
			storage_batch_copy(b, task->src, task->dst, run->content_type,
							   STORAGE_CACHE_IMMUTABLE,
							   task->unverified ? NULL : t->sha256,
							   task->unverified, task);
			break;
	}
	MemoryContextSwitchTo(old);
}

/* The tile of task is done: count it, free its memory. */
static void
task_done(TileRun *run, TileTask *task)
{
	task->busy = false;
	MemoryContextReset(task->cxt);
	run->done++;
}

/* The request of task finished: the next step, or the tile is done. */
static void
task_advance(TileRun *run, StorageBatch *b, TileTask *task,
			 StorageResult *res)
{
	TileEntry  *t = &task->tile;
	MemoryContext old = MemoryContextSwitchTo(task->cxt);
	StorageObjectInfo info = res->info;
	char		copy_md5[33];

	switch (task->step)
	{
		case TILE_DST_CHECK:
		case TILE_DST_HASH:
			if (tile_matches(t, &info))
			{
				run->counts->verified++;
				run->counts->skipped++;
				task_done(run, task);
				MemoryContextSwitchTo(old);
				return;
			}
			if (info.exists && info.size == t->byte_size && info.sha256[0] == '\0' &&
				task->step == TILE_DST_CHECK &&
				!(t->md5[0] != '\0' && info.md5[0] != '\0'))
			{
				/* the right size, no checksum to compare: hash the bytes */
				task->step = TILE_DST_HASH;
				break;
			}
			task->step = source_step(run, task);
			break;
		case TILE_SRC_CHECK:
			if (!tile_source_ok(run, t, task->src, &info))
			{
				task_done(run, task);
				MemoryContextSwitchTo(old);
				return;
			}
			run->counts->verified++;
			if (run->bad > 0)
			{
				/* the job fails anyway: copy nothing more */
				task_done(run, task);
				MemoryContextSwitchTo(old);
				return;
			}
			task->step = TILE_COPY;
			break;
		case TILE_COPY:
			if (res->missing)
			{
				/* nothing to copy: the source is missing */
				(void) tile_source_ok(run, t, task->src, &info);
				task_done(run, task);
				MemoryContextSwitchTo(old);
				return;
			}
			strlcpy(copy_md5, res->md5, sizeof(copy_md5));
			if (!res->copied)
			{
				/* no server-side copy here: the backend's own way (GET + PUT) */
				storage_copy(run->target, task->src, task->dst, run->content_type,
							 STORAGE_CACHE_IMMUTABLE);
				copy_md5[0] = '\0';
			}
			if (task->unverified && strcmp(copy_md5, t->md5) != 0)
			{
				/* the ETag does not say the copy is right: hash it */
				task->step = TILE_COPY_CHECK;
				break;
			}
			if (task->unverified)
				run->counts->verified++;
			run->counts->copied++;
			task_done(run, task);
			MemoryContextSwitchTo(old);
			return;
		case TILE_COPY_CHECK:
			if (tile_source_ok(run, t, task->src, &info))
			{
				run->counts->verified++;
				run->counts->copied++;
			}
			task_done(run, task);
			MemoryContextSwitchTo(old);
			return;
	}
	MemoryContextSwitchTo(old);
	task_request(run, b, task);
}

/* Remote targets: publish.storage_concurrency tiles at once. */
static void
tiles_in_parallel(TileRun *run)
{
	int			n = Max(publish_storage_concurrency, 1);
	MemoryContext runcxt = AllocSetContextCreate(CurrentMemoryContext, "publish tile transfers",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext saved = MemoryContextSwitchTo(runcxt);
	TileTask   *tasks = palloc0(sizeof(TileTask) * n);
	StorageBatch *volatile b = NULL;
	bool		more = true;	/* tiles left to hand out */

	for (int i = 0; i < n; i++)
		tasks[i].cxt = AllocSetContextCreate(runcxt, "publish tile", ALLOCSET_SMALL_SIZES);

	PG_TRY();
	{
		b = storage_batch_begin(run->target, n);
		for (;;)
		{
			StorageResult res;

			/* as many tiles in flight as there are transfer slots */
			while (more && !storage_batch_full(b))
			{
				TileTask   *task = NULL;

				for (int i = 0; i < n; i++)
				{
					if (!tasks[i].busy)
					{
						task = &tasks[i];
						break;
					}
				}
				if (task == NULL)
					break;
				/* may read the next window: a short transaction */
				if (!next_tile(run, &task->tile))
				{
					more = false;
					break;
				}
				task->unverified = false;
				if (run->dst_empty)
					task->step = source_step(run, task);
				else if (run->listed)
				{
					if (listed_in_place(&task->tile))
					{
						/* the listing's MD5 is the manifest's: no request */
						run->counts->verified++;
						run->counts->skipped++;
						run->done++;
						continue;
					}
					task->step = listed_step(run, task);
				}
				else
					task->step = TILE_DST_CHECK;
				task->busy = true;
				MemoryContextSwitchTo(task->cxt);
				tile_keys(run, &task->tile, &task->src, &task->dst);
				MemoryContextSwitchTo(runcxt);
				task_request(run, b, task);
			}
			if (!more && storage_batch_idle(b))
				break;
			if (storage_batch_wait(b, PROGRESS_EVERY_MS, &res))
				task_advance(run, b, (TileTask *) res.tag, &res);
			MemoryContextSwitchTo(runcxt);
			tiles_report(run);
		}
	}
	PG_FINALLY();
	{
		/* every transfer, on every path */
		storage_batch_end(b);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(saved);
	MemoryContextDelete(runcxt);
}

/*
 * Listing the destination.
 *
 * Where the backend lists (S3: ListObjectsV2, 1,000 keys a request, each
 * with its ETag; WebDAV: PROPFIND with Depth: 1 of a folder), the
 * destination's objects are listed before the tiles are handed out, into
 * the temporary table LISTED_TABLE, and each window of the manifest is
 * read joined to it: a tile the listing shows with the manifest's size and
 * MD5 is in place without a request of its own, and a tile it does not
 * show needs no check of its destination.  The listings run in parallel,
 * at most publish.storage_concurrency at once: on S3 one per zoom level,
 * or ten for a level of more tiles than LIST_SPLIT_PAGES pages hold (its
 * columns split by their first digit), each read page after page; on WebDAV one per folder of tiles, a column of a
 * zoom level.  Each page is written into the table in a short transaction
 * of its own as it arrives, so the memory held is one page per listing in
 * flight.  A server that cannot list (nginx without its dav_ext module
 * answers PROPFIND with 405) leaves each tile checked on its own.
 */

#define LIST_PAGE_KEYS	1000	/* what one S3 listing request returns */
#define LIST_SPLIT_PAGES	4	/* S3: a zoom level of more pages than this is
								 * listed as ten parts */
#define LIST_FOLDERS_READ	64	/* WebDAV: folders read from the manifest at a
								 * time */

/* One listing in flight: a part of the destination, page by page. */
typedef struct ListUnit
{
	bool		busy;
	char	   *sub;			/* below the root: "z/", "z/1", "z/x/" */
	MemoryContext cxt;			/* its page's allocations */
} ListUnit;

/* The parts of the destination still to list. */
typedef struct ListPlan
{
	bool		recursive;		/* S3: prefixes; else folders */
	List	   *subs;			/* S3: all of them; WebDAV: the next few */
	int			key[2];			/* WebDAV: (z, x) of the last folder read */
	bool		exhausted;		/* WebDAV: no more folders in the manifest */
} ListPlan;

/*
 * The parts to list, in a short transaction: S3, every zoom level of the
 * manifest (at most TILE_MAX_ZOOM + 1, each one or ten prefixes); WebDAV,
 * the next LIST_FOLDERS_READ columns (z, x) of the manifest after the last
 * one read.  Allocated in cxt.
 */
static void
list_plan_fill(TileRun *run, ListPlan *lp, MemoryContext cxt)
{
	static SPIPlanPtr zoom_plan = NULL;
	static SPIPlanPtr folder_plan = NULL;
	Oid			types[4] = {TEXTOID, INT4OID, INT4OID, INT4OID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(run->manifest->tileset_id);
	job_txn_begin("publish: reading the tile manifest");
	if (lp->recursive)
	{
		if (spi_execute_cached(&zoom_plan, "SELECT z, count(*) FROM publish.tiles"
							   " WHERE tileset_id = $1::uuid GROUP BY z ORDER BY z",
							   1, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "publish: could not read the tile manifest");
		lp->exhausted = true;
	}
	else
	{
		values[1] = Int32GetDatum(lp->key[0]);
		values[2] = Int32GetDatum(lp->key[1]);
		values[3] = Int32GetDatum(LIST_FOLDERS_READ);
		if (spi_execute_cached(&folder_plan, "SELECT DISTINCT z, x FROM publish.tiles"
							   " WHERE tileset_id = $1::uuid AND (z, x) > ($2, $3)"
							   " ORDER BY z, x LIMIT $4",
							   4, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "publish: could not read the tile manifest");
		lp->exhausted = SPI_processed < LIST_FOLDERS_READ;
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		isnull;
		int			z = DatumGetInt32(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));
		int64		n = lp->recursive ?
		DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull)) :
		DatumGetInt32(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);

		if (!lp->recursive)
		{
			lp->subs = lappend(lp->subs, psprintf("%d/%d/", z, (int) n));
			lp->key[0] = z;
			lp->key[1] = (int) n;
		}
		else if (n <= LIST_PAGE_KEYS * LIST_SPLIT_PAGES)
			lp->subs = lappend(lp->subs, psprintf("%d/", z));
		else
		{
			/* x = 0, then the columns by their first digit */
			lp->subs = lappend(lp->subs, psprintf("%d/0/", z));
			for (int d = 1; d <= 9; d++)
				lp->subs = lappend(lp->subs, psprintf("%d/%d", z, d));
		}
		MemoryContextSwitchTo(old);
	}
	job_txn_commit(false);
}

/*
 * The next part to list, or NULL when all are listed; the plan's list
 * and what it returns live in cxt.
 */
static char *
list_plan_next(TileRun *run, ListPlan *lp, MemoryContext cxt)
{
	char	   *sub;

	if (lp->subs == NIL && !lp->exhausted)
		list_plan_fill(run, lp, cxt);
	if (lp->subs == NIL)
		return NULL;
	sub = linitial(lp->subs);
	lp->subs = list_delete_first(lp->subs);
	return sub;
}

/*
 * Reads a decimal number without sign or leading zero (the way tile keys
 * write z, x, y) at *p, ending at the character end; false when there is
 * none.
 */
static bool
parse_number(const char **p, char end, int *value)
{
	const char *s = *p;
	int64		v = 0;
	int			digits = 0;

	while (isdigit((unsigned char) s[digits]) && digits < 10)
	{
		v = v * 10 + (s[digits] - '0');
		digits++;
	}
	if (digits == 0 || s[digits] != end || (digits > 1 && s[0] == '0') || v > PG_INT32_MAX)
		return false;
	*value = (int) v;
	*p = s + digits + 1;
	return true;
}

/* Is name (below the root) "z/x/y.format"?  Then its numbers. */
static bool
parse_tile_name(const char *name, const char *format, int *z, int *x, int *y)
{
	const char *p = name;

	return parse_number(&p, '/', z) && parse_number(&p, '/', x) &&
		parse_number(&p, '.', y) && strcmp(p, format) == 0;
}

/*
 * Writes the tiles of a page of the listing into LISTED_TABLE, in a short
 * transaction of its own; what it allocates is in the caller's memory
 * context, which should go with the page.
 */
static void
listed_insert(TileRun *run, StorageListPage *page)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	Datum	   *cols[5];
	bool	   *md5_null;
	int			n = 0;
	int			dims[1];
	int			lbs[1] = {1};

	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(Datum) * Max(page->n, 1));
	md5_null = palloc(sizeof(bool) * Max(page->n, 1));
	for (int i = 0; i < page->n; i++)
	{
		StorageListEntry *e = &page->entries[i];
		int			z,
					x,
					y;

		if (!parse_tile_name(e->name, run->in->tileset->format, &z, &x, &y))
			continue;
		cols[0][n] = Int32GetDatum(z);
		cols[1][n] = Int32GetDatum(x);
		cols[2][n] = Int32GetDatum(y);
		cols[3][n] = Int64GetDatum(e->size);
		md5_null[n] = e->md5[0] == '\0';
		cols[4][n] = md5_null[n] ? (Datum) 0 : CStringGetTextDatum(e->md5);
		n++;
	}
	if (n == 0)
		return;
	dims[0] = n;
	values[0] = PointerGetDatum(construct_array(cols[0], n, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(cols[1], n, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(cols[2], n, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(cols[3], n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_md_array(cols[4], md5_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));

	job_txn_begin("publish: listing the tiles in place");
	if (spi_execute_cached(&plan, "INSERT INTO pg_temp." LISTED_TABLE
						   " SELECT * FROM unnest($1, $2, $3, $4, $5)"
						   " ON CONFLICT DO NOTHING",
						   5, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "publish: could not record a listing");
	job_txn_commit(false);
}

/*
 * Makes LISTED_TABLE, or empties it (a short transaction).  The first
 * use in the process caps the local buffers of temporary tables first
 * (possible only before any is used).
 */
static void
listed_reset(void)
{
	static bool buffers_capped = false;

	if (!buffers_capped)
	{
		SetConfigOption("temp_buffers", LISTED_BUFFERS, PGC_USERSET, PGC_S_SESSION);
		buffers_capped = true;
	}
	job_txn_begin("publish: listing the tiles in place");
	if (SPI_execute("SELECT to_regclass('pg_temp." LISTED_TABLE "') IS NOT NULL", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not look for the listing table");
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
	{
		if (SPI_execute("TRUNCATE pg_temp." LISTED_TABLE, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "publish: could not empty the listing table");
	}
	else if (SPI_execute("CREATE TEMPORARY TABLE " LISTED_TABLE
						 " (lz int, lx int, ly int, lsize bigint, lmd5 text,"
						 "  PRIMARY KEY (lz, lx, ly))", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "publish: could not make the listing table");
	job_txn_commit(false);
}

/*
 * Lists the destination (root: the version's tile prefix) into
 * LISTED_TABLE; false when the server cannot list (logged), and the
 * tiles are then checked one by one.
 */
static bool
list_destination(TileRun *run, const char *root)
{
	int			n = Max(publish_storage_concurrency, 1);
	MemoryContext runcxt = AllocSetContextCreate(CurrentMemoryContext, "publish tile listings",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext saved = CurrentMemoryContext;
	ListUnit   *units;
	ListPlan	lp;
	StorageBatch *volatile b = NULL;
	bool		more = true;
	bool		can_list = true;
	int64		pages = 0;

	listed_reset();
	MemoryContextSwitchTo(runcxt);
	memset(&lp, 0, sizeof(lp));
	lp.recursive = run->target->backend->list_recursive;
	lp.key[0] = lp.key[1] = -1;
	units = palloc0(sizeof(ListUnit) * n);
	for (int i = 0; i < n; i++)
		units[i].cxt = AllocSetContextCreate(runcxt, "publish tile listing", ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_RUNNING, "publish: listing the tiles in place");

	PG_TRY();
	{
		b = storage_batch_begin(run->target, n);
		while (can_list)
		{
			StorageResult res;

			while (more && !storage_batch_full(b))
			{
				ListUnit   *u = NULL;
				char	   *sub;

				for (int i = 0; i < n && u == NULL; i++)
					if (!units[i].busy)
						u = &units[i];
				if (u == NULL)
					break;
				sub = list_plan_next(run, &lp, runcxt);
				if (sub == NULL)
				{
					more = false;
					break;
				}
				u->busy = true;
				u->sub = MemoryContextStrdup(u->cxt, sub);
				pfree(sub);
				MemoryContextSwitchTo(u->cxt);
				storage_batch_list(b, root, u->sub, NULL, u);
				MemoryContextSwitchTo(runcxt);
			}
			if (!more && storage_batch_idle(b))
				break;
			if (storage_batch_wait(b, PROGRESS_EVERY_MS, &res))
			{
				ListUnit   *u = res.tag;

				if (!res.listed)
					can_list = false;
				else
				{
					char	   *sub;
					char	   *next;

					pages++;
					/* the page's arrays go with the page, at the reset below */
					MemoryContextSwitchTo(u->cxt);
					listed_insert(run, &res.page);
					MemoryContextSwitchTo(runcxt);
					/* the next page, or the part is done */
					next = res.page.next ? pstrdup(res.page.next) : NULL;
					sub = pstrdup(u->sub);
					MemoryContextReset(u->cxt);
					if (next != NULL)
					{
						MemoryContextSwitchTo(u->cxt);
						u->sub = pstrdup(sub);
						storage_batch_list(b, root, u->sub, next, u);
						MemoryContextSwitchTo(runcxt);
					}
					else
						u->busy = false;
					pfree(sub);
					if (next)
						pfree(next);
				}
			}
			MemoryContextSwitchTo(runcxt);
			tiles_report(run);
		}
	}
	PG_FINALLY();
	{
		storage_batch_end(b);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(saved);
	MemoryContextDelete(runcxt);

	job_txn_begin("publish: listed the tiles in place");
	if (can_list)
		job_log(run->job, JOB_LOG_INFO,
				psprintf("Listed %s: %lld %s", root, (long long) pages,
						 pages == 1 ? "page" : "pages"));
	else
		job_log(run->job, JOB_LOG_INFO,
				psprintf("Target \"%s\" cannot list %s (no PROPFIND): each tile is checked on its own",
						 run->target->env, root));
	job_txn_commit(false);
	return can_list;
}

/* See tile.h. */
void
tile_publish(PublishJob *job, StorageTarget *target, ReleaseInput *in,
			 const TileManifest *m, int first_pct, TileCounts *counts)
{
	TileRun		run;

	memset(&run, 0, sizeof(run));
	run.job = job;
	run.target = target;
	run.in = in;
	run.manifest = m;
	run.window_size = Max(publish_tile_window, 1);
	run.window = palloc(sizeof(TileEntry) * run.window_size);
	run.key[0] = run.key[1] = run.key[2] = -1;	/* before the first tile */
	run.counts = counts;
	run.content_type = tile_content_type(in->tileset->format);
	run.first_pct = Min(first_pct, TILES_LAST_PCT);
	run.last_pct = run.first_pct;
	run.last_report = run.last_check = GetCurrentTimestamp();
	initStringInfo(&run.problems);

	pgstat_report_activity(STATE_RUNNING, "publish: copying tiles");
	if (storage_batch_supported(target))
	{
		char	   *root = psprintf("%s/%s/tiles/v%d/", in->env, in->project_slug,
									in->version_number);

		/* a first publish: no destination to check, tile by tile */
		if (target->backend->prefix_empty != NULL)
			run.dst_empty = target->backend->prefix_empty(target, root);
		/* else what is in place, from listings where the server has them */
		if (!run.dst_empty && target->backend->list_request != NULL)
			run.listed = list_destination(&run, root);
		tiles_in_parallel(&run);
		if (run.listed)
			listed_reset();
	}
	else
		tiles_one_by_one(&run);
	pfree(run.window);

	/* first: bad tiles found against another manifest mean nothing */
	manifest_check_unchanged(&run);
	if (run.bad > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg_plural("%lld tile of version %d of project \"%s\" is missing or corrupt",
							   "%lld tiles of version %d of project \"%s\" are missing or corrupt",
							   run.bad, (long long) run.bad, in->version_number, in->project_slug),
				 errdetail("%s%s", run.problems.data + 1, run.bad > BAD_TILES_NAMED ? "\n..." : "")));
	storage_sync(target);
}
