/*-------------------------------------------------------------------------
 *
 * tile_build.c
 *	  Building a version's tiles from its source image: build_tiles jobs,
 *	  and the build a publish job does first when it needs one.
 *
 * The source image is the version's asset of kind base_map, read from the
 * job's storage target: opened in place on a file:// target, downloaded to
 * a temporary file first on the others.  libvips (tile_vips.c) cuts the
 * pyramid into a temporary directory under base/pgsql_tmp (removed when
 * the build ends, and by PostgreSQL at start-up after a crash), made anew
 * under a random name, so that everything in it is the build's own; each tile
 * is then hashed and uploaded to the version's build location
 *
 *	  {env}/{slug}/builds/v{N}/tiles/{z}/{x}/{y}.{format}
 *
 * which never collides with the published tiles at
 * {env}/{slug}/tiles/v{N}/... (step 4 of a publish copies them there).  The
 * manifest is spooled to a file in the temporary directory as the tiles
 * are uploaded (one TileEntry a tile), so that the worker's memory does not
 * grow with the pyramid.  At last, one short transaction writes the
 * manifest (publish.tiles: the old rows deleted, the file read back and
 * inserted MANIFEST_INSERT_BATCH rows a statement) and the tileset
 * (created with defaults when missing; source_path, zoom range, built_at
 * and built_env set).
 *
 * No transaction is open while the source is downloaded, the pyramid is cut
 * or tiles are uploaded.  Progress is committed after the cut, after each
 * zoom level and at most four times a second while tiles are uploaded;
 * each of those commits is a checkpoint where a cancel or the job's
 * timeout stops the build.  The cut itself stops within a fraction of a
 * second on a cancel, SIGTERM or the job's timeout (tile_vips.c); a
 * download or an upload within a second on a cancel or SIGTERM
 * (http_client.c's progress callback).  The temporary directory goes
 * however the build ends: an error unwinds through build(), and an exit
 * without unwinding (SIGTERM, the postmaster's death) removes it from a
 * before_shmem_exit callback.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "queue/queue.h"
#include "storage/storage.h"
#include "tile/tile.h"
#include "util/util.h"

#define TILE_PROGRESS_INTERVAL_MS	250
#define TILE_TEMP_ROOT	"base/" PG_TEMP_FILES_DIR

/* What a build needs to know about the version, read in one transaction. */
typedef struct TileBuildInput
{
	char	   *version_id;
	char	   *slug;
	int			version_number;
	char	   *env;
	char	   *asset_key;		/* the base_map asset */
	char	   *source_key;		/* its storage_path */
	bool		has_tileset;
	char	   *format;
	int			tile_size;
	int			min_zoom;
	int			max_zoom;		/* -1: from the image */
} TileBuildInput;

/* What a build did, for the job's result and log. */
typedef struct TileBuildResult
{
	int			width;			/* of the source image */
	int			height;
	int			min_zoom;
	int			max_zoom;
	int64		tiles;
	int64		bytes;
	int64		per_zoom[TILE_MAX_ZOOM + 1];
	int64		source_bytes;
	long		cut_ms;
	long		total_ms;
	char	   *source_path;
} TileBuildResult;

/*
 * The manifest of a build: res->tiles TileEntry records (with the MD5,
 * which lets S3 verify a copy by its ETag) in a file of the build's
 * temporary directory.  A plain stdio file, not fd.c's AllocateFile: that
 * one would be closed by the commits of progress made while it is
 * written; build() closes it however the build ends.
 */
typedef struct BuiltManifest
{
	char	   *path;
	FILE	   *file;
} BuiltManifest;

#define MANIFEST_INSERT_BATCH	10000

/* Plans kept for the life of the process (spi_execute_cached). */
static SPIPlanPtr needed_plan = NULL;
static SPIPlanPtr input_plan = NULL;
static SPIPlanPtr tileset_plan = NULL;
static SPIPlanPtr delete_tiles_plan = NULL;
static SPIPlanPtr insert_tiles_plan = NULL;

/*
 * Does the version need its tiles built before it is published to env?
 * Yes when it has a base_map asset and no tileset with tiles built for env:
 * none at all, one without source_path or tiles, or one built by publish
 * for another environment.  A tileset whose tiles were put on storage by
 * other means (built_env NULL, source_path and tiles set) is used as it is.
 * Caller is in a transaction.
 */
