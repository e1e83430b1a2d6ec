/*-------------------------------------------------------------------------
 *
 * publish.h
 *	  What every folder of the extension shares: its names, the SQLSTATEs
 *	  it raises, and its settings (guc.c).
 *
 * The extension's C code is in folders by concern, each with one header
 * that states its contract (docs/architecture.md draws them).  Calls run
 * one way:
 *
 *	  publish.c, sql_functions.c, bgw/   module load, SQL entry points,
 *	                                     the launcher and workers
 *	  jobs/                              the job types
 *	  tile/, release/                    what a job type does
 *	  queue/                             the job queue
 *	  storage/                           storage targets and backends
 *	  net/                               libcurl
 *	  ipc/, util/                        leaves anyone may call
 *
 * scripts/check-layers.sh checks the order from the objects' symbols.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_H
#define PUBLISH_H

#define PUBLISH_EXTENSION_NAME	"publish"
#define PUBLISH_SCHEMA_NAME		"publish"

/*
 * The version of this library: the default_version of publish.control
 * (test/sql/08_shared_definitions.sql checks that they agree), and the
 * newest version of the extension's SQL objects it works with.  Each
 * upgrade script checks that the library the server runs is at least its
 * own version (publish._library_version()).
 */
#define PUBLISH_LIBRARY_VERSION	"1.1"

/* SQLSTATEs that PostgREST maps to HTTP statuses (PTxyz -> xyz). */
#define ERRCODE_PUBLISH_NOT_FOUND	MAKE_SQLSTATE('P','T','4','0','4')
#define ERRCODE_PUBLISH_CONFLICT	MAKE_SQLSTATE('P','T','4','0','9')
#define ERRCODE_PUBLISH_TOO_LARGE	MAKE_SQLSTATE('P','T','4','1','3')

/* The most workers publish.workers_per_database may ask for. */
#define PUBLISH_MAX_WORKERS_PER_DATABASE 8

/* guc.c */
extern int	publish_sweep_interval; /* seconds */
extern int	publish_sweep_backstop; /* seconds */
extern int	publish_max_attempts;
extern int	publish_launcher_restart_delay; /* seconds */
extern int	publish_workers_per_database;
extern int	publish_job_timeout;	/* seconds, 0 = none */
extern int	publish_job_retention;	/* minutes, 0 = keep forever */
extern int	publish_max_job_wait;	/* seconds */
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
extern int	publish_keep_releases;	/* 0: no purge after a publish */
extern char *publish_pause_at;
extern void publish_define_gucs(void);

#endif							/* PUBLISH_H */
