/*-------------------------------------------------------------------------
 *
 * http_client.c
 *	  HTTP requests through libcurl for the remote storage backends: one
 *	  request with retries, many in parallel, and the error text a person
 *	  reads.
 *
 * libcurl is initialised lazily, on the first request of a process (the
 * worker, or a backend calling publish._storage_put), never in the
 * postmaster.  A curl "share" object kept for the life of the process holds
 * the connection and DNS caches, so consecutive requests reuse their
 * connection; every easy handle and header list is freed when its request
 * ends, on every path (PG_FINALLY around curl_easy_perform).
 *
 * libcurl's callbacks never throw: they copy bytes into buffers allocated
 * before the transfer, and the progress callback only looks at PostgreSQL's
 * interrupt flags and asks libcurl to abort; CHECK_FOR_INTERRUPTS runs
 * after curl_easy_perform returns, so a SIGTERM or a cancel ends a transfer
 * within a second.
 *
 * Safety: only http and https, never a redirect (a 3xx is an error naming
 * the Location), TLS peers and host names verified (publish.storage_ca_file
 * names other CAs), SIGALRM left alone (CURLOPT_NOSIGNAL).  Credentials go
 * through CURLOPT_USERNAME/PASSWORD or the bearer option, never in a URL.
 * Error texts are built from the status, libcurl's message and the fields
 * parsed out of a body (the code and message of a service's error
 * document, which the storage backend parses; an HTML title; else its
 * first line), each bounded, made printable and masked of every form of
 * the request's secrets (redact.c), since a server may echo the request;
 * what a failed attempt received is wiped once it is in words.
 *
 * Retries: connection failures, timeouts, cut transfers, 5xx, 408 and 429
 * are retried up to publish.storage_max_attempts, after a wait of
 * publish.storage_retry_delay doubled per retry (at most
 * publish.storage_retry_max_delay), of which a random half is jitter.
 * Each retry is announced through req->warn before the wait.
 *
 * Two ways to run requests: http_perform, one request at a time with a
 * fresh easy handle; and the multi runner (http_multi_*), many at once
 * through a libcurl multi handle and a fixed pool of reused easy handles,
 * for step 4's tiles.  Both share the option setting (configure_handle)
 * and the end of a transfer (attempt_finish), so timeouts, stall
 * detection, retries and error texts are the same.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <curl/curl.h>
#include <unistd.h>
#include <zlib.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "publish.h"
#include "net/net.h"
#include "util/util.h"

static bool curl_ready = false;
static CURLSH *curl_share = NULL;

/* What the callbacks of one transfer write into (allocated before it). */
typedef struct TransferState
{
	HttpResponse *resp;
	size_t		keep_cap;		/* bytes of the body kept, at most */
	size_t		body_cap;		/* bytes resp->body holds now (grows to
								 * keep_cap) */
	MemoryContext body_cxt;		/* where resp->body is */
	bool		body_oom;		/* it could not grow */
	void	   *sha_ctx;		/* SHA-256 of the body, or NULL */
	bool		sha_failed;
	int			decode;			/* DECODE_*: how the body is hashed */
	z_stream   *zs;				/* hash_decoded: the inflate state */
	unsigned char head[2];		/* the body's first bytes, until decided */
	int			nhead;
	int64		decoded_bytes;
	int64		decoded_max;	/* req->decoded_max */
	bool		decode_failed;	/* a gzip body that does not decompress */
	bool		decoded_too_large;
	curl_off_t	last_bytes;		/* bytes moved (up + down) at last_move */
	TimestampTz last_move;
	bool		stalled;		/* aborted: nothing moved for too long */
	FILE	   *sink;			/* req->body_file */
	int64		sink_max;		/* req->body_file_max */
	int			sink_errno;		/* a write to sink failed with this */
	const char *req_what;		/* req->what, for messages */
} TransferState;

/* How a hashed body is hashed (TransferState.decode). */
#define DECODE_PLAIN		0	/* as it comes */
#define DECODE_UNDECIDED	1	/* hash_decoded: waiting for two bytes */
#define DECODE_GZIP			2	/* decompressed */
#define DECODE_DONE			3	/* the gzip stream ended */

/* What inflate writes, hashed at once; one transfer's callback at a time uses it. */
static char inflate_buf[65536];

/* on_proc_exit: frees the share object and libcurl's global state. */
static void
http_cleanup_at_exit(int code, Datum arg)
{
	if (curl_share != NULL)
		curl_share_cleanup(curl_share);
	curl_share = NULL;
	if (curl_ready)
		curl_global_cleanup();
	curl_ready = false;
}