bool
tile_build_needed(const char *version_id, const char *env)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(version_id), CStringGetTextDatum(env)};
	bool		isnull;

	if (spi_execute_cached(&needed_plan, "SELECT EXISTS (SELECT 1 FROM publish.assets a"
						   "                WHERE a.version_id = $1::uuid AND a.kind = 'base_map')"
						   "   AND NOT EXISTS (SELECT 1 FROM publish.tilesets t"
						   "                    WHERE t.version_id = $1::uuid AND t.source_path IS NOT NULL"
						   "                      AND (t.built_env IS NULL OR t.built_env = $2)"
						   "                      AND EXISTS (SELECT 1 FROM publish.tiles m WHERE m.tileset_id = t.id))",
						   2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the version's tileset");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Reads the version, its base_map asset and its tileset (caller in a
 * transaction).  Errors as build_tiles() does at call time: the version
 * must exist and not be archived, and have exactly one base_map asset.
 */
static TileBuildInput *
load_build_input(const char *version_id, const char *env, MemoryContext mcxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(version_id)};
	TileBuildInput *bi = MemoryContextAllocZero(mcxt, sizeof(TileBuildInput));
	HeapTuple	row;
	TupleDesc	desc;
	char	   *status;
	int64		n_maps;

	if (spi_execute_cached(&input_plan, "SELECT p.slug, v.version_number, v.status,"
						   "       (SELECT count(*) FROM publish.assets a"
						   "         WHERE a.version_id = v.id AND a.kind = 'base_map'),"
						   "       a.key, a.storage_path,"
						   "       t.id IS NOT NULL, t.format, t.tile_size, t.min_zoom, t.max_zoom"
						   "  FROM publish.project_versions v"
						   "  JOIN publish.projects p ON p.id = v.project_id"
						   "  LEFT JOIN LATERAL (SELECT key, storage_path FROM publish.assets a"
						   "                      WHERE a.version_id = v.id AND a.kind = 'base_map'"
						   "                      ORDER BY a.key LIMIT 1) a ON true"
						   "  LEFT JOIN publish.tilesets t ON t.version_id = v.id"
						   " WHERE v.id = $1::uuid",
						   1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not read the version to build tiles for");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("the version was deleted before its tiles were built")));
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	bi->version_id = MemoryContextStrdup(mcxt, version_id);
	bi->env = MemoryContextStrdup(mcxt, env);
	bi->slug = spi_text(row, 1, mcxt);
	bi->version_number = pg_strtoint32(SPI_getvalue(row, desc, 2));
	status = SPI_getvalue(row, desc, 3);
	n_maps = pg_strtoint64(SPI_getvalue(row, desc, 4));
	bi->asset_key = spi_text(row, 5, mcxt);
	bi->source_key = spi_text(row, 6, mcxt);
	bi->has_tileset = strcmp(SPI_getvalue(row, desc, 7), "t") == 0;
	if (bi->has_tileset)
	{
		bi->format = spi_text(row, 8, mcxt);
		bi->tile_size = pg_strtoint32(SPI_getvalue(row, desc, 9));
		bi->min_zoom = pg_strtoint32(SPI_getvalue(row, desc, 10));
		bi->max_zoom = pg_strtoint32(SPI_getvalue(row, desc, 11));
	}
	else
	{
		bi->format = MemoryContextStrdup(mcxt, "png");
		bi->tile_size = 256;
		bi->min_zoom = 0;
		bi->max_zoom = -1;
	}

	if (strcmp(status, "archived") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_CONFLICT),
				 errmsg("version %d of project \"%s\" was archived before its tiles were built",
						bi->version_number, bi->slug)));
	if (n_maps != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version %d of project \"%s\" has %lld assets of kind base_map; tiles are built from exactly one",
						bi->version_number, bi->slug, (long long) n_maps)));
	return bi;
}

/*
 * The temporary directory of the build in progress ("" when none), for
 * remove_temp_dir_at_exit: a FATAL error (SIGTERM) exits the process
 * without unwinding through build().
 */
static char live_temp_dir[MAXPGPATH] = "";

/* Removes the build's temporary directory, if any (an error is a WARNING). */
static void
remove_temp_dir(void)
{
	if (live_temp_dir[0] == '\0')
		return;
	if (!rmtree(live_temp_dir, true))
		ereport(WARNING,
				(errmsg("could not remove the temporary directory \"%s\" of a tile build",
						live_temp_dir)));
	live_temp_dir[0] = '\0';
}

