/*-------------------------------------------------------------------------
 *
 * checksum.c
 *	  SHA-256 of a buffer or a file (or of a stream, piece by piece), and
 *	  the MD5 of a buffer or a file, as lowercase hex.
 *
 * PostgreSQL's cryptohash (OpenSSL underneath) registers each context with
 * CurrentResourceOwner, which is NULL in the worker between transactions,
 * where files are hashed.  There we lend it an owner of our own, given back
 * before anything returns or throws; a context left behind by an error is
 * freed when the worker calls checksum_release_resources after each job.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/cryptohash.h"
#include "common/md5.h"
#include "common/sha2.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "util/util.h"

#define CHECKSUM_IO_CHUNK	65536

static ResourceOwner checksum_owner = NULL;
static bool owner_lent = false;

/* Lends checksum_owner when there is no owner; give_back() ends the loan. */
static void
borrow_owner(void)
{
	if (CurrentResourceOwner == NULL)
	{
		if (checksum_owner == NULL)
			checksum_owner = ResourceOwnerCreate(NULL, "publish checksums");
		CurrentResourceOwner = checksum_owner;
		owner_lent = true;
	}
}

static void
give_back(void)
{
	if (owner_lent)
	{
		CurrentResourceOwner = NULL;
		owner_lent = false;
	}
}

#define hash_name(type)		((type) == PG_MD5 ? "MD5" : "SHA-256")
#define hash_length(type)	((type) == PG_MD5 ? MD5_DIGEST_LENGTH : PG_SHA256_DIGEST_LENGTH)

static pg_cryptohash_ctx *
hash_begin(pg_cryptohash_type type)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(type);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
	{
		give_back();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a %s computation: %s", hash_name(type),
						pg_cryptohash_error(ctx))));
	}
	return ctx;
}

/* Writes the digest of ctx (of type) as hex into hex, and frees ctx. */
static void
hash_end(pg_cryptohash_ctx *ctx, pg_cryptohash_type type, char *hex)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			len = hash_length(type);

	if (pg_cryptohash_final(ctx, digest, len) < 0)
	{
		give_back();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not finish a %s computation: %s", hash_name(type),
						pg_cryptohash_error(ctx))));
	}
	pg_cryptohash_free(ctx);
	hex_encode((char *) digest, len, hex);
	hex[len * 2] = '\0';
}

/* Hex SHA-256 of a buffer, palloc'd. */
char *
checksum_sha256_hex(const char *data, size_t len)
{
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	pg_cryptohash_ctx *ctx;

	borrow_owner();
	ctx = hash_begin(PG_SHA256);
	if (pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0)
	{
		give_back();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256: %s", pg_cryptohash_error(ctx))));
	}
	hash_end(ctx, PG_SHA256, hex);
	give_back();
	return hex;
}

/*
 * Hex SHA-256 of a file into hex[65] and, when md5_hex is not NULL, its hex
 * MD5 into md5_hex[33], in one read.  Returns false with errno set when the
 * file cannot be opened or read.  The file is a transient file (fd.c) and
 * nothing between its open and its close throws: the worker hashes outside
 * any transaction, where nothing else would close it after an error.
 */
bool
checksum_file(const char *path, char *hex, char *md5_hex)
{
	pg_cryptohash_ctx *ctx;
	pg_cryptohash_ctx *md5;
	char	   *buf = palloc(CHECKSUM_IO_CHUNK);
	int			fd;
	ssize_t		n = -1;
	int			save_errno;

	borrow_owner();
	ctx = hash_begin(PG_SHA256);
	md5 = md5_hex != NULL ? hash_begin(PG_MD5) : NULL;
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	save_errno = errno;
	if (fd >= 0)
	{
		while ((n = read(fd, buf, CHECKSUM_IO_CHUNK)) != 0)
		{
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				break;
			if (pg_cryptohash_update(ctx, (uint8 *) buf, n) < 0 ||
				(md5 != NULL && pg_cryptohash_update(md5, (uint8 *) buf, n) < 0))
			{
				errno = EIO;	/* the hash failed, not the read */
				n = -1;
				break;
			}
		}
		save_errno = errno;
		CloseTransientFile(fd);
	}
	pfree(buf);
	if (n != 0)
	{
		pg_cryptohash_free(ctx);
		pg_cryptohash_free(md5);
		give_back();
		errno = save_errno;
		return false;
	}
	hash_end(ctx, PG_SHA256, hex);
	if (md5 != NULL)
		hash_end(md5, PG_MD5, md5_hex);
	give_back();
	return true;
}

/*
 * A SHA-256 computed piece by piece (an HTTP response body as it arrives).
 * checksum_sha256_add does not throw, so it may be called from a libcurl
 * callback; begin and finish may throw.
 */
void *
checksum_sha256_begin(void)
{
	pg_cryptohash_ctx *ctx;

	borrow_owner();
	ctx = hash_begin(PG_SHA256);
	give_back();
	return ctx;
}

bool
checksum_sha256_add(void *ctx, const char *data, size_t len)
{
	return pg_cryptohash_update((pg_cryptohash_ctx *) ctx, (const uint8 *) data, len) >= 0;
}

/* Fills hex[65] and frees ctx. */
void
checksum_sha256_finish(void *ctx, char *hex)
{
	borrow_owner();
	hash_end((pg_cryptohash_ctx *) ctx, PG_SHA256, hex);
	give_back();
}

/* Hex MD5 of a buffer into hex[33] (what S3 returns as the ETag of a PUT). */
void
checksum_md5_hex(const char *data, size_t len, char *hex)
{
	const char *errstr = NULL;
	bool		ok;

	borrow_owner();
	ok = pg_md5_hash(data, len, hex, &errstr);
	give_back();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute MD5: %s", errstr ? errstr : "unknown error")));
}

/* Frees what an error left in the worker's owner; call between jobs. */
void
checksum_release_resources(void)
{
	if (checksum_owner != NULL)
	{
		ResourceOwnerRelease(checksum_owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
		ResourceOwnerRelease(checksum_owner, RESOURCE_RELEASE_LOCKS, false, true);
		ResourceOwnerRelease(checksum_owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
	}
}
