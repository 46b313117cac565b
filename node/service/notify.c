/* notify.c: the deliverer of the outbox (notify.h, docs/notifications.md). */
#include "notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cal.h"
#include "i18n.h"
#include "json.h"
#include "names.h"
#include "node.h"
#include "olog.h"
#include "outbox.h"
#include "util.h"
#include "writer.h"

struct notify_conf {
    char smtp_url[NOTIFY_URL_BYTES_MAX];
    char smtp_from[OUTBOX_ADDRESS_BYTES_MAX + 1];
    char smtp_user[128], smtp_password[128];
    char webhook_url[NOTIFY_URL_BYTES_MAX];
    uint8_t webhook_key[NOTIFY_KEY_BYTES_MAX];
    size_t webhook_key_len;
    uint32_t attempts_max;
    int64_t backoff_ms_min, backoff_ms_max, timeout_ms;
    int64_t alert_s;
};

/* One row taken for delivery, and what became of it. */
struct job {
    Appeal__OutboxRow row; /* strings point into `strs` */
    char strs[8][OUTBOX_ADDRESS_BYTES_MAX + NUMBER_BYTES_MAX + 64];
    char reason[512];
    char error[OUTBOX_ERROR_BYTES_MAX];
};

struct notify {
    struct node *n;
    struct notify_conf c;
    struct i18n i18n;
    pthread_t thread;
    bool started;
    _Atomic bool stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool settled;     /* under mu: the settling write is done */
    int settle_rc;    /* under mu, with `settled` */
    struct job *jobs; /* NOTIFY_BATCH_MAX */
    CURL *curl;       /* the thread's handle, kept for its connection cache */
    size_t n_jobs;
    _Atomic uint64_t sent, failed, retried, queued;
    _Atomic int64_t oldest_ms;    /* created_ms of the oldest unsettled row; 0: none */
    _Atomic uint64_t failed_seen; /* failed rows seen at scans (alert) */
};

/* ---- configuration ---- */

static int read_key_file(struct notify_conf *c, const char *path, struct errbuf *e) {
    size_t len = 0;
    char *text = NULL;
    int rc = util_read_file(path, NOTIFY_KEY_BYTES_MAX * 2 + 2, &text, &len);
    if (rc != 0) {
        return err_set(e, rc, "webhook_key_file %s: cannot read it", path);
    }
    size_t all = len;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) {
        len--;
    }
    if (len < 16 || len > NOTIFY_KEY_BYTES_MAX) {
        util_wipe_free(text, all);
        return err_set(e, APL_EINVAL, "webhook_key_file %s: the key must be 16 to %d bytes", path,
                       NOTIFY_KEY_BYTES_MAX);
    }
    memcpy(c->webhook_key, text, len);
    c->webhook_key_len = len;
    util_wipe_free(text, all);
    return 0;
}

static int conf_int(const char *key, const char *val, int64_t lo, int64_t hi, int64_t *out,
                    struct errbuf *e) {
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno != 0 || *end != '\0' || end == val || v < lo || v > hi) {
        return err_set(e, APL_EINVAL, "%s: %s is not a whole number from %lld to %lld", key, val,
                       (long long)lo, (long long)hi);
    }
    *out = v;
    return 0;
}

static int conf_str(char *dst, size_t cap, const char *key, const char *val, struct errbuf *e) {
    if (strlen(val) >= cap) {
        return err_set(e, APL_EINVAL, "%s: longer than %zu bytes", key, cap - 1);
    }
    snprintf(dst, cap, "%s", val);
    return 0;
}

