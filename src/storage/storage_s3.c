/*-------------------------------------------------------------------------
 *
 * storage_s3.c
 *	  The s3:// backend: S3-compatible object storage, requests signed with
 *	  AWS Signature Version 4 by libcurl (CURLOPT_AWS_SIGV4).
 *
 * s3://bucket/prefix, with options endpoint (default
 * https://s3.{region}.amazonaws.com), region (default us-east-1) and
 * path_style (default: true when an endpoint is given, so that MinIO and
 * friends work; false for AWS, which wants bucket.s3.region.amazonaws.com).
 * The key id and secret come from publish.set_storage_credentials, with an
 * optional session token; without them requests are anonymous.
 *
 * What libcurl 7.88 (Debian 12) does not do by itself, done here:
 *   - x-amz-content-sha256: libcurl does not add it and S3 answers 400
 *     without it; it carries the hex SHA-256 of the body, which also lets
 *     the server check the bytes it got;
 *   - canonical path and query: libcurl signs them exactly as written, so
 *     keys are percent-encoded here the way SigV4 wants (unreserved
 *     characters and '/' kept); the one query string (a listing) is
 *     written sorted and encoded;
 *   - "Expect: 100-continue" on uploads: http_client.c turns it off;
 *   - 4xx/5xx are CURLE_OK to libcurl: the status is checked, and S3's XML
 *     error (Code, Message) becomes the error text.
 *
 * put is a PutObject, verified by its ETag (the MD5 of what the server
 * stored, for a single-part upload) or else by a HEAD; copy is a
 * server-side CopyObject that sets the copy's Content-Type and
 * Cache-Control; stat is a HEAD, or a GET hashed as it arrives when a
 * checksum is wanted.  put and the tile copies store the object's SHA-256
 * as user metadata (x-amz-meta-sha256), which a HEAD returns: a re-publish
 * tells an unchanged tile without downloading it.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <json-c/json.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"

#include "publish.h"
#include "net/net.h"
#include "storage/storage.h"
#include "util/util.h"


typedef struct S3Target
{
	char	   *bucket;
	char	   *prefix;			/* without slashes around it; "" for none */
	char	   *region;
	char	   *base_url;		/* scheme://host[:port][/bucket] */
	char	   *sigv4;			/* aws:amz:{region}:s3 */
} S3Target;

static const char *EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* Throws: the target's URL or options are not usable. */
static void
bad_option(StorageTarget *target, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("storage target of environment \"%s\" has an invalid %s", target->env, what),
			 errhint("Set it again with publish.set_storage_target('%s', 's3://bucket/prefix', "
					 "'{\"endpoint\": \"https://host:port\", \"region\": \"us-east-1\", \"path_style\": true}').",
					 target->env)));
}

