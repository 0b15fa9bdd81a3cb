/*
 * Maintenance: pruning finished jobs, checkpointing the WAL, and the figures for /metrics.
 *
 * Why this file exists: a job store that is never pruned grows without bound, and a WAL that is
 * never checkpointed (or that a reader keeps from being reset) does too. The responder's
 * maintenance thread calls these on a timer. Pruning works in small transactions so that
 * request threads waiting for the write lock are never held up for long.
 */
#include <stdio.h>
#include <string.h>

#include "db_internal.h"

typedef struct prune_ctx {
    int64_t cutoff_ms;
    size_t batch;
    size_t deleted;
} prune_ctx;

static rsdb_err prune_tx(rsdb *db, void *vctx)
{
    prune_ctx *ctx = vctx;
    ctx->deleted = 0;
    rsdb_err err = RSDB_OK;
    /* The floor first: if this batch takes the newest events with it, the next event must
     * still get a seq above every seq ever handed out. */
    sqlite3_stmt *floor = db_stmt_get(db, ST_SEQ_FLOOR, &err);
    if (floor == NULL)
        return err;
    err = db_step_done(db, floor, "seq floor");
    if (err != RSDB_OK)
        return err;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_PRUNE, &err);
    if (stmt == NULL)
        return err;
    sqlite3_bind_int64(stmt, 1, ctx->cutoff_ms);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)ctx->batch);
    err = db_step_done(db, stmt, "prune");
    if (err == RSDB_OK)
        ctx->deleted = (size_t)sqlite3_changes(db->conn);
    return err;
}

rsdb_err rsdb_prune(rsdb *db, int64_t now_ms, int64_t retention_ms, size_t batch, size_t *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    if (db == NULL || retention_ms < 0)
        return RSDB_EINVAL;
    prune_ctx ctx = {now_ms - retention_ms, batch == 0 ? 500 : batch, 0};
    size_t total = 0;
    rsdb_err err = RSDB_OK;
    do {
        err = db_write_tx(db, prune_tx, &ctx);
        if (err != RSDB_OK)
            break;
        total += ctx.deleted;
    } while (ctx.deleted == ctx.batch);
    if (deleted != NULL)
        *deleted = total;
    return err;
}

rsdb_err rsdb_checkpoint(rsdb *db, int64_t threshold_bytes, int64_t *wal_before, int64_t *wal_after,
                         int *done)
{
    if (done != NULL)
        *done = 0;
    if (db == NULL)
        return RSDB_EINVAL;
    int64_t before = db_wal_size(db);
    if (wal_before != NULL)
        *wal_before = before;
    rsdb_err err = RSDB_OK;
    int truncate = before > threshold_bytes;
    int log = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(
        db->conn, "main", truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, &log,
        &copied);
    if (rc == SQLITE_OK) {
        if (done != NULL)
            *done = copied == log;
    } else if ((rc & 0xff) != SQLITE_BUSY) {
        /* BUSY means readers or a writer kept it from finishing: try again next time. */
        err = db_fail(db, rc, "checkpoint");
    }
    if (wal_after != NULL)
        *wal_after = db_wal_size(db);
    return err;
}

typedef struct stats_ctx {
    int64_t now_ms;
    rsdb_stats *out;
} stats_ctx;

static rsdb_err stats_once(rsdb *db, void *vctx)
{
    stats_ctx *ctx = vctx;
    rsdb_stats *out = ctx->out;
    memset(out, 0, sizeof(*out));
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_STATS_STATES, &err);
    if (stmt == NULL)
        return err;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        rsdb_state state;
        if (db_state_parse((const char *)sqlite3_column_text(stmt, 0), &state) == 0)
            out->jobs[state] = (uint64_t)sqlite3_column_int64(stmt, 1);
    }
    if (rc != SQLITE_DONE)
        err = db_fail(db, rc, "stats");
    db_reset(stmt);
    if (err != RSDB_OK)
        return err;
    out->queue_depth = out->jobs[RSDB_QUEUED];
    stmt = db_stmt_get(db, ST_OLDEST_QUEUED, &err);
    if (stmt == NULL)
        return err;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(stmt, 0) != SQLITE_NULL)
            out->oldest_queued_ms = ctx->now_ms - sqlite3_column_int64(stmt, 0);
    } else {
        err = db_fail(db, rc, "stats");
    }
    db_reset(stmt);
    return err;
}

rsdb_err rsdb_stats_get(rsdb *db, int64_t now_ms, rsdb_stats *out)
{
    if (db == NULL || out == NULL)
        return RSDB_EINVAL;
    stats_ctx ctx = {now_ms, out};
    rsdb_err err = db_read_retry(db, stats_once, &ctx);
    if (err != RSDB_OK) {
        memset(out, 0, sizeof(*out));
        return err;
    }
    if (out->oldest_queued_ms < 0)
        out->oldest_queued_ms = 0;
    out->wal_bytes = db_wal_size(db);
    out->busy_retries = db->busy_retries;
    out->busy_failures = db->busy_failures;
    return RSDB_OK;
}

/* Runs a check statement: integrity_check answers one row "ok" when all is well; the foreign
 * key and count checks answer no row. Anything else goes into report as a problem, after the
 * check's name (and `missing`, when the row has no text). */
static rsdb_err run_check(rsdb *db, db_stmt id, int expect_ok, const char *name,
                          const char *missing, char *report, size_t report_len)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, id, &err);
    if (stmt == NULL)
        return err;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(stmt, 0);
        if (!(expect_ok && text != NULL && strcmp(text, "ok") == 0)) {
            if (report != NULL && report_len > 0)
                snprintf(report, report_len, "%s: %s", name, text != NULL ? text : missing);
            err = RSDB_ECORRUPT;
        }
    } else if (rc != SQLITE_DONE) {
        err = db_fail(db, rc, "check");
    } else if (expect_ok) {
        err = RSDB_ECORRUPT; /* integrity_check always answers a row */
    }
    db_reset(stmt);
    return err;
}

rsdb_err rsdb_check(rsdb *db, char *report, size_t report_len)
{
    if (db == NULL)
        return RSDB_EINVAL;
    if (report != NULL && report_len > 0)
        report[0] = '\0';
    rsdb_err err =
        run_check(db, ST_INTEGRITY, 1, "integrity_check", "no answer", report, report_len);
    if (err == RSDB_OK)
        err = run_check(db, ST_FK_CHECK, 0, "foreign_key_check", "a row references a missing job",
                        report, report_len);
    if (err == RSDB_OK)
        err =
            run_check(db, ST_COUNTS_CHECK, 0, "job_counts", "a count is wrong", report, report_len);
    return err;
}
