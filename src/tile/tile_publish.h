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
#include "queue/job.h"
#include "storage/storage.h"

/* One tile of the manifest, as step 4 holds it: one window of them at a time. */
typedef struct TileEntry
{
	int			z;
	int			x;
	int			y;
	int64		byte_size;
	char		sha256[65];
	char		md5[33];		/* "" when the manifest has none */
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

#endif							/* PUBLISH_TILE_PUBLISH_H */
