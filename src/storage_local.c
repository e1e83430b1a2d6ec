/*-------------------------------------------------------------------------
 *
 * storage_local.c
 *	  The file:// backend: a directory on the database server.
 *
 * Objects are files under the target's root directory; keys are relative
 * paths.  Writes are atomic: a temporary file beside the destination is
 * written, fsync'd and renamed over it, so a reader sees the old file or
 * the new one, never a part, even after a crash of the machine.  The fsyncs
 * of the directories whose entries changed (the renamed file's, and the
 * parents of directories made for it) wait for storage_sync, which the
 * publish job calls once before its final commit: each directory is synced
 * once per job, not once per file or directory made in it (and on a
 * journalling file system the first fsync commits the others' changes
 * too).  release.json is a hard link to the versioned copy just written
 * (local_link): the same inode, its data already durable, so switching it
 * costs no write and no data fsync; nothing writes either file in place,
 * so they cannot drift apart.
 *
 * Copies are real copies, never hard links (a published tile must not
 * change when its build file is rewritten, and must get the published
 * mode): copy_file_range lets the kernel do the work (a reflink on file
 * systems that have them).  They are made durable together by storage_sync,
 * one syncfs of the target's file system, instead of an fsync per tile.
 *
 * The server runs with umask 077; published files are for other readers (a
 * web server, a CDN origin), so files get mode 0644 and directories 0755.
 *
 * Others may write in the target's directory (a web server, an upload
 * tool): nothing here opens, links or chmods an existing name there in a
 * way that follows a symlink planted at it.  Temporary files are created
 * with O_CREAT | O_EXCL | O_NOFOLLOW under a name with a random part
 * ({name}.tmp-{pid}-{16 hex digits}), modes are set through descriptors, and
 * the final rename replaces whatever is at the destination, a symlink
 * included, instead of writing through it.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#define LOCAL_FILE_MODE		0644
#define LOCAL_DIR_MODE		0755
#define LOCAL_IO_CHUNK		65536
/* beyond this many directories to fsync, storage_sync makes one syncfs */
#define LOCAL_MAX_UNSYNCED_DIRS	32

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

/* Rejects keys that could leave the root. */
static void
check_key(StorageTarget *target, const char *key)
{
	if (key[0] == '\0' || key[0] == '/' || has_dotdot_segment(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid storage key \"%s\" for environment \"%s\"", key, target->env),
				 errdetail("Keys are relative paths without \"..\".")));
}

static char *
key_path(StorageTarget *target, const char *key)
{
	check_key(target, key);
	return psprintf("%s/%s", target->root, key);
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

/* fsync of dir, or with whole_fs a syncfs of the file system that holds it */
static void
sync_dir(const char *dir, bool whole_fs)
{
	int			fd = open(dir, O_RDONLY | PG_BINARY);

	if (fd < 0 || (whole_fs ? enableFsync && syncfs(fd) != 0 : pg_fsync(fd) != 0))
	{
		int			save_errno = errno;

		if (fd >= 0)
			close(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 whole_fs ? errmsg("could not sync the file system of \"%s\": %m", dir) :
				 errmsg("could not fsync directory \"%s\": %m", dir)));
	}
	close(fd);
}

/*
 * Leaves the fsync of dir, whose entries changed, to storage_sync (the
 * list lives in the target's context).  Past LOCAL_MAX_UNSYNCED_DIRS (a
 * tile build puts many files) storage_sync makes one syncfs instead.
 */
