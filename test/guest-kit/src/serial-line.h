/*
 * Printing a line on the serial console, shared by the kit's programs. A line
 * goes out in one write() when the tty takes it whole (the tty holds its write
 * lock for a whole write(), so programs sharing the console never interleave
 * within a line); a short write or an EINTR goes on with the rest.
 */
#ifndef MOTUS_SERIAL_LINE_H
#define MOTUS_SERIAL_LINE_H

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

/* Writes all of buf to fd, going on after short writes and EINTR; -1 on an error. */
static inline int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int write_line(const char *buf, size_t len)
{
    return write_all(STDOUT_FILENO, buf, len);
}

#endif
