/*
 * Jobs: creation (queued or already completed), idempotency keys, reads, lists and cancel.
 *
 * Why this file exists: the HTTP endpoints of docs/api.md section 3 each map to one function here,
 * and each write is one BEGIN IMMEDIATE transaction that changes the job and appends its event
 * together, so that a client polling events and a client reading the job never disagree. Job ids
 * are 128 random bits from the kernel (getrandom), never sequential (docs/api.md section 6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "db_internal.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Writes a new random id (26 Crockford base32 characters of 128 random bits, the first
 * character carrying 3 bits) and its NUL to id. Returns RSDB_OK or RSDB_ERANDOM. */
rsdb_err rsdb_job_id_new(char id[RSDB_ID_SIZE])
{
    unsigned char bytes[16];
    size_t got = 0;
    while (got < sizeof(bytes)) {
        ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof(bytes))
        return RSDB_ERANDOM;
    /* A 130-bit stream: two zero bits, then the 128 random bits, cut into 26 groups of 5. */
    for (int i = 0; i < RSDB_ID_LEN; i++) {
        unsigned value = 0;
        for (int b = 0; b < 5; b++) {
            int pos = i * 5 + b - 2;
            unsigned bit = pos < 0 ? 0u : (bytes[pos / 8] >> (7 - pos % 8)) & 1u;
            value = (value << 1) | bit;
        }
        id[i] = crockford[value];
    }
    id[RSDB_ID_LEN] = '\0';
    return RSDB_OK;
}

/* Returns 1 when id looks like one of ours (so that a bad id is refused before any SQL). */
static int id_valid(const char *id)
{
    if (id == NULL || strlen(id) != RSDB_ID_LEN)
        return 0;
    for (size_t i = 0; i < RSDB_ID_LEN; i++) {
        if (strchr(crockford, id[i]) == NULL || id[i] == '\0')
            return 0;
    }
    return 1;
}

static char *dup_column(sqlite3_stmt *stmt, int col, int *failed)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    if (text == NULL) {
        if (sqlite3_column_type(stmt, col) != SQLITE_NULL)
            *failed = 1; /* SQLite could not allocate the conversion */
        return NULL;
    }
    size_t len = (size_t)sqlite3_column_bytes(stmt, col);
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        *failed = 1;
        return NULL;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

void db_job_clear(rsdb_job *job)
{
    free(job->request);
    free(job->result);
    free(job->error_code);
    free(job->error_message);
    free(job->lease_owner);
    free(job->idempotency_key);
    memset(job, 0, sizeof(*job));
}

rsdb_err db_read_job(sqlite3_stmt *stmt, rsdb_job *job)
{
    int failed = 0;
    memset(job, 0, sizeof(*job));
    const char *id = (const char *)sqlite3_column_text(stmt, 0);
    if (id != NULL) {
        strncpy(job->id, id, RSDB_ID_LEN);
        job->id[RSDB_ID_LEN] = '\0';
    }
    rsdb_state state = RSDB_QUEUED;
    (void)db_state_parse((const char *)sqlite3_column_text(stmt, 1), &state);
    job->state = state;
    job->request = dup_column(stmt, 2, &failed);
    job->result = dup_column(stmt, 3, &failed);
    job->error_code = dup_column(stmt, 4, &failed);
    job->error_message = dup_column(stmt, 5, &failed);
    job->lease_owner = dup_column(stmt, 6, &failed);
    job->idempotency_key = dup_column(stmt, 7, &failed);
    job->trials = (uint64_t)sqlite3_column_int64(stmt, 8);
    job->trials_done = (uint64_t)sqlite3_column_int64(stmt, 9);
    job->attempts = (uint32_t)sqlite3_column_int64(stmt, 10);
    job->cancel_requested = sqlite3_column_int(stmt, 11) != 0;
    job->lease_until_ms = sqlite3_column_int64(stmt, 12);
    job->created_ms = sqlite3_column_int64(stmt, 13);
    job->started_ms = sqlite3_column_int64(stmt, 14);
    job->finished_ms = sqlite3_column_int64(stmt, 15);
    if (failed) {
        db_job_clear(job);
        return RSDB_ENOMEM;
    }
    return RSDB_OK;
}

void rsdb_job_free(rsdb_job *job)
{
    if (job == NULL)
        return;
    db_job_clear(job);
    free(job);
}

