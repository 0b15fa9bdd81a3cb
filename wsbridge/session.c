/*
 * risksim-wsbridge session: one client watching one job over a WebSocket.
 *
 * Why this file exists: a session must give its client the job's whole event sequence, with no
 * gap and no duplicate, however it connects (fresh, or again with ?after=SEQ) and however
 * slowly it reads. The rules, in the order a session meets them:
 *
 *   - the handshake is checked in a fixed order, each refusal closing at once with its code:
 *     token (4001), Origin (4003), session limits (4029), query (1008), job (4004);
 *   - the first message is the job's current state, a `status` whose seq is the job's newest
 *     event seq; a `reset` comes before it when `after` is beyond that seq (a cursor from
 *     another database), and the replay then starts from the beginning;
 *   - the replay reads the job's events after `after` in pages no larger than the free room of
 *     the queue; while it runs, the poller's live events are ignored, because they are already
 *     committed and the replay's next read returns them; the replay ends with a short page, and
 *     from then on the poller's events are queued. `last_seq` drops anything already queued,
 *     so the switch has neither a gap nor a duplicate;
 *   - messages are written only from the writeable callback, one per callback; the queue
 *     collapses progress for a slow client (queue.h);
 *   - after a terminal event is written the session closes (1000, or 4000 for a failed job);
 *     a job that was already finished closes once the replay has been written.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "risksim/clock.h"
#include "bridge.h"
#include "risksim/auth.h"
#include "risksim/log.h"
#include "risksim/route.h"

/* Rounds of replay reads in one writeable callback when a filter leaves pages empty. */
#define REPLAY_ROUNDS 4
/* Pages of the scan for the newest seq before the replay. */
#define SCAN_PAGE 1000
/* The payload of the bridge's pings, echoed in the client's pong. It must not be empty:
 * libwebsockets reports no pong with an empty payload (LWS_CALLBACK_RECEIVE_PONG), so the
 * answers to empty pings would never count as client traffic and the idle close would end
 * sessions whose clients answer every ping. */
#define PING_PAYLOAD "risksim"

/* What the handshake request says (headers are copied while libwebsockets still has them). */
typedef struct handshake {
    char uri[ROUTE_URI_MAX + 1]; /* the path, then '?' and the re-encoded query */
    char authorization[RSAUTH_TOKEN_MAX + 64];
    char token[WSMSG_TOKEN_MAX + 1];
    int token_found;
    char origin[512];
    char host[512];
    char xff[512];
    char peer[64];
    int peer_is_proxy;
    route route;
} handshake;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static void want_write(wsb_session *s)
{
    lws_callback_on_writable(s->wsi);
}

/* Arranges a close with code and reason at the next writeable callback. */
static void close_soon(wsb_session *s, int code, const char *reason, int end_kind)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason != NULL ? reason : "");
    s->end_kind = end_kind;
    want_write(s);
}

/* Refuses a handshake: counts it, logs it and closes with code. */
static void refuse(wsb_session *s, wsb_reject why, int code, const char *reason)
{
    s->b->stats.rejected[why]++;
    rslog_job(RSLOG_INFO, s->job_id, "stream refused: %d %s (client %s)", code, reason,
              s->ip[0] != '\0' ? s->ip : "?");
    close_soon(s, code, reason, -1);
}

/* Queues one of the bridge's own messages. Returns 0, or -1 when an event could not be queued
 * (the session is then closing). */
static int queue_text(wsb_session *s, const char *text, int len, wsq_class cls, int64_t seq)
{
    wsb_stats *st = &s->b->stats;
    wsq_msg *m = len >= 0 ? wsq_msg_new(text, (size_t)len, LWS_PRE) : NULL;
    size_t collapsed = 0;
    wsq_result r = wsq_push(&s->queue, m, cls, seq, &collapsed);
    wsq_msg_unref(m);
    st->msgs_collapsed += collapsed;
    if (r == WSQ_DROPPED)
        st->msgs_dropped++;
    if (r == WSQ_OVERFLOW) {
        close_soon(s, WSMSG_CLOSE_POLICY, "client too slow", WSB_END_SLOW);
        return -1;
    }
    want_write(s);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The handshake
 * ------------------------------------------------------------------------------------------- */

/* Copies a header into buf ("" when absent or longer than the buffer). */
static void header(struct lws *wsi, enum lws_token_indexes h, char *buf, size_t len)
{
    if (lws_hdr_copy(wsi, buf, (int)len, h) < 0)
        buf[0] = '\0';
}

/* The peer's address as text, and whether it is the proxy (loopback or a unix socket). */
static void peer_address(struct lws *wsi, char *out, size_t len, int *is_proxy)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *is_proxy = 0;
    snprintf(out, len, "?");
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_UNIX) {
        snprintf(out, len, "unix");
        *is_proxy = 1;
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)len);
        *is_proxy = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a->sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0) {
            inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, out, (socklen_t)len);
            *is_proxy = a->sin6_addr.s6_addr[12] == 127;
        } else {
            inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)len);
            *is_proxy = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        }
    }
}

