/*
 * Tests of librisksim-db through its public header, on real database files in a fresh
 * temporary directory per test.
 *
 * Why this file exists: every later promise of risksim (no job lost, no event missed, a result
 * after a crash) rests on the job store's transitions being atomic and its refusals being
 * exact. These tests walk every operation and state transition, the forbidden ones included,
 * and check that a refused call changes nothing. Time is passed in, so they are deterministic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "risksim/db.h"
#include "tmpdir.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    rsdb *db;
} fixture;

static const char *const REQUEST = "{\"trials\":1000,\"seed\":1}";

static void path_in(const fixture *fx, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", fx->dir, name);
}

static rsdb *open_role(const fixture *fx, rsdb_role role)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = role;
    opt.busy_timeout_ms = 10000;
    rsdb *db = NULL;
    char err[256];
    rsdb_err rc = rsdb_open(fx->path, &opt, &db, err, sizeof(err));
    if (rc != RSDB_OK)
        fail_msg("rsdb_open: %s: %s", rsdb_strerror(rc), err);
    return db;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/rsdb-test-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    path_in(fx, "jobs.db", fx->path, sizeof(fx->path));
    fx->db = open_role(fx, RSDB_ROLE_ACCEPT);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rsdb_free(fx->db);
    const char *names[] = {"jobs.db", "jobs.db-wal", "jobs.db-shm", "garbage.db"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[160];
        path_in(fx, names[i], p, sizeof(p));
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Enqueues a job with no key and no queue limit; returns its id in id. */
static void enqueue(rsdb *db, int64_t now, char id[RSDB_ID_SIZE])
{
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    assert_int_equal(rsdb_job_enqueue(db, &spec, 0, now, id, NULL), RSDB_OK);
}

static rsdb_job *get(rsdb *db, const char *id)
{
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_get(db, id, &job), RSDB_OK);
    assert_non_null(job);
    return job;
}

static rsdb_state state_of(rsdb *db, const char *id)
{
    rsdb_job *job = get(db, id);
    rsdb_state s = job->state;
    rsdb_job_free(job);
    return s;
}

