/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Masking the secrets of a request in text that a server or libcurl
 *	  wrote: every form in which a server could echo them.
 *
 * A server may echo the request it refused (its request line and headers,
 * Authorization included) in its status line, its body, an S3 error's
 * Message or a Location header, upper-cased, base64-encoded or
 * percent-encoded as it likes.  Such text reaches publish.jobs, the job's
 * log and the server log, which roles without access to the secrets read.
 * So every piece of text taken from an exchange passes redact_text before
 * it goes into a message.
 *
 * Forms: for each secret (the password or S3 secret key, the bearer token,
 * the S3 session token) the secret as given, upper- and lower-cased in the
 * database's encoding, and base64 of each (standard and URL alphabet,
 * without padding); and base64 of "username:password", as Basic auth sends
 * it.  A form matches without regard to ASCII letter case.
 *
 * Views: a form is looked for in the text as it is, and in the text read
 * with percent-escapes decoded (with '+' as '+', and as a space), with
 * XML/HTML entities decoded, and with backslash escapes (JSON's)
 * decoded; a match in a view masks the bytes of the text it came from.
 * So every encoding of a form by one of these is masked, whichever
 * characters the server chose to escape.
 *
 * Patterns: libcurl makes the SigV4 Authorization header, whose signature
 * publish never sees, and a server may echo a header under any encoding
 * publish does not know; so what follows an "Authorization" or
 * "security-token" header or parameter name, "Basic " or "Bearer " and a
 * token, or "Signature=" and hex digits, is masked too, whatever it is.
 *
 * Masked bytes become REDACT_MARKER, one per run.  The forms live in a
 * memory context of their own and are wiped before it is deleted; decoded
 * views are wiped before they are freed.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/base64.h"
#include "common/string.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/formatting.h"
#include "utils/memutils.h"

#include "publish.h"
#include "net/net.h"

struct Redactor
{
	MemoryContext cxt;
	int			nforms;
	int			maxforms;
	char	  **forms;			/* NUL-terminated, in cxt */
	size_t	   *lens;
	bool		form_has_space;
};

/*
 * A view of a text: dec[i] was decoded from text[from[i] .. to[i]).  A
 * view of text as it is has from and to NULL.
 */
typedef struct View
{
	const char *dec;
	size_t		len;
	uint32	   *from;
	uint32	   *to;
} View;

#define VIEW_FROM(v, i)	((v)->from ? (size_t) (v)->from[i] : (size_t) (i))
#define VIEW_TO(v, i)	((v)->to ? (size_t) (v)->to[i] : (size_t) (i) + 1)

/* Do a and b agree on n bytes, ASCII letters in either case? */
static bool
ci_equal(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		if (pg_ascii_tolower((unsigned char) a[i]) != pg_ascii_tolower((unsigned char) b[i]))
			return false;
	}
	return true;
}

/* Adds a copy of s[0..len) to the forms, unless it is empty or known. */
static void
add_form(Redactor *r, const char *s, size_t len)
{
	MemoryContext old;

	if (len == 0)
		return;
	for (int i = 0; i < r->nforms; i++)
	{
		if (r->lens[i] == len && ci_equal(r->forms[i], s, len))
			return;
	}
	old = MemoryContextSwitchTo(r->cxt);
	if (r->nforms == r->maxforms)
	{
		r->maxforms = r->maxforms ? r->maxforms * 2 : 16;
		r->forms = r->forms ? repalloc(r->forms, sizeof(char *) * r->maxforms)
			: palloc(sizeof(char *) * r->maxforms);
		r->lens = r->lens ? repalloc(r->lens, sizeof(size_t) * r->maxforms)
			: palloc(sizeof(size_t) * r->maxforms);
	}
	r->forms[r->nforms] = pnstrdup(s, len);
	r->lens[r->nforms] = len;
	r->nforms++;
	if (memchr(s, ' ', len) != NULL)
		r->form_has_space = true;
	MemoryContextSwitchTo(old);
}