static int conf_line(struct notify_conf *c, const char *key, const char *val, struct errbuf *e) {
    int64_t v = 0;
    int rc = 0;
    if (strcmp(key, "smtp_url") == 0) {
        rc = conf_str(c->smtp_url, sizeof c->smtp_url, key, val, e);
    } else if (strcmp(key, "smtp_from") == 0) {
        rc = conf_str(c->smtp_from, sizeof c->smtp_from, key, val, e);
    } else if (strcmp(key, "smtp_user") == 0) {
        rc = conf_str(c->smtp_user, sizeof c->smtp_user, key, val, e);
    } else if (strcmp(key, "smtp_password") == 0) {
        rc = conf_str(c->smtp_password, sizeof c->smtp_password, key, val, e);
    } else if (strcmp(key, "webhook_url") == 0) {
        rc = conf_str(c->webhook_url, sizeof c->webhook_url, key, val, e);
    } else if (strcmp(key, "webhook_key_file") == 0) {
        rc = read_key_file(c, val, e);
    } else if (strcmp(key, "attempts_max") == 0) {
        rc = conf_int(key, val, 1, 1000, &v, e);
        c->attempts_max = (uint32_t)v;
    } else if (strcmp(key, "backoff_ms_min") == 0) {
        rc = conf_int(key, val, 10, 86400000, &c->backoff_ms_min, e);
    } else if (strcmp(key, "backoff_ms_max") == 0) {
        rc = conf_int(key, val, 10, 86400000, &c->backoff_ms_max, e);
    } else if (strcmp(key, "timeout_ms") == 0) {
        rc = conf_int(key, val, 100, 600000, &c->timeout_ms, e);
    } else if (strcmp(key, "alert_s") == 0) {
        rc = conf_int(key, val, 1, 30 * 86400, &c->alert_s, e);
    } else {
        rc = err_set(e, APL_EINVAL, "unknown setting %s", key);
    }
    return rc;
}

static int conf_check(const struct notify_conf *c, struct errbuf *e) {
    if (c->smtp_url[0] == '\0' && c->webhook_url[0] == '\0') {
        return err_set(e, APL_EINVAL, "neither smtp_url nor webhook_url is set");
    }
    if (c->smtp_url[0] != '\0' && c->smtp_from[0] == '\0') {
        return err_set(e, APL_EINVAL, "smtp_url needs smtp_from");
    }
    if (c->webhook_url[0] != '\0' && c->webhook_key_len == 0) {
        return err_set(e, APL_EINVAL, "webhook_url needs webhook_key_file (the HMAC key)");
    }
    if (c->backoff_ms_min > c->backoff_ms_max) {
        return err_set(e, APL_EINVAL, "backoff_ms_min is above backoff_ms_max");
    }
    return 0;
}

static int conf_read(struct notify_conf *c, const char *path, struct errbuf *e) {
    memset(c, 0, sizeof *c);
    c->attempts_max = NOTIFY_ATTEMPTS_MAX_DEFAULT;
    c->backoff_ms_min = NOTIFY_BACKOFF_MS_MIN_DEFAULT;
    c->backoff_ms_max = NOTIFY_BACKOFF_MS_MAX_DEFAULT;
    c->timeout_ms = NOTIFY_TIMEOUT_MS_DEFAULT;
    c->alert_s = NOTIFY_ALERT_S_DEFAULT;
    char *text = NULL;
    size_t len = 0;
    int rc = util_read_file(path, NOTIFY_CONF_BYTES_MAX, &text, &len);
    if (rc != 0) {
        return err_set(e, rc, "notify config %s: cannot read it", path);
    }
    char *save = NULL;
    unsigned line = 0;
    for (char *l = strtok_r(text, "\n", &save); rc == 0 && l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        l[strcspn(l, "\r")] = '\0';
        char *k = l + strspn(l, " \t");
        if (*k == '#' || *k == '\0') {
            continue;
        }
        char *eq = strchr(k, '=');
        if (eq == NULL) {
            rc = err_set(e, APL_EINVAL, "%s line %u: expected key = value", path, line);
            break;
        }
        char *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) {
            ke--;
        }
        *ke = '\0';
        char *v = eq + 1 + strspn(eq + 1, " \t");
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            v[--vl] = '\0';
        }
        struct errbuf le;
        err_clear(&le);
        rc = conf_line(c, k, v, &le);
        if (rc != 0) {
            err_set(e, rc, "%s line %u: %s", path, line, err_msg(&le, rc));
        }
    }
    util_wipe_free(text, len);
    return rc != 0 ? rc : conf_check(c, e);
}