static void
defer_dir_sync(StorageTarget *target, const char *dir)
{
	MemoryContext old;
	ListCell   *lc;

	if (target->unsynced)
		return;					/* the syncfs will cover it */
	foreach(lc, target->unsynced_dirs)
	{
		if (strcmp((char *) lfirst(lc), dir) == 0)
			return;
	}
	if (list_length(target->unsynced_dirs) >= LOCAL_MAX_UNSYNCED_DIRS)
	{
		list_free_deep(target->unsynced_dirs);
		target->unsynced_dirs = NIL;
		target->unsynced = true;
		return;
	}
	old = MemoryContextSwitchTo(GetMemoryChunkContext(target));
	target->unsynced_dirs = lappend(target->unsynced_dirs, pstrdup(dir));
	MemoryContextSwitchTo(old);
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
		int			fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | PG_BINARY,
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

/*
 * Makes a new temporary name beside path a hard link to src (link() never
 * follows or replaces what is at the new name; another random name is
 * tried when it exists).  false, with errno, when it cannot.
 */
static bool
link_tmp(const char *src, const char *path, char **tmp)
{
	for (int attempt = 0; attempt < 8; attempt++)
	{
		char	   *name = tmp_name(path);

		if (link(src, name) == 0)
		{
			*tmp = name;
			return true;
		}
		if (errno != EEXIST)
			return false;
		pfree(name);
	}
	return false;
}

/*
 * Sets a directory just made to LOCAL_DIR_MODE through a descriptor: a
 * symlink put in its place meanwhile is not followed.  Best effort, as the
 * mode only widens what umask left.
 */
static void
set_dir_mode(const char *dir)
{
	int			fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | PG_BINARY);

	if (fd >= 0)
	{
		(void) fchmod(fd, LOCAL_DIR_MODE);
		close(fd);
	}
}

/*
 * mkdir -p for the directory that will hold path.  With durable, each
 * directory it creates is to be fsync'd into its parent by storage_sync,
 * so that after a crash of the machine a file put under a new directory (a
 * project's first release.json) is not lost with the directory's entry;
 * only directories that did not exist add one.  Copies (tiles) skip that:
 * their syncfs makes them, and their directories, durable at once.
 */
static void
make_parent_dirs(StorageTarget *target, const char *path, bool durable)
{
	char	   *dir = parent_dir(path);
	struct stat st;

	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return;
	if (strcmp(dir, "/") == 0 || strchr(dir, '/') == NULL)
		return;
	make_parent_dirs(target, dir, durable);
	if (mkdir(dir, LOCAL_DIR_MODE) == 0)
	{
		set_dir_mode(dir);
		if (durable)
			defer_dir_sync(target, parent_dir(dir));
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

/* Reports a failed write of path after removing the temporary file. */
static void
fail_write(int fd, const char *tmp, const char *path)
{
	int			save_errno = errno;

	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = save_errno;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not write \"%s\": %m", path)));
}

/*
 * Writes data to a new temporary file beside path and returns its name;
 * with sync, fsync'd.  The caller renames it into place.
 */
static char *
write_tmp(const char *path, const char *data, size_t len, bool sync)
{
	char	   *tmp;
	size_t		done = 0;
	int			fd = create_tmp(path, &tmp);

	while (done < len)
	{
		ssize_t		n = write(fd, data + done, Min(len - done, (size_t) 1 << 30));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			if (n == 0)
				errno = ENOSPC;
			fail_write(fd, tmp, path);
		}
		done += n;
	}
	if (fchmod(fd, LOCAL_FILE_MODE) != 0 || (sync && pg_fsync(fd) != 0))
		fail_write(fd, tmp, path);
	if (close(fd) != 0)
		fail_write(-1, tmp, path);
	return tmp;
}

static void
local_put(StorageTarget *target, const char *key, const char *data, size_t len,
		  const char *content_type, const char *cache_control)
{
	char	   *path = key_path(target, key);
	char	   *tmp;

	make_parent_dirs(target, path, true);
	tmp = write_tmp(path, data, len, true);
	if (rename(tmp, path) != 0)
		fail_write(-1, tmp, path);
	defer_dir_sync(target, parent_dir(path));
}

/*
 * Makes dst_key a hard link to src_key's file, which local_put wrote (its
 * data fsync'd) and nothing changes in place: linked to a temporary name,
 * renamed over dst_key (atomic, like a put), its directory left to
 * storage_sync.  false when the file system cannot link (then the caller
 * puts the data), or src_key is gone.
 */
static bool
local_link(StorageTarget *target, const char *src_key, const char *dst_key)
{
	char	   *src = key_path(target, src_key);
	char	   *dst = key_path(target, dst_key);
	char	   *tmp;

	make_parent_dirs(target, dst, true);
	if (!link_tmp(src, dst, &tmp))
		return false;
	if (rename(tmp, dst) != 0)
		fail_write(-1, tmp, dst);
	/* when dst already was this file, rename succeeds and leaves tmp */
	(void) unlink(tmp);
	defer_dir_sync(target, parent_dir(dst));
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
 * Copies src into a new temporary file beside final_path, in the kernel
 * when it can, and returns the temporary file's name (the caller renames
 * it into place).  Not fsync'd: storage_sync makes copies durable.
 */