static void sql_exec(const fixture *fx, const char *sql)
{
    sqlite3 *conn = NULL;
    assert_int_equal(sqlite3_open_v2(fx->path, &conn, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(conn, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(conn);
}

/* ------------------------------------------------------------------------------------------ */

static void test_strerror(void **state)
{
    (void)state;
    for (int e = RSDB_OK; e <= RSDB_ESQL; e++) {
        assert_non_null(rsdb_strerror((rsdb_err)e));
        assert_string_not_equal(rsdb_strerror((rsdb_err)e), "unknown error");
    }
    assert_string_equal(rsdb_strerror((rsdb_err)999), "unknown error");
    assert_string_equal(rsdb_state_name(RSDB_CANCELLED), "cancelled");
    assert_null(rsdb_state_name((rsdb_state)9));
    rsdb_free(NULL);
    rsdb_job_free(NULL);
    rsdb_job_list_clear(NULL);
    rsdb_event_list_clear(NULL);
    assert_string_equal(rsdb_errmsg(NULL), "");
}

static void test_open_creates_schema(void **state)
{
    fixture *fx = *state;
    assert_int_equal(db_sql_int(fx->path, "PRAGMA user_version"), RSDB_SCHEMA_VERSION);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                          "('jobs', 'events', 'jobs_queued', 'events_job', "
                                          "'jobs_finished', 'jobs_idempotency')"),
                     6);
    assert_int_equal(db_sql_int(fx->path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"),
                     1);
    /* Reopening an up-to-date database is fine and changes nothing. */
    rsdb *again = open_role(fx, RSDB_ROLE_READER);
    rsdb_free(again);
    assert_int_equal(db_sql_int(fx->path, "PRAGMA user_version"), RSDB_SCHEMA_VERSION);
}

static void test_open_refuses_newer_schema(void **state)
{
    fixture *fx = *state;
    rsdb_free(fx->db);
    fx->db = NULL;
    sql_exec(fx, "PRAGMA user_version = 99");
    rsdb *db = (rsdb *)1;
    char err[256];
    assert_int_equal(rsdb_open(fx->path, NULL, &db, err, sizeof(err)), RSDB_ENEWER);
    assert_null(db);
    assert_non_null(strstr(err, "99"));
    assert_int_equal(db_sql_int(fx->path, "PRAGMA user_version"), 99);
}

/* Reads a whole text file into a new NUL-terminated buffer (fails the test when it cannot). */
static char *slurp(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", file);
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (cap - len < 4096) {
            cap = cap * 2 + 4096;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* A database written by schema version 1 (tests/data/jobs-schema-v1.sql: jobs in every state, an
 * idempotency key, a running job with its lease, and the newest events already pruned, so that
 * its AUTOINCREMENT high-water mark, 19, is above its largest stored seq, 17) is migrated at
 * open: nothing is lost, seq carries on above 19, and the running job can still finish. */
static void test_migrate_from_v1(void **state)
{
    fixture *fx = *state;
    char old[160];
    path_in(fx, "v1.db", old, sizeof(old));
    char *script = slurp(RISKSIM_TESTDATA "/jobs-schema-v1.sql");
    sqlite3 *conn = NULL;
    assert_int_equal(sqlite3_open(old, &conn), SQLITE_OK);
    assert_int_equal(sqlite3_exec(conn, script, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(conn);
    free(script);
    assert_int_equal(db_sql_int(old, "PRAGMA user_version"), 1);

    rsdb_options opt;
    rsdb_options_default(&opt);
    rsdb *db = NULL;
    char err[256];
    assert_int_equal(rsdb_open(old, &opt, &db, err, sizeof(err)), RSDB_OK);
    assert_int_equal(db_sql_int(old, "PRAGMA user_version"), RSDB_SCHEMA_VERSION);
    assert_int_equal(rsdb_check(db, err, sizeof(err)), RSDB_OK);
    assert_int_equal(db_sql_int(old, "SELECT count(*) FROM jobs"), 8);
    assert_int_equal(db_sql_int(old, "SELECT count(*) FROM events"), 17);
    assert_int_equal(db_sql_int(old, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name IN ('jobs_leases', 'events_v2')"),
                     0);
    rsdb_stats stats;
    assert_int_equal(rsdb_stats_get(db, 1767225700000, &stats), RSDB_OK);
    assert_int_equal(stats.jobs[RSDB_QUEUED], 3);
    assert_int_equal(stats.jobs[RSDB_RUNNING], 1);
    assert_int_equal(stats.jobs[RSDB_COMPLETED], 2);
    assert_int_equal(stats.jobs[RSDB_FAILED], 1);
    assert_int_equal(stats.jobs[RSDB_CANCELLED], 1);

    /* The idempotency key still answers with its job. */
    rsdb_job_spec spec = {REQUEST, 1000, "key-1", "hash-1"};
    char id[RSDB_ID_SIZE];
    int existing = 0;
    assert_int_equal(rsdb_job_enqueue(db, &spec, 0, 1767225700000, id, &existing), RSDB_OK);
    assert_int_equal(existing, 1);
    assert_string_equal(id, "2FT758ZERF1SE0HBP5BF2VJQXM");

    /* The running job's worker carries on; its next event is numbered above the old
     * high-water mark, never 18 or 19 again. */
    const char *running = "21VKA2K6SKP2DME9YBTT53JP40";
    assert_int_equal(
        rsdb_job_progress(db, running, "w2", 600, 30000, "{\"progress\":0.6}", 1767225620000, NULL),
        RSDB_OK);
    assert_int_equal(rsdb_job_complete(db, running, "w2", "{\"ok\":true}", 1767225621000), RSDB_OK);
    rsdb_event_list events = {0};
    assert_int_equal(rsdb_events_all(db, 17, 10, &events), RSDB_OK);
    assert_int_equal(events.count, 2);
    assert_int_equal(events.items[0].seq, 20);
    assert_string_equal(events.items[0].type, "progress");
    assert_int_equal(events.items[1].seq, 21);
    assert_string_equal(events.items[1].type, "complete");
    rsdb_event_list_clear(&events);
    /* The counts made by the migration to schema 3 follow the change. */
    assert_int_equal(rsdb_stats_get(db, 1767225700000, &stats), RSDB_OK);
    assert_int_equal(stats.jobs[RSDB_RUNNING], 0);
    assert_int_equal(stats.jobs[RSDB_COMPLETED], 3);
    assert_int_equal(rsdb_check(db, err, sizeof(err)), RSDB_OK);
    rsdb_free(db);
}

/* Pruning the newest events never lets their seq be handed out again: a reader's cursor
 * ("after seq") must stay valid across any prune. */
static void test_seq_never_reused_after_prune(void **state)
{
    fixture *fx = *state;
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{\"ok\":1}", 1000, id, NULL),
                     RSDB_OK);
    int64_t newest = db_sql_int(fx->path, "SELECT max(seq) FROM events");
    assert_true(newest >= 2);
    size_t deleted = 0;
    assert_int_equal(rsdb_prune(fx->db, 5000, 1000, 0, &deleted), RSDB_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), 0);
    char next[RSDB_ID_SIZE];
    enqueue(fx->db, 6000, next);
    rsdb_event_list events = {0};
    assert_int_equal(rsdb_events_all(fx->db, 0, 10, &events), RSDB_OK);
    assert_int_equal(events.count, 1);
    assert_int_equal(events.items[0].seq, newest + 1);
    rsdb_event_list_clear(&events);
}

/* The transport form of an event: transport fields, the data's members spliced in, ts. */
static void test_event_json(void **state)
{
    (void)state;
    rsdb_event ev = {.seq = 42, .job_id = "0123456789ABCDEFGHJKMNPQRS", .type = "progress"};
    ev.ts_ms = 1767225600123;
    char data[] = " {\"progress\":0.5,\"phase\":\"sampling\"} ";
    ev.data = data;
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(rsdb_event_json(&ev, &json, &len), RSDB_OK);
    assert_string_equal(json, "{\"seq\":42,\"jobId\":\"0123456789ABCDEFGHJKMNPQRS\","
                              "\"type\":\"progress\",\"progress\":0.5,\"phase\":\"sampling\","
                              "\"ts\":\"2026-01-01T00:00:00.123Z\"}");
    assert_int_equal(len, strlen(json));
    free(json);
    char empty[] = "{ }";
    ev.data = empty;
    snprintf(ev.type, sizeof(ev.type), "cancelled");
    assert_int_equal(rsdb_event_json(&ev, &json, NULL), RSDB_OK);
    assert_string_equal(json, "{\"seq\":42,\"jobId\":\"0123456789ABCDEFGHJKMNPQRS\","
                              "\"type\":\"cancelled\",\"ts\":\"2026-01-01T00:00:00.123Z\"}");
    free(json);
    char array[] = "[1]";
    ev.data = array;
    assert_int_equal(rsdb_event_json(&ev, &json, NULL), RSDB_EINVAL);
    assert_null(json);
    assert_int_equal(rsdb_event_json(NULL, &json, NULL), RSDB_EINVAL);
}

/* A caller may fix the id first (to write it into a result) and create the job under it. */
static void test_preset_id(void **state)
{
    fixture *fx = *state;
    char id[RSDB_ID_SIZE];
    assert_int_equal(rsdb_job_id_new(id), RSDB_OK);
    assert_true(rsdb_job_id_valid(id));
    assert_false(rsdb_job_id_valid("0123456789abcdefghjkmnpqrs"));
    assert_false(rsdb_job_id_valid(NULL));
    rsdb_create item = {.spec = {REQUEST, 1000, NULL, NULL}, .now_ms = 5, .preset_id = id};
    assert_int_equal(rsdb_job_create_batch(fx->db, &item, 1), RSDB_OK);
    assert_int_equal(item.err, RSDB_OK);
    assert_string_equal(item.id, id);
    rsdb_job *job = get(fx->db, id);
    rsdb_job_free(job);
    /* The same id again is refused (primary key), nothing else is written. */
    rsdb_create again = item;
    assert_int_equal(rsdb_job_create_batch(fx->db, &again, 1), RSDB_OK);
    assert_int_equal(again.err, RSDB_EINVAL);
    rsdb_create bad = {.spec = {REQUEST, 1000, NULL, NULL}, .preset_id = "nope"};
    assert_int_equal(rsdb_job_create_batch(fx->db, &bad, 1), RSDB_OK);
    assert_int_equal(bad.err, RSDB_EINVAL);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 1);
}

static void test_open_errors(void **state)
{
    fixture *fx = *state;
    char garbage[160];
    path_in(fx, "garbage.db", garbage, sizeof(garbage));
    FILE *f = fopen(garbage, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not an sqlite database file at all. ", f);
    fclose(f);
    rsdb *db = NULL;
    char err[256];
    assert_int_equal(rsdb_open(garbage, NULL, &db, err, sizeof(err)), RSDB_ECORRUPT);
    assert_null(db);
    assert_true(err[0] != '\0');
    assert_int_equal(rsdb_open("/nonexistent-dir/x/jobs.db", NULL, &db, err, sizeof(err)),
                     RSDB_EOPEN);
    assert_int_equal(rsdb_open(NULL, NULL, &db, err, sizeof(err)), RSDB_EINVAL);
}

static void test_enqueue_and_get(void **state)
{
    fixture *fx = *state;
    char id[RSDB_ID_SIZE];
    int existing = -1;
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 0, 1234, id, &existing), RSDB_OK);
    assert_int_equal(existing, 0);
    assert_int_equal(strlen(id), RSDB_ID_LEN);
    assert_null(strpbrk(id, "ILOUilou"));

    rsdb_job *job = get(fx->db, id);
    assert_string_equal(job->id, id);
    assert_int_equal(job->state, RSDB_QUEUED);
    assert_string_equal(job->request, REQUEST);
    assert_null(job->result);
    assert_int_equal(job->trials, 1000);
    assert_int_equal(job->trials_done, 0);
    assert_int_equal(job->attempts, 0);
    assert_int_equal(job->created_ms, 1234);
    assert_int_equal(job->started_ms, 0);
    assert_int_equal(job->finished_ms, 0);
    assert_null(job->lease_owner);
    rsdb_job_free(job);

    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, id, 0, 10, &ev), RSDB_OK);
    assert_int_equal(ev.count, 1);
    assert_string_equal(ev.items[0].type, "status");
    assert_string_equal(ev.items[0].job_id, id);
    assert_int_equal(ev.items[0].ts_ms, 1234);
    assert_non_null(strstr(ev.items[0].data, "\"status\":\"queued\""));
    assert_non_null(strstr(ev.items[0].data, "\"trials\":1000"));
    rsdb_event_list_clear(&ev);

    /* Two ids are different; unknown and malformed ids are not found. */
    char id2[RSDB_ID_SIZE];
    enqueue(fx->db, 1235, id2);
    assert_string_not_equal(id, id2);
    rsdb_job *none = (rsdb_job *)1;
    assert_int_equal(rsdb_job_get(fx->db, "00000000000000000000000000", &none), RSDB_ENOTFOUND);
    assert_null(none);
    assert_int_equal(rsdb_job_get(fx->db, "x'; DROP TABLE jobs; --", &none), RSDB_ENOTFOUND);
    assert_int_equal(rsdb_job_enqueue(fx->db, NULL, 0, 1, id2, NULL), RSDB_EINVAL);
    rsdb_job_spec keyless_hash = {REQUEST, 1, "key", NULL};
    assert_int_equal(rsdb_job_enqueue(fx->db, &keyless_hash, 0, 1, id2, NULL), RSDB_EINVAL);
}

static void test_idempotency(void **state)
{
    fixture *fx = *state;
    rsdb_job_spec spec = {REQUEST, 1000, "key-1", "hash-a"};
    char id[RSDB_ID_SIZE], again[RSDB_ID_SIZE];
    int existing = -1;
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 0, 10, id, &existing), RSDB_OK);
    assert_int_equal(existing, 0);
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 0, 11, again, &existing), RSDB_OK);
    assert_int_equal(existing, 1);
    assert_string_equal(id, again);
    /* The synchronous endpoint with the same key and body gets the same job too. */
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{}", 12, again, &existing), RSDB_OK);
    assert_int_equal(existing, 1);
    assert_string_equal(id, again);
    assert_int_equal(state_of(fx->db, id), RSDB_QUEUED);

    rsdb_job_spec other = {"{\"trials\":5}", 5, "key-1", "hash-b"};
    assert_int_equal(rsdb_job_enqueue(fx->db, &other, 0, 13, again, &existing), RSDB_ECONFLICT);
    assert_int_equal(rsdb_job_store_completed(fx->db, &other, "{}", 13, again, &existing),
                     RSDB_ECONFLICT);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 1);
    assert_int_equal(db_event_count(fx->db, id), 1);

    /* Another key is another job. */
    rsdb_job_spec key2 = {REQUEST, 1000, "key-2", "hash-a"};
    assert_int_equal(rsdb_job_enqueue(fx->db, &key2, 0, 14, again, &existing), RSDB_OK);
    assert_int_equal(existing, 0);
    assert_string_not_equal(id, again);
}

