/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  Storage targets: loading one from publish.storage_targets, choosing
 *	  its backend by URL scheme (the table below: a new backend is a line
 *	  here and a file of this folder), and the calls the jobs make.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "publish.h"
#include "net/net.h"
#include "storage/storage.h"
#include "util/util.h"

static const StorageBackend *const backends[] = {
	&storage_local_backend,
	&storage_http_backend,
	&storage_https_backend,
	&storage_s3_backend,
};

/*
 * A URL for an error message: credentials before an "@" in its authority
 * (a row edited by hand; set_storage_target refuses them) become "***".
 */
static char *
shown_url(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *host = sep != NULL ? sep + 3 : url;
	size_t		hostlen = strcspn(host, "/?#");
	const char *at = NULL;

	for (const char *p = host; p < host + hostlen; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return pstrdup(url);
	return psprintf("%.*s***%s", (int) (host - url), url, at);
}

static const StorageBackend *
backend_for_url(const char *env, const char *url)
{
	const char *sep = strstr(url, "://");

	if (sep != NULL)
	{
		for (int i = 0; i < lengthof(backends); i++)
		{
			size_t		n = strlen(backends[i]->scheme);

			if ((size_t) (sep - url) == n && pg_strncasecmp(url, backends[i]->scheme, n) == 0)
				return backends[i];
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("storage target of environment \"%s\" has an unsupported URL \"%s\"", env, shown_url(url)),
			 errhint("Set it again with publish.set_storage_target(); supported: file:///absolute/directory, http(s)://host/prefix, s3://bucket/prefix.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * Is there a "." or ".." segment in url, plain or percent-encoded (%2e,
 * with %2f as a separator too), a run of dots of any length counting as
 * one?  libcurl and servers resolve them, so a target's prefix could name
 * a place outside it (another bucket, another user's directory).  The
 * authority counts as a segment: a host of dots is no host.
 */
static bool
url_has_dot_segment(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *p = sep != NULL ? sep + 3 : url;
	bool		segment_start = true;

#define PCT(p, c) ((p)[0] == '%' && (p)[1] == '2' && pg_ascii_tolower((unsigned char) (p)[2]) == (c))
	while (*p != '\0')
	{
		if (segment_start)
		{
			int			dots = 0;

			for (;;)
			{
				if (*p == '.')
					p++;
				else if (PCT(p, 'e'))
					p += 3;
				else
					break;
				dots++;
			}
			if (dots > 0 && (*p == '\0' || *p == '/' || *p == '?' || *p == '#' || PCT(p, 'f')))
				return true;
			segment_start = false;
			continue;
		}
		if (*p == '/')
		{
			p++;
			segment_start = true;
		}
		else if (PCT(p, 'f'))
		{
			p += 3;
			segment_start = true;
		}
		else
			p++;
	}
#undef PCT
	return false;
}

/* Throws unless value, the target's what, is free of dot segments. */
static void
check_no_dot_segment(const char *env, const char *what, const char *value)
{
	if (value != NULL && url_has_dot_segment(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("storage target of environment \"%s\" has a \".\" or \"..\" segment in its %s \"%s\"",
						env, what, shown_url(value)),
				 errdetail("Dot segments, plain or percent-encoded, would let requests reach outside the target; none was sent."),
				 errhint("Set the target again with publish.set_storage_target().")));
}

/* spi_text of a secret, leaving no other copy behind. */
static char *
secret_text(HeapTuple tuple, int col, MemoryContext mcxt)
{
	char	   *value = SPI_getvalue(tuple, SPI_tuptable->tupdesc, col);
	char	   *copy;

	if (value == NULL)
		return NULL;
	copy = MemoryContextStrdup(mcxt, value);
	redact_wipe(value);
	pfree(value);
	return copy;
}

/* Memory context callback: the target's secrets are wiped with the context. */
static void
wipe_target_secrets(void *arg)
{
	StorageTarget *target = arg;

	redact_wipe(target->secret);
	redact_wipe(target->session_token);
}

/*
 * Loads the storage target of env, with its credentials.  Caller is in a
 * transaction with SPI connected; the result lives in mcxt, and its
 * secrets are wiped when mcxt is reset or deleted.  A URL (or endpoint,
 * or public_url) with dot segments is refused before any request: a row
 * written into publish.storage_targets directly skipped
 * set_storage_target's checks.
 */
StorageTarget *
storage_target_load(const char *env, MemoryContext mcxt)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	StorageTarget *target;
	HeapTuple	tuple;
	char	   *endpoint;
	char	   *compress;
	static SPIPlanPtr plan = NULL;

	args[0] = CStringGetTextDatum(env);
	if (spi_execute_cached(&plan, "SELECT t.url, coalesce(t.options->>'public_url', t.url), "
						   "       c.key_id, c.secret, c.session_token, t.options::text, "
						   "       t.options->>'endpoint', t.options->>'compress' "
						   "  FROM publish.storage_targets t "
						   "  LEFT JOIN publish.storage_credentials c ON c.env = t.env "
						   " WHERE t.env = $1",
						   1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read storage target");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_NOT_FOUND),
				 errmsg("environment \"%s\" has no storage target", env),
				 errhint("Configure one with publish.set_storage_target().")));

	tuple = SPI_tuptable->vals[0];
	target = MemoryContextAllocZero(mcxt, sizeof(StorageTarget));
	target->env = MemoryContextStrdup(mcxt, env);
	target->url = spi_text(tuple, 1, mcxt);
	target->public_base = spi_text(tuple, 2, mcxt);
	target->key_id = spi_text(tuple, 3, mcxt);
	target->secret = secret_text(tuple, 4, mcxt);
	target->session_token = secret_text(tuple, 5, mcxt);
	target->options = spi_text(tuple, 6, mcxt);
	endpoint = spi_text(tuple, 7, mcxt);
	compress = spi_text(tuple, 8, mcxt);
	/* the row's copy of the secrets is not needed any more */
	explicit_bzero(tuple->t_data, tuple->t_len);
	if (target->secret != NULL || target->session_token != NULL)
	{
		MemoryContextCallback *cb = MemoryContextAlloc(mcxt, sizeof(MemoryContextCallback));

		cb->func = wipe_target_secrets;
		cb->arg = target;
		MemoryContextRegisterResetCallback(mcxt, cb);
	}
	target->backend = backend_for_url(env, target->url);
	check_no_dot_segment(env, "URL", target->url);
	check_no_dot_segment(env, "option public_url", target->public_base);
	check_no_dot_segment(env, "option endpoint", endpoint);
	if (compress != NULL && strcmp(compress, "gzip") == 0)
		target->gzip = true;
	else if (compress != NULL && strcmp(compress, "none") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("storage target of environment \"%s\" has an invalid option compress \"%s\"",
						env, compress),
				 errhint("Set the target again with publish.set_storage_target(), with \"compress\": \"gzip\" or without the option.")));

	if (target->backend->open)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		target->backend->open(target);
		MemoryContextSwitchTo(old);
	}
	return target;
}

/*
 * Each call runs in a memory context of its own, deleted when it returns:
 * a remote backend allocates URLs, headers and response buffers per
 * request, and a job makes three requests per tile.  What lasts (the
 * backend's state) lives in the target's context.  After an error the
 * context goes with the caller's, which is reset after the job.
 */
static MemoryContext
op_begin(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "publish storage call",
											  ALLOCSET_DEFAULT_SIZES);

	return MemoryContextSwitchTo(cxt);
}

static void
op_end(MemoryContext caller)
{
	MemoryContext cxt = MemoryContextSwitchTo(caller);

	MemoryContextDelete(cxt);
}

void
storage_put(StorageTarget *target, const char *key, const char *data, size_t len,
			const char *content_type, const char *cache_control)
{
	MemoryContext caller = op_begin();

	target->backend->put(target, key, data, len, content_type, cache_control, NULL, NULL);
	op_end(caller);
}

void
storage_stat(StorageTarget *target, const char *key, StorageObjectInfo *info, bool want_sha256)
{
	MemoryContext caller = op_begin();

	memset(info, 0, sizeof(StorageObjectInfo));
	target->backend->stat(target, key, info, want_sha256);
	op_end(caller);
}

/*
 * Writes data at key, where the caller has just put the same data at
 * same_as_key and will not change it: a backend that can (file://) makes
 * key the same object instead of writing it again.  Used for release.json,
 * the same document as its versioned copy.
 */
void
storage_put_same(StorageTarget *target, const char *key, const char *same_as_key,
				 const char *data, size_t len, const char *content_type,
				 const char *cache_control)
{
	MemoryContext caller = op_begin();
	bool		linked = false;

	if (target->backend->link)
		linked = target->backend->link(target, same_as_key, key);
	if (!linked)
		target->backend->put(target, key, data, len, content_type, cache_control, NULL, NULL);
	op_end(caller);
}

/*
 * gzip of data[0..len), at zlib's default level, with no name or time in
 * its header: the same document compresses to the same bytes.
 */
static char *
gzip_compress(const char *data, size_t len, size_t *out_len)
{
	z_stream	zs;
	size_t		cap;
	char	   *out;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
					 Z_DEFAULT_STRATEGY) != Z_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start a gzip compression: %s", zs.msg ? zs.msg : "out of memory")));
	cap = deflateBound(&zs, len);
	out = palloc_extended(cap, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (out == NULL)
	{
		deflateEnd(&zs);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on a request of size %zu for a compressed document.", cap)));
	}
	/* zlib counts in uInt: feed it in pieces */
	zs.next_out = (Bytef *) out;
	zs.avail_out = 0;
	zs.next_in = (Bytef *) data;
	do
	{
		size_t		in_left = len - (size_t) ((const char *) zs.next_in - data);
		size_t		out_left = cap - (size_t) ((char *) zs.next_out - out);

		zs.avail_in = (uInt) Min(in_left, (size_t) 1 << 30);
		zs.avail_out = (uInt) Min(out_left, (size_t) 1 << 30);
		rc = deflate(&zs, zs.avail_in == in_left ? Z_FINISH : Z_NO_FLUSH);
	} while (rc == Z_OK || rc == Z_BUF_ERROR);
	*out_len = (char *) zs.next_out - out;
	deflateEnd(&zs);
	if (rc != Z_STREAM_END)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress a document with gzip (zlib error %d)", rc)));
	return out;
}

/* See storage.h.  The compressed copy is allocated in the current context. */
void
storage_document_prepare(StorageTarget *target, StorageDocument *doc,
						 const char *data, size_t len, const char *sha256)
{
	memset(doc, 0, sizeof(StorageDocument));
	doc->data = data;
	doc->len = len;
	doc->sha256 = sha256;
	if (target->gzip)
		doc->encoded = gzip_compress(data, len, &doc->encoded_len);
}

/*
 * put, or (with same_as_key) a link where the backend can make one; sha256
 * as put's.
 */
static void
put_or_link(StorageTarget *target, const char *key, const char *same_as_key,
			const char *data, size_t len, const char *content_type,
			const char *cache_control, const char *content_encoding,
			const char *sha256)
{
	if (same_as_key != NULL && target->backend->link != NULL &&
		target->backend->link(target, same_as_key, key))
		return;
	target->backend->put(target, key, data, len, content_type, cache_control,
						 content_encoding, sha256);
}

/*
 * See storage.h.  On file:// the compressed sibling is written first, so
 * that a reader who prefers it never finds one older than the plain
 * document once both are written.
 */
void
storage_put_document(StorageTarget *target, const char *key, const char *same_as_key,
					 const StorageDocument *doc, const char *content_type,
					 const char *cache_control)
{
	MemoryContext caller = op_begin();
	const StorageBackend *be = target->backend;
	char	   *sibling = psprintf("%s.gz", key);
	char	   *same_sibling = same_as_key ? psprintf("%s.gz", same_as_key) : NULL;

	if (doc->encoded != NULL && be->keeps_encoding)
		put_or_link(target, key, same_as_key, doc->encoded, doc->encoded_len,
					content_type, cache_control, "gzip", doc->sha256);
	else if (doc->encoded != NULL)
	{
		put_or_link(target, sibling, same_sibling, doc->encoded, doc->encoded_len,
					"application/gzip", cache_control, NULL, doc->sha256);
		put_or_link(target, key, same_as_key, doc->data, doc->len,
					content_type, cache_control, NULL, doc->sha256);
	}
	else
	{
		put_or_link(target, key, same_as_key, doc->data, doc->len,
					content_type, cache_control, NULL, doc->sha256);
		/* a sibling of an earlier compressed document would be served */
		if (!be->keeps_encoding)
			be->remove(target, sibling);
	}
	op_end(caller);
}

/*
 * dst_key the same object as src_key, which nothing changes once written:
 * a link where the backend can make one, else a copy.
 */
static void
link_or_copy(StorageTarget *target, const char *src_key, const char *dst_key,
			 const char *content_type, const char *cache_control)
{
	const StorageBackend *be = target->backend;

	if (be->link != NULL && be->link(target, src_key, dst_key))
		return;
	be->copy(target, src_key, dst_key, content_type, cache_control);
}

/*
 * See storage.h.  On file:// the sibling goes first, as in
 * storage_put_document; both are links to the copy's files (no second
 * write), each renamed over its name.  Elsewhere a server-side copy, which
 * takes the source's Content-Encoding with it: one CopyObject on S3; on
 * WebDAV a COPY to {dst_key}.{tag}.tmp and a MOVE over dst_key
 * (copy_over).
 */
void
storage_switch_document(StorageTarget *target, const char *src_key, const char *dst_key,
						const char *tag, const char *content_type,
						const char *cache_control)
{
	MemoryContext caller = op_begin();
	const StorageBackend *be = target->backend;

	if (!be->keeps_encoding)
	{
		char	   *src_sibling = psprintf("%s.gz", src_key);
		char	   *dst_sibling = psprintf("%s.gz", dst_key);
		StorageObjectInfo info;

		memset(&info, 0, sizeof(info));
		be->stat(target, src_sibling, &info, false);
		if (info.exists)
			link_or_copy(target, src_sibling, dst_sibling, "application/gzip", cache_control);
		else
			be->remove(target, dst_sibling);
	}
	if (be->copy_over != NULL)
		be->copy_over(target, src_key, dst_key, psprintf("%s.%s.tmp", dst_key, tag),
					  content_type, cache_control);
	else
		link_or_copy(target, src_key, dst_key, content_type, cache_control);
	op_end(caller);
}

/*
 * See storage.h.  A HEAD where it tells the checksum stored with the object
 * (S3), else the object read and hashed: on file:// the plain document
 * (its sibling is the compressed one); from a remote server a GET,
 * decompressed as it arrives when it is gzip (storage_remote_hash_document).
 * info->size is the size as stored.
 */
void
storage_stat_document(StorageTarget *target, const char *key, StorageObjectInfo *info)
{
	MemoryContext caller = op_begin();
	const StorageBackend *be = target->backend;

	memset(info, 0, sizeof(StorageObjectInfo));
	if (be->head_has_sha256)
	{
		be->stat(target, key, info, false);
		if (!info->exists || info->sha256[0] != '\0')
		{
			op_end(caller);
			return;
		}
		memset(info, 0, sizeof(StorageObjectInfo));
	}
	if (be->stat_document != NULL)
		be->stat_document(target, key, info);
	else
		be->stat(target, key, info, true);
	op_end(caller);
}

/*
 * Uploads the file at path (on the database server, not changing) as key.
 * Read whole first, the buffer sized by stat: nothing throws while the
 * transient file is open.
 */
void
storage_put_file(StorageTarget *target, const char *key, const char *path,
				 const char *content_type, const char *cache_control)
{
	struct stat st;
	char	   *data;
	size_t		done = 0;
	int			fd;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat \"%s\": %m", path)));
	data = palloc_extended(st.st_size + 1, MCXT_ALLOC_HUGE);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path)));
	while (done < (size_t) st.st_size)
	{
		ssize_t		n = read(fd, data + done, st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			break;				/* shorter than it was: what it holds now */
		if (n < 0)
		{
			int			save_errno = errno;

			CloseTransientFile(fd);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %m", path)));
		}
		done += n;
	}
	CloseTransientFile(fd);
	storage_put(target, key, data, done, content_type, cache_control);
	pfree(data);
}

