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
 * Overlays are checked one at a time as release_input_scan_overlays streams
 * them (release_build drives the scan).  A geometry is checked on its jsonb
 * binary form, by looking members and elements up in place: nothing is
 * parsed or copied.  Numbers are jsonb numerics; they are compared with
 * numeric_cmp in the common case and converted to double where the old
 * json-c checks did (near 1e15, and for unequal ring ends), so the verdicts
 * are those of a double-precision GeoJSON reader.  A geometry nested deeper
 * than RELEASE_VALUE_MAX_DEPTH levels is reported as such instead of any other
 * problem.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <math.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "publish.h"
#include "release/release.h"

#define MAX_COORDINATE 1e15


struct ReleaseProblems
{
	List	   *list;
	int			keep;			/* strings kept in list; 0: all */
	int64		count;			/* problems found, kept or not */
	const char *overlay;		/* key of the overlay being checked */
	MemoryContext mcxt;			/* where the list and its strings live */
	Datum		fast_max;		/* numeric 1e14: below it, no double needed */
	Datum		fast_min;		/* numeric -1e14 */
	Datum		out_max;		/* numeric 1e16: from it on, out of range
								 * unprinted */
	Datum		out_min;		/* numeric -1e16 */
};

typedef ReleaseProblems Problems;

static void add_problem(Problems *p, const char *fmt,...) pg_attribute_printf(2, 3);

static void
add_problem(Problems *p, const char *fmt,...)
{
	MemoryContext old;
	StringInfoData buf;
	va_list		args;

	p->count++;
	if (p->keep > 0 && list_length(p->list) >= p->keep)
		return;
	old = MemoryContextSwitchTo(p->mcxt);
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
	MemoryContextSwitchTo(old);
}

static bool
is_number(JsonbValue *v)
{
	return v != NULL && v->type == jbvNumeric;
}

static bool
is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static size_t
jarray_length(JsonbValue *v)
{
	return JsonContainerSize(v->val.binary.data);
}

static JsonbValue *
jarray_get(JsonbValue *v, size_t i)
{
	return getIthJsonbValueFromContainer(v->val.binary.data, i);
}

/* A jsonb number as a GeoJSON reader's double (strtod: huge ones are inf). */
static double
number_double(JsonbValue *v)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(v->val.numeric)));

	return strtod(text, NULL);
}

static bool
number_in_range(Problems *p, JsonbValue *v)
{
	Datum		d = NumericGetDatum(v->val.numeric);
	double		x;

	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, d, p->fast_max)) < 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, d, p->fast_min)) > 0)
		return true;
	/* a number as large as 1e131071 is not printed to be refused */
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, d, p->out_max)) >= 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, d, p->out_min)) <= 0)
		return false;
	x = number_double(v);
	return isfinite(x) && fabs(x) < MAX_COORDINATE;
}

static bool
numbers_equal(JsonbValue *a, JsonbValue *b)
{
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a->val.numeric),
										  NumericGetDatum(b->val.numeric))) == 0)
		return true;
	/* unequal numbers may still be the same double */
	return number_double(a) == number_double(b);
}

/* A position: [x, y] or [x, y, z] of finite numbers. */
static bool
check_position(Problems *p, JsonbValue *pos, const char *where)
{
	size_t		n;

	if (!is_array(pos) || (n = jarray_length(pos)) < 2 || n > 3)
	{
		add_problem(p, "%s is not a position of 2 or 3 numbers", where);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		JsonbValue *c = jarray_get(pos, i);

		if (!is_number(c))
		{
			add_problem(p, "%s has a coordinate that is not a number", where);
			return false;
		}
		if (!number_in_range(p, c))
		{
			add_problem(p, "%s has a coordinate that is not a finite number below 1e15", where);
			return false;
		}
	}
	return true;
}