static void
remove_temp_dir_at_exit(int code, Datum arg)
{
	remove_temp_dir();
}

/*
 * Creates the build's temporary directory under base/pgsql_tmp, as
 * mkdtemp does: a new directory (mkdir never follows a symlink at its
 * name), under a name with a random part, so that nothing in it was put
 * there before the build.  It is the build's until remove_temp_dir.
 */
static char *
make_temp_dir(void)
{
	static bool exit_callback = false;
	char	   *dir = NULL;

	if (!exit_callback)
	{
		before_shmem_exit(remove_temp_dir_at_exit, (Datum) 0);
		exit_callback = true;
	}
	if (MakePGDirectory(TILE_TEMP_ROOT) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", TILE_TEMP_ROOT)));
	for (int attempt = 0; attempt < 8; attempt++)
	{
		uint64		random;

		if (!pg_strong_random(&random, sizeof(random)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random name for a temporary directory")));
		dir = psprintf("%s/%spublish_tiles.%d.%016llx", TILE_TEMP_ROOT, PG_TEMP_FILE_PREFIX,
					   MyProcPid, (unsigned long long) random);
		if (MakePGDirectory(dir) == 0)
		{
			strlcpy(live_temp_dir, dir, sizeof(live_temp_dir));
			return dir;
		}
		if (errno != EEXIST)
			break;
	}
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not create directory \"%s\": %m", dir)));
	return NULL;				/* not reached */
}

/* Progress figure of a fraction of the band from..to. */
static int
band(int from, int to, double fraction)
{
	return from + (int) ((to - from) * Min(Max(fraction, 0.0), 1.0));
}

static long
ms_since(TimestampTz start)
{
	return (long) ((GetCurrentTimestamp() - start) / 1000);
}

/* Appends tile t to the manifest file. */
static void
manifest_append(BuiltManifest *m, const TileEntry *t)
{
	if (fwrite(t, sizeof(TileEntry), 1, m->file) != 1)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the tile manifest file \"%s\": %m", m->path)));
}

/* Throws: libvips left no tile at file. */
pg_attribute_noreturn()
static void
tile_not_written(int z, int x, int y, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("libvips did not write tile %d/%d/%d of the source image %s: %m",
					z, x, y, what)));
}

/*
 * The log line and progress at the end of zoom z, in a short transaction
 * of its own.
 */
static void
zoom_done(PublishJob *job, TileBuildResult *res, int z, int cols, int rows,
		  int64 level_bytes, int progress)
{
	job_txn_begin("publish: uploaded a zoom level");
	job_step_done(job, progress,
				  psprintf("Zoom %d: %lld tiles (%d x %d), %lld bytes, uploaded under %s/%d",
						   z, (long long) res->per_zoom[z], cols, rows,
						   (long long) level_bytes, res->source_path, z));
	job_txn_commit(false);
}

/*
 * The tiles one after the other (file://: local file operations need no
 * waiting), each hashed and put; returns how many.
 */
static int64
upload_one_by_one(PublishJob *job, StorageTarget *target, TileBuildInput *bi,
				  const TilePlan *plan, const char *pyramid, const char *what,
				  int cut_progress, int progress_to, int64 expected,
				  TileBuildResult *res, BuiltManifest *m)
{
	TimestampTz last_progress = GetCurrentTimestamp();
	int64		n = 0;

	for (int z = bi->min_zoom; z <= bi->max_zoom; z++)
	{
		int			cols,
					rows;
		int64		level_bytes = 0;

		res->per_zoom[z] = tile_plan_level(plan, z, &cols, &rows);
		for (int y = 0; y < rows; y++)
		{
			for (int x = 0; x < cols; x++)
			{
				char	   *file = psprintf("%s/%d/%d/%d.%s", pyramid, z, y, x, bi->format);
				char	   *key = psprintf("%s/%d/%d/%d.%s", res->source_path, z, x, y, bi->format);
				TileEntry	t;
				struct stat st;

				CHECK_FOR_INTERRUPTS();
				memset(&t, 0, sizeof(t));	/* its padding is written too */
				if (stat(file, &st) != 0 || !checksum_file(file, t.sha256, t.md5))
					tile_not_written(z, x, y, what);
				storage_put_file(target, key, file, tile_content_type(bi->format), NULL);
				t.z = z;
				t.x = x;
				t.y = y;
				t.byte_size = (int64) st.st_size;
				manifest_append(m, &t);
				n++;
				level_bytes += st.st_size;
				pfree(file);
				pfree(key);

				if (TimestampDifferenceExceeds(last_progress, GetCurrentTimestamp(),
											   TILE_PROGRESS_INTERVAL_MS))
				{
					job_progress(job, band(cut_progress, progress_to - 1, (double) n / expected));
					last_progress = GetCurrentTimestamp();
				}
			}
		}
		res->bytes += level_bytes;
		zoom_done(job, res, z, cols, rows, level_bytes,
				  band(cut_progress, progress_to - 1, (double) n / expected));
		last_progress = GetCurrentTimestamp();
	}
	return n;
}

