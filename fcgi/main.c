/*
 * risksim-fcgi: the FastCGI responder's process: configuration, the listening socket, the
 * request threads, the job workers, the maintenance thread, and a clean stop.
 *
 * Why this file exists: it wires the modules together and owns the process's life. Start-up
 * reads the configuration (file, environment, flags; a bad value stops it with FILE:LINE),
 * opens (and migrates) the job store, and takes the listening socket: fd 0 when the web server
 * or systemd spawned it, or --listen. On SIGTERM/SIGINT it stops accepting, lets running
 * requests finish, has the workers hand their running jobs back so that another process resumes
 * them, and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcgiapp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "handlers.h"
#include "risksim/log.h"
#include "worker.h"

extern char **environ;

/* ---------------------------------------------------------------------------------------------
 * The listening socket
 * ------------------------------------------------------------------------------------------- */

#define LISTEN_BACKLOG 128

/* Opens a unix socket at path with mode (replacing a stale socket file, never another file). */
static int listen_unix(const char *path, unsigned mode)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        rslog(RSLOG_ERROR, "listen: socket path too long: %s", path);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            rslog(RSLOG_ERROR, "listen: %s exists and is not a socket", path);
            return -1;
        }
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        chmod(path, (mode_t)mode) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        rslog(RSLOG_ERROR, "listen on %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Opens a TCP socket on a parsed IPv4 or IPv6 address. */
static int listen_tcp(const rscfg_addr *addr, const char *spec)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len = 0;
    int ok = 0;
    if (addr->kind == RSCFG_ADDR_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)addr->port);
        ok = inet_pton(AF_INET6, addr->host, &a6->sin6_addr) == 1;
        len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)addr->port);
        ok = inet_pton(AF_INET, addr->host, &a4->sin_addr) == 1;
        len = sizeof(*a4);
    }
    int fd = ok ? socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        rslog(RSLOG_ERROR, "listen on %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The listening socket of the configuration: fd 0 (spawned) or a new one. */
static int open_listener(const rscfg *cfg)
{
    rscfg_addr addr;
    char err[256];
    if (rscfg_addr_parse(cfg->listen, &addr, err, sizeof(err)) != 0) {
        rslog(RSLOG_ERROR, "listen: %s", err);
        return -1;
    }
    if (addr.kind == RSCFG_ADDR_FD0) {
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
            rslog(RSLOG_ERROR, "fd 0 is not a listening socket: start risksim-fcgi from the web "
                               "server (bin-path, spawn-fcgi, a systemd socket) or give --listen");
            return -1;
        }
        return 0;
    }
    if (addr.kind == RSCFG_ADDR_UNIX)
        return listen_unix(addr.path, cfg->listen_mode);
    return listen_tcp(&addr, cfg->listen);
}

/* ---------------------------------------------------------------------------------------------
 * Request threads
 * ------------------------------------------------------------------------------------------- */

typedef struct server {
    app *a;
    int listen_fd;
    pthread_mutex_t accept_lock; /* one thread in accept() at a time, as libfcgi advises */
    atomic_int running;          /* request threads not yet returned */
} server;

/* The signal that interrupts a request thread blocked in accept() at shutdown. Its handler does
 * nothing: the point is the EINTR, which FCGI_FAIL_ACCEPT_ON_INTR turns into a failed accept.
 * (Shutting the listening socket down instead would break it for every other process sharing
 * it: spawn-fcgi -F, a systemd socket, Apache with several responders.) */
#define WAKE_SIGNAL SIGUSR1

static void on_wake_signal(int sig)
{
    (void)sig;
}

/* Logs one answered request (the path only: a query may carry a token). */
static void log_request(const http_req *r)
{
    double ms = (rsclock_monotonic() - r->start) * 1000.0;
    int path_len = (int)strcspn(r->uri, "?");
    rslog(r->status >= 500 ? RSLOG_ERROR : RSLOG_INFO, "%s %.*s %d %.1fms",
          r->method_text != NULL ? r->method_text : "-", path_len, r->uri, r->status, ms);
}

/* Accepts and answers requests until the process stops. */
static void request_loop(server *s)
{
    app *a = s->a;
    FCGX_Request fcgx;
    if (FCGX_InitRequest(&fcgx, s->listen_fd, FCGI_FAIL_ACCEPT_ON_INTR) != 0)
        return;
    conn c = {NULL};
    rsdb_options opt;
    rsdb_options_default(&opt);
    char err[256];
    if (rsdb_open(a->cfg.db_path, &opt, &c.db, err, sizeof(err)) != RSDB_OK) {
        rslog(RSLOG_ERROR, "request thread: cannot open %s: %s", a->cfg.db_path, err);
        FCGX_Free(&fcgx, 0);
        return;
    }
    while (!atomic_load(&a->stopping)) {
        pthread_mutex_lock(&s->accept_lock);
        int rc = atomic_load(&a->stopping) ? -1 : FCGX_Accept_r(&fcgx);
        pthread_mutex_unlock(&s->accept_lock);
        if (rc < 0)
            break;
        http_req r;
        http_req_init(&r, &fcgx, a->cfg.base_path);
        handle_request(a, &c, &r);
        if (r.status == 0)
            http_problem(&r, 500, "internal", "No response", NULL, NULL, NULL);
        metrics_count_request(a->metrics, r.route.kind, r.status);
        log_request(&r);
        http_req_clear(&r);
        FCGX_Finish_r(&fcgx);
    }
    FCGX_Free(&fcgx, 0);
    rsdb_free(c.db);
}

