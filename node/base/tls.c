#include "tls.h"

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

bool tls_url(const char *url) {
    return strncmp(url, "tls+", 4) == 0;
}

const char *tls_engine(void) {
    return nng_tls_engine_name();
}

static int no_tls(int rv, struct errbuf *e) {
    return err_set(e, APL_EUNAVAIL,
                   "this nng has no TLS (tls+tcp://): %s (engine \"%s\"); install a libnng "
                   "built with mbedTLS (Debian's libnng1 is) or use tcp://",
                   nng_strerror(rv), nng_tls_engine_name());
}

int tls_probe(struct errbuf *e) {
    nng_tls_config *c;
    int rv = nng_tls_config_alloc(&c, NNG_TLS_MODE_CLIENT);
    if (rv != 0) {
        return no_tls(rv, e);
    }
    nng_tls_config_free(c);
    return 0;
}

/* Whose statement a failed configuration step is about, for messages. */
enum step { STEP_CA, STEP_OWN, STEP_OTHER };

static int make_config(const struct tls *t, nng_tls_mode mode, nng_tls_auth_mode auth,
                       const char *server_name, nng_tls_config **out, enum step *failed) {
    nng_tls_config *c;
    *failed = STEP_OTHER;
    int rv = nng_tls_config_alloc(&c, mode);
    if (rv != 0) {
        return rv;
    }
    *failed = STEP_CA;
    rv = nng_tls_config_ca_chain(c, t->ca_pem, NULL);
    if (rv == 0 && t->cert_pem != NULL) {
        *failed = STEP_OWN;
        rv = nng_tls_config_own_cert(c, t->cert_pem, t->key_pem, NULL);
    }
    if (rv == 0) {
        *failed = STEP_OTHER;
        rv = nng_tls_config_auth_mode(c, auth);
    }
    if (rv == 0 && server_name != NULL) {
        rv = nng_tls_config_server_name(c, server_name);
    }
    if (rv != 0) {
        nng_tls_config_free(c);
        return rv;
    }
    *out = c;
    return 0;
}

static int read_pem(const char *path, const char *what, bool secret, char **out, size_t *len,
                    struct errbuf *e) {
    struct stat st;
    if (stat(path, &st) != 0) {
        return err_set(e, APL_ENOTFOUND, "cannot read the TLS %s %s", what, path);
    }
    /* Like ssh: a private key others may read is no longer private. */
    if (secret && (st.st_mode & 077) != 0) {
        return err_set(e, APL_EREFUSED,
                       "the TLS key %s may be read by its group or others (mode %03o): "
                       "chmod 600 %s",
                       path, (unsigned)(st.st_mode & 0777), path);
    }
    int rc = util_read_file(path, TLS_FILE_BYTES_MAX, out, len);
    if (rc != 0) {
        return err_set(e, rc, "cannot read the TLS %s %s: %s", what, path, apl_strerror(rc));
    }
    if (strstr(*out, "-----BEGIN ") == NULL) {
        return err_set(e, APL_EINVAL, "the TLS %s %s is not PEM (no -----BEGIN line)", what, path);
    }
    return 0;
}

/* Builds one configuration now, so that a bad file is refused at start. */
static int check_usable(const struct tls *t, const char *cert_path, const char *key_path,
                        struct errbuf *e) {
    nng_tls_config *c;
    enum step failed;
    nng_tls_mode mode = t->cert_pem != NULL ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT;
    int rv = make_config(t, mode, NNG_TLS_AUTH_MODE_REQUIRED, NULL, &c, &failed);
    if (rv == 0) {
        nng_tls_config_free(c);
        return 0;
    }
    if (failed == STEP_CA) {
        return err_set(e, APL_EINVAL, "the TLS CA file %s holds no certificate nng can use: %s",
                       t->ca_path, nng_strerror(rv));
    }
    if (failed == STEP_OWN) {
        return err_set(e, APL_EINVAL,
                       "cannot use the TLS certificate %s with the key %s: %s (both PEM, the "
                       "key unencrypted)",
                       cert_path, key_path, nng_strerror(rv));
    }
    return rv == NNG_ENOTSUP ? no_tls(rv, e)
                             : err_set(e, APL_EINVAL, "cannot configure TLS: %s", nng_strerror(rv));
}

