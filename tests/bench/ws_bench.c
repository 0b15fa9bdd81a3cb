/*
 * ws_bench: delivery latency, throughput, query rate, memory and CPU of the WebSocket bridge.
 *
 * Why this file exists: the bridge has targets for 1,000 and 10,000 subscribers (delivery
 * latency, statements on the job store, memory per connection), and they are measured by a
 * program that prints figures for docs/benchmarks.md, not by timed assertions. It measures the
 * real bridge binary from outside, as it is deployed, once per requested number of subscribers,
 * each run on a fresh job store in a temporary directory:
 *
 *   1. it creates --jobs running jobs through librisksim-db (enqueued, then claimed), writes a
 *      configuration file and starts risksim-wsbridge on a free loopback port as a child
 *      process, then waits for its /healthz;
 *   2. it opens the subscribers: libwebsockets clients on one service thread (an epoll loop,
 *      so that the subscribers take as little of the machine as possible from the bridge), at
 *      most --inflight handshakes at a time, spread evenly over the jobs, and waits until each
 *      has its opening status and replay. The bridge's RSS before the first connection and after
 *      the last, once they are idle, gives the memory of an idle connection;
 *   3. a writer thread appends progress events to every job (--rate a second per job) for
 *      --seconds through rsdb_job_progress, noting when each commit returned, while the main
 *      thread plays the responder's maintenance thread (a checkpoint every 200 ms) and samples
 *      the bridge's RSS;
 *   4. once every subscriber has its job's last event, the bridge is stopped with SIGTERM.
 *
 * Printed per run: the latency from commit to receipt (p50, p99, max), messages received per
 * second, the statements per second the bridge runs on the job store (its /metrics), the RSS
 * per idle connection and under load, and the CPU of the bridge, of this program and of the rest
 * of the machine (/proc), with the targets beside them. Every subscriber must receive
 * every event of its job in order; progress collapsed for a slow reader is counted, not an
 * error. The exit status is 1 only when something did not work (the bridge did not start or
 * stop, a connection failed or closed early, an event was lost or out of order), never because
 * of a figure.
 *
 * Usage: ws_bench [--subscribers N[,N...]] [--jobs N] [--seconds N] [--rate N] [--poll-ms N]
 *                 [--inflight N] [--deflate] [--bridge PATH] [--dir DIR] [--keep] [--quick]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>

#include "risksim/db.h"

#ifndef RISKSIM_WSBRIDGE_BIN
#define RISKSIM_WSBRIDGE_BIN "risksim-wsbridge"
#endif
#ifndef RISKSIM_SOURCE_DIR
#define RISKSIM_SOURCE_DIR "."
#endif

extern char **environ;

/* The targets (docs/benchmarks.md). */
#define TARGET_P99_MS 50.0
#define TARGET_IDLE_CONN_BYTES 32768.0
/* Statements/s may differ this much between sizes and still count as independent of them. */
#define QUERIES_TOLERANCE 1.10

/* Job and event shapes: trialsDone of the k-th progress event of a job is k * PROGRESS_STEP. */
#define BENCH_OWNER "ws_bench"
#define BENCH_LEASE_MS 3600000
#define PROGRESS_STEP 10000u
#define JOB_TRIALS 1000000000ull
#define MAX_EVENTS_PER_JOB 100000u /* JOB_TRIALS / PROGRESS_STEP */

#define MAX_SIZES 8
/* Descriptors kept for everything but the subscribers (job store, pipes, the bridge's own). */
#define FD_RESERVE 256
/* The longest message a subscriber expects (status and progress are about 200 bytes). */
#define MSG_MAX 512
/* Period of the client's connect pacing while connections are still to be opened. */
#define TICK_US 2000
/* Pause between the last idle connection and the RSS reading. */
#define SETTLE_MS 1000
/* Sampling of the bridge's RSS during the load, and the maintenance checkpoint. */
#define SAMPLE_MS 50
#define CHECKPOINT_MS 200
#define CHECKPOINT_BYTES ((int64_t)4 << 20)
/* Time limits. */
#define HEALTH_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 60000
#define DRAIN_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 60000 /* plus 1 ms per subscriber */
#define HTTP_TIMEOUT_S 5
#define HTTP_MAX (256 * 1024)
#define PATH_SIZE 4200
#define CLIENT_PROTOCOL "ws-bench"

/* Settings from the command line. */
typedef struct options {
    unsigned sizes[MAX_SIZES]; /* subscribers of each run */
    size_t nsizes;
    unsigned jobs;
    unsigned seconds;
    unsigned rate; /* progress events per job per second */
    unsigned poll_ms;
    unsigned inflight;
    bool deflate; /* also run each size with ws_deflate = true */
    bool keep;
    const char *bridge;
    const char *base; /* where the temporary directory goes */
    char dir[PATH_SIZE];
} options;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static void complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "ws_bench: " and the message to stderr. */
static void complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ws_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Microseconds on the monotonic clock, the one the writer and the subscribers share. */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds since the Unix epoch: the job store's clock. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps until the monotonic time us. */
static void sleep_until_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void sleep_ms(long ms)
{
    sleep_until_us(mono_us() + (int64_t)ms * 1000);
}

/* Writes "dir/name" into out (PATH_SIZE bytes). Returns 0, or -1 when it does not fit. */
static int path_join(char out[PATH_SIZE], const char *dir, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    return n > 0 && n < PATH_SIZE ? 0 : -1;
}

/* "met" or "NOT met". */
static const char *verdict(bool met)
{
    return met ? "met" : "NOT met";
}

/* ---------------------------------------------------------------------------------------------
 * /proc: memory and CPU of a process and of the machine
 * ------------------------------------------------------------------------------------------- */

/* Reads the value (kB) of the line starting with key (e.g. "VmRSS:") of file into *kib.
 * Returns 0, or -1 when the file or the line is missing. */
static int proc_kib(const char *file, const char *key, long *kib)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    int rc = -1;
    while (rc != 0 && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && sscanf(line + klen, "%ld", kib) == 1)
            rc = 0;
    }
    fclose(f);
    return rc;
}

/* The line key of /proc/PID/status (kB) of pid. Returns 0/-1. */
static int proc_status_kib(pid_t pid, const char *key, long *kib)
{
    char file[64];
    snprintf(file, sizeof file, "/proc/%ld/status", (long)pid);
    return proc_kib(file, key, kib);
}

/* utime + stime of pid (clock ticks). Returns 0/-1. */
static int proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char file[64], text[1024];
    snprintf(file, sizeof file, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the command name may contain anything */
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    *ticks = (uint64_t)(ut + st);
    return 0;
}

/* Busy clock ticks of the whole machine (all CPUs; idle and iowait excluded). Returns 0/-1. */
static int proc_machine_busy(uint64_t *busy)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    *busy = (uint64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    return 0;
}

/* The 1-minute load average, or -1. */
static double loadavg1(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1.0;
    if (f == NULL)
        return l;
    if (fscanf(f, "%lf", &l) != 1)
        l = -1.0;
    fclose(f);
    return l;
}

/* CPU figures of a window. */
typedef struct cpu_mark {
    int64_t at_us;
    uint64_t bridge, self, machine; /* clock ticks */
} cpu_mark;

