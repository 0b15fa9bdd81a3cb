/*
 * Connections: open, pragmas, schema migrations, the statement cache, error mapping and the
 * write-transaction helper of librisksim-db.
 *
 * Why this file exists: every promise the job store makes (no job lost, no event missed, a
 * clear refusal of a database from a newer release) starts at how a connection is set up and
 * how a write transaction is run. Those rules live here once: WAL, busy_timeout, foreign keys,
 * synchronous per role, migrations in one BEGIN IMMEDIATE transaction at open, and every write
 * wrapped in BEGIN IMMEDIATE with a bounded retry on SQLITE_BUSY. All SQL text of the library is
 * in the stmt_sql table below, prepared once per connection and bound, never concatenated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db_internal.h"

/* The schema, one script per version: migrations[i] takes user_version i to i + 1 and sets
 * user_version itself, so the script and the version commit together. */
static const char *const migrations[RSDB_SCHEMA_VERSION] = {
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),"
    " state TEXT NOT NULL"
    "  CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),"
    " request TEXT NOT NULL,"
    " result TEXT CHECK (result IS NULL OR json_valid(result)),"
    " error_code TEXT,"
    " error_message TEXT,"
    " trials INTEGER NOT NULL CHECK (trials >= 0),"
    " trials_done INTEGER NOT NULL DEFAULT 0 CHECK (trials_done >= 0),"
    " attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    " lease_owner TEXT,"
    " lease_until INTEGER,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),"
    " idempotency_key TEXT,"
    " body_hash TEXT,"
    " created INTEGER NOT NULL,"
    " started INTEGER,"
    " finished INTEGER,"
    " CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL)),"
    " CHECK ((state IN ('completed', 'failed', 'cancelled')) = (finished IS NOT NULL)),"
    " CHECK ((idempotency_key IS NULL) = (body_hash IS NULL))"
    ");"
    "CREATE UNIQUE INDEX jobs_idempotency ON jobs(idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX jobs_queued ON jobs(created, id) WHERE state = 'queued';"
    "CREATE INDEX jobs_leases ON jobs(lease_until) WHERE state = 'running';"
    "CREATE INDEX jobs_finished ON jobs(finished) WHERE finished IS NOT NULL;"
    "CREATE INDEX jobs_created ON jobs(created, id);"
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " type TEXT NOT NULL"
    "  CHECK (type IN ('status', 'progress', 'complete', 'error', 'cancelled')),"
    " data TEXT NOT NULL CHECK (json_valid(data)),"
    " ts INTEGER NOT NULL"
    ");"
    "CREATE INDEX events_job ON events(job_id, seq);"
    "PRAGMA user_version = 1;",

    /* 2: fewer pages written per progress write (docs/internals.md, "Schema history"). seq
     * loses AUTOINCREMENT (whose sqlite_sequence row was one more page in every event insert);
     * meta.seq_floor, raised by every prune, keeps seq from ever going back. The lease index
     * keyed by lease_until (rewritten by every renewal) becomes one on state alone. */
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES ('seq_floor', max("
    " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
    " coalesce((SELECT max(seq) FROM events), 0)));"
    "CREATE TABLE events_v2 ("
    " seq INTEGER PRIMARY KEY,"
    " job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " type TEXT NOT NULL"
    "  CHECK (type IN ('status', 'progress', 'complete', 'error', 'cancelled')),"
    " data TEXT NOT NULL CHECK (json_valid(data)),"
    " ts INTEGER NOT NULL"
    ");"
    "INSERT INTO events_v2(seq, job_id, type, data, ts)"
    " SELECT seq, job_id, type, data, ts FROM events ORDER BY seq;"
    "DROP TABLE events;"
    "ALTER TABLE events_v2 RENAME TO events;"
    "CREATE INDEX events_job ON events(job_id, seq);"
    "DROP INDEX jobs_leases;"
    "CREATE INDEX jobs_running ON jobs(state) WHERE state = 'running';"
    "PRAGMA user_version = 2;",

    /* 3: the number of jobs in each state, kept by triggers in the same transaction as the
     * change, so that the queue check of every submission and the figures of /healthz read one
     * row each instead of counting a table that holds a week of jobs; and a result stored once,
     * in its job's row, not again in the `complete` event, whose data the reads make from the
     * job (DB_EVENT_COLUMNS). See docs/internals.md, "Schema history". */
    "CREATE TABLE job_counts (state TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL"
    " CHECK (n >= 0)) WITHOUT ROWID;"
    "INSERT INTO job_counts(state, n) SELECT s.state, (SELECT count(*) FROM jobs WHERE"
    " jobs.state = s.state) FROM (SELECT 'queued' AS state UNION ALL SELECT 'running'"
    " UNION ALL SELECT 'completed' UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') s;"
    "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN"
    " UPDATE job_counts SET n = n + 1 WHERE state = NEW.state; END;"
    "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN"
    " UPDATE job_counts SET n = n - 1 WHERE state = OLD.state; END;"
    "CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON jobs"
    " WHEN OLD.state <> NEW.state BEGIN"
    " UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;"
    " UPDATE job_counts SET n = n + 1 WHERE state = NEW.state; END;"
    "UPDATE events SET data = '" DB_COMPLETE_DATA "' WHERE type = 'complete';"
    "PRAGMA user_version = 3;",
};

/* The seq of the next event: one above both the newest stored event and the floor that pruning
 * leaves behind, so that a seq is never handed out twice even when the newest events were
 * pruned. Every insert runs inside BEGIN IMMEDIATE, so no other writer can take the same one. */
#define NEXT_SEQ_SQL                                                                               \
    "(SELECT max(coalesce((SELECT max(seq) FROM events), 0), "                                     \
    "coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0)) + 1)"

/* The status event of a job, built from its row so that it always tells the stored truth. */
#define STATUS_EVENT_SQL                                                                           \
    "INSERT INTO events(seq, job_id, type, data, ts) SELECT " NEXT_SEQ_SQL ", id, 'status', "      \
    "json_object("                                                                                 \
    "'status', state, 'progress', CASE WHEN trials > 0 THEN CAST(trials_done AS REAL) / trials "   \
    "ELSE 0.0 END, 'trialsDone', trials_done, 'trials', trials), ?2 FROM jobs WHERE id = ?1"

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT item",
    [ST_RELEASE_SAVEPOINT] = "RELEASE item",
    [ST_ROLLBACK_SAVEPOINT] = "ROLLBACK TO item",
    [ST_IDEM_FIND] = "SELECT id, body_hash FROM jobs WHERE idempotency_key = ?1",
    [ST_QUEUED_COUNT] = "SELECT n FROM job_counts WHERE state = 'queued'",
    [ST_JOB_INSERT] = "INSERT INTO jobs(id, state, request, result, trials, trials_done, "
                      "idempotency_key, body_hash, created, started, finished) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_EVENT_INSERT] = "INSERT INTO events(seq, job_id, type, data, ts) "
                        "VALUES (" NEXT_SEQ_SQL ", ?1, ?2, ?3, ?4)",
    [ST_EVENT_STATUS] = STATUS_EVENT_SQL,
    [ST_JOB_GET] = "SELECT " DB_JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [ST_JOB_LIST] =
        "SELECT id, state, NULL, NULL, error_code, error_message, lease_owner, "
        "idempotency_key, trials, trials_done, attempts, cancel_requested, lease_until, "
        "created, started, finished FROM jobs "
        "WHERE (?1 IS NULL OR state = ?1) "
        "AND (?3 IS NULL OR created < ?2 OR (created = ?2 AND id < ?3)) "
        "ORDER BY created DESC, id DESC LIMIT ?4",
    [ST_JOB_STATE] = "SELECT state, lease_owner, lease_until FROM jobs WHERE id = ?1",
    [ST_CANCEL_QUEUED] = "UPDATE jobs SET state = 'cancelled', finished = ?2 "
                         "WHERE id = ?1 AND state = 'queued'",
    [ST_CANCEL_REQUEST] = "UPDATE jobs SET cancel_requested = 1 "
                          "WHERE id = ?1 AND state = 'running'",
    [ST_CLAIM] = "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2, "
                 "attempts = attempts + 1, started = coalesce(started, max(?3, created)), "
                 "trials_done = 0 "
                 "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
                 "ORDER BY created, id LIMIT 1) RETURNING " DB_JOB_COLUMNS,
    [ST_PROGRESS] = "UPDATE jobs SET trials_done = ?3, lease_until = ?4 "
                    "WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 "
                    "AND lease_until >= ?5 RETURNING cancel_requested",
    [ST_FINISH] = "UPDATE jobs SET state = ?3, result = ?4, error_code = ?5, error_message = ?6, "
                  "finished = ?7, lease_owner = NULL, lease_until = NULL, "
                  "trials_done = CASE WHEN ?3 = 'completed' THEN trials ELSE trials_done END "
                  "WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_RELEASE] = "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, "
                   "attempts = max(attempts - 1, 0), trials_done = 0 "
                   "WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    [ST_REAP] = "UPDATE jobs SET "
                "state = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'queued' END, "
                "error_code = CASE WHEN attempts >= ?2 THEN 'lease_expired' END, "
                "error_message = CASE WHEN attempts >= ?2 THEN "
                "'the job''s worker stopped renewing its lease too many times' END, "
                "finished = CASE WHEN attempts >= ?2 THEN ?1 END, "
                "trials_done = CASE WHEN attempts >= ?2 THEN trials_done ELSE 0 END, "
                "lease_owner = NULL, lease_until = NULL "
                "WHERE id IN (SELECT id FROM jobs WHERE state = 'running' AND lease_until < ?1 "
                "ORDER BY lease_until LIMIT ?3) RETURNING id, state",
    [ST_EVENTS_JOB] = "SELECT " DB_EVENT_COLUMNS " FROM events e "
                      "WHERE e.job_id = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3",
    [ST_EVENTS_ALL] = "SELECT " DB_EVENT_COLUMNS " FROM events e "
                      "WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_SEQ_FLOOR] =
        "UPDATE meta SET value = max(value, coalesce((SELECT max(seq) FROM events), 0)) "
        "WHERE key = 'seq_floor'",
    [ST_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
                 "WHERE finished IS NOT NULL AND finished < ?1 ORDER BY finished LIMIT ?2)",
    [ST_STATS_STATES] = "SELECT state, n FROM job_counts",
    [ST_OLDEST_QUEUED] = "SELECT min(created) FROM jobs WHERE state = 'queued'",
    [ST_INTEGRITY] = "PRAGMA integrity_check(1)",
    [ST_FK_CHECK] = "PRAGMA foreign_key_check",
    [ST_COUNTS_CHECK] = "SELECT c.state || ' counted ' || c.n || ', found ' || (SELECT count(*)"
                        " FROM jobs j WHERE j.state = c.state) FROM job_counts c WHERE c.n <>"
                        " (SELECT count(*) FROM jobs j WHERE j.state = c.state) LIMIT 1",
    /* rsdb_backup: a read transaction held over every step pins one snapshot of the source. */
    [ST_BEGIN_READ] = "BEGIN DEFERRED",
    [ST_USER_VERSION] = "PRAGMA user_version",
    /* rsdb_backup, on the copy: one self-contained file (docs/internals.md, "Backup"). */
    [ST_JOURNAL_DELETE] = "PRAGMA journal_mode = DELETE",
};

const char *rsdb_strerror(rsdb_err err)
{
    switch (err) {
    case RSDB_OK:
        return "success";
    case RSDB_ENOMEM:
        return "out of memory";
    case RSDB_EINVAL:
        return "invalid argument";
    case RSDB_ENOTFOUND:
        return "no such job";
    case RSDB_EEMPTY:
        return "no queued job";
    case RSDB_ECONFLICT:
        return "the idempotency key was used with a different request";
    case RSDB_EQUEUEFULL:
        return "the job queue is full";
    case RSDB_ESTATE:
        return "the job's state does not allow this";
    case RSDB_ELEASE:
        return "the job's lease is held by another worker or has expired";
    case RSDB_EBUSY:
        return "the database stayed locked";
    case RSDB_EFULL:
        return "the disk or the database is full";
    case RSDB_EIO:
        return "a disk I/O error occurred";
    case RSDB_ECORRUPT:
        return "the database file is damaged or not a database";
    case RSDB_ENEWER:
        return "the database was created by a newer version of risksim";
    case RSDB_EOPEN:
        return "the database file cannot be opened or written (missing, read-only or not "
               "permitted)";
    case RSDB_ERANDOM:
        return "no random bytes are available for a job id";
    case RSDB_ESQL:
        return "a database error occurred";
    }
    return "unknown error";
}

void rsdb_options_default(rsdb_options *options)
{
    options->role = RSDB_ROLE_WORKER;
    options->busy_timeout_ms = 2000;
    options->max_retries = 5;
}

const char *rsdb_errmsg(const rsdb *db)
{
    return db == NULL ? "" : db->errmsg;
}

rsdb_err db_fail(rsdb *db, int rc, const char *what)
{
    const char *detail = db->conn != NULL ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc);
    snprintf(db->errmsg, sizeof(db->errmsg), "%s: %s", what, detail);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return RSDB_EBUSY;
    case SQLITE_FULL:
        return RSDB_EFULL;
    case SQLITE_IOERR:
        return RSDB_EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return RSDB_ECORRUPT;
    case SQLITE_NOMEM:
        return RSDB_ENOMEM;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
        return RSDB_EOPEN;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
        return RSDB_EINVAL;
    default:
        return RSDB_ESQL;
    }
}