/* Parses bucket, prefix and options into an S3Target; called by storage_target_load. */
static void
s3_open(StorageTarget *target)
{
	S3Target   *s3 = palloc0(sizeof(S3Target));
	const char *rest = target->url + strlen("s3://");
	size_t		blen = strcspn(rest, "/");
	json_object *opts;
	json_object *v;
	const char *endpoint = NULL;
	bool		path_style;
	char	   *p;

	s3->bucket = pnstrdup(rest, blen);
	if (blen == 0 || strspn(s3->bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != blen)
		bad_option(target, "bucket name");
	p = pstrdup(rest[blen] == '/' ? rest + blen + 1 : "");
	while (*p == '/')
		p++;
	for (size_t n = strlen(p); n > 0 && p[n - 1] == '/'; n--)
		p[n - 1] = '\0';
	s3->prefix = p;

	/* parsed after the bucket check, which throws: json-c is malloc'd */
	opts = json_tokener_parse(target->options ? target->options : "{}");
	s3->region = "us-east-1";
	if (opts != NULL && json_object_object_get_ex(opts, "region", &v) && json_object_is_type(v, json_type_string))
		s3->region = pstrdup(json_object_get_string(v));
	if (opts != NULL && json_object_object_get_ex(opts, "endpoint", &v) && json_object_is_type(v, json_type_string))
		endpoint = pstrdup(json_object_get_string(v));
	path_style = (endpoint != NULL);
	if (opts != NULL && json_object_object_get_ex(opts, "path_style", &v) && json_object_is_type(v, json_type_boolean))
		path_style = json_object_get_boolean(v);
	if (opts != NULL)
		json_object_put(opts);

	if (strspn(s3->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(s3->region) ||
		s3->region[0] == '\0')
		bad_option(target, "region");
	if (endpoint == NULL)
		endpoint = psprintf("https://s3.%s.amazonaws.com", s3->region);
	{
		size_t		n = strlen(endpoint);
		const char *host;

		while (n > 0 && endpoint[n - 1] == '/')
			n--;
		endpoint = pnstrdup(endpoint, n);
		if (pg_strncasecmp(endpoint, "http://", 7) != 0 && pg_strncasecmp(endpoint, "https://", 8) != 0)
			bad_option(target, "endpoint (it must be an http or https URL)");
		host = strstr(endpoint, "://") + 3;
		if (*host == '\0' || strpbrk(host, "/?#@") != NULL)
			bad_option(target, "endpoint (scheme://host[:port], no path or credentials)");
		if (path_style)
			s3->base_url = psprintf("%s/%s", endpoint, s3->bucket);
		else
			s3->base_url = psprintf("%.*s%s.%s", (int) (host - endpoint), endpoint, s3->bucket, host);
	}
	s3->sigv4 = psprintf("aws:amz:%s:s3", s3->region);
	target->backend_state = s3;
}

/*
 * S3's error document (<Error><Code>...</Code><Message>...</Message>), for
 * the error texts of net/ (HttpRequest.error_fields).
 */
static bool
s3_error_fields(const char *body, char **code, char **message)
{
	if (strstr(body, "<Error>") == NULL)
		return false;
	*code = http_xml_element(body, "Code");
	*message = http_xml_element(body, "Message");
	return true;
}

/* The S3 error code of a response's body, or NULL. */
static char *
s3_error_code(HttpResponse *resp)
{
	char	   *code = NULL;
	char	   *message = NULL;

	if (resp->body == NULL || !s3_error_fields(resp->body, &code, &message))
		return NULL;
	return code;
}

/* The object's key in the bucket: prefix/key. */
static char *
bucket_key(S3Target *s3, const char *key)
{
	return s3->prefix[0] ? psprintf("%s/%s", s3->prefix, key) : pstrdup(key);
}

/* The object's URL: path style or virtual host, the key percent-encoded. */
static char *
object_url(S3Target *s3, const char *key)
{
	return psprintf("%s/%s", s3->base_url, url_encode_path(bucket_key(s3, key)));
}

/* A signed request (anonymous without credentials) carrying body's SHA-256. */
static HttpRequest *
new_request(StorageTarget *target, const char *method, const char *url, const char *what,
			const char *body, size_t body_len)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = storage_remote_request(target, method, url, what);

	req->error_fields = s3_error_fields;
	if (target->secret != NULL)
	{
		req->aws_sigv4 = s3->sigv4;
		req->username = target->key_id ? target->key_id : "";
		req->password = target->secret;
	}
	req->headers = http_header(req->headers, "x-amz-content-sha256",
							   body ? checksum_sha256_hex(body, body_len) : EMPTY_SHA256);
	if (target->session_token != NULL)
	{
		req->headers = http_header(req->headers, "x-amz-security-token", target->session_token);
		req->session_token = target->session_token;
	}
	req->body = body;
	req->body_len = body_len;
	return req;
}

/*
 * HEAD (with the x-amz-meta-sha256 that put and copy set, when there);
 * with want_sha256, a GET hashed as it arrives instead: the bytes
 * themselves, whoever wrote them.
 */
static HttpRequest *
s3_stat_request(StorageTarget *target, const char *key, bool want_sha256)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = new_request(target, want_sha256 ? "GET" : "HEAD", object_url(s3, key),
								   psprintf("check of %s", key), NULL, 0);

	req->hash_body = want_sha256;
	if (want_sha256)
		req->body_limit = 1024; /* enough for an error's words */
	return req;
}

static void
s3_stat(StorageTarget *target, const char *key, StorageObjectInfo *info, bool want_sha256)
{
	HttpRequest *req = s3_stat_request(target, key, want_sha256);
	HttpResponse *resp;

	resp = http_perform(req);
	storage_remote_stat_result(target, req, resp, info);
}

/* A GET of the document at key, hashed after decompressing a gzip one. */
static void
s3_stat_document(StorageTarget *target, const char *key, StorageObjectInfo *info)
{
	HttpRequest *req = s3_stat_request(target, key, true);

	storage_remote_hash_document(req);
	storage_remote_stat_result(target, req, http_perform(req), info);
}

