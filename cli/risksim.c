/*
 * risksim: the command-line tool.
 *
 * Why this file exists: the engine is a library and the service needs a web server, a database
 * and a bridge; this file makes a simulation one shell command. `risksim simulate` reads a
 * request (docs/api.md section 1) from a file or stdin, runs it on this machine through
 * risksim/engine.h and prints the result (docs/api.md section 2) as JSON or as a readable table,
 * with a progress bar on stderr and Ctrl-C cancellation. The request and result formats are the
 * service's, so a request can be tried here before it is posted, and a result printed here is
 * the service's result for the same request and seed. Subcommands live in one small table
 * (commands[] below) so that `risksim watch` and others join without touching the dispatcher.
 * `risksim db ...` and `risksim jobs ...` administer the service's job database through
 * risksim/db.h only (no SQL in this file): create or migrate it, read its figures, prune it,
 * check it, back it up, and list, show or cancel jobs. The exit codes are a contract for scripts,
 * documented in docs/cli.md.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "risksim/db.h"
#include "risksim/engine.h"

#ifndef RISKSIM_VERSION
#define RISKSIM_VERSION "unknown"
#endif

/* Exit codes (docs/cli.md). 64 is EX_USAGE of sysexits.h; 130 is what a shell reports for a
 * program killed by SIGINT, so scripts see a cancelled run the same way either way. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,
    CLI_EXIT_INVALID = 2,
    CLI_EXIT_USAGE = 64,
    CLI_EXIT_CANCELLED = 130
};

/* Largest request read from a file or stdin; more is refused before parsing. */
#define CLI_MAX_REQUEST_BYTES ((size_t)64 << 20)

/* Largest seed of docs/api.md section 1: seeds are in [0, 10^8). */
#define CLI_MAX_SEED 99999999u

/* Seconds between two redraws of the progress bar. */
#define CLI_PROGRESS_INTERVAL 0.1

/* ---------------------------------------------------------------------------------------------
 * Cancellation: SIGINT and SIGTERM set one flag that the engine polls between chunks.
 * ------------------------------------------------------------------------------------------- */

/* A signal handler may only store to a lock-free atomic (C11 7.14.1.1). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free for the signal handler");

/* Set by the signal handler, read by the engine (rs_run_options.cancel) and by this file. The
 * only mutable global: a signal handler has no other way to reach the run. */
static atomic_int cancel_requested;

static void on_cancel_signal(int sig)
{
    (void)sig;
    atomic_store(&cancel_requested, 1);
}

/* Routes SIGINT and SIGTERM to on_cancel_signal (handler != NULL) or back to their default
 * action (handler == NULL). No SA_RESTART: a read blocked on a terminal must return EINTR so
 * that Ctrl-C while waiting for stdin cancels too. Returns 0, or -1 with errno set. */
static int set_cancel_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler != NULL ? handler : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        return -1;
    }
    return 0;
}

/* True once SIGINT or SIGTERM arrived. */
static bool is_cancelled(void)
{
    return atomic_load(&cancel_requested) != 0;
}

/* ---------------------------------------------------------------------------------------------
 * Small formatting helpers (every one writes into a caller buffer with snprintf).
 * ------------------------------------------------------------------------------------------- */

/* Formats v with three significant digits and a thousands suffix: "0", "12.5", "523", "1.23k",
 * "45.6M", "7.89B", "1.00T"; beyond 999T in exponent form; NaN as "-". */
static void format_human(double v, char *buf, size_t size)
{
    static const char *const suffix[] = {"", "k", "M", "B", "T"};
    const size_t nsuffix = sizeof suffix / sizeof suffix[0];
    if (isnan(v)) {
        snprintf(buf, size, "-");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, "%s", v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0.0) {
        snprintf(buf, size, "0");
        return;
    }
    const char *sign = v < 0 ? "-" : "";
    double a = fabs(v);
    size_t unit = 0;
    /* 999.5 and up would round to "1000": move to the next unit instead. */
    while (a >= 999.5 && unit + 1 < nsuffix) {
        a /= 1000.0;
        unit++;
    }
    if (a >= 999.5) {
        snprintf(buf, size, "%s%.2e", sign, fabs(v));
    } else if (unit == 0 && a == floor(a)) {
        snprintf(buf, size, "%s%.0f", sign, a); /* whole plain amounts need no ".00" */
    } else if (a < 9.995) {
        snprintf(buf, size, "%s%.2f%s", sign, a, suffix[unit]);
    } else if (a < 99.95) {
        snprintf(buf, size, "%s%.1f%s", sign, a, suffix[unit]);
    } else {
        snprintf(buf, size, "%s%.0f%s", sign, a, suffix[unit]);
    }
}

/* Formats a probability as a percentage: "71.0%", "<0.1%" for tiny non-zero values. */
static void format_percent(double p, char *buf, size_t size)
{
    if (isnan(p)) {
        snprintf(buf, size, "-");
    } else if (p > 0.0 && p < 0.0005) {
        snprintf(buf, size, "<0.1%%");
    } else {
        snprintf(buf, size, "%.1f%%", p * 100.0);
    }
}

/* Formats a duration in whole seconds: "7s", "3m05s", "2h04m". Negative or NaN prints "-". */
static void format_duration(double seconds, char *buf, size_t size)
{
    if (!(seconds >= 0.0) || seconds > 1e9) {
        snprintf(buf, size, "-");
        return;
    }
    unsigned long s = (unsigned long)(seconds + 0.5);
    if (s < 60) {
        snprintf(buf, size, "%lus", s);
    } else if (s < 3600) {
        snprintf(buf, size, "%lum%02lus", s / 60, s % 60);
    } else {
        snprintf(buf, size, "%luh%02lum", s / 3600, (s % 3600) / 60);
    }
}

/* Seconds on the monotonic clock (0 if it cannot be read). */
static double monotonic_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------
 * Command-line parsing helpers
 * ------------------------------------------------------------------------------------------- */

/* Parses text as a decimal integer in [min, max]: digits only (no sign, no spaces, not empty),
 * nothing after them. Returns 0 and stores *out, or -1. */
static int parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return -1;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno == ERANGE || end == text || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* Matches argv[*i] against a long option that takes a value (name is e.g. "--threads"), given
 * as "--threads=4" or as "--threads 4". Returns 1 with the value in *value (advancing *i past a
 * separate value), 0 when argv[*i] is not this option, -1 when the value is missing. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * risksim simulate
 * ------------------------------------------------------------------------------------------- */

typedef enum progress_mode { PROGRESS_AUTO = 0, PROGRESS_ALWAYS, PROGRESS_NEVER } progress_mode;

typedef struct simulate_options {
    const char *path; /* request file, "-" for stdin */
    unsigned threads;
    uint32_t chunk_trials; /* 0: the engine's default */
    bool have_trials;
    uint64_t trials;
    bool have_seed;
    uint64_t seed;
    bool summary;
    bool pretty;
    progress_mode progress;
} simulate_options;

