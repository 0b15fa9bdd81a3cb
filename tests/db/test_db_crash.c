/*
 * Crash-safety test of librisksim-db: a writer process is killed with SIGKILL at random points,
 * many times over, on one database file.
 *
 * Why this file exists: risksim promises that a job it accepted is never lost and that a job
 * whose worker died is run again. Both rest on the job store surviving a process killed in the
 * middle of any write: SQLite's WAL must roll back the unfinished transaction, every state
 * change must have committed together with its event, and the reaper must find every job the
 * dead worker held. This test kills a child doing claims, progress writes, completions, failures
 * and enqueues after a pseudo-random delay (a fixed seed, so a failure can be reproduced), then
 * checks the file: it opens, PRAGMA integrity_check is ok, every job the child reported as
 * committed exists, every job is in a valid state whose event log tells a consistent story with
 * no hole, and the reaper re-queues every job left running. The same file carries over from
 * round to round, so later rounds work on what earlier crashes left behind (the first round may
 * even kill the child while it creates the schema). The outcome does not depend on where the
 * kill lands. Under valgrind (RISKSIM_UNDER_VALGRIND set) there are fewer rounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
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

static const char *const REQUEST = "{\"trials\":100,\"seed\":7}";

/* The clock of round r starts at ROUND_BASE + r * ROUND_SPAN; the child never uses more than
 * CHILD_MAX_OPS milliseconds of it, and its leases last LEASE_MS, so the parent's reaper at
 * REAP_AT into the round is past every lease taken in that round and before the next round. */
#define ROUND_BASE INT64_C(1000000000)
#define ROUND_SPAN INT64_C(100000000)
#define LEASE_MS INT64_C(1000000)
#define REAP_AT INT64_C(50000000)
#define CHILD_MAX_OPS 200000

/* What the child tells the parent, one record per committed write, written after the commit. */
typedef struct report {
    char kind; /* 'E' enqueued, 'C' claimed, 'D' completed or failed */
    char id[RSDB_ID_SIZE];
} report;

/* A small deterministic PRNG (xorshift64*), so that each run kills at the same delays. */
static uint64_t prng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* Nonzero when the test runs under valgrind and must keep its work small. */
static int under_valgrind(void)
{
    return getenv("RISKSIM_UNDER_VALGRIND") != NULL;
}

/* Writes one report to fd; returns 0 or -1. A report is far below PIPE_BUF, so it reaches the
 * pipe whole or not at all, even when the writer is killed. */