/* Reads the CPU counters of the bridge, this process and the machine. Returns 0/-1. */
static int cpu_mark_take(pid_t bridge, cpu_mark *m)
{
    m->at_us = mono_us();
    if (proc_cpu_ticks(bridge, &m->bridge) != 0 || proc_cpu_ticks(getpid(), &m->self) != 0 ||
        proc_machine_busy(&m->machine) != 0) {
        complain("cannot read the CPU counters in /proc");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Child processes
 * ------------------------------------------------------------------------------------------- */

/* Starts argv (argv[0] looked up in PATH when it has no '/') with stdin from /dev/null, stdout
 * on out_fd and stderr on err_fd (-1: /dev/null) and the environment env (NULL: this one). The
 * child gets SIGTERM when this process dies, so that no bridge outlives the benchmark. Returns
 * its pid, or -1 after printing why. */
static pid_t spawn(char *const argv[], char **env, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        complain("fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0)
        return pid;
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd < 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent ||
        dup2(null_fd, 0) < 0 || dup2(out_fd >= 0 ? out_fd : null_fd, 1) < 0 ||
        dup2(err_fd >= 0 ? err_fd : null_fd, 2) < 0)
        _exit(127);
    if (env != NULL)
        environ = env;
    execvp(argv[0], argv);
    _exit(127);
}

/* Waits up to ms for pid to end. Returns 1 with its status in *status when it ended, 0 when
 * it still runs, -1 when it cannot be waited for. */
static int wait_exit(pid_t pid, long ms, int *status)
{
    int64_t end = mono_us() + (int64_t)ms * 1000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (mono_us() >= end)
            return 0;
        sleep_ms(10);
    }
}

/* Writes `git describe --always --dirty` of the source tree to out, or "unknown". */
static void git_describe(char *out, size_t len)
{
    char *const argv[] = {(char *)"git",
                          (char *)"-C",
                          (char *)RISKSIM_SOURCE_DIR,
                          (char *)"describe",
                          (char *)"--always",
                          (char *)"--dirty",
                          NULL};
    int fds[2];
    snprintf(out, len, "unknown");
    if (pipe(fds) != 0)
        return;
    pid_t pid = spawn(argv, NULL, fds[1], -1);
    close(fds[1]);
    char text[128];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof text - 1 && (r = read(fds[0], text + n, sizeof text - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || n == 0)
        return;
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(out, len, "%s", text);
}

/* ---------------------------------------------------------------------------------------------
 * HTTP to the bridge: /healthz and /metrics
 * ------------------------------------------------------------------------------------------- */

/* Connects a blocking TCP socket to 127.0.0.1:port with HTTP_TIMEOUT_S timeouts. Returns the
 * descriptor, or -1. */
static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = HTTP_TIMEOUT_S, .tv_usec = 0};
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* GETs path from the bridge on 127.0.0.1:port. Stores the status in *status and the body
 * (NUL-terminated) in a new buffer in *body (free it). Returns 0, or -1 when no complete
 * answer came. */
static int http_get(int port, const char *path, int *status, char **body)
{
    char req[256];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    char *buf = malloc(HTTP_MAX);
    size_t n = 0;
    ssize_t r = -1;
    if (buf != NULL && write(fd, req, (size_t)len) == len) {
        while (n < HTTP_MAX - 1 && (r = read(fd, buf + n, HTTP_MAX - 1 - n)) > 0)
            n += (size_t)r;
    }
    close(fd);
    if (buf == NULL || r < 0) {
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    char *start = strstr(buf, "\r\n\r\n");
    if (start == NULL || sscanf(buf, "HTTP/%*d.%*d %d", status) != 1) {
        free(buf);
        return -1;
    }
    memmove(buf, start + 4, strlen(start + 4) + 1);
    *body = buf;
    return 0;
}

/* The counters of /metrics the figures use. */
enum {
    M_TICKS,
    M_PROBES,
    M_EVENT_QUERIES,
    M_EVENTS_READ,
    M_REPLAY_QUERIES,
    M_SENT,
    M_COLLAPSED,
    M_DROPPED,
    M_SESSIONS,
    M_LAG_SUM,
    M_LAG_COUNT,
    M_LAG_MAX,
    M_COUNT
};

static const char *const metric_names[M_COUNT] = {
    "risksim_bridge_poll_ticks_total",
    "risksim_bridge_version_probes_total",
    "risksim_bridge_event_queries_total",
    "risksim_bridge_events_read_total",
    "risksim_bridge_replay_queries_total",
    "risksim_bridge_messages_sent_total",
    "risksim_bridge_messages_collapsed_total",
    "risksim_bridge_messages_dropped_total",
    "risksim_bridge_sessions",
    "risksim_bridge_poll_lag_summary_seconds_sum",
    "risksim_bridge_poll_lag_summary_seconds_count",
    "risksim_bridge_poll_lag_max_seconds",
};

typedef struct metrics {
    double v[M_COUNT];
    int64_t at_us;
} metrics;

/* Stores the value of each line of text whose name is in metric_names. Returns 0 when every
 * one was found, else -1. */
static int metrics_parse(char *text, metrics *m)
{
    unsigned found = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *space = strchr(line, ' ');
        if (line[0] == '#' || space == NULL)
            continue;
        *space = '\0';
        for (int i = 0; i < M_COUNT; i++) {
            if (strcmp(line, metric_names[i]) == 0) {
                m->v[i] = strtod(space + 1, NULL);
                found |= 1u << i;
            }
        }
    }
    return found == (1u << M_COUNT) - 1 ? 0 : -1;
}

/* Reads the bridge's /metrics into *m. Returns 0, or -1 after printing why. */
static int metrics_read(int port, metrics *m)
{
    int status = 0;
    char *body = NULL;
    memset(m, 0, sizeof *m);
    m->at_us = mono_us();
    if (http_get(port, "/metrics", &status, &body) != 0 || status != 200) {
        complain("GET /metrics of the bridge failed (status %d)", status);
        free(body);
        return -1;
    }
    int rc = metrics_parse(body, m);
    free(body);
    if (rc != 0)
        complain("the bridge's /metrics lacks a counter the benchmark reads");
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The job store
 * ------------------------------------------------------------------------------------------- */

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
        complain("open %s: %s: %s", path, rsdb_strerror(err), errbuf);
        return NULL;
    }
    return db;
}

/* Prints a failed call and returns -1. */
static int db_fail(rsdb *db, const char *what, rsdb_err err)
{
    complain("%s: %s%s%s", what, rsdb_strerror(err),
             db != NULL && rsdb_errmsg(db)[0] != '\0' ? ": " : "",
             db != NULL ? rsdb_errmsg(db) : "");
    return -1;
}

/* Creates the job store at path with n running jobs (enqueued, then claimed by BENCH_OWNER)
 * and writes their ids to ids. Returns 0/-1. */
static int jobs_create(const char *path, unsigned n, char (*ids)[RSDB_ID_SIZE])
{
    static const char request[] = "{\"name\":\"ws_bench\",\"trials\":1000000000}";
    rsdb *db = open_db(path, RSDB_ROLE_WORKER);
    int rc = db != NULL ? 0 : -1;
    rsdb_job_spec spec = {.request = request, .trials = JOB_TRIALS};
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        char id[RSDB_ID_SIZE];
        rsdb_err err = rsdb_job_enqueue(db, &spec, 0, wall_ms(), id, NULL);
        if (err != RSDB_OK)
            rc = db_fail(db, "enqueue", err);
    }
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        rsdb_job *job = NULL;
        rsdb_err err = rsdb_job_claim(db, BENCH_OWNER, BENCH_LEASE_MS, wall_ms(), &job);
        if (err != RSDB_OK) {
            rc = db_fail(db, "claim", err);
            break;
        }
        memcpy(ids[i], job->id, RSDB_ID_SIZE);
        rsdb_job_free(job);
    }
    rsdb_free(db);
    return rc;
}

/* The writer thread: the job workers' progress writes. */
typedef struct writer {
    const char *db_path;
    char (*ids)[RSDB_ID_SIZE];
    unsigned jobs;
    unsigned rate;
    uint32_t per_job;   /* events per job */
    int64_t *commit_us; /* [job * per_job + k - 1]: when the k-th event's commit returned */
    int64_t start_us, end_us;
    int64_t late_max_us; /* the most a write started after its planned time */
    uint64_t written;
    int failed;
    atomic_int done;
    pthread_t thread;
} writer;

/* Appends the k-th progress event to job id. Returns 0/-1. */
static int progress_write(rsdb *db, const char *id, uint32_t k)
{
    char data[160];
    uint64_t done = (uint64_t)k * PROGRESS_STEP;
    snprintf(data, sizeof data,
             "{\"progress\":%.6f,\"trialsDone\":%llu,\"trials\":%llu,\"phase\":\"sampling\"}",
             (double)done / (double)JOB_TRIALS, (unsigned long long)done, JOB_TRIALS);
    rsdb_err err =
        rsdb_job_progress(db, id, BENCH_OWNER, done, BENCH_LEASE_MS, data, wall_ms(), NULL);
    return err == RSDB_OK ? 0 : db_fail(db, "progress", err);
}

