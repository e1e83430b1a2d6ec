/*-------------------------------------------------------------------------
 *
 * release_doc.c
 *	  The bytes of release.json while it is written, and their SHA-256.
 *
 * A document starts in a palloc'd buffer of RELEASE_DOC_SMALL bytes (most
 * releases fit: 20 overlays make 6 kB), which costs no system call.  Past
 * that it moves, once, into an anonymous memory mapping that grows by
 * doubling with mremap: the kernel moves page tables, not bytes, so growing
 * never copies the document nor holds two copies of it, and only the pages
 * written are resident (peak memory: the document itself, rounded up to a
 * page, plus the small buffer).  A mapping per document would cost every
 * small publish an mmap, page faults, a munmap and a TLB flush.  The
 * SHA-256, when asked for, is computed as the bytes are appended (callers
 * append in pieces of tens of kilobytes); it must be finished in the
 * transaction (or outside any) that began it, whose resource owner holds
 * it.  The mapping is returned to the
 * system (munmap) when the memory context the document was created in is
 * reset or deleted, on success and on error alike: the worker keeps nothing
 * of a big release between jobs.
 *
 * Where mremap does not exist, the buffer is malloc'd and grown by realloc.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "publish.h"
#include "release/release.h"
#include "util/util.h"

#define RELEASE_DOC_SMALL	(64 * 1024)
#define RELEASE_DOC_INITIAL	(1024 * 1024)	/* the mapping's first size */

static void
out_of_memory(size_t want)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory while writing release.json"),
			 errdetail("Failed to map %zu bytes.", want)));
}

/*
 * Frees the mapping; a memory context reset callback (a palloc'd buffer
 * goes with the context).
 */
static void
release_doc_free(void *arg)
{
	ReleaseDoc *doc = arg;

	if (doc->data != NULL && doc->mapped)
	{
#ifdef __linux__
		(void) munmap(doc->data, doc->cap);
#else
		free(doc->data);
#endif
		doc->data = NULL;
	}
	/* an unfinished SHA-256 went with the resource owner that holds it */
	doc->sha256_ctx = NULL;
}

/* Makes room for at least need bytes in all. */
static void
grow(ReleaseDoc *doc, size_t need)
{
	size_t		cap = doc->mapped ? doc->cap : RELEASE_DOC_INITIAL;
	void	   *data;

	while (cap < need)
		cap *= 2;
	if (!doc->mapped)
	{
		/* out of the small buffer: into a mapping, the one copy */
#ifdef __linux__
		data = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (data == MAP_FAILED)
			out_of_memory(cap);
#else
		data = malloc(cap);
		if (data == NULL)
			out_of_memory(cap);
#endif
		memcpy(data, doc->data, doc->len);
		pfree(doc->data);
		doc->mapped = true;
	}
	else
	{
#ifdef __linux__
		data = mremap(doc->data, doc->cap, cap, MREMAP_MAYMOVE);
		if (data == MAP_FAILED)
			out_of_memory(cap);
#else
		data = realloc(doc->data, cap);
		if (data == NULL)
			out_of_memory(cap);
#endif
	}
	doc->data = data;
	doc->cap = cap;
}

/*
 * An empty document whose memory lives until mcxt is reset or deleted.
 * Callers may throw while it is written: the reset frees it.  Its SHA-256
 * is computed only when asked for (what is uploaded needs it, a preview
 * does not).
 */
ReleaseDoc *
release_doc_create(MemoryContext mcxt, bool with_sha256)
{
	ReleaseDoc *doc = MemoryContextAllocZero(mcxt, sizeof(ReleaseDoc));
	MemoryContextCallback *cb = MemoryContextAllocZero(mcxt, sizeof(MemoryContextCallback));

	doc->data = MemoryContextAlloc(mcxt, RELEASE_DOC_SMALL);
	doc->cap = RELEASE_DOC_SMALL;
	doc->mapped = false;
	doc->max_len = (size_t) publish_max_release_size * 1024;
	cb->func = release_doc_free;
	cb->arg = doc;
	MemoryContextRegisterResetCallback(mcxt, cb);
	if (with_sha256)
		doc->sha256_ctx = checksum_sha256_begin();
	return doc;
}

/*
 * JSON is UTF-8 (RFC 8259).  The document's text is the database's: in a
 * database of another encoding only ASCII is the same bytes in both, and
 * other characters are refused rather than converted.
 */
static void
check_encoding(const char *data, size_t len)
{
	if (GetDatabaseEncoding() == PG_UTF8)
		return;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) data[i] >= 0x80)
			ereport(ERROR,
					(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
					 errmsg("release.json would not be UTF-8: the database's encoding is %s, and the version's text has characters other than ASCII",
							GetDatabaseEncodingName()),
					 errhint("Use publish in a database whose encoding is UTF8.")));
}

void
release_doc_append(ReleaseDoc *doc, const char *data, size_t len)
{
	check_encoding(data, len);
	if (doc->len + len > doc->cap)
		grow(doc, doc->len + len);
	memcpy(doc->data + doc->len, data, len);
	if (doc->sha256_ctx != NULL && !checksum_sha256_add(doc->sha256_ctx, data, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the SHA-256 of release.json")));
	doc->len += len;
}

/* Ends the document: its SHA-256, if computed, is then in doc->sha256. */
void
release_doc_finish(ReleaseDoc *doc)
{
	if (doc->sha256_ctx == NULL)
		return;
	checksum_sha256_finish(doc->sha256_ctx, doc->sha256);
	doc->sha256_ctx = NULL;
}

/*
 * PT413 when the document, with pending bytes still to come, is over
 * publish.max_release_size (as the document grows: memory stays bounded
 * by the limit).
 */
void
release_doc_check_size(ReleaseDoc *doc, size_t pending, ReleaseInput *in)
{
	char	   *shown;

	if (doc->max_len == 0 || doc->len + pending <= doc->max_len)
		return;
	shown = text_to_cstring(DatumGetTextPP(DirectFunctionCall1(pg_size_pretty,
															   Int64GetDatum((int64) doc->max_len))));
	ereport(ERROR,
			(errcode(ERRCODE_PUBLISH_TOO_LARGE),
			 errmsg("version %d of project \"%s\" is too large to publish: its release.json went over publish.max_release_size (%s)",
					in->version_number, in->project_slug, shown),
			 errhint("Split its overlays over projects, simplify their geometry, or ask a superuser to raise publish.max_release_size.")));
}
