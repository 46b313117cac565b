/*
 * ruleset.h: the statutory rules as data.
 *
 * A node's rules come from three files in its data directory, written with
 * Kazakhstan's defaults by `appeal-node init` and edited by the operator
 * (docs/rules.md): rules.conf (terms and policies), holidays.conf (the
 * working-day calendar, see cal.h) and categories.tsv (the classifier).
 * A file that is missing means the built-in default. A malformed file is
 * an error at start, naming the file and line: the node never runs on rules
 * it half understood.
 *
 * The rules decide what happens at ingest, on the origin only: deadlines
 * are computed once and written into the record, so replicas, `rebuild` and
 * a later change of the holiday file never rewrite history.
 */
#ifndef APPEAL_RULESET_H
#define APPEAL_RULESET_H

#include <stdbool.h>
#include <stdint.h>

#include "cal.h"
#include "err.h"

enum {
    RULES_CATEGORIES_MAX = 4096,
    RULES_CATEGORY_CODE_BYTES = 32,
    RULES_CATEGORY_NAME_BYTES = 96,
    RULES_FILE_BYTES_MAX = 1024 * 1024,
    RULES_JURIS_BYTES = 16,          /* "KZ-75" and its terminator, with room */
    RULES_HIGHER_OVERRIDES_MAX = 64, /* higher_body.JURIS lines */
    APPEAL_TYPE_COUNT = 7,           /* index 0 unused; matches Appeal__AppealType */
};

/* A classifier entry: its code and its name in English, Kazakh and Russian
 * (docs/rules.md: a line with only the English name gives that name in all
 * three). */
struct category {
    char code[RULES_CATEGORY_CODE_BYTES];
    char name[RULES_CATEGORY_NAME_BYTES];    /* English */
    char name_kk[RULES_CATEGORY_NAME_BYTES]; /* Kazakh */
    char name_ru[RULES_CATEGORY_NAME_BYTES]; /* Russian */
};

struct ruleset {
    int32_t utc_offset_min;          /* local time of the jurisdiction */
    int32_t term_working_days;       /* 15 */
    int32_t extension_max_months;    /* 2: at most two months in total */
    int32_t forward_working_days;    /* 3 */
    int32_t complaint_window_months; /* 3 */
    int32_t reopen_working_days;     /* term of a reopened appeal */
    uint32_t anonymous_types;        /* bit per Appeal__AppealType */
    uint32_t urgent_anonymous;       /* anonymous types flagged urgent */
    uint32_t co_signers_max;
    char default_lang[4]; /* language of an appeal filed without one: kk */
    /* The body a complaint about this node's answer goes to: higher_body
     * (default "KZ"), unless a higher_body.JURIS line names another for
     * JURIS; "none" (or the jurisdiction itself) means no higher body. */
    char higher_body[RULES_JURIS_BYTES];
    struct {
        char juris[RULES_JURIS_BYTES];
        char body[RULES_JURIS_BYTES];
    } higher_over[RULES_HIGHER_OVERRIDES_MAX];
    uint32_t higher_over_count;
    struct category *categories; /* sorted by code; owned */
    uint32_t category_count;
    struct calendar cal;
};

/* Loads DIR/rules.conf, DIR/holidays.conf and DIR/categories.tsv, each
 * falling back to its default when missing. Release with ruleset_fini(). */
int ruleset_load(struct ruleset *r, const char *dir, struct errbuf *e);
/* The same from texts (NULL: default); used by tests and by ruleset_load. */
int ruleset_parse(struct ruleset *r, const char *conf, const char *holidays, const char *categories,
                  struct errbuf *e);
void ruleset_fini(struct ruleset *r);

/* The higher body of `juris` into `out`, or "" when it has none (the
 * country itself, or `none`). */
void ruleset_higher_body(const struct ruleset *r, const char *juris, char out[RULES_JURIS_BYTES]);

const struct category *ruleset_category(const struct ruleset *r, const char *code);

/* 12 digits, a valid check digit, and for an IIN a valid birth date and
 * century digit. The message never echoes the number. */
int iin_check(const char *iin, struct errbuf *e);
/* The check digit of an IIN/BIN's first 11 digits, or -1 if none fits
 * (shared/data/appeal-facts.md). */
int iin_check_digit(const char *digits);

/* Name used on the command line and in JSON: "statement", ... */
const char *appeal_type_name(int type);
int appeal_type_parse(const char *s); /* 0 if unknown */

extern const char rules_default_conf[];
extern const char rules_default_categories[];

#endif