sqlite3_stmt *db_stmt_get(rsdb *db, db_stmt id, rsdb_err *err)
{
    if (db->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(db->conn, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &db->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            db->stmts[id] = NULL;
            *err = db_fail(db, rc, "prepare");
            return NULL;
        }
    }
    return db->stmts[id];
}

void db_reset(sqlite3_stmt *stmt)
{
    if (stmt != NULL) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
}

int db_bind_text(sqlite3_stmt *stmt, int index, const char *text)
{
    if (text == NULL)
        return sqlite3_bind_null(stmt, index);
    return sqlite3_bind_text(stmt, index, text, -1, SQLITE_STATIC);
}

void db_backoff(rsdb *db, int attempt)
{
    /* 2, 4, 8, ... ms capped at 100 ms, plus a jitter from the clock so that processes that
     * collided do not retry in lockstep. */
    long ms = attempt >= 6 ? 100 : 2L << attempt;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long jitter_us = (now.tv_nsec / 1000) % (ms * 500 + 1);
    struct timespec pause = {0, (ms * 1000 + jitter_us) * 1000};
    while (pause.tv_nsec >= 1000000000L) {
        pause.tv_sec++;
        pause.tv_nsec -= 1000000000L;
    }
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
    }
    db->busy_retries++;
}

/* After a BUSY answer on attempt: backs off and returns 1 to try again, or, past the retry
 * bound, counts the give-up and returns 0. */
