/*
 * fuzz_request: a client request from untrusted bytes, as the node's API
 * receives it (api_decode, node/service/api.h: size limit, protobuf guards,
 * version, operation), then the decoded Request and ClientRequest packed
 * back with protobuf-c and decoded again.
 *
 * Requests are signed (ClientRequest.key and .sig, node/service/auth.c), but the
 * node decodes a request before it authenticates it: every byte here comes
 * from anyone who can reach the API, and no signature is checked.
 */
#include <stdbool.h>

#include "api.h"
#include "bounds.h"
#include "client.h"
#include "fuzz.h"

enum { REQUEST_DEPTH_MAX = 8 }; /* PBX_DEPTH_MAX in node/base/pbdecode.c */

static struct arena arena;   /* one request's messages, reset per input */
static struct arena scratch; /* the round trip's */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(&arena, API_ARENA_BYTES);
    fuzz_init(&scratch, 2 * (size_t)API_ARENA_BYTES);
    return 0;
}

/* True if the member of the oneof `op` that op_case names is set: handle()
 * in node/service/api.c dereferences it without a check. Read through the
 * descriptor, so operations added to api.proto are covered too. */
static bool op_member_set(const Appeal__Request *q) {
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&appeal__request__descriptor, q->op_case);
    if (f == NULL || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
        f->type != PROTOBUF_C_TYPE_MESSAGE) {
        return false;
    }
    return *(ProtobufCMessage *const *)((const char *)q + f->offset) != NULL;
}

/* Known bug pbx-null-data (tests/fuzz/regressions/README.md): a ClientRequest
 * whose `request` is empty has request.data == NULL, and pb_guard computes
 * NULL + 0. True for such inputs when skipping known bugs. */
static bool known_bug(const uint8_t *data, size_t size) {
    if (!fuzz_skip_known()) {
        return false;
    }
    arena_reset(&scratch);
    Appeal__ClientRequest *cr = (Appeal__ClientRequest *)protobuf_c_message_unpack(
        &appeal__client_request__descriptor, &scratch.allocator, size, data);
    return cr != NULL && cr->request.data == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (known_bug(data, size)) {
        return 0;
    }
    arena_reset(&arena);
    struct errbuf e;
    err_clear(&e);
    Appeal__ClientRequest *outer = NULL;
    Appeal__Request *req = NULL;
    int rc = api_decode(data, size, &arena, &outer, &req, &e);
    if (rc != 0) {
        /* Bad bytes are the client's fault: never an internal error. */
        FUZZ_ASSERT(rc == APL_EINVAL || rc == APL_ETOOBIG);
        int wire = client_error_code(rc);
        FUZZ_ASSERT(wire == APPEAL__ERROR_CODE__ERR_BAD_REQUEST ||
                    wire == APPEAL__ERROR_CODE__ERR_TOO_LARGE);
        return 0;
    }
    FUZZ_ASSERT(outer != NULL && req != NULL);
    FUZZ_ASSERT(req->version == 1);
    FUZZ_ASSERT(op_member_set(req));
    fuzz_check_bounds(&outer->base, REQUEST_REPEATED_MAX, REQUEST_DEPTH_MAX);
    fuzz_check_bounds(&req->base, REQUEST_REPEATED_MAX, REQUEST_DEPTH_MAX);
    fuzz_roundtrip(&req->base, &scratch);
    fuzz_roundtrip(&outer->base, &scratch);
    return 0;
}
