/*-------------------------------------------------------------------------
 *
 * release_input.c
 *	  Read what goes into a release: a version's project, assets, overlays
 *	  and tileset, through SPI.
 *
 * Rows come ordered by key in the "C" collation, so the same content gives
 * the same release.json whatever the database's collation.  Geometry and
 * properties are kept as the text PostgreSQL wrote (release.json embeds it
 * as is, so numbers are never rounded or clamped); validation.c parses each
 * geometry in turn.
 *
 * Caller is in a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"

#include "utils/builtins.h"

static bool
col_isnull(HeapTuple row, int col)
{
	bool		isnull;

	(void) SPI_getbinval(row, SPI_tuptable->tupdesc, col, &isnull);
	return isnull;
}

static void
run_query(const char *sql, const char *version_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(version_id)};

	MemoryContext mcxt = CurrentMemoryContext;

	if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read release content");
	MemoryContextSwitchTo(mcxt);
}

ReleaseInput *
release_input_load(const char *version_id, const char *env, const char *published_at_iso,
				   MemoryContext mcxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(mcxt);
	ReleaseInput *in;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	HeapTuple	row;

	in = palloc0(sizeof(ReleaseInput));

	/*
	 * Refuse a release over the size limits (PT413) before loading it, so
	 * that memory stays bounded whatever the content.
	 */
	args[0] = CStringGetTextDatum(version_id);
	if (SPI_execute_with_args("SELECT publish._check_release_limits($1::uuid)",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not check the release limits");
	MemoryContextSwitchTo(mcxt);

	in->version_id = pstrdup(version_id);
	in->env = pstrdup(env);
	in->published_at = pstrdup(published_at_iso);

	/* project, version and the target's public base URL */
	args[0] = CStringGetTextDatum(version_id);
	args[1] = CStringGetTextDatum(env);
	if (SPI_execute_with_args("SELECT p.id, p.slug, p.name, v.version_number, v.status, "
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
	run_query("SELECT key, kind, storage_path, content_type, byte_size, sha256 "
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
		in->assets = lappend(in->assets, a);
	}

	/* overlays, with the key of their asset when it belongs to this version */
	run_query("SELECT o.key, o.name, o.overlay_type, o.geometry::text, o.properties::text, "
			  "       o.asset_id IS NOT NULL, a.key "
			  "  FROM publish.overlays o "
			  "  LEFT JOIN publish.assets a ON a.id = o.asset_id AND a.version_id = o.version_id "
			  " WHERE o.version_id = $1::uuid "
			  " ORDER BY o.key COLLATE \"C\"", version_id);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		ReleaseOverlay *o = palloc0(sizeof(ReleaseOverlay));
		bool		isnull;

		row = SPI_tuptable->vals[i];
		o->key = spi_text(row, 1, mcxt);
		o->name = spi_text(row, 2, mcxt);
		o->overlay_type = spi_text(row, 3, mcxt);
		o->geometry_text = spi_text(row, 4, mcxt);
		o->properties_text = spi_text(row, 5, mcxt);
		o->has_asset_id = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 6, &isnull));
		o->asset_key = spi_text(row, 7, mcxt);
		in->overlays = lappend(in->overlays, o);
	}

	/* tileset */
	run_query("SELECT t.id, t.format, t.tile_size, t.min_zoom, t.max_zoom, "
			  "       t.bounds[1]::text, t.bounds[2]::text, t.bounds[3]::text, t.bounds[4]::text, "
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
		ts->has_bounds = !col_isnull(row, 6);
		for (int b = 0; b < 4 && ts->has_bounds; b++)
			ts->bounds_text[b] = spi_text(row, 6 + b, mcxt);
		ts->source_path = spi_text(row, 10, mcxt);
		ts->tile_count = pg_strtoint64(SPI_getvalue(row, desc, 11));
		ts->tiles_outside_zoom = pg_strtoint64(SPI_getvalue(row, desc, 12));
		in->tileset = ts;
	}
	MemoryContextSwitchTo(oldcxt);
	return in;
}