/* Writes per_job events to every job, event i at start + i / (jobs * rate) seconds to job
 * i % jobs (so the commits are spread evenly over time and jobs), on its own connection. */
static void *writer_main(void *arg)
{
    writer *w = arg;
    rsdb *db = open_db(w->db_path, RSDB_ROLE_WORKER);
    uint64_t total = (uint64_t)w->jobs * w->per_job;
    double period_us = 1e6 / ((double)w->jobs * (double)w->rate);
    w->failed = db == NULL;
    w->start_us = mono_us();
    for (uint64_t i = 0; !w->failed && i < total; i++) {
        int64_t due = w->start_us + (int64_t)((double)i * period_us);
        int64_t now = mono_us();
        if (due > now)
            sleep_until_us(due);
        else if (now - due > w->late_max_us)
            w->late_max_us = now - due;
        unsigned job = (unsigned)(i % w->jobs);
        uint32_t k = (uint32_t)(i / w->jobs) + 1;
        w->failed = progress_write(db, w->ids[job], k) != 0;
        w->commit_us[(size_t)job * w->per_job + k - 1] = mono_us();
        w->written += !w->failed;
    }
    w->end_us = mono_us();
    rsdb_free(db);
    atomic_store(&w->done, 1);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The bridge
 * ------------------------------------------------------------------------------------------- */

typedef struct bridge {
    pid_t pid; /* 0 when not running */
    int port;
    char conf[PATH_SIZE];
    char log[PATH_SIZE];
} bridge;

/* A loopback port that was free a moment ago. Returns it, or -1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Writes the bridge's configuration file: the run's job store and port, session limits above
 * the subscribers, poll_ms and ws_deflate; every other key keeps its default. Returns 0/-1. */
static int bridge_config(const bridge *br, const char *db_path, unsigned sessions, unsigned poll_ms,
                         bool deflate)
{
    FILE *f = fopen(br->conf, "w");
    if (f == NULL) {
        complain("%s: %s", br->conf, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# Written by ws_bench for one run.\n"
            "db_path = %s\nbridge_listen = 127.0.0.1:%d\nlog_level = info\npoll_ms = %u\n"
            "max_sessions = %u\nmax_sessions_per_ip = %u\nws_deflate = %s\n",
            db_path, br->port, poll_ms, sessions, sessions, deflate ? "true" : "false");
    if (fclose(f) != 0) {
        complain("%s: %s", br->conf, strerror(errno));
        return -1;
    }
    return 0;
}

/* This process's environment without the RISKSIM_* variables, which would override the
 * configuration file. Returns a new array (free it, not its strings), or NULL. */
static char **env_without_risksim(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "RISKSIM_", 8) != 0)
            env[k++] = environ[i];
    return env;
}

/* Kills a running bridge (SIGKILL) and reaps it. */
static void bridge_kill(bridge *br)
{
    int status = 0;
    if (br->pid <= 0)
        return;
    kill(br->pid, SIGKILL);
    while (waitpid(br->pid, &status, 0) < 0 && errno == EINTR) {
    }
    br->pid = 0;
}

/* Returns 1 when the bridge still runs; otherwise reaps it, prints how it ended and returns 0. */
static int bridge_alive(bridge *br)
{
    int status = 0;
    if (br->pid <= 0)
        return 0;
    if (waitpid(br->pid, &status, WNOHANG) == 0)
        return 1;
    complain("the bridge ended unexpectedly (%s %d%s); its log: %s",
             WIFSIGNALED(status) ? "signal" : "status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
             WIFEXITED(status) && WEXITSTATUS(status) == 127 ? ": it could not be run" : "",
             br->log);
    br->pid = 0;
    return 0;
}

/* Waits until the bridge answers /healthz with 200. Returns 0/-1. */
static int bridge_wait_healthy(bridge *br)
{
    int64_t end = mono_us() + (int64_t)HEALTH_TIMEOUT_MS * 1000;
    while (bridge_alive(br) && mono_us() < end) {
        int status = 0;
        char *body = NULL;
        if (http_get(br->port, "/healthz", &status, &body) == 0 && status == 200) {
            free(body);
            return 0;
        }
        free(body);
        sleep_ms(20);
    }
    if (br->pid > 0)
        complain("the bridge did not become healthy in %d ms; its log: %s", HEALTH_TIMEOUT_MS,
                 br->log);
    return -1;
}

/* Starts the bridge bin in dir (its configuration and log there) on a free port, on the job
 * store db_path, and waits until it is healthy. Returns 0, or -1 with no bridge left running. */
