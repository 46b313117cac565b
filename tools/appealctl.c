/*
 * appealctl: the command line of registrars, officials and scripts.
 *
 *   appealctl [--node URL] [--json] COMMAND [ARGS]
 *
 * Every command prints a readable answer, or with --json one JSON object
 * (scripts depend on its field names; docs/cli.md lists them). Exit
 * status: 0 done, 1 the node refused (the message says why), 2 usage,
 * 3 the node could not be reached.
 *
 * Languages (docs/i18n.md): the readable answers and the messages on stderr
 * are in Kazakh, Russian or English, by --lang or else LANGUAGE, LC_ALL,
 * LC_MESSAGES, LANG; --json output, exit status and error codes are the
 * same in every language. An error from the node is shown as the meaning of
 * its code in the caller's language, then the node's own (English) message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.pb-c.h"
#include "bounds.h"
#include "cal.h"
#include "client.h"
#include "channel.h"
#include "clusterfile.h"
#include "receipt.h"
#include "json.h"
#include "jsonout.h"
#include "i18n.h"
#include "keys.h"
#include "lifecycle.h"
#include "names.h"
#include "query.h"
#include "ruleset.h"
#include "util.h"

enum { ARGS_MAX = 64, POS_MAX = 8, DEFAULT_TIMEOUT_MS = 15000 };

/* The language of this run: set once in main, before anything is printed,
 * and only read after. (A command-line program has one reader.) */
static struct i18n cli_i18n;
static enum i18n_lang cli_lang = I18N_EN;
#define _(s)        i18n_get(&cli_i18n, cli_lang, s)
#define P_(s, p, n) i18n_nget(&cli_i18n, cli_lang, s, p, n)

struct opt {
    const char *name;
    bool has_arg;
};

static const struct opt known[] = {
    {"node", true},
    {"json", false},
    {"timeout", true},
    {"type", true},
    {"category", true},
    {"subject", true},
    {"body", true},
    {"applicant-name", true},
    {"applicant-iin", true},
    {"applicant-address", true},
    {"applicant-contacts", true},
    {"anonymous", false},
    {"co-signers", true},
    {"repeat-of", true},
    {"learned", true},
    {"late-reason", true},
    {"status", true},
    {"overdue", false},
    {"failed", false},
    {"limit", true},
    {"after", true},
    {"owner", true},
    {"all", false},
    {"to", true},
    {"until", true},
    {"reason", true},
    {"outcome", true},
    {"text", true},
    {"assignee", true},
    {"incoming", false},
    {"by", true},
    {"region", true},
    {"from", true},
    {"live", false},
    {"deadline-ms", true},
    {"groups-max", true},
    {"csv", false},
    {"period", true},
    {"min-group", true},
    {"key", true},
    {"role", true},
    {"jurisdiction", true},
    {"label", true},
    {"mine", false},
    {"out", true},
    {"tls-ca", true},
    {"rate", true},
    {"cluster", true},
    {"tls-server-name", true},
    {"help", false},
    {"version", false},
    {"lang", true},
    {"appeal-lang", true},
};

struct cli {
    const char *vals[sizeof known / sizeof known[0]];
    bool set[sizeof known / sizeof known[0]];
    const char *pos[POS_MAX];
    int npos;
};

static const char *const usage = N_(
    "usage: appealctl [--node URL] [--key FILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "Requests are signed with the official's key FILE (default: $APPEAL_KEY);\n"
    "the node checks the key's role before it answers.\n"
    "\n"
    "  file --type TYPE --category CODE --subject TEXT [--body TEXT]\n"
    "       [--applicant-name NAME] [--applicant-iin IIN] [--applicant-address ADDR]\n"
    "       [--applicant-contacts PHONE/EMAIL] [--anonymous] [--co-signers N]\n"
    "       [--repeat-of NUMBER] [--learned DATE --late-reason TEXT]\n"
    "       [--appeal-lang kk|ru|en]   the language the applicant is answered in\n"
    "       TYPE: statement, proposal, request, complaint, report, feedback\n"
    "  show NUMBER\n"
    "  list [--status STATUS] [--overdue] [--incoming] [--owner CODE] [--limit N]\n"
    "       [--after TOKEN] [--all]\n"
    "  assign NUMBER --to NAME\n"
    "  extend NUMBER --until YYYY-MM-DD --reason TEXT\n"
    "  answer NUMBER --outcome satisfied|partly|rejected|explained --text TEXT\n"
    "  close NUMBER\n"
    "  withdraw NUMBER [--reason TEXT]\n"
    "  reopen NUMBER --reason TEXT\n"
    "  forward NUMBER --to CODE --reason TEXT\n"
    "  accept NUMBER\n"
    "  return NUMBER --reason TEXT\n"
    "  stats --by FIELDS [--region R,..] [--owner O,..] [--type T,..] [--category C,..]\n"
    "        [--status S,..] [--from DATE] [--to DATE] [--overdue] [--live] [--csv]\n"
    "        FIELDS: region office owner type category section status year month day is_overdue\n"
    "  overdue [--region CODE,..] [--limit N]   overdue appeals, no personal data\n"
    "  notifications [NUMBER] [--failed]  notifications to applicants, delivery state\n"
    "  find NUMBER          where an appeal is now, and its history\n"
    "  export --by FIELDS [--period month|year|day] [--min-group N] [--csv]\n"
    "        anonymised aggregates for publication (groups under N suppressed)\n"
    "  info\n"
    "  cluster status      replication: peers, origins, lag, forks\n"
    "  metrics             the node's metrics (Prometheus text format)\n"
    "\n"
    "  keygen --out FILE   a new official's key: FILE (secret, 0600) and FILE.pub\n"
    "  grant PUBLIC --role ROLE [--jurisdiction CODE] [--label TEXT]   (admin)\n"
    "       ROLE: registrar, official, national, operator, admin\n"
    "  revoke PUBLIC [--reason TEXT]                                   (admin)\n"
    "  grants [--mine]     the keys this node granted (--mine: the caller's)\n"
    "  whoami              the caller's key and roles on this node\n"
    "  channel add --label TEXT [--rate N]   a citizens' portal's Open311 API key,\n"
    "                      printed once; N filings a minute (default 600)  (admin)\n"
    "  channel list        the channels (id, label, rate, state)          (admin)\n"
    "  channel revoke ID [--reason TEXT]    its key files nothing more     (admin)\n"
    "  channel rate ID N   its filings a minute                            (admin)\n"
    "  receipt verify FILE|HEX --cluster FILE   checks a receipt offline (no node)\n"
    "  --help, --version   this text; the version\n"
    "\n"
    "The node defaults to $APPEAL_NODE or tcp://127.0.0.1:7100. For tls+tcp:// nodes,\n"
    "--tls-ca FILE (or $APPEAL_TLS_CA) is the federation's CA certificate; the node's\n"
    "certificate must name the URL's host, or --tls-server-name NAME.\n"
    "--lang kk|ru|en: the language of the answers (default: from $LANG); --json is\n"
    "the same in every language.\n");

