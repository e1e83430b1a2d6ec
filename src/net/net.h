/*-------------------------------------------------------------------------
 *
 * net.h
 *	  HTTP requests through libcurl, with retries, one at a time or many in
 *	  parallel (http_client.c), and the masking of a request's secrets in
 *	  any text a server or libcurl wrote (redact.c).
 *
 * Contract: the bottom of the extension; only storage/ calls it, and it
 * calls only util/ and the settings.  Nothing here opens a transaction or
 * needs one; no function may be called with one open in the worker, since
 * a request may wait seconds between retries.  A request reports its
 * retries through its own warn callback and notices a cancel or SIGTERM
 * by itself (the progress callback reads the interrupt flags), so a
 * transfer needs nothing from the layers above.  No text this module makes
 * contains a secret of the request (see redact_text).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_NET_H
#define PUBLISH_NET_H

#include <stdio.h>

#include "nodes/pg_list.h"

/* Called between attempts (never inside libcurl), e.g. to log a retry. */
typedef void (*HttpWarnFn) (void *arg, const char *message);

/*
 * Reads the error document of a service out of a response body (already
 * masked of the request's secrets): its code and message, each palloc'd
 * or left NULL; false when the body is no such document.  The storage
 * backend that knows the service's format sets it (S3: <Error>).
 */
typedef bool (*HttpErrorFieldsFn) (const char *body, char **code,
								   char **message);

typedef struct HttpRequest
{
	const char *method;			/* GET, HEAD, PUT, COPY, ... */
	const char *url;			/* already percent-encoded */
	List	   *headers;		/* of char *, "Name: value" */
	const char *body;			/* request body (PUT), or NULL */
	size_t		body_len;
	/* authentication: at most one of these */
	const char *username;		/* basic auth (with password), or */
	const char *password;		/* the SigV4 key id / secret */
	const char *bearer;			/* bearer token */
	const char *aws_sigv4;		/* "aws:amz:REGION:s3" */
	const char *session_token;	/* S3 session token: the caller sends it as a
								 * header; named here so that errors mask it */
	bool		hash_body;		/* compute the SHA-256 of the response body */
	bool		hash_decoded;	/* with hash_body: a gzip body (sent with
								 * Content-Encoding: gzip, or starting with
								 * gzip's magic number, for servers that keep
								 * no header) is hashed decompressed; for
								 * documents, never tiles */
	int64		decoded_max;	/* with hash_decoded: a longer decompressed
								 * body fails the request (PT413); 0: no limit */
	size_t		body_limit;		/* bytes of the response body to keep; 0:
								 * HTTP_BODY_KEEP */
	FILE	   *body_file;		/* the whole body is also written here
								 * (emptied before each attempt), or NULL */
	int64		body_file_max;	/* with body_file: a longer body fails the
								 * request (EFBIG); 0: no limit */
	const char *what;			/* for messages: "upload of
								 * env/slug/release.json" */
	const char *target_env;		/* for messages: the target's environment */
	HttpWarnFn	warn;			/* retry notices, or NULL */
	void	   *warn_arg;
	HttpErrorFieldsFn error_fields; /* the service's error document, or NULL */
} HttpRequest;

#define HTTP_BODY_KEEP	16384	/* bytes of a response body kept for messages */

typedef struct HttpResponse
{
	int			curl_code;		/* CURLcode; 0 when the exchange completed */
	char		curl_error[256];	/* libcurl's words for curl_code */
	long		status;			/* HTTP status, 0 when none */
	char		status_line[128];	/* e.g. "503 Service Unavailable" */
	int64		content_length; /* from the headers; -1 when not given */
	char		etag[128];
	char		location[512];
	char		meta_sha256[65];	/* x-amz-meta-sha256, when the server sent
									 * it */
	char		content_encoding[32];	/* Content-Encoding, when the server
										 * sent it */
	char	   *body;			/* first HTTP_BODY_KEEP bytes, NUL-terminated */
	size_t		body_len;
	int64		body_bytes;		/* all the bytes received */
	char		body_sha256[65];	/* with hash_body (decompressed with
									 * hash_decoded) */
	int			attempts;
} HttpResponse;