static int bridge_start(bridge *br, const options *o, const char *dir, const char *db_path,
                        unsigned sessions, bool deflate)
{
    memset(br, 0, sizeof *br);
    br->port = free_port();
    if (br->port < 0 || path_join(br->conf, dir, "bridge.conf") != 0 ||
        path_join(br->log, dir, "bridge.log") != 0 ||
        bridge_config(br, db_path, sessions, o->poll_ms, deflate) != 0)
        return -1;
    int log_fd = open(br->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char **env = env_without_risksim();
    char *const argv[] = {(char *)o->bridge, (char *)"--config", br->conf, NULL};
    if (log_fd >= 0 && env != NULL)
        br->pid = spawn(argv, env, -1, log_fd);
    if (log_fd < 0 || env == NULL)
        complain("cannot prepare the bridge's log or environment");
    if (log_fd >= 0)
        close(log_fd);
    free(env);
    if (br->pid <= 0) {
        br->pid = 0;
        return -1;
    }
    if (bridge_wait_healthy(br) != 0) {
        bridge_kill(br);
        return -1;
    }
    return 0;
}

/* Stops the bridge with SIGTERM (it closes every session with 1001) and waits for it; kills it
 * after STOP_TIMEOUT_MS. Stores the seconds it took in *secs. Returns 0 when it ended with
 * status 0, else -1 after printing why. */
static int bridge_stop(bridge *br, double *secs)
{
    int status = 0;
    if (br->pid <= 0)
        return -1;
    int64_t t0 = mono_us();
    int ended = kill(br->pid, SIGTERM) == 0 ? wait_exit(br->pid, STOP_TIMEOUT_MS, &status) : -1;
    *secs = (double)(mono_us() - t0) / 1e6;
    if (ended != 1) {
        complain("the bridge did not stop within %d ms of SIGTERM: killed", STOP_TIMEOUT_MS);
        bridge_kill(br);
        return -1;
    }
    br->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        complain("the bridge stopped with %s %d; its log: %s",
                 WIFSIGNALED(status) ? "signal" : "status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), br->log);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The subscribers: libwebsockets clients on one service thread
 * ------------------------------------------------------------------------------------------- */

typedef enum sub_state {
    SUB_WAITING = 0, /* not connected yet */
    SUB_CONNECTING,
    SUB_OPEN,
    SUB_FAILED,
    SUB_CLOSED
} sub_state;

typedef struct client client;

/* One subscriber, the user data of its connection. */
typedef struct sub {
    client *c;
    unsigned index;
    unsigned job;
    sub_state state;
    int have_status;    /* the opening status arrived */
    int ready;          /* ... and the replay up to it */
    int64_t status_seq; /* the seq of the opening status */
    int64_t last_seq;   /* of the last event received */
    uint32_t last_k;    /* the last progress event received (k of trialsDone) */
    uint32_t got;       /* progress events received */
    int close_code;
    size_t len;
    char buf[MSG_MAX];
} sub;

/* The subscribers and their service thread. The service thread alone touches subs; the main
 * thread reads the atomic counters while it runs, and the rest after it ended. */
struct client {
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;
    sub *subs;
    unsigned n;
    unsigned next;     /* the next subscriber to connect */
    unsigned inflight; /* handshakes under way */
    unsigned inflight_max;
    char (*ids)[RSDB_ID_SIZE];
    int port;
    uint32_t per_job;
    int64_t *recv_us; /* [sub * per_job + k - 1]: when its k-th progress event arrived */
    int64_t first_connect_us, last_open_us;
    atomic_uint opened, failed, ready, closed, early_closes, complete;
    atomic_ullong progress, disorder, bad, other;
    atomic_int closing; /* from now on, closes are expected */
    char error[256];    /* the first problem seen */
    pthread_t thread;
    int thread_started;
    struct ev_loop *loop;
    ev_async wake; /* client_halt's signal to the service thread */
};

static void client_error(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keeps the first problem seen (the others are counted). */
static void client_error(client *c, const char *fmt, ...)
{
    if (c->error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

/* The integer after key (e.g. "\"seq\":") in text, or -1 when absent. */
static int64_t json_int(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL)
        return -1;
    p += strlen(key);
    return *p >= '0' && *p <= '9' ? strtoll(p, NULL, 10) : -1;
}

/* Whether the message text has "type":"<type>". */
static bool json_type_is(const char *text, const char *type)
{
    char key[48];
    snprintf(key, sizeof key, "\"type\":\"%s\"", type);
    return strstr(text, key) != NULL;
}

static void sub_ready(sub *s)
{
    s->ready = 1;
    atomic_fetch_add(&s->c->ready, 1);
}

/* A progress event of the subscriber's job: checks its order and notes when it arrived. */
static void sub_progress(sub *s, int64_t now)
{
    client *c = s->c;
    int64_t done = json_int(s->buf, "\"trialsDone\":");
    int64_t k = done / PROGRESS_STEP;
    if (done < 0 || done % PROGRESS_STEP != 0 || k < 1 || k > (int64_t)c->per_job ||
        strstr(s->buf, c->ids[s->job]) == NULL) {
        client_error(c, "subscriber %u: unexpected progress event %.120s", s->index, s->buf);
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    if (k <= s->last_k) {
        client_error(c, "subscriber %u: progress %lld after %u", s->index, (long long)k, s->last_k);
        atomic_fetch_add(&c->disorder, 1);
        return;
    }
    c->recv_us[(size_t)s->index * c->per_job + (size_t)k - 1] = now;
    s->last_k = (uint32_t)k;
    s->got++;
    atomic_fetch_add(&c->progress, 1);
    if (k == (int64_t)c->per_job)
        atomic_fetch_add(&c->complete, 1);
}

/* One complete message (NUL-terminated in s->buf) received at now. */
static void sub_message(sub *s, int64_t now)
{
    client *c = s->c;
    int64_t seq = json_int(s->buf, "\"seq\":");
    if (!s->have_status) {
        if (!json_type_is(s->buf, "status") || seq < 0) {
            client_error(c, "subscriber %u: the first message is not a status: %.120s", s->index,
                         s->buf);
            atomic_fetch_add(&c->bad, 1);
            return;
        }
        s->have_status = 1;
        s->status_seq = seq;
        if (seq == 0)
            sub_ready(s);
        return;
    }
    if (seq < 0) { /* heartbeat, pong: no seq */
        atomic_fetch_add(&c->other, 1);
        return;
    }
    if (seq <= s->last_seq) {
        client_error(c, "subscriber %u: seq %lld after %lld", s->index, (long long)seq,
                     (long long)s->last_seq);
        atomic_fetch_add(&c->disorder, 1);
        return;
    }
    s->last_seq = seq;
    if (!s->ready && seq >= s->status_seq)
        sub_ready(s);
    if (json_type_is(s->buf, "progress"))
        sub_progress(s, now);
    else
        atomic_fetch_add(&c->other, 1);
}

/* LWS_CALLBACK_CLIENT_RECEIVE: collects a message's pieces. Returns 0, or -1 (close) for a
 * message longer than MSG_MAX. */
static int sub_receive(sub *s, struct lws *wsi, const void *in, size_t len)
{
    if (s->len + len >= MSG_MAX) {
        client_error(s->c, "subscriber %u: a message longer than %d bytes", s->index, MSG_MAX);
        atomic_fetch_add(&s->c->bad, 1);
        s->len = 0;
        return -1;
    }
    memcpy(s->buf + s->len, in, len);
    s->len += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;
    s->buf[s->len] = '\0';
    sub_message(s, mono_us());
    s->len = 0;
    return 0;
}

/* The handshake failed (or the connection could not even start). */
static void sub_failed(sub *s, const char *why)
{
    client *c = s->c;
    if (s->state != SUB_CONNECTING)
        return;
    s->state = SUB_FAILED;
    c->inflight--;
    atomic_fetch_add(&c->failed, 1);
    client_error(c, "subscriber %u: connection failed: %s", s->index, why);
}

static void sub_opened(sub *s)
{
    client *c = s->c;
    if (s->state != SUB_CONNECTING)
        return;
    s->state = SUB_OPEN;
    c->inflight--;
    c->last_open_us = mono_us();
    atomic_fetch_add(&c->opened, 1);
}

static void sub_closed(sub *s)
{
    client *c = s->c;
    if (s->state == SUB_CONNECTING) {
        sub_failed(s, "closed during the handshake");
        return;
    }
    if (s->state != SUB_OPEN)
        return;
    s->state = SUB_CLOSED;
    atomic_fetch_add(&c->closed, 1);
    if (!atomic_load(&c->closing)) {
        atomic_fetch_add(&c->early_closes, 1);
        client_error(c, "subscriber %u: closed during the run (close code %d)", s->index,
                     s->close_code);
    }
}

static int client_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    sub *s = user;
    const unsigned char *p = in;
    if (s == NULL)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        sub_failed(s, in != NULL ? (const char *)in : "connection error");
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        sub_opened(s);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return sub_receive(s, wsi, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (p != NULL && len >= 2)
            s->close_code = (p[0] << 8) | p[1];
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        sub_closed(s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols client_protocols[] = {
    {CLIENT_PROTOCOL, client_callback, 0, MSG_MAX, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_extension client_deflate[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

/* Starts the handshake of one subscriber. */
static void sub_connect(client *c, sub *s)
{
    char path[128];
    snprintf(path, sizeof path, "/risksim/simulations/%s/stream", c->ids[s->job]);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->ctx;
    ci.address = "127.0.0.1";
    ci.port = c->port;
    ci.path = path;
    ci.host = "127.0.0.1";
    ci.userdata = s;
    ci.local_protocol_name = CLIENT_PROTOCOL;
    ci.ietf_version_or_minus_one = -1;
    s->state = SUB_CONNECTING;
    c->inflight++;
    if (c->first_connect_us == 0)
        c->first_connect_us = mono_us();
    if (lws_client_connect_via_info(&ci) == NULL)
        sub_failed(s, "lws_client_connect_via_info failed");
}

/* The connect pacing: keeps inflight_max handshakes under way until every subscriber has
 * started; then it stops, so that the loaded service loop wakes only for its sockets. */
static void client_tick(lws_sorted_usec_list_t *sul)
{
    client *c = lws_container_of(sul, client, tick);
    while (c->next < c->n && c->inflight < c->inflight_max)
        sub_connect(c, &c->subs[c->next++]);
    if (c->next < c->n)
        lws_sul_schedule(c->ctx, 0, &c->tick, client_tick, TICK_US);
}

/* The service thread: the event loop until client_halt breaks it. */
static void *client_main(void *arg)
{
    client *c = arg;
    ev_run(c->loop, 0);
    return NULL;
}

/* Runs on the service thread when client_halt signals the loop: ends it. */
static void client_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Frees what client_start allocated (the thread must have ended). */
static void client_free(client *c)
{
    if (c->ctx != NULL)
        lws_context_destroy(c->ctx);
    c->ctx = NULL;
    if (c->loop != NULL) {
        ev_async_stop(c->loop, &c->wake);
        ev_loop_destroy(c->loop);
    }
    c->loop = NULL;
    free(c->subs);
    free(c->recv_us);
    c->subs = NULL;
    c->recv_us = NULL;
}

/* Creates the client context on an epoll event loop (libev through libwebsockets' event library
 * support: with poll(), 10,000 idle sockets cost the client most of a CPU, which the bridge
 * needs on a small machine) and n subscribers of the jobs ids (subscriber i watches job
 * i % jobs), and starts the service thread, which connects them. Returns 0, or -1 with
 * everything freed. */
static int client_start(client *c, unsigned n, char (*ids)[RSDB_ID_SIZE], unsigned jobs,
                        uint32_t per_job, int port, unsigned inflight, bool deflate)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->ids = ids;
    c->port = port;
    c->per_job = per_job;
    c->inflight_max = inflight;
    c->subs = calloc(n, sizeof *c->subs);
    c->recv_us = calloc((size_t)n * per_job, sizeof *c->recv_us);
    c->loop = ev_loop_new(EVBACKEND_EPOLL);
    void *loops[1] = {c->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = client_protocols;
    info.extensions = deflate ? client_deflate : NULL;
    info.max_http_header_pool = (unsigned short)(inflight < 65535 ? inflight : 65535);
    info.options = LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = loops;
    info.gid = -1;
    info.uid = -1;
    if (c->loop != NULL) {
        ev_async_init(&c->wake, client_wake);
        ev_async_start(c->loop, &c->wake);
    }
    if (c->subs != NULL && c->recv_us != NULL && c->loop != NULL)
        c->ctx = lws_create_context(&info);
    if (c->ctx == NULL) {
        complain("cannot create the client context for %u subscribers (an epoll loop through "
                 "libev and libwebsockets' libev event library are needed)",
                 n);
        client_free(c);
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        c->subs[i] = (sub){.c = c, .index = i, .job = i % jobs};
    lws_sul_schedule(c->ctx, 0, &c->tick, client_tick, 0);
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        complain("cannot start the client thread");
        client_free(c);
        return -1;
    }
    c->thread_started = 1;
    return 0;
}

/* Ends the service thread (closes from now on are expected); the connections stay. */
static void client_halt(client *c)
{
    atomic_store(&c->closing, 1);
    if (!c->thread_started)
        return;
    ev_async_send(c->loop, &c->wake);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
}

/* Stops the service thread and frees the client (open connections are dropped). */
static void client_stop(client *c)
{
    client_halt(c);
    client_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * One run
 * ------------------------------------------------------------------------------------------- */

/* The figures of one run. */
typedef struct run_result {
    unsigned subs;
    bool deflate;
    unsigned opened, failed, early_closes;
    double connect_s;
    double sessions; /* the bridge's gauge once connected */
    double stop_s;   /* from SIGTERM to the bridge's exit */
    long rss_before_kib, rss_idle_kib, rss_peak_kib;
    double idle_conn_bytes;
    uint64_t samples;
    double p50_ms, p99_ms, max_ms;
    double *p99_by_s; /* p99 of the events committed in each second of the load (ms; -1: none
                         of them arrived, all collapsed) */
    size_t nsec;
    double recv_per_s, offered_per_s;
    double window_s;
    double probes_per_s, event_q_per_s, replay_q_per_s, ticks_per_s, events_read_per_s;
    double sent_per_s, lag_mean_ms, lag_max_ms;
    double collapsed, dropped;
    uint64_t missing, disorder, bad, other;
    double cpu_bridge, cpu_self, cpu_other, cpu_machine; /* % of one CPU */
    double load_start, load_end;
    double writer_rate, writer_late_ms;
    bool measured; /* the load ran and its figures were computed */
    int ok;
} run_result;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The value at quantile q (0..1, nearest rank) of the sorted array v of n values. */
static double quantile(const double *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n + 0.999999);
    return n == 0 ? 0.0 : v[i == 0 ? 0 : (i > n ? n : i) - 1];
}

/* Writes to lat the latency (ms) from commit to receipt of every event k in [k0, k1) (0-based)
 * that a subscriber received, and the latest receipt to *last. Returns the count. */
static size_t latency_collect(const client *c, const writer *w, uint32_t k0, uint32_t k1,
                              double *lat, int64_t *last)
{
    size_t n = 0;
    for (unsigned i = 0; i < c->n; i++) {
        const int64_t *got = c->recv_us + (size_t)i * c->per_job;
        const int64_t *sent = w->commit_us + (size_t)c->subs[i].job * c->per_job;
        for (uint32_t k = k0; k < k1; k++) {
            if (got[k] == 0 || sent[k] == 0)
                continue;
            lat[n++] = got[k] > sent[k] ? (double)(got[k] - sent[k]) / 1000.0 : 0.0;
            *last = got[k] > *last ? got[k] : *last;
        }
    }
    qsort(lat, n, sizeof *lat, compare_double);
    return n;
}

/* Latency quantiles of every event received and, for each second of the load, the p99 of the
 * events committed in it (the k-th events of the jobs are committed in second (k-1) / rate);
 * the receipt rate from the writer's start to the last receipt. Returns 0/-1 (out of memory). */
static int figures_latency(const client *c, const writer *w, run_result *r)
{
    size_t cap = (size_t)c->n * c->per_job;
    r->nsec = c->per_job / w->rate;
    double *lat = malloc((cap > 0 ? cap : 1) * sizeof *lat);
    r->p99_by_s = calloc(r->nsec > 0 ? r->nsec : 1, sizeof *r->p99_by_s);
    if (lat == NULL || r->p99_by_s == NULL) {
        free(lat);
        return -1;
    }
    int64_t last = w->start_us;
    size_t n = latency_collect(c, w, 0, c->per_job, lat, &last);
    r->samples = n;
    r->p50_ms = quantile(lat, n, 0.50);
    r->p99_ms = quantile(lat, n, 0.99);
    r->max_ms = n > 0 ? lat[n - 1] : 0.0;
    r->recv_per_s = last > w->start_us ? (double)n * 1e6 / (double)(last - w->start_us) : 0.0;
    for (size_t j = 0; j < r->nsec; j++) {
        size_t m = latency_collect(c, w, (uint32_t)(j * w->rate), (uint32_t)((j + 1) * w->rate),
                                   lat, &last);
        r->p99_by_s[j] = m > 0 ? quantile(lat, m, 0.99) : -1.0;
    }
    free(lat);
    return 0;
}

/* Events not received by open subscribers (a collapse for a slow reader, or a loss). */
static uint64_t figures_missing(const client *c)
{
    uint64_t missing = 0;
    for (unsigned i = 0; i < c->n; i++)
        if (c->subs[i].state == SUB_OPEN || c->subs[i].state == SUB_CLOSED)
            missing += c->per_job - c->subs[i].got;
    return missing;
}

/* The bridge's statements, messages and poll lag per second of the window between m0 and m1,
 * and the CPU shares between c0 and c1. */
static void figures_window(const metrics *m0, const metrics *m1, const cpu_mark *c0,
                           const cpu_mark *c1, run_result *r)
{
    double s = (double)(m1->at_us - m0->at_us) / 1e6;
    double d[M_COUNT];
    for (int i = 0; i < M_COUNT; i++)
        d[i] = m1->v[i] - m0->v[i];
    r->window_s = s;
    r->probes_per_s = d[M_PROBES] / s;
    r->event_q_per_s = d[M_EVENT_QUERIES] / s;
    r->replay_q_per_s = d[M_REPLAY_QUERIES] / s;
    r->ticks_per_s = d[M_TICKS] / s;
    r->events_read_per_s = d[M_EVENTS_READ] / s;
    r->sent_per_s = d[M_SENT] / s;
    r->lag_mean_ms = d[M_LAG_COUNT] > 0 ? d[M_LAG_SUM] * 1000.0 / d[M_LAG_COUNT] : 0.0;
    r->lag_max_ms = m1->v[M_LAG_MAX] * 1000.0;
    double cs = (double)(c1->at_us - c0->at_us) / 1e6 * (double)sysconf(_SC_CLK_TCK) / 100.0;
    r->cpu_bridge = (double)(c1->bridge - c0->bridge) / cs;
    r->cpu_self = (double)(c1->self - c0->self) / cs;
    r->cpu_machine = (double)(c1->machine - c0->machine) / cs;
    r->cpu_other = r->cpu_machine - r->cpu_bridge - r->cpu_self;
    if (r->cpu_other < 0.0)
        r->cpu_other = 0.0;
}

/* What one run holds, so that every exit path frees the same things. */
typedef struct run {
    char dir[PATH_SIZE];
    char db_path[PATH_SIZE];
    char (*ids)[RSDB_ID_SIZE];
    bridge br;
    client cl;
    writer w;
    rsdb *maint; /* the maintenance connection */
    bool client_started, writer_started;
} run;

/* Waits until every subscriber's handshake ended and every open one has its opening status
 * and replay. Returns 0, or -1 on timeout or when the bridge died. */
static int wait_connected(run *x)
{
    client *c = &x->cl;
    int64_t end = mono_us() + (int64_t)(CONNECT_TIMEOUT_MS + c->n) * 1000;
    while (bridge_alive(&x->br)) {
        unsigned opened = atomic_load(&c->opened), failed = atomic_load(&c->failed);
        if (opened + failed == c->n && atomic_load(&c->ready) == opened)
            return 0;
        if (mono_us() > end) {
            complain("after %u ms: %u of %u subscribers open, %u failed, %u ready",
                     (unsigned)CONNECT_TIMEOUT_MS + c->n, opened, c->n, failed,
                     atomic_load(&c->ready));
            return -1;
        }
        sleep_ms(20);
    }
    return -1;
}

/* The load: runs the writer while the main thread checkpoints every CHECKPOINT_MS (the
 * responder's maintenance) and samples the bridge's RSS. Returns 0/-1. */
static int load_run(run *x, run_result *r)
{
    writer *w = &x->w;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        complain("cannot start the writer thread");
        return -1;
    }
    x->writer_started = true;
    int rc = 0;
    int64_t next_checkpoint = mono_us() + CHECKPOINT_MS * 1000;
    while (!atomic_load(&w->done)) {
        long rss = 0;
        if (!bridge_alive(&x->br)) {
            rc = -1;
            break;
        }
        if (proc_status_kib(x->br.pid, "VmRSS:", &rss) == 0 && rss > r->rss_peak_kib)
            r->rss_peak_kib = rss;
        if (mono_us() >= next_checkpoint) {
            rsdb_err err = rsdb_checkpoint(x->maint, CHECKPOINT_BYTES, NULL, NULL, NULL);
            if (err != RSDB_OK)
                rc = db_fail(x->maint, "checkpoint", err);
            next_checkpoint += CHECKPOINT_MS * 1000;
        }
        sleep_ms(SAMPLE_MS);
    }
    pthread_join(w->thread, NULL);
    x->writer_started = false;
    return rc != 0 || w->failed ? -1 : 0;
}

/* Waits until every open subscriber has its job's last event. Returns 0, or -1 on timeout. */
static int wait_drained(run *x)
{
    client *c = &x->cl;
    int64_t end = mono_us() + (int64_t)DRAIN_TIMEOUT_MS * 1000;
    while (bridge_alive(&x->br)) {
        unsigned open = atomic_load(&c->opened) - atomic_load(&c->closed);
        if (atomic_load(&c->complete) >= open)
            return 0;
        if (mono_us() > end) {
            complain("after %d ms, %u of %u subscribers have their job's last event",
                     DRAIN_TIMEOUT_MS, atomic_load(&c->complete), open);
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

/* Removes the run's files and directory (ignoring errors). */
static void run_files_remove(const run *x)
{
    static const char *const names[] = {"jobs.db", "jobs.db-wal", "jobs.db-shm", "bridge.conf",
                                        "bridge.log"};
    char path[PATH_SIZE];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (path_join(path, x->dir, names[i]) == 0)
            unlink(path);
    rmdir(x->dir);
}

/* Frees everything of a run, on every path: the writer, the client, the bridge (killed when
 * still running), the maintenance connection, the files unless kept. */
static void run_cleanup(run *x, const options *o, bool ok)
{
    if (x->writer_started)
        pthread_join(x->w.thread, NULL);
    if (x->client_started)
        client_stop(&x->cl);
    bridge_kill(&x->br);
    rsdb_free(x->maint);
    free(x->w.commit_us);
    free(x->ids);
    if (ok && !o->keep)
        run_files_remove(x);
    else if (x->dir[0] != '\0')
        printf("  (files of this run kept in %s)\n", x->dir);
}

/* Creates the run's directory, job store, jobs and maintenance connection. Returns 0/-1. */
static int run_prepare(run *x, const options *o, unsigned subs, bool deflate)
{
    char name[64];
    snprintf(name, sizeof name, "run-%u%s", subs, deflate ? "-deflate" : "");
    uint32_t per_job = o->rate * o->seconds;
    x->ids = calloc(o->jobs, sizeof *x->ids);
    x->w.commit_us = calloc((size_t)o->jobs * per_job, sizeof *x->w.commit_us);
    if (x->ids == NULL || x->w.commit_us == NULL || path_join(x->dir, o->dir, name) != 0 ||
        path_join(x->db_path, x->dir, "jobs.db") != 0 || mkdir(x->dir, 0700) != 0) {
        complain("cannot prepare %s/%s: %s", o->dir, name, strerror(errno));
        x->dir[0] = '\0';
        return -1;
    }
    if (jobs_create(x->db_path, o->jobs, x->ids) != 0)
        return -1;
    x->maint = open_db(x->db_path, RSDB_ROLE_WORKER);
    x->w.db_path = x->db_path;
    x->w.ids = x->ids;
    x->w.jobs = o->jobs;
    x->w.rate = o->rate;
    x->w.per_job = per_job;
    return x->maint != NULL ? 0 : -1;
}

/* Connects the subscribers and measures the bridge's RSS before and after. Returns 0/-1. */
static int run_connect(run *x, const options *o, run_result *r)
{
    metrics m;
    if (metrics_read(x->br.port, &m) != 0 ||
        proc_status_kib(x->br.pid, "VmRSS:", &r->rss_before_kib) != 0)
        return -1;
    if (client_start(&x->cl, r->subs, x->ids, o->jobs, x->w.per_job, x->br.port, o->inflight,
                     r->deflate) != 0)
        return -1;
    x->client_started = true;
    int rc = wait_connected(x);
    r->opened = atomic_load(&x->cl.opened);
    r->failed = atomic_load(&x->cl.failed);
    r->connect_s = (double)(x->cl.last_open_us - x->cl.first_connect_us) / 1e6;
    if (rc != 0 || r->opened == 0)
        return -1;
    sleep_ms(SETTLE_MS);
    if (metrics_read(x->br.port, &m) != 0 ||
        proc_status_kib(x->br.pid, "VmRSS:", &r->rss_idle_kib) != 0)
        return -1;
    r->sessions = m.v[M_SESSIONS];
    r->idle_conn_bytes = (double)(r->rss_idle_kib - r->rss_before_kib) * 1024.0 / r->opened;
    r->rss_peak_kib = r->rss_idle_kib;
    return 0;
}

/* The measured window: the writer's load, bracketed by /metrics and CPU readings, then the
 * drain. Returns 0/-1. */
static int run_measure(run *x, run_result *r)
{
    metrics m0, m1;
    cpu_mark c0, c1;
    r->load_start = loadavg1();
    if (metrics_read(x->br.port, &m0) != 0 || cpu_mark_take(x->br.pid, &c0) != 0)
        return -1;
    int rc = load_run(x, r);
    if (rc == 0 && (metrics_read(x->br.port, &m1) != 0 || cpu_mark_take(x->br.pid, &c1) != 0))
        rc = -1;
    r->load_end = loadavg1();
    if (rc != 0)
        return -1;
    figures_window(&m0, &m1, &c0, &c1, r);
    const writer *w = &x->w;
    r->writer_rate = (double)w->written * 1e6 / (double)(w->end_us - w->start_us);
    r->writer_late_ms = (double)w->late_max_us / 1000.0;
    r->measured = true;
    rc = wait_drained(x);
    metrics m2;
    if (metrics_read(x->br.port, &m2) != 0)
        return -1;
    r->collapsed = m2.v[M_COLLAPSED] - m0.v[M_COLLAPSED];
    r->dropped = m2.v[M_DROPPED] - m0.v[M_DROPPED];
    return rc;
}

/* Stops the bridge (its 1001 closes are expected now) and the client, then computes the
 * delivery figures. Returns 0/-1. */
static int run_finish(run *x, run_result *r)
{
    atomic_store(&x->cl.closing, 1);
    int rc = bridge_stop(&x->br, &r->stop_s);
    client *c = &x->cl;
    client_halt(c);
    r->early_closes = atomic_load(&c->early_closes);
    r->disorder = atomic_load(&c->disorder);
    r->bad = atomic_load(&c->bad);
    r->other = atomic_load(&c->other);
    r->missing = figures_missing(c);
    if (figures_latency(c, &x->w, r) != 0)
        rc = -1;
    if (c->error[0] != '\0')
        complain("%s", c->error);
    return rc;
}

/* Whether the run delivered what it had to: every connection open until the end, every event
 * in order, missing progress events only as many as the bridge collapsed for slow readers. */
static bool run_delivered(const run_result *r)
{
    return r->failed == 0 && r->early_closes == 0 && r->disorder == 0 && r->bad == 0 &&
           (double)r->missing <= r->collapsed + r->dropped;
}

/* Runs the whole measurement for subs subscribers. Returns 0, or -1 when something did not
 * work (r holds what was measured). */
static int run_one(const options *o, unsigned subs, bool deflate, run_result *r)
{
    run x;
    memset(&x, 0, sizeof x);
    memset(r, 0, sizeof *r);
    r->subs = subs;
    r->deflate = deflate;
    r->offered_per_s = (double)subs * o->rate;
    int rc = run_prepare(&x, o, subs, deflate);
    if (rc == 0)
        rc = bridge_start(&x.br, o, x.dir, x.db_path, subs + 100, deflate);
    if (rc == 0)
        rc = run_connect(&x, o, r);
    if (rc == 0)
        rc = run_measure(&x, r);
    if (x.client_started && x.cl.thread_started) {
        int finish = run_finish(&x, r);
        rc = rc == 0 ? finish : rc;
    }
    r->ok = rc == 0 && run_delivered(r);
    run_cleanup(&x, o, r->ok);
    return r->ok ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------------------------- */

/* Prints the commit, the machine and the settings. */
static void print_header(const options *o, rlim_t fd_limit)
{
    char commit[128], model[128] = "unknown", line[256];
    git_describe(commit, sizeof commit);
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(model, sizeof model, "%s", colon + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    long mem = 0;
    struct utsname u;
    if (uname(&u) != 0)
        snprintf(u.release, sizeof u.release, "?");
    if (proc_kib("/proc/meminfo", "MemTotal:", &mem) != 0)
        mem = 0;
    printf("ws_bench: commit %s; bridge %s (libwebsockets %s)\n", commit, o->bridge,
           lws_get_library_version());
    printf("machine: nproc %ld, %s, %.0f GiB RAM, Linux %s; RLIMIT_NOFILE %llu\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, (double)mem / 1048576.0, u.release,
           (unsigned long long)fd_limit);
    printf("each run: a fresh job store in %s, %u running jobs, %u progress events/s per job "
           "(%u commits/s) for %u s;\n  bridge poll_ms %u, other keys default (session_queue "
           "64, log_level info); maintenance checkpoint (4 MiB) every %d ms; %u handshakes "
           "at a time\n\n",
           o->dir, o->jobs, o->rate, o->jobs * o->rate, o->seconds, o->poll_ms, CHECKPOINT_MS,
           o->inflight);
    fflush(stdout);
}

static void print_delivery(const run_result *r)
{
    printf("  connections   %u opened, %u failed, in %.2f s (%.0f/s); bridge sessions %.0f\n",
           r->opened, r->failed, r->connect_s,
           r->connect_s > 0 ? (double)r->opened / r->connect_s : 0.0, r->sessions);
    printf("  delivery      %llu progress events received, %llu missing (bridge collapsed %.0f, "
           "dropped %.0f), %llu out of order, %u closed early, %llu other messages\n",
           (unsigned long long)r->samples, (unsigned long long)r->missing, r->collapsed, r->dropped,
           (unsigned long long)r->disorder, r->early_closes, (unsigned long long)r->other);
    printf("  latency       p50 %.2f ms, p99 %.2f ms, max %.2f ms (commit -> receipt)   "
           "target p99 <= %.0f ms: %s\n",
           r->p50_ms, r->p99_ms, r->max_ms, TARGET_P99_MS, verdict(r->p99_ms <= TARGET_P99_MS));
    printf("                bridge poll lag (event ts -> fan-out, ms clock): mean %.2f ms, max "
           "%.0f ms\n",
           r->lag_mean_ms, r->lag_max_ms);
    printf("                p99 by second of the load (ms):");
    for (size_t j = 0; j < r->nsec; j++) {
        if (j > 0 && j % 20 == 0)
            printf("\n                ");
        if (r->p99_by_s[j] < 0)
            printf(" -");
        else
            printf(" %.0f", r->p99_by_s[j]);
    }
    printf("\n");
    printf("  messages/s    %.0f received (offered %.0f); bridge sent %.0f/s\n", r->recv_per_s,
           r->offered_per_s, r->sent_per_s);
    printf("  writer        %.0f commits/s, at most %.1f ms behind its schedule\n", r->writer_rate,
           r->writer_late_ms);
}

static void print_bridge(const run_result *r)
{
    double q = r->probes_per_s + r->event_q_per_s + r->replay_q_per_s;
    printf("  statements/s  %.1f (data_version %.1f, new events %.1f, replay %.1f); %.1f poll "
           "ticks/s; %.1f events read/s\n",
           q, r->probes_per_s, r->event_q_per_s, r->replay_q_per_s, r->ticks_per_s,
           r->events_read_per_s);
    printf("  bridge RSS    %.1f MiB before, %.1f MiB with %u idle connections: %.1f KiB per "
           "connection",
           r->rss_before_kib / 1024.0, r->rss_idle_kib / 1024.0, r->opened,
           r->idle_conn_bytes / 1024.0);
    if (r->deflate)
        printf("   (deflate: no target)\n");
    else
        printf("   target <= %.0f KiB: %s\n", TARGET_IDLE_CONN_BYTES / 1024.0,
               verdict(r->idle_conn_bytes <= TARGET_IDLE_CONN_BYTES));
    printf("                %.1f MiB at the peak of the load\n", r->rss_peak_kib / 1024.0);
    printf("  CPU           bridge %.1f%% of one CPU (%.1f us per message sent); this program "
           "(subscribers, writer) %.1f%%; other processes %.1f%%; machine %.1f%% of %ld00%%\n",
           r->cpu_bridge, r->sent_per_s > 0 ? r->cpu_bridge * 1e4 / r->sent_per_s : 0.0,
           r->cpu_self, r->cpu_other, r->cpu_machine, sysconf(_SC_NPROCESSORS_ONLN));
    printf("  load average  %.2f at the start of the load, %.2f at its end\n", r->load_start,
           r->load_end);
    printf("  stop          the bridge exited %.2f s after SIGTERM (closing %u sessions with 1001; "
           "its grace for the close handshakes is 3 s)\n",
           r->stop_s, r->opened);
}

static void print_run(const options *o, const run_result *r)
{
    if (!r->measured) {
        printf("%u subscribers over %u jobs, deflate %s: FAILED before the measurement (%u "
               "connections opened, %u failed; see above)\n\n",
               r->subs, o->jobs, r->deflate ? "on" : "off", r->opened, r->failed);
        fflush(stdout);
        return;
    }
    printf("%u subscribers over %u jobs (%u each), deflate %s, %.1f s window:%s\n", r->subs,
           o->jobs, (r->subs + o->jobs - 1) / o->jobs, r->deflate ? "on" : "off", r->window_s,
           r->ok ? "" : "  FAILED (see above)");
    print_delivery(r);
    print_bridge(r);
    printf("\n");
    fflush(stdout);
}

/* Statements per second of the smallest and the largest plain run, against the target. */
static void print_summary(const run_result *runs, size_t n)
{
    const run_result *lo = NULL, *hi = NULL;
    for (size_t i = 0; i < n; i++) {
        if (runs[i].deflate || runs[i].window_s <= 0.0)
            continue;
        if (lo == NULL || runs[i].subs < lo->subs)
            lo = &runs[i];
        if (hi == NULL || runs[i].subs > hi->subs)
            hi = &runs[i];
    }
    if (lo == NULL || hi == NULL || lo == hi)
        return;
    double ql = lo->probes_per_s + lo->event_q_per_s + lo->replay_q_per_s;
    double qh = hi->probes_per_s + hi->event_q_per_s + hi->replay_q_per_s;
    printf("statements/s: %.1f with %u subscribers, %.1f with %u (x%.2f)   target: not growing "
           "with subscribers: %s\n",
           ql, lo->subs, qh, hi->subs, ql > 0 ? qh / ql : 0.0,
           verdict(qh <= ql * QUERIES_TOLERANCE));
}

/* ---------------------------------------------------------------------------------------------
 * Options and main
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ws_bench [--subscribers N[,N...]] [--jobs N] [--seconds N] [--rate N]\n"
            "                [--poll-ms N] [--inflight N] [--deflate] [--bridge PATH] [--dir DIR]\n"
            "                [--keep] [--quick]\n"
            "\n"
            "Starts risksim-wsbridge (--bridge, default the build tree's) on a fresh job store\n"
            "for each number of subscribers (default 1000,10000; the option may be repeated),\n"
            "spread over --jobs running jobs (default 100), which get --rate progress events a\n"
            "second each (default 10) for --seconds (default 10). --poll-ms sets the bridge's\n"
            "poll_ms (default 10), --inflight the handshakes under way at once (default 200).\n"
            "--deflate also runs every size with ws_deflate = true. Files go to a temporary\n"
            "directory under --dir (default $TMPDIR or /tmp), removed unless --keep or a run\n"
            "failed. --quick: 50 subscribers, 5 jobs, 1 s (a smoke test).\n");
}

/* Parses text as an integer in [min, max] for option name. Returns 0, or -1 after printing
 * why. */
static int parse_number(const char *name, const char *text, unsigned long min, unsigned long max,
                        unsigned *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || errno != 0 || end == text ||
        (*end != '\0' && *end != ',') || n < min || n > max) {
        complain("%s needs an integer in [%lu, %lu]: %s", name, min, max, text);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

/* Appends the comma-separated sizes of text to o->sizes. Returns 0/-1. */
static int parse_sizes(options *o, const char *text)
{
    for (const char *p = text; p != NULL; p = strchr(p, ','), p = p != NULL ? p + 1 : NULL) {
        if (o->nsizes == MAX_SIZES) {
            complain("at most %d sizes", MAX_SIZES);
            return -1;
        }
        if (parse_number("--subscribers", p, 1, 1000000, &o->sizes[o->nsizes]) != 0)
            return -1;
        o->nsizes++;
    }
    return 0;
}

/* The value of option argv[*i], or NULL after printing why. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        complain("%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* Parses one numeric option argv[*i] into the matching field. Returns 1 when argv[*i] is not
 * a numeric option, 0 when parsed, -1 on error. */
static int parse_numeric_option(options *o, int argc, char **argv, int *i)
{
    static const struct {
        const char *name;
        size_t offset;
        unsigned long min, max;
    } table[] = {
        {"--jobs", offsetof(options, jobs), 1, 10000},
        {"--seconds", offsetof(options, seconds), 1, 3600},
        {"--rate", offsetof(options, rate), 1, 1000},
        {"--poll-ms", offsetof(options, poll_ms), 1, 10000},
        {"--inflight", offsetof(options, inflight), 1, 10000},
    };
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++) {
        if (strcmp(argv[*i], table[t].name) != 0)
            continue;
        const char *v = option_value(argc, argv, i);
        unsigned *field = (unsigned *)((char *)o + table[t].offset);
        return v != NULL && parse_number(table[t].name, v, table[t].min, table[t].max, field) == 0
                   ? 0
                   : -1;
    }
    return 1;
}

/* Parses argv into o. Returns 0 to run, 1 after --help, -1 on a usage error. */
static int parse_options(options *o, int argc, char **argv)
{
    bool sizes_given = false;
    for (int i = 1; i < argc; i++) {
        int r = parse_numeric_option(o, argc, argv, &i);
        const char *v = NULL;
        if (r == 0)
            continue;
        if (r < 0)
            return -1;
        if (strcmp(argv[i], "--subscribers") == 0) {
            if (!sizes_given)
                o->nsizes = 0;
            sizes_given = true;
            if ((v = option_value(argc, argv, &i)) == NULL || parse_sizes(o, v) != 0)
                return -1;
        } else if (strcmp(argv[i], "--bridge") == 0) {
            if ((o->bridge = option_value(argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(argv[i], "--dir") == 0) {
            if ((o->base = option_value(argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(argv[i], "--deflate") == 0) {
            o->deflate = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            o->sizes[0] = 50;
            o->nsizes = 1;
            o->jobs = 5;
            o->seconds = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else {
            usage(stderr);
            return -1;
        }
    }
    if ((uint64_t)o->rate * o->seconds > MAX_EVENTS_PER_JOB) {
        complain("--rate x --seconds must be at most %u events per job", MAX_EVENTS_PER_JOB);
        return -1;
    }
    return 0;
}

/* Raises RLIMIT_NOFILE to its hard limit (the bridge inherits it) and checks that it allows
 * the largest run. Stores the limit in *limit. Returns 0, or -1 after printing why. */
static int raise_fd_limit(const options *o, rlim_t *limit)
{
    unsigned most = 0;
    for (size_t i = 0; i < o->nsizes; i++)
        most = o->sizes[i] > most ? o->sizes[i] : most;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        complain("getrlimit: %s", strerror(errno));
        return -1;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        complain("setrlimit: %s", strerror(errno));
        return -1;
    }
    *limit = rl.rlim_cur;
    if (rl.rlim_cur < (rlim_t)most + FD_RESERVE) {
        complain("%u subscribers need %u descriptors in this process and in the bridge; the "
                 "hard limit is %llu (raise it: ulimit -Hn, or limits.conf)",
                 most, most + FD_RESERVE, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* Creates the temporary directory o->dir under o->base. Returns 0/-1. */
static int make_dir(options *o)
{
    int n = snprintf(o->dir, sizeof o->dir, "%s/ws_bench.XXXXXX", o->base);
    if (n < 0 || (size_t)n >= sizeof o->dir || mkdtemp(o->dir) == NULL) {
        complain("cannot create a directory under %s: %s", o->base, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static options o = {.sizes = {1000, 10000},
                        .nsizes = 2,
                        .jobs = 100,
                        .seconds = 10,
                        .rate = 10,
                        .poll_ms = 10,
                        .inflight = 200,
                        .bridge = RISKSIM_WSBRIDGE_BIN};
    o.base = getenv("TMPDIR") != NULL && getenv("TMPDIR")[0] != '\0' ? getenv("TMPDIR") : "/tmp";
    int p = parse_options(&o, argc, argv);
    if (p != 0)
        return p > 0 ? 0 : 64;
    rlim_t limit = 0;
    if (raise_fd_limit(&o, &limit) != 0 || make_dir(&o) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR, NULL);
    print_header(&o, limit);

    static run_result results[2 * MAX_SIZES];
    size_t nres = 0;
    int failed = 0;
    for (size_t i = 0; i < o.nsizes; i++) {
        for (int d = 0; d <= (o.deflate ? 1 : 0); d++) {
            run_result *r = &results[nres++];
            failed |= run_one(&o, o.sizes[i], d != 0, r) != 0;
            print_run(&o, r);
            free(r->p99_by_s);
            r->p99_by_s = NULL;
        }
    }
    print_summary(results, nres);
    if (!o.keep && !failed && rmdir(o.dir) != 0)
        complain("%s left behind: %s", o.dir, strerror(errno));
    if (failed) {
        complain("a run did not work (see above)");
        return 1;
    }
    return 0;
}
