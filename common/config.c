/*
 * The configuration of both daemons: the key table, the value types, the file syntax, and the
 * merge of defaults, file, environment and flags (see risksim/config.h and
 * docs/configuration.md).
 *
 * Why this file exists: a key must mean the same thing whether it comes from the file, from
 * RISKSIM_<KEY> or from --key, in both daemons, and a mistake in any of them must stop the start
 * with a message that says where it is. Everything about a key is in one row of `keys` below;
 * the rest of the file is the few value types and the three sources.
 *
 * The file syntax is libinih's (comment lines, `key = value`, a UTF-8 BOM) with its run-time
 * options, as Debian's libinih offers them in ini.h, set before every parse: no continuation
 * lines and no inline comments (inih would cut a quoted value at " ;"), a line buffer that
 * grows up to RSCFG_LINE_MAX, and a stop at the first error. libinih does not report line
 * numbers to the handler, so it reads through next_line, which hands it one line at a time from
 * memory and counts them; next_line also refuses what inih would accept but risksim does not
 * (sections, control characters, over-long lines). Inline comments and quotes are then handled
 * on the value by file_value.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "risksim/config.h"

/* ---------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------- */

/* The longest message of one value check (without the source prefix). */
#define MSG_MAX 256

/* The longest piece of a user's text quoted back in a message. */
#define SHOW_MAX 40

/* Formats a message into err (errlen bytes; nothing when err is NULL or errlen 0). Returns -1 so
 * that callers can `return fail(...)`. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Writes text[0..len) to buf (cap bytes, cap > SHOW_MAX + 5) in double quotes, at most SHOW_MAX
 * bytes of it, with "..." when cut and '?' for control characters, so that any text can be put
 * into a one-line message. Returns buf. */
static const char *show_n(char *buf, size_t cap, const char *text, size_t len)
{
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; i < len && i < SHOW_MAX && n + 5 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > SHOW_MAX) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

/* show_n of a NUL-terminated text. */
static const char *show(char *buf, size_t cap, const char *text)
{
    return show_n(buf, cap, text, strlen(text));
}

/* Buffer size for show and show_n. */
#define SHOW_SIZE (SHOW_MAX + 8)

/* ---------------------------------------------------------------------------------------------
 * Listen addresses
 * ------------------------------------------------------------------------------------------- */

