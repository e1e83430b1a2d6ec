/*-------------------------------------------------------------------------
 *
 * storage_http.c
 *	  The http:// and https:// backend: HTTP PUT, with WebDAV COPY where
 *	  the server has it.
 *
 * An object key becomes {url}/{key}, percent-encoded.  put sends the bytes
 * with Content-Type and Cache-Control and, once the server answered 2xx,
 * checks with a HEAD that the object is there with the size sent.  stat is
 * a HEAD (or, when a checksum is wanted, a GET whose body is hashed as it
 * arrives: plain HTTP servers give no checksum).  copy is a WebDAV COPY,
 * after MKCOL of the destination's missing parent collections (COPY does
 * not create them, unlike PUT with nginx's create_full_put_path; the
 * collections known to exist are remembered for the life of the target);
 * a server without COPY (405 or 501) gets a GET and a PUT instead.  A copy
 * over release.json (copy_over) is a COPY to a temporary name beside it
 * and a MOVE over it: nginx writes a COPY in place, but renames a MOVE.
 *
 * Checksums: WebDAV keeps none with an object (nginx's module has no
 * PROPPATCH or dead properties, ETags are mtime-size), so telling whether
 * a tile in place has the same content takes a GET hashed as it arrives:
 * a re-publish downloads the tiles in place but uploads and copies nothing.
 *
 * Credentials: a key id and a secret are HTTP basic auth; a secret without
 * key id is a bearer token.  Every 2xx is success; anything else is an
 * error carrying the status and the first line (or title) of the body.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "publish.h"
#include "net/net.h"
#include "storage/storage.h"
#include "util/util.h"

/*
 * A set of collection keys (strings), so that a pyramid of many thousand
 * tile collections costs one lookup per tile copy, not a scan.
 */
typedef struct CollectionEntry
{
	const char *key;
	uint32		hash;
	char		status;			/* simplehash's */
} CollectionEntry;

#define SH_PREFIX		collections
#define SH_ELEMENT_TYPE	CollectionEntry
#define SH_KEY_TYPE		const char *
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	hash_bytes((const unsigned char *) (k), strlen(k))
#define SH_EQUAL(tb, a, b)	(strcmp((a), (b)) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct HttpTarget
{
	collections_hash *collections;	/* keys of collections known to exist */
	bool		no_mkcol;		/* the server has no MKCOL */
	bool		no_copy;		/* the server has no COPY (405/501 seen) */
	bool		no_move;		/* the server has no MOVE (405/501 seen) */
	MemoryContext cxt;			/* the target's */
} HttpTarget;

/* Checks the URL (host, no credentials, no query); called by storage_target_load. */
static void
http_open(StorageTarget *target)
{
	const char *url = target->url;
	const char *host = strstr(url, "://") + 3;
	size_t		hostlen = strcspn(host, "/");
	HttpTarget *ht;

	/* set_storage_target checks this too; a row edited by hand might not */
	if (hostlen == 0 || memchr(host, '@', hostlen) != NULL || strpbrk(url, "?#") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("storage target of environment \"%s\" has an invalid URL", target->env),
				 errhint("Use http(s)://host[:port]/prefix, with credentials set by publish.set_storage_credentials().")));
	ht = palloc0(sizeof(HttpTarget));
	ht->cxt = CurrentMemoryContext;
	ht->collections = collections_create(ht->cxt, 64, NULL);
	target->backend_state = ht;
}

/* {url}/{key}, the key percent-encoded. */
static char *
object_url(StorageTarget *target, const char *key)
{
	size_t		n = strlen(target->url);

	return psprintf("%s%s%s", target->url, n > 0 && target->url[n - 1] == '/' ? "" : "/",
					url_encode_path(key));
}

/* A request with the target's credentials: basic auth, or a bearer token without key id. */
static HttpRequest *
new_request(StorageTarget *target, const char *method, const char *url, const char *what)
{
	HttpRequest *req = storage_remote_request(target, method, url, what);

	if (target->secret != NULL)
	{
		if (target->key_id != NULL)
		{
			req->username = target->key_id;
			req->password = target->secret;
		}
		else
			req->bearer = target->secret;
	}
	return req;
}

