/*
 * risksim-wsbridge server: the libwebsockets context, the one protocol callback, the plain HTTP
 * answers (GET /healthz, GET /metrics, refusals) and the stop.
 *
 * Why this file exists: it ties the bridge's modules to the event loop. One vhost listens on
 * bridge_listen (IPv4, IPv6 or a unix socket). Its only protocol serves both the WebSocket
 * stream (session.c) and plain HTTP on the same port; an upgrade request whose path is not a
 * stream URL is refused with HTTP 404 before the handshake. SIGTERM, SIGINT and SIGHUP write a
 * byte to a pipe that the service loop watches like a socket, so a signal never runs bridge
 * code: the loop then closes every session with 1001 and a reconnect hint, waits (bounded) for
 * the close handshakes, and returns 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "risksim/clock.h"
#include "bridge.h"
#include "risksim/log.h"
#include "risksim/route.h"

/* Largest /metrics text. */
#define METRICS_CAP (64 * 1024)
/* Largest /healthz text. */
#define HEALTH_CAP 2048
/* Header data libwebsockets keeps per request in its handshake phase: room for a long token in
 * the query and in Authorization (the stream URL may be up to ROUTE_URI_MAX bytes). */
#define HEADER_DATA 16384
/* Handshakes in progress at once (each holds HEADER_DATA bytes until it is upgraded). */
#define HEADER_POOL 32
/* The protocol's receive buffer. */
#define RX_BUFFER 4096

/* The write end of the signal pipe: the one value a signal handler may touch. */
static volatile sig_atomic_t signal_write_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    if (signal_write_fd >= 0)
        (void)!write((int)signal_write_fd, &c, 1);
    errno = saved;
}

/* Creates the signal pipe and installs the handlers. Returns the read end, or -1. */
static int signals_install(int *write_fd)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    signal_write_fd = fds[1];
    *write_fd = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return fds[0];
}

static void signals_remove(int read_fd, int write_fd)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal_write_fd = -1;
    if (write_fd >= 0)
        close(write_fd);
    if (read_fd >= 0)
        close(read_fd);
}

/* libwebsockets' own log lines, as risksim log lines. */
static void lws_log_line(int level, const char *line)
{
    char text[512];
    snprintf(text, sizeof(text), "%s", line);
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    rslog(level == LLL_ERR    ? RSLOG_ERROR
          : level == LLL_WARN ? RSLOG_WARN
                              : RSLOG_DEBUG,
          "websockets: %s", text);
}

void wsb_gauges_fill(const wsb *b, wsb_gauges *g)
{
    memset(g, 0, sizeof(*g));
    g->version = RISKSIM_VERSION;
    g->sessions = b->sessions;
    g->jobs = fan_jobs(b->fan);
    g->db_ok = b->db_ok;
    g->stopping = b->stopping;
    g->cursor = b->cursor;
    g->poll_age_ms = b->poll_ok_us > 0 ? (rsclock_mono_us() - b->poll_ok_us) / 1000 : -1;
    g->backoff_ms = b->backoff_ms;
}

/* ---------------------------------------------------------------------------------------------
 * The stop
 * ------------------------------------------------------------------------------------------- */

/* The periodic checks of every session, then the next sweep. */
static void sweep(lws_sorted_usec_list_t *sul)
{
    wsb *b = lws_container_of(sul, wsb, sweep_timer);
    int64_t now = rsclock_mono_us();
    for (wsb_session *s = b->all; s != NULL; s = s->next_all)
        wsb_session_tick(s, now);
    if (!b->stopping)
        lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep, (lws_usec_t)WSB_SWEEP_MS * 1000);
}

static void stop_deadline(lws_sorted_usec_list_t *sul)
{
    wsb *b = lws_container_of(sul, wsb, stop_timer);
    b->exit_now = 1;
}

/* A seed for the reconnect hints: from the kernel, else from the clock and the pid. */
static uint64_t jitter_seed(void)
{
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed))
            seed = 0;
        close(fd);
    }
    if (seed == 0)
        seed = ((uint64_t)rsclock_mono_us() << 16) ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15ULL;
    return seed;
}

/* Closes every session with 1001 and a reconnect hint between 0.5 and 5 s, so that clients do
 * not all come back at the same moment. */