/* Adds base64 of s[0..len), in both alphabets and without padding. */
static void
add_base64_forms(Redactor *r, const char *s, size_t len)
{
	int			cap = pg_b64_enc_len((int) len) + 1;
	char	   *b64 = palloc(cap);
	int			n = pg_b64_encode(s, (int) len, b64, cap);

	if (n > 0)
	{
		while (n > 0 && b64[n - 1] == '=')
			n--;
		add_form(r, b64, n);
		for (int i = 0; i < n; i++)
		{
			if (b64[i] == '+')
				b64[i] = '-';
			else if (b64[i] == '/')
				b64[i] = '_';
		}
		add_form(r, b64, n);
	}
	explicit_bzero(b64, cap);
	pfree(b64);
}

/* Adds secret, its upper- and lower-cased forms, and base64 of each. */
static void
add_secret(Redactor *r, const char *secret)
{
	size_t		len;
	char	   *cased[2];

	if (secret == NULL || (len = strlen(secret)) == 0)
		return;
	add_form(r, secret, len);
	add_base64_forms(r, secret, len);

	/*
	 * ci_equal covers ASCII; for other letters (ü, say), the whole
	 * secret as the database's locale upper- and lower-cases it.
	 */
	if (pg_is_ascii(secret))
		return;
	cased[0] = str_toupper(secret, len, DEFAULT_COLLATION_OID);
	cased[1] = str_tolower(secret, len, DEFAULT_COLLATION_OID);
	for (int i = 0; i < 2; i++)
	{
		add_form(r, cased[i], strlen(cased[i]));
		add_base64_forms(r, cased[i], strlen(cased[i]));
		redact_wipe(cased[i]);
		pfree(cased[i]);
	}
}

/* See net.h. */
Redactor *
redact_begin(const char *username, const char *password, const char *bearer,
			 const char *session_token)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "publish redact",
											  ALLOCSET_SMALL_SIZES);
	Redactor   *r = MemoryContextAllocZero(cxt, sizeof(Redactor));

	r->cxt = cxt;
	add_secret(r, password);
	add_secret(r, bearer);
	add_secret(r, session_token);
	if (username != NULL && password != NULL && password[0] != '\0')
	{
		char	   *basic = psprintf("%s:%s", username, password);

		add_base64_forms(r, basic, strlen(basic));
		redact_wipe(basic);
		pfree(basic);
	}
	return r;
}

/* See net.h. */
void
redact_end(Redactor *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->nforms; i++)
		explicit_bzero(r->forms[i], r->lens[i]);
	MemoryContextDelete(r->cxt);
}

/* See net.h. */
void
redact_wipe(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
}

/* Masks the bytes of the text from which dec[i .. j) of view v came. */
static void
mark(const View *v, size_t i, size_t j, bool *mask)
{
	size_t		a = VIEW_FROM(v, i);
	size_t		b = VIEW_TO(v, j - 1);

	memset(mask + a, true, b - a);
}

/* The length of keyword at dec[i] (ASCII letters in either case), or 0. */
static size_t
keyword_at(const View *v, size_t i, const char *keyword)
{
	size_t		n = strlen(keyword);

	return (v->len - i >= n && ci_equal(v->dec + i, keyword, n)) ? n : 0;
}

static bool
token_char(char c)
{
	return c != '\0' && (isalnum((unsigned char) c) || strchr("+/=._~-", c) != NULL);
}

/*
 * Masks what follows credential names in view v, whatever the values are:
 * an Authorization or security-token header or parameter, a Basic or
 * Bearer token (of 8 or more characters, not all lowercase letters, so
 * that "Basic authentication" stays), a SigV4 Signature.
 */
