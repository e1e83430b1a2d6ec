/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Leaf helpers any folder may call: SPI results and plans kept per
 *	  process (spi_util.c), SHA-256 and MD5 of buffers and files
 *	  (checksum.c), URL paths (url.c).
 *
 * Contract: nothing here calls into another folder of the extension.  The
 * SPI helpers need SPI connected (a transaction open); the checksums work
 * inside or outside a transaction and throw only for out-of-memory or a
 * failure of the crypto library.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_UTIL_H
#define PUBLISH_UTIL_H

#include "access/htup.h"

struct _SPI_plan;
struct PortalData;

/* spi_util.c */
extern char *spi_text(HeapTuple row, int col, MemoryContext mcxt);
extern int	spi_execute_cached(struct _SPI_plan **plan, const char *sql,
							   int nargs, Oid *argtypes, Datum *values,
							   const char *nulls, bool read_only, long count);
extern struct PortalData *spi_cursor_open_cached(struct _SPI_plan **plan,
												 const char *sql, int nargs,
												 Oid *argtypes, Datum *values,
												 const char *nulls,
												 bool read_only);

/* checksum.c: hex digests, lowercase; hex buffers of 65 (SHA-256), 33 (MD5) */
extern char *checksum_sha256_hex(const char *data, size_t len);
extern bool checksum_file(const char *path, char *hex, char *md5_hex);
extern void *checksum_sha256_begin(void);
extern bool checksum_sha256_add(void *ctx, const char *data, size_t len);
extern void checksum_sha256_finish(void *ctx, char *hex);
extern void checksum_md5_hex(const char *data, size_t len, char *hex);
extern void checksum_release_resources(void);

/* url.c: percent-encodes a path for a URL (unreserved characters and '/' kept) */
extern char *url_encode_path(const char *path);

#endif							/* PUBLISH_UTIL_H */
