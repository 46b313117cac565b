/*
 * crashlog: records, in order, every write and every sync a process makes
 * to an LMDB data file (a path ending in /db/data.mdb), for the crash-state
 * test (tests/integration/test_crash_states.py, docs/durability.md).
 * Preloaded (LD_PRELOAD=libcrashlog.so) ahead of the sanitizers' runtime.
 *
 * APPEAL_CRASHLOG=FILE: the op log, one line per operation, appended with
 * O_APPEND (so another process may append its own marker lines between):
 *   W <offset> <length> <at> <dsync>   a write; its bytes are in FILE.bytes
 *                                      at offset <at>; dsync=1 if the file
 *                                      was opened O_DSYNC/O_SYNC (durable
 *                                      when the call returns)
 *   S <call>                           a sync of the file that returned 0
 *   N <call>                           a sync made a no-op (see below)
 *   T <length>                         ftruncate
 *   X <call>                           a call the test cannot model
 *                                      (msync, sync_file_range on it)
 * APPEAL_CRASHLOG_NOSYNC=1: fsync/fdatasync of the file do nothing (logged
 * as N) and O_DSYNC writes are logged dsync=0: the node then believes what
 * is only in the page cache is on disk, which the test must catch.
 *
 * Not modelled: directory operations (the node's data file exists before
 * the run), other files (lock.mdb is rebuilt by LMDB on open; other files
 * are written with util_write_file, synced).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -2, bytes_fd = -1;
static bool nosync;
static off_t bytes_at;

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);
typedef int (*trunc_fn)(int, off_t);
typedef int (*msync_fn)(void *, size_t, int);
typedef int (*sfr_fn)(int, off_t, off_t, unsigned);

static void *next(const char *name) {
    return dlsym(RTLD_NEXT, name);
}

/* Opens the log files once (under mu). */
static void setup(void) {
    if (log_fd != -2) {
        return;
    }
    log_fd = -1;
    const char *path = getenv("APPEAL_CRASHLOG");
    if (path == NULL) {
        return;
    }
    char bytes[4200];
    snprintf(bytes, sizeof bytes, "%s.bytes", path);
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    bytes_fd = open(bytes, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *ns = getenv("APPEAL_CRASHLOG_NOSYNC");
    nosync = ns != NULL && strcmp(ns, "1") == 0;
}

/* True if fd is a watched data file. */
static bool watched(int fd) {
    char link[64], target[4200];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) {
        return false;
    }
    target[n] = '\0';
    size_t len = (size_t)n;
    static const char tail[] = "/db/data.mdb";
    return len >= sizeof tail - 1 && strcmp(target + len - (sizeof tail - 1), tail) == 0;
}

static void out_line(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    write_fn w = (write_fn)next("write");
    if (n > 0 && w(log_fd, line, (size_t)n) != n) {
        abort(); /* a log with a hole would make the test unsound */
    }
}

/* Logs a write of `len` bytes at `off` that reached the file. */
static void log_write(int fd, const struct iovec *iov, int iovcnt, off_t off, size_t len) {
    pwrite_fn pw = (pwrite_fn)next("pwrite");
    off_t at = bytes_at;
    size_t left = len;
    for (int i = 0; i < iovcnt && left > 0; i++) {
        size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (pw(bytes_fd, iov[i].iov_base, n, bytes_at) != (ssize_t)n) {
            abort();
        }
        bytes_at += (off_t)n;
        left -= n;
    }
    int fl = fcntl(fd, F_GETFL);
    int dsync = !nosync && fl >= 0 && (fl & (O_DSYNC | O_SYNC)) != 0;
    out_line("W %lld %zu %lld %d\n", (long long)off, len, (long long)at, dsync);
}

static ssize_t done_write(int fd, const struct iovec *iov, int iovcnt, off_t off, ssize_t r) {
    if (r > 0) {
        pthread_mutex_lock(&mu);
        setup();
        if (log_fd >= 0 && watched(fd)) {
            log_write(fd, iov, iovcnt, off, (size_t)r);
        }
        pthread_mutex_unlock(&mu);
    }
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    ssize_t r = ((pwrite_fn)next("pwrite"))(fd, buf, len, off);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return done_write(fd, &v, 1, off, r);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    ssize_t r = ((pwrite_fn)next("pwrite64"))(fd, buf, len, off);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return done_write(fd, &v, 1, off, r);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    ssize_t r = ((pwritev_fn)next("pwritev"))(fd, iov, iovcnt, off);
    return done_write(fd, iov, iovcnt, off, r);
}

ssize_t write(int fd, const void *buf, size_t len) {
    off_t off = lseek(fd, 0, SEEK_CUR);
    ssize_t r = ((write_fn)next("write"))(fd, buf, len);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return off < 0 ? r : done_write(fd, &v, 1, off, r);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    off_t off = lseek(fd, 0, SEEK_CUR);
    ssize_t r = ((writev_fn)next("writev"))(fd, iov, iovcnt);
    return off < 0 ? r : done_write(fd, iov, iovcnt, off, r);
}

/* A sync of a watched file: done (S) or, with NOSYNC, skipped (N). */
static int do_sync(int fd, const char *name) {
    pthread_mutex_lock(&mu);
    setup();
    bool w = log_fd >= 0 && watched(fd);
    pthread_mutex_unlock(&mu);
    if (w && nosync) {
        pthread_mutex_lock(&mu);
        out_line("N %s\n", name);
        pthread_mutex_unlock(&mu);
        return 0;
    }
    int r = ((sync_fn)next(name))(fd);
    if (w && r == 0) {
        /* Logged after it returned: whatever follows in the log (a
         * client's acknowledgement marker) comes after this sync. */
        pthread_mutex_lock(&mu);
        out_line("S %s\n", name);
        pthread_mutex_unlock(&mu);
    }
    return r;
}

int fsync(int fd) {
    return do_sync(fd, "fsync");
}

int fdatasync(int fd) {
    return do_sync(fd, "fdatasync");
}

int ftruncate(int fd, off_t len) {
    int r = ((trunc_fn)next("ftruncate"))(fd, len);
    pthread_mutex_lock(&mu);
    setup();
    if (r == 0 && log_fd >= 0 && watched(fd)) {
        out_line("T %lld\n", (long long)len);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

int ftruncate64(int fd, off_t len) {
    return ftruncate(fd, len);
}

/* The node maps the file read-only (no MDB_WRITEMAP): an msync or a
 * sync_file_range on it would mean a path this test does not model. */
int msync(void *addr, size_t len, int flags) {
    pthread_mutex_lock(&mu);
    setup();
    if (log_fd >= 0) {
        out_line("X msync\n");
    }
    pthread_mutex_unlock(&mu);
    return ((msync_fn)next("msync"))(addr, len, flags);
}

int sync_file_range(int fd, off_t off, off_t len, unsigned flags) {
    pthread_mutex_lock(&mu);
    setup();
    if (log_fd >= 0 && watched(fd)) {
        out_line("X sync_file_range\n");
    }
    pthread_mutex_unlock(&mu);
    return ((sfr_fn)next("sync_file_range"))(fd, off, len, flags);
}
