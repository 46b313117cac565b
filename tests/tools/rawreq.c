/* rawreq URL: sends the bytes on stdin as one request to a node's API and
 * prints the answer as JSON {"code": "...", "message": "..."} (tests of
 * malformed input). Exit 0 if an answer came, 3 if none. */
#include <stdio.h>
#include <stdlib.h>

#include "client.h"
#include "json.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: rawreq URL < bytes\n");
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