static int find_opt(const char *name) {
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(known[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static const char *opt(const struct cli *c, const char *name) {
    int i = find_opt(name);
    return i >= 0 && c->set[i] ? (c->vals[i] ? c->vals[i] : "") : NULL;
}

static bool flag(const struct cli *c, const char *name) {
    return opt(c, name) != NULL;
}

static int parse(int argc, char **argv, struct cli *c) {
    memset(c, 0, sizeof *c);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (c->npos >= POS_MAX) {
                fprintf(stderr, _("appealctl: too many arguments\n"));
                return -1;
            }
            c->pos[c->npos++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        char name[64];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
        int k = find_opt(name);
        if (k < 0) {
            fprintf(stderr, _("appealctl: unknown option --%s\n"), name);
            return -1;
        }
        c->set[k] = true;
        if (known[k].has_arg) {
            if (eq != NULL) {
                c->vals[k] = eq + 1;
            } else if (i + 1 < argc) {
                c->vals[k] = argv[++i];
            } else {
                fprintf(stderr, _("appealctl: --%s needs a value\n"), name);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- output ---- */

static void fmt_time(int64_t ms, char *buf, size_t n) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_day(int32_t day, char buf[11]) {
    if (day == 0) {
        snprintf(buf, 11, "-");
    } else {
        day_format(day, buf);
    }
}

static void json_day(struct json *j, const char *k, int32_t day) {
    char d[11];
    if (day == 0) {
        json_null(j, k);
    } else {
        day_format(day, d);
        json_str(j, k, d);
    }
}

static void json_row(struct json *j, const Appeal__AppealRow *r) {
    char t[32];
    json_str(j, "number", r->number);
    json_str(j, "type", appeal_type_name(r->type));
    json_str(j, "category", r->category);
    json_str(j, "status", status_name(r->status));
    json_str(j, "owner", r->owner);
    json_str(j, "received_by", r->received_by);
    fmt_time(r->registered_ms, t, sizeof t);
    json_str(j, "registered", t);
    json_day(j, "registered_day", r->registered_day);
    json_day(j, "deadline", r->deadline_day);
    json_day(j, "term", r->term_day);
    json_bool(j, "anonymous", r->anonymous);
    json_uint(j, "co_signers", r->co_signers);
    json_str(j, "repeat_of", r->repeat_of);
    json_str(j, "complaint_of", r->complaint_of);
    json_str(j, "assignee", r->assignee);
    if (r->outcome != 0) {
        json_str(j, "outcome", outcome_name(r->outcome));
    } else {
        json_null(j, "outcome");
    }
    json_day(j, "answered_day", r->answered_day);
    json_str(j, "forwarded_to", r->forwarded_to);
    json_bool(j, "urgent", r->urgent);
    json_uint(j, "version", r->version);
    json_str(j, "lang", r->lang);
}

static const char *outbox_state_name(Appeal__OutboxState st) {
    switch (st) {
    case APPEAL__OUTBOX_STATE__OUTBOX_SENT:
        return "sent";
    case APPEAL__OUTBOX_STATE__OUTBOX_FAILED:
        return "failed";
    default:
        return "queued";
    }
}

/* One notification (an outbox row, address withheld by the node). */
static void json_notification(struct json *j, const Appeal__OutboxRow *r) {
    char t[32];
    json_obj(j, NULL);
    json_uint(j, "id", r->id);
    json_str(j, "number", r->number);
    json_uint(j, "version", r->version);
    json_str(j, "event", r->event);
    json_str(j, "channel", r->channel);
    json_str(j, "idem_key", r->idem_key);
    json_str(j, "state", outbox_state_name(r->state));
    json_uint(j, "attempts", r->attempts);
    fmt_time(r->created_ms, t, sizeof t);
    json_str(j, "created", t);
    if (r->done_ms) {
        fmt_time(r->done_ms, t, sizeof t);
        json_str(j, "done", t);
    } else {
        json_null(j, "done");
    }
    json_str(j, "last_error", r->last_error);
    json_end_obj(j);
}

static void print_notification_text(const Appeal__OutboxRow *r) {
    char t[32];
    fmt_time(r->created_ms, t, sizeof t);
    printf("    %s  %-20s v%-3u %-9s %-5s %-6s %u %s\n", t, r->number, r->version, r->event,
           r->channel, outbox_state_name(r->state), r->attempts, r->last_error);
}

static void print_view_notifications(const Appeal__AppealView *v) {
    if (v->n_notifications) {
        printf(_("  notifications\n"));
        for (size_t i = 0; i < v->n_notifications; i++) {
            print_notification_text(v->notifications[i]);
        }
    }
}

static void print_view_json(struct json *j, const Appeal__AppealView *v) {
    json_obj(j, NULL);
    json_row(j, v->row);
    json_bool(j, "overdue", v->overdue);
    json_int(j, "days_overdue", v->days_overdue);
    json_arr(j, "history");
    for (size_t i = 0; i < v->n_history; i++) {
        const Appeal__HistoryEntry *h = v->history[i];
        char t[32];
        fmt_time(h->time_ms, t, sizeof t);
        json_obj(j, NULL);
        json_str(j, "kind", h->kind);
        json_str(j, "jurisdiction", h->jurisdiction);
        json_uint(j, "seq", h->seq);
        json_str(j, "time", t);
        json_str(j, "detail", h->detail);
        json_hex(j, "actor", h->actor.data, h->actor.len);
        json_end_obj(j);
    }
    json_end_arr(j);
    if (v->personal != NULL) {
        const Appeal__Personal *p = v->personal;
        json_obj(j, "personal");
        json_str(j, "name", p->name);
        json_str(j, "iin", p->iin);
        json_str(j, "address", p->address);
        json_str(j, "contacts", p->contacts);
        json_str(j, "subject", p->subject);
        json_str(j, "body", p->body);
        json_str(j, "answer_text", p->answer_text);
        json_end_obj(j);
    } else {
        json_null(j, "personal");
    }
    json_bool(j, "personal_withheld", v->personal_withheld);
    json_arr(j, "notifications");
    for (size_t i = 0; i < v->n_notifications; i++) {
        json_notification(j, v->notifications[i]);
    }
    json_end_arr(j);
    json_end_obj(j);
    json_done(j);
}

/* The appeals a row names: the earlier one it repeats, the one whose
 * answer it is a complaint about. */
static void print_links(const Appeal__AppealRow *r) {
    if (r->repeat_of[0]) {
        printf(_("  repeat of  %s\n"), r->repeat_of);
    }
    if (r->complaint_of[0]) {
        printf(_("  complaint about the answer to %s\n"), r->complaint_of);
    }
}

enum { KATO_FILE_BYTES_MAX = 16 * 1024 * 1024, OFFICE_NAME_BYTES = 256 };

/* An office's name in the CLI's language from a KATO file (the columns of
 * tools/data/kato-sample.tsv): $APPEAL_KATO, else the installed sample.
 * False when there is none, or the office is not listed. */
static bool office_name(const char *juris, char out[OFFICE_NAME_BYTES]) {
    const char *dot = strchr(juris, '.');
    const char *path = getenv("APPEAL_KATO");
    char *text = NULL;
    if (dot == NULL || util_read_file(path ? path : "/usr/share/appeal-node/kato-sample.tsv",
                                      KATO_FILE_BYTES_MAX, &text, NULL) != 0) {
        return false;
    }
    int col = cli_lang == I18N_KK ? 1 : cli_lang == I18N_RU ? 2 : 3;
    bool found = false;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL && !found;
         line = strtok_r(NULL, "\n", &save)) {
        char *in = NULL, *cell = strtok_r(line, "\t", &in);
        if (cell == NULL || line[0] == '#' || strcmp(cell, dot + 1) != 0) {
            continue;
        }
        for (int i = 0; i < col && cell != NULL; i++) {
            cell = strtok_r(NULL, "\t", &in);
        }
        if (cell != NULL) {
            snprintf(out, OFFICE_NAME_BYTES, "%s", cell);
            found = true;
        }
    }
    free(text);
    return found;
}

/* The names of the offices that registered and own the appeal. */
static void print_offices(const Appeal__AppealRow *r) {
    char name[OFFICE_NAME_BYTES];
    if (office_name(r->received_by, name)) {
        printf(_("  office     %s: %s\n"), r->received_by, name);
    }
    if (strcmp(r->owner, r->received_by) != 0 && office_name(r->owner, name)) {
        printf(_("  office     %s: %s\n"), r->owner, name);
    }
}

static void print_view_text(const Appeal__AppealView *v) {
    const Appeal__AppealRow *r = v->row;
    char d[11], t[32];
    printf(_("%s  %s, category %s\n"), r->number, names_type(&cli_i18n, cli_lang, r->type),
           r->category);
    printf(_("  status     %s%s\n"), names_status(&cli_i18n, cli_lang, r->status),
           r->forwarded_to[0] ? " (waiting for the receiver)" : "");
    printf(_("  owner      %s (registered by %s)\n"), r->owner, r->received_by);
    print_offices(r);
    fmt_time(r->registered_ms, t, sizeof t);
    printf(_("  registered %s\n"), t);
    fmt_day(r->deadline_day, d);
    if (v->overdue) {
        printf(_("  deadline   %s  OVERDUE by %d working days\n"), d, v->days_overdue);
    } else {
        printf(_("  deadline   %s\n"), d);
    }
    if (r->lang[0]) {
        printf(_("  language   %s\n"), r->lang);
    }
    if (r->assignee[0]) {
        printf(_("  assignee   %s\n"), r->assignee);
    }
    if (r->outcome) {
        fmt_day(r->answered_day, d);
        printf(_("  answer     %s on %s\n"), names_outcome(&cli_i18n, cli_lang, r->outcome), d);
    }
    if (r->co_signers) {
        printf(_("  collective %u co-signers\n"), r->co_signers);
    }
    if (r->anonymous) {
        printf(_("  anonymous%s\n"), r->urgent ? _(", urgent") : "");
    }
    print_links(r);
    if (v->personal != NULL) {
        const Appeal__Personal *p = v->personal;
        printf(_("  applicant  %s%s%s\n"), p->name[0] ? p->name : _("(anonymous)"),
               p->iin[0] ? _(", IIN ") : "", p->iin);
        if (p->address[0]) {
            printf(_("  address    %s\n"), p->address);
        }
        if (p->contacts[0]) {
            printf(_("  contacts   %s\n"), p->contacts);
        }
        printf(_("  subject    %s\n"), p->subject);
        if (p->body[0]) {
            printf(_("  text       %s\n"), p->body);
        }
        if (p->answer_text[0]) {
            printf(_("  answered   %s\n"), p->answer_text);
        }
    } else if (v->personal_withheld) {
        printf(_("  personal data withheld: only the owner's node opens it, for its registrars "
                 "and officials\n"));
    }
    printf(_("  history\n"));
    for (size_t i = 0; i < v->n_history; i++) {
        const Appeal__HistoryEntry *h = v->history[i];
        fmt_time(h->time_ms, t, sizeof t);
        char by[KEY_SHORT_HEX + 1] = "-";
        if (h->actor.len == KEY_PK_BYTES) {
            util_hex(h->actor.data, KEY_SHORT_HEX / 2, by);
        }
        printf(_("    %s  %-6s #%-6llu by %s  %s\n"), t, h->jurisdiction,
               (unsigned long long)h->seq, by, h->detail);
    }
    print_view_notifications(v);
}

static void print_receipt(bool as_json, const char *verb, const Appeal__Receipt *r) {
    char d[11], t[32];
    fmt_day(r->deadline_day, d);
    fmt_time(r->registered_ms, t, sizeof t);
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_str(&j, "number", r->number);
        json_str(&j, "type", appeal_type_name(r->type));
        json_str(&j, "status", status_name(r->status));
        json_str(&j, "registered", t);
        json_day(&j, "deadline", r->deadline_day);
        json_str(&j, "receiving_body", r->receiving_body);
        json_str(&j, "repeat_of", r->repeat_of);
        json_bool(&j, "urgent", r->urgent);
        json_uint(&j, "seq", r->seq);
        json_hex(&j, "origin", r->origin.data, r->origin.len);
        json_hex(&j, "record", r->record.data, r->record.len);
        if (r->access_code[0] != '\0') {
            json_str(&j, "access_code", r->access_code);
        }
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    if (strcmp(verb, "grant") == 0 || strcmp(verb, "revoke") == 0) {
        printf(_("ok: %s (log seq %llu)\n"),
               strcmp(verb, "grant") == 0 ? _("granted") : _("revoked"),
               (unsigned long long)r->seq);
    } else if (strcmp(verb, "file") == 0) {
        printf("%s\n", r->number);
        printf(_("  registered %s by %s\n"), t, r->receiving_body);
        printf(_("  deadline   %s\n"), d);
        if (r->repeat_of[0]) {
            printf(_("  repeat of  %s\n"), r->repeat_of);
        }
        if (r->urgent) {
            printf(_("  urgent: a report of a crime or threat, to be forwarded at once\n"));
        }
        if (r->access_code[0] != '\0') {
            printf(_("  access code %s (for the applicant only; it is not shown again)\n"),
                   r->access_code);
        }
    } else {
        printf(_("%s %s (deadline %s)\n"), r->number, names_status(&cli_i18n, cli_lang, r->status),
               d);
    }
}

static void print_list(bool as_json, const Appeal__AppealList *l) {
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_arr(&j, "items");
        for (size_t i = 0; i < l->n_items; i++) {
            json_obj(&j, NULL);
            json_row(&j, l->items[i]->row);
            json_bool(&j, "overdue", l->items[i]->overdue);
            json_int(&j, "days_overdue", l->items[i]->days_overdue);
            json_end_obj(&j);
        }
        json_end_arr(&j);
        json_str(&j, "next_after", l->next_after);
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    for (size_t i = 0; i < l->n_items; i++) {
        const Appeal__AppealRow *r = l->items[i]->row;
        char d[11];
        fmt_day(r->deadline_day, d);
        printf("%-20s %-10s %-10s %-10s %s", r->number, names_type(&cli_i18n, cli_lang, r->type),
               r->category, names_status(&cli_i18n, cli_lang, r->status), d);
        if (l->items[i]->overdue) {
            printf(_("  overdue %d"), l->items[i]->days_overdue);
        }
        printf("\n");
    }
}

static void print_info(bool as_json, const Appeal__NodeInfo *i) {
    char d[11];
    day_format(i->today, d);
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_str(&j, "jurisdiction", i->jurisdiction);
        json_hex(&j, "origin", i->origin.data, i->origin.len);
        json_hex(&j, "box_key", i->box_key.data, i->box_key.len);
        json_uint(&j, "head_seq", i->head_seq);
        json_uint(&j, "appeals", i->appeals);
        json_str(&j, "today", d);
        json_int(&j, "now_ms", i->now_ms);
        json_str(&j, "software", i->software);
        json_uint(&j, "commits", i->commits);
        json_uint(&j, "committed_writes", i->committed_writes);
        json_uint(&j, "map_bytes", i->map_bytes);
        json_uint(&j, "map_used_bytes", i->map_used_bytes);
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    printf(_("jurisdiction %s\nlog head     %llu\nappeals      %llu\ntoday        %s\nsoftware     "
             "%s\n"),
           i->jurisdiction, (unsigned long long)i->head_seq, (unsigned long long)i->appeals, d,
           i->software);
}

static void print_cluster_json(const Appeal__ClusterStatus *s) {
    struct json j;
    json_init(&j, stdout);
    json_obj(&j, NULL);
    json_cluster_fields(&j, s);
    json_end_obj(&j);
    json_done(&j);
}

static void print_ago(int64_t now, int64_t then) {
    if (then <= 0) {
        printf("%-10s", _("never"));
    } else {
        printf(_("%7.1f s "), (double)(now - then) / 1000.0);
    }
}

static void print_cluster(bool as_json, const Appeal__ClusterStatus *s) {
    if (as_json) {
        print_cluster_json(s);
        return;
    }
    printf(_("cluster status of %s%s\n\n"), s->jurisdiction,
           s->recovering ? "  RECOVERING: learning its own log from peers" : "");
    printf("%-8s %-26s %-11s %-10s %7s %8s %10s  %s\n", _("peer"), _("address"), _("state"),
           _("contact"), _("errors"), _("refused"), _("records in"), _("last error"));
    for (size_t i = 0; i < s->n_peers; i++) {
        const Appeal__PeerStatus *p = s->peers[i];
        printf("%-8s %-26s %-11s ", p->jurisdiction, p->url,
               p->reachable ? _("reachable")
                            : (p->last_contact_ms ? _("failing") : _("unreached")));
        print_ago(s->now_ms, p->last_contact_ms);
        printf("%7llu %8llu %10llu  %s\n", (unsigned long long)p->errors,
               (unsigned long long)p->refused_records, (unsigned long long)p->records_in,
               p->last_error);
    }
    printf("\n%-8s %10s %10s %12s %12s  %s\n", _("origin"), _("held"), _("best known"),
           _("lag records"), _("staleness"), "");
    for (size_t i = 0; i < s->n_origins; i++) {
        const Appeal__OriginStatus *o = s->origins[i];
        printf("%-8s %10llu %10llu %12llu ", o->jurisdiction, (unsigned long long)o->local_seq,
               (unsigned long long)o->best_known_seq, (unsigned long long)o->lag_records);
        if (o->staleness_ms < 0) {
            printf("%12s  ", _("nothing yet"));
        } else {
            printf(_("%10.1f s  "), (double)o->staleness_ms / 1000.0);
        }
        printf("%s\n", o->frozen ? o->frozen_reason : "");
    }
    if (s->n_forks == 0) {
        printf(_("\nforks: none\n"));
    }
    for (size_t i = 0; i < s->n_forks; i++) {
        printf(_("\nFORK: %s seq %llu, other version via %s: origin frozen\n"),
               s->forks[i]->jurisdiction, (unsigned long long)s->forks[i]->seq, s->forks[i]->via);
    }
}

/* What an error code of the node means, for a person (api.proto ErrorCode). */
static const char *code_meaning(int code) {
    static const char *const meanings[] = {
        N_("no error"),
        N_("the request is malformed or out of bounds"),
        N_("not found"),
        N_("the appeal's state does not allow this"),
        N_("the rules refuse this"),
        N_("too large"),
        N_("the node's storage is full"),
        N_("the node is unavailable"),
        N_("internal error of the node"),
        N_("not authenticated: the request's key is unknown or its signature is wrong"),
        N_("forbidden: the key's role does not allow this"),
        N_("another jurisdiction handles this appeal"),
        N_("the node's storage failed; it writes nothing until restarted"),
    };
    return code >= 0 && code < (int)(sizeof meanings / sizeof meanings[0]) ? _(meanings[code])
                                                                           : _("error");
}

/* stderr: in English the node's message as it is; in another language the
 * meaning of the code in that language, then the node's own message (the
 * node speaks English: docs/i18n.md). --json: code and message, the same in
 * every language. */
static int print_error(bool as_json, int code, const char *msg) {
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_obj(&j, "error");
        json_str(&j, "code", client_code_name(code));
        json_str(&j, "message", msg);
        json_end_obj(&j);
        json_end_obj(&j);
        json_done(&j);
    }
    if (cli_lang == I18N_EN) {
        fprintf(stderr, "appealctl: %s\n", msg);
    } else {
        fprintf(stderr, _("appealctl: %s\n  details: %s\n"), code_meaning(code), msg);
    }
    return 1;
}

/* ---- requests ---- */

static int need(const char *v, const char *what) {
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, _("appealctl: %s is required\n"), what);
        return -1;
    }
    return 0;
}

static int build_file(const struct cli *c, Appeal__FileRequest *f) {
    appeal__file_request__init(f);
    const char *type = opt(c, "type");
    if (need(type, "--type") != 0 || need(opt(c, "category"), "--category") != 0 ||
        need(opt(c, "subject"), "--subject") != 0) {
        return -1;
    }
    f->type = appeal_type_parse(type);
    if (f->type == 0) {
        fprintf(stderr,
                _("appealctl: unknown type %s (statement, proposal, request, complaint, "
                  "report, feedback)\n"),
                type);
        return -1;
    }
#define STR(field, name) f->field = (char *)(opt(c, name) ? opt(c, name) : "")
    STR(category, "category");
    STR(subject, "subject");
    STR(body, "body");
    STR(name, "applicant-name");
    STR(iin, "applicant-iin");
    STR(address, "applicant-address");
    STR(contacts, "applicant-contacts");
    STR(repeat_of, "repeat-of");
    STR(late_reason, "late-reason");
    STR(lang, "appeal-lang");
#undef STR
    f->anonymous = flag(c, "anonymous");
    if (opt(c, "co-signers") != NULL) {
        long n;
        if (util_parse_long(opt(c, "co-signers"), 0, 100000000, &n) != 0) {
            fprintf(stderr, _("appealctl: --co-signers takes a count\n"));
            return -1;
        }
        f->co_signers = (uint32_t)n;
    }
    if (opt(c, "learned") != NULL && day_parse(opt(c, "learned"), &f->learned_day) != 0) {
        fprintf(stderr, _("appealctl: --learned takes a date YYYY-MM-DD\n"));
        return -1;
    }
    return 0;
}

struct act_name {
    const char *cmd;
    Appeal__Action action;
};

static const struct act_name acts[] = {
    {"assign", APPEAL__ACTION__ACTION_ASSIGN},     {"extend", APPEAL__ACTION__ACTION_EXTEND},
    {"answer", APPEAL__ACTION__ACTION_ANSWER},     {"close", APPEAL__ACTION__ACTION_CLOSE},
    {"withdraw", APPEAL__ACTION__ACTION_WITHDRAW}, {"reopen", APPEAL__ACTION__ACTION_REOPEN},
    {"forward", APPEAL__ACTION__ACTION_FORWARD},   {"accept", APPEAL__ACTION__ACTION_ACCEPT},
    {"return", APPEAL__ACTION__ACTION_RETURN},
};

static int build_act(const struct cli *c, Appeal__Action action, Appeal__ActRequest *a) {
    appeal__act_request__init(a);
    if (c->npos < 2) {
        fprintf(stderr, _("appealctl: %s needs the registration number\n"), c->pos[0]);
        return -1;
    }
    a->number = (char *)c->pos[1];
    a->action = action;
    const char *to = opt(c, "to");
    a->reason = (char *)(opt(c, "reason") ? opt(c, "reason") : "");
    a->text = (char *)(opt(c, "text") ? opt(c, "text") : "");
    a->assignee = (char *)"";
    a->to_jurisdiction = (char *)"";
    switch (action) {
    case APPEAL__ACTION__ACTION_ASSIGN:
        a->assignee = (char *)(to ? to : (opt(c, "assignee") ? opt(c, "assignee") : ""));
        return need(a->assignee, _("--to NAME (who handles it)"));
    case APPEAL__ACTION__ACTION_FORWARD:
        a->to_jurisdiction = (char *)(to ? to : "");
        return need(a->to_jurisdiction, _("--to CODE (the competent jurisdiction)"));
    case APPEAL__ACTION__ACTION_EXTEND:
        if (need(opt(c, "until"), _("--until DATE")) != 0) {
            return -1;
        }
        if (day_parse(opt(c, "until"), &a->until_day) != 0) {
            fprintf(stderr, _("appealctl: --until takes a date YYYY-MM-DD\n"));
            return -1;
        }
        return 0;
    case APPEAL__ACTION__ACTION_ANSWER:
        if (need(opt(c, "outcome"), "--outcome") != 0) {
            return -1;
        }
        a->outcome = outcome_parse(opt(c, "outcome"));
        if (a->outcome == 0) {
            fprintf(stderr,
                    _("appealctl: --outcome is satisfied, partly, rejected or explained\n"));
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

static int call(struct client *cl, Appeal__Request *q, Appeal__Response **resp, bool as_json) {
    struct errbuf e;
    err_clear(&e);
    int rc = client_call(cl, q, resp, &e);
    if (rc != 0) {
        print_error(as_json, APPEAL__ERROR_CODE__ERR_UNAVAILABLE, err_msg(&e, rc));
        return 3;
    }
    if ((*resp)->error != NULL && (*resp)->error->code != 0) {
        return print_error(as_json, (*resp)->error->code, (*resp)->error->message);
    }
    return 0;
}

static int cmd_list(struct client *cl, const struct cli *c, bool as_json) {
    Appeal__ListRequest l = APPEAL__LIST_REQUEST__INIT;
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_LIST;
    q.list = &l;
    if (opt(c, "status") != NULL && (l.status = status_parse(opt(c, "status"))) == 0) {
        fprintf(stderr, _("appealctl: unknown status %s\n"), opt(c, "status"));
        return 2;
    }
    l.overdue = flag(c, "overdue");
    l.incoming = flag(c, "incoming");
    l.owner = (char *)(opt(c, "owner") ? opt(c, "owner") : "");
    if (opt(c, "limit") != NULL) {
        long n;
        if (util_parse_long(opt(c, "limit"), 1, LIST_LIMIT_MAX, &n) != 0) {
            fprintf(stderr, _("appealctl: --limit is 1..%d\n"), LIST_LIMIT_MAX);
            return 2;
        }
        l.limit = (uint32_t)n;
    }
    char after[128];
    snprintf(after, sizeof after, "%s", opt(c, "after") ? opt(c, "after") : "");
    l.after = after;
    bool all = flag(c, "all");
    for (int pages = 0; pages < 100000; pages++) {
        Appeal__Response *resp;
        int rc = call(cl, &q, &resp, as_json);
        if (rc != 0) {
            return rc;
        }
        print_list(as_json, resp->list);
        if (!all || resp->list->next_after[0] == '\0') {
            break;
        }
        snprintf(after, sizeof after, "%s", resp->list->next_after);
    }
    return 0;
}

/* ---- queries ---- */

enum { LIST_VALUES_MAX = 64 };

/* Splits a comma list into `out` (pointers into a static copy). */
static size_t split(const char *s, char **out, size_t max, char *buf, size_t cap) {
    size_t n = 0;
    if (s == NULL) {
        return 0;
    }
    snprintf(buf, cap, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL && n < max;
         t = strtok_r(NULL, ",", &save)) {
        out[n++] = t;
    }
    return n;
}

struct query_args {
    Appeal__QueryRequest q;
    Appeal__QueryFilter f;
    char *by[8], *region[LIST_VALUES_MAX], *owner[LIST_VALUES_MAX], *cat[LIST_VALUES_MAX];
    Appeal__AppealType type[LIST_VALUES_MAX];
    Appeal__Status status[LIST_VALUES_MAX];
    char bbuf[256], rbuf[1024], obuf[1024], cbuf[2048], tbuf[512], sbuf[512];
};

static int build_query(const struct cli *c, struct query_args *a, const char *extra_by) {
    appeal__query_request__init(&a->q);
    appeal__query_filter__init(&a->f);
    a->q.filter = &a->f;
    char byspec[300];
    snprintf(byspec, sizeof byspec, "%s%s%s", opt(c, "by") ? opt(c, "by") : "",
             extra_by && opt(c, "by") ? "," : "", extra_by ? extra_by : "");
    a->q.n_by = split(byspec, a->by, 8, a->bbuf, sizeof a->bbuf);
    a->q.by = a->by;
    a->f.n_region = split(opt(c, "region"), a->region, LIST_VALUES_MAX, a->rbuf, sizeof a->rbuf);
    a->f.region = a->region;
    a->f.n_owner = split(opt(c, "owner"), a->owner, LIST_VALUES_MAX, a->obuf, sizeof a->obuf);
    a->f.owner = a->owner;
    a->f.n_category = split(opt(c, "category"), a->cat, LIST_VALUES_MAX, a->cbuf, sizeof a->cbuf);
    a->f.category = a->cat;
    char *tmp[LIST_VALUES_MAX];
    size_t nt = split(opt(c, "type"), tmp, LIST_VALUES_MAX, a->tbuf, sizeof a->tbuf);
    for (size_t i = 0; i < nt; i++) {
        if ((a->type[i] = appeal_type_parse(tmp[i])) == 0) {
            fprintf(stderr, _("appealctl: unknown type %s\n"), tmp[i]);
            return -1;
        }
    }
    a->f.type = a->type;
    a->f.n_type = nt;
    size_t ns = split(opt(c, "status"), tmp, LIST_VALUES_MAX, a->sbuf, sizeof a->sbuf);
    for (size_t i = 0; i < ns; i++) {
        if ((a->status[i] = status_parse(tmp[i])) == 0) {
            fprintf(stderr, _("appealctl: unknown status %s\n"), tmp[i]);
            return -1;
        }
    }
    a->f.status = a->status;
    a->f.n_status = ns;
    if ((opt(c, "from") && day_parse(opt(c, "from"), &a->f.from_day) != 0) ||
        (opt(c, "to") && day_parse(opt(c, "to"), &a->f.to_day) != 0)) {
        fprintf(stderr, _("appealctl: --from and --to take dates YYYY-MM-DD\n"));
        return -1;
    }
    a->f.overdue = flag(c, "overdue");
    a->q.live = flag(c, "live");
    long v;
    if (opt(c, "deadline-ms") && util_parse_long(opt(c, "deadline-ms"), 1, 3600000, &v) == 0) {
        a->q.deadline_ms = (uint32_t)v;
    }
    if (opt(c, "groups-max") && util_parse_long(opt(c, "groups-max"), 1, 100000000, &v) == 0) {
        a->q.groups_max = (uint32_t)v;
    }
    return 0;
}

struct measures {
    double share_overdue, share_in_term, median, share_satisfied;
};

static struct measures measures_of(const Appeal__QueryGroup *g) {
    struct measures m;
    m.share_overdue = g->count ? (double)g->overdue / (double)g->count : 0;
    m.share_in_term = g->answered ? (double)g->answered_in_term / (double)g->answered : 0;
    m.median = query_median_days(g->days, g->n_days);
    m.share_satisfied = g->rated ? (double)g->satisfied / (double)g->rated : 0;
    return m;
}

static void print_sources(struct json *j, const Appeal__QueryResult *r) {
    json_obj(j, "sources");
    for (size_t i = 0; i < r->n_sources; i++) {
        const Appeal__SourceInfo *s = r->sources[i];
        json_obj(j, s->jurisdiction);
        json_str(j, "source", s->source);
        if (s->staleness_ms >= 0) {
            json_num(j, "staleness_s", (double)s->staleness_ms / 1000.0);
        } else {
            json_null(j, "staleness_s");
        }
        json_uint(j, "lag_records", s->lag_records);
        json_uint(j, "fold_lag_records", s->fold_lag_records);
        json_end_obj(j);
    }
    json_end_obj(j);
}

/* The groups as CSV (RFC 4180, every field through util_csv_field): group
 * keys are text that any member signs (a category, a jurisdiction), so
 * nothing here is trusted to be formula-free or comma-free. */
static void print_query_csv(const Appeal__QueryResult *r, uint64_t min_group) {
    static const char *const head[] = {"count",
                                       "open",
                                       "overdue",
                                       "share_overdue",
                                       "answered",
                                       "answered_in_term",
                                       "median_days_to_answer",
                                       "rated",
                                       "share_satisfied"};
    enum { MEASURES = sizeof head / sizeof *head };
    for (size_t k = 0; k < r->n_by; k++) {
        util_csv_field(stdout, r->by[k], false);
    }
    for (size_t k = 0; k < MEASURES; k++) {
        util_csv_field(stdout, head[k], k + 1 == MEASURES && min_group == 0);
    }
    if (min_group > 0) {
        util_csv_field(stdout, "suppressed", true);
    }
    for (size_t i = 0; i < r->n_groups; i++) {
        const Appeal__QueryGroup *g = r->groups[i];
        for (size_t k = 0; k < r->n_by; k++) {
            util_csv_field(stdout, k < g->n_keys ? g->keys[k] : "", false);
        }
        bool hide = min_group > 0 && g->count < min_group;
        struct measures m = measures_of(g);
        char v[MEASURES][32];
        snprintf(v[0], sizeof v[0], "%llu", (unsigned long long)g->count);
        snprintf(v[1], sizeof v[1], "%llu", (unsigned long long)g->open);
        snprintf(v[2], sizeof v[2], "%llu", (unsigned long long)g->overdue);
        snprintf(v[3], sizeof v[3], "%.4f", m.share_overdue);
        snprintf(v[4], sizeof v[4], "%llu", (unsigned long long)g->answered);
        snprintf(v[5], sizeof v[5], "%llu", (unsigned long long)g->answered_in_term);
        snprintf(v[6], sizeof v[6], m.median >= 0 ? "%.1f" : "", m.median);
        snprintf(v[7], sizeof v[7], "%llu", (unsigned long long)g->rated);
        snprintf(v[8], sizeof v[8], "%.4f", m.share_satisfied);
        for (size_t k = 0; k < MEASURES; k++) {
            util_csv_field(stdout, hide ? "" : v[k], k + 1 == MEASURES && min_group == 0);
        }
        if (min_group > 0) {
            util_csv_field(stdout, hide ? "yes" : "no", true);
        }
    }
}

/* The sources of an answer, and how fresh each replica is. */
static void print_source_line(const Appeal__QueryResult *r) {
    printf(_("\nmode %s; sources:"), r->mode);
    for (size_t i = 0; i < r->n_sources; i++) {
        const Appeal__SourceInfo *s = r->sources[i];
        printf(" %s=%s", s->jurisdiction, s->source);
        if (strcmp(s->source, "replica") == 0 && s->staleness_ms >= 0) {
            printf("(%.0fs", (double)s->staleness_ms / 1000.0);
            if (s->lag_records) {
                printf(_(",%llu behind"), (unsigned long long)s->lag_records);
            }
            if (s->fold_lag_records) {
                printf(_(",%llu not yet counted"), (unsigned long long)s->fold_lag_records);
            }
            printf(")");
        }
    }
    printf("\n");
}

/* `min_group` > 0: export mode, smaller groups are suppressed. */
static void print_query(const Appeal__QueryResult *r, bool as_json, bool csv, uint64_t min_group) {
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_str(&j, "mode", r->mode);
        json_arr(&j, "groups");
        for (size_t i = 0; i < r->n_groups; i++) {
            const Appeal__QueryGroup *g = r->groups[i];
            bool hide = min_group > 0 && g->count < min_group;
            json_obj(&j, NULL);
            for (size_t k = 0; k < r->n_by && k < g->n_keys; k++) {
                json_str(&j, r->by[k], g->keys[k]);
            }
            if (hide) {
                json_bool(&j, "suppressed", true);
                json_end_obj(&j);
                continue;
            }
            json_group_measures(&j, g);
            json_end_obj(&j);
        }
        json_end_arr(&j);
        print_sources(&j, r);
        json_int(&j, "today_day", r->today);
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    if (csv) {
        print_query_csv(r, min_group);
        return;
    }
    for (size_t k = 0; k < r->n_by; k++) {
        printf("%-12s  ", r->by[k]);
    }
    printf("%8s %8s %8s %7s %9s %8s %7s %6s %10s\n", _("count"), _("open"), _("overdue"),
           _("overdue%"), _("answered"), _("in term"), _("median"), _("rated"), _("satisfied%"));
    for (size_t i = 0; i < r->n_groups; i++) {
        const Appeal__QueryGroup *g = r->groups[i];
        struct measures m = measures_of(g);
        for (size_t k = 0; k < r->n_by && k < g->n_keys; k++) {
            printf("%-12s  ", g->keys[k]);
        }
        if (min_group > 0 && g->count < min_group) {
            printf(_("(fewer than %llu: suppressed)\n"), (unsigned long long)min_group);
            continue;
        }
        char med[16];
        snprintf(med, sizeof med, m.median >= 0 ? "%.1f" : "", m.median);
        printf("%8llu %8llu %8llu %6.1f%% %9llu %8llu %7s %6llu %9.1f%%\n",
               (unsigned long long)g->count, (unsigned long long)g->open,
               (unsigned long long)g->overdue, 100 * m.share_overdue,
               (unsigned long long)g->answered, (unsigned long long)g->answered_in_term, med,
               (unsigned long long)g->rated, 100 * m.share_satisfied);
    }
    print_source_line(r);
}

static void print_overdue(bool as_json, const Appeal__OverdueList *l) {
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_arr(&j, "items");
        for (size_t i = 0; i < l->n_items; i++) {
            const Appeal__OverdueItem *it = l->items[i];
            json_obj(&j, NULL);
            json_str(&j, "number", it->number);
            json_str(&j, "owner", it->owner);
            json_str(&j, "region", it->region);
            json_str(&j, "type", appeal_type_name(it->type));
            json_str(&j, "category", it->category);
            json_str(&j, "status", status_name(it->status));
            json_day(&j, "deadline", it->deadline_day);
            json_int(&j, "days_overdue", it->days_overdue);
            json_end_obj(&j);
        }
        json_end_arr(&j);
        json_bool(&j, "truncated", l->truncated);
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    printf("%-20s %-6s %-6s %-10s %-10s %-10s %s\n", _("number"), _("owner"), _("region"),
           _("type"), _("category"), _("deadline"), _("working days overdue"));
    for (size_t i = 0; i < l->n_items; i++) {
        const Appeal__OverdueItem *it = l->items[i];
        char d[11];
        fmt_day(it->deadline_day, d);
        printf("%-20s %-6s %-6s %-10s %-10s %-10s %d\n", it->number, it->owner, it->region,
               names_type(&cli_i18n, cli_lang, it->type), it->category, d, it->days_overdue);
    }
    if (l->truncated) {
        printf(_("(more: raise --limit)\n"));
    }
}

static int cmd_query(struct client *cl, const struct cli *c, bool as_json, bool export) {
    static struct query_args qa;
    const char *period = opt(c, "period");
    if (export && period && strcmp(period, "month") && strcmp(period, "year") &&
        strcmp(period, "day")) {
        fprintf(stderr, _("appealctl: --period is day, month or year\n"));
        return 2;
    }
    if (!opt(c, "by") && !(export && period)) {
        fprintf(stderr, _("appealctl: --by FIELDS is required (e.g. --by region,status)\n"));
        return 2;
    }
    if (build_query(c, &qa, export ? period : NULL) != 0) {
        return 2;
    }
    long min_group = 5;
    if (opt(c, "min-group") && util_parse_long(opt(c, "min-group"), 1, 1000000, &min_group)) {
        fprintf(stderr, _("appealctl: --min-group takes a count\n"));
        return 2;
    }
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_QUERY;
    q.query = &qa.q;
    Appeal__Response *resp;
    int rc = call(cl, &q, &resp, as_json);
    if (rc == 0) {
        print_query(resp->query, as_json, flag(c, "csv") || (export && !as_json),
                    export ? (uint64_t)min_group : 0);
    }
    return rc;
}

static int cmd_overdue(struct client *cl, const struct cli *c, bool as_json) {
    static char *owners[LIST_VALUES_MAX];
    static char buf[1024];
    Appeal__OverdueRequest o = APPEAL__OVERDUE_REQUEST__INIT;
    o.n_owner = split(opt(c, "region"), owners, LIST_VALUES_MAX, buf, sizeof buf);
    o.owner = owners;
    long v;
    if (opt(c, "limit") && util_parse_long(opt(c, "limit"), 1, LIST_LIMIT_MAX, &v) == 0) {
        o.limit = (uint32_t)v;
    }
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_OVERDUE;
    q.overdue = &o;
    Appeal__Response *resp;
    int rc = call(cl, &q, &resp, as_json);
    if (rc == 0) {
        print_overdue(as_json, resp->overdue);
    }
    return rc;
}

/* `notifications [NUMBER] [--failed]`: this node's outbox. */
static int cmd_notifications(struct client *cl, const struct cli *c, bool as_json) {
    Appeal__NotificationsRequest o = APPEAL__NOTIFICATIONS_REQUEST__INIT;
    o.number = c->npos >= 2 ? (char *)c->pos[1] : (char *)"";
    o.failed = flag(c, "failed");
    Appeal__Request q = APPEAL__REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_NOTIFICATIONS;
    q.notifications = &o;
    Appeal__Response *resp;
    int rc = call(cl, &q, &resp, as_json);
    if (rc != 0) {
        return rc;
    }
    const Appeal__NotificationList *l = resp->notifications;
    if (l == NULL) {
        fprintf(stderr, _("appealctl: the node answered with nothing\n"));
        return 1;
    }
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_arr(&j, "notifications");
        for (size_t i = 0; i < l->n_rows; i++) {
            json_notification(&j, l->rows[i]);
        }
        json_end_arr(&j);
        json_bool(&j, "more", l->more);
        json_end_obj(&j);
        json_done(&j);
        return 0;
    }
    for (size_t i = 0; i < l->n_rows; i++) {
        print_notification_text(l->rows[i]);
    }
    if (l->more) {
        printf(_("(more: the listing stops at 1000)\n"));
    }
    return 0;
}

static void print_grants(bool as_json, const Appeal__GrantList *l) {
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_arr(&j, "grants");
        for (size_t i = 0; i < l->n_grants; i++) {
            const Appeal__Grant *g = l->grants[i];
            json_obj(&j, NULL);
            json_hex(&j, "key", g->key.data, g->key.len);
            json_arr(&j, "roles");
            for (size_t r = 0; r < g->n_roles; r++) {
                json_str(&j, NULL, g->roles[r]);
            }
            json_end_arr(&j);
            json_str(&j, "jurisdiction", g->jurisdiction);
            json_str(&j, "label", g->label);
            json_uint(&j, "granted_seq", g->granted_seq);
            json_uint(&j, "revoked_seq", g->revoked_seq);
            json_str(&j, "revoked_reason", g->revoked_reason);
            json_end_obj(&j);
        }
        json_end_arr(&j);
        json_end_obj(&j);
        json_done(&j);
        return;
    }
    if (l->n_grants == 0) {
        printf(_("no grants\n"));
    }
    for (size_t i = 0; i < l->n_grants; i++) {
        const Appeal__Grant *g = l->grants[i];
        char hex[2 * 32 + 1] = "?";
        if (g->key.len == 32) {
            util_hex(g->key.data, 32, hex);
        }
        printf("%s  %-8s", hex, g->jurisdiction);
        for (size_t r = 0; r < g->n_roles; r++) {
            printf("%s%s", r ? "," : " ", g->roles[r]);
        }
        if (g->revoked_seq) {
            printf(_("  REVOKED at seq %llu%s%s"), (unsigned long long)g->revoked_seq,
                   g->revoked_reason[0] ? ": " : "", g->revoked_reason);
        }
        printf("%s%s\n", g->label[0] ? "  " : "", g->label);
    }
}

/* keygen: needs no node. */
static int cmd_keygen(const struct cli *c, bool as_json) {
    const char *out = opt(c, "out");
    if (out == NULL || !out[0]) {
        fprintf(stderr, _("appealctl: keygen --out FILE\n"));
        return 2;
    }
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    struct errbuf e;
    err_clear(&e);
    char pub[4200];
    snprintf(pub, sizeof pub, "%.4000s.pub", out);
    int rc = keys_save_signing(out, sk, "Ed25519 key of an official", &e);
    sodium_memzero(sk, sizeof sk);
    if (rc == 0) {
        rc = keys_save_public(pub, pk, "Ed25519 public key of an official", &e);
    }
    if (rc != 0) {
        fprintf(stderr, _("appealctl: %s\n"), err_msg(&e, rc));
        return 1;
    }
    char hex[2 * sizeof pk + 1];
    util_hex(pk, sizeof pk, hex);
    if (as_json) {
        struct json j;
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_str(&j, "key", hex);
        json_str(&j, "secret_file", out);
        json_str(&j, "public_file", pub);
        json_end_obj(&j);
        json_done(&j);
    } else {
        printf(_("%s\n  secret key in %s (keep it: mode 0600)\n  public key in %s (give it to "
                 "the node's administrator to grant)\n"),
               hex, out, pub);
    }
    return 0;
}

static int build_grant(const struct cli *c, Appeal__Request *q, Appeal__GrantRequest *g,
                       Appeal__RevokeRequest *r, uint8_t pk[32]) {
    bool revoke = strcmp(c->pos[0], "revoke") == 0;
    if (c->npos < 2 || (!revoke && opt(c, "role") == NULL)) {
        fprintf(stderr, _("appealctl: %s\n"),
                revoke ? _("revoke PUBLIC [--reason TEXT]")
                       : _("grant PUBLIC --role ROLE [--jurisdiction CODE] [--label TEXT]"));
        return 2;
    }
    struct errbuf e;
    err_clear(&e);
    if (keys_parse_public(c->pos[1], pk, &e) != 0) {
        fprintf(stderr, _("appealctl: %s\n"), e.msg);
        return 2;
    }
    if (revoke) {
        r->key.data = pk;
        r->key.len = 32;
        r->reason = (char *)(opt(c, "reason") ? opt(c, "reason") : "");
        q->op_case = APPEAL__REQUEST__OP_REVOKE;
        q->revoke = r;
    } else {
        g->key.data = pk;
        g->key.len = 32;
        g->role = (char *)opt(c, "role");
        g->jurisdiction = (char *)(opt(c, "jurisdiction") ? opt(c, "jurisdiction") : "");
        g->label = (char *)(opt(c, "label") ? opt(c, "label") : "");
        q->op_case = APPEAL__REQUEST__OP_GRANT;
        q->grant = g;
    }
    return 0;
}

/* ---- channels (Open311 API keys) and receipts ---- */

/* The channel grant whose key hash starts with hex `id`; 0 and `pk` set. */
static int channel_find(struct client *cl, const char *id, bool as_json, uint8_t pk[32]) {
    size_t n = strlen(id);
    if (n < 8 || n > 64 || strspn(id, "0123456789abcdef") != n) {
        fprintf(stderr, "appealctl: a channel ID is 8 to 64 hex digits (channel list)\n");
        return 2;
    }
    Appeal__Request q = APPEAL__REQUEST__INIT;
    Appeal__GrantsRequest gs = APPEAL__GRANTS_REQUEST__INIT;
    q.op_case = APPEAL__REQUEST__OP_GRANTS;
    q.grants = &gs;
    Appeal__Response *resp;
    int rc = call(cl, &q, &resp, as_json);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < resp->grants->n_grants; i++) {
        const Appeal__Grant *g = resp->grants->grants[i];
        char hex[65];
        if (g->key.len != 32) {
            continue;
        }
        util_hex(g->key.data, 32, hex);
        bool channel = false;
        for (size_t r = 0; r < g->n_roles; r++) {
            channel = channel || strcmp(g->roles[r], "channel") == 0;
        }
        if (channel && strncmp(hex, id, n) == 0) {
            memcpy(pk, g->key.data, 32);
            return 0;
        }
    }
    return print_error(as_json, APPEAL__ERROR_CODE__ERR_NOT_FOUND, "no channel with that ID");
}

static void print_channels(bool as_json, const Appeal__GrantList *l) {
    struct json j;
    if (as_json) {
        json_init(&j, stdout);
        json_obj(&j, NULL);
        json_arr(&j, "channels");
    }
    for (size_t i = 0; i < l->n_grants; i++) {
        const Appeal__Grant *g = l->grants[i];
        bool channel = false;
        for (size_t r = 0; r < g->n_roles; r++) {
            channel = channel || strcmp(g->roles[r], "channel") == 0;
        }
        if (!channel || g->key.len != 32) {
            continue;
        }
        char id[KEY_SHORT_HEX + 1];
        util_hex(g->key.data, KEY_SHORT_HEX / 2, id);
        uint32_t rate = g->rate_per_minute ? g->rate_per_minute : CHANNEL_RATE_PER_MIN_DEFAULT;
        if (as_json) {
            json_obj(&j, NULL);
            json_str(&j, "id", id);
            json_str(&j, "label", g->label);
            json_uint(&j, "rate_per_minute", rate);
            json_uint(&j, "granted_seq", g->granted_seq);
            json_uint(&j, "revoked_seq", g->revoked_seq);
            json_end_obj(&j);
        } else {
            printf("%s  %-32s %u/min  granted at seq %llu%s\n", id, g->label, rate,
                   (unsigned long long)g->granted_seq, g->revoked_seq ? "  REVOKED" : "");
        }
    }
    if (as_json) {
        json_end_arr(&j);
        json_end_obj(&j);
        json_done(&j);
    }
}

/* What `channel add`, `rate` or `revoke` did; `api_key` is set for add
 * (shown once). */
static void print_channel_done(bool as_json, const char *verb, const uint8_t pk[32],
                               const char *api_key, const Appeal__Response *resp) {
    char id[KEY_SHORT_HEX + 1];
    util_hex(pk, KEY_SHORT_HEX / 2, id);
    unsigned long long seq = resp->receipt != NULL ? (unsigned long long)resp->receipt->seq : 0;
    if (as_json) {
        printf("{\"id\":\"%s\"%s%s%s,\"seq\":%llu}\n", id, api_key[0] ? ",\"api_key\":\"" : "",
               api_key, api_key[0] ? "\"" : "", seq);
    } else if (api_key[0]) {
        printf("channel %s added (log seq %llu)\napi_key %s\n"
               "(shown once: the node keeps only its hash)\n",
               id, seq, api_key);
    } else {
        printf("ok: channel %s %s (log seq %llu)\n", id, verb[1] == 'e' ? "revoked" : "rate set",
               seq);
    }
}

static int cmd_channel(struct client *cl, const struct cli *c, bool as_json) {
    const char *verb = c->npos >= 2 ? c->pos[1] : "";
    Appeal__Request q = APPEAL__REQUEST__INIT;
    Appeal__GrantRequest g = APPEAL__GRANT_REQUEST__INIT;
    Appeal__RevokeRequest r = APPEAL__REVOKE_REQUEST__INIT;
    Appeal__GrantsRequest gs = APPEAL__GRANTS_REQUEST__INIT;
    uint8_t pk[32], secret[CHANNEL_API_KEY_BYTES];
    char api_key[2 * CHANNEL_API_KEY_BYTES + 1] = "";
    long rate = 0;
    if (opt(c, "rate") != NULL && util_parse_long(opt(c, "rate"), 1, 1000000, &rate) != 0) {
        fprintf(stderr, "appealctl: --rate takes filings a minute (1 to 1000000)\n");
        return 2;
    }
    int rc = 0;
    if (strcmp(verb, "add") == 0 && opt(c, "label") != NULL) {
        randombytes_buf(secret, sizeof secret);
        util_hex(secret, sizeof secret, api_key);
        sodium_memzero(secret, sizeof secret);
        channel_key_hash(api_key, strlen(api_key), pk);
        g.label = (char *)opt(c, "label");
        g.rate_per_minute = (uint32_t)rate;
    } else if (strcmp(verb, "rate") == 0 && c->npos == 4) {
        if (util_parse_long(c->pos[3], 1, 1000000, &rate) != 0) {
            fprintf(stderr, "appealctl: channel rate ID N: N filings a minute\n");
            return 2;
        }
        rc = channel_find(cl, c->pos[2], as_json, pk);
        g.label = (char *)"";
        g.rate_per_minute = (uint32_t)rate;
    } else if (strcmp(verb, "revoke") == 0 && c->npos == 3) {
        rc = channel_find(cl, c->pos[2], as_json, pk);
    } else if (strcmp(verb, "list") != 0) {
        fprintf(stderr, "appealctl: channel add --label TEXT [--rate N] | list | revoke ID | "
                        "rate ID N\n");
        return 2;
    }
    if (rc != 0) {
        return rc;
    }
    if (strcmp(verb, "list") == 0) {
        q.op_case = APPEAL__REQUEST__OP_GRANTS;
        q.grants = &gs;
    } else if (strcmp(verb, "revoke") == 0) {
        r.key = (ProtobufCBinaryData){32, pk};
        r.reason = (char *)(opt(c, "reason") ? opt(c, "reason") : "");
        q.op_case = APPEAL__REQUEST__OP_REVOKE;
        q.revoke = &r;
    } else {
        g.key = (ProtobufCBinaryData){32, pk};
        g.role = (char *)"channel";
        g.jurisdiction = (char *)"";
        q.op_case = APPEAL__REQUEST__OP_GRANT;
        q.grant = &g;
    }
    Appeal__Response *resp;
    if ((rc = call(cl, &q, &resp, as_json)) != 0) {
        return rc;
    }
    if (q.op_case == APPEAL__REQUEST__OP_GRANTS) {
        print_channels(as_json, resp->grants);
        return 0;
    }
    print_channel_done(as_json, verb, pk, api_key, resp);
    sodium_memzero(api_key, sizeof api_key);
    return 0;
}

static void print_receipt_info(bool as_json, const struct receipt_info *ri) {
    char reg[11], dl[11], origin[65];
    day_format(day_from_ms(ri->registered_ms, 300), reg);
    day_format(ri->deadline_day, dl);
    util_hex(ri->origin, 32, origin);
    if (!as_json) {
        printf("valid receipt: %s\n  type %s, category %s, received by %s\n"
               "  registered %s, answer due by %s\n  log seq %llu of origin %.16s\n",
               ri->number, appeal_type_name(ri->type), ri->category, ri->jurisdiction, reg, dl,
               (unsigned long long)ri->seq, origin);
        return;
    }
    struct json j;
    json_init(&j, stdout);
    json_obj(&j, NULL);
    json_bool(&j, "valid", true);
    json_str(&j, "number", ri->number);
    json_str(&j, "type", appeal_type_name(ri->type));
    json_str(&j, "category", ri->category);
    json_str(&j, "jurisdiction", ri->jurisdiction);
    json_int(&j, "registered_ms", ri->registered_ms);
    json_str(&j, "deadline", dl);
    json_int(&j, "time_ms", ri->time_ms);
    json_uint(&j, "seq", ri->seq);
    json_str(&j, "origin", origin);
    json_end_obj(&j);
    json_done(&j);
}

/* receipt verify FILE|HEX --cluster FILE: needs no node. */
static int cmd_receipt(const struct cli *c, bool as_json) {
    if (c->npos != 3 || strcmp(c->pos[1], "verify") != 0 || opt(c, "cluster") == NULL) {
        fprintf(stderr, "appealctl: receipt verify FILE|HEX --cluster FILE\n");
        return 2;
    }
    struct errbuf e;
    err_clear(&e);
    char *text = NULL;
    size_t len = 0;
    const char *arg = c->pos[2];
    int rc = 0;
    if (strspn(arg, "0123456789abcdefABCDEF") != strlen(arg)) {
        rc = util_read_file(arg, RECEIPT_HEX_BYTES_MAX + 64, &text, &len);
        if (rc != 0) {
            err_set(&e, rc, "cannot read %s (neither a file nor hex)", arg);
        }
    }
    struct cluster *cl = malloc(sizeof *cl);
    uint8_t *env = NULL;
    size_t env_len = 0;
    struct receipt_info ri;
    if (cl == NULL) {
        rc = APL_ENOMEM;
    }
    if (rc == 0) {
        rc = cluster_load(cl, opt(c, "cluster"), &e);
    }
    if (rc == 0) {
        rc = receipt_unhex(text != NULL ? text : arg, text != NULL ? len : strlen(arg), &env,
                           &env_len, &e);
    }
    if (rc == 0) {
        rc = receipt_check(env, env_len, cl, NULL, NULL, NULL, &ri, &e);
    }
    free(env);
    free(text);
    free(cl);
    if (rc != 0) {
        print_error(as_json, client_error_code(rc), err_msg(&e, rc));
        return rc == APL_EAUTH || rc == APL_EINVAL ? 1 : 2;
    }
    print_receipt_info(as_json, &ri);
    return 0;
}

/* The parts a request built by build_request points into. */
struct request_parts {
    Appeal__FileRequest f;
    Appeal__ActRequest a;
    Appeal__ShowRequest s;
    Appeal__InfoRequest i;
    Appeal__ClusterStatusRequest cs;
    Appeal__MetricsRequest mr;
    Appeal__GrantRequest g;
    Appeal__RevokeRequest r;
    Appeal__GrantsRequest gs;
    uint8_t pk[32];
};

/* An action on an appeal (the `acts` table): 0, or 2 (said why). */
static int build_act_request(const struct cli *c, const char *cmd, Appeal__Request *q,
                             struct request_parts *p) {
    size_t k = 0;
    while (k < sizeof acts / sizeof acts[0] && strcmp(acts[k].cmd, cmd) != 0) {
        k++;
    }
    if (k == sizeof acts / sizeof acts[0]) {
        fprintf(stderr, _("appealctl: unknown command %s\n%s"), cmd, _(usage));
        return 2;
    }
    if (build_act(c, acts[k].action, &p->a) != 0) {
        return 2;
    }
    q->op_case = APPEAL__REQUEST__OP_ACT;
    q->act = &p->a;
    return 0;
}

/* The request of command `cmd` into `q` (pointing into `p`): 0, or 2
 * (said why). */
static int build_request(const struct cli *c, const char *cmd, Appeal__Request *q,
                         struct request_parts *p) {
    if (strcmp(cmd, "file") == 0) {
        if (build_file(c, &p->f) != 0) {
            return 2;
        }
        q->op_case = APPEAL__REQUEST__OP_FILE;
        q->file = &p->f;
    } else if (strcmp(cmd, "show") == 0 || strcmp(cmd, "find") == 0) {
        if (c->npos < 2) {
            fprintf(stderr, _("appealctl: show needs the registration number\n"));
            return 2;
        }
        p->s.number = (char *)c->pos[1];
        q->op_case = APPEAL__REQUEST__OP_SHOW;
        q->show = &p->s;
    } else if (strcmp(cmd, "grant") == 0 || strcmp(cmd, "revoke") == 0) {
        if (build_grant(c, q, &p->g, &p->r, p->pk) != 0) {
            return 2;
        }
    } else if (strcmp(cmd, "grants") == 0 || strcmp(cmd, "whoami") == 0) {
        p->gs.mine = strcmp(cmd, "whoami") == 0 || flag(c, "mine");
        q->op_case = APPEAL__REQUEST__OP_GRANTS;
        q->grants = &p->gs;
    } else if (strcmp(cmd, "info") == 0) {
        q->op_case = APPEAL__REQUEST__OP_INFO;
        q->info = &p->i;
    } else if (strcmp(cmd, "metrics") == 0) {
        q->op_case = APPEAL__REQUEST__OP_METRICS;
        q->metrics = &p->mr;
    } else if (strcmp(cmd, "cluster") == 0) {
        if (c->npos < 2 || strcmp(c->pos[1], "status") != 0) {
            fprintf(stderr, _("appealctl: cluster status is the cluster command\n"));
            return 2;
        }
        q->op_case = APPEAL__REQUEST__OP_CLUSTER_STATUS;
        q->cluster_status = &p->cs;
    } else {
        return build_act_request(c, cmd, q, p);
    }
    return 0;
}

/* Prints the node's answer to `cmd`: 0, or 1 if it held nothing. */
static int print_answer(const char *cmd, bool as_json, const Appeal__Response *resp) {
    switch (resp->result_case) {
    case APPEAL__RESPONSE__RESULT_RECEIPT:
        print_receipt(as_json, cmd, resp->receipt);
        break;
    case APPEAL__RESPONSE__RESULT_APPEAL:
        if (as_json) {
            struct json j;
            json_init(&j, stdout);
            print_view_json(&j, resp->appeal);
        } else {
            print_view_text(resp->appeal);
        }
        break;
    case APPEAL__RESPONSE__RESULT_INFO:
        print_info(as_json, resp->info);
        break;
    case APPEAL__RESPONSE__RESULT_CLUSTER:
        print_cluster(as_json, resp->cluster);
        break;
    case APPEAL__RESPONSE__RESULT_METRICS_TEXT:
        fputs(resp->metrics_text, stdout);
        break;
    case APPEAL__RESPONSE__RESULT_GRANTS:
        if (strcmp(cmd, "whoami") == 0 && resp->grants->n_grants == 0 && !as_json) {
            printf(_("this key has no grant on this node\n"));
            break;
        }
        print_grants(as_json, resp->grants);
        break;
    default:
        fprintf(stderr, _("appealctl: the node answered with nothing\n"));
        return 1;
    }
    return 0;
}

static int run(struct client *cl, const struct cli *c, bool as_json) {
    const char *cmd = c->pos[0];
    if (strcmp(cmd, "channel") == 0) {
        return cmd_channel(cl, c, as_json);
    }
    if (strcmp(cmd, "list") == 0) {
        return cmd_list(cl, c, as_json);
    }
    if (strcmp(cmd, "stats") == 0 || strcmp(cmd, "export") == 0) {
        return cmd_query(cl, c, as_json, strcmp(cmd, "export") == 0);
    }
    if (strcmp(cmd, "overdue") == 0) {
        return cmd_overdue(cl, c, as_json);
    }
    if (strcmp(cmd, "notifications") == 0) {
        return cmd_notifications(cl, c, as_json);
    }
    Appeal__Request q = APPEAL__REQUEST__INIT;
    struct request_parts p = {.s = APPEAL__SHOW_REQUEST__INIT,
                              .i = APPEAL__INFO_REQUEST__INIT,
                              .cs = APPEAL__CLUSTER_STATUS_REQUEST__INIT,
                              .mr = APPEAL__METRICS_REQUEST__INIT,
                              .g = APPEAL__GRANT_REQUEST__INIT,
                              .r = APPEAL__REVOKE_REQUEST__INIT,
                              .gs = APPEAL__GRANTS_REQUEST__INIT};
    if (build_request(c, cmd, &q, &p) != 0) {
        return 2;
    }
    Appeal__Response *resp;
    int rc = call(cl, &q, &resp, as_json);
    return rc != 0 ? rc : print_answer(cmd, as_json, resp);
}

/* The language of this run: --lang, else the environment; the catalogues
 * from next to the program or the installed LOCALEDIR (i18n.h). A
 * catalogue that cannot be read leaves English, said once on stderr. */
static int set_language(const struct cli *c) {
    const char *lang = opt(c, "lang");
    if (lang != NULL && i18n_lang_parse(lang, &cli_lang) != 0) {
        fprintf(stderr, _("appealctl: --lang is kk, ru or en\n"));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) {
        return 1;
    }
    struct errbuf ie;
    err_clear(&ie);
    cli_lang = i18n_lang_from_env();
    if (i18n_open(&cli_i18n, NULL, &ie) != 0) {
        fprintf(stderr, "appealctl: %s; messages stay in English\n", ie.msg);
        cli_lang = I18N_EN;
    }
    struct cli c;
    if (parse(argc, argv, &c) != 0 || set_language(&c) != 0) {
        return 2;
    }
    if (flag(&c, "version")) {
        printf("appealctl %s\n", APPEAL_VERSION);
        return 0;
    }
    if (flag(&c, "help") || c.npos == 0) {
        fputs(_(usage), c.npos == 0 && !flag(&c, "help") ? stderr : stdout);
        return flag(&c, "help") ? 0 : 2;
    }
    const char *url = opt(&c, "node");
    if (url == NULL) {
        url = getenv("APPEAL_NODE") ? getenv("APPEAL_NODE") : "tcp://127.0.0.1:7100";
    }
    long timeout = DEFAULT_TIMEOUT_MS;
    if (opt(&c, "timeout") != NULL &&
        util_parse_long(opt(&c, "timeout"), 1, 3600000, &timeout) != 0) {
        fprintf(stderr, _("appealctl: --timeout takes milliseconds\n"));
        return 2;
    }
    bool as_json = flag(&c, "json");
    if (strcmp(c.pos[0], "keygen") == 0) {
        return cmd_keygen(&c, as_json);
    }
    if (strcmp(c.pos[0], "receipt") == 0) {
        return cmd_receipt(&c, as_json);
    }
    struct client cl;
    struct errbuf e;
    err_clear(&e);
    /* tls+tcp://: the node's certificate is checked against the federation's CA. */
    const char *ca = opt(&c, "tls-ca") ? opt(&c, "tls-ca") : getenv("APPEAL_TLS_CA");
    const char *server_name =
        opt(&c, "tls-server-name") ? opt(&c, "tls-server-name") : getenv("APPEAL_TLS_SERVER_NAME");
    int rc = client_open_tls(&cl, url, (int)timeout, ca, server_name, &e);
    if (rc != 0) {
        print_error(as_json, APPEAL__ERROR_CODE__ERR_UNAVAILABLE, err_msg(&e, rc));
        /* No usable CA file is a usage error; a refused certificate, unreachable. */
        return rc == APL_ENET || rc == APL_EAUTH || rc == APL_ETIMEDOUT ? 3 : 2;
    }
    const char *key = opt(&c, "key") ? opt(&c, "key") : getenv("APPEAL_KEY");
    if (key != NULL && key[0] != '\0' && (rc = client_sign_with(&cl, key, &e)) != 0) {
        fprintf(stderr, _("appealctl: %s\n"), err_msg(&e, rc));
        client_close(&cl);
        return 2;
    }
    rc = run(&cl, &c, as_json);
    client_close(&cl);
    return rc;
}
