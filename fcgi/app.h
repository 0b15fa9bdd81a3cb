/*
 * The responder's process-wide state, shared by its request threads, job workers and
 * maintenance thread.
 *
 * Why this file exists: the configuration, the group committer for accepted jobs, the counters
 * and the stop flag are each created once per process and read by every thread; this struct is
 * how they are passed around instead of globals. Everything in it is either immutable after
 * start-up or safe to use from several threads (atomics, the committer, the metrics).
 */
#ifndef RISKSIM_FCGI_APP_H
#define RISKSIM_FCGI_APP_H

#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"
#include "risksim/clock.h"
#include "risksim/config.h"
#include "risksim/db.h"
#include "risksim/engine.h"

/* Most job worker threads a process runs (the config's upper bound). */
#define APP_MAX_WORKERS 64

typedef struct app {
    rscfg cfg;                 /* immutable after start-up */
    rs_limits limits;          /* request limits for async jobs (max_trials, depth, nodes) */
    rsdb_committer *committer; /* creates every job (sync and async) durably */
    metrics *metrics;          /* per-process counters */
    atomic_int stopping;       /* set once on SIGTERM/SIGINT */
    atomic_int waiters;        /* long polls waiting right now */
    int max_waiters;           /* cap on waiters (config, and below the request threads) */
    unsigned workers;          /* job worker threads started */
    atomic_llong worker_beat_ms[APP_MAX_WORKERS]; /* last sign of life of each worker */
    char owner_prefix[128];                       /* "host:pid" for lease owners */
    int64_t started_ms;
} app;

/* The clocks: rsclock_wall_ms (leases and events) and rsclock_monotonic (durations). */

#endif
