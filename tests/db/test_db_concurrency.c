/*
 * Concurrency tests of librisksim-db: several processes on one database file at once.
 *
 * Why this file exists: the responder's workers are separate processes sharing one SQLite file,
 * and the bridge polls the event log while they write. docs/internals.md promises that a job is
 * claimed by exactly one worker, that SQLITE_BUSY never reaches a caller under ordinary
 * contention, and that a poller reading "all events after the last seq I saw" never misses or
 * repeats an event. test_db.c checks the transitions one at a time; this file checks those
 * promises with forked processes racing on a real file. Children never call cmocka (its state
 * belongs to the parent): they report through their exit status and a pipe, and the parent
 * checks. Under valgrind (RISKSIM_UNDER_VALGRIND set) the work is scaled down, never to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "risksim/db.h"
#include "tmpdir.h"

typedef db_tmpdir fixture;

static const char *const REQUEST = "{\"trials\":1000,\"seed\":1}";

/* Exit statuses of the children, so that a failure names its cause. RSDB errors are reported as
 * CHILD_RSDB_BASE + the rsdb_err, so RSDB_EBUSY is recognisable. */
enum {
    CHILD_OK = 0,
    CHILD_OPEN = 2,
    CHILD_PIPE = 3,
    CHILD_STATS = 4,
    CHILD_BUSY_COUNTED = 5,
    CHILD_LOST_LEASE = 6,
    CHILD_RSDB_BASE = 20
};

/* Nonzero when the tests run under valgrind and must keep their work (and children) small. */
static int under_valgrind(void)
{
    return getenv("RISKSIM_UNDER_VALGRIND") != NULL;
}

/* Sleeps about ms milliseconds (resuming after signals). */
static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* Enqueues count jobs through one connection (created times 0, 1, ...) and closes it. */
static void enqueue_jobs(const fixture *fx, int count)
{
    rsdb *db = db_test_open(fx->path, RSDB_ROLE_WORKER);
    rsdb_job_spec spec = {REQUEST, 1000, NULL, NULL};
    for (int i = 0; i < count; i++) {
        char id[RSDB_ID_SIZE];
        assert_int_equal(rsdb_job_enqueue(db, &spec, 0, i, id, NULL), RSDB_OK);
    }
    rsdb_free(db);
}

/* Writes all len bytes of buf to fd; returns 0, or -1 on failure. A write of at most PIPE_BUF
 * bytes to a pipe is atomic, so records of several children never interleave. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes from fd into buf; returns 1, 0 at a clean end of file, -1 on an error
 * or a torn record. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return got == 0 ? 0 : -1;
        got += (size_t)n;
    }
    return 1;
}

/* Waits for every child in pids and asserts that each exited with CHILD_OK; a child that
 * returned RSDB_EBUSY is named as such. */
static void reap_children(const pid_t *pids, int count)
{
    for (int w = 0; w < count; w++) {
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        if (!WIFEXITED(status))
            fail_msg("child %d died (signal %d)", w, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        int code = WEXITSTATUS(status);
        if (code == CHILD_RSDB_BASE + RSDB_EBUSY)
            fail_msg("child %d got RSDB_EBUSY from the library", w);
        if (code >= CHILD_RSDB_BASE)
            fail_msg("child %d got %s", w, rsdb_strerror((rsdb_err)(code - CHILD_RSDB_BASE)));
        assert_int_equal(code, CHILD_OK);
    }
}

/* Asserts, in a child, that the connection never gave up on a lock: returns CHILD_OK or the
 * exit status naming the failure. */
static int child_check_busy(rsdb *db)
{
    rsdb_stats s;
    if (rsdb_stats_get(db, 0, &s) != RSDB_OK)
        return CHILD_STATS;
    return s.busy_failures == 0 ? CHILD_OK : CHILD_BUSY_COUNTED;
}

/* ------------------------------------------------------------------------------------------ */

/* One claimed job as a claimer child reports it: the id with its NUL. */
typedef struct claim_record {
    char id[RSDB_ID_SIZE];
} claim_record;

/* The body of a claimer child: claims and completes with default options until the queue is
 * empty, writing each claimed id to fd. Returns the exit status. */
static int claimer_child(const fixture *fx, int w, int fd)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    rsdb *db = NULL;
    if (rsdb_open(fx->path, &opt, &db, NULL, 0) != RSDB_OK)
        return CHILD_OPEN;
    char owner[32];
    snprintf(owner, sizeof(owner), "claimer-%d", w);
    int status = CHILD_OK;
    for (;;) {
        rsdb_job *job = NULL;
        rsdb_err err = rsdb_job_claim(db, owner, 600000, 100000, &job);
        if (err == RSDB_EEMPTY)
            break;
        if (err != RSDB_OK) {
            status = CHILD_RSDB_BASE + (int)err;
            break;
        }
        claim_record rec;
        memcpy(rec.id, job->id, sizeof(rec.id));
        err = rsdb_job_complete(db, job->id, owner, "{\"ok\":true}", 100001);
        rsdb_job_free(job);
        if (err != RSDB_OK) {
            status = CHILD_RSDB_BASE + (int)err;
            break;
        }
        if (write_all(fd, &rec, sizeof(rec)) != 0) {
            status = CHILD_PIPE;
            break;
        }
    }
    if (status == CHILD_OK)
        status = child_check_busy(db);
    rsdb_free(db);
    return status;
}