void
storage_copy(StorageTarget *target, const char *src_key, const char *dst_key,
			 const char *content_type, const char *cache_control)
{
	MemoryContext caller = op_begin();

	target->backend->copy(target, src_key, dst_key, content_type, cache_control);
	op_end(caller);
}

/* Removes the object at key, if there is one. */
void
storage_delete(StorageTarget *target, const char *key)
{
	MemoryContext caller = op_begin();

	target->backend->remove(target, key);
	op_end(caller);
}

void
storage_sync(StorageTarget *target)
{
	if (target->backend->sync)
	{
		MemoryContext caller = op_begin();

		target->backend->sync(target);
		op_end(caller);
	}
}

/* The URL under which readers find key (palloc'd). */
char *
storage_public_url(StorageTarget *target, const char *key)
{
	size_t		n = strlen(target->public_base);

	return psprintf("%s%s%s", target->public_base,
					n > 0 && target->public_base[n - 1] == '/' ? "" : "/", key);
}

/*
 * Downloads the object at key into a new file at path (on the database
 * server, e.g. a temporary file) and returns its size; one longer than
 * max_bytes (0: no limit) fails with PT413.  Outside any
 * transaction: a remote download may take a while.  The file is removed
 * again when the download fails.
 *
 * A plain stdio file, not fd.c's AllocateFile: a remote backend's retry
 * notice commits a transaction between two attempts (the job's log line),
 * and the end of every transaction closes what AllocateFile opened, under
 * the next attempt.  PG_CATCH closes it instead.
 */
