/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every setting of the publish extension, in one place.
 *
 * The worker settings are PGC_SIGHUP: the launcher and the workers read
 * them, so they are changed in postgresql.conf (or ALTER SYSTEM) and a
 * reload.  The resource limits are PGC_SUSET: a superuser may also set them
 * per database or role (ALTER DATABASE ... SET, which the worker of that
 * database reads too), and no other role can raise them.  The README's
 * settings table lists them with the same defaults.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "publish.h"

int			publish_sweep_interval = 30;
int			publish_sweep_backstop = 3600;
int			publish_max_attempts = 3;
int			publish_launcher_restart_delay = 5;
int			publish_workers_per_database = 2;
int			publish_job_timeout = 3600;
int			publish_job_retention = 30 * 24 * 60;
int			publish_max_job_wait = 300;
int			publish_storage_connect_timeout = 10000;
int			publish_storage_low_speed_limit = 1;
int			publish_storage_low_speed_time = 30;
int			publish_storage_request_timeout = 0;
int			publish_storage_max_attempts = 5;
int			publish_storage_retry_delay = 500;
int			publish_storage_retry_max_delay = 30000;
char	   *publish_storage_ca_file = NULL;
int			publish_storage_concurrency = 8;
int			publish_max_release_size = 16 * 1024;	/* kB */
int			publish_max_tiles = 1000000;
int			publish_tile_window = 2000;
int			publish_max_source_pixels = 256;	/* megapixels */
int			publish_tile_build_threads = 2;
int			publish_keep_releases = 0;
char	   *publish_pause_at = NULL;

/*
 * Defines the GUCs; called once from _PG_init.
 */
void
publish_define_gucs(void)
{
	DefineCustomIntVariable("publish.sweep_interval",
							"Seconds between safety sweeps of the job queue.",
							"Workers are woken at commit of every job queued; while jobs "
							"are queued or running, or transactions prepared, the sweep "
							"recovers jobs whose worker died. An idle worker sleeps "
							"through sweeps that could find nothing.",
							&publish_sweep_interval,
							30, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.sweep_backstop",
							"Longest time between two full sweeps of a database's job queue.",
							"Every job queued wakes a worker at commit, also a row inserted "
							"by hand; this sweep is the net for rows written with triggers "
							"off (session_replication_role = replica, a restore with "
							"--disable-triggers). The launcher looks for new databases "
							"at the same rhythm.",
							&publish_sweep_backstop,
							3600, 1, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.max_attempts",
							"Attempts a job gets when the worker running it is interrupted.",
							"A job that was running when its worker died (crash, restart, "
							"SIGKILL) is queued again until it has had this many attempts, "
							"then it fails.",
							&publish_max_attempts,
							3, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.launcher_restart_delay",
							"Seconds the launcher waits before restarting a worker that exited with an error.",
							NULL,
							&publish_launcher_restart_delay,
							5, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.workers_per_database",
							"Jobs that run at once in each database (one worker each).",
							"Jobs of the same project and environment still run one at a "
							"time, in the order they were asked for.",
							&publish_workers_per_database,
							2, 1, PUBLISH_MAX_WORKERS_PER_DATABASE,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.job_timeout",
							"Longest a job may run before it is stopped and failed.",
							"0 means no limit.",
							&publish_job_timeout,
							3600, 0, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.max_job_wait",
							"Longest a call of publish.wait_job() waits, whatever timeout it is given.",
							"Like any long statement, a wait holds back VACUUM while it lasts.",
							&publish_max_job_wait,
							300, 1, INT_MAX / 1000,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.job_retention",
							"Age after which the worker deletes finished jobs and their logs.",
							"0 keeps them forever; publish.purge_jobs() deletes on demand.",
							&publish_job_retention,
							30 * 24 * 60, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.keep_releases",
							"Releases a purge keeps after each publish; 0 queues no purge.",
							"With N > 0, every publish that completes queues a purge of its "
							"project and environment (publish.purge_releases) that keeps the "
							"live release and the last N that were live.",
							&publish_keep_releases,
							0, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/* remote storage (http_client.c) */
	DefineCustomIntVariable("publish.storage_connect_timeout",
							"Time allowed to connect to a remote storage server.",
							NULL,
							&publish_storage_connect_timeout,
							10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_low_speed_limit",
							"A storage transfer slower than this many bytes per second "
							"for publish.storage_low_speed_time is abandoned.",
							NULL,
							&publish_storage_low_speed_limit,
							1, 1, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_low_speed_time",
							"How long a storage transfer may stay below publish.storage_low_speed_limit.",
							"A server that accepts a request and then answers nothing "
							"fails the attempt after this long.",
							&publish_storage_low_speed_time,
							30, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_request_timeout",
							"Upper bound on one storage request, 0 for none.",
							NULL,
							&publish_storage_request_timeout,
							0, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_max_attempts",
							"Attempts of a storage request that fails transiently.",
							"Connection failures, timeouts, 5xx, 408 and 429 are retried "
							"with exponential backoff and jitter; other failures are not.",
							&publish_storage_max_attempts,
							5, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_retry_delay",
							"Wait before the first retry of a storage request; doubled at each retry.",
							NULL,
							&publish_storage_retry_delay,
							500, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_retry_max_delay",
							"Longest wait between two attempts of a storage request.",
							NULL,
							&publish_storage_retry_max_delay,
							30000, 0, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.storage_concurrency",
							"Most storage requests a job runs at once while publishing tiles.",
							"Tiles are checked and copied through this many parallel "
							"transfers (and at most as many connections) per job; 1 "
							"publishes them one at a time.",
							&publish_storage_concurrency,
							8, 1, 256,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.tile_window",
							"Tiles of the manifest a job reads and holds at a time while publishing tiles.",
							"Step 4 reads the tile manifest in windows of this many tiles, "
							"each in a short transaction of its own; the memory it holds "
							"is about 130 bytes per tile of one window, whatever the "
							"tileset's size.",
							&publish_tile_window,
							2000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("publish.storage_ca_file",
							   "File of CA certificates that verify https storage servers.",
							   "Empty: the system's CA certificates.",
							   &publish_storage_ca_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	/*
	 * Resource limits, checked by publish._check_release_limits() (SQL, it
	 * reads them with current_setting) before a release is loaded, and by the
	 * worker (release_input.c, release_doc.c) as it reads and writes.
	 */
	DefineCustomIntVariable("publish.max_release_size",
							"Largest release.json a version may produce.",
							"A version whose overlays and assets would make a larger "
							"release.json is refused (SQLSTATE PT413); the worker needs "
							"up to about twice this much memory to build a release of this size.",
							&publish_max_release_size,
							16 * 1024, 64, MAX_KILOBYTES,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.max_tiles",
							"Most tiles a version's tileset may have.",
							"A version with more tiles in its manifest is refused (SQLSTATE "
							"PT413).",
							&publish_max_tiles,
							1000000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.max_source_pixels",
							"Largest source image a tile build accepts, in megapixels.",
							"A source image with more pixels (width times height, read "
							"from its header before any pixel is decoded) is refused "
							"(SQLSTATE PT413).",
							&publish_max_source_pixels,
							256, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.tile_build_threads",
							"Threads libvips may use to cut a tile pyramid.",
							"Each worker building tiles uses up to this many threads.",
							&publish_tile_build_threads,
							2, 1, 64,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("publish.pause_at",
							   "For tests: a point in a job where the workers wait until this setting changes.",
							   "Empty (the default) never waits.  The points are named in src/queue/queue.h.",
							   &publish_pause_at,
							   "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("publish");
}