static void *request_main(void *varg)
{
    server *s = varg;
    request_loop(s);
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

/* Interrupts the request threads until all have returned (a thread may be between its stop
 * check and accept() when the first signal arrives, so the signal is repeated), then joins
 * them. Threads busy with a request finish it first. */
static void stop_request_threads(server *s, pthread_t *threads, unsigned n)
{
    while (atomic_load(&s->running) > 0) {
        for (unsigned i = 0; i < n; i++)
            pthread_kill(threads[i], WAKE_SIGNAL);
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Start-up and shutdown
 * ------------------------------------------------------------------------------------------- */

static int load_config(app *a, int argc, char **argv, int *exit_code)
{
    rscfg_actions actions;
    char err[1024];
    if (rscfg_load(&a->cfg, argc, argv, environ, &actions, err, sizeof(err)) != 0) {
        fprintf(stderr, "risksim-fcgi: %s\n", err);
        *exit_code = 1;
        return -1;
    }
    if (actions.help) {
        rscfg_usage(stdout, "risksim-fcgi");
        *exit_code = 0;
        return -1;
    }
    if (actions.version) {
        printf("risksim-fcgi %s\n", RISKSIM_VERSION);
        *exit_code = 0;
        return -1;
    }
    if (actions.print_config) {
        rscfg_print(&a->cfg, stdout);
        *exit_code = 0;
        return -1;
    }
    if (actions.check_config) {
        printf("risksim-fcgi: configuration ok\n");
        *exit_code = 0;
        return -1;
    }
    return 0;
}

/* Fills the derived parts of the app from its configuration. */
static int app_init(app *a)
{
    rs_limits_default(&a->limits);
    a->limits.max_trials = a->cfg.max_trials;
    a->limits.max_depth = a->cfg.max_depth;
    a->limits.max_nodes = a->cfg.max_nodes;
    /* A long poll holds a request thread: keep at least one thread free for other requests. */
    int cap = (int)a->cfg.threads - 1;
    a->max_waiters = (int)a->cfg.max_waiters < cap ? (int)a->cfg.max_waiters : cap;
    a->workers = a->cfg.workers > APP_MAX_WORKERS ? APP_MAX_WORKERS : a->cfg.workers;
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(a->owner_prefix, sizeof(a->owner_prefix), "%s:%ld", host, (long)getpid());
    a->started_ms = rsclock_wall_ms();
    int64_t now = rsclock_wall_ms();
    for (unsigned i = 0; i < APP_MAX_WORKERS; i++)
        atomic_store(&a->worker_beat_ms[i], now);
    a->metrics = metrics_new();
    if (a->metrics == NULL)
        return -1;
    char err[512];
    rsdb_err e = rsdb_committer_open(a->cfg.db_path, NULL, &a->committer, err, sizeof(err));
    if (e != RSDB_OK) {
        rslog(RSLOG_ERROR, "cannot open the job store %s: %s", a->cfg.db_path, err);
        return -1;
    }
    return 0;
}

/* Waits for SIGTERM, SIGINT or SIGHUP (blocked in every thread). Returns the signal. */
static int wait_for_stop(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    return sig;
}

int main(int argc, char **argv)
{
    static app a;
    int exit_code = 0;
    if (load_config(&a, argc, argv, &exit_code) != 0)
        return exit_code;
    rslog_init("risksim-fcgi", a.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction wake = {.sa_handler = on_wake_signal}; /* no SA_RESTART: accept gets EINTR */
    sigemptyset(&wake.sa_mask);
    sigaction(WAKE_SIGNAL, &wake, NULL);
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    if (app_init(&a) != 0)
        return 1;
    server s = {&a, open_listener(&a.cfg), PTHREAD_MUTEX_INITIALIZER, 0};
    if (s.listen_fd < 0 || FCGX_Init() != 0) {
        rsdb_committer_free(a.committer);
        metrics_free(a.metrics);
        return 1;
    }
    pthread_t maintenance, workers[APP_MAX_WORKERS], requests[256];
    worker_arg wargs[APP_MAX_WORKERS];
    pthread_create(&maintenance, NULL, maintenance_main, &a);
    for (unsigned i = 0; i < a.workers; i++) {
        wargs[i] = (worker_arg){&a, i};
        pthread_create(&workers[i], NULL, worker_main, &wargs[i]);
    }
    unsigned nreq = a.cfg.threads > 256 ? 256 : a.cfg.threads;
    for (unsigned i = 0; i < nreq; i++) {
        atomic_fetch_add(&s.running, 1);
        if (pthread_create(&requests[i], NULL, request_main, &s) != 0) {
            atomic_fetch_sub(&s.running, 1);
            nreq = i;
            break;
        }
    }
    rslog(RSLOG_INFO, "started %s: %u request threads, %u workers, db %s, listening on %s",
          RISKSIM_VERSION, nreq, a.workers, a.cfg.db_path,
          a.cfg.listen[0] != '\0' ? a.cfg.listen : "fd 0");

    int sig = wait_for_stop(&stop_set);
    rslog(RSLOG_INFO,
          "signal %d: stopping (running requests finish, running jobs are handed "
          "back)",
          sig);
    atomic_store(&a.stopping, 1);
    FCGX_ShutdownPending();
    stop_request_threads(&s, requests, nreq);
    for (unsigned i = 0; i < a.workers; i++)
        pthread_join(workers[i], NULL);
    pthread_join(maintenance, NULL);
    if (strncmp(a.cfg.listen, "unix:", 5) == 0)
        unlink(a.cfg.listen + 5);
    rsdb_committer_free(a.committer);
    metrics_free(a.metrics);
    rslog(RSLOG_INFO, "stopped");
    return 0;
}
