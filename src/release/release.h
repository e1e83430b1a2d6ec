/*-------------------------------------------------------------------------
 *
 * release.h
 *	  release.json: a version's content read through SPI (release_input.c),
 *	  checked (validation.c) and written (release_builder.c) in one pass,
 *	  its jsonb values as text (release_text.c), into a document that
 *	  holds its bytes and SHA-256 (release_doc.c).
 *
 * Contract: called by the publish job (jobs/) and by the SQL functions
 * build_release and validate_version, in a transaction with SPI
 * connected, in one snapshot: what is written is what was checked.
 * Nothing here does I/O beyond SPI, nor calls another folder but util/ and
 * the settings.  The same rows give the same bytes; memory stays bounded
 * by publish.max_release_size, whatever the number of overlays.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_RELEASE_H
#define PUBLISH_RELEASE_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/*
 * How deep geometry and properties may be nested, their own root being
 * level 1.  release.json must parse with json-c's default depth
 * (JSON_TOKENER_DEFAULT_DEPTH, 32: a value nested in 31 containers is the
 * deepest it reads), and it holds each overlay's geometry and properties
 * inside three containers: the document, the "overlays" array and the
 * overlay's object.  The constraint overlays_properties_depth says the
 * same of properties in jsonpath's terms (their root is level 0 there:
 * nothing at level 29 or deeper); test/sql/08_shared_definitions.sql
 * checks that they agree.
 */
#define RELEASE_VALUE_MAX_DEPTH 29

/* release_input.c: a version's content, read through SPI */
typedef struct ReleaseAsset
{
	char		id[16];			/* the uuid's bytes */
	char	   *key;
	char	   *kind;
	char	   *storage_path;
	char	   *content_type;
	bool		has_size;
	int64		byte_size;
	char	   *sha256;			/* NULL when unknown */
} ReleaseAsset;

/*
 * One overlay, as release_input_scan_overlays hands it over: valid only
 * during the callback (it lives in a context reset after each overlay).
 */
typedef struct ReleaseOverlay
{
	char	   *key;
	char	   *name;
	char	   *overlay_type;
	Jsonb	   *geometry;		/* detoasted; never NULL (the column is NOT
								 * NULL) */
	Jsonb	   *properties;
	bool		has_asset_id;	/* asset_id is set ... */
	char	   *asset_key;		/* ... and names this asset of the version */
} ReleaseOverlay;

typedef struct ReleaseTileset
{
	char	   *format;
	int			tile_size;
	int			min_zoom;
	int			max_zoom;
	bool		has_bounds;
	char	   *bounds_text[4]; /* west, south, east, north (float8 text) */
	char	   *source_path;	/* NULL when not built */
	int64		tile_count;
	int64		tiles_outside_zoom; /* manifest entries outside min..max zoom */
	char	   *id;
} ReleaseTileset;

typedef struct ReleaseInput
{
	char	   *version_id;
	char	   *project_id;
	char	   *project_slug;
	char	   *project_name;
	int			version_number;
	char	   *version_status;
	char	   *env;
	char	   *base_url;		/* public URL of the target's root */
	char	   *published_at;	/* ISO 8601, UTC */
	List	   *assets;			/* of ReleaseAsset * */
	int64		overlay_count;	/* set by the scan of the overlays */
	int64		problem_count;	/* set by release_problems_end: all found */
	ReleaseTileset *tileset;	/* NULL when the version has none */
} ReleaseInput;

typedef void (*ReleaseOverlayCallback) (ReleaseOverlay *overlay, void *arg);

extern ReleaseInput *release_input_load(const char *version_id, const char *env,
										const char *published_at_iso, bool estimate_size,
										MemoryContext mcxt);
extern int64 release_input_scan_overlays(ReleaseInput *input,
										 ReleaseOverlayCallback callback, void *arg);

/* validation.c */
typedef struct ReleaseProblems ReleaseProblems;

/* the problems an error lists; the others are counted */
#define RELEASE_REPORTED_PROBLEMS	100

extern ReleaseProblems *release_problems_begin(ReleaseInput *input, int keep);
extern void release_check_overlay(ReleaseProblems *problems, ReleaseOverlay *overlay);
extern bool release_problems_found(ReleaseProblems *problems);
extern List *release_problems_end(ReleaseProblems *problems, ReleaseInput *input);
extern void release_report_problems(ReleaseInput *input, List *problems);

/* release_doc.c: the document's bytes, small in palloc'd memory, big in one growing mapping */
typedef struct ReleaseDoc
{
	char	   *data;
	size_t		len;
	size_t		cap;			/* bytes allocated or mapped */
	bool		mapped;			/* data is the mapping (else palloc'd) */
	size_t		max_len;		/* publish.max_release_size in bytes; 0: none */
	void	   *sha256_ctx;		/* while it is written; NULL: not computed */
	char		sha256[65];		/* hex, once finished ("" when not computed) */
} ReleaseDoc;

extern ReleaseDoc *release_doc_create(MemoryContext mcxt, bool with_sha256);
extern void release_doc_append(ReleaseDoc *doc, const char *data, size_t len);
extern void release_doc_finish(ReleaseDoc *doc);
extern void release_doc_check_size(ReleaseDoc *doc, size_t pending, ReleaseInput *input);

/* release_text.c: jsonb values as release.json text, counted or written in pieces */
typedef struct ReleaseTextSink
{
	StringInfo	buf;			/* the text is appended here ... */
	int			flush_at;		/* ... and handed on before it passes this */
	/* checks that buf and coming more bytes fit, then empties buf (or throws) */
	void		(*flush) (void *arg, size_t coming);
	void	   *arg;
} ReleaseTextSink;

extern uint64 release_text_size(Jsonb *value);
extern void release_text_write(Jsonb *value, ReleaseTextSink *sink);

/* release_builder.c */
extern List *release_build(ReleaseInput *input, ReleaseDoc *doc, int keep_problems);

#endif							/* PUBLISH_RELEASE_H */
