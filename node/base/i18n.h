/*
 * i18n.h: messages and names in Kazakh, Russian or English, per call.
 *
 * The translations are GNU gettext catalogues: po/kk.po and po/ru.po in
 * the repository, compiled by msgfmt at build time into
 * LOCALEDIR/LANG/LC_MESSAGES/appeal.mo (docs/i18n.md). English is the
 * source language: the msgid is the English text, so English needs no
 * catalogue and a missing translation shows English, never nothing.
 *
 * Why not libc's gettext(): it translates into the language of the
 * process's locale (setlocale, LANGUAGE), which is one per process and
 * needs the locale generated on the machine. A node answers citizens and
 * officials in many languages at once (Open311 by Accept-Language,
 * notifications in the language of the appeal), from several threads. So
 * this module reads the same .mo files itself, once, into memory, and every
 * lookup names its language: i18n_get(t, I18N_KK, "...") is thread-safe
 * (the tables are read-only after i18n_open), does not touch the process
 * locale, and works on a machine with no kk_KZ locale installed.
 *
 * Extraction: xgettext finds the messages by the keywords below
 * (po/update: _ N_ C_:1c,2 NC_:1c,2 P_:1,2), so a C string a person reads
 * is written as i18n_get(t, lang, "...") with an N_("...") marker where
 * it is defined, or, in a command-line program that has one language per
 * run, as _("...") over its own default (tools/appealctl.c).
 *
 * Plurals: each catalogue's Plural-Forms header must be one of the rules
 * this module knows (en/kk: two forms, n != 1; ru: three forms); an unknown
 * rule refuses the catalogue at open, so a plural is never chosen wrongly.
 *
 * Costs: one read of each .mo at open (kk and ru; at most
 * I18N_CATALOG_BYTES_MAX each), a binary search per lookup.
 */
#ifndef APPEAL_I18N_H
#define APPEAL_I18N_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum i18n_lang {
    I18N_EN = 0, /* the source language: no catalogue */
    I18N_KK = 1, /* Kazakh, Cyrillic: the state language */
    I18N_RU = 2,
    I18N_LANG_COUNT = 3,
};

enum {
    I18N_CATALOG_BYTES_MAX = 4 * 1024 * 1024, /* one .mo file */
    I18N_PATH_BYTES_MAX = 4096,
    I18N_ACCEPT_ITEMS_MAX = 32, /* Accept-Language entries looked at */
};

/* The gettext text domain: the catalogues are LOCALEDIR/LANG/LC_MESSAGES/appeal.mo. */
#define I18N_DOMAIN "appeal"

struct i18n_catalog {
    unsigned char *data; /* the whole .mo file; NULL: none (English shown) */
    size_t len;
    uint32_t count;     /* entries */
    uint32_t orig_off;  /* table of (length, offset) of the msgids */
    uint32_t trans_off; /* table of (length, offset) of the translations */
    int plural_rule;    /* which known Plural-Forms rule */
};

struct i18n {
    struct i18n_catalog cat[I18N_LANG_COUNT];
};

/* "en", "kk", "ru". */
const char *i18n_lang_code(enum i18n_lang lang);

/* True for exactly "kk", "ru" or "en": the codes records and requests
 * carry (AppealFiled.lang, docs/record-format.md). */
bool i18n_lang_valid(const char *code);

/* Parses a language tag or locale name: "kk", "kk-KZ", "kk_KZ.UTF-8",
 * "ru_RU@euro", "RU". APL_EINVAL for anything that is not kk, ru or en
 * (the caller decides the fallback). */
int i18n_lang_parse(const char *s, enum i18n_lang *out);

/* The language of the person running a command, from the environment as
 * gettext reads it: the first of LANGUAGE's colon list that is kk, ru or
 * en; else LC_ALL, else LC_MESSAGES, else LANG. English when none of them
 * names one of the three (C, POSIX, de_DE, unset). */
enum i18n_lang i18n_lang_from_env(void);

/* The language an HTTP client asks for: the Accept-Language entry with the
 * highest q (RFC 9110 12.5.4; ties in the order given) that is kk, ru or
 * en; `fallback` when the header is NULL, empty, malformed or names none of
 * them. At most I18N_ACCEPT_ITEMS_MAX entries are read. */
enum i18n_lang i18n_negotiate(const char *accept_language, enum i18n_lang fallback);

/* Where the catalogues are: $APPEAL_LOCALEDIR if set; else
 * DIR-OF-THE-PROGRAM/../share/locale when it holds the catalogues (the
 * build tree: build/bin/../share/locale; an install: /usr/bin/../share/locale);
 * else the LOCALEDIR compiled in (CMAKE_INSTALL_FULL_LOCALEDIR). */
void i18n_localedir(char *out, size_t cap);

/* Loads the kk and ru catalogues from `localedir` (NULL: i18n_localedir()).
 * A missing file is not an error: that language shows English (lookups
 * fall back per message). A file that is there but malformed, too large or
 * has an unknown Plural-Forms rule is APL_ECORRUPT with the path named in
 * `e`, and nothing is kept for that language. Release with i18n_close(). */
int i18n_open(struct i18n *t, const char *localedir, struct errbuf *e);
void i18n_close(struct i18n *t);

/* True when `lang` has a catalogue loaded (always for English). */
bool i18n_has(const struct i18n *t, enum i18n_lang lang);

/* The translation of `msgid` into `lang`, or `msgid` itself when there is
 * none (English, no catalogue, untranslated). Never NULL; the result lives
 * as long as `t` or `msgid`. */
const char *i18n_get(const struct i18n *t, enum i18n_lang lang, const char *msgid)
    __attribute__((format_arg(3)));
/* The same for `msgid` in the context `ctx` (msgctxt): "status", "type",
 * "outcome" name the same English word in different roles. */
const char *i18n_pget(const struct i18n *t, enum i18n_lang lang, const char *ctx, const char *msgid)
    __attribute__((format_arg(4)));
/* The form of `singular`/`plural` for the count `n` in `lang`. */
const char *i18n_nget(const struct i18n *t, enum i18n_lang lang, const char *singular,
                      const char *plural, unsigned long n) __attribute__((format_arg(3)));

/* Extraction markers (xgettext keywords in po/update): a string defined
 * in one place and translated where it is shown. */
#define N_(s)       (s)
#define NC_(ctx, s) (s)

#endif
