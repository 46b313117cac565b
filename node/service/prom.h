/*
 * prom.h: the node's metrics in the Prometheus text exposition format
 * (version 0.0.4): served on /metrics over HTTP and by `appealctl metrics`.
 * Names follow Prometheus conventions: `appeal_` prefix, base units,
 * `_total` for counters, `_seconds` and `_bytes` suffixes.
 */
#ifndef APPEAL_PROM_H
#define APPEAL_PROM_H

#include <stddef.h>

struct node;

/* Renders every metric into a malloc'd NUL-terminated text. */
int prom_render(struct node *n, char **out, size_t *len);

#endif