static void
mark_patterns(const View *v, bool *mask)
{
	const char *d = v->dec;

	for (size_t i = 0; i < v->len; i++)
	{
		size_t		n;
		size_t		j;
		size_t		k;

		if ((n = keyword_at(v, i, "basic")) > 0 || (n = keyword_at(v, i, "bearer")) > 0)
		{
			bool		all_lower = true;

			j = i + n;
			if (j >= v->len || (d[j] != ' ' && d[j] != '\t'))
				continue;
			while (j < v->len && (d[j] == ' ' || d[j] == '\t'))
				j++;
			for (k = j; k < v->len && token_char(d[k]); k++)
				all_lower = all_lower && d[k] >= 'a' && d[k] <= 'z';
			if (k - j >= 8 && !all_lower)
				mark(v, j, k, mask);
		}
		else if ((n = keyword_at(v, i, "signature=")) > 0)
		{
			j = i + n;
			for (k = j; k < v->len && isxdigit((unsigned char) d[k]); k++)
				;
			if (k - j >= 16)
				mark(v, j, k, mask);
		}
		else if ((n = keyword_at(v, i, "authorization")) > 0 ||
				 (n = keyword_at(v, i, "security-token")) > 0)
		{
			j = i + n;
			while (j < v->len && d[j] != '\0' && strchr(" \t\"'", d[j]) != NULL)
				j++;
			if (j >= v->len || (d[j] != ':' && d[j] != '='))
				continue;
			j++;
			while (j < v->len && (d[j] == ' ' || d[j] == '\t' || d[j] == '"' || d[j] == '\''))
				j++;
			for (k = j; k < v->len && strchr("\r\n<\"&", d[k]) == NULL; k++)
				;
			if (k > j)
				mark(v, j, k, mask);
		}
	}
}

/*
 * Masks in view v of a text of textlen bytes every form, and with cut a
 * tail of v that begins one (to the end of the text: an escape cut short
 * is not in v).
 */
static void
mark_view(Redactor *r, const View *v, size_t textlen, bool cut, bool *mask)
{
	for (int f = 0; f < r->nforms; f++)
	{
		const char *form = r->forms[f];
		size_t		flen = r->lens[f];

		for (size_t i = 0; i < v->len; i++)
		{
			size_t		rest = v->len - i;

			if (rest >= flen)
			{
				if (ci_equal(v->dec + i, form, flen))
					mark(v, i, i + flen, mask);
			}
			else if (cut && ci_equal(v->dec + i, form, rest))
			{
				memset(mask + VIEW_FROM(v, i), true, textlen - VIEW_FROM(v, i));
				break;
			}
		}
	}
	mark_patterns(v, mask);
}

/* Appends the UTF-8 (or, in another encoding, ASCII) bytes of code point cp. */
static bool
view_add_code_point(View *v, char *dec, pg_wchar cp, size_t from, size_t to)
{
	unsigned char utf8[8];
	int			n;

	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return false;
	if (cp >= 0x80 && GetDatabaseEncoding() != PG_UTF8)
		return false;
	unicode_to_utf8(cp, utf8);
	n = pg_utf_mblen(utf8);
	for (int i = 0; i < n; i++)
	{
		dec[v->len] = (char) utf8[i];
		v->from[v->len] = (uint32) from;
		v->to[v->len] = (uint32) to;
		v->len++;
	}
	return true;
}

