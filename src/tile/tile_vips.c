/*-------------------------------------------------------------------------
 *
 * tile_vips.c
 *	  libvips: read the header of a source image, cut its XYZ tile pyramid.
 *
 * libvips is initialised lazily, the first time a worker builds tiles, and
 * never in the postmaster or a backend.  Its memory is bounded: the
 * operation cache is off, its threads are limited by
 * publish.tile_build_threads, the source is read sequentially (top to
 * bottom, a few scanlines at a time, never decoded whole), and a source
 * with more than publish.max_source_pixels pixels is refused from its
 * header, before any pixel is decoded.  Sources are read with fail_on
 * "error": a truncated or damaged source fails the cut (libvips would
 * otherwise fill what it cannot decode and carry on).
 *
 * libvips' threads never run PostgreSQL code: libvips is only entered with
 * every signal blocked (threads libvips starts inherit that mask for good,
 * so no PostgreSQL signal handler runs on them; the one exception,
 * vips_image_set_kill in cut_stop, only sets a flag and starts nothing),
 * and nothing between those calls can ereport.  The header is read in the
 * worker's own thread (quick: no pixel is decoded); errors are collected
 * from vips_error_buffer() into a local buffer, every libvips object is
 * unreffed, the mask is restored, and only then is the error raised.
 *
 * The cut, which takes seconds to minutes, runs in a thread of its own
 * (cut_thread_main), started with every signal blocked, that reports
 * through a CutTask the worker reads after joining it.  Meanwhile the
 * worker's main thread keeps its signals and sleeps on its latch, which
 * the cut thread sets when it is done; when PostgreSQL would act on an
 * interrupt (a cancel, SIGTERM: fast shutdown, pg_terminate_backend, DROP
 * DATABASE), when the job's deadline passes or when the postmaster dies,
 * it kills the images of the pipeline, joins the thread, and only then
 * lets the interrupt take its course; interrupts are held off until the
 * join, and an exit callback joins a cut still running, so the process
 * never exits under libvips.  So a cut stops within a fraction of a second,
 * and everything libvips made is freed by the thread that made it.
 *
 * The pyramid is cut by dzsave, libvips' own pyramid writer, in its
 * "google" layout into a local directory, as tile_plan.c planned it:
 *   - level top is the image at full size (scaled up by a power of two
 *     first when the tileset asks for a max_zoom above the image's own);
 *     each level below halves it, rounding up;
 *   - the image sits at the top-left corner of the level; tiles exist
 *     only where the image is: at zoom z, ceil(W / (tile_size * 2^(top-z)))
 *     columns by ceil(H / (tile_size * 2^(top-z))) rows, and none is
 *     skipped for being blank;
 *   - tiles on the right and bottom edges are padded to the full tile
 *     size: transparent (png, webp) or white (jpg).
 * dzsave writes them as {z}/{y}/{x}.{format} (row first).
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>

#include <vips/vips.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "publish.h"
#include "tile/tile.h"

StaticAssertDecl(TILE_MAX_SIDE == VIPS_MAX_COORD,
				 "TILE_MAX_SIDE must be libvips' VIPS_MAX_COORD");

static bool vips_ready = false;

/* Blocks every asynchronous signal in this thread (and in threads it starts). */
static void
block_signals(sigset_t *saved)
{
	sigset_t	all;

	sigfillset(&all);
	/* faults stay deliverable: blocking them would be undefined */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, saved);
}

