/*
 * Job workers and the maintenance thread of a responder process.
 *
 * Why this file exists: async jobs run here. A worker claims the oldest queued job with a lease,
 * runs the engine with a progress callback that writes progress events at the cadence of
 * docs/api.md section 4 (every progress_trials trials, at most every progress_ms, and at least
 * every third of a lease so the lease never lapses during a long aggregation), honours a
 * requested cancel at its next write, and ends the job with its terminal event. On shutdown a
 * running job is handed back (released) so another process resumes it. The maintenance thread
 * reaps expired leases, prunes finished jobs and checkpoints the WAL.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "risksim/log.h"
#include "worker.h"

/* An idle worker probes the job store's data version this often, and tries a claim only when
 * another connection has committed something since (a submission of this process or of
 * another one, a release, the reaper's requeue): a few microseconds a probe instead of a write
 * transaction, and a job waits about half of this before a worker takes it. */
#define IDLE_PROBE_MS 10
/* ... and tries a claim at least this often anyway. */
#define IDLE_CLAIM_MS 1000
/* Prune at most this often (it scans the finished-jobs index). */
#define PRUNE_PERIOD_MS 60000

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* Sleeps up to ms, in steps, returning early when the process is stopping. */
static void nap(app *a, long ms)
{
    while (ms > 0 && !atomic_load(&a->stopping)) {
        long step = ms > 50 ? 50 : ms;
        sleep_ms(step);
        ms -= step;
    }
}

/* ---------------------------------------------------------------------------------------------
 * One job
 * ------------------------------------------------------------------------------------------- */

typedef enum run_stop {
    RUN_GOING = 0,
    RUN_CANCEL_REQUESTED, /* the client asked: end as cancelled */
    RUN_LEASE_LOST,       /* someone else owns the job now: write nothing more */
    RUN_SHUTDOWN          /* this process is stopping: release the job */
} run_stop;

typedef struct run_ctx {
    app *a;
    rsdb *db;
    unsigned index;
    const rsdb_job *job;
    const char *owner;
    uint64_t last_trials;
    double last_write; /* monotonic seconds */
    run_stop stop;
} run_ctx;

/* Whether a progress event is due now. */
static int progress_due(const run_ctx *ctx, const rs_progress *p, double now)
{
    const rscfg *cfg = &ctx->a->cfg;
    double since = now - ctx->last_write;
    if (since * 3.0 >= (double)cfg->lease_s)
        return 1; /* keep the lease alive whatever the trial count */
    if (since * 1000.0 < (double)cfg->progress_ms)
        return 0;
    if (strcmp(p->phase, RS_PHASE_AGGREGATING) == 0)
        return p->nodes_done == p->nodes_total || p->nodes_done == 0;
    return p->trials_done - ctx->last_trials >= cfg->progress_trials ||
           p->trials_done == p->trials_total;
}

/* Writes one progress event (and renews the lease). Returns the reason to stop, if any. */
static run_stop write_progress(run_ctx *ctx, const rs_progress *p, double now)
{
    double fraction = p->trials_total > 0 ? (double)p->trials_done / (double)p->trials_total : 0;
    char data[256];
    snprintf(data, sizeof(data),
             "{\"progress\":%.6f,\"trialsDone\":%llu,\"trials\":%llu,\"phase\":\"%s\"}", fraction,
             (unsigned long long)p->trials_done, (unsigned long long)p->trials_total, p->phase);
    int cancel = 0;
    rsdb_err err =
        rsdb_job_progress(ctx->db, ctx->job->id, ctx->owner, p->trials_done,
                          1000LL * ctx->a->cfg.lease_s, data, rsclock_wall_ms(), &cancel);
    metrics_record_progress(ctx->a->metrics, rsclock_monotonic() - now);
    ctx->last_trials = p->trials_done;
    ctx->last_write = now;
    if (err == RSDB_ESTATE || err == RSDB_ELEASE || err == RSDB_ENOTFOUND) {
        rslog_job(RSLOG_WARN, ctx->job->id, "lease lost (%s); stopping this run",
                  rsdb_strerror(err));
        return RUN_LEASE_LOST;
    }
    if (err != RSDB_OK) /* a busy or full disk: keep running; the next write tries again */
        rslog_job(RSLOG_WARN, ctx->job->id, "progress write failed: %s", rsdb_strerror(err));
    return cancel ? RUN_CANCEL_REQUESTED : RUN_GOING;
}