/* HEAD (or, for a checksum, a hashed GET) of url. */
static HttpRequest *
stat_url_request(StorageTarget *target, const char *url, const char *key, bool want_sha256)
{
	HttpRequest *req = new_request(target, want_sha256 ? "GET" : "HEAD", url,
								   psprintf("check of %s", key));

	req->hash_body = want_sha256;
	if (want_sha256)
		req->body_limit = 1024; /* enough for an error's words */
	return req;
}

/*
 * An object found at key says that the collections above it exist: a
 * COPY next to it (a rollback's release.json, beside releases/) then needs
 * no MKCOL first.  Deepest first: a known collection's parents are known.
 */
static void
collections_above(StorageTarget *target, const char *key)
{
	HttpTarget *ht = target->backend_state;
	char	   *dir = pstrdup(key);
	char	   *slash;
	bool		found;

	while ((slash = strrchr(dir, '/')) != NULL)
	{
		*slash = '\0';
		if (dir[0] == '\0' || collections_lookup(ht->collections, dir) != NULL)
			break;
		(void) collections_insert(ht->collections, MemoryContextStrdup(ht->cxt, dir), &found);
	}
	pfree(dir);
}

/*
 * HEAD (or, for a checksum, a hashed GET, of the decoded content for a
 * document) of url; 404 and 410 mean "no such object".
 */
static void
http_stat_url(StorageTarget *target, const char *url, const char *key,
			  StorageObjectInfo *info, bool want_sha256, bool document)
{
	HttpRequest *req = stat_url_request(target, url, key, want_sha256);
	HttpResponse *resp;

	if (document)
		storage_remote_hash_document(req);
	resp = http_perform(req);
	storage_remote_stat_result(target, req, resp, info);
	if (info->exists)
		collections_above(target, key);
}

/* PUT of data at url. */
static HttpRequest *
put_url_request(StorageTarget *target, const char *url, const char *key, const char *data,
				size_t len, const char *content_type, const char *cache_control,
				const char *content_encoding)
{
	HttpRequest *req = new_request(target, "PUT", url, psprintf("upload of %s", key));

	req->headers = http_header(req->headers, "Content-Type",
							   content_type ? content_type : "application/octet-stream");
	if (cache_control != NULL)
		req->headers = http_header(req->headers, "Cache-Control", cache_control);
	if (content_encoding != NULL && content_encoding[0] != '\0')
		req->headers = http_header(req->headers, "Content-Encoding", content_encoding);
	req->body = data;
	req->body_len = len;
	return req;
}

static HttpRequest *
http_put_request(StorageTarget *target, const char *key, const char *data, size_t len,
				 const char *content_type, const char *cache_control, const char *md5)
{
	return put_url_request(target, object_url(target, key), key, data, len,
						   content_type, cache_control, NULL);
}

/*
 * Throws unless the server took the PUT; false: a 2xx is only a claim,
 * so the caller checks with a HEAD that the object is there, whole.
 */
static bool
http_put_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp, const char *md5)
{
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	return false;
}

/*
 * PUT, then a HEAD that checks the object is there with the size sent.
 * WebDAV keeps no checksum: sha256 is not sent.
 */
static void
http_put(StorageTarget *target, const char *key, const char *data, size_t len,
		 const char *content_type, const char *cache_control, const char *content_encoding,
		 const char *sha256)
{
	char	   *url = object_url(target, key);
	HttpRequest *req = put_url_request(target, url, key, data, len, content_type,
									   cache_control, content_encoding);
	StorageObjectInfo info;

	(void) http_put_result(target, req, http_perform(req), NULL);

	/* the server said yes: check that the object is there, whole */
	memset(&info, 0, sizeof(info));
	http_stat_url(target, url, key, &info, false, false);
	if (!info.exists)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("upload of %s to target \"%s\" did not land", key, target->env),
				 errdetail("The server accepted %zu bytes but then had no such object.", len)));
	if (info.size >= 0 && info.size != (int64) len)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("upload of %s to target \"%s\" did not land whole", key, target->env),
				 errdetail("%zu bytes were sent; the server has %lld.", len, (long long) info.size)));
}

/* The object at key: exists, size, and with want_sha256 its SHA-256. */
static void
http_stat(StorageTarget *target, const char *key, StorageObjectInfo *info, bool want_sha256)
{
	http_stat_url(target, object_url(target, key), key, info, want_sha256, false);
}

/* A GET of the document at key, hashed after decompressing a gzip one. */
static void
http_stat_document(StorageTarget *target, const char *key, StorageObjectInfo *info)
{
	http_stat_url(target, object_url(target, key), key, info, true, true);
}

