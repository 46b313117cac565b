/*
 * roles.h: what an official's key may be granted (docs/security.md): the
 * roles and the jurisdictions each may be granted for. Pure functions,
 * used by record validation, the action rules and request checks.
 *
 * Roles:
 *   registrar  registers appeals; reads the node's appeals, personal data included
 *   official   acts on appeals (assign, answer, close, ...); reads them too
 *   national   reads aggregates and appeal metadata, never personal data
 *   operator   reads node info, replication status and metrics only
 *   admin      all of the above, and grants and revokes keys
 *   channel    files appeals only (a citizens' portal over Open311): the
 *              "key" granted is the BLAKE2b-256 hash of the channel's API
 *              key (docs/open311.md); not part of admin's roles
 * Every role but `national` is granted for the node's own jurisdiction;
 * `national` for the country (e.g. "KZ").
 */
#ifndef APPEAL_ROLES_H
#define APPEAL_ROLES_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

enum role {
    ROLE_REGISTRAR = 1u << 0,
    ROLE_OFFICIAL = 1u << 1,
    ROLE_NATIONAL = 1u << 2,
    ROLE_OPERATOR = 1u << 3,
    ROLE_ADMIN = 1u << 4,
    ROLE_ALL = (1u << 5) - 1,
    ROLE_CHANNEL = 1u << 5, /* outside ROLE_ALL: an admin key is no channel */
    ROLE_LAST = ROLE_CHANNEL,
};

/* The bit of a role's name; 0 if there is no such role. */
uint32_t role_parse(const char *name);
/* The name of one role bit. */
const char *role_name(uint32_t bit);

/* Whether `juris` is a jurisdiction a key may be granted `role` for on the
 * node of `node_juris`; on false, `e` says why. */
bool role_scope_ok(uint32_t role, const char *juris, const char *node_juris, struct errbuf *e);

#endif
