#include "fuzz.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: FUZZ_ASSERT(%s) failed\n", file, line, what);
    abort();
}

static bool skip_known;

bool fuzz_skip_known(void) {
    return skip_known;
}

void fuzz_init(struct arena *a, size_t cap_bytes) {
    /* sodium_init() returns 1 when already initialised: also fine. */
    FUZZ_ASSERT(sodium_init() >= 0);
    const char *v = getenv("APPEAL_FUZZ_SKIP_KNOWN");
    if (v != NULL && strcmp(v, "1") == 0 && !skip_known) {
        skip_known = true;
        fprintf(stderr, "APPEAL_FUZZ_SKIP_KNOWN=1: skipping inputs that reach known bugs\n");
    }
    if (a != NULL) {
        FUZZ_ASSERT(arena_init(a, cap_bytes) == 0);
    }
}

char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    FUZZ_ASSERT(s != NULL);
    if (size > 0) {
        memcpy(s, data, size);
    }
    s[size] = '\0';
    return s;
}

static const void *field_at(const ProtobufCMessage *m, unsigned offset) {
    return (const char *)m + offset;
}

static void check_message(const ProtobufCMessage *m, uint32_t repeated_max, uint32_t depth_left);

/* One field of `m`; oneof members that are not the chosen one share their
 * storage with it and are skipped. */
static void check_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                        uint32_t repeated_max, uint32_t depth_left) {
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)field_at(m, f->quantifier_offset) != f->id) {
            return;
        }
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)field_at(m, f->quantifier_offset);
        /* Known bug guard-merge (tests/fuzz/regressions/README.md): protobuf-c
         * merges the occurrences of a singular message field, repeated fields
         * included, after pb_guard counted each on its own. */
        if (n > repeated_max && !fuzz_skip_known()) {
            fprintf(stderr, "field %s.%s has %zu elements, over the guard's limit of %u\n",
                    m->descriptor->name, f->name, n, repeated_max);
            FUZZ_ASSERT(n <= repeated_max);
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            ProtobufCMessage *const *subs =
                *(ProtobufCMessage *const *const *)field_at(m, f->offset);
            for (size_t i = 0; i < n; i++) {
                check_message(subs[i], repeated_max, depth_left - 1);
            }
        } else if (f->type == PROTOBUF_C_TYPE_STRING) {
            char *const *strs = *(char *const *const *)field_at(m, f->offset);
            for (size_t i = 0; i < n; i++) {
                (void)pb_text_ok(strs[i], true);
            }
        }
        return;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)field_at(m, f->offset);
        if (sub != NULL) {
            check_message(sub, repeated_max, depth_left - 1);
        }
    } else if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)field_at(m, f->offset);
        FUZZ_ASSERT(s != NULL);
        (void)pb_text_ok(s, false);
        (void)pb_text_ok(s, true);
    }
}

static void check_message(const ProtobufCMessage *m, uint32_t repeated_max, uint32_t depth_left) {
    FUZZ_ASSERT(m != NULL);
    if (depth_left == 0) {
        fprintf(stderr, "message %s is nested deeper than the guard allows\n", m->descriptor->name);
        FUZZ_ASSERT(depth_left > 0);
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        check_field(m, &d->fields[i], repeated_max, depth_left);
    }
}

void fuzz_check_bounds(const ProtobufCMessage *m, uint32_t repeated_max, uint32_t depth_max) {
    check_message(m, repeated_max, depth_max);
}

void fuzz_roundtrip(const ProtobufCMessage *m, struct arena *scratch) {
    uint8_t *one = NULL, *two = NULL;
    size_t one_len = 0, two_len = 0;
    FUZZ_ASSERT(pb_pack(m, &one, &one_len) == 0);
    arena_reset(scratch);
    ProtobufCMessage *again =
        protobuf_c_message_unpack(m->descriptor, &scratch->allocator, one_len, one);
    FUZZ_ASSERT(again != NULL);
    FUZZ_ASSERT(pb_pack(again, &two, &two_len) == 0);
    FUZZ_ASSERT(one_len == two_len && memcmp(one, two, one_len) == 0);
    free(one);
    free(two);
}
