/*
 * bounds.h: every size and count the node accepts, in one place. Inputs
 * past a limit are refused with a clear error before anything is
 * allocated for them or written. Units are last in each name.
 */
#ifndef APPEAL_BOUNDS_H
#define APPEAL_BOUNDS_H

enum {
    /* Records. */
    RECORD_BYTES_MAX = 128 * 1024, /* one envelope */
    RECORD_ARENA_BYTES = 1024 * 1024,

    /* Texts of an appeal (bytes of UTF-8). */
    SUBJECT_BYTES_MAX = 1000,
    BODY_TEXT_BYTES_MAX = 32 * 1024,
    ANSWER_TEXT_BYTES_MAX = 32 * 1024,
    NAME_BYTES_MAX = 300,
    ADDRESS_BYTES_MAX = 500,
    CONTACTS_BYTES_MAX = 300,
    REASON_BYTES_MAX = 2000,
    ASSIGNEE_BYTES_MAX = 200,
    LABEL_BYTES_MAX = 200,
    CATEGORY_BYTES_MAX = 31,
    SEALED_BYTES_MAX = 80 * 1024,

    /* Jurisdictions (docs/record-format.md 8.1): a region "KZ-75", an
     * office "KZ-75.751210000" (its region, '.', its KATO code). The
     * longest fits the char[16] buffers that hold a jurisdiction. */
    JURIS_CHARS_MAX = 15,
    KATO_DIGITS = 9,

    /* Client API. */
    REQUEST_BYTES_MAX = 128 * 1024,       /* NNG_OPT_RECVMAXSZ of the API socket */
    REQUEST_REPEATED_MAX = 64,            /* any repeated field of a request */
    RESPONSE_BYTES_MAX = 4 * 1024 * 1024, /* what a client accepts */
    LIST_LIMIT_DEFAULT = 100,
    LIST_LIMIT_MAX = 1000,
    HISTORY_SHOWN_MAX = 1000, /* events in one AppealView */
    API_CONTEXTS = 256,       /* requests served concurrently (32 clients x 8 pipelined) */
    API_ARENA_BYTES = 512 * 1024,
    /* Live queries wait for other nodes (up to their deadline): they are
     * handed off to a queue of their own and the API context goes back to
     * serving; past these counts the node answers at once "too many live
     * queries" (docs/operations.md "Limits"). */
    LIVE_QUERIES_MAX = 16,        /* queued or running, all clients */
    LIVE_QUERIES_PER_KEY_MAX = 4, /* queued or running, one signing key */
    /* Sessions (docs/security.md "Sessions"): one per connection at most,
     * a request's counter accepted once and only within SESSION_WINDOW of
     * the highest seen; past the counts a new session is refused. */
    SESSIONS_MAX = 1024,          /* open on one node */
    SESSIONS_PER_KEY_MAX = 64,    /* open for one official's key */
    SESSION_WINDOW = 64,          /* counters below the highest still accepted */
    SESSION_TTL_S_DEFAULT = 3600, /* --session-ttl-s */
    SESSION_TTL_S_MAX = 24 * 3600,

    /* Connections, per listener (client API, --http, peer port): past the
     * cap a new connection is closed at once; one with no request in
     * progress for the idle time is closed (docs/operations.md "Limits"). */
    CONNECTIONS_MAX_DEFAULT = 256, /* --connections-max */
    CONNECTIONS_MAX_LIMIT = 65536,
    IDLE_MS_DEFAULT = 60 * 1000, /* --idle-timeout-ms */
    IDLE_MS_MIN = 100,

    /* Writer. */
    WRITER_QUEUE_MAX = 4096, /* requests waiting for the writer */
    WRITER_BATCH_MAX = 512,  /* requests in one group commit */
    WRITER_RETRIES_MAX = 16, /* map growths for one batch */

    /* Number of an appeal within a year. */
    REGNO_MAX = 99999999,
};

/* Relations between the limits, checked by the compiler. */
_Static_assert(RECORD_ARENA_BYTES >= 2 * RECORD_BYTES_MAX,
               "a record's decoding arena holds its envelope and its body");
_Static_assert(LIST_LIMIT_DEFAULT <= LIST_LIMIT_MAX, "the default list is one the node allows");
_Static_assert(LIVE_QUERIES_PER_KEY_MAX <= LIVE_QUERIES_MAX,
               "one key's live queries are counted in all clients'");
_Static_assert(SESSIONS_PER_KEY_MAX <= SESSIONS_MAX && SESSION_WINDOW == 64 &&
                   SESSION_TTL_S_DEFAULT <= SESSION_TTL_S_MAX,
               "one key's sessions are counted in all; the window is one 64-bit mask");
_Static_assert(CONNECTIONS_MAX_DEFAULT <= CONNECTIONS_MAX_LIMIT && IDLE_MS_MIN <= IDLE_MS_DEFAULT,
               "the defaults are values the options accept");
_Static_assert(WRITER_BATCH_MAX <= WRITER_QUEUE_MAX, "a batch is taken from the queue");
_Static_assert(API_ARENA_BYTES >= 2 * REQUEST_BYTES_MAX,
               "an API context's arena decodes the largest request it accepts");

#endif