static int busy_again(rsdb *db, int attempt)
{
    if (attempt >= db->options.max_retries) {
        db->busy_failures++;
        return 0;
    }
    db_backoff(db, attempt);
    return 1;
}

rsdb_err db_exec_stmt(rsdb *db, db_stmt id, const char *what)
{
    rsdb_err err = RSDB_OK;
    sqlite3_stmt *stmt = db_stmt_get(db, id, &err);
    if (stmt == NULL)
        return err;
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        err = db_fail(db, rc, what);
    db_reset(stmt);
    return err;
}

rsdb_err db_write_tx(rsdb *db, db_tx_fn fn, void *ctx)
{
    rsdb_err err = RSDB_OK;
    for (int attempt = 0;; attempt++) {
        err = db_exec_stmt(db, ST_BEGIN, "begin");
        if (err == RSDB_OK) {
            err = fn(db, ctx);
            if (err == RSDB_OK)
                err = db_exec_stmt(db, ST_COMMIT, "commit");
            if (err != RSDB_OK && !sqlite3_get_autocommit(db->conn)) {
                /* Keep the first error's message: the rollback's would hide it. */
                char saved[sizeof(db->errmsg)];
                memcpy(saved, db->errmsg, sizeof(saved));
                (void)db_exec_stmt(db, ST_ROLLBACK, "rollback");
                memcpy(db->errmsg, saved, sizeof(saved));
            }
        }
        if (err != RSDB_EBUSY || !busy_again(db, attempt))
            return err;
    }
}