/* Rebuilds the request target: libwebsockets hands over the path and each query parameter
 * already decoded, so the parameters are encoded again for the parsers of common/route.c.
 * Returns 0, or -1 when it does not fit in ROUTE_URI_MAX bytes. */
static int request_uri(struct lws *wsi, char *uri, size_t cap)
{
    if (lws_hdr_copy(wsi, uri, (int)cap, WSI_TOKEN_GET_URI) <= 0)
        return -1;
    size_t n = strlen(uri);
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total <= 0)
        return 0;
    if ((size_t)total >= cap)
        return -1;
    char *param = malloc((size_t)total + 1);
    if (param == NULL)
        return -1;
    int rc = 0;
    int first = 1;
    for (int i = 0; rc == 0; i++) {
        int len = lws_hdr_copy_fragment(wsi, param, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (len < 0)
            break;
        if (len == 0)
            continue;
        if (n + 1 >= cap) {
            rc = -1;
            break;
        }
        uri[n++] = first ? '?' : '&';
        first = 0;
        int w = wsmsg_encode_param(param, (size_t)len, uri + n, cap - n);
        if (w < 0)
            rc = -1;
        else
            n += (size_t)w;
    }
    free(param);
    uri[n] = '\0';
    return rc;
}

/* Copies what the checks need from the request. Returns 0, or -1 when the target is too
 * long to be a stream URL. */
static int handshake_read(wsb *b, struct lws *wsi, handshake *h)
{
    header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, h->authorization, sizeof(h->authorization));
    header(wsi, WSI_TOKEN_ORIGIN, h->origin, sizeof(h->origin));
    header(wsi, WSI_TOKEN_HOST, h->host, sizeof(h->host));
    header(wsi, WSI_TOKEN_X_FORWARDED_FOR, h->xff, sizeof(h->xff));
    peer_address(wsi, h->peer, sizeof(h->peer), &h->peer_is_proxy);
    if (request_uri(wsi, h->uri, sizeof(h->uri)) != 0 ||
        route_match(h->uri, b->cfg.base_path, &h->route) != 0)
        return -1;
    h->token_found = wsmsg_query_token(h->route.query, h->token, sizeof(h->token)) == 1;
    return 0;
}

/* The checks before the job is looked up, in the documented order. Returns 0 when the session
 * may go on (with s->types and s->after set), else refuses it and returns -1. */
