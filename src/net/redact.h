/*-------------------------------------------------------------------------
 *
 * redact.h
 *	  Masking a request's secrets in text that a server or libcurl wrote,
 *	  before the text goes into an error, a job's log or the server log.
 *
 * Contract: redact_begin collects every form of the secrets it is given;
 * redact_text returns a copy of a text in which each of them, and whatever
 * follows an Authorization, a security token, "Basic ", "Bearer " or a
 * SigV4 "Signature=", is replaced by REDACT_MARKER; redact_end wipes the
 * forms from memory.  Call redact_end on every path (PG_FINALLY).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_REDACT_H
#define PUBLISH_REDACT_H

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

#endif							/* PUBLISH_REDACT_H */