rsdb_err db_read_retry(rsdb *db, db_tx_fn fn, void *ctx)
{
    for (int attempt = 0;; attempt++) {
        rsdb_err err = fn(db, ctx);
        if (err != RSDB_EBUSY || !busy_again(db, attempt))
            return err;
    }
}

rsdb_err db_step_done(rsdb *db, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);
    rsdb_err err = rc == SQLITE_DONE ? RSDB_OK : db_fail(db, rc, what);
    db_reset(stmt);
    return err;
}

/* Runs a pragma or script that returns no rows we need. */
static rsdb_err db_exec(rsdb *db, const char *sql, const char *what)
{
    int rc = sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? RSDB_OK : db_fail(db, rc, what);
}

/* Reads a one-integer pragma. */
static rsdb_err db_pragma_int(rsdb *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->conn, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, sql);
    rc = sqlite3_step(stmt);
    rsdb_err err = RSDB_OK;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else
        err = db_fail(db, rc, sql);
    sqlite3_finalize(stmt);
    return err;
}

/* Switches the file to WAL (persistent; needs no transaction open). */
static rsdb_err db_set_wal(rsdb *db)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->conn, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, "journal_mode");
    rsdb_err err = RSDB_OK;
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        err = db_fail(db, rc, "journal_mode");
    } else {
        const char *mode = (const char *)sqlite3_column_text(stmt, 0);
        if (mode == NULL || strcmp(mode, "wal") != 0) {
            snprintf(db->errmsg, sizeof(db->errmsg), "journal_mode: WAL refused (mode is %s)",
                     mode == NULL ? "unknown" : mode);
            err = RSDB_EOPEN;
        }
    }
    sqlite3_finalize(stmt);
    return err;
}

