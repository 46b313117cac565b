#include "receipt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterfile.h"
#include "record.h"
#include "util.h"

int receipt_unhex(const char *text, size_t len, uint8_t **out, size_t *out_len, struct errbuf *e) {
    while (len > 0 && isspace((unsigned char)text[0])) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1])) {
        len--;
    }
    if (len > RECEIPT_HEX_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "a receipt is at most %d hex digits", RECEIPT_HEX_BYTES_MAX);
    }
    if (len == 0 || len % 2 != 0) {
        return err_set(e, APL_EINVAL, "a receipt is an even number of hex digits");
    }
    char *hex = malloc(len + 1);
    uint8_t *bin = malloc(len / 2);
    if (hex == NULL || bin == NULL) {
        free(hex);
        free(bin);
        return APL_ENOMEM;
    }
    memcpy(hex, text, len);
    hex[len] = '\0';
    int rc = util_unhex(hex, bin, len / 2);
    free(hex);
    if (rc != 0) {
        free(bin);
        return err_set(e, APL_EINVAL, "a receipt is hex digits only");
    }
    *out = bin;
    *out_len = len / 2;
    return 0;
}

/* The origin's jurisdiction if the federation trusts it, else NULL. */
static const char *trusted(const struct cluster *c, const uint8_t *self_pk, const char *self_juris,
                           const uint8_t origin[KEY_PK_BYTES]) {
    if (self_pk != NULL && memcmp(self_pk, origin, KEY_PK_BYTES) == 0) {
        return self_juris;
    }
    const struct cluster_node *cn = c != NULL ? cluster_by_origin(c, origin) : NULL;
    return cn != NULL ? cn->juris : NULL;
}

int receipt_check(const uint8_t *env, size_t len, const struct cluster *c, const uint8_t *self_pk,
                  const char *self_juris, const uint8_t *also_pk, struct receipt_info *out,
                  struct errbuf *e) {
    memset(out, 0, sizeof *out);
    struct arena a;
    if (arena_init(&a, 4 * RECORD_BYTES_MAX) != 0) {
        return APL_ENOMEM;
    }
    struct record r;
    int rc = rec_decode(env, len, &a, &r, e);
    if (rc != 0) {
        err_set(e, APL_EINVAL, "not a record: %s", err_msg(e, rc));
        rc = APL_EINVAL;
        goto done;
    }
    const Appeal__Body *b = r.body;
    if (b->event_case != APPEAL__BODY__EVENT_FILED) {
        rc = err_set(e, APL_EINVAL, "not a receipt: the record is a %s, not a filing", rec_kind(b));
        goto done;
    }
    const char *juris = trusted(c, self_pk, self_juris, b->origin.data);
    if (juris == NULL) {
        rc = err_set(e, APL_EAUTH,
                     "the record's origin is no node of this federation "
                     "(not in the cluster file)");
        goto done;
    }
    if (!rec_verify_sig(&r, b->origin.data) && (also_pk == NULL || !rec_verify_sig(&r, also_pk))) {
        rc = err_set(e, APL_EAUTH,
                     "bad signature: the record was altered, or signed by a successor key after "
                     "the node of %s rotated its key (ask that node: POST "
                     "/open311/v2/receipts/verify)",
                     juris);
        goto done;
    }
    const Appeal__AppealFiled *f = b->filed;
    if (strcmp(f->jurisdiction, juris) != 0) {
        rc = err_set(e, APL_EAUTH, "the filing names %s but its origin is the node of %s",
                     f->jurisdiction, juris);
        goto done;
    }
    snprintf(out->number, sizeof out->number, "%s", f->number);
    snprintf(out->jurisdiction, sizeof out->jurisdiction, "%s", f->jurisdiction);
    snprintf(out->category, sizeof out->category, "%s", f->category);
    out->type = f->type;
    out->registered_ms = f->registered_ms;
    out->deadline_day = f->deadline_day;
    out->time_ms = b->time_ms;
    out->seq = b->seq;
    out->anonymous = f->anonymous;
    out->urgent = f->urgent;
    memcpy(out->origin, b->origin.data, KEY_PK_BYTES);
    if (b->actor.len == KEY_PK_BYTES) {
        memcpy(out->actor, b->actor.data, KEY_PK_BYTES);
    }
done:
    arena_fini(&a);
    return rc;
}
