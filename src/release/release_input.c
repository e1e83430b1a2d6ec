/*-------------------------------------------------------------------------
 *
 * release_input.c
 *	  Read what goes into a release: a version's project, assets, overlays
 *	  and tileset, through SPI.
 *
 * release_input_load reads the small part (project, version, assets,
 * tileset) into a ReleaseInput; release_input_scan_overlays then streams
 * the overlays through an SPI cursor, a batch at a time, and hands each to
 * a callback (validation.c checks it, release_builder.c writes it), so
 * memory stays bounded by a batch whatever the number of overlays, and an
 * overlay whose values take more than publish.max_release_size is refused
 * before they are read (a batch holds large values as TOAST pointers).
 * Geometry and properties arrive as jsonb values, not text: validation
 * walks their binary form and the builder writes their text straight into
 * the document.
 *
 * Rows come ordered by key in the "C" collation, so the same content gives
 * the same release.json whatever the database's collation.  Both queries
 * run read-only, with the transaction's active snapshot: the caller sees
 * one state of the version, from the limit check to the last overlay.
 *
 * Caller is in a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "utils/builtins.h"

#include "publish.h"
#include "release/release.h"
#include "util/util.h"

/*
 * Overlays fetched from the cursor at a time: enough to make the cost of a
 * fetch negligible, few enough that a batch of rows is small beside the
 * document (about 100 kB).
 */
#define OVERLAY_BATCH	250

static bool
col_isnull(HeapTuple row, int col)
{
	bool		isnull;

	(void) SPI_getbinval(row, SPI_tuptable->tupdesc, col, &isnull);
	return isnull;
}

/*
 * Runs sql, with the version's id as $1, through the plan kept in *plan
 * (spi_execute_cached: these queries run for every job).
 */