/* Initialises libcurl in this process, once. */
static void
http_init(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libcurl")));
	curl_ready = true;
	curl_share = curl_share_init();
	if (curl_share != NULL)
	{
		curl_share_setopt(curl_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
		curl_share_setopt(curl_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	}
	on_proc_exit(http_cleanup_at_exit, (Datum) 0);
}

/* Appends "name: value" to headers. */
List *
http_header(List *headers, const char *name, const char *value)
{
	return lappend(headers, psprintf("%s: %s", name, value));
}

/* Copies a header's value (trimmed) into dst, if line is that header. */
static void
header_value(const char *line, size_t len, const char *name, char *dst, size_t dstlen)
{
	size_t		n = strlen(name);
	size_t		out = 0;

	if (len <= n || pg_strncasecmp(line, name, n) != 0 || line[n] != ':')
		return;
	line += n + 1;
	len -= n + 1;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	out = Min(len, dstlen - 1);
	memcpy(dst, line, out);
	dst[out] = '\0';
}

/* libcurl header callback: must not throw. */
static size_t
on_header(char *data, size_t size, size_t nitems, void *arg)
{
	TransferState *st = arg;
	HttpResponse *resp = st->resp;
	size_t		len = size * nitems;

	if (len > 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		/* a new response (after a 100 Continue, say): forget the last one */
		const char *sp = memchr(data, ' ', len);
		size_t		out = 0;

		resp->etag[0] = resp->location[0] = resp->meta_sha256[0] = '\0';
		resp->content_encoding[0] = '\0';
		resp->content_length = -1;
		if (sp != NULL)
		{
			size_t		rest = len - (sp + 1 - data);

			while (rest > 0 && (sp[rest] == '\r' || sp[rest] == '\n' || sp[rest] == '\0'))
				rest--;
			out = Min(rest, sizeof(resp->status_line) - 1);
			memcpy(resp->status_line, sp + 1, out);
		}
		resp->status_line[out] = '\0';
		return len;
	}
	header_value(data, len, "ETag", resp->etag, sizeof(resp->etag));
	header_value(data, len, "Location", resp->location, sizeof(resp->location));
	header_value(data, len, "x-amz-meta-sha256", resp->meta_sha256, sizeof(resp->meta_sha256));
	header_value(data, len, "Content-Encoding", resp->content_encoding, sizeof(resp->content_encoding));
	{
		char		cl[32] = "";

		header_value(data, len, "Content-Length", cl, sizeof(cl));
		if (cl[0] != '\0')
			resp->content_length = strtoll(cl, NULL, 10);
	}
	return len;
}

/* zlib's allocator: the transfer's memory context; NULL, never a throw. */
static voidpf
zs_alloc(voidpf opaque, uInt items, uInt size)
{
	return MemoryContextAllocExtended((MemoryContext) opaque, (Size) items * size,
									  MCXT_ALLOC_NO_OOM);
}

static void
zs_free(voidpf opaque, voidpf p)
{
	pfree(p);
}

/*
 * Adds data to the body's hash, decompressed when the body is gzip.  Must
 * not throw: false, with the reason in st, stops the transfer.
 */
static bool
hash_content(TransferState *st, const char *data, size_t len)
{
	z_stream   *zs = st->zs;

	if (st->decode == DECODE_PLAIN)
	{
		if (checksum_sha256_add(st->sha_ctx, data, len))
			return true;
		st->sha_failed = true;
		return false;
	}
	if (st->decode == DECODE_DONE)
	{
		/* bytes after the end of the stream */
		st->decode_failed = len > 0;
		return len == 0;
	}
	zs->next_in = (Bytef *) data;
	zs->avail_in = (uInt) len;	/* a callback's, at most CURL_MAX_WRITE_SIZE */
	for (;;)
	{
		size_t		out;
		int			rc;

		zs->next_out = (Bytef *) inflate_buf;
		zs->avail_out = sizeof(inflate_buf);
		rc = inflate(zs, Z_NO_FLUSH);
		if (rc == Z_BUF_ERROR && zs->avail_in == 0)
			rc = Z_OK;			/* wants more input */
		if (rc != Z_OK && rc != Z_STREAM_END)
		{
			st->decode_failed = true;
			return false;
		}
		out = sizeof(inflate_buf) - zs->avail_out;
		st->decoded_bytes += out;
		if (st->decoded_max > 0 && st->decoded_bytes > st->decoded_max)
		{
			st->decoded_too_large = true;
			return false;
		}
		if (out > 0 && !checksum_sha256_add(st->sha_ctx, inflate_buf, out))
		{
			st->sha_failed = true;
			return false;
		}
		if (rc == Z_STREAM_END)
		{
			st->decode = DECODE_DONE;
			st->decode_failed = zs->avail_in > 0;
			return !st->decode_failed;
		}
		if (zs->avail_in == 0 && zs->avail_out > 0)
			return true;
	}
}

/*
 * hash_decoded: the body is gzip when the server says so, or (a server
 * that keeps no header) when it starts with gzip's magic number, which no
 * JSON document does.  Hashes the bytes held back to decide.
 */
static bool
hash_decide(TransferState *st)
{
	st->decode = pg_strcasecmp(st->resp->content_encoding, "gzip") == 0 ||
		(st->nhead == 2 && st->head[0] == 0x1f && st->head[1] == 0x8b) ?
		DECODE_GZIP : DECODE_PLAIN;
	return hash_content(st, (const char *) st->head, st->nhead);
}

/* Hashes the body's next bytes (see hash_content). */
static bool
hash_body_bytes(TransferState *st, const char *data, size_t len)
{
	if (st->decode == DECODE_UNDECIDED)
	{
		while (len > 0 && st->nhead < 2)
		{
			st->head[st->nhead++] = (unsigned char) *data++;
			len--;
		}
		if (st->nhead < 2)
			return true;
		if (!hash_decide(st))
			return false;
	}
	return hash_content(st, data, len);
}

/*
 * Makes resp->body hold at least need bytes (doubling, at most keep_cap),
 * without throwing: false when out of memory (body_oom).
 */
static bool
body_grow(TransferState *st, size_t need)
{
	HttpResponse *resp = st->resp;
	size_t		cap = Min(Max(need, st->body_cap * 2), st->keep_cap);
	char	   *body = MemoryContextAllocExtended(st->body_cxt, cap + 1,
												  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);

	if (body == NULL)
	{
		st->body_oom = true;
		return false;
	}
	memcpy(body, resp->body, resp->body_len + 1);
	pfree(resp->body);
	resp->body = body;
	st->body_cap = cap;
	return true;
}

/* libcurl write callback: keeps the start of the body, hashes all of it. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	TransferState *st = arg;
	HttpResponse *resp = st->resp;
	size_t		len = size * nmemb;

	if (resp->body_len < st->keep_cap)
	{
		size_t		n = Min(len, st->keep_cap - resp->body_len);

		if (resp->body_len + n > st->body_cap && !body_grow(st, resp->body_len + n))
			return 0;			/* CURLE_WRITE_ERROR */

		memcpy(resp->body + resp->body_len, data, n);
		resp->body_len += n;
		resp->body[resp->body_len] = '\0';
	}
	if (st->sha_ctx != NULL && !hash_body_bytes(st, data, len))
		return 0;				/* CURLE_WRITE_ERROR */
	if (st->sink != NULL && st->sink_max > 0 && resp->body_bytes + (int64) len > st->sink_max)
	{
		st->sink_errno = EFBIG;
		return 0;				/* CURLE_WRITE_ERROR */
	}
	if (st->sink != NULL && len > 0 && fwrite(data, 1, len, st->sink) != len)
	{
		st->sink_errno = errno ? errno : EIO;
		return 0;				/* CURLE_WRITE_ERROR */
	}
	resp->body_bytes += len;
	return len;
}