/*
 * Performs req, retrying transient failures (connection refused or reset,
 * timeouts, 5xx, 408, 429) with exponential backoff and jitter up to
 * publish.storage_max_attempts.  Returns the last response: the caller
 * interprets its status (a 404 may be an answer, not an error).  Throws only
 * for cancellation (SIGTERM, query cancel) and out-of-memory.  Must not be
 * called with a transaction open in the worker (it may sleep).
 */
extern HttpResponse *http_perform(HttpRequest *req);

/*
 * Many requests at once (libcurl's multi interface), at most max_parallel
 * in flight, each retried like http_perform's.  http_multi_add starts a
 * request (the runner must not be full); its response is allocated in the
 * request's memory context.  http_multi_wait runs the transfers for up to
 * timeout_ms and returns true with one finished request (after its
 * retries: the caller interprets the status), false when the time is up or
 * nothing is in flight; it writes the retry notices and throws for
 * interrupts.  http_multi_end frees every handle: call it on every path
 * (PG_FINALLY), also after an error.  No transaction may be open.
 */
typedef struct HttpMulti HttpMulti;

extern HttpMulti *http_multi_begin(int max_parallel);
extern void http_multi_add(HttpMulti *m, HttpRequest *req, void *tag);
extern bool http_multi_full(HttpMulti *m);
extern bool http_multi_idle(HttpMulti *m);
extern bool http_multi_wait(HttpMulti *m, long timeout_ms, HttpRequest **req,
							HttpResponse **resp, void **tag);
extern void http_multi_end(HttpMulti *m);

/* Did the exchange complete with a 2xx status? */
extern bool http_ok(HttpResponse *resp);

/*
 * What went wrong, in words: libcurl's error, or the status with the code
 * and message of the service's error document (req->error_fields), or the
 * title / first line of the body, each
 * bounded and printable.  Never contains any form of the request's
 * password, token or session token, nor an echoed Authorization header
 * (redact_text).
 */
extern char *http_failure_text(HttpRequest *req, HttpResponse *resp);

/*
 * Overwrites with zeros what the server sent that may echo the request's
 * secrets (body, status line, Location) and libcurl's error text: call it
 * once the failure is in words.
 */
extern void http_response_forget(HttpResponse *resp);

/*
 * The content of the first element <tag> that starts in [p, end) and is
 * closed by end (a NUL-terminated text): where it starts, its length in
 * *len; NULL when there is none.
 */
extern const char *http_xml_span(const char *p, const char *end, const char *tag,
								 size_t *len);

/* The text between <tag> and </tag> in body (at most 300 bytes), or NULL. */
extern char *http_xml_element(const char *body, const char *tag);

extern List *http_header(List *headers, const char *name, const char *value);

/* redact.c */

/*
 * Masking a request's secrets in text that a server or libcurl wrote,
 * before the text goes into an error, a job's log or the server log.
 *
 * redact_begin collects every form of the secrets it is given;
 * redact_text returns a copy of a text in which each of them, and whatever
 * follows an Authorization, a security token, "Basic ", "Bearer " or a
 * SigV4 "Signature=", is replaced by REDACT_MARKER; redact_end wipes the
 * forms from memory.  Call redact_end on every path (PG_FINALLY).
 */
#define REDACT_MARKER	"[redacted]"

typedef struct Redactor Redactor;

/*
 * The forms of password (or S3 secret key), bearer token and session
 * token, each optional, and of username:password as in Basic auth.  The
 * forms live in a memory context of their own, under the current one.
 */
extern Redactor *redact_begin(const char *username, const char *password,
							  const char *bearer, const char *session_token);

/*
 * A palloc'd, NUL-terminated copy of text[0..len) with every secret form
 * masked, also where the text percent-encodes, entity-encodes or
 * backslash-escapes it.  With cut, the text may have been cut short, so
 * a tail that begins a secret form is masked too.
 */
extern char *redact_text(Redactor *r, const char *text, size_t len, bool cut);

/* Wipes and frees the forms; r may be NULL. */
extern void redact_end(Redactor *r);

/* Overwrites the string s (may be NULL) with zeros, as far as its NUL. */
extern void redact_wipe(char *s);

#endif							/* PUBLISH_NET_H */
