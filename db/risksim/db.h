/*
 * risksim db: the public interface of librisksim-db, the SQLite job store.
 *
 * Why this file exists: the FastCGI responder, its job workers, the WebSocket bridge and the CLI
 * share one SQLite database (WAL) holding the jobs and the event log that both transports of
 * docs/api.md section 4 serve. This header is the only way they touch it: every transaction, lease
 * rule and durability choice lives behind it (docs/internals.md describes them), and no other
 * component contains SQL. Functions return an rsdb_err; details of an SQLite failure are kept in
 * the connection (rsdb_errmsg) or written to a caller's buffer at open. Nothing here prints or
 * keeps global state. Times are milliseconds since the Unix epoch passed in by the caller, so
 * that tests control the clock.
 *
 * A connection (rsdb) may be used by one thread at a time; open one per thread.
 */
#ifndef RISKSIM_DB_H
#define RISKSIM_DB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes of every db function. */
typedef enum rsdb_err {
    RSDB_OK = 0,
    RSDB_ENOMEM,     /* an allocation failed; nothing was leaked */
    RSDB_EINVAL,     /* a caller bug: NULL argument, bad id, event data that is not JSON */
    RSDB_ENOTFOUND,  /* no job with that id */
    RSDB_EEMPTY,     /* claim: no queued job */
    RSDB_ECONFLICT,  /* the idempotency key is in use with another body (HTTP 409) */
    RSDB_EQUEUEFULL, /* queue_size jobs are already queued (HTTP 503) */
    RSDB_ESTATE,     /* the job's state forbids the transition; nothing was changed */
    RSDB_ELEASE,     /* the caller does not hold the job's lease (other owner or expired) */
    RSDB_EBUSY,      /* the database stayed locked through every retry */
    RSDB_EFULL,      /* the disk (or the database size limit) is full */
    RSDB_EIO,        /* an I/O error in SQLite or the operating system */
    RSDB_ECORRUPT,   /* the file is not a database or is damaged */
    RSDB_ENEWER,     /* the database was made by a newer risksim (schema version too high) */
    RSDB_EOPEN,      /* the file cannot be opened or created (path, permissions, read-only) */
    RSDB_ERANDOM,    /* no random bytes could be read for a job id */
    RSDB_ESQL        /* any other SQLite failure (see rsdb_errmsg) */
} rsdb_err;

/* Returns a static, human-readable English description of err (never NULL). */
const char *rsdb_strerror(rsdb_err err);

/* The schema version this library creates and migrates to (PRAGMA user_version). */
#define RSDB_SCHEMA_VERSION 3

/* A job id: 26 characters of Crockford base32 (128 random bits) plus the terminating NUL. */
#define RSDB_ID_LEN 26
#define RSDB_ID_SIZE (RSDB_ID_LEN + 1)

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

/* What a connection is for; it decides PRAGMA synchronous (docs/internals.md, "Durability"). */
typedef enum rsdb_role {
    RSDB_ROLE_ACCEPT = 0, /* accepts jobs (request threads): synchronous=FULL, a 202 survives
                             power loss */
    RSDB_ROLE_WORKER,     /* job workers and maintenance: synchronous=NORMAL */
    RSDB_ROLE_READER      /* the bridge and readers: synchronous=NORMAL */
} rsdb_role;

typedef struct rsdb_options {
    rsdb_role role;
    int busy_timeout_ms; /* SQLite's own wait for a lock; <= 0 means 2000 */
    int max_retries;     /* retries of a whole transaction still BUSY after that; < 0 means 5 */
} rsdb_options;

/* Fills *options with the defaults (role RSDB_ROLE_WORKER, 2000 ms, 5 retries). */
void rsdb_options_default(rsdb_options *options);

typedef struct rsdb rsdb;