static int send_report(int fd, char kind, const char *id)
{
    report r;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    memcpy(r.id, id, RSDB_ID_SIZE);
    for (;;) {
        ssize_t n = write(fd, &r, sizeof(r));
        if (n == (ssize_t)sizeof(r))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* The body of the child of round `round`: opens the database (an accept connection for
 * enqueues and a worker connection for the rest, as the responder does) and performs a
 * pseudo-random mix of writes, reporting each one after it committed, until it is killed or
 * has done CHILD_MAX_OPS operations. Returns its exit status: 0, or the rsdb_err (+ 10) of an
 * unexpected failure. */
static int crash_child(const char *path, int round, int fd)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    opt.role = RSDB_ROLE_ACCEPT;
    rsdb *accept = NULL;
    rsdb_err err = rsdb_open(path, &opt, &accept, NULL, 0);
    if (err != RSDB_OK)
        return 10 + (int)err;
    opt.role = RSDB_ROLE_WORKER;
    rsdb *worker = NULL;
    err = rsdb_open(path, &opt, &worker, NULL, 0);
    if (err != RSDB_OK) {
        rsdb_free(accept);
        return 10 + (int)err;
    }
    char owner[32];
    snprintf(owner, sizeof(owner), "crash-%d", round);
    uint64_t rng = UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(round + 1);
    enum { HELD_MAX = 4 };
    char held[HELD_MAX][RSDB_ID_SIZE];
    uint64_t done[HELD_MAX] = {0};
    int nheld = 0;
    int status = 0;
    const int64_t base = ROUND_BASE + round * ROUND_SPAN;
    for (int op = 0; op < CHILD_MAX_OPS && status == 0; op++) {
        const int64_t now = base + op;
        const unsigned pick = (unsigned)(prng_next(&rng) % 100);
        if (pick < 30 || (nheld == 0 && pick < 60)) {
            rsdb_job_spec spec = {REQUEST, 100, NULL, NULL};
            char id[RSDB_ID_SIZE];
            err = rsdb_job_enqueue(accept, &spec, 0, now, id, NULL);
            if (err != RSDB_OK || send_report(fd, 'E', id) != 0)
                status = 10 + (int)err;
        } else if (pick < 55 || nheld == 0) {
            if (nheld == HELD_MAX)
                continue;
            rsdb_job *job = NULL;
            err = rsdb_job_claim(worker, owner, LEASE_MS, now, &job);
            if (err == RSDB_EEMPTY)
                continue;
            if (err != RSDB_OK) {
                status = 10 + (int)err;
                break;
            }
            memcpy(held[nheld], job->id, RSDB_ID_SIZE);
            done[nheld++] = 0;
            if (send_report(fd, 'C', job->id) != 0)
                status = 1;
            rsdb_job_free(job);
        } else if (pick < 88) {
            const int h = (int)(prng_next(&rng) % (uint64_t)nheld);
            done[h] += 1 + prng_next(&rng) % 10;
            char data[48];
            snprintf(data, sizeof(data), "{\"trialsDone\":%llu}", (unsigned long long)done[h]);
            err = rsdb_job_progress(worker, held[h], owner, done[h], LEASE_MS, data, now, NULL);
            if (err != RSDB_OK)
                status = 10 + (int)err;
        } else {
            const int h = (int)(prng_next(&rng) % (uint64_t)nheld);
            if (pick < 96)
                err = rsdb_job_complete(worker, held[h], owner, "{\"mean\":1.5}", now);
            else
                err =
                    rsdb_job_fail(worker, held[h], owner, "engine", "simulated failure", "{}", now);
            if (err != RSDB_OK || send_report(fd, 'D', held[h]) != 0) {
                status = 10 + (int)err;
                break;
            }
            memcpy(held[h], held[nheld - 1], RSDB_ID_SIZE);
            done[h] = done[nheld - 1];
            nheld--;
        }
    }
    rsdb_free(worker);
    rsdb_free(accept);
    return status;
}

/* Everything the children reported, in the order read. */
typedef struct reports {
    report *items;
    size_t count, cap;
} reports;

/* Reads one report from fd and appends it to *out. Returns 1, or 0 at end of file. */
static int read_report(int fd, reports *out)
{
    report r;
    ssize_t n;
    while ((n = read(fd, &r, sizeof(r))) < 0 && errno == EINTR) {
    }
    assert_true(n >= 0);
    if (n == 0)
        return 0;
    assert_int_equal(n, (ssize_t)sizeof(r)); /* records are atomic */
    assert_true(r.kind == 'E' || r.kind == 'C' || r.kind == 'D');
    assert_int_equal(r.id[RSDB_ID_LEN], '\0');
    if (out->count == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 256;
        out->items = realloc(out->items, out->cap * sizeof(*out->items));
        assert_non_null(out->items);
    }
    out->items[out->count++] = r;
    return 1;
}

/* Runs one SQL statement with SQLite directly and returns its first column as text in buf. */
static void sql_text(const char *path, const char *sql, char *buf, size_t len)
{
    sqlite3 *conn = NULL;
    assert_int_equal(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    assert_int_equal(sqlite3_prepare_v2(conn, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(stmt, 0);
    snprintf(buf, len, "%s", t != NULL ? (const char *)t : "(null)");
    sqlite3_finalize(stmt);
    sqlite3_close(conn);
}

/* Whether a status event's data says the given state. */
static int status_is(const rsdb_event *ev, const char *state)
{
    char want[48];
    snprintf(want, sizeof(want), "\"status\":\"%s\"", state);
    return strstr(ev->data, want) != NULL;
}

/* Replays a job's event log as a state machine and asserts that it is a story the library can
 * have written with no event missing: queued first; running only after queued; progress only
 * while running; complete / error only from running; queued again only from running (the
 * reaper); seqs strictly increasing; the state reached is the stored state; one claim (running
 * status) per attempt, since the child never releases. */
static void check_job_events(rsdb *db, const rsdb_job *job)
{
    rsdb_event_list ev;
    assert_int_equal(rsdb_events_job(db, job->id, 0, RSDB_EVENTS_MAX, &ev), RSDB_OK);
    assert_true(ev.count >= 1);
    rsdb_state s = RSDB_QUEUED;
    uint32_t claims = 0;
    for (size_t i = 0; i < ev.count; i++) {
        const rsdb_event *e = &ev.items[i];
        assert_string_equal(e->job_id, job->id);
        if (i > 0)
            assert_true(e->seq > ev.items[i - 1].seq);
        if (i == 0) {
            assert_string_equal(e->type, "status");
            assert_true(status_is(e, "queued"));
            continue;
        }
        if (strcmp(e->type, "status") == 0 && status_is(e, "running")) {
            assert_int_equal(s, RSDB_QUEUED);
            s = RSDB_RUNNING;
            claims++;
        } else if (strcmp(e->type, "status") == 0 && status_is(e, "queued")) {
            assert_int_equal(s, RSDB_RUNNING);
            s = RSDB_QUEUED;
        } else if (strcmp(e->type, "progress") == 0) {
            assert_int_equal(s, RSDB_RUNNING);
        } else if (strcmp(e->type, "complete") == 0) {
            assert_int_equal(s, RSDB_RUNNING);
            s = RSDB_COMPLETED;
        } else if (strcmp(e->type, "error") == 0) {
            assert_int_equal(s, RSDB_RUNNING);
            s = RSDB_FAILED;
        } else {
            fail_msg("job %s: unexpected event %s %s", job->id, e->type, e->data);
        }
    }
    assert_int_equal(s, job->state);
    assert_int_equal(claims, job->attempts);
    rsdb_event_list_clear(&ev);
}

/* Finds the job with id in list, or NULL. */
static const rsdb_job *find_job(const rsdb_job *jobs, size_t count, const char *id)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(jobs[i].id, id) == 0)
            return &jobs[i];
    return NULL;
}

/* Reads every job, page by page, into one array (free with free_jobs). */
static rsdb_job *all_jobs(rsdb *db, size_t *count)
{
    rsdb_job *jobs = NULL;
    size_t n = 0;
    int64_t before_ms = 0;
    char before_id[RSDB_ID_SIZE] = "";
    for (;;) {
        rsdb_job_list page;
        assert_int_equal(
            rsdb_job_list_page(db, NULL, before_ms, n ? before_id : NULL, RSDB_LIST_MAX, &page),
            RSDB_OK);
        if (page.count == 0) {
            rsdb_job_list_clear(&page);
            break;
        }
        jobs = realloc(jobs, (n + page.count) * sizeof(*jobs));
        assert_non_null(jobs);
        memcpy(jobs + n, page.items, page.count * sizeof(*jobs));
        n += page.count;
        before_ms = page.items[page.count - 1].created_ms;
        memcpy(before_id, page.items[page.count - 1].id, RSDB_ID_SIZE);
        free(page.items); /* the strings now belong to jobs */
    }
    *count = n;
    return jobs;
}

static void free_jobs(rsdb_job *jobs, size_t count)
{
    rsdb_job_list list = {jobs, count};
    rsdb_job_list_clear(&list);
}

/* Checks the database after the child of `round` was killed, given what the children of this
 * and every earlier round reported (a report stays true: nothing is pruned here), then runs
 * the reaper past every lease and checks that it re-queued exactly the jobs left running.
 * Returns the number of jobs re-queued. */
static size_t check_after_kill(const fixture *fx, int round, const reports *rep)
{
    rsdb_options opt;
    rsdb_options_default(&opt);
    rsdb *db = NULL;
    char err[256] = "";
    rsdb_err rc = rsdb_open(fx->path, &opt, &db, err, sizeof(err));
    if (rc != RSDB_OK)
        fail_msg("round %d: rsdb_open after the kill: %s: %s", round, rsdb_strerror(rc), err);

    char ok[256];
    sql_text(fx->path, "PRAGMA integrity_check", ok, sizeof(ok));
    if (strcmp(ok, "ok") != 0)
        fail_msg("round %d: integrity_check: %s", round, ok);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    assert_int_equal(db_sql_int(fx->path, "PRAGMA user_version"), RSDB_SCHEMA_VERSION);

    size_t count = 0;
    rsdb_job *jobs = all_jobs(db, &count);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs"), (int64_t)count);

    /* Every report of every round names a job that exists, in a state the report allows. A
     * report is written after its commit, so a kill can lose a report but never the write
     * before it. */
    for (size_t i = 0; i < rep->count; i++) {
        const rsdb_job *job = find_job(jobs, count, rep->items[i].id);
        if (job == NULL)
            fail_msg("round %d: reported job %s (%c) is lost", round, rep->items[i].id,
                     rep->items[i].kind);
        if (rep->items[i].kind == 'C')
            assert_true(job->attempts >= 1);
        if (rep->items[i].kind == 'D')
            assert_true(job->state == RSDB_COMPLETED || job->state == RSDB_FAILED);
    }

    /* Every job is in a valid state, with the fields that state requires and a consistent log. */
    size_t running = 0;
    for (size_t i = 0; i < count; i++) {
        const rsdb_job *job = &jobs[i];
        assert_non_null(rsdb_state_name(job->state));
        assert_true(job->state == RSDB_QUEUED || job->state == RSDB_RUNNING ||
                    job->state == RSDB_COMPLETED || job->state == RSDB_FAILED);
        if (job->state == RSDB_RUNNING) {
            running++;
            assert_non_null(job->lease_owner);
            assert_true(job->lease_until_ms > 0);
        } else {
            assert_null(job->lease_owner);
        }
        assert_int_equal(job->finished_ms != 0,
                         job->state == RSDB_COMPLETED || job->state == RSDB_FAILED);
        check_job_events(db, job);
    }
    free_jobs(jobs, count);

    /* Event seqs over the whole database are strictly increasing and every event has a job. */
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events WHERE job_id NOT IN "
                                          "(SELECT id FROM jobs)"),
                     0);
    int64_t last = 0;
    size_t events = 0;
    for (;;) {
        rsdb_event_list ev;
        assert_int_equal(rsdb_events_all(db, last, RSDB_EVENTS_MAX, &ev), RSDB_OK);
        for (size_t i = 0; i < ev.count; i++) {
            assert_true(ev.items[i].seq > last);
            last = ev.items[i].seq;
        }
        events += ev.count;
        size_t got = ev.count;
        rsdb_event_list_clear(&ev);
        if (got == 0)
            break;
    }
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM events"), (int64_t)events);

    /* The reaper, past every lease of this round, re-queues every job left running. */
    const int64_t reap_now = ROUND_BASE + round * ROUND_SPAN + REAP_AT;
    size_t requeued = 0;
    for (;;) {
        size_t r = 0, failed = 0;
        assert_int_equal(rsdb_reap(db, reap_now, 1000000, &r, &failed), RSDB_OK);
        assert_int_equal(failed, 0);
        requeued += r;
        if (r == 0)
            break;
    }
    assert_int_equal(requeued, running);
    assert_int_equal(db_sql_int(fx->path, "SELECT count(*) FROM jobs WHERE state = 'running'"), 0);
    rsdb_free(db);
    return requeued;
}

