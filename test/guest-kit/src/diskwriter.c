/*
 * motus-diskwriter: numbered records on a block device, each made durable before
 * it is reported, so a test can check after any number of migrations that every
 * record the guest saw acknowledged is on the storage.
 *
 *   MOTUS-DISKWRITER dev=<device> records=<capacity>
 *   MOTUS-DISK seq=<n>
 *
 * Record n (from 1) fills the 4 KiB block n of the device: the magic "MOTUSREC",
 * n as a little-endian u64, the boot id, then bytes derived from n, so a reader
 * can tell a record from a stale or torn block. The device is opened with
 * O_DIRECT | O_SYNC and each write is followed by fdatasync(): the seq line is
 * printed only once the write and the flush (virtio-blk FLUSH, an NFS COMMIT
 * behind QEMU) were both acknowledged. Block 0 is left alone.
 *
 * Usage: motus-diskwriter <device> <interval_ms>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#include "serial-line.h"

#define RECORD_SIZE 4096

static void say(const char *fmt, const char *a, unsigned long long b)
{
    char line[256];
    int len = snprintf(line, sizeof line, fmt, a, b);
    if (len > 0)
        write_line(line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
}

static void fail(const char *reason)
{
    char line[128];
    int len = snprintf(line, sizeof line, "MOTUS-ERROR workload=disk reason=%s\n", reason);
    if (len > 0)
        write_line(line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
}

static void fill_record(unsigned char *block, uint64_t seq, const char *boot)
{
    memcpy(block, "MOTUSREC", 8);
    for (int i = 0; i < 8; i++)
        block[8 + i] = (unsigned char)(seq >> (8 * i));
    memset(block + 16, 0, 48);
    memcpy(block + 16, boot, strnlen(boot, 47));
    /* xorshift from seq: every byte depends on the record, so a stale block never passes. */
    uint64_t x = seq * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 64; i < RECORD_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        block[i] = (unsigned char)x;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fail("usage");
        return 2;
    }
    const char *dev = argv[1];
    long interval_ms = strtol(argv[2], NULL, 10);
    if (interval_ms < 0) {
        fail("bad-interval");
        return 2;
    }
    char boot[48] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f))
            boot[0] = '\0';
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
    }
    int fd = -1;
    /* The block driver may still be probing the device when /init starts us. */
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        fd = open(dev, O_RDWR | O_DIRECT | O_SYNC | O_CLOEXEC);
        if (fd < 0)
            usleep(100000);
    }
    if (fd < 0) {
        fail("cannot-open-device");
        return 1;
    }
    unsigned long long size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0 || size < 2 * RECORD_SIZE) {
        fail("device-too-small");
        return 1;
    }
    uint64_t capacity = size / RECORD_SIZE - 1;
    unsigned char *block;
    if (posix_memalign((void **)&block, RECORD_SIZE, RECORD_SIZE) != 0) {
        fail("out-of-memory");
        return 1;
    }
    say("MOTUS-DISKWRITER dev=%s records=%llu\n", dev, (unsigned long long)capacity);
    struct timespec pause = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
    for (uint64_t seq = 1; seq <= capacity; seq++) {
        fill_record(block, seq, boot);
        ssize_t n;
        do {
            n = pwrite(fd, block, RECORD_SIZE, (off_t)(seq * RECORD_SIZE));
        } while (n < 0 && errno == EINTR);
        if (n != RECORD_SIZE) {
            fail("write-failed");
            return 1;
        }
        if (fdatasync(fd) != 0) {
            fail("flush-failed");
            return 1;
        }
        say("MOTUS-DISK seq=%s%llu\n", "", (unsigned long long)seq);
        if (interval_ms > 0)
            nanosleep(&pause, NULL);
    }
    fail("disk-full");
    return 0;
}
