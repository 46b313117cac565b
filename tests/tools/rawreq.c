/* rawreq URL [KEYFILE]: sends the bytes on stdin as one request to a node's
 * API and prints the answer as JSON {"code": "...", "message": "..."}
 * (tests of malformed input). With KEYFILE, bytes that decode as a
 * ClientRequest are signed with that official's key first (its `request`
 * bytes unchanged), so that a test reaches the checks behind
 * authentication; bytes that do not decode go as they are. Exit 0 if an
 * answer came, 3 if none. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "json.h"
#include "keys.h"

/* `request` with Request.node = `node` appended when it decodes and names
 * no node (a malloc'd copy in *out; the bytes as they are otherwise). */
static void bind_to(ProtobufCBinaryData *request, const char *node, uint8_t **out) {
    *out = NULL;
    Appeal__Request *q = appeal__request__unpack(NULL, request->len, request->data);
    if (q == NULL || q->node[0] != '\0') {
        if (q != NULL) {
            appeal__request__free_unpacked(q, NULL);
        }
        return;
    }
    appeal__request__free_unpacked(q, NULL);
    size_t n = strlen(node);
    *out = malloc(request->len + 2 + n);
    if (request->len > 0) {
        memcpy(*out, request->data, request->len);
    }
    (*out)[request->len] = 4 << 3 | 2;
    (*out)[request->len + 1] = (uint8_t)n;
    memcpy(*out + request->len + 2, node, n);
    request->data = *out;
    request->len += 2 + n;
}

/* Re-packs `buf` bound to `node` and signed with the key in `path`; NULL
 * if it does not decode. */
static uint8_t *sign_raw(const uint8_t *buf, size_t len, const char *path, const char *node,
                         size_t *out_len) {
    Appeal__ClientRequest *cr = appeal__client_request__unpack(NULL, len, buf);
    if (cr == NULL) {
        return NULL;
    }
    uint8_t *orig = cr->request.data, *bound;
    size_t orig_len = cr->request.len;
    bind_to(&cr->request, node, &bound);
    uint8_t pk[KEY_PK_BYTES], sk[KEY_SK_BYTES], sig[SIG_BYTES];
    struct errbuf e = {0};
    if (keys_load_signing(path, pk, sk, &e) != 0) {
        fprintf(stderr, "rawreq: %s\n", e.msg);
        exit(2);
    }
    crypto_sign_detached(sig, NULL, cr->request.data, cr->request.len, sk);
    cr->key.data = pk;
    cr->key.len = sizeof pk;
    cr->sig.data = sig;
    cr->sig.len = sizeof sig;
    *out_len = appeal__client_request__get_packed_size(cr);
    uint8_t *out = malloc(*out_len);
    appeal__client_request__pack(cr, out);
    cr->request.data = orig;
    cr->request.len = orig_len;
    free(bound);
    cr->key.data = NULL; /* on the stack: not for free_unpacked */
    cr->sig.data = NULL;
    cr->key.len = cr->sig.len = 0;
    appeal__client_request__free_unpacked(cr, NULL);
    return out;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: rawreq URL [KEYFILE] < bytes\n");
        return 2;
    }
    if (sodium_init() < 0) {
        return 2;
    }
    size_t cap = 64u << 20, len = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf != NULL && (r = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += r;
    }
    struct client c;
    struct errbuf e = {0};
    if (client_open(&c, argv[1], 5000, &e) != 0) {
        fprintf(stderr, "rawreq: %s\n", e.msg);
        return 3;
    }
    if (argc == 3) {
        /* Signed requests are bound to the node they are for: name it
         * (unless the bytes name one already: tests of the binding). */
        if (client_hello(&c, &e) != 0) {
            fprintf(stderr, "rawreq: %s\n", e.msg);
            return 3;
        }
        size_t signed_len;
        uint8_t *s = sign_raw(buf, len, argv[2], c.node, &signed_len);
        if (s != NULL) {
            free(buf);
            buf = s;
            len = signed_len;
        }
    }
    Appeal__Response *resp = NULL;
    int rc = client_call_raw(&c, buf, len, &resp, &e);
    free(buf);
    if (rc != 0) {
        printf("{\"code\":\"no_answer\",\"message\":\"%s\"}\n", e.msg);
        client_close(&c);
        return 3;
    }
    struct json j;
    json_init(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "code", client_code_name(resp->error ? resp->error->code : 0));
    json_str(&j, "message", resp->error ? resp->error->message : "");
    json_end_obj(&j);
    json_done(&j);
    client_close(&c);
    return 0;
}
