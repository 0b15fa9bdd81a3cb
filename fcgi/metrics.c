/*
 * The responder's process-wide counters and their Prometheus text (see metrics.h).
 *
 * Why this file exists: every answered request and every finished job is counted here, from
 * any thread; the text exposition format (HELP/TYPE lines, label escaping, cumulative histogram
 * buckets) is written once, here.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Status classes counted per route: each status code 100..599 has its own counter. */
#define STATUS_MIN 100
#define STATUS_COUNT 500

/* Upper bounds (seconds) of the job run-time histogram buckets. */
static const double run_buckets[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800};
#define RUN_BUCKETS (sizeof(run_buckets) / sizeof(run_buckets[0]))

static const char *const outcomes[] = {"completed", "failed", "cancelled", "released"};
#define OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

struct metrics {
    atomic_ullong requests[ROUTE_KINDS][STATUS_COUNT];
    pthread_mutex_t lock; /* guards the fields below */
    uint64_t run_counts[OUTCOMES][RUN_BUCKETS + 1];
    double run_sum[OUTCOMES];
    uint64_t progress_writes;
    double progress_lag_sum;
    double progress_lag_max;
};

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void metrics_free(metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_count_request(metrics *m, route_kind kind, int status)
{
    if (m == NULL || (unsigned)kind >= ROUTE_KINDS || status < STATUS_MIN ||
        status >= STATUS_MIN + STATUS_COUNT)
        return;
    atomic_fetch_add(&m->requests[kind][status - STATUS_MIN], 1);
}

void metrics_record_job(metrics *m, const char *outcome, double seconds)
{
    if (m == NULL || outcome == NULL)
        return;
    size_t o = 0;
    while (o < OUTCOMES && strcmp(outcomes[o], outcome) != 0)
        o++;
    if (o == OUTCOMES)
        return;
    size_t b = 0;
    while (b < RUN_BUCKETS && seconds > run_buckets[b])
        b++;
    pthread_mutex_lock(&m->lock);
    m->run_counts[o][b]++;
    m->run_sum[o] += seconds;
    pthread_mutex_unlock(&m->lock);
}

void metrics_record_progress(metrics *m, double lag_seconds)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->progress_writes++;
    m->progress_lag_sum += lag_seconds;
    if (lag_seconds > m->progress_lag_max)
        m->progress_lag_max = lag_seconds;
    pthread_mutex_unlock(&m->lock);
}

void metrics_appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        buf[*len] = '\0'; /* did not fit: drop the partial line */
        *len = cap;
        return;
    }
    *len += (size_t)n;
}

static void render_requests(metrics *m, char *buf, size_t cap, size_t *len)
{
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_http_requests_total Requests answered by this process, by "
                    "route and status.\n# TYPE risksim_http_requests_total counter\n");
    for (size_t k = 0; k < ROUTE_KINDS; k++) {
        for (size_t s = 0; s < STATUS_COUNT; s++) {
            unsigned long long n = atomic_load(&m->requests[k][s]);
            if (n > 0)
                metrics_appendf(buf, cap, len,
                                "risksim_http_requests_total{route=\"%s\",status=\"%zu\"} %llu\n",
                                route_name((route_kind)k), s + STATUS_MIN, n);
        }
    }
}

static void render_runs(metrics *m, char *buf, size_t cap, size_t *len)
{
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_job_run_seconds Run time of the jobs this process's workers "
                    "ran, by outcome.\n# TYPE risksim_job_run_seconds histogram\n");
    for (size_t o = 0; o < OUTCOMES; o++) {
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= RUN_BUCKETS; b++) {
            cumulative += m->run_counts[o][b];
            if (b < RUN_BUCKETS)
                metrics_appendf(buf, cap, len,
                                "risksim_job_run_seconds_bucket{outcome=\"%s\",le=\"%g\"} %llu\n",
                                outcomes[o], run_buckets[b], (unsigned long long)cumulative);
            else
                metrics_appendf(buf, cap, len,
                                "risksim_job_run_seconds_bucket{outcome=\"%s\",le=\"+Inf\"} %llu\n",
                                outcomes[o], (unsigned long long)cumulative);
        }
        metrics_appendf(buf, cap, len, "risksim_job_run_seconds_sum{outcome=\"%s\"} %.6f\n",
                        outcomes[o], m->run_sum[o]);
        metrics_appendf(buf, cap, len, "risksim_job_run_seconds_count{outcome=\"%s\"} %llu\n",
                        outcomes[o], (unsigned long long)cumulative);
    }
}

void metrics_render(metrics *m, char *buf, size_t cap, size_t *len)
{
    if (m == NULL)
        return;
    render_requests(m, buf, cap, len);
    pthread_mutex_lock(&m->lock);
    render_runs(m, buf, cap, len);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_progress_writes_total Progress events written by this "
                    "process's workers.\n# TYPE risksim_progress_writes_total counter\n"
                    "risksim_progress_writes_total %llu\n",
                    (unsigned long long)m->progress_writes);
    metrics_appendf(buf, cap, len,
                    "# HELP risksim_progress_lag_seconds_max Longest time from a progress "
                    "report of the engine to its commit.\n"
                    "# TYPE risksim_progress_lag_seconds_max gauge\n"
                    "risksim_progress_lag_seconds_max %.6f\n",
                    m->progress_lag_max);
    pthread_mutex_unlock(&m->lock);
}