static void
run_query(SPIPlanPtr *plan, const char *sql, const char *version_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(version_id)};

	MemoryContext mcxt = CurrentMemoryContext;

	if (spi_execute_cached(plan, sql, 1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read release content");
	MemoryContextSwitchTo(mcxt);
}

ReleaseInput *
release_input_load(const char *version_id, const char *env, const char *published_at_iso,
				   bool estimate_size, MemoryContext mcxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(mcxt);
	ReleaseInput *in;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	HeapTuple	row;
	bool		isnull;
	static SPIPlanPtr limits_plan = NULL;
	static SPIPlanPtr version_plan = NULL;
	static SPIPlanPtr assets_plan = NULL;
	static SPIPlanPtr tileset_plan = NULL;

	in = palloc0(sizeof(ReleaseInput));

	/*
	 * With estimate_size, refuse a release over the limits (PT413) from an
	 * estimate of its size, before anything is read: what validate_version
	 * promises, as it writes no document.  The worker and the preview
	 * (build_release) pass false: the estimate costs a pass over every
	 * overlay, and release_build enforces publish.max_release_size exactly on
	 * the bytes it writes, before it writes them (memory stays bounded by the
	 * limit either way); the tile limit is checked below.
	 */
	if (estimate_size)
	{
		args[0] = CStringGetTextDatum(version_id);
		if (spi_execute_cached(&limits_plan, "SELECT publish._check_release_limits($1::uuid)",
							   1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "publish: could not check the release limits");
		MemoryContextSwitchTo(mcxt);
	}

	in->version_id = pstrdup(version_id);
	in->env = pstrdup(env);
	in->published_at = pstrdup(published_at_iso);

	/* project, version and the target's public base URL */
	args[0] = CStringGetTextDatum(version_id);
	args[1] = CStringGetTextDatum(env);
	if (spi_execute_cached(&version_plan,
						   "SELECT p.id, p.slug, p.name, v.version_number, v.status, "
						   "       (SELECT coalesce(t.options->>'public_url', t.url) "
						   "          FROM publish.storage_targets t WHERE t.env = $2) "
						   "  FROM publish.project_versions v "
						   "  JOIN publish.projects p ON p.id = v.project_id "
						   " WHERE v.id = $1::uuid",
						   2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the version");
	MemoryContextSwitchTo(mcxt);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("version %s does not exist", version_id),
				 errdetail("It was deleted after the job was queued.")));
	row = SPI_tuptable->vals[0];
	in->project_id = spi_text(row, 1, mcxt);
	in->project_slug = spi_text(row, 2, mcxt);
	in->project_name = spi_text(row, 3, mcxt);
	in->version_number = pg_strtoint32(SPI_getvalue(row, SPI_tuptable->tupdesc, 4));
	in->version_status = spi_text(row, 5, mcxt);
	in->base_url = spi_text(row, 6, mcxt);
	if (in->base_url == NULL && env[0] == '\0')
		in->base_url = "";		/* validation only: URLs do not matter */
	else if (in->base_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("environment \"%s\" has no storage target", env),
				 errhint("Configure one with publish.set_storage_target().")));

	/* assets */
	run_query(&assets_plan, "SELECT key, kind, storage_path, content_type, byte_size, sha256, id "
			  "  FROM publish.assets WHERE version_id = $1::uuid "
			  " ORDER BY key COLLATE \"C\"", version_id);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		ReleaseAsset *a = palloc0(sizeof(ReleaseAsset));

		row = SPI_tuptable->vals[i];
		a->key = spi_text(row, 1, mcxt);
		a->kind = spi_text(row, 2, mcxt);
		a->storage_path = spi_text(row, 3, mcxt);
		a->content_type = spi_text(row, 4, mcxt);
		a->has_size = !col_isnull(row, 5);
		if (a->has_size)
			a->byte_size = pg_strtoint64(SPI_getvalue(row, SPI_tuptable->tupdesc, 5));
		a->sha256 = spi_text(row, 6, mcxt);
		memcpy(a->id, DatumGetPointer(SPI_getbinval(row, SPI_tuptable->tupdesc, 7, &isnull)),
			   sizeof(a->id));
		in->assets = lappend(in->assets, a);
	}

	/* tileset */
	run_query(&tileset_plan, "SELECT t.id, t.format, t.tile_size, t.min_zoom, t.max_zoom, "
			  "       t.bounds[array_lower(t.bounds, 1)], t.bounds[array_lower(t.bounds, 1) + 1], "
			  "       t.bounds[array_lower(t.bounds, 1) + 2], t.bounds[array_lower(t.bounds, 1) + 3], "
			  "       t.source_path, (SELECT count(*) FROM publish.tiles m WHERE m.tileset_id = t.id), "
			  "       (SELECT count(*) FROM publish.tiles m WHERE m.tileset_id = t.id "
			  "           AND m.z NOT BETWEEN t.min_zoom AND t.max_zoom) "
			  "  FROM publish.tilesets t WHERE t.version_id = $1::uuid", version_id);
	if (SPI_processed > 0)
	{
		ReleaseTileset *ts = palloc0(sizeof(ReleaseTileset));
		TupleDesc	desc = SPI_tuptable->tupdesc;

		row = SPI_tuptable->vals[0];
		ts->id = spi_text(row, 1, mcxt);
		ts->format = spi_text(row, 2, mcxt);
		ts->tile_size = pg_strtoint32(SPI_getvalue(row, desc, 3));
		ts->min_zoom = pg_strtoint32(SPI_getvalue(row, desc, 4));
		ts->max_zoom = pg_strtoint32(SPI_getvalue(row, desc, 5));

		/*
		 * The table's check: NULL, or four numbers, whatever the array's
		 * first index.  Each is written in its shortest exact form, as
		 * float8out does by default, but whatever extra_float_digits says.
		 */
		ts->has_bounds = !col_isnull(row, 6);
		for (int b = 0; b < 4 && ts->has_bounds; b++)
		{
			if (col_isnull(row, 6 + b))
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("the tileset of version %d of project \"%s\" has bounds that are not four numbers",
								in->version_number, in->project_slug)));
			ts->bounds_text[b] = MemoryContextAlloc(mcxt, DOUBLE_SHORTEST_DECIMAL_LEN);
			double_to_shortest_decimal_buf(DatumGetFloat8(SPI_getbinval(row, desc, 6 + b, &isnull)),
										   ts->bounds_text[b]);
		}
		ts->source_path = spi_text(row, 10, mcxt);
		ts->tile_count = pg_strtoint64(SPI_getvalue(row, desc, 11));
		ts->tiles_outside_zoom = pg_strtoint64(SPI_getvalue(row, desc, 12));
		in->tileset = ts;
		if (ts->tile_count > publish_max_tiles)
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_TOO_LARGE),
					 errmsg("version %d of project \"%s\" is too large to publish: its tileset has %lld tiles, over publish.max_tiles (%d)",
							in->version_number, in->project_slug,
							(long long) ts->tile_count, publish_max_tiles),
					 errhint("Reduce the zoom range or the bounds of the tileset, or ask a superuser to raise publish.max_tiles.")));
	}
	MemoryContextSwitchTo(oldcxt);
	return in;
}