int tls_load(struct tls **out, const char *ca_path, const char *cert_path, const char *key_path,
             struct errbuf *e) {
    if (ca_path == NULL || (cert_path == NULL) != (key_path == NULL)) {
        return err_set(e, APL_EINVAL, "TLS needs a CA file, and a certificate with its key");
    }
    int rc = tls_probe(e);
    if (rc != 0) {
        return rc;
    }
    struct tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return APL_ENOMEM;
    }
    snprintf(t->ca_path, sizeof t->ca_path, "%s", ca_path);
    snprintf(t->cert_path, sizeof t->cert_path, "%s", cert_path ? cert_path : "");
    snprintf(t->key_path, sizeof t->key_path, "%s", key_path ? key_path : "");
    rc = read_pem(ca_path, "CA file", false, &t->ca_pem, NULL, e);
    if (rc == 0 && cert_path != NULL) {
        rc = read_pem(cert_path, "certificate", false, &t->cert_pem, NULL, e);
    }
    if (rc == 0 && key_path != NULL) {
        rc = read_pem(key_path, "key", true, &t->key_pem, &t->key_bytes, e);
    }
    if (rc == 0) {
        rc = check_usable(t, cert_path, key_path, e);
    }
    if (rc != 0) {
        tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tls_free(struct tls *t) {
    if (t == NULL) {
        return;
    }
    free(t->ca_pem);
    free(t->cert_pem);
    util_wipe_free(t->key_pem, t->key_bytes);
    free(t);
}

static int need_files(const char *url, const char *what, struct errbuf *e) {
    struct errbuf probe;
    err_clear(&probe);
    if (tls_probe(&probe) != 0) {
        return err_set(e, APL_EUNAVAIL, "cannot %s %s: %s", what, url, probe.msg);
    }
    return err_set(e, APL_EINVAL,
                   "cannot %s %s: a tls+tcp:// address needs --tls-ca, --tls-cert and --tls-key",
                   what, url);
}

static int config_error(int rv, enum step failed, const char *url, const char *what,
                        struct errbuf *e) {
    if (rv == NNG_ENOTSUP && failed == STEP_OTHER) {
        struct errbuf probe;
        err_clear(&probe);
        no_tls(rv, &probe);
        return err_set(e, APL_EUNAVAIL, "cannot %s %s: %s", what, url, probe.msg);
    }
    return err_set(e, APL_EINVAL, "cannot %s %s: cannot configure TLS: %s", what, url,
                   nng_strerror(rv));
}

int tls_listen(nng_socket s, const char *url, const struct tls *t, enum tls_auth auth,
               const char *what, nng_listener *out, struct errbuf *e) {
    if (tls_url(url) && (t == NULL || t->cert_pem == NULL)) {
        return need_files(url, what, e);
    }
    nng_listener l;
    int rv = nng_listener_create(&l, s, url);
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot %s %s: %s", what, url, nng_strerror(rv));
    }
    if (tls_url(url)) {
        nng_tls_config *c;
        enum step failed;
        rv = make_config(t, NNG_TLS_MODE_SERVER,
                         auth == TLS_AUTH_PEERS ? NNG_TLS_AUTH_MODE_REQUIRED
                                                : NNG_TLS_AUTH_MODE_NONE,
                         NULL, &c, &failed);
        if (rv != 0) {
            nng_listener_close(l);
            return config_error(rv, failed, url, what, e);
        }
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, c);
        nng_tls_config_free(c); /* the listener holds its own reference */
    }
    if (rv == 0) {
        rv = nng_listener_start(l, 0);
    }
    if (rv != 0) {
        nng_listener_close(l);
        return err_set(e, APL_ENET, "cannot %s %s: %s", what, url, nng_strerror(rv));
    }
    if (out != NULL) {
        *out = l;
    }
    return 0;
}

/* The statistics of endpoint `id` of `kind` ("dialer", "listener") under
 * `s`. (nng 1.5.2's nng_stat_find_dialer and _listener return the first
 * endpoint whatever its id.) */
static nng_stat *find_endpoint(nng_stat *s, const char *kind, int id) {
    for (; s != NULL; s = nng_stat_next(s)) {
        if (nng_stat_type(s) != NNG_STAT_SCOPE) {
            continue;
        }
        if (strcmp(nng_stat_name(s), kind) == 0) {
            for (nng_stat *c = nng_stat_child(s); c != NULL; c = nng_stat_next(c)) {
                if (strcmp(nng_stat_name(c), "id") == 0 && nng_stat_value(c) == (uint64_t)id) {
                    return s;
                }
            }
            continue;
        }
        nng_stat *found = find_endpoint(nng_stat_child(s), kind, id);
        if (found != NULL) {
            return found;
        }
    }
    return NULL;
}

