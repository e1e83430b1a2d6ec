/*-------------------------------------------------------------------------
 *
 * validation.c
 *	  Every problem that stops a version from being published.
 *
 * Validation collects all problems, not just the first, so that an author
 * can fix a version in one go:
 *	  - a version without overlays;
 *	  - overlay geometry that is not GeoJSON of the kind its overlay_type
 *	    needs (marker/label: Point; polyline: LineString or MultiLineString;
 *	    polygon: Polygon or MultiPolygon; image: Polygon), with positions of
 *	    two or three finite numbers, lines of two or more positions and
 *	    closed rings of four or more, coordinates below 1e15 in magnitude;
 *	  - an overlay whose asset is not an asset of this version, and an image
 *	    overlay without an asset;
 *	  - an asset without byte_size or sha256;
 *	  - a tileset that was never built, has no tiles, or has tiles outside
 *	    its zoom range.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"

#include <math.h>
#include <json-c/json.h>

#include "lib/stringinfo.h"

#define MAX_REPORTED_PROBLEMS 100
#define MAX_COORDINATE 1e15

typedef struct Problems
{
	List	   *list;
	const char *overlay;		/* key of the overlay being checked */
} Problems;

static void add_problem(Problems *p, const char *fmt,...) pg_attribute_printf(2, 3);

static void
add_problem(Problems *p, const char *fmt,...)
{
	StringInfoData buf;
	va_list		args;

	initStringInfo(&buf);
	if (p->overlay)
		appendStringInfo(&buf, "overlay \"%s\": ", p->overlay);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	p->list = lappend(p->list, buf.data);
}

static bool
is_number(json_object *v)
{
	return json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int);
}

/* A position: [x, y] or [x, y, z] of finite numbers. */
static bool
check_position(Problems *p, json_object *pos, const char *where)
{
	size_t		n;

	if (!json_object_is_type(pos, json_type_array) ||
		(n = json_object_array_length(pos)) < 2 || n > 3)
	{
		add_problem(p, "%s is not a position of 2 or 3 numbers", where);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		json_object *c = json_object_array_get_idx(pos, i);

		if (!is_number(c))
		{
			add_problem(p, "%s has a coordinate that is not a number", where);
			return false;
		}
		/*
		 * json-c turns numbers too large for a double into infinity and
		 * integers too large for 64 bits into the largest one: both are out
		 * of range here.
		 */
		if (!isfinite(json_object_get_double(c)) ||
			fabs(json_object_get_double(c)) >= MAX_COORDINATE)
		{
			add_problem(p, "%s has a coordinate that is not a finite number below 1e15", where);
			return false;
		}
	}
	return true;
}

/* An array of at least min positions; with closed, first equals last. */
static bool
check_positions(Problems *p, json_object *arr, size_t min, bool closed, const char *what)
{
	size_t		n;

	if (!json_object_is_type(arr, json_type_array))
	{
		add_problem(p, "%s is not an array of positions", what);
		return false;
	}
	n = json_object_array_length(arr);
	if (n < min)
	{
		add_problem(p, "%s has %zu position%s, at least %zu are needed",
					what, n, n == 1 ? "" : "s", min);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		char		where[128];

		snprintf(where, sizeof(where), "position %zu of %s", i + 1, what);
		if (!check_position(p, json_object_array_get_idx(arr, i), where))
			return false;
	}
	if (closed)
	{
		json_object *first = json_object_array_get_idx(arr, 0);
		json_object *last = json_object_array_get_idx(arr, n - 1);

		for (size_t i = 0; i < json_object_array_length(first); i++)
		{
			if (i >= json_object_array_length(last) ||
				json_object_get_double(json_object_array_get_idx(first, i)) !=
				json_object_get_double(json_object_array_get_idx(last, i)))
			{
				add_problem(p, "%s is not closed (its first and last positions differ)", what);
				return false;
			}
		}
	}
	return true;
}