static void begin_stop(wsb *b, int sig)
{
    if (b->stopping)
        return;
    b->stopping = 1;
    rslog(RSLOG_INFO, "signal %d: closing %u sessions (1001) and stopping", sig, b->sessions);
    lws_sul_cancel(&b->poll_timer);
    lws_sul_cancel(&b->sweep_timer);
    uint64_t x = jitter_seed();
    for (wsb_session *s = b->all; s != NULL; s = s->next_all) {
        x ^= x << 13; /* xorshift64: spreading reconnects needs no more than this */
        x ^= x >> 7;
        x ^= x << 17;
        wsb_session_shutdown(s, 500u + (unsigned)(x % 4501u));
    }
    if (b->live == 0)
        b->exit_now = 1;
    lws_sul_schedule(b->ctx, 0, &b->stop_timer, stop_deadline,
                     (lws_usec_t)WSB_STOP_GRACE_MS * 1000);
}

static int signal_readable(wsb *b)
{
    unsigned char c = 0;
    int sig = 0;
    while (read(b->signal_fd, &c, 1) == 1)
        sig = c;
    if (sig != 0)
        begin_stop(b, sig);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Plain HTTP
 * ------------------------------------------------------------------------------------------- */

/* Stores an answer to write at the next writeable callback. Returns 0, or -1 (close). */
static int http_answer(wsb_session *s, struct lws *wsi, unsigned status, const char *type,
                       const char *body, size_t len)
{
    s->kind = WSB_CONN_HTTP;
    free(s->http.buf);
    s->http.buf = malloc(LWS_PRE + len + 1);
    if (s->http.buf == NULL)
        return -1;
    memcpy(s->http.buf + LWS_PRE, body, len);
    s->http.len = len;
    s->http.status = status;
    s->http.content_type = type;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_json_error(wsb_session *s, struct lws *wsi, unsigned status, const char *message)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"status\":%u,\"detail\":\"%s\"}\n", status, message);
    return http_answer(s, wsi, status, "application/json", body, (size_t)n);
}

static int http_health(wsb *b, wsb_session *s, struct lws *wsi)
{
    wsb_gauges g;
    wsb_gauges_fill(b, &g);
    char body[HEALTH_CAP];
    int status = 503;
    size_t n = wsb_health_render(&b->stats, &g, body, sizeof(body) - 1, &status);
    body[n++] = '\n';
    return http_answer(s, wsi, (unsigned)status, "application/json", body, n);
}

static int http_metrics(wsb *b, wsb_session *s, struct lws *wsi)
{
    wsb_gauges g;
    wsb_gauges_fill(b, &g);
    char *body = malloc(METRICS_CAP);
    if (body == NULL)
        return -1;
    size_t n = wsb_metrics_render(&b->stats, &g, body, METRICS_CAP);
    int rc = http_answer(s, wsi, 200, "text/plain; version=0.0.4; charset=utf-8", body, n);
    free(body);
    return rc;
}

/* LWS_CALLBACK_HTTP: a request without an upgrade. */
static int http_request(wsb *b, wsb_session *s, struct lws *wsi)
{
    char path[ROUTE_URI_MAX + 1];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return http_json_error(s, wsi, 405, "only GET is served here");
    route r;
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
        route_match(path, b->cfg.base_path, &r) != 0)
        return http_json_error(s, wsi, 404, "no such path");
    if (r.kind == ROUTE_NONE && route_match(path, "", &r) != 0)
        return http_json_error(s, wsi, 404, "no such path");
    switch (r.kind) {
    case ROUTE_HEALTHZ:
        return http_health(b, s, wsi);
    case ROUTE_METRICS:
        return http_metrics(b, s, wsi);
    case ROUTE_STREAM:
        return http_json_error(s, wsi, 426, "the stream is a WebSocket: send Upgrade: websocket");
    default:
        return http_json_error(s, wsi, 404, "no such path");
    }
}

static void http_clear(wsb_session *s)
{
    free(s->http.buf);
    s->http.buf = NULL;
    s->http.len = 0;
}

