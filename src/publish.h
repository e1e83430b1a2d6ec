/*-------------------------------------------------------------------------
 *
 * publish.h
 *	  Declarations shared by the modules of the publish extension.
 *
 * Modules, one concern each:
 *	  publish.c        _PG_init: GUCs, shared memory hooks, the launcher, hooks
 *	  guc.c            every GUC of the extension
 *	  shmem.c          shared state: the launcher and one slot per database
 *	  wakeup.c         wake a database's worker when a transaction commits
 *	  utility_hook.c   stop a database's worker before DROP/RENAME/TEMPLATE,
 *	                   wake it after COMMIT PREPARED and DROP EXTENSION
 *	  launcher.c       the launcher: starts the workers of each database
 *	  worker.c         a worker: sleeps on its latch, runs jobs, recovers, purges
 *	  worker_sweep.c   the sweep gate: skip a sweep that can find nothing
 *	  job_queue.c      claim, progress, logs, cancel/timeout checks, ends, recovery
 *	  job_publish.c    the five steps of a publish job
 *	  release_input.c  read a version's content through SPI
 *	  validation.c     every problem that stops a version from publishing
 *	  release_builder.c  release.json, streamed overlay by overlay (json-c)
 *	  release_doc.c    the bytes of release.json and their SHA-256
 *	  release_text.c   jsonb's text in release.json, counted and written in pieces
 *	  storage.c        storage targets and the backend interface
 *	  storage_local.c  the file:// backend
 *	  storage_http.c   the http(s):// backend (HTTP PUT / WebDAV)
 *	  storage_s3.c     the s3:// backend (AWS Signature V4)
 *	  storage_sql.c    publish._storage_put, the storage code from SQL
 *	  tile_publish.c   step 4: tiles verified and copied, in parallel
 *	  http_client.c    libcurl: one request, retries, error text
 *	  redact.c         every form of a request's secrets masked in that text
 *	  tile_build.c     build_tiles jobs: source image, upload, manifest
 *	  tile_vips.c      libvips: read a source image, cut the tile pyramid
 *	  checksum.c       SHA-256 of buffers and files
 *	  spi_util.c       SPI helpers: reading results, plans kept per process
 *	  sql_functions.c  SQL-callable functions
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_H
#define PUBLISH_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "access/htup.h"
#include "nodes/pg_list.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "utils/jsonb.h"
#include "utils/palloc.h"

#define PUBLISH_EXTENSION_NAME	"publish"
#define PUBLISH_SCHEMA_NAME		"publish"

/* SQLSTATEs that PostgREST maps to HTTP statuses (PTxyz -> xyz). */
#define ERRCODE_PUBLISH_NOT_FOUND	MAKE_SQLSTATE('P','T','4','0','4')
#define ERRCODE_PUBLISH_CONFLICT	MAKE_SQLSTATE('P','T','4','0','9')
#define ERRCODE_PUBLISH_TOO_LARGE	MAKE_SQLSTATE('P','T','4','1','3')

/* guc.c */
extern int	publish_sweep_interval;		/* seconds */
extern int	publish_sweep_backstop;		/* seconds */
extern int	publish_max_attempts;
extern int	publish_launcher_restart_delay;	/* seconds */
extern int	publish_workers_per_database;
extern int	publish_job_timeout;		/* seconds, 0 = none */
extern int	publish_job_retention;		/* minutes, 0 = keep forever */
extern int	publish_max_job_wait;		/* seconds */
extern int	publish_storage_connect_timeout;	/* milliseconds */
extern int	publish_storage_low_speed_limit;	/* bytes per second */
extern int	publish_storage_low_speed_time; /* seconds */
extern int	publish_storage_request_timeout;	/* seconds, 0: none */
extern int	publish_storage_max_attempts;
extern int	publish_storage_retry_delay;	/* milliseconds */
extern int	publish_storage_retry_max_delay;	/* milliseconds */
extern char *publish_storage_ca_file;
extern int	publish_storage_concurrency;
extern int	publish_max_release_size;	/* kB */
extern int	publish_max_tiles;
extern int	publish_tile_window;
extern int	publish_max_source_pixels;	/* megapixels */
extern int	publish_tile_build_threads;
extern char *publish_pause_at;
extern void publish_define_gucs(void);

