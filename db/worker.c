/*
 * The worker protocol: claim with a lease, progress (lease renewal), the three endings,
 * release on shutdown and the reaper of expired leases.
 *
 * Why this file exists: "no job lost, none run twice at once" rests on these transitions being
 * atomic and refused when they do not apply. Each function is one BEGIN IMMEDIATE transaction
 * whose UPDATE carries its own precondition in the WHERE clause (state, owner, lease), so a
 * concurrent writer can never slip between a check and a change; when the UPDATE matches no
 * row, the job is read again only to say why (not found, wrong state, not the lease holder).
 */
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

#define OWNER_MAX 200

static int owner_valid(const char *owner)
{
    return owner != NULL && owner[0] != '\0' && strlen(owner) <= OWNER_MAX;
}

/* Explains why a guarded UPDATE of job id by owner matched nothing. */
static rsdb_err refusal(rsdb *db, const char *id, const char *owner, int check_lease,
                        int64_t now_ms)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_JOB_STATE, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, id);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(stmt, 0);
        const char *holder = (const char *)sqlite3_column_text(stmt, 1);
        int64_t until = sqlite3_column_int64(stmt, 2);
        if (state == NULL || strcmp(state, "running") != 0)
            err = RSDB_ESTATE;
        else if (holder == NULL || strcmp(holder, owner) != 0)
            err = RSDB_ELEASE;
        else if (check_lease && until < now_ms)
            err = RSDB_ELEASE;
        else
            err = RSDB_ESTATE; /* cannot happen: the guarded UPDATE would have matched */
    } else {
        err = rc == SQLITE_DONE ? RSDB_ENOTFOUND : db_fail(db, rc, "job state");
    }
    db_reset(stmt);
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * Claim
 * ------------------------------------------------------------------------------------------- */

typedef struct claim_ctx {
    const char *owner;
    int64_t lease_ms;
    int64_t now_ms;
    rsdb_job *job;
} claim_ctx;

static rsdb_err claim_tx(rsdb *db, void *vctx)
{
    claim_ctx *ctx = vctx;
    db_job_clear(ctx->job);
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_CLAIM, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, ctx->owner);
    sqlite3_bind_int64(stmt, 2, ctx->now_ms + ctx->lease_ms);
    sqlite3_bind_int64(stmt, 3, ctx->now_ms);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        err = db_read_job(stmt, ctx->job);
        if (err == RSDB_OK) {
            rc = sqlite3_step(stmt);
            if (rc != SQLITE_DONE)
                err = db_fail(db, rc, "claim");
        }
    } else {
        err = rc == SQLITE_DONE ? RSDB_EEMPTY : db_fail(db, rc, "claim");
    }
    db_reset(stmt);
    if (err == RSDB_OK)
        err = db_append_status(db, ctx->job->id, ctx->now_ms);
    if (err != RSDB_OK)
        db_job_clear(ctx->job);
    return err;
}

rsdb_err rsdb_job_claim(rsdb *db, const char *owner, int64_t lease_ms, int64_t now_ms,
                        rsdb_job **out)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || out == NULL || !owner_valid(owner) || lease_ms <= 0)
        return RSDB_EINVAL;
    claim_ctx ctx = {owner, lease_ms, now_ms, calloc(1, sizeof(rsdb_job))};
    if (ctx.job == NULL)
        return RSDB_ENOMEM;
    rsdb_err err = db_write_tx(db, claim_tx, &ctx);
    if (err != RSDB_OK) {
        rsdb_job_free(ctx.job);
        return err;
    }
    *out = ctx.job;
    return RSDB_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Progress
 * ------------------------------------------------------------------------------------------- */

typedef struct progress_ctx {
    const char *id;
    const char *owner;
    uint64_t trials_done;
    int64_t lease_ms;
    const char *data;
    int64_t now_ms;
    int cancel_requested;
} progress_ctx;

