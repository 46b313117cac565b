#include "open311_out.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int out_begin(struct out *o, bool xml) {
    memset(o, 0, sizeof *o);
    o->xml = xml;
    o->first[0] = true;
    o->f = open_memstream(&o->buf, &o->len);
    if (o->f == NULL) {
        return APL_ENOMEM;
    }
    if (xml) {
        fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", o->f);
    }
    return 0;
}

static void json_escape(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p, f);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void xml_escape(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            if ((*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') || *p == 0x7f) {
                fputs("\xef\xbf\xbd", f); /* not a character of XML 1.0 */
            } else {
                fputc(*p, f);
            }
        }
    }
}

/* JSON: the comma and the key of the next value at this depth. */
static void json_key(struct out *o, const char *key) {
    if (!o->first[o->depth]) {
        fputc(',', o->f);
    }
    o->first[o->depth] = false;
    if (key != NULL) {
        json_escape(o->f, key);
        fputc(':', o->f);
    }
}

static void open_level(struct out *o, const char *key, const char *xml_name, char json_open) {
    assert(o->depth < OUT_DEPTH_MAX); /* our documents are shallow */
    if (o->xml) {
        fprintf(o->f, "<%s>", xml_name);
    } else {
        json_key(o, key);
        fputc(json_open, o->f);
    }
    o->first[++o->depth] = true;
}

static void close_level(struct out *o, const char *xml_name, char json_close) {
    assert(o->depth > 0);
    o->depth--;
    if (o->xml) {
        fprintf(o->f, "</%s>", xml_name);
    } else {
        fputc(json_close, o->f);
    }
}

void out_list(struct out *o, const char *key, const char *xml_name) {
    open_level(o, key, xml_name, '[');
}

void out_list_end(struct out *o, const char *xml_name) {
    close_level(o, xml_name, ']');
}

void out_obj(struct out *o, const char *key, const char *xml_name) {
    open_level(o, key, xml_name, '{');
}

void out_obj_end(struct out *o, const char *xml_name) {
    close_level(o, xml_name, '}');
}

void out_str(struct out *o, const char *key, const char *v) {
    if (o->xml) {
        if (v == NULL || v[0] == '\0') {
            fprintf(o->f, "<%s/>", key);
            return;
        }
        fprintf(o->f, "<%s>", key);
        xml_escape(o->f, v);
        fprintf(o->f, "</%s>", key);
        return;
    }
    json_key(o, key);
    if (v == NULL) {
        fputs("null", o->f);
    } else {
        json_escape(o->f, v);
    }
}

void out_int(struct out *o, const char *key, int64_t v) {
    if (o->xml) {
        fprintf(o->f, "<%s>%" PRId64 "</%s>", key, v, key);
        return;
    }
    json_key(o, key);
    fprintf(o->f, "%" PRId64, v);
}

void out_bool(struct out *o, const char *key, bool v) {
    if (o->xml) {
        fprintf(o->f, "<%s>%s</%s>", key, v ? "true" : "false", key);
        return;
    }
    json_key(o, key);
    fputs(v ? "true" : "false", o->f);
}

void out_item(struct out *o, const char *xml_name, const char *v) {
    if (o->xml) {
        out_str(o, xml_name, v);
        return;
    }
    json_key(o, NULL);
    json_escape(o->f, v);
}

void out_finish(struct out *o, int status, struct httpd_res *res) {
    assert(o->depth == 0);
    if (o->xml) {
        fputc('\n', o->f);
    }
    bool bad = ferror(o->f) != 0;
    fclose(o->f);
    if (bad || o->buf == NULL) {
        free(o->buf);
        static const char oom[] = "out of memory\n";
        *res = (struct httpd_res){
            .status = 500, .content_type = "text/plain", .body = oom, .len = sizeof oom - 1};
        return;
    }
    *res = (struct httpd_res){.status = status,
                              .content_type = o->xml ? "text/xml; charset=utf-8"
                                                     : "application/json; charset=utf-8",
                              .body = o->buf,
                              .len = o->len,
                              .body_free = true,
                              .cache_control = "no-store"};
}
