/*
 * json.h: a small streaming JSON writer for the tools' --json output.
 * Keys and commas are handled by the writer; strings are escaped.
 */
#ifndef APPEAL_JSON_H
#define APPEAL_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { JSON_DEPTH_MAX = 16 };

struct json {
    FILE *out;
    int depth;
    bool first[JSON_DEPTH_MAX];
};

void json_init(struct json *j, FILE *out);
void json_obj(struct json *j, const char *key); /* key NULL inside arrays / top */
void json_arr(struct json *j, const char *key);
void json_end_obj(struct json *j);
void json_end_arr(struct json *j);
void json_str(struct json *j, const char *key, const char *v);
void json_int(struct json *j, const char *key, int64_t v);
void json_uint(struct json *j, const char *key, uint64_t v);
void json_num(struct json *j, const char *key, double v);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);
void json_hex(struct json *j, const char *key, const uint8_t *b, size_t n);
/* Ends the document with a newline. */
void json_done(struct json *j);

#endif
