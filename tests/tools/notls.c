/*
 * notls: makes Debian's libnng look like one built without a TLS engine,
 * for tests of what the node and appealctl say then. Preloaded
 * (LD_PRELOAD=libnotls.so) in front of libnng: nng's TLS stubs answer
 * exactly this way when NNG_ENABLE_TLS is off.
 */
#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

int nng_tls_config_alloc(nng_tls_config **cfg, nng_tls_mode mode) {
    (void)cfg;
    (void)mode;
    return NNG_ENOTSUP;
}

const char *nng_tls_engine_name(void) {
    return "none";
}
