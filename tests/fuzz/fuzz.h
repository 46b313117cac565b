/*
 * fuzz.h: what the libFuzzer targets in tests/fuzz share (docs/fuzzing.md).
 *
 * Each target is one executable, fuzz_<name>, built with clang and
 * -fsanitize=fuzzer,address,undefined. libFuzzer calls LLVMFuzzerInitialize
 * once and LLVMFuzzerTestOneInput for every input; the interface passes no
 * context, so each target keeps its arena and keys in file-scope statics,
 * set up once in LLVMFuzzerInitialize. That is the one exception to "no
 * global mutable state outside main", and it stays inside tests/fuzz.
 *
 * A crash, a sanitizer report, a leak, a timeout or a failed FUZZ_ASSERT
 * are all findings: libFuzzer saves the input and stops. FUZZ_ASSERT states
 * what the decoder under test promises (its header), never what the input
 * should look like: bad input is expected and must simply be refused.
 */
#ifndef APPEAL_FUZZ_H
#define APPEAL_FUZZ_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbdecode.h"

/* The libFuzzer entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints `what` with its place and aborts, so libFuzzer records a crash. */
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
        }                                                                                          \
    } while (0)

/* sodium_init() and an arena of `cap_bytes`; aborts if either fails (the
 * target cannot run without them). Call once from LLVMFuzzerInitialize. */
void fuzz_init(struct arena *a, size_t cap_bytes);

/* True when APPEAL_FUZZ_SKIP_KNOWN=1 is in the environment (tools/fuzz
 * --skip-known): targets then skip inputs that reach a known, reported and
 * not yet fixed bug (tests/fuzz/regressions/README.md), so that fuzzing can
 * look past it. Off by default: a regression must fail until it is fixed. */
bool fuzz_skip_known(void);

/* A NUL-terminated malloc'd copy of the input, for parsers of file texts.
 * An embedded NUL ends the text early, as it does for the node, which
 * reads files into C strings. Aborts if out of memory. */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* Checks what pb_guard() promises of a message that passed it with
 * `repeated_max` and `depth_max`: no repeated field anywhere in `m` holds
 * more than `repeated_max` elements, and no message is nested deeper than
 * `depth_max` (the top level is depth 1). Every string field is also run
 * through pb_text_ok(), as the node's own checks do. Fails via
 * fuzz_fail with the field's name. With fuzz_skip_known(), repeated counts
 * are not checked (known bug guard-merge). */
void fuzz_check_bounds(const ProtobufCMessage *m, uint32_t repeated_max, uint32_t depth_max);

/* Packs `m` with protobuf-c, unpacks the bytes into `scratch` and packs
 * again: both packings must succeed and be identical. */
void fuzz_roundtrip(const ProtobufCMessage *m, struct arena *scratch);

#endif