static int admit(wsb_session *s, handshake *h)
{
    wsb *b = s->b;
    char why[WSMSG_REASON_MAX + 1];
    if (h->route.id_valid)
        memcpy(s->job_id, h->route.id, sizeof(s->job_id));
    wsmsg_client_ip(h->peer, h->peer_is_proxy, h->xff[0] != '\0' ? h->xff : NULL, s->ip,
                    sizeof(s->ip));
    if (h->route.kind != ROUTE_STREAM) {
        refuse(s, WSB_REJ_NOT_FOUND, WSMSG_CLOSE_NOT_FOUND, "no such stream");
        return -1;
    }
    if (b->stopping) {
        refuse(s, WSB_REJ_STOPPING, WSMSG_CLOSE_GOING_AWAY, "{\"retryMs\":1000}");
        return -1;
    }
    int status = rsauth_check(
        b->cfg.auth_secret, h->authorization[0] != '\0' ? h->authorization : NULL,
        h->token_found ? h->token : NULL, RSAUTH_NEED_JOB, h->route.id_valid ? h->route.id : NULL,
        rsclock_wall_ms() / 1000, why, sizeof(why));
    if (status != 0) {
        refuse(s, WSB_REJ_AUTH, WSMSG_CLOSE_AUTH, why);
        return -1;
    }
    if (!wsmsg_origin_allowed(b->cfg.allowed_origins, h->origin[0] != '\0' ? h->origin : NULL,
                              h->host[0] != '\0' ? h->host : NULL)) {
        refuse(s, WSB_REJ_ORIGIN, WSMSG_CLOSE_ORIGIN, "origin not allowed");
        return -1;
    }
    if (b->sessions >= b->cfg.max_sessions) {
        refuse(s, WSB_REJ_TOO_MANY, WSMSG_CLOSE_TOO_MANY, "too many sessions");
        return -1;
    }
    int held = ip_acquire(b->ips, s->ip, b->cfg.max_sessions_per_ip);
    if (held != 0) {
        refuse(s, WSB_REJ_TOO_MANY, WSMSG_CLOSE_TOO_MANY,
               held > 0 ? "too many sessions from this address" : "out of memory");
        return -1;
    }
    s->ip_held = 1;
    wsmsg_query q;
    if (wsmsg_query_parse(h->route.query, &q, why, sizeof(why)) != 0) {
        refuse(s, WSB_REJ_QUERY, WSMSG_CLOSE_POLICY, why);
        return -1;
    }
    s->types = q.types;
    s->after = q.after;
    if (!h->route.id_valid) {
        refuse(s, WSB_REJ_NOT_FOUND, WSMSG_CLOSE_NOT_FOUND, "no such job");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The start: newest seq, reset, status
 * ------------------------------------------------------------------------------------------- */

/* Reads the job's events after `after` page by page and stores the seq of the last one in
 * *newest (or after when there is none). */
static rsdb_err scan_after(wsb *b, rsdb *db, const char *id, int64_t after, int64_t *newest)
{
    int64_t cursor = after;
    for (;;) {
        rsdb_event_list list = {0};
        rsdb_err err = rsdb_events_job(db, id, cursor, SCAN_PAGE, &list);
        b->stats.replay_queries++;
        if (err != RSDB_OK)
            return err;
        size_t n = list.count;
        if (n > 0)
            cursor = list.items[n - 1].seq;
        rsdb_event_list_clear(&list);
        if (n < SCAN_PAGE)
            break;
    }
    *newest = cursor;
    return RSDB_OK;
}

/* Finds the job's newest event seq and whether the client's cursor is beyond it (*reset). */
static rsdb_err find_newest(wsb *b, rsdb *db, const char *id, int64_t after, int64_t *newest,
                            int *reset)
{
    *reset = 0;
    rsdb_err err = scan_after(b, db, id, after, newest);
    if (err != RSDB_OK || *newest > after || after == 0)
        return err;
    /* Nothing after the cursor: it is the job's newest event, or beyond the job's events. */
    rsdb_event_list list = {0};
    err = rsdb_events_job(db, id, after - 1, 1, &list);
    b->stats.replay_queries++;
    if (err != RSDB_OK)
        return err;
    int at_newest = list.count == 1 && list.items[0].seq == after;
    rsdb_event_list_clear(&list);
    if (at_newest)
        return RSDB_OK;
    *reset = 1;
    return scan_after(b, db, id, 0, newest);
}

/* Reads the job, queues reset (when needed) and status, and registers the session for live
 * events. Returns 0, or -1 after arranging the refusing close. */
static int start(wsb_session *s)
{
    wsb *b = s->b;
    rsdb *db = wsb_db(b);
    if (db == NULL) {
        refuse(s, WSB_REJ_INTERNAL, WSMSG_CLOSE_INTERNAL, "job store unavailable, try again");
        return -1;
    }
    int64_t newest = 0;
    int reset = 0;
    rsdb_job *job = NULL;
    rsdb_err err = find_newest(b, db, s->job_id, s->after, &newest, &reset);
    if (err == RSDB_OK)
        err = rsdb_job_get(db, s->job_id, &job); /* read after the events: never older */
    if (err == RSDB_ENOTFOUND) {
        refuse(s, WSB_REJ_NOT_FOUND, WSMSG_CLOSE_NOT_FOUND, "no such job");
        return -1;
    }
    if (err != RSDB_OK) {
        wsb_db_failed(b, err, "start a session");
        refuse(s, WSB_REJ_INTERNAL, WSMSG_CLOSE_INTERNAL, "job store unavailable, try again");
        return -1;
    }
    const char *state = rsdb_state_name(job->state);
    char text[WSMSG_SMALL_MAX];
    if (reset) {
        s->after = 0;
        queue_text(s, text, wsmsg_reset(s->job_id, text, sizeof(text)), WSQ_EVENT, 0);
    }
    queue_text(s, text,
               wsmsg_status(newest, s->job_id, state, job->trials_done, job->trials,
                            rsclock_wall_ms(), text, sizeof(text)),
               WSQ_EVENT, 0);
    s->end_code = wsmsg_state_close(state, &s->end_reason);
    rsdb_job_free(job);
    if (fan_add(b->fan, s->job_id, &s->node) != 0) {
        refuse(s, WSB_REJ_INTERNAL, WSMSG_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    s->registered = 1;
    b->sessions++;
    b->stats.sessions_opened++;
    s->end_kind = WSB_END_CLIENT;
    s->last_seq = s->after;
    s->replay_cursor = s->after;
    s->replaying = 1;
    rslog_job(RSLOG_INFO, s->job_id, "stream open: client %s, after %lld%s, %s, newest %lld", s->ip,
              (long long)s->after, reset ? " (reset)" : "",
              s->types == WSMSG_T_ALL ? "all types" : "filtered", (long long)newest);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The replay
 * ------------------------------------------------------------------------------------------- */

static void caught_up(wsb_session *s)
{
    s->replaying = 0;
    if (s->end_code != 0 && s->drain_code == 0) {
        s->drain_code = s->end_code;
        s->drain_reason = s->end_reason;
    }
    want_write(s);
}

/* Reads the next page of the replay into the queue (never more than its free room). */
static void replay_step(wsb_session *s)
{
    wsb *b = s->b;
    for (int round = 0; round < REPLAY_ROUNDS && s->replaying && !s->closing; round++) {
        size_t room = wsq_room(&s->queue);
        if (room == 0)
            return;
        size_t limit = room < WSB_REPLAY_PAGE ? room : WSB_REPLAY_PAGE;
        rsdb *db = wsb_db(b);
        rsdb_event_list list = {0};
        rsdb_err err = db != NULL ? rsdb_events_job(db, s->job_id, s->replay_cursor, limit, &list)
                                  : RSDB_EOPEN;
        b->stats.replay_queries++;
        if (err != RSDB_OK) {
            if (db != NULL)
                wsb_db_failed(b, err, "replay");
            close_soon(s, WSMSG_CLOSE_INTERNAL, "job store unavailable, try again",
                       WSB_END_INTERNAL);
            return;
        }
        b->stats.replay_events += list.count;
        for (size_t i = 0; i < list.count && !s->closing; i++) {
            const rsdb_event *ev = &list.items[i];
            s->replay_cursor = ev->seq;
            wsb_event_msg m;
            if (wsb_event_msg_build(ev, &m) != 0) {
                close_soon(s, WSMSG_CLOSE_INTERNAL, "event could not be prepared",
                           WSB_END_INTERNAL);
                break;
            }
            wsb_session_offer(s, &m, 1);
            wsq_msg_unref(m.msg);
        }
        size_t n = list.count;
        rsdb_event_list_clear(&list);
        if (n < limit) {
            caught_up(s);
            return;
        }
        if (wsq_count(&s->queue) > 0)
            return;
    }
    /* Every page so far was filtered out: go on at the next writeable callback. */
    if (s->replaying && !s->closing)
        want_write(s);
}

void wsb_session_offer(wsb_session *s, const wsb_event_msg *m, int from_replay)
{
    if (s->closing || s->drain_code != 0 || (s->replaying && !from_replay) || m->seq <= s->last_seq)
        return;
    s->last_seq = m->seq;
    if ((s->types & m->bit) == 0 && m->close_code == 0)
        return;
    size_t collapsed = 0;
    wsq_result r = wsq_push(&s->queue, m->msg, m->cls, m->seq, &collapsed);
    s->b->stats.msgs_collapsed += collapsed;
    if (r == WSQ_DROPPED)
        s->b->stats.msgs_dropped++;
    if (r == WSQ_OVERFLOW) {
        close_soon(s, WSMSG_CLOSE_POLICY, "client too slow", WSB_END_SLOW);
        return;
    }
    if (m->close_code != 0) {
        s->drain_code = m->close_code;
        s->drain_reason = m->close_reason;
    }
    want_write(s);
}

/* ---------------------------------------------------------------------------------------------
 * Timers: ping, heartbeat, idle
 * ------------------------------------------------------------------------------------------- */

void wsb_session_tick(wsb_session *s, int64_t now)
{
    const rscfg *cfg = &s->b->cfg;
    if (s->closing || s->wsi == NULL)
        return;
    int64_t idle = (int64_t)cfg->idle_timeout_s * 1000000;
    int64_t ping = (int64_t)cfg->ping_s * 1000000;
    int64_t beat = (int64_t)cfg->heartbeat_s * 1000000;
    if (now - s->last_rx_us >= idle) {
        close_soon(s, WSMSG_CLOSE_GOING_AWAY, "idle timeout", WSB_END_IDLE);
        return;
    }
    if (now - s->last_ping_us >= ping) {
        s->ping_due = 1;
        s->last_ping_us = now;
        want_write(s);
    }
    if (now - s->last_tx_us >= beat && wsq_count(&s->queue) == 0 && !s->replaying) {
        char text[WSMSG_SMALL_MAX];
        s->last_tx_us = now;
        queue_text(s, text, wsmsg_heartbeat(rsclock_wall_ms(), text, sizeof(text)), WSQ_AUX, 0);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The callbacks
 * ------------------------------------------------------------------------------------------- */

int wsb_session_open(wsb_session *s, wsb *b, struct lws *wsi)
{
    s->b = b;
    s->wsi = wsi;
    s->kind = WSB_CONN_WS;
    s->end_kind = -1;
    wsq_init(&s->queue, b->cfg.session_queue);
    s->opened_us = s->last_rx_us = s->last_tx_us = s->last_ping_us = rsclock_mono_us();
    s->next_all = b->all;
    if (b->all != NULL)
        b->all->prev_all = s;
    b->all = s;
    b->live++;
    handshake *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        refuse(s, WSB_REJ_INTERNAL, WSMSG_CLOSE_INTERNAL, "out of memory");
        return 0;
    }
    int ok = 0;
    if (handshake_read(b, wsi, h) != 0)
        refuse(s, WSB_REJ_QUERY, WSMSG_CLOSE_POLICY, "request target too long");
    else
        ok = admit(s, h) == 0 && start(s) == 0;
    free(h);
    if (!ok)
        return 0;
    replay_step(s);
    want_write(s);
    return 0;
}

/* Sends the close frame: code and reason. Returns -1 (libwebsockets closes). */
static int close_now(wsb_session *s)
{
    lws_close_reason(s->wsi, (enum lws_close_status)s->close_code, (unsigned char *)s->close_reason,
                     strlen(s->close_reason));
    return -1;
}

int wsb_session_writeable(wsb_session *s)
{
    if (s->kind != WSB_CONN_WS)
        return 0;
    if (s->closing)
        return close_now(s);
    if (s->ping_due) {
        unsigned char buf[LWS_PRE + sizeof(PING_PAYLOAD)];
        s->ping_due = 0;
        memcpy(buf + LWS_PRE, PING_PAYLOAD, sizeof(PING_PAYLOAD) - 1);
        if (lws_write(s->wsi, buf + LWS_PRE, sizeof(PING_PAYLOAD) - 1, LWS_WRITE_PING) < 0)
            return -1;
        want_write(s);
        return 0;
    }
    if (wsq_count(&s->queue) == 0 && s->replaying)
        replay_step(s);
    if (s->closing)
        return close_now(s);
    wsq_item it;
    if (wsq_pop(&s->queue, &it)) {
        size_t len = it.msg->len;
        int n = lws_write(s->wsi, it.msg->text, len, LWS_WRITE_TEXT);
        wsq_msg_unref(it.msg);
        if (n < (int)len)
            return -1;
        s->b->stats.msgs_sent++;
        s->b->stats.bytes_sent += len;
        s->sent++;
        s->last_tx_us = rsclock_mono_us();
        if (wsq_count(&s->queue) > 0 || s->replaying || s->drain_code != 0)
            want_write(s);
        return 0;
    }
    if (s->drain_code != 0) {
        close_soon(s, s->drain_code, s->drain_reason,
                   s->drain_code == WSMSG_CLOSE_NORMAL ? WSB_END_DONE : WSB_END_FAILED);
        return close_now(s);
    }
    return 0;
}

/* Answers one complete client message. */
static void answer(wsb_session *s, int binary)
{
    char why[128] = "binary messages are not understood";
    wsmsg_client kind = binary
                            ? WSMSG_CLIENT_BAD
                            : wsmsg_client_parse((const char *)s->rx, s->rx_len, why, sizeof(why));
    char text[WSMSG_SMALL_MAX];
    s->b->stats.client_msgs++;
    if (kind == WSMSG_CLIENT_PING) {
        queue_text(s, text, wsmsg_pong(rsclock_wall_ms(), text, sizeof(text)), WSQ_AUX, 0);
        return;
    }
    s->b->stats.bad_msgs++;
    queue_text(s, text, wsmsg_bad_message(why, text, sizeof(text)), WSQ_AUX, 0);
}

int wsb_session_receive(wsb_session *s, const void *in, size_t len)
{
    if (s->kind != WSB_CONN_WS)
        return 0;
    s->last_rx_us = rsclock_mono_us();
    if (s->closing)
        return 0;
    if (lws_is_first_fragment(s->wsi))
        s->rx_len = 0;
    size_t max = s->b->cfg.max_frame_bytes;
    size_t remaining = lws_remaining_packet_payload(s->wsi);
    if (s->rx_len + len > max || remaining > max - s->rx_len - len) {
        free(s->rx);
        s->rx = NULL;
        s->rx_len = 0;
        s->closing = 1;
        s->close_code = WSMSG_CLOSE_TOO_BIG;
        s->end_kind = s->registered ? WSB_END_TOO_BIG : -1;
        snprintf(s->close_reason, sizeof(s->close_reason), "message too big");
        return close_now(s);
    }
    if (s->rx == NULL) {
        s->rx = malloc(max + 1);
        if (s->rx == NULL)
            return -1;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi))
        return 0;
    answer(s, lws_frame_is_binary(s->wsi));
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    return 0;
}

void wsb_session_pong(wsb_session *s)
{
    if (s->kind == WSB_CONN_WS)
        s->last_rx_us = rsclock_mono_us();
}

void wsb_session_peer_close(wsb_session *s, const void *in, size_t len)
{
    const unsigned char *p = in;
    if (s->kind == WSB_CONN_WS && p != NULL && len >= 2)
        s->peer_code = (p[0] << 8) | p[1];
}

void wsb_session_shutdown(wsb_session *s, unsigned retry_ms)
{
    char reason[WSMSG_REASON_MAX + 1];
    if (wsmsg_goaway_reason(retry_ms, reason, sizeof(reason)) < 0)
        snprintf(reason, sizeof(reason), "shutting down");
    close_soon(s, WSMSG_CLOSE_GOING_AWAY, reason, s->registered ? WSB_END_SHUTDOWN : -1);
}

void wsb_session_closed(wsb_session *s)
{
    if (s->kind != WSB_CONN_WS)
        return;
    wsb *b = s->b;
    if (s->prev_all != NULL)
        s->prev_all->next_all = s->next_all;
    else
        b->all = s->next_all;
    if (s->next_all != NULL)
        s->next_all->prev_all = s->prev_all;
    b->live--;
    if (s->registered) {
        fan_remove(b->fan, &s->node);
        b->sessions--;
        int end = s->end_kind >= 0 && s->end_kind < WSB_END_KINDS ? s->end_kind : WSB_END_CLIENT;
        b->stats.closed[end]++;
        double secs = (double)(rsclock_mono_us() - s->opened_us) / 1e6;
        if (s->closing)
            rslog_job(RSLOG_INFO, s->job_id,
                      "stream closed: %d %s (client %s, %llu messages in %.1f s)", s->close_code,
                      s->close_reason, s->ip, (unsigned long long)s->sent, secs);
        else
            rslog_job(RSLOG_INFO, s->job_id,
                      "stream closed by the client: %d (client %s, %llu messages in %.1f s)",
                      s->peer_code, s->ip, (unsigned long long)s->sent, secs);
    }
    if (s->ip_held)
        ip_release(b->ips, s->ip);
    wsq_clear(&s->queue);
    free(s->rx);
    s->rx = NULL;
    s->kind = WSB_CONN_NONE;
    if (b->stopping && b->live == 0 && !b->exit_now) {
        b->exit_now = 1;
        lws_cancel_service(b->ctx);
    }
}
