/*
 * Tests of rsdb_backup: a copy taken while another connection keeps writing is a sound database
 * holding every job committed before the backup started; an existing destination (or a journal
 * left beside it) is refused and left untouched; a bad destination directory and a full disk are
 * clear errors that leave no partial copy behind; the copy is one self-contained file that opens
 * with rsdb_open at the current schema version, with the same jobs and events.
 *
 * Why this file exists: a backup is only worth something if it can be restored, and the moment
 * to learn that it cannot is not the restore. These tests restore (open and check) every copy
 * they make. The full disk is real: a small tmpfs mounted in the test's own mount namespace, as
 * in test_db_maintenance.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risksim/db.h"
#include "tmpdir.h"

static const char *const REQUEST = "{\"trials\":1000,\"seed\":1}";

/* Nonzero when the tests run under valgrind and must keep their work small. */
static int under_valgrind(void)
{
    return getenv("RISKSIM_UNDER_VALGRIND") != NULL;
}

static void path_in(const db_tmpdir *t, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", t->dir, name);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Creates n queued jobs of padded requests, created at now, RSDB_BATCH_MAX per transaction. */
static void fill(rsdb *db, size_t n, int64_t now)
{
    char *req = db_padded_request(2048);
    rsdb_create items[RSDB_BATCH_MAX];
    while (n > 0) {
        size_t k = n < RSDB_BATCH_MAX ? n : RSDB_BATCH_MAX;
        memset(items, 0, sizeof(items));
        for (size_t i = 0; i < k; i++) {
            items[i].spec.request = req;
            items[i].spec.trials = 1000;
            items[i].now_ms = now;
        }
        assert_int_equal(rsdb_job_create_batch(db, items, k), RSDB_OK);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(items[i].err, RSDB_OK);
        n -= k;
    }
    free(req);
}

/* One job in each state, created before any other job (times 1000 to 1004): ids[s] is the job in
 * state s. */
static void jobs_in_every_state(rsdb *db, char ids[5][RSDB_ID_SIZE])
{
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char queued[5][RSDB_ID_SIZE];
    for (int i = 0; i < 5; i++)
        assert_int_equal(rsdb_job_enqueue(db, &spec, 0, 1000 + i, queued[i], NULL), RSDB_OK);
    /* Claims take the oldest: 0 completes, 1 fails, 2 is cancelled while queued, 3 runs. */
    rsdb_job *job = NULL;
    assert_int_equal(rsdb_job_claim(db, "w", 600000, 1100, &job), RSDB_OK);
    assert_string_equal(job->id, queued[0]);
    assert_int_equal(rsdb_job_complete(db, job->id, "w", "{\"ok\":true}", 1101), RSDB_OK);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_claim(db, "w", 600000, 1102, &job), RSDB_OK);
    assert_string_equal(job->id, queued[1]);
    assert_int_equal(rsdb_job_fail(db, job->id, "w", "boom", "it failed",
                                   "{\"error\":{\"code\":\"boom\",\"message\":\"it failed\"}}",
                                   1103),
                     RSDB_OK);
    rsdb_job_free(job);
    assert_int_equal(rsdb_job_cancel(db, queued[2], 1104, NULL), RSDB_OK);
    assert_int_equal(rsdb_job_claim(db, "w", 600000, 1105, &job), RSDB_OK);
    assert_string_equal(job->id, queued[3]);
    rsdb_job_free(job);
    memcpy(ids[RSDB_COMPLETED], queued[0], RSDB_ID_SIZE);
    memcpy(ids[RSDB_FAILED], queued[1], RSDB_ID_SIZE);
    memcpy(ids[RSDB_CANCELLED], queued[2], RSDB_ID_SIZE);
    memcpy(ids[RSDB_RUNNING], queued[3], RSDB_ID_SIZE);
    memcpy(ids[RSDB_QUEUED], queued[4], RSDB_ID_SIZE);
}

static uint64_t total_jobs(rsdb *db)
{
    rsdb_stats st;
    assert_int_equal(rsdb_stats_get(db, 0, &st), RSDB_OK);
    uint64_t total = 0;
    for (int s = RSDB_QUEUED; s <= RSDB_CANCELLED; s++)
        total += st.jobs[s];
    return total;
}

/* Asserts that copy is a self-contained file in rollback mode (header bytes 18 and 19 are 1,
 * no -wal beside it), with the current schema version, and that it passes rsdb_check when opened
 * through the library. Returns the opened copy. */