static void
restore_signals(const sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* libvips' last error, into buf (no allocation), and cleared. */
static void
take_vips_error(char *buf, size_t len)
{
	const char *text = vips_error_buffer();
	size_t		n;

	strlcpy(buf, text && text[0] ? text : "unknown libvips error", len);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	vips_error_clear();
}

/* Initialises libvips in this process, once (a worker, never the postmaster). */
static void
tile_vips_init(void)
{
	sigset_t	saved;
	int			rc;
	char		err[512];

	if (vips_ready)
	{
		vips_concurrency_set(publish_tile_build_threads);
		return;
	}
	if (!IsBackgroundWorker)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("tiles are built by the publish worker only")));
	block_signals(&saved);
	rc = vips_init("postgres: publish worker");
	if (rc == 0)
	{
		vips_cache_set_max(0);	/* no operation cache: nothing kept between
								 * jobs */
		vips_cache_set_max_mem(0);
		vips_cache_set_max_files(0);
		vips_concurrency_set(publish_tile_build_threads);
		vips_block_untrusted_set(TRUE); /* only the well-fuzzed loaders */
		vips_leak_set(FALSE);
	}
	else
		take_vips_error(err, sizeof(err));
	restore_signals(&saved);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libvips: %s", err)));
	vips_ready = true;
}

/*
 * Reads the header of the image at path ("what" names it in messages):
 * errors unless it is a PNG, JPEG or TIFF image (22023) of at most
 * publish.max_source_pixels (PT413).  No pixel is decoded.
 */
void
tile_vips_probe(const char *path, const char *what, TileSourceInfo *info)
{
	sigset_t	saved;
	const char *loader;
	VipsImage  *image = NULL;
	char		err[512] = "";
	bool		known = false;

	tile_vips_init();
	memset(info, 0, sizeof(TileSourceInfo));

	block_signals(&saved);
	loader = vips_foreign_find_load(path);
	if (loader == NULL)
		take_vips_error(err, sizeof(err));
	else
	{
		strlcpy(info->loader, loader, sizeof(info->loader));
		known = (strncmp(loader, "VipsForeignLoadPng", 18) == 0 ||
				 strncmp(loader, "VipsForeignLoadJpeg", 19) == 0 ||
				 strncmp(loader, "VipsForeignLoadTiff", 19) == 0);
		if (known)
		{
			image = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL,
											 "fail_on", VIPS_FAIL_ON_ERROR, NULL);
			if (image == NULL)
				take_vips_error(err, sizeof(err));
			else
			{
				info->width = vips_image_get_width(image);
				info->height = vips_image_get_height(image);
				g_object_unref(image);
			}
		}
	}
	restore_signals(&saved);

	if (loader == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source image %s is not an image libvips can read", what),
				 errdetail("%s", err),
				 errhint("The base_map asset must be a PNG, JPEG or TIFF image.")));
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source image %s is not a PNG, JPEG or TIFF image", what),
				 errdetail("libvips reads it with %s.", info->loader)));
	if (image == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not read the source image %s", what),
				 errdetail("%s", err)));
	if ((double) info->width * info->height > (double) publish_max_source_pixels * 1000000.0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_TOO_LARGE),
				 errmsg("the source image %s is too large: %d x %d pixels is %.1f megapixels, over publish.max_source_pixels (%d)",
						what, info->width, info->height,
						(double) info->width * info->height / 1000000.0, publish_max_source_pixels),
				 errhint("Use a smaller image, or ask a superuser to raise publish.max_source_pixels.")));
}

/*
 * A cut runs in a thread of its own, so that the worker's main thread
 * stays free to take signals while libvips works (see the file header).
 * The two threads share a CutTask.
 */
#define CUT_POLL_MS		100		/* the longest wait between looks at the flags */
#define CUT_MAX_IMAGES	8		/* the pipeline has at most 5 images */

/* How the main thread's wait for a cut ended. */
typedef enum CutEnd
{
	CUT_FINISHED,				/* the cut ended by itself */
	CUT_INTERRUPTED,			/* an interrupt PostgreSQL would act on */
	CUT_DEADLINE,				/* the caller's deadline passed */
	CUT_POSTMASTER_DEATH		/* the postmaster died */
} CutEnd;