static void test_queue_full(void **state)
{
    fixture *fx = *state;
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 3, i, id, NULL), RSDB_OK);
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 3, 5, id, NULL), RSDB_EQUEUEFULL);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 3);
    /* An idempotent repeat of a stored job is answered even with the queue full. */
    rsdb_job_spec keyed = {REQUEST, 1000, "k", "h"};
    assert_int_equal(rsdb_job_enqueue(fx->db, &keyed, 4, 6, id, NULL), RSDB_OK);
    int existing = 0;
    assert_int_equal(rsdb_job_enqueue(fx->db, &keyed, 4, 7, id, &existing), RSDB_OK);
    assert_int_equal(existing, 1);
    rsdb_job_spec keyed2 = {REQUEST, 1000, "k2", "h"};
    assert_int_equal(rsdb_job_enqueue(fx->db, &keyed2, 4, 8, id, NULL), RSDB_EQUEUEFULL);
    /* A claimed job leaves the queue; the synchronous store has no queue limit. */
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 1000, 9, &job), RSDB_OK);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 4, 10, id, NULL), RSDB_OK);
    assert_int_equal(rsdb_job_enqueue(fx->db, &spec, 4, 11, id, NULL), RSDB_EQUEUEFULL);
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{}", 12, id, NULL), RSDB_OK);
}

static void test_store_completed(void **state)
{
    fixture *fx = *state;
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{\"mean\":1}", 77, id, NULL),
                     RSDB_OK);
    rsdb_job *job = get(fx->db, id);
    assert_int_equal(job->state, RSDB_COMPLETED);
    assert_string_equal(job->result, "{\"mean\":1}");
    assert_int_equal(job->trials_done, 1000);
    assert_int_equal(job->started_ms, 77);
    assert_int_equal(job->finished_ms, 77);
    rsdb_job_free(job);
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, id, 0, 10, &ev), RSDB_OK);
    assert_int_equal(ev.count, 2);
    assert_string_equal(ev.items[0].type, "status");
    assert_non_null(strstr(ev.items[0].data, "\"status\":\"completed\""));
    assert_non_null(strstr(ev.items[0].data, "\"progress\":1.0"));
    assert_string_equal(ev.items[1].type, "complete");
    assert_string_equal(ev.items[1].data, "{\"result\":{\"mean\":1}}"); /* made from the job */
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'complete' "
                                          "AND data = '{}'"),
                     1); /* the result is stored once */
    assert_true(ev.items[0].seq < ev.items[1].seq);
    rsdb_event_list_clear(&ev);

    /* Text that is not JSON is refused and nothing is stored. */
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{not json", 78, id, NULL),
                     RSDB_EINVAL);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 1);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), 2);
}

