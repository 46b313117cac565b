#include "pbdecode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

static void *arena_alloc(void *data, size_t size) {
    struct arena *a = data;
    ASSERT(a->base != NULL && a->used_bytes <= a->cap_bytes);
    size_t at = (a->used_bytes + 15u) & ~(size_t)15u;
    if (size > a->cap_bytes || at > a->cap_bytes - size) {
        return NULL;
    }
    a->used_bytes = at + size;
    ASSERT(a->used_bytes <= a->cap_bytes);
    return a->base + at;
}

static void arena_free_one(void *data, void *ptr) {
    (void)data; /* released all at once by arena_reset */
    (void)ptr;
}

int arena_init(struct arena *a, size_t cap_bytes) {
    a->base = malloc(cap_bytes);
    if (a->base == NULL) {
        return APL_ENOMEM;
    }
    a->cap_bytes = cap_bytes;
    a->used_bytes = 0;
    a->allocator.alloc = arena_alloc;
    a->allocator.free = arena_free_one;
    a->allocator.allocator_data = a;
    return 0;
}

void arena_on(struct arena *a, void *buf, size_t cap_bytes) {
    ASSERT(buf != NULL && (uintptr_t)buf % _Alignof(uint64_t) == 0); /* what decoded structs need */
    a->base = buf;
    a->cap_bytes = cap_bytes;
    a->used_bytes = 0;
    a->allocator.alloc = arena_alloc;
    a->allocator.free = arena_free_one;
    a->allocator.allocator_data = a;
}

void *arena_new(struct arena *a, size_t size) {
    void *p = arena_alloc(a, size);
    if (p != NULL) {
        memset(p, 0, size);
    }
    return p;
}

char *arena_strdup(struct arena *a, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(a, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *p = arena_alloc(a, (size_t)n + 1);
    if (p != NULL) {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

void arena_reset(struct arena *a) {
    a->used_bytes = 0;
}

void arena_fini(struct arena *a) {
    free(a->base);
    a->base = NULL;
    a->cap_bytes = 0;
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) {
            return false;
        }
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

enum { GUARD_FIELDS_TRACKED = 64 };

static int guard(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                 uint32_t repeated_max, uint32_t depth, struct errbuf *e) {
    ASSERT(desc != NULL && p <= end);
    if (depth == 0) {
        return err_set(e, APL_EINVAL, "message nested too deeply");
    }
    uint32_t counts[GUARD_FIELDS_TRACKED] = {0};
    while (p < end) {
        uint64_t key;
        if (!read_varint(&p, end, &key)) {
            return err_set(e, APL_EINVAL, "malformed message: bad field key");
        }
        uint32_t wire = (uint32_t)(key & 7u);
        uint64_t num = key >> 3;
        if (num == 0 || num > 536870911u) {
            return err_set(e, APL_EINVAL, "malformed message: bad field number");
        }
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)num);
        uint64_t len = 0;
        switch (wire) {
        case 0:
            if (!read_varint(&p, end, &len)) {
                return err_set(e, APL_EINVAL, "malformed message: bad varint");
            }
            break;
        case 1:
            if (end - p < 8) {
                return err_set(e, APL_EINVAL, "malformed message: truncated");
            }
            p += 8;
            break;
        case 5:
            if (end - p < 4) {
                return err_set(e, APL_EINVAL, "malformed message: truncated");
            }
            p += 4;
            break;
        case 2:
            if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) {
                return err_set(e, APL_EINVAL, "malformed message: length past the end");
            }
            if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, len) != NULL) {
                /* protobuf-c would cut the string at the NUL: another
                 * decoder would read more. Refuse the ambiguity. */
                return err_set(e, APL_EINVAL, "string field %s holds a NUL byte", f->name);
            }
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int rc = guard(f->descriptor, p, p + len, repeated_max, depth - 1, e);
                if (rc != 0) {
                    return rc;
                }
            }
            p += len;
            break;
        default:
            return err_set(e, APL_EINVAL, "malformed message: unsupported wire type %u", wire);
        }
        unsigned slot = f != NULL ? (unsigned)(f - desc->fields) : GUARD_FIELDS_TRACKED;
        if (slot < GUARD_FIELDS_TRACKED && f->label == PROTOBUF_C_LABEL_REPEATED &&
            ++counts[slot] > repeated_max) {
            return err_set(e, APL_ETOOBIG, "too many elements in field %s (limit %u)", f->name,
                           repeated_max);
        }
        if (slot < GUARD_FIELDS_TRACKED && f->label != PROTOBUF_C_LABEL_REPEATED &&
            ++counts[slot] > 1) {
            /* Protobuf would merge or overwrite a repeated singular field,
             * and different decoders differ on which: our writers never
             * repeat one, so a message that does is refused. */
            return err_set(e, APL_EINVAL, "field %s appears more than once", f->name);
        }
    }
    return 0;
}

int pb_guard(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
             uint32_t repeated_max, uint32_t depth_max, struct errbuf *e) {
    if (len == 0) {
        return 0; /* an empty message (protobuf-c hands it over as NULL, 0) */
    }
    return guard(desc, data, data + len, repeated_max, depth_max, e);
}

enum { PBX_DEPTH_MAX = 8 };

ProtobufCMessage *pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                            struct arena *a, uint32_t repeated_max, struct errbuf *e) {
    if (pb_guard(desc, data, len, repeated_max, PBX_DEPTH_MAX, e) != 0) {
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a->allocator, len, data);
    if (m == NULL) {
        err_set(e, APL_EINVAL, "malformed %s message", desc->short_name);
    }
    return m;
}

/* Format characters that reorder or hide text on display: ALM, LRM, RLM,
 * the embeddings and overrides U+202A..U+202E, the isolates
 * U+2066..U+2069. */
static bool bidi_control(uint32_t cp) {
    return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* One ASCII byte at `p`: NULL if allowed. */
static const char *ascii_problem(const unsigned char *p, bool multiline) {
    unsigned c = *p;
    if (!multiline && (c == '\n' || c == '\t' || c == '\r')) {
        return "a line break or tab (one line of text is expected)";
    }
    if (c == '\n' || c == '\t' || (c == '\r' && p[1] == '\n')) {
        return NULL;
    }
    return c < 0x20 || c == 0x7f ? "a control character" : NULL;
}

const char *pb_text_problem(const char *s, bool multiline) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p != 0) {
        unsigned c = *p;
        int n;
        uint32_t cp;
        if (c < 0x80) {
            const char *why = ascii_problem(p, multiline);
            if (why != NULL) {
                return why;
            }
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return "invalid UTF-8";
        }
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return "invalid UTF-8";
            }
            cp = (cp << 6) | (p[i] & 0x3fu);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return "invalid UTF-8";
        }
        if (cp >= 0x80 && cp <= 0x9f) {
            return "a control character (C1)";
        }
        if (bidi_control(cp)) {
            return "a bidirectional control character";
        }
        if (!multiline && (cp == 0x2028 || cp == 0x2029)) {
            return "a line break or tab (one line of text is expected)";
        }
        p += n + 1;
    }
    return NULL;
}

bool pb_text_ok(const char *s, bool multiline) {
    return pb_text_problem(s, multiline) == NULL;
}

int pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        return APL_ENOMEM;
    }
    size_t w = protobuf_c_message_pack(m, buf);
    if (w != n) {
        free(buf);
        return APL_EINVAL;
    }
    *out = buf;
    *len = n;
    return 0;
}
