#include "clusterfile.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "record.h"
#include "util.h"

_Static_assert(CLUSTER_URL_BYTES == 256, "cluster_parse reads a value with %255s");

int cluster_url_offset(const char *url, int delta, char out[CLUSTER_URL_BYTES]) {
    const char *colon = strrchr(url, ':');
    const char *scheme_end = strstr(url, "://");
    if (colon == NULL || scheme_end == NULL || colon < scheme_end + 3) {
        return APL_EINVAL;
    }
    long port;
    if (util_parse_long(colon + 1, 1, 65535, &port) != 0 || port + delta < 1 ||
        port + delta > 65535) {
        return APL_EINVAL;
    }
    int n = snprintf(out, CLUSTER_URL_BYTES, "%.*s:%ld", (int)(colon - url), url, port + delta);
    return n > 0 && n < CLUSTER_URL_BYTES ? 0 : APL_EINVAL;
}

static bool url_ok(const char *u) {
    return (strncmp(u, "tcp://", 6) == 0 || strncmp(u, "tls+tcp://", 10) == 0 ||
            strncmp(u, "ipc://", 6) == 0) &&
           strlen(u) < CLUSTER_URL_BYTES && strchr(u, ' ') == NULL;
}

static int finish_entry(struct cluster *c, struct cluster_node *n, bool has_sign, bool has_box,
                        struct errbuf *e) {
    if (!has_sign || !has_box) {
        return err_set(e, APL_EINVAL, "cluster file line %u: node %s needs `sign` and `box`",
                       n->line, n->juris);
    }
    for (uint32_t i = 0; i + 1 < c->count; i++) {
        if (memcmp(c->nodes[i].sign_pk, n->sign_pk, KEY_PK_BYTES) == 0) {
            return err_set(e, APL_EINVAL, "cluster file line %u: the key of %s is listed twice",
                           n->line, n->juris);
        }
        if (strcmp(c->nodes[i].juris, n->juris) == 0) {
            return err_set(e, APL_EINVAL,
                           "cluster file line %u: jurisdiction %s is listed twice (one node "
                           "per jurisdiction)",
                           n->line, n->juris);
        }
    }
    if (n->peer_url[0] != '\0') {
        if (n->pub_url[0] == '\0' && cluster_url_offset(n->peer_url, 1, n->pub_url) != 0) {
            return err_set(e, APL_EINVAL, "cluster file line %u: cannot derive pub from %s",
                           n->line, n->peer_url);
        }
        if (n->query_url[0] == '\0' && cluster_url_offset(n->peer_url, 2, n->query_url) != 0) {
            return err_set(e, APL_EINVAL, "cluster file line %u: cannot derive query from %s",
                           n->line, n->peer_url);
        }
    }
    return 0;
}

static int key_line(const char *what, const char *val, uint8_t *out, unsigned lineno,
                    struct errbuf *e) {
    if (util_unhex(val, out, 32) != 0) {
        return err_set(e, APL_EINVAL, "cluster file line %u: `%s` takes 64 hex digits", lineno,
                       what);
    }
    return 0;
}

/* The node entry being read. */
struct entry {
    struct cluster_node *cur; /* NULL before the first `node` line */
    bool has_sign, has_box;
};

/* `node JURIS`: ends the entry before and starts the next. */
static int node_line(struct cluster *c, struct entry *en, const char *val, unsigned lineno,
                     struct errbuf *e) {
    int rc;
    if (en->cur != NULL && (rc = finish_entry(c, en->cur, en->has_sign, en->has_box, e)) != 0) {
        return rc;
    }
    if (c->count >= CLUSTER_NODES_MAX) {
        return err_set(e, APL_ETOOBIG, "cluster file: more than %d nodes", CLUSTER_NODES_MAX);
    }
    if (!juris_valid(val)) {
        return err_set(e, APL_EINVAL, "cluster file line %u: `%s` is not a jurisdiction", lineno,
                       val);
    }
    en->cur = &c->nodes[c->count++];
    snprintf(en->cur->juris, sizeof en->cur->juris, "%.15s", val);
    en->cur->line = lineno;
    en->has_sign = en->has_box = false;
    return 0;
}