/* Polygon coordinates: one or more closed rings of four or more positions. */
static bool
check_polygon(Problems *p, json_object *rings, const char *what)
{
	size_t		n;

	if (!json_object_is_type(rings, json_type_array) || (n = json_object_array_length(rings)) == 0)
	{
		add_problem(p, "%s needs an array of one or more linear rings", what);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		char		ring[128];

		snprintf(ring, sizeof(ring), "ring %zu of %s", i + 1, what);
		if (!check_positions(p, json_object_array_get_idx(rings, i), 4, true, ring))
			return false;
	}
	return true;
}

/* Each element of a Multi* geometry's coordinates, checked by kind. */
static bool
check_multi(Problems *p, json_object *coords, const char *type)
{
	size_t		n;

	if (!json_object_is_type(coords, json_type_array) || (n = json_object_array_length(coords)) == 0)
	{
		add_problem(p, "%s needs one or more parts", type);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		char		part[64];
		json_object *c = json_object_array_get_idx(coords, i);

		snprintf(part, sizeof(part), "part %zu of the %s", i + 1, type);
		if (strcmp(type, "MultiPolygon") == 0 ? !check_polygon(p, c, part)
			: !check_positions(p, c, 2, false, part))
			return false;
	}
	return true;
}

/*
 * Parses an overlay's geometry text; NULL if it does not parse, with the
 * reason in *error (json-c refuses nesting deeper than
 * JSON_TOKENER_DEFAULT_DEPTH, 32 levels, which jsonb allows: a hostile
 * geometry of 10,000 levels ends here as a validation problem).  The caller
 * releases the object.
 */