/* Opens (creating if missing) the database at path, switches it to WAL, sets busy_timeout,
 * foreign_keys=ON and the role's synchronous, and applies the missing schema migrations in one
 * BEGIN IMMEDIATE transaction. options may be NULL for the defaults. On success stores a new
 * connection in *out (free with rsdb_free) and returns RSDB_OK. On failure *out is NULL, a
 * message is written to errbuf (errlen bytes, may be 0) and the error is returned: RSDB_ENEWER
 * for a database whose user_version is above RSDB_SCHEMA_VERSION (it is left untouched),
 * RSDB_EOPEN, RSDB_ECORRUPT, RSDB_EIO, RSDB_EFULL, RSDB_EBUSY, RSDB_ENOMEM or RSDB_ESQL. */
rsdb_err rsdb_open(const char *path, const rsdb_options *options, rsdb **out, char *errbuf,
                   size_t errlen);

/* Finalizes the cached statements and closes the connection. rsdb_free(NULL) does nothing. */
void rsdb_free(rsdb *db);

/* The detail of the last SQLite failure on this connection ("" when there was none). The string
 * belongs to the connection and is overwritten by the next failure. */
const char *rsdb_errmsg(const rsdb *db);

/* ---------------------------------------------------------------------------------------------
 * Jobs
 * ------------------------------------------------------------------------------------------- */

typedef enum rsdb_state {
    RSDB_QUEUED = 0,
    RSDB_RUNNING,
    RSDB_COMPLETED,
    RSDB_FAILED,
    RSDB_CANCELLED
} rsdb_state;

/* "queued", "running", ... as stored and as docs/api.md names them; NULL for an unknown value. */
const char *rsdb_state_name(rsdb_state state);

/* A job as read from the database. Strings are owned by the job and may be NULL when unset. */
typedef struct rsdb_job {
    char id[RSDB_ID_SIZE];
    rsdb_state state;
    char *request;       /* the request JSON (NULL in list results) */
    char *result;        /* the result JSON once completed (NULL in list results) */
    char *error_code;    /* set when failed */
    char *error_message; /* set when failed */
    char *lease_owner;   /* set while running */
    char *idempotency_key;
    uint64_t trials;
    uint64_t trials_done;
    uint32_t attempts; /* claims so far (a release gives one back) */
    int cancel_requested;
    int64_t lease_until_ms; /* 0 when not running */
    int64_t created_ms;
    int64_t started_ms;  /* 0 until first claimed (or the creation time of a sync job) */
    int64_t finished_ms; /* 0 until finished */
} rsdb_job;

/* Frees a job returned by this library. rsdb_job_free(NULL) does nothing. */
void rsdb_job_free(rsdb_job *job);

/* What a new job is made of. */
typedef struct rsdb_job_spec {
    const char *request;         /* the request JSON text (required) */
    uint64_t trials;             /* the request's trials */
    const char *idempotency_key; /* NULL when the client sent none */
    const char *body_hash;       /* a digest of the body; required with idempotency_key */
} rsdb_job_spec;

/* Creates a queued job in one BEGIN IMMEDIATE transaction and appends its first `status` event.
 * With spec->idempotency_key set and a stored job having that key: the same body_hash returns
 * that job's id in id_out with *existing = 1 (nothing is written); another body_hash returns
 * RSDB_ECONFLICT. Otherwise, when queue_size > 0 and that many jobs are queued, returns
 * RSDB_EQUEUEFULL. On success writes the new id to id_out, *existing = 0 (existing may be
 * NULL) and returns RSDB_OK. */
rsdb_err rsdb_job_enqueue(rsdb *db, const rsdb_job_spec *spec, uint32_t queue_size, int64_t now_ms,
                          char id_out[RSDB_ID_SIZE], int *existing);

/* Stores a job that has already run synchronously: state completed with its result, and
 * appends its `status` and `complete` events in the same transaction. The result is stored
 * once, in the job's row: the `complete` event's data reads as {"result": result} (see
 * rsdb_event). The idempotency rule is that of rsdb_job_enqueue; there is no queue check.
 * Returns RSDB_OK, RSDB_ECONFLICT, RSDB_EINVAL (result not JSON) or a database error. */
rsdb_err rsdb_job_store_completed(rsdb *db, const rsdb_job_spec *spec, const char *result,
                                  int64_t now_ms, char id_out[RSDB_ID_SIZE], int *existing);