static void test_list_pagination(void **state)
{
    fixture *fx = *state;
    char ids[7][RSDB_ID_SIZE];
    for (int i = 0; i < 7; i++)
        enqueue(fx->db, 100 + i / 2, ids[i]); /* pairs share a created time */

    rsdb_job_list all;
    assert_int_equal(rsdb_job_list_page(fx->db, NULL, 0, NULL, 100, &all), RSDB_OK);
    assert_int_equal(all.count, 7);
    for (size_t i = 1; i < all.count; i++) {
        const rsdb_job *a = &all.items[i - 1], *b = &all.items[i];
        assert_true(a->created_ms > b->created_ms ||
                    (a->created_ms == b->created_ms && strcmp(a->id, b->id) > 0));
        assert_null(b->request);
    }
    assert_int_equal(all.items[0].created_ms, 103);

    /* Pages of 3 walk the same order without gap or repeat. */
    size_t seen = 0;
    int64_t before_created = 0;
    char before_id[RSDB_ID_SIZE] = "";
    for (int page = 0; page < 5; page++) {
        rsdb_job_list p;
        assert_int_equal(
            rsdb_job_list_page(fx->db, NULL, before_created, page == 0 ? NULL : before_id, 3, &p),
            RSDB_OK);
        for (size_t i = 0; i < p.count; i++)
            assert_string_equal(p.items[i].id, all.items[seen + i].id);
        seen += p.count;
        if (p.count > 0) {
            before_created = p.items[p.count - 1].created_ms;
            memcpy(before_id, p.items[p.count - 1].id, RSDB_ID_SIZE);
        }
        size_t count = p.count;
        rsdb_job_list_clear(&p);
        if (count < 3)
            break;
    }
    assert_int_equal(seen, 7);
    rsdb_job_list_clear(&all);

    /* The state filter. */
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w", 1000, 200, &job), RSDB_OK);
    rsdb_state running = RSDB_RUNNING, queued = RSDB_QUEUED;
    rsdb_job_list p;
    assert_int_equal(rsdb_job_list_page(fx->db, &running, 0, NULL, 10, &p), RSDB_OK);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].id, job->id);
    assert_string_equal(p.items[0].lease_owner, "w");
    rsdb_job_list_clear(&p);
    assert_int_equal(rsdb_job_list_page(fx->db, &queued, 0, NULL, 10, &p), RSDB_OK);
    assert_int_equal(p.count, 6);
    rsdb_job_list_clear(&p);
    assert_int_equal(rsdb_job_list_page(fx->db, &queued, 0, NULL, 0, &p), RSDB_OK);
    assert_int_equal(p.count, 0);
    rsdb_state bad = (rsdb_state)42;
    assert_int_equal(rsdb_job_list_page(fx->db, &bad, 0, NULL, 10, &p), RSDB_EINVAL);
    rsdb_job_free(job);
}

static void test_claim_progress_complete(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE], b[RSDB_ID_SIZE];
    enqueue(fx->db, 20, b); /* b is created later than a despite being enqueued first */
    enqueue(fx->db, 10, a);

    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 1000, 100, &job), RSDB_OK);
    assert_string_equal(job->id, a);
    assert_int_equal(job->state, RSDB_RUNNING);
    assert_string_equal(job->lease_owner, "w1");
    assert_int_equal(job->lease_until_ms, 1100);
    assert_int_equal(job->attempts, 1);
    assert_int_equal(job->started_ms, 100);
    assert_string_equal(job->request, REQUEST);
    rsdb_job_free(job);

    int cancel = -1;
    assert_int_equal(
        rsdb_job_progress(fx->db, a, "w1", 500, 1000, "{\"progress\":0.5}", 600, &cancel), RSDB_OK);
    assert_int_equal(cancel, 0);
    job = get(fx->db, a);
    assert_int_equal(job->trials_done, 500);
    assert_int_equal(job->lease_until_ms, 1600);
    rsdb_job_free(job);

    /* Refused: another owner, an expired lease, bad data; none changes anything. */
    assert_int_equal(rsdb_job_progress(fx->db, a, "w2", 700, 1000, "{}", 700, &cancel),
                     RSDB_ELEASE);
    assert_int_equal(rsdb_job_progress(fx->db, a, "w1", 700, 1000, "{}", 1601, &cancel),
                     RSDB_ELEASE);
    assert_int_equal(rsdb_job_progress(fx->db, a, "w1", 700, 1000, "{bad", 700, &cancel),
                     RSDB_EINVAL);
    assert_int_equal(rsdb_job_progress(fx->db, b, "w1", 700, 1000, "{}", 700, &cancel),
                     RSDB_ESTATE);
    assert_int_equal(
        rsdb_job_progress(fx->db, "00000000000000000000000000", "w1", 1, 1000, "{}", 700, &cancel),
        RSDB_ENOTFOUND);
    assert_int_equal(rsdb_job_complete(fx->db, a, "w2", "{}", 700), RSDB_ELEASE);
    assert_int_equal(rsdb_job_complete(fx->db, b, "w1", "{}", 700), RSDB_ESTATE);
    job = get(fx->db, a);
    assert_int_equal(job->trials_done, 500);
    assert_int_equal(job->lease_until_ms, 1600);
    assert_int_equal(job->state, RSDB_RUNNING);
    rsdb_job_free(job);
    assert_int_equal(db_event_count(fx->db, a), 3);

    assert_int_equal(rsdb_job_complete(fx->db, a, "w1", "{\"r\":1}", 800), RSDB_OK);
    job = get(fx->db, a);
    assert_int_equal(job->state, RSDB_COMPLETED);
    assert_string_equal(job->result, "{\"r\":1}");
    assert_int_equal(job->trials_done, 1000);
    assert_int_equal(job->finished_ms, 800);
    assert_null(job->lease_owner);
    rsdb_job_free(job);

    /* A finished job accepts nothing more. */
    assert_int_equal(rsdb_job_complete(fx->db, a, "w1", "{}", 900), RSDB_ESTATE);
    assert_int_equal(rsdb_job_fail(fx->db, a, "w1", "x", "y", "{}", 900), RSDB_ESTATE);
    assert_int_equal(rsdb_job_cancelled(fx->db, a, "w1", 900), RSDB_ESTATE);
    assert_int_equal(rsdb_job_release(fx->db, a, "w1", 900), RSDB_ESTATE);
    assert_int_equal(rsdb_job_progress(fx->db, a, "w1", 1, 1000, "{}", 900, &cancel), RSDB_ESTATE);
    rsdb_state st = RSDB_QUEUED;
    assert_int_equal(rsdb_job_cancel(fx->db, a, 900, &st), RSDB_OK);
    assert_int_equal(st, RSDB_COMPLETED);

    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, a, 0, 100, &ev), RSDB_OK);
    assert_int_equal(ev.count, 4);
    const char *types[] = {"status", "status", "progress", "complete"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(ev.items[i].type, types[i]);
        if (i > 0)
            assert_true(ev.items[i].seq > ev.items[i - 1].seq);
    }
    assert_non_null(strstr(ev.items[1].data, "\"status\":\"running\""));
    assert_string_equal(ev.items[2].data, "{\"progress\":0.5}");
    assert_int_equal(ev.items[3].ts_ms, 800);
    rsdb_event_list_clear(&ev);

    /* b next, then nothing. */
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 1000, 1000, &job), RSDB_OK);
    assert_string_equal(job->id, b);
    rsdb_job_free(job);
    job = (rsdb_job *)1;
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 1000, 1000, &job), RSDB_EEMPTY);
    assert_null(job);
    assert_int_equal(rsdb_job_claim(fx->db, "", 1000, 1000, &job), RSDB_EINVAL);
}