static HttpRequest *
http_stat_request(StorageTarget *target, const char *key, bool want_sha256)
{
	return stat_url_request(target, object_url(target, key), key, want_sha256);
}

/*
 * A HEAD of the collection prefix: only a 404 or 410 says it does not
 * exist (anything else: cannot tell).
 */
static bool
http_prefix_empty(StorageTarget *target, const char *prefix)
{
	HttpRequest *req = new_request(target, "HEAD", object_url(target, prefix),
								   psprintf("check of %s", prefix));
	HttpResponse *resp = http_perform(req);

	return resp->curl_code == 0 && (resp->status == 404 || resp->status == 410);
}

/* Makes sure the collection dir (a key, without trailing slash) exists. */
static void
ensure_collection(StorageTarget *target, const char *dir)
{
	HttpTarget *ht = target->backend_state;
	char	   *slash;
	bool		found;
	HttpRequest *req;
	HttpResponse *resp;

	if (ht->no_mkcol || dir[0] == '\0' || collections_lookup(ht->collections, dir) != NULL)
		return;
	slash = strrchr(dir, '/');
	if (slash != NULL)
		ensure_collection(target, pnstrdup(dir, slash - dir));

	req = new_request(target, "MKCOL", psprintf("%s/", object_url(target, dir)),
					  psprintf("creation of the collection %s/", dir));
	resp = http_perform(req);
	/* 201 made, 405 already there; 501: no WebDAV (copy falls back) */
	if (resp->curl_code == 0 && (resp->status == 501 || resp->status == 400))
	{
		ht->no_mkcol = true;
		return;
	}
	if (!http_ok(resp) && !(resp->curl_code == 0 && resp->status == 405))
		storage_remote_fail(target, req, resp);
	(void) collections_insert(ht->collections, MemoryContextStrdup(ht->cxt, dir), &found);
}

/*
 * A WebDAV COPY of src_key to dst_key, after making sure (with MKCOL,
 * synchronously, once per collection) that the destination's parent
 * exists.  WebDAV keeps no checksum with an object (nginx has no
 * PROPPATCH): sha256 is not sent.
 */
static HttpRequest *
http_copy_request(StorageTarget *target, const char *src_key, const char *dst_key,
				  const char *content_type, const char *cache_control, const char *sha256)
{
	HttpRequest *req = new_request(target, "COPY", object_url(target, src_key),
								   psprintf("copy of %s to %s", src_key, dst_key));
	const char *slash = strrchr(dst_key, '/');

	if (slash != NULL)
		ensure_collection(target, pnstrdup(dst_key, slash - dst_key));
	req->headers = http_header(req->headers, "Destination", object_url(target, dst_key));
	req->headers = http_header(req->headers, "Overwrite", "T");
	return req;
}

/* true: copied; false: the server has no COPY (405, 501); throws otherwise. */
static bool
http_copy_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp, char *md5)
{
	HttpTarget *ht = target->backend_state;

	md5[0] = '\0';				/* a WebDAV server's ETag is no checksum */
	if (http_ok(resp))
		return true;
	if (resp->curl_code != 0 || (resp->status != 405 && resp->status != 501))
		storage_remote_fail(target, req, resp);
	ht->no_copy = true;
	return false;
}

/*
 * A copy without WebDAV: a GET of src_key and a PUT of its bytes at
 * dst_key, through memory: at most the size the HEAD told, or
 * publish.max_release_size when it told none.
 */
static void
download_upload(StorageTarget *target, const char *src_key, const char *dst_key,
				const char *content_type, const char *cache_control)
{
	char	   *src = object_url(target, src_key);
	char	   *what = psprintf("copy of %s to %s", src_key, dst_key);
	HttpRequest *req;
	HttpResponse *resp;
	StorageObjectInfo info;
	int64		max;

	memset(&info, 0, sizeof(info));
	http_stat_url(target, src, src_key, &info, false, false);
	if (!info.exists)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\": the source does not exist", what, target->env)));
	/* a size the HEAD did not tell is bounded as a release is */
	max = info.size >= 0 ? info.size : (int64) publish_max_release_size * 1024;
	if (max >= (int64) MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s failed on target \"%s\": the source has %lld bytes, too many to copy through memory",
						what, target->env, (long long) max),
				 errhint("Use a server with WebDAV COPY.")));
	req = new_request(target, "GET", src, psprintf("download of %s", src_key));
	req->body_limit = max + 1;
	resp = http_perform(req);
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (resp->body_bytes != (int64) resp->body_len && info.size < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s failed on target \"%s\": the source is larger than publish.max_release_size",
						what, target->env),
				 errdetail("The server told no size, and without WebDAV COPY the bytes are copied through memory.")));
	if (resp->body_bytes != (int64) resp->body_len)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\": the source changed while it was copied",
						what, target->env)));
	/* the bytes as stored (libcurl decodes nothing), with their encoding */
	http_put(target, dst_key, resp->body, resp->body_len, content_type, cache_control,
			 resp->content_encoding, NULL);
}

