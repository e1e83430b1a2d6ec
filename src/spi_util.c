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
 * are planned (and run) with enable_seqscan, enable_sort and
 * enable_bitmapscan off, and jit off, set for the query alone as a
 * function's SET clause would: the plans then walk the indexes (plain index
 * scans) whatever the tables' sizes when they were made, and are never
 * compiled.
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

/* The plan kept in *plan, prepared and kept on the first call. */
static SPIPlanPtr
cached_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "publish: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "publish: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * Sets enable_seqscan, enable_sort, enable_bitmapscan and jit off for
 * what follows (planned, on first use or again after an invalidation, by
 * key only); returns the GUC nest level to pass to AtEOXact_GUC once the
 * plan is chosen.
 *
 * Bitmap scans go off too: a worker's kept plan for the progress update (a
 * lookup of one job_queue row by id) was a bitmap scan, and under load the
 * progress updates took a quarter of the worker's CPU, much of it in the
 * bitmap index scan; a bitmap scan, unlike a plain index scan, never marks
 * the dead index entries it meets, which the rows' frequent updates leave.
 *
 * jit goes off with them: a node the planner cannot avoid (a sort or a
 * sequential scan of a table without a fitting index) keeps its disable
 * cost, 1e10, far over jit_above_cost, and the plan, which carries its JIT
 * flags, would then be compiled by LLVM on every execution: 72 % of a
 * worker's CPU under load, and a 20-overlay publish took 60 ms instead of
 * 3.  These queries read a handful of rows; compiling never pays.
 */
static int
plan_by_key(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
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
	SPIPlanPtr	p = cached_plan(plan, sql, nargs, argtypes);
	int			nestlevel = plan_by_key();
	int			rc;

	rc = SPI_execute_plan(p, values, nulls, read_only, count);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}

/*
 * Opens an unnamed cursor over sql through the plan kept in *plan, as
 * spi_execute_cached runs one: the plan (chosen when the cursor opens)
 * walks the indexes whatever the tables' sizes when it was made, so a
 * cursor over a version's rows stays an index scan in key order.  Caller
 * has SPI connected; NULL never returned (errors thrown).
 */
Portal
spi_cursor_open_cached(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
					   Datum *values, const char *nulls, bool read_only)
{
	SPIPlanPtr	p = cached_plan(plan, sql, nargs, argtypes);
	int			nestlevel = plan_by_key();
	Portal		portal;

	portal = SPI_cursor_open(NULL, p, values, nulls, read_only);
	AtEOXact_GUC(true, nestlevel);
	if (portal == NULL)
		elog(ERROR, "publish: SPI_cursor_open failed: %s", SPI_result_code_string(SPI_result));
	return portal;
}
