/*
 * db_bench: throughput and poll cost of the SQLite job store (librisksim-db).
 *
 * Why this file exists: issue 3 asks for figures, recorded in docs/benchmarks.md, not timed
 * assertions. This program measures through the public header risksim/db.h only (no SQL here),
 * each part on its own fresh database file in a temporary directory:
 *
 *   1. enqueue throughput: jobs/s through the group committer from GROUP_THREADS threads
 *      (RSDB_ROLE_ACCEPT, synchronous=FULL: every commit is fsynced), then one job per commit on
 *      one connection with FULL and, for comparison, with synchronous=NORMAL;
 *   2. claim+complete throughput with 1 and 4 forked processes draining one queue;
 *   3. event append throughput: progress writes/s of one worker on one running job;
 *   4. the cost of one poll (rsdb_data_version + rsdb_events_all after the last seen seq) with
 *      nothing new and with one new event committed by another connection since the last poll;
 *   5. the WAL size after a period of mixed load (an enqueuer, two workers writing progress,
 *      a poller; --seconds, default 10; the figure is for 60), run twice: with no
 *      maintenance (SQLite's backstop checkpoint only), and with the maintenance thread's
 *      rsdb_checkpoint every 200 ms.
 *
 * It prints the targets beside the figures. Usage:
 *   db_bench [--jobs N] [--events N] [--polls N] [--seconds N] [--dir DIR]
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "risksim/db.h"

/* The targets (docs/benchmarks.md). */
#define TARGET_ENQUEUE_PER_S 5000.0
#define TARGET_APPEND_PER_S 20000.0
#define TARGET_IDLE_POLL_US 10.0

/* A small request, about the size of a typical simulation request's text. */
static const char bench_request[] =
    "{\"name\":\"bench\",\"trials\":100000,\"seed\":42,\"root\":{\"id\":\"r\",\"type\":\"leaf\","
    "\"frequency\":{\"type\":\"poisson\",\"lambda\":1.5},\"severity\":{\"type\":\"lognormal\","
    "\"lower\":1000,\"upper\":100000}}}";

/* Lease of the benchmark's workers: long enough never to expire during a run. */
#define BENCH_LEASE_MS 600000

/* Settings from the command line. */
typedef struct bench_config {
    unsigned long jobs;    /* jobs per enqueue and claim run */
    unsigned long events;  /* progress writes in the append run */
    unsigned long polls;   /* polls per poll measurement */
    unsigned long seconds; /* length of the mixed load */
    char dir[4096];        /* the temporary directory */
} bench_config;

/* Seconds on the monotonic clock. */
static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps about ms milliseconds (usleep is not in POSIX.1-2008). */
static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Milliseconds since the Unix epoch: the db library's clock. */
static int64_t epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

/* Size of a database path buffer: the directory, a short name and ".db". */
#define BENCH_PATH_SIZE 4200

