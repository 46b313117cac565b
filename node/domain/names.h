/*
 * names.h: what a person reads for the fixed names of the registry, in
 * Kazakh, Russian or English: appeal types, statuses, outcomes (from the
 * gettext catalogue, msgctxt "appeal type", "status", "outcome"), and the
 * classifier's categories (from categories.tsv, docs/rules.md).
 *
 * The machine names ("statement", "answered", ...) stay what the command
 * line, JSON and records use; these are for display only. The Kazakh and
 * Russian terms of the types are those of the Administrative Procedural and
 * Process Code (docs/decisions/0015-terms-of-the-code.md).
 */
#ifndef APPEAL_NAMES_H
#define APPEAL_NAMES_H

#include "i18n.h"
#include "ruleset.h"

/* The display name of an appeal type (Appeal__AppealType), status
 * (Appeal__Status) or outcome (Appeal__Outcome) in `lang`; the machine name
 * when the catalogue has none; "unknown" for a value out of range. */
const char *names_type(const struct i18n *t, enum i18n_lang lang, int type);
const char *names_status(const struct i18n *t, enum i18n_lang lang, int status);
const char *names_outcome(const struct i18n *t, enum i18n_lang lang, int outcome);

/* A category's name in `lang`. */
const char *names_category(const struct category *c, enum i18n_lang lang);

#endif
