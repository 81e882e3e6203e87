/*
 * The machine's floors for bench/run, compiled by it at run time with
 * nothing but libc:
 *
 *   floor                          exit 0 at once: the cheapest exec there is
 *   floor commit DIR COUNT WRITERS durable small-file commits, COUNT in all,
 *                                  shared by WRITERS processes
 *
 * A commit is what any durable spool must do at least once per message:
 * write 2,000 octets to a temporary file, fsync it, rename it into place
 * and fsync the directory.  The commit mode prints one line,
 * "commits=N seconds=S rate=R", R in commits per second over the whole
 * run.  Each writer has its own directory under DIR, as a spool's
 * concurrent submitters would share one filesystem but not one file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One writer: n commits in dir.  Returns 0, or -1 with errno set. */
static int
writer(const char *dir, long n)
{
	char buf[2000], tmp[64], dst[64];
	int dfd, fd;
	long i;

	memset(buf, 'x', sizeof buf);
	if (chdir(dir) == -1 || (dfd = open(".", O_RDONLY | O_DIRECTORY)) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(tmp, sizeof tmp, "tmp.%ld", i);
		snprintf(dst, sizeof dst, "msg.%ld", i);
		if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1)
			return -1;
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) == -1 ||
		    close(fd) == -1 || rename(tmp, dst) == -1 || fsync(dfd) == -1)
			return -1;
	}
	return close(dfd);
}

int
main(int argc, char **argv)
{
	char sub[4096];
	long count, writers, k;
	double start, end;
	int failed = 0, st;

	if (argc == 1)
		return 0;
	if (argc != 5 || strcmp(argv[1], "commit") != 0) {
		fprintf(stderr, "usage: floor | floor commit DIR COUNT WRITERS\n");
		return 64;
	}
	count = strtol(argv[3], NULL, 10);
	writers = strtol(argv[4], NULL, 10);
	if (count < 1 || writers < 1 || writers > 256) {
		fprintf(stderr, "floor: COUNT and WRITERS (1-256) must be positive\n");
		return 64;
	}
	for (k = 0; k < writers; k++) {
		snprintf(sub, sizeof sub, "%s/w%ld", argv[2], k);
		if (mkdir(sub, 0700) == -1 && errno != EEXIST) {
			fprintf(stderr, "floor: %s: %s\n", sub, strerror(errno));
			return 73;
		}
	}
	start = now();
	for (k = 0; k < writers; k++) {
		pid_t pid = fork();

		if (pid == -1) {
			fprintf(stderr, "floor: fork: %s\n", strerror(errno));
			return 71;
		}
		if (pid == 0) {
			snprintf(sub, sizeof sub, "%s/w%ld", argv[2], k);
			if (writer(sub, count / writers) == -1) {
				fprintf(stderr, "floor: %s: %s\n", sub, strerror(errno));
				_exit(74);
			}
			_exit(0);
		}
	}
	while (wait(&st) > 0)
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	end = now();
	if (failed)
		return 74;
	count = count / writers * writers;
	printf("commits=%ld seconds=%.3f rate=%.1f\n", count, end - start, count / (end - start));
	return 0;
}
