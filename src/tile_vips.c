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
 * libvips' threads never run PostgreSQL code: each call into libvips
 * blocks every signal first (its threads, created inside those calls,
 * inherit that mask for good, so no PostgreSQL signal handler runs on
 * them) and no callback is registered.  Between the libvips calls of one
 * function nothing can ereport: errors are collected from
 * vips_error_buffer() into a local buffer, every libvips object is
 * unreffed, the mask is restored, and only then is the error raised, in
 * this thread.  Signals that came in meanwhile (SIGTERM, a cancel) are
 * delivered when the mask is restored and handled at the next
 * CHECK_FOR_INTERRUPTS.
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
#include "publish.h"
#include "tile.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>

#include <vips/vips.h>

#include "miscadmin.h"

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
		vips_cache_set_max(0);	/* no operation cache: nothing kept between jobs */
		vips_cache_set_max_mem(0);
		vips_cache_set_max_files(0);
		vips_concurrency_set(publish_tile_build_threads);
		vips_block_untrusted_set(TRUE);	/* only the well-fuzzed loaders */
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
 * Cuts the pyramid of the image at path into out_dir (which must not
 * exist yet) as {z}/{y}/{x}.{format}, levels 0 to plan->top_zoom, with
 * dzsave.  The caller probed the image first.  Blocks every signal while
 * libvips works.
 */
void
tile_vips_cut(const char *path, const char *what, const char *out_dir,
			  const char *format, const TilePlan *plan)
{
	sigset_t	saved;
	VipsImage  *base;
	VipsImage  *t[4] = {NULL, NULL, NULL, NULL};
	VipsImage  *img;
	VipsArrayDouble *background = NULL;
	const bool	jpg = strcmp(format, "jpg") == 0;
	const char *suffix;
	char		err[1024] = "";
	int			rc = 0;
	const int	scale_log2 = plan->scale_log2;
	const int	tile_size = plan->tile_size;

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
	block_signals(&saved);

	/* from here to restore_signals: no palloc, no ereport */
	/* fail_on: a truncated or damaged source is an error, not grey tiles */
	base = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL,
									"fail_on", VIPS_FAIL_ON_ERROR, NULL);
	img = base;
	if (img == NULL)
		rc = -1;
	/* 8-bit sRGB (grey, CMYK, 16-bit and the like converted) */
	if (rc == 0 && (rc = vips_colourspace(img, &t[0], VIPS_INTERPRETATION_sRGB, NULL)) == 0)
		img = t[0];
	if (rc == 0 && vips_image_get_format(img) != VIPS_FORMAT_UCHAR &&
		(rc = vips_cast_uchar(img, &t[1], NULL)) == 0)
		img = t[1];
	/* png, webp: with alpha, so the padding is transparent; jpg: none */
	if (rc == 0 && !jpg && !vips_image_hasalpha(img) &&
		(rc = vips_bandjoin_const1(img, &t[2], 255.0, NULL)) == 0)
		img = t[2];
	if (rc == 0 && jpg && vips_image_hasalpha(img))
	{
		VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);

		rc = vips_flatten(img, &t[2], "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (rc == 0)
			img = t[2];
	}
	/* a max_zoom above the image's own: scaled up by 2^scale_log2 */
	if (rc == 0 && scale_log2 > 0 &&
		(rc = vips_resize(img, &t[3], ldexp(1.0, scale_log2), NULL)) == 0)
		img = t[3];
	if (rc == 0 && (vips_image_get_width(img) != plan->width ||
					vips_image_get_height(img) != plan->height))
	{
		vips_error("publish", "the image to cut is %dx%d, %dx%d was expected",
				   vips_image_get_width(img), vips_image_get_height(img),
				   plan->width, plan->height);
		rc = -1;
	}
	if (rc == 0)
	{
		background = jpg ? vips_array_double_newv(3, 255.0, 255.0, 255.0)
			: vips_array_double_newv(4, 0.0, 0.0, 0.0, 0.0);
		rc = vips_dzsave(img, out_dir,
						 "layout", VIPS_FOREIGN_DZ_LAYOUT_GOOGLE,
						 "suffix", suffix,
						 "tile_size", tile_size,
						 "overlap", 0,
						 "depth", VIPS_FOREIGN_DZ_DEPTH_ONETILE,
						 "skip_blanks", -1,
						 "background", background,
						 NULL);
		vips_area_unref(VIPS_AREA(background));
	}
	if (rc != 0)
		take_vips_error(err, sizeof(err));
	for (int i = lengthof(t) - 1; i >= 0; i--)
	{
		if (t[i] != NULL)
			g_object_unref(t[i]);
	}
	if (base != NULL)
		g_object_unref(base);
	restore_signals(&saved);

	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("could not cut the tiles of the source image %s", what),
				 errdetail("libvips: %s", err)));
}
