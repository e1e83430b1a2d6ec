/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  The storage interface: a target (one per environment) and the backend
 *	  that writes to it.
 *
 * The publish steps call storage_put, storage_put_same, storage_stat,
 * storage_copy and storage_sync (whose return makes every earlier put and
 * copy durable, names included: the publish job calls it before its final
 * commit); the tile builder also storage_get_file (a source image to a local file);
 * step 4 (tile_publish.c) also runs a remote backend's stat and copy
 * requests in parallel, built by its stat_request and copy_request.
 * A backend implements them for one URL scheme; adding a backend touches
 * its own file and the table in storage.c.  Every function reports failure
 * with ereport(ERROR) and is called outside any transaction (in the worker:
 * a remote backend may wait seconds between retries); secrets in the target
 * never appear in an error.  A remote backend announces each retry through
 * the target's warn callback, which job_publish.c points at the job's log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_STORAGE_H
#define PUBLISH_STORAGE_H

#include <stdio.h>

typedef struct StorageBackend StorageBackend;

/* Cache-Control of what publish writes: release.json, and everything versioned */
#define STORAGE_CACHE_LIVE		"no-cache"
#define STORAGE_CACHE_IMMUTABLE	"public, max-age=31536000, immutable"
struct HttpRequest;
struct HttpResponse;

typedef struct StorageTarget
{
	char	   *env;
	char	   *url;			/* as configured, without a trailing slash */
	char	   *public_base;	/* options.public_url, or url */
	char	   *root;			/* file://: the absolute directory; else NULL */
	char	   *key_id;			/* credentials, or NULL */
	char	   *secret;
	char	   *session_token;	/* s3: optional session token, or NULL */
	char	   *options;		/* the target's options, JSON text */
	const StorageBackend *backend;
	void	   *backend_state;	/* what the backend's open made of url and options */
	/* retry notices (called between attempts, outside libcurl), or NULL */
	void		(*warn) (void *arg, const char *message);
	void	   *warn_arg;
} StorageTarget;

typedef struct StorageObjectInfo
{
	bool		exists;
	int64		size;
	char		sha256[65];		/* hex; empty when not computed */
	char		md5[33];		/* hex, when the server told it (S3's ETag); else empty */
} StorageObjectInfo;

struct StorageBackend
{
	const char *scheme;
	/* Checks url and options and prepares backend_state; may be NULL. */
	void		(*open) (StorageTarget *target);
	/*
	 * Writes data at key, atomically: readers see the old or the new object,
	 * never a part of it, even after a crash of the machine.  The new
	 * object's name may be durable only after the next sync (file://
	 * defers its directory fsyncs to it).
	 */
	void		(*put) (StorageTarget *target, const char *key,
						const char *data, size_t len,
						const char *content_type, const char *cache_control);
	/*
	 * Makes dst_key the same object as src_key, which the caller has just
	 * put and will not change, without writing it again (file://: a hard
	 * link, renamed over dst_key); false when it cannot (then the caller
	 * puts the data).  Same atomicity as put.  NULL where the protocol has
	 * no such thing.
	 */
	bool		(*link) (StorageTarget *target, const char *src_key, const char *dst_key);
	/* Fills info about the object at key; with want_sha256, its checksum. */
	void		(*stat) (StorageTarget *target, const char *key,
						 StorageObjectInfo *info, bool want_sha256);
	/*
	 * Makes dst_key a copy of src_key (server-side where possible); where
	 * the protocol keeps them, the copy gets content_type and cache_control
	 * (NULL: those of the source).
	 */
	void		(*copy) (StorageTarget *target, const char *src_key,
						 const char *dst_key, const char *content_type,
						 const char *cache_control);
	/* Removes the object at key, if there is one. */
	void		(*remove) (StorageTarget *target, const char *key);
	/*
	 * Makes what was written so far durable, names included (a no-op where
	 * puts and copies already are).
	 */
	void		(*sync) (StorageTarget *target);
	/*
	 * Downloads the object at key into the open file f (emptied first);
	 * errors if it does not exist or is longer than max_bytes (PT413; 0: no
	 * limit).  Returns its size.
	 */
	int64		(*get) (StorageTarget *target, const char *key, FILE *f, int64 max_bytes);

