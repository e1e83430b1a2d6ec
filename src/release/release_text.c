/*-------------------------------------------------------------------------
 *
 * release_text.c
 *	  The text of jsonb values in release.json, counted before it is made
 *	  and written a piece at a time.
 *
 * release.json holds each overlay's geometry and properties as the text
 * jsonb's output function makes of them (JsonbToCString: ", " between
 * elements, ": " after keys, strings escaped as escape_json does, numbers
 * as numeric_out prints them), so that the same rows always give the same
 * bytes.  That text can be far larger than the value: jsonb stores
 * 1e131071 in a few bytes and prints it as 131,072 digits, so a row of
 * tens of kilobytes can print as a gigabyte.  Making the whole text and
 * measuring it afterwards lets any row take the worker's memory; here the
 * text is produced token by token into the caller's buffer, which is handed
 * on (ReleaseTextSink.flush, where the caller checks its limit) before any
 * token would take it past flush_at.  A number's length is known from its
 * header before it is printed, so a number that would pass the limit is
 * never printed; a long string is escaped in runs.  What is held at once
 * is the buffer, at most flush_at plus one number's text (numeric has at
 * most 147,455 digits and a sign and point).
 *
 * release_text_size counts the same bytes without making them:
 * publish._check_release_limits sums it over a version's rows.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "publish.h"
#include "release/release.h"

/* the longest run of a string appended at once */
#define STRING_RUN	8192

typedef struct TextOut
{
	ReleaseTextSink *sink;		/* NULL: count only */
	uint64		size;			/* bytes of text so far */
} TextOut;

/* Hands the sink's buffer on when n more bytes would take it past flush_at. */
static inline void
make_room(ReleaseTextSink *sink, size_t n)
{
	if ((size_t) sink->buf->len + n > (size_t) sink->flush_at)
		sink->flush(sink->arg, n);
}

static inline void
put(TextOut *o, const char *bytes, size_t n)
{
	o->size += n;
	if (o->sink != NULL)
	{
		make_room(o->sink, n);
		appendBinaryStringInfo(o->sink->buf, bytes, n);
	}
}

/*
 * The length of numeric_out's text of num, read from its header: a "-"
 * when negative; the integer part ("0" when the weight is negative, else
 * the digits of the first base-10000 digit without leading zeros and 4 for
 * each further one); "." and dscale digits when dscale is positive.  The
 * header is numeric's on-disk format (numeric.c: a short form with sign,
 * dscale and weight in one uint16, or a long form with sign and dscale,
 * then an int16 weight), which pg_upgrade keeps unchanged.  NaN and the
 * infinities, which jsonb never holds, are printed to be measured.
 */
static size_t
numeric_text_length(Numeric num)
{
	const char *data = VARDATA_ANY(num);
	size_t		data_len = VARSIZE_ANY_EXHDR(num);
	uint16		header;
	bool		negative;
	int			dscale;
	int			weight;
	size_t		header_len;
	size_t		len;

	memcpy(&header, data, sizeof(header));
	switch (header & 0xC000)
	{
		case 0x8000:			/* short form */
			negative = (header & 0x2000) != 0;
			dscale = (header & 0x1F80) >> 7;
			weight = (header & 0x0040) ? (int) (header & 0x003F) - 64 : (int) (header & 0x003F);
			header_len = sizeof(uint16);
			break;
		case 0x0000:			/* long form, positive */
		case 0x4000:			/* long form, negative */
			{
				int16		w;

				negative = (header & 0xC000) == 0x4000;
				dscale = header & 0x3FFF;
				memcpy(&w, data + sizeof(uint16), sizeof(w));
				weight = w;
				header_len = sizeof(uint16) + sizeof(int16);
				break;
			}
		default:
			{
				char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(num)));

				len = strlen(text);
				pfree(text);
				return len;
			}
	}

	len = negative ? 1 : 0;
	if (weight < 0)
		len += 1;
	else
	{
		int16		first = 0;

		if (data_len >= header_len + sizeof(int16))
			memcpy(&first, data + header_len, sizeof(first));
		len += (first >= 1000 ? 4 : first >= 100 ? 3 : first >= 10 ? 2 : 1) + 4 * (size_t) weight;
	}
	if (dscale > 0)
		len += 1 + dscale;
	return len;
}

