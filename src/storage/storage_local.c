/*-------------------------------------------------------------------------
 *
 * storage_local.c
 *	  The file:// backend: a directory on the database server.
 *
 * Objects are files under the target's root; keys are relative paths.
 * Every write makes a temporary file beside the destination and renames it
 * over it, so a reader sees the old file or the new one, never a part.  A
 * put's data is fsync'd before the rename.  A link (release.json, the same
 * document as the versioned copy just put) is a hard link to the source:
 * its data is durable already, and nothing writes either file in place.  A
 * copy (tiles) is a real copy, by the kernel where it can (copy_file_range:
 * a reflink on file systems that have them); its data waits for
 * storage_sync's one syncfs, unless it replaces a file (then it is fsync'd
 * first, like a put) or there is no syncfs.  The directories whose entries
 * changed are fsync'd by storage_sync, each once, or covered by its
 * syncfs: the publish job calls it before its final commit, so a release
 * recorded as live is on disk, names included.
 *
 * Temporary files are {name}.tmp-{pid}-{16 random hex digits}.  A writer
 * killed before its rename leaves one behind, so the first time a process
 * writes into a directory, it removes those there whose pid no process
 * has: the next write of a key, a retry of the killed job included, clears
 * what the kill left beside it.  A worker that dies takes the server
 * through crash recovery, which starts every process again, and one that
 * exits is counted in shared memory (publish_shmem_worker_exits), after
 * which every process sweeps again; so a directory is read once per
 * process, not at every write into it (a project's releases/ holds a file
 * per version).
 *
 * Others may write in the target's directory (a web server, an upload
 * tool): no existing name there is opened, linked or chmod'ed through a
 * symlink planted at it.  Temporary files are created O_EXCL | O_NOFOLLOW
 * under names nobody can guess, modes are set through descriptors (0644
 * and 0755 for other readers, whatever the server's umask), and a rename
 * replaces a symlink at the destination instead of writing through it.
 *
 * Descriptors are fd.c's transient files.  The worker calls backends
 * outside any transaction, where an error would leave them open until some
 * later transaction ends, so each function closes what it opened before it
 * throws: nothing throws between an open and its close, or a PG_CATCH
 * closes it.
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "publish.h"
#include "ipc/ipc.h"
#include "storage/storage.h"
#include "util/util.h"

/*
 * Calls that only some systems have, each with a portable fallback:
 * syncfs (PostgreSQL's configure checks it) and copy_file_range (Linux,
 * and systems whose PostgreSQL checks it).
 */
#if defined(HAVE_COPY_FILE_RANGE) || defined(__linux__)
#define LOCAL_COPY_FILE_RANGE
#endif

#define LOCAL_FILE_MODE		0644
#define LOCAL_DIR_MODE		0755
#define LOCAL_IO_CHUNK		65536
/* beyond this many directories to fsync, storage_sync makes one syncfs */
#define LOCAL_MAX_DIRTY_DIRS	32

/* A directory the target has changed or written into. */
typedef struct LocalDir
{
	char		path[MAXPGPATH];	/* hash key */
	bool		swept;			/* sweep_once has seen it */
	bool		dirty;			/* in dirty: entries changed since the last
								 * sync */
} LocalDir;

/* The target's backend_state, in the target's context. */
typedef struct LocalTarget
{
	char	   *root;			/* the absolute directory */
	MemoryContext cxt;			/* the target's context */
	HTAB	   *dirs;			/* LocalDir by path */
	List	   *dirty;			/* LocalDirs to fsync at the next sync */
	bool		data_unsynced;	/* copies whose data waits for the syncfs */
} LocalTarget;

/* Reading and writing files, one call at a time. */
static char io_buf[LOCAL_IO_CHUNK];

