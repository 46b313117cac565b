/*
 * clusterfile.h: the cluster file, the federation's trust store.
 *
 * One text file describes every node: its jurisdiction, its public keys
 * and its peer-facing addresses. It is the entries printed by
 * `appeal-node init ... --peer URL`, one after another (comments with #):
 *
 *   node KZ-75
 *     sign 2b7b...fd1      Ed25519 origin key (64 hex digits)
 *     box  1cb3...d5a      X25519 key for forwarded applicants' data
 *     peer tcp://10.0.0.75:7101    pulls (REQ/REP)
 *     pub  tcp://10.0.0.75:7102    pushes (PUB/SUB); default: peer port + 1
 *     query tcp://10.0.0.75:7103   federated queries; default: peer port + 2
 *     dial KZ-71                   the nodes this node connects to (may repeat);
 *                                  none: every node with a `peer` address
 *
 * Records whose origin is not listed are refused, and so are peers whose
 * key is not listed. A node finds its own entry by its signing key. One
 * node per jurisdiction.
 */
#ifndef APPEAL_CLUSTERFILE_H
#define APPEAL_CLUSTERFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keys.h"

enum {
    CLUSTER_NODES_MAX = 256,
    CLUSTER_URL_BYTES = 256,
    CLUSTER_FILE_BYTES_MAX = 1024 * 1024,
    CLUSTER_DIAL_MAX = 32, /* `dial` lines in one entry */
    CLUSTER_JURIS_BYTES = 16,
};

struct cluster_node {
    char juris[16];
    uint8_t sign_pk[KEY_PK_BYTES];
    uint8_t box_pk[BOX_PK_BYTES];
    char peer_url[CLUSTER_URL_BYTES]; /* "" if it takes no connections */
    char pub_url[CLUSTER_URL_BYTES];
    char query_url[CLUSTER_URL_BYTES];
    unsigned line; /* where its entry starts */
    /* `dial` lines: the jurisdictions this node connects to, each listed
     * in the file with a peer address. Empty: a full mesh (every node with
     * a peer address). Changed only by cluster_merge, on its own entry. */
    char dial[CLUSTER_DIAL_MAX][CLUSTER_JURIS_BYTES];
    uint32_t n_dial;
    bool removed; /* no longer in the reloaded file: trusted until restart, not dialled */
};

/* Entries are never moved or removed while a node runs: cluster_merge
 * appends new ones and then raises `count`, so a reader on another thread
 * that reads `count` sees complete entries below it (and pointers to
 * entries stay valid). */
struct cluster {
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    _Atomic uint32_t count;
    int self; /* index of this node's entry, -1 if not found */
};

/* Parses the text of a cluster file; `e` names the line of any error. */
int cluster_parse(struct cluster *c, const char *text, struct errbuf *e);
int cluster_load(struct cluster *c, const char *path, struct errbuf *e);
/* Sets c->self to the entry whose sign key is `pk`; APL_ENOTFOUND if none. */
int cluster_find_self(struct cluster *c, const uint8_t pk[KEY_PK_BYTES], const char *juris,
                      struct errbuf *e);

const struct cluster_node *cluster_by_origin(const struct cluster *c,
                                             const uint8_t pk[KEY_PK_BYTES]);
const struct cluster_node *cluster_by_juris(const struct cluster *c, const char *juris);

/* Whether node `self` connects to `to` (its dial list, or the full mesh). */
bool cluster_dials(const struct cluster_node *self, const struct cluster_node *to);

/* A reloaded cluster file `fresh` (parsed, self found) merged into the
 * running `c` (SIGHUP): new entries are appended, this node's dial list is
 * replaced. Refused, with `c` unchanged: a changed key of any listed node
 * (this node's included: a key changes by `rotate-key`, not by editing the
 * file), or more than CLUSTER_NODES_MAX entries in all. Entries no longer
 * in the file stay trusted until restart, and are not dialled. *added: the
 * number of entries appended. One caller at a time (the reloading thread). */
int cluster_merge(struct cluster *c, const struct cluster *fresh, uint32_t *added,
                  struct errbuf *e);

/* "tcp://host:port" plus `delta` on the port, into out. */
int cluster_url_offset(const char *url, int delta, char out[CLUSTER_URL_BYTES]);

/* Formats the entry for a node (what `appeal-node init` prints). */
void cluster_entry_format(char *out, size_t cap, const char *juris,
                          const uint8_t sign_pk[KEY_PK_BYTES], const uint8_t box_pk[BOX_PK_BYTES],
                          const char *peer_url);

#endif