/* One job to create in a batch: a queued job (result NULL, queue_size as in rsdb_job_enqueue)
 * or a job that already ran (result set, as in rsdb_job_store_completed).
 * The answers (id, existing, err) are written back into the item. */
typedef struct rsdb_create {
    rsdb_job_spec spec;
    uint32_t queue_size; /* queued jobs only; 0 means no limit */
    const char *result;  /* NULL: create a queued job */
    int64_t now_ms;
    const char *preset_id; /* NULL: draw a new id; else the id (from rsdb_job_id_new) to give
                              the new job, e.g. one already written into its result */
    char id[RSDB_ID_SIZE]; /* out: the new (or, when existing, the earlier) job's id */
    int existing;          /* out: 1 when the idempotency key named an earlier job */
    rsdb_err err;          /* out: this item's answer */
} rsdb_create;

/* Largest number of items one batch or one group commit takes. */
#define RSDB_BATCH_MAX 256

/* Creates n (at most RSDB_BATCH_MAX) jobs in one BEGIN IMMEDIATE transaction, so that one
 * commit (one fsync on an RSDB_ROLE_ACCEPT connection) makes all of them durable. Each item is
 * applied in its own savepoint, in order, with exactly the rules of rsdb_job_enqueue /
 * rsdb_job_store_completed, and gets its own answer in item->err: a refused item (RSDB_EINVAL,
 * RSDB_ECONFLICT, RSDB_EQUEUEFULL) changes nothing and does not affect the others; a later item
 * sees the earlier ones (a repeated idempotency key answers existing = 1, queued jobs count
 * towards queue_size). Returns RSDB_OK when the transaction committed (each item then holds its
 * own answer), or the database error that stopped it, in which case nothing was written and
 * every item's err is that error. */
rsdb_err rsdb_job_create_batch(rsdb *db, rsdb_create *items, size_t n);

/* Group commit: many threads creating jobs share one RSDB_ROLE_ACCEPT connection, and whatever
 * they submit while a commit is under way goes into the next transaction together, so that
 * acceptance is not limited to one fsync per job. The first waiting thread runs the batch for
 * the others (no extra thread); a caller returns only once its own job is committed (or
 * refused). */
typedef struct rsdb_committer rsdb_committer;

/* Opens the committer's own connection (role forced to RSDB_ROLE_ACCEPT; options may be NULL)
 * at path. Errors as rsdb_open. */
rsdb_err rsdb_committer_open(const char *path, const rsdb_options *options, rsdb_committer **out,
                             char *errbuf, size_t errlen);

/* Closes the connection. No thread may be inside rsdb_committer_create then. NULL is fine. */
void rsdb_committer_free(rsdb_committer *committer);

/* Creates one job (item as for rsdb_job_create_batch) through the group commit; safe to call
 * from any number of threads at once. Returns item->err, with item->id and item->existing
 * set as rsdb_job_enqueue / rsdb_job_store_completed would. */
rsdb_err rsdb_committer_create(rsdb_committer *committer, rsdb_create *item);

/* Figures of a committer: transactions committed and jobs created or answered through them
 * (their ratio is the mean batch size). */
typedef struct rsdb_committer_stats {
    uint64_t commits;
    uint64_t items;
    uint64_t busy_retries; /* of its connection, as in rsdb_stats */
} rsdb_committer_stats;

/* Fills *out (thread-safe). */
void rsdb_committer_stats_get(rsdb_committer *committer, rsdb_committer_stats *out);

/* Writes a new random job id (128 bits from the kernel, 26 characters) and its NUL to id.
 * Returns RSDB_OK or RSDB_ERANDOM. For a caller that must know a job's id before creating it
 * (rsdb_create.preset_id). */
rsdb_err rsdb_job_id_new(char id[RSDB_ID_SIZE]);

/* Returns 1 when id has the form of a job id (26 characters of the id alphabet), else 0. */
int rsdb_job_id_valid(const char *id);

