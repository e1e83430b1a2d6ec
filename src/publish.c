/*-------------------------------------------------------------------------
 *
 * publish.c
 *	  Module load: GUCs, shared memory hooks, the launcher, the utility hook.
 *
 * publish must be in shared_preload_libraries: the launcher is a static
 * background worker and the wake-up slots live in shared memory.  Loaded any
 * other way the library stays inert, and the SQL functions that need the
 * worker fail with a hint (see sql_functions.c).
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "publish.h"
#include "bgw/bgw.h"
#include "ipc/ipc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
publish_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	publish_shmem_request();
}

static void
publish_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	publish_shmem_startup();
}

void
_PG_init(void)
{
	/* pg_upgrade's binary-upgrade mode must not start workers. */
	if (IsBinaryUpgrade)
		return;

	publish_define_gucs();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = publish_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = publish_shmem_startup_hook;

	publish_install_utility_hook();
	publish_register_launcher();
}