static void test_cancel(void **state)
{
    fixture *fx = *state;
    char q[RSDB_ID_SIZE], r[RSDB_ID_SIZE];
    enqueue(fx->db, 1, q);
    enqueue(fx->db, 2, r);

    /* queued: cancelled at once, with its event; repeating is harmless. */
    rsdb_state st = RSDB_QUEUED;
    assert_int_equal(rsdb_job_cancel(fx->db, q, 5, &st), RSDB_OK);
    assert_int_equal(st, RSDB_CANCELLED);
    rsdb_job *job = get(fx->db, q);
    assert_int_equal(job->state, RSDB_CANCELLED);
    assert_int_equal(job->finished_ms, 5);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_cancel(fx->db, q, 6, &st), RSDB_OK);
    assert_int_equal(st, RSDB_CANCELLED);
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, q, 0, 10, &ev), RSDB_OK);
    assert_int_equal(ev.count, 2);
    assert_string_equal(ev.items[1].type, "cancelled");
    rsdb_event_list_clear(&ev);

    /* The cancelled job is never claimed; r is. */
    assert_int_equal(rsdb_job_claim(fx->db, "w", 1000, 10, &job), RSDB_OK);
    assert_string_equal(job->id, r);
    rsdb_job_free(job);

    /* running: cancel requested, seen at the next progress write. */
    assert_int_equal(rsdb_job_cancel(fx->db, r, 20, &st), RSDB_OK);
    assert_int_equal(st, RSDB_RUNNING);
    assert_int_equal(state_of(fx->db, r), RSDB_RUNNING);
    int cancel = 0;
    assert_int_equal(rsdb_job_progress(fx->db, r, "w", 10, 1000, "{}", 30, &cancel), RSDB_OK);
    assert_int_equal(cancel, 1);
    assert_int_equal(rsdb_job_cancelled(fx->db, r, "other", 40), RSDB_ELEASE);
    assert_int_equal(rsdb_job_cancelled(fx->db, r, "w", 40), RSDB_OK);
    job = get(fx->db, r);
    assert_int_equal(job->state, RSDB_CANCELLED);
    assert_int_equal(job->finished_ms, 40);
    assert_null(job->result);
    rsdb_job_free(job);

    /* Completing a cancelled job is refused and changes nothing. */
    size_t before = db_event_count(fx->db, r);
    assert_int_equal(rsdb_job_complete(fx->db, r, "w", "{}", 50), RSDB_ESTATE);
    assert_int_equal(state_of(fx->db, r), RSDB_CANCELLED);
    assert_int_equal(db_event_count(fx->db, r), before);

    assert_int_equal(rsdb_job_cancel(fx->db, "00000000000000000000000000", 1, &st), RSDB_ENOTFOUND);
    assert_int_equal(rsdb_job_cancel(fx->db, "short", 1, &st), RSDB_ENOTFOUND);
}

static void test_fail_and_release(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE], b[RSDB_ID_SIZE];
    enqueue(fx->db, 1, a);
    enqueue(fx->db, 2, b);
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w", 1000, 10, &job), RSDB_OK);
    rsdb_job_free(job);

    assert_int_equal(rsdb_job_fail(fx->db, a, "x", "engine", "boom", "{}", 20), RSDB_ELEASE);
    assert_int_equal(rsdb_job_fail(fx->db, a, "w", "engine", "boom",
                                   "{\"error\":{\"code\":\"engine\",\"message\":\"boom\"}}", 20),
                     RSDB_OK);
    job = get(fx->db, a);
    assert_int_equal(job->state, RSDB_FAILED);
    assert_string_equal(job->error_code, "engine");
    assert_string_equal(job->error_message, "boom");
    assert_int_equal(job->finished_ms, 20);
    rsdb_job_free(job);
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, a, 0, 10, &ev), RSDB_OK);
    assert_string_equal(ev.items[ev.count - 1].type, "error");
    rsdb_event_list_clear(&ev);

    /* release: back to the queue, the attempt given back, a status event. */
    assert_int_equal(rsdb_job_release(fx->db, b, "w", 30), RSDB_ESTATE); /* still queued */
    assert_int_equal(rsdb_job_claim(fx->db, "w", 1000, 40, &job), RSDB_OK);
    assert_string_equal(job->id, b);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_release(fx->db, b, "v", 50), RSDB_ELEASE);
    assert_int_equal(rsdb_job_release(fx->db, b, "w", 50), RSDB_OK);
    job = get(fx->db, b);
    assert_int_equal(job->state, RSDB_QUEUED);
    assert_int_equal(job->attempts, 0);
    assert_null(job->lease_owner);
    rsdb_job_free(job);
    assert_int_equal(rsdb_events_job(fx->db, b, 0, 10, &ev), RSDB_OK);
    assert_int_equal(ev.count, 3);
    assert_non_null(strstr(ev.items[2].data, "\"status\":\"queued\""));
    rsdb_event_list_clear(&ev);
    /* The old owner can no longer finish it once another worker has it. */
    assert_int_equal(rsdb_job_claim(fx->db, "v", 1000, 60, &job), RSDB_OK);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_complete(fx->db, b, "w", "{}", 70), RSDB_ELEASE);
    assert_int_equal(rsdb_job_complete(fx->db, b, "v", "{}", 70), RSDB_OK);
}

