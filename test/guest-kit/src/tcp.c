/*
 * motus-tcp: a TCP echo service and a client that holds one connection to it,
 * so a test can see whether a connection survives a migration.
 *
 *   motus-tcp server <port>
 *   motus-tcp client <ipv4> <port> <period_ms>
 *
 * The client sends an 8-byte big-endian sequence number every period and checks
 * that the echoes come back in order, each exactly once: a lost, duplicated or
 * reordered byte is an error, not a statistic. Lines (one write() each):
 *
 *   MOTUS-TCP-LISTEN port=<port>
 *   MOTUS-TCP-ACCEPT peer=<ipv4>:<port>
 *   MOTUS-TCP-CONNECTED peer=<ipv4>:<port> attempt=<n>
 *   MOTUS-TCP-STAT sent=<n> echoed=<n> max_gap_ms=<ms>        (every second)
 *   MOTUS-TCP-GAP ms=<ms> echoed=<n>                          (an echo came >100 ms late)
 *   MOTUS-TCP-ERROR reason=<word> echoed=<n>
 *
 * The gap is measured on the client's clock, between two consecutive echoes:
 * what a user of the service sees while the server is paused or moved.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serial-line.h"

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 3)
        n = (int)sizeof buf - 3;
    buf[n++] = '\n';
    write_line(buf, (size_t)n);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void echo(int fd)
{
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || write_all(fd, buf, (size_t)n) < 0)
            return;
    }
}

static int server(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0) {
        say("MOTUS-TCP-ERROR reason=listen-failed-errno-%d echoed=0", errno);
        return 1;
    }
    signal(SIGCHLD, SIG_IGN);
    say("MOTUS-TCP-LISTEN port=%d", port);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept(s, (struct sockaddr *)&peer, &len);
        if (c < 0)
            continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        say("MOTUS-TCP-ACCEPT peer=%s:%d", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
        if (fork() == 0) {
            close(s);
            echo(c);
            _exit(0);
        }
        close(c);
    }
}

static int connect_to(const struct sockaddr_in *a)
{
    for (int attempt = 1;; attempt++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0 && connect(s, (const struct sockaddr *)a, sizeof *a) == 0) {
            int one = 1;
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            say("MOTUS-TCP-CONNECTED peer=%s:%d attempt=%d", inet_ntoa(a->sin_addr), ntohs(a->sin_port), attempt);
            return s;
        }
        if (s >= 0)
            close(s);
        usleep(200000);
    }
}

static int client(const char *ip, int port, int period)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        say("MOTUS-TCP-ERROR reason=bad-address echoed=0");
        return 1;
    }
    int s = connect_to(&a);
    uint64_t sent = 0, echoed = 0;
    long long max_gap = 0, last_echo = now_ms(), next_send = now_ms(), next_stat = now_ms() + 1000;
    unsigned char in[8];
    size_t have = 0;
    for (;;) {
        long long now = now_ms();
        if (now >= next_send) {
            unsigned char out[8];
            for (int i = 0; i < 8; i++)
                out[i] = (unsigned char)(sent >> (56 - 8 * i));
            if (write_all(s, out, sizeof out) < 0) {
                say("MOTUS-TCP-ERROR reason=write-errno-%d echoed=%llu", errno, (unsigned long long)echoed);
                return 1;
            }
            sent++;
            next_send += period;
            if (next_send < now)
                next_send = now + period;
        }
        if (now >= next_stat) {
            say("MOTUS-TCP-STAT sent=%llu echoed=%llu max_gap_ms=%lld", (unsigned long long)sent, (unsigned long long)echoed, max_gap);
            next_stat += 1000;
        }
        long long wait = next_send < next_stat ? next_send - now : next_stat - now;
        struct pollfd p = { .fd = s, .events = POLLIN };
        int r = poll(&p, 1, wait < 0 ? 0 : (int)wait);
        if (r <= 0)
            continue;
        ssize_t n = read(s, in + have, sizeof in - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            say("MOTUS-TCP-ERROR reason=%s echoed=%llu", n == 0 ? "closed-by-peer" : "read-failed", (unsigned long long)echoed);
            return 1;
        }
        have += (size_t)n;
        if (have < sizeof in)
            continue;
        have = 0;
        uint64_t got = 0;
        for (int i = 0; i < 8; i++)
            got = got << 8 | in[i];
        if (got != echoed) {
            say("MOTUS-TCP-ERROR reason=out-of-sequence-expected-%llu-got-%llu echoed=%llu", (unsigned long long)echoed, (unsigned long long)got,
                (unsigned long long)echoed);
            return 1;
        }
        echoed++;
        now = now_ms();
        long long gap = now - last_echo;
        last_echo = now;
        if (echoed > 1 && gap > max_gap)
            max_gap = gap;
        if (echoed > 1 && gap > 100)
            say("MOTUS-TCP-GAP ms=%lld echoed=%llu", gap, (unsigned long long)echoed);
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return server(atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(argv[2], atoi(argv[3]), atoi(argv[4]) > 0 ? atoi(argv[4]) : 20);
    say("MOTUS-TCP-ERROR reason=usage echoed=0");
    return 2;
}