/* A tile being uploaded, in the parallel loop. */
typedef struct UploadTask
{
	bool		busy;
	bool		checking;		/* its put is done; a stat checks its size */
	TileEntry	tile;
	char	   *key;
	MemoryContext cxt;			/* the tile's bytes and requests */
} UploadTask;

/*
 * Reads the whole file at path (a tile libvips wrote) into memory in the
 * current context; false, with errno, when it cannot.  Nothing throws
 * while the transient file is open.
 */
static bool
read_tile_file(const char *path, char **data, size_t *len)
{
	struct stat st;
	size_t		done = 0;
	int			fd;
	char	   *buf;

	if (stat(path, &st) != 0)
		return false;
	if (!S_ISREG(st.st_mode))
	{
		errno = EISDIR;			/* not a file, for the caller's %m */
		return false;
	}
	buf = palloc_extended(st.st_size + 1, MCXT_ALLOC_HUGE);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		return false;
	while (done < (size_t) st.st_size)
	{
		ssize_t		r = read(fd, buf + done, st.st_size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
		{
			int			save_errno = r == 0 ? EIO : errno;

			CloseTransientFile(fd);
			errno = save_errno;
			return false;
		}
		done += r;
	}
	CloseTransientFile(fd);
	*data = buf;
	*len = done;
	return true;
}

/*
 * Remote targets: publish.storage_concurrency tiles in flight at once,
 * through a storage batch, the transfer engine of step 4's copies.  Each
 * tile is read and hashed, put, and, where the put's answer does not show
 * that it landed whole (S3: an ETag that is its MD5), checked by a HEAD;
 * then its manifest entry is written.  A zoom level is finished before
 * the next starts, so that its log line says what is uploaded.  Returns
 * how many tiles.
 */
static int64
upload_in_parallel(PublishJob *job, StorageTarget *target, TileBuildInput *bi,
				   const TilePlan *plan, const char *pyramid, const char *what,
				   int cut_progress, int progress_to, int64 expected,
				   TileBuildResult *res, BuiltManifest *m)
{
	int			ntasks = Max(publish_storage_concurrency, 1);
	MemoryContext runcxt = AllocSetContextCreate(CurrentMemoryContext, "publish tile uploads",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext saved = MemoryContextSwitchTo(runcxt);
	UploadTask *tasks = palloc0(sizeof(UploadTask) * ntasks);
	StorageBatch *volatile b = NULL;
	TimestampTz last_progress = GetCurrentTimestamp();
	const char *content_type = tile_content_type(bi->format);
	int64		n = 0;

	for (int i = 0; i < ntasks; i++)
		tasks[i].cxt = AllocSetContextCreate(runcxt, "publish tile upload", ALLOCSET_SMALL_SIZES);

	PG_TRY();
	{
		b = storage_batch_begin(target, ntasks);
		for (int z = bi->min_zoom; z <= bi->max_zoom; z++)
		{
			int			cols,
						rows;
			int64		level_bytes = 0;
			int64		next = 0;	/* the next tile of the level, row by row */
			int64		count;

			count = res->per_zoom[z] = tile_plan_level(plan, z, &cols, &rows);
			for (;;)
			{
				StorageResult r;

				while (next < count && !storage_batch_full(b))
				{
					UploadTask *task = NULL;
					int			x = (int) (next % cols);
					int			y = (int) (next / cols);
					char	   *file;
					char	   *data;
					size_t		len;

					for (int i = 0; i < ntasks && task == NULL; i++)
						if (!tasks[i].busy)
							task = &tasks[i];
					if (task == NULL)
						break;
					CHECK_FOR_INTERRUPTS();
					MemoryContextSwitchTo(task->cxt);
					file = psprintf("%s/%d/%d/%d.%s", pyramid, z, y, x, bi->format);
					if (!read_tile_file(file, &data, &len))
						tile_not_written(z, x, y, what);
					memset(&task->tile, 0, sizeof(TileEntry));
					task->tile.z = z;
					task->tile.x = x;
					task->tile.y = y;
					task->tile.byte_size = (int64) len;
					strlcpy(task->tile.sha256, checksum_sha256_hex(data, len), sizeof(task->tile.sha256));
					checksum_md5_hex(data, len, task->tile.md5);
					task->key = psprintf("%s/%d/%d/%d.%s", res->source_path, z, x, y, bi->format);
					task->busy = true;
					task->checking = false;
					storage_batch_put(b, task->key, data, len, content_type, NULL,
									  task->tile.md5, task);
					MemoryContextSwitchTo(runcxt);
					next++;
				}
				if (next >= count && storage_batch_idle(b))
					break;
				if (storage_batch_wait(b, TILE_PROGRESS_INTERVAL_MS, &r))
				{
					UploadTask *task = r.tag;

					if (!task->checking && !r.verified)
					{
						/* the server's word is not enough: its size */
						task->checking = true;
						MemoryContextSwitchTo(task->cxt);
						storage_batch_stat(b, task->key, false, task);
					}
					else
					{
						if (task->checking &&
							(!r.info.exists || (r.info.size >= 0 && r.info.size != task->tile.byte_size)))
							ereport(ERROR,
									(errcode(ERRCODE_IO_ERROR),
									 errmsg("upload of %s to target \"%s\" did not land whole",
											task->key, target->env),
									 errdetail("%lld bytes were sent; the server has %s.",
											   (long long) task->tile.byte_size,
											   r.info.exists ? psprintf("%lld", (long long) r.info.size) : "none")));
						manifest_append(m, &task->tile);
						n++;
						level_bytes += task->tile.byte_size;
						task->busy = false;
						MemoryContextReset(task->cxt);
					}
					MemoryContextSwitchTo(runcxt);
				}
				if (TimestampDifferenceExceeds(last_progress, GetCurrentTimestamp(),
											   TILE_PROGRESS_INTERVAL_MS))
				{
					job_progress(job, band(cut_progress, progress_to - 1, (double) n / expected));
					MemoryContextSwitchTo(runcxt);
					last_progress = GetCurrentTimestamp();
				}
			}
			res->bytes += level_bytes;
			zoom_done(job, res, z, cols, rows, level_bytes,
					  band(cut_progress, progress_to - 1, (double) n / expected));
			MemoryContextSwitchTo(runcxt);
			last_progress = GetCurrentTimestamp();
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
	return n;
}

/*
 * Before the upload overwrites an earlier build's tiles in place: a
 * tileset that names them is no longer built (source_path NULL), durably,
 * so that a build that fails or crashes midway leaves no manifest of tiles
 * it changed, and the next publish builds them again.  A tileset whose
 * tiles lie elsewhere is left alone.  In the caller's transaction.
 */
static void
tileset_unbuilt(TileBuildInput *bi, const char *source_path)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(bi->version_id), CStringGetTextDatum(source_path)};

	if (spi_execute_cached(&plan, "UPDATE publish.tilesets SET source_path = NULL"
						   " WHERE version_id = $1::uuid AND source_path = $2",
						   2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "publish: could not mark the tileset as being built");
}

/*
 * The I/O of a build, outside any transaction: fetch the source, cut it,
 * upload the tiles; spools the manifest (m) and fills res.  Progress moves from
 * progress_from to progress_to.
 */
static void
build_tiles_io(PublishJob *job, StorageTarget *target, TileBuildInput *bi,
			   const char *tmpdir, int progress_from, int progress_to,
			   TileBuildResult *res, BuiltManifest *m)
{
	TimestampTz start = GetCurrentTimestamp();
	char	   *what = psprintf("\"%s\" (asset %s)", bi->source_key, bi->asset_key);
	char	   *source;
	char	   *pyramid = psprintf("%s/pyramid", tmpdir);
	TileSourceInfo info;
	TilePlan	plan;
	int64		expected;
	int64		n = 0;
	int			fd;
	int			cut_progress = band(progress_from, progress_to, 0.3);

	/* the source image: in place on a local target, else downloaded */
	pgstat_report_activity(STATE_RUNNING, "publish: reading the source image");
	if (target->root != NULL)
	{
		struct stat st;

		source = psprintf("%s/%s", target->root, bi->source_key);
		if (stat(source, &st) != 0 || !S_ISREG(st.st_mode))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("the source image %s is not on target \"%s\"", what, target->env),
					 errdetail("There is no file at \"%s\".", source)));
		res->source_bytes = st.st_size;
	}
	else
	{
		/*
		 * At most 8 bytes a pixel of publish.max_source_pixels (16-bit RGBA,
		 * uncompressed): no image within the limit is larger, and a bigger
		 * file does not fill the disk first.
		 */
		source = psprintf("%s/source", tmpdir);
		res->source_bytes = storage_get_file(target, bi->source_key, source,
											 (int64) publish_max_source_pixels * 1000000 * 8);
	}

	tile_vips_probe(source, what, &info);
	res->width = info.width;
	res->height = info.height;
	/* the zooms, sizes and tile count, bounded, or an error before the cut */
	tile_plan_make(info.width, info.height, bi->tile_size, bi->min_zoom, bi->max_zoom,
				   psprintf("version %d of project \"%s\"", bi->version_number, bi->slug),
				   &plan);
	bi->min_zoom = plan.min_zoom;
	bi->max_zoom = plan.max_zoom;
	expected = plan.tiles;
	res->min_zoom = bi->min_zoom;
	res->max_zoom = bi->max_zoom;
	res->source_path = psprintf("%s/%s/builds/v%d/tiles", bi->env, bi->slug, bi->version_number);

	job_txn_begin("publish: cutting tiles");
	job_log(job, JOB_LOG_INFO,
			psprintf("Source image %s: %d x %d pixels, %lld bytes; cutting zooms %d-%d into %lld %s tiles of %d px",
					 what, info.width, info.height, (long long) res->source_bytes,
					 bi->min_zoom, bi->max_zoom, (long long) expected, bi->format, bi->tile_size));
	job_txn_commit(false);
	job_checkpoint(job);

	/* the cut: libvips in a thread of its own, stopped by a cancel or SIGTERM */
	pgstat_report_activity(STATE_RUNNING, "publish: cutting tiles");
	tile_vips_cut(source, what, pyramid, bi->format, &plan, job_deadline(job));
	res->cut_ms = ms_since(start);
	CHECK_FOR_INTERRUPTS();
	job_txn_begin("publish: tiles cut");
	job_step_done(job, cut_progress,
				  psprintf("Cut %lld tiles in %.1f s", (long long) expected, res->cut_ms / 1000.0));
	tileset_unbuilt(bi, res->source_path);
	job_txn_commit(true);

	/* upload, level by level; the manifest is spooled to a file */
	m->path = psprintf("%s/manifest", tmpdir);
	fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | PG_BINARY, pg_file_create_mode);
	m->file = fd < 0 ? NULL : fdopen(fd, "w+b");
	if (m->file == NULL)
	{
		if (fd >= 0)
			close(fd);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create the tile manifest file \"%s\": %m", m->path)));
	}
	pgstat_report_activity(STATE_RUNNING, "publish: uploading built tiles");

	if (storage_batch_supported(target) && target->backend->put_request != NULL)
		n = upload_in_parallel(job, target, bi, &plan, pyramid, what, cut_progress,
							   progress_to, expected, res, m);
	else
		n = upload_one_by_one(job, target, bi, &plan, pyramid, what, cut_progress,
							  progress_to, expected, res, m);
	storage_sync(target);
	res->tiles = n;
}

