#include "roles.h"

#include <stdio.h>
#include <string.h>

#include "record.h"

static const char *const role_names[] = {"registrar", "official", "national",
                                         "operator",  "admin",    "channel"};

uint32_t role_parse(const char *name) {
    for (uint32_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (strcmp(name, role_names[i]) == 0) {
            return 1u << i;
        }
    }
    return 0;
}

const char *role_name(uint32_t bit) {
    for (uint32_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
        if (bit == 1u << i) {
            return role_names[i];
        }
    }
    return "?";
}

bool role_scope_ok(uint32_t role, const char *juris, const char *node_juris, struct errbuf *e) {
    if (role == ROLE_NATIONAL) {
        size_t country = strcspn(node_juris, "-");
        if (strlen(juris) != country || strncmp(juris, node_juris, country) != 0) {
            err_set(e, APL_EINVAL, "the national role is granted for the country (%.*s), not %s",
                    (int)country, node_juris, juris);
            return false;
        }
        return true;
    }
    if (strcmp(juris, node_juris) != 0) {
        err_set(e, APL_EINVAL,
                "this node grants the %s role only for its own jurisdiction %s, not %s",
                role_name(role), node_juris, juris);
        return false;
    }
    return true;
}
