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
 * A group of jobs (job_group.c) shares its syncs: storage_put_deferred
 * writes a versioned copy to its temporary file without an fsync, and the
 * link of release.json to it waits too; storage_local_sync_set then makes
 * the data of every such file of the group durable with one syncfs,
 * renames each into place and makes its link (release.json switched only
 * once its versioned copy's data is durable), and makes the names durable
 * with one more syncfs (or, without deferred files and with few
 * directories, an fsync of each).  On ext4 without a journal every fsync is
 * a cache flush of its own, and a syncfs is one for all.
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
 * ({name}.tmp-{pid}-{16 hex digits}: the pid tells local_remove_stale
 * whether their writer is gone), modes are set through descriptors, and
 * the final rename replaces whatever is at the destination, a symlink
 * included, instead of writing through it.
 *
 *-------------------------------------------------------------------------
 */
#include "publish.h"
#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
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
/* the same for the syncs of a group of jobs (storage_local_sync_set) */
#ifndef LOCAL_GROUP_MAX_DIRS
#define LOCAL_GROUP_MAX_DIRS	LOCAL_MAX_UNSYNCED_DIRS
#endif

/*
 * The temporary files of deferred puts not yet handed to a group's set
 * (local_defer_sync): a job that fails before its switch leaves
 * them, and storage_local_discard_deferred removes them.
 */
static List *unplaced = NIL;
static MemoryContext unplaced_cxt = NULL;

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
 * A put (tmp set) or a link (src set) that waits for the group's sync
 * (storage_put_deferred, storage_local_sync_set).
 */
typedef struct LocalDeferred
{
	char	   *tmp;			/* a put: its temporary file, data not synced */
	char	   *src;			/* a link: the file it is to be */
	char	   *path;			/* where it goes */
} LocalDeferred;

static LocalDeferred *
add_deferred(List **list, MemoryContext mcxt, const char *tmp, const char *src, const char *path)
{
	LocalDeferred *d = MemoryContextAllocZero(mcxt, sizeof(LocalDeferred));
	MemoryContext old = MemoryContextSwitchTo(mcxt);

	d->tmp = tmp ? pstrdup(tmp) : NULL;
	d->src = src ? pstrdup(src) : NULL;
	d->path = pstrdup(path);
	*list = lappend(*list, d);
	MemoryContextSwitchTo(old);
	return d;
}

/*
 * storage_put_deferred on file://: the data goes to a temporary file now,
 * not fsync'd; storage_local_sync_set syncs it with the group's others and
 * renames it into place.  Its directories are made now.
 */
static void
local_put_deferred(StorageTarget *target, const char *key, const char *data, size_t len)
{
	char	   *path = key_path(target, key);
	MemoryContext tcxt = GetMemoryChunkContext(target);
	MemoryContext old;

	LocalDeferred *d;

	make_parent_dirs(target, path, true);
	if (unplaced_cxt == NULL)
		unplaced_cxt = AllocSetContextCreate(TopMemoryContext, "publish deferred puts",
											 ALLOCSET_SMALL_SIZES);
	d = add_deferred(&target->deferred_files, tcxt, write_tmp(path, data, len, false), NULL, path);
	old = MemoryContextSwitchTo(unplaced_cxt);
	unplaced = lappend(unplaced, pstrdup(d->tmp));
	MemoryContextSwitchTo(old);
}

static void
forget_unplaced(const char *tmp)
{
	ListCell   *lc;

	foreach(lc, unplaced)
	{
		if (strcmp((char *) lfirst(lc), tmp) == 0)
		{
			unplaced = foreach_delete_current(unplaced, lc);
			break;
		}
	}
	if (unplaced == NIL && unplaced_cxt != NULL)
		MemoryContextReset(unplaced_cxt);
}

/* Removes the temporary files of deferred puts that no group will place. */
void
storage_local_discard_deferred(void)
{
	ListCell   *lc;

	foreach(lc, unplaced)
		(void) unlink((char *) lfirst(lc));
	unplaced = NIL;
	if (unplaced_cxt != NULL)
		MemoryContextReset(unplaced_cxt);
}

/*
 * Removes the temporary files that a put of key left behind in a process
 * that is gone ({key}.tmp-{pid}-{random}, or {key}.tmp-{pid} as earlier
 * versions named them: a worker killed between writing and renaming, e.g.
 * in a group before its sync).  Jobs of one project and environment run
 * one at a time, so no live worker writes them.  Called by a retry
 * (job_publish.c).  unlink removes a symlink, never what it points to.
 */
static void
local_remove_stale(StorageTarget *target, const char *key)
{
	char	   *path = key_path(target, key);
	char	   *dir = parent_dir(path);
	char	   *prefix = psprintf("%s.tmp-", strrchr(path, '/') + 1);
	size_t		n = strlen(prefix);
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;

	if (d == NULL)
		return;					/* no directory yet: nothing left */
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		char	   *end;
		long		pid;

		if (strncmp(de->d_name, prefix, n) != 0)
			continue;
		pid = strtol(de->d_name + n, &end, 10);
		if (end == de->d_name + n ||
			(*end != '\0' &&
			 (*end != '-' || strlen(end + 1) != 16 || strspn(end + 1, "0123456789abcdef") != 16)) ||
			pid <= 0 || pid == MyProcPid ||
			kill((pid_t) pid, 0) == 0 || errno != ESRCH)
			continue;
		(void) unlink(psprintf("%s/%s", dir, de->d_name));
	}
	FreeDir(d);
}

