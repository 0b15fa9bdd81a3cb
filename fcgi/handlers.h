/*
 * The endpoints of docs/api.md section 3, one function each, and the dispatcher that picks one.
 *
 * Why this file exists: request threads accept a request and hand it here; everything between
 * "a request arrived" and "a response was written" (auth, content checks, the engine run, the
 * job store calls, the mapping of every failure to its status and problem document) is in the
 * handler files behind this header.
 */
#ifndef RISKSIM_FCGI_HANDLERS_H
#define RISKSIM_FCGI_HANDLERS_H

#include "app.h"
#include "http.h"

/* What a request thread owns: its own connection to the job store. */
typedef struct conn {
    rsdb *db;
} conn;

/* Answers one request (every path, every error). Never fails: whatever goes wrong becomes a
 * response. */
void handle_request(app *a, conn *c, http_req *r);

/* The endpoints (r->route already matched and the method allowed). */
void handle_run_sync(app *a, conn *c, http_req *r);
void handle_submit_async(app *a, conn *c, http_req *r);
void handle_get_job(app *a, conn *c, http_req *r);
void handle_cancel_job(app *a, conn *c, http_req *r);
void handle_list_jobs(app *a, conn *c, http_req *r);
void handle_events(app *a, conn *c, http_req *r);
void handle_healthz(app *a, conn *c, http_req *r);
void handle_metrics(app *a, conn *c, http_req *r);

/* Answers a job-store failure: 503 + Retry-After for busy/full/I/O conditions (with a problem
 * slug saying which), 500 only for what cannot be the client's or the disk's fault. */
void handle_db_error(app *a, http_req *r, rsdb_err err, const char *what);

/* Checks the query's parameter names against allowed (NULL-terminated); answers 400 naming the
 * first unknown or malformed one and returns -1, else returns 0. */
int check_query_names(http_req *r, const char *const *allowed);

/* Reads the job the route names. Returns it (free with rsdb_job_free), or NULL after answering
 * 404 (unknown or malformed id) or the job store's error. */
rsdb_job *load_route_job(app *a, conn *c, http_req *r);

/* Writes "{base}/simulations/{id}{suffix}" into buf. */
void job_path(const app *a, const char *id, const char *suffix, char *buf, size_t len);

#endif