static void test_reaper(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE], b[RSDB_ID_SIZE];
    enqueue(fx->db, 1, a);
    enqueue(fx->db, 2, b);
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 1000, 0, &job), RSDB_OK);
    assert_string_equal(job->id, a);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_claim(fx->db, "w1", 5000, 0, &job), RSDB_OK);
    assert_string_equal(job->id, b);
    rsdb_job_free(job);

    size_t requeued = 9, failed = 9;
    assert_int_equal(rsdb_reap(fx->db, 1000, 2, &requeued, &failed), RSDB_OK);
    assert_int_equal(requeued, 0); /* lease_until 1000 is not before 1000 */
    assert_int_equal(failed, 0);
    assert_int_equal(rsdb_reap(fx->db, 1001, 2, &requeued, &failed), RSDB_OK);
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 0);
    assert_int_equal(state_of(fx->db, a), RSDB_QUEUED);
    assert_int_equal(state_of(fx->db, b), RSDB_RUNNING);
    /* The dead worker's late writes are refused once the job was reaped. */
    int cancel = 0;
    assert_int_equal(rsdb_job_progress(fx->db, a, "w1", 1, 1000, "{}", 1002, &cancel), RSDB_ESTATE);
    assert_int_equal(rsdb_job_complete(fx->db, a, "w1", "{}", 1002), RSDB_ESTATE);

    /* Second attempt by w2, which dies too: attempts reach max_attempts, so the job fails. */
    assert_int_equal(rsdb_job_claim(fx->db, "w2", 1000, 2000, &job), RSDB_OK);
    assert_string_equal(job->id, a);
    assert_int_equal(job->attempts, 2);
    rsdb_job_free(job);
    assert_int_equal(rsdb_reap(fx->db, 3001, 2, &requeued, &failed), RSDB_OK);
    assert_int_equal(requeued, 0);
    assert_int_equal(failed, 1);
    job = get(fx->db, a);
    assert_int_equal(job->state, RSDB_FAILED);
    assert_string_equal(job->error_code, "lease_expired");
    assert_int_equal(job->finished_ms, 3001);
    assert_null(job->lease_owner);
    rsdb_job_free(job);
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, a, 0, 100, &ev), RSDB_OK);
    /* queued, running, queued (reaped), running, then the terminal error (reaped) */
    assert_int_equal(ev.count, 5);
    assert_non_null(strstr(ev.items[2].data, "\"status\":\"queued\""));
    assert_string_equal(ev.items[4].type, "error");
    assert_non_null(strstr(ev.items[4].data, "\"code\":\"lease_expired\""));
    rsdb_event_list_clear(&ev);

    /* b's longer lease runs out later; with more attempts allowed it is requeued. */
    assert_int_equal(rsdb_reap(fx->db, 5001, 3, &requeued, &failed), RSDB_OK);
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 0);
    assert_int_equal(state_of(fx->db, b), RSDB_QUEUED);
    assert_int_equal(rsdb_reap(fx->db, 5001, 0, &requeued, &failed), RSDB_EINVAL);
}

static void test_events_after_seq(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE], b[RSDB_ID_SIZE];
    enqueue(fx->db, 1, a);
    enqueue(fx->db, 2, b);
    rsdb_job *ja = NULL, *jb = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w", 100000, 3, &ja), RSDB_OK);
    assert_int_equal(rsdb_job_claim(fx->db, "w", 100000, 3, &jb), RSDB_OK);
    char data[64];
    for (int i = 0; i < 10; i++) {
        snprintf(data, sizeof(data), "{\"i\":%d}", i);
        assert_int_equal(
            rsdb_job_progress(fx->db, i % 2 ? b : a, "w", (uint64_t)i, 100000, data, 10 + i, NULL),
            RSDB_OK);
    }
    rsdb_job_free(ja);
    rsdb_job_free(jb);

    /* Global: 2 queued + 2 running + 10 progress, strictly increasing seq. */
    rsdb_event_list all;
    assert_int_equal(rsdb_events_all(fx->db, 0, 1000, &all), RSDB_OK);
    assert_int_equal(all.count, 14);
    for (size_t i = 1; i < all.count; i++)
        assert_true(all.items[i].seq > all.items[i - 1].seq);
    assert_string_equal(all.items[4].data, "{\"i\":0}");
    assert_string_equal(all.items[13].data, "{\"i\":9}");

    /* Reading in pages of 4 after the last seen seq yields the same sequence. */
    int64_t after = 0;
    size_t seen = 0;
    for (;;) {
        rsdb_event_list page;
        assert_int_equal(rsdb_events_all(fx->db, after, 4, &page), RSDB_OK);
        if (page.count == 0) {
            rsdb_event_list_clear(&page);
            break;
        }
        assert_true(page.count <= 4);
        for (size_t i = 0; i < page.count; i++)
            assert_int_equal(page.items[i].seq, all.items[seen + i].seq);
        seen += page.count;
        after = page.items[page.count - 1].seq;
        rsdb_event_list_clear(&page);
    }
    assert_int_equal(seen, 14);

    /* Per job, after a seq. */
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(fx->db, b, all.items[5].seq, 100, &ev), RSDB_OK);
    assert_int_equal(ev.count, 5 - 1); /* b's progress 1,3,5,7,9 minus the one at index 5 */
    for (size_t i = 0; i < ev.count; i++)
        assert_string_equal(ev.items[i].job_id, b);
    assert_string_equal(ev.items[0].data, "{\"i\":3}");
    rsdb_event_list_clear(&ev);
    assert_int_equal(rsdb_events_job(fx->db, a, 0, 2, &ev), RSDB_OK);
    assert_int_equal(ev.count, 2);
    rsdb_event_list_clear(&ev);
    assert_int_equal(rsdb_events_job(fx->db, "00000000000000000000000000", 0, 10, &ev), RSDB_OK);
    assert_int_equal(ev.count, 0);
    rsdb_event_list_clear(&all);
}

static void test_data_version(void **state)
{
    fixture *fx = *state;
    rsdb *reader = open_role(fx, RSDB_ROLE_READER);
    int64_t v1 = 0, v2 = 0, w1 = 0, w2 = 0;
    assert_int_equal(rsdb_data_version(reader, &v1), RSDB_OK);
    assert_int_equal(rsdb_data_version(reader, &v2), RSDB_OK);
    assert_int_equal(v1, v2); /* nothing changed */
    assert_int_equal(rsdb_data_version(fx->db, &w1), RSDB_OK);

    char id[RSDB_ID_SIZE];
    enqueue(fx->db, 1, id); /* a write from the other connection */
    assert_int_equal(rsdb_data_version(reader, &v2), RSDB_OK);
    assert_true(v2 != v1);
    assert_int_equal(rsdb_data_version(reader, &v1), RSDB_OK);
    assert_int_equal(v1, v2);
    /* The writer's own commits do not change its own data_version. */
    assert_int_equal(rsdb_data_version(fx->db, &w2), RSDB_OK);
    assert_int_equal(w1, w2);
    rsdb_free(reader);
}