static void
local_open(StorageTarget *target)
{
	LocalTarget *lt = palloc0(sizeof(LocalTarget));
	HASHCTL		ctl;

	lt->root = target->root = pstrdup(target->url + strlen("file://"));
	if (lt->root[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("storage target of environment \"%s\" is not an absolute directory: \"%s\"",
						target->env, target->url),
				 errhint("Use file:///absolute/directory.")));
	lt->cxt = CurrentMemoryContext;
	ctl.keysize = MAXPGPATH;
	ctl.entrysize = sizeof(LocalDir);
	ctl.hcxt = CurrentMemoryContext;
	lt->dirs = hash_create("publish file:// directories", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	target->backend_state = lt;
}

/* Does path have ".." as one of its /-separated segments? */
static bool
has_dotdot_segment(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
	{
		bool		starts = (p == path || p[-1] == '/');
		bool		ends = (p[2] == '\0' || p[2] == '/');

		if (starts && ends)
			return true;
	}
	return false;
}

/* The path of key, refusing keys that could leave the root. */
static char *
key_path(StorageTarget *target, const char *key)
{
	LocalTarget *lt = target->backend_state;
	char	   *path;

	if (key[0] == '\0' || key[0] == '/' || has_dotdot_segment(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid storage key \"%s\" for environment \"%s\"", key, target->env),
				 errdetail("Keys are relative paths without \"..\".")));
	path = psprintf("%s/%s", lt->root, key);
	if (strlen(path) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("storage key \"%s\" of environment \"%s\" is too long", key, target->env),
				 errdetail("Its path on the server must be shorter than %d bytes.", MAXPGPATH)));
	return path;
}

static char *
parent_dir(const char *path)
{
	char	   *dir = pstrdup(path);
	char	   *slash = strrchr(dir, '/');

	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	return dir;
}

/*
 * Is name a temporary file of ours ({name}.tmp-{pid}-{16 hex digits})
 * whose writer is gone?  A pid that some process has is left alone,
 * whoever it is.
 */
static bool
is_stale_tmp(const char *name)
{
	const char *p = NULL;
	char	   *end;
	long		pid;

	for (const char *q = name; (q = strstr(q, ".tmp-")) != NULL; q++)
		p = q + strlen(".tmp-");
	if (p == NULL || !isdigit((unsigned char) *p))
		return false;
	errno = 0;
	pid = strtol(p, &end, 10);
	if (errno != 0 || pid <= 0 || pid > PG_INT32_MAX || *end != '-' ||
		strlen(end + 1) != 16 || strspn(end + 1, "0123456789abcdef") != 16)
		return false;
	return kill((pid_t) pid, 0) != 0 && errno == ESRCH;
}

/*
 * Removes the temporary files in dir that dead writers left (unlink
 * removes a symlink, never what it points to).  Best effort: what cannot
 * be read or removed stays for a later try.
 */
static void
sweep_dir(const char *dir)
{
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;
	char		path[MAXPGPATH];

	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		if (is_stale_tmp(de->d_name) &&
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int) sizeof(path))
			(void) unlink(path);
	}
	FreeDir(d);
}

/*
 * The directories this process has swept (a 64-bit hash of each path),
 * since publish_shmem_worker_exits last moved; at most LOCAL_MAX_SWEPT.
 */
#define LOCAL_MAX_SWEPT		4096
static HTAB *swept_dirs = NULL;
static uint64 swept_since = 0;