/* pg_size_pretty's text of bytes */
static char *
size_pretty(int64 bytes)
{
	return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(pg_size_pretty,
															  Int64GetDatum(bytes))));
}

typedef struct AssetEntry
{
	char		id[16];			/* hash key: the uuid's bytes */
	char	   *key;
} AssetEntry;

/*
 * The version's assets by id, to name an overlay's asset without joining
 * (a join's plan rescanned the assets for every overlay); NULL without
 * assets.
 */
static HTAB *
asset_index(ReleaseInput *in)
{
	HASHCTL		ctl;
	HTAB	   *index;
	ListCell   *lc;

	if (in->assets == NIL)
		return NULL;
	ctl.keysize = sizeof(((AssetEntry *) NULL)->id);
	ctl.entrysize = sizeof(AssetEntry);
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("publish release assets", list_length(in->assets), &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	foreach(lc, in->assets)
	{
		ReleaseAsset *a = lfirst(lc);
		AssetEntry *e = hash_search(index, a->id, HASH_ENTER, NULL);

		e->key = a->key;
	}
	return index;
}

/* The key of the asset with this uuid if it is one of the version's, or NULL. */
static char *
asset_key_of(HTAB *index, const void *uuid)
{
	AssetEntry *e = index ? hash_search(index, uuid, HASH_FIND, NULL) : NULL;

	return e ? e->key : NULL;
}

/*
 * PT413 when an overlay's geometry and properties would take more than
 * publish.max_release_size as text.  As stored (toast_raw_datum_size,
 * before they are read) jsonb takes up to about five times its text (a
 * small number is 3 bytes of text, 16 stored), and never much less.  So
 * at most the limit as stored, they fit; over JSONB_TEXT_RATIO times it,
 * they are refused unread, which bounds what the worker holds of one
 * overlay; in between their text is counted (release_text_size makes
 * none), and *geometry and *properties are left read.
 */
#define JSONB_TEXT_RATIO	8

static void
check_overlay_size(ReleaseInput *in, const char *key, Datum geometry, Jsonb **geometry_out,
				   Datum properties, Jsonb **properties_out)
{
	int64		max_bytes = (int64) publish_max_release_size * 1024;
	int64		bytes = 0;

	if (geometry_out != NULL)
		bytes += (int64) toast_raw_datum_size(geometry);
	if (properties_out != NULL)
		bytes += (int64) toast_raw_datum_size(properties);
	if (max_bytes == 0 || bytes <= max_bytes)
		return;
	if (bytes <= JSONB_TEXT_RATIO * max_bytes)
	{
		bytes = 0;
		if (geometry_out != NULL)
		{
			*geometry_out = DatumGetJsonbP(geometry);
			bytes += (int64) release_text_size(*geometry_out);
		}
		if (properties_out != NULL)
		{
			*properties_out = DatumGetJsonbP(properties);
			bytes += (int64) release_text_size(*properties_out);
		}
		if (bytes <= max_bytes)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_PUBLISH_TOO_LARGE),
			 errmsg("version %d of project \"%s\" is too large to publish: the geometry and properties of overlay \"%s\" take %s, over publish.max_release_size (%s)",
					in->version_number, in->project_slug, key,
					size_pretty(bytes), size_pretty(max_bytes)),
			 errhint("Split its overlays over projects, simplify their geometry, or ask a superuser to raise publish.max_release_size.")));
}