/* shmem.c */
#define PUBLISH_MAX_WORKERS_PER_DATABASE 8

extern void publish_shmem_request(void);
extern void publish_shmem_startup(void);
extern bool publish_shmem_ready(void);
extern void publish_shmem_set_launcher(void);
extern void publish_shmem_clear_launcher(void);
extern void publish_shmem_wake_database(Oid dboid, bool all);
extern void publish_shmem_wake_launcher(void);
extern bool publish_shmem_attach_worker(Oid dboid, int number);
extern uint64 publish_shmem_wake_count(Oid dboid);
extern uint64 publish_shmem_look(Oid dboid, int number);
extern void publish_shmem_set_running_job(const char *job_id);
extern void publish_shmem_set_sleeping(bool sleeping);
extern bool publish_shmem_job_has_worker(Oid dboid, const char *job_id);
extern int	publish_shmem_aim_cancel(Oid dboid, const char *job_id);
extern bool publish_shmem_cancel_is_stale(void);
extern void publish_shmem_detach_worker(Oid dboid, int number, bool no_extension,
										uint64 seen_wakes, bool failed);
extern bool publish_shmem_take_worker_failed(Oid dboid, int number);
extern bool publish_shmem_worker_wanted(Oid dboid, int number);
extern void publish_shmem_found_extension(Oid dboid);
extern void publish_shmem_pause_database(Oid dboid);
extern void publish_shmem_resume_database(Oid dboid);
extern void publish_shmem_forget_databases(Oid *alive, int nalive);
extern ConditionVariable *publish_shmem_job_ended_cv(Oid dboid);
extern void publish_shmem_broadcast_job_ended(Oid dboid);

/* wakeup.c */
extern void publish_wake_at_commit(void);
extern void publish_wake_all_at_commit(void);
extern void publish_job_ended_at_commit(void);
extern void publish_cancel_worker_at_commit(const char *job_id);
extern void publish_wake_launcher_at_commit(void);

/* utility_hook.c */
extern void publish_install_utility_hook(void);

/* launcher.c / worker.c */
extern void publish_register_launcher(void);
PGDLLEXPORT void publish_launcher_main(Datum main_arg);
PGDLLEXPORT void publish_worker_main(Datum main_arg);

/* spi_util.c */
extern char *spi_text(HeapTuple row, int col, MemoryContext mcxt);
struct _SPI_plan;
extern int	spi_execute_cached(struct _SPI_plan **plan, const char *sql, int nargs,
							   Oid *argtypes, Datum *values, const char *nulls,
							   bool read_only, long count);
extern struct PortalData *spi_cursor_open_cached(struct _SPI_plan **plan, const char *sql,
												 int nargs, Oid *argtypes, Datum *values,
												 const char *nulls, bool read_only);

/* checksum.c */
extern char *checksum_sha256_hex(const char *data, size_t len);
extern bool checksum_file(const char *path, char *hex, char *md5_hex);
extern void *checksum_sha256_begin(void);
extern bool checksum_sha256_add(void *ctx, const char *data, size_t len);
extern void checksum_sha256_finish(void *ctx, char *hex);
extern void checksum_md5_hex(const char *data, size_t len, char *hex);
extern void checksum_release_resources(void);

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
	Jsonb	   *geometry;		/* detoasted; never NULL (the column is NOT NULL) */
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
	char	   *bounds_text[4];	/* west, south, east, north (float8 text) */
	char	   *source_path;	/* NULL when not built */
	int64		tile_count;
	int64		tiles_outside_zoom;	/* manifest entries outside min..max zoom */
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

extern ReleaseProblems *release_problems_begin(ReleaseInput *input);
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
extern List *release_build(ReleaseInput *input, ReleaseDoc *doc);

#endif							/* PUBLISH_H */