static rsdb *open_checked_copy(const char *copy)
{
    unsigned char header[20];
    int fd = open(copy, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, header, sizeof(header)), (ssize_t)sizeof(header));
    assert_int_equal(close(fd), 0);
    assert_memory_equal(header, "SQLite format 3", 16);
    assert_int_equal(header[18], 1);
    assert_int_equal(header[19], 1);
    char wal[256];
    snprintf(wal, sizeof(wal), "%s-wal", copy);
    assert_false(exists(wal));
    assert_int_equal(db_sql_int(copy, "PRAGMA user_version"), RSDB_SCHEMA_VERSION);
    rsdb *db = db_test_open(copy, RSDB_ROLE_READER);
    char report[256];
    assert_int_equal(rsdb_check(db, report, sizeof(report)), RSDB_OK);
    return db;
}

/* ------------------------------------------------------------------------------------------ */

/* A writer thread with a connection of its own: enqueues jobs (each with its `status` event)
 * until told to stop. */
typedef struct writer {
    rsdb *db;
    atomic_int stop;
    atomic_long committed;
    atomic_int err; /* the rsdb_err that stopped it (RSDB_OK while it runs) */
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    int64_t now = 5000000;
    while (!atomic_load(&w->stop)) {
        char id[RSDB_ID_SIZE];
        rsdb_err err = rsdb_job_enqueue(w->db, &spec, 0, now++, id, NULL);
        if (err != RSDB_OK) {
            atomic_store(&w->err, (int)err);
            break;
        }
        atomic_fetch_add(&w->committed, 1);
    }
    return NULL;
}

/* Jobs in every state plus a few MiB of queued jobs; a thread keeps enqueueing through its own
 * connection before, during and after the backup. The copy passes rsdb_check, holds every job
 * committed before the backup started (in the state it had then) and nothing the source does not
 * hold; the writer never failed (no RSDB_EBUSY: a backup does not block writers). */
static void test_backup_while_another_connection_writes(void **state)
{
    db_tmpdir *t = *state;
    char copy[192];
    path_in(t, "copy.db", copy, sizeof(copy));
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    char ids[5][RSDB_ID_SIZE];
    jobs_in_every_state(db, ids);
    fill(db, under_valgrind() ? 600 : 1500, 2000); /* about 1 to 3 MiB: many steps of 256 pages */

    writer w = {.db = db_test_open(t->path, RSDB_ROLE_WORKER)};
    atomic_init(&w.stop, 0);
    atomic_init(&w.committed, 0);
    atomic_init(&w.err, RSDB_OK);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, writer_main, &w), 0);
    while (atomic_load(&w.committed) < 20 && atomic_load(&w.err) == RSDB_OK)
        sched_yield();

    uint64_t before = total_jobs(db);
    char errbuf[256] = "x";
    rsdb_err err = rsdb_backup(db, copy, errbuf, sizeof(errbuf));
    atomic_store(&w.stop, 1);
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (err != RSDB_OK)
        fail_msg("rsdb_backup: %s: %s", rsdb_strerror(err), errbuf);
    assert_string_equal(errbuf, "");
    assert_int_equal(atomic_load(&w.err), RSDB_OK);
    uint64_t after = total_jobs(db);

    rsdb *c = open_checked_copy(copy);
    uint64_t copied = total_jobs(c);
    assert_true(copied >= before);
    assert_true(copied <= after);
    for (int s = RSDB_QUEUED; s <= RSDB_CANCELLED; s++) {
        rsdb_job *job = NULL;
        assert_int_equal(rsdb_job_get(c, ids[s], &job), RSDB_OK);
        assert_int_equal(job->state, s);
        rsdb_job_free(job);
        assert_int_equal(db_event_count(c, ids[s]), db_event_count(db, ids[s]));
    }
    rsdb_free(c);
    rsdb_free(w.db);
    rsdb_free(db);
}

/* The copy opens through the library at the current schema version, with the same jobs, results
 * and events; the source is unchanged and still in WAL mode. */
static void test_copy_opens_with_same_schema_and_jobs(void **state)
{
    db_tmpdir *t = *state;
    char copy[192];
    path_in(t, "copy.db", copy, sizeof(copy));
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    char ids[5][RSDB_ID_SIZE];
    jobs_in_every_state(db, ids);
    char errbuf[256];
    assert_int_equal(rsdb_backup(db, copy, errbuf, sizeof(errbuf)), RSDB_OK);
    struct stat st;
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal(st.st_mode & 0077 & ~(mode_t)0040, 0); /* 0640 at most */

    rsdb *c = open_checked_copy(copy);
    rsdb_job *a = NULL, *b = NULL;
    assert_int_equal(rsdb_job_get(db, ids[RSDB_COMPLETED], &a), RSDB_OK);
    assert_int_equal(rsdb_job_get(c, ids[RSDB_COMPLETED], &b), RSDB_OK);
    assert_string_equal(a->request, b->request);
    assert_string_equal(a->result, b->result);
    assert_int_equal(a->finished_ms, b->finished_ms);
    rsdb_job_free(a);
    rsdb_job_free(b);
    rsdb_event_list ea, eb;
    assert_int_equal(rsdb_events_all(db, 0, RSDB_EVENTS_MAX, &ea), RSDB_OK);
    assert_int_equal(rsdb_events_all(c, 0, RSDB_EVENTS_MAX, &eb), RSDB_OK);
    assert_int_equal(ea.count, eb.count);
    for (size_t i = 0; i < ea.count; i++) {
        assert_int_equal(ea.items[i].seq, eb.items[i].seq);
        assert_string_equal(ea.items[i].data, eb.items[i].data);
    }
    rsdb_event_list_clear(&ea);
    rsdb_event_list_clear(&eb);
    /* The copy is usable: a job can be created in it. */
    char id[RSDB_ID_SIZE];
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    rsdb_free(c);
    c = db_test_open(copy, RSDB_ROLE_ACCEPT);
    assert_int_equal(rsdb_job_enqueue(c, &spec, 0, 9000, id, NULL), RSDB_OK);
    rsdb_free(c);
    assert_int_equal(total_jobs(db), 5);
    rsdb_free(db);
}