/* Parses a port: 1 to 5 digits, 1 to 65535. Returns 0 or -1. */
static int parse_port(const char *s, unsigned int *port)
{
    unsigned int v = 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= 5 || s[n] < '0' || s[n] > '9')
            return -1;
        v = v * 10 + (unsigned int)(s[n] - '0');
    }
    if (n == 0 || v < 1 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int parse_unix_addr(const char *path, rscfg_addr *out, char *err, size_t errlen)
{
    if (path[0] != '/')
        return fail(err, errlen, "the unix socket path must be absolute (unix:/path)");
    if (strlen(path) >= sizeof(out->path) ||
        strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(err, errlen, "the unix socket path is longer than %zu bytes",
                    sizeof(out->path) - 1);
    out->kind = RSCFG_ADDR_UNIX;
    memcpy(out->path, path, strlen(path) + 1);
    return 0;
}

/* Parses HOST:PORT where host is host_len bytes at value (brackets already removed for IPv6) and
 * port_text follows the ':'. */
static int parse_inet_addr(const char *host, size_t host_len, const char *port_text, int family,
                           rscfg_addr *out, char *err, size_t errlen)
{
    char shown[SHOW_SIZE];
    unsigned char bin[16];
    if (host_len == 0 || host_len >= sizeof(out->host))
        return fail(err, errlen,
                    "%s is not an IP address (use a literal such as 127.0.0.1 or "
                    "[::1])",
                    show_n(shown, sizeof(shown), host, host_len));
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (inet_pton(family, out->host, bin) != 1)
        return fail(err, errlen, "%s is not an %s address (use a literal such as %s)",
                    show(shown, sizeof(shown), out->host), family == AF_INET ? "IPv4" : "IPv6",
                    family == AF_INET ? "127.0.0.1" : "[::1]");
    if (parse_port(port_text, &out->port) != 0)
        return fail(err, errlen, "the port must be a number from 1 to 65535, not %s",
                    show(shown, sizeof(shown), port_text));
    out->kind = family == AF_INET ? RSCFG_ADDR_INET : RSCFG_ADDR_INET6;
    return 0;
}

int rscfg_addr_parse(const char *value, rscfg_addr *out, char *err, size_t errlen)
{
    static const char form[] = "must be unix:/ABSOLUTE/PATH, IPV4:PORT or [IPV6]:PORT";
    if (value == NULL || out == NULL)
        return fail(err, errlen, "invalid argument");
    memset(out, 0, sizeof(*out));
    if (value[0] == '\0') {
        out->kind = RSCFG_ADDR_FD0;
        return 0;
    }
    if (strncmp(value, "unix:", 5) == 0)
        return parse_unix_addr(value + 5, out, err, errlen);
    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        if (close == NULL || close[1] != ':')
            return fail(err, errlen, "%s", form);
        return parse_inet_addr(value + 1, (size_t)(close - value - 1), close + 2, AF_INET6, out,
                               err, errlen);
    }
    const char *colon = strrchr(value, ':');
    if (colon == NULL)
        return fail(err, errlen, "%s", form);
    return parse_inet_addr(value, (size_t)(colon - value), colon + 1, AF_INET, out, err, errlen);
}

/* ---------------------------------------------------------------------------------------------
 * Checks of string keys (each returns 0, or -1 with a message not naming the key)
 * ------------------------------------------------------------------------------------------- */

typedef int (*string_check)(const char *value, char *msg, size_t msglen);

static int check_not_empty(const char *value, char *msg, size_t msglen)
{
    return value[0] == '\0' ? fail(msg, msglen, "must not be empty") : 0;
}

static int check_listen(const char *value, char *msg, size_t msglen)
{
    rscfg_addr addr;
    return rscfg_addr_parse(value, &addr, msg, msglen);
}

static int check_bridge_listen(const char *value, char *msg, size_t msglen)
{
    if (value[0] == '\0')
        return fail(msg, msglen,
                    "must not be empty (unix:/ABSOLUTE/PATH, IPV4:PORT or "
                    "[IPV6]:PORT)");
    return check_listen(value, msg, msglen);
}

static int check_base_path(const char *value, char *msg, size_t msglen)
{
    size_t len = strlen(value);
    if (len == 0)
        return 0;
    if (value[0] != '/' || value[len - 1] == '/')
        return fail(msg, msglen, "must be \"\" or start with \"/\" and not end with \"/\"");
    if (strpbrk(value, " \t?#") != NULL)
        return fail(msg, msglen, "must not contain spaces, \"?\" or \"#\"");
    return 0;
}

/* Whether origin[0..len) looks like scheme://host[:port] with scheme http or https. */
static int origin_valid(const char *origin, size_t len)
{
    size_t skip = 0;
    if (len > 7 && strncmp(origin, "http://", 7) == 0)
        skip = 7;
    else if (len > 8 && strncmp(origin, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    for (size_t i = skip; i < len; i++) {
        unsigned char c = (unsigned char)origin[i];
        if (c == '/' || c == '*' || c == ',' || isspace(c))
            return 0;
    }
    return 1;
}

static int check_origins(const char *value, char *msg, size_t msglen)
{
    if (value[0] == '\0' || strcmp(value, "*") == 0)
        return 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && p[trimmed - 1] == ' ')
            trimmed--;
        if (!origin_valid(p, trimmed)) {
            char shown[SHOW_SIZE];
            return fail(msg, msglen,
                        "%s is not an origin: list origins such as https://example.com:8443 "
                        "separated by commas, or give \"*\" alone",
                        show_n(shown, sizeof(shown), p, trimmed));
        }
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

/* Whether s starts with one of the 3-letter names. */
static int name3_in(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(s, names[i], 3) == 0)
            return 1;
    return 0;
}

/* The two-digit number at s. */
static int two_digits(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* An IMF-fixdate (RFC 9110), e.g. "Sun, 06 Nov 1994 08:49:37 GMT"; "" is allowed. */
static int check_http_date(const char *value, char *msg, size_t msglen)
{
    static const char pattern[] = "aaa, 00 aaa 0000 00:00:00 GMT";
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (value[0] == '\0')
        return 0;
    int ok = strlen(value) == sizeof(pattern) - 1;
    for (size_t i = 0; ok && i < sizeof(pattern) - 1; i++) {
        unsigned char c = (unsigned char)value[i];
        if (pattern[i] == '0')
            ok = isdigit(c);
        else if (pattern[i] == 'a')
            ok = isalpha(c);
        else
            ok = c == (unsigned char)pattern[i];
    }
    ok = ok && name3_in(value, days, 7) && name3_in(value + 8, months, 12);
    ok = ok && two_digits(value + 5) >= 1 && two_digits(value + 5) <= 31;
    ok = ok && two_digits(value + 17) <= 23 && two_digits(value + 20) <= 59 &&
         two_digits(value + 23) <= 60;
    if (!ok)
        return fail(msg, msglen, "must be an HTTP-date such as \"Sun, 06 Nov 1994 08:49:37 GMT\"");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The keys
 * ------------------------------------------------------------------------------------------- */

typedef enum key_type {
    T_STRING, /* char[] member; its size - 1 is the maximum length */
    T_UINT,   /* unsigned int in [min, max] */
    T_U64,    /* uint64_t in [min, max] */
    T_SIZE,   /* size_t in [min, max]; the text may end with k, M or G (1024-based) */
    T_BOOL,   /* bool */
    T_MODE,   /* unsigned int, octal, at most 0777 */
    T_LEVEL   /* rslog_level */
} key_type;

typedef enum key_scope { S_SHARED, S_RESPONDER, S_BRIDGE } key_scope;

typedef struct key_def {
    const char *name;
    key_type type;
    key_scope scope;
    size_t offset;      /* of the member in rscfg */
    size_t size;        /* of the member */
    uint64_t min, max;  /* numeric types */
    string_check check; /* strings: further validation, or NULL */
    const char *def;    /* the default, in the file syntax */
    const char *arg;    /* the flag's placeholder in the usage text */
    const char *doc;    /* one line for the usage text */
} key_def;

#define MEMBER(m) offsetof(rscfg, m), sizeof(((rscfg *)0)->m)
/* clang-format off */
#define KSTR(m, sc, chk, def, arg, doc) {#m, T_STRING, sc, MEMBER(m), 0, 0, chk, def, arg, doc}
#define KNUM(t, m, sc, lo, hi, def, arg, doc) {#m, t, sc, MEMBER(m), lo, hi, NULL, def, arg, doc}
/* clang-format on */

static const key_def keys[] = {
    KSTR(db_path, S_SHARED, check_not_empty, "/var/lib/risksim/risksim.db", "FILE",
         "the SQLite job store file"),
    KNUM(T_LEVEL, log_level, S_SHARED, 0, 0, "info", "LEVEL", "error, warn, info or debug"),
    KSTR(auth_secret, S_SHARED, NULL, "", "SECRET",
         "HS256 secret of the JWTs; empty turns authentication off"),
    KSTR(allowed_origins, S_SHARED, check_origins, "", "LIST",
         "WebSocket Origins allowed (comma-separated; empty: same origin; *: any)"),

    KSTR(listen, S_RESPONDER, check_listen, "", "ADDR",
         "empty (socket on fd 0), unix:/PATH or IP:PORT"),
    KNUM(T_MODE, listen_mode, S_RESPONDER, 0, 0777, "0660", "MODE", "mode of a unix socket"),
    KSTR(base_path, S_RESPONDER, check_base_path, "/risksim", "PATH",
         "URL prefix of the API (empty or /x)"),
    KNUM(T_UINT, threads, S_RESPONDER, 1, 256, "8", "N", "request threads"),
    KNUM(T_UINT, workers, S_RESPONDER, 0, 64, "2", "N",
         "job worker threads (0: this process runs no async jobs)"),
    KNUM(T_UINT, sim_threads, S_RESPONDER, 1, 64, "1", "N", "engine threads per simulation"),
    KNUM(T_SIZE, max_body_bytes, S_RESPONDER, 1024, 67108864, "1048576", "SIZE",
         "largest request body"),
    KNUM(T_U64, max_sync_trials, S_RESPONDER, 1, 1000000000, "100000", "N",
         "most trials of a synchronous simulation"),
    KNUM(T_U64, max_trials, S_RESPONDER, 1, 1000000000, "10000000", "N",
         "most trials of any simulation"),
    KNUM(T_UINT, max_depth, S_RESPONDER, 1, 32, "32", "N", "deepest model tree"),
    KNUM(T_UINT, max_nodes, S_RESPONDER, 1, 10000, "10000", "N", "most nodes of a model"),
    KNUM(T_UINT, queue_size, S_RESPONDER, 1, 1000000, "100", "N",
         "queued jobs before new ones get 503"),
    KNUM(T_BOOL, async_enabled, S_RESPONDER, 0, 1, "true", "BOOL", "serve asynchronous jobs"),
    KNUM(T_UINT, lease_s, S_RESPONDER, 2, 3600, "30", "SECONDS", "job lease length"),
    KNUM(T_UINT, max_attempts, S_RESPONDER, 1, 100, "3", "N", "claims of a job before it fails"),
    KNUM(T_U64, retention_s, S_RESPONDER, 0, 3153600000u, "604800", "SECONDS",
         "how long finished jobs are kept (0: forever)"),
    KNUM(T_U64, progress_trials, S_RESPONDER, 1, 1000000000, "10000", "N",
         "trials between progress events"),
    KNUM(T_UINT, progress_ms, S_RESPONDER, 10, 60000, "100", "MS",
         "least time between progress events"),
    KNUM(T_UINT, max_wait_s, S_RESPONDER, 0, 30, "30", "SECONDS", "longest long poll"),
    KNUM(T_UINT, max_waiters, S_RESPONDER, 0, 10000, "64", "N",
         "concurrent long polls per process"),
    KNUM(T_UINT, retry_after_s, S_RESPONDER, 1, 3600, "5", "SECONDS", "Retry-After of a 503"),
    KNUM(T_SIZE, checkpoint_bytes, S_RESPONDER, 0, 1073741824, "4194304", "SIZE",
         "WAL size above which maintenance empties it"),
    KNUM(T_UINT, maintenance_ms, S_RESPONDER, 10, 60000, "200", "MS",
         "period of the maintenance pass"),
    KSTR(sync_deprecation, S_RESPONDER, NULL, "", "TEXT",
         "Deprecation header of POST /simulations (empty: none)"),
    KSTR(sync_sunset, S_RESPONDER, check_http_date, "", "DATE",
         "Sunset header of POST /simulations, an HTTP-date (empty: none)"),
    KSTR(sync_link, S_RESPONDER, NULL, "", "TEXT",
         "Link header of POST /simulations (empty: none)"),

    KSTR(bridge_listen, S_BRIDGE, check_bridge_listen, "127.0.0.1:8091", "ADDR",
         "unix:/PATH or IP:PORT of the WebSocket bridge"),
    KNUM(T_UINT, poll_ms, S_BRIDGE, 1, 10000, "10", "MS", "event log polling period"),
    KNUM(T_UINT, heartbeat_s, S_BRIDGE, 1, 3600, "15", "SECONDS", "heartbeat message period"),
    KNUM(T_UINT, ping_s, S_BRIDGE, 1, 3600, "25", "SECONDS", "WebSocket ping period"),
    KNUM(T_UINT, idle_timeout_s, S_BRIDGE, 10, 86400, "300", "SECONDS",
         "close a session idle this long"),
    KNUM(T_SIZE, max_frame_bytes, S_BRIDGE, 128, 1048576, "4096", "SIZE", "largest client frame"),
    KNUM(T_UINT, max_sessions, S_BRIDGE, 1, 1000000, "10000", "N", "open sessions"),
    KNUM(T_UINT, max_sessions_per_ip, S_BRIDGE, 1, 1000000, "100", "N",
         "open sessions from one address"),
    KNUM(T_UINT, session_queue, S_BRIDGE, 4, 65536, "64", "N",
         "messages queued for one slow client"),
    KNUM(T_BOOL, ws_deflate, S_BRIDGE, 0, 1, "false", "BOOL", "offer permessage-deflate"),
};

#define KEY_COUNT (sizeof(keys) / sizeof(keys[0]))

static const char *const level_names[] = {"error", "warn", "info", "debug"};

size_t rscfg_key_count(void)
{
    return KEY_COUNT;
}

const char *rscfg_key_name(size_t i)
{
    return i < KEY_COUNT ? keys[i].name : NULL;
}

const char *rscfg_key_default(size_t i)
{
    return i < KEY_COUNT ? keys[i].def : NULL;
}

/* How a key's name is spelled in a source. */
typedef enum name_style {
    NAME_FILE, /* max_trials */
    NAME_ENV,  /* MAX_TRIALS (after RISKSIM_) */
    NAME_FLAG  /* max-trials (after --) */
} name_style;

/* Whether the key name matches name[0..len) spelled in style. */
static int key_matches(const char *key, const char *name, size_t len, name_style style)
{
    size_t i = 0;
    for (; i < len && key[i] != '\0'; i++) {
        char want = key[i];
        if (style == NAME_ENV)
            want = (char)toupper((unsigned char)want);
        else if (style == NAME_FLAG && want == '_')
            want = '-';
        if (name[i] != want)
            return 0;
    }
    return i == len && key[i] == '\0';
}

/* The key named name[0..len) in style, or NULL. */
static const key_def *find_key(const char *name, size_t len, name_style style)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (key_matches(keys[i].name, name, len, style))
            return &keys[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------------------- */

/* Parses the decimal digits at s (at least one) into *out, stopping at the first non-digit
 * (*end). Returns 0, or -1 when there is no digit or the number overflows. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        uint64_t d = (uint64_t)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *end = s + n;
    *out = v;
    return n == 0 ? -1 : 0;
}

static int parse_number(const char *s, uint64_t *out)
{
    const char *end;
    return parse_digits(s, out, &end) == 0 && *end == '\0' ? 0 : -1;
}

/* A number of bytes, optionally followed by one of k/K, m/M, g/G (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (parse_digits(s, &v, &end) != 0)
        return -1;
    unsigned int shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10;
    else if (*end == 'm' || *end == 'M')
        shift = 20;
    else if (*end == 'g' || *end == 'G')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end != '\0' || v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

/* Octal digits only, at most 0777. */
static int parse_mode(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '7')
            return -1;
        v = v * 8 + (uint64_t)(s[n] - '0');
        if (v > 0777)
            return -1;
    }
    if (n == 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, uint64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_level(const char *s, uint64_t *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

/* Explains what k accepts, quoting the refused value. */
static int refuse_value(const key_def *k, const char *value, char *msg, size_t msglen)
{
    char shown[SHOW_SIZE];
    show(shown, sizeof(shown), value);
    switch (k->type) {
    case T_UINT:
    case T_U64:
        return fail(msg, msglen, "must be a whole number from %" PRIu64 " to %" PRIu64 ", not %s",
                    k->min, k->max, shown);
    case T_SIZE:
        return fail(msg, msglen,
                    "must be a size in bytes from %" PRIu64 " to %" PRIu64
                    " (a number, optionally followed by k, M or G), not %s",
                    k->min, k->max, shown);
    case T_BOOL:
        return fail(msg, msglen, "must be true or false (or yes/no, on/off, 1/0), not %s", shown);
    case T_MODE:
        return fail(msg, msglen, "must be an octal file mode from 0 to 0777, not %s", shown);
    case T_LEVEL:
        return fail(msg, msglen, "must be error, warn, info or debug, not %s", shown);
    case T_STRING:
        break;
    }
    return fail(msg, msglen, "invalid value");
}

/* Checks a string value for k and copies it into its member. */
static int set_string(rscfg *cfg, const key_def *k, const char *value, char *msg, size_t msglen)
{
    size_t len = strlen(value);
    if (len >= k->size)
        return fail(msg, msglen, "is longer than %zu bytes", k->size - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f)
            return fail(msg, msglen, "contains a control character");
    }
    if (k->check != NULL && k->check(value, msg, msglen) != 0)
        return -1;
    memcpy((char *)cfg + k->offset, value, len + 1);
    return 0;
}

/* Stores v (already checked against k's range) in k's member. Returns 0, or -1 when the member
 * does not have the size the type needs (a bug in the table). */
static int store_number(rscfg *cfg, const key_def *k, uint64_t v)
{
    void *member = (char *)cfg + k->offset;
    switch (k->type) {
    case T_UINT:
    case T_MODE:
        if (k->size != sizeof(unsigned int))
            return -1;
        *(unsigned int *)member = (unsigned int)v;
        return 0;
    case T_U64:
        if (k->size != sizeof(uint64_t))
            return -1;
        *(uint64_t *)member = v;
        return 0;
    case T_SIZE:
        if (k->size != sizeof(size_t) || v > SIZE_MAX)
            return -1;
        *(size_t *)member = (size_t)v;
        return 0;
    case T_BOOL:
        if (k->size != sizeof(bool))
            return -1;
        *(bool *)member = v != 0;
        return 0;
    case T_LEVEL:
        if (k->size != sizeof(rslog_level))
            return -1;
        *(rslog_level *)member = (rslog_level)v;
        return 0;
    case T_STRING:
        break;
    }
    return -1;
}

/* Parses value as k's type and stores it. Returns 0, or -1 with a message (not naming the key)
 * in msg; the member is unchanged on failure. */
static int apply(rscfg *cfg, const key_def *k, const char *value, char *msg, size_t msglen)
{
    uint64_t v = 0;
    int rc = -1;
    switch (k->type) {
    case T_STRING:
        return set_string(cfg, k, value, msg, msglen);
    case T_UINT:
    case T_U64:
        rc = parse_number(value, &v);
        break;
    case T_SIZE:
        rc = parse_size(value, &v);
        break;
    case T_BOOL:
        rc = parse_bool(value, &v);
        break;
    case T_MODE:
        rc = parse_mode(value, &v);
        break;
    case T_LEVEL:
        rc = parse_level(value, &v);
        break;
    }
    int ranged = k->type == T_UINT || k->type == T_U64 || k->type == T_SIZE;
    if (rc != 0 || (ranged && (v < k->min || v > k->max)))
        return refuse_value(k, value, msg, msglen);
    if (store_number(cfg, k, v) != 0)
        return fail(msg, msglen, "internal error: the member does not fit the type");
    return 0;
}

void rscfg_defaults(rscfg *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    char msg[MSG_MAX];
    for (size_t i = 0; i < KEY_COUNT; i++)
        apply(cfg, &keys[i], keys[i].def, msg, sizeof(msg)); /* the tests check every default */
}

int rscfg_set(rscfg *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    if (cfg == NULL || key == NULL || value == NULL)
        return fail(err, errlen, "invalid argument");
    char shown[SHOW_SIZE];
    const key_def *k = find_key(key, strlen(key), NAME_FILE);
    if (k == NULL)
        return fail(err, errlen, "unknown key %s", show(shown, sizeof(shown), key));
    char msg[MSG_MAX];
    if (apply(cfg, k, value, msg, sizeof(msg)) != 0)
        return fail(err, errlen, "%s: %s", k->name, msg);
    return 0;
}

int rscfg_check(const rscfg *cfg, char *err, size_t errlen)
{
    if (cfg == NULL)
        return fail(err, errlen, "invalid argument");
    if (cfg->max_sync_trials > cfg->max_trials)
        return fail(err, errlen,
                    "max_sync_trials (%" PRIu64 ") must not be greater than max_trials (%" PRIu64
                    ")",
                    cfg->max_sync_trials, cfg->max_trials);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------------------------- */

/* One parse of configuration text; lives on the heap (it holds a whole rscfg). */
typedef struct file_ctx {
    rscfg work; /* the configuration being changed; copied out only on success */
    const char *name;
    const char *text;
    size_t len;
    size_t pos;                     /* the next byte to hand to libinih */
    const char *line;               /* the current line, without its newline */
    size_t line_len;                /* its length */
    size_t line_left;               /* bytes of it (newline included) not yet handed over */
    unsigned int lineno;            /* its number, from 1 */
    unsigned int set_on[KEY_COUNT]; /* line setting each key; 0 while unset */
    int failed;
    char *err;
    size_t errlen;
} file_ctx;

/* Records "NAME:LINE: message" as the parse's error (the first one wins). Returns 0 so that
 * the handler can `return file_fail(...)` to stop libinih. */
static int file_fail(file_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int file_fail(file_ctx *ctx, const char *fmt, ...)
{
    if (ctx->failed)
        return 0;
    ctx->failed = 1;
    if (ctx->err == NULL || ctx->errlen == 0)
        return 0;
    char msg[MSG_MAX + SHOW_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ctx->err, ctx->errlen, "%s:%u: %s", ctx->name, ctx->lineno, msg);
    return 0;
}

/* Whether the line (without its newline) starts, after blanks and a BOM on line 1, with '['. */
static int is_section(const file_ctx *ctx)
{
    size_t i = 0;
    if (ctx->lineno == 1 && ctx->line_len >= 3 && memcmp(ctx->line, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < ctx->line_len && (ctx->line[i] == ' ' || ctx->line[i] == '\t'))
        i++;
    return i < ctx->line_len && ctx->line[i] == '[';
}

/* Checks the line that starts at pos and makes it the current one. Returns 0, or -1 after
 * recording an error. */
static int start_line(file_ctx *ctx)
{
    ctx->lineno++;
    ctx->line = ctx->text + ctx->pos;
    const char *nl = memchr(ctx->line, '\n', ctx->len - ctx->pos);
    ctx->line_len = nl != NULL ? (size_t)(nl - ctx->line) : ctx->len - ctx->pos;
    ctx->line_left = ctx->line_len + (nl != NULL ? 1 : 0);
    if (ctx->line_len > RSCFG_LINE_MAX) {
        file_fail(ctx, "line longer than %d bytes", RSCFG_LINE_MAX);
        return -1;
    }
    for (size_t i = 0; i < ctx->line_len; i++) {
        unsigned char c = (unsigned char)ctx->line[i];
        int final_cr = c == '\r' && i + 1 == ctx->line_len;
        if ((c < 0x20 && c != '\t' && !final_cr) || c == 0x7f) {
            file_fail(ctx, "control character (byte 0x%02x) in line", c);
            return -1;
        }
    }
    if (is_section(ctx)) {
        file_fail(ctx, "sections ([...]) are not supported; write key = value lines only");
        return -1;
    }
    return 0;
}

/* libinih's reader: copies the rest of the current line (or of the next one), at most num - 1
 * bytes, to str like fgets. Returns str, or NULL at the end or after an error. */
static char *next_line(char *str, int num, void *stream)
{
    file_ctx *ctx = stream;
    if (ctx->failed || num < 2)
        return NULL;
    if (ctx->line_left == 0) {
        if (ctx->pos >= ctx->len || start_line(ctx) != 0)
            return NULL;
    }
    size_t n = ctx->line_left < (size_t)num - 1 ? ctx->line_left : (size_t)num - 1;
    memcpy(str, ctx->text + ctx->pos, n);
    str[n] = '\0';
    ctx->pos += n;
    ctx->line_left -= n;
    return str;
}

/* Whether the current line's first '=' comes before any ':' (libinih also splits at ':'). */
static int split_at_equals(const file_ctx *ctx)
{
    for (size_t i = 0; i < ctx->line_len; i++) {
        if (ctx->line[i] == '=')
            return 1;
        if (ctx->line[i] == ':')
            return 0;
    }
    return 0;
}

/* Whether text is blanks, optionally followed by a comment ('#' or ';' and anything). */
static int blank_or_comment(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    return *text == '\0' || *text == '#' || *text == ';';
}

/* Turns the value libinih found (blanks already trimmed) into the key's text in out (cap bytes).
 * A value starting with '"' ends at the last '"' of the line, which may only be followed by
 * blanks and a comment; the text between the quotes is taken as it is. Otherwise a '#' or ';' at
 * the start or after a blank starts a comment, and the blanks before it are dropped. Returns 0,
 * or -1 with a message. */
static int file_value(const char *value, char *out, size_t cap, char *msg, size_t msglen)
{
    size_t len = 0;
    if (value[0] == '"') {
        const char *close = strrchr(value, '"');
        if (close == value)
            return fail(msg, msglen, "the quoted value has no closing \"");
        if (!blank_or_comment(close + 1))
            return fail(msg, msglen, "only a comment may follow the closing \"");
        value++;
        len = (size_t)(close - value);
    } else {
        for (; value[len] != '\0'; len++) {
            char c = value[len];
            if ((c == '#' || c == ';') &&
                (len == 0 || value[len - 1] == ' ' || value[len - 1] == '\t'))
                break;
        }
        while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
            len--;
    }
    if (len >= cap)
        return fail(msg, msglen, "value too long");
    memcpy(out, value, len);
    out[len] = '\0';
    return 0;
}

/* libinih's handler: one `name = value` line. Returns 1 to go on, 0 to stop (error recorded). */
static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    file_ctx *ctx = user;
    char shown[SHOW_SIZE];
    char msg[MSG_MAX];
    char text[RSCFG_LINE_MAX + 1];
    if (ctx->failed)
        return 0;
    if (section[0] != '\0')
        return file_fail(ctx, "sections ([...]) are not supported; write key = value lines only");
    if (name[0] == '\0' || !split_at_equals(ctx))
        return file_fail(ctx, "expected key = value");
    const key_def *k = find_key(name, strlen(name), NAME_FILE);
    if (k == NULL)
        return file_fail(ctx, "unknown key %s", show(shown, sizeof(shown), name));
    size_t i = (size_t)(k - keys);
    if (ctx->set_on[i] != 0)
        return file_fail(ctx, "%s is set twice, on lines %u and %u", k->name, ctx->set_on[i],
                         ctx->lineno);
    if (file_value(value, text, sizeof(text), msg, sizeof(msg)) != 0 ||
        apply(&ctx->work, k, text, msg, sizeof(msg)) != 0)
        return file_fail(ctx, "%s: %s", k->name, msg);
    ctx->set_on[i] = ctx->lineno;
    return 1;
}

/* libinih's run-time options for the risksim syntax (see the top of this file). */
static void set_inih_options(void)
{
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_allow_bom = true;
    ini_allow_no_value = false;
    ini_stop_on_first_error = true;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = RSCFG_LINE_MAX + 3; /* the line, "\r\n" and the NUL */
}

int rscfg_load_string(rscfg *cfg, const char *name, const char *text, size_t len, char *err,
                      size_t errlen)
{
    if (cfg == NULL || (text == NULL && len > 0))
        return fail(err, errlen, "invalid argument");
    if (name == NULL)
        name = "(config)";
    if (len > RSCFG_FILE_MAX)
        return fail(err, errlen, "%s: larger than %d bytes", name, RSCFG_FILE_MAX);
    file_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return fail(err, errlen, "%s: out of memory", name);
    ctx->work = *cfg;
    ctx->name = name;
    ctx->text = text;
    ctx->len = len;
    ctx->err = err;
    ctx->errlen = errlen;
    set_inih_options();
    int rc = ini_parse_stream(next_line, ctx, on_pair, ctx);
    if (!ctx->failed && rc > 0) {
        ctx->lineno = (unsigned int)rc;
        file_fail(ctx, "expected key = value");
    } else if (!ctx->failed && rc < 0) {
        fail(err, errlen, "%s: out of memory", name);
        ctx->failed = 1;
    }
    int failed = ctx->failed;
    if (!failed)
        *cfg = ctx->work;
    free(ctx);
    return failed ? -1 : 0;
}

/* Reads all of fd (at most RSCFG_FILE_MAX bytes) into a new buffer *out (free it) of *len
 * bytes. Returns 0, or -1 with errno set (EFBIG when too large). */
static int read_all(int fd, char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            char *bigger = cap > RSCFG_FILE_MAX ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                errno = cap > RSCFG_FILE_MAX ? EFBIG : ENOMEM;
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > RSCFG_FILE_MAX) {
        free(buf);
        errno = EFBIG;
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* The text of errno value e (thread-safe). */
static const char *errno_text(int e, char *buf, size_t cap)
{
    if (strerror_r(e, buf, cap) != 0)
        snprintf(buf, cap, "error %d", e);
    return buf;
}

/* Loads the file at path. With missing_ok, a path that does not exist leaves *cfg alone and
 * sets *read to 0. Returns 0, or -1 with a message. */
static int load_path(rscfg *cfg, const char *path, int missing_ok, int *was_read, char *err,
                     size_t errlen)
{
    char why[128];
    *was_read = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && missing_ok)
        return 0;
    if (fd < 0)
        return fail(err, errlen, "%s: cannot open: %s", path, errno_text(errno, why, sizeof(why)));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "%s: is a directory", path);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_all(fd, &text, &len);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EFBIG)
        return fail(err, errlen, "%s: larger than %d bytes", path, RSCFG_FILE_MAX);
    if (rc != 0)
        return fail(err, errlen, "%s: cannot read: %s", path, errno_text(e, why, sizeof(why)));
    rc = rscfg_load_string(cfg, path, text, len, err, errlen);
    free(text);
    *was_read = rc == 0;
    return rc;
}

int rscfg_load_file(rscfg *cfg, const char *path, char *err, size_t errlen)
{
    if (cfg == NULL || path == NULL)
        return fail(err, errlen, "invalid argument");
    int was_read;
    return load_path(cfg, path, 0, &was_read, err, errlen);
}

/* ---------------------------------------------------------------------------------------------
 * Environment and flags
 * ------------------------------------------------------------------------------------------- */

#define ENV_PREFIX "RISKSIM_"
#define ENV_PREFIX_LEN (sizeof(ENV_PREFIX) - 1)

/* The value of variable name in envp (NULL-terminated; may be NULL), or NULL. */
static const char *env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* Applies every RISKSIM_<KEY>=value of envp; variables that name no key are left alone. */
static int apply_env(rscfg *cfg, char *const *envp, char *err, size_t errlen)
{
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *var = envp[i];
        const char *eq = strchr(var, '=');
        if (eq == NULL || strncmp(var, ENV_PREFIX, ENV_PREFIX_LEN) != 0)
            continue;
        const char *name = var + ENV_PREFIX_LEN;
        const key_def *k = find_key(name, (size_t)(eq - name), NAME_ENV);
        if (k == NULL)
            continue;
        char msg[MSG_MAX];
        if (apply(cfg, k, eq + 1, msg, sizeof(msg)) != 0)
            return fail(err, errlen, "%.*s: %s", (int)(eq - var), var, msg);
    }
    return 0;
}

typedef enum flag_kind {
    FLAG_KEY,
    FLAG_CONFIG,
    FLAG_PRINT_CONFIG,
    FLAG_CHECK_CONFIG,
    FLAG_HELP,
    FLAG_VERSION
} flag_kind;

typedef struct flag {
    flag_kind kind;
    const key_def *key; /* FLAG_KEY */
    const char *value;  /* FLAG_KEY and FLAG_CONFIG */
} flag;

/* The action flag named name[0..len), or FLAG_KEY when it is none of them. */
static flag_kind action_kind(const char *name, size_t len)
{
    static const struct {
        const char *name;
        flag_kind kind;
    } actions[] = {{"config", FLAG_CONFIG},
                   {"print-config", FLAG_PRINT_CONFIG},
                   {"check-config", FLAG_CHECK_CONFIG},
                   {"help", FLAG_HELP},
                   {"version", FLAG_VERSION}};
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strlen(actions[i].name) == len && strncmp(actions[i].name, name, len) == 0)
            return actions[i].kind;
    return FLAG_KEY;
}

/* Writes "--" and name[0..len) to buf (cap bytes), at most SHOW_MAX bytes of the name, with '?'
 * for control characters. Returns buf. */
static const char *flag_label(char *buf, size_t cap, const char *name, size_t len)
{
    size_t n = 0;
    for (; n < 2 && n + 1 < cap; n++)
        buf[n] = '-';
    for (size_t i = 0; i < len && i < SHOW_MAX && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[n] = '\0';
    return buf;
}

/* Writes k's flag ("--max-trials") to buf (cap bytes). Returns buf. */
static const char *key_flag(const key_def *k, char *buf, size_t cap)
{
    flag_label(buf, cap, k->name, strlen(k->name));
    for (char *p = buf; *p != '\0'; p++)
        if (*p == '_')
            *p = '-';
    return buf;
}

/* Reads the flag at argv[*i] and, when it takes one, its value (after '=' or in the next
 * argument), moving *i past them. Returns 0, or -1 with "--flag: message". */
static int next_flag(int argc, char *const *argv, int *i, flag *f, char *err, size_t errlen)
{
    char label[SHOW_SIZE];
    const char *arg = argv[(*i)++];
    memset(f, 0, sizeof(*f));
    if (strcmp(arg, "-h") == 0) {
        f->kind = FLAG_HELP;
        return 0;
    }
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return fail(err, errlen, "%s: unexpected argument", show(label, sizeof(label), arg));
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    flag_label(label, sizeof(label), name, len);
    f->kind = action_kind(name, len);
    if (f->kind == FLAG_KEY && (f->key = find_key(name, len, NAME_FLAG)) == NULL)
        return fail(err, errlen, "%s: unknown option", label);
    if (f->kind != FLAG_KEY && f->kind != FLAG_CONFIG) {
        if (eq != NULL)
            return fail(err, errlen, "%s: takes no value", label);
        return 0;
    }
    if (eq != NULL)
        f->value = eq + 1;
    else if (*i < argc)
        f->value = argv[(*i)++];
    else
        return fail(err, errlen, "%s: missing value", label);
    return 0;
}

/* The first pass over the flags: notes the actions and --config, and checks that every flag
 * exists and has its value. */
static int scan_flags(int argc, char *const *argv, rscfg_actions *actions, const char **config,
                      char *err, size_t errlen)
{
    for (int i = 1; i < argc;) {
        flag f;
        if (next_flag(argc, argv, &i, &f, err, errlen) != 0)
            return -1;
        actions->print_config |= f.kind == FLAG_PRINT_CONFIG;
        actions->check_config |= f.kind == FLAG_CHECK_CONFIG;
        actions->help |= f.kind == FLAG_HELP;
        actions->version |= f.kind == FLAG_VERSION;
        if (f.kind == FLAG_CONFIG)
            *config = f.value;
    }
    return 0;
}

/* The second pass: applies the --key VALUE flags in order (a later one wins). */
static int apply_flags(rscfg *cfg, int argc, char *const *argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc;) {
        flag f;
        if (next_flag(argc, argv, &i, &f, err, errlen) != 0)
            return -1;
        if (f.kind != FLAG_KEY)
            continue;
        char msg[MSG_MAX];
        char label[SHOW_SIZE];
        if (apply(cfg, f.key, f.value, msg, sizeof(msg)) != 0)
            return fail(err, errlen, "%s: %s", key_flag(f.key, label, sizeof(label)), msg);
    }
    return 0;
}

/* Reads the configuration file: the one named (by --config or $RISKSIM_CONFIG, which must
 * exist) or else default_path when it exists. */
static int load_config_file(rscfg *cfg, const char *named, const char *source,
                            const char *default_path, rscfg_actions *actions, char *err,
                            size_t errlen)
{
    int was_read = 0;
    if (named != NULL && named[0] == '\0')
        return fail(err, errlen, "%s: empty file name", source);
    if (named != NULL) {
        if (load_path(cfg, named, 0, &was_read, err, errlen) != 0)
            return -1;
        actions->config_file = named;
        return 0;
    }
    if (default_path == NULL)
        return 0;
    if (load_path(cfg, default_path, 1, &was_read, err, errlen) != 0)
        return -1;
    actions->config_file = was_read ? default_path : NULL;
    return 0;
}

int rscfg_load_from(rscfg *cfg, const char *default_path, int argc, char *const *argv,
                    char *const *envp, rscfg_actions *actions, char *err, size_t errlen)
{
    rscfg_actions local;
    if (actions == NULL)
        actions = &local;
    memset(actions, 0, sizeof(*actions));
    if (cfg == NULL || (argc > 0 && argv == NULL))
        return fail(err, errlen, "invalid argument");
    rscfg *work = malloc(sizeof(*work));
    if (work == NULL)
        return fail(err, errlen, "out of memory");
    rscfg_defaults(work);
    const char *named = NULL;
    const char *source = "--config";
    int rc = scan_flags(argc, argv, actions, &named, err, errlen);
    if (rc != 0 || actions->help || actions->version)
        goto out;
    if (named == NULL) {
        named = env_get(envp, "RISKSIM_CONFIG");
        source = "RISKSIM_CONFIG";
    }
    rc = load_config_file(work, named, source, default_path, actions, err, errlen);
    if (rc == 0)
        rc = apply_env(work, envp, err, errlen);
    if (rc == 0)
        rc = apply_flags(work, argc, argv, err, errlen);
    if (rc == 0)
        rc = rscfg_check(work, err, errlen);
out:
    if (rc == 0)
        *cfg = *work;
    free(work);
    return rc;
}

int rscfg_load(rscfg *cfg, int argc, char *const *argv, char *const *envp, rscfg_actions *actions,
               char *err, size_t errlen)
{
    return rscfg_load_from(cfg, RSCFG_DEFAULT_PATH, argc, argv, envp, actions, err, errlen);
}

/* ---------------------------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------------------------- */

/* Writes the text of a non-string key's value to buf (cap bytes). */
static void format_number(const rscfg *cfg, const key_def *k, char *buf, size_t cap)
{
    const void *member = (const char *)cfg + k->offset;
    switch (k->type) {
    case T_UINT:
        snprintf(buf, cap, "%u", *(const unsigned int *)member);
        return;
    case T_MODE:
        snprintf(buf, cap, "%04o", *(const unsigned int *)member);
        return;
    case T_U64:
        snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)member);
        return;
    case T_SIZE:
        snprintf(buf, cap, "%zu", *(const size_t *)member);
        return;
    case T_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)member ? "true" : "false");
        return;
    case T_LEVEL: {
        int level = (int)*(const rslog_level *)member;
        snprintf(buf, cap, "%s", level >= 0 && level < 4 ? level_names[level] : "info");
        return;
    }
    case T_STRING:
        break;
    }
    snprintf(buf, cap, "?");
}

