/*
 * engine_bench: speed, memory and overhead of the engine on the std20 tree.
 *
 * Why this file exists: the project wants figures, recorded in docs/benchmarks.md, not
 * timed assertions. This program runs the std20 request (tests/bench/std20.json: 20 leaves
 * under 4 portfolios under a root) at 10^4 .. 10^7 trials on 1 and 2 threads and prints, per
 * configuration: the best wall time of R repeats, trials per second, the peak resident memory,
 * and the ratio of the engine's time to a bare sampling loop. The bare loop is the practical
 * limit of any engine built on these draws: for every trial and every leaf it calls
 * rs_leaf_trial_loss (the very HDR draws and inverse CDFs the engine makes) and adds the loss
 * into a volatile sink, storing nothing and computing no statistics. The ratio therefore shows
 * what storage, aggregation and statistics cost on top of sampling.
 *
 * Each configuration runs in its own forked child so that its peak RSS
 * (getrusage(RUSAGE_SELF).ru_maxrss in the child, sent back through a pipe) belongs to that
 * configuration alone; a child inherits only the parent's small high-water mark, printed as the
 * baseline.
 *
 * Usage: engine_bench [--max-trials N] [--json] [--model FILE]
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "model.h"
#include "risksim/engine.h"

#ifndef RISKSIM_BENCH_MODEL
#define RISKSIM_BENCH_MODEL "tests/bench/std20.json"
#endif

/* Trial counts of the ladder, and the thread counts each runs with. */
static const uint64_t ladder[] = {10000u, 100000u, 1000000u, 10000000u};
static const unsigned thread_counts[] = {1u, 2u};

/* Repeats per configuration (best time wins): fewer at the top where one run takes seconds. */
static int repeats_for(uint64_t trials)
{
    return trials >= 10000000u ? 1 : 3;
}

/* Largest model file read (std20 is a few KiB). */
#define BENCH_MAX_MODEL_BYTES ((size_t)1 << 20)

/* What a child sends back through its pipe. */
typedef struct bench_report {
    int ok;          /* 1 when both loops ran */
    int err;         /* rs_err of the failing step when !ok */
    double engine_s; /* best wall seconds of rs_simulate */
    double sample_s; /* of that run, seconds until the "aggregating" phase began (-1: unseen) */
    double bare_s;   /* best wall seconds of the bare loop */
    long maxrss_kib; /* ru_maxrss of the child (KiB on Linux) */
    uint64_t estimate_bytes; /* rs_model_memory_estimate for the run's threads */
} bench_report;

/* One configuration's row. */
typedef struct bench_row {
    uint64_t trials;
    unsigned threads;
    int repeats;
    bench_report r;
    char failure[96]; /* empty when the child reported ok */
} bench_row;

/* Seconds on the monotonic clock. */
static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------
 * The bare loop
 * ------------------------------------------------------------------------------------------- */

/* One thread's share of the bare loop: trials first..last (1-based, inclusive). The sink sits
 * on its own cache line so two threads never share one. */
typedef struct bare_worker {
    const rs_model *model;
    uint64_t first, last;
    alignas(64) volatile double sink;
} bare_worker;

/* Runs one share: for every trial and every leaf, one rs_leaf_trial_loss into the sink. */
static void *bare_run(void *arg)
{
    bare_worker *w = arg;
    const rs_model *m = w->model;
    const uint32_t seed = m->seed;
    for (uint64_t t = w->first; t <= w->last; t++) {
        for (size_t j = 0; j < m->nleaves; j++) {
            w->sink += rs_leaf_trial_loss(&m->nodes[m->leaves[j]], seed, t);
        }
    }
    return NULL;
}

/* Runs the bare loop over trials 1..trials split into `threads` contiguous shares (1 or 2 here,
 * at most 2 by the array). Returns the wall seconds, or a negative value when a thread could not
 * be started. */
static double bare_loop(const rs_model *model, uint64_t trials, unsigned threads)
{
    bare_worker w[2];
    pthread_t tid[2];
    if (threads < 1 || threads > 2) {
        return -1.0;
    }
    uint64_t share = trials / threads;
    for (unsigned i = 0; i < threads; i++) {
        w[i].model = model;
        w[i].first = (uint64_t)i * share + 1u;
        w[i].last = i + 1 == threads ? trials : (uint64_t)(i + 1) * share;
        w[i].sink = 0.0;
    }
    double t0 = monotonic_seconds();
    if (threads == 1) {
        bare_run(&w[0]);
    } else {
        for (unsigned i = 0; i < threads; i++) {
            if (pthread_create(&tid[i], NULL, bare_run, &w[i]) != 0) {
                for (unsigned k = 0; k < i; k++) {
                    pthread_join(tid[k], NULL);
                }
                return -1.0;
            }
        }
        for (unsigned i = 0; i < threads; i++) {
            pthread_join(tid[i], NULL);
        }
    }
    return monotonic_seconds() - t0;
}