/*
 * Streams the overlays of the version, ordered by key, to callback; returns
 * how many there were (also stored in input->overlay_count).  Each overlay,
 * and what the callback allocates in the current memory context, lives in
 * a context reset after the callback: the callback copies what it keeps.
 */
int64
release_input_scan_overlays(ReleaseInput *in, ReleaseOverlayCallback callback, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext row_cxt = AllocSetContextCreate(caller, "publish overlay",
												  ALLOCSET_DEFAULT_SIZES);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(in->version_id)};
	Portal		portal;
	int64		count = 0;
	HTAB	   *assets = asset_index(in);
	static SPIPlanPtr plan = NULL;

	/* kept plan, walking overlays_release_order_idx (no sort, no seqscan) */
	portal = spi_cursor_open_cached(&plan,
									"SELECT o.key, o.name, o.overlay_type, o.geometry, o.properties, o.asset_id "
									"  FROM publish.overlays o "
									" WHERE o.version_id = $1::uuid "
									" ORDER BY o.key COLLATE \"C\"",
									1, argtypes, args, NULL, true);
	for (;;)
	{
		SPITupleTable *tuptable;
		TupleDesc	desc;

		SPI_cursor_fetch(portal, true, OVERLAY_BATCH);
		if (SPI_processed == 0)
			break;
		tuptable = SPI_tuptable;
		desc = tuptable->tupdesc;
		MemoryContextSwitchTo(row_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	row = tuptable->vals[i];
			ReleaseOverlay o;
			bool		isnull;
			Datum		d;
			Datum		geometry;
			Datum		properties;
			bool		geometry_null;
			bool		properties_null;

			d = SPI_getbinval(row, desc, 1, &isnull);
			o.key = TextDatumGetCString(d);
			d = SPI_getbinval(row, desc, 2, &isnull);
			o.name = isnull ? NULL : TextDatumGetCString(d);
			d = SPI_getbinval(row, desc, 3, &isnull);
			o.overlay_type = TextDatumGetCString(d);
			geometry = SPI_getbinval(row, desc, 4, &geometry_null);
			properties = SPI_getbinval(row, desc, 5, &properties_null);
			o.geometry = NULL;
			o.properties = NULL;
			check_overlay_size(in, o.key, geometry, geometry_null ? NULL : &o.geometry,
							   properties, properties_null ? NULL : &o.properties);
			if (!geometry_null && o.geometry == NULL)
				o.geometry = DatumGetJsonbP(geometry);
			if (!properties_null && o.properties == NULL)
				o.properties = DatumGetJsonbP(properties);
			d = SPI_getbinval(row, desc, 6, &isnull);
			o.has_asset_id = !isnull;
			o.asset_key = isnull ? NULL : asset_key_of(assets, DatumGetPointer(d));
			count++;
			callback(&o, arg);
			MemoryContextReset(row_cxt);
		}
		SPI_freetuptable(tuptable);
		MemoryContextSwitchTo(caller);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(row_cxt);
	if (assets != NULL)
		hash_destroy(assets);
	in->overlay_count = count;
	return count;
}