/* ---- the text, in the language of the appeal ---- */

static enum i18n_lang row_lang(const Appeal__OutboxRow *r) {
    enum i18n_lang l = I18N_EN;
    if (i18n_lang_parse(r->lang, &l) != 0) {
        l = I18N_EN;
    }
    return l;
}

/* The body of the notification. Deterministic: the same row gives the
 * same bytes on every attempt. */
static void render(const struct notify *nt, const Appeal__OutboxRow *r, char *out, size_t cap) {
    const struct i18n *t = &nt->i18n;
    enum i18n_lang l = row_lang(r);
    char day[11] = "";
    if (r->deadline_day != 0) {
        day_format(r->deadline_day, day);
    }
    const char *ev = r->event;
    if (strcmp(ev, "filed") == 0) {
        snprintf(out, cap,
                 i18n_get(t, l,
                          "Your appeal is registered by %s under number %s. The "
                          "answer is due by %s."),
                 r->jurisdiction, r->number, day);
    } else if (strcmp(ev, "forwarded") == 0) {
        snprintf(out, cap,
                 i18n_get(t, l,
                          "Your appeal %s was forwarded to %s, the body "
                          "competent to answer it."),
                 r->number, r->to_jurisdiction);
    } else if (strcmp(ev, "accepted") == 0) {
        snprintf(out, cap,
                 i18n_get(t, l,
                          "Your appeal %s was accepted by %s. The answer is "
                          "due by %s."),
                 r->number, r->jurisdiction, day);
    } else if (strcmp(ev, "extended") == 0 && r->reason[0] != '\0') {
        snprintf(out, cap,
                 i18n_get(t, l,
                          "The term of your appeal %s was extended to %s. "
                          "Reason: %s"),
                 r->number, day, r->reason);
    } else if (strcmp(ev, "extended") == 0) {
        snprintf(out, cap, i18n_get(t, l, "The term of your appeal %s was extended to %s."),
                 r->number, day);
    } else if (strcmp(ev, "answered") == 0) {
        snprintf(out, cap,
                 i18n_get(t, l,
                          "Your appeal %s is answered (%s). Read the answer "
                          "with your number and access code."),
                 r->number, names_outcome(t, l, r->outcome));
    } else if (strcmp(ev, "closed") == 0) {
        snprintf(out, cap, i18n_get(t, l, "Your appeal %s is closed."), r->number);
    } else {
        snprintf(out, cap, i18n_get(t, l, "Your appeal %s is reopened. The answer is due by %s."),
                 r->number, day);
    }
}

static void subject_of(const struct notify *nt, const Appeal__OutboxRow *r, char *out, size_t cap) {
    snprintf(out, cap, i18n_get(&nt->i18n, row_lang(r), "Your appeal %s"), r->number);
}

/* ---- transports ---- */

struct upload {
    const char *p;
    size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg) {
    struct upload *u = arg;
    size_t n = size * nitems < u->left ? size * nitems : u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

static size_t sink_cb(char *buf, size_t size, size_t nitems, void *arg) {
    (void)buf;
    (void)arg;
    return size * nitems;
}

/* The e-mail, RFC 5322 with CRLF lines; its Date is the row's creation so
 * every attempt sends the same bytes. */
static int mail_text(const struct notify *nt, const Appeal__OutboxRow *r, char *out, size_t cap) {
    char subj[256], body[NOTIFY_TEXT_BYTES_MAX], b64[400], date[64];
    subject_of(nt, r, subj, sizeof subj);
    render(nt, r, body, sizeof body);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)subj, strlen(subj),
                      sodium_base64_VARIANT_ORIGINAL);
    time_t secs = (time_t)(r->created_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int n = snprintf(out, cap,
                     "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nSubject: =?UTF-8?B?%s?=\r\n"
                     "Message-ID: <%s@%s.appeal>\r\nX-Appeal-Idempotency-Key: %s\r\n"
                     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\nContent-Language: %s\r\n\r\n%s\r\n",
                     nt->c.smtp_from, r->address, date, b64, r->idem_key, r->jurisdiction,
                     r->idem_key, r->lang[0] ? r->lang : "en", body);
    return n > 0 && (size_t)n < cap ? 0 : APL_ETOOBIG;
}