/*
 * libcurl progress callback, called at least once a second.  Aborts the
 * transfer when PostgreSQL wants this process to stop (SIGTERM, cancel):
 * it only reads the flags, CHECK_FOR_INTERRUPTS runs after the transfer.
 * Also aborts when no byte moved for publish.storage_low_speed_time:
 * libcurl's own low-speed check averages over the last five seconds, so
 * after a quick upload to a server that then says nothing it would wait
 * up to five seconds longer than configured.
 */
static int
on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	TransferState *st = arg;
	TimestampTz now = GetCurrentTimestamp();

	if (InterruptPending &&
		(ProcDiePending || (QueryCancelPending && QueryCancelHoldoffCount == 0)))
		return 1;
	if (dlnow + ulnow != st->last_bytes || st->last_move == 0)
	{
		st->last_bytes = dlnow + ulnow;
		st->last_move = now;
	}
	else if (now - st->last_move >= (TimestampTz) publish_storage_low_speed_time * USECS_PER_SEC)
	{
		st->stalled = true;
		return 1;
	}
	return 0;
}

#define SETOPT(h, opt, val) \
	do { \
		if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) \
			elog(ERROR, "publish: could not set libcurl option %s", #opt); \
	} while (0)

/* Resets resp and st for a new attempt of req; the body buffer goes in cxt. */
static void
attempt_reset(HttpRequest *req, HttpResponse *resp, TransferState *st, MemoryContext cxt)
{
	if (resp->body != NULL)
	{
		/* what a failed attempt got may echo the secrets */
		if (resp->curl_code != CURLE_OK || resp->status < 200 || resp->status >= 300)
			http_response_forget(resp);
		pfree(resp->body);
	}
	memset(st, 0, sizeof(TransferState));
	st->resp = resp;
	st->req_what = req->what;
	st->keep_cap = req->body_limit > 0 ? req->body_limit : HTTP_BODY_KEEP;
	/* grown as the body comes: a listing's limit is far above its size */
	st->body_cap = Min(st->keep_cap, HTTP_BODY_KEEP);
	st->body_cxt = cxt;
	resp->body = MemoryContextAllocHuge(cxt, st->body_cap + 1);
	resp->body[0] = '\0';
	resp->body_len = 0;
	resp->body_bytes = 0;
	resp->status = 0;
	resp->status_line[0] = '\0';
	resp->content_length = -1;
	resp->etag[0] = resp->location[0] = '\0';
	resp->meta_sha256[0] = '\0';
	resp->content_encoding[0] = '\0';
	resp->body_sha256[0] = '\0';
	if (req->hash_body)
		st->sha_ctx = checksum_sha256_begin();
	if (req->hash_body && req->hash_decoded)
	{
		st->decode = DECODE_UNDECIDED;
		st->decoded_max = req->decoded_max;
		st->zs = MemoryContextAllocZero(cxt, sizeof(z_stream));
		st->zs->zalloc = zs_alloc;
		st->zs->zfree = zs_free;
		st->zs->opaque = cxt;
		/* 15 + 16: a gzip stream, with the largest window */
		if (inflateInit2(st->zs, 15 + 16) != Z_OK)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not start a gzip decompression.")));
	}
	if (req->body_file != NULL)
	{
		/* a retry starts the file again */
		st->sink = req->body_file;
		st->sink_max = req->body_file_max;
		if (fflush(st->sink) != 0 || ftruncate(fileno(st->sink), 0) != 0 ||
			fseeko(st->sink, 0, SEEK_SET) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not empty the download file: %m")));
	}
}

/*
 * Sets every option of h for req (h fresh or curl_easy_reset); *hdrs gets
 * the header list to free after the transfer.  Throws on out-of-memory
 * (the caller frees h and *hdrs).
 */
static void
configure_handle(CURL *h, HttpRequest *req, TransferState *st, char *errbuf,
				 struct curl_slist *volatile *hdrs)
{
	struct curl_slist *next;
	ListCell   *lc;

	errbuf[0] = '\0';
	foreach(lc, req->headers)
	{
		next = curl_slist_append(*hdrs, (const char *) lfirst(lc));
		if (next == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		*hdrs = next;
	}

	/*
	 * libcurl 7.88 sends "Expect: 100-continue" with uploads over 1 MB and
	 * then waits for the server: not wanted.  The usual cure, an empty
	 * "Expect:" header, cannot be used with SigV4: 7.88 signs it as "expect:"
	 * although it sends no such header, and the signature never matches.
	 * There the wait is set to zero instead (below).
	 */
	if (req->aws_sigv4 == NULL)
	{
		next = curl_slist_append(*hdrs, "Expect:");
		if (next == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		*hdrs = next;
	}

	if (curl_share != NULL)
		SETOPT(h, CURLOPT_SHARE, curl_share);
	SETOPT(h, CURLOPT_URL, req->url);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_USERAGENT, "publish/1.0 (PostgreSQL extension)");
	SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, (long) publish_storage_connect_timeout);
	SETOPT(h, CURLOPT_LOW_SPEED_LIMIT, (long) publish_storage_low_speed_limit);
	SETOPT(h, CURLOPT_LOW_SPEED_TIME, (long) publish_storage_low_speed_time);
	SETOPT(h, CURLOPT_TIMEOUT, (long) publish_storage_request_timeout);
	SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (publish_storage_ca_file != NULL && publish_storage_ca_file[0] != '\0')
		SETOPT(h, CURLOPT_CAINFO, publish_storage_ca_file);
	SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
	SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(h, CURLOPT_HEADERDATA, st);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(h, CURLOPT_WRITEDATA, st);
	SETOPT(h, CURLOPT_NOPROGRESS, 0L);
	SETOPT(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	SETOPT(h, CURLOPT_XFERINFODATA, st);

	if (req->aws_sigv4 != NULL)
	{
		SETOPT(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
		SETOPT(h, CURLOPT_AWS_SIGV4, req->aws_sigv4);
		SETOPT(h, CURLOPT_USERNAME, req->username ? req->username : "");
		SETOPT(h, CURLOPT_PASSWORD, req->password ? req->password : "");
	}
	else if (req->bearer != NULL)
	{
		SETOPT(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
		SETOPT(h, CURLOPT_XOAUTH2_BEARER, req->bearer);
	}
	else if (req->username != NULL)
	{
		SETOPT(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SETOPT(h, CURLOPT_USERNAME, req->username);
		SETOPT(h, CURLOPT_PASSWORD, req->password ? req->password : "");
	}

	if (strcmp(req->method, "HEAD") == 0)
		SETOPT(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->method, "GET") == 0)
		SETOPT(h, CURLOPT_HTTPGET, 1L);
	else
	{
		SETOPT(h, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body != NULL)
		{
			/* the body as POSTFIELDS: SigV4 then hashes exactly these bytes */
			SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
			SETOPT(h, CURLOPT_POSTFIELDS, req->body);
		}
	}
	SETOPT(h, CURLOPT_HTTPHEADER, *hdrs);
}

/*
 * After a transfer of h ended with rc: the response's libcurl code and
 * words, the HTTP status, the body's hash; a stall or an interrupt said
 * as such.  May throw (a cancel, SIGTERM), so the caller must be ready to
 * free h.
 */
static void
attempt_finish(CURL *h, CURLcode rc, TransferState *st, const char *errbuf)
{
	HttpResponse *resp = st->resp;

	resp->curl_code = (int) rc;
	if (rc != CURLE_OK)
		strlcpy(resp->curl_error, errbuf[0] ? errbuf : curl_easy_strerror(rc),
				sizeof(resp->curl_error));
	else
		resp->curl_error[0] = '\0';
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);

	if (st->sha_ctx != NULL)
	{
		void	   *ctx = st->sha_ctx;

		/* a body of fewer than two bytes, or a gzip stream cut short */
		if (st->decode == DECODE_UNDECIDED && !st->sha_failed)
			(void) hash_decide(st);
		if (st->decode == DECODE_GZIP && rc == CURLE_OK &&
			resp->status >= 200 && resp->status < 300)
			st->decode_failed = true;
		if (st->zs != NULL)
			(void) inflateEnd(st->zs);
		st->zs = NULL;
		st->sha_ctx = NULL;
		checksum_sha256_finish(ctx, resp->body_sha256);
		if (st->sha_failed)
			elog(ERROR, "publish: could not hash a response body");
		if (st->decoded_too_large)
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_TOO_LARGE),
					 errmsg("the %s was stopped: the document is larger than %lld bytes once decompressed",
							st->req_what, (long long) st->decoded_max)));
		if (st->decode_failed)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the %s got a gzip body that does not decompress", st->req_what),
					 errdetail("A document stored compressed must be one whole gzip stream.")));
	}
	if (st->body_oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("The %s got a body of more than %zu bytes.",
						   st->req_what, st->body_cap)));
	if (st->sink_errno == EFBIG)
		ereport(ERROR,
				(errcode(ERRCODE_PUBLISH_TOO_LARGE),
				 errmsg("the %s was stopped: it is larger than %lld bytes",
						st->req_what, (long long) st->sink_max)));
	if (st->sink_errno != 0)
	{
		errno = st->sink_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the %s to a file: %m", st->req_what)));
	}
	if (st->stalled)
	{
		resp->curl_code = CURLE_OPERATION_TIMEDOUT;
		snprintf(resp->curl_error, sizeof(resp->curl_error),
				 "nothing was sent or received for %d s", publish_storage_low_speed_time);
	}
	/* a cancel or SIGTERM aborted the transfer: act on it now */
	else if (resp->curl_code == CURLE_ABORTED_BY_CALLBACK)
		CHECK_FOR_INTERRUPTS();
}