/* Many rounds of: fork a writer, SIGKILL it after a pseudo-random delay, check the file. */
static void test_sigkill_rounds(void **state)
{
    fixture *fx = *state;
    const int rounds = under_valgrind() ? 15 : 50;
    /* Under valgrind the child is slower to start, so it gets longer before the kill. */
    const uint64_t max_delay_us = under_valgrind() ? 150000 : 20000;
    uint64_t rng = UINT64_C(20261122);
    size_t killed = 0, requeued = 0;
    reports rep = {0}; /* every round's reports: what one round committed must stay */
    for (int round = 0; round < rounds; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            int status = crash_child(fx->path, round, fds[1]);
            close(fds[1]);
            _exit(status);
        }
        close(fds[1]);
        /* Even rounds count the delay from the fork, so the kill may land in rsdb_open (in
         * round 0, while the schema is created); odd rounds from the child's first commit, so
         * that every run writes something however slow the machine (or valgrind) is. */
        if (round % 2 == 1)
            (void)read_report(fds[0], &rep);
        const uint64_t delay = prng_next(&rng) % (max_delay_us + 1);
        struct timespec t = {(time_t)(delay / 1000000), (long)(delay % 1000000) * 1000L};
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {
        }
        /* The child may block on a full pipe; it is killed all the same. */
        assert_int_equal(kill(pid, SIGKILL), 0);
        while (read_report(fds[0], &rep)) {
        }
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status)) {
            assert_int_equal(WTERMSIG(status), SIGKILL);
            killed++;
        } else {
            /* It finished its operations before the kill: that must have gone well. */
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        requeued += check_after_kill(fx, round, &rep);
    }
    const size_t total_reports = rep.count;
    free(rep.items);
    assert_true(killed > 0);
    assert_true(total_reports > 0); /* the children really wrote something */
    print_message("%d rounds, %zu killed mid-run, %zu committed writes reported, %zu jobs "
                  "re-queued by the reaper\n",
                  rounds, killed, total_reports, requeued);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_rounds, db_tmpdir_setup, db_tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