static int compare_claims(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(claim_record));
}

/* Four processes claim and complete from one queue of 1,000 jobs at once (fewer under
 * valgrind): every job is claimed exactly once, completed with attempts = 1, none is lost, and
 * no process ever receives RSDB_EBUSY with the default lock options. */
static void test_claimers_share_one_queue(void **state)
{
    fixture *fx = *state;
    enum { WORKERS = 4 };
    const int jobs = under_valgrind() ? 300 : 1000;
    enqueue_jobs(fx, jobs);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(fds[0]);
            alarm(under_valgrind() ? 240 : 60); /* a hung child dies and fails the test */
            int status = claimer_child(fx, w, fds[1]);
            close(fds[1]);
            _exit(status);
        }
    }
    close(fds[1]);

    /* Read every record before waiting, so that no child can block on a full pipe. */
    claim_record *claims = calloc((size_t)jobs + 1, sizeof(*claims));
    assert_non_null(claims);
    size_t n = 0;
    int rc;
    claim_record rec;
    while ((rc = read_all(fds[0], &rec, sizeof(rec))) == 1) {
        assert_true(n < (size_t)jobs); /* more claims than jobs: some job claimed twice */
        claims[n++] = rec;
    }
    assert_int_equal(rc, 0);
    close(fds[0]);
    reap_children(pids, WORKERS);

    assert_int_equal(n, (size_t)jobs);
    qsort(claims, n, sizeof(*claims), compare_claims);
    for (size_t i = 1; i < n; i++)
        assert_true(memcmp(&claims[i - 1], &claims[i], sizeof(claims[i])) != 0);

    rsdb *db = db_test_open(fx->path, RSDB_ROLE_READER);
    for (size_t i = 0; i < n; i++) {
        rsdb_job *job = NULL;
        assert_int_equal(rsdb_job_get(db, claims[i].id, &job), RSDB_OK);
        assert_int_equal(job->state, RSDB_COMPLETED);
        assert_int_equal(job->attempts, 1);
        assert_null(job->lease_owner);
        rsdb_job_free(job);
    }
    rsdb_free(db);
    free(claims);

    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs WHERE state = 'completed' "
                                          "AND attempts = 1"),
                     jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'status' "
                                          "AND json_extract(data, '$.status') = 'running'"),
                     jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'complete'"),
                     jobs);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(DISTINCT job_id) FROM events "
                                          "WHERE type = 'complete'"),
                     jobs);
}

/* ------------------------------------------------------------------------------------------ */

/* The body of an appender child: claims jobs until the queue is empty and runs each one,
 * writing progress events, then completes it. Returns the exit status. */