/* Online CPUs, clamped to [1, RS_MAX_THREADS]. */
static unsigned default_threads(void)
{
    long n = -1;
#ifdef _SC_NPROCESSORS_ONLN
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    if (n < 1) {
        return 1;
    }
    if ((unsigned long)n > RS_MAX_THREADS) {
        return RS_MAX_THREADS;
    }
    return (unsigned)n;
}

/* Prints the help of `risksim simulate` to out. */
static void usage_simulate(FILE *out)
{
    rs_limits limits;
    rs_limits_default(&limits);
    fprintf(out,
            "usage: risksim simulate [options] FILE|-\n"
            "\n"
            "Reads a simulation request (JSON, at most 64 MiB) from FILE or from stdin (\"-\"),\n"
            "runs it on this machine and prints the result JSON on stdout.\n"
            "\n"
            "Options:\n"
            "  --trials N        override the request's \"trials\" (1..%llu)\n"
            "  --seed N          override the request's \"seed\" (0..%u)\n"
            "  --threads N       worker threads (default: online CPUs, here %u; at most %u)\n"
            "  --chunk N         trials per chunk between progress reports and cancel checks\n"
            "                    (default 4096; at most %u)\n"
            "  --summary         print a readable table instead of JSON\n"
            "  --pretty          indent the JSON\n"
            "  --progress WHEN   progress on stderr: auto (when stderr is a terminal),\n"
            "                    always or never (default auto)\n"
            "  -h, --help        show this help\n"
            "\n"
            "Exit status: 0 done, 1 failure, 2 invalid request, 64 usage error, 130 cancelled.\n",
            (unsigned long long)limits.max_trials, CLI_MAX_SEED, default_threads(), RS_MAX_THREADS,
            (unsigned)RS_MAX_CHUNK_TRIALS);
}

/* Reports a usage error of `risksim simulate` ("what: arg" on stderr, then the usage) and
 * returns CLI_EXIT_USAGE. arg may be NULL. */
static int simulate_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "risksim simulate: %s%s%s\n\n", what, arg != NULL ? ": " : "",
            arg != NULL ? arg : "");
    usage_simulate(stderr);
    return CLI_EXIT_USAGE;
}

/* Parses the arguments of `risksim simulate` (argv[0] is "simulate") into *o. Returns -1 to
 * run, or an exit code: CLI_EXIT_OK after printing the help, CLI_EXIT_USAGE after printing
 * what was wrong and the usage on stderr. */
static int parse_simulate_options(int argc, char **argv, simulate_options *o)
{
    rs_limits limits;
    rs_limits_default(&limits);
    memset(o, 0, sizeof *o);
    o->threads = default_threads();
    o->progress = PROGRESS_AUTO;
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        uint64_t n = 0;
        int m;

        if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (o->path != NULL) {
                return simulate_usage_error("more than one request file", arg);
            }
            o->path = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage_simulate(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(arg, "--summary") == 0) {
            o->summary = true;
        } else if (strcmp(arg, "--pretty") == 0) {
            o->pretty = true;
        } else if ((m = option_value(argc, argv, &i, "--trials", &value)) != 0) {
            if (m < 0 || parse_uint(value, 1, limits.max_trials, &n) != 0) {
                char what[64];
                snprintf(what, sizeof what, "--trials needs an integer in [1, %llu]",
                         (unsigned long long)limits.max_trials);
                return simulate_usage_error(what, value);
            }
            o->have_trials = true;
            o->trials = n;
        } else if ((m = option_value(argc, argv, &i, "--seed", &value)) != 0) {
            if (m < 0 || parse_uint(value, 0, CLI_MAX_SEED, &n) != 0) {
                return simulate_usage_error("--seed needs an integer in [0, 99999999]", value);
            }
            o->have_seed = true;
            o->seed = n;
        } else if ((m = option_value(argc, argv, &i, "--threads", &value)) != 0) {
            if (m < 0 || parse_uint(value, 1, RS_MAX_THREADS, &n) != 0) {
                return simulate_usage_error("--threads needs an integer in [1, 256]", value);
            }
            o->threads = (unsigned)n;
        } else if ((m = option_value(argc, argv, &i, "--chunk", &value)) != 0) {
            if (m < 0 || parse_uint(value, 1, RS_MAX_CHUNK_TRIALS, &n) != 0) {
                return simulate_usage_error("--chunk needs an integer in [1, 1048576]", value);
            }
            o->chunk_trials = (uint32_t)n;
        } else if ((m = option_value(argc, argv, &i, "--progress", &value)) != 0) {
            if (m < 0) {
                return simulate_usage_error("--progress needs auto, always or never", NULL);
            } else if (strcmp(value, "auto") == 0) {
                o->progress = PROGRESS_AUTO;
            } else if (strcmp(value, "always") == 0) {
                o->progress = PROGRESS_ALWAYS;
            } else if (strcmp(value, "never") == 0) {
                o->progress = PROGRESS_NEVER;
            } else {
                return simulate_usage_error("--progress needs auto, always or never", value);
            }
        } else {
            return simulate_usage_error("unknown option", arg);
        }
    }
    if (o->path == NULL) {
        return simulate_usage_error("missing the request file (FILE, or - for stdin)", NULL);
    }
    return -1;
}

/* Reads the whole request from path ("-" for stdin) into a new buffer (*out, *len; release with
 * free). Refuses more than CLI_MAX_REQUEST_BYTES. Returns CLI_EXIT_OK, or prints why on stderr
 * and returns CLI_EXIT_FAILURE, or CLI_EXIT_CANCELLED when a signal interrupted the read. */
static int read_request(const char *path, char **out, size_t *len)
{
    bool use_stdin = strcmp(path, "-") == 0;
    const char *label = use_stdin ? "stdin" : path;
    FILE *in = use_stdin ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    int rc = CLI_EXIT_FAILURE;

    if (in == NULL) {
        fprintf(stderr, "risksim: %s: %s\n", label, strerror(errno));
        goto out;
    }
    for (;;) {
        if (n == cap) {
            /* The buffer holds one byte more than the limit so that "exactly the limit" and
             * "more than the limit" can be told apart. */
            if (cap == CLI_MAX_REQUEST_BYTES + 1) {
                fprintf(stderr, "risksim: %s: the request is larger than %zu MiB; refusing it\n",
                        label, CLI_MAX_REQUEST_BYTES >> 20);
                goto out;
            }
            size_t ncap = cap == 0 ? (size_t)1 << 16 : cap * 2;
            if (ncap > CLI_MAX_REQUEST_BYTES + 1) {
                ncap = CLI_MAX_REQUEST_BYTES + 1;
            }
            char *grown = realloc(buf, ncap);
            if (grown == NULL) {
                fprintf(stderr, "risksim: %s: out of memory\n", label);
                goto out;
            }
            buf = grown;
            cap = ncap;
        }
        n += fread(buf + n, 1, cap - n, in);
        if (ferror(in)) {
            if (errno == EINTR && !is_cancelled()) {
                clearerr(in);
                continue;
            }
            if (is_cancelled()) {
                rc = CLI_EXIT_CANCELLED;
                goto out;
            }
            fprintf(stderr, "risksim: %s: %s\n", label, strerror(errno));
            goto out;
        }
        if (feof(in)) {
            break;
        }
    }
    *out = buf;
    *len = n;
    buf = NULL;
    rc = CLI_EXIT_OK;
out:
    free(buf);
    if (in != NULL && !use_stdin) {
        fclose(in);
    }
    return rc;
}