/*
 * PutObject of data, with the x-amz-meta-sha256 a later HEAD reads (skip
 * checks of tiles, the check of a rollback's document): sha256, that of
 * what a reader has after decoding, or else of data.
 */
static HttpRequest *
put_request(StorageTarget *target, const char *key, const char *data, size_t len,
			const char *content_type, const char *cache_control,
			const char *content_encoding, const char *sha256)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = new_request(target, "PUT", object_url(s3, key),
								   psprintf("upload of %s", key), data, len);

	req->headers = http_header(req->headers, "Content-Type",
							   content_type ? content_type : "application/octet-stream");
	if (cache_control != NULL)
		req->headers = http_header(req->headers, "Cache-Control", cache_control);
	if (content_encoding != NULL)
		req->headers = http_header(req->headers, "Content-Encoding", content_encoding);
	req->headers = http_header(req->headers, "x-amz-meta-sha256",
							   sha256 ? sha256 : checksum_sha256_hex(data, len));
	return req;
}

static HttpRequest *
s3_put_request(StorageTarget *target, const char *key, const char *data, size_t len,
			   const char *content_type, const char *cache_control, const char *md5)
{
	return put_request(target, key, data, len, content_type, cache_control, NULL, NULL);
}

/*
 * Throws unless the PutObject succeeded, or its ETag (the MD5 of what the
 * server stored, for a single-part upload) is not md5; false when the ETag
 * is no MD5 (then a HEAD must check the size).
 */
static bool
s3_put_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp, const char *md5)
{
	char		etag_md5[33];

	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (!storage_etag_md5(resp->etag, etag_md5))
		return false;
	if (strcmp(etag_md5, md5) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s to target \"%s\" did not land intact", req->what, target->env),
				 errdetail("The server's ETag is %s; the MD5 of the bytes sent is \"%s\".",
						   resp->etag, md5)));
	return true;
}

/* PutObject, checked by its ETag (or a HEAD when the ETag is not an MD5). */
static void
s3_put(StorageTarget *target, const char *key, const char *data, size_t len,
	   const char *content_type, const char *cache_control, const char *content_encoding,
	   const char *sha256)
{
	HttpRequest *req = put_request(target, key, data, len, content_type, cache_control,
								   content_encoding, sha256);
	char		md5[33];

	checksum_md5_hex(data, len, md5);
	if (!s3_put_result(target, req, http_perform(req), md5))
	{
		StorageObjectInfo info;

		memset(&info, 0, sizeof(info));
		s3_stat(target, key, &info, false);
		if (!info.exists || info.size != (int64) len)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("upload of %s to target \"%s\" did not land whole", key, target->env)));
	}
}

/*
 * CopyObject on the server; the copy gets content_type and cache_control
 * and, when given, sha256 as x-amz-meta-sha256 (otherwise the source's
 * metadata is copied along, or replaced when a type or cache is given).
 * Its answer is kept whole, up to S3_COPY_BODY_MAX: whitespace that keeps
 * a long copy's connection alive can come before the result.
 */
#define S3_COPY_BODY_MAX	(1024 * 1024)

static HttpRequest *
copy_request(StorageTarget *target, const char *src_key, const char *dst_key,
			 const char *content_type, const char *cache_control, const char *sha256,
			 const char *content_encoding)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = new_request(target, "PUT", object_url(s3, dst_key),
								   psprintf("copy of %s to %s", src_key, dst_key), "", 0);

	req->headers = http_header(req->headers, "x-amz-copy-source",
							   psprintf("/%s/%s", s3->bucket,
										url_encode_path(bucket_key(s3, src_key))));
	if (content_type != NULL || cache_control != NULL || sha256 != NULL)
	{
		req->headers = http_header(req->headers, "x-amz-metadata-directive", "REPLACE");
		req->headers = http_header(req->headers, "Content-Type",
								   content_type ? content_type : "application/octet-stream");
		if (cache_control != NULL)
			req->headers = http_header(req->headers, "Cache-Control", cache_control);
		if (sha256 != NULL)
			req->headers = http_header(req->headers, "x-amz-meta-sha256", sha256);
		if (content_encoding != NULL && content_encoding[0] != '\0')
			req->headers = http_header(req->headers, "Content-Encoding", content_encoding);
	}
	else
		req->headers = lappend(req->headers, pstrdup("Content-Type:"));
	req->body_limit = S3_COPY_BODY_MAX;
	return req;
}

