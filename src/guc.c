/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every setting of the publish extension, in one place.
 *
 * All are PGC_SIGHUP: the launcher and the workers read them, so they are
 * changed in postgresql.conf (or ALTER SYSTEM) and a reload.  The README's
 * settings table lists them with the same defaults.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include "utils/guc.h"

int			publish_sweep_interval = 30;
int			publish_max_attempts = 3;
int			publish_launcher_restart_delay = 5;

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

	MarkGUCPrefixReserved("publish");
}