/* sweep_dir(dir), unless this process has since the last worker exit. */
static void
sweep_once(const char *dir)
{
	uint64		exits = publish_shmem_worker_exits();
	uint64		key = hash_bytes_extended((const unsigned char *) dir, strlen(dir), 0);
	bool		found;

	if (swept_dirs == NULL || exits != swept_since ||
		hash_get_num_entries(swept_dirs) >= LOCAL_MAX_SWEPT)
	{
		HASHCTL		ctl;

		if (swept_dirs != NULL)
			hash_destroy(swept_dirs);
		ctl.keysize = ctl.entrysize = sizeof(uint64);
		ctl.hcxt = TopMemoryContext;
		swept_dirs = hash_create("publish swept directories", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		swept_since = exits;
	}
	(void) hash_search(swept_dirs, &key, HASH_ENTER, &found);
	if (!found)
		sweep_dir(dir);
}

/*
 * Notes that the entries of dir change, so the next sync fsyncs it; with
 * sweep (a file is about to be written into dir), the process's first write
 * there removes the temporary files that dead writers left (sweep_once).
 */
static void
dir_changed(LocalTarget *lt, const char *dir, bool sweep)
{
	bool		found;
	LocalDir   *d = hash_search(lt->dirs, dir, HASH_ENTER, &found);

	if (!found)
		d->swept = d->dirty = false;
	if (sweep && !d->swept)
	{
		sweep_once(dir);
		d->swept = true;
	}
	if (!d->dirty)
	{
		MemoryContext old = MemoryContextSwitchTo(lt->cxt);

		lt->dirty = lappend(lt->dirty, d);
		d->dirty = true;
		MemoryContextSwitchTo(old);
	}
}

/*
 * Sets a directory just made to LOCAL_DIR_MODE through a descriptor: a
 * symlink put in its place meanwhile is not followed.  Best effort, as the
 * mode only widens what umask left.
 */
static void
set_dir_mode(const char *dir)
{
	int			fd = OpenTransientFile(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | PG_BINARY);

	if (fd >= 0)
	{
		(void) fchmod(fd, LOCAL_DIR_MODE);
		CloseTransientFile(fd);
	}
}

/* mkdir -p for the directory that will hold path. */
static void
make_parent_dirs(LocalTarget *lt, const char *path)
{
	char	   *dir = parent_dir(path);
	struct stat st;

	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return;
	if (strcmp(dir, "/") == 0 || strchr(dir, '/') == NULL)
		return;
	make_parent_dirs(lt, dir);
	if (mkdir(dir, LOCAL_DIR_MODE) == 0)
	{
		set_dir_mode(dir);
		dir_changed(lt, parent_dir(dir), false);
	}
	else if (errno != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
	{
		if (errno == EEXIST)
			errno = ENOTDIR;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	}
}

/* Before a file is written at path: its directories, swept, marked to sync. */
static void
begin_write(LocalTarget *lt, const char *path)
{
	make_parent_dirs(lt, path);
	dir_changed(lt, parent_dir(path), true);
}

/*
 * A name for a new temporary file beside path that nobody can guess ahead:
 * {path}.tmp-{pid}-{16 random hex digits}.
 */
static char *
tmp_name(const char *path)
{
	char		bytes[8];
	char		hex[2 * sizeof(bytes) + 1];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random name for a temporary file beside \"%s\"", path)));
	hex[hex_encode(bytes, sizeof(bytes), hex)] = '\0';
	return psprintf("%s.tmp-%d-%s", path, MyProcPid, hex);
}

/*
 * Creates a new temporary file beside path, for writing, and returns its
 * descriptor; *tmp gets its name.  O_EXCL | O_NOFOLLOW: a name that exists
 * (a file, or a symlink someone planted) is never opened; another random
 * name is tried.  Throws when none can be made.
 */
static int
create_tmp(const char *path, char **tmp)
{
	for (int attempt = 0; attempt < 8; attempt++)
	{
		char	   *name = tmp_name(path);
		int			fd = OpenTransientFilePerm(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | PG_BINARY,
											   LOCAL_FILE_MODE);

		if (fd >= 0)
		{
			*tmp = name;
			return fd;
		}
		if (errno != EEXIST)
			break;
		pfree(name);
	}
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not create a temporary file beside \"%s\": %m", path)));
	return -1;					/* not reached */
}

/* Closes fd (unless -1), removes the temporary file tmp and throws. */
pg_attribute_noreturn()
static void
fail_write(int fd, const char *tmp, const char *path)
{
	int			save_errno = errno;

	if (fd >= 0)
		CloseTransientFile(fd);
	unlink(tmp);
	errno = save_errno;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not write \"%s\": %m", path)));
}