/* `sign`, `box`, `peer`, `pub`, `query` or `dial` of the entry being read. */
static int field_line(struct entry *en, const char *word, const char *val, unsigned lineno,
                      struct errbuf *e) {
    struct cluster_node *cur = en->cur;
    int rc = 0;
    if (cur == NULL) {
        rc = err_set(e, APL_EINVAL, "cluster file line %u: `%s` before any `node`", lineno, word);
    } else if (strcmp(word, "sign") == 0) {
        rc = key_line(word, val, cur->sign_pk, lineno, e);
        en->has_sign = rc == 0;
    } else if (strcmp(word, "box") == 0) {
        rc = key_line(word, val, cur->box_pk, lineno, e);
        en->has_box = rc == 0;
    } else if (strcmp(word, "dial") == 0) {
        if (cur->n_dial >= CLUSTER_DIAL_MAX) {
            rc = err_set(e, APL_ETOOBIG, "cluster file line %u: more than %d `dial` lines", lineno,
                         CLUSTER_DIAL_MAX);
        } else if (!juris_valid(val) || strlen(val) >= CLUSTER_JURIS_BYTES) {
            rc = err_set(e, APL_EINVAL, "cluster file line %u: `%s` is not a jurisdiction", lineno,
                         val);
        } else {
            snprintf(cur->dial[cur->n_dial++], CLUSTER_JURIS_BYTES, "%s", val);
        }
    } else if (strcmp(word, "peer") == 0 || strcmp(word, "pub") == 0 ||
               strcmp(word, "query") == 0) {
        if (!url_ok(val)) {
            rc = err_set(e, APL_EINVAL,
                         "cluster file line %u: `%s` is not a tcp://, tls+tcp:// or ipc:// "
                         "address",
                         lineno, val);
        } else {
            char *dst = strcmp(word, "peer") == 0  ? cur->peer_url
                        : strcmp(word, "pub") == 0 ? cur->pub_url
                                                   : cur->query_url;
            snprintf(dst, CLUSTER_URL_BYTES, "%s", val);
        }
    } else {
        rc = err_set(e, APL_EINVAL, "cluster file line %u: unknown key `%s`", lineno, word);
    }
    return rc;
}

/* Every `dial` names another node of the file that has a peer address. */
static int check_dials(const struct cluster *c, struct errbuf *e) {
    for (uint32_t i = 0; i < c->count; i++) {
        const struct cluster_node *n = &c->nodes[i];
        for (uint32_t k = 0; k < n->n_dial; k++) {
            const struct cluster_node *to = cluster_by_juris(c, n->dial[k]);
            if (to == NULL || to == n || to->peer_url[0] == '\0') {
                return err_set(e, APL_EINVAL, "cluster file line %u: node %s dials %s, %s", n->line,
                               n->juris, n->dial[k],
                               to == NULL ? "which the file does not list"
                               : to == n  ? "itself"
                                          : "which has no `peer` address");
            }
        }
    }
    return 0;
}

bool cluster_dials(const struct cluster_node *self, const struct cluster_node *to) {
    if (to == self || to->peer_url[0] == '\0' || to->removed) {
        return false;
    }
    if (self->n_dial == 0) {
        return true;
    }
    for (uint32_t k = 0; k < self->n_dial; k++) {
        if (strcmp(self->dial[k], to->juris) == 0) {
            return true;
        }
    }
    return false;
}

int cluster_merge(struct cluster *c, const struct cluster *fresh, uint32_t *added,
                  struct errbuf *e) {
    ASSERT(c->self >= 0 && fresh->self >= 0);
    uint32_t n_new = 0;
    for (uint32_t i = 0; i < fresh->count; i++) {
        const struct cluster_node *f = &fresh->nodes[i];
        const struct cluster_node *old = cluster_by_juris(c, f->juris);
        const struct cluster_node *by_key = cluster_by_origin(c, f->sign_pk);
        if (old == NULL && by_key == NULL) {
            n_new++;
            continue;
        }
        if (old == NULL || old != by_key || memcmp(old->box_pk, f->box_pk, BOX_PK_BYTES) != 0) {
            const char *who = old != NULL ? old->juris : by_key->juris;
            return err_set(e, APL_EINVAL,
                           "cluster file line %u: the keys of %s differ from the running "
                           "node's%s: refused, the old file is kept (keys change by "
                           "`appeal-node rotate-key`, or by a restart)",
                           f->line, who,
                           old == &c->nodes[c->self] || by_key == &c->nodes[c->self]
                               ? " (this node's own entry)"
                               : "");
        }
    }
    if (c->count + n_new > CLUSTER_NODES_MAX) {
        return err_set(e, APL_ETOOBIG,
                       "cluster file: more than %d nodes with those already "
                       "known",
                       CLUSTER_NODES_MAX);
    }
    /* Decided: nothing below fails. The own dial list is read by the
     * reloading thread only; new entries are complete before `count`. */
    struct cluster_node *self = &c->nodes[c->self];
    const struct cluster_node *fself = &fresh->nodes[fresh->self];
    memcpy(self->dial, fself->dial, sizeof self->dial);
    self->n_dial = fself->n_dial;
    for (uint32_t i = 0; i < c->count; i++) {
        c->nodes[i].removed = cluster_by_juris(fresh, c->nodes[i].juris) == NULL;
    }
    uint32_t at = c->count;
    for (uint32_t i = 0; i < fresh->count; i++) {
        if (cluster_by_juris(c, fresh->nodes[i].juris) == NULL) {
            c->nodes[at] = fresh->nodes[i];
            c->nodes[at].n_dial = 0; /* only our own dial list matters here */
            at++;
        }
    }
    atomic_store(&c->count, at);
    *added = n_new;
    return 0;
}