/* An array of at least min positions; with closed, first equals last. */
static bool
check_positions(Problems *p, JsonbValue *arr, size_t min, bool closed, const char *what)
{
	size_t		n;

	if (!is_array(arr))
	{
		add_problem(p, "%s is not an array of positions", what);
		return false;
	}
	n = jarray_length(arr);
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
		if (!check_position(p, jarray_get(arr, i), where))
			return false;
	}
	if (closed)
	{
		JsonbValue *first = jarray_get(arr, 0);
		JsonbValue *last = jarray_get(arr, n - 1);

		for (size_t i = 0; i < jarray_length(first); i++)
		{
			if (i >= jarray_length(last) ||
				!numbers_equal(jarray_get(first, i), jarray_get(last, i)))
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
check_polygon(Problems *p, JsonbValue *rings, const char *what)
{
	size_t		n;

	if (!is_array(rings) || (n = jarray_length(rings)) == 0)
	{
		add_problem(p, "%s needs an array of one or more linear rings", what);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		char		ring[128];

		snprintf(ring, sizeof(ring), "ring %zu of %s", i + 1, what);
		if (!check_positions(p, jarray_get(rings, i), 4, true, ring))
			return false;
	}
	return true;
}

/* Each element of a Multi* geometry's coordinates, checked by kind. */
static bool
check_multi(Problems *p, JsonbValue *coords, const char *type)
{
	size_t		n;

	if (!is_array(coords) || (n = jarray_length(coords)) == 0)
	{
		add_problem(p, "%s needs one or more parts", type);
		return false;
	}
	for (size_t i = 0; i < n; i++)
	{
		char		part[64];
		JsonbValue *c = jarray_get(coords, i);

		snprintf(part, sizeof(part), "part %zu of the %s", i + 1, type);
		if (strcmp(type, "MultiPolygon") == 0 ? !check_polygon(p, c, part)
			: !check_positions(p, c, 2, false, part))
			return false;
	}
	return true;
}

/*
 * Is a value in the container (depth: the container's own, the root's
 * being 1) deeper than RELEASE_VALUE_MAX_DEPTH?  The walk stops at the first
 * value too deep, so a hostile geometry costs no more than the limit.
 */
static bool
deeper_than_limit(JsonbContainer *root)
{
	JsonbIterator *it = JsonbIteratorInit(root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				if (++depth > RELEASE_VALUE_MAX_DEPTH)
					return true;
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				depth--;
				break;
			case WJB_ELEM:
			case WJB_VALUE:
				if (depth + 1 > RELEASE_VALUE_MAX_DEPTH)
					return true;
				break;
			default:
				break;
		}
	}
	return false;
}

static void
check_geometry_object(Problems *p, ReleaseOverlay *o, Jsonb *geometry)
{
	JsonbValue *type_val;
	JsonbValue *coords;
	char	   *type;
	const char *expected;
	bool		allowed;

	if (geometry == NULL || !JB_ROOT_IS_OBJECT(geometry))
	{
		add_problem(p, "geometry is not a GeoJSON geometry object");
		return;
	}
	type_val = getKeyJsonValueFromContainer(&geometry->root, "type", 4, NULL);
	if (type_val == NULL || type_val->type != jbvString)
	{
		add_problem(p, "geometry has no \"type\"");
		return;
	}
	type = pnstrdup(type_val->val.string.val, type_val->val.string.len);

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

	coords = getKeyJsonValueFromContainer(&geometry->root, "coordinates", 11, NULL);
	if (coords == NULL)
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
 * Checks one overlay's geometry.  A geometry too deep is reported as that
 * alone.  The checks above reach at most 5 levels, so the depth is walked
 * only when they found a problem or the object has other members than
 * "type" and "coordinates".
 */
static void
check_geometry(Problems *p, ReleaseOverlay *o)
{
	Jsonb	   *g = o->geometry;
	int			kept = list_length(p->list);
	int64		found = p->count;
	bool		plain = g != NULL && JB_ROOT_IS_OBJECT(g) && JB_ROOT_COUNT(g) <= 2;

	if (!plain && g != NULL && deeper_than_limit(&g->root))
	{
		add_problem(p, "geometry could not be read: geometry is nested deeper than %d levels",
					RELEASE_VALUE_MAX_DEPTH);
		return;
	}
	check_geometry_object(p, o, g);
	if (plain && p->count > found && deeper_than_limit(&g->root))
	{
		p->list = list_truncate(p->list, kept);
		p->count = found;
		add_problem(p, "geometry could not be read: geometry is nested deeper than %d levels",
					RELEASE_VALUE_MAX_DEPTH);
	}
}

/*
 * Starts the problems of a release: those of its assets.  The list and its
 * strings live in the current memory context; with keep > 0 it holds the
 * first keep only (an error lists no more), however many are found.
 */
ReleaseProblems *
release_problems_begin(ReleaseInput *in, int keep)
{
	Problems   *p = palloc0(sizeof(Problems));
	ListCell   *lc;

	p->mcxt = CurrentMemoryContext;
	p->keep = keep;
	p->fast_max = DirectFunctionCall3(numeric_in, CStringGetDatum("1e14"),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	p->fast_min = DirectFunctionCall3(numeric_in, CStringGetDatum("-1e14"),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	p->out_max = DirectFunctionCall3(numeric_in, CStringGetDatum("1e16"),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	p->out_min = DirectFunctionCall3(numeric_in, CStringGetDatum("-1e16"),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	foreach(lc, in->assets)
	{
		ReleaseAsset *a = lfirst(lc);

		if (!a->has_size)
			add_problem(p, "asset \"%s\" has no byte_size", a->key);
		if (a->sha256 == NULL)
			add_problem(p, "asset \"%s\" has no sha256", a->key);
	}
	return p;
}

/*
 * Properties nested deeper than RELEASE_VALUE_MAX_DEPTH: what the constraint
 * overlays_properties_depth refuses, found in rows written before it.  A
 * value that deep holds a chain of RELEASE_VALUE_MAX_DEPTH containers and a value
 * in the last; in jsonb's binary form each container but the root takes at
 * least 8 bytes (its JEntry in its parent and its header), the root's
 * header, the last value's JEntry and the varlena header 4 each: at least
 * 8 * RELEASE_VALUE_MAX_DEPTH + 4 bytes.  Smaller values, most of them, are not
 * walked.
 */
static void
check_properties(Problems *p, ReleaseOverlay *o)
{
	Jsonb	   *props = o->properties;

	if (props != NULL && VARSIZE(props) > 8 * RELEASE_VALUE_MAX_DEPTH &&
		deeper_than_limit(&props->root))
		add_problem(p, "properties are nested deeper than %d levels", RELEASE_VALUE_MAX_DEPTH);
}

/* Adds the problems of one overlay (called in key order). */
void
release_check_overlay(ReleaseProblems *p, ReleaseOverlay *o)
{
	p->overlay = o->key;
	check_geometry(p, o);
	check_properties(p, o);
	if (o->has_asset_id && o->asset_key == NULL)
		add_problem(p, "refers to an asset that is not an asset of this version");
	else if (strcmp(o->overlay_type, "image") == 0 && !o->has_asset_id)
		add_problem(p, "an image overlay needs an asset");
	p->overlay = NULL;
}

bool
release_problems_found(ReleaseProblems *p)
{
	return p->list != NIL;
}

/*
 * Ends the problems after the overlays were scanned: returns the problems
 * kept as a List of palloc'd strings, NIL when the version can be
 * published, and sets in->problem_count.  A version without overlays says
 * so first.
 */
List *
release_problems_end(ReleaseProblems *p, ReleaseInput *in)
{
	if (in->overlay_count == 0)
	{
		List	   *rest = p->list;

		p->list = NIL;
		add_problem(p, "the version has no overlays");
		p->list = list_concat(p->list, rest);
	}

	if (in->tileset != NULL)
	{
		if (in->tileset->source_path == NULL)
			add_problem(p, "the tileset has not been built (its source_path is not set)");
		if (in->tileset->tile_count == 0)
			add_problem(p, "the tileset has no tiles in its manifest");
		if (in->tileset->tiles_outside_zoom > 0)
			add_problem(p, "%lld tiles of the manifest are outside the tileset's zoom range %d-%d",
						(long long) in->tileset->tiles_outside_zoom,
						in->tileset->min_zoom, in->tileset->max_zoom);
	}
	in->problem_count = p->count;
	return p->list;
}

/*
 * Raises the error that lists the problems: the message counts them all,
 * the detail has one per line, the first RELEASE_REPORTED_PROBLEMS.
 */
void
release_report_problems(ReleaseInput *in, List *problems)
{
	StringInfoData detail;
	ListCell   *lc;
	int			n = 0;
	int64		total = Max(in->problem_count, list_length(problems));

	initStringInfo(&detail);
	foreach(lc, problems)
	{
		if (++n > RELEASE_REPORTED_PROBLEMS)
			break;
		appendStringInfo(&detail, "%s- %s", n > 1 ? "\n" : "", (char *) lfirst(lc));
	}
	if (total > RELEASE_REPORTED_PROBLEMS)
		appendStringInfo(&detail, "\n... and %lld more",
						 (long long) (total - RELEASE_REPORTED_PROBLEMS));
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg_plural("version %d of project \"%s\" cannot be published: %lld problem",
						   "version %d of project \"%s\" cannot be published: %lld problems",
						   total,
						   in->version_number, in->project_slug, (long long) total),
			 errdetail("%s", detail.data),
			 errhint("SELECT * FROM publish.validate_version('%s', %d) lists them.",
					 in->project_slug, in->version_number)));
}