/* WebDAV COPY (parents made with MKCOL), or GET + PUT where COPY is missing. */
static void
http_copy(StorageTarget *target, const char *src_key, const char *dst_key,
		  const char *content_type, const char *cache_control)
{
	HttpTarget *ht = target->backend_state;

	if (!ht->no_copy)
	{
		HttpRequest *req = http_copy_request(target, src_key, dst_key, content_type,
											 cache_control, NULL);
		char		md5[33];

		if (http_copy_result(target, req, http_perform(req), md5))
			return;
	}
	download_upload(target, src_key, dst_key, content_type, cache_control);
}

/*
 * Did a MOVE answered 404, its source gone, happen at an earlier send
 * whose answer was lost (libcurl itself sends a request again when a kept
 * connection closed without an answer)?  The source was the caller's
 * alone, just made by a COPY, so yes when dst_key now holds src_key's
 * bytes (both downloaded and hashed).
 */
static bool
move_answer_lost(StorageTarget *target, HttpResponse *resp, const char *src_key,
				 const char *dst_key)
{
	StorageObjectInfo src;
	StorageObjectInfo dst;

	if (resp->curl_code != 0 || resp->status != 404)
		return false;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	http_stat(target, src_key, &src, true);
	http_stat(target, dst_key, &dst, true);
	return src.exists && dst.exists && src.size == dst.size &&
		strcmp(src.sha256, dst.sha256) == 0;
}

/*
 * A COPY to tmp_key, then a MOVE of it over dst_key.  nginx writes a COPY
 * into its destination in place (truncated first: a reader meanwhile gets
 * a short or mixed file), but makes the MOVE of a file a rename(2), which
 * replaces dst_key in one step.  tmp_key is the caller's alone: the COPY
 * overwrites what an earlier attempt left there, and a MOVE retried after
 * a lost answer is known done by dst_key's bytes.  A MOVE that fails leaves
 * dst_key as it was and removes tmp_key (a DELETE whose answer is
 * ignored).  A server without COPY or MOVE (405, 501) gets a GET and a PUT
 * of dst_key, which nginx, too, replaces in one step.
 */
static void
http_copy_over(StorageTarget *target, const char *src_key, const char *dst_key,
			   const char *tmp_key, const char *content_type, const char *cache_control)
{
	HttpTarget *ht = target->backend_state;

	if (!ht->no_copy && !ht->no_move)
	{
		HttpRequest *req = http_copy_request(target, src_key, tmp_key, content_type,
											 cache_control, NULL);
		char		md5[33];

		if (http_copy_result(target, req, http_perform(req), md5))
		{
			HttpResponse *resp;

			req = new_request(target, "MOVE", object_url(target, tmp_key),
							  psprintf("move of %s to %s", tmp_key, dst_key));
			req->headers = http_header(req->headers, "Destination", object_url(target, dst_key));
			req->headers = http_header(req->headers, "Overwrite", "T");
			resp = http_perform(req);
			if (http_ok(resp) || move_answer_lost(target, resp, src_key, dst_key))
				return;
			(void) http_perform(new_request(target, "DELETE", object_url(target, tmp_key),
											psprintf("removal of %s", tmp_key)));
			if (resp->curl_code != 0 || (resp->status != 405 && resp->status != 501))
				storage_remote_fail(target, req, resp);
			ht->no_move = true;
		}
	}
	download_upload(target, src_key, dst_key, content_type, cache_control);
}

/*
 * Listings: PROPFIND with Depth: 1 of a collection (RFC 4918), asking
 * for the members' sizes.  nginx's own dav module has no PROPFIND (405);
 * its dav_ext module (Debian: libnginx-mod-http-dav-ext) adds it.  The
 * answer comes whole: a collection of tiles is one column of a zoom level.
 */