/* The migration transaction body: reads user_version under the write lock, refuses a newer
 * schema, applies the missing scripts. */
static rsdb_err migrate_tx(rsdb *db, void *ctx)
{
    (void)ctx;
    int64_t version = 0;
    rsdb_err err = db_pragma_int(db, "PRAGMA user_version", &version);
    if (err != RSDB_OK)
        return err;
    if (version > RSDB_SCHEMA_VERSION || version < 0) {
        snprintf(db->errmsg, sizeof(db->errmsg),
                 "schema version %lld is newer than this program's %d; upgrade risksim",
                 (long long)version, RSDB_SCHEMA_VERSION);
        return RSDB_ENEWER;
    }
    for (int64_t v = version; v < RSDB_SCHEMA_VERSION; v++) {
        err = db_exec(db, migrations[v], "migration");
        if (err != RSDB_OK)
            return err;
    }
    return RSDB_OK;
}

rsdb_err rsdb_open(const char *path, const rsdb_options *options, rsdb **out, char *errbuf,
                   size_t errlen)
{
    rsdb_err err = RSDB_OK;
    rsdb *db = NULL;
    if (out != NULL)
        *out = NULL;
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (path == NULL || out == NULL) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "rsdb_open: path and out are required");
        return RSDB_EINVAL;
    }
    db = calloc(1, sizeof(*db));
    if (db == NULL) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "rsdb_open: out of memory");
        return RSDB_ENOMEM;
    }
    rsdb_options_default(&db->options);
    if (options != NULL) {
        db->options.role = options->role;
        if (options->busy_timeout_ms > 0)
            db->options.busy_timeout_ms = options->busy_timeout_ms;
        if (options->max_retries >= 0)
            db->options.max_retries = options->max_retries;
    }

    int rc = sqlite3_open_v2(
        path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = db_fail(db, rc, path);
        if (err == RSDB_ESQL)
            err = RSDB_EOPEN;
        goto out;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, db->options.busy_timeout_ms);

    /* Reading user_version first makes a file that is not a database fail here, and lets a
     * newer database be refused before anything (even journal_mode) is changed in it. */
    int64_t version = 0;
    err = db_pragma_int(db, "PRAGMA user_version", &version);
    if (err != RSDB_OK)
        goto out;
    if (version > RSDB_SCHEMA_VERSION) {
        snprintf(db->errmsg, sizeof(db->errmsg),
                 "schema version %lld is newer than this program's %d; upgrade risksim",
                 (long long)version, RSDB_SCHEMA_VERSION);
        err = RSDB_ENEWER;
        goto out;
    }
    err = db_set_wal(db);
    if (err != RSDB_OK)
        goto out;
    err = db_exec(db, "PRAGMA foreign_keys = ON", "foreign_keys");
    if (err != RSDB_OK)
        goto out;
    err = db_exec(db,
                  db->options.role == RSDB_ROLE_ACCEPT ? "PRAGMA synchronous = FULL"
                                                       : "PRAGMA synchronous = NORMAL",
                  "synchronous");
    if (err != RSDB_OK)
        goto out;
    /* Checkpoints are the maintenance thread's work (rsdb_checkpoint); SQLite's automatic
     * checkpoint, run by whichever writer commits past the threshold, only remains as a
     * backstop for a database nobody maintains. */
    err = db_exec(db, "PRAGMA wal_autocheckpoint = " DB_STR(RSDB_WAL_BACKSTOP_PAGES),
                  "wal_autocheckpoint");
    if (err != RSDB_OK)
        goto out;
    err = db_write_tx(db, migrate_tx, NULL);