/*
 * Sets the mode of fd, the temporary file tmp written for path (with sync,
 * fsyncs it), closes it and renames it over path.  On failure it is
 * removed.
 */
static void
place_tmp(int fd, const char *tmp, const char *path, bool sync)
{
	if (fchmod(fd, LOCAL_FILE_MODE) != 0 || (sync && pg_fsync(fd) != 0))
		fail_write(fd, tmp, path);
	if (CloseTransientFile(fd) != 0 || rename(tmp, path) != 0)
		fail_write(-1, tmp, path);
}

/* Writes len bytes of data to fd; false, with errno, when it cannot. */
static bool
write_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, data, Min(len, (size_t) 1 << 30));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			if (n == 0)
				errno = ENOSPC;
			return false;
		}
		data += n;
		len -= n;
	}
	return true;
}

/*
 * Keeps no Content-Encoding (storage.c writes a compressed sibling instead)
 * and no checksum.
 */
static void
local_put(StorageTarget *target, const char *key, const char *data, size_t len,
		  const char *content_type, const char *cache_control,
		  const char *content_encoding, const char *sha256)
{
	char	   *path = key_path(target, key);
	char	   *tmp;
	int			fd;

	begin_write(target->backend_state, path);
	fd = create_tmp(path, &tmp);
	if (!write_all(fd, data, len))
		fail_write(fd, tmp, path);
	place_tmp(fd, tmp, path, true);
}

/*
 * Makes dst_key a hard link to src_key's file, which local_put wrote (its
 * data fsync'd) and nothing changes in place: linked to a temporary name
 * (link() never follows or replaces what is at the new name) and renamed
 * over dst_key.  false when the file system cannot link (then the caller
 * puts the data), or src_key is gone.
 */
static bool
local_link(StorageTarget *target, const char *src_key, const char *dst_key)
{
	char	   *src = key_path(target, src_key);
	char	   *dst = key_path(target, dst_key);
	char	   *tmp = NULL;

	begin_write(target->backend_state, dst);
	for (int attempt = 0; tmp == NULL; attempt++)
	{
		tmp = tmp_name(dst);
		if (link(src, tmp) != 0)
		{
			if (errno != EEXIST || attempt == 7)
				return false;
			tmp = NULL;			/* taken: another random name */
		}
	}
	if (rename(tmp, dst) != 0)
		fail_write(-1, tmp, dst);
	/* when dst already was this file, rename succeeds and leaves tmp */
	(void) unlink(tmp);
	return true;
}

static void
local_stat(StorageTarget *target, const char *key, StorageObjectInfo *info, bool want_sha256)
{
	char	   *path = key_path(target, key);
	struct stat st;

	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT || errno == ENOTDIR)
			return;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat \"%s\": %m", path)));
	}
	if (!S_ISREG(st.st_mode))
		return;
	info->exists = true;
	info->size = st.st_size;
	if (want_sha256 && !checksum_file(path, info->sha256, NULL))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\": %m", path)));
}

/*
 * Copies what is left of in to out: in the kernel where it can, else
 * through io_buf.  false, with errno, when it cannot.
 */
static bool
copy_data(int in, int out)
{
#ifdef LOCAL_COPY_FILE_RANGE
	for (;;)
	{
		ssize_t		n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (n == 0)
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
					  errno == EOPNOTSUPP))
			break;				/* not here: read and write */
		if (n < 0)
			return false;
	}
#endif
	for (;;)
	{
		ssize_t		n = read(in, io_buf, sizeof(io_buf));

		if (n == 0)
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || !write_all(out, io_buf, n))
			return false;
	}
}

/*
 * A copy to a new name waits for storage_sync's syncfs: nothing points at
 * it until then.  One that replaces a file (an undo's release.json) is
 * fsync'd before its rename, like a put, as is every copy where there is no
 * syncfs.
 */