/* One attempt of req; fills resp.  Throws only on out-of-memory or an interrupt. */
static void
http_attempt(HttpRequest *req, HttpResponse *resp)
{
	CURL	   *volatile h = NULL;
	struct curl_slist *volatile hdrs = NULL;
	TransferState st;
	char		errbuf[CURL_ERROR_SIZE];

	attempt_reset(req, resp, &st, CurrentMemoryContext);
	PG_TRY();
	{
		CURLcode	rc;

		h = curl_easy_init();
		if (h == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
		configure_handle(h, req, &st, errbuf, &hdrs);
		rc = curl_easy_perform(h);
		attempt_finish(h, rc, &st, errbuf);
	}
	PG_FINALLY();
	{
		if (hdrs != NULL)
			curl_slist_free_all(hdrs);
		if (h != NULL)
			curl_easy_cleanup(h);
	}
	PG_END_TRY();
}

/* See net.h. */
bool
http_ok(HttpResponse *resp)
{
	return resp->curl_code == CURLE_OK && resp->status >= 200 && resp->status < 300;
}

/* Worth another attempt: connection trouble, timeouts, 5xx, 408, 429. */
static bool
transient_failure(HttpResponse *resp)
{
	switch ((CURLcode) resp->curl_code)
	{
		case CURLE_OK:
			/* 501 and 505 say the server cannot, not that it cannot now */
			return (resp->status >= 500 && resp->status != 501 && resp->status != 505) ||
				resp->status == 408 || resp->status == 429;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_SSL_CONNECT_ERROR:
			return true;
		default:
			return false;
	}
}

/* Waits ms milliseconds, waking for interrupts (the latch may be set meanwhile). */
static void
http_sleep(long ms)
{
	TimestampTz end = GetCurrentTimestamp() + ms * 1000L;

	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = (long) ((end - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	/* the latch may have meant new work: the worker's loop looks anyway */
}

/*
 * The wait before retry number attempt (1-based): publish.storage_retry_delay
 * doubled per retry, at most publish.storage_retry_max_delay, half of it
 * random ("equal jitter").
 */
static long
retry_delay(int attempt)
{
	double		base;

	base = (double) publish_storage_retry_delay * (double) (1L << Min(attempt - 1, 20));
	base = Min(base, (double) publish_storage_retry_max_delay);
	return (long) (base / 2 + pg_prng_double(&pg_global_prng_state) * base / 2);
}

/* Announces a retry through req->warn (never from a libcurl callback). */
static void
announce_retry(HttpRequest *req, HttpResponse *resp, int attempt, int max_attempts, long delay)
{
	if (req->warn != NULL)
		req->warn(req->warn_arg,
				  psprintf("attempt %d of %d of the %s on target \"%s\" failed: %s; retrying in %.1f s",
						   attempt, max_attempts, req->what, req->target_env,
						   http_failure_text(req, resp), delay / 1000.0));
}

/* See net.h. */
HttpResponse *
http_perform(HttpRequest *req)
{
	HttpResponse *resp = palloc0(sizeof(HttpResponse));
	int			max_attempts = Max(publish_storage_max_attempts, 1);

	http_init();
	for (int attempt = 1;; attempt++)
	{
		long		delay;

		http_attempt(req, resp);
		resp->attempts = attempt;
		if (!transient_failure(resp) || attempt >= max_attempts)
			return resp;
		delay = retry_delay(attempt);
		announce_retry(req, resp, attempt, max_attempts, delay);
		http_sleep(delay);
	}
}

/*
 * The multi runner: many requests at once through one libcurl multi handle.
 *
 * A fixed pool of slots, each with an easy handle made once and reused
 * (curl_easy_reset keeps its connection), so the number of connections and
 * the memory held are bounded by the pool's size, whatever the number of
 * requests.  A request that fails transiently stays in its slot, out of
 * the multi handle, until its retry time; its retry notice is written by
 * http_multi_wait (the caller's loop), never by a callback.  The response
 * of a request is allocated in the memory context of the request itself,
 * so the caller frees both by resetting the context it made them in.
 */
typedef struct HttpSlot
{
	CURL	   *h;
	struct curl_slist *hdrs;
	HttpRequest *req;			/* NULL: the slot is free */
	HttpResponse *resp;
	void	   *tag;
	TransferState st;
	char		errbuf[CURL_ERROR_SIZE];
	int			attempt;
	bool		in_multi;		/* added to the multi handle */
	bool		done;			/* finished, waiting to be returned */
	TimestampTz retry_at;		/* waiting for a retry until then */
} HttpSlot;

struct HttpMulti
{
	CURLM	   *multi;
	int			nslots;
	int			busy;			/* slots with a request */
	HttpSlot   *slots;
};

/* See net.h. */
HttpMulti *
http_multi_begin(int max_parallel)
{
	HttpMulti  *m = palloc0(sizeof(HttpMulti));

	http_init();
	m->nslots = Max(max_parallel, 1);
	m->slots = palloc0(sizeof(HttpSlot) * m->nslots);
	m->multi = curl_multi_init();
	if (m->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) m->nslots);
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long) m->nslots);
	return m;
}