/* Tiles: nothing sets their Content-Encoding, so none is carried over. */
static HttpRequest *
s3_copy_request(StorageTarget *target, const char *src_key, const char *dst_key,
				const char *content_type, const char *cache_control, const char *sha256)
{
	return copy_request(target, src_key, dst_key, content_type, cache_control, sha256, NULL);
}

/*
 * Throws unless CopyObject succeeded.  S3 answers 200 when it starts a
 * copy, may send whitespace while it copies, and then a CopyObjectResult
 * or an Error: success is a whole answer with a CopyObjectResult.  md5 gets
 * the copy's ETag from that result when it is a plain MD5.
 */
static bool
s3_copy_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp, char *md5)
{
	char	   *etag;

	if (http_ok(resp) && resp->body != NULL)
	{
		/* the padding goes, so that an error's words are what is read */
		size_t		pad = strspn(resp->body, " \t\r\n");

		memmove(resp->body, resp->body + pad, resp->body_len - pad + 1);
		resp->body_len -= pad;
		resp->body_bytes -= pad;
	}
	if (!http_ok(resp) || s3_error_code(resp) != NULL)
	{
		if (http_ok(resp))
			resp->status = 500;
		storage_remote_fail(target, req, resp);
	}
	if (resp->body == NULL || resp->body_bytes != (int64) resp->body_len ||
		strstr(resp->body, "<CopyObjectResult") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s on target \"%s\" got no CopyObjectResult", req->what, target->env),
				 errdetail("The server answered %ld with %lld bytes; the copy is not known to be made.",
						   resp->status, (long long) resp->body_bytes)));
	etag = http_xml_element(resp->body, "ETag");
	(void) storage_etag_md5(etag ? etag : "", md5);
	return true;
}

/*
 * A CopyObject that replaces the metadata would drop the source's
 * Content-Encoding (a compressed release.json) and x-amz-meta-sha256: a
 * HEAD of the source tells them first, and the copy gets them again.
 */
static void
s3_copy(StorageTarget *target, const char *src_key, const char *dst_key,
		const char *content_type, const char *cache_control)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req;
	const char *encoding = NULL;
	const char *sha256 = NULL;
	char		md5[33];

	if (content_type != NULL || cache_control != NULL)
	{
		HttpRequest *head = new_request(target, "HEAD", object_url(s3, src_key),
										psprintf("check of %s", src_key), NULL, 0);
		HttpResponse *resp = http_perform(head);

		if (resp->curl_code == 0 && (resp->status == 404 || resp->status == 410))
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("copy of %s to %s failed on target \"%s\": the source does not exist",
							src_key, dst_key, target->env)));
		if (!http_ok(resp))
			storage_remote_fail(target, head, resp);
		encoding = pstrdup(resp->content_encoding);
		if (strlen(resp->meta_sha256) == 64)
			sha256 = pstrdup(resp->meta_sha256);
	}
	req = copy_request(target, src_key, dst_key, content_type, cache_control, sha256, encoding);

	(void) s3_copy_result(target, req, http_perform(req), md5);
}

/* Percent-encodes every byte but the unreserved ones (a SigV4 query value). */
static char *
encode_query_value(const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(&buf, (char) *p);
		else
			appendStringInfo(&buf, "%%%02X", *p);
	}
	return buf.data;
}

/*
 * ListObjectsV2 of prefix with max-keys 1: no <Contents> means no object.
 * The query is written sorted and encoded, as SigV4 signs it.  Any
 * failure means "cannot tell".
 */
static bool
s3_prefix_empty(StorageTarget *target, const char *prefix)
{
	S3Target   *s3 = target->backend_state;
	char	   *url = psprintf("%s/?list-type=2&max-keys=1&prefix=%s", s3->base_url,
							   encode_query_value(bucket_key(s3, prefix)));
	HttpRequest *req = new_request(target, "GET", url, psprintf("listing of %s", prefix), NULL, 0);
	HttpResponse *resp = http_perform(req);

	return http_ok(resp) && resp->body != NULL && strstr(resp->body, "<ListBucketResult") != NULL &&
		strstr(resp->body, "<Contents>") == NULL && resp->body_bytes == (int64) resp->body_len;
}

/* Bytes of a listing page kept: a page of 1,000 keys is some 300 kB. */
#define S3_LIST_BODY_MAX	(8 * 1024 * 1024)

/*
 * ListObjectsV2 of the keys that start with root + sub, 1,000 a page
 * (continued from the token next).  The query is written sorted and
 * encoded, as SigV4 signs it.
 */
