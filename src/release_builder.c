/*-------------------------------------------------------------------------
 *
 * release_builder.c
 *	  release.json, built with json-c from a ReleaseInput.
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
 *
 * Geometry and properties are embedded as the text PostgreSQL wrote for the
 * jsonb values (raw_json), so they are byte-for-byte what the database holds.
 * json-c allocates with malloc: the root is released in PG_FINALLY.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include <json-c/json.h>

#define RELEASE_SCHEMA_VERSION 1

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

/* Writes a raw-JSON object: the text PostgreSQL produced, unchanged. */
static int
raw_json_serializer(json_object *jso, struct printbuf *pb, int level, int flags)
{
	const char *text = json_object_get_userdata(jso);

	return printbuf_memappend(pb, text, strlen(text));
}

/*
 * A json-c object that serializes as the given JSON text (valid JSON from a
 * jsonb column), so nested documents are neither reparsed nor re-formatted.
 * The text must outlive the object.
 */
static json_object *
raw_json(char *text)
{
	json_object *obj;

	if (text == NULL)
		return NULL;
	obj = checked(json_object_new_object());
	json_object_set_serializer(obj, raw_json_serializer, text, NULL);
	return obj;
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

static void
build_document(json_object *root, ReleaseInput *in)
{
	json_object *project;
	json_object *assets;
	json_object *overlays;
	ListCell   *lc;

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
		add(obj, "url", str_or_null(release_url_of(in, a->storage_path)));
		add(obj, "content_type", str_or_null(a->content_type));
		add(obj, "byte_size", a->has_size ? checked(json_object_new_int64(a->byte_size)) : NULL);
		add(obj, "sha256", str_or_null(a->sha256));
	}

	overlays = checked(json_object_new_array_ext(list_length(in->overlays)));
	add(root, "overlays", overlays);
	foreach(lc, in->overlays)
	{
		ReleaseOverlay *o = lfirst(lc);
		json_object *obj = checked(json_object_new_object());

		append(overlays, obj);
		add(obj, "key", str_or_null(o->key));
		add(obj, "name", str_or_null(o->name));
		add(obj, "type", str_or_null(o->overlay_type));
		add(obj, "geometry", raw_json(o->geometry_text));
		add(obj, "properties", raw_json(o->properties_text));
		add(obj, "asset", str_or_null(o->asset_key));
	}

	if (in->tileset == NULL)
		add(root, "tileset", NULL);
	else
	{
		ReleaseTileset *ts = in->tileset;
		json_object *obj = checked(json_object_new_object());

		add(root, "tileset", obj);
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
	}
}

/*
 * Builds release.json; returns it palloc'd in the current memory context
 * with its length in *len.  The input must have passed release_validate.
 */
char *
release_build_json(ReleaseInput *in, size_t *len)
{
	json_object *root = checked(json_object_new_object());
	char	   *result = NULL;

	PG_TRY();
	{
		const char *text;

		build_document(root, in);
		text = json_object_to_json_string_length(root,
												 JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
												 len);
		if (text == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while writing release.json")));
		result = palloc(*len + 1);
		memcpy(result, text, *len + 1);
	}
	PG_FINALLY();
	{
		json_object_put(root);
	}
	PG_END_TRY();
	return result;
}
