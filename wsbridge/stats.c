/*
 * risksim-wsbridge stats: counters, the Prometheus text of GET /metrics and the JSON of
 * GET /healthz (see stats.h).
 *
 * Why this file exists: the figures an operator scrapes are produced in one place, from one
 * struct, with bounded output, so that the names stay stable and the renderers can be tested
 * without a server.
 */
#include "stats.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *wsb_reject_label(wsb_reject r)
{
    static const char *const labels[WSB_REJ_KINDS] = {"route", "4001", "4003", "4029",
                                                      "1008",  "4004", "1011", "1001"};
    return (unsigned)r < WSB_REJ_KINDS ? labels[r] : "other";
}

const char *wsb_end_label(wsb_end e)
{
    static const char *const labels[WSB_END_KINDS] = {"done",    "failed", "shutdown", "idle",
                                                      "too_big", "slow",   "internal", "client"};
    return (unsigned)e < WSB_END_KINDS ? labels[e] : "other";
}

void wsb_stats_db_error(wsb_stats *s, const char *what, int64_t now_ms)
{
    s->db_errors++;
    snprintf(s->last_db_error, sizeof(s->last_db_error), "%s", what != NULL ? what : "");
    s->last_db_error_ms = now_ms;
}

void wsb_stats_lag(wsb_stats *s, int64_t lag_ms)
{
    if (lag_ms < 0)
        lag_ms = 0;
    s->lag_last_ms = lag_ms;
    if (lag_ms > s->lag_max_ms)
        s->lag_max_ms = lag_ms;
    s->lag_count++;
    s->lag_sum_ms += (double)lag_ms;
}

/* A bounded text buffer: appends whole lines only, so a cut output is still valid. */
typedef struct out {
    char *buf;
    size_t cap;
    size_t len;
    int full;
} out;

static void emit(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out *o, const char *fmt, ...)
{
    if (o->full || o->cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->buf[o->len] = '\0';
        o->full = 1;
        return;
    }
    o->len += (size_t)n;
}

static void counter(out *o, const char *name, const char *help, uint64_t v)
{
    emit(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
         (unsigned long long)v);
}

static void gauge(out *o, const char *name, const char *help, double v)
{
    emit(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.15g\n", name, help, name, name, v);
}

/* Escapes a label value (backslash, double quote, newline) into dst (cap bytes). */
static void label_escape(const char *s, char *dst, size_t cap)
{
    size_t n = 0;
    for (; *s != '\0' && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            dst[n++] = '\\';
            dst[n++] = *s;
        } else if (*s == '\n') {
            dst[n++] = '\\';
            dst[n++] = 'n';
        } else {
            dst[n++] = *s;
        }
    }
    dst[n] = '\0';
}

static void render_sessions(out *o, const wsb_stats *s, const wsb_gauges *g)
{
    gauge(o, "risksim_bridge_sessions", "Open WebSocket sessions.", g->sessions);
    gauge(o, "risksim_bridge_jobs_watched", "Jobs with at least one open session.",
          (double)g->jobs);
    counter(o, "risksim_bridge_sessions_opened_total", "Sessions accepted.", s->sessions_opened);
    emit(o, "# HELP risksim_bridge_rejected_total Connections refused at the handshake, by "
            "close code (route: HTTP 404).\n# TYPE risksim_bridge_rejected_total counter\n");
    for (int r = 0; r < WSB_REJ_KINDS; r++)
        emit(o, "risksim_bridge_rejected_total{code=\"%s\"} %llu\n",
             wsb_reject_label((wsb_reject)r), (unsigned long long)s->rejected[r]);
    emit(o, "# HELP risksim_bridge_sessions_closed_total Sessions ended, by reason.\n"
            "# TYPE risksim_bridge_sessions_closed_total counter\n");
    for (int e = 0; e < WSB_END_KINDS; e++)
        emit(o, "risksim_bridge_sessions_closed_total{reason=\"%s\"} %llu\n",
             wsb_end_label((wsb_end)e), (unsigned long long)s->closed[e]);
}

static void render_messages(out *o, const wsb_stats *s)
{
    counter(o, "risksim_bridge_messages_sent_total", "Messages written to clients.", s->msgs_sent);
    counter(o, "risksim_bridge_bytes_sent_total", "Bytes of messages written to clients.",
            s->bytes_sent);
    counter(o, "risksim_bridge_messages_collapsed_total",
            "Queued progress messages replaced by a newer one for a slow client.",
            s->msgs_collapsed);
    counter(o, "risksim_bridge_messages_dropped_total",
            "Messages not queued because a slow client's queue was full.", s->msgs_dropped);
    counter(o, "risksim_bridge_client_messages_total", "Messages received from clients.",
            s->client_msgs);
    counter(o, "risksim_bridge_bad_messages_total",
            "Client messages answered with a bad_message error.", s->bad_msgs);
}