	/*
	 * Parallel transfers of tiles (tile_publish.c runs the requests through
	 * http_multi); NULL for a backend without them (file://).  stat_request
	 * is stat's request; its answer goes to storage_remote_stat_result.
	 * copy_request is copy's request, giving the copy the checksum sha256
	 * where the protocol keeps one; it may first make requests of its own
	 * (WebDAV: MKCOL of the parents).  copy_result throws on failure, or
	 * returns false when the server cannot copy (use copy instead); it fills
	 * md5[33] with the copy's MD5 when the server tells it, else "".
	 * head_has_sha256: a HEAD tells an object's checksum (S3, from the
	 * x-amz-meta-sha256 that put and copy set), so the skip check of a
	 * destination needs no download.  etag_is_md5: a plain ETag (one
	 * quoted 32-digit hex) is the MD5 of the object's bytes, computed by
	 * the server (S3 for objects written in one part, unencrypted or
	 * SSE-S3), so a tile whose MD5 the manifest knows is verified by the
	 * copy's answer, or by a HEAD.
	 */
	struct HttpRequest *(*stat_request) (StorageTarget *target, const char *key,
										 bool want_sha256);
	struct HttpRequest *(*copy_request) (StorageTarget *target, const char *src_key,
										 const char *dst_key, const char *content_type,
										 const char *cache_control, const char *sha256);
	bool		(*copy_result) (StorageTarget *target, struct HttpRequest *req,
								struct HttpResponse *resp, char *md5);
	bool		head_has_sha256;
	bool		etag_is_md5;

	/*
	 * Is there surely no object under prefix (a key ending in '/')?  false
	 * when it cannot tell.  Lets a first publish skip the check of each
	 * tile's destination; may be NULL.
	 */
	bool		(*prefix_empty) (StorageTarget *target, const char *prefix);
};

extern const StorageBackend storage_local_backend;
extern const StorageBackend storage_http_backend;
extern const StorageBackend storage_https_backend;
extern const StorageBackend storage_s3_backend;

/* Loads the target of env through SPI (caller is in a transaction). */
extern StorageTarget *storage_target_load(const char *env, MemoryContext mcxt);

extern void storage_put(StorageTarget *target, const char *key, const char *data,
						size_t len, const char *content_type, const char *cache_control);
extern void storage_stat(StorageTarget *target, const char *key,
						 StorageObjectInfo *info, bool want_sha256);
extern void storage_put_same(StorageTarget *target, const char *key, const char *same_as_key,
							 const char *data, size_t len, const char *content_type,
							 const char *cache_control);
extern void storage_put_file(StorageTarget *target, const char *key, const char *path,
							 const char *content_type, const char *cache_control);
extern void storage_copy(StorageTarget *target, const char *src_key, const char *dst_key,
						 const char *content_type, const char *cache_control);
extern void storage_delete(StorageTarget *target, const char *key);
extern void storage_sync(StorageTarget *target);
extern int64 storage_get_file(StorageTarget *target, const char *key, const char *path,
							   int64 max_bytes);
extern char *storage_public_url(StorageTarget *target, const char *key);

/* For the remote backends (storage_http.c, storage_s3.c). */
extern struct HttpRequest *storage_remote_request(StorageTarget *target, const char *method,
												  const char *url, const char *what);
pg_attribute_noreturn()
extern void storage_remote_fail(StorageTarget *target, const char *service,
								struct HttpRequest *req, struct HttpResponse *resp);
extern void storage_remote_stat_result(StorageTarget *target, const char *service,
									   struct HttpRequest *req, struct HttpResponse *resp,
									   StorageObjectInfo *info);
extern bool storage_etag_md5(const char *etag, char *md5);
extern int64 storage_remote_get(StorageTarget *target, const char *service,
								struct HttpRequest *req, FILE *f, int64 max_bytes);

#endif							/* PUBLISH_STORAGE_H */