static HttpRequest *
s3_list_request(StorageTarget *target, const char *root, const char *sub, const char *next)
{
	S3Target   *s3 = target->backend_state;
	char	   *prefix = bucket_key(s3, psprintf("%s%s", root, sub));
	char	   *url;
	HttpRequest *req;

	url = psprintf("%s/?%s%slist-type=2&max-keys=1000&prefix=%s", s3->base_url,
				   next ? "continuation-token=" : "", next ? psprintf("%s&", encode_query_value(next)) : "",
				   encode_query_value(prefix));
	req = new_request(target, "GET", url, psprintf("listing of %s%s", root, sub), NULL, 0);
	req->body_limit = S3_LIST_BODY_MAX;
	return req;
}

/*
 * The text of the element tag within [p, end), or NULL (entities
 * replaced).
 */
static char *
xml_field(const char *p, const char *end, const char *tag)
{
	size_t		len;
	const char *start = http_xml_span(p, end, tag, &len);

	return start ? storage_xml_text(start, len) : NULL;
}

/*
 * Reads a ListObjectsV2 page: each <Contents> with its Key (named below
 * root), Size and ETag (the MD5, for an object written in one part).
 */
static bool
s3_list_result(StorageTarget *target, HttpRequest *req, HttpResponse *resp,
			   const char *root, StorageListPage *page)
{
	S3Target   *s3 = target->backend_state;
	char	   *base = bucket_key(s3, root);
	size_t		baselen = strlen(base);
	const char *p;
	int			cap = 64;
	char	   *truncated;

	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (resp->body == NULL || strstr(resp->body, "<ListBucketResult") == NULL ||
		resp->body_bytes != (int64) resp->body_len)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("%s on target \"%s\" got no listing it could read", req->what, target->env),
				 errdetail("The answer had %lld bytes.", (long long) resp->body_bytes)));
	memset(page, 0, sizeof(StorageListPage));
	page->entries = palloc(sizeof(StorageListEntry) * cap);
	p = resp->body;
	while ((p = strstr(p, "<Contents>")) != NULL)
	{
		const char *end = strstr(p, "</Contents>");
		char	   *key;
		char	   *size;
		char	   *etag;
		StorageListEntry *e;

		if (end == NULL)
			break;
		key = xml_field(p, end, "Key");
		size = xml_field(p, end, "Size");
		etag = xml_field(p, end, "ETag");
		p = end;
		if (key == NULL || size == NULL || strncmp(key, base, baselen) != 0)
			continue;
		if (page->n == cap)
		{
			cap *= 2;
			page->entries = repalloc(page->entries, sizeof(StorageListEntry) * cap);
		}
		e = &page->entries[page->n++];
		e->name = key + baselen;
		e->size = strtoll(size, NULL, 10);
		(void) storage_etag_md5(etag ? etag : "", e->md5);
	}
	truncated = http_xml_element(resp->body, "IsTruncated");
	if (truncated != NULL && strcmp(truncated, "true") == 0)
	{
		page->next = xml_field(resp->body, resp->body + resp->body_len, "NextContinuationToken");
		if (page->next == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("%s on target \"%s\" was cut short without a continuation token",
							req->what, target->env)));
	}
	return true;
}

/* DeleteObject (S3 answers 204 whether or not the object was there). */
static void
s3_remove(StorageTarget *target, const char *key)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = new_request(target, "DELETE", object_url(s3, key),
								   psprintf("removal of %s", key), NULL, 0);
	HttpResponse *resp = http_perform(req);

	if (!http_ok(resp) && resp->status != 404)
		storage_remote_fail(target, req, resp);
}

/* GetObject, written into f. */
static int64
s3_get(StorageTarget *target, const char *key, FILE *f, int64 max_bytes)
{
	S3Target   *s3 = target->backend_state;
	HttpRequest *req = new_request(target, "GET", object_url(s3, key),
								   psprintf("download of %s", key), NULL, 0);

	return storage_remote_get(target, req, f, max_bytes);
}

/*
 * Purges: a listing (the tile listings' ListObjectsV2) and DeleteObjects.
 * Each page of the prefix's listing is deleted with one DeleteObjects
 * (POST ?delete, at most 1,000 keys, Quiet, with the Content-MD5 AWS
 * requires of it), and the listing starts again from the beginning: what
 * it listed before is gone, so no continuation token is needed.  A key
 * the server could not delete fails the removal.
 */