static void
local_copy(StorageTarget *target, const char *src_key, const char *dst_key,
		   const char *content_type, const char *cache_control)
{
	LocalTarget *lt = target->backend_state;
	char	   *src = key_path(target, src_key);
	char	   *dst = key_path(target, dst_key);
	bool		sync_now = true;
	char	   *tmp = NULL;
	int			in;
	int			out = -1;

	begin_write(lt, dst);
#ifdef HAVE_SYNCFS
	{
		struct stat st;

		sync_now = lstat(dst, &st) == 0;
	}
#endif
	in = OpenTransientFile(src, O_RDONLY | PG_BINARY);
	if (in < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", src)));
	PG_TRY();
	{
		out = create_tmp(dst, &tmp);
		if (!copy_data(in, out))
			fail_write(out, tmp, dst);
	}
	PG_CATCH();
	{
		CloseTransientFile(in);
		PG_RE_THROW();
	}
	PG_END_TRY();
	CloseTransientFile(in);
	place_tmp(out, tmp, dst, sync_now);
	if (!sync_now)
		lt->data_unsynced = true;
}

/* Removes the file at key, if it is there; its directory is synced by storage_sync. */
static void
local_remove(StorageTarget *target, const char *key)
{
	char	   *path = key_path(target, key);

	if (unlink(path) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove \"%s\": %m", path)));
	dir_changed(target->backend_state, parent_dir(path), false);
}

#ifdef HAVE_SYNCFS
/* syncfs of the file system that holds path. */
static void
sync_file_system(const char *path)
{
	int			fd;

	if (!enableFsync)
		return;
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0 || syncfs(fd) != 0)
	{
		int			save_errno = errno;

		if (fd >= 0)
			CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not sync the file system of \"%s\": %m", path)));
	}
	CloseTransientFile(fd);
}
#endif

/*
 * Makes every put, link, copy and removal so far durable, names included:
 * one syncfs of the root's file system after copies whose data waits for
 * it (or past LOCAL_MAX_DIRTY_DIRS directories), otherwise an fsync of
 * each directory whose entries changed.
 */
static void
local_sync(StorageTarget *target)
{
	LocalTarget *lt = target->backend_state;
	bool		whole_fs = false;
	ListCell   *lc;

#ifdef HAVE_SYNCFS
	whole_fs = lt->data_unsynced || list_length(lt->dirty) > LOCAL_MAX_DIRTY_DIRS;
	if (whole_fs)
		sync_file_system(lt->root);
#endif
	foreach(lc, lt->dirty)
	{
		LocalDir   *d = lfirst(lc);

		if (!whole_fs)
			fsync_fname_ext(d->path, true, false, ERROR);
		d->dirty = false;
	}
	list_free(lt->dirty);
	lt->dirty = NIL;
	lt->data_unsynced = false;
}

/* Copies the file at key into f. */
static int64
local_get(StorageTarget *target, const char *key, FILE *f, int64 max_bytes)
{
	char	   *path = key_path(target, key);
	int			in = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	int64		total = 0;
	ssize_t		n;

	if (in < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path)));
	while ((n = read(in, io_buf, sizeof(io_buf))) != 0)
	{
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || fwrite(io_buf, 1, n, f) != (size_t) n)
		{
			int			save_errno = errno;

			CloseTransientFile(in);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not copy \"%s\": %m", path)));
		}
		total += n;
		if (max_bytes > 0 && total > max_bytes)
		{
			CloseTransientFile(in);
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_TOO_LARGE),
					 errmsg("\"%s\" is larger than %lld bytes", path, (long long) max_bytes)));
		}
	}
	CloseTransientFile(in);
	return total;
}

/*
 * Purges: a walk of the tree under a prefix, listing its files or removing
 * it.  Each directory is opened relative to its parent's descriptor with
 * O_NOFOLLOW, from the root down, so a symlink planted anywhere below the
 * root (at the prefix, or inside it) is never followed: it is removed as
 * the link it is, or left out of a listing.  The descriptors are counted
 * with fd.c (AcquireExternalFD), and those still open when something
 * throws (an interrupt, out of memory) are closed by PG_CATCH, as this
 * file's functions close what they open before they throw.
 */