/* Counter `name` of an endpoint; NULL: the sum of the counters of its
 * connections' outcomes (accepted or connected, and every kind of failure).
 * 0 when nng keeps no statistics. */
static uint64_t endpoint_count(const char *kind, int id, const char *name) {
    nng_stat *all;
    if (nng_stats_get(&all) != 0) {
        return 0;
    }
    uint64_t n = 0;
    nng_stat *mine = find_endpoint(all, kind, id);
    for (nng_stat *c = mine != NULL ? nng_stat_child(mine) : NULL; c != NULL;
         c = nng_stat_next(c)) {
        if (nng_stat_type(c) == NNG_STAT_COUNTER &&
            (name != NULL ? strcmp(nng_stat_name(c), name) == 0
                          : strcmp(nng_stat_name(c), "pipes") != 0)) {
            n += nng_stat_value(c);
        }
    }
    nng_stats_free(all);
    return n;
}

enum {
    SELF_SETUP_FAILED = 1, /* loopback unusable: the check is skipped */
    SELF_SETTLE_MS = 2000, /* the longest wait for our own listener's side of a handshake */
};

/* Listens on an ephemeral loopback port with server configuration `sc`;
 * its URL into `url`. */
static int self_listen(nng_socket s, nng_tls_config *sc, nng_listener *out, char *url, size_t cap) {
    nng_listener l;
    int port = 0;
    int rv = nng_listener_create(&l, s, "tls+tcp://127.0.0.1:0");
    if (rv == 0) {
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, sc);
    }
    if (rv == 0) {
        rv = nng_listener_start(l, 0);
    }
    if (rv == 0) {
        rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
    }
    snprintf(url, cap, "tls+tcp://127.0.0.1:%d", port);
    *out = l;
    return rv;
}

/* Waits until the listener is done with its one connection, added or
 * failed: nng 1.5 leaks a connection still negotiating when its socket
 * closes. */
static void self_settle(nng_listener l) {
    for (int waited_ms = 0; waited_ms < SELF_SETTLE_MS; waited_ms += 5) {
        if (endpoint_count("listener", nng_listener_id(l), NULL) > 0) {
            return;
        }
        nng_msleep(5);
    }
}

/* One handshake of ours with ourselves, both sides verifying as `verify`
 * says, the client expecting `name`: 0, SELF_SETUP_FAILED, or the dial's
 * nng error. */
static int self_handshake(const struct tls *t, nng_tls_auth_mode verify, const char *name) {
    nng_socket srv = NNG_SOCKET_INITIALIZER, cli = NNG_SOCKET_INITIALIZER;
    nng_tls_config *sc = NULL, *cc = NULL;
    nng_dialer d;
    nng_listener l;
    enum step failed;
    char url[64];
    int rv = nng_rep0_open(&srv);
    if (rv == 0) {
        rv = nng_req0_open(&cli);
    }
    if (rv == 0) {
        rv = make_config(t, NNG_TLS_MODE_SERVER, verify, NULL, &sc, &failed);
    }
    if (rv == 0) {
        rv = make_config(t, NNG_TLS_MODE_CLIENT, verify, name, &cc, &failed);
    }
    if (rv == 0) {
        rv = self_listen(srv, sc, &l, url, sizeof url);
    }
    if (rv == 0) {
        rv = nng_dialer_create(&d, cli, url);
    }
    if (rv == 0) {
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cc);
    }
    if (rv == 0) {
        rv = nng_dialer_start(d, 0);
        rv = rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH || rv == NNG_ECONNSHUT ? rv : 0;
        self_settle(l);
    } else {
        rv = SELF_SETUP_FAILED;
    }
    nng_close(cli);
    nng_close(srv);
    if (sc != NULL) {
        nng_tls_config_free(sc);
    }
    if (cc != NULL) {
        nng_tls_config_free(cc);
    }
    return rv;
}

