/*
 * motus-heartbeat: the guest's proof of life on the serial console.
 *
 *   MOTUS-HB seq=<n> uptime=<seconds> boot=<boot_id>
 *
 * Migration tests read these lines on both sides of a move: seq must continue
 * without a reset, boot must not change and uptime must keep growing. Each line
 * is formatted into one buffer and sent with one write(): the tty layer holds its
 * write lock for a whole write(), so another process's output can never land in
 * the middle of a heartbeat.
 *
 * Usage: motus-heartbeat <period_ms>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serial-line.h"

/* Reads a small /proc file into buf and cuts it at the first whitespace. */
static int read_first_word(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do {
        n = read(fd, buf, size - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    buf[strcspn(buf, " \t\n")] = '\0';
    return buf[0] ? 0 : -1;
}

static void add_ns(struct timespec *t, long long ns)
{
    long long total = (long long)t->tv_nsec + ns;
    t->tv_sec += total / 1000000000LL;
    t->tv_nsec = total % 1000000000LL;
}

static long long diff_ns(const struct timespec *a, const struct timespec *b)
{
    return (a->tv_sec - b->tv_sec) * 1000000000LL + (a->tv_nsec - b->tv_nsec);
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long period_ms = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || *end != '\0' || period_ms <= 0 || period_ms > 60000) {
        static const char usage[] = "MOTUS-ERROR workload=heartbeat reason=usage:motus-heartbeat_<period_ms>\n";
        write_line(usage, sizeof usage - 1);
        return 2;
    }
    const long long period_ns = period_ms * 1000000LL;

    char boot[64];
    if (read_first_word("/proc/sys/kernel/random/boot_id", boot, sizeof boot) != 0) {
        static const char msg[] = "MOTUS-ERROR workload=heartbeat reason=cannot-read-boot_id\n";
        write_line(msg, sizeof msg - 1);
        return 1;
    }

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (unsigned long long seq = 1;; seq++) {
        char uptime[32];
        if (read_first_word("/proc/uptime", uptime, sizeof uptime) != 0)
            strcpy(uptime, "unknown");
        char line[160];
        int len = snprintf(line, sizeof line, "MOTUS-HB seq=%llu uptime=%s boot=%s\n", seq, uptime, boot);
        if (len > 0 && (size_t)len < sizeof line && write_line(line, (size_t)len) != 0)
            return 1;

        /*
         * Absolute deadlines keep the period from drifting by the time spent
         * formatting. If the guest fell more than a period behind (a long stall
         * of the vCPU), the schedule restarts from now instead of emitting a
         * burst of catch-up lines that would look like a clock jump to tests.
         */
        add_ns(&next, period_ns);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (diff_ns(&now, &next) > period_ns) {
            next = now;
            add_ns(&next, period_ns);
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
    }
}