typedef struct CutTask
{
	/* set before the thread starts, read only after */
	const char *path;
	const char *out_dir;
	const char *suffix;
	bool		jpg;
	int			scale_log2;
	int			tile_size;
	int			width;			/* the size the plan expects */
	int			height;
	Latch	   *latch;			/* the worker's, set when the cut is done */

	/* written by the cut thread, read by the main thread after the join */
	int			rc;
	char		err[1024];		/* libvips' error text when rc != 0 */

	/* shared, under lock */
	pthread_mutex_t lock;
	bool		stop;			/* the main thread stopped the cut */
	bool		done;			/* the cut thread has finished its work */
	int			nimages;
	VipsImage  *images[CUT_MAX_IMAGES]; /* the pipeline, while it lives */
} CutTask;

/*
 * In the cut thread: image joins the pipeline that a stop kills (already
 * killed when the stop came first).  Returns image.
 */
static VipsImage *
cut_keep(CutTask *task, VipsImage *image)
{
	pthread_mutex_lock(&task->lock);
	task->images[task->nimages++] = image;
	if (task->stop)
		vips_image_set_kill(image, TRUE);
	pthread_mutex_unlock(&task->lock);
	return image;
}

/*
 * In the main thread: stops the cut.  Every image of the pipeline is
 * killed: libvips checks that flag each time it computes a region of an
 * image, so dzsave fails at its next strip, and images made from now on
 * are killed as they are made (cut_keep).  The lock keeps them alive
 * meanwhile: the cut thread takes them out of the task before it frees them.
 */
static void
cut_stop(CutTask *task)
{
	pthread_mutex_lock(&task->lock);
	task->stop = true;
	for (int i = 0; i < task->nimages; i++)
		vips_image_set_kill(task->images[i], TRUE);
	pthread_mutex_unlock(&task->lock);
}

static bool
cut_done(CutTask *task)
{
	bool		done;

	pthread_mutex_lock(&task->lock);
	done = task->done;
	pthread_mutex_unlock(&task->lock);
	return done;
}

/*
 * The cut thread: the whole libvips pipeline, from reading the source to
 * the last tile.  It runs no PostgreSQL code (no palloc, no ereport, no
 * elog) except SetLatch at the end.  SetLatch is safe from a second thread
 * of the worker: in PostgreSQL 15 (storage/ipc/latch.c) it only sets the
 * latch's is_set flag between memory barriers and, when the owner may be
 * sleeping, wakes it as a signal handler would: a byte written to the
 * self-pipe, or, where latches wait on a signalfd (Linux), kill(MyProcPid,
 * SIGURG), which the main thread's epoll reads from the signalfd since this
 * thread blocks every signal.  Both are async-signal-safe system calls.  A
 * wake-up lost to a race costs the main thread at most CUT_POLL_MS.
 */
