/*
 * http.h: the node's HTTP side (`--http`, on httpd.h: one thread of its
 * own, whose handlers are quick reads), for operators and the
 * national office's browsers:
 *
 *   GET /metrics      Prometheus text exposition format (prom.h)
 *   GET /healthz      200 {"status":"ok",...}; 503 when recovering or frozen
 *   GET /api/status   the dashboard's data: node, regions, replication, alerts
 *   GET /             the dashboard (node/service/web/, embedded at build time)
 *
 * Read-only: nothing here changes the node, and nothing here shows
 * personal data. Bind it to an internal address.
 */
#ifndef APPEAL_HTTP_H
#define APPEAL_HTTP_H

#include "err.h"

struct node;
struct http;

/* `addr` is HOST:PORT. */
int http_start(struct http **out, struct node *n, const char *addr, struct errbuf *e);
void http_stop(struct http *h);

/* The /api/status document, malloc'd. */
int http_status_json(struct node *n, char **out, size_t *len);

#endif