/* ---------------------------------------------------------------------------------------------
 * One configuration, in a child process
 * ------------------------------------------------------------------------------------------- */

/* Progress callback of the timed runs: notes when sampling ends (the first "aggregating"). */
typedef struct phase_clock {
    double start;
    double sampled; /* seconds from start to the first "aggregating" report, or -1 */
} phase_clock;

static int on_progress(void *ctx, const rs_progress *p)
{
    phase_clock *c = ctx;
    if (c->sampled < 0.0 && p->phase != NULL && strcmp(p->phase, "aggregating") == 0) {
        c->sampled = monotonic_seconds() - c->start;
    }
    return 0;
}

/* Builds the model of the request text with "trials" replaced (rs_model_parse's two steps with
 * the edit in between). Prints validation problems on stderr. Returns RS_OK and *out, or the
 * error. */
static rs_err build_model(const char *text, size_t len, uint64_t trials, rs_model **out)
{
    struct json_object *req = NULL;
    rs_diag *diag = rs_diag_new();
    rs_err err = rs_json_parse(text, len, &req, diag);
    if (err != RS_OK) {
        goto out;
    }
    if (trials > 0 && json_object_is_type(req, json_type_object)) {
        struct json_object *v = json_object_new_int64((int64_t)trials);
        if (v == NULL || json_object_object_add(req, "trials", v) != 0) {
            json_object_put(v);
            err = RS_ENOMEM;
            goto out;
        }
        json_object_object_del(req, "nTrials");
    }
    err = rs_model_from_json(req, NULL, out, diag);
out:
    for (size_t i = 0; i < rs_diag_count(diag); i++) {
        fprintf(stderr, "engine_bench: %s: %s [%s]\n", rs_diag_pointer(diag, i),
                rs_diag_message(diag, i), rs_diag_code(diag, i));
    }
    json_object_put(req);
    rs_diag_free(diag);
    return err;
}

/* The child's work: the bare loop and the engine, each best of `repeats`, then the peak RSS.
 * Fills *r. */
static void run_configuration(const char *text, size_t len, uint64_t trials, unsigned threads,
                              int repeats, bench_report *r)
{
    rs_model *model = NULL;
    memset(r, 0, sizeof *r);
    r->err = build_model(text, len, trials, &model);
    if (r->err != RS_OK) {
        return;
    }
    r->bare_s = -1.0;
    r->engine_s = -1.0;
    rs_run_options estimate_opt = {.threads = threads};
    r->estimate_bytes = rs_model_memory_estimate(model, &estimate_opt);
    for (int k = 0; k < repeats; k++) {
        double s = bare_loop(model, trials, threads);
        if (s < 0.0) {
            r->err = RS_ETHREAD;
            goto out;
        }
        if (r->bare_s < 0.0 || s < r->bare_s) {
            r->bare_s = s;
        }
    }
    for (int k = 0; k < repeats; k++) {
        phase_clock clock = {.start = 0.0, .sampled = -1.0};
        rs_run_options opt = {.threads = threads, .progress = on_progress, .progress_ctx = &clock};
        rs_result *result = NULL;
        clock.start = monotonic_seconds();
        rs_err err = rs_simulate(model, &opt, &result);
        double s = monotonic_seconds() - clock.start;
        rs_result_free(result);
        if (err != RS_OK) {
            r->err = err;
            goto out;
        }
        if (r->engine_s < 0.0 || s < r->engine_s) {
            r->engine_s = s;
            r->sample_s = clock.sampled;
        }
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        r->maxrss_kib = ru.ru_maxrss;
    }
    r->ok = 1;
out:
    rs_model_free(model);
}

