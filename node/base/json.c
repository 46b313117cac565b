#include "json.h"

#include <inttypes.h>
#include <math.h>

void json_init(struct json *j, FILE *out) {
    j->out = out;
    j->depth = 0;
    j->first[0] = true;
}

static void escape(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != 0; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20) {
                fprintf(f, "\\u%04x", *p);
            } else {
                fputc(*p, f);
            }
        }
    }
    fputc('"', f);
}

static void key(struct json *j, const char *k) {
    if (!j->first[j->depth]) {
        fputc(',', j->out);
    }
    j->first[j->depth] = false;
    if (k != NULL) {
        escape(j->out, k);
        fputc(':', j->out);
    }
}

static void open(struct json *j, const char *k, char c) {
    key(j, k);
    fputc(c, j->out);
    if (j->depth < JSON_DEPTH_MAX - 1) {
        j->depth++;
    }
    j->first[j->depth] = true;
}

void json_obj(struct json *j, const char *k) {
    open(j, k, '{');
}

void json_arr(struct json *j, const char *k) {
    open(j, k, '[');
}

void json_end_obj(struct json *j) {
    fputc('}', j->out);
    if (j->depth > 0) {
        j->depth--;
    }
}

void json_end_arr(struct json *j) {
    fputc(']', j->out);
    if (j->depth > 0) {
        j->depth--;
    }
}

void json_str(struct json *j, const char *k, const char *v) {
    key(j, k);
    escape(j->out, v != NULL ? v : "");
}

void json_int(struct json *j, const char *k, int64_t v) {
    key(j, k);
    fprintf(j->out, "%" PRId64, v);
}

void json_uint(struct json *j, const char *k, uint64_t v) {
    key(j, k);
    fprintf(j->out, "%" PRIu64, v);
}

void json_num(struct json *j, const char *k, double v) {
    key(j, k);
    if (isfinite(v)) {
        fprintf(j->out, "%.6g", v);
    } else {
        fputs("null", j->out);
    }
}

void json_bool(struct json *j, const char *k, bool v) {
    key(j, k);
    fputs(v ? "true" : "false", j->out);
}

void json_null(struct json *j, const char *k) {
    key(j, k);
    fputs("null", j->out);
}

void json_hex(struct json *j, const char *k, const uint8_t *b, size_t n) {
    key(j, k);
    fputc('"', j->out);
    for (size_t i = 0; i < n; i++) {
        fprintf(j->out, "%02x", b[i]);
    }
    fputc('"', j->out);
}

void json_done(struct json *j) {
    fputc('\n', j->out);
    fflush(j->out);
}
