/*
 * tls.h: transport encryption (tls+tcp://) for peer links and the client
 * API, over nng's TLS engine (mbedTLS in Debian's libnng).
 *
 * What it promises:
 *  - tls_probe() says at run time whether this libnng speaks TLS at all. A
 *    libnng built without a TLS engine has the functions but fails every
 *    tls+tcp:// address with "Not supported"; we say what to do instead.
 *  - tls_listen() and tls_dial() create and start a listener or dialer for
 *    any address. For tls+tcp:// they first apply a configuration built
 *    from the files of `struct tls`, and refuse, naming the options, when
 *    there are none. tcp:// and ipc:// pass through untouched, so callers
 *    use them for every address.
 *  - Peer links are mutually authenticated against the federation's CA:
 *    a peer listener (TLS_AUTH_PEERS) requires a client certificate signed
 *    by the CA; every dialer requires the server's certificate to be signed
 *    by the CA and to name the server it expects (for peers, their
 *    jurisdiction from the cluster file). The client API listener
 *    (TLS_AUTH_NONE) shows its certificate and asks none of clients: they
 *    authenticate by signing their requests.
 *
 * What it costs: each listener and dialer gets its own configuration (nng
 * ties the expected server name to the configuration), so the CA,
 * certificate and key are parsed once per listener or dialer, at start.
 * The files are read once, by tls_load; new files take a restart.
 *
 * What it cannot do (nng 1.5): a listener cannot learn which certificate a
 * client presented (nng 1.5 has no NNG_OPT_TLS_PEER_CN), so a peer listener
 * knows "a node of the federation" only. Which node is proven by the
 * node-key signature on every peer message (cluster/peermsg.c), which stays
 * in force over TLS. mbedTLS 2.28 matches the expected server name against
 * the certificate's DNS names only (not its IP addresses): a certificate
 * for a node clients reach by IP address lists that address as a DNS name
 * too (docs/operations.md).
 */
#ifndef APPEAL_TLS_H
#define APPEAL_TLS_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    TLS_FILE_BYTES_MAX = 256 * 1024, /* one PEM file: CA bundle, certificate chain or key */
    TLS_PATH_BYTES = 1024,
};

/* The PEM files of a node (CA, certificate, key) or of a client (CA only),
 * read once. Immutable after tls_load: shared by every thread. */
struct tls {
    char *ca_pem;
    char *cert_pem; /* NULL: no certificate of our own (appealctl) */
    char *key_pem;  /* wiped when freed */
    size_t key_bytes;
    char ca_path[TLS_PATH_BYTES]; /* for messages */
    char cert_path[TLS_PATH_BYTES];
    char key_path[TLS_PATH_BYTES];
};

enum tls_auth {
    TLS_AUTH_PEERS, /* clients must show a certificate signed by the CA */
    TLS_AUTH_NONE,  /* clients show none: the client API */
};

/* True for a tls+tcp:// (or any tls+) address. */
bool tls_url(const char *url);

/* 0 if this libnng can make TLS configurations; APL_EUNAVAIL with "this nng
 * has no TLS (tls+tcp://) ..." otherwise. */
int tls_probe(struct errbuf *e);

/* The name of nng's TLS engine ("mbed"), or "none". */
const char *tls_engine(void);

/* Reads the CA file and, unless NULL, the certificate and key files (both
 * or neither), and checks that nng can use them. Refuses a key file that
 * its group or others may read. Errors name the file and say what is wrong. */
int tls_load(struct tls **out, const char *ca_path, const char *cert_path, const char *key_path,
             struct errbuf *e);
void tls_free(struct tls *t);

/* Creates and starts a listener of `s` on `url`. `what` says what it is for,
 * in errors: "cannot {what} on {url}: ...". `out` may be NULL. */
int tls_listen(nng_socket s, const char *url, const struct tls *t, enum tls_auth auth,
               const char *what, nng_listener *out, struct errbuf *e);

/* Creates and starts a dialer of `s` to `url` (nng's `flags`: 0 waits for
 * the first connection, NNG_FLAG_NONBLOCK connects in the background and
 * retries). `server_name` is the name the server's certificate must carry;
 * NULL: the URL's host. `out` may be NULL. */
int tls_dial(nng_socket s, const char *url, const struct tls *t, const char *server_name, int flags,
             const char *what, nng_dialer *out, struct errbuf *e);

/* Checks a node's certificate by TLS handshakes with itself over
 * loopback (a few milliseconds at start), so that a wrong file is refused
 * with its reason rather than found by every peer: the certificate goes
 * with the key, is signed by the CA, is valid now and for both servers and
 * clients, and names `name` (a jurisdiction; NULL: not checked). Skipped
 * when loopback cannot be listened on. */
int tls_check_own(const struct tls *t, const char *name, struct errbuf *e);

/* Connections of dialer `d` whose TLS handshake failed on a certificate
 * (ours refused, or theirs not trusted) since it started; 0 when nng keeps
 * no statistics. Takes a snapshot of nng's statistics: call it on errors,
 * not per message. */
uint64_t tls_dialer_cert_failures(nng_dialer d);

#endif