static void *
cut_thread_main(void *arg)
{
	CutTask    *task = arg;
	VipsImage  *img;
	VipsImage  *out;
	VipsImage  *images[CUT_MAX_IMAGES];
	int			nimages;
	bool		stopped;
	int			rc = 0;

	vips_error_clear();			/* task->err: this cut's errors only */
	/* fail_on: a truncated or damaged source is an error, not grey tiles */
	img = vips_image_new_from_file(task->path, "access", VIPS_ACCESS_SEQUENTIAL,
								   "fail_on", VIPS_FAIL_ON_ERROR, NULL);
	if (img == NULL)
		rc = -1;
	else
		cut_keep(task, img);
	/* 8-bit sRGB (grey, CMYK, 16-bit and the like converted) */
	if (rc == 0 && (rc = vips_colourspace(img, &out, VIPS_INTERPRETATION_sRGB, NULL)) == 0)
		img = cut_keep(task, out);
	if (rc == 0 && vips_image_get_format(img) != VIPS_FORMAT_UCHAR &&
		(rc = vips_cast_uchar(img, &out, NULL)) == 0)
		img = cut_keep(task, out);
	/* png, webp: with alpha, so the padding is transparent; jpg: none */
	if (rc == 0 && !task->jpg && !vips_image_hasalpha(img) &&
		(rc = vips_bandjoin_const1(img, &out, 255.0, NULL)) == 0)
		img = cut_keep(task, out);
	if (rc == 0 && task->jpg && vips_image_hasalpha(img))
	{
		VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);

		rc = vips_flatten(img, &out, "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (rc == 0)
			img = cut_keep(task, out);
	}
	/* a max_zoom above the image's own: scaled up by 2^scale_log2 */
	if (rc == 0 && task->scale_log2 > 0 &&
		(rc = vips_resize(img, &out, ldexp(1.0, task->scale_log2), NULL)) == 0)
		img = cut_keep(task, out);
	if (rc == 0 && (vips_image_get_width(img) != task->width ||
					vips_image_get_height(img) != task->height))
	{
		vips_error("publish", "the image to cut is %dx%d, %dx%d was expected",
				   vips_image_get_width(img), vips_image_get_height(img),
				   task->width, task->height);
		rc = -1;
	}
	if (rc == 0)
	{
		pthread_mutex_lock(&task->lock);
		stopped = task->stop;
		pthread_mutex_unlock(&task->lock);
		if (stopped)
		{
			vips_error("publish", "the cut was stopped");
			rc = -1;
		}
	}
	if (rc == 0)
	{
		VipsArrayDouble *background = task->jpg
		? vips_array_double_newv(3, 255.0, 255.0, 255.0)
		: vips_array_double_newv(4, 0.0, 0.0, 0.0, 0.0);

		rc = vips_dzsave(img, task->out_dir,
						 "layout", VIPS_FOREIGN_DZ_LAYOUT_GOOGLE,
						 "suffix", task->suffix,
						 "tile_size", task->tile_size,
						 "overlap", 0,
						 "depth", VIPS_FOREIGN_DZ_DEPTH_ONETILE,
						 "skip_blanks", -1,
						 "background", background,
						 NULL);
		vips_area_unref(VIPS_AREA(background));
	}
	task->rc = rc;
	if (rc != 0)
		take_vips_error(task->err, sizeof(task->err));

	/* out of the main thread's reach, then freed, the last made first */
	pthread_mutex_lock(&task->lock);
	nimages = task->nimages;
	memcpy(images, task->images, sizeof(images));
	task->nimages = 0;
	pthread_mutex_unlock(&task->lock);
	for (int i = nimages - 1; i >= 0; i--)
		g_object_unref(images[i]);
	vips_thread_shutdown();		/* this thread's libvips buffers */

	pthread_mutex_lock(&task->lock);
	task->done = true;
	pthread_mutex_unlock(&task->lock);
	SetLatch(task->latch);
	return NULL;
}

/*
 * The main thread's part of a cut: sleeps on the latch (set by the cut
 * thread when it is done, and by PostgreSQL's signal handlers) until the
 * cut is done or must stop: an interrupt CHECK_FOR_INTERRUPTS would act on
 * once the caller's holdoff (held: interrupts the caller holds off) is
 * back, the deadline (0: none), the postmaster's death.  Meanwhile it
 * absorbs procsignal barriers as CHECK_FOR_INTERRUPTS does: DROP DATABASE
 * of any database waits until every process has.
 */
static CutEnd
cut_wait(CutTask *task, TimestampTz deadline, bool held)
{
	for (;;)
	{
		int			rc;

		if (cut_done(task))
			return CUT_FINISHED;
		if (InterruptPending && !held &&
			(ProcDiePending || (QueryCancelPending && QueryCancelHoldoffCount == 0)))
			return CUT_INTERRUPTED;
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
			return CUT_DEADLINE;
		if (ProcSignalBarrierPending && !held)
			ProcessProcSignalBarrier();
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH,
					   CUT_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_POSTMASTER_DEATH)
			return CUT_POSTMASTER_DEATH;
	}
}

/* The cut whose thread runs, for cut_at_exit. */
static CutTask *live_cut = NULL;
static pthread_t live_cut_thread;

/* Joins the cut thread, stopping the cut first (stop). */
static void
cut_join(bool stop)
{
	CutTask    *task = live_cut;

	if (task == NULL)
		return;
	if (stop)
		cut_stop(task);
	(void) pthread_join(live_cut_thread, NULL);
	pthread_mutex_destroy(&task->lock);
	live_cut = NULL;
}

