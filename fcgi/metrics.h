/*
 * The responder's own counters for /metrics: requests by route and status, job run times, and
 * the workers' liveness.
 *
 * Why this file exists: request threads, job workers and the metrics endpoint touch these
 * figures from many threads at once; keeping them in one small module with atomic counters and
 * one mutex-guarded histogram keeps that safe and keeps the Prometheus text format in one place.
 * Figures from the database (jobs by state, queue depth, WAL size) are read at scrape time by
 * the endpoint itself. Counters are per process (see docs/api.md, /metrics).
 */
#ifndef RISKSIM_FCGI_METRICS_H
#define RISKSIM_FCGI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "risksim/route.h"

typedef struct metrics metrics;

/* Creates the counters. Returns NULL when out of memory. Free with metrics_free. */
metrics *metrics_new(void);
/* Frees m. metrics_free(NULL) does nothing. */
void metrics_free(metrics *m);

/* Counts one answered request of route kind with HTTP status (100..599). Thread-safe. */
void metrics_count_request(metrics *m, route_kind kind, int status);

/* Records one job run by a worker of this process: its final state name ("completed",
 * "failed", "cancelled" or "released") and its run time in seconds. Thread-safe. */
void metrics_record_job(metrics *m, const char *outcome, double seconds);

/* Counts one progress write and the delay in seconds between the trials it reports being
 * sampled and its commit. Thread-safe. */
void metrics_record_progress(metrics *m, double lag_seconds);

/* Appends the Prometheus text of these counters to buf (at most cap bytes in all, *len the
 * bytes used so far; output is cut at a line boundary when it would not fit). Thread-safe. */
void metrics_render(metrics *m, char *buf, size_t cap, size_t *len);

/* Appends one formatted line to buf like metrics_render does (for the endpoint's own gauges). */
void metrics_appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