#define DAV_LIST_BODY_MAX	(64 * 1024 * 1024)

static HttpRequest *
http_list_request(StorageTarget *target, const char *root, const char *sub, const char *next)
{
	char	   *folder = psprintf("%s%s", root, sub);
	HttpRequest *req = new_request(target, "PROPFIND", object_url(target, folder),
								   psprintf("listing of %s", folder));

	req->headers = http_header(req->headers, "Depth", "1");
	req->headers = http_header(req->headers, "Content-Type", "application/xml; charset=utf-8");
	req->body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
		"<D:propfind xmlns:D=\"DAV:\"><D:prop><D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>";
	req->body_len = strlen(req->body);
	req->body_limit = DAV_LIST_BODY_MAX;
	return req;
}

/*
 * The content of the first element named name (in any namespace prefix)
 * within [p, end), raw, or NULL; *after gets where it ends.
 */
static const char *
dav_element(const char *p, const char *end, const char *name, size_t *len, const char **after)
{
	size_t		n = strlen(name);

	for (const char *q = p; q < end && (q = memchr(q, '<', end - q)) != NULL; q++)
	{
		const char *t = q + 1;
		const char *colon;
		const char *gt = memchr(t, '>', end - t);

		if (gt == NULL)
			return NULL;
		if (*t == '/' || *t == '?' || *t == '!')
			continue;
		colon = memchr(t, ':', gt - t);
		if (colon != NULL)
			t = colon + 1;
		if ((size_t) (gt - t) >= n && strncmp(t, name, n) == 0 &&
			(t[n] == '>' || t[n] == ' ' || t[n] == '/'))
		{
			const char *start = gt + 1;
			const char *stop;

			if (gt[-1] == '/')
			{
				/* <name/>: empty */
				*len = 0;
				*after = start;
				return start;
			}
			for (stop = start; stop < end && (stop = memchr(stop, '<', end - stop)) != NULL; stop++)
			{
				const char *c = stop + 1;
				const char *cgt;

				if (*c != '/')
					continue;
				c++;
				cgt = memchr(c, '>', end - c);
				if (cgt == NULL)
					return NULL;
				colon = memchr(c, ':', cgt - c);
				if (colon != NULL)
					c = colon + 1;
				if ((size_t) (cgt - c) == n && strncmp(c, name, n) == 0)
				{
					*len = stop - start;
					*after = cgt + 1;
					return start;
				}
			}
			return NULL;
		}
	}
	return NULL;
}

/* Decodes %XX escapes of a URL path (palloc'd). */
static char *
percent_decode(const char *s)
{
	char	   *out = palloc(strlen(s) + 1);
	char	   *o = out;

	for (; *s; s++)
	{
		if (s[0] == '%' && isxdigit((unsigned char) s[1]) && isxdigit((unsigned char) s[2]))
		{
			char		hex[3] = {s[1], s[2], '\0'};

			*o++ = (char) strtol(hex, NULL, 16);
			s += 2;
		}
		else
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

/* The path of a URL ("/..." after the authority), or the text itself. */
static const char *
url_path(const char *url)
{
	const char *sep = strstr(url, "://");

	if (sep == NULL)
		return url;
	sep = strchr(sep + 3, '/');
	return sep != NULL ? sep : "/";
}

/*
 * Reads a 207 Multi-Status: each member that is no collection, with its
 * href (named below root) and getcontentlength.  A 404 is an empty folder;
 * 405 or 501, a server without PROPFIND (false).
 */
static bool
http_list_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp,
				 const char *root, StorageListPage *page)
{
	char	   *base = percent_decode(url_path(object_url(target, root)));
	size_t		baselen = strlen(base);
	const char *p;
	const char *end;
	int			cap = 64;

	memset(page, 0, sizeof(StorageListPage));
	if (resp->curl_code == 0 && (resp->status == 404 || resp->status == 410))
		return true;
	if (resp->curl_code == 0 && (resp->status == 405 || resp->status == 501))
		return false;
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (resp->status != 207 || resp->body == NULL || resp->body_bytes != (int64) resp->body_len)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s on target \"%s\" got no listing it could read", req->what, target->env),
				 errdetail("The server answered %ld with %lld bytes.", resp->status,
						   (long long) resp->body_bytes)));
	page->entries = palloc(sizeof(StorageListEntry) * cap);
	p = resp->body;
	end = resp->body + resp->body_len;
	for (;;)
	{
		size_t		len;
		const char *after;
		const char *r = dav_element(p, end, "response", &len, &after);
		const char *rend;
		const char *v;
		const char *ignored;
		char	   *href;
		char	   *size;
		StorageListEntry *e;

		if (r == NULL)
			break;
		rend = r + len;
		p = after;
		v = dav_element(r, rend, "href", &len, &ignored);
		if (v == NULL)
			continue;
		href = percent_decode(url_path(storage_xml_text(v, len)));
		v = dav_element(r, rend, "collection", &len, &ignored);
		if (v != NULL || strncmp(href, base, baselen) != 0 || href[baselen] == '\0')
			continue;			/* a collection, or not below root */
		v = dav_element(r, rend, "getcontentlength", &len, &ignored);
		if (v == NULL)
			continue;
		size = pnstrdup(v, len);
		if (page->n == cap)
		{
			cap *= 2;
			page->entries = repalloc(page->entries, sizeof(StorageListEntry) * cap);
		}
		e = &page->entries[page->n++];
		e->name = href + baselen;
		e->size = strtoll(size, NULL, 10);
		e->md5[0] = '\0';		/* a WebDAV ETag is no checksum */
	}
	return true;
}