static void
put_numeric(TextOut *o, Numeric num)
{
	size_t		n = numeric_text_length(num);
	char	   *text;

	o->size += n;
	if (o->sink == NULL)
		return;
	make_room(o->sink, n);
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));

	Assert(strlen(text) == n);
	appendBinaryStringInfoNT(o->sink->buf, text, strlen(text));
	pfree(text);
}

/* Does escape_json write c as an escape? */
static inline bool
needs_escape(char c)
{
	return (unsigned char) c < ' ' || c == '"' || c == '\\';
}

/* A string as escape_json writes it (which stops at a NUL; jsonb holds none). */
static void
put_string(TextOut *o, const char *s, int len)
{
	const char *end = s + strnlen(s, len);

	put(o, "\"", 1);
	while (s < end)
	{
		const char *run = s;

		while (s < end && s - run < STRING_RUN && !needs_escape(*s))
			s++;
		if (s > run)
			put(o, run, s - run);
		if (s < end && needs_escape(*s))
		{
			char		esc[7];
			int			n = 2;

			esc[0] = '\\';
			switch (*s)
			{
				case '\b':
					esc[1] = 'b';
					break;
				case '\f':
					esc[1] = 'f';
					break;
				case '\n':
					esc[1] = 'n';
					break;
				case '\r':
					esc[1] = 'r';
					break;
				case '\t':
					esc[1] = 't';
					break;
				case '"':
				case '\\':
					esc[1] = *s;
					break;
				default:
					n = snprintf(esc, sizeof(esc), "\\u%04x", (int) *s);
					break;
			}
			put(o, esc, n);
			s++;
		}
	}
	put(o, "\"", 1);
}

static void
put_scalar(TextOut *o, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			put(o, "null", 4);
			break;
		case jbvString:
			put_string(o, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			put_numeric(o, v->val.numeric);
			break;
		case jbvBool:
			if (v->val.boolean)
				put(o, "true", 4);
			else
				put(o, "false", 5);
			break;
		default:
			elog(ERROR, "unknown jsonb scalar type");
	}
}

/* The text of value, token by token, as JsonbToCString makes it. */
static void
walk(Jsonb *value, TextOut *o)
{
	JsonbIterator *it = JsonbIteratorInit(&value->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;	/* no separator before the next item */
	bool		raw_scalar = false;
	uint32		tokens = 0;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				if (!first)
					put(o, ", ", 2);
				if (v.val.array.rawScalar)
					raw_scalar = true;
				else
					put(o, "[", 1);
				first = true;
				break;
			case WJB_BEGIN_OBJECT:
				if (!first)
					put(o, ", ", 2);
				put(o, "{", 1);
				first = true;
				break;
			case WJB_KEY:
				if (!first)
					put(o, ", ", 2);
				put_scalar(o, &v);
				put(o, ": ", 2);
				first = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					put(o, ", ", 2);
				put_scalar(o, &v);
				first = false;
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					put(o, "]", 1);
				first = false;
				break;
			case WJB_END_OBJECT:
				put(o, "}", 1);
				first = false;
				break;
			default:
				elog(ERROR, "unknown jsonb iterator token type");
		}
		if ((++tokens & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
}

/*
 * How many bytes the text of value (jsonb_out's) has, counted without
 * making it.
 */
uint64
release_text_size(Jsonb *value)
{
	TextOut		o = {NULL, 0};

	walk(value, &o);
	return o.size;
}

/*
 * Appends the text of value (jsonb_out's) to sink->buf, calling
 * sink->flush whenever the next piece would take the buffer past
 * sink->flush_at.
 */
void
release_text_write(Jsonb *value, ReleaseTextSink *sink)
{
	TextOut		o = {sink, 0};

	walk(value, &o);
}