/* Writes all of buf to fd. Returns 0 or -1. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes from fd. Returns 0, or -1 on error or early end. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Runs one configuration in a forked child and fills row->r, or row->failure with why not. */
static void run_row(const char *text, size_t len, bench_row *row)
{
    int fds[2];
    memset(&row->r, 0, sizeof row->r);
    row->failure[0] = '\0';
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0) {
        snprintf(row->failure, sizeof row->failure, "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(row->failure, sizeof row->failure, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        bench_report r;
        close(fds[0]);
        run_configuration(text, len, row->trials, row->threads, row->repeats, &r);
        int rc = write_all(fds[1], &r, sizeof r) == 0 ? 0 : 1;
        close(fds[1]);
        _exit(rc);
    }
    close(fds[1]);
    int got = read_all(fds[0], &row->r, sizeof row->r);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        snprintf(row->failure, sizeof row->failure, "child killed by signal %d", WTERMSIG(status));
    } else if (got != 0) {
        snprintf(row->failure, sizeof row->failure, "child sent no report");
    } else if (!row->r.ok) {
        snprintf(row->failure, sizeof row->failure, "%s", rs_strerror((rs_err)row->r.err));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------------------------- */

/* The bare loop's cost of one leaf-trial draw, in nanoseconds of one core. */
static double ns_per_draw(const bench_row *row, size_t nleaves)
{
    return row->r.bare_s * 1e9 * row->threads / ((double)row->trials * (double)nleaves);
}

/* Prints the rows as a table with the model facts and the bare cost per draw. */
static void print_table(const bench_row *rows, size_t nrows, size_t nleaves, size_t nnodes,
                        uint32_t seed, const char *path, long baseline_kib)
{
    printf("engine_bench: %s\n", path);
    printf("model: %zu leaves, %zu nodes, seed %u; baseline RSS %.1f MiB (inherited by every "
           "child)\n\n",
           nleaves, nnodes, (unsigned)seed, (double)baseline_kib / 1024.0);
    printf("%9s %7s %7s %10s %10s %12s %12s %8s %10s %12s %8s\n", "trials", "threads", "repeats",
           "seconds", "sampling s", "trials/s", "peakRSS MiB", "est. MiB", "bare s", "bare ns/draw",
           "ratio");
    for (size_t i = 0; i < nrows; i++) {
        const bench_row *row = &rows[i];
        if (row->failure[0] != '\0') {
            printf("%9llu %7u %7d  FAILED: %s\n", (unsigned long long)row->trials, row->threads,
                   row->repeats, row->failure);
            continue;
        }
        printf("%9llu %7u %7d %10.4f %10.4f %12.0f %12.1f %8.1f %10.4f %12.1f %8.2f\n",
               (unsigned long long)row->trials, row->threads, row->repeats, row->r.engine_s,
               row->r.sample_s, (double)row->trials / row->r.engine_s,
               (double)row->r.maxrss_kib / 1024.0, (double)row->r.estimate_bytes / 1048576.0,
               row->r.bare_s, ns_per_draw(row, nleaves), row->r.engine_s / row->r.bare_s);
    }
    /* The bare cost per draw from the largest single-threaded run (the steadiest figure). */
    const bench_row *best = NULL;
    for (size_t i = 0; i < nrows; i++) {
        if (rows[i].failure[0] == '\0' && rows[i].threads == 1 &&
            (best == NULL || rows[i].trials > best->trials)) {
            best = &rows[i];
        }
    }
    printf(
        "\nseconds: best wall time of rs_simulate; sampling s: of that run, the time until the "
        "engine\nreported \"aggregating\" (-1: never); est. MiB: rs_model_memory_estimate; ratio: "
        "seconds / bare s\n(same trials and threads).\n");
    if (best != NULL) {
        printf("bare loop: %.1f ns per draw (one rs_leaf_trial_loss call, 1 thread, %llu "
               "trials x %zu leaves)\n",
               ns_per_draw(best, nleaves), (unsigned long long)best->trials, nleaves);
    }
}

/* Adds key: value to obj; returns -1 when out of memory. */
static int json_add(struct json_object *obj, const char *key, struct json_object *value)
{
    if (value == NULL || json_object_object_add(obj, key, value) != 0) {
        json_object_put(value);
        return -1;
    }
    return 0;
}

/* Prints the rows as one JSON document. Returns 0, or -1 when out of memory. */
static int print_json(const bench_row *rows, size_t nrows, size_t nleaves, size_t nnodes,
                      uint32_t seed, const char *path, long baseline_kib)
{
    int rc = -1;
    struct json_object *doc = json_object_new_object();
    struct json_object *runs = json_object_new_array();
    if (doc == NULL || runs == NULL) {
        json_object_put(runs);
        goto out;
    }
    if (json_add(doc, "model", json_object_new_string(path)) != 0 ||
        json_add(doc, "leaves", json_object_new_int64((int64_t)nleaves)) != 0 ||
        json_add(doc, "nodes", json_object_new_int64((int64_t)nnodes)) != 0 ||
        json_add(doc, "seed", json_object_new_int64(seed)) != 0 ||
        json_add(doc, "baselineRssMiB", json_object_new_double((double)baseline_kib / 1024.0)) !=
            0 ||
        json_add(doc, "runs", runs) != 0) {
        goto out;
    }
    for (size_t i = 0; i < nrows; i++) {
        const bench_row *row = &rows[i];
        struct json_object *o = json_object_new_object();
        if (o == NULL || json_object_array_add(runs, o) != 0) {
            json_object_put(o);
            goto out;
        }
        if (json_add(o, "trials", json_object_new_int64((int64_t)row->trials)) != 0 ||
            json_add(o, "threads", json_object_new_int64(row->threads)) != 0 ||
            json_add(o, "repeats", json_object_new_int64(row->repeats)) != 0) {
            goto out;
        }
        if (row->failure[0] != '\0') {
            if (json_add(o, "error", json_object_new_string(row->failure)) != 0) {
                goto out;
            }
            continue;
        }
        if (json_add(o, "seconds", json_object_new_double(row->r.engine_s)) != 0 ||
            json_add(o, "samplingSeconds", json_object_new_double(row->r.sample_s)) != 0 ||
            json_add(o, "trialsPerSecond",
                     json_object_new_double((double)row->trials / row->r.engine_s)) != 0 ||
            json_add(o, "peakRssMiB", json_object_new_double((double)row->r.maxrss_kib / 1024.0)) !=
                0 ||
            json_add(o, "estimateMiB",
                     json_object_new_double((double)row->r.estimate_bytes / 1048576.0)) != 0 ||
            json_add(o, "bareSeconds", json_object_new_double(row->r.bare_s)) != 0 ||
            json_add(o, "bareNsPerDraw", json_object_new_double(ns_per_draw(row, nleaves))) != 0 ||
            json_add(o, "ratio", json_object_new_double(row->r.engine_s / row->r.bare_s)) != 0) {
            goto out;
        }
    }
    puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
    rc = 0;
out:
    json_object_put(doc);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

/* Prints the usage to out. */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: engine_bench [--max-trials N] [--json] [--model FILE]\n"
            "\n"
            "Runs the model (default %s) at 10^4, 10^5, 10^6 and 10^7 trials (up to\n"
            "--max-trials) on 1 and 2 threads, each in its own child process, and prints\n"
            "time, trials/s, peak RSS and the ratio to a bare sampling loop.\n",
            RISKSIM_BENCH_MODEL);
}