/* Does the version still exist (in the caller's transaction)? */
static bool
version_exists(const char *version_id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(version_id)};

	if (SPI_execute_with_args("SELECT 1 FROM publish.project_versions WHERE id = $1::uuid",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "publish: could not look for the version");
	return SPI_processed > 0;
}

/*
 * Writes the manifest and the tileset of a build, in the caller's
 * transaction: the tileset is created with the defaults when missing, and
 * PT409 if its format or tile size is no longer the build's; its
 * tiles are replaced by the built ones, read back from the manifest file
 * and inserted MANIFEST_INSERT_BATCH rows a statement.
 */
static void
write_manifest(TileBuildInput *bi, TileBuildResult *res, BuiltManifest *m)
{
	Oid			types[7] = {TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[7];
	Oid			mtypes[7] = {TEXTOID, INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		mvalues[7];
	char	   *tileset_id;
	TileEntry  *batch;
	Datum	   *cols[6];
	MemoryContext batchcxt;

	values[0] = CStringGetTextDatum(bi->version_id);
	values[1] = CStringGetTextDatum(bi->format);
	values[2] = Int32GetDatum(bi->tile_size);
	values[3] = Int32GetDatum(res->min_zoom);
	values[4] = Int32GetDatum(res->max_zoom);
	values[5] = CStringGetTextDatum(res->source_path);
	values[6] = CStringGetTextDatum(bi->env);
	if (spi_execute_cached(&tileset_plan, "INSERT INTO publish.tilesets AS t"
						   "       (version_id, format, tile_size, min_zoom, max_zoom, source_path, built_at, built_env)"
						   " SELECT v.id, $2, $3, $4, $5, $6, clock_timestamp(), $7"
						   "   FROM publish.project_versions v WHERE v.id = $1::uuid"
						   " ON CONFLICT (version_id) DO UPDATE"
						   "    SET min_zoom = excluded.min_zoom, max_zoom = excluded.max_zoom,"
						   "        source_path = excluded.source_path, built_at = excluded.built_at,"
						   "        built_env = excluded.built_env"
						   "  WHERE t.format = excluded.format AND t.tile_size = excluded.tile_size"
						   " RETURNING t.id",
						   7, types, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "publish: could not record the tileset");
	if (SPI_processed == 0)
	{
		if (!version_exists(bi->version_id))
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_NOT_FOUND),
					 errmsg("the version was deleted while its tiles were built")));
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_CONFLICT),
				 errmsg("the tileset of version %d of project \"%s\" changed while its tiles were built: they are not %s tiles of %d px",
						bi->version_number, bi->slug, bi->format, bi->tile_size),
				 errhint("Run publish.build_tiles() again.")));
	}
	tileset_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	mvalues[0] = CStringGetTextDatum(tileset_id);
	if (spi_execute_cached(&delete_tiles_plan, "DELETE FROM publish.tiles WHERE tileset_id = $1::uuid",
						   1, mtypes, mvalues, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "publish: could not replace the tile manifest");
	if (fflush(m->file) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the tile manifest file \"%s\": %m", m->path)));
	if (fseeko(m->file, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read the tile manifest file \"%s\": %m", m->path)));
	batch = palloc(sizeof(TileEntry) * MANIFEST_INSERT_BATCH);
	for (int c = 0; c < 6; c++)
		cols[c] = palloc(sizeof(Datum) * MANIFEST_INSERT_BATCH);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "publish tile manifest batch",
									 ALLOCSET_DEFAULT_SIZES);
	for (int64 done = 0; done < res->tiles;)
	{
		int			k = (int) Min(res->tiles - done, MANIFEST_INSERT_BATCH);
		MemoryContext old;

		if (fread(batch, sizeof(TileEntry), k, m->file) != (size_t) k)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the tile manifest file \"%s\": %m", m->path)));
		old = MemoryContextSwitchTo(batchcxt);
		for (int i = 0; i < k; i++)
		{
			cols[0][i] = Int32GetDatum(batch[i].z);
			cols[1][i] = Int32GetDatum(batch[i].x);
			cols[2][i] = Int32GetDatum(batch[i].y);
			cols[3][i] = Int64GetDatum(batch[i].byte_size);
			cols[4][i] = CStringGetTextDatum(batch[i].sha256);
			cols[5][i] = CStringGetTextDatum(batch[i].md5);
		}
		mvalues[1] = PointerGetDatum(construct_array(cols[0], k, INT4OID, 4, true, TYPALIGN_INT));
		mvalues[2] = PointerGetDatum(construct_array(cols[1], k, INT4OID, 4, true, TYPALIGN_INT));
		mvalues[3] = PointerGetDatum(construct_array(cols[2], k, INT4OID, 4, true, TYPALIGN_INT));
		mvalues[4] = PointerGetDatum(construct_array(cols[3], k, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		mvalues[5] = PointerGetDatum(construct_array(cols[4], k, TEXTOID, -1, false, TYPALIGN_INT));
		mvalues[6] = PointerGetDatum(construct_array(cols[5], k, TEXTOID, -1, false, TYPALIGN_INT));
		MemoryContextSwitchTo(old);
		if (spi_execute_cached(&insert_tiles_plan, "INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256, md5)"
							   " SELECT $1::uuid, m.z, m.x, m.y, m.byte_size, m.sha256, m.md5"
							   "   FROM unnest($2, $3, $4, $5, $6, $7) AS m (z, x, y, byte_size, sha256, md5)",
							   7, mtypes, mvalues, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "publish: could not write the tile manifest");
		MemoryContextReset(batchcxt);
		done += k;
	}
	MemoryContextDelete(batchcxt);
}

/* The job's result of a build, as JSON text. */
static char *
result_json(TileBuildInput *bi, TileBuildResult *res)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"tile_count\": %lld, \"tiles_per_zoom\": {", (long long) res->tiles);
	for (int z = res->min_zoom; z <= res->max_zoom; z++)
		appendStringInfo(&buf, "%s\"%d\": %lld", z > res->min_zoom ? ", " : "", z,
						 (long long) res->per_zoom[z]);
	appendStringInfo(&buf, "}, \"bytes\": %lld, \"duration_ms\": %ld, \"cut_ms\": %ld,"
					 " \"min_zoom\": %d, \"max_zoom\": %d, \"format\": ",
					 (long long) res->bytes, res->total_ms, res->cut_ms, res->min_zoom, res->max_zoom);
	escape_json(&buf, bi->format);
	appendStringInfo(&buf, ", \"tile_size\": %d, \"source_width\": %d, \"source_height\": %d,"
					 " \"source_bytes\": %lld, \"source\": ",
					 bi->tile_size, res->width, res->height, (long long) res->source_bytes);
	escape_json(&buf, bi->source_key);
	appendStringInfoString(&buf, ", \"source_path\": ");
	escape_json(&buf, res->source_path);
	appendStringInfoString(&buf, ", \"env\": ");
	escape_json(&buf, bi->env);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * A whole build (see tile.h): read what it needs, do the I/O in a
 * temporary directory (removed however it ends, with the manifest file
 * spooled there), then the manifest.
 */
