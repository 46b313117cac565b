#include "names.h"

#include "lifecycle.h"

/* The machine names, marked for extraction with their context: xgettext
 * reads these lines (po/update), the catalogue holds their display names. */
static const char *const marks[] __attribute__((unused)) = {
    NC_("appeal type", "statement"), NC_("appeal type", "proposal"), NC_("appeal type", "request"),
    NC_("appeal type", "complaint"), NC_("appeal type", "report"),   NC_("appeal type", "feedback"),
    NC_("status", "registered"),     NC_("status", "assigned"),      NC_("status", "extended"),
    NC_("status", "forwarded"),      NC_("status", "answered"),      NC_("status", "closed"),
    NC_("status", "withdrawn"),      NC_("status", "reopened"),      NC_("outcome", "satisfied"),
    NC_("outcome", "partly"),        NC_("outcome", "rejected"),     NC_("outcome", "explained"),
};

const char *names_type(const struct i18n *t, enum i18n_lang lang, int type) {
    return i18n_pget(t, lang, "appeal type", appeal_type_name(type));
}

const char *names_status(const struct i18n *t, enum i18n_lang lang, int status) {
    return i18n_pget(t, lang, "status", status_name((Appeal__Status)status));
}

const char *names_outcome(const struct i18n *t, enum i18n_lang lang, int outcome) {
    return i18n_pget(t, lang, "outcome", outcome_name((Appeal__Outcome)outcome));
}

const char *names_category(const struct category *c, enum i18n_lang lang) {
    switch (lang) {
    case I18N_KK:
        return c->name_kk;
    case I18N_RU:
        return c->name_ru;
    default:
        return c->name;
    }
}