static rsdb_err progress_tx(rsdb *db, void *vctx)
{
    progress_ctx *ctx = vctx;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_PROGRESS, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, ctx->id);
    db_bind_text(stmt, 2, ctx->owner);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)ctx->trials_done);
    sqlite3_bind_int64(stmt, 4, ctx->now_ms + ctx->lease_ms);
    sqlite3_bind_int64(stmt, 5, ctx->now_ms);
    int rc = sqlite3_step(stmt);
    int matched = rc == SQLITE_ROW;
    if (matched) {
        ctx->cancel_requested = sqlite3_column_int(stmt, 0) != 0;
        rc = sqlite3_step(stmt);
    }
    if (rc != SQLITE_DONE)
        err = db_fail(db, rc, "progress");
    db_reset(stmt);
    if (err != RSDB_OK)
        return err;
    if (!matched)
        return refusal(db, ctx->id, ctx->owner, 1, ctx->now_ms);
    return db_append_event(db, ctx->id, "progress", ctx->data, ctx->now_ms);
}

rsdb_err rsdb_job_progress(rsdb *db, const char *id, const char *owner, uint64_t trials_done,
                           int64_t lease_ms, const char *data, int64_t now_ms,
                           int *cancel_requested)
{
    if (cancel_requested != NULL)
        *cancel_requested = 0;
    if (db == NULL || !owner_valid(owner) || data == NULL || lease_ms <= 0 ||
        trials_done > (uint64_t)INT64_MAX)
        return RSDB_EINVAL;
    if (!rsdb_job_id_valid(id))
        return RSDB_ENOTFOUND;
    progress_ctx ctx = {id, owner, trials_done, lease_ms, data, now_ms, 0};
    rsdb_err err = db_write_tx(db, progress_tx, &ctx);
    if (err == RSDB_OK && cancel_requested != NULL)
        *cancel_requested = ctx.cancel_requested;
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * Endings and release
 * ------------------------------------------------------------------------------------------- */

typedef struct finish_ctx {
    const char *id;
    const char *owner;
    const char *state; /* "completed", "failed", "cancelled"; NULL: release */
    const char *result;
    const char *error_code;
    const char *error_message;
    const char *event_type;
    const char *data;
    int64_t now_ms;
} finish_ctx;

static rsdb_err finish_tx(rsdb *db, void *vctx)
{
    finish_ctx *ctx = vctx;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ctx->state != NULL ? ST_FINISH : ST_RELEASE, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, ctx->id);
    db_bind_text(stmt, 2, ctx->owner);
    if (ctx->state != NULL) {
        db_bind_text(stmt, 3, ctx->state);
        db_bind_text(stmt, 4, ctx->result);
        db_bind_text(stmt, 5, ctx->error_code);
        db_bind_text(stmt, 6, ctx->error_message);
        sqlite3_bind_int64(stmt, 7, ctx->now_ms);
    }
    err = db_step_done(db, stmt, ctx->state != NULL ? "finish" : "release");
    if (err != RSDB_OK)
        return err;
    if (sqlite3_changes(db->conn) != 1)
        return refusal(db, ctx->id, ctx->owner, 0, ctx->now_ms);
    if (ctx->state == NULL)
        return db_append_status(db, ctx->id, ctx->now_ms);
    return db_append_event(db, ctx->id, ctx->event_type, ctx->data, ctx->now_ms);
}

static rsdb_err finish(rsdb *db, finish_ctx *ctx)
{
    if (db == NULL || !owner_valid(ctx->owner) || (ctx->state != NULL && ctx->data == NULL))
        return RSDB_EINVAL;
    if (!rsdb_job_id_valid(ctx->id))
        return RSDB_ENOTFOUND;
    return db_write_tx(db, finish_tx, ctx);
}

rsdb_err rsdb_job_complete(rsdb *db, const char *id, const char *owner, const char *result,
                           int64_t now_ms)
{
    if (result == NULL)
        return RSDB_EINVAL;
    finish_ctx ctx = {id,   owner,      "completed",      result, NULL,
                      NULL, "complete", DB_COMPLETE_DATA, now_ms};
    return finish(db, &ctx);
}

