/*-------------------------------------------------------------------------
 *
 * ipc.h
 *	  What the processes of the extension share: the launcher's and each
 *	  database's slot in shared memory (shmem.c), and the wake-ups a
 *	  transaction asks for, sent when it commits (wakeup.c).
 *
 * Contract: a leaf.  The queue, the worker loop, the utility hook and the
 * SQL functions call it; it calls nothing of the extension's.  Functions
 * here take the module's one LWLock briefly and never while holding
 * another lock of ours; latches are set and signals sent after it is
 * released.  The *_at_commit functions only note what to do: a
 * transaction callback does it at commit, after the commit is visible,
 * and forgets it at abort.  Callers of the SQL side check
 * publish_shmem_ready() first (the library may not be preloaded).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_IPC_H
#define PUBLISH_IPC_H

#include "storage/condition_variable.h"

/* shmem.c: set-up (the module's shared memory hooks) */
extern void publish_shmem_request(void);
extern void publish_shmem_startup(void);
extern bool publish_shmem_ready(void);

/* shmem.c: the launcher */
extern void publish_shmem_set_launcher(void);
extern void publish_shmem_clear_launcher(void);
extern void publish_shmem_wake_launcher(void);
extern bool publish_shmem_take_worker_failed(Oid dboid, int number);
extern bool publish_shmem_worker_wanted(Oid dboid, int number);
extern void publish_shmem_forget_databases(Oid *alive, int nalive);

/* shmem.c: a database's workers */
extern bool publish_shmem_attach_worker(Oid dboid, int number);
extern void publish_shmem_detach_worker(Oid dboid, int number,
										bool no_extension, uint64 seen_wakes,
										bool failed);
extern void publish_shmem_found_extension(Oid dboid);
extern uint64 publish_shmem_worker_exits(void);
extern void publish_shmem_wake_database(Oid dboid, bool all);
extern uint64 publish_shmem_wake_count(Oid dboid);
extern uint64 publish_shmem_look(Oid dboid, int number);
extern void publish_shmem_set_sleeping(bool sleeping);
extern void publish_shmem_pause_database(Oid dboid);
extern void publish_shmem_resume_database(Oid dboid);

/* shmem.c: which worker runs which job, cancels, job ends */
extern void publish_shmem_set_running_job(const char *job_id);
extern bool publish_shmem_job_has_worker(Oid dboid, const char *job_id);
extern int	publish_shmem_aim_cancel(Oid dboid, const char *job_id);
extern bool publish_shmem_cancel_is_stale(void);
extern ConditionVariable *publish_shmem_job_ended_cv(Oid dboid);
extern void publish_shmem_broadcast_job_ended(Oid dboid);

/* wakeup.c: sent when the current transaction commits */
extern void publish_wake_at_commit(void);
extern void publish_wake_all_at_commit(void);
extern void publish_job_ended_at_commit(void);
extern void publish_cancel_worker_at_commit(const char *job_id);
extern void publish_wake_launcher_at_commit(void);

#endif							/* PUBLISH_IPC_H */
