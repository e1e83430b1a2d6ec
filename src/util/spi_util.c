/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Small helpers for SPI: reading results, and running a query through a
 *	  plan prepared once per process.
 *
 * A worker runs the same dozen queries for every job.  spi_execute_cached
 * parses and analyses a query on its first use and keeps it for the life
 * of the process (SPI_keepplan); the plan cache then settles on a generic
 * plan, which costs no planning per job (job_queue_check_plans says when
 * the job queue's are made again).
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "executor/spi.h"
#include "utils/memutils.h"

#include "util/util.h"

/*
 * Text of column col of a row of SPI_tuptable, copied into mcxt (so it
 * outlives SPI_finish); NULL when the value is null.
 */
char *
spi_text(HeapTuple row, int col, MemoryContext mcxt)
{
	char	   *value = SPI_getvalue(row, SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(mcxt, value) : NULL;
}

/* The plan kept in *plan, prepared and kept on the first call. */
static SPIPlanPtr
cached_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "publish: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "publish: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * Runs sql (nargs parameters of types argtypes) with SPI, through the plan
 * kept in *plan: prepared and kept on the first call.  *plan must be a
 * static variable, always used with the same sql.  Returns what
 * SPI_execute_plan returns.  Caller has SPI connected.
 */
int
spi_execute_cached(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
				   Datum *values, const char *nulls, bool read_only, long count)
{
	return SPI_execute_plan(cached_plan(plan, sql, nargs, argtypes), values, nulls,
							read_only, count);
}

/*
 * Opens an unnamed cursor over sql through the plan kept in *plan, as
 * spi_execute_cached runs one.  Caller has SPI connected; NULL never
 * returned (errors thrown).
 */
Portal
spi_cursor_open_cached(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
					   Datum *values, const char *nulls, bool read_only)
{
	Portal		portal;

	portal = SPI_cursor_open(NULL, cached_plan(plan, sql, nargs, argtypes), values, nulls,
							 read_only);
	if (portal == NULL)
		elog(ERROR, "publish: SPI_cursor_open failed: %s", SPI_result_code_string(SPI_result));
	return portal;
}