rsdb_err rsdb_job_fail(rsdb *db, const char *id, const char *owner, const char *error_code,
                       const char *error_message, const char *data, int64_t now_ms)
{
    if (error_code == NULL || error_message == NULL)
        return RSDB_EINVAL;
    finish_ctx ctx = {id, owner, "failed", NULL, error_code, error_message, "error", data, now_ms};
    return finish(db, &ctx);
}

rsdb_err rsdb_job_cancelled(rsdb *db, const char *id, const char *owner, int64_t now_ms)
{
    finish_ctx ctx = {id, owner, "cancelled", NULL, NULL, NULL, "cancelled", "{}", now_ms};
    return finish(db, &ctx);
}

rsdb_err rsdb_job_release(rsdb *db, const char *id, const char *owner, int64_t now_ms)
{
    finish_ctx ctx = {id, owner, NULL, NULL, NULL, NULL, NULL, NULL, now_ms};
    return finish(db, &ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Reaper
 * ------------------------------------------------------------------------------------------- */

typedef struct reap_ctx {
    int64_t now_ms;
    uint32_t max_attempts;
    size_t requeued;
    size_t failed;
    char ids[RSDB_REAP_BATCH][RSDB_ID_SIZE];
    unsigned char is_failed[RSDB_REAP_BATCH];
} reap_ctx;

/* The error event of a job the reaper failed (the same message as its error_message column). */
#define REAP_ERROR_DATA                                                                            \
    "{\"error\":{\"code\":\"lease_expired\",\"message\":\"the job's worker stopped renewing "      \
    "its lease too many times\"}}"

static rsdb_err reap_tx(rsdb *db, void *vctx)
{
    reap_ctx *ctx = vctx;
    ctx->requeued = 0;
    ctx->failed = 0;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_REAP, &err);
    if (stmt == NULL)
        return err;
    sqlite3_bind_int64(stmt, 1, ctx->now_ms);
    sqlite3_bind_int64(stmt, 2, ctx->max_attempts);
    sqlite3_bind_int64(stmt, 3, RSDB_REAP_BATCH);
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && n < RSDB_REAP_BATCH) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        const char *state = (const char *)sqlite3_column_text(stmt, 1);
        if (id == NULL || state == NULL)
            continue;
        strncpy(ctx->ids[n], id, RSDB_ID_LEN);
        ctx->ids[n][RSDB_ID_LEN] = '\0';
        n++;
        ctx->is_failed[n - 1] = strcmp(state, "failed") == 0;
        if (ctx->is_failed[n - 1])
            ctx->failed++;
        else
            ctx->requeued++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = db_fail(db, rc, "reap");
    db_reset(stmt);
    /* The events are appended after the UPDATE has finished, in one transaction with it: a
     * re-queued job gets a status event, a failed one its terminal error event. */
    for (size_t i = 0; err == RSDB_OK && i < n; i++) {
        if (ctx->is_failed[i])
            err = db_append_event(db, ctx->ids[i], "error", REAP_ERROR_DATA, ctx->now_ms);
        else
            err = db_append_status(db, ctx->ids[i], ctx->now_ms);
    }
    return err;
}

rsdb_err rsdb_reap(rsdb *db, int64_t now_ms, uint32_t max_attempts, size_t *requeued,
                   size_t *failed)
{
    if (requeued != NULL)
        *requeued = 0;
    if (failed != NULL)
        *failed = 0;
    if (db == NULL || max_attempts == 0)
        return RSDB_EINVAL;
    reap_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return RSDB_ENOMEM;
    ctx->now_ms = now_ms;
    ctx->max_attempts = max_attempts;
    rsdb_err err = db_write_tx(db, reap_tx, ctx);
    if (err == RSDB_OK) {
        if (requeued != NULL)
            *requeued = ctx->requeued;
        if (failed != NULL)
            *failed = ctx->failed;
    }
    free(ctx);
    return err;
}