int64
storage_get_file(StorageTarget *target, const char *key, const char *path, int64 max_bytes)
{
	MemoryContext caller;
	FILE	   *f;
	int64		size = 0;

	if (target->backend->get == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("storage target \"%s\" cannot download objects", target->env)));
	f = fopen(path, PG_BINARY_W);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", path)));
	PG_TRY();
	{
		caller = op_begin();
		size = target->backend->get(target, key, f, max_bytes);
		op_end(caller);
		if (fflush(f) != 0 || ferror(f))
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write \"%s\": %m", path)));
	}
	PG_CATCH();
	{
		fclose(f);
		unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (fclose(f) != 0)
	{
		int			save_errno = errno;

		unlink(path);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", path)));
	}
	return size;
}

/* See storage.h. */
void
storage_delete_document(StorageTarget *target, const char *key)
{
	MemoryContext caller = op_begin();

	if (!target->backend->keeps_encoding)
		target->backend->remove(target, psprintf("%s.gz", key));
	target->backend->remove(target, key);
	op_end(caller);
}

/*
 * Purges.  The prefix is checked here, whatever the backend: a key ending
 * in '/', below the target's root (not empty, no leading '/'), without
 * empty, "." or ".." segments, so that nothing outside it can be named.
 */
static void
check_purge_prefix(StorageTarget *target, const char *prefix)
{
	size_t		n = strlen(prefix);

	if (n < 2 || prefix[0] == '/' || prefix[n - 1] != '/' ||
		strstr(prefix, "//") != NULL || url_has_dot_segment(prefix))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid prefix \"%s\" to purge on target \"%s\"", prefix, target->env),
				 errdetail("A prefix to purge is a relative key ending in \"/\", without empty, \".\" or \"..\" segments.")));
}