static int appender_child(const fixture *fx, int w, int progress_per_job)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    rsdb *db = NULL;
    if (rsdb_open(fx->path, &opt, &db, NULL, 0) != RSDB_OK)
        return CHILD_OPEN;
    char owner[32];
    snprintf(owner, sizeof(owner), "appender-%d", w);
    int status = CHILD_OK;
    while (status == CHILD_OK) {
        rsdb_job *job = NULL;
        const int64_t start = 1000000;
        rsdb_err err = rsdb_job_claim(db, owner, 600000, start, &job);
        if (err == RSDB_EEMPTY)
            break;
        if (err != RSDB_OK) {
            status = CHILD_RSDB_BASE + (int)err;
            break;
        }
        for (int i = 1; i <= progress_per_job && status == CHILD_OK; i++) {
            char data[64];
            snprintf(data, sizeof(data), "{\"trialsDone\":%d,\"worker\":%d}", i, w);
            int cancel = 0;
            err = rsdb_job_progress(db, job->id, owner, (uint64_t)i, 600000, data, start + i,
                                    &cancel);
            if (err == RSDB_ELEASE)
                status = CHILD_LOST_LEASE;
            else if (err != RSDB_OK)
                status = CHILD_RSDB_BASE + (int)err;
        }
        if (status == CHILD_OK) {
            err = rsdb_job_complete(db, job->id, owner, "{\"ok\":true}",
                                    start + progress_per_job + 1);
            if (err != RSDB_OK)
                status = CHILD_RSDB_BASE + (int)err;
        }
        rsdb_job_free(job);
    }
    if (status == CHILD_OK)
        status = child_check_busy(db);
    rsdb_free(db);
    return status;
}

/* What the poller has seen so far. */
typedef struct poller {
    rsdb *db;
    int64_t last_seq;    /* the highest seq seen (0 before the first event) */
    int64_t *seen;       /* every seq seen, in the order seen */
    size_t count, cap;   /* entries in seen, and its capacity */
    int64_t dv;          /* the last data_version read */
    int have_dv;         /* 0 until the first data_version was read */
    size_t reads, skips; /* event queries run, and polls skipped as unchanged */
} poller;

/* One poll as the bridge does it: reads data_version, and only when it changed since the last
 * poll (or the previous page was full) reads the events after last_seq, page by page. Asserts
 * that every event has a seq above everything seen before, and records it. Returns the number
 * of new events. */
static size_t poll_once(poller *p)
{
    enum { PAGE = 97 }; /* small and odd, so that pages end anywhere */
    int64_t dv = 0;
    assert_int_equal(rsdb_data_version(p->db, &dv), RSDB_OK);
    if (p->have_dv && dv == p->dv) {
        p->skips++;
        return 0;
    }
    p->dv = dv;
    p->have_dv = 1;
    size_t fresh = 0;
    for (;;) {
        rsdb_event_list list;
        assert_int_equal(rsdb_events_all(p->db, p->last_seq, PAGE, &list), RSDB_OK);
        p->reads++;
        assert_true(list.count <= PAGE);
        for (size_t i = 0; i < list.count; i++) {
            assert_true(list.items[i].seq > p->last_seq);
            p->last_seq = list.items[i].seq;
            if (p->count == p->cap) {
                p->cap = p->cap ? p->cap * 2 : 1024;
                p->seen = realloc(p->seen, p->cap * sizeof(*p->seen));
                assert_non_null(p->seen);
            }
            p->seen[p->count++] = list.items[i].seq;
        }
        size_t got = list.count;
        fresh += got;
        rsdb_event_list_clear(&list);
        if (got < PAGE)
            return fresh;
    }
}

/* N processes append progress events while the parent polls every event after its last seen
 * seq, checking data_version first as the bridge does: the poller sees every event exactly
 * once, in strictly increasing seq order, and in the end has seen exactly the events stored. */
