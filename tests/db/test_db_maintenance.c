/*
 * Tests of the job store over time and at the edge of the disk: pruning and checkpoints keep
 * the WAL and the database file bounded through many rounds of work, and running out of space
 * is reported (RSDB_EFULL), loses nothing that was committed, and passes once space returns.
 *
 * Why this file exists: a service that runs for months must not grow without bound, and a full
 * disk must be a clear, recoverable error rather than corruption or a silent loss. The disk is
 * made full for real: the test mounts a tiny tmpfs in a mount namespace of its own (ENOSPC from
 * the kernel, as on a full disk) and grows it afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "risksim/db.h"
#include "tmpdir.h"

static const char *const REQUEST = "{\"trials\":1000}";
static const char *const PROGRESS = "{\"progress\":0.5,\"trialsDone\":500,\"trials\":1000}";

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* One round of a job's life for n jobs: enqueue, claim, three progress writes, complete. */
static void run_jobs(rsdb *db, unsigned n, int64_t now)
{
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(rsdb_job_enqueue(db, &spec, 0, now, id, NULL), RSDB_OK);
    for (unsigned i = 0; i < n; i++) {
        rsdb_job *job = NULL;
        assert_int_equal(rsdb_job_claim(db, "w", 60000, now, &job), RSDB_OK);
        for (int p = 0; p < 3; p++)
            assert_int_equal(
                rsdb_job_progress(db, job->id, "w", 250u * (unsigned)p, 60000, PROGRESS, now, NULL),
                RSDB_OK);
        assert_int_equal(rsdb_job_complete(db, job->id, "w", "{\"ok\":true}", now), RSDB_OK);
        rsdb_job_free(job);
    }
}

#define ROUNDS 24
#define JOBS_PER_ROUND 60
#define WARM_UP 4

/* Round after round of the same work, each followed by the maintenance thread's prune
 * (retention: one round) and checkpoint: the WAL is emptied every time and never holds more
 * than a round's writes, and the file stops growing once pruned pages are being reused. */
static void test_prune_and_checkpoint_keep_files_bounded(void **state)
{
    db_tmpdir *t = *state;
    rsdb *db = db_test_open(t->path, RSDB_ROLE_WORKER);
    int64_t wal_first = 0, wal_max = 0, file_warm = 0, file_max = 0;
    size_t deleted_total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int64_t now = 1000000 + (int64_t)round * 1000;
        run_jobs(db, JOBS_PER_ROUND, now);
        size_t deleted = 0;
        assert_int_equal(rsdb_prune(db, now, 999, 25, &deleted), RSDB_OK);
        assert_int_equal(deleted, round == 0 ? 0 : JOBS_PER_ROUND);
        deleted_total += deleted;
        int64_t before = 0, after = -1;
        int done = 0;
        assert_int_equal(rsdb_checkpoint(db, 0, &before, &after, &done), RSDB_OK);
        assert_int_equal(done, 1);
        assert_int_equal(after, 0);
        if (round == 0)
            wal_first = before;
        wal_max = before > wal_max ? before : wal_max;
        int64_t size = file_size(t->path);
        if (round == WARM_UP)
            file_warm = size;
        if (round >= WARM_UP)
            file_max = size > file_max ? size : file_max;
    }
    /* Two rounds of jobs at most are stored at any time. */
    assert_int_equal(deleted_total, (ROUNDS - 1) * JOBS_PER_ROUND);
    rsdb_stats st;
    assert_int_equal(rsdb_stats_get(db, 0, &st), RSDB_OK);
    assert_int_equal(st.jobs[RSDB_COMPLETED], JOBS_PER_ROUND);
    /* A round's WAL is the same work every time (plus the prune's deletions). */
    assert_true(wal_max <= 2 * wal_first);
    /* After warm-up the file grows by less than a quarter over twenty rounds. */
    assert_true(file_warm > 0);
    assert_true(file_max * 4 <= file_warm * 5);
    char report[256];
    assert_int_equal(rsdb_check(db, report, sizeof(report)), RSDB_OK);
    rsdb_free(db);
}

/* ------------------------------------------------------------------------------------------ */

/* A full disk (a 384 KiB tmpfs) is RSDB_EFULL on an accepting connection; nothing committed is
 * lost, the file stays sound, and once space returns (the tmpfs grows) the next enqueue
 * succeeds. */
static void test_disk_full_is_reported_and_recoverable(void **state)
{
    db_tmpdir *t = *state;
    db_private_mounts();
    if (mount("risksim-test", t->dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=384k") != 0)
        fail_msg("mount tmpfs on %s: %s", t->dir, strerror(errno));
    rsdb *db = db_test_open(t->path, RSDB_ROLE_ACCEPT);
    char *req = db_padded_request(8192);
    rsdb_job_spec big = {req, 1000, NULL, NULL};
    char id[RSDB_ID_SIZE];
    unsigned accepted = 0;
    rsdb_err err = RSDB_OK;
    for (int i = 0; i < 10000 && err == RSDB_OK; i++) {
        err = rsdb_job_enqueue(db, &big, 0, 5000 + i, id, NULL);
        accepted += err == RSDB_OK;
    }
    free(req);
    assert_int_equal(err, RSDB_EFULL);
    assert_true(accepted > 5);
    assert_non_null(strstr(rsdb_errmsg(db), "full"));
    /* Still full: a small job may or may not fit, but nothing is half-written. */
    rsdb_job_spec small = {REQUEST, 1000, NULL, NULL};
    err = rsdb_job_enqueue(db, &small, 0, 20000, id, NULL);
    assert_true(err == RSDB_OK || err == RSDB_EFULL);
    accepted += err == RSDB_OK;

    rsdb_stats st;
    assert_int_equal(rsdb_stats_get(db, 0, &st), RSDB_OK);
    assert_int_equal(st.jobs[RSDB_QUEUED], accepted); /* every accepted job, nothing more */
    assert_int_equal(db_sql_int(t->path, "SELECT count(*) FROM events"), accepted);

    /* Space returns. */
    if (mount("risksim-test", t->dir, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, "size=8m") != 0)
        fail_msg("remount: %s", strerror(errno));
    assert_int_equal(rsdb_job_enqueue(db, &small, 0, 30000, id, NULL), RSDB_OK);
    char report[256];
    assert_int_equal(rsdb_check(db, report, sizeof(report)), RSDB_OK);
    rsdb_free(db);
    /* The tmpfs goes with its files; the teardown removes the directory under it. */
    if (umount(t->dir) != 0)
        fail_msg("umount: %s", strerror(errno));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prune_and_checkpoint_keep_files_bounded,
                                        db_tmpdir_setup, db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_is_reported_and_recoverable, db_tmpdir_setup,
                                        db_tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
