/*-------------------------------------------------------------------------
 *
 * tile_publish.h
 *	  Step 4 of a publish job: the tiles of the manifest, verified and
 *	  copied to the release's versioned tile location.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_TILE_PUBLISH_H
#define PUBLISH_TILE_PUBLISH_H

#include "publish.h"
#include "job.h"
#include "storage.h"

/* One tile of the manifest: 128 bytes, the only per-tile memory kept. */
typedef struct TileEntry
{
	int			z;
	int			x;
	int			y;
	int64		byte_size;
	char		sha256[65];
	char		md5[33];		/* "" when the manifest has none */
} TileEntry;

typedef struct TileCounts
{
	int64		verified;		/* size and sha256 checked */
	int64		copied;
	int64		skipped;		/* already in place with the same content */
} TileCounts;

/* The Content-Type of tiles of a tileset format (png, jpg, webp). */
extern const char *tile_content_type(const char *format);

/* The tile manifest, ordered z/x/y, in mcxt (caller in a transaction). */
extern TileEntry *tile_manifest_load(const char *tileset_id, int64 *ntiles,
									 MemoryContext mcxt);

/*
 * Verifies and copies every tile (no transaction open), moving the job's
 * progress from first_pct to 79; throws naming the first few missing or
 * corrupt tiles, or for a cancel, a timeout, SIGTERM.
 */
extern void tile_publish(PublishJob *job, StorageTarget *target, ReleaseInput *in,
						 TileEntry *tiles, int64 ntiles, int first_pct, TileCounts *counts);

#endif							/* PUBLISH_TILE_PUBLISH_H */
