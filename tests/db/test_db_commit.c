/*
 * Tests of batched job creation (rsdb_job_create_batch) and of the group committer
 * (rsdb_committer), on real database files.
 *
 * Why this file exists: grouping many accepted jobs into one durable commit is only correct if
 * every job still gets exactly the answer it would have got alone: a refused job (conflicting
 * idempotency key, full queue, bad data) must leave no trace and must not take its neighbours
 * down with it, and no thread may return before its own job is committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risksim/db.h"
#include "tmpdir.h"

static const char *const REQUEST = "{\"trials\":1000}";

static rsdb_create queued_item(const char *key, const char *hash, uint32_t queue_size)
{
    rsdb_create item = {.spec = {REQUEST, 1000, key, hash}, .queue_size = queue_size};
    item.now_ms = 1000;
    return item;
}

/* Every rule of a single creation holds item by item inside one batch, and a refused item
 * leaves nothing behind, even when it failed after writing part of its rows. */
static void test_batch_items_answer_alone(void **state)
{
    db_tmpdir *t = *state;
    rsdb *db = db_test_open(t->path, RSDB_ROLE_ACCEPT);
    rsdb_create items[8];
    items[0] = queued_item(NULL, NULL, 3);
    items[1] = queued_item("k1", "h1", 3);
    items[2] = queued_item("k1", "h1", 3); /* same key, same body: the job of items[1] */
    items[3] = queued_item("k1", "h2", 3); /* same key, other body: conflict */
    items[4] = queued_item(NULL, NULL, 3); /* the third queued job: still fits */
    items[5] = queued_item(NULL, NULL, 3); /* a fourth: the queue is full */
    items[6] = queued_item(NULL, NULL, 0);
    items[6].spec.request = NULL; /* a caller bug */
    items[7] = queued_item(NULL, NULL, 0);
    items[7].result = "{not json"; /* a result that is not JSON */
    assert_int_equal(rsdb_job_create_batch(db, items, 8), RSDB_OK);

    assert_int_equal(items[0].err, RSDB_OK);
    assert_int_equal(items[1].err, RSDB_OK);
    assert_int_equal(items[1].existing, 0);
    assert_int_equal(items[2].err, RSDB_OK);
    assert_int_equal(items[2].existing, 1);
    assert_string_equal(items[2].id, items[1].id);
    assert_int_equal(items[3].err, RSDB_ECONFLICT);
    assert_int_equal(items[4].err, RSDB_OK);
    assert_int_equal(items[5].err, RSDB_EQUEUEFULL);
    assert_int_equal(items[6].err, RSDB_EINVAL);
    assert_int_equal(items[7].err, RSDB_EINVAL);

    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM jobs"), 3);
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM events"), 3);
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM events WHERE type = 'status'"), 3);
    const int created[] = {0, 1, 4};
    for (size_t i = 0; i < sizeof(created) / sizeof(created[0]); i++) {
        rsdb_job *job = NULL;
        assert_int_equal(rsdb_job_get(db, items[created[i]].id, &job), RSDB_OK);
        assert_int_equal(job->state, RSDB_QUEUED);
        rsdb_job_free(job);
    }
    rsdb_free(db);
}

/* Completed jobs (the sync endpoint's) and queued ones mix in a batch. */
static void test_batch_store_completed(void **state)
{
    db_tmpdir *t = *state;
    rsdb *db = db_test_open(t->path, RSDB_ROLE_ACCEPT);
    rsdb_create items[2] = {queued_item(NULL, NULL, 0), queued_item("k", "h", 0)};
    items[1].result = "{\"ok\":true}";
    assert_int_equal(rsdb_job_create_batch(db, items, 2), RSDB_OK);
    assert_int_equal(items[0].err, RSDB_OK);
    assert_int_equal(items[1].err, RSDB_OK);
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_get(db, items[1].id, &job), RSDB_OK);
    assert_int_equal(job->state, RSDB_COMPLETED);
    assert_string_equal(job->result, "{\"ok\":true}");
    rsdb_job_free(job);
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM events"), 3);
    rsdb_free(db);
}

