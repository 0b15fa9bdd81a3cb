/*
 * Private declarations shared by the sources of librisksim-db.
 *
 * Why this file exists: the connection struct, the statement cache and the transaction helper
 * are used by every source file of db/ (open, jobs, events, maintenance, backup) but are not
 * part of the public interface; keeping them here lets each file stay about one job.
 */
#ifndef RISKSIM_DB_INTERNAL_H
#define RISKSIM_DB_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "risksim/db.h"

/* Every statement the library runs; the SQL text is in db.c (stmt_sql). */
typedef enum db_stmt {
    ST_BEGIN = 0,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE_SAVEPOINT,
    ST_ROLLBACK_SAVEPOINT,
    ST_IDEM_FIND,
    ST_QUEUED_COUNT,
    ST_JOB_INSERT,
    ST_EVENT_INSERT,
    ST_EVENT_STATUS,
    ST_JOB_GET,
    ST_JOB_LIST,
    ST_JOB_STATE,
    ST_CANCEL_QUEUED,
    ST_CANCEL_REQUEST,
    ST_CLAIM,
    ST_PROGRESS,
    ST_FINISH,
    ST_RELEASE,
    ST_REAP,
    ST_EVENTS_JOB,
    ST_EVENTS_ALL,
    ST_DATA_VERSION,
    ST_SEQ_FLOOR,
    ST_PRUNE,
    ST_STATS_STATES,
    ST_OLDEST_QUEUED,
    ST_INTEGRITY,
    ST_FK_CHECK,
    ST_COUNTS_CHECK,
    ST_BEGIN_READ,
    ST_USER_VERSION,
    ST_JOURNAL_DELETE,
    ST_COUNT_
} db_stmt;

struct rsdb {
    sqlite3 *conn;
    sqlite3_stmt *stmts[ST_COUNT_]; /* prepared on first use, kept until rsdb_free */
    rsdb_options options;
    uint64_t busy_retries;
    uint64_t busy_failures;
    char errmsg[256];
};

#define DB_STR_(x) #x
#define DB_STR(x) DB_STR_(x)

/* The stored data of every `complete` event (schema 3): the result is kept once, in the job's
 * row, and the event reads (DB_EVENT_COLUMNS) put it back as {"result": ...}. */
#define DB_COMPLETE_DATA "{}"

/* The columns of an event (alias e) in the order the event reads expect: a complete event's
 * data is made from its job's result. */
#define DB_EVENT_COLUMNS                                                                           \
    "e.seq, e.job_id, e.type, CASE e.type WHEN 'complete' THEN (SELECT '{\"result\":' || "         \
    "coalesce(j.result, 'null') || '}' FROM jobs j WHERE j.id = e.job_id) ELSE e.data END, e.ts"

/* The columns of a job in the order db_read_job expects. */
#define DB_JOB_COLUMNS                                                                             \
    "id, state, request, result, error_code, error_message, lease_owner, idempotency_key, "        \
    "trials, trials_done, attempts, cancel_requested, lease_until, created, started, finished"

/* Returns the cached statement id, preparing it on first use; NULL on failure (the error is
 * recorded and *err set). The caller must db_reset it when done. */
sqlite3_stmt *db_stmt_get(rsdb *db, db_stmt id, rsdb_err *err);
/* Resets a statement and clears its bindings, ending any read it held open. */
void db_reset(sqlite3_stmt *stmt);
/* Records sqlite3_errmsg (prefixed by what) and maps an SQLite result code to an rsdb_err. */
rsdb_err db_fail(rsdb *db, int rc, const char *what);
/* Binds text, or NULL when text is NULL. Returns an SQLite result code. */
int db_bind_text(sqlite3_stmt *stmt, int index, const char *text);

/* Runs a statement that takes no binding and answers no row (transaction control). */
rsdb_err db_exec_stmt(rsdb *db, db_stmt id, const char *what);

/* The body of a write transaction: runs inside BEGIN IMMEDIATE, returns RSDB_OK to commit. It
 * may run several times (after SQLITE_BUSY), so it must set its outputs afresh each time. */
typedef rsdb_err (*db_tx_fn)(rsdb *db, void *ctx);
/* Runs fn in a BEGIN IMMEDIATE transaction, committing on RSDB_OK and rolling back otherwise;
 * retries the whole transaction with backoff on RSDB_EBUSY up to options.max_retries. */
rsdb_err db_write_tx(rsdb *db, db_tx_fn fn, void *ctx);
/* Runs a read-only fn (no transaction: each statement is its own snapshot), retrying it with
 * backoff on RSDB_EBUSY like db_write_tx. */
rsdb_err db_read_retry(rsdb *db, db_tx_fn fn, void *ctx);
/* Steps a statement that returns no row and resets it. Returns RSDB_OK or the mapped error. */
rsdb_err db_step_done(rsdb *db, sqlite3_stmt *stmt, const char *what);
/* Sleeps before retry number attempt (0-based) and counts the retry. */
void db_backoff(rsdb *db, int attempt);

/* Reads the current row of stmt (columns DB_JOB_COLUMNS) into *job. Returns RSDB_OK or
 * RSDB_ENOMEM (the job's strings are then freed). */
rsdb_err db_read_job(sqlite3_stmt *stmt, rsdb_job *job);
/* Frees the strings of a job without freeing the job. */
void db_job_clear(rsdb_job *job);
/* Parses a stored state name; returns 0 and sets *state, or -1 for an unknown name. */
int db_state_parse(const char *name, rsdb_state *state);
/* Appends an event with the caller's JSON data (worker.c, jobs.c). */
rsdb_err db_append_event(rsdb *db, const char *id, const char *type, const char *data,
                         int64_t now_ms);
/* Appends a `status` event built from the job's current row. */
rsdb_err db_append_status(rsdb *db, const char *id, int64_t now_ms);
/* Applies one creation inside the caller's transaction (the rules of rsdb_job_enqueue and
 * rsdb_job_store_completed), setting item->id and item->existing. */
rsdb_err db_create_in_tx(rsdb *db, rsdb_create *item);
/* Returns 1 when item's arguments are acceptable (request set, body_hash with a key, ...). */
int db_create_valid(const rsdb_create *item);
/* Returns the size of the WAL file of the main database (0 when absent). */
int64_t db_wal_size(rsdb *db);

#endif
