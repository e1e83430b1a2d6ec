/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Small helpers for SPI: reading results, and running a query through a
 *	  plan prepared once per process.
 *
 * A worker runs the same dozen queries for every job.  Planned afresh each
 * time, they cost more CPU than the rest of a small job (parse, analysis,
 * planning, and an lseek per table and index to read its size).
 * spi_execute_cached prepares a query on its first use, keeps the plan for
 * the life of the process (SPI_keepplan) and asks for a generic plan: the
 * parameters of these queries are keys (ids, pids, lock classes), never
 * values whose statistics could change the plan's shape.  The plan cache
 * re-plans by itself when a table or index it uses changes (DDL, a VACUUM
 * or ANALYZE that updates the table's statistics), and re-analyses the
 * query text when the objects are dropped and created again.
 *
 * A plan kept for the life of a worker must stay good while the tables
 * grow: one made while the queue was empty would otherwise scan it
 * sequentially (and the claim, once per queued job: quadratic), long after
 * it holds thousands of rows.  These queries all find rows by key, so they
 * are planned (and run) with enable_seqscan and enable_sort off, set for
 * the query alone as a function's SET clause would: the plans then walk the
 * indexes whatever the tables' sizes when they were made.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/guc.h"
#include "utils/memutils.h"

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
	int			nestlevel;
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "publish: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "publish: SPI_keepplan failed");
		*plan = p;
	}

	/* planned (on first use, or again after an invalidation) by key only */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(*plan, values, nulls, read_only, count);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}