/* Applies --trials and --seed to the parsed request: "trials" is set (and its alias "nTrials"
 * removed, so the override is the only count), "seed" is set. A request that is not an object
 * is left alone; rs_model_from_json reports it. Returns RS_OK or RS_ENOMEM. */
static rs_err apply_overrides(struct json_object *request, const simulate_options *o)
{
    if (!json_object_is_type(request, json_type_object)) {
        return RS_OK;
    }
    if (o->have_trials) {
        struct json_object *v = json_object_new_int64((int64_t)o->trials);
        if (v == NULL || json_object_object_add(request, "trials", v) != 0) {
            json_object_put(v);
            return RS_ENOMEM;
        }
        json_object_object_del(request, "nTrials");
    }
    if (o->have_seed) {
        struct json_object *v = json_object_new_int64((int64_t)o->seed);
        if (v == NULL || json_object_object_add(request, "seed", v) != 0) {
            json_object_put(v);
            return RS_ENOMEM;
        }
    }
    return RS_OK;
}

/* Prints every entry of diag on stderr as "error: <pointer>: <message> [<code>]", naming the
 * option when a problem is in a field an option set. */
static void print_diag(const rs_diag *diag, const simulate_options *o)
{
    size_t n = rs_diag_count(diag);
    for (size_t i = 0; i < n; i++) {
        const char *pointer = rs_diag_pointer(diag, i);
        const char *note = "";
        if (o->have_trials && strcmp(pointer, "/trials") == 0) {
            note = " (set by --trials)";
        } else if (o->have_seed && strcmp(pointer, "/seed") == 0) {
            note = " (set by --seed)";
        }
        fprintf(stderr, "error: %s: %s [%s]%s\n", pointer[0] != '\0' ? pointer : "(document)",
                rs_diag_message(diag, i), rs_diag_code(diag, i), note);
    }
}

/* Maps a failed parse or validation to its exit code after printing it: problems in the request
 * are exit 2, anything else exit 1. */
static int report_request_error(rs_err err, const rs_diag *diag, const simulate_options *o)
{
    if ((err == RS_EJSON || err == RS_EVALIDATION) && rs_diag_count(diag) > 0) {
        print_diag(diag, o);
        return CLI_EXIT_INVALID;
    }
    fprintf(stderr, "risksim: %s\n", rs_strerror(err));
    return err == RS_EJSON || err == RS_EVALIDATION ? CLI_EXIT_INVALID : CLI_EXIT_FAILURE;
}

/* ---- progress on stderr ---- */

typedef enum progress_style {
    STYLE_NONE = 0, /* nothing */
    STYLE_BAR,      /* one line redrawn in place (a terminal) */
    STYLE_LINES     /* one line per tenth (a file or pipe with --progress always) */
} progress_style;

typedef struct progress_state {
    progress_style style;
    double start;     /* monotonic seconds at the start of the run */
    double last_draw; /* monotonic seconds of the last bar redraw */
    int last_tenth;   /* STYLE_LINES: the last tenth printed */
    bool line_open;   /* STYLE_BAR: a bar is on screen without its newline */
    char last_phase[32];
} progress_state;

#define PROGRESS_BAR_WIDTH 20

/* The engine's progress callback (rs_progress_fn). Runs on the thread that called rs_simulate;
 * draws at most every CLI_PROGRESS_INTERVAL seconds, plus at every phase change. Never asks
 * for a cancel: the cancel flag does that. */
static int on_progress(void *ctx, const rs_progress *p)
{
    progress_state *st = ctx;
    double now = monotonic_seconds();
    const char *phase = p->phase != NULL ? p->phase : "";
    bool phase_changed = strncmp(st->last_phase, phase, sizeof st->last_phase - 1) != 0;
    uint64_t total = p->trials_total;
    uint64_t done = p->trials_done < total ? p->trials_done : total;
    int tenth = total > 0 ? (int)(done * 10 / total) : 10;

    if (st->style == STYLE_NONE) {
        return 0;
    }
    if (st->style == STYLE_BAR && !phase_changed && now - st->last_draw < CLI_PROGRESS_INTERVAL) {
        return 0;
    }
    if (st->style == STYLE_LINES && !phase_changed && tenth <= st->last_tenth) {
        return 0;
    }
    snprintf(st->last_phase, sizeof st->last_phase, "%s", phase);
    st->last_draw = now;
    st->last_tenth = tenth;

    double elapsed = now - st->start;
    double rate = elapsed > 1e-3 ? (double)done / elapsed : 0.0;
    double fraction = total > 0 ? (double)done / (double)total : 1.0;
    char s_done[32], s_total[32], s_rate[32], s_eta[32];
    format_human((double)done, s_done, sizeof s_done);
    format_human((double)total, s_total, sizeof s_total);
    if (rate > 0.0) {
        format_human(rate, s_rate, sizeof s_rate);
        format_duration((double)(total - done) / rate, s_eta, sizeof s_eta);
    } else {
        snprintf(s_rate, sizeof s_rate, "-");
        snprintf(s_eta, sizeof s_eta, "-");
    }

    char what[64];
    if (p->nodes_total > 0 && strcmp(phase, RS_PHASE_AGGREGATING) == 0)
        snprintf(what, sizeof what, "%s %zu/%zu nodes", phase, p->nodes_done, p->nodes_total);
    else
        snprintf(what, sizeof what, "%s", phase);

    char line[256];
    if (st->style == STYLE_BAR) {
        char bar[PROGRESS_BAR_WIDTH + 1];
        int filled = (int)(fraction * PROGRESS_BAR_WIDTH);
        for (int i = 0; i < PROGRESS_BAR_WIDTH; i++) {
            bar[i] = i < filled ? '#' : '.';
        }
        bar[PROGRESS_BAR_WIDTH] = '\0';
        /* \r returns to the start of the line, ESC[K clears what a longer line left. */
        int len =
            snprintf(line, sizeof line, "\r[%s] %5.1f%%  %s/%s trials  %s/s  ETA %s  %s\033[K", bar,
                     fraction * 100.0, s_done, s_total, s_rate, s_eta, what);
        if (len > 0) {
            fwrite(line, 1, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1, stderr);
            st->line_open = true;
        }
    } else {
        int len =
            snprintf(line, sizeof line, "risksim: %3d%%  %s/%s trials  %s trials/s  ETA %s  %s\n",
                     (int)(fraction * 100.0), s_done, s_total, s_rate, s_eta, what);
        if (len > 0) {
            fwrite(line, 1, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1, stderr);
        }
    }
    fflush(stderr);
    return 0;
}

