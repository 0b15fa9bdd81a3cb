/*
 * risksim-wsbridge stats: the bridge's counters and their two renderings, GET /metrics
 * (Prometheus text) and GET /healthz (JSON).
 *
 * Why this file exists: an operator must see from outside whether the bridge can read the job
 * store, how far behind the database it is, how many sessions it holds and whether slow clients
 * lose messages. The counters are plain fields of one struct owned by the service thread; the
 * renderers are pure functions writing into a caller's bounded buffer, so that the unit tests
 * check the exact text.
 */
#ifndef RISKSIM_WSBRIDGE_STATS_H
#define RISKSIM_WSBRIDGE_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Why a connection was refused at its handshake (the label of the rejected counter). */
typedef enum wsb_reject {
    WSB_REJ_ROUTE = 0, /* HTTP 404: not a stream URL */
    WSB_REJ_AUTH,      /* 4001 */
    WSB_REJ_ORIGIN,    /* 4003 */
    WSB_REJ_TOO_MANY,  /* 4029 */
    WSB_REJ_QUERY,     /* 1008 */
    WSB_REJ_NOT_FOUND, /* 4004 */
    WSB_REJ_INTERNAL,  /* 1011: the job store could not be read */
    WSB_REJ_STOPPING,  /* 1001: the bridge is stopping */
    WSB_REJ_KINDS
} wsb_reject;

/* How an open session ended (the label of the closed counter). */
typedef enum wsb_end {
    WSB_END_DONE = 0, /* 1000 after complete or cancelled */
    WSB_END_FAILED,   /* 4000 after error */
    WSB_END_SHUTDOWN, /* 1001 at shutdown */
    WSB_END_IDLE,     /* 1001 after idle_timeout_s without client traffic */
    WSB_END_TOO_BIG,  /* 1009 */
    WSB_END_SLOW,     /* 1008: more undroppable messages queued than the hard limit */
    WSB_END_INTERNAL, /* 1011: the job store could not be read during the replay */
    WSB_END_CLIENT,   /* the client closed or went away */
    WSB_END_KINDS
} wsb_end;

/* Returns the metric label of a reason ("route", "4001", ...; "done", "failed", ...). */
const char *wsb_reject_label(wsb_reject r);
const char *wsb_end_label(wsb_end e);

/* The longest last database error kept. */
#define WSB_ERROR_TEXT_MAX 200

typedef struct wsb_stats {
    uint64_t sessions_opened;
    uint64_t rejected[WSB_REJ_KINDS];
    uint64_t closed[WSB_END_KINDS];
    uint64_t msgs_sent; /* messages written to clients */
    uint64_t bytes_sent;
    uint64_t msgs_collapsed; /* progress messages replaced by a newer one for a slow client */
    uint64_t msgs_dropped;   /* messages not queued because a client's queue was full */
    uint64_t client_msgs;    /* messages received from clients */
    uint64_t bad_msgs;       /* ... of which answered with bad_message */
    uint64_t poll_ticks;     /* poll timer runs */
    uint64_t version_probes; /* PRAGMA data_version reads */
    uint64_t event_queries;  /* reads of new events (all jobs) */
    uint64_t events_read;    /* events those reads returned */
    uint64_t replay_queries; /* reads of one job's events for a session's replay */
    uint64_t replay_events;  /* events those reads returned */
    uint64_t db_errors;
    char last_db_error[WSB_ERROR_TEXT_MAX]; /* "" when none yet */
    int64_t last_db_error_ms;               /* wall clock, 0 when none yet */
    int64_t lag_last_ms;                    /* poll lag of the newest event fanned out */
    int64_t lag_max_ms;
    uint64_t lag_count;
    double lag_sum_ms;
} wsb_stats;

/* What the renderers need besides the counters. */
typedef struct wsb_gauges {
    const char *version;
    unsigned sessions;   /* open sessions (replaying or live) */
    size_t jobs;         /* jobs with at least one session */
    int db_ok;           /* the last database access succeeded */
    int stopping;        /* SIGTERM received */
    int64_t cursor;      /* the seq of the newest event read (-1 while unknown) */
    int64_t poll_age_ms; /* since the last successful poll (-1: none yet) */
    unsigned backoff_ms; /* current retry delay after database errors (0 when healthy) */
} wsb_gauges;

/* Records a database failure: counts it and keeps what (cut to WSB_ERROR_TEXT_MAX - 1 bytes)
 * with its time. */
void wsb_stats_db_error(wsb_stats *s, const char *what, int64_t now_ms);

/* Records the lag (fan-out time minus the event's ts) of one event. */
void wsb_stats_lag(wsb_stats *s, int64_t lag_ms);

/* Writes the Prometheus text of s and g into buf (cap bytes, NUL-terminated, cut at a line
 * when it would not fit). Returns the length written. */
size_t wsb_metrics_render(const wsb_stats *s, const wsb_gauges *g, char *buf, size_t cap);

/* Writes the /healthz JSON into buf (cap bytes, NUL-terminated) and the HTTP status it goes
 * with (200 when the database is readable and the bridge is not stopping, else 503) into
 * *status. Returns the length written, or 0 when it did not fit. */
size_t wsb_health_render(const wsb_stats *s, const wsb_gauges *g, char *buf, size_t cap,
                         int *status);

#endif