/* Reads one job with its request and result. Returns RSDB_OK with a new job in *out (free
 * with rsdb_job_free), RSDB_ENOTFOUND or a database error. */
rsdb_err rsdb_job_get(rsdb *db, const char *id, rsdb_job **out);

/* A page of jobs. */
typedef struct rsdb_job_list {
    rsdb_job *items; /* count jobs, newest first; request and result are NULL */
    size_t count;
} rsdb_job_list;

/* Frees the items of a list and zeroes it. rsdb_job_list_clear(NULL) does nothing. */
void rsdb_job_list_clear(rsdb_job_list *list);

/* Largest page rsdb_job_list_page returns. */
#define RSDB_LIST_MAX 1000

/* Lists jobs newest first (by created time, then id), only those in state when state_filter is
 * non-NULL, and only those strictly before the key (before_created_ms, before_id) when
 * before_id is non-NULL (keyset pagination: pass the last job of the previous page). limit is
 * capped at RSDB_LIST_MAX. Fills *out (clear it with rsdb_job_list_clear) and returns RSDB_OK,
 * or an error with *out empty. */
rsdb_err rsdb_job_list_page(rsdb *db, const rsdb_state *state_filter, int64_t before_created_ms,
                            const char *before_id, size_t limit, rsdb_job_list *out);

/* Cancels a job. A queued job becomes cancelled at once with a `cancelled` event; a running
 * job gets cancel_requested set (its worker sees it at its next progress write); a finished job
 * is left unchanged. *state_out (may be NULL) receives the state after the call: cancelled,
 * running or the finished state. Repeating the call is harmless. Returns RSDB_OK, RSDB_ENOTFOUND
 * or a database error. */
rsdb_err rsdb_job_cancel(rsdb *db, const char *id, int64_t now_ms, rsdb_state *state_out);

/* ---------------------------------------------------------------------------------------------
 * Worker protocol (leases). owner names the worker (e.g. "host:pid:thread"), at most 200 bytes.
 * Each call is one BEGIN IMMEDIATE transaction: the state change and its event commit together
 * or not at all. A refused call (RSDB_ESTATE, RSDB_ELEASE) changes nothing.
 * ------------------------------------------------------------------------------------------- */

/* Claims the oldest queued job: running, owned by owner, leased until now_ms + lease_ms,
 * attempts + 1, started (on its first claim) at now_ms but never before its creation (now_ms
 * is read before the write lock is taken, and a job may be committed in between), and appends
 * a `status` event. Returns RSDB_OK with the job (with its request)
 * in *out, RSDB_EEMPTY when nothing is queued, or a database error. */
rsdb_err rsdb_job_claim(rsdb *db, const char *owner, int64_t lease_ms, int64_t now_ms,
                        rsdb_job **out);

/* Records progress: sets trials_done, renews the lease to now_ms + lease_ms and appends a
 * `progress` event with data (JSON text). Only the owner of an unexpired lease may do it:
 * RSDB_ENOTFOUND, RSDB_ESTATE (not running) or RSDB_ELEASE (other owner, or lease_until <
 * now_ms) otherwise. *cancel_requested (may be NULL) tells whether a cancel was asked for. */
rsdb_err rsdb_job_progress(rsdb *db, const char *id, const char *owner, uint64_t trials_done,
                           int64_t lease_ms, const char *data, int64_t now_ms,
                           int *cancel_requested);

/* Ends a running job owned by owner as completed, storing result and appending a `complete`
 * event (whose data reads as {"result": result}: the result is stored once). The owner may finish
 * even after its lease ran out as long as nobody reaped or reclaimed the job (the work is
 * deterministic and still its own). Returns RSDB_OK, RSDB_ENOTFOUND, RSDB_ESTATE, RSDB_ELEASE,
 * RSDB_EINVAL or a database error. */
rsdb_err rsdb_job_complete(rsdb *db, const char *id, const char *owner, const char *result,
                           int64_t now_ms);

/* Ends a running job owned by owner as failed with error_code and error_message, appending an
 * `error` event with data. Errors as rsdb_job_complete. */
