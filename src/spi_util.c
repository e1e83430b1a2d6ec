/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Small helpers for reading SPI results.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include "executor/spi.h"
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