/* LWS_CALLBACK_HTTP_WRITEABLE: writes the stored answer, headers and body. */
static int http_writeable(wsb_session *s, struct lws *wsi)
{
    if (s->http.buf == NULL)
        return 0;
    unsigned char head[LWS_PRE + 512];
    unsigned char *start = head + LWS_PRE, *p = start, *end = head + sizeof(head) - 1;
    static const char nocache[] = "no-store";
    if (lws_add_http_common_headers(wsi, s->http.status, s->http.content_type, s->http.len, &p,
                                    end) != 0 ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)nocache, (int)strlen(nocache), &p,
                                     end) != 0 ||
        lws_finalize_write_http_header(wsi, start, &p, end) != 0) {
        http_clear(s);
        return -1;
    }
    int n = lws_write(wsi, s->http.buf + LWS_PRE, s->http.len, LWS_WRITE_HTTP_FINAL);
    size_t len = s->http.len;
    http_clear(s);
    if (n < (int)len)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: only a WebSocket upgrade of a stream URL goes on. Returns
 * 0 (go on), 1 (answered) or -1 (close). */
static int confirm_upgrade(wsb *b, struct lws *wsi, const char *upgrade)
{
    char path[ROUTE_URI_MAX + 1];
    route r;
    unsigned status = 0;
    if (upgrade == NULL || strcasecmp(upgrade, "websocket") != 0)
        status = HTTP_STATUS_BAD_REQUEST;
    else if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
             route_match(path, b->cfg.base_path, &r) != 0 || r.kind != ROUTE_STREAM)
        status = HTTP_STATUS_NOT_FOUND;
    if (status == 0)
        return 0;
    b->stats.rejected[WSB_REJ_ROUTE]++;
    rslog(RSLOG_INFO, "upgrade refused: %u (%s)", status,
          status == HTTP_STATUS_NOT_FOUND ? "not a stream URL" : "not a WebSocket upgrade");
    return lws_return_http_status(wsi, status, NULL) != 0 ? -1 : 1;
}

/* ---------------------------------------------------------------------------------------------
 * The protocol
 * ------------------------------------------------------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    wsb *b = lws_context_user(lws_get_context(wsi));
    wsb_session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(b, wsi, in);
    case LWS_CALLBACK_HTTP:
        return s != NULL ? http_request(b, s, wsi) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return s != NULL ? http_writeable(s, wsi) : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s != NULL && s->kind == WSB_CONN_HTTP)
            http_clear(s);
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        return wsb_session_open(s, b, wsi);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return wsb_session_writeable(s);
    case LWS_CALLBACK_RECEIVE:
        return wsb_session_receive(s, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        wsb_session_pong(s);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        wsb_session_peer_close(s, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED:
        wsb_session_closed(s);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        return signal_readable(b);
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"risksim-stream", callback, sizeof(wsb_session), RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_extension deflate_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL},
};

/* libwebsockets' own ping and hang-up timers stay off: the bridge pings every ping_s and
 * closes idle sessions itself, with a close frame. */
static const lws_retry_bo_t no_validity_timers = {NULL, 0, 0, 0, 0, 0};

/* ---------------------------------------------------------------------------------------------
 * Start, run, stop
 * ------------------------------------------------------------------------------------------- */

/* Refuses to let the listener replace a file that is not a stale socket. */
static int unix_path_free(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    return S_ISSOCK(st.st_mode) ? 0 : -1;
}

static struct lws_context *create_context(wsb *b, const rscfg_addr *addr)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.protocols = protocols;
    info.user = b;
    info.vhost_name = "risksim";
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (addr->kind == RSCFG_ADDR_UNIX) {
        info.options |= LWS_SERVER_OPTION_UNIX_SOCK;
        info.iface = addr->path;
        info.port = 0;
    } else {
        if (addr->kind == RSCFG_ADDR_INET)
            info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        info.iface = addr->host;
        info.port = (int)addr->port;
    }
    if (b->cfg.ws_deflate)
        info.extensions = deflate_extensions;
    info.max_http_header_data = HEADER_DATA;
    info.max_http_header_pool = HEADER_POOL;
    info.retry_and_idle_policy = &no_validity_timers;
    info.gid = -1;
    info.uid = -1;
    /* The service loop is libev's on epoll, not libwebsockets' default poll(): poll() looks at
     * every socket on every wake-up, which with thousands of sessions took most of the bridge's
     * time (docs/benchmarks.md, "WebSocket bridge"). */
    b->loop = ev_loop_new(EVBACKEND_EPOLL);
    if (b->loop == NULL)
        b->loop = ev_loop_new(EVFLAG_AUTO);
    if (b->loop == NULL)
        return NULL;
    void *foreign_loops[1] = {b->loop};
    info.foreign_loops = foreign_loops;
    info.options |= LWS_SERVER_OPTION_LIBEV;
    return lws_create_context(&info);
}

