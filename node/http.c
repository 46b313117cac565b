#include "http.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "cal.h"
#include "expo.h"
#include "jsonout.h"
#include "node.h"
#include "olog.h"
#include "query.h"
#include "repl.h"
#include "survey.h"
#include "view.h"
#include "web_assets.h"

enum { HTTP_HANDLERS_MAX = 32 };

struct http {
    struct node *n;
    nng_http_server *srv;
    nng_url *url;
};

static void reply(nng_aio *aio, uint16_t status, const char *mime, const void *data, size_t len) {
    nng_http_res *res;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, status);
    nng_http_res_set_header(res, "Content-Type", mime);
    nng_http_res_set_header(res, "Cache-Control", "no-store");
    if (nng_http_res_copy_data(res, data, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static struct node *node_of(nng_aio *aio) {
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    return nng_http_handler_get_data(h);
}

static void on_metrics(nng_aio *aio) {
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(node_of(aio), &text, &len) != 0) {
        reply(aio, 500, "text/plain", "cannot render metrics\n", 22);
        return;
    }
    reply(aio, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void on_healthz(nng_aio *aio) {
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
    json_str(&j, "jurisdiction", n->juris);
    json_uint(&j, "head_seq", atomic_load(&n->durable_head));
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
    if (query_run(&n->store, t, &q, NULL, node_today(n), a, &r, &e) == 0 &&
        survey_sources_replica(n, t, r, a) == 0) {
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
    if (rc == 0 && (rc = store_rd_begin(&n->store, &t)) != 0) {
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
    json_str(&j, "jurisdiction", n->juris);
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
    store_rd_end(&n->store, t);
    arena_fini(&a);
    return fclose(f) == 0 ? 0 : APL_ENOMEM;
}

static void on_status(nng_aio *aio) {
    char *text = NULL;
    size_t len = 0;
    if (http_status_json(node_of(aio), &text, &len) != 0) {
        reply(aio, 500, "application/json", "{\"error\":\"cannot read the store\"}\n", 34);
        return;
    }
    reply(aio, 200, "application/json", text, len);
    free(text);
}

static int add(struct http *h, const char *path, void (*cb)(nng_aio *)) {
    nng_http_handler *hd;
    int rv = nng_http_handler_alloc(&hd, path, cb);
    if (rv == 0) {
        rv = nng_http_handler_set_method(hd, "GET");
    }
    if (rv == 0) {
        rv = nng_http_handler_set_data(hd, h->n, NULL);
    }
    if (rv == 0) {
        rv = nng_http_server_add_handler(h->srv, hd);
    }
    return rv;
}

int http_start(struct http **out, struct node *n, const char *addr, struct errbuf *e) {
    struct http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return APL_ENOMEM;
    }
    h->n = n;
    char url[300];
    snprintf(url, sizeof url, "http://%s", addr);
    int rv = nng_url_parse(&h->url, url);
    if (rv == 0) {
        rv = nng_http_server_hold(&h->srv, h->url);
    }
    if (rv == 0) {
        rv = add(h, "/metrics", on_metrics);
    }
    if (rv == 0) {
        rv = add(h, "/healthz", on_healthz);
    }
    if (rv == 0) {
        rv = add(h, "/api/status", on_status);
    }
    for (size_t i = 0; rv == 0 && i < web_assets_count; i++) {
        nng_http_handler *hd;
        rv = nng_http_handler_alloc_static(&hd, web_assets[i].path, web_assets[i].data,
                                           web_assets[i].len, web_assets[i].mime);
        if (rv == 0) {
            rv = nng_http_server_add_handler(h->srv, hd);
        }
    }
    if (rv == 0) {
        rv = nng_http_server_start(h->srv);
    }
    if (rv != 0) {
        http_stop(h);
        return err_set(e, APL_ENET, "cannot serve HTTP on %s: %s", addr, nng_strerror(rv));
    }
    olog(OLOG_INFO, "http_listening", "url", url, NULL);
    *out = h;
    return 0;
}

void http_stop(struct http *h) {
    if (h == NULL) {
        return;
    }
    if (h->srv != NULL) {
        nng_http_server_stop(h->srv);
        nng_http_server_release(h->srv);
    }
    if (h->url != NULL) {
        nng_url_free(h->url);
    }
    free(h);
}
