/*-------------------------------------------------------------------------
 *
 * release_builder.c
 *	  release.json, written overlay by overlay as they stream from the
 *	  database, and checked on the way.
 *
 * The document is deterministic: keys in a fixed order, assets and overlays
 * ordered by key (release_input.c), numbers written as PostgreSQL wrote
 * them.  Same input, same bytes.  Layout:
 *
 *	{"schema_version": 1,
 *	 "project": {"slug", "name"}, "version", "environment", "published_at",
 *	 "assets": [{"key", "kind", "path", "url", "content_type", "byte_size", "sha256"}],
 *	 "overlays": [{"key", "name", "type", "geometry", "properties", "asset"}],
 *	 "tileset": {"format", "tile_size", "min_zoom", "max_zoom", "bounds",
 *	             "tile_count", "url_template"} | null}
 *	(written without spaces: json-c's JSON_C_TO_STRING_PLAIN).
 *
 * One pass over the overlays both validates and writes: each overlay is
 * checked (validation.c) and, while no problem has been found, written.
 * The head (project, assets) and the tileset are small json-c trees,
 * serialized by json-c.  An overlay is written piece by piece: its strings
 * are escaped by json-c (one reused string object, so no allocation per
 * overlay), and its geometry and properties are the text PostgreSQL makes
 * of the jsonb values (as jsonb's output function does), written into the
 * staging buffer by release_text.c, so nested documents are neither parsed
 * nor re-formatted and numbers are never rounded.  The staging buffer goes
 * to the ReleaseDoc (release_doc.c) in pieces of about 64 kB, each checked
 * against publish.max_release_size before it is added, and release_text.c
 * hands it on within a value too: a value whose text is far larger than
 * the value (huge numbers, escapes) never fills more than a piece.  Peak
 * memory: the document (at most publish.max_release_size), one staging
 * buffer, one overlay's values (which release_input.c bounds by the same
 * limit) and one batch of rows.
 *
 * json-c allocates with malloc: every json-c object is released in a
 * PG_FINALLY.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <json-c/json.h>

#include "lib/stringinfo.h"

#include "publish.h"
#include "release/release.h"
#include "util/util.h"

/* json-c's default depth, less the three containers around a value */
StaticAssertDecl(RELEASE_VALUE_MAX_DEPTH == JSON_TOKENER_DEFAULT_DEPTH - 3,
				 "RELEASE_VALUE_MAX_DEPTH must follow json-c's default depth");

#define RELEASE_SCHEMA_VERSION 1
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define STAGING_FLUSH_AT 65536

typedef struct Builder
{
	ReleaseInput *in;
	ReleaseDoc *doc;			/* NULL: check only */
	ReleaseProblems *problems;
	StringInfoData buf;			/* staging, flushed into doc */
	json_object *str;			/* reused to escape each string */
	bool		first;			/* no overlay written yet */
} Builder;