static void
view_add(View *v, char *dec, char c, size_t from, size_t to)
{
	dec[v->len] = c;
	v->from[v->len] = (uint32) from;
	v->to[v->len] = (uint32) to;
	v->len++;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

typedef enum ViewKind
{
	VIEW_PERCENT,				/* %XX decoded, '+' kept */
	VIEW_PERCENT_PLUS,			/* %XX decoded, '+' read as a space */
	VIEW_ENTITIES,				/* &amp; &#39; &#x2F; ... decoded */
	VIEW_BACKSLASH				/* \" \\ \/ \n \uXXXX ... decoded */
} ViewKind;

/* A view, and the character without which it is the text itself. */
typedef struct ViewTrigger
{
	ViewKind	kind;
	char		trigger;
} ViewTrigger;

/*
 * Decodes text into v (dec, from, to allocated by the caller, len bytes
 * each).  An escape that the end of the text cuts short ends the view.
 */
static void
view_decode(ViewKind kind, const char *t, size_t len, View *v, char *dec)
{
	size_t		i = 0;

	v->len = 0;
	while (i < len)
	{
		char		c = t[i];

		if ((kind == VIEW_PERCENT || kind == VIEW_PERCENT_PLUS) && c == '%')
		{
			if (i + 2 < len && hex_value(t[i + 1]) >= 0 && hex_value(t[i + 2]) >= 0)
			{
				view_add(v, dec, (char) (hex_value(t[i + 1]) * 16 + hex_value(t[i + 2])), i, i + 3);
				i += 3;
				continue;
			}
			if (i + 1 == len || (i + 2 == len && hex_value(t[i + 1]) >= 0))
				return;
		}
		else if (kind == VIEW_PERCENT_PLUS && c == '+')
		{
			view_add(v, dec, ' ', i, i + 1);
			i++;
			continue;
		}
		else if (kind == VIEW_ENTITIES && c == '&')
		{
			const char *semi = memchr(t + i, ';', Min(len - i, 12));

			if (semi == NULL && len - i < 12)
				return;
			if (semi != NULL)
			{
				size_t		n = semi - (t + i) + 1;
				const char *e = t + i + 1;
				char		named = '\0';

				if (n == 5 && strncmp(e, "amp", 3) == 0)
					named = '&';
				else if (n == 4 && strncmp(e, "lt", 2) == 0)
					named = '<';
				else if (n == 4 && strncmp(e, "gt", 2) == 0)
					named = '>';
				else if (n == 6 && strncmp(e, "quot", 4) == 0)
					named = '"';
				else if (n == 6 && strncmp(e, "apos", 4) == 0)
					named = '\'';
				if (named != '\0')
				{
					view_add(v, dec, named, i, i + n);
					i += n;
					continue;
				}
				if (n >= 4 && e[0] == '#')
				{
					bool		hex = (e[1] == 'x' || e[1] == 'X');
					pg_wchar	cp = 0;
					bool		ok = true;

					for (const char *p = e + (hex ? 2 : 1); p < semi && ok; p++)
					{
						int			h = hex ? hex_value(*p) : (isdigit((unsigned char) *p) ? *p - '0' : -1);

						ok = h >= 0 && cp <= 0x10FFFF;
						cp = cp * (hex ? 16 : 10) + (ok ? h : 0);
					}
					if (ok && view_add_code_point(v, dec, cp, i, i + n))
					{
						i += n;
						continue;
					}
				}
			}
		}
		else if (kind == VIEW_BACKSLASH && c == '\\')
		{
			char		e;

			if (i + 1 == len)
				return;
			e = t[i + 1];
			if (e == 'u')
			{
				pg_wchar	cp = 0;

				if (len - i < 6)
					return;
				for (int k = 2; k < 6; k++)
					cp = hex_value(t[i + k]) >= 0 ? cp * 16 + hex_value(t[i + k]) : 0x110000;
				if (view_add_code_point(v, dec, cp, i, i + 6))
				{
					i += 6;
					continue;
				}
			}
			else
			{
				const char *from = "btnfr";
				const char *into = "\b\t\n\f\r";
				const char *p = strchr(from, e);

				view_add(v, dec, p != NULL && e != '\0' ? into[p - from] : e, i, i + 2);
				i += 2;
				continue;
			}
		}
		view_add(v, dec, c, i, i + 1);
		i++;
	}
}

/* See net.h. */
char *
redact_text(Redactor *r, const char *text, size_t len, bool cut)
{
	bool	   *mask = palloc0(len + 1);
	View		raw = {text, len, NULL, NULL};
	StringInfoData out;
	static const ViewTrigger views[] = {
		{VIEW_PERCENT, '%'},
		{VIEW_PERCENT_PLUS, '+'},
		{VIEW_ENTITIES, '&'},
		{VIEW_BACKSLASH, '\\'},
	};

	mark_view(r, &raw, len, cut, mask);
	for (int k = 0; k < lengthof(views); k++)
	{
		View		v;
		char	   *dec;

		if (memchr(text, views[k].trigger, len) == NULL ||
			(views[k].kind == VIEW_PERCENT_PLUS && !r->form_has_space))
			continue;
		dec = palloc(len + 1);
		v.dec = dec;
		v.from = palloc(sizeof(uint32) * (len + 1));
		v.to = palloc(sizeof(uint32) * (len + 1));
		view_decode(views[k].kind, text, len, &v, dec);
		mark_view(r, &v, len, cut, mask);
		explicit_bzero(dec, len + 1);
		pfree(dec);
		pfree(v.from);
		pfree(v.to);
	}

	initStringInfo(&out);
	for (size_t i = 0; i < len;)
	{
		if (mask[i])
		{
			appendStringInfoString(&out, REDACT_MARKER);
			while (i < len && mask[i])
				i++;
		}
		else
			appendStringInfoChar(&out, text[i++]);
	}
	pfree(mask);
	return out.data;
}