/* The engine's progress callback: returns non-zero to stop the run. */
static int on_progress(void *vctx, const rs_progress *p)
{
    run_ctx *ctx = vctx;
    double now = rsclock_monotonic();
    atomic_store(&ctx->a->worker_beat_ms[ctx->index], rsclock_wall_ms());
    if (atomic_load(&ctx->a->stopping)) {
        ctx->stop = RUN_SHUTDOWN;
        return 1;
    }
    if (!progress_due(ctx, p, now))
        return 0;
    ctx->stop = write_progress(ctx, p, now);
    return ctx->stop != RUN_GOING;
}

/* Ends a job as failed with code and message. */
static void fail_job(run_ctx *ctx, const char *code, const char *message)
{
    json_object *data = json_object_new_object();
    json_object *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(message));
    json_object_object_add(data, "error", e);
    const char *text = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN);
    rsdb_err err = rsdb_job_fail(ctx->db, ctx->job->id, ctx->owner, code, message,
                                 text != NULL ? text : "{}", rsclock_wall_ms());
    if (err != RSDB_OK)
        rslog_job(RSLOG_ERROR, ctx->job->id, "could not record the failure: %s",
                  rsdb_strerror(err));
    json_object_put(data);
}

/* Stores a finished run's result and its complete event. Returns the outcome name. */
static const char *complete_job(run_ctx *ctx, const rs_result *result, const rs_model *model)
{
    rs_result_meta meta = {ctx->job->id, "completed"};
    char *text = NULL;
    if (rs_result_json(result, model, &meta, &text, NULL) != RS_OK) {
        fail_job(ctx, "out_of_memory", "the result could not be built");
        return "failed";
    }
    const char *outcome = "completed";
    rsdb_err err = rsdb_job_complete(ctx->db, ctx->job->id, ctx->owner, text, rsclock_wall_ms());
    if (err != RSDB_OK) {
        /* Not stored: the lease runs out and the job is run again (same result). */
        rslog_job(RSLOG_ERROR, ctx->job->id, "could not store the result: %s", rsdb_strerror(err));
        outcome = "released";
    }
    free(text);
    return outcome;
}

/* Ends a run that the engine stopped (cancel, lost lease, shutdown). Returns the outcome. */
static const char *end_stopped(run_ctx *ctx)
{
    rsdb_err err = RSDB_OK;
    const char *outcome = "released";
    if (ctx->stop == RUN_CANCEL_REQUESTED) {
        err = rsdb_job_cancelled(ctx->db, ctx->job->id, ctx->owner, rsclock_wall_ms());
        outcome = "cancelled";
    } else if (ctx->stop == RUN_SHUTDOWN) {
        err = rsdb_job_release(ctx->db, ctx->job->id, ctx->owner, rsclock_wall_ms());
    }
    if (err != RSDB_OK)
        rslog_job(RSLOG_WARN, ctx->job->id, "could not end the stopped run: %s",
                  rsdb_strerror(err));
    return outcome;
}

/* Runs one claimed job to its end. */
static void run_job(app *a, rsdb *db, unsigned index, const char *owner, const rsdb_job *job)
{
    double start = rsclock_monotonic();
    run_ctx ctx = {a, db, index, job, owner, 0, start, RUN_GOING};
    rs_model *model = NULL;
    rs_diag *diag = rs_diag_new();
    rs_err err = rs_model_parse(job->request, strlen(job->request), &a->limits, &model, diag);
    const char *outcome = "failed";
    if (err != RS_OK) {
        /* Validated at submission; this only happens if the limits were lowered since. */
        fail_job(&ctx, "invalid_request",
                 rs_diag_count(diag) > 0 ? rs_diag_message(diag, 0) : rs_strerror(err));
    } else {
        rs_run_options opt = {
            .threads = a->cfg.sim_threads, .progress = on_progress, .progress_ctx = &ctx};
        rs_result *result = NULL;
        err = rs_simulate(model, &opt, &result);
        if (err == RS_OK)
            outcome = complete_job(&ctx, result, model);
        else if (err == RS_ECANCELLED)
            outcome = end_stopped(&ctx);
        else
            fail_job(&ctx, "engine_error", rs_strerror(err));
        rs_result_free(result);
    }
    double seconds = rsclock_monotonic() - start;
    metrics_record_job(a->metrics, outcome, seconds);
    rslog_job(RSLOG_INFO, job->id, "%s after %.3f s (attempt %u)", outcome, seconds, job->attempts);
    rs_model_free(model);
    rs_diag_free(diag);
}

/* ---------------------------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------------------------- */

