/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  The storage interface: a target (one per environment), the calls the
 *	  jobs make on it (storage.c), and the backend that does them for one
 *	  URL scheme (storage_local.c, storage_http.c, storage_s3.c; the
 *	  remote ones share storage_remote.c).  storage_sql.c is
 *	  publish._storage_put, the same calls from SQL.
 *
 * Contract: the job types and tile/ call it; it calls net/ and util/.
 * Every call is made outside any transaction (in the worker: a remote
 * backend may wait seconds between retries), reports failure with
 * ereport(ERROR), and never puts a secret of the target in an error.
 * storage_sync's return makes every earlier put and copy durable, names
 * included.  A backend announces each retry through the target's warn
 * callback, which its caller points at the job's log; a cancel or SIGTERM
 * stops a transfer by itself (net/).  Adding a backend touches its own
 * file and the table in storage.c; nothing outside this folder names a
 * backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISH_STORAGE_H
#define PUBLISH_STORAGE_H

#include <stdio.h>

#include "nodes/pg_list.h"

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
	bool		gzip;			/* option compress = "gzip": documents are
								 * stored compressed (storage_put_document) */
	const StorageBackend *backend;
	void	   *backend_state;	/* what the backend's open made of url and
								 * options */
	/* retry notices (called between attempts, outside libcurl), or NULL */
	void		(*warn) (void *arg, const char *message);
	void	   *warn_arg;
} StorageTarget;

typedef struct StorageObjectInfo
{
	bool		exists;
	int64		size;
	char		sha256[65];		/* hex; empty when not computed */
	char		md5[33];		/* hex, when the server told it (S3's ETag);
								 * else empty */
} StorageObjectInfo;

/* One object of a listing (list_result). */
typedef struct StorageListEntry
{
	char	   *name;			/* its key below the listing's root */
	int64		size;
	char		md5[33];		/* etag_is_md5: the object's MD5; else "" */
} StorageListEntry;

/* One page of a listing: its objects, and where the next page starts. */
typedef struct StorageListPage
{
	StorageListEntry *entries;
	int			n;
	char	   *next;			/* the token of the next page, or NULL: this
								 * was the last */
} StorageListPage;

/*
 * What a purge removed: objects and their bytes as counted, and folders
 * removed whole whose objects the server did not count (a WebDAV
 * collection DELETE).
 */
typedef struct StorageRemoved
{
	int64		objects;
	int64		bytes;
	int64		uncounted_folders;
} StorageRemoved;

struct StorageBackend
{
	const char *scheme;
	const char *service;		/* for messages: "S3", "HTTP storage" */
	const char *credentials;	/* for messages: what the credentials are */
	/* Checks url and options and prepares backend_state; may be NULL. */
	void		(*open) (StorageTarget *target);

	/*
	 * Writes data at key, atomically: readers see the old or the new object,
	 * never a part of it, even after a crash of the machine.  The new
	 * object's name may be durable only after the next sync (file:// defers
	 * its directory fsyncs to it).  content_encoding (NULL: none) is the
	 * Content-Encoding readers get with it, where the protocol keeps one
	 * (keeps_encoding).  sha256 (NULL: that of data) is the checksum stored
	 * with the object where the protocol keeps one (S3's x-amz-meta-sha256):
	 * always that of the content a reader has after decoding.
	 */
	void		(*put) (StorageTarget *target, const char *key,
						const char *data, size_t len,
						const char *content_type, const char *cache_control,
						const char *content_encoding, const char *sha256);

	/*
	 * Makes dst_key the same object as src_key, which the caller has just put
	 * or which nothing changes once written (a release's versioned copy),
	 * without writing it again (file://: a hard link, renamed over dst_key);
	 * false when it cannot (then the caller puts or copies the data).  Same
	 * atomicity as put.  NULL where the protocol has no such thing.
	 */
	bool		(*link) (StorageTarget *target, const char *src_key, const char *dst_key);
	/* Fills info about the object at key; with want_sha256, its checksum. */
	void		(*stat) (StorageTarget *target, const char *key,
						 StorageObjectInfo *info, bool want_sha256);