static json_object *
parse_geometry(const char *text, const char **error)
{
	json_object *obj;
	struct json_tokener *tok;
	enum json_tokener_error jerr;

	*error = NULL;
	if (text == NULL)
		return NULL;
	tok = json_tokener_new();
	if (tok == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while reading geometry")));
	obj = json_tokener_parse_ex(tok, text, -1);
	jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (obj != NULL && jerr != json_tokener_success)
	{
		json_object_put(obj);
		obj = NULL;
	}
	/* JSON null parses to NULL too, without an error */
	if (obj == NULL && jerr == json_tokener_error_depth)
		*error = psprintf("geometry is nested deeper than %d levels", JSON_TOKENER_DEFAULT_DEPTH);
	else if (obj == NULL && jerr != json_tokener_success)
		*error = pstrdup(json_tokener_error_desc(jerr));
	return obj;
}

static void check_geometry_object(Problems *p, ReleaseOverlay *o, json_object *geometry);

/*
 * Checks one overlay's geometry.  It is parsed here and freed at once, so
 * that a version of many overlays never holds more than one parsed
 * geometry (the release embeds the text, not the parsed object).
 */
static void
check_geometry(Problems *p, ReleaseOverlay *o)
{
	const char *error;
	json_object *geometry = parse_geometry(o->geometry_text, &error);

	if (geometry == NULL && error != NULL)
	{
		add_problem(p, "geometry could not be read: %s", error);
		return;
	}
	PG_TRY();
	{
		check_geometry_object(p, o, geometry);
	}
	PG_FINALLY();
	{
		json_object_put(geometry);
	}
	PG_END_TRY();
}

static void
check_geometry_object(Problems *p, ReleaseOverlay *o, json_object *geometry)
{
	json_object *type_obj;
	json_object *coords;
	const char *type;
	const char *expected;
	bool		allowed;

	if (geometry == NULL || !json_object_is_type(geometry, json_type_object))
	{
		add_problem(p, "geometry is not a GeoJSON geometry object");
		return;
	}
	if (!json_object_object_get_ex(geometry, "type", &type_obj) ||
		!json_object_is_type(type_obj, json_type_string))
	{
		add_problem(p, "geometry has no \"type\"");
		return;
	}
	type = json_object_get_string(type_obj);

	if (strcmp(o->overlay_type, "marker") == 0 || strcmp(o->overlay_type, "label") == 0)
	{
		expected = "Point";
		allowed = strcmp(type, "Point") == 0;
	}
	else if (strcmp(o->overlay_type, "polyline") == 0)
	{
		expected = "LineString or MultiLineString";
		allowed = strcmp(type, "LineString") == 0 || strcmp(type, "MultiLineString") == 0;
	}
	else if (strcmp(o->overlay_type, "polygon") == 0)
	{
		expected = "Polygon or MultiPolygon";
		allowed = strcmp(type, "Polygon") == 0 || strcmp(type, "MultiPolygon") == 0;
	}
	else
	{
		expected = "Polygon";
		allowed = strcmp(type, "Polygon") == 0;
	}
	if (!allowed)
	{
		add_problem(p, "geometry type \"%s\" does not fit overlay type %s (expected %s)",
					type, o->overlay_type, expected);
		return;
	}

	if (!json_object_object_get_ex(geometry, "coordinates", &coords))
	{
		add_problem(p, "%s geometry has no \"coordinates\"", type);
		return;
	}
	if (strcmp(type, "Point") == 0)
		(void) check_position(p, coords, "the Point");
	else if (strcmp(type, "LineString") == 0)
		(void) check_positions(p, coords, 2, false, "the LineString");
	else if (strcmp(type, "Polygon") == 0)
		(void) check_polygon(p, coords, "the Polygon");
	else
		(void) check_multi(p, coords, type);
}

/*
 * Returns every problem of the input as a List of palloc'd strings; NIL
 * when the version can be published.
 */
List *
release_validate(ReleaseInput *in)
{
	Problems	p = {NIL, NULL};
	ListCell   *lc;

	if (in->overlays == NIL)
		add_problem(&p, "the version has no overlays");

	foreach(lc, in->assets)
	{
		ReleaseAsset *a = lfirst(lc);

		if (!a->has_size)
			add_problem(&p, "asset \"%s\" has no byte_size", a->key);
		if (a->sha256 == NULL)
			add_problem(&p, "asset \"%s\" has no sha256", a->key);
	}

	foreach(lc, in->overlays)
	{
		ReleaseOverlay *o = lfirst(lc);

		p.overlay = o->key;
		check_geometry(&p, o);
		if (o->has_asset_id && o->asset_key == NULL)
			add_problem(&p, "refers to an asset that is not an asset of this version");
		else if (strcmp(o->overlay_type, "image") == 0 && !o->has_asset_id)
			add_problem(&p, "an image overlay needs an asset");
	}
	p.overlay = NULL;

	if (in->tileset != NULL)
	{
		if (in->tileset->source_path == NULL)
			add_problem(&p, "the tileset has not been built (its source_path is not set)");
		if (in->tileset->tile_count == 0)
			add_problem(&p, "the tileset has no tiles in its manifest");
		if (in->tileset->tiles_outside_zoom > 0)
			add_problem(&p, "%lld tiles of the manifest are outside the tileset's zoom range %d-%d",
						(long long) in->tileset->tiles_outside_zoom,
						in->tileset->min_zoom, in->tileset->max_zoom);
	}
	return p.list;
}

/*
 * Raises the error that lists every problem: the message counts them, the
 * detail has one per line.
 */
void
release_report_problems(ReleaseInput *in, List *problems)
{
	StringInfoData detail;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&detail);
	foreach(lc, problems)
	{
		if (++n > MAX_REPORTED_PROBLEMS)
		{
			appendStringInfo(&detail, "\n... and %d more",
							 list_length(problems) - MAX_REPORTED_PROBLEMS);
			break;
		}
		appendStringInfo(&detail, "%s- %s", n > 1 ? "\n" : "", (char *) lfirst(lc));
	}
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg_plural("version %d of project \"%s\" cannot be published: %d problem",
						   "version %d of project \"%s\" cannot be published: %d problems",
						   list_length(problems),
						   in->version_number, in->project_slug, list_length(problems)),
			 errdetail("%s", detail.data),
			 errhint("SELECT * FROM publish.validate_version('%s', %d) lists them.",
					 in->project_slug, in->version_number)));
}
