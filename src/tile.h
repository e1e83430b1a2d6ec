/*-------------------------------------------------------------------------
 *
 * tile.h
 *	  Building a version's tiles from its source image: the libvips part
 *	  (tile_vips.c) and the job around it (tile_build.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_TILE_H
#define PUBLISH_TILE_H

#include "postgres.h"

#include "job.h"
#include "storage.h"

/* tile_vips.c: libvips, in this process only, never from its threads */

/* What the header of a source image says. */
typedef struct TileSourceInfo
{
	int			width;
	int			height;
	char		loader[64];		/* e.g. "pngload" */
} TileSourceInfo;

/* How a source image becomes a pyramid (see tile_vips.c). */
typedef struct TilePlan
{
	int			tile_size;
	int			scale_log2;		/* the source is scaled up by 2^this */
	int			width;			/* size of the top level */
	int			height;
	int			top_zoom;		/* zoom of the top level */
} TilePlan;

extern void tile_vips_probe(const char *path, const char *what, TileSourceInfo *info);
extern int	tile_native_max_zoom(int width, int height, int tile_size);
extern void tile_plan_make(int width, int height, int tile_size, int max_zoom, TilePlan *plan);
extern int64 tile_plan_level(const TilePlan *plan, int z, int *columns, int *rows);
extern void tile_vips_cut(const char *path, const char *what, const char *out_dir,
						  const char *format, const TilePlan *plan);

/* tile_build.c */
extern bool tile_build_needed(const char *version_id, const char *env);
extern void tile_build_job_run(PublishJob *job, MemoryContext mcxt);
extern void tile_build_for_publish(PublishJob *job, StorageTarget *target,
								   int progress_from, int progress_to);

#endif							/* PUBLISH_TILE_H */
