#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "err.h"

char *util_trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

int util_parse_long(const char *s, long min, long max, long *out) {
    if (s == NULL || *s == '\0') {
        return APL_EINVAL;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return APL_EINVAL;
    }
    *out = v;
    return 0;
}

int util_parse_u64(const char *s, uint64_t *out) {
    if (s == NULL || *s < '0' || *s > '9') {
        return APL_EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return APL_EINVAL;
    }
    *out = v;
    return 0;
}

ssize_t util_read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int util_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APL_ENOTFOUND : APL_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return APL_EIO;
    }
    if ((size_t)st.st_size > max_bytes) {
        close(fd);
        return APL_ETOOBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return APL_ENOMEM;
    }
    ssize_t r = util_read_full(fd, buf, (size_t)st.st_size);
    size_t got = r < 0 ? 0 : (size_t)r;
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return APL_EIO;
    }
    buf[got] = '\0';
    *out = buf;
    if (len != NULL) {
        *len = got;
    }
    return 0;
}

int util_fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return APL_EIO;
    }
    int rc = fsync(fd) == 0 ? 0 : APL_EIO;
    close(fd);
    return rc;
}

int util_write_file(const char *path, const void *data, size_t len, unsigned mode, bool exclusive) {
    if (exclusive && access(path, F_OK) == 0) {
        return APL_EEXIST;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        return APL_EIO;
    }
    const uint8_t *p = data;
    size_t done = 0;
    int rc = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = APL_EIO;
            break;
        }
        done += (size_t)w;
    }
    if (rc == 0 && (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)) {
        rc = APL_EIO;
    }
    close(fd);
    if (rc == 0 && exclusive) {
        /* link(2) fails if the target exists: no window for a race. */
        rc = link(tmp, path) == 0 ? 0 : (errno == EEXIST ? APL_EEXIST : APL_EIO);
        unlink(tmp);
    } else if (rc == 0) {
        rc = rename(tmp, path) == 0 ? 0 : APL_EIO;
    } else {
        unlink(tmp);
    }
    return rc == 0 ? util_fsync_dir_of(path) : rc;
}

int util_mkdir(const char *path, unsigned mode) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return APL_EIO;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) {
        return APL_EIO;
    }
    return 0;
}

void util_hex(const uint8_t *in, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int util_unhex(const char *hex, uint8_t *out, size_t len) {
    if (strlen(hex) != 2 * len) {
        return APL_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return APL_EINVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

uint64_t util_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int util_copy_file(const char *from, const char *to, unsigned mode) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return errno == ENOENT ? APL_ENOTFOUND : APL_EIO;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (out < 0) {
        close(in);
        return errno == EEXIST ? APL_EEXIST : APL_EIO;
    }
    static const size_t chunk = 1u << 20;
    char *buf = malloc(chunk);
    int rc = buf != NULL ? 0 : APL_ENOMEM;
    while (rc == 0) {
        ssize_t r = read(in, buf, chunk);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rc = r < 0 ? APL_EIO : 0;
            break;
        }
        for (ssize_t done = 0; done < r && rc == 0;) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w > 0) {
                done += w;
            } else if (!(w < 0 && errno == EINTR)) {
                rc = APL_EIO;
            }
        }
    }
    if (rc == 0 && fsync(out) != 0) {
        rc = APL_EIO;
    }
    free(buf);
    close(in);
    close(out);
    if (rc != 0) {
        unlink(to);
    }
    return rc;
}

void util_csv_field(FILE *f, const char *s, bool last) {
    fputc('"', f);
    if (s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL) {
        fputc('\'', f);
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"') {
            fputc('"', f);
        }
        fputc(*p, f);
    }
    fputs(last ? "\"\r\n" : "\",", f);
}

void util_wipe_free(void *p, size_t len) {
    if (p != NULL) {
        sodium_memzero(p, len);
        free(p);
    }
}

void util_wipe(void *p, size_t len) {
    if (p != NULL) {
        sodium_memzero(p, len);
    }
}
