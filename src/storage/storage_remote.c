/*-------------------------------------------------------------------------
 *
 * storage_remote.c
 *	  What the remote backends (storage_http.c, storage_s3.c) share: their
 *	  requests, the words of a failure, the answer to a stat or a GET; and
 *	  batches, many stats and copies of one target in flight at once.
 *
 * A batch runs the backend's stat and copy requests (stat_request,
 * copy_request) through net/'s multi runner, so that the code above (step
 * 4's tiles) hands over keys and gets back what StorageResult says,
 * without knowing the protocol.  Each request and its answer live in the
 * memory context that was current when it was added; the answer is read
 * there too, so a caller that resets one context per object frees all of
 * it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/memutils.h"

#include "publish.h"
#include "net/net.h"
#include "storage/storage.h"

struct StorageBatch
{
	StorageTarget *target;
	HttpMulti  *multi;
};

typedef enum BatchKind
{
	BATCH_STAT,
	BATCH_COPY,
	BATCH_PUT,
	BATCH_LIST
} BatchKind;

/* What the multi runner carries for each request of a batch. */
typedef struct BatchRequest
{
	void	   *tag;			/* the caller's */
	BatchKind	kind;
	bool		missing_ok;		/* a copy whose source may be missing */
	const char *md5;			/* a put: the MD5 of the bytes sent */
	const char *root;			/* a listing: its root */
} BatchRequest;

/*
 * A request of a remote backend on target: retry notices go to the
 * target's warn callback.  The caller adds headers, body and credentials.
 */
HttpRequest *
storage_remote_request(StorageTarget *target, const char *method, const char *url,
					   const char *what)
{
	HttpRequest *req = palloc0(sizeof(HttpRequest));

	req->method = method;
	req->url = url;
	req->what = what;
	req->target_env = target->env;
	req->warn = target->warn;
	req->warn_arg = target->warn_arg;
	return req;
}

/*
 * Throws the failure of req on target, in words: who refused what and why,
 * and what to check.
 */
void
storage_remote_fail(StorageTarget *target, HttpRequest *req,
					HttpResponse *resp)
{
	const char *service = target->backend->service;

	char	   *why = http_failure_text(req, resp);

	http_response_forget(resp);

	if (resp->curl_code == 0 && (resp->status == 401 || resp->status == 403))
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s rejected the %s: %s — check the %s of target \"%s\"",
						service, req->what, why,
						target->backend->credentials,
						target->env),
				 errhint("Set them with publish.set_storage_credentials().")));
	if (resp->attempts > 1)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\" after %d attempts: %s",
						req->what, target->env, resp->attempts, why)));
	ereport(ERROR,
			(errcode(ERRCODE_IO_ERROR),
			 errmsg("%s failed on target \"%s\": %s", req->what, target->env, why)));
}

/*
 * Fills info from the answer to a HEAD (size from Content-Length, and the
 * checksum from x-amz-meta-sha256 when the server keeps one) or a hashed GET (size and SHA-256 of the body) of an object; a 404 or 410
 * means it does not exist.  Any other failure is thrown as
 * storage_remote_fail does.
 */
void
storage_remote_stat_result(StorageTarget *target, HttpRequest *req,
						   HttpResponse *resp, StorageObjectInfo *info)
{
	if (resp->curl_code == 0 && (resp->status == 404 || resp->status == 410))
		return;
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	info->exists = true;
	if (req->hash_body)
	{
		info->size = resp->body_bytes;
		strlcpy(info->sha256, resp->body_sha256, sizeof(info->sha256));
	}
	else
	{
		info->size = resp->content_length;
		/* S3: the checksum put or copy stored with the object */
		if (strlen(resp->meta_sha256) == 64)
			strlcpy(info->sha256, resp->meta_sha256, sizeof(info->sha256));
	}
	if (target->backend->etag_is_md5)
		(void) storage_etag_md5(resp->etag, info->md5);
}