static void test_prune_and_checkpoint(void **state)
{
    fixture *fx = *state;
    rsdb_job_spec spec = {REQUEST, 10, NULL, NULL};
    char id[RSDB_ID_SIZE], keep[RSDB_ID_SIZE], queued[RSDB_ID_SIZE];
    for (int i = 0; i < 50; i++)
        assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{}", 1000 + i, id, NULL),
                         RSDB_OK);
    assert_int_equal(rsdb_job_store_completed(fx->db, &spec, "{}", 5000, keep, NULL), RSDB_OK);
    enqueue(fx->db, 0, queued); /* old but not finished: never pruned */
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), 51 * 2 + 1);

    size_t deleted = 0;
    assert_int_equal(rsdb_prune(fx->db, 6000, 2000, 7, &deleted), RSDB_OK);
    assert_int_equal(deleted, 50);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 2);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), 3); /* cascade */
    assert_int_equal(state_of(fx->db, keep), RSDB_COMPLETED);
    assert_int_equal(state_of(fx->db, queued), RSDB_QUEUED);
    assert_int_equal(rsdb_prune(fx->db, 6000, 2000, 7, &deleted), RSDB_OK);
    assert_int_equal(deleted, 0);

    int64_t before = 0, after = 0;
    int done = -1;
    /* Under the threshold: a PASSIVE checkpoint copies every frame but keeps the file. */
    assert_int_equal(rsdb_checkpoint(fx->db, INT64_MAX, &before, &after, &done), RSDB_OK);
    assert_true(before > 0);
    assert_int_equal(done, 1);
    assert_int_equal(after, before);
    /* The next write starts the WAL over from its beginning instead of growing it. */
    char more[RSDB_ID_SIZE];
    enqueue(fx->db, 7000, more);
    int64_t restarted = 0;
    assert_int_equal(rsdb_checkpoint(fx->db, INT64_MAX, &restarted, NULL, NULL), RSDB_OK);
    assert_true(restarted <= before);
    /* Over the threshold: TRUNCATE empties the file. */
    assert_int_equal(rsdb_checkpoint(fx->db, 0, &before, &after, &done), RSDB_OK);
    assert_true(before > 0);
    assert_int_equal(done, 1);
    assert_int_equal(after, 0);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), 3);
}

static void test_stats(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE], b[RSDB_ID_SIZE], c[RSDB_ID_SIZE];
    enqueue(fx->db, 100, a);
    enqueue(fx->db, 200, b);
    enqueue(fx->db, 300, c);
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, "w", 1000, 400, &job), RSDB_OK);
    rsdb_job_free(job);
    rsdb_state st;
    assert_int_equal(rsdb_job_cancel(fx->db, c, 500, &st), RSDB_OK);
    rsdb_stats s;
    assert_int_equal(rsdb_stats_get(fx->db, 1000, &s), RSDB_OK);
    assert_int_equal(s.jobs[RSDB_QUEUED], 1);
    assert_int_equal(s.jobs[RSDB_RUNNING], 1);
    assert_int_equal(s.jobs[RSDB_CANCELLED], 1);
    assert_int_equal(s.jobs[RSDB_COMPLETED], 0);
    assert_int_equal(s.queue_depth, 1);
    assert_int_equal(s.oldest_queued_ms, 800);
    assert_true(s.wal_bytes > 0);
    assert_int_equal(s.busy_retries, 0);
    assert_int_equal(rsdb_job_cancel(fx->db, b, 600, &st), RSDB_OK);
    assert_int_equal(rsdb_stats_get(fx->db, 1000, &s), RSDB_OK);
    assert_int_equal(s.queue_depth, 0);
    assert_int_equal(s.oldest_queued_ms, 0);
}

/* rsdb_check passes on a healthy file and reports an event whose job is gone (written behind
 * the library's back with foreign keys off) as damage, naming the check. */
static void test_check(void **state)
{
    fixture *fx = *state;
    char a[RSDB_ID_SIZE];
    enqueue(fx->db, 100, a);
    char report[256] = "unchanged";
    assert_int_equal(rsdb_check(fx->db, report, sizeof report), RSDB_OK);
    assert_string_equal(report, "");
    sql_exec(fx, "PRAGMA foreign_keys=OFF; INSERT INTO events(job_id, type, data, ts) "
                 "VALUES ('0000000000000000000000NONE', 'status', '{}', 1)");
    assert_int_equal(rsdb_check(fx->db, report, sizeof report), RSDB_ECORRUPT);
    assert_non_null(strstr(report, "foreign_key_check"));
    assert_int_equal(rsdb_check(fx->db, NULL, 0), RSDB_ECORRUPT);
    assert_int_equal(rsdb_check(NULL, NULL, 0), RSDB_EINVAL);
}

/* The counts of rsdb_stats_get (schema 3's job_counts, kept by triggers) equal a real count of
 * the jobs table after every kind of change: create, claim, progress, complete, cancel, fail,
 * reap, release and prune. */
static void assert_counts_true(const fixture *fx)
{
    rsdb_stats s;
    assert_int_equal(rsdb_stats_get(fx->db, 1000, &s), RSDB_OK);
    static const char *const names[] = {"queued", "running", "completed", "failed", "cancelled"};
    for (int i = RSDB_QUEUED; i <= RSDB_CANCELLED; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE state = '%s'",
                 names[i - RSDB_QUEUED]);
        assert_string_equal(rsdb_state_name((rsdb_state)i), names[i - RSDB_QUEUED]);
        assert_int_equal(s.jobs[i], db_sql_int(fx->path, sql));
    }
    assert_int_equal(s.queue_depth, s.jobs[RSDB_QUEUED]);
}

static rsdb_job *claim(const fixture *fx, const char *owner, int64_t now)
{
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(fx->db, owner, 100, now, &job), RSDB_OK);
    assert_non_null(job);
    return job;
}