/* Reads a whole small file into a new buffer (release with free). Returns NULL after printing
 * why. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "engine_bench: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(BENCH_MAX_MODEL_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, BENCH_MAX_MODEL_BYTES + 1, f) : 0;
    int failed = buf == NULL || ferror(f) || n > BENCH_MAX_MODEL_BYTES;
    fclose(f);
    if (failed) {
        fprintf(stderr, "engine_bench: %s: unreadable or larger than %zu bytes\n", path,
                BENCH_MAX_MODEL_BYTES);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    uint64_t max_trials = ladder[sizeof ladder / sizeof ladder[0] - 1];
    bool json = false;
    const char *path = RISKSIM_BENCH_MODEL;
    int rc = 1;
    char *text = NULL;
    size_t len = 0;
    rs_model *model = NULL;
    bench_row rows[2 * (sizeof ladder / sizeof ladder[0])];
    size_t nrows = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--max-trials") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            char *end = NULL;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || errno != 0 || *end != '\0' || n < 1) {
                fprintf(stderr, "engine_bench: --max-trials needs a positive integer: %s\n", v);
                return 64;
            }
            max_trials = n;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
    }

    text = read_file(path, &len);
    if (text == NULL) {
        goto out;
    }
    /* Parse once here to fail early and to learn the tree's size (small: the children inherit
     * this, which the baseline RSS line shows). */
    if (build_model(text, len, 0, &model) != RS_OK) {
        fprintf(stderr, "engine_bench: %s: not a valid request\n", path);
        goto out;
    }

    for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
        /* Below the first rung, run the one size asked for. */
        uint64_t trials = ladder[i];
        if (trials > max_trials) {
            if (i > 0) {
                break;
            }
            trials = max_trials;
        }
        for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
            bench_row *row = &rows[nrows++];
            memset(row, 0, sizeof *row);
            row->trials = trials;
            row->threads = thread_counts[t];
            row->repeats = repeats_for(trials);
            if (!json) {
                fprintf(stderr, "engine_bench: %llu trials, %u thread(s)...\n",
                        (unsigned long long)trials, row->threads);
            }
            run_row(text, len, row);
        }
        if (trials == max_trials) {
            break;
        }
    }

    struct rusage ru;
    long baseline_kib = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    if (json) {
        if (print_json(rows, nrows, model->nleaves, model->nnodes, model->seed, path,
                       baseline_kib) != 0) {
            fprintf(stderr, "engine_bench: out of memory\n");
            goto out;
        }
    } else {
        print_table(rows, nrows, model->nleaves, model->nnodes, model->seed, path, baseline_kib);
    }
    rc = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (rows[i].failure[0] != '\0') {
            rc = 1;
        }
    }
out:
    rs_model_free(model);
    free(text);
    return rc;
}
