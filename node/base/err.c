#include "err.h"

#include <stdio.h>
#include <string.h>

const char *apl_strerror(int code) {
    switch (code) {
    case APL_OK:
        return "ok";
    case APL_EINVAL:
        return "invalid input";
    case APL_ENOTFOUND:
        return "not found";
    case APL_ETRANSITION:
        return "invalid transition";
    case APL_EREFUSED:
        return "refused by the rules";
    case APL_ETOOBIG:
        return "too large";
    case APL_EFULL:
        return "storage full";
    case APL_EUNAVAIL:
        return "unavailable";
    case APL_ENOMEM:
        return "out of memory";
    case APL_EIO:
        return "input/output error";
    case APL_ECORRUPT:
        return "stored data is corrupt";
    case APL_ENOTOWNER:
        return "not the owner";
    case APL_EAUTH:
        return "not authenticated";
    case APL_EFORBIDDEN:
        return "forbidden";
    case APL_ECHAIN:
        return "hash chain broken";
    case APL_ESIG:
        return "bad signature";
    case APL_EGAP:
        return "gap in the log";
    case APL_EFORK:
        return "fork";
    case APL_EORIGIN:
        return "unknown origin";
    case APL_EFROZEN:
        return "origin frozen";
    case APL_EMAPFULL:
        return "map full";
    case APL_EDB:
        return "database error";
    case APL_ENET:
        return "network error";
    case APL_EEXIST:
        return "already exists";
    case APL_ETIMEDOUT:
        return "timed out";
    case APL_ESTORAGE:
        return "storage failed";
    default:
        return "unknown error";
    }
}

int err_set(struct errbuf *e, int code, const char *fmt, ...) {
    if (e != NULL) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void err_clear(struct errbuf *e) {
    e->code = 0;
    e->msg[0] = '\0';
}

const char *err_msg(const struct errbuf *e, int code) {
    if (e != NULL && e->msg[0] != '\0') {
        return e->msg;
    }
    return apl_strerror(code);
}