/* Removes a database file and its -wal and -shm (ignoring errors). */
static void remove_db(const char path[BENCH_PATH_SIZE])
{
    char side[BENCH_PATH_SIZE + 8];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* Writes "<dir>/<name>.db" into buf and removes any file of that name and its -wal and -shm.
 * Returns 0, or -1 when the path does not fit. */
static int fresh_path(const bench_config *c, const char *name, char buf[BENCH_PATH_SIZE])
{
    int n = snprintf(buf, BENCH_PATH_SIZE, "%s/%s.db", c->dir, name);
    if (n < 0 || n >= BENCH_PATH_SIZE) {
        return -1;
    }
    remove_db(buf);
    return 0;
}

/* Opens path with role. Returns the connection, or NULL after printing why. */
static rsdb *open_db(const char *path, rsdb_role role)
{
    rsdb_options o;
    rsdb_options_default(&o);
    o.role = role;
    rsdb *db = NULL;
    char errbuf[256] = "";
    rsdb_err err = rsdb_open(path, &o, &db, errbuf, sizeof errbuf);
    if (err != RSDB_OK) {
        fprintf(stderr, "db_bench: open %s: %s: %s\n", path, rsdb_strerror(err), errbuf);
        return NULL;
    }
    return db;
}

/* Prints a failed call and returns -1. */
static int fail(rsdb *db, const char *what, rsdb_err err)
{
    fprintf(stderr, "db_bench: %s: %s%s%s\n", what, rsdb_strerror(err),
            db != NULL && rsdb_errmsg(db)[0] != '\0' ? ": " : "",
            db != NULL ? rsdb_errmsg(db) : "");
    return -1;
}

/* Enqueues n jobs (no queue limit). Stores the wall seconds in *secs when not NULL. Returns 0
 * or -1 after printing why. */
static int enqueue_n(rsdb *db, unsigned long n, double *secs)
{
    rsdb_job_spec spec = {.request = bench_request, .trials = 100000};
    char id[RSDB_ID_SIZE];
    double t0 = monotonic_seconds();
    for (unsigned long i = 0; i < n; i++) {
        rsdb_err err = rsdb_job_enqueue(db, &spec, 0, epoch_ms(), id, NULL);
        if (err != RSDB_OK) {
            return fail(db, "enqueue", err);
        }
    }
    if (secs != NULL) {
        *secs = monotonic_seconds() - t0;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * 1. Enqueue throughput
 * ------------------------------------------------------------------------------------------- */

/* Enqueues c->jobs jobs on a fresh database with role. Stores jobs/s in *rate. Returns 0/-1. */
static int bench_enqueue(const bench_config *c, rsdb_role role, const char *name, double *rate)
{
    char path[BENCH_PATH_SIZE];
    if (fresh_path(c, name, path) != 0) {
        return -1;
    }
    rsdb *db = open_db(path, role);
    if (db == NULL) {
        return -1;
    }
    double secs = 0.0;
    int rc = enqueue_n(db, c->jobs, &secs);
    rsdb_free(db);
    remove_db(path);
    *rate = secs > 0.0 ? (double)c->jobs / secs : 0.0;
    return rc;
}

/* Threads submitting through one group committer, as the responder's request threads do. */
#define GROUP_THREADS 8

typedef struct group_arg {
    rsdb_committer *committer;
    unsigned long n;
    int failed;
} group_arg;

static void *group_thread(void *varg)
{
    group_arg *arg = varg;
    for (unsigned long i = 0; i < arg->n; i++) {
        rsdb_create item = {.spec = {.request = bench_request, .trials = 100000}};
        item.now_ms = epoch_ms();
        rsdb_err err = rsdb_committer_create(arg->committer, &item);
        if (err != RSDB_OK) {
            fprintf(stderr, "db_bench: group enqueue: %s\n", rsdb_strerror(err));
            arg->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

/* Enqueues c->jobs jobs from GROUP_THREADS threads through one rsdb_committer (synchronous=FULL,
 * as every accepted job). Stores jobs/s in *rate and the mean jobs per commit in *batch.
 * Returns 0/-1. */
static int bench_group(const bench_config *c, double *rate, double *batch)
{
    char path[BENCH_PATH_SIZE];
    if (fresh_path(c, "enqueue_group", path) != 0) {
        return -1;
    }
    rsdb_committer *committer = NULL;
    char errbuf[256] = "";
    rsdb_err err = rsdb_committer_open(path, NULL, &committer, errbuf, sizeof errbuf);
    if (err != RSDB_OK) {
        fprintf(stderr, "db_bench: committer %s: %s\n", path, errbuf);
        return -1;
    }
    group_arg args[GROUP_THREADS];
    pthread_t threads[GROUP_THREADS];
    unsigned started = 0;
    int failed = 0;
    double t0 = monotonic_seconds();
    for (; started < GROUP_THREADS; started++) {
        args[started] = (group_arg){committer, c->jobs / GROUP_THREADS, 0};
        if (pthread_create(&threads[started], NULL, group_thread, &args[started]) != 0) {
            failed = 1;
            break;
        }
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        failed |= args[i].failed;
    }
    double secs = monotonic_seconds() - t0;
    rsdb_committer_stats st;
    rsdb_committer_stats_get(committer, &st);
    rsdb_committer_free(committer);
    remove_db(path);
    *rate = secs > 0.0 ? (double)st.items / secs : 0.0;
    *batch = st.commits > 0 ? (double)st.items / (double)st.commits : 0.0;
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * 2. Claim + complete with forked processes
 * ------------------------------------------------------------------------------------------- */

/* A claiming child: opens its own worker connection, waits for the start signal (the parent
 * closes the pipe), then claims and completes until the queue is empty. Exits 0, or 1 on any
 * error (an RSDB_EBUSY included: callers must never see one). */
static void claim_child(const char *path, int start_fd, unsigned index)
{
    rsdb *db = open_db(path, RSDB_ROLE_WORKER);
    char buf;
    char owner[64];
    snprintf(owner, sizeof owner, "bench:%ld:%u", (long)getpid(), index);
    if (read(start_fd, &buf, 1) < 0 || db == NULL) {
        _exit(1);
    }
    for (;;) {
        rsdb_job *job = NULL;
        rsdb_err err = rsdb_job_claim(db, owner, BENCH_LEASE_MS, epoch_ms(), &job);
        if (err == RSDB_EEMPTY) {
            break;
        }
        if (err != RSDB_OK) {
            fail(db, "claim", err);
            _exit(1);
        }
        err = rsdb_job_complete(db, job->id, owner, "{\"ok\":true}", epoch_ms());
        rsdb_job_free(job);
        if (err != RSDB_OK) {
            fail(db, "complete", err);
            _exit(1);
        }
    }
    rsdb_free(db);
    _exit(0);
}

/* Enqueues c->jobs jobs, then lets nproc forked children drain the queue. Stores jobs/s (from
 * the start signal to the last child's exit) in *rate and checks that every job completed.
 * The parent closes its connection before forking (SQLite connections must not cross a fork)
 * and opens a new one for the check. Returns 0/-1. */
static int bench_claim(const bench_config *c, unsigned nproc, double *rate)
{
    char path[BENCH_PATH_SIZE];
    char name[32];
    snprintf(name, sizeof name, "claim%u", nproc);
    if (fresh_path(c, name, path) != 0) {
        return -1;
    }
    rsdb *db = open_db(path, RSDB_ROLE_WORKER);
    int rc = db != NULL ? enqueue_n(db, c->jobs, NULL) : -1;
    rsdb_free(db);
    int start[2];
    if (rc != 0 || pipe(start) != 0) {
        return -1;
    }
    pid_t pids[8];
    unsigned started = 0;
    fflush(NULL);
    for (; started < nproc && started < 8; started++) {
        pid_t pid = fork();
        if (pid < 0) {
            break;
        }
        if (pid == 0) {
            close(start[1]);
            claim_child(path, start[0], started);
        }
        pids[started] = pid;
    }
    close(start[0]);
    sleep_ms(200); /* let every child open its connection */
    double t0 = monotonic_seconds();
    close(start[1]);
    int bad = started != nproc;
    for (unsigned i = 0; i < started; i++) {
        int status = 0;
        if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            bad = 1;
        }
    }
    double secs = monotonic_seconds() - t0;
    rsdb_stats s;
    db = open_db(path, RSDB_ROLE_READER);
    rsdb_err err = db != NULL ? rsdb_stats_get(db, epoch_ms(), &s) : RSDB_EOPEN;
    if (err != RSDB_OK) {
        bad = fail(db, "stats", err);
    } else if (s.jobs[RSDB_COMPLETED] != c->jobs) {
        fprintf(stderr, "db_bench: %llu of %lu jobs completed\n",
                (unsigned long long)s.jobs[RSDB_COMPLETED], c->jobs);
        bad = 1;
    }
    rsdb_free(db);
    remove_db(path);
    *rate = secs > 0.0 ? (double)c->jobs / secs : 0.0;
    return bad ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * 3. Event appends and 4. polls
 * ------------------------------------------------------------------------------------------- */

/* Enqueues and claims one job on db for owner; writes its id to id. Returns 0/-1. */
static int one_running_job(rsdb *db, const char *owner, char id[RSDB_ID_SIZE])
{
    if (enqueue_n(db, 1, NULL) != 0) {
        return -1;
    }
    rsdb_job *job = NULL;
    rsdb_err err = rsdb_job_claim(db, owner, BENCH_LEASE_MS, epoch_ms(), &job);
    if (err != RSDB_OK) {
        return fail(db, "claim", err);
    }
    memcpy(id, job->id, RSDB_ID_SIZE);
    rsdb_job_free(job);
    return 0;
}

/* One progress write (one event) on a running job. Returns 0/-1. */
static int progress_once(rsdb *db, const char *id, const char *owner, uint64_t i)
{
    char data[64];
    snprintf(data, sizeof data, "{\"trialsDone\":%llu}", (unsigned long long)i);
    rsdb_err err = rsdb_job_progress(db, id, owner, i, BENCH_LEASE_MS, data, epoch_ms(), NULL);
    return err == RSDB_OK ? 0 : fail(db, "progress", err);
}

/* Writes c->events progress events on one job. Stores writes/s in *rate. Returns 0/-1. */
static int bench_append(const bench_config *c, double *rate)
{
    char path[BENCH_PATH_SIZE];
    char id[RSDB_ID_SIZE];
    if (fresh_path(c, "append", path) != 0) {
        return -1;
    }
    rsdb *db = open_db(path, RSDB_ROLE_WORKER);
    int rc = db != NULL ? one_running_job(db, "bench", id) : -1;
    double t0 = monotonic_seconds();
    for (unsigned long i = 1; rc == 0 && i <= c->events; i++) {
        rc = progress_once(db, id, "bench", i);
    }
    double secs = monotonic_seconds() - t0;
    rsdb_free(db);
    remove_db(path);
    *rate = secs > 0.0 ? (double)c->events / secs : 0.0;
    return rc;
}

/* Poll figures in microseconds. */
typedef struct poll_figures {
    double version_idle_us; /* rsdb_data_version alone, nothing new */
    double idle_us;         /* data_version + events_all, nothing new */
    double fresh_us;        /* data_version + events_all, one new event from another conn */
} poll_figures;

/* One poll as the bridge makes it: data_version, then the events after *last_seq (limit 1000),
 * advancing *last_seq. Returns the number of events read, or -1. */
static long poll_once(rsdb *db, int64_t *version, int64_t *last_seq)
{
    rsdb_event_list ev = {0};
    rsdb_err err = rsdb_data_version(db, version);
    if (err == RSDB_OK) {
        err = rsdb_events_all(db, *last_seq, 1000, &ev);
    }
    if (err != RSDB_OK) {
        return fail(db, "poll", err);
    }
    long n = (long)ev.count;
    if (ev.count > 0) {
        *last_seq = ev.items[ev.count - 1].seq;
    }
    rsdb_event_list_clear(&ev);
    return n;
}

/* Measures the poll on a database holding some events: c->polls polls with nothing new, then
 * c->polls polls each preceded (outside the timing) by one progress write of another
 * connection. Returns 0/-1. */
static int bench_poll(const bench_config *c, poll_figures *f)
{
    char path[BENCH_PATH_SIZE];
    char id[RSDB_ID_SIZE];
    if (fresh_path(c, "poll", path) != 0) {
        return -1;
    }
    rsdb *writer = open_db(path, RSDB_ROLE_WORKER);
    rsdb *reader = writer != NULL ? open_db(path, RSDB_ROLE_READER) : NULL;
    int rc = reader != NULL ? one_running_job(writer, "bench", id) : -1;
    uint64_t done = 0;
    for (int i = 0; rc == 0 && i < 1000; i++) {
        rc = progress_once(writer, id, "bench", ++done);
    }
    int64_t version = 0, last_seq = 0;
    while (rc == 0 && poll_once(reader, &version, &last_seq) > 0) {
        /* catch up with the history first */
    }

    double t0 = monotonic_seconds();
    for (unsigned long i = 0; rc == 0 && i < c->polls; i++) {
        rc = rsdb_data_version(reader, &version) == RSDB_OK ? 0 : -1;
    }
    f->version_idle_us = (monotonic_seconds() - t0) * 1e6 / (double)c->polls;

    t0 = monotonic_seconds();
    for (unsigned long i = 0; rc == 0 && i < c->polls; i++) {
        rc = poll_once(reader, &version, &last_seq) == 0 ? 0 : -1;
    }
    f->idle_us = (monotonic_seconds() - t0) * 1e6 / (double)c->polls;

    double total = 0.0;
    for (unsigned long i = 0; rc == 0 && i < c->polls; i++) {
        rc = progress_once(writer, id, "bench", ++done);
        double t1 = monotonic_seconds();
        if (rc == 0 && poll_once(reader, &version, &last_seq) != 1) {
            fprintf(stderr, "db_bench: a poll after one write did not read one event\n");
            rc = -1;
        }
        total += monotonic_seconds() - t1;
    }
    f->fresh_us = total * 1e6 / (double)c->polls;
    rsdb_free(reader);
    rsdb_free(writer);
    remove_db(path);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * 5. Mixed load
 * ------------------------------------------------------------------------------------------- */

/* Queue limit of the mixed load's enqueuer: it waits 1 ms when the queue is full. */
#define MIXED_QUEUE_SIZE 100u

/* Progress writes per job in the mixed load. */
#define MIXED_PROGRESS_PER_JOB 10u

/* Counts a mixed-load child sends back through its pipe. */
typedef struct mixed_counts {
    uint64_t jobs;   /* enqueued or completed */
    uint64_t events; /* progress written or events read */
    uint64_t busy_retries;
    int ok;
} mixed_counts;

typedef enum mixed_kind { MIXED_ENQUEUER, MIXED_WORKER, MIXED_POLLER } mixed_kind;

/* A mixed-load child of kind: runs until end (monotonic seconds), writes its counts to out_fd
 * and exits. */
static void mixed_child(const char *path, mixed_kind kind, unsigned index, double end, int out_fd)
{
    mixed_counts m = {0};
    rsdb *db = open_db(path, kind == MIXED_ENQUEUER ? RSDB_ROLE_ACCEPT
                             : kind == MIXED_WORKER ? RSDB_ROLE_WORKER
                                                    : RSDB_ROLE_READER);
    char owner[64];
    snprintf(owner, sizeof owner, "mixed:%ld:%u", (long)getpid(), index);
    rsdb_job_spec spec = {.request = bench_request, .trials = 100000};
    int64_t version = 0, last_seq = 0;
    m.ok = db != NULL;
    while (m.ok && monotonic_seconds() < end) {
        if (kind == MIXED_ENQUEUER) {
            char id[RSDB_ID_SIZE];
            rsdb_err err = rsdb_job_enqueue(db, &spec, MIXED_QUEUE_SIZE, epoch_ms(), id, NULL);
            if (err == RSDB_EQUEUEFULL) {
                sleep_ms(1);
            } else if (err == RSDB_OK) {
                m.jobs++;
            } else {
                m.ok = fail(db, "mixed enqueue", err) == 0;
            }
        } else if (kind == MIXED_WORKER) {
            rsdb_job *job = NULL;
            rsdb_err err = rsdb_job_claim(db, owner, BENCH_LEASE_MS, epoch_ms(), &job);
            if (err == RSDB_EEMPTY) {
                sleep_ms(1);
                continue;
            }
            if (err != RSDB_OK) {
                m.ok = fail(db, "mixed claim", err) == 0;
                break;
            }
            for (unsigned p = 1; m.ok && p <= MIXED_PROGRESS_PER_JOB; p++) {
                m.ok = progress_once(db, job->id, owner, p * 10000u) == 0;
                m.events++;
            }
            err = rsdb_job_complete(db, job->id, owner, "{\"ok\":true}", epoch_ms());
            rsdb_job_free(job);
            if (err != RSDB_OK) {
                m.ok = fail(db, "mixed complete", err) == 0;
            }
            m.jobs++;
        } else {
            int64_t before = version;
            if (rsdb_data_version(db, &version) != RSDB_OK) {
                m.ok = 0;
            } else if (version != before || last_seq == 0) {
                long n = poll_once(db, &version, &last_seq);
                m.ok = n >= 0;
                m.events += n > 0 ? (uint64_t)n : 0;
            }
            sleep_ms(1);
        }
    }
    rsdb_stats s;
    if (db != NULL && rsdb_stats_get(db, epoch_ms(), &s) == RSDB_OK) {
        m.busy_retries = s.busy_retries;
    }
    rsdb_free(db);
    ssize_t w = write(out_fd, &m, sizeof m);
    _exit(w == (ssize_t)sizeof m ? 0 : 1);
}

/* Results of the mixed load. */
typedef struct mixed_figures {
    uint64_t enqueued, completed, progress, polled, busy_retries;
    unsigned checkpoints, checkpoints_done; /* maintenance calls, and those that copied all */
    int64_t wal_peak, wal_end, wal_after_checkpoint;
} mixed_figures;

/* WAL threshold of the maintenance checkpoint in the second mixed run (and its period). */
#define MIXED_CHECKPOINT_BYTES ((int64_t)4 << 20)
#define MIXED_CHECKPOINT_PERIOD_MS 200
#define MIXED_SAMPLE_MS 50

/* Runs 1 enqueuer, 2 workers and 1 poller for c->seconds while the parent samples the WAL size
 * every MIXED_SAMPLE_MS. With maintenance, the parent also plays the maintenance thread: every
 * MIXED_CHECKPOINT_PERIOD_MS it calls rsdb_checkpoint(MIXED_CHECKPOINT_BYTES); without, only
 * SQLite's own automatic checkpoints run. The parent creates the file, closes it, forks, and
 * only then opens its own connection (SQLite connections must not cross a fork). Returns 0/-1. */
static int bench_mixed(const bench_config *c, bool maintenance, mixed_figures *f)
{
    static const mixed_kind kinds[] = {MIXED_ENQUEUER, MIXED_WORKER, MIXED_WORKER, MIXED_POLLER};
    enum { NKIDS = sizeof kinds / sizeof kinds[0] };
    char path[BENCH_PATH_SIZE];
    memset(f, 0, sizeof *f);
    if (fresh_path(c, maintenance ? "mixed_maint" : "mixed", path) != 0) {
        return -1;
    }
    rsdb *db = open_db(path, RSDB_ROLE_WORKER);
    if (db == NULL) {
        return -1;
    }
    rsdb_free(db);
    int out[NKIDS][2];
    pid_t pids[NKIDS];
    int bad = 0;
    double end = monotonic_seconds() + (double)c->seconds;
    fflush(NULL);
    for (unsigned i = 0; i < NKIDS; i++) {
        pids[i] = -1;
        if (pipe(out[i]) != 0) {
            bad = 1;
            continue;
        }
        pids[i] = fork();
        if (pids[i] == 0) {
            close(out[i][0]);
            mixed_child(path, kinds[i], i, end, out[i][1]);
        }
        close(out[i][1]);
        if (pids[i] < 0) {
            close(out[i][0]);
            bad = 1;
        }
    }
    db = open_db(path, RSDB_ROLE_WORKER);
    if (db == NULL) {
        bad = 1;
        end = 0.0; /* collect the children without sampling */
    }
    for (unsigned tick = 1; monotonic_seconds() < end; tick++) {
        rsdb_stats s;
        if (rsdb_stats_get(db, epoch_ms(), &s) == RSDB_OK && s.wal_bytes > f->wal_peak) {
            f->wal_peak = s.wal_bytes;
        }
        if (maintenance && tick % (MIXED_CHECKPOINT_PERIOD_MS / MIXED_SAMPLE_MS) == 0) {
            int done = 0;
            rsdb_err err = rsdb_checkpoint(db, MIXED_CHECKPOINT_BYTES, NULL, NULL, &done);
            if (err != RSDB_OK) {
                bad = fail(db, "maintenance checkpoint", err);
            }
            f->checkpoints++;
            f->checkpoints_done += done != 0;
        }
        sleep_ms(MIXED_SAMPLE_MS);
    }
    for (unsigned i = 0; i < NKIDS; i++) {
        mixed_counts m = {0};
        if (pids[i] < 0) {
            continue;
        }
        if (read(out[i][0], &m, sizeof m) != (ssize_t)sizeof m || !m.ok) {
            bad = 1;
        }
        close(out[i][0]);
        int status = 0;
        if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            bad = 1;
        }
        f->busy_retries += m.busy_retries;
        if (kinds[i] == MIXED_ENQUEUER) {
            f->enqueued += m.jobs;
        } else if (kinds[i] == MIXED_WORKER) {
            f->completed += m.jobs;
            f->progress += m.events;
        } else {
            f->polled += m.events;
        }
    }
    rsdb_stats s;
    rsdb_err err = rsdb_stats_get(db, epoch_ms(), &s);
    if (err != RSDB_OK) {
        bad = fail(db, "stats", err);
    } else {
        f->wal_end = s.wal_bytes;
        f->wal_peak = s.wal_bytes > f->wal_peak ? s.wal_bytes : f->wal_peak;
    }
    err = rsdb_checkpoint(db, 0, NULL, &f->wal_after_checkpoint, NULL);
    if (err != RSDB_OK) {
        bad = fail(db, "checkpoint", err);
    }
    rsdb_free(db);
    remove_db(path);
    return bad ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

/* Prints the usage to out. */
static void usage(FILE *out)
{
    fprintf(out, "usage: db_bench [--jobs N] [--events N] [--polls N] [--seconds N] [--dir DIR]\n"
                 "\n"
                 "Measures the job store on fresh database files in a temporary directory under\n"
                 "DIR (default $TMPDIR or /tmp): enqueues (--jobs, default 5000), claim+complete\n"
                 "with 1 and 4 processes (--jobs), progress event appends (--events, default\n"
                 "20000), poll cost (--polls, default 20000) and the WAL size after --seconds\n"
                 "(default 10) of mixed load.\n");
}

/* Parses argv[*i + 1] as an integer in [min, max] for option name. Returns 0, or -1 after
 * printing why. */
static int number_arg(int argc, char **argv, int *i, unsigned long min, unsigned long max,
                      unsigned long *out)
{
    const char *name = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "db_bench: %s needs a value\n", name);
        return -1;
    }
    const char *v = argv[++*i];
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || errno != 0 || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "db_bench: %s needs an integer in [%lu, %lu]: %s\n", name, min, max, v);
        return -1;
    }
    *out = (unsigned long)n;
    return 0;
}

/* "met" or "NOT met" for a figure against a target. */
static const char *verdict(bool met)
{
    return met ? "met" : "NOT met";
}

int main(int argc, char **argv)
{
    bench_config c = {.jobs = 5000, .events = 20000, .polls = 20000, .seconds = 10};
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (strcmp(argv[i], "--jobs") == 0) {
            r = number_arg(argc, argv, &i, 1, 10000000, &c.jobs);
        } else if (strcmp(argv[i], "--events") == 0) {
            r = number_arg(argc, argv, &i, 1, 100000000, &c.events);
        } else if (strcmp(argv[i], "--polls") == 0) {
            r = number_arg(argc, argv, &i, 1, 100000000, &c.polls);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            r = number_arg(argc, argv, &i, 1, 86400, &c.seconds);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
        if (r != 0) {
            return 64;
        }
    }
    int n = snprintf(c.dir, sizeof c.dir, "%s/db_bench.XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof c.dir || mkdtemp(c.dir) == NULL) {
        fprintf(stderr, "db_bench: cannot create a directory under %s: %s\n", base,
                strerror(errno));
        return 1;
    }

    int failed = 0;
    double group = 0, batch = 0, full = 0, normal = 0, claim1 = 0, claim4 = 0, append = 0;
    poll_figures pf = {0};
    mixed_figures mf = {0};
    printf("db_bench: %s (SQLite WAL); %lu jobs, %lu events, %lu polls, %lu s mixed load\n\n",
           c.dir, c.jobs, c.events, c.polls, c.seconds);
    fflush(stdout);

    failed |= bench_group(&c, &group, &batch) != 0;
    failed |= bench_enqueue(&c, RSDB_ROLE_ACCEPT, "enqueue_full", &full) != 0;
    failed |= bench_enqueue(&c, RSDB_ROLE_WORKER, "enqueue_normal", &normal) != 0;
    printf("enqueue, group commit, %d threads (FULL) %8.0f jobs/s    target >= %.0f: %s\n",
           GROUP_THREADS, group, TARGET_ENQUEUE_PER_S, verdict(group >= TARGET_ENQUEUE_PER_S));
    printf("  %.1f jobs per commit on average\n", batch);
    printf(
        "enqueue, one per commit (FULL)          %10.0f jobs/s    (one thread, one fsync each)\n",
        full);
    printf("enqueue, one per commit (NORMAL)        %10.0f jobs/s    (no fsync: for comparison)\n",
           normal);
    fflush(stdout);

    failed |= bench_claim(&c, 1, &claim1) != 0;
    failed |= bench_claim(&c, 4, &claim4) != 0;
    printf("claim+complete, 1 process               %10.0f jobs/s\n", claim1);
    printf("claim+complete, 4 processes             %10.0f jobs/s\n", claim4);
    fflush(stdout);

    failed |= bench_append(&c, &append) != 0;
    printf("event append (progress, NORMAL)         %10.0f events/s  target >= %.0f: %s\n", append,
           TARGET_APPEND_PER_S, verdict(append >= TARGET_APPEND_PER_S));
    fflush(stdout);

    failed |= bench_poll(&c, &pf) != 0;
    printf("poll, nothing new (data_version only)   %10.2f us\n", pf.version_idle_us);
    printf("poll, nothing new (+ events_all)        %10.2f us       target <= %.0f: %s\n",
           pf.idle_us, TARGET_IDLE_POLL_US, verdict(pf.idle_us <= TARGET_IDLE_POLL_US));
    printf("poll, one new event (+ events_all)      %10.2f us\n", pf.fresh_us);
    fflush(stdout);

    for (int maintenance = 0; maintenance <= 1; maintenance++) {
        failed |= bench_mixed(&c, maintenance != 0, &mf) != 0;
        printf("mixed load, %lu s, %s:\n", c.seconds,
               maintenance ? "maintenance rsdb_checkpoint(4 MiB) every 200 ms"
                           : "no maintenance (only SQLite's backstop checkpoint at 64 MiB)");
        printf("  %llu enqueued, %llu completed, %llu progress events, %llu events polled, "
               "%llu busy retries\n",
               (unsigned long long)mf.enqueued, (unsigned long long)mf.completed,
               (unsigned long long)mf.progress, (unsigned long long)mf.polled,
               (unsigned long long)mf.busy_retries);
        if (maintenance) {
            printf("  %u maintenance checkpoints, %u of them copied every frame\n", mf.checkpoints,
                   mf.checkpoints_done);
        }
        printf("  WAL at the end %.2f MiB, peak %.2f MiB; after a final "
               "wal_checkpoint(TRUNCATE) %lld bytes\n",
               (double)mf.wal_end / 1048576.0, (double)mf.wal_peak / 1048576.0,
               (long long)mf.wal_after_checkpoint);
        fflush(stdout);
    }

    if (rmdir(c.dir) != 0) {
        fprintf(stderr, "db_bench: %s left behind: %s\n", c.dir, strerror(errno));
    }
    if (failed) {
        fprintf(stderr, "db_bench: a measurement failed (see above)\n");
        return 1;
    }
    return 0;
}
