/*
 * sinkwait FILE COUNT TIMEOUT_S: wait until smtp-sink's counter (its -c
 * output in FILE, "sess=S quit=Q mesg=M" lines ended by CR) says COUNT
 * messages or more; exit 0 then, 1 after TIMEOUT_S seconds.  Compiled by
 * bench/run at run time with nothing but libc, like floor.c.
 *
 * One process that looks every 20 ms, at the last 64 octets of the file:
 * the shell loop it replaces forked a subshell, tail, tr and sed for each
 * look, and took 4.1 s of CPU in 5 s away from the system being measured.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The last "mesg=N" in buf[0..len), or -1. */
static long
last_count(const char *buf, size_t len)
{
	long count = -1;
	size_t i;

	for (i = 0; i + 5 <= len; i++)
		if (memcmp(buf + i, "mesg=", 5) == 0) {
			size_t j = i + 5;
			long v = 0;
			int digits = 0;
			while (j < len && buf[j] >= '0' && buf[j] <= '9' && v < 100000000L) {
				v = v * 10 + (buf[j++] - '0');
				digits++;
			}
			if (digits > 0)
				count = v;
		}
	return count;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const struct timespec pause = { 0, 20 * 1000 * 1000 };
	char buf[64];
	double deadline;
	long want;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: sinkwait FILE COUNT TIMEOUT_S\n");
		return 2;
	}
	want = strtol(argv[2], NULL, 10);
	deadline = now() + strtod(argv[3], NULL);
	if ((fd = open(argv[1], O_RDONLY)) == -1) {
		perror(argv[1]);
		return 2;
	}
	for (;;) {
		struct stat st;
		ssize_t n = 0;

		if (fstat(fd, &st) == 0) {
			off_t at = st.st_size > (off_t)sizeof buf ? st.st_size - (off_t)sizeof buf : 0;
			n = pread(fd, buf, sizeof buf, at);
		}
		if (n > 0 && last_count(buf, (size_t)n) >= want)
			return 0;
		if (now() > deadline)
			return 1;
		nanosleep(&pause, NULL);
	}
}