static void test_job_counts(void **state)
{
    fixture *fx = *state;
    char ids[6][RSDB_ID_SIZE];
    for (int i = 0; i < 6; i++)
        enqueue(fx->db, 100 + i, ids[i]);
    assert_counts_true(fx);
    rsdb_job *a = claim(fx, "w1", 200);
    assert_counts_true(fx);
    assert_int_equal(rsdb_job_progress(fx->db, a->id, "w1", 10, 100, "{}", 210, NULL), RSDB_OK);
    assert_int_equal(rsdb_job_complete(fx->db, a->id, "w1", "{}", 220), RSDB_OK);
    assert_counts_true(fx);
    rsdb_job *b = claim(fx, "w1", 230);
    assert_int_equal(rsdb_job_fail(fx->db, b->id, "w1", "boom", "it broke", "{}", 240), RSDB_OK);
    assert_counts_true(fx);
    rsdb_job *c = claim(fx, "w1", 250);
    assert_int_equal(rsdb_job_release(fx->db, c->id, "w1", 260), RSDB_OK);
    assert_counts_true(fx);
    rsdb_job *d = claim(fx, "w2", 270); /* its lease runs out at 370 */
    size_t requeued = 0, failed = 0;
    assert_int_equal(rsdb_reap(fx->db, 1000, 5, &requeued, &failed), RSDB_OK);
    assert_int_equal(requeued, 1);
    assert_counts_true(fx);
    rsdb_state st;
    assert_int_equal(rsdb_job_cancel(fx->db, ids[5], 1100, &st), RSDB_OK);
    assert_counts_true(fx);
    size_t deleted = 0;
    assert_int_equal(rsdb_prune(fx->db, 100000, 1, 0, &deleted), RSDB_OK);
    assert_int_equal(deleted, 3);
    assert_counts_true(fx);
    rsdb_job_free(a);
    rsdb_job_free(b);
    rsdb_job_free(c);
    rsdb_job_free(d);

    /* A count changed behind the library's back is damage that rsdb_check names. */
    char report[256];
    assert_int_equal(rsdb_check(fx->db, report, sizeof report), RSDB_OK);
    sql_exec(fx, "UPDATE job_counts SET n = n + 1 WHERE state = 'queued'");
    assert_int_equal(rsdb_check(fx->db, report, sizeof report), RSDB_ECORRUPT);
    assert_non_null(strstr(report, "job_counts: queued counted"));
}

/* A claim whose clock reading came before the job's creation (the reading is taken before the
 * write lock, and the job may be committed in between) starts the job at its creation. */
static void test_claim_never_starts_before_creation(void **state)
{
    fixture *fx = *state;
    char id[RSDB_ID_SIZE];
    enqueue(fx->db, 500, id);
    rsdb_job *job = claim(fx, "w", 400);
    assert_string_equal(job->id, id);
    assert_int_equal(job->started_ms, 500);
    rsdb_job_free(job);
    enqueue(fx->db, 600, id);
    job = claim(fx, "w", 700);
    assert_int_equal(job->started_ms, 700);
    rsdb_job_free(job);
}

/* A writer that holds the lock longer than busy_timeout and every retry: the call gives up with
 * RSDB_EBUSY, counts its retries, and writes nothing; once the lock is gone it succeeds. */
static void test_busy_retries(void **state)
{
    fixture *fx = *state;
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.busy_timeout_ms = 5;
    opt.max_retries = 2;
    rsdb *db = NULL;
    assert_int_equal(rsdb_open(fx->path, &opt, &db, NULL, 0), RSDB_OK);
    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open_v2(fx->path, &holder, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    assert_int_equal(rsdb_job_enqueue(db, &spec, 0, 1, id, NULL), RSDB_EBUSY);
    assert_true(rsdb_errmsg(db)[0] != '\0');
    rsdb_stats s;
    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(rsdb_stats_get(db, 1, &s), RSDB_OK);
    assert_int_equal(s.busy_retries, 2);
    assert_int_equal(s.busy_failures, 1);
    assert_int_equal(s.jobs[RSDB_QUEUED], 0);
    assert_int_equal(rsdb_job_enqueue(db, &spec, 0, 1, id, NULL), RSDB_OK);
    sqlite3_close(holder);
    rsdb_free(db);
}

/* Several processes claim and complete from one queue at once: each job is claimed exactly
 * once, none is lost, and no caller ever sees SQLITE_BUSY. */
static void test_concurrent_claims(void **state)
{
    fixture *fx = *state;
    const int jobs = getenv("RISKSIM_UNDER_VALGRIND") != NULL ? 60 : 300;
    enum { WORKERS = 4 };
    for (int i = 0; i < jobs; i++) {
        char id[RSDB_ID_SIZE];
        enqueue(fx->db, i, id);
    }
    rsdb_free(fx->db);
    fx->db = NULL;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(fds[0]);
            int status = 0;
            unsigned claimed = 0;
            rsdb_options opt;
            rsdb_options_default(&opt);
            opt.busy_timeout_ms = 20000;
            rsdb *db = NULL;
            if (rsdb_open(fx->path, &opt, &db, NULL, 0) != RSDB_OK)
                _exit(2);
            char owner[32];
            snprintf(owner, sizeof(owner), "worker-%d", w);
            for (;;) {
                rsdb_job *job = NULL;
                rsdb_err err = rsdb_job_claim(db, owner, 60000, 1000, &job);
                if (err == RSDB_EEMPTY)
                    break;
                if (err != RSDB_OK) {
                    status = 3;
                    break;
                }
                claimed++;
                err = rsdb_job_complete(db, job->id, owner, "{}", 1001);
                rsdb_job_free(job);
                if (err != RSDB_OK) {
                    status = 4;
                    break;
                }
            }
            rsdb_free(db);
            if (write(fds[1], &claimed, sizeof(claimed)) != (ssize_t)sizeof(claimed))
                status = 5;
            close(fds[1]);
            _exit(status);
        }
    }
    close(fds[1]);
    unsigned total = 0;
    for (int w = 0; w < WORKERS; w++) {
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        unsigned claimed = 0;
        assert_int_equal(read(fds[0], &claimed, sizeof(claimed)), (ssize_t)sizeof(claimed));
        total += claimed;
    }
    close(fds[0]);
    assert_int_equal(total, (unsigned)jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs WHERE state = 'completed' "
                                          "AND attempts = 1"),
                     jobs);
    /* Exactly one running status event per job. */
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'status' "
                                          "AND data LIKE '%running%'"),
                     jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(DISTINCT job_id) FROM events "
                                          "WHERE type = 'complete'"),
                     jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'complete'"),
                     jobs);
    fx->db = open_role(fx, RSDB_ROLE_WORKER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
        cmocka_unit_test(test_event_json),
        cmocka_unit_test_setup_teardown(test_preset_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_never_reused_after_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_progress_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reaper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_after_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_and_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_never_starts_before_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