/*
 * Makes req, a hashed GET of a document (a release.json or its copy), hash
 * what a reader has: a gzip body decompressed as it arrives, in a buffer of
 * fixed size, the document at most publish.max_release_size.
 */
void
storage_remote_hash_document(HttpRequest *req)
{
	Assert(req->hash_body);
	req->hash_decoded = true;
	req->decoded_max = (int64) publish_max_release_size * 1024;
}

/*
 * Is etag a plain MD5 ("<32 hex digits>", quotes optional, or XML's
 * &quot;)?  Then md5[33] gets it in lowercase; else md5 is "".  A
 * multipart upload's ETag ("...-N") is not one.
 */
bool
storage_etag_md5(const char *etag, char *md5)
{
	const char *p = etag;
	int			n = 0;

	md5[0] = '\0';
	if (strncmp(p, "&quot;", 6) == 0)
		p += 6;
	else if (*p == '"')
		p++;
	for (; n < 32 && isxdigit((unsigned char) p[n]); n++)
		md5[n] = pg_tolower((unsigned char) p[n]);
	p += n;
	if (n != 32 || !(*p == '\0' || strcmp(p, "\"") == 0 || strcmp(p, "&quot;") == 0))
	{
		md5[0] = '\0';
		return false;
	}
	md5[32] = '\0';
	return true;
}

/*
 * Runs req, a GET, writing the body into f (emptied before each attempt);
 * a body over max_bytes stops it (PT413; 0: no limit).  Returns the body's
 * size; a 404 or 410 is "no such object", any other failure is thrown as
 * storage_remote_fail does.
 */
int64
storage_remote_get(StorageTarget *target, HttpRequest *req, FILE *f,
				   int64 max_bytes)
{
	HttpResponse *resp;

	req->body_file = f;
	req->body_file_max = max_bytes;
	resp = http_perform(req);
	if (resp->curl_code == 0 && (resp->status == 404 || resp->status == 410))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("%s failed on target \"%s\": there is no such object", req->what, target->env)));
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	return resp->body_bytes;
}

/* See storage.h. */
bool
storage_batch_supported(StorageTarget *target)
{
	return target->backend->stat_request != NULL &&
		target->backend->copy_request != NULL;
}

/* See storage.h. */
StorageBatch *
storage_batch_begin(StorageTarget *target, int max_parallel)
{
	StorageBatch *b = palloc0(sizeof(StorageBatch));

	Assert(storage_batch_supported(target));
	b->target = target;
	b->multi = http_multi_begin(max_parallel);
	return b;
}

/* See storage.h. */
bool
storage_batch_full(StorageBatch *b)
{
	return http_multi_full(b->multi);
}

/* See storage.h. */
bool
storage_batch_idle(StorageBatch *b)
{
	return http_multi_idle(b->multi);
}

static BatchRequest *
batch_add(StorageBatch *b, HttpRequest *req, BatchKind kind, void *tag)
{
	BatchRequest *br = palloc0(sizeof(BatchRequest));

	br->tag = tag;
	br->kind = kind;
	http_multi_add(b->multi, req, br);
	return br;
}

/* See storage.h. */
void
storage_batch_stat(StorageBatch *b, const char *key, bool want_sha256,
				   void *tag)
{
	StorageTarget *target = b->target;

	batch_add(b, target->backend->stat_request(target, key, want_sha256),
			  BATCH_STAT, tag);
}

/* See storage.h. */
void
storage_batch_copy(StorageBatch *b, const char *src_key, const char *dst_key,
				   const char *content_type, const char *cache_control,
				   const char *sha256, bool missing_ok, void *tag)
{
	StorageTarget *target = b->target;

	/* may make requests of its own first (WebDAV MKCOL) */
	batch_add(b, target->backend->copy_request(target, src_key, dst_key,
											   content_type, cache_control,
											   sha256),
			  BATCH_COPY, tag)->missing_ok = missing_ok;
}