static int send_mail(struct notify *nt, CURL *h, const Appeal__OutboxRow *r, char *err,
                     size_t errcap) {
    char msg[NOTIFY_TEXT_BYTES_MAX + 2048], from[OUTBOX_ADDRESS_BYTES_MAX + 3],
        to[OUTBOX_ADDRESS_BYTES_MAX + 3];
    if (nt->c.smtp_url[0] == '\0') {
        snprintf(err, errcap, "no smtp_url configured");
        return APL_EINVAL;
    }
    int rc = mail_text(nt, r, msg, sizeof msg);
    if (rc != 0) {
        snprintf(err, errcap, "the message is too long");
        return rc;
    }
    snprintf(from, sizeof from, "<%s>", nt->c.smtp_from);
    snprintf(to, sizeof to, "<%s>", r->address);
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    struct upload u = {msg, strlen(msg)};
    curl_easy_setopt(h, CURLOPT_URL, nt->c.smtp_url);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &u);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    if (nt->c.smtp_user[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_USERNAME, nt->c.smtp_user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, nt->c.smtp_password);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(rcpt);
    if (cc != CURLE_OK) {
        snprintf(err, errcap, "smtp: %s", curl_easy_strerror(cc));
        return APL_EIO;
    }
    return 0;
}

/* The webhook's JSON body: the same bytes on every attempt. Malloc'd. */
static int webhook_body(const struct notify *nt, const Appeal__OutboxRow *r, char **out,
                        size_t *len) {
    char text[NOTIFY_TEXT_BYTES_MAX];
    render(nt, r, text, sizeof text);
    FILE *f = open_memstream(out, len);
    if (f == NULL) {
        return APL_ENOMEM;
    }
    struct json j;
    json_init(&j, f);
    json_obj(&j, NULL);
    json_str(&j, "idempotency_key", r->idem_key);
    json_str(&j, "to", r->address);
    json_str(&j, "number", r->number);
    json_str(&j, "event", r->event);
    json_str(&j, "lang", r->lang[0] ? r->lang : "en");
    json_str(&j, "from", r->jurisdiction);
    json_str(&j, "text", text);
    json_end_obj(&j);
    json_done(&j);
    return fclose(f) == 0 ? 0 : APL_ENOMEM;
}

static int send_webhook(struct notify *nt, CURL *h, const Appeal__OutboxRow *r, char *err,
                        size_t errcap) {
    if (nt->c.webhook_url[0] == '\0') {
        snprintf(err, errcap, "no webhook_url configured");
        return APL_EINVAL;
    }
    char *body = NULL;
    size_t len = 0;
    int rc = webhook_body(nt, r, &body, &len);
    if (rc != 0) {
        snprintf(err, errcap, "cannot build the body");
        return rc;
    }
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, nt->c.webhook_key, nt->c.webhook_key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[2 * sizeof mac + 1], sig[128], idem[160];
    util_hex(mac, sizeof mac, hex);
    snprintf(sig, sizeof sig, "X-Appeal-Signature: sha256=%s", hex);
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", r->idem_key);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    hd = curl_slist_append(hd, sig);
    hd = curl_slist_append(hd, idem);
    curl_easy_setopt(h, CURLOPT_URL, nt->c.webhook_url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_cb);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    free(body);
    if (cc != CURLE_OK) {
        snprintf(err, errcap, "webhook: %s", curl_easy_strerror(cc));
        return APL_EIO;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errcap, "webhook: HTTP %ld", status);
        return APL_EIO;
    }
    return 0;
}