int tls_check_own(const struct tls *t, const char *name, struct errbuf *e) {
    if (t->cert_pem == NULL) {
        return 0;
    }
    int rv = self_handshake(t, NNG_TLS_AUTH_MODE_NONE, NULL);
    if (rv == SELF_SETUP_FAILED) {
        return 0;
    }
    if (rv != 0) {
        return err_set(e, APL_EINVAL, "the TLS certificate %s does not go with the key %s (%s)",
                       t->cert_path, t->key_path, nng_strerror(rv));
    }
    if (self_handshake(t, NNG_TLS_AUTH_MODE_REQUIRED, NULL) != 0) {
        return err_set(e, APL_EINVAL,
                       "the TLS certificate %s is not signed by the CA in %s, is not valid "
                       "now, or is not for both servers and clients (extendedKeyUsage "
                       "serverAuth,clientAuth)",
                       t->cert_path, t->ca_path);
    }
    if (name != NULL && self_handshake(t, NNG_TLS_AUTH_MODE_REQUIRED, name) != 0) {
        return err_set(e, APL_EINVAL,
                       "the TLS certificate %s does not name %s: peers expect this node's "
                       "jurisdiction in it (subjectAltName DNS:%s)",
                       t->cert_path, name, name);
    }
    return 0;
}

/* The URL's host: what the server's certificate must name by default. */
static int url_host(const char *url, char *out, size_t cap) {
    nng_url *u;
    int rv = nng_url_parse(&u, url);
    if (rv != 0) {
        return rv;
    }
    int n = snprintf(out, cap, "%s", u->u_hostname);
    nng_url_free(u);
    return n > 0 && (size_t)n < cap ? 0 : NNG_EADDRINVAL;
}

/* Why a TLS dial failed, in words an operator can act on. */
static int dial_error(int rv, const char *url, const struct tls *t, const char *name,
                      const char *what, struct errbuf *e) {
    if (!tls_url(url)) {
        /* A TLS server drops a plain SP handshake without a word. */
        return err_set(e, APL_ENET, "cannot %s %s: %s%s", what, url, nng_strerror(rv),
                       rv == NNG_ECONNSHUT ? " (does it serve tls+tcp:// there?)" : "");
    }
    if (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH) {
        return err_set(e, APL_EAUTH,
                       "cannot %s %s: TLS handshake failed: the server's certificate is not "
                       "signed by the CA in %s or does not name %s%s",
                       what, url, t->ca_path, name,
                       t->cert_pem != NULL ? ", or it refused ours" : "");
    }
    if (rv == NNG_ECONNSHUT || rv == NNG_ECLOSED) {
        return err_set(e, APL_ENET,
                       "cannot %s %s: the server closed the connection during the TLS "
                       "handshake (does it want a client certificate, or speak plain tcp:// "
                       "there?)",
                       what, url);
    }
    return err_set(e, APL_ENET, "cannot %s %s: %s", what, url, nng_strerror(rv));
}

int tls_dial(nng_socket s, const char *url, const struct tls *t, const char *server_name, int flags,
             const char *what, nng_dialer *out, struct errbuf *e) {
    if (tls_url(url) && t == NULL) {
        return need_files(url, what, e);
    }
    nng_dialer d;
    int rv = nng_dialer_create(&d, s, url);
    if (rv != 0) {
        return err_set(e, APL_ENET, "cannot %s %s: %s", what, url, nng_strerror(rv));
    }
    char host[256];
    const char *name = server_name;
    if (tls_url(url)) {
        if (name == NULL && (rv = url_host(url, host, sizeof host)) == 0) {
            name = host;
        }
        nng_tls_config *c = NULL;
        enum step failed = STEP_OTHER;
        if (rv == 0) {
            rv = make_config(t, NNG_TLS_MODE_CLIENT, NNG_TLS_AUTH_MODE_REQUIRED, name, &c, &failed);
        }
        if (rv != 0) {
            nng_dialer_close(d);
            return config_error(rv, failed, url, what, e);
        }
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c);
        nng_tls_config_free(c); /* the dialer holds its own reference */
    }
    if (rv == 0) {
        rv = nng_dialer_start(d, flags);
    }
    if (rv != 0) {
        nng_dialer_close(d);
        return dial_error(rv, url, t, name, what, e);
    }
    if (out != NULL) {
        *out = d;
    }
    return 0;
}

uint64_t tls_dialer_cert_failures(nng_dialer d) {
    return endpoint_count("dialer", nng_dialer_id(d), "auth");
}