/*
 * before_shmem_exit: a process never exits under a running cut (exit()
 * would tear libvips down while dzsave works).  Interrupts are held while
 * the thread runs, so only a FATAL error raised in that window gets here.
 */
static void
cut_at_exit(int code, Datum arg)
{
	cut_join(true);
}

/*
 * Cuts the pyramid of the image at path into out_dir (which must not
 * exist yet) as {z}/{y}/{x}.{format}, levels 0 to plan->top_zoom, with
 * dzsave.  The caller probed the image first.  The cut stops within a
 * fraction of a second when the process is told to (a cancel, SIGTERM;
 * acted on here, once libvips has stopped, as CHECK_FOR_INTERRUPTS does),
 * when deadline passes (0: none; an error) or when the postmaster dies (the
 * process exits).  out_dir then holds part of the pyramid: the caller
 * removes it.
 */
void
tile_vips_cut(const char *path, const char *what, const char *out_dir,
			  const char *format, const TilePlan *plan, TimestampTz deadline)
{
	static bool exit_callback = false;
	CutTask    *task;
	sigset_t	saved;
	CutEnd		end = CUT_FINISHED;
	bool		held = InterruptHoldoffCount != 0 || CritSectionCount != 0;
	int			err;
	const bool	jpg = strcmp(format, "jpg") == 0;
	const char *suffix;

	if (strcmp(format, "png") == 0)
		suffix = ".png[compression=3,strip]";
	else if (strcmp(format, "webp") == 0)
		suffix = ".webp[Q=80,strip]";
	else if (jpg)
		suffix = ".jpg[Q=85,strip]";
	else
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("tiles of format \"%s\" cannot be built", format),
				 errhint("Set the tileset's format to png, webp or jpg.")));

	tile_vips_init();
	if (!exit_callback)
	{
		before_shmem_exit(cut_at_exit, (Datum) 0);
		exit_callback = true;
	}
	task = palloc0(sizeof(CutTask));
	task->path = path;
	task->out_dir = out_dir;
	task->suffix = suffix;
	task->jpg = jpg;
	task->scale_log2 = plan->scale_log2;
	task->tile_size = plan->tile_size;
	task->width = plan->width;
	task->height = plan->height;
	task->latch = MyLatch;
	pthread_mutex_init(&task->lock, NULL);

	/*
	 * Until the join, nothing may act on an interrupt: an ereport of any
	 * level does CHECK_FOR_INTERRUPTS, which would leave the thread running.
	 * An error (an ERROR resets the holdoff) joins it before going on.
	 */
	HOLD_INTERRUPTS();
	/* the thread inherits the mask, and libvips' threads inherit it from it */
	block_signals(&saved);
	err = pthread_create(&live_cut_thread, NULL, cut_thread_main, task);
	restore_signals(&saved);
	if (err != 0)
	{
		RESUME_INTERRUPTS();
		pthread_mutex_destroy(&task->lock);
		errno = err;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a thread to cut the tiles of the source image %s: %m", what)));
	}
	live_cut = task;
	PG_TRY();
	{
		end = cut_wait(task, deadline, held);
	}
	PG_CATCH();
	{
		cut_join(true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cut_join(end != CUT_FINISHED);
	RESUME_INTERRUPTS();

	/* libvips has stopped and freed what it made: act on why */
	if (end == CUT_POSTMASTER_DEATH)
		proc_exit(1);			/* as WL_EXIT_ON_PM_DEATH would */
	if (end == CUT_INTERRUPTED)
	{
		CHECK_FOR_INTERRUPTS();
		/* not reached: cut_wait saw an interrupt this acts on */
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("cutting the tiles of the source image %s was interrupted", what)));
	}
	if (end == CUT_DEADLINE)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("cutting the tiles of the source image %s was stopped at its deadline", what)));
	if (task->rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("could not cut the tiles of the source image %s", what),
				 errdetail("libvips: %s", task->err)));
	pfree(task);
}