/* One attempt at `r`: 0 when the gateway took it. */
static int attempt(struct notify *nt, const Appeal__OutboxRow *r, char *err, size_t errcap) {
    CURL *h = nt->curl;
    if (h == NULL && (h = nt->curl = curl_easy_init()) == NULL) {
        snprintf(err, errcap, "curl_easy_init failed");
        return APL_ENOMEM;
    }
    curl_easy_reset(h); /* keeps its connections: the next attempt reuses one */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)nt->c.timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,smtp,smtps");
    return strcmp(r->channel, "email") == 0 ? send_mail(nt, h, r, err, errcap)
                                            : send_webhook(nt, h, r, err, errcap);
}

/* ---- the queue ---- */

static char *keep(struct job *j, size_t slot, const char *s) {
    snprintf(j->strs[slot], sizeof j->strs[slot], "%s", s != NULL ? s : "");
    return j->strs[slot];
}

static void take(struct job *j, const Appeal__OutboxRow *r) {
    j->row = *r;
    j->row.base.unknown_fields = NULL;
    j->row.base.n_unknown_fields = 0;
    j->row.number = keep(j, 0, r->number);
    j->row.event = keep(j, 1, r->event);
    j->row.lang = keep(j, 2, r->lang);
    j->row.channel = keep(j, 3, r->channel);
    j->row.address = keep(j, 4, r->address);
    j->row.idem_key = keep(j, 5, r->idem_key);
    j->row.to_jurisdiction = keep(j, 6, r->to_jurisdiction);
    j->row.jurisdiction = keep(j, 7, r->jurisdiction);
    snprintf(j->reason, sizeof j->reason, "%s", r->reason);
    j->row.reason = j->reason;
    j->row.last_error = "";
    j->error[0] = '\0';
}

static bool blocked(char blocked_numbers[][NUMBER_BYTES_MAX + 1], size_t nb, const char *number) {
    for (size_t i = 0; i < nb; i++) {
        if (strcmp(blocked_numbers[i], number) == 0) {
            return true;
        }
    }
    return false;
}

/* Reads the due rows in order: up to NOTIFY_BATCH_MAX ready ones into
 * nt->jobs, skipping every row behind a row of the same appeal that is
 * not ready (order per appeal); counts and ages the rest for metrics. */
static int scan(struct notify *nt, int64_t now) {
    struct store *s = &nt->n->eng.store;
    static const size_t blocked_max = NOTIFY_SCAN_MAX;
    char(*bl)[NUMBER_BYTES_MAX + 1] = calloc(blocked_max, NUMBER_BYTES_MAX + 1);
    struct arena a;
    if (bl == NULL || arena_init(&a, 64 * 1024) != 0) {
        free(bl);
        return APL_ENOMEM;
    }
    size_t nb = 0, seen = 0;
    int64_t oldest = 0;
    nt->n_jobs = 0;
    MDB_txn *t;
    MDB_cursor *c = NULL;
    int rc = store_rd_begin(s, &t);
    bool open = rc == 0;
    if (open && (rc = store_rc(mdb_cursor_open(t, s->dbi[DB_OUTBOX_DUE], &c))) == 0) {
        MDB_val k, v;
        for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0 && seen < NOTIFY_SCAN_MAX;
             m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            seen++;
            arena_reset(&a);
            Appeal__OutboxRow *r = NULL;
            if (store_get_msg(t, s, DB_OUTBOX, v.mv_data, v.mv_size,
                              &appeal__outbox_row__descriptor, &a, (ProtobufCMessage **)&r) != 0) {
                continue; /* cannot be: settled with its due key in one transaction */
            }
            oldest = oldest == 0 || r->created_ms < oldest ? r->created_ms : oldest;
            bool ready = r->next_ms <= now && nt->n_jobs < NOTIFY_BATCH_MAX;
            if (!ready || blocked(bl, nb, r->number)) {
                if (nb < blocked_max && !blocked(bl, nb, r->number)) {
                    snprintf(bl[nb++], NUMBER_BYTES_MAX + 1, "%s", r->number);
                }
                continue;
            }
            take(&nt->jobs[nt->n_jobs++], r);
        }
        mdb_cursor_close(c);
    }
    if (open) {
        store_rd_end(s, t);
    }
    atomic_store(&nt->queued, seen);
    atomic_store(&nt->oldest_ms, oldest);
    arena_fini(&a);
    free(bl);
    return rc;
}

