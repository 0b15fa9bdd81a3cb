/*
 * GET /healthz and GET /metrics: what monitoring and load balancers read.
 *
 * Why this file exists: an operator must be able to tell from outside whether this process can
 * reach the database, whether its job workers are alive, and how deep the queue is, and to
 * scrape the counters in the Prometheus text format; both endpoints read the job store's
 * figures at request time and add this process's own.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

/* Workers alive: beat within two leases (a worker inside a long run beats from its progress
 * callback; an idle one every poll). */
static unsigned workers_alive(app *a)
{
    int64_t now = rsclock_wall_ms();
    int64_t window = 2000LL * a->cfg.lease_s;
    unsigned alive = 0;
    for (unsigned i = 0; i < a->workers; i++) {
        if (now - atomic_load(&a->worker_beat_ms[i]) <= window)
            alive++;
    }
    return alive;
}

void handle_healthz(app *a, conn *c, http_req *r)
{
    rsdb_stats st;
    rsdb_err err = rsdb_stats_get(c->db, rsclock_wall_ms(), &st);
    unsigned alive = workers_alive(a);
    int ok = err == RSDB_OK && alive == a->workers && !atomic_load(&a->stopping);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "unavailable"));
    json_object_object_add(o, "version", json_object_new_string(RISKSIM_VERSION));
    json_object_object_add(o, "db",
                           json_object_new_string(err == RSDB_OK ? "ok" : rsdb_strerror(err)));
    json_object *w = json_object_new_object();
    json_object_object_add(w, "configured", json_object_new_int64(a->workers));
    json_object_object_add(w, "alive", json_object_new_int64(alive));
    json_object_object_add(o, "workers", w);
    if (err == RSDB_OK) {
        json_object_object_add(o, "queueDepth", json_object_new_int64((int64_t)st.queue_depth));
        json_object_object_add(o, "oldestQueuedSeconds",
                               json_object_new_double((double)st.oldest_queued_ms / 1000.0));
    }
    if (atomic_load(&a->stopping))
        json_object_object_add(o, "stopping", json_object_new_boolean(1));
    size_t len = 0;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    http_respond(r, ok ? 200 : 503, "application/json", ok ? NULL : "Retry-After: 5\r\n", text,
                 text != NULL ? len : 0);
    json_object_put(o);
}

/* Room for the metrics text (it is a few KiB; cut at a line if ever larger). */
#define METRICS_CAP (256 * 1024)

static void render_db(app *a, const rsdb_stats *st, char *buf, size_t cap, size_t *len)
{
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_jobs Jobs in the job store, by state.\n"
                    "# TYPE risksim_jobs gauge\n");
    static const rsdb_state states[] = {RSDB_QUEUED, RSDB_RUNNING, RSDB_COMPLETED, RSDB_FAILED,
                                        RSDB_CANCELLED};
    for (size_t i = 0; i < 5; i++)
        metrics_appendf(buf, cap, len, "risksim_jobs{state=\"%s\"} %llu\n",
                        rsdb_state_name(states[i]), (unsigned long long)st->jobs[states[i]]);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_queue_depth Jobs waiting for a worker.\n"
                    "# TYPE risksim_queue_depth gauge\nrisksim_queue_depth %llu\n",
                    (unsigned long long)st->queue_depth);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_oldest_queued_seconds Age of the oldest queued job.\n"
                    "# TYPE risksim_oldest_queued_seconds gauge\n"
                    "risksim_oldest_queued_seconds %.3f\n",
                    (double)st->oldest_queued_ms / 1000.0);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_wal_bytes Size of the SQLite write-ahead log.\n"
                    "# TYPE risksim_wal_bytes gauge\nrisksim_wal_bytes %lld\n",
                    (long long)st->wal_bytes);
    rsdb_committer_stats cs;
    rsdb_committer_stats_get(a->committer, &cs);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_sqlite_busy_retries_total Transactions retried after "
                    "SQLITE_BUSY (this process's job-creating connection and this request "
                    "thread's).\n# TYPE risksim_sqlite_busy_retries_total counter\n"
                    "risksim_sqlite_busy_retries_total %llu\n",
                    (unsigned long long)(cs.busy_retries + st->busy_retries));
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_job_commits_total Commits that created jobs, and the jobs "
                    "they created.\n# TYPE risksim_job_commits_total counter\n"
                    "risksim_job_commits_total %llu\nrisksim_jobs_created_total %llu\n",
                    (unsigned long long)cs.commits, (unsigned long long)cs.items);
}

void handle_metrics(app *a, conn *c, http_req *r)
{
    rsdb_stats st;
    rsdb_err err = rsdb_stats_get(c->db, rsclock_wall_ms(), &st);
    char *buf = malloc(METRICS_CAP);
    if (buf == NULL) {
        http_problem(r, 503, "unavailable", "Out of memory", NULL, NULL, "Retry-After: 1\r\n");
        return;
    }
    size_t len = 0;
    buf[0] = '\0';
    metrics_appendf(buf, METRICS_CAP, &len,
                    "# HELP risksim_up Whether this process could read the job store.\n"
                    "# TYPE risksim_up gauge\nrisksim_up %d\n",
                    err == RSDB_OK);
    if (err == RSDB_OK)
        render_db(a, &st, buf, METRICS_CAP, &len);
    metrics_appendf(buf, METRICS_CAP, &len,
                    "# HELP risksim_workers_alive Job workers of this process that are alive.\n"
                    "# TYPE risksim_workers_alive gauge\nrisksim_workers_alive %u\n"
                    "# HELP risksim_long_polls Long polls waiting in this process.\n"
                    "# TYPE risksim_long_polls gauge\nrisksim_long_polls %d\n",
                    workers_alive(a), atomic_load(&a->waiters));
    metrics_render(a->metrics, buf, METRICS_CAP, &len);
    http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf,
                 len >= METRICS_CAP ? strlen(buf) : len);
    free(buf);
}