/* text with &, <, >, " and ' escaped for an XML element. */
static void
xml_escape(StringInfo buf, const char *text)
{
	for (const char *p = text; *p; p++)
	{
		switch (*p)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&apos;");
				break;
			default:
				appendStringInfoChar(buf, *p);
		}
	}
}

/*
 * DeleteObjects of the entries of page (named below prefix), Quiet: the
 * answer names only the keys it could not delete, and any fails the
 * removal.
 */
static void
s3_delete_objects(StorageTarget *target, const char *prefix, const StorageListPage *page)
{
	S3Target   *s3 = target->backend_state;
	StringInfoData body;
	char		md5_hex[33];
	char		md5[16];
	char		md5_b64[32];
	int			n;
	HttpRequest *req;
	HttpResponse *resp;

	Assert(page->n <= 1000);
	initStringInfo(&body);
	appendStringInfoString(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
						   "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>");
	for (int i = 0; i < page->n; i++)
	{
		appendStringInfoString(&body, "<Object><Key>");
		xml_escape(&body, bucket_key(s3, psprintf("%s%s", prefix, page->entries[i].name)));
		appendStringInfoString(&body, "</Key></Object>");
	}
	appendStringInfoString(&body, "</Delete>");

	checksum_md5_hex(body.data, body.len, md5_hex);
	for (int i = 0; i < 16; i++)
	{
		char		byte[3] = {md5_hex[2 * i], md5_hex[2 * i + 1], '\0'};

		md5[i] = (char) strtol(byte, NULL, 16);
	}
	n = pg_b64_encode(md5, sizeof(md5), md5_b64, sizeof(md5_b64) - 1);
	if (n < 0)
		elog(ERROR, "publish: could not encode an MD5 in base64");
	md5_b64[n] = '\0';

	req = new_request(target, "POST", psprintf("%s/?delete=", s3->base_url),
					  psprintf("removal of %d objects under %s", page->n, prefix),
					  body.data, body.len);
	req->headers = http_header(req->headers, "Content-Type", "application/xml");
	req->headers = http_header(req->headers, "Content-MD5", md5_b64);
	resp = http_perform(req);
	if (!http_ok(resp))
		storage_remote_fail(target, req, resp);
	if (resp->body != NULL && strstr(resp->body, "<Error>") != NULL)
	{
		/* the key is named from the page, never from the server's text */
		char	   *key = http_xml_element(resp->body, "Key");

		for (int i = 0; key != NULL && i < page->n; i++)
			if (strcmp(key, bucket_key(s3, psprintf("%s%s", prefix, page->entries[i].name))) == 0)
			{
				req->what = psprintf("removal of %s%s", prefix, page->entries[i].name);
				break;
			}
		resp->status = 500;
		storage_remote_fail(target, req, resp);
	}
}

/*
 * Removes every object under prefix: the first page of its listing
 * deleted, until the listing is empty; counts them and their bytes.
 */
static void
s3_remove_prefix(StorageTarget *target, const char *prefix, StorageRemoved *removed)
{
	char	   *first = NULL;

	for (;;)
	{
		StorageListPage page;

		CHECK_FOR_INTERRUPTS();
		(void) storage_remote_list_page(target, prefix, NULL, &page);
		if (page.n == 0)
			break;
		/* a server that says it deleted, and did not, is not asked forever */
		if (first != NULL && strcmp(first, page.entries[0].name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("S3 still lists %s%s on target \"%s\" after deleting it",
							prefix, first, target->env)));
		first = pstrdup(page.entries[0].name);
		s3_delete_objects(target, prefix, &page);
		for (int i = 0; i < page.n; i++)
		{
			removed->objects++;
			removed->bytes += Max(page.entries[i].size, 0);
		}
		pfree(page.entries);
	}
}

const StorageBackend storage_s3_backend = {
	.scheme = "s3",
	.service = "S3",
	.credentials = "key id and secret",
	.open = s3_open,
	.put = s3_put,
	.stat = s3_stat,
	.stat_document = s3_stat_document,
	.copy = s3_copy,
	.remove = s3_remove,
	.get = s3_get,
	.stat_request = s3_stat_request,
	.copy_request = s3_copy_request,
	.copy_result = s3_copy_result,
	.head_has_sha256 = true,
	.etag_is_md5 = true,
	.put_request = s3_put_request,
	.put_result = s3_put_result,
	.list_request = s3_list_request,
	.list_result = s3_list_result,
	.list_recursive = true,
	.keeps_encoding = true,
	.prefix_empty = s3_prefix_empty,
	.remove_prefix = s3_remove_prefix,
};
