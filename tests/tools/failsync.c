/*
 * failsync: makes a sync of the node's LMDB data file fail with EIO, for
 * tests of what the node does then (docs/operations.md "A failed sync").
 * Preloaded (LD_PRELOAD=libfailsync.so) in front of libc; the real
 * fdatasync/fsync run otherwise.
 *
 * $APPEAL_FAILSYNC_FILE names a trigger file. While it does not exist
 * every sync passes. When it exists and holds a number K, the next K syncs
 * of a file named data.mdb pass (the file is rewritten with K-1) and the
 * one after fails with EIO and removes the file: one failure, as Linux
 * reports a writeback error once and then lets a retried fsync succeed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PATH_BYTES_MAX = 4096 };

static int is_data_file(int fd) {
    char link[64], path[PATH_BYTES_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = '\0';
    size_t len = (size_t)n;
    return len >= 9 && strcmp(path + len - 9, "/data.mdb") == 0;
}

/* 1: this sync must fail. */
static int fail_now(int fd) {
    const char *trigger = getenv("APPEAL_FAILSYNC_FILE");
    if (trigger == NULL || !is_data_file(fd)) {
        return 0;
    }
    FILE *f = fopen(trigger, "r");
    if (f == NULL) {
        return 0;
    }
    long k = 0;
    if (fscanf(f, "%ld", &k) != 1) {
        k = 0;
    }
    fclose(f);
    if (k > 0) {
        f = fopen(trigger, "w");
        if (f != NULL) {
            fprintf(f, "%ld\n", k - 1);
            fclose(f);
        }
        return 0;
    }
    unlink(trigger);
    return 1;
}

int fdatasync(int fd) {
    if (fail_now(fd)) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd) {
    if (fail_now(fd)) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
