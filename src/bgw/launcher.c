/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one static background worker that starts one publish
 *	  worker per database.
 *
 * The launcher connects to no database; it reads the shared catalog
 * pg_database and starts publish.workers_per_database dynamic workers for
 * every database that accepts connections and is not a template (worker 0
 * first; the others once it has found the extension there).  A worker that finds no extension in
 * its database says so in its slot and exits; the launcher leaves that
 * database alone until a wake-up for it arrives (CREATE EXTENSION and
 * publish_version both send one at commit).  New databases are noticed at
 * the next wake-up (CREATE DATABASE and ALTER DATABASE send one at
 * commit).  A worker that exits with an error is started again after
 * publish.launcher_restart_delay.
 *
 * The launcher sleeps on its latch; it is woken by wake-ups, by its workers
 * starting and stopping (bgw_notify_pid), by SIGHUP, and, as a backstop,
 * every publish.sweep_backstop.  Registered with
 * BgWorkerStart_RecoveryFinished, it does not run on a standby and starts
 * after promotion.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "publish.h"
#include "bgw/bgw.h"
#include "ipc/ipc.h"

typedef struct LauncherDb
{
	Oid			dboid;			/* hash key */
	/* by worker number: NULL when none was started by us */
	BackgroundWorkerHandle *handles[PUBLISH_MAX_WORKERS_PER_DATABASE];
	TimestampTz not_before[PUBLISH_MAX_WORKERS_PER_DATABASE];	/* restart delay */
	bool		seen;			/* found in the last scan */
} LauncherDb;

static HTAB *launcher_dbs = NULL;

void
publish_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "publish", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "publish_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "publish launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "publish launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
launcher_exit_callback(int code, Datum arg)
{
	publish_shmem_clear_launcher();
}

/* Starts worker `number` of one database; false when no worker slot was free. */
static bool
start_worker(LauncherDb *db, int number, const char *dbname)
{
	BackgroundWorker worker;
	MemoryContext oldcxt;
	bool		started;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "publish", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "publish_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "publish worker %d for database %s", number, dbname);
	strlcpy(worker.bgw_type, "publish worker", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(db->dboid);
	memcpy(worker.bgw_extra, &number, sizeof(number));
	worker.bgw_notify_pid = MyProcPid;

	/* the handle outlives the scan's transaction */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &db->handles[number]);
	MemoryContextSwitchTo(oldcxt);
	if (!started)
		db->handles[number] = NULL;
	return started;
}

/*
 * Notices workers that have stopped and schedules their restart.  A worker
 * that stopped because its database has no extension is not restarted: its
 * slot says so, and publish_shmem_database_wanted() answers false.
 */
static void
reap_workers(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	LauncherDb *db;

	hash_seq_init(&status, launcher_dbs);
	while ((db = hash_seq_search(&status)) != NULL)
	{
		for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
		{
			pid_t		pid;

			if (db->handles[i] == NULL ||
				GetBackgroundWorkerPid(db->handles[i], &pid) != BGWH_STOPPED)
				continue;
			pfree(db->handles[i]);
			db->handles[i] = NULL;
			if (publish_shmem_take_worker_failed(db->dboid, i))
				db->not_before[i] = TimestampTzPlusMilliseconds(now,
																publish_launcher_restart_delay * 1000);
		}
	}
}

/*
 * Reads pg_database and starts the workers that should run.  Returns the
 * milliseconds until a delayed start is due, or -1 when none is.
 */
static long
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	TimestampTz now = GetCurrentTimestamp();
	long		next_ms = -1;
	bool		warned_full = false;
	Oid		   *alive;
	int			nalive = 0;
	int			maxalive = 64;
	HASH_SEQ_STATUS status;
	LauncherDb *db;

	reap_workers(now);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "scanning databases");

	alive = palloc(maxalive * sizeof(Oid));
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		if (!form->datallowconn || form->datistemplate || database_is_invalid_form(form))
			continue;

		if (nalive == maxalive)
		{
			maxalive *= 2;
			alive = repalloc(alive, maxalive * sizeof(Oid));
		}
		alive[nalive++] = form->oid;

		db = hash_search(launcher_dbs, &form->oid, HASH_ENTER, &found);
		if (!found)
		{
			memset(db->handles, 0, sizeof(db->handles));
			memset(db->not_before, 0, sizeof(db->not_before));
		}
		db->seen = true;

		/*
		 * Worker 0 first: it finds out whether the database has the
		 * extension; the others follow once it has (worker_wanted).
		 */
		for (int i = 0; i < publish_workers_per_database; i++)
		{
			if (db->handles[i] != NULL || !publish_shmem_worker_wanted(form->oid, i))
				continue;
			if (db->not_before[i] > now)
			{
				long		ms = TimestampDifferenceMilliseconds(now, db->not_before[i]);

				if (next_ms < 0 || ms < next_ms)
					next_ms = ms;
				continue;
			}
			if (!start_worker(db, i, NameStr(form->datname)))
			{
				if (!warned_full)
					ereport(WARNING,
							(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
							 errmsg("publish launcher could not start a worker for database \"%s\"",
									NameStr(form->datname)),
							 errdetail("All background worker slots are in use."),
							 errhint("Raise max_worker_processes: publish needs one for its launcher and publish.workers_per_database per database using the extension.")));
				warned_full = true;
				db->not_before[i] = TimestampTzPlusMilliseconds(now, publish_launcher_restart_delay * 1000);
			}
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	publish_shmem_forget_databases(alive, nalive);
	pfree(alive);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* Forget databases that are gone (their workers have stopped). */
	hash_seq_init(&status, launcher_dbs);
	while ((db = hash_seq_search(&status)) != NULL)
	{
		bool		running = false;

		for (int i = 0; i < PUBLISH_MAX_WORKERS_PER_DATABASE; i++)
			running |= (db->handles[i] != NULL);
		if (!db->seen && !running)
			hash_search(launcher_dbs, &db->dboid, HASH_REMOVE, NULL);
		else
			db->seen = false;
	}
	return next_ms;
}

void
publish_launcher_main(Datum main_arg)
{
	HASHCTL		ctl;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDb);
	launcher_dbs = hash_create("publish launcher databases", 16, &ctl,
							   HASH_ELEM | HASH_BLOBS);

	publish_shmem_set_launcher();
	before_shmem_exit(launcher_exit_callback, (Datum) 0);

	ereport(LOG, (errmsg("publish launcher started")));

	for (;;)
	{
		long		timeout_ms;
		long		delayed_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		delayed_ms = scan_databases();

		/*
		 * Everything that changes what the launcher should run wakes it: a
		 * wake-up for a database without workers, CREATE EXTENSION, CREATE
		 * and ALTER DATABASE (utility_hook.c), its workers starting and
		 * stopping, SIGHUP.  The timer is only a backstop, at the rhythm of
		 * the workers' backstop sweeps (worker_sweep.c).
		 */
		timeout_ms = publish_sweep_backstop * 1000L;
		if (delayed_ms >= 0 && delayed_ms < timeout_ms)
			timeout_ms = Max(delayed_ms, 10);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