/*
 * See storage.h.  data must stay until the put's answer is read
 * (storage_batch_wait); md5 is copied.
 */
void
storage_batch_put(StorageBatch *b, const char *key, const char *data,
				  size_t len, const char *content_type,
				  const char *cache_control, const char *md5, void *tag)
{
	StorageTarget *target = b->target;

	Assert(target->backend->put_request != NULL);
	batch_add(b, target->backend->put_request(target, key, data, len,
											  content_type, cache_control, md5),
			  BATCH_PUT, tag)->md5 = pstrdup(md5);
}

/* See storage.h. */
void
storage_batch_list(StorageBatch *b, const char *root, const char *sub,
				   const char *next, void *tag)
{
	StorageTarget *target = b->target;

	Assert(target->backend->list_request != NULL);
	batch_add(b, target->backend->list_request(target, root, sub, next),
			  BATCH_LIST, tag)->root = pstrdup(root);
}

/* See storage.h. */
bool
storage_remote_list_page(StorageTarget *target, const char *root,
						 const char *next, StorageListPage *page)
{
	HttpRequest *req = target->backend->list_request(target, root, "", next);

	return target->backend->list_result(target, req, http_perform(req), root, page);
}

/* See storage.h. */
bool
storage_batch_wait(StorageBatch *b, long timeout_ms, StorageResult *result)
{
	StorageTarget *target = b->target;
	HttpRequest *req;
	HttpResponse *resp;
	void	   *tag;
	BatchRequest *br;
	MemoryContext old;

	if (!http_multi_wait(b->multi, timeout_ms, &req, &resp, &tag))
		return false;
	br = tag;
	memset(result, 0, sizeof(StorageResult));
	result->tag = br->tag;
	old = MemoryContextSwitchTo(GetMemoryChunkContext(req));
	switch (br->kind)
	{
		case BATCH_STAT:
			storage_remote_stat_result(target, req, resp, &result->info);
			break;
		case BATCH_COPY:
			if (br->missing_ok && resp->curl_code == 0 && resp->status == 404)
				result->missing = true;
			else
				result->copied = target->backend->copy_result(target, req, resp,
															  result->md5);
			break;
		case BATCH_PUT:
			result->verified = target->backend->put_result(target, req, resp,
														   br->md5);
			break;
		case BATCH_LIST:
			result->listed = target->backend->list_result(target, req, resp,
														  br->root,
														  &result->page);
			break;
	}
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * The text of an XML element's content s[0..len), its entities (the five
 * predefined ones, and numeric ones of ASCII characters) replaced
 * (palloc'd).  What a listing names is read through it.
 */
char *
storage_xml_text(const char *s, size_t len)
{
	/* the text is never longer than its XML: one allocation of its size */
	char	   *text = palloc(len + 1);
	char	   *out = text;
	static const struct
	{
		const char *entity;
		char		c;
	}			named[] = {
		{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}
	};

	for (size_t i = 0; i < len;)
	{
		bool		done = false;

		if (s[i] == '&')
		{
			for (int k = 0; k < lengthof(named) && !done; k++)
			{
				size_t		n = strlen(named[k].entity);

				if (len - i >= n && strncmp(s + i, named[k].entity, n) == 0)
				{
					*out++ = named[k].c;
					i += n;
					done = true;
				}
			}
			if (!done && len - i > 3 && s[i + 1] == '#')
			{
				char	   *end;
				long		c = s[i + 2] == 'x' ? strtol(s + i + 3, &end, 16)
				: strtol(s + i + 2, &end, 10);

				if (end < s + len && *end == ';' && c > 0 && c < 128)
				{
					*out++ = (char) c;
					i = end + 1 - s;
					done = true;
				}
			}
		}
		if (!done)
			*out++ = s[i++];
	}
	*out = '\0';
	return text;
}

/* See storage.h. */
void
storage_batch_end(StorageBatch *b)
{
	if (b != NULL)
		http_multi_end(b->multi);
}