static void render_poll(out *o, const wsb_stats *s, const wsb_gauges *g)
{
    counter(o, "risksim_bridge_poll_ticks_total", "Runs of the poll timer.", s->poll_ticks);
    counter(o, "risksim_bridge_version_probes_total", "PRAGMA data_version reads.",
            s->version_probes);
    counter(o, "risksim_bridge_event_queries_total", "Reads of new events of all jobs.",
            s->event_queries);
    counter(o, "risksim_bridge_events_read_total", "Events returned by those reads.",
            s->events_read);
    counter(o, "risksim_bridge_replay_queries_total", "Reads of one job's events for a replay.",
            s->replay_queries);
    counter(o, "risksim_bridge_replay_events_total", "Events returned by those reads.",
            s->replay_events);
    gauge(o, "risksim_bridge_cursor_seq", "The seq of the newest event read (-1: not yet).",
          (double)g->cursor);
    gauge(o, "risksim_bridge_poll_age_seconds", "Time since the last successful poll.",
          g->poll_age_ms < 0 ? -1.0 : (double)g->poll_age_ms / 1000.0);
    gauge(o, "risksim_bridge_poll_lag_seconds",
          "Time from the newest fanned-out event's ts to its fan-out.",
          (double)s->lag_last_ms / 1000.0);
    gauge(o, "risksim_bridge_poll_lag_max_seconds", "The largest poll lag seen.",
          (double)s->lag_max_ms / 1000.0);
    emit(o,
         "# HELP risksim_bridge_poll_lag_summary_seconds Poll lag of every fanned-out event.\n"
         "# TYPE risksim_bridge_poll_lag_summary_seconds summary\n"
         "risksim_bridge_poll_lag_summary_seconds_sum %.3f\n"
         "risksim_bridge_poll_lag_summary_seconds_count %llu\n",
         s->lag_sum_ms / 1000.0, (unsigned long long)s->lag_count);
}

static void render_db(out *o, const wsb_stats *s, const wsb_gauges *g)
{
    gauge(o, "risksim_bridge_db_up", "1 when the last job store access succeeded.",
          g->db_ok ? 1 : 0);
    counter(o, "risksim_bridge_db_errors_total", "Failed job store accesses.", s->db_errors);
    gauge(o, "risksim_bridge_db_backoff_seconds", "Current retry delay after job store errors.",
          (double)g->backoff_ms / 1000.0);
    if (s->last_db_error[0] != '\0') {
        char text[2 * WSB_ERROR_TEXT_MAX + 1];
        label_escape(s->last_db_error, text, sizeof(text));
        emit(o,
             "# HELP risksim_bridge_db_last_error_info The last job store error.\n"
             "# TYPE risksim_bridge_db_last_error_info gauge\n"
             "risksim_bridge_db_last_error_info{error=\"%s\"} 1\n",
             text);
        gauge(o, "risksim_bridge_db_last_error_timestamp_seconds",
              "When the last job store error happened.", (double)s->last_db_error_ms / 1000.0);
    }
    gauge(o, "risksim_bridge_stopping", "1 once the bridge is shutting down.", g->stopping ? 1 : 0);
}

size_t wsb_metrics_render(const wsb_stats *s, const wsb_gauges *g, char *buf, size_t cap)
{
    out o = {buf, cap, 0, 0};
    if (cap > 0)
        buf[0] = '\0';
    emit(&o,
         "# HELP risksim_bridge_info The bridge's version.\n# TYPE risksim_bridge_info gauge\n"
         "risksim_bridge_info{version=\"%s\"} 1\n",
         g->version != NULL ? g->version : "");
    render_sessions(&o, s, g);
    render_messages(&o, s);
    render_poll(&o, s, g);
    render_db(&o, s, g);
    return o.len;
}

size_t wsb_health_render(const wsb_stats *s, const wsb_gauges *g, char *buf, size_t cap,
                         int *status)
{
    int ok = g->db_ok && !g->stopping;
    *status = ok ? 200 : 503;
    json_object *o = json_object_new_object();
    if (o == NULL)
        return 0;
    json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "unavailable"));
    json_object_object_add(o, "version", json_object_new_string(g->version ? g->version : ""));
    const char *db = g->db_ok ? "ok" : s->last_db_error[0] != '\0' ? s->last_db_error : "closed";
    json_object_object_add(o, "db", json_object_new_string(db));
    json_object_object_add(o, "sessions", json_object_new_int64(g->sessions));
    json_object_object_add(o, "jobs", json_object_new_int64((int64_t)g->jobs));
    json_object_object_add(o, "cursor", json_object_new_int64(g->cursor));
    json_object_object_add(o, "pollAgeMs", json_object_new_int64(g->poll_age_ms));
    json_object_object_add(o, "pollLagMs", json_object_new_int64(s->lag_last_ms));
    json_object_object_add(o, "dbErrors", json_object_new_int64((int64_t)s->db_errors));
    if (g->stopping)
        json_object_object_add(o, "stopping", json_object_new_boolean(1));
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    size_t n = 0;
    if (text != NULL && len + 1 <= cap) {
        memcpy(buf, text, len + 1);
        n = len;
    } else if (cap > 0) {
        buf[0] = '\0';
    }
    json_object_put(o);
    return n;
}
