/*
 * risksim-wsbridge poller: the one reader of the job store's event log, and the fan-out of new
 * events to the sessions of their jobs.
 *
 * Why this file exists: whatever the number of connections, the bridge asks the database one
 * cheap question every poll_ms (PRAGMA data_version: has anyone committed?) and, only when the
 * answer changed, one query for every event after the newest it has seen (DESIGN.md section
 * 6). Events commit in seq order (docs/internals.md), so reading "after the last seq seen"
 * never misses or repeats one. Each statement is reset as soon as its rows are copied (rsdb
 * guarantees it), so no read transaction is held between ticks and checkpoints are never
 * blocked. A failing database never stops the poller: the error is counted, logged and shown
 * in /healthz and /metrics, and the tick is retried with a doubling delay.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "risksim/clock.h"
#include "bridge.h"
#include "risksim/log.h"

unsigned wsb_backoff_next(unsigned current_ms, unsigned first_ms, unsigned max_ms)
{
    if (current_ms == 0)
        return first_ms < max_ms ? first_ms : max_ms;
    return current_ms >= max_ms / 2 ? max_ms : current_ms * 2;
}

int wsb_find_newest(wsb_probe_fn probe, void *ctx, int64_t *newest)
{
    int64_t lo = 0;  /* an existing seq, or 0 */
    int64_t hi = -1; /* every seq is <= hi; -1 while unknown */
    int64_t step = 1024;
    for (;;) {
        int64_t x;
        if (hi < 0 && lo >= INT64_MAX - 1)
            break;
        if (hi < 0) {
            x = lo > INT64_MAX - step ? INT64_MAX - 1 : lo + step;
            if (step < INT64_MAX / 2)
                step *= 2;
        } else {
            if (hi <= lo)
                break;
            x = lo + (hi - lo) / 2;
        }
        int64_t first = 0;
        if (probe(ctx, x, &first) != 0)
            return -1;
        if (first > x) {
            lo = first;
            if (hi >= 0 && lo > hi)
                hi = lo; /* a commit raced the search: continue from the new end */
        } else {
            hi = x < lo ? lo : x;
        }
    }
    *newest = lo;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The connection
 * ------------------------------------------------------------------------------------------- */

rsdb *wsb_db(wsb *b)
{
    if (b->db != NULL)
        return b->db;
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = RSDB_ROLE_READER;
    char err[256] = "";
    rsdb_err e = rsdb_open(b->cfg.db_path, &opt, &b->db, err, sizeof(err));
    if (e != RSDB_OK) {
        char what[WSB_ERROR_TEXT_MAX];
        if (snprintf(what, sizeof(what), "open %s: %s", b->cfg.db_path, err) < 0)
            what[0] = '\0';
        wsb_stats_db_error(&b->stats, what, rsclock_wall_ms());
        rslog(RSLOG_ERROR, "job store: %s", what);
        b->db_ok = 0;
        b->db = NULL;
    }
    return b->db;
}