static char *
copy_file(const char *src, const char *final_path)
{
	int			in = open(src, O_RDONLY | PG_BINARY);
	int			out;
	char	   *tmp;
	char	   *buf = NULL;
	bool		use_kernel = true;

	if (in < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", src)));
	PG_TRY();
	{
		out = create_tmp(final_path, &tmp);
	}
	PG_CATCH();
	{
		close(in);
		PG_RE_THROW();
	}
	PG_END_TRY();
	for (;;)
	{
		ssize_t		n;

		if (use_kernel)
		{
			n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
						  errno == EOPNOTSUPP))
			{
				use_kernel = false; /* fall back to read/write */
				continue;
			}
		}
		else
		{
			if (buf == NULL)
				buf = palloc(LOCAL_IO_CHUNK);
			n = read(in, buf, LOCAL_IO_CHUNK);
			if (n > 0)
			{
				ssize_t		done = 0;

				while (done < n)
				{
					ssize_t		w = write(out, buf + done, n - done);

					if (w < 0 && errno == EINTR)
						continue;
					if (w <= 0)
					{
						if (w == 0)
							errno = ENOSPC;
						close(in);
						fail_write(out, tmp, final_path);
					}
					done += w;
				}
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			close(in);
			fail_write(out, tmp, final_path);
		}
		if (n == 0)
			break;
	}
	close(in);
	if (buf)
		pfree(buf);
	if (fchmod(out, LOCAL_FILE_MODE) != 0)
		fail_write(out, tmp, final_path);
	if (close(out) != 0)
		fail_write(-1, tmp, final_path);
	return tmp;
}

static void
local_copy(StorageTarget *target, const char *src_key, const char *dst_key,
		   const char *content_type, const char *cache_control)
{
	char	   *src = key_path(target, src_key);
	char	   *dst = key_path(target, dst_key);
	char	   *tmp;

	make_parent_dirs(target, dst, false);
	tmp = copy_file(src, dst);
	if (rename(tmp, dst) != 0)
		fail_write(-1, tmp, dst);
	target->unsynced = true;
}

/*
 * Makes every put and copy so far durable, names included: one syncfs of
 * the target's file system after copies (or many puts), otherwise an fsync
 * of each directory whose entries changed.
 */
static void
local_sync(StorageTarget *target)
{
	if (!target->unsynced)
	{
		while (target->unsynced_dirs != NIL)
		{
			char	   *dir = linitial(target->unsynced_dirs);

			sync_dir(dir, false);
			target->unsynced_dirs = list_delete_first(target->unsynced_dirs);
			pfree(dir);
		}
		return;
	}
	sync_dir(target->root, true);
	target->unsynced = false;
	list_free_deep(target->unsynced_dirs);
	target->unsynced_dirs = NIL;
}

/* Copies the file at key into f. */
static int64
local_get(StorageTarget *target, const char *key, FILE *f, int64 max_bytes)
{
	char	   *path = key_path(target, key);
	int			in = open(path, O_RDONLY | PG_BINARY);
	char	   *buf;
	int64		total = 0;
	ssize_t		n;

	if (in < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", path)));
	buf = palloc(LOCAL_IO_CHUNK);
	while ((n = read(in, buf, LOCAL_IO_CHUNK)) != 0)
	{
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || fwrite(buf, 1, n, f) != (size_t) n)
		{
			int			save_errno = errno;

			close(in);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not copy \"%s\": %m", path)));
		}
		total += n;
		if (max_bytes > 0 && total > max_bytes)
		{
			close(in);
			ereport(ERROR,
					(errcode(ERRCODE_PUBLISH_TOO_LARGE),
					 errmsg("\"%s\" is larger than %lld bytes", path, (long long) max_bytes)));
		}
	}
	close(in);
	pfree(buf);
	return total;
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
	defer_dir_sync(target, parent_dir(path));
}

const StorageBackend storage_local_backend = {
	.scheme = "file",
	.put = local_put,
	.stat = local_stat,
	.link = local_link,
	.copy = local_copy,
	.remove = local_remove,
	.sync = local_sync,
	.get = local_get,
};