/* See net.h. */
void
http_multi_end(HttpMulti *m)
{
	if (m == NULL)
		return;
	for (int i = 0; i < m->nslots; i++)
	{
		HttpSlot   *s = &m->slots[i];

		if (s->h != NULL)
		{
			if (s->in_multi && m->multi != NULL)
				curl_multi_remove_handle(m->multi, s->h);
			curl_easy_cleanup(s->h);
		}
		if (s->hdrs != NULL)
			curl_slist_free_all(s->hdrs);
		s->h = NULL;
		s->hdrs = NULL;
		s->in_multi = false;
	}
	if (m->multi != NULL)
		curl_multi_cleanup(m->multi);
	m->multi = NULL;
}

/* See net.h. */
bool
http_multi_full(HttpMulti *m)
{
	return m->busy >= m->nslots;
}

/* See net.h. */
bool
http_multi_idle(HttpMulti *m)
{
	return m->busy == 0;
}

/* Starts (or restarts) the transfer of the slot's request. */
static void
slot_start(HttpMulti *m, HttpSlot *s)
{
	MemoryContext cxt = GetMemoryChunkContext(s->req);
	CURLMcode	mc;

	if (s->hdrs != NULL)
		curl_slist_free_all(s->hdrs);
	s->hdrs = NULL;
	if (s->h == NULL)
	{
		s->h = curl_easy_init();
		if (s->h == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
	}
	else
		curl_easy_reset(s->h);
	attempt_reset(s->req, s->resp, &s->st, cxt);
	s->attempt++;
	s->retry_at = 0;
	configure_handle(s->h, s->req, &s->st, s->errbuf, &s->hdrs);
	SETOPT(s->h, CURLOPT_PRIVATE, s);
	mc = curl_multi_add_handle(m->multi, s->h);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a transfer: %s", curl_multi_strerror(mc))));
	s->in_multi = true;
}

/*
 * Lets libcurl send what it can of the transfers just added, now: left to
 * the next http_multi_wait, a request would wait until the caller has read
 * every other finished one, and its connection would sit idle meanwhile.
 * Transfers this finishes are collected by http_multi_wait.
 */
static void
kick(HttpMulti *m)
{
	int			running;
	CURLMcode	mc;

	mc = curl_multi_perform(m->multi, &running);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl failed: %s", curl_multi_strerror(mc))));
}

/* See net.h. */
void
http_multi_add(HttpMulti *m, HttpRequest *req, void *tag)
{
	HttpSlot   *s = NULL;

	for (int i = 0; i < m->nslots; i++)
	{
		if (m->slots[i].req == NULL)
		{
			s = &m->slots[i];
			break;
		}
	}
	if (s == NULL)
		elog(ERROR, "publish: no free transfer slot");
	s->req = req;
	s->resp = MemoryContextAllocZero(GetMemoryChunkContext(req), sizeof(HttpResponse));
	s->tag = tag;
	s->attempt = 0;
	s->done = false;
	m->busy++;
	slot_start(m, s);
	kick(m);
}

/* Returns a finished slot's request to the caller and frees the slot. */
static void
slot_return(HttpMulti *m, HttpSlot *s, HttpRequest **req, HttpResponse **resp, void **tag)
{
	*req = s->req;
	*resp = s->resp;
	*tag = s->tag;
	s->resp->attempts = s->attempt;
	s->req = NULL;
	s->resp = NULL;
	s->tag = NULL;
	s->done = false;
	m->busy--;
}

/* See net.h. */
bool
http_multi_wait(HttpMulti *m, long timeout_ms, HttpRequest **req, HttpResponse **resp, void **tag)
{
	TimestampTz end = GetCurrentTimestamp() + timeout_ms * 1000L;
	int			max_attempts = Max(publish_storage_max_attempts, 1);

	*req = NULL;
	*resp = NULL;
	*tag = NULL;
	for (;;)
	{
		TimestampTz now;
		TimestampTz wake;
		int			running;
		CURLMsg    *msg;
		int			left;
		CURLMcode	mc;

		CHECK_FOR_INTERRUPTS();

		/* a finished request first */
		for (int i = 0; i < m->nslots; i++)
		{
			if (m->slots[i].req != NULL && m->slots[i].done)
			{
				slot_return(m, &m->slots[i], req, resp, tag);
				return true;
			}
		}

		/* requests whose retry time came */
		now = GetCurrentTimestamp();
		wake = end;
		for (int i = 0; i < m->nslots; i++)
		{
			HttpSlot   *s = &m->slots[i];

			if (s->req == NULL || s->in_multi || s->done)
				continue;
			if (s->retry_at <= now)
				slot_start(m, s);
			else
				wake = Min(wake, s->retry_at);
		}
		if (m->busy == 0 || now >= end)
			return false;

		mc = curl_multi_perform(m->multi, &running);
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("libcurl failed: %s", curl_multi_strerror(mc))));
		while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
		{
			HttpSlot   *s = NULL;
			CURLcode	result;

			if (msg->msg != CURLMSG_DONE)
				continue;
			/* msg is not to be read once its handle is removed */
			result = msg->data.result;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &s);
			curl_multi_remove_handle(m->multi, s->h);
			s->in_multi = false;
			attempt_finish(s->h, result, &s->st, s->errbuf);
			if (transient_failure(s->resp) && s->attempt < max_attempts)
			{
				long		delay = retry_delay(s->attempt);

				/* written now, from this loop: the caller's warn may commit */
				announce_retry(s->req, s->resp, s->attempt, max_attempts, delay);
				s->retry_at = GetCurrentTimestamp() + delay * 1000L;
			}
			else
				s->done = true;
		}
		for (int i = 0; i < m->nslots; i++)
		{
			if (m->slots[i].req != NULL && m->slots[i].done)
			{
				slot_return(m, &m->slots[i], req, resp, tag);
				return true;
			}
		}

		/*
		 * sleep until a socket is ready, a retry is due, or 100 ms
		 * (interrupts)
		 */
		now = GetCurrentTimestamp();
		if (running > 0 || wake > now)
		{
			long		ms = (long) ((wake - now) / 1000);

			ms = Max(Min(ms, 100), 0);
			mc = curl_multi_poll(m->multi, NULL, 0, (int) ms, NULL);
			if (mc != CURLM_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("libcurl failed: %s", curl_multi_strerror(mc))));
		}
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
}