#define LOCAL_MAX_WALK_DEPTH	64

typedef struct LocalWalk
{
	bool		remove;			/* else list */
	List	   *keys;			/* list: StorageListEntry of each file */
	int			prefix_len;		/* the walk's prefix, which names leave out */
	StorageRemoved *removed;	/* remove: what was removed */
	StringInfoData key;			/* the key of the directory walked, ending in
								 * '/' */
	DIR		   *open_dirs[LOCAL_MAX_WALK_DEPTH + 1];
	int			depth;			/* open_dirs in use */
	uint64		steps;
	int			err;			/* the first failure's errno, 0: none */
	char	   *err_key;		/* and what it failed on */
} LocalWalk;

static void
walk_fail(LocalWalk *w, const char *name)
{
	if (w->err == 0)
	{
		w->err = errno ? errno : EIO;
		w->err_key = psprintf("%s%s", w->key.data, name);
	}
}

/* Opens name in the directory dfd, a directory and not a symlink; -1 with errno. */
static int
open_subdir(int dfd, const char *name)
{
	int			fd;

	if (!AcquireExternalFD())
	{
		errno = EMFILE;
		return -1;
	}
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
	{
		int			save_errno = errno;

		ReleaseExternalFD();
		errno = save_errno;
	}
	return fd;
}

/*
 * Walks the directory fd (which it takes over and closes), whose key is
 * w->key.  false when it stopped at a failure (w->err).
 */