/*
 * See storage.h.  A remote target is listed with its backend's listing
 * requests (those of the tile listings), one page after another; file://
 * walks the directory.
 */
List *
storage_list_keys(StorageTarget *target, const char *prefix, bool *supported)
{
	List	   *entries = NIL;
	MemoryContext caller;
	MemoryContext opcxt;
	char	   *next = NULL;

	check_purge_prefix(target, prefix);
	*supported = true;
	if (target->backend->list_request == NULL)
	{
		if (target->backend->list_local == NULL)
		{
			*supported = false;
			return NIL;
		}
		return target->backend->list_local(target, prefix);
	}
	caller = op_begin();
	opcxt = CurrentMemoryContext;
	do
	{
		StorageListPage page;

		CHECK_FOR_INTERRUPTS();
		if (!storage_remote_list_page(target, prefix, next, &page))
		{
			*supported = false;
			break;
		}
		MemoryContextSwitchTo(caller);
		for (int i = 0; i < page.n; i++)
		{
			StorageListEntry *e = palloc(sizeof(StorageListEntry));

			*e = page.entries[i];
			e->name = pstrdup(e->name);
			entries = lappend(entries, e);
		}
		next = page.next ? pstrdup(page.next) : NULL;
		MemoryContextSwitchTo(opcxt);
	} while (next != NULL);
	op_end(caller);
	return *supported ? entries : NIL;
}

/* See storage.h. */
void
storage_remove_prefix(StorageTarget *target, const char *prefix, StorageRemoved *removed)
{
	MemoryContext caller;

	check_purge_prefix(target, prefix);
	if (target->backend->remove_prefix == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("storage target \"%s\" cannot remove what is under a prefix", target->env)));
	caller = op_begin();
	target->backend->remove_prefix(target, prefix, removed);
	op_end(caller);
}

/* See storage.h. */
bool
storage_remove_counted(StorageTarget *target, const char *key, StorageRemoved *removed)
{
	StorageObjectInfo info;
	bool		found = false;

	/* the compressed sibling first: a copy's key is what a listing finds */
	if (!target->backend->keeps_encoding)
	{
		storage_stat(target, psprintf("%s.gz", key), &info, false);
		if (info.exists)
		{
			removed->objects++;
			removed->bytes += Max(info.size, 0);
			found = true;
		}
	}
	storage_stat(target, key, &info, false);
	if (info.exists)
	{
		removed->objects++;
		removed->bytes += Max(info.size, 0);
		found = true;
	}
	if (found)
		storage_delete_document(target, key);
	return found;
}