/* See net.h. */
const char *
http_xml_span(const char *p, const char *end, const char *tag, size_t *len)
{
	char		open[64];
	char		close[64];
	const char *start;
	const char *stop;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = strstr(p, open);
	if (start == NULL || start >= end)
		return NULL;
	start += strlen(open);
	stop = strstr(start, close);
	if (stop == NULL || stop > end)
		return NULL;
	*len = stop - start;
	return start;
}

/* See net.h. */
char *
http_xml_element(const char *body, const char *tag)
{
	size_t		len;
	const char *start = http_xml_span(body, body + strlen(body), tag, &len);

	return start ? pnstrdup(start, Min(len, 300)) : NULL;
}

/* Bytes of a body read for an error's words; characters shown of one piece of them. */
#define FAILURE_BODY_BYTES	HTTP_BODY_KEEP
#define FAILURE_PIECE_CHARS	200

/*
 * s[0..len) as one line a person can read: control characters become
 * spaces, bytes not valid in the database's encoding '?'; at most
 * max_chars characters, "..." marking a cut.
 */
static char *
printable(const char *s, size_t len, int max_chars)
{
	StringInfoData buf;
	int			encoding = GetDatabaseEncoding();
	int			chars = 0;
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];

		if (chars == max_chars)
		{
			appendStringInfoString(&buf, "...");
			break;
		}
		if (c < 0x20 || c == 0x7f)
			appendStringInfoChar(&buf, ' ');
		else if (c < 0x80)
			appendStringInfoChar(&buf, (char) c);
		else
		{
			int			n = pg_encoding_verifymbchar(encoding, s + i, (int) Min(len - i, 8));

			if (n > 0)
			{
				appendBinaryStringInfo(&buf, s + i, n);
				i += n;
				chars++;
				continue;
			}
			appendStringInfoChar(&buf, '?');
		}
		i++;
		chars++;
	}
	return buf.data;
}

