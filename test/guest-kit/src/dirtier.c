/*
 * motus-dirtier: dirties guest memory at a set rate, so migration tests can put
 * a known load on pre-copy convergence.
 *
 * Usage: motus-dirtier [-w] [-m <marker>] <rate MiB/s> <working set MiB> [<on ms> <off ms>]
 *
 * With -m, every page of the working set starts with the marker (letters, digits,
 * '-' and '_', at most 64) and every dirtying write puts it back, so each page a
 * migration sends carries it: a capture of the stream shows it when the stream is
 * plaintext, and must not when it is encrypted.
 *
 * With -w first, it rewrites each page whole with fresh pseudo-random bytes instead
 * of one word (a page cache refill, a compaction): re-sent pages then do not
 * delta-compress, which is what makes xbzrle useless.
 *
 * With <on ms> <off ms> it is bursty: it dirties at the rate for <on ms>, then
 * rests for <off ms>, and again (a batch job, a cache flush); without, steadily.
 *
 * It maps a working set, fills it with pseudo-random bytes, prints
 *   MOTUS-DIRTIER rate=<MiB/s> ws=<MiB>
 * once, then forever writes one 8-byte word into each 4 KiB page in turn, at
 * rate * 256 pages per second, paced in 10 ms slices. One write per page is all
 * it takes for the hypervisor's dirty log to resend the whole page, so the rate
 * is the rate of dirtied pages, in MiB/s of pages. When the rate exceeds the
 * working set per second, pages are dirtied again before they could be sent:
 * the distinct dirty memory per second is then capped at the working set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "serial-line.h"

#define PAGE 4096ULL
#define SLICE_NS 10000000LL
#define MAX_MIB (1UL << 20)

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len <= 0)
        return;
    if ((size_t)len >= sizeof line)
        len = sizeof line - 1;
    /* One write() per line: the console is shared with the heartbeat. */
    write_line(line, (size_t)len);
}

static int parse_mib(const char *text, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > MAX_MIB)
        return -1;
    *out = v;
    return 0;
}

/* xorshift64: cheap bytes that zero-page detection and compression cannot shrink. */
static inline uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    unsigned long rate_mib, ws_mib, on_ms = 0, off_ms = 0;
    int whole = 0;
    if (argc > 1 && strcmp(argv[1], "-w") == 0) {
        whole = 1;
        argv++;
        argc--;
    }
    const char *marker = NULL;
    size_t marker_len = 0;
    if (argc > 2 && strcmp(argv[1], "-m") == 0) {
        marker = argv[2];
        marker_len = strlen(marker);
        argv += 2;
        argc -= 2;
        if (marker_len == 0 || marker_len > 64 || strspn(marker, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != marker_len) {
            say("MOTUS-ERROR workload=dirty reason=marker-must-be-1-to-64-letters-digits-dash-underscore\n");
            return 2;
        }
    }
    if ((argc != 3 && argc != 5) || parse_mib(argv[1], &rate_mib) != 0 || parse_mib(argv[2], &ws_mib) != 0 ||
        (argc == 5 && (parse_mib(argv[3], &on_ms) != 0 || parse_mib(argv[4], &off_ms) != 0))) {
        say("MOTUS-ERROR workload=dirty reason=usage:motus-dirtier_<rate_MiB/s>_<working_set_MiB>_[<on_ms>_<off_ms>](all>0)\n");
        return 2;
    }

    /*
     * Refuse a working set the guest cannot hold rather than letting the OOM
     * killer pick a victim later, which would silently change the load a test
     * thinks it applied.
     */
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        unsigned long long free_mib = (unsigned long long)si.freeram * si.mem_unit >> 20;
        if (ws_mib > free_mib * 9 / 10) {
            say("MOTUS-ERROR workload=dirty reason=working-set-%luMiB-exceeds-free-memory-%lluMiB\n", ws_mib, free_mib);
            return 1;
        }
    }

    size_t bytes = (size_t)ws_mib << 20;
    uint8_t *ws = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (ws == MAP_FAILED) {
        say("MOTUS-ERROR workload=dirty reason=mmap-%luMiB-failed:%s\n", ws_mib, strerror(errno));
        return 1;
    }

    uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)now_ns();
    for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
        ((uint64_t *)ws)[i] = next_random(&seed);
    if (marker)
        for (size_t p = 0; p < bytes / PAGE; p++)
            memcpy(ws + p * PAGE, marker, marker_len);

    if (on_ms != 0)
        say("MOTUS-DIRTIER rate=%lu ws=%lu burst=%lu/%lu%s\n", rate_mib, ws_mib, on_ms, off_ms, whole ? " whole" : "");
    else
        say("MOTUS-DIRTIER rate=%lu ws=%lu%s\n", rate_mib, ws_mib, whole ? " whole" : "");
    const long long cycle_ns = (long long)(on_ms + off_ms) * 1000000LL;

    const unsigned long long pages = bytes / PAGE;
    const unsigned long long pages_per_sec = (unsigned long long)rate_mib * (1ULL << 20) / PAGE;
    const long long start = now_ns();
    long long deadline = start;
    unsigned long long done = 0, page = 0, pass = 0;

    for (;;) {
        deadline += SLICE_NS;
        struct timespec t = { .tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
            ;

        long long now = now_ns();
        if (cycle_ns != 0 && (now - start) % cycle_ns >= (long long)on_ms * 1000000LL) {
            /* Resting: nothing is owed for this time, so the next burst starts at the rate, not with a backlog. */
            done = (unsigned long long)((__int128)pages_per_sec * (now - start) / 1000000000LL);
            continue;
        }
        unsigned long long due = (unsigned long long)((__int128)pages_per_sec * (now - start) / 1000000000LL);
        unsigned long long todo = due - done;
        /*
         * After a stall (vCPU starved, guest paused) the backlog is dropped
         * beyond one second's worth, so the load never spikes above what was
         * asked for in any second.
         */
        if (todo > pages_per_sec) {
            done = due - pages_per_sec;
            todo = pages_per_sec;
        }
        if (deadline < now - 1000000000LL)
            deadline = now;

        for (unsigned long long i = 0; i < todo; i++) {
            if (whole) {
                volatile uint64_t *words = (volatile uint64_t *)(ws + page * PAGE);
                for (size_t w = 0; w < PAGE / sizeof(uint64_t); w++)
                    words[w] = next_random(&seed);
            } else {
                /* A different word each pass, so every pass changes the page's bytes. */
                volatile uint64_t *word = (volatile uint64_t *)(ws + page * PAGE) + (pass % (PAGE / sizeof(uint64_t)));
                *word = next_random(&seed);
            }
            /* The write may have landed on the marker: put it back. */
            if (marker)
                memcpy(ws + page * PAGE, marker, marker_len);
            if (++page == pages) {
                page = 0;
                pass++;
            }
        }
        done += todo;
    }
}