/* Opens a worker-role connection, logging why when it cannot. */
static rsdb *open_worker_db(const app *a, const char *who)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = RSDB_ROLE_WORKER;
    rsdb *db = NULL;
    char err[256];
    if (rsdb_open(a->cfg.db_path, &opt, &db, err, sizeof(err)) != RSDB_OK) {
        rslog(RSLOG_ERROR, "%s: cannot open %s: %s", who, a->cfg.db_path, err);
        return NULL;
    }
    return db;
}

/* Waits while the data version is still `seen` (nothing committed by another connection since
 * it was read), up to IDLE_CLAIM_MS and less when the process is stopping, keeping the worker's
 * sign of life fresh. */
static void wait_for_change(app *a, unsigned index, rsdb *db, int64_t seen)
{
    int64_t now = 0;
    for (long waited = 0; waited < IDLE_CLAIM_MS && !atomic_load(&a->stopping);
         waited += IDLE_PROBE_MS) {
        sleep_ms(IDLE_PROBE_MS);
        atomic_store(&a->worker_beat_ms[index], rsclock_wall_ms());
        if (rsdb_data_version(db, &now) != RSDB_OK || now != seen)
            return;
    }
}

void *worker_main(void *varg)
{
    worker_arg *arg = varg;
    app *a = arg->a;
    char owner[200];
    snprintf(owner, sizeof(owner), "%s:w%u", a->owner_prefix, arg->index);
    rsdb *db = NULL;
    while (db == NULL && !atomic_load(&a->stopping)) {
        db = open_worker_db(a, owner);
        if (db == NULL)
            nap(a, 1000);
    }
    while (!atomic_load(&a->stopping)) {
        atomic_store(&a->worker_beat_ms[arg->index], rsclock_wall_ms());
        /* read before the claim, so that a submission committed after an empty claim
         * changes it */
        int64_t version = 0;
        rsdb_err err = rsdb_data_version(db, &version);
        rsdb_job *job = NULL;
        if (err == RSDB_OK)
            err = rsdb_job_claim(db, owner, 1000LL * a->cfg.lease_s, rsclock_wall_ms(), &job);
        if (err == RSDB_EEMPTY) {
            wait_for_change(a, arg->index, db, version);
            continue;
        }
        if (err != RSDB_OK) {
            rslog(RSLOG_WARN, "%s: claim failed: %s", owner, rsdb_strerror(err));
            nap(a, 1000);
            continue;
        }
        rslog_job(RSLOG_INFO, job->id, "claimed by %s (attempt %u)", owner, job->attempts);
        run_job(a, db, arg->index, owner, job);
        rsdb_job_free(job);
    }
    rsdb_free(db);
    return NULL;
}

/* One round of maintenance: reap, checkpoint, and (every PRUNE_PERIOD_MS) prune. */
static void maintain(app *a, rsdb *db, double *last_prune)
{
    size_t requeued = 0, failed = 0;
    rsdb_err err = rsdb_reap(db, rsclock_wall_ms(), a->cfg.max_attempts, &requeued, &failed);
    if (err != RSDB_OK)
        rslog(RSLOG_WARN, "reaper: %s", rsdb_strerror(err));
    else if (requeued + failed > 0)
        rslog(RSLOG_WARN, "reaper: %zu expired leases re-queued, %zu jobs failed", requeued,
              failed);
    double now = rsclock_monotonic();
    if (a->cfg.retention_s > 0 && (now - *last_prune) * 1000.0 >= PRUNE_PERIOD_MS) {
        size_t deleted = 0;
        err = rsdb_prune(db, rsclock_wall_ms(), 1000LL * (int64_t)a->cfg.retention_s, 0, &deleted);
        if (err != RSDB_OK)
            rslog(RSLOG_WARN, "prune: %s", rsdb_strerror(err));
        else if (deleted > 0)
            rslog(RSLOG_INFO, "prune: %zu finished jobs removed", deleted);
        *last_prune = now;
    }
    err = rsdb_checkpoint(db, (int64_t)a->cfg.checkpoint_bytes, NULL, NULL, NULL);
    if (err != RSDB_OK)
        rslog(RSLOG_WARN, "checkpoint: %s", rsdb_strerror(err));
}

void *maintenance_main(void *varg)
{
    app *a = varg;
    rsdb *db = NULL;
    double last_prune = -1e9;
    while (!atomic_load(&a->stopping)) {
        if (db == NULL)
            db = open_worker_db(a, "maintenance");
        if (db != NULL)
            maintain(a, db, &last_prune);
        nap(a, db != NULL ? (long)a->cfg.maintenance_ms : 1000);
    }
    rsdb_free(db);
    return NULL;
}
