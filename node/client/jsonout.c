#include "jsonout.h"

/* The nodes that dial this one, and this node's own clock refusal. */
static void dialer_fields(struct json *j, const Appeal__ClusterStatus *s) {
    json_arr(j, "dialers");
    for (size_t i = 0; i < s->n_dialers; i++) {
        const Appeal__DialerStatus *d = s->dialers[i];
        json_obj(j, NULL);
        json_str(j, "jurisdiction", d->jurisdiction);
        json_int(j, "last_contact_ms", d->last_contact_ms);
        json_int(j, "clock_skew_ms", d->clock_skew_ms);
        json_bool(j, "clock_refused", d->clock_refused);
        json_end_obj(j);
    }
    json_end_arr(j);
    json_int(j, "clock_refused_ms", s->clock_refused_ms);
    json_str(j, "clock_ref", s->clock_ref);
}

void json_cluster_fields(struct json *j, const Appeal__ClusterStatus *s) {
    json_str(j, "jurisdiction", s->jurisdiction);
    json_bool(j, "recovering", s->recovering);
    json_int(j, "now_ms", s->now_ms);
    json_arr(j, "peers");
    for (size_t i = 0; i < s->n_peers; i++) {
        const Appeal__PeerStatus *p = s->peers[i];
        json_obj(j, NULL);
        json_str(j, "jurisdiction", p->jurisdiction);
        json_str(j, "url", p->url);
        json_bool(j, "reachable", p->reachable);
        json_int(j, "last_contact_ms", p->last_contact_ms);
        json_int(j, "last_ok_ms", p->last_ok_ms);
        json_str(j, "last_error", p->last_error);
        json_uint(j, "errors", p->errors);
        json_uint(j, "refused_records", p->refused_records);
        json_uint(j, "records_in", p->records_in);
        json_uint(j, "backoff_ms", p->backoff_ms);
        json_int(j, "clock_skew_ms", p->clock_skew_ms);
        json_obj(j, "marks");
        for (size_t k = 0; k < p->n_marks; k++) {
            json_obj(j, p->marks[k]->jurisdiction);
            json_uint(j, "peer", p->marks[k]->peer_seq);
            json_uint(j, "local", p->marks[k]->local_seq);
            json_end_obj(j);
        }
        json_end_obj(j);
        json_end_obj(j);
    }
    json_end_arr(j);
    json_arr(j, "origins");
    for (size_t i = 0; i < s->n_origins; i++) {
        const Appeal__OriginStatus *o = s->origins[i];
        json_obj(j, NULL);
        json_str(j, "jurisdiction", o->jurisdiction);
        json_hex(j, "origin", o->origin.data, o->origin.len);
        json_uint(j, "local_seq", o->local_seq);
        json_hex(j, "head_hash", o->head_hash.data, o->head_hash.len);
        json_int(j, "local_head_time_ms", o->local_head_time_ms);
        json_uint(j, "best_known_seq", o->best_known_seq);
        json_uint(j, "lag_records", o->lag_records);
        json_uint(j, "folded_seq", o->folded_seq);
        json_uint(j, "fold_lag_records", o->fold_lag_records);
        json_int(j, "staleness_ms", o->staleness_ms);
        json_bool(j, "frozen", o->frozen);
        json_str(j, "frozen_reason", o->frozen_reason);
        json_end_obj(j);
    }
    json_end_arr(j);
    dialer_fields(j, s);
    json_arr(j, "forks");
    for (size_t i = 0; i < s->n_forks; i++) {
        json_obj(j, NULL);
        json_str(j, "jurisdiction", s->forks[i]->jurisdiction);
        json_uint(j, "seq", s->forks[i]->seq);
        json_str(j, "via", s->forks[i]->via);
        json_int(j, "seen_ms", s->forks[i]->seen_ms);
        json_end_obj(j);
    }
    json_end_arr(j);
}

void json_group_measures(struct json *j, const Appeal__QueryGroup *g) {
    json_uint(j, "count", g->count);
    json_uint(j, "open", g->open);
    json_uint(j, "overdue", g->overdue);
    json_num(j, "share_overdue", g->count ? (double)g->overdue / (double)g->count : 0);
    json_uint(j, "answered", g->answered);
    json_uint(j, "answered_in_term", g->answered_in_term);
    json_num(j, "share_answered_in_term",
             g->answered ? (double)g->answered_in_term / (double)g->answered : 0);
    json_uint(j, "rated", g->rated);
    json_num(j, "share_satisfied", g->rated ? (double)g->satisfied / (double)g->rated : 0);
    double median = query_median_days(g->days, g->n_days);
    if (median >= 0) {
        json_num(j, "median_days_to_answer", median);
    } else {
        json_null(j, "median_days_to_answer");
    }
}
