/*
 * view.h: the read side of the client API: one appeal with its history,
 * lists of a jurisdiction's appeals, the node's info. Everything is built
 * in the caller's arena from one read-only transaction.
 *
 * Personal data is opened only when this node owns the appeal and holds
 * the key it was sealed with; otherwise the view says it was withheld.
 */
#ifndef APPEAL_VIEW_H
#define APPEAL_VIEW_H

#include "api.pb-c.h"
#include "err.h"
#include "pbdecode.h"
#include "store.h"

struct node;

int view_appeal(struct node *n, MDB_txn *t, const char *number, bool may_read, struct arena *a,
                Appeal__AppealView **out, struct errbuf *e);
int view_list(struct node *n, MDB_txn *t, const Appeal__ListRequest *q, struct arena *a,
              Appeal__AppealList **out, struct errbuf *e);
int view_info(struct node *n, MDB_txn *t, struct arena *a, Appeal__NodeInfo **out);
/* Overdue appeals of the given jurisdictions (all known ones by default),
 * without personal data: number, owner, region, type, category, days. */
int view_overdue_list(struct node *n, MDB_txn *t, const Appeal__OverdueRequest *q, struct arena *a,
                      Appeal__OverdueList **out, struct errbuf *e);

/* Overdue by the node's clock and calendar: open and past its deadline.
 * `days` gets the working days past the deadline. */
bool view_overdue(const struct node *n, const Appeal__AppealRow *row, int32_t today, int32_t *days);

#endif