/* DELETE of the object at key; one that is not there is no failure. */
static void
http_remove(StorageTarget *target, const char *key)
{
	HttpRequest *req = new_request(target, "DELETE", object_url(target, key),
								   psprintf("removal of %s", key));
	HttpResponse *resp = http_perform(req);

	if (!http_ok(resp) && resp->status != 404 && resp->status != 410)
		storage_remote_fail(target, req, resp);
}

/* GET of the object at key, written into f. */
static int64
http_get(StorageTarget *target, const char *key, FILE *f, int64 max_bytes)
{
	HttpRequest *req = new_request(target, "GET", object_url(target, key),
								   psprintf("download of %s", key));

	return storage_remote_get(target, req, f, max_bytes);
}

/*
 * Removes the collection prefix (a key ending in '/') with one DELETE,
 * "Depth: infinity", which WebDAV servers carry out whole (nginx: a
 * recursive removal of the directory).  The server does not say what the
 * collection held, so it counts as one folder removed uncounted; a 404 or
 * 410 means there was none.  The collections remembered under it are
 * forgotten: a later copy makes them again.
 */
static void
http_remove_prefix(StorageTarget *target, const char *prefix, StorageRemoved *removed)
{
	HttpTarget *ht = target->backend_state;
	HttpRequest *req = new_request(target, "DELETE", object_url(target, prefix),
								   psprintf("removal of %s", prefix));
	HttpResponse *resp;

	req->headers = http_header(req->headers, "Depth", "infinity");
	resp = http_perform(req);
	if (resp->curl_code == 0 && (resp->status == 404 || resp->status == 410))
		return;
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	collections_reset(ht->collections);
	/* success is 204; a 207 lists members it could not remove (RFC 4918) */
	if (resp->status == 207)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\": the server could not remove all of it",
						req->what, target->env),
				 errdetail("It answered 207 Multi-Status, naming what it kept.")));
	removed->uncounted_folders++;
}

/* http:// and https:// differ only in their scheme. */
#define HTTP_BACKEND(scheme_) { \
	.scheme = scheme_, \
	.service = "HTTP storage", \
	.credentials = "credentials", \
	.open = http_open, \
	.put = http_put, \
	.stat = http_stat, \
	.stat_document = http_stat_document, \
	.copy = http_copy, \
	.copy_over = http_copy_over, \
	.remove = http_remove, \
	.get = http_get, \
	.stat_request = http_stat_request, \
	.copy_request = http_copy_request, \
	.copy_result = http_copy_result, \
	.put_request = http_put_request, \
	.put_result = http_put_result, \
	.list_request = http_list_request, \
	.list_result = http_list_result, \
	.keeps_encoding = true, \
	.prefix_empty = http_prefix_empty, \
	.remove_prefix = http_remove_prefix, \
}

const StorageBackend storage_http_backend = HTTP_BACKEND("http");
const StorageBackend storage_https_backend = HTTP_BACKEND("https");
