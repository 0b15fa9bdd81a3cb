/*
 * Events: the reads of the event log and the change probe.
 *
 * Why this file exists: the polling endpoint and the WebSocket bridge serve the same event
 * sequence from here. Each read is one statement that is reset as soon as its rows are copied,
 * so no reader ever holds a read transaction (and with it the WAL) open between calls. Because
 * every write is a BEGIN IMMEDIATE transaction and SQLite has one writer at a time, seqs commit
 * in increasing order: a reader that has seen seq N will never later find a new event below N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_internal.h"

void rsdb_event_list_clear(rsdb_event_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].data);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

typedef struct events_ctx {
    const char *job_id; /* NULL: every job */
    int64_t after_seq;
    size_t limit;
    rsdb_event_list *out;
} events_ctx;

/* Copies the current row (seq, job_id, type, data, ts) into ev. */
static rsdb_err read_event(sqlite3_stmt *stmt, rsdb_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->seq = sqlite3_column_int64(stmt, 0);
    const char *job = (const char *)sqlite3_column_text(stmt, 1);
    const char *type = (const char *)sqlite3_column_text(stmt, 2);
    if (job != NULL) {
        strncpy(ev->job_id, job, RSDB_ID_LEN);
        ev->job_id[RSDB_ID_LEN] = '\0';
    }
    if (type != NULL) {
        strncpy(ev->type, type, sizeof(ev->type) - 1);
        ev->type[sizeof(ev->type) - 1] = '\0';
    }
    const unsigned char *data = sqlite3_column_text(stmt, 3);
    size_t len = data == NULL ? 0 : (size_t)sqlite3_column_bytes(stmt, 3);
    ev->data = malloc(len + 1);
    if (ev->data == NULL)
        return RSDB_ENOMEM;
    if (len > 0)
        memcpy(ev->data, data, len);
    ev->data[len] = '\0';
    ev->ts_ms = sqlite3_column_int64(stmt, 4);
    return RSDB_OK;
}

static rsdb_err events_once(rsdb *db, void *vctx)
{
    events_ctx *ctx = vctx;
    rsdb_event_list *out = ctx->out;
    rsdb_event_list_clear(out);
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ctx->job_id != NULL ? ST_EVENTS_JOB : ST_EVENTS_ALL, &err);
    if (stmt == NULL)
        return err;
    int i = 1;
    if (ctx->job_id != NULL)
        db_bind_text(stmt, i++, ctx->job_id);
    sqlite3_bind_int64(stmt, i++, ctx->after_seq);
    sqlite3_bind_int64(stmt, i, (sqlite3_int64)ctx->limit);
    size_t capacity = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (out->count == capacity) {
            size_t grown = capacity == 0 ? 16 : capacity * 2;
            if (grown > ctx->limit)
                grown = ctx->limit;
            rsdb_event *items = realloc(out->items, grown * sizeof(*items));
            if (items == NULL) {
                err = RSDB_ENOMEM;
                break;
            }
            out->items = items;
            capacity = grown;
        }
        err = read_event(stmt, &out->items[out->count]);
        if (err != RSDB_OK) {
            free(out->items[out->count].data);
            break;
        }
        out->count++;
    }
    if (err == RSDB_OK && rc != SQLITE_DONE)
        err = db_fail(db, rc, "events read");
    db_reset(stmt);
    if (err != RSDB_OK)
        rsdb_event_list_clear(out);
    return err;
}

static rsdb_err events_read(rsdb *db, const char *job_id, int64_t after_seq, size_t limit,
                            rsdb_event_list *out)
{
    if (db == NULL || out == NULL)
        return RSDB_EINVAL;
    out->items = NULL;
    out->count = 0;
    if (limit > RSDB_EVENTS_MAX)
        limit = RSDB_EVENTS_MAX;
    if (limit == 0)
        return RSDB_OK;
    events_ctx ctx = {job_id, after_seq, limit, out};
    return db_read_retry(db, events_once, &ctx);
}

rsdb_err rsdb_events_job(rsdb *db, const char *job_id, int64_t after_seq, size_t limit,
                         rsdb_event_list *out)
{
    if (job_id == NULL)
        return RSDB_EINVAL;
    return events_read(db, job_id, after_seq, limit, out);
}

rsdb_err rsdb_events_all(rsdb *db, int64_t after_seq, size_t limit, rsdb_event_list *out)
{
    return events_read(db, NULL, after_seq, limit, out);
}

static rsdb_err data_version_once(rsdb *db, void *vctx)
{
    int64_t *out = vctx;
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, ST_DATA_VERSION, &err);
    if (stmt == NULL)
        return err;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else
        err = db_fail(db, rc, "data_version");
    db_reset(stmt);
    return err;
}

rsdb_err rsdb_data_version(rsdb *db, int64_t *out)
{
    if (db == NULL || out == NULL)
        return RSDB_EINVAL;
    return db_read_retry(db, data_version_once, out);
}

/* Writes ts_ms as RFC 3339 UTC with milliseconds ("2026-11-22T04:35:45.123Z", 24 bytes + NUL). */
static void format_ts(int64_t ts_ms, char out[32])
{
    time_t secs = (time_t)(ts_ms / 1000);
    int ms = (int)(ts_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, 32, "1970-01-01T00:00:00");
        ms = 0;
    }
    size_t n = strlen(out);
    snprintf(out + n, 32 - n, ".%03dZ", ms);
}

rsdb_err rsdb_event_json(const rsdb_event *ev, char **out, size_t *len)
{
    if (out != NULL)
        *out = NULL;
    if (ev == NULL || out == NULL || ev->data == NULL)
        return RSDB_EINVAL;
    /* The data's members are spliced in between the transport fields: its text is a JSON object
     * (the schema's json_valid check and the writers guarantee it), so only its outer braces
     * need finding; nothing is parsed again, which matters for a complete event's result. */
    const char *open = ev->data;
    while (*open == ' ' || *open == '\t' || *open == '\n' || *open == '\r')
        open++;
    const char *close = ev->data + strlen(ev->data);
    while (close > open &&
           (close[-1] == ' ' || close[-1] == '\t' || close[-1] == '\n' || close[-1] == '\r'))
        close--;
    if (*open != '{' || close - open < 2 || close[-1] != '}')
        return RSDB_EINVAL;
    const char *inner = open + 1;
    size_t inner_len = (size_t)(close - 1 - inner);
    while (inner_len > 0 && (*inner == ' ' || *inner == '\t' || *inner == '\n' || *inner == '\r')) {
        inner++;
        inner_len--;
    }
    char ts[32];
    format_ts(ev->ts_ms, ts);
    char head[128];
    int head_len = snprintf(head, sizeof(head), "{\"seq\":%lld,\"jobId\":\"%s\",\"type\":\"%s\"%s",
                            (long long)ev->seq, ev->job_id, ev->type, inner_len > 0 ? "," : "");
    char tail[64];
    int tail_len = snprintf(tail, sizeof(tail), ",\"ts\":\"%s\"}", ts);
    if (head_len < 0 || (size_t)head_len >= sizeof(head) || tail_len < 0 ||
        (size_t)tail_len >= sizeof(tail))
        return RSDB_EINVAL;
    size_t total = (size_t)head_len + inner_len + (size_t)tail_len;
    char *text = malloc(total + 1);
    if (text == NULL)
        return RSDB_ENOMEM;
    memcpy(text, head, (size_t)head_len);
    memcpy(text + head_len, inner, inner_len);
    memcpy(text + (size_t)head_len + inner_len, tail, (size_t)tail_len + 1);
    *out = text;
    if (len != NULL)
        *len = total;
    return RSDB_OK;
}