int cluster_parse(struct cluster *c, const char *text, struct errbuf *e) {
    memset(c, 0, sizeof *c);
    c->self = -1;
    if (strlen(text) > CLUSTER_FILE_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "cluster file larger than %d bytes", CLUSTER_FILE_BYTES_MAX);
    }
    char *copy = strdup(text);
    if (copy == NULL) {
        return APL_ENOMEM;
    }
    struct entry en = {0};
    unsigned lineno = 0;
    int rc = 0;
    char *p = copy;
    while (rc == 0 && p != NULL) {
        char *nl = strchr(p, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        lineno++;
        char *hash = strchr(p, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *line = util_trim(p);
        p = nl != NULL ? nl + 1 : NULL;
        if (*line == '\0') {
            continue;
        }
        char word[16] = {0}, val[CLUSTER_URL_BYTES] = {0};
        if (sscanf(line, "%15s %255s", word, val) != 2) {
            rc = err_set(e, APL_EINVAL, "cluster file line %u: expected `KEY VALUE`", lineno);
        } else if (strcmp(word, "node") == 0) {
            rc = node_line(c, &en, val, lineno, e);
        } else {
            rc = field_line(&en, word, val, lineno, e);
        }
        ASSERT(c->count <= CLUSTER_NODES_MAX);
    }
    if (rc == 0 && en.cur != NULL) {
        rc = finish_entry(c, en.cur, en.has_sign, en.has_box, e);
    }
    if (rc == 0 && c->count == 0) {
        rc = err_set(e, APL_EINVAL, "cluster file lists no node");
    }
    if (rc == 0) {
        rc = check_dials(c, e);
    }
    free(copy);
    return rc;
}

int cluster_load(struct cluster *c, const char *path, struct errbuf *e) {
    char *text = NULL;
    int rc = util_read_file(path, CLUSTER_FILE_BYTES_MAX, &text, NULL);
    if (rc != 0) {
        return err_set(e, rc, "cannot read cluster file %s: %s", path, apl_strerror(rc));
    }
    rc = cluster_parse(c, text, e);
    free(text);
    return rc;
}

int cluster_find_self(struct cluster *c, const uint8_t pk[KEY_PK_BYTES], const char *juris,
                      struct errbuf *e) {
    for (uint32_t i = 0; i < c->count; i++) {
        if (memcmp(c->nodes[i].sign_pk, pk, KEY_PK_BYTES) == 0) {
            if (strcmp(c->nodes[i].juris, juris) != 0) {
                return err_set(e, APL_EINVAL,
                               "the cluster file lists this node's key under %s, not %s",
                               c->nodes[i].juris, juris);
            }
            c->self = (int)i;
            return 0;
        }
    }
    return err_set(e, APL_ENOTFOUND,
                   "this node's key is not in the cluster file: add the entry printed by "
                   "`appeal-node init`");
}

const struct cluster_node *cluster_by_origin(const struct cluster *c,
                                             const uint8_t pk[KEY_PK_BYTES]) {
    for (uint32_t i = 0; i < c->count; i++) {
        if (memcmp(c->nodes[i].sign_pk, pk, KEY_PK_BYTES) == 0) {
            return &c->nodes[i];
        }
    }
    return NULL;
}

const struct cluster_node *cluster_by_juris(const struct cluster *c, const char *juris) {
    for (uint32_t i = 0; i < c->count; i++) {
        if (strcmp(c->nodes[i].juris, juris) == 0) {
            return &c->nodes[i];
        }
    }
    return NULL;
}

void cluster_entry_format(char *out, size_t cap, const char *juris,
                          const uint8_t sign_pk[KEY_PK_BYTES], const uint8_t box_pk[BOX_PK_BYTES],
                          const char *peer_url) {
    char s[2 * KEY_PK_BYTES + 1], b[2 * BOX_PK_BYTES + 1];
    util_hex(sign_pk, KEY_PK_BYTES, s);
    util_hex(box_pk, BOX_PK_BYTES, b);
    int n = snprintf(out, cap, "node %s\n  sign %s\n  box %s\n", juris, s, b);
    if (peer_url != NULL && peer_url[0] != '\0' && n > 0 && (size_t)n < cap) {
        snprintf(out + n, cap - (size_t)n, "  peer %s\n", peer_url);
    }
}