static void test_batch_arguments(void **state)
{
    db_tmpdir *t = *state;
    rsdb *db = db_test_open(t->path, RSDB_ROLE_ACCEPT);
    rsdb_create items[1] = {queued_item(NULL, NULL, 0)};
    assert_int_equal(rsdb_job_create_batch(NULL, items, 1), RSDB_EINVAL);
    assert_int_equal(rsdb_job_create_batch(db, NULL, 1), RSDB_EINVAL);
    assert_int_equal(rsdb_job_create_batch(db, items, 0), RSDB_EINVAL);
    assert_int_equal(rsdb_job_create_batch(db, items, RSDB_BATCH_MAX + 1), RSDB_EINVAL);
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM jobs"), 0);
    assert_int_equal(rsdb_committer_create(NULL, items), RSDB_EINVAL);
    rsdb_committer_free(NULL);
    rsdb_committer_stats st;
    rsdb_committer_stats_get(NULL, &st);
    assert_int_equal(st.commits, 0);
    rsdb_free(db);
}

/* ------------------------------------------------------------------------------------------ */

#define THREADS 8
#define PER_THREAD 150

typedef struct thread_arg {
    rsdb_committer *committer;
    unsigned index;
    rsdb_create items[PER_THREAD];
} thread_arg;

/* Thread i creates PER_THREAD jobs; every third one carries a key shared with thread i ^ 1 (same
 * body), so the pair must end up with one job per key between them. */
static void *creator(void *varg)
{
    thread_arg *arg = varg;
    static char keys[THREADS][PER_THREAD][32]; /* one row per thread: no shared writes */
    for (unsigned j = 0; j < PER_THREAD; j++) {
        rsdb_create *item = &arg->items[j];
        *item = queued_item(NULL, NULL, 0);
        if (j % 3 == 0) {
            char *key = keys[arg->index][j];
            snprintf(key, 32, "pair%u-%u", arg->index / 2, j);
            item->spec.idempotency_key = key;
            item->spec.body_hash = "same";
        }
        item->err = rsdb_committer_create(arg->committer, item);
    }
    return NULL;
}

/* Many threads at once: every call returns with its own job committed (readable by another
 * connection at once), a shared key yields one job, and nothing else is lost or duplicated. */
static void test_committer_threads(void **state)
{
    db_tmpdir *t = *state;
    rsdb_committer *committer = NULL;
    char err[256];
    assert_int_equal(rsdb_committer_open(t->path, NULL, &committer, err, sizeof(err)), RSDB_OK);
    static thread_arg args[THREADS];
    pthread_t threads[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        args[i].committer = committer;
        args[i].index = i;
        assert_int_equal(pthread_create(&threads[i], NULL, creator, &args[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);

    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = RSDB_ROLE_READER;
    rsdb *reader = NULL;
    assert_int_equal(rsdb_open(t->path, &opt, &reader, err, sizeof(err)), RSDB_OK);
    unsigned existing = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        for (unsigned j = 0; j < PER_THREAD; j++) {
            rsdb_create *item = &args[i].items[j];
            assert_int_equal(item->err, RSDB_OK);
            existing += (unsigned)item->existing;
            rsdb_job *job = NULL;
            assert_int_equal(rsdb_job_get(reader, item->id, &job), RSDB_OK);
            rsdb_job_free(job);
            if (j % 3 == 0)
                assert_string_equal(item->id, args[i ^ 1u].items[j].id);
        }
    }
    unsigned keyed = THREADS * ((PER_THREAD + 2) / 3);
    assert_int_equal(existing, keyed / 2);
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM jobs"),
                     THREADS * PER_THREAD - keyed / 2);
    rsdb_committer_stats st;
    rsdb_committer_stats_get(committer, &st);
    assert_int_equal(st.items, THREADS * PER_THREAD);
    assert_true(st.commits >= 1 && st.commits <= st.items);
    rsdb_free(reader);
    rsdb_committer_free(committer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_items_answer_alone, db_tmpdir_setup,
                                        db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_batch_store_completed, db_tmpdir_setup,
                                        db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_batch_arguments, db_tmpdir_setup, db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_committer_threads, db_tmpdir_setup,
                                        db_tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
