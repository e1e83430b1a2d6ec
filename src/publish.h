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
 *	  utility_hook.c   stop a database's worker before DROP/RENAME/TEMPLATE
 *	  launcher.c       the launcher: starts the workers of each database
 *	  worker.c         a worker: sleeps on its latch, runs jobs, recovers, purges
 *	  job_queue.c      claim, progress, logs, cancel/timeout checks, ends, recovery
 *	  job_publish.c    the five steps of a publish job
 *	  release_input.c  read a version's content through SPI
 *	  validation.c     every problem that stops a version from publishing
 *	  release_builder.c  release.json with json-c
 *	  storage.c        storage targets and the backend interface
 *	  storage_local.c  the file:// backend
 *	  storage_http.c   the http(s):// backend (HTTP PUT / WebDAV)
 *	  storage_s3.c     the s3:// backend (AWS Signature V4)
 *	  storage_sql.c    publish._storage_put, the storage code from SQL
 *	  tile_publish.c   step 4: tiles verified and copied, in parallel
 *	  http_client.c    libcurl: one request, retries, error text
 *	  checksum.c       SHA-256 of buffers and files
 *	  spi_util.c       small helpers for reading SPI results
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
#include "utils/palloc.h"

#define PUBLISH_EXTENSION_NAME	"publish"
#define PUBLISH_SCHEMA_NAME		"publish"

/* SQLSTATEs that PostgREST maps to HTTP statuses (PTxyz -> xyz). */
#define ERRCODE_PUBLISH_NOT_FOUND	MAKE_SQLSTATE('P','T','4','0','4')
#define ERRCODE_PUBLISH_CONFLICT	MAKE_SQLSTATE('P','T','4','0','9')

/* guc.c */
extern int	publish_sweep_interval;		/* seconds */
extern int	publish_max_attempts;
extern int	publish_launcher_restart_delay;	/* seconds */
extern int	publish_workers_per_database;
extern int	publish_job_timeout;		/* seconds, 0 = none */
extern int	publish_job_retention;		/* minutes, 0 = keep forever */
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
extern void publish_define_gucs(void);

/* shmem.c */
#define PUBLISH_MAX_WORKERS_PER_DATABASE 8

extern void publish_shmem_request(void);
extern void publish_shmem_startup(void);
extern bool publish_shmem_ready(void);
extern void publish_shmem_set_launcher(void);
extern void publish_shmem_clear_launcher(void);
extern void publish_shmem_wake_database(Oid dboid);
extern bool publish_shmem_attach_worker(Oid dboid, int number);
extern uint64 publish_shmem_wake_count(Oid dboid);
extern void publish_shmem_detach_worker(Oid dboid, int number, bool no_extension,
										uint64 seen_wakes, bool failed);
extern bool publish_shmem_take_worker_failed(Oid dboid, int number);
extern bool publish_shmem_worker_wanted(Oid dboid, int number);
extern void publish_shmem_found_extension(Oid dboid);
extern void publish_shmem_pause_database(Oid dboid);
extern void publish_shmem_resume_database(Oid dboid);
extern void publish_shmem_forget_databases(Oid *alive, int nalive);
extern ConditionVariable *publish_shmem_job_ended_cv(Oid dboid);

/* wakeup.c */
extern void publish_wake_at_commit(void);
extern void publish_job_ended_at_commit(void);
extern void publish_cancel_worker_at_commit(int pid);

/* utility_hook.c */
extern void publish_install_utility_hook(void);

/* launcher.c / worker.c */
extern void publish_register_launcher(void);
PGDLLEXPORT void publish_launcher_main(Datum main_arg);
PGDLLEXPORT void publish_worker_main(Datum main_arg);

/* spi_util.c */
extern char *spi_text(HeapTuple row, int col, MemoryContext mcxt);

/* checksum.c */
extern char *checksum_sha256_hex(const char *data, size_t len);
extern bool checksum_sha256_file(const char *path, char *hex);
extern void *checksum_sha256_begin(void);
extern bool checksum_sha256_add(void *ctx, const char *data, size_t len);
extern void checksum_sha256_finish(void *ctx, char *hex);
extern void checksum_md5_hex(const char *data, size_t len, char *hex);
extern void checksum_release_resources(void);

/* release_input.c: a version's content, read through SPI */
typedef struct ReleaseAsset
{
	char	   *key;
	char	   *kind;
	char	   *storage_path;
	char	   *content_type;
	bool		has_size;
	int64		byte_size;
	char	   *sha256;			/* NULL when unknown */
} ReleaseAsset;

typedef struct ReleaseOverlay
{
	char	   *key;
	char	   *name;
	char	   *overlay_type;
	char	   *geometry_text;	/* as PostgreSQL wrote it */
	char	   *properties_text;
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
	List	   *overlays;		/* of ReleaseOverlay * */
	ReleaseTileset *tileset;	/* NULL when the version has none */
} ReleaseInput;

extern ReleaseInput *release_input_load(const char *version_id, const char *env,
										const char *published_at_iso, MemoryContext mcxt);

/* validation.c */
extern List *release_validate(ReleaseInput *input);
extern void release_report_problems(ReleaseInput *input, List *problems);

/* release_builder.c */
extern char *release_build_json(ReleaseInput *input, size_t *len);

#endif							/* PUBLISH_H */
