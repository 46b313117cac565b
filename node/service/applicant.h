/*
 * applicant.h: the applicant's own view of their appeal, opened with the
 * number and the access code (docs/open311.md "The applicant's own view",
 * node/domain/access.h).
 *
 * GET /open311/v2/requests/NUMBER/mine.json?code=CODE (or .xml). On the
 * node that handles the appeal: the whole appeal, the applicant's own data
 * and the answer's text included. On a node that holds only a replica: the
 * code is checked there too (its hash is in the replicated AppealFiled)
 * and, when right, the answer names the jurisdiction to ask.
 *
 * A wrong code and an unknown number get the same answer, 403 "wrong
 * number or access code", so the endpoint does not tell whether a number
 * exists. Wrong tries are limited per number and per client address
 * (APPLICANT_TRIES_MAX per APPLICANT_WINDOW_MS): past the limit every try
 * on that number or from that address is 429 until the window passes, right
 * code or not. Nothing here writes to the store.
 *
 * Language: the view's names and notes are in the language of the appeal
 * (AppealFiled.lang), unless the request asks for another by `locale=` or
 * Accept-Language (kk, ru, en); the machine values stay as they are.
 *
 * Threads: the Open311 httpd thread only (the windows are not locked).
 */
#ifndef APPEAL_APPLICANT_H
#define APPEAL_APPLICANT_H

#include <stdbool.h>

#include "httpd.h"
#include "i18n.h"

struct node;
struct applicant;

enum {
    APPLICANT_TRIES_MAX = 5,              /* wrong codes per window, per number or address */
    APPLICANT_WINDOW_MS = 15 * 60 * 1000, /* the window */
    APPLICANT_TRACKED_MAX = 4096,         /* numbers and addresses remembered (oldest go) */
    APPLICANT_ARENA_BYTES = 512 * 1024,   /* one appeal's view */
};

/* `tr`: the catalogues (kept, not copied: they outlive the applicant). */
int applicant_open(struct applicant **out, struct node *n, const struct i18n *tr);
void applicant_close(struct applicant *a);

/* Answers GET requests/NUMBER/mine; `number` is as given (checked here). */
void applicant_mine(struct applicant *a, const struct httpd_req *r, const char *number, bool xml,
                    struct httpd_res *res);

/* Answers POST requests/NUMBER/rating (form: code, rating = satisfied or
 * not_satisfied, comment optional): on the node that handles the appeal,
 * a Rated record (appeal.h appeal_rate, which checks everything again in
 * the write transaction). The code is checked here first, counted like
 * the view's wrong tries; the answer is deferred until the commit is
 * durable. One rating per appeal: a second (or a replay) is 409. */
void applicant_rate(struct applicant *a, const struct httpd_req *r, const char *number, bool xml,
                    struct httpd_res *res);
/* POST requests/NUMBER/complaint.{json,xml} (form: code, description):
 * the applicant's complaint about the answer, registered here and
 * forwarded at once to the higher body (appeal_complain). The code is
 * checked and counted as for mine; answered with the new number and its
 * access code after the durable commit. */
void applicant_complain(struct applicant *a, const struct httpd_req *r, const char *number,
                        bool xml, struct httpd_res *res);

#endif