/*
 * A piece of what the server or libcurl said, s[0..len) (cut: it may have
 * been cut short), with the request's secrets masked, printable, bounded.
 */
static char *
piece(Redactor *r, const char *s, size_t len, bool cut, int max_chars)
{
	char	   *masked = redact_text(r, s, len, cut);
	char	   *out = printable(masked, strlen(masked), max_chars);

	pfree(masked);
	return out;
}

/* piece() of a fixed-size field of HttpResponse, which a long value fills. */
#define FIELD_PIECE(r, field, max_chars) \
	piece((r), (field), strlen(field), strlen(field) == sizeof(field) - 1, (max_chars))

/*
 * The words of a body whose secrets are already masked: its HTML title,
 * else its first non-blank line.
 */
static char *
body_summary(Redactor *r, const char *body)
{
	char	   *title = http_xml_element(body, "title");
	const char *p = body;
	const char *end;

	if (title != NULL)
		return piece(r, title, strlen(title), false, FAILURE_PIECE_CHARS);
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	end = p;
	while (*end && *end != '\r' && *end != '\n')
		end++;
	if (end == p)
		return NULL;
	return piece(r, p, end - p, false, FAILURE_PIECE_CHARS);
}

/*
 * http_failure_text's words, every piece masked by r.  No byte of the
 * body is used but the fields parsed out of it: the code and message of
 * the service's error document (req->error_fields), an HTML title, or
 * else its first line.
 */
