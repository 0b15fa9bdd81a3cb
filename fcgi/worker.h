/*
 * The responder's background threads: job workers and maintenance (see worker.c).
 *
 * Why this file exists: main.c starts and joins these threads; this header is their contract.
 */
#ifndef RISKSIM_FCGI_WORKER_H
#define RISKSIM_FCGI_WORKER_H

#include "app.h"

typedef struct worker_arg {
    app *a;
    unsigned index; /* 0..a->workers-1; names the worker and its heartbeat slot */
} worker_arg;

/* A job worker thread: claims and runs jobs until a->stopping is set, then hands its running
 * job back (release) and returns NULL. arg is a worker_arg that outlives the thread. */
void *worker_main(void *arg);

/* The maintenance thread (arg is the app): every maintenance_ms reaps expired leases and
 * checkpoints the WAL; every minute prunes finished jobs older than retention_s. Returns when
 * a->stopping is set. */
void *maintenance_main(void *arg);

#endif