static void test_appenders_and_poller(void **state)
{
    fixture *fx = *state;
    enum { WORKERS = 4 };
    const int jobs = under_valgrind() ? 8 : 16;
    const int progress_per_job = under_valgrind() ? 60 : 250;
    enqueue_jobs(fx, jobs);

    poller p = {0};
    p.db = db_test_open(fx->path, RSDB_ROLE_READER);
    poll_once(&p); /* the enqueue events, before anyone appends */
    assert_int_equal(p.count, (size_t)jobs);
    /* An SQLite connection must not cross a fork (SQLite's own rule): close it, fork, reopen.
     * The poll state (last_seq) carries over, as it would in a restarted bridge. */
    rsdb_free(p.db);
    p.have_dv = 0;

    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            free(p.seen);
            alarm(under_valgrind() ? 240 : 60); /* a hung child dies and fails the test */
            _exit(appender_child(fx, w, progress_per_job));
        }
    }
    p.db = db_test_open(fx->path, RSDB_ROLE_READER);

    /* Poll while any child runs. */
    int running = WORKERS;
    int statuses[WORKERS];
    int done[WORKERS] = {0};
    while (running > 0) {
        if (poll_once(&p) == 0)
            sleep_ms(1);
        for (int w = 0; w < WORKERS; w++) {
            if (done[w])
                continue;
            pid_t r = waitpid(pids[w], &statuses[w], WNOHANG);
            assert_true(r >= 0);
            if (r == pids[w]) {
                done[w] = 1;
                running--;
            }
        }
    }
    for (int w = 0; w < WORKERS; w++) {
        assert_true(WIFEXITED(statuses[w]));
        if (WEXITSTATUS(statuses[w]) == CHILD_RSDB_BASE + RSDB_EBUSY)
            fail_msg("appender %d got RSDB_EBUSY from the library", w);
        assert_int_equal(WEXITSTATUS(statuses[w]), CHILD_OK);
    }
    /* Every writer has exited, so one more poll must see the rest; the one after it nothing. */
    poll_once(&p);
    assert_int_equal(poll_once(&p), 0);

    const size_t per_job = (size_t)progress_per_job + 3; /* queued, running, progress, complete */
    assert_int_equal(p.count, (size_t)jobs * per_job);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), (int64_t)p.count);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE type = 'progress'"),
                     (int64_t)jobs * progress_per_job);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs WHERE state = 'completed' "
                                          "AND attempts = 1"),
                     jobs);
    assert_true(p.reads > 1); /* the poll really ran alongside the writers */

    /* The seqs seen are exactly the seqs stored, in the same order. */
    sqlite3 *conn = NULL;
    assert_int_equal(sqlite3_open_v2(fx->path, &conn, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(conn, "SELECT seq FROM events ORDER BY seq", -1, &stmt, NULL),
        SQLITE_OK);
    size_t i = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        assert_true(i < p.count);
        assert_int_equal(sqlite3_column_int64(stmt, 0), p.seen[i]);
        i++;
    }
    assert_int_equal(i, p.count);
    sqlite3_finalize(stmt);
    sqlite3_close(conn);

    /* Per job, the progress events are in the order they were written. */
    rsdb_job_list list;
    assert_int_equal(rsdb_job_list_page(p.db, NULL, 0, NULL, RSDB_LIST_MAX, &list), RSDB_OK);
    assert_int_equal(list.count, (size_t)jobs);
    for (size_t j = 0; j < list.count; j++) {
        rsdb_event_list ev;
        assert_int_equal(rsdb_events_job(p.db, list.items[j].id, 0, RSDB_EVENTS_MAX, &ev), RSDB_OK);
        assert_int_equal(ev.count, per_job);
        for (size_t k = 1; k <= (size_t)progress_per_job; k++) {
            char want[32];
            snprintf(want, sizeof(want), "\"trialsDone\":%zu,", k);
            assert_string_equal(ev.items[k + 1].type, "progress");
            assert_non_null(strstr(ev.items[k + 1].data, want));
        }
        for (size_t k = 1; k < ev.count; k++)
            assert_true(ev.items[k].seq > ev.items[k - 1].seq);
        assert_string_equal(ev.items[ev.count - 1].type, "complete");
        rsdb_event_list_clear(&ev);
    }
    rsdb_job_list_clear(&list);
    rsdb_free(p.db);
    free(p.seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claimers_share_one_queue, db_tmpdir_setup,
                                        db_tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_appenders_and_poller, db_tmpdir_setup,
                                        db_tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