/* Is path a deferred put of the target's? */
static bool
is_deferred_put(StorageTarget *target, const char *path)
{
	ListCell   *lc;

	foreach(lc, target->deferred_files)
	{
		LocalDeferred *d = lfirst(lc);

		if (d->tmp != NULL && strcmp(d->path, path) == 0)
			return true;
	}
	return false;
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
	if (is_deferred_put(target, src))
	{
		/* src is not in place yet: linked after it, at the group's sync */
		(void) add_deferred(&target->deferred_files, GetMemoryChunkContext(target), NULL, src, dst);
		return true;
	}
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

/* Appends a copy of s (in the current context) to list unless it is there. */
static List *
append_unique(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (strcmp((char *) lfirst(lc), s) == 0)
			return list;
	}
	return lappend(list, pstrdup(s));
}

/*
 * Hands what local_sync would do to set (in mcxt), instead of doing it:
 * the directories to fsync, merged with those of the other jobs of a group
 * (a directory that several jobs changed is synced once), or the target's
 * root when its file system is to be syncfs'd.  The target is left as
 * synced.
 */
static void
local_defer_sync(StorageTarget *target, StorageSyncSet *set, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	ListCell   *lc;

	if (target->unsynced)
		set->roots = append_unique(set->roots, target->root);
	else
	{
		foreach(lc, target->unsynced_dirs)
			set->dirs = append_unique(set->dirs, (char *) lfirst(lc));
	}
	foreach(lc, target->deferred_files)
	{
		LocalDeferred *d = lfirst(lc);

		(void) add_deferred(&set->files, mcxt, d->tmp, d->src, d->path);
		if (d->tmp != NULL)
			forget_unplaced(d->tmp);
	}
	MemoryContextSwitchTo(old);
	list_free_deep(target->unsynced_dirs);
	target->unsynced_dirs = NIL;
	target->unsynced = false;
	target->deferred_files = NIL;	/* in the target's context, freed with it */
}

/* The file systems a group's sync pass has synced, one syncfs each. */
typedef struct SyncedFileSystems
{
	dev_t		dev[8];
	int			n;
} SyncedFileSystems;

/* Is path on a file system synced already?  false when stat fails. */
static bool
fs_synced(SyncedFileSystems *fs, const char *path, dev_t *dev)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return false;
	*dev = st.st_dev;
	for (int i = 0; i < fs->n; i++)
		if (fs->dev[i] == st.st_dev)
			return true;
	return false;
}

/* A syncfs of path's file system, unless fs says it was made already. */
static void
syncfs_once(SyncedFileSystems *fs, const char *path)
{
	dev_t		dev = 0;

	if (fs_synced(fs, path, &dev))
		return;
	sync_dir(path, true);
	if (dev != 0 && fs->n < lengthof(fs->dev))
		fs->dev[fs->n++] = dev;
}

/* Removes the temporary files of the deferred puts from the cell at lc on. */
static void
unlink_deferred_from(List *files, int from)
{
	for (int i = from; i < list_length(files); i++)
	{
		LocalDeferred *d = list_nth(files, i);

		if (d->tmp != NULL)
			(void) unlink(d->tmp);
	}
}

/*
 * The deferred puts and links of a group: the data of every temporary file
 * synced (one syncfs per file system), then each renamed into place, in
 * order, and each link made (after the put it links to): release.json
 * switched only once its versioned copy's data is durable.  The
 * directories whose entries changed join set->dirs.  On a failure the
 * temporary files not yet renamed are removed.
 */
static void
place_deferred_files(StorageSyncSet *set)
{
	SyncedFileSystems data = {{0}, 0};
	volatile int placed = 0;
	ListCell   *lc;

	PG_TRY();
	{
		foreach(lc, set->files)
		{
			LocalDeferred *d = lfirst(lc);

			if (d->tmp != NULL)
				syncfs_once(&data, d->tmp);
		}
		foreach(lc, set->files)
		{
			LocalDeferred *d = lfirst(lc);

			if (d->tmp != NULL)
			{
				if (rename(d->tmp, d->path) != 0)
					fail_write(-1, d->tmp, d->path);
			}
			else
			{
				char	   *tmp;

				if (!link_tmp(d->src, d->path, &tmp))
					ereport(ERROR,
							(errcode_for_file_access(),
							 errmsg("could not write \"%s\": %m", d->path)));
				if (rename(tmp, d->path) != 0)
					fail_write(-1, tmp, d->path);
				(void) unlink(tmp);
			}
			set->dirs = append_unique(set->dirs, parent_dir(d->path));
			placed++;
		}
	}
	PG_CATCH();
	{
		unlink_deferred_from(set->files, placed);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Makes every sync deferred to set: a syncfs of each root's file system,
 * then an fsync of each directory on none of those; past
 * LOCAL_GROUP_MAX_DIRS directories, or after deferred puts, a syncfs of
 * their file system instead (one per file system).  Empties set.
 */
void
storage_local_sync_set(StorageSyncSet *set)
{
	SyncedFileSystems names = {{0}, 0};
	ListCell   *lc;
	bool		many;

	if (set->files != NIL)
		place_deferred_files(set);
	/* after the data's syncfs, the names': one more syncfs is as cheap as two fsyncs */
	many = list_length(set->dirs) > LOCAL_GROUP_MAX_DIRS || set->files != NIL;

	foreach(lc, set->roots)
		syncfs_once(&names, (char *) lfirst(lc));
	foreach(lc, set->dirs)
	{
		char	   *dir = lfirst(lc);
		dev_t		dev;

		if (many)
			syncfs_once(&names, dir);
		else if (!fs_synced(&names, dir, &dev))
			sync_dir(dir, false);
	}
	list_free_deep(set->dirs);
	list_free_deep(set->roots);
	set->dirs = NIL;
	set->roots = NIL;
	set->files = NIL;			/* in the set's context */
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
	.put_deferred = local_put_deferred,
	.defer_sync = local_defer_sync,
	.remove_stale = local_remove_stale,
};
