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
#include "publish.h"

#include <limits.h>

#include "utils/guc.h"

int			publish_sweep_interval = 30;
int			publish_max_attempts = 3;
int			publish_launcher_restart_delay = 5;
int			publish_max_release_size = 16 * 1024;	/* kB */
int			publish_max_tiles = 1000000;

/*
 * Defines the GUCs; called once from _PG_init.
 */
void
publish_define_gucs(void)
{
	DefineCustomIntVariable("publish.sweep_interval",
							"Seconds between safety sweeps of the job queue.",
							"Workers are woken at commit of each publish; the sweep only "
							"picks up what a wake-up could not reach (for example jobs "
							"committed with COMMIT PREPARED).",
							&publish_sweep_interval,
							30, 1, 3600,
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

	/*
	 * Resource limits, checked by publish._check_release_limits() (SQL, it
	 * reads them with current_setting) before a release is loaded.
	 */
	DefineCustomIntVariable("publish.max_release_size",
							"Largest release.json a version may produce.",
							"A version whose overlays and assets would make a larger "
							"release.json is refused (SQLSTATE PT413) before it is loaded; "
							"the worker needs several times this much memory to validate "
							"and build a release.",
							&publish_max_release_size,
							16 * 1024, 64, MAX_KILOBYTES,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("publish.max_tiles",
							"Most tiles a version's tileset may have.",
							"A version with more tiles in its manifest is refused (SQLSTATE "
							"PT413); the worker holds the manifest in memory, about 100 "
							"bytes per tile.",
							&publish_max_tiles,
							1000000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("publish");
}