/* Ends the progress display: the bar's line gets its newline. */
static void progress_finish(progress_state *st)
{
    if (st->style == STYLE_BAR && st->line_open) {
        fputc('\n', stderr);
        st->line_open = false;
    }
}

/* ---- output ---- */

/* Writes the result JSON (compact, or indented with pretty) and a newline to stdout. Returns
 * CLI_EXIT_OK, or CLI_EXIT_FAILURE after saying why. */
static int print_result_json(const rs_result *result, const rs_model *model, bool pretty)
{
    rs_result_meta meta = {.id = NULL, .status = "completed"};
    char *compact = NULL;
    size_t len = 0;
    struct json_object *doc = NULL;
    rs_err err = rs_result_json(result, model, &meta, &compact, &len);
    if (err == RS_OK && pretty)
        err = rs_result_to_json(result, model, &meta, &doc);
    if (err != RS_OK) {
        free(compact);
        fprintf(stderr, "risksim: %s\n", rs_strerror(err));
        return CLI_EXIT_FAILURE;
    }
    const char *text = compact;
    if (pretty)
        text = json_object_to_json_string_length(
            doc, JSON_C_TO_STRING_NOSLASHESCAPE | JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED,
            &len);
    int rc = CLI_EXIT_OK;
    if (text == NULL) {
        fprintf(stderr, "risksim: %s\n", rs_strerror(RS_ENOMEM));
        rc = CLI_EXIT_FAILURE;
    } else if (fwrite(text, 1, len, stdout) != len || fputc('\n', stdout) == EOF ||
               fflush(stdout) != 0) {
        fprintf(stderr, "risksim: stdout: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILURE;
    }
    json_object_put(doc);
    free(compact);
    return rc;
}

/* Width of a summary number column. */
#define SUMMARY_COL 8

/* Prints the node column of one summary row: the id indented two spaces per depth, padded to
 * width. */
static void print_node_cell(const rs_node_stats *s, int width)
{
    int indent = (int)(s->depth < 32 ? s->depth : 32) * 2;
    int idlen = (int)strlen(s->id);
    int pad = width - indent - idlen;
    printf("%*s%s%*s", indent, "", s->id, pad > 0 ? pad : 0, "");
}

/* Prints the level labels as the rest of a header row, then ends the row. */
static void print_level_labels(const rs_result *result)
{
    for (size_t l = 0; l < rs_result_level_count(result); l++) {
        printf("  %*s", SUMMARY_COL, rs_result_level_label(result, l));
    }
    putchar('\n');
}

/* Prints one value per level, human-formatted, as the rest of a row, then ends the row. */
static void print_level_values(const double *values, size_t nlevels)
{
    char cell[32];
    for (size_t l = 0; l < nlevels; l++) {
        format_human(values[l], cell, sizeof cell);
        printf("  %*s", SUMMARY_COL, cell);
    }
    putchar('\n');
}

/* Prints the readable summary on stdout: a header, one row per node (mean, P(loss), every
 * quantile level), then the TVaR rows. Returns CLI_EXIT_OK, or CLI_EXIT_FAILURE when stdout
 * fails. */
static int print_summary(const rs_result *result, const rs_model *model, unsigned threads)
{
    size_t nnodes = rs_result_node_count(result);
    size_t nlevels = rs_result_level_count(result);
    const char *name = rs_model_name(model);
    char cell[32];
    int width = 4; /* "node" */

    for (size_t i = 0; i < nnodes; i++) {
        const rs_node_stats *s = rs_result_node(result, i);
        int w = (int)(s->depth < 32 ? s->depth : 32) * 2 + (int)strlen(s->id);
        if (w > width) {
            width = w;
        }
    }

    format_human((double)rs_model_trials(model), cell, sizeof cell);
    printf("%s\n", name[0] != '\0' ? name : "(unnamed request)");
    printf("%llu trials (%s), seed %lu, %u thread%s, %.1f ms\n\n",
           (unsigned long long)rs_model_trials(model), cell, (unsigned long)rs_model_seed(model),
           threads, threads == 1 ? "" : "s", rs_result_duration_ms(result));

    /* Losses by node. */
    printf("%-*s  %*s  %*s", width, "node", SUMMARY_COL, "mean", SUMMARY_COL, "P(loss)");
    print_level_labels(result);
    for (size_t i = 0; i < nnodes; i++) {
        const rs_node_stats *s = rs_result_node(result, i);
        print_node_cell(s, width);
        format_human(s->mean, cell, sizeof cell);
        printf("  %*s", SUMMARY_COL, cell);
        format_percent(s->probability_of_loss, cell, sizeof cell);
        printf("  %*s", SUMMARY_COL, cell);
        print_level_values(s->quantiles, nlevels);
    }

    /* Tail value at risk: the mean loss at or above each quantile. */
    printf("\n%-*s  %*s  %*s", width, "TVaR", SUMMARY_COL, "", SUMMARY_COL, "");
    print_level_labels(result);
    for (size_t i = 0; i < nnodes; i++) {
        const rs_node_stats *s = rs_result_node(result, i);
        print_node_cell(s, width);
        printf("  %*s  %*s", SUMMARY_COL, "", SUMMARY_COL, "");
        print_level_values(s->tvar, nlevels);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "risksim: stdout: %s\n", strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* risksim simulate [options] FILE|- : runs one request locally. Returns the exit code. */
static int cmd_simulate(int argc, char **argv)
{
    simulate_options o;
    int rc = parse_simulate_options(argc, argv, &o);
    if (rc >= 0) {
        return rc;
    }

    char *text = NULL;
    size_t len = 0;
    struct json_object *request = NULL;
    rs_diag *diag = NULL;
    rs_model *model = NULL;
    rs_result *result = NULL;
    rs_err err;
    progress_state progress;
    memset(&progress, 0, sizeof progress);
    progress.last_tenth = -1;

    /* From here on Ctrl-C cancels: while reading, between the steps and inside the run. */
    if (set_cancel_signals(on_cancel_signal) != 0) {
        fprintf(stderr, "risksim: sigaction: %s\n", strerror(errno));
        return CLI_EXIT_FAILURE;
    }

    rc = read_request(o.path, &text, &len);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = CLI_EXIT_FAILURE;
    diag = rs_diag_new();
    if (diag == NULL) {
        fprintf(stderr, "risksim: %s\n", rs_strerror(RS_ENOMEM));
        goto out;
    }
    err = rs_json_parse(text, len, &request, diag);
    free(text); /* the request can be large: keep only one form of it */
    text = NULL;
    if (err != RS_OK) {
        rc = report_request_error(err, diag, &o);
        goto out;
    }
    err = apply_overrides(request, &o);
    if (err != RS_OK) {
        fprintf(stderr, "risksim: %s\n", rs_strerror(err));
        goto out;
    }
    err = rs_model_from_json(request, NULL, &model, diag);
    json_object_put(request);
    request = NULL;
    if (err != RS_OK) {
        rc = report_request_error(err, diag, &o);
        goto out;
    }

    if (o.progress == PROGRESS_ALWAYS) {
        progress.style = isatty(STDERR_FILENO) ? STYLE_BAR : STYLE_LINES;
    } else if (o.progress == PROGRESS_AUTO && isatty(STDERR_FILENO)) {
        progress.style = STYLE_BAR;
    }
    progress.start = monotonic_seconds();
    rs_run_options run = {
        .threads = o.threads,
        .chunk_trials = o.chunk_trials,
        .progress = progress.style != STYLE_NONE ? on_progress : NULL,
        .progress_ctx = &progress,
        .cancel = &cancel_requested,
    };
    err = is_cancelled() ? RS_ECANCELLED : rs_simulate(model, &run, &result);
    progress_finish(&progress);
    /* The run is over: a Ctrl-C while the output is written stops the program the usual way. */
    set_cancel_signals(NULL);
    if (err == RS_ECANCELLED || is_cancelled()) {
        rc = CLI_EXIT_CANCELLED;
        goto out;
    }
    if (err != RS_OK) {
        fprintf(stderr, "risksim: %s\n", rs_strerror(err));
        goto out;
    }
    rc = o.summary ? print_summary(result, model, o.threads)
                   : print_result_json(result, model, o.pretty);
out:
    if (rc == CLI_EXIT_CANCELLED) {
        fputs("risksim: cancelled\n", stderr);
    }
    rs_result_free(result);
    rs_model_free(model);
    json_object_put(request);
    rs_diag_free(diag);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * risksim db and risksim jobs: administration of the job database through risksim/db.h. No SQL
 * here: every read and write is a call of the db library, which owns the transactions.
 * ------------------------------------------------------------------------------------------- */

/* Default retention of `risksim db prune`: 7 days. */
#define CLI_DEFAULT_RETENTION_S ((uint64_t)7 * 24 * 3600)

/* Largest --retention: its milliseconds must fit an int64_t with room for "now" subtracted. */
#define CLI_MAX_RETENTION_S ((uint64_t)1000000000000u)

/* Largest --batch of `risksim db prune`. */
#define CLI_MAX_PRUNE_BATCH 100000u

/* Default --limit of `risksim jobs list`. */
#define CLI_DEFAULT_LIST_LIMIT 50u

/* Which options a subcommand accepts (admin_subcommand.accepts). */
enum {
    ADMIN_OPT_RETENTION = 1u << 0,
    ADMIN_OPT_BATCH = 1u << 1,
    ADMIN_OPT_STATUS = 1u << 2,
    ADMIN_OPT_LIMIT = 1u << 3,
    ADMIN_OPT_ID = 1u << 4, /* one positional job id, required */
    ADMIN_OPT_TO = 1u << 5  /* --to DEST, required */
};

/* The parsed arguments of one `risksim db ...` or `risksim jobs ...` call. */
typedef struct admin_options {
    const char *command;    /* "db" or "jobs" */
    const char *subcommand; /* "stats", "list", ... */
    const char *db_path;
    const char *to_path; /* backup: the copy to create */
    const char *id;
    uint64_t retention_s;
    uint64_t batch; /* 0: the library's default */
    bool have_status;
    rsdb_state status;
    uint64_t limit;
} admin_options;

/* One subcommand: its name, whether it may create the file, the options it accepts, the role its
 * connection opens with (the role decides synchronous; docs/internals.md, "Durability") and what it
 * does once the database is open. run returns the exit code. */
typedef struct admin_subcommand {
    const char *name;
    bool creates; /* may create a missing database file */
    unsigned accepts;
    rsdb_role role;
    int (*run)(rsdb *db, const admin_options *o);
} admin_subcommand;

/* Milliseconds since the Unix epoch (the db library's clock; 0 if it cannot be read). */
static int64_t epoch_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

/* Formats a time in ms since the epoch as "2026-11-22T03:31:37.123Z", or "-" for 0. */
static void format_time_ms(int64_t ms, char *buf, size_t size)
{
    if (ms <= 0) {
        snprintf(buf, size, "-");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, size, "%lld", (long long)ms);
        return;
    }
    char date[32];
    if (strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "%lld", (long long)ms);
        return;
    }
    snprintf(buf, size, "%s.%03dZ", date, (int)(ms % 1000));
}

/* Prints "risksim CMD SUB: what: <description>[: <SQLite detail>]" on stderr for a failed db
 * call and returns CLI_EXIT_FAILURE. db may be NULL (no detail then). */
static int report_db_error(const admin_options *o, const char *what, const rsdb *db, rsdb_err err)
{
    const char *detail = db != NULL ? rsdb_errmsg(db) : "";
    fprintf(stderr, "risksim %s %s: %s: %s%s%s\n", o->command, o->subcommand, what,
            rsdb_strerror(err), detail[0] != '\0' ? ": " : "", detail);
    return CLI_EXIT_FAILURE;
}

/* Checks that stdout took everything. Returns CLI_EXIT_OK, or CLI_EXIT_FAILURE after saying
 * why. */
static int finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "risksim: stdout: %s\n", strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* risksim db migrate: the open itself created or migrated the file. */
static int run_db_migrate(rsdb *db, const admin_options *o)
{
    (void)db;
    printf("%s: schema version %d\n", o->db_path, RSDB_SCHEMA_VERSION);
    return finish_stdout();
}

/* Prints the figures of rsdb_stats, one "name: value" line each. */
static void print_stats(const rsdb_stats *s)
{
    for (int st = RSDB_QUEUED; st <= RSDB_CANCELLED; st++) {
        char label[32];
        snprintf(label, sizeof label, "jobs %s:", rsdb_state_name((rsdb_state)st));
        printf("%-20s %llu\n", label, (unsigned long long)s->jobs[st]);
    }
    printf("%-20s %llu\n", "queue depth:", (unsigned long long)s->queue_depth);
    printf("%-20s %.3f s\n", "oldest queued age:", (double)s->oldest_queued_ms / 1000.0);
    printf("%-20s %lld bytes\n", "WAL size:", (long long)s->wal_bytes);
    printf("%-20s %llu (gave up %llu; this connection only)\n",
           "busy retries:", (unsigned long long)s->busy_retries,
           (unsigned long long)s->busy_failures);
}

/* risksim db stats: jobs by state, queue depth, oldest queued age, WAL size, busy retries. */
static int run_db_stats(rsdb *db, const admin_options *o)
{
    rsdb_stats s;
    rsdb_err err = rsdb_stats_get(db, epoch_ms(), &s);
    if (err != RSDB_OK) {
        return report_db_error(o, o->db_path, db, err);
    }
    print_stats(&s);
    return finish_stdout();
}

/* risksim db prune: deletes finished jobs older than the retention, in batches. */
static int run_db_prune(rsdb *db, const admin_options *o)
{
    size_t deleted = 0;
    rsdb_err err =
        rsdb_prune(db, epoch_ms(), (int64_t)o->retention_s * 1000, (size_t)o->batch, &deleted);
    if (err != RSDB_OK) {
        /* Earlier batches committed: say how many went before the failure. */
        fprintf(stderr, "risksim db prune: %zu job(s) pruned before the failure\n", deleted);
        return report_db_error(o, o->db_path, db, err);
    }
    printf("pruned %zu finished job(s) older than %llu s\n", deleted,
           (unsigned long long)o->retention_s);
    return finish_stdout();
}

/* risksim db check: the open checks the schema version and WAL mode; rsdb_check then reads
 * the whole file (SQLite's integrity check and the foreign key check). */
static int run_db_check(rsdb *db, const admin_options *o)
{
    char report[512];
    rsdb_err err = rsdb_check(db, report, sizeof report);
    if (err == RSDB_ECORRUPT) {
        fprintf(stderr, "risksim: %s: damaged: %s\n", o->db_path, report);
        return CLI_EXIT_FAILURE;
    }
    if (err != RSDB_OK) {
        return report_db_error(o, o->db_path, db, err);
    }
    rsdb_stats s;
    err = rsdb_stats_get(db, epoch_ms(), &s);
    if (err != RSDB_OK) {
        return report_db_error(o, o->db_path, db, err);
    }
    uint64_t total = 0;
    for (int st = RSDB_QUEUED; st <= RSDB_CANCELLED; st++) {
        total += s.jobs[st];
    }
    printf("%s: ok: schema version %d, integrity and foreign keys checked, %llu jobs\n", o->db_path,
           RSDB_SCHEMA_VERSION, (unsigned long long)total);
    return finish_stdout();
}

/* risksim db backup: a consistent copy of the database in a new file, taken while the service
 * runs (rsdb_backup), which the library has already checked as `db check` would. */
static int run_db_backup(rsdb *db, const admin_options *o)
{
    char errbuf[512] = "";
    rsdb_err err = rsdb_backup(db, o->to_path, errbuf, sizeof errbuf);
    if (err != RSDB_OK) {
        fprintf(stderr, "risksim db backup: %s: %s%s%s\n", o->to_path, rsdb_strerror(err),
                errbuf[0] != '\0' ? ": " : "", errbuf);
        return CLI_EXIT_FAILURE;
    }
    struct stat st;
    if (stat(o->to_path, &st) != 0) {
        fprintf(stderr, "risksim db backup: %s: %s\n", o->to_path, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    printf("%s: backed up to %s (%lld bytes, checked)\n", o->db_path, o->to_path,
           (long long)st.st_size);
    return finish_stdout();
}

/* risksim jobs list: newest first, one line per job. */
static int run_jobs_list(rsdb *db, const admin_options *o)
{
    rsdb_job_list list = {0};
    rsdb_err err = rsdb_job_list_page(db, o->have_status ? &o->status : NULL, 0, NULL,
                                      (size_t)o->limit, &list);
    if (err != RSDB_OK) {
        return report_db_error(o, o->db_path, db, err);
    }
    printf("%-26s  %-9s  %21s  %8s  %-24s  %s\n", "id", "state", "trials done/total", "attempts",
           "created", "finished");
    for (size_t i = 0; i < list.count; i++) {
        const rsdb_job *j = &list.items[i];
        char created[40], finished[40], trials[48];
        format_time_ms(j->created_ms, created, sizeof created);
        format_time_ms(j->finished_ms, finished, sizeof finished);
        snprintf(trials, sizeof trials, "%llu/%llu", (unsigned long long)j->trials_done,
                 (unsigned long long)j->trials);
        printf("%-26s  %-9s  %21s  %8lu  %-24s  %s\n", j->id, rsdb_state_name(j->state), trials,
               (unsigned long)j->attempts, created, finished);
    }
    rsdb_job_list_clear(&list);
    return finish_stdout();
}

/* Prints "label value" when value is set. */
static void print_field(const char *label, const char *value)
{
    if (value != NULL) {
        printf("%-18s %s\n", label, value);
    }
}

/* risksim jobs show ID: every stored field, then the request and result JSON as stored. */
static int run_jobs_show(rsdb *db, const admin_options *o)
{
    rsdb_job *j = NULL;
    rsdb_err err = rsdb_job_get(db, o->id, &j);
    if (err == RSDB_ENOTFOUND) {
        fprintf(stderr, "risksim jobs show: no job with id %s in %s\n", o->id, o->db_path);
        return CLI_EXIT_FAILURE;
    }
    if (err != RSDB_OK) {
        return report_db_error(o, o->id, db, err);
    }
    char t[40];
    printf("%-18s %s\n", "id:", j->id);
    printf("%-18s %s\n", "state:", rsdb_state_name(j->state));
    printf("%-18s %llu/%llu\n", "trials done:", (unsigned long long)j->trials_done,
           (unsigned long long)j->trials);
    printf("%-18s %lu\n", "attempts:", (unsigned long)j->attempts);
    printf("%-18s %s\n", "cancel requested:", j->cancel_requested ? "yes" : "no");
    format_time_ms(j->created_ms, t, sizeof t);
    printf("%-18s %s\n", "created:", t);
    format_time_ms(j->started_ms, t, sizeof t);
    printf("%-18s %s\n", "started:", t);
    format_time_ms(j->finished_ms, t, sizeof t);
    printf("%-18s %s\n", "finished:", t);
    if (j->lease_owner != NULL) {
        format_time_ms(j->lease_until_ms, t, sizeof t);
        printf("%-18s %s until %s\n", "lease:", j->lease_owner, t);
    }
    print_field("error code:", j->error_code);
    print_field("error message:", j->error_message);
    print_field("idempotency key:", j->idempotency_key);
    print_field("request:", j->request);
    print_field("result:", j->result);
    rsdb_job_free(j);
    return finish_stdout();
}

/* risksim jobs cancel ID: queued jobs are cancelled at once, running ones get a cancel
 * request, finished ones are left as they are (exit 0 in every case, like a repeated cancel). */
static int run_jobs_cancel(rsdb *db, const admin_options *o)
{
    rsdb_state state = RSDB_QUEUED;
    rsdb_err err = rsdb_job_cancel(db, o->id, epoch_ms(), &state);
    if (err == RSDB_ENOTFOUND) {
        fprintf(stderr, "risksim jobs cancel: no job with id %s in %s\n", o->id, o->db_path);
        return CLI_EXIT_FAILURE;
    }
    if (err != RSDB_OK) {
        return report_db_error(o, o->id, db, err);
    }
    if (state == RSDB_CANCELLED) {
        printf("%s: cancelled\n", o->id);
    } else if (state == RSDB_RUNNING) {
        printf("%s: running; cancel requested (its worker stops at its next progress write)\n",
               o->id);
    } else {
        printf("%s: already %s; nothing changed\n", o->id, rsdb_state_name(state));
    }
    return finish_stdout();
}

static const admin_subcommand db_subcommands[] = {
    {"migrate", true, 0, RSDB_ROLE_WORKER, run_db_migrate},
    {"stats", false, 0, RSDB_ROLE_READER, run_db_stats},
    {"prune", false, ADMIN_OPT_RETENTION | ADMIN_OPT_BATCH, RSDB_ROLE_WORKER, run_db_prune},
    {"check", false, 0, RSDB_ROLE_READER, run_db_check},
    {"backup", false, ADMIN_OPT_TO, RSDB_ROLE_READER, run_db_backup},
};

/* A cancel is what DELETE /simulations/{id} does on a request thread: it opens as one. */
static const admin_subcommand jobs_subcommands[] = {
    {"list", false, ADMIN_OPT_STATUS | ADMIN_OPT_LIMIT, RSDB_ROLE_READER, run_jobs_list},
    {"show", false, ADMIN_OPT_ID, RSDB_ROLE_READER, run_jobs_show},
    {"cancel", false, ADMIN_OPT_ID, RSDB_ROLE_ACCEPT, run_jobs_cancel},
};

/* Prints the help of `risksim db` to out. */
static void usage_db(FILE *out)
{
    fprintf(out,
            "usage: risksim db migrate --db FILE\n"
            "       risksim db stats --db FILE\n"
            "       risksim db prune --db FILE [--retention SECONDS] [--batch N]\n"
            "       risksim db check --db FILE\n"
            "       risksim db backup --db FILE --to DEST\n"
            "\n"
            "Administers the job database (SQLite) that the service shares:\n"
            "  migrate  create FILE, or bring it to this version's schema; print the version\n"
            "  stats    jobs by state, queue depth, oldest queued age, WAL size, busy retries\n"
            "  prune    delete finished jobs (and their events) older than the retention\n"
            "  check    verify FILE: integrity and foreign-key checks of the whole file\n"
            "  backup   copy FILE to the new file DEST while the service runs (a consistent\n"
            "           snapshot, one self-contained file, checked like `db check`)\n"
            "\n"
            "Options:\n"
            "  --db FILE            the database file (required; only migrate creates it)\n"
            "  --retention SECONDS  prune: keep finished jobs younger than this\n"
            "                       (default %llu, 7 days)\n"
            "  --batch N            prune: jobs deleted per transaction (default 500; at most %u)\n"
            "  --to DEST            backup: the copy to create (required; must not exist)\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 done, 1 failure, 64 usage error.\n",
            (unsigned long long)CLI_DEFAULT_RETENTION_S, CLI_MAX_PRUNE_BATCH);
}

/* Prints the help of `risksim jobs` to out. */
static void usage_jobs(FILE *out)
{
    fprintf(out,
            "usage: risksim jobs list --db FILE [--status S] [--limit N]\n"
            "       risksim jobs show --db FILE ID\n"
            "       risksim jobs cancel --db FILE ID\n"
            "\n"
            "Lists, shows or cancels the jobs of a job database:\n"
            "  list     jobs newest first, one a line\n"
            "  show     every field of job ID, with its request and result JSON\n"
            "  cancel   cancel job ID: a queued job at once, a running one at its next\n"
            "           progress write; a finished job is left unchanged\n"
            "\n"
            "Options:\n"
            "  --db FILE     the database file (required; must exist)\n"
            "  --status S    list: only jobs in state S (queued, running, completed, failed,\n"
            "                cancelled)\n"
            "  --limit N     list: at most N jobs (default %u; at most %u)\n"
            "  -h, --help    show this help\n"
            "\n"
            "Exit status: 0 done, 1 failure (including an unknown ID), 64 usage error.\n",
            CLI_DEFAULT_LIST_LIMIT, RSDB_LIST_MAX);
}

/* Reports a usage error of `risksim CMD` ("what: arg" on stderr, then the usage) and returns
 * CLI_EXIT_USAGE. arg may be NULL. */
static int admin_usage_error(const admin_options *o, void (*usage)(FILE *), const char *what,
                             const char *arg)
{
    fprintf(stderr, "risksim %s%s%s: %s%s%s\n\n", o->command, o->subcommand != NULL ? " " : "",
            o->subcommand != NULL ? o->subcommand : "", what, arg != NULL ? ": " : "",
            arg != NULL ? arg : "");
    usage(stderr);
    return CLI_EXIT_USAGE;
}

/* Parses a state name ("queued", ...) into *out. Returns 0, or -1 for an unknown name. */
static int parse_state(const char *text, rsdb_state *out)
{
    for (int st = RSDB_QUEUED; st <= RSDB_CANCELLED; st++) {
        if (strcmp(text, rsdb_state_name((rsdb_state)st)) == 0) {
            *out = (rsdb_state)st;
            return 0;
        }
    }
    return -1;
}

/* Parses the arguments after the subcommand (argv[0] is the command, argv[1] the subcommand)
 * into *o, accepting only what sub accepts. Returns -1 to run, or an exit code: CLI_EXIT_OK
 * after printing the help, CLI_EXIT_USAGE after printing what was wrong and the usage. */
static int parse_admin_options(int argc, char **argv, const admin_subcommand *sub,
                               void (*usage)(FILE *), admin_options *o)
{
    bool options_done = false;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        uint64_t n = 0;
        int m;

        if (options_done || arg[0] != '-') {
            if (!(sub->accepts & ADMIN_OPT_ID)) {
                return admin_usage_error(o, usage, "unexpected argument", arg);
            }
            if (o->id != NULL) {
                return admin_usage_error(o, usage, "more than one job id", arg);
            }
            o->id = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if ((m = option_value(argc, argv, &i, "--db", &value)) != 0) {
            if (m < 0 || value[0] == '\0') {
                return admin_usage_error(o, usage, "--db needs a file name", NULL);
            }
            o->db_path = value;
        } else if ((sub->accepts & ADMIN_OPT_TO) &&
                   (m = option_value(argc, argv, &i, "--to", &value)) != 0) {
            if (m < 0 || value[0] == '\0') {
                return admin_usage_error(o, usage, "--to needs a file name", NULL);
            }
            o->to_path = value;
        } else if ((sub->accepts & ADMIN_OPT_RETENTION) &&
                   (m = option_value(argc, argv, &i, "--retention", &value)) != 0) {
            if (m < 0 || parse_uint(value, 0, CLI_MAX_RETENTION_S, &n) != 0) {
                return admin_usage_error(o, usage, "--retention needs a number of seconds", value);
            }
            o->retention_s = n;
        } else if ((sub->accepts & ADMIN_OPT_BATCH) &&
                   (m = option_value(argc, argv, &i, "--batch", &value)) != 0) {
            if (m < 0 || parse_uint(value, 1, CLI_MAX_PRUNE_BATCH, &n) != 0) {
                return admin_usage_error(o, usage, "--batch needs an integer in [1, 100000]",
                                         value);
            }
            o->batch = n;
        } else if ((sub->accepts & ADMIN_OPT_STATUS) &&
                   (m = option_value(argc, argv, &i, "--status", &value)) != 0) {
            if (m < 0 || parse_state(value, &o->status) != 0) {
                return admin_usage_error(
                    o, usage, "--status needs queued, running, completed, failed or cancelled",
                    value);
            }
            o->have_status = true;
        } else if ((sub->accepts & ADMIN_OPT_LIMIT) &&
                   (m = option_value(argc, argv, &i, "--limit", &value)) != 0) {
            if (m < 0 || parse_uint(value, 1, RSDB_LIST_MAX, &n) != 0) {
                return admin_usage_error(o, usage, "--limit needs an integer in [1, 1000]", value);
            }
            o->limit = n;
        } else {
            return admin_usage_error(o, usage, "unknown option", arg);
        }
    }
    if (o->db_path == NULL) {
        return admin_usage_error(o, usage, "missing --db FILE", NULL);
    }
    if ((sub->accepts & ADMIN_OPT_TO) && o->to_path == NULL) {
        return admin_usage_error(o, usage, "missing --to DEST", NULL);
    }
    if ((sub->accepts & ADMIN_OPT_ID) && o->id == NULL) {
        return admin_usage_error(o, usage, "missing the job id", NULL);
    }
    return -1;
}

/* Runs `risksim CMD SUB ...` with sub chosen from table (n entries): parses, opens the database
 * with the subcommand's role (only "migrate" may create the file) and runs it. Returns the exit
 * code. */
static int run_admin(int argc, char **argv, const admin_subcommand *table, size_t n,
                     void (*usage)(FILE *))
{
    admin_options o;
    memset(&o, 0, sizeof o);
    o.command = argv[0];
    o.retention_s = CLI_DEFAULT_RETENTION_S;
    o.limit = CLI_DEFAULT_LIST_LIMIT;
    if (argc < 2) {
        return admin_usage_error(&o, usage, "missing the subcommand", NULL);
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const admin_subcommand *sub = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, argv[1]) == 0) {
            sub = &table[i];
        }
    }
    if (sub == NULL) {
        return admin_usage_error(&o, usage, "unknown subcommand", argv[1]);
    }
    o.subcommand = sub->name;
    int rc = parse_admin_options(argc, argv, sub, usage, &o);
    if (rc >= 0) {
        return rc;
    }

    /* rsdb_open creates a missing file: only migrate should, so that a mistyped path is an
     * error instead of a new empty database. */
    if (!sub->creates && access(o.db_path, F_OK) != 0) {
        fprintf(stderr, "risksim %s %s: %s: %s\n", o.command, o.subcommand, o.db_path,
                strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    /* A backup never overwrites: say so before opening (and perhaps migrating) the source. The
     * library refuses it again atomically (O_EXCL) should the file appear in between. */
    if (o.to_path != NULL && access(o.to_path, F_OK) == 0) {
        fprintf(stderr, "risksim %s %s: %s: already exists; a backup never overwrites a file\n",
                o.command, o.subcommand, o.to_path);
        return CLI_EXIT_FAILURE;
    }
    rsdb_options options;
    rsdb_options_default(&options);
    options.role = sub->role;
    rsdb *db = NULL;
    char errbuf[256] = "";
    rsdb_err err = rsdb_open(o.db_path, &options, &db, errbuf, sizeof errbuf);
    if (err != RSDB_OK) {
        fprintf(stderr, "risksim %s %s: %s: %s%s%s\n", o.command, o.subcommand, o.db_path,
                rsdb_strerror(err), errbuf[0] != '\0' ? ": " : "", errbuf);
        return CLI_EXIT_FAILURE;
    }
    rc = sub->run(db, &o);
    rsdb_free(db);
    return rc;
}

/* risksim db SUBCOMMAND --db FILE [options]. Returns the exit code. */
static int cmd_db(int argc, char **argv)
{
    return run_admin(argc, argv, db_subcommands, sizeof db_subcommands / sizeof db_subcommands[0],
                     usage_db);
}

/* risksim jobs SUBCOMMAND --db FILE [options]. Returns the exit code. */
static int cmd_jobs(int argc, char **argv)
{
    return run_admin(argc, argv, jobs_subcommands,
                     sizeof jobs_subcommands / sizeof jobs_subcommands[0], usage_jobs);
}

/* ---------------------------------------------------------------------------------------------
 * The command table and the dispatcher
 * ------------------------------------------------------------------------------------------- */

typedef struct cli_command {
    const char *name;
    const char *args;                  /* argument synopsis for the overview */
    const char *summary;               /* one line for the overview */
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
    void (*usage)(FILE *out);          /* the command's full help */
} cli_command;

static int cmd_help(int argc, char **argv);
static void usage_help(FILE *out);

static const cli_command commands[] = {
    {"simulate", "[options] FILE|-", "run a simulation request here and print the result",
     cmd_simulate, usage_simulate},
    {"db", "SUBCOMMAND --db FILE", "migrate, inspect, prune, check or back up the job database",
     cmd_db, usage_db},
    {"jobs", "SUBCOMMAND --db FILE", "list, show or cancel the jobs of the job database", cmd_jobs,
     usage_jobs},
    {"help", "[COMMAND]", "show this overview, or the options of COMMAND", cmd_help, usage_help},
};

/* Returns the command called name, or NULL. */
static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

/* Prints the overview (every command of the table) to out. */
static void usage_main(FILE *out)
{
    fprintf(out, "usage: risksim <command> [arguments]\n"
                 "       risksim --version\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char synopsis[64];
        snprintf(synopsis, sizeof synopsis, "%s %s", commands[i].name, commands[i].args);
        fprintf(out, "  %-26s %s\n", synopsis, commands[i].summary);
    }
    fprintf(out,
            "\n`risksim help COMMAND` shows the options of a command; docs/cli.md has more.\n");
}

/* Prints the help of `risksim help` to out. */
static void usage_help(FILE *out)
{
    fprintf(out, "usage: risksim help [COMMAND]\n"
                 "\n"
                 "Shows the list of commands, or the options of COMMAND.\n");
}

/* risksim help [COMMAND]: the overview, or a command's help, on stdout. */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stdout);
        return CLI_EXIT_OK;
    }
    const cli_command *cmd = find_command(argv[1]);
    if (cmd == NULL || argc > 2) {
        fprintf(stderr, "risksim help: unknown command: %s\n\n", argv[1]);
        usage_main(stderr);
        return CLI_EXIT_USAGE;
    }
    cmd->usage(stdout);
    return CLI_EXIT_OK;
}

/* Dispatches to the command named by argv[1]; returns its exit code (docs/cli.md). */
int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        usage_main(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("risksim %s\n", RISKSIM_VERSION);
        return CLI_EXIT_OK;
    }
    const cli_command *cmd = find_command(name);
    if (cmd == NULL) {
        fprintf(stderr, "risksim: unknown command: %s\n\n", name);
        usage_main(stderr);
        return CLI_EXIT_USAGE;
    }
    return cmd->run(argc - 1, argv + 1);
}