static bool
walk_dir(LocalWalk *w, int fd)
{
	DIR		   *d = fdopendir(fd);
	struct dirent *de;
	bool		ok = true;

	if (d == NULL)
	{
		walk_fail(w, "");
		close(fd);
		ReleaseExternalFD();
		return false;
	}
	w->open_dirs[w->depth++] = d;

	/*
	 * Entries are removed as they are read: readdir goes on with the next one
	 * (rm -r does the same).
	 */
	while (ok && (errno = 0, de = readdir(d)) != NULL)
	{
		struct stat st;
		int			base = w->key.len;
		int			sub;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (++w->steps % 1024 == 0)
			CHECK_FOR_INTERRUPTS();
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		{
			if (errno != ENOENT)
			{
				walk_fail(w, de->d_name);
				ok = false;
			}
			continue;
		}
		if (!S_ISDIR(st.st_mode))
		{
			if (!w->remove)
			{
				/* a listing names the files, not the symlinks */
				if (S_ISREG(st.st_mode))
				{
					StorageListEntry *e = palloc0(sizeof(StorageListEntry));

					e->name = psprintf("%s%s", w->key.data + w->prefix_len, de->d_name);
					e->size = st.st_size;
					w->keys = lappend(w->keys, e);
				}
			}
			else if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			{
				/* a file, or a symlink (unlink never follows it) */
				w->removed->objects++;
				if (S_ISREG(st.st_mode))
					w->removed->bytes += st.st_size;
			}
			else if (errno != ENOENT)
			{
				walk_fail(w, de->d_name);
				ok = false;
			}
			continue;
		}

		if (w->depth >= LOCAL_MAX_WALK_DEPTH)
		{
			errno = ELOOP;
			walk_fail(w, de->d_name);
			ok = false;
			continue;
		}
		sub = open_subdir(dirfd(d), de->d_name);
		if (sub < 0)
		{
			if (errno != ENOENT)
			{
				walk_fail(w, de->d_name);
				ok = false;
			}
			continue;
		}
		appendStringInfo(&w->key, "%s/", de->d_name);
		ok = walk_dir(w, sub);
		w->key.len = base;
		w->key.data[base] = '\0';
		if (ok && w->remove &&
			unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		{
			walk_fail(w, de->d_name);
			ok = false;
		}
	}
	if (ok && errno != 0)
	{
		walk_fail(w, "");
		ok = false;
	}
	w->depth--;
	closedir(d);
	ReleaseExternalFD();
	return ok;
}

/* Closes fd, a descriptor counted with AcquireExternalFD, unless -1. */
static void
close_counted(int fd)
{
	if (fd >= 0)
	{
		close(fd);
		ReleaseExternalFD();
	}
}

/*
 * Walks the tree of prefix (a key ending in '/'), listing or removing it
 * (w->remove); with remove, prefix's own directory goes too, and a file or
 * symlink in its place.  The path down to it is opened a component at a
 * time with O_NOFOLLOW: a symlink above it fails the walk (ELOOP).  A
 * prefix that does not exist is an empty tree.  Throws for a failure.
 */
static void
walk_prefix(StorageTarget *target, const char *prefix, LocalWalk *w)
{
	LocalTarget *lt = target->backend_state;
	char	   *path = key_path(target, prefix);
	char	   *rel = pnstrdup(prefix, strlen(prefix) - 1); /* no trailing '/' */
	char	   *name = rel;
	char	   *next = NULL;
	int			parent = -1;
	int			fd = -1;
	bool		changed = false;

	initStringInfo(&w->key);
	appendStringInfoString(&w->key, prefix);
	w->prefix_len = w->key.len;
	if (!AcquireExternalFD())
		errno = EMFILE;
	else if ((fd = open(lt->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		ReleaseExternalFD();
	/* down to prefix's directory: parent is the one that holds it */
	while (fd >= 0)
	{
		next = strchr(name, '/');
		if (next != NULL)
			*next++ = '\0';
		close_counted(parent);
		parent = fd;
		fd = open_subdir(parent, name);
		if (next == NULL)
			break;
		name = next;
	}

	if (fd < 0)
	{
		/* the prefix's own name is a file or a symlink: it goes */
		struct stat st;

		if (parent >= 0 && next == NULL && w->remove && (errno == ENOTDIR || errno == ELOOP) &&
			fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
		{
			if (unlinkat(parent, name, 0) != 0)
				walk_fail(w, "");
			else
			{
				w->removed->objects++;
				changed = true;
			}
		}
		else if (errno != ENOENT)
			walk_fail(w, "");
	}
	else
	{
		PG_TRY();
		{
			if (walk_dir(w, fd) && w->remove)
			{
				if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
					walk_fail(w, "");
				changed = true;
			}
		}
		PG_CATCH();
		{
			while (w->depth > 0)
			{
				closedir(w->open_dirs[--w->depth]);
				ReleaseExternalFD();
			}
			close_counted(parent);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	close_counted(parent);

	/* the directory that held the prefix's is synced by storage_sync */
	if (changed)
		dir_changed(lt, parent_dir(pnstrdup(path, strlen(path) - 1)), false);
	if (w->err != 0)
	{
		errno = w->err;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not %s \"%s/%s\": %m", w->remove ? "remove" : "list",
						lt->root, w->err_key)));
	}
}

/* Every file under prefix, at any depth; symlinks are left out. */
static List *
local_list_local(StorageTarget *target, const char *prefix)
{
	LocalWalk	w;

	memset(&w, 0, sizeof(w));
	walk_prefix(target, prefix, &w);
	return w.keys;
}

/*
 * Removes the tree of prefix: its files and symlinks (counted), then its
 * directories; made durable by the next storage_sync (the parent of the
 * prefix's directory is fsync'd; the directories removed need no sync).
 */
static void
local_remove_prefix(StorageTarget *target, const char *prefix, StorageRemoved *removed)
{
	LocalWalk	w;

	memset(&w, 0, sizeof(w));
	w.remove = true;
	w.removed = removed;
	walk_prefix(target, prefix, &w);
}

const StorageBackend storage_local_backend = {
	.scheme = "file",
	.service = "file storage",
	.credentials = "credentials",
	.open = local_open,
	.put = local_put,
	.stat = local_stat,
	.link = local_link,
	.copy = local_copy,
	.remove = local_remove,
	.sync = local_sync,
	.get = local_get,
	.list_local = local_list_local,
	.remove_prefix = local_remove_prefix,
};