void rsdb_job_list_clear(rsdb_job_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        db_job_clear(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------------- */

/* Appends an event with caller data. */
static rsdb_err append_event(rsdb *db, const char *id, const char *type, const char *data,
                             int64_t now_ms)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_EVENT_INSERT, &err);
    if (stmt == NULL)
        return err;
    if (db_bind_text(stmt, 1, id) != SQLITE_OK || db_bind_text(stmt, 2, type) != SQLITE_OK ||
        db_bind_text(stmt, 3, data) != SQLITE_OK ||
        sqlite3_bind_int64(stmt, 4, now_ms) != SQLITE_OK) {
        err = db_fail(db, sqlite3_errcode(db->conn), "event bind");
        db_reset(stmt);
        return err;
    }
    return db_step_done(db, stmt, "event insert");
}

/* Appends a `status` event describing the job's current row. */
static rsdb_err append_status(rsdb *db, const char *id, int64_t now_ms)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_EVENT_STATUS, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, now_ms);
    return db_step_done(db, stmt, "status event");
}

/* Applies the idempotency rule. Returns RSDB_OK with *found = 0 when the key is free (or
 * absent), RSDB_OK with *found = 1 and item->id set for the same body, RSDB_ECONFLICT
 * otherwise. */
static rsdb_err idempotency_check(rsdb *db, rsdb_create *item, int *found)
{
    *found = 0;
    if (item->spec.idempotency_key == NULL)
        return RSDB_OK;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_IDEM_FIND, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, item->spec.idempotency_key);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        const char *hash = (const char *)sqlite3_column_text(stmt, 1);
        if (hash != NULL && strcmp(hash, item->spec.body_hash) == 0 && id != NULL) {
            strncpy(item->id, id, RSDB_ID_LEN);
            item->id[RSDB_ID_LEN] = '\0';
            *found = 1;
        } else {
            err = RSDB_ECONFLICT;
        }
    } else if (rc != SQLITE_DONE) {
        err = db_fail(db, rc, "idempotency lookup");
    }
    db_reset(stmt);
    return err;
}

/* RSDB_EQUEUEFULL when queue_size (> 0) jobs are already queued. */
static rsdb_err queue_check(rsdb *db, uint32_t queue_size)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *count = db_stmt_get(db, ST_QUEUED_COUNT, &err);
    if (count == NULL)
        return err;
    int rc = sqlite3_step(count);
    int64_t queued = rc == SQLITE_ROW ? sqlite3_column_int64(count, 0) : 0;
    if (rc != SQLITE_ROW)
        err = db_fail(db, rc, "queue depth");
    db_reset(count);
    if (err == RSDB_OK && queued >= (int64_t)queue_size)
        err = RSDB_EQUEUEFULL;
    return err;
}

/* Inserts item's job row under a new id. */
static rsdb_err insert_job(rsdb *db, rsdb_create *item)
{
    rsdb_err err = RSDB_OK;
    if (item->preset_id != NULL) {
        memcpy(item->id, item->preset_id, RSDB_ID_SIZE);
    } else {
        err = rsdb_job_id_new(item->id);
        if (err != RSDB_OK) {
            snprintf(db->errmsg, sizeof(db->errmsg), "job id: getrandom failed");
            return err;
        }
    }
    sqlite3_stmt *insert = db_stmt_get(db, ST_JOB_INSERT, &err);
    if (insert == NULL)
        return err;
    const rsdb_job_spec *spec = &item->spec;
    int done = item->result != NULL;
    db_bind_text(insert, 1, item->id);
    db_bind_text(insert, 2, done ? "completed" : "queued");
    db_bind_text(insert, 3, spec->request);
    db_bind_text(insert, 4, item->result);
    sqlite3_bind_int64(insert, 5, (sqlite3_int64)spec->trials);
    sqlite3_bind_int64(insert, 6, done ? (sqlite3_int64)spec->trials : 0);
    db_bind_text(insert, 7, spec->idempotency_key);
    db_bind_text(insert, 8, spec->idempotency_key != NULL ? spec->body_hash : NULL);
    sqlite3_bind_int64(insert, 9, item->now_ms);
    if (done) {
        sqlite3_bind_int64(insert, 10, item->now_ms);
        sqlite3_bind_int64(insert, 11, item->now_ms);
    }
    return db_step_done(db, insert, "job insert");
}