rsdb_err rsdb_job_fail(rsdb *db, const char *id, const char *owner, const char *error_code,
                       const char *error_message, const char *data, int64_t now_ms);

/* Ends a running job owned by owner as cancelled (the worker stopped after a requested cancel),
 * appending a `cancelled` event. Errors as rsdb_job_complete. */
rsdb_err rsdb_job_cancelled(rsdb *db, const char *id, const char *owner, int64_t now_ms);

/* Hands a running job owned by owner back to the queue (graceful shutdown): queued, no owner,
 * attempts - 1 (the attempt did not fail), trials_done 0, and a `status` event. Errors as
 * rsdb_job_complete. */
rsdb_err rsdb_job_release(rsdb *db, const char *id, const char *owner, int64_t now_ms);

/* Largest number of jobs one rsdb_reap call handles. */
#define RSDB_REAP_BATCH 256

/* Re-queues running jobs whose lease ended before now_ms (appending a `status` event), or fails
 * them (error_code "lease_expired", appending the terminal `error` event
 * {"error":{"code":"lease_expired","message":…}}) once their attempts reached max_attempts; at
 * most RSDB_REAP_BATCH jobs per call. *requeued and *failed (may be NULL) receive the
 * counts. Returns RSDB_OK or a database error. */
rsdb_err rsdb_reap(rsdb *db, int64_t now_ms, uint32_t max_attempts, size_t *requeued,
                   size_t *failed);

/* ---------------------------------------------------------------------------------------------
 * Events. data is the JSON object of the type-specific fields of docs/api.md section 4 (the
 * transports add seq, jobId and ts from the columns). Reads are single statements, reset at
 * once: no read transaction is ever left open between calls.
 * ------------------------------------------------------------------------------------------- */

typedef struct rsdb_event {
    int64_t seq; /* strictly increasing over the whole database */
    char job_id[RSDB_ID_SIZE];
    char type[16]; /* "status", "progress", "complete", "error", "cancelled" */
    char *data;    /* owned by the list */
    int64_t ts_ms;
} rsdb_event;

typedef struct rsdb_event_list {
    rsdb_event *items; /* in seq order */
    size_t count;
} rsdb_event_list;

/* Frees the items of a list and zeroes it. rsdb_event_list_clear(NULL) does nothing. */
void rsdb_event_list_clear(rsdb_event_list *list);

/* Largest number of events one read returns. */
#define RSDB_EVENTS_MAX 10000

/* Reads the events of job_id with seq > after_seq, oldest first, at most limit (capped at
 * RSDB_EVENTS_MAX). Fills *out and returns RSDB_OK (an unknown job simply has no events) or an
 * error with *out empty. */
rsdb_err rsdb_events_job(rsdb *db, const char *job_id, int64_t after_seq, size_t limit,
                         rsdb_event_list *out);

/* Reads the events of every job with seq > after_seq, in seq order, at most limit (capped at
 * RSDB_EVENTS_MAX): the bridge's one poll query. Errors as rsdb_events_job. */
rsdb_err rsdb_events_all(rsdb *db, int64_t after_seq, size_t limit, rsdb_event_list *out);

/* Writes ev as the JSON object both transports send (docs/api.md section 4): {"seq":…,
 * "jobId":"…","type":"…", the fields of its data…, "ts":"2026-11-22T04:35:45.123Z"} into a new
 * NUL-terminated string in *out (free with free) of *len bytes (len may be NULL). ev->data must
 * be a JSON object, as every stored event's is. Returns RSDB_OK, RSDB_EINVAL (data not an
 * object) or RSDB_ENOMEM. */
rsdb_err rsdb_event_json(const rsdb_event *ev, char **out, size_t *len);

/* Stores PRAGMA data_version in *out: it changes when another connection has committed a
 * change to the file since this connection's last read of it, and not otherwise (writes of
 * this same connection do not change it). Cheap enough to call every few milliseconds. */
rsdb_err rsdb_data_version(rsdb *db, int64_t *out);

/* ---------------------------------------------------------------------------------------------
 * Maintenance and metrics
 * ------------------------------------------------------------------------------------------- */

