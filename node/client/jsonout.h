/*
 * jsonout.h: the JSON shapes shared by appealctl and the node's HTTP API
 * (docs/cli.md lists the fields), so both say the same thing the same way.
 */
#ifndef APPEAL_JSONOUT_H
#define APPEAL_JSONOUT_H

#include "api.pb-c.h"
#include "json.h"
#include "query.h"

/* The fields of `appealctl cluster status --json`, into the open object. */
void json_cluster_fields(struct json *j, const Appeal__ClusterStatus *s);
/* count, open, overdue, share_overdue, answered, answered_in_term,
 * share_answered_in_term, rated, share_satisfied, median_days_to_answer. */
void json_group_measures(struct json *j, const Appeal__QueryGroup *g);

#endif
