/*
 * fsync_cost.c: what the file:// target's syncs cost on this disk, for
 * bench/fsync_cost.sh.  Runs N times one of these sequences in DIR:
 *
 *   file      write a new 6 kB file, fsync it
 *   dir       fsync a directory that did not change
 *   publish   one publish's calls, as storage_local.c makes them:
 *             directories made, releases/v1.json written to a temporary
 *             name, fsync'd and renamed, release.json a hard link to it
 *             (linked to a temporary name, renamed), then one fsync per
 *             changed directory
 *
 * With a fourth argument "repeat", publish publishes the same project
 * each time (its directories exist); otherwise a new project each time.
 * Prints the mean milliseconds per iteration.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char buf[6000];

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void
fsync_path(const char *p)
{
	int			fd = open(p, O_RDONLY);

	if (fd < 0 || fsync(fd) != 0)
	{
		perror(p);
		exit(1);
	}
	close(fd);
}

/* writes path through a temporary file, fsync'd before the rename */
static void
put(const char *path)
{
	char		tmp[1024];
	int			fd;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t) sizeof buf || fsync(fd) != 0)
	{
		perror(tmp);
		exit(1);
	}
	close(fd);
	if (rename(tmp, path) != 0)
	{
		perror(path);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	const char *root;
	const char *mode;
	int			n;
	int			repeat;
	double		t0;

	if (argc < 4)
	{
		fprintf(stderr, "usage: %s DIR N file|dir|publish [repeat]\n", argv[0]);
		return 2;
	}
	root = argv[1];
	n = atoi(argv[2]);
	mode = argv[3];
	repeat = argc > 4;
	memset(buf, 'x', sizeof buf);
	t0 = now_ms();
	for (int i = 0; i < n; i++)
	{
		char		slug[512],
					rel[600],
					v[700],
					live[700],
					tmp[800];

		snprintf(slug, sizeof slug, "%s/tp-%d", root, repeat ? 0 : i);
		snprintf(rel, sizeof rel, "%s/releases", slug);
		snprintf(v, sizeof v, "%s/v1.json", rel);
		snprintf(live, sizeof live, "%s/release.json", slug);
		if (strcmp(mode, "file") == 0)
		{
			int			fd;

			snprintf(tmp, sizeof tmp, "%s/f%d", root, i);
			fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t) sizeof buf || fsync(fd) != 0)
				return 1;
			close(fd);
		}
		else if (strcmp(mode, "dir") == 0)
			fsync_path(root);
		else if (strcmp(mode, "publish") == 0)
		{
			int			new_slug = mkdir(slug, 0755) == 0;

			(void) mkdir(rel, 0755);
			put(v);
			snprintf(tmp, sizeof tmp, "%s.tmp", live);
			(void) unlink(tmp);
			if (link(v, tmp) != 0 || rename(tmp, live) != 0)
				return 1;
			if (new_slug)
				fsync_path(root);
			fsync_path(slug);
			fsync_path(rel);
		}
		else
		{
			fprintf(stderr, "unknown sequence %s\n", mode);
			return 2;
		}
	}
	printf("%.3f\n", (now_ms() - t0) / n);
	return 0;
}
