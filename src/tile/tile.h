/*-------------------------------------------------------------------------
 *
 * tile.h
 *	  Map tiles: building a version's tiles from its source image (the
 *	  plan of the pyramid, tile_plan.c; libvips, tile_vips.c; the build,
 *	  tile_build.c), and step 4 of a publish, the tiles of the manifest
 *	  verified and copied to the release's place (tile_publish.c).
 *
 * Contract: called by the job types (jobs/); calls release/ (the input it
 * publishes), queue/ (progress, checkpoints, short transactions) and
 * storage/.  No transaction is open while a source is read, a pyramid cut
 * or a tile moved; each long loop is a checkpoint at least once a second,
 * so a cancel, the job's timeout or SIGTERM stops it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_TILE_H
#define PUBLISH_TILE_H

#include "queue/queue.h"
#include "release/release.h"
#include "storage/storage.h"

/*
 * Most pixels a side of an image libvips makes (its VIPS_MAX_COORD;
 * tile_vips.c checks that they agree).
 */
#define TILE_MAX_SIDE	10000000

/*
 * The highest zoom a tileset may have: tilesets_zoom_range and
 * tiles_z_range say the same (test/sql/08_shared_definitions.sql).
 */
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

/*
 * tile_build.c: does the version need its tiles built for env before it is
 * published (a base_map asset, no tileset built there)?  Caller in a
 * transaction.
 */
extern bool tile_build_needed(const char *version_id, const char *env);

/*
 * tile_build.c: builds the version's tiles onto target (NULL: env's
 * target, loaded here) and writes the manifest, moving the job's progress
 * from progress_from to progress_to.  With outcome (a build_tiles job),
 * the result and last log line are handed back there; without, the build
 * logs a step at progress_to.  Outside a transaction.
 */
extern void tile_build(PublishJob *job, StorageTarget *target,
					   int progress_from, int progress_to,
					   JobOutcome *outcome, MemoryContext mcxt);


/* tile_publish.c */

/* One tile of the manifest, as step 4 holds it: one window of them at a time. */
typedef struct TileEntry
{
	int			z;
	int			x;
	int			y;
	int64		byte_size;
	char		sha256[65];
	char		md5[33];		/* "" when the manifest has none */
	/* what a listing of the destination showed (step 4) */
	int64		listed_size;	/* -1: not there */
	char		listed_md5[33]; /* "" when the listing told none */
} TileEntry;

/*
 * What step 1 saw of a tileset's manifest, in the snapshot release.json
 * was built from: how many tiles, and a fingerprint of their rows (the XOR
 * of one 64-bit hash per row).  Step 4 reads the manifest again, window
 * by window, and fails when it does not find these.
 */
typedef struct TileManifest
{
	char	   *tileset_id;
	int64		ntiles;
	int64		fingerprint;
} TileManifest;

typedef struct TileCounts
{
	int64		verified;		/* size and sha256 checked */
	int64		copied;
	int64		skipped;		/* already in place with the same content */
} TileCounts;

/* The Content-Type of tiles of a tileset format (png, jpg, webp). */
extern const char *tile_content_type(const char *format);

/*
 * Fills *m for the tileset (its id copied into mcxt): caller in a
 * transaction, with the snapshot release.json is built in active.
 */
extern void tile_manifest_summarize(const char *tileset_id, TileManifest *m,
									MemoryContext mcxt);

/*
 * Verifies and copies every tile of the manifest (no transaction open:
 * each window of the manifest is read in a short transaction of its own),
 * moving the job's progress from first_pct to 79; throws naming the first
 * few missing or corrupt tiles, when the manifest is not the one m
 * describes any more, or for a cancel, a timeout, SIGTERM.
 */
extern void tile_publish(PublishJob *job, StorageTarget *target, ReleaseInput *in,
						 const TileManifest *m, int first_pct, TileCounts *counts);

#endif							/* PUBLISH_TILE_H */