/* An existing destination is refused and left as it was; so is a destination whose -journal (or
 * -wal) is left over from an earlier database, and the destination is then not created. */
static void test_existing_destination_is_refused(void **state)
{
    db_tmpdir *t = *state;
    char copy[192], journal[208];
    path_in(t, "copy.db", copy, sizeof(copy));
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    FILE *f = fopen(copy, "w");
    assert_non_null(f);
    assert_true(fputs("keep me\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    char errbuf[256] = "";
    assert_int_equal(rsdb_backup(db, copy, errbuf, sizeof(errbuf)), RSDB_EOPEN);
    assert_non_null(strstr(errbuf, "already exists"));
    char text[32] = "";
    f = fopen(copy, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "keep me\n");
    assert_int_equal(unlink(copy), 0);

    snprintf(journal, sizeof(journal), "%s-journal", copy);
    f = fopen(journal, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rsdb_backup(db, copy, errbuf, sizeof(errbuf)), RSDB_EOPEN);
    assert_non_null(strstr(errbuf, "-journal"));
    assert_false(exists(copy));
    assert_true(exists(journal));
    rsdb_free(db);
}

/* A destination in a missing directory is RSDB_EOPEN naming the path; missing arguments are
 * RSDB_EINVAL. Nothing is created. */
static void test_bad_destination(void **state)
{
    db_tmpdir *t = *state;
    char copy[192];
    path_in(t, "no-such-dir/copy.db", copy, sizeof(copy));
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    char errbuf[256] = "";
    assert_int_equal(rsdb_backup(db, copy, errbuf, sizeof(errbuf)), RSDB_EOPEN);
    assert_non_null(strstr(errbuf, "no-such-dir"));
    assert_false(exists(copy));
    assert_int_equal(rsdb_backup(db, "", errbuf, sizeof(errbuf)), RSDB_EINVAL);
    assert_int_equal(rsdb_backup(db, NULL, NULL, 0), RSDB_EINVAL);
    assert_int_equal(rsdb_backup(NULL, copy, errbuf, sizeof(errbuf)), RSDB_EINVAL);
    rsdb_free(db);
}

/* A backup onto a full disk (a 256 KiB tmpfs, the source being over 1 MiB) is RSDB_EFULL and
 * leaves neither the copy nor its journal behind; the source is untouched. */
static void test_full_disk_leaves_no_partial_copy(void **state)
{
    db_tmpdir *t = *state;
    char full[192], copy[208], journal[224];
    path_in(t, "full", full, sizeof(full));
    snprintf(copy, sizeof(copy), "%s/copy.db", full);
    snprintf(journal, sizeof(journal), "%s-journal", copy);
    assert_int_equal(mkdir(full, 0700), 0);
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    fill(db, 600, 2000);
    db_private_mounts();
    if (mount("risksim-test", full, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k") != 0)
        fail_msg("mount tmpfs on %s: %s", full, strerror(errno));
    char errbuf[256] = "";
    rsdb_err err = rsdb_backup(db, copy, errbuf, sizeof(errbuf));
    int copy_left = exists(copy), journal_left = exists(journal);
    if (umount(full) != 0)
        fail_msg("umount: %s", strerror(errno));
    assert_int_equal(rmdir(full), 0);
    assert_int_equal(err, RSDB_EFULL);
    assert_true(errbuf[0] != '\0');
    assert_false(copy_left);
    assert_false(journal_left);
    assert_int_equal(total_jobs(db), 600);
    char report[256];
    assert_int_equal(rsdb_check(db, report, sizeof(report)), RSDB_OK);
    rsdb_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_while_another_connection_writes,
                                        db_tmpdir_setup, db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_copy_opens_with_same_schema_and_jobs, db_tmpdir_setup,
                                        db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_existing_destination_is_refused, db_tmpdir_setup,
                                        db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_destination, db_tmpdir_setup, db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_leaves_no_partial_copy, db_tmpdir_setup,
                                        db_tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
