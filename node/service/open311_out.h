/*
 * open311_out.h: one document written as JSON or as XML with the same
 * calls, shaped as GeoReport v2 shapes both (JSON: arrays and objects;
 * XML: the spec's element names, list items named by the caller).
 *
 * The text goes to a growing buffer (open_memstream). Strings are escaped
 * for their format; characters XML 1.0 cannot hold (controls other than
 * tab, LF, CR) are written as U+FFFD. Nesting is at most OUT_DEPTH_MAX.
 */
#ifndef APPEAL_OPEN311_OUT_H
#define APPEAL_OPEN311_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "httpd.h"

enum { OUT_DEPTH_MAX = 8 };

struct out {
    FILE *f;
    char *buf;
    size_t len;
    bool xml;
    int depth;
    bool first[OUT_DEPTH_MAX + 1];
};

/* APL_ENOMEM if the buffer cannot be made. */
int out_begin(struct out *o, bool xml);
/* A list: JSON `"key":[` (or `[` when key is NULL), XML `<xml_name>`. */
void out_list(struct out *o, const char *key, const char *xml_name);
void out_list_end(struct out *o, const char *xml_name);
/* An object: JSON `"key":{` (or `{`), XML `<xml_name>`. */
void out_obj(struct out *o, const char *key, const char *xml_name);
void out_obj_end(struct out *o, const char *xml_name);
/* A field; a NULL string is JSON null and an empty XML element. */
void out_str(struct out *o, const char *key, const char *v);
void out_int(struct out *o, const char *key, int64_t v);
void out_bool(struct out *o, const char *key, bool v);
/* A string item of a list: JSON `"v"`, XML `<xml_name>v</xml_name>`. */
void out_item(struct out *o, const char *xml_name, const char *v);
/* Ends the document into `res` (malloc'd body) with `status`; on a write
 * error, a 500 with a static body. */
void out_finish(struct out *o, int status, struct httpd_res *res);

#endif