static char *
failure_words(Redactor *r, HttpRequest *req, HttpResponse *resp)
{
	char	   *status;
	char	   *body = NULL;
	char	   *code = NULL;
	char	   *message = NULL;

	if (resp->curl_code != CURLE_OK)
	{
		const char *kind;

		switch ((CURLcode) resp->curl_code)
		{
			case CURLE_COULDNT_CONNECT:
				kind = "could not connect";
				break;
			case CURLE_COULDNT_RESOLVE_HOST:
				kind = "could not resolve the host";
				break;
			case CURLE_OPERATION_TIMEDOUT:
				kind = "timed out";
				break;
			case CURLE_PEER_FAILED_VERIFICATION:
			case CURLE_SSL_CACERT_BADFILE:
				kind = "TLS verification failed";
				break;
			case CURLE_SEND_ERROR:
			case CURLE_RECV_ERROR:
			case CURLE_GOT_NOTHING:
			case CURLE_PARTIAL_FILE:
				kind = "connection lost";
				break;
			case CURLE_UNSUPPORTED_PROTOCOL:
				kind = "protocol not allowed";
				break;
			default:
				kind = "transfer failed";
				break;
		}
		return psprintf("%s (%s)", kind, FIELD_PIECE(r, resp->curl_error, FAILURE_PIECE_CHARS));
	}

	status = resp->status_line[0] ? FIELD_PIECE(r, resp->status_line, 100)
		: psprintf("%ld", resp->status);
	if (resp->body != NULL && resp->body_len > 0)
	{
		size_t		n = Min(resp->body_len, FAILURE_BODY_BYTES);

		/*
		 * masked before it is parsed: a field cut short cannot hide a
		 * secret's start
		 */
		body = redact_text(r, resp->body, n,
						   n < resp->body_len || resp->body_bytes > (int64) resp->body_len);
	}
	if (body != NULL && req->error_fields != NULL &&
		req->error_fields(body, &code, &message) && code != NULL)
	{
		code = piece(r, code, strlen(code), false, 64);
		return message ? psprintf("%s: %s — %s", status, code,
								  piece(r, message, strlen(message), false, FAILURE_PIECE_CHARS))
			: psprintf("%s: %s", status, code);
	}
	if (resp->status >= 300 && resp->status < 400)
		return psprintf("%s: redirected to \"%s\"; redirects are not followed",
						status, FIELD_PIECE(r, resp->location, FAILURE_PIECE_CHARS));
	{
		char	   *summary = body != NULL ? body_summary(r, body) : NULL;

		return (summary != NULL && strcmp(summary, status) != 0)
			? psprintf("%s: %s", status, summary) : status;
	}
}

/* See net.h. */
char *
http_failure_text(HttpRequest *req, HttpResponse *resp)
{
	Redactor   *volatile r = NULL;
	char	   *volatile text = NULL;

	PG_TRY();
	{
		r = redact_begin(req->username, req->password, req->bearer, req->session_token);
		text = failure_words(r, req, resp);

		/* once more, whole: a secret that only the cleaning made whole */
		text = redact_text(r, text, strlen(text), false);
	}
	PG_FINALLY();
	{
		redact_end(r);
	}
	PG_END_TRY();
	return text;
}

/* See net.h. */
void
http_response_forget(HttpResponse *resp)
{
	if (resp->body != NULL)
		explicit_bzero(resp->body, resp->body_len);
	explicit_bzero(resp->status_line, sizeof(resp->status_line));
	explicit_bzero(resp->location, sizeof(resp->location));
	explicit_bzero(resp->curl_error, sizeof(resp->curl_error));
}