/* json-c returns NULL when malloc fails; turn that into an error. */
static json_object *
checked(json_object *obj)
{
	if (obj == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building release.json")));
	return obj;
}

static void
add(json_object *obj, const char *key, json_object *value)
{
	/* json-c takes the reference even on failure; value NULL means JSON null */
	if (json_object_object_add(obj, key, value) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building release.json")));
}

static json_object *
str_or_null(const char *s)
{
	return s ? checked(json_object_new_string(s)) : NULL;
}

static void
append(json_object *arr, json_object *value)
{
	if (json_object_array_add(arr, value) != 0)
	{
		json_object_put(value);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building release.json")));
	}
}

/* The public URL of a key under the target's root. */
static char *
release_url_of(ReleaseInput *in, const char *key)
{
	size_t		n = strlen(in->base_url);

	return psprintf("%s%s%s", in->base_url,
					n > 0 && in->base_url[n - 1] == '/' ? "" : "/", key);
}

/* The URL template of the version's tiles, e.g. .../tiles/v3/{z}/{x}/{y}.png */
static char *
release_tile_url_template(ReleaseInput *in)
{
	return psprintf("%s/%s/tiles/v%d/{z}/{x}/{y}.%s",
					release_url_of(in, in->env), in->project_slug, in->version_number,
					in->tileset->format);
}

/* Appends the JSON text of a json-c value (NULL: null) to the staging buffer. */
static void
put_json(Builder *b, json_object *value)
{
	size_t		len;
	const char *text;

	if (value == NULL)
	{
		appendBinaryStringInfo(&b->buf, "null", 4);
		return;
	}
	text = json_object_to_json_string_length(value, JSON_FLAGS, &len);

	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while writing release.json")));
	appendBinaryStringInfo(&b->buf, text, len);
}

/* Appends a string as a JSON string, escaped by json-c (NULL: null). */
static void
put_string(Builder *b, const char *s)
{
	if (s == NULL)
	{
		appendBinaryStringInfo(&b->buf, "null", 4);
		return;
	}
	if (!json_object_set_string(b->str, s))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while writing release.json")));
	put_json(b, b->str);
}

/*
 * Moves the staging buffer into the document, after checking that it and
 * coming more bytes fit in publish.max_release_size (PT413 if not); a
 * ReleaseTextSink's flush.
 */
static void
flush_before(void *arg, size_t coming)
{
	Builder    *b = arg;

	release_doc_check_size(b->doc, b->buf.len + coming, b->in);
	release_doc_append(b->doc, b->buf.data, b->buf.len);
	resetStringInfo(&b->buf);
}

static void
flush(Builder *b)
{
	flush_before(b, 0);
}

/* Appends a jsonb value's text, as jsonb_out writes it (NULL: null). */
static void
put_jsonb(Builder *b, Jsonb *value)
{
	ReleaseTextSink sink = {&b->buf, STAGING_FLUSH_AT, flush_before, b};

	if (value == NULL)
		appendBinaryStringInfo(&b->buf, "null", 4);
	else
		release_text_write(value, &sink);
}

/*
 * The document up to the overlays: the head object, serialized by json-c
 * without its closing brace, then the key of the overlays.
 */
static void
write_head(Builder *b)
{
	ReleaseInput *in = b->in;
	json_object *root = checked(json_object_new_object());

	PG_TRY();
	{
		json_object *project;
		json_object *assets;
		ListCell   *lc;
		int			start = b->buf.len;

		add(root, "schema_version", checked(json_object_new_int(RELEASE_SCHEMA_VERSION)));
		project = checked(json_object_new_object());
		add(root, "project", project);
		add(project, "slug", str_or_null(in->project_slug));
		add(project, "name", str_or_null(in->project_name));
		add(root, "version", checked(json_object_new_int(in->version_number)));
		add(root, "environment", str_or_null(in->env));
		add(root, "published_at", str_or_null(in->published_at));

		assets = checked(json_object_new_array_ext(list_length(in->assets)));
		add(root, "assets", assets);
		foreach(lc, in->assets)
		{
			ReleaseAsset *a = lfirst(lc);
			json_object *obj = checked(json_object_new_object());

			append(assets, obj);
			add(obj, "key", str_or_null(a->key));
			add(obj, "kind", str_or_null(a->kind));
			add(obj, "path", str_or_null(a->storage_path));
			add(obj, "url", str_or_null(release_url_of(in, url_encode_path(a->storage_path))));
			add(obj, "content_type", str_or_null(a->content_type));
			add(obj, "byte_size", a->has_size ? checked(json_object_new_int64(a->byte_size)) : NULL);
			add(obj, "sha256", str_or_null(a->sha256));
		}
		put_json(b, root);
		/* drop the closing brace: the overlays and the tileset follow */
		Assert(b->buf.len > start && b->buf.data[b->buf.len - 1] == '}');
		(void) start;
		b->buf.data[--b->buf.len] = '\0';
		appendStringInfoString(&b->buf, ",\"overlays\":[");
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
}

/* The end of the document: the overlays' closing bracket and the tileset. */
static void
write_tail(Builder *b)
{
	ReleaseInput *in = b->in;
	ReleaseTileset *ts = in->tileset;
	json_object *obj;

	appendStringInfoString(&b->buf, "],\"tileset\":");
	if (ts == NULL)
	{
		appendStringInfoString(&b->buf, "null}");
		return;
	}
	obj = checked(json_object_new_object());
	PG_TRY();
	{
		add(obj, "format", str_or_null(ts->format));
		add(obj, "tile_size", checked(json_object_new_int(ts->tile_size)));
		add(obj, "min_zoom", checked(json_object_new_int(ts->min_zoom)));
		add(obj, "max_zoom", checked(json_object_new_int(ts->max_zoom)));
		if (!ts->has_bounds)
			add(obj, "bounds", NULL);
		else
		{
			json_object *bounds = checked(json_object_new_array_ext(4));

			add(obj, "bounds", bounds);
			for (int i = 0; i < 4; i++)
				append(bounds, checked(json_object_new_double_s(strtod(ts->bounds_text[i], NULL),
																ts->bounds_text[i])));
		}
		add(obj, "tile_count", checked(json_object_new_int64(ts->tile_count)));
		add(obj, "url_template", str_or_null(release_tile_url_template(in)));
		put_json(b, obj);
	}
	PG_FINALLY();
	{
		json_object_put(obj);
	}
	PG_END_TRY();
	appendStringInfoChar(&b->buf, '}');
}

/* One overlay from the scan: checked, then written while all is well. */
static void
overlay_callback(ReleaseOverlay *o, void *arg)
{
	Builder    *b = arg;

	release_check_overlay(b->problems, o);
	if (b->doc == NULL || release_problems_found(b->problems))
		return;					/* no document will come of it */

	appendStringInfoString(&b->buf, b->first ? "{\"key\":" : ",{\"key\":");
	b->first = false;
	put_string(b, o->key);
	appendStringInfoString(&b->buf, ",\"name\":");
	put_string(b, o->name);
	appendStringInfoString(&b->buf, ",\"type\":");
	put_string(b, o->overlay_type);
	appendStringInfoString(&b->buf, ",\"geometry\":");
	put_jsonb(b, o->geometry);
	appendStringInfoString(&b->buf, ",\"properties\":");
	put_jsonb(b, o->properties);
	appendStringInfoString(&b->buf, ",\"asset\":");
	put_string(b, o->asset_key);
	appendStringInfoChar(&b->buf, '}');
	if (b->buf.len >= STAGING_FLUSH_AT)
		flush(b);
}

/*
 * Checks the release and, with a doc, writes release.json into it, in one
 * pass over the overlays.  Returns the problems (a List of palloc'd
 * strings, see validation.c): the first keep_problems, or all with 0;
 * in->problem_count counts them all.  When there is any, the doc holds no
 * usable document.  The caller is in a transaction with SPI connected;
 * problems are allocated in the current memory context.
 */
List *
release_build(ReleaseInput *in, ReleaseDoc *doc, int keep_problems)
{
	Builder		b;
	List	   *problems;

	memset(&b, 0, sizeof(b));
	b.in = in;
	b.doc = doc;
	b.first = true;
	b.problems = release_problems_begin(in, keep_problems);
	if (doc != NULL)
	{
		initStringInfo(&b.buf);
		enlargeStringInfo(&b.buf, STAGING_FLUSH_AT + 8192);
		write_head(&b);
		b.str = checked(json_object_new_string(""));
	}
	PG_TRY();
	{
		(void) release_input_scan_overlays(in, overlay_callback, &b);
	}
	PG_FINALLY();
	{
		if (b.str != NULL)
			json_object_put(b.str);
	}
	PG_END_TRY();
	problems = release_problems_end(b.problems, in);
	if (doc != NULL)
	{
		if (problems == NIL)
		{
			write_tail(&b);
			flush(&b);
		}
		release_doc_finish(doc);
		pfree(b.buf.data);
	}
	return problems;
}