static const char *scope_title(key_scope scope)
{
    switch (scope) {
    case S_SHARED:
        return "Shared by both daemons";
    case S_RESPONDER:
        return "The responder, risksim-fcgi";
    case S_BRIDGE:
        return "The WebSocket bridge, risksim-wsbridge";
    }
    return "";
}

void rscfg_print(const rscfg *cfg, FILE *out)
{
    if (cfg == NULL || out == NULL)
        return;
    fprintf(out, "# risksim configuration (see docs/configuration.md)\n");
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const key_def *k = &keys[i];
        if (i == 0 || keys[i - 1].scope != k->scope)
            fprintf(out, "%s# %s\n", i == 0 ? "" : "\n", scope_title(k->scope));
        if (k->type != T_STRING) {
            char buf[32];
            format_number(cfg, k, buf, sizeof(buf));
            fprintf(out, "%s = %s\n", k->name, buf);
            continue;
        }
        const char *s = (const char *)cfg + k->offset;
        size_t len = strnlen(s, k->size);
        if (k->offset == offsetof(rscfg, auth_secret) && len > 0)
            fprintf(out, "# %s is set (%zu bytes) and not shown\n", k->name, len);
        else
            fprintf(out, "%s = \"%.*s\"\n", k->name, (int)len, s);
    }
}

void rscfg_usage(FILE *out, const char *program)
{
    if (out == NULL)
        return;
    fprintf(out,
            "Usage: %s [--config FILE] [--print-config | --check-config] [--KEY VALUE]...\n\n"
            "  --config FILE                configuration file (default %s, when it exists;\n"
            "                               also RISKSIM_CONFIG)\n"
            "  --print-config               print the configuration in file syntax and exit\n"
            "  --check-config               check the configuration and exit\n"
            "  --help                       print this help and exit\n"
            "  --version                    print the version and exit\n\n"
            "Each setting below is also `key = value` in the file and RISKSIM_KEY in the\n"
            "environment; flags win over the environment, which wins over the file.\n",
            program != NULL ? program : "risksim", RSCFG_DEFAULT_PATH);
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const key_def *k = &keys[i];
        if (i == 0 || keys[i - 1].scope != k->scope)
            fprintf(out, "\n%s:\n", scope_title(k->scope));
        char label[SHOW_SIZE];
        char left[96];
        snprintf(left, sizeof(left), "%s %s", key_flag(k, label, sizeof(label)), k->arg);
        fprintf(out, "  %-28s %s [%s]\n", left, k->doc, k->def[0] != '\0' ? k->def : "\"\"");
    }
}
