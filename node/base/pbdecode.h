/*
 * pbdecode.h: bounded decoding of protobuf-c messages from untrusted bytes.
 *
 * protobuf-c allocates as it unpacks, sized by what the bytes claim. Two
 * guards keep a hostile message from costing more than its own size:
 *
 *  - pb_guard() walks the wire format with the message's descriptor before
 *    anything is unpacked: it rejects malformed varints, lengths past the
 *    end, groups, nesting deeper than `depth_max`, any repeated field with
 *    more than `repeated_max` elements, a singular field that appears more
 *    than once (protobuf would merge it), and a string holding a NUL.
 *  - struct arena is a bump allocator with a fixed capacity handed to
 *    protobuf-c as its allocator: an unpack that would need more fails
 *    cleanly instead of growing the heap. Freeing is one reset.
 *
 * Neither replaces checking the decoded values (lengths of keys, ranges of
 * enums, string limits): callers do that next.
 */
#ifndef APPEAL_PBDECODE_H
#define APPEAL_PBDECODE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct arena {
    uint8_t *base;
    size_t cap_bytes;
    size_t used_bytes;
    ProtobufCAllocator allocator;
};

/* Allocates the arena's buffer once. */
int arena_init(struct arena *a, size_t cap_bytes);
/* An arena over a caller's buffer (say, on the stack); nothing to free. */
void arena_on(struct arena *a, void *buf, size_t cap_bytes);
void arena_reset(struct arena *a);
/* A zeroed object of `size` bytes in `a`; NULL if the arena is full. */
void *arena_new(struct arena *a, size_t size);
/* A copy of `s` in `a`, or of its formatting; NULL if full. */
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_fini(struct arena *a);

/* Checks `data` against `desc` as described above; on failure sets `e` with
 * a message naming the field. */
int pb_guard(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
             uint32_t repeated_max, uint32_t depth_max, struct errbuf *e);

/* pb_guard() then unpack into `a`. Returns NULL with `e` set on failure. */
ProtobufCMessage *pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                            struct arena *a, uint32_t repeated_max, struct errbuf *e);

/* Why `s` is not clean text, or NULL if it is: valid UTF-8 without
 * control characters (C0, DEL, C1) and without the bidirectional controls
 * that make text display other than it reads (U+061C, U+200E, U+200F,
 * U+202A..U+202E, U+2066..U+2069). One-line text (`multiline` false)
 * also has no tab, line feed, CR or U+2028/U+2029; multi-line text may
 * hold tab, LF and CR LF. */
const char *pb_text_problem(const char *s, bool multiline);
/* pb_text_problem(s, multiline) == NULL. */
bool pb_text_ok(const char *s, bool multiline);

/* Packs `m` into a malloc'd buffer. */
int pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);

#endif
