#include "lifecycle.h"

#include <string.h>

#define S(x) (1u << APPEAL__STATUS__STATUS_##x)

enum {
    IN_WORK = S(REGISTERED) | S(ASSIGNED) | S(EXTENDED) | S(REOPENED),
};

struct rule {
    Appeal__Body__EventCase event;
    unsigned from;
    const char *needs;
};

static const struct rule rules[] = {
    {APPEAL__BODY__EVENT_ASSIGNED, IN_WORK, "registered, assigned, extended or reopened"},
    {APPEAL__BODY__EVENT_EXTENDED, IN_WORK, "registered, assigned, extended or reopened"},
    {APPEAL__BODY__EVENT_FORWARDED, IN_WORK, "registered, assigned, extended or reopened"},
    {APPEAL__BODY__EVENT_ACCEPTED, S(FORWARDED), "forwarded"},
    {APPEAL__BODY__EVENT_RETURNED, S(FORWARDED), "forwarded"},
    {APPEAL__BODY__EVENT_ANSWERED, IN_WORK, "registered, assigned, extended or reopened"},
    {APPEAL__BODY__EVENT_CLOSED, S(ANSWERED), "answered"},
    {APPEAL__BODY__EVENT_REOPENED, S(ANSWERED) | S(CLOSED), "answered or closed"},
    {APPEAL__BODY__EVENT_WITHDRAWN, IN_WORK, "registered, assigned, extended or reopened"},
    {APPEAL__BODY__EVENT_RATED, S(ANSWERED) | S(CLOSED), "answered or closed"},
};

static const struct rule *find(Appeal__Body__EventCase ev) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (rules[i].event == ev) {
            return &rules[i];
        }
    }
    return NULL;
}

bool lifecycle_allowed(Appeal__Body__EventCase ev, Appeal__Status status) {
    const struct rule *r = find(ev);
    return r != NULL && status > 0 && status < 32 && (r->from & (1u << status)) != 0;
}

const char *lifecycle_needs(Appeal__Body__EventCase ev) {
    const struct rule *r = find(ev);
    return r != NULL ? r->needs : "nothing";
}

bool lifecycle_open(Appeal__Status status) {
    return ((IN_WORK | S(FORWARDED)) & (1u << status)) != 0;
}

static const char *const status_names[] = {"unknown",  "registered", "assigned",
                                           "extended", "forwarded",  "answered",
                                           "closed",   "withdrawn",  "reopened"};

const char *status_name(Appeal__Status status) {
    return status > 0 && status <= APPEAL__STATUS__STATUS_REOPENED ? status_names[status]
                                                                   : "unknown";
}

Appeal__Status status_parse(const char *s) {
    for (int i = 1; i <= APPEAL__STATUS__STATUS_REOPENED; i++) {
        if (strcmp(s, status_names[i]) == 0) {
            return (Appeal__Status)i;
        }
    }
    return APPEAL__STATUS__STATUS_UNSPECIFIED;
}

static const char *const outcome_names[] = {"unknown", "satisfied", "partly", "rejected",
                                            "explained"};

const char *outcome_name(Appeal__Outcome o) {
    return o > 0 && o <= APPEAL__OUTCOME__OUTCOME_EXPLAINED ? outcome_names[o] : "unknown";
}

Appeal__Outcome outcome_parse(const char *s) {
    for (int i = 1; i <= APPEAL__OUTCOME__OUTCOME_EXPLAINED; i++) {
        if (strcmp(s, outcome_names[i]) == 0) {
            return (Appeal__Outcome)i;
        }
    }
    return APPEAL__OUTCOME__OUTCOME_UNSPECIFIED;
}