void wsb_db_failed(wsb *b, rsdb_err err, const char *what)
{
    char text[WSB_ERROR_TEXT_MAX];
    const char *detail = b->db != NULL ? rsdb_errmsg(b->db) : "";
    if (snprintf(text, sizeof(text), "%s: %s%s%s", what, rsdb_strerror(err),
                 detail[0] != '\0' ? ": " : "", detail) < 0)
        text[0] = '\0';
    wsb_stats_db_error(&b->stats, text, rsclock_wall_ms());
    rslog(RSLOG_ERROR, "job store: %s", text);
    b->db_ok = 0;
    if (err != RSDB_EBUSY && err != RSDB_ENOMEM) {
        rsdb_free(b->db);
        b->db = NULL;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The fan-out
 * ------------------------------------------------------------------------------------------- */

int wsb_event_msg_build(const rsdb_event *ev, wsb_event_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->seq = ev->seq;
    m->bit = wsmsg_type_bit(ev->type);
    m->cls = m->bit == WSMSG_T_PROGRESS ? WSQ_PROGRESS : WSQ_EVENT;
    m->close_code = wsmsg_event_close(ev->type, &m->close_reason);
    char *text = NULL;
    size_t len = 0;
    if (rsdb_event_json(ev, &text, &len) != RSDB_OK)
        return -1;
    m->msg = wsq_msg_new(text, len, LWS_PRE);
    free(text);
    return m->msg != NULL ? 0 : -1;
}

static wsb_session *session_of(fan_node *n)
{
    return lws_container_of(n, wsb_session, node);
}

static void fan_out(wsb *b, const rsdb_event_list *list)
{
    int64_t now = rsclock_wall_ms();
    for (size_t i = 0; i < list->count; i++) {
        const rsdb_event *ev = &list->items[i];
        wsb_stats_lag(&b->stats, now - ev->ts_ms);
        fan_node *n = fan_first(b->fan, ev->job_id);
        if (n == NULL)
            continue;
        wsb_event_msg m;
        if (wsb_event_msg_build(ev, &m) != 0) {
            rslog_job(RSLOG_ERROR, ev->job_id, "event %lld could not be prepared (out of memory)",
                      (long long)ev->seq);
            continue;
        }
        while (n != NULL) {
            fan_node *next = n->next;
            wsb_session_offer(session_of(n), &m, 0);
            n = next;
        }
        wsq_msg_unref(m.msg);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The tick
 * ------------------------------------------------------------------------------------------- */

/* A probe of wsb_find_newest on the bridge's connection. */
static int probe_first_after(void *ctx, int64_t after, int64_t *first)
{
    wsb *b = ctx;
    rsdb_event_list list = {0};
    rsdb_err err = rsdb_events_all(b->db, after, 1, &list);
    b->stats.event_queries++;
    if (err != RSDB_OK) {
        wsb_db_failed(b, err, "find the newest event");
        return -1;
    }
    *first = list.count > 0 ? list.items[0].seq : 0;
    rsdb_event_list_clear(&list);
    return 0;
}

/* Reads and fans out what is new. Returns RSDB_OK, or the error (already recorded). */
static rsdb_err poll_once(wsb *b)
{
    rsdb *db = wsb_db(b);
    if (db == NULL)
        return RSDB_EOPEN;
    if (b->cursor < 0) {
        int64_t newest = 0;
        if (wsb_find_newest(probe_first_after, b, &newest) != 0)
            return RSDB_EIO;
        b->cursor = newest;
        rslog(RSLOG_INFO, "job store %s: starting after event %lld", b->cfg.db_path,
              (long long)newest);
    }
    int64_t version = 0;
    rsdb_err err = rsdb_data_version(db, &version);
    b->stats.version_probes++;
    if (err != RSDB_OK) {
        wsb_db_failed(b, err, "data_version");
        return err;
    }
    if (b->have_version && version == b->version && !b->more)
        return RSDB_OK;
    b->version = version;
    b->have_version = 1;
    b->more = 0;
    for (int page = 0; page < WSB_POLL_PAGES; page++) {
        rsdb_event_list list = {0};
        err = rsdb_events_all(db, b->cursor, WSB_POLL_PAGE, &list);
        b->stats.event_queries++;
        if (err != RSDB_OK) {
            wsb_db_failed(b, err, "read new events");
            return err;
        }
        b->stats.events_read += list.count;
        fan_out(b, &list);
        if (list.count > 0)
            b->cursor = list.items[list.count - 1].seq;
        size_t n = list.count;
        rsdb_event_list_clear(&list);
        if (n < WSB_POLL_PAGE)
            return RSDB_OK;
    }
    b->more = 1;
    return RSDB_OK;
}

static void poll_tick(lws_sorted_usec_list_t *sul)
{
    wsb *b = lws_container_of(sul, wsb, poll_timer);
    if (b->stopping)
        return;
    b->stats.poll_ticks++;
    unsigned delay_ms = b->cfg.poll_ms;
    if (poll_once(b) == RSDB_OK) {
        if (!b->db_ok && b->stats.db_errors > 0)
            rslog(RSLOG_INFO, "job store %s: readable again", b->cfg.db_path);
        b->db_ok = 1;
        b->backoff_ms = 0;
        b->poll_ok_us = rsclock_mono_us();
        if (b->more)
            delay_ms = 0;
    } else {
        b->backoff_ms = wsb_backoff_next(b->backoff_ms, WSB_BACKOFF_FIRST_MS, WSB_BACKOFF_MAX_MS);
        if (b->backoff_ms > delay_ms)
            delay_ms = b->backoff_ms;
    }
    lws_sul_schedule(b->ctx, 0, &b->poll_timer, poll_tick, (lws_usec_t)delay_ms * 1000);
}

void wsb_poller_start(wsb *b)
{
    lws_sul_schedule(b->ctx, 0, &b->poll_timer, poll_tick, 0);
}