/* On the writer: the batch's results, each row under its key. */
static int settle_run(void *node, MDB_txn *t, struct wreq *r) {
    struct node *n = node;
    struct notify *nt = r->arg;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nt->n_jobs; i++) {
        rc = outbox_settle(&n->eng.store, t, &nt->jobs[i].row);
    }
    return rc;
}

static void settle_done(struct wreq *r) {
    struct notify *nt = r->arg;
    pthread_mutex_lock(&nt->mu);
    nt->settled = true;
    nt->settle_rc = r->rc;
    pthread_cond_signal(&nt->cv);
    pthread_mutex_unlock(&nt->mu);
}

/* Writes the results and waits until they are durable. */
static int settle(struct notify *nt) {
    struct wreq r;
    memset(&r, 0, sizeof r);
    r.run = settle_run;
    r.done = settle_done;
    r.arg = nt;
    pthread_mutex_lock(&nt->mu);
    nt->settled = false;
    pthread_mutex_unlock(&nt->mu);
    int rc = writer_submit(&nt->n->eng.writer, &r);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&nt->mu);
    while (!nt->settled) {
        pthread_cond_wait(&nt->cv, &nt->mu);
    }
    rc = nt->settle_rc;
    pthread_mutex_unlock(&nt->mu);
    return rc;
}

static int64_t backoff_ms(const struct notify_conf *c, uint32_t attempts) {
    int64_t b = c->backoff_ms_min;
    for (uint32_t i = 1; i < attempts && b < c->backoff_ms_max; i++) {
        b *= 2;
    }
    return b < c->backoff_ms_max ? b : c->backoff_ms_max;
}

/* Sends every job once and notes the result in its row. */
static void deliver(struct notify *nt) {
    for (size_t i = 0; i < nt->n_jobs && !atomic_load(&nt->stopping); i++) {
        struct job *j = &nt->jobs[i];
        Appeal__OutboxRow *r = &j->row;
        int rc = attempt(nt, r, j->error, sizeof j->error);
        int64_t now = node_now_ms(nt->n);
        r->attempts++;
        char att[16];
        snprintf(att, sizeof att, "%u", r->attempts);
        if (rc == 0) {
            r->state = APPEAL__OUTBOX_STATE__OUTBOX_SENT;
            r->done_ms = now;
            atomic_fetch_add(&nt->sent, 1);
            olog(OLOG_INFO, "notification_sent", "number", r->number, "event", r->event, "channel",
                 r->channel, "key", r->idem_key, "attempts", att, NULL);
            continue;
        }
        r->last_error = j->error;
        if (r->attempts >= nt->c.attempts_max) {
            r->state = APPEAL__OUTBOX_STATE__OUTBOX_FAILED;
            r->done_ms = now;
            atomic_fetch_add(&nt->failed, 1);
            olog(OLOG_ALERT, "notification_failed", "number", r->number, "event", r->event,
                 "channel", r->channel, "key", r->idem_key, "attempts", att, "error", j->error,
                 NULL);
        } else {
            r->next_ms = now + backoff_ms(&nt->c, r->attempts);
            atomic_fetch_add(&nt->retried, 1);
            olog(OLOG_WARN, "notification_retry", "number", r->number, "channel", r->channel, "key",
                 r->idem_key, "attempts", att, "error", j->error, NULL);
        }
    }
}

static void nap(struct notify *nt, int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&nt->mu);
    if (!atomic_load(&nt->stopping)) {
        pthread_cond_timedwait(&nt->cv, &nt->mu, &ts);
    }
    pthread_mutex_unlock(&nt->mu);
}

