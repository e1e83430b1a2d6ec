/*-------------------------------------------------------------------------
 *
 * tile_plan.c
 *	  The plan of a tile pyramid: how far the source image is scaled up,
 *	  the zoom of the top level, and how many tiles each level has.
 *
 * Every figure here comes from values a publish_admin controls (the source
 * image's size, the tileset's tile size and zooms), so each is bounded
 * before it is computed: the inputs are checked first (sides of 1 to
 * TILE_MAX_SIDE pixels, tiles of 256 or 512 px, zooms 0 to TILE_MAX_ZOOM),
 * and the arithmetic on them is done in 64 bits within the bounds stated
 * where it is done; no shift is by a negative amount and no division by
 * zero.  A plan that cannot be made is an error before libvips is called:
 * PT413 when its tiles would be over publish.max_tiles or a strip of its
 * top level over publish.max_source_pixels, 22023 when the top level would
 * be larger than libvips can make.
 *
 * publish._tile_plan() returns a plan to SQL, for the tests; it is granted
 * to no one.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/fmgrprotos.h"

#include "publish.h"
#include "tile/tile.h"

PG_FUNCTION_INFO_V1(publish_tile_plan);

/*
 * The smallest zoom z at which 2^z tiles of tile_size cover side pixels.
 * side is at most tile_size << TILE_MAX_ZOOM (callers guarantee it), so
 * the loop ends by z = TILE_MAX_ZOOM and the shift stays below 2^40.
 */
static int
native_zoom(int64 side, int tile_size)
{
	int			z = 0;

	Assert(side <= (int64) tile_size << TILE_MAX_ZOOM);
	while (z < TILE_MAX_ZOOM && ((int64) tile_size << z) < side)
		z++;
	return z;
}

/*
 * Columns and rows of tiles at zoom z of a top level of width x height at
 * top_zoom (0 <= z <= top_zoom <= TILE_MAX_ZOOM, sides at most tile_size <<
 * TILE_MAX_ZOOM): a span of at most 2^39 pixels, at least tile_size, and
 * at most 2^30 columns or rows, so their product fits in 64 bits.
 */
static int64
level_size(int64 width, int64 height, int tile_size, int top_zoom, int z,
		   int *columns, int *rows)
{
	int64		span = (int64) tile_size << (top_zoom - z);

	*columns = (int) ((width + span - 1) / span);
	*rows = (int) ((height + span - 1) / span);
	return (int64) *columns * *rows;
}

/*
 * Makes the plan of the pyramid of a width x height source image in tiles
 * of tile_size, zooms min_zoom to max_zoom (max_zoom -1: the image's own,
 * the smallest zoom whose tiles cover its larger side; min_zoom is then
 * lowered to it if above).  "what" names the tiles in messages (e.g.
 * 'version 3 of project "campus"').
 *
 * The image is scaled up by the smallest power of two that brings its own
 * zoom to max_zoom; the top level is then at max_zoom, or above it when
 * the image is larger than max_zoom needs (the levels above max_zoom are
 * cut, not uploaded).  Errors: 22023 for inputs out of range or a top level
 * over TILE_MAX_SIDE pixels a side, PT413 for more tiles in min_zoom to
 * max_zoom than publish.max_tiles.
 */