out:
    if (err != RSDB_OK) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "%s", db->errmsg[0] ? db->errmsg : rsdb_strerror(err));
        rsdb_free(db);
        return err;
    }
    db->errmsg[0] = '\0';
    *out = db;
    return RSDB_OK;
}

void rsdb_free(rsdb *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(db->stmts[i]);
    sqlite3_close(db->conn);
    free(db);
}

static const char *const state_names[] = {"queued", "running", "completed", "failed", "cancelled"};

const char *rsdb_state_name(rsdb_state state)
{
    if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0]))
        return NULL;
    return state_names[state];
}

int db_state_parse(const char *name, rsdb_state *state)
{
    for (size_t i = 0; name != NULL && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *state = (rsdb_state)i;
            return 0;
        }
    }
    return -1;
}

int64_t db_wal_size(rsdb *db)
{
    const char *file = sqlite3_db_filename(db->conn, "main");
    if (file == NULL || file[0] == '\0')
        return 0;
    size_t len = strlen(file);
    char *wal = malloc(len + 5);
    if (wal == NULL)
        return 0;
    memcpy(wal, file, len);
    memcpy(wal + len, "-wal", 5);
    struct stat st;
    int64_t size = stat(wal, &st) == 0 ? (int64_t)st.st_size : 0;
    free(wal);
    return size;
}