	/*
	 * stat with want_sha256 of a document (storage_stat_document): the
	 * checksum of what a reader has after decoding a compressed one; NULL
	 * where stat's is that already (file://, whose documents are plain).
	 */
	void		(*stat_document) (StorageTarget *target, const char *key,
								  StorageObjectInfo *info);

	/*
	 * Makes dst_key a copy of src_key (server-side where possible); where the
	 * protocol keeps them, the copy gets content_type and cache_control
	 * (NULL: those of the source), and always the source's Content-Encoding
	 * and stored checksum.
	 */
	void		(*copy) (StorageTarget *target, const char *src_key,
						 const char *dst_key, const char *content_type,
						 const char *cache_control);

	/*
	 * copy over an object readers may be reading (release.json), where copy
	 * does not replace it in one step (nginx's WebDAV writes a COPY into the
	 * destination in place): through tmp_key, a name beside dst_key that is
	 * the caller's alone, so that readers see the old object or the new one.
	 * A failure leaves dst_key as it was.  NULL where copy replaces in one
	 * step (S3's CopyObject).
	 */
	void		(*copy_over) (StorageTarget *target, const char *src_key,
							  const char *dst_key, const char *tmp_key,
							  const char *content_type, const char *cache_control);
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
	 * Parallel stats and copies (storage_batch_*, which runs the requests
	 * through net/'s multi runner); NULL for a backend without them
	 * (file://).  stat_request is stat's request; its answer goes to
	 * storage_remote_stat_result. copy_request is copy's request, giving the
	 * copy the checksum sha256 where the protocol keeps one; it may first
	 * make requests of its own (WebDAV: MKCOL of the parents).  copy_result
	 * throws on failure, or returns false when the server cannot copy (use
	 * copy instead); it fills md5[33] with the copy's MD5 when the server
	 * tells it, else "". head_has_sha256: a HEAD tells an object's checksum
	 * (S3, from the x-amz-meta-sha256 that put and copy set), so the skip
	 * check of a destination needs no download.  etag_is_md5: a plain ETag
	 * (one quoted 32-digit hex) is the MD5 of the object's bytes, computed by
	 * the server (S3 for objects written in one part, unencrypted or SSE-S3),
	 * so a tile whose MD5 the manifest knows is verified by the copy's
	 * answer, or by a HEAD.
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
	 * Parallel uploads (storage_batch_put): put_request is put's request
	 * (md5: the hex MD5 of data, computed by the caller); put_result throws
	 * on failure, and returns true when the answer itself shows the object
	 * landed whole (S3: an ETag that is md5), false when the caller must
	 * check it with a stat (size).  NULL: no parallel uploads.
	 */
	struct HttpRequest *(*put_request) (StorageTarget *target, const char *key,
										const char *data, size_t len,
										const char *content_type,
										const char *cache_control,
										const char *md5);
	bool		(*put_result) (StorageTarget *target, struct HttpRequest *req,
							   struct HttpResponse *resp, const char *md5);

	/*
	 * Listings (storage_batch_list): list_request asks for one page of the
	 * objects under root + sub (root a key ending in '/'; sub "" or a part of
	 * a key below it), starting at token next (NULL: the first page);
	 * list_result reads the answer into page, each entry named below root,
	 * and returns false when the server cannot list (WebDAV without
	 * PROPFIND), throwing for other failures.  With list_recursive the
	 * listing holds every object whose key starts with root + sub (S3);
	 * without, sub is a folder ("" or ending in '/') and the listing holds
	 * only the objects directly in it (WebDAV PROPFIND, Depth: 1).  NULL: no
	 * listings.
	 */
	struct HttpRequest *(*list_request) (StorageTarget *target, const char *root,
										 const char *sub, const char *next);
	bool		(*list_result) (StorageTarget *target, struct HttpRequest *req,
								struct HttpResponse *resp, const char *root,
								StorageListPage *page);
	bool		list_recursive;

	/*
	 * The server keeps a Content-Encoding with an object and sends it back
	 * (S3, and WebDAV servers that keep headers); without it (file://) a
	 * compressed document is stored as a sibling, key + ".gz", beside the
	 * plain one (what nginx's gzip_static serves).
	 */
	bool		keeps_encoding;

	/*
	 * Is there surely no object under prefix (a key ending in '/')?  false
	 * when it cannot tell.  Lets a first publish skip the check of each
	 * tile's destination; may be NULL.
	 */
	bool		(*prefix_empty) (StorageTarget *target, const char *prefix);

	/*
	 * Purges (storage_list_keys, storage_remove_prefix; see there).
	 * list_local lists prefix where there are no listing requests (file://):
	 * every file under it, at any depth, as a List of StorageListEntry named
	 * below prefix.  remove_prefix removes everything under prefix and adds
	 * what it removed to *removed; it never follows a link out of prefix.
	 */
	List	   *(*list_local) (StorageTarget *target, const char *prefix);
	void		(*remove_prefix) (StorageTarget *target, const char *prefix,
								  StorageRemoved *removed);
};

/* Loads the target of env through SPI (caller is in a transaction). */
extern StorageTarget *storage_target_load(const char *env, MemoryContext mcxt);

extern void storage_put(StorageTarget *target, const char *key, const char *data,
						size_t len, const char *content_type, const char *cache_control);

/*
 * Documents (release.json and its immutable copies), stored as the
 * target's option compress says: storage_document_prepare makes doc from
 * data and its hex sha256 (compressing it once, when the target wants
 * gzip); storage_put_document writes it at key (with same_as_key, see
 * storage_put_same), compressed with Content-Encoding: gzip where the
 * server keeps it, else (file://) plain at key and compressed at key.gz;
 * a plain put removes a key.gz left there.
 *
 * Whatever the encoding, a document's sha256 is that of the document
 * itself: the checksum stored with it (S3) and every check of it
 * (storage_stat_document) mean the bytes a reader has after decoding.
 *
 * storage_switch_document makes dst_key (release.json) the document put at
 * src_key (an immutable copy), as it is stored: encoding and sibling
 * included, or the sibling the source has not removed; a publish's undo
 * and a rollback switch with it.  Readers of dst_key see the old document
 * or the new one, never none or a part: where the server's copy is not one
 * step (WebDAV) it goes through a temporary name beside dst_key made of
 * tag, which must be the caller's alone (the job's id: a retry of the job
 * reuses, and so replaces, what a crash left there).
 * storage_delete_document removes both.
 */
typedef struct StorageDocument
{
	const char *data;			/* the document */
	size_t		len;
	const char *sha256;			/* hex SHA-256 of data */
	const char *encoded;		/* gzip of it, or NULL: stored plain */
	size_t		encoded_len;
} StorageDocument;

extern void storage_document_prepare(StorageTarget *target, StorageDocument *doc,
									 const char *data, size_t len, const char *sha256);
extern void storage_put_document(StorageTarget *target, const char *key,
								 const char *same_as_key, const StorageDocument *doc,
								 const char *content_type, const char *cache_control);
extern void storage_switch_document(StorageTarget *target, const char *src_key,
									const char *dst_key, const char *tag,
									const char *content_type,
									const char *cache_control);
extern void storage_stat_document(StorageTarget *target, const char *key,
								  StorageObjectInfo *info);
extern void storage_delete_document(StorageTarget *target, const char *key);
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

/*
 * Purges: what is under a prefix (a key ending in '/', without "." or
 * ".." segments) listed, or removed whole.  storage_list_keys returns the
 * objects in the folder prefix (List of StorageListEntry named below it,
 * in the current memory context; those of sub-folders too on S3 and
 * file://; meant for small prefixes such as a project's releases/), and sets
 * *supported false, returning NIL, where the protocol cannot list (WebDAV
 * without PROPFIND).  storage_remove_prefix removes every object under
 * prefix (file://: the files and the directories, without following a
 * symlink; WebDAV: one DELETE of the collection; S3: a listing and
 * DeleteObjects, 1,000 keys a request) and adds what it removed to
 * *removed.  storage_remove_counted removes the document at key (with
 * its .gz sibling where there is one, as storage_delete_document),
 * counting what it found; true when there was anything.
 */
extern List *storage_list_keys(StorageTarget *target, const char *prefix,
							   bool *supported);
extern void storage_remove_prefix(StorageTarget *target, const char *prefix,
								  StorageRemoved *removed);
extern bool storage_remove_counted(StorageTarget *target, const char *key,
								   StorageRemoved *removed);

/*
 * Many stats and copies of one target in flight at once, at most
 * max_parallel (step 4's tiles), for a target whose backend has parallel
 * requests (storage_batch_supported).  storage_batch_stat and
 * storage_batch_copy start one (the batch must not be full); the request
 * and its result are allocated in the current memory context.
 * storage_batch_wait waits up to timeout_ms for one to finish (after its
 * retries) and fills *result, or returns false when the time is up or
 * nothing is in flight; it throws for a failure (as storage_stat and
 * storage_copy would) and for interrupts.  storage_batch_end frees every
 * transfer: call it on every path (PG_FINALLY).  No transaction may be
 * open.
 */
typedef struct StorageBatch StorageBatch;

typedef struct StorageResult
{
	void	   *tag;			/* as given when the request was added */
	StorageObjectInfo info;		/* a stat's answer */
	bool		copied;			/* a copy: done; false when the server cannot
								 * copy (storage_copy will) */
	bool		missing;		/* a copy with missing_ok: no such source */
	char		md5[33];		/* a copy's MD5, when the server told it */
	bool		verified;		/* a put: its answer shows it landed whole
								 * (else stat it) */
	bool		listed;			/* a listing: page holds its answer (false:
								 * the server cannot list) */
	StorageListPage page;
} StorageResult;

extern bool storage_batch_supported(StorageTarget *target);
extern StorageBatch *storage_batch_begin(StorageTarget *target,
										 int max_parallel);
extern bool storage_batch_full(StorageBatch *b);
extern bool storage_batch_idle(StorageBatch *b);
extern void storage_batch_stat(StorageBatch *b, const char *key,
							   bool want_sha256, void *tag);
extern void storage_batch_copy(StorageBatch *b, const char *src_key,
							   const char *dst_key, const char *content_type,
							   const char *cache_control, const char *sha256,
							   bool missing_ok, void *tag);
extern void storage_batch_put(StorageBatch *b, const char *key,
							  const char *data, size_t len,
							  const char *content_type,
							  const char *cache_control, const char *md5,
							  void *tag);
extern void storage_batch_list(StorageBatch *b, const char *root,
							   const char *sub, const char *next, void *tag);
extern bool storage_batch_wait(StorageBatch *b, long timeout_ms,
							   StorageResult *result);
extern void storage_batch_end(StorageBatch *b);

/*
 * For the backends only: the table of storage.c, and what the remote
 * ones share (storage_remote.c).
 */
extern const StorageBackend storage_local_backend;
extern const StorageBackend storage_http_backend;
extern const StorageBackend storage_https_backend;
extern const StorageBackend storage_s3_backend;

extern struct HttpRequest *storage_remote_request(StorageTarget *target,
												  const char *method,
												  const char *url,
												  const char *what);

pg_attribute_noreturn()
extern void storage_remote_fail(StorageTarget *target, struct HttpRequest *req,
								struct HttpResponse *resp);
extern void storage_remote_stat_result(StorageTarget *target,
									   struct HttpRequest *req,
									   struct HttpResponse *resp,
									   StorageObjectInfo *info);
extern bool storage_etag_md5(const char *etag, char *md5);
extern int64 storage_remote_get(StorageTarget *target, struct HttpRequest *req,
								FILE *f, int64 max_bytes);
extern void storage_remote_hash_document(struct HttpRequest *req);
extern char *storage_xml_text(const char *s, size_t len);

/*
 * One page of the listing of root (list_request and list_result, run
 * now), from token next (NULL: the first); false when the server cannot
 * list.
 */
extern bool storage_remote_list_page(StorageTarget *target, const char *root,
									 const char *next, StorageListPage *page);

#endif							/* PUBLISH_STORAGE_H */
