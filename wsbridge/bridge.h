/*
 * risksim-wsbridge: the daemon's internal interface between its modules (server.c: the
 * libwebsockets context, the HTTP answers and the stop; session.c: one WebSocket session;
 * poller.c: the job store and the fan-out of new events).
 *
 * Why this file exists: the bridge is one libwebsockets service thread, and every piece of it
 * (the poll timer, the handshakes, the writes) runs on that thread and shares one context, the
 * struct wsb below, instead of globals. The pure parts (message.h, queue.h, fanout.h, stats.h)
 * have their own headers and know nothing of libwebsockets or SQLite.
 */
#ifndef RISKSIM_WSBRIDGE_BRIDGE_H
#define RISKSIM_WSBRIDGE_BRIDGE_H

#include <libwebsockets.h>
#include <stdint.h>

#include "risksim/clock.h"
#include "fanout.h"
#include "message.h"
#include "queue.h"
#include "risksim/config.h"
#include "risksim/db.h"
#include "stats.h"

#ifndef RISKSIM_VERSION
#define RISKSIM_VERSION "unknown"
#endif

/* Events one poll query reads at most; a full page is followed by another query at once. */
#define WSB_POLL_PAGE 1000
/* Pages read in one poll tick before the service loop gets a turn (the next tick is then
 * scheduled without delay). */
#define WSB_POLL_PAGES 8
/* The first and the largest delay between retries after a job store error. */
#define WSB_BACKOFF_FIRST_MS 100
#define WSB_BACKOFF_MAX_MS 5000
/* The longest a replay read asks for (and never more than the free room of the queue). */
#define WSB_REPLAY_PAGE 256
/* Period of the sweep over every session (ping, heartbeat and idle checks): one timer for the
 * bridge, not one per session, whose rescheduling would walk libwebsockets' sorted timer list
 * (linear in the sessions) for every session. */
#define WSB_SWEEP_MS 250
/* How long the stop waits for the close handshakes of the sessions. */
#define WSB_STOP_GRACE_MS 3000

typedef struct wsb wsb;

/* What a connection's per-session memory is used for. */
typedef enum wsb_conn_kind {
    WSB_CONN_NONE = 0, /* not yet known, or the signal pipe */
    WSB_CONN_HTTP,     /* GET /healthz, GET /metrics and refusals */
    WSB_CONN_WS        /* a stream session */
} wsb_conn_kind;

/* A plain HTTP answer waiting for its writeable callback. */
typedef struct wsb_http {
    unsigned char *buf; /* LWS_PRE free bytes, then the body */
    size_t len;
    unsigned status;
    const char *content_type;
} wsb_http;

/* One connection's state: libwebsockets allocates it (zeroed) as the per-session data. */
typedef struct wsb_session {
    wsb *b;
    struct lws *wsi;
    wsb_conn_kind kind;
    wsb_http http;

    /* The stream. */
    struct wsb_session *prev_all, *next_all; /* every WebSocket connection of the bridge */
    char job_id[RSDB_ID_SIZE];
    char ip[FAN_KEY_MAX + 1];
    unsigned types;   /* WSMSG_T_* bits sent */
    int registered;   /* counted in sessions and linked in the fan-out map */
    int ip_held;      /* counted for ip */
    fan_node node;    /* in the job's list of the fan-out map */
    wsq queue;        /* messages waiting for the writeable callback */
    int64_t after;    /* the cursor the client asked for */
    int64_t last_seq; /* the newest event seq queued or filtered out for this session */
    int replaying;    /* 1 while the job's older events are still being read */
    int64_t replay_cursor;
    int end_code;           /* the job was finished at connect: close with this after the replay */
    const char *end_reason; /* (static) */
    int drain_code;         /* a terminal event is queued: close with this once it is written */
    const char *drain_reason;
    int closing; /* close with close_code at the next writeable callback */
    int close_code;
    char close_reason[WSMSG_REASON_MAX + 1];
    int end_kind;  /* wsb_end of an open session, or -1 for a refused handshake */
    int peer_code; /* the code of a close the client started */
    int ping_due;
    int64_t opened_us, last_rx_us, last_tx_us, last_ping_us; /* monotonic */
    unsigned char *rx; /* the client message being received (at most max_frame_bytes) */
    size_t rx_len;
    uint64_t sent;
} wsb_session;

/* The daemon's context. */
struct wsb {
    rscfg cfg;
    struct lws_context *ctx;
    struct ev_loop *loop; /* libev's loop (epoll) that runs the context */
    struct lws_vhost *vhost;
    rsdb *db; /* the RSDB_ROLE_READER connection of the service thread; NULL while failing */
    fan_map *fan;
    ip_map *ips;
    wsb_session *all;  /* every WebSocket connection, open or closing */
    unsigned sessions; /* registered sessions (max_sessions counts these) */
    unsigned live;     /* WebSocket connections not yet closed */
    wsb_stats stats;

