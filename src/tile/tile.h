/*-------------------------------------------------------------------------
 *
 * tile.h
 *	  Building a version's tiles from its source image: the plan of the
 *	  pyramid (tile_plan.c), the libvips part (tile_vips.c) and the job
 *	  around it (tile_build.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_TILE_H
#define PUBLISH_TILE_H

#include "postgres.h"

#include "queue/job.h"
#include "storage/storage.h"

/*
 * Most pixels a side of an image libvips makes (its VIPS_MAX_COORD;
 * tile_vips.c checks that they agree).
 */
#define TILE_MAX_SIDE	10000000

/* The highest zoom a tileset may have (its table's constraint). */
#define TILE_MAX_ZOOM	30

/* What the header of a source image says. */
typedef struct TileSourceInfo
{
	int			width;
	int			height;
	char		loader[64];		/* e.g. "pngload" */
} TileSourceInfo;

/*
 * How a source image becomes a pyramid (see tile_vips.c).  Made by
 * tile_plan_make only, which refuses the plans that cannot be made, so
 * that every figure here is bounded.
 */
typedef struct TilePlan
{
	int			tile_size;
	int			scale_log2;		/* the source is scaled up by 2^this */
	int			width;			/* size of the top level */
	int			height;
	int			top_zoom;		/* zoom of the top level */
	int			min_zoom;		/* the levels uploaded, within 0..top_zoom */
	int			max_zoom;
	int64		tiles;			/* how many tiles they have */
} TilePlan;

/* tile_plan.c: the arithmetic of a pyramid (no libvips) */
extern void tile_plan_make(int width, int height, int tile_size, int min_zoom, int max_zoom,
						   const char *what, TilePlan *plan);
extern int64 tile_plan_level(const TilePlan *plan, int z, int *columns, int *rows);

/*
 * tile_vips.c: libvips, in the worker only; a cut runs in a thread of its
 * own and stops when the worker is interrupted or deadline (0: none) passes
 */
extern void tile_vips_probe(const char *path, const char *what, TileSourceInfo *info);
extern void tile_vips_cut(const char *path, const char *what, const char *out_dir,
						  const char *format, const TilePlan *plan, TimestampTz deadline);

/* tile_build.c */
extern bool tile_build_needed(const char *version_id, const char *env);
extern void tile_build_job_run(PublishJob *job, JobOutcome *outcome, MemoryContext mcxt);
extern void tile_build_for_publish(PublishJob *job, StorageTarget *target,
								   int progress_from, int progress_to);

#endif							/* PUBLISH_TILE_H */