rsdb_err db_create_in_tx(rsdb *db, rsdb_create *item)
{
    item->existing = 0;
    item->id[0] = '\0';
    int found = 0;
    rsdb_err err = idempotency_check(db, item, &found);
    if (err != RSDB_OK || found) {
        item->existing = found;
        return err;
    }
    if (item->result == NULL && item->queue_size > 0) {
        err = queue_check(db, item->queue_size);
        if (err != RSDB_OK)
            return err;
    }
    err = insert_job(db, item);
    if (err == RSDB_OK)
        err = append_status(db, item->id, item->now_ms);
    if (err == RSDB_OK && item->result != NULL)
        err = append_event(db, item->id, "complete", DB_COMPLETE_DATA, item->now_ms);
    return err;
}

int db_create_valid(const rsdb_create *item)
{
    const rsdb_job_spec *spec = &item->spec;
    return spec->request != NULL && (spec->idempotency_key == NULL || spec->body_hash != NULL) &&
           (item->preset_id == NULL || id_valid(item->preset_id)) &&
           spec->trials <= (uint64_t)INT64_MAX;
}

static rsdb_err create_one_tx(rsdb *db, void *item)
{
    return db_create_in_tx(db, item);
}

/* Runs one creation in its own transaction and copies its answers out. */
static rsdb_err create_job(rsdb *db, rsdb_create *item, char id_out[RSDB_ID_SIZE], int *existing)
{
    if (existing != NULL)
        *existing = 0;
    if (db == NULL || id_out == NULL || !db_create_valid(item))
        return RSDB_EINVAL;
    rsdb_err err = db_write_tx(db, create_one_tx, item);
    if (err != RSDB_OK)
        return err;
    memcpy(id_out, item->id, RSDB_ID_SIZE);
    if (existing != NULL)
        *existing = item->existing;
    return RSDB_OK;
}

rsdb_err rsdb_job_enqueue(rsdb *db, const rsdb_job_spec *spec, uint32_t queue_size, int64_t now_ms,
                          char id_out[RSDB_ID_SIZE], int *existing)
{
    if (spec == NULL)
        return RSDB_EINVAL;
    rsdb_create item = {.spec = *spec, .queue_size = queue_size, .now_ms = now_ms};
    return create_job(db, &item, id_out, existing);
}

rsdb_err rsdb_job_store_completed(rsdb *db, const rsdb_job_spec *spec, const char *result,
                                  int64_t now_ms, char id_out[RSDB_ID_SIZE], int *existing)
{
    if (spec == NULL || result == NULL)
        return RSDB_EINVAL;
    rsdb_create item = {.spec = *spec, .result = result, .now_ms = now_ms};
    return create_job(db, &item, id_out, existing);
}

/* ---------------------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------------------- */

typedef struct get_ctx {
    const char *id;
    rsdb_job *job;
} get_ctx;

static rsdb_err get_once(rsdb *db, void *vctx)
{
    get_ctx *ctx = vctx;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_JOB_GET, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, ctx->id);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        err = db_read_job(stmt, ctx->job);
    else if (rc == SQLITE_DONE)
        err = RSDB_ENOTFOUND;
    else
        err = db_fail(db, rc, "job read");
    db_reset(stmt);
    return err;
}

rsdb_err rsdb_job_get(rsdb *db, const char *id, rsdb_job **out)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || out == NULL)
        return RSDB_EINVAL;
    if (!id_valid(id))
        return RSDB_ENOTFOUND;
    get_ctx ctx = {id, calloc(1, sizeof(rsdb_job))};
    if (ctx.job == NULL)
        return RSDB_ENOMEM;
    rsdb_err err = db_read_retry(db, get_once, &ctx);
    if (err != RSDB_OK) {
        free(ctx.job);
        return err;
    }
    *out = ctx.job;
    return RSDB_OK;
}

typedef struct list_ctx {
    const rsdb_state *state_filter;
    int64_t before_created_ms;
    const char *before_id;
    size_t limit;
    rsdb_job_list *out;
} list_ctx;

