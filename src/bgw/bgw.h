/*-------------------------------------------------------------------------
 *
 * bgw.h
 *	  The background workers: the launcher (launcher.c) starts workers for
 *	  each database; a worker (worker.c) sleeps on its latch, claims one
 *	  job at a time and runs it through its job type; the sweep gate
 *	  (worker_sweep.c) lets an idle worker skip sweeps that can find
 *	  nothing; the utility hook (utility_hook.c) steps workers aside for
 *	  DROP DATABASE and friends and wakes them after DROP EXTENSION.
 *
 * Contract: the top of the call order, beside the SQL functions: this
 * folder calls the job types (jobs/), the queue and ipc/; nothing calls
 * it but _PG_init and the postmaster.  A worker holds no transaction while
 * it sleeps or while a job does I/O, and each job's end is recorded in a
 * durable transaction of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_BGW_H
#define PUBLISH_BGW_H

#include "queue/queue.h"

/* launcher.c, worker.c: entry points of the background workers */
extern void publish_register_launcher(void);
PGDLLEXPORT void publish_launcher_main(Datum main_arg);
PGDLLEXPORT void publish_worker_main(Datum main_arg);

/* utility_hook.c */
extern void publish_install_utility_hook(void);

/* worker_sweep.c: may a timed sweep be skipped, and how long to sleep */
extern bool worker_sweep_gate(Oid dboid);
extern void worker_sweep_record(const SweepFindings *found);
extern void worker_sweep_forget(void);
extern long worker_sweep_timeout(Oid dboid);

#endif							/* PUBLISH_BGW_H */