void
tile_build(PublishJob *job, StorageTarget *target_in, int progress_from,
		   int progress_to, JobOutcome *outcome, MemoryContext mcxt)
{
	char	   *volatile message = NULL;
	TimestampTz start = GetCurrentTimestamp();
	StorageTarget *target = target_in;
	TileBuildInput *bi;
	TileBuildResult res;
	BuiltManifest *manifest;
	char	   *tmpdir;

	memset(&res, 0, sizeof(res));
	job_txn_begin("publish: reading the version to build tiles for");
	bi = load_build_input(job->version_id, job->env, mcxt);
	if (target == NULL)
	{
		target = storage_target_load(job->env, mcxt);
		target->warn = job_storage_warning;
		target->warn_arg = job;
	}
	job_txn_commit(false);
	MemoryContextSwitchTo(mcxt);

	/* in memory, not a local: PG_FINALLY reads what the build set */
	manifest = palloc0(sizeof(BuiltManifest));
	tmpdir = make_temp_dir();
	PG_TRY();
	{
		build_tiles_io(job, target, bi, tmpdir, progress_from, progress_to, &res, manifest);
		res.total_ms = ms_since(start);

		/* the outcome outlives the manifest's transaction: made in mcxt first */
		MemoryContextSwitchTo(mcxt);
		message = psprintf("Built %lld tiles (%lld bytes) of zooms %d-%d in %.1f s under %s",
						   (long long) res.tiles, (long long) res.bytes,
						   res.min_zoom, res.max_zoom, res.total_ms / 1000.0, res.source_path);
		if (outcome != NULL)
		{
			/* the job's end is recorded by the worker (job_record_completed) */
			outcome->result = result_json(bi, &res);
			outcome->message = message;
		}
		job_txn_begin("publish: writing the tile manifest");
		write_manifest(bi, &res, manifest);
		if (outcome == NULL)
			job_step_done(job, progress_to, message);
		job_txn_commit(true);
	}
	PG_FINALLY();
	{
		if (manifest->file != NULL)
			fclose(manifest->file);
		manifest->file = NULL;
		remove_temp_dir();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mcxt);
}
