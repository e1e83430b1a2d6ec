/*-------------------------------------------------------------------------
 *
 * storage_sql.c
 *	  publish._storage_put: the storage code called from SQL, for
 *	  superusers (the benchmark under bench/, and the tests, which use it
 *	  to place tiles on a remote target).
 *
 * Unlike the worker, this runs inside the caller's transaction, which thus
 * stays open across the network I/O: it is a tool, not a publishing path.
 * Retry notices become NOTICEs; the target's secret never appears in them.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "publish.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(publish_storage_put);

static void
notice_retry(void *arg, const char *message)
{
	ereport(NOTICE, (errmsg("%s", message)));
}

/*
 * publish._storage_put(env text, key text, data bytea,
 *                      content_type text, cache_control text) → void
 * Writes data at key on env's storage target, as the worker would.
 */
Datum
publish_storage_put(PG_FUNCTION_ARGS)
{
	char	   *env;
	char	   *key;
	bytea	   *data;
	StorageTarget *target;
	MemoryContext mcxt = CurrentMemoryContext;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may call publish._storage_put")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("env, key and data must not be null")));
	env = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	data = PG_GETARG_BYTEA_PP(2);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "publish: SPI_connect failed");
	target = storage_target_load(env, mcxt);
	SPI_finish();
	target->warn = notice_retry;

	storage_put(target, key, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
				PG_ARGISNULL(3) ? "application/octet-stream" : text_to_cstring(PG_GETARG_TEXT_PP(3)),
				PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)));
	storage_sync(target);		/* durable, name included, on return */
	PG_RETURN_VOID();
}