/* Ends the loop once the bridge is to exit (checked before the loop waits). */
static void check_exit(struct ev_loop *loop, ev_prepare *watcher, int revents)
{
    (void)revents;
    if (((wsb *)watcher->data)->exit_now)
        ev_break(loop, EVBREAK_ALL);
}

static void run_loop(wsb *b)
{
    ev_prepare exit_check;
    ev_prepare_init(&exit_check, check_exit);
    exit_check.data = b;
    ev_prepare_start(b->loop, &exit_check);
    ev_run(b->loop, 0);
    ev_prepare_stop(b->loop, &exit_check);
}

/* Frees what wsb_run made (ctx first: closing connections runs the session callbacks). */
static void teardown(wsb *b, const rscfg_addr *addr, int sig_write)
{
    b->exit_now = 1; /* the session callbacks run by the destroy must not wake the loop */
    if (b->ctx != NULL)
        lws_context_destroy(b->ctx);
    b->ctx = NULL;
    if (b->loop != NULL)
        ev_loop_destroy(b->loop);
    b->loop = NULL;
    rsdb_free(b->db);
    fan_map_free(b->fan);
    ip_map_free(b->ips);
    /* An adopted pipe end was closed with its connection by lws_context_destroy. */
    signals_remove(b->signal_adopted ? -1 : b->signal_fd, sig_write);
    if (addr->kind == RSCFG_ADDR_UNIX && unix_path_free(addr->path) == 0)
        unlink(addr->path);
    free(b);
}

int wsb_run(const rscfg *cfg)
{
    rscfg_addr addr;
    char err[256];
    int sig_write = -1;
    if (rscfg_addr_parse(cfg->bridge_listen, &addr, err, sizeof(err)) != 0 ||
        addr.kind == RSCFG_ADDR_FD0) {
        rslog(RSLOG_ERROR, "bridge_listen: %s",
              addr.kind == RSCFG_ADDR_FD0 ? "must not be empty" : err);
        return 1;
    }
    if (addr.kind == RSCFG_ADDR_UNIX && unix_path_free(addr.path) != 0) {
        rslog(RSLOG_ERROR, "bridge_listen: %s exists and is not a socket", addr.path);
        return 1;
    }
    wsb *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    b->cfg = *cfg;
    b->cursor = -1;
    b->signal_fd = -1;
    b->fan = fan_map_new();
    b->ips = ip_map_new();
    b->signal_fd = signals_install(&sig_write);
    int levels = LLL_ERR | LLL_WARN | (cfg->log_level >= RSLOG_DEBUG ? LLL_NOTICE : 0);
    lws_set_log_level(levels, lws_log_line);
    if (b->fan == NULL || b->ips == NULL || b->signal_fd < 0 ||
        (b->ctx = create_context(b, &addr)) == NULL) {
        rslog(RSLOG_ERROR, "cannot listen on %s", cfg->bridge_listen);
        teardown(b, &addr, sig_write);
        return 1;
    }
    if (addr.kind == RSCFG_ADDR_UNIX)
        chmod(addr.path, 0660);
    b->vhost = lws_get_vhost_by_name(b->ctx, "risksim");
    lws_sock_file_fd_type fd;
    fd.filefd = b->signal_fd;
    if (b->vhost == NULL || lws_adopt_descriptor_vhost(b->vhost, LWS_ADOPT_RAW_FILE_DESC, fd,
                                                       "risksim-stream", NULL) == NULL) {
        rslog(RSLOG_ERROR, "cannot watch the signal pipe");
        b->signal_adopted = 1; /* a failed adoption closes the descriptor */
        teardown(b, &addr, sig_write);
        return 1;
    }
    b->signal_adopted = 1;
    wsb_poller_start(b);
    lws_sul_schedule(b->ctx, 0, &b->sweep_timer, sweep, (lws_usec_t)WSB_SWEEP_MS * 1000);
    rslog(RSLOG_INFO, "started %s: listening on %s, db %s, base path \"%s\"%s", RISKSIM_VERSION,
          cfg->bridge_listen, cfg->db_path, cfg->base_path,
          cfg->ws_deflate ? ", permessage-deflate on" : "");
    run_loop(b);
    rslog(RSLOG_INFO, "stopped");
    teardown(b, &addr, sig_write);
    return 0;
}