    /* The poller. */
    lws_sorted_usec_list_t poll_timer;
    int64_t version; /* PRAGMA data_version at the last read */
    int have_version;
    int more;       /* the last tick stopped after WSB_POLL_PAGES full pages */
    int64_t cursor; /* the seq of the newest event read; -1 until known */
    unsigned backoff_ms;
    int db_ok;
    int64_t poll_ok_us; /* monotonic time of the last successful poll (0: none yet) */

    lws_sorted_usec_list_t sweep_timer; /* every WSB_SWEEP_MS: wsb_session_tick for each session */

    /* The stop. */
    int stopping;
    int exit_now;
    int signal_fd;      /* read end of the signal pipe, watched by the service loop */
    int signal_adopted; /* the service loop owns (and closes) signal_fd */
    lws_sorted_usec_list_t stop_timer;
};

/* The clocks are rsclock_mono_us and rsclock_wall_ms (risksim/clock.h). */

/* ---- server.c ---- */

/* Runs the bridge with cfg until SIGTERM, SIGINT or SIGHUP: listens on cfg->bridge_listen,
 * polls the job store, serves the stream, /healthz and /metrics. Returns the exit status (0
 * after a clean stop, 1 when it could not start). */
int wsb_run(const rscfg *cfg);

/* Fills the gauges of /metrics and /healthz from the context. */
void wsb_gauges_fill(const wsb *b, wsb_gauges *g);

/* ---- poller.c ---- */

/* The next retry delay after a failure: first_ms after success (current 0), then doubling up to
 * max_ms. */
unsigned wsb_backoff_next(unsigned current_ms, unsigned first_ms, unsigned max_ms);

/* One probe of wsb_find_newest: the seq of the first event after `after` in *first (0 when there
 * is none). Returns 0, or -1 on error. */
typedef int (*wsb_probe_fn)(void *ctx, int64_t after, int64_t *first);

/* Finds the newest event seq with O(log n) probes (a doubling search, then bisection), so that
 * the bridge starts at the end of a large event log without reading it. Stores it (0 for an
 * empty log) in *newest. Returns 0, or -1 when a probe failed. */
int wsb_find_newest(wsb_probe_fn probe, void *ctx, int64_t *newest);

/* Starts the poll timer (the first tick runs at once). */
void wsb_poller_start(wsb *b);

/* The job store connection, opened when there is none. Returns NULL (the failure recorded and
 * logged) when it cannot be opened. */
rsdb *wsb_db(wsb *b);

/* Records and logs a failed job store access (what: a short name of the operation). Drops the
 * connection unless the failure was a busy database, so the next access reopens it. */
void wsb_db_failed(wsb *b, rsdb_err err, const char *what);

/* An event made ready for the sessions of its job: built once, shared by reference. */
typedef struct wsb_event_msg {
    int64_t seq;
    unsigned bit;   /* WSMSG_T_* of its type */
    wsq_msg *msg;   /* its JSON text (rsdb_event_json) after LWS_PRE bytes */
    wsq_class cls;  /* WSQ_PROGRESS or WSQ_EVENT */
    int close_code; /* wsmsg_event_close */
    const char *close_reason;
} wsb_event_msg;

/* Builds m from ev. Returns 0, or -1 when out of memory or the event's data is not an object
 * (m->msg is then NULL). The caller drops m->msg with wsq_msg_unref. */
int wsb_event_msg_build(const rsdb_event *ev, wsb_event_msg *m);

/* ---- session.c ---- */

/* LWS_CALLBACK_ESTABLISHED: checks the handshake (route, token, Origin, limits, query, job),
 * then starts the session (status, replay) or arranges the refusing close. Returns 0. */
int wsb_session_open(wsb_session *s, wsb *b, struct lws *wsi);

/* LWS_CALLBACK_SERVER_WRITEABLE: writes one message (or a ping), or closes. Returns 0, or -1
 * to close the connection. */
int wsb_session_writeable(wsb_session *s);

/* LWS_CALLBACK_RECEIVE: collects a client message and answers it. Returns 0, or -1 to close
 * (a message over max_frame_bytes, 1009). */
int wsb_session_receive(wsb_session *s, const void *in, size_t len);

/* LWS_CALLBACK_RECEIVE_PONG: client traffic. */
void wsb_session_pong(wsb_session *s);

/* LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: remembers the client's close code. */
void wsb_session_peer_close(wsb_session *s, const void *in, size_t len);

/* LWS_CALLBACK_CLOSED: releases everything the session holds and logs its end. */
void wsb_session_closed(wsb_session *s);

/* Offers an event to a session (from the poller, or from_replay from its own replay): queued
 * unless already sent, filtered out, or the session is replaying (live events then come from
 * the replay's own reads) or closing. */
void wsb_session_offer(wsb_session *s, const wsb_event_msg *m, int from_replay);

/* Closes the session with 1001 and the reason {"retryMs":retry_ms} (the stop). */
void wsb_session_shutdown(wsb_session *s, unsigned retry_ms);

/* The session's periodic checks at monotonic time now_us: the idle close after idle_timeout_s
 * without client traffic, a protocol ping every ping_s, a heartbeat after heartbeat_s without
 * another message. Called for every session by the bridge's sweep. */
void wsb_session_tick(wsb_session *s, int64_t now_us);

#endif
