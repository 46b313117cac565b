#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "cal.h"
#include "prom.h"
#include "httpd.h"
#include "i18n.h"
#include "jsonout.h"
#include "node.h"
#include "olog.h"
#include "query.h"
#include "repl.h"
#include "survey.h"
#include "view.h"
#include "web_assets.h"

struct http {
    struct node *n;
    struct httpd *srv;
};

/* One handler call: the node and the answer to fill (called `aio` in the
 * handlers, after the nng callbacks they were). */
struct http_call {
    struct node *n;
    struct httpd_res *res;
};

static void reply(struct http_call *aio, uint16_t status, const char *mime, const void *data,
                  size_t len) {
    struct httpd_res *res = aio->res;
    void *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        *res = (struct httpd_res){
            .status = 503, .content_type = "text/plain", .body = "out of memory\n", .len = 14};
        return;
    }
    memcpy(copy, data, len);
    *res = (struct httpd_res){.status = status,
                              .content_type = mime,
                              .body = copy,
                              .len = len,
                              .body_free = true,
                              .cache_control = "no-store"};
}

static struct node *node_of(struct http_call *aio) {
    return aio->n;
}

static void on_metrics(struct http_call *aio) {
    char *text = NULL;
    size_t len = 0;
    if (prom_render(node_of(aio), &text, &len) != 0) {
        reply(aio, 500, "text/plain", "cannot render metrics\n", 22);
        return;
    }
    reply(aio, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void on_healthz(struct http_call *aio) {
    struct node *n = node_of(aio);
    char reason[NODE_HEALTH_REASON_BYTES];
    const char *status = node_health(n, reason, sizeof reason);
    char body[1024];
    FILE *f = fmemopen(body, sizeof body, "w");
    if (f == NULL) {
        reply(aio, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    struct json j;
    json_init(&j, f);
    json_obj(&j, NULL);
    json_str(&j, "status", status);
    if (reason[0] != '\0') {
        json_str(&j, "reason", reason); /* why writes are refused */
    }
    json_str(&j, "jurisdiction", n->eng.juris);
    json_uint(&j, "head_seq", atomic_load(&n->eng.durable_head));
    json_end_obj(&j);
    json_done(&j);
    long len = ftell(f);
    fclose(f);
    reply(aio, strcmp(status, "ok") == 0 ? 200 : 503, "application/json", body, (size_t)len);
}

/* The regions' aggregates, from the replica, with their sources. */
static void regions(struct json *j, struct node *n, MDB_txn *t, struct arena *a) {
    static char *by[] = {"region"};
    Appeal__QueryRequest q = APPEAL__QUERY_REQUEST__INIT;
    q.by = by;
    q.n_by = 1;
    Appeal__QueryResult *r = NULL;
    struct errbuf e;
    err_clear(&e);
    json_arr(j, "regions");
    if (query_run(&n->eng.store, t, &q, NULL, node_today(n), a, &r, &e) == 0 &&
        survey_sources_replica(&n->eng, n->repl, t, r, a) == 0) {
        for (size_t i = 0; i < r->n_sources; i++) {
            const Appeal__SourceInfo *s = r->sources[i];
            json_obj(j, NULL);
            json_str(j, "code", s->jurisdiction);
            json_str(j, "source", s->source);
            if (s->staleness_ms >= 0) {
                json_num(j, "staleness_s", (double)s->staleness_ms / 1000.0);
            } else {
                json_null(j, "staleness_s");
            }
            json_uint(j, "lag_records", s->lag_records);
            json_uint(j, "fold_lag_records", s->fold_lag_records);
            Appeal__QueryGroup empty = APPEAL__QUERY_GROUP__INIT;
            const Appeal__QueryGroup *g = &empty;
            for (size_t k = 0; k < r->n_groups; k++) {
                if (strcmp(r->groups[k]->keys[0], s->jurisdiction) == 0) {
                    g = r->groups[k];
                }
            }
            json_group_measures(j, g);
            json_end_obj(j);
        }
    }
    json_end_arr(j);
}

static void alerts_json(struct json *j, struct node *n) {
    struct alert *active = malloc(ALERTS_MAX * sizeof *active);
    uint32_t na = active != NULL ? alerts_snapshot(&n->alerts, active, ALERTS_MAX) : 0;
    json_arr(j, "alerts");
    for (uint32_t i = 0; i < na; i++) {
        json_obj(j, NULL);
        json_str(j, "alert", active[i].name);
        json_str(j, "subject", active[i].subject);
        json_str(j, "detail", active[i].detail);
        json_int(j, "since_ms", active[i].since_ms);
        json_end_obj(j);
    }
    json_end_arr(j);
    free(active);
}

int http_status_json(struct node *n, char **out, size_t *len) {
    FILE *f = open_memstream(out, len);
    if (f == NULL) {
        return APL_ENOMEM;
    }
    struct arena a;
    MDB_txn *t;
    int rc = arena_init(&a, 8u << 20);
    if (rc == 0 && (rc = store_rd_begin(&n->eng.store, &t)) != 0) {
        arena_fini(&a);
    }
    if (rc != 0) {
        fclose(f);
        free(*out);
        return rc;
    }
    struct json j;
    json_init(&j, f);
    json_obj(&j, NULL);
    json_str(&j, "jurisdiction", n->eng.juris);
    json_int(&j, "generated_ms", node_now_ms(n));
    char today[11];
    day_format(node_today(n), today);
    json_str(&j, "today", today);
    Appeal__NodeInfo *info;
    if (view_info(n, t, &a, &info) == 0) {
        json_obj(&j, "node");
        json_uint(&j, "head_seq", info->head_seq);
        json_uint(&j, "appeals", info->appeals);
        json_str(&j, "software", info->software);
        json_bool(&j, "recovering", repl_recovering(n->repl));
        json_end_obj(&j);
    }
    regions(&j, n, t, &a);
    Appeal__ClusterStatus *s;
    if (n->repl != NULL && repl_status(n->repl, t, &a, &s) == 0) {
        json_obj(&j, "cluster");
        json_cluster_fields(&j, s);
        json_end_obj(&j);
    } else {
        json_null(&j, "cluster");
    }
    alerts_json(&j, n);
    json_end_obj(&j);
    json_done(&j);
    store_rd_end(&n->eng.store, t);
    arena_fini(&a);
    return fclose(f) == 0 ? 0 : APL_ENOMEM;
}

static void on_status(struct http_call *aio) {
    char *text = NULL;
    size_t len = 0;
    if (http_status_json(node_of(aio), &text, &len) != 0) {
        reply(aio, 500, "application/json", "{\"error\":\"cannot read the store\"}\n", 34);
        return;
    }
    reply(aio, 200, "application/json", text, len);
    free(text);
}

/* The node's handlers through httpd: `arg` is the handler, h->n the node. */
struct http_route_arg {
    struct http *h;
    void (*cb)(struct http_call *);
};

static void call(void *arg, const struct httpd_req *req, struct httpd_res *res) {
    const struct http_route_arg *ra = arg;
    struct http_call c = {.n = ra->h->n, .res = res};
    (void)req;
    ra->cb(&c);
}

static void asset(void *arg, const struct httpd_req *req, struct httpd_res *res) {
    const struct web_asset *w = arg;
    (void)req;
    *res =
        (struct httpd_res){.status = 200, .content_type = w->mime, .body = w->data, .len = w->len};
}

/* GET /i18n.json[?lang=kk|ru|en]: the dashboard's strings (embedded,
 * /i18n/LANG.json) in the language asked for by `lang`, else by
 * Accept-Language, else English (docs/i18n.md). */
static void i18n_strings(void *arg, const struct httpd_req *req, struct httpd_res *res) {
    (void)arg;
    enum i18n_lang lang = I18N_EN;
    const char *q = req->query != NULL ? strstr(req->query, "lang=") : NULL;
    if (q == NULL || (q != req->query && q[-1] != '&') || i18n_lang_parse(q + 5, &lang) != 0) {
        lang = i18n_negotiate(httpd_header(req, "Accept-Language"), I18N_EN);
    }
    char path[32];
    snprintf(path, sizeof path, "/i18n/%s.json", i18n_lang_code(lang));
    for (size_t i = 0; i < web_assets_count; i++) {
        if (strcmp(web_assets[i].path, path) == 0) {
            *res = (struct httpd_res){.status = 200,
                                      .content_type = web_assets[i].mime,
                                      .body = web_assets[i].data,
                                      .len = web_assets[i].len,
                                      .cache_control = "no-store"};
            return;
        }
    }
    *res = (struct httpd_res){
        .status = 404, .content_type = "text/plain", .body = "no strings\n", .len = 11};
}

int http_start(struct http **out, struct node *n, const char *addr, struct errbuf *e) {
    static const struct {
        const char *path;
        void (*cb)(struct http_call *);
    } own[] = {{"/metrics", on_metrics}, {"/healthz", on_healthz}, {"/api/status", on_status}};
    enum { OWN = sizeof own / sizeof own[0] };
    if (OWN + 1 + web_assets_count > HTTPD_ROUTES_MAX) {
        return err_set(e, APL_EINVAL, "too many HTTP routes (HTTPD_ROUTES_MAX)");
    }
    struct http *h = calloc(1, sizeof *h + OWN * sizeof(struct http_route_arg));
    if (h == NULL) {
        return err_set(e, APL_ENOMEM, "out of memory");
    }
    h->n = n;
    struct http_route_arg *args = (struct http_route_arg *)(h + 1);
    struct httpd_route routes[HTTPD_ROUTES_MAX];
    size_t nr = 0;
    for (size_t i = 0; i < OWN; i++) {
        args[i] = (struct http_route_arg){h, own[i].cb};
        routes[nr++] = (struct httpd_route){"GET", own[i].path, call, &args[i]};
    }
    routes[nr++] = (struct httpd_route){"GET", "/i18n.json", i18n_strings, NULL};
    for (size_t i = 0; i < web_assets_count; i++) {
        routes[nr++] =
            (struct httpd_route){"GET", web_assets[i].path, asset, (void *)&web_assets[i]};
    }
    struct httpd_limits lim = {.connections_max = n->connections_max, .idle_ms = n->idle_ms};
    int rc = httpd_start(&h->srv, addr, routes, nr, &lim, &n->eng.metrics.http_connections, e);
    if (rc != 0) {
        free(h);
        return rc;
    }
    char url[300];
    snprintf(url, sizeof url, "http://%s", addr);
    olog(OLOG_INFO, "http_listening", "url", url, NULL);
    *out = h;
    return 0;
}

void http_stop(struct http *h) {
    if (h == NULL) {
        return;
    }
    httpd_stop(h->srv);
    free(h);
}