void
tile_plan_make(int width, int height, int tile_size, int min_zoom, int max_zoom,
			   const char *what, TilePlan *plan)
{
	int64		w = width;
	int64		h = height;
	int			scale_log2 = 0;
	int			top_zoom;
	int64		tiles = 0;

	if (width < 1 || height < 1 || width > TILE_MAX_SIDE || height > TILE_MAX_SIDE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source image of %s is %d x %d pixels, which cannot be cut into tiles",
						what, width, height),
				 errdetail("Each side must be from 1 to %d pixels.", TILE_MAX_SIDE)));
	if (tile_size != 256 && tile_size != 512)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the tiles of %s cannot be %d px: the tile size must be 256 or 512",
						what, tile_size)));
	if (max_zoom == -1)
	{
		max_zoom = native_zoom(Max(w, h), tile_size);
		min_zoom = Min(min_zoom, max_zoom);
	}
	if (min_zoom < 0 || max_zoom > TILE_MAX_ZOOM || min_zoom > max_zoom)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the tiles of %s cannot be of zooms %d to %d", what, min_zoom, max_zoom),
				 errdetail("Zooms must be from 0 to %d, min_zoom at most max_zoom.", TILE_MAX_ZOOM)));

	/*
	 * Scaled up while its own zoom is below max_zoom: a side that doubles is
	 * at most tile_size << (max_zoom - 1) before, so at most tile_size <<
	 * TILE_MAX_ZOOM (2^39) after; TILE_MAX_SIDE is below that too.
	 */
	while (native_zoom(Max(w, h), tile_size) < max_zoom)
	{
		w <<= 1;
		h <<= 1;
		scale_log2++;
	}
	top_zoom = native_zoom(Max(w, h), tile_size);

	/* at most 31 levels of at most 2^60 tiles, falling by four: below 2^61 */
	for (int z = min_zoom; z <= max_zoom; z++)
	{
		int			columns,
					rows;

		tiles += level_size(w, h, tile_size, top_zoom, z, &columns, &rows);
	}
	if (tiles > publish_max_tiles)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_TOO_LARGE),
				 errmsg("the tiles of %s would be %lld, over publish.max_tiles (%d)",
						what, (long long) tiles, publish_max_tiles),
				 errdetail("Zooms %d to %d of a source image of %d x %d pixels make that many tiles of %d px.",
						   min_zoom, max_zoom, width, height, tile_size),
				 errhint("Lower the tileset's max_zoom, or ask a superuser to raise publish.max_tiles.")));
	if (Max(w, h) > TILE_MAX_SIDE)
	{
		int64		side = Max(width, height);

		/* the highest max_zoom whose top level libvips can make */
		while (side * 2 <= TILE_MAX_SIDE)
			side *= 2;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the tiles of %s cannot be cut up to zoom %d: the source image of %d x %d pixels would be scaled up to %lld x %lld, over %d pixels a side",
						what, max_zoom, width, height, (long long) w, (long long) h, TILE_MAX_SIDE),
				 errhint("Lower the tileset's max_zoom to %d or less.", native_zoom(side, tile_size))));
	}

	/*
	 * libvips cuts each level a strip of tile_size rows at a time, the
	 * level's whole width: the top level's strip may hold no more pixels than
	 * the largest source image allowed (a thin image scaled up would
	 * otherwise need gigabytes for one strip).  w * tile_size < 2^49.
	 */
	if (w * tile_size > (int64) publish_max_source_pixels * 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_TOO_LARGE),
				 errmsg("the tiles of %s cannot be cut up to zoom %d: a strip of the top level would be %lld x %d pixels, over publish.max_source_pixels (%d megapixels)",
						what, max_zoom, (long long) w, tile_size, publish_max_source_pixels),
				 errdetail("The source image of %d x %d pixels is scaled up to %lld x %lld, and cut %d rows at a time.",
						   width, height, (long long) w, (long long) h, tile_size),
				 errhint("Lower the tileset's max_zoom, or ask a superuser to raise publish.max_source_pixels.")));

	plan->tile_size = tile_size;
	plan->scale_log2 = scale_log2;
	plan->width = (int) w;
	plan->height = (int) h;
	plan->top_zoom = top_zoom;
	plan->min_zoom = min_zoom;
	plan->max_zoom = max_zoom;
	plan->tiles = tiles;
}

/* The columns and rows of tiles at zoom z of the plan; their product. */
int64
tile_plan_level(const TilePlan *plan, int z, int *columns, int *rows)
{
	if (z < 0 || z > plan->top_zoom)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("zoom %d is not a level of a tile pyramid of zooms 0 to %d", z, plan->top_zoom)));
	return level_size(plan->width, plan->height, plan->tile_size, plan->top_zoom, z, columns, rows);
}

/*
 * publish._tile_plan(w, h, tile_size, min_zoom, max_zoom) → jsonb
 * The levels a build of a w x h source image would upload, as
 * [[zoom, columns, rows, tiles], ...], or the error it would fail with:
 * tile_plan_make, as the worker calls it.
 */
Datum
publish_tile_plan(PG_FUNCTION_ARGS)
{
	TilePlan	plan;
	StringInfoData buf;

	tile_plan_make(PG_GETARG_INT32(0), PG_GETARG_INT32(1), PG_GETARG_INT32(2),
				   PG_GETARG_INT32(3), PG_GETARG_INT32(4), "a plan", &plan);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int z = plan.min_zoom; z <= plan.max_zoom; z++)
	{
		int			columns,
					rows;
		int64		n = tile_plan_level(&plan, z, &columns, &rows);

		appendStringInfo(&buf, "%s[%d, %d, %d, %lld]", z > plan.min_zoom ? ", " : "",
						 z, columns, rows, (long long) n);
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
