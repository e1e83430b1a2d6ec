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
 * a server without COPY (405 or 501) gets a GET and a PUT instead.
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
					http_encode_path(key));
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

/* HEAD (or, for a checksum, a hashed GET) of url; 404 and 410 mean "no such object". */
static void
http_stat_url(StorageTarget *target, const char *url, const char *key,
			  StorageObjectInfo *info, bool want_sha256)
{
	HttpRequest *req = stat_url_request(target, url, key, want_sha256);
	HttpResponse *resp;

	resp = http_perform(req);
	storage_remote_stat_result(target, req, resp, info);
	if (info->exists)
		collections_above(target, key);
}

/* PUT, then a HEAD that checks the object is there with the size sent. */
static void
http_put(StorageTarget *target, const char *key, const char *data, size_t len,
		 const char *content_type, const char *cache_control)
{
	char	   *url = object_url(target, key);
	HttpRequest *req = new_request(target, "PUT", url, psprintf("upload of %s", key));
	HttpResponse *resp;
	StorageObjectInfo info;

	req->headers = http_header(req->headers, "Content-Type",
							   content_type ? content_type : "application/octet-stream");
	if (cache_control != NULL)
		req->headers = http_header(req->headers, "Cache-Control", cache_control);
	req->body = data;
	req->body_len = len;
	resp = http_perform(req);
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);

	/* the server said yes: check that the object is there, whole */
	memset(&info, 0, sizeof(info));
	http_stat_url(target, url, key, &info, false);
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
	http_stat_url(target, object_url(target, key), key, info, want_sha256);
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

/* WebDAV COPY (parents made with MKCOL), or GET + PUT where COPY is missing. */
static void
http_copy(StorageTarget *target, const char *src_key, const char *dst_key,
		  const char *content_type, const char *cache_control)
{
	HttpTarget *ht = target->backend_state;
	char	   *src = object_url(target, src_key);
	char	   *what = psprintf("copy of %s to %s", src_key, dst_key);
	HttpRequest *req;
	HttpResponse *resp;
	StorageObjectInfo info;

	if (!ht->no_copy)
	{
		char		md5[33];

		req = http_copy_request(target, src_key, dst_key, content_type, cache_control, NULL);
		if (http_copy_result(target, req, http_perform(req), md5))
			return;
	}

	/* no WebDAV here: download and upload */
	memset(&info, 0, sizeof(info));
	http_stat_url(target, src, src_key, &info, false);
	if (!info.exists)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\": the source does not exist", what, target->env)));
	req = new_request(target, "GET", src, psprintf("download of %s", src_key));
	req->body_limit = Max(info.size, 0) + 1;
	resp = http_perform(req);
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (resp->body_bytes != (int64) resp->body_len)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s failed on target \"%s\": the source changed while it was copied",
						what, target->env)));
	http_put(target, dst_key, resp->body, resp->body_len, content_type, cache_control);
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

const StorageBackend storage_http_backend = {
	.scheme = "http",
	.service = "HTTP storage",
	.credentials = "credentials",
	.open = http_open,
	.put = http_put,
	.stat = http_stat,
	.copy = http_copy,
	.remove = http_remove,
	.get = http_get,
	.stat_request = http_stat_request,
	.copy_request = http_copy_request,
	.copy_result = http_copy_result,
	.prefix_empty = http_prefix_empty,
};

const StorageBackend storage_https_backend = {
	.scheme = "https",
	.service = "HTTP storage",
	.credentials = "credentials",
	.open = http_open,
	.put = http_put,
	.stat = http_stat,
	.copy = http_copy,
	.remove = http_remove,
	.get = http_get,
	.stat_request = http_stat_request,
	.copy_request = http_copy_request,
	.copy_result = http_copy_result,
	.prefix_empty = http_prefix_empty,
};