static rsdb_err list_once(rsdb *db, void *vctx)
{
    list_ctx *ctx = vctx;
    rsdb_job_list_clear(ctx->out);
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_JOB_LIST, &err);
    if (stmt == NULL)
        return err;
    ctx->out->items = calloc(ctx->limit, sizeof(rsdb_job));
    if (ctx->out->items == NULL)
        return RSDB_ENOMEM;
    if (ctx->state_filter != NULL)
        db_bind_text(stmt, 1, rsdb_state_name(*ctx->state_filter));
    sqlite3_bind_int64(stmt, 2, ctx->before_created_ms);
    db_bind_text(stmt, 3, ctx->before_id);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)ctx->limit);
    int rc;
    while (ctx->out->count < ctx->limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        err = db_read_job(stmt, &ctx->out->items[ctx->out->count]);
        if (err != RSDB_OK)
            break;
        ctx->out->count++;
    }
    if (err == RSDB_OK && ctx->out->count < ctx->limit && rc != SQLITE_DONE)
        err = db_fail(db, rc, "job list");
    db_reset(stmt);
    if (err != RSDB_OK)
        rsdb_job_list_clear(ctx->out);
    return err;
}

rsdb_err rsdb_job_list_page(rsdb *db, const rsdb_state *state_filter, int64_t before_created_ms,
                            const char *before_id, size_t limit, rsdb_job_list *out)
{
    if (out == NULL || db == NULL)
        return RSDB_EINVAL;
    out->items = NULL;
    out->count = 0;
    if (state_filter != NULL && rsdb_state_name(*state_filter) == NULL)
        return RSDB_EINVAL;
    if (limit > RSDB_LIST_MAX)
        limit = RSDB_LIST_MAX;
    if (limit == 0)
        return RSDB_OK;
    list_ctx ctx = {state_filter, before_created_ms, before_id, limit, out};
    return db_read_retry(db, list_once, &ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Cancel
 * ------------------------------------------------------------------------------------------- */

typedef struct cancel_ctx {
    const char *id;
    int64_t now_ms;
    rsdb_state state;
} cancel_ctx;

static rsdb_err cancel_tx(rsdb *db, void *vctx)
{
    cancel_ctx *ctx = vctx;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_JOB_STATE, &err);
    if (stmt == NULL)
        return err;
    db_bind_text(stmt, 1, ctx->id);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        if (db_state_parse((const char *)sqlite3_column_text(stmt, 0), &ctx->state) != 0)
            err = RSDB_ECORRUPT;
    } else {
        err = rc == SQLITE_DONE ? RSDB_ENOTFOUND : db_fail(db, rc, "job state");
    }
    db_reset(stmt);
    if (err != RSDB_OK)
        return err;
    if (ctx->state == RSDB_QUEUED) {
        stmt = db_stmt_get(db, ST_CANCEL_QUEUED, &err);
        if (stmt == NULL)
            return err;
        db_bind_text(stmt, 1, ctx->id);
        sqlite3_bind_int64(stmt, 2, ctx->now_ms);
        err = db_step_done(db, stmt, "cancel");
        if (err == RSDB_OK)
            err = append_event(db, ctx->id, "cancelled", "{}", ctx->now_ms);
        ctx->state = RSDB_CANCELLED;
    } else if (ctx->state == RSDB_RUNNING) {
        stmt = db_stmt_get(db, ST_CANCEL_REQUEST, &err);
        if (stmt == NULL)
            return err;
        db_bind_text(stmt, 1, ctx->id);
        err = db_step_done(db, stmt, "cancel request");
    }
    return err;
}

rsdb_err rsdb_job_cancel(rsdb *db, const char *id, int64_t now_ms, rsdb_state *state_out)
{
    if (db == NULL)
        return RSDB_EINVAL;
    if (!id_valid(id))
        return RSDB_ENOTFOUND;
    cancel_ctx ctx = {id, now_ms, RSDB_QUEUED};
    rsdb_err err = db_write_tx(db, cancel_tx, &ctx);
    if (err == RSDB_OK && state_out != NULL)
        *state_out = ctx.state;
    return err;
}

/* Exposed to worker.c through db_internal.h. */
rsdb_err db_append_event(rsdb *db, const char *id, const char *type, const char *data,
                         int64_t now_ms)
{
    return append_event(db, id, type, data, now_ms);
}

rsdb_err db_append_status(rsdb *db, const char *id, int64_t now_ms)
{
    return append_status(db, id, now_ms);
}

int rsdb_job_id_valid(const char *id)
{
    return id_valid(id);
}