/* Deletes finished jobs (their events go with them by cascade) whose finished time is before
 * now_ms - retention_ms, batch jobs per transaction (batch 0 means 500) until none is left.
 * *deleted (may be NULL) receives the number of jobs deleted. */
rsdb_err rsdb_prune(rsdb *db, int64_t now_ms, int64_t retention_ms, size_t batch, size_t *deleted);

/* SQLite's automatic checkpoint runs only past this many WAL pages (64 MiB of 4 KiB pages): a
 * backstop for a database that no maintenance thread checkpoints. Writers leave the regular
 * checkpoints to rsdb_checkpoint, so that no request or progress write pays for one. */
#define RSDB_WAL_BACKSTOP_PAGES 16384

/* Checkpoints the WAL: a PASSIVE checkpoint (copies what it can without waiting, so that the
 * next writer can start the WAL over from its beginning) while the WAL file is at most
 * threshold_bytes, and wal_checkpoint(TRUNCATE) (waits up to busy_timeout for readers and
 * writers, then empties the file) once it is larger. Meant to be called every second or so by
 * one maintenance thread. Stores the WAL size before and after (bytes; may be NULL) and whether
 * the checkpoint copied every frame (and, for TRUNCATE, emptied the file) in *done (may be NULL;
 * 0 also when readers kept it from finishing, which is not an error). */
rsdb_err rsdb_checkpoint(rsdb *db, int64_t threshold_bytes, int64_t *wal_before, int64_t *wal_after,
                         int *done);

/* Figures for /metrics. */
typedef struct rsdb_stats {
    uint64_t jobs[5];         /* by rsdb_state */
    uint64_t queue_depth;     /* = jobs[RSDB_QUEUED] */
    int64_t oldest_queued_ms; /* age of the oldest queued job at now_ms; 0 when none */
    int64_t wal_bytes;        /* size of the WAL file (0 when absent) */
    uint64_t busy_retries;    /* transactions retried after SQLITE_BUSY/LOCKED, this conn */
    uint64_t busy_failures;   /* calls that gave up with RSDB_EBUSY, this connection */
} rsdb_stats;

/* Fills *out. Returns RSDB_OK or a database error. */
rsdb_err rsdb_stats_get(rsdb *db, int64_t now_ms, rsdb_stats *out);

/* Verifies the whole database file (SQLite's integrity check, then the foreign key check, then
 * the per-state job counts of schema 3 against the jobs). Returns RSDB_OK when all pass,
 * RSDB_ECORRUPT with the first problem written to report (report_len bytes, may be NULL) when one
 * does not, or another error when the check could not run. Reads the whole file: meant for `risksim
 * db check`, not for a request path. */
rsdb_err rsdb_check(rsdb *db, char *report, size_t report_len);

/* Copies the database of db into a new file at dest_path with SQLite's online backup API: a
 * consistent snapshot (the moment the call started its read transaction; jobs committed later by
 * other connections are not in it) taken while other connections and processes keep reading and
 * writing (WAL writers are never blocked; checkpoints cannot pass the snapshot until the call
 * returns). dest_path must not exist, nor its -journal, -wal or -shm: the file is created with
 * O_EXCL (mode 0640 less the umask), never overwritten. The copy is made one self-contained file
 * (journal_mode=DELETE; rsdb_open switches it back to WAL when it is opened to be used) and is
 * verified with rsdb_check before the call returns. On failure nothing is left at dest_path (when
 * the call created it), a message is written to errbuf (errlen bytes, may be 0) and the error is
 * returned: RSDB_EINVAL (NULL or empty argument), RSDB_EOPEN (dest_path exists, or its directory
 * is missing or not writable), RSDB_EFULL, RSDB_EIO, RSDB_EBUSY (a database stayed locked through
 * every retry), RSDB_ECORRUPT (the source, or the copy failing its check), RSDB_ENOMEM or
 * RSDB_ESQL. Reads the whole file twice: meant for `risksim db backup`, not for a request path. */
rsdb_err rsdb_backup(rsdb *db, const char *dest_path, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
