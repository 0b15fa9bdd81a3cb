/*
 * GET /simulations/{id}/events?after=SEQ&wait=S: the polling transport of the event log, with
 * an optional long poll.
 *
 * Why this file exists: polling clients must read exactly the objects the WebSocket bridge
 * sends (rsdb_event_json builds both), in seq order, from a cursor they keep. A long poll
 * holds a request thread, so waiting is bounded twice: by max_wait_s per request and by a cap
 * on concurrent waiters (below the number of request threads), past which a request is answered
 * at once with a Retry-After hint. While waiting, the thread probes PRAGMA data_version every
 * few milliseconds (a couple of microseconds each) and reads the job's events only when
 * something was committed.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"

/* Most events one response carries (a client with more to read asks again from "next"). */
#define EVENTS_PAGE 1000
/* How often a waiting long poll probes the database. */
#define WAIT_PROBE_MS 20

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* Parses after and wait (the names were checked by the dispatcher). Returns 0 or -1 after
 * answering 400. */
static int events_query(app *a, http_req *r, int64_t *after, unsigned *wait_s)
{
    char value[32];
    uint64_t v = 0;
    int found = query_param(r->route.query, "after", value, sizeof(value));
    if (found < 0 || (found == 1 && query_uint(value, 0, (uint64_t)INT64_MAX, &v) != 0)) {
        http_problem(r, 400, "bad-query", "Bad query parameter",
                     "after must be a non-negative integer (the seq of the last event seen).", NULL,
                     NULL);
        return -1;
    }
    *after = (int64_t)v;
    v = 0;
    found = query_param(r->route.query, "wait", value, sizeof(value));
    if (found < 0 || (found == 1 && query_uint(value, 0, UINT64_MAX, &v) != 0)) {
        http_problem(r, 400, "bad-query", "Bad query parameter",
                     "wait must be a whole number of seconds (at most 30 are used).", NULL, NULL);
        return -1;
    }
    *wait_s = v > a->cfg.max_wait_s ? a->cfg.max_wait_s : (unsigned)v;
    return 0;
}

static int finished_state(rsdb_state s)
{
    return s == RSDB_COMPLETED || s == RSDB_FAILED || s == RSDB_CANCELLED;
}

/* Builds {"events":[...],"next":N,"status":"..."} from the list. Returns a new string or NULL. */
static char *events_body(const rsdb_event_list *list, int64_t next, rsdb_state state,
                         size_t *len_out)
{
    size_t cap = 256, len = 0;
    char **parts = calloc(list->count > 0 ? list->count : 1, sizeof(char *));
    size_t *lens = calloc(list->count > 0 ? list->count : 1, sizeof(size_t));
    char *body = NULL;
    if (parts == NULL || lens == NULL)
        goto out;
    for (size_t i = 0; i < list->count; i++) {
        if (rsdb_event_json(&list->items[i], &parts[i], &lens[i]) != RSDB_OK)
            goto out;
        cap += lens[i] + 1;
    }
    body = malloc(cap);
    if (body == NULL)
        goto out;
    memcpy(body, "{\"events\":[", 11);
    len = 11;
    for (size_t i = 0; i < list->count; i++) {
        if (i > 0)
            body[len++] = ',';
        memcpy(body + len, parts[i], lens[i]);
        len += lens[i];
    }
    int n = snprintf(body + len, cap - len, "],\"next\":%lld,\"status\":\"%s\"}", (long long)next,
                     rsdb_state_name(state));
    len += n > 0 ? (size_t)n : 0;
    *len_out = len;
out:
    for (size_t i = 0; parts != NULL && i < list->count; i++)
        free(parts[i]);
    free(parts);
    free(lens);
    return body;
}

/* Waits (bounded) until the job has events after `after`, it finished, the deadline passed or
 * the process is stopping. Fills *list. Returns RSDB_OK or a database error. */
static rsdb_err wait_for_events(app *a, conn *c, const char *id, int64_t after, double deadline,
                                rsdb_event_list *list)
{
    int64_t version = 0;
    rsdb_err err = rsdb_data_version(c->db, &version);
    while (err == RSDB_OK && list->count == 0 && rsclock_monotonic() < deadline &&
           !atomic_load(&a->stopping)) {
        sleep_ms(WAIT_PROBE_MS);
        int64_t now_version = 0;
        err = rsdb_data_version(c->db, &now_version);
        if (err != RSDB_OK || now_version == version)
            continue;
        version = now_version;
        err = rsdb_events_job(c->db, id, after, EVENTS_PAGE, list);
    }
    return err;
}

void handle_events(app *a, conn *c, http_req *r)
{
    int64_t after = 0;
    unsigned wait_s = 0;
    if (events_query(a, r, &after, &wait_s) != 0)
        return;
    rsdb_job *job = load_route_job(a, c, r);
    if (job == NULL)
        return;
    rsdb_state state = job->state;
    rsdb_job_free(job);
    rsdb_event_list list = {0};
    rsdb_err err = rsdb_events_job(c->db, r->route.id, after, EVENTS_PAGE, &list);
    const char *headers = NULL;
    if (err == RSDB_OK && list.count == 0 && wait_s > 0 && !finished_state(state)) {
        if (atomic_fetch_add(&a->waiters, 1) < a->max_waiters) {
            err = wait_for_events(a, c, r->route.id, after, rsclock_monotonic() + wait_s, &list);
        } else {
            headers = "Retry-After: 1\r\n"; /* too many waiting: answer now, come back soon */
        }
        atomic_fetch_sub(&a->waiters, 1);
    }
    /* The status reported is read after the events: never older than them. */
    rsdb_job *now = NULL;
    if (err == RSDB_OK && rsdb_job_get(c->db, r->route.id, &now) == RSDB_OK)
        state = now->state;
    rsdb_job_free(now);
    if (err != RSDB_OK) {
        rsdb_event_list_clear(&list);
        handle_db_error(a, r, err, "read events");
        return;
    }
    int64_t next = list.count > 0 ? list.items[list.count - 1].seq : after;
    size_t len = 0;
    char *body = events_body(&list, next, state, &len);
    rsdb_event_list_clear(&list);
    if (body == NULL) {
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
        return;
    }
    http_respond(r, 200, "application/json", headers, body, len);
    free(body);
}