static void *notify_main(void *arg) {
    struct notify *nt = arg;
    pthread_setname_np(pthread_self(), "notify");
    while (!atomic_load(&nt->stopping)) {
        int rc = scan(nt, node_now_ms(nt->n));
        if (rc != 0 || nt->n_jobs == 0) {
            nap(nt, NOTIFY_IDLE_MS);
            continue;
        }
        deliver(nt);
        if (atomic_load(&nt->stopping)) {
            break; /* unsettled attempts go again after the restart, same keys */
        }
        rc = settle(nt);
        if (rc != 0) {
            olog(OLOG_WARN, "notification_settle_failed", "error", apl_strerror(rc), NULL);
            nap(nt, NOTIFY_IDLE_MS);
        }
    }
    return NULL;
}

/* ---- life ---- */

int notify_open(struct notify **out, struct node *n, const char *path, struct errbuf *e) {
    struct notify *nt = calloc(1, sizeof *nt);
    int rc = nt != NULL ? 0 : APL_ENOMEM;
    if (rc == 0) {
        nt->n = n;
        nt->jobs = calloc(NOTIFY_BATCH_MAX, sizeof *nt->jobs);
        rc = nt->jobs != NULL ? conf_read(&nt->c, path, e) : APL_ENOMEM;
    }
    if (rc == 0) {
        rc = i18n_open(&nt->i18n, NULL, e);
    }
    if (rc == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = err_set(e, APL_EINVAL, "libcurl could not be initialised");
    }
    if (rc != 0) {
        if (nt != NULL) {
            free(nt->jobs);
            sodium_memzero(&nt->c, sizeof nt->c);
        }
        free(nt);
        return rc;
    }
    pthread_mutex_init(&nt->mu, NULL);
    pthread_cond_init(&nt->cv, NULL);
    *out = nt;
    return 0;
}

int notify_start(struct notify *nt, struct errbuf *e) {
    if (pthread_create(&nt->thread, NULL, notify_main, nt) != 0) {
        return err_set(e, APL_ENOMEM, "cannot start the notification thread");
    }
    nt->started = true;
    return 0;
}

void notify_stop(struct notify *nt) {
    if (nt == NULL || !nt->started) {
        return;
    }
    pthread_mutex_lock(&nt->mu);
    atomic_store(&nt->stopping, true);
    pthread_cond_broadcast(&nt->cv);
    pthread_mutex_unlock(&nt->mu);
    pthread_join(nt->thread, NULL);
    nt->started = false;
    if (nt->curl != NULL) {
        curl_easy_cleanup(nt->curl);
        nt->curl = NULL;
    }
}

void notify_close(struct notify *nt) {
    if (nt == NULL) {
        return;
    }
    notify_stop(nt);
    i18n_close(&nt->i18n);
    curl_global_cleanup();
    pthread_cond_destroy(&nt->cv);
    pthread_mutex_destroy(&nt->mu);
    sodium_memzero(&nt->c, sizeof nt->c);
    free(nt->jobs);
    free(nt);
}

void notify_stats(const struct notify *nt, struct notify_stats *out) {
    memset(out, 0, sizeof *out);
    if (nt == NULL) {
        return;
    }
    struct notify *m = (struct notify *)nt;
    out->sent = atomic_load(&m->sent);
    out->failed = atomic_load(&m->failed);
    out->retried = atomic_load(&m->retried);
    out->queued = atomic_load(&m->queued);
    int64_t oldest = atomic_load(&m->oldest_ms);
    out->oldest_age_ms = oldest != 0 ? node_now_ms(nt->n) - oldest : 0;
}

bool notify_alert(const struct notify *nt, char *detail, size_t cap) {
    struct notify_stats st;
    notify_stats(nt, &st);
    if (nt == NULL) {
        return false;
    }
    if (st.oldest_age_ms > nt->c.alert_s * 1000) {
        snprintf(detail, cap, "%llu notifications undelivered, the oldest for %llds",
                 (unsigned long long)st.queued, (long long)(st.oldest_age_ms / 1000));
        return true;
    }
    if (st.failed > 0) {
        snprintf(detail, cap, "%llu notifications failed after %u attempts since start",
                 (unsigned long long)st.failed, nt->c.attempts_max);
        return true;
    }
    return false;
}
