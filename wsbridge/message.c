/*
 * risksim-wsbridge messages: parsers of what clients send and formatters of what the bridge
 * writes itself (see message.h).
 *
 * Why this file exists: the bridge's untrusted input (the stream URL's query, the Origin, Host
 * and X-Forwarded-For headers, client messages) is parsed in one place, with bounded buffers
 * and without the network or the database, so that the fuzz target and the unit tests cover
 * exactly the code the daemon runs. The query follows the strict rules of common/route.c (the
 * polling endpoint's rules), so a cursor or filter that one transport accepts the other does
 * too.
 */
#include "message.h"
#include "risksim/clock.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "risksim/route.h"

/* Longest `types` value: every name once, with commas, and some room. */
#define TYPES_MAX 128

/* Longest host name compared by the Origin check. */
#define HOST_MAX 256

unsigned wsmsg_type_bit(const char *type)
{
    static const struct {
        const char *name;
        unsigned bit;
    } types[] = {
        {"status", WSMSG_T_STATUS},       {"progress", WSMSG_T_PROGRESS},
        {"complete", WSMSG_T_COMPLETE},   {"error", WSMSG_T_ERROR},
        {"cancelled", WSMSG_T_CANCELLED},
    };
    if (type == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(type, types[i].name) == 0)
            return types[i].bit;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The query
 * ------------------------------------------------------------------------------------------- */

static void set_why(char *why, size_t why_len, const char *text)
{
    if (why != NULL && why_len > 0)
        snprintf(why, why_len, "%s", text);
}

/* Parses a comma-separated list of event type names into bits. Returns 0 or -1. */
static int parse_types(const char *list, unsigned *out)
{
    unsigned bits = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char name[16];
        if (n == 0 || n >= sizeof(name))
            return -1;
        memcpy(name, p, n);
        name[n] = '\0';
        unsigned bit = wsmsg_type_bit(name);
        if (bit == 0)
            return -1;
        bits |= bit;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = bits;
    return 0;
}

int wsmsg_query_parse(const char *query, wsmsg_query *out, char *why, size_t why_len)
{
    static const char *const allowed[] = {"after", "types", "token", NULL};
    if (query == NULL || out == NULL) {
        set_why(why, why_len, "bad query");
        return -1;
    }
    out->after = 0;
    out->types = WSMSG_T_ALL;
    char bad[QUERY_NAME_MAX + 1];
    if (query_check_names(query, allowed, bad, sizeof(bad)) != 0) {
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "unknown or malformed query parameter \"%s\"", bad);
        return -1;
    }
    char value[TYPES_MAX];
    uint64_t after = 0;
    int found = query_param(query, "after", value, sizeof(value));
    if (found < 0 || (found == 1 && query_uint(value, 0, (uint64_t)INT64_MAX, &after) != 0)) {
        set_why(why, why_len, "after must be a non-negative integer, given once");
        return -1;
    }
    out->after = (int64_t)after;
    found = query_param(query, "types", value, sizeof(value));
    unsigned bits = WSMSG_T_ALL;
    if (found < 0 || (found == 1 && parse_types(value, &bits) != 0)) {
        set_why(why, why_len,
                "types must list status, progress, complete, error or cancelled, "
                "separated by commas");
        return -1;
    }
    out->types = bits | WSMSG_T_ALWAYS;
    return 0;
}

int wsmsg_query_token(const char *query, char *out, size_t out_len)
{
    if (query == NULL || out == NULL || out_len == 0)
        return -1;
    return query_param(query, "token", out, out_len);
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int wsmsg_encode_param(const char *param, size_t len, char *out, size_t out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (param == NULL || out == NULL || out_len == 0)
        return -1;
    size_t n = 0;
    int seen_equal = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)param[i];
        int literal = unreserved(c) || (c == '=' && !seen_equal);
        if (c == '=')
            seen_equal = 1;
        size_t need = literal ? 1 : 3;
        if (n + need >= out_len) {
            out[0] = '\0';
            return -1;
        }
        if (literal) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 0x0f];
        }
    }
    out[n] = '\0';
    return (int)n;
}

/* ---------------------------------------------------------------------------------------------
 * Origin
 * ------------------------------------------------------------------------------------------- */

typedef struct origin_parts {
    char host[HOST_MAX]; /* lower case; an IPv6 literal keeps its brackets */
    unsigned port;
    int https;
} origin_parts;

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Parses "host[:port]" or "[v6]:port" of n bytes into p (port 0 when absent). Returns 0/-1. */
static int parse_hostport(const char *s, size_t n, origin_parts *p)
{
    size_t host_end = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return -1;
        host_end = (size_t)(close - s) + 1;
        for (size_t i = 1; i + 1 < host_end; i++) {
            char c = s[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return -1;
        }
    } else {
        while (host_end < n && s[host_end] != ':') {
            if (!host_char(s[host_end]))
                return -1;
            host_end++;
        }
    }
    if (host_end == 0 || host_end >= HOST_MAX)
        return -1;
    for (size_t i = 0; i < host_end; i++)
        p->host[i] = lower(s[i]);
    p->host[host_end] = '\0';
    p->port = 0;
    if (host_end == n)
        return 0;
    if (s[host_end] != ':' || n - host_end - 1 == 0 || n - host_end - 1 > 5)
        return -1;
    char digits[6];
    memcpy(digits, s + host_end + 1, n - host_end - 1);
    digits[n - host_end - 1] = '\0';
    uint64_t port = 0;
    if (query_uint(digits, 1, 65535, &port) != 0)
        return -1;
    p->port = (unsigned)port;
    return 0;
}

/* Parses "http(s)://host[:port]" of n bytes, filling in the scheme's default port. */
static int parse_origin(const char *s, size_t n, origin_parts *p)
{
    size_t skip = 0;
    if (n >= 7 && strncasecmp(s, "http://", 7) == 0) {
        p->https = 0;
        skip = 7;
    } else if (n >= 8 && strncasecmp(s, "https://", 8) == 0) {
        p->https = 1;
        skip = 8;
    } else {
        return -1;
    }
    if (parse_hostport(s + skip, n - skip, p) != 0)
        return -1;
    if (p->port == 0)
        p->port = p->https ? 443 : 80;
    return 0;
}

static int same_origin(const origin_parts *a, const origin_parts *b)
{
    return a->https == b->https && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Whether origin equals one entry of a comma-separated list. */
static int origin_in_list(const char *list, const origin_parts *origin)
{
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        const char *s = p;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        const char *e = end;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        origin_parts entry;
        if (e > s && parse_origin(s, (size_t)(e - s), &entry) == 0 && same_origin(&entry, origin))
            return 1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int wsmsg_origin_allowed(const char *allowed, const char *origin, const char *host)
{
    if (origin == NULL || origin[0] == '\0')
        return 1;
    if (allowed != NULL && strcmp(allowed, "*") == 0)
        return 1;
    origin_parts o;
    if (parse_origin(origin, strlen(origin), &o) != 0)
        return 0;
    if (allowed != NULL && allowed[0] != '\0')
        return origin_in_list(allowed, &o);
    if (host == NULL || host[0] == '\0')
        return 1;
    origin_parts h;
    if (parse_hostport(host, strlen(host), &h) != 0)
        return 0;
    h.https = o.https;
    if (h.port == 0)
        h.port = o.https ? 443 : 80;
    return same_origin(&o, &h);
}

/* ---------------------------------------------------------------------------------------------
 * Client address
 * ------------------------------------------------------------------------------------------- */

static void copy_cut(const char *s, size_t n, char *out, size_t out_len)
{
    if (out == NULL || out_len == 0)
        return;
    if (n >= out_len)
        n = out_len - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Whether the n bytes at s are an IPv4 or IPv6 literal. */
static int ip_literal(const char *s, size_t n)
{
    char text[64];
    unsigned char addr[16];
    if (n == 0 || n >= sizeof(text))
        return 0;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

int wsmsg_client_ip(const char *peer, int peer_is_proxy, const char *xff, char *out, size_t out_len)
{
    if (peer == NULL)
        peer = "";
    if (peer_is_proxy && xff != NULL) {
        const char *last = strrchr(xff, ',');
        const char *s = last != NULL ? last + 1 : xff;
        const char *e = s + strlen(s);
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (ip_literal(s, (size_t)(e - s))) {
            copy_cut(s, (size_t)(e - s), out, out_len);
            return 1;
        }
    }
    copy_cut(peer, strlen(peer), out, out_len);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Client messages
 * ------------------------------------------------------------------------------------------- */

wsmsg_client wsmsg_client_parse(const char *data, size_t len, char *why, size_t why_len)
{
    if (data == NULL || len == 0 || len > (size_t)INT32_MAX) {
        set_why(why, why_len, "expected a JSON object such as {\"type\":\"ping\"}");
        return WSMSG_CLIENT_BAD;
    }
    wsmsg_client kind = WSMSG_CLIENT_BAD;
    const char *reason = "expected a JSON object such as {\"type\":\"ping\"}";
    json_tokener *tok = json_tokener_new_ex(8);
    if (tok == NULL) {
        set_why(why, why_len, "out of memory");
        return WSMSG_CLIENT_BAD;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, data, (int)len);
    int complete = json_tokener_get_error(tok) == json_tokener_success &&
                   json_tokener_get_parse_end(tok) == len;
    json_object *type = NULL;
    if (obj == NULL || !complete || !json_object_is_type(obj, json_type_object)) {
        reason = "not a JSON object";
    } else if (!json_object_object_get_ex(obj, "type", &type) ||
               !json_object_is_type(type, json_type_string)) {
        reason = "the message has no \"type\"";
    } else if (strcmp(json_object_get_string(type), "ping") != 0) {
        reason = "unknown message type (only \"ping\" is understood)";
    } else {
        kind = WSMSG_CLIENT_PING;
        reason = "";
    }
    json_object_put(obj);
    json_tokener_free(tok);
    set_why(why, why_len, reason);
    return kind;
}

/* ---------------------------------------------------------------------------------------------
 * The bridge's messages
 * ------------------------------------------------------------------------------------------- */

/* Returns n when 0 <= n < out_len (snprintf's answer fitted), else -1 with out "". */
static int fitted(int n, char *out, size_t out_len)
{
    if (n < 0 || (size_t)n >= out_len) {
        if (out_len > 0)
            out[0] = '\0';
        return -1;
    }
    return n;
}

int wsmsg_pong(int64_t now_ms, char *out, size_t out_len)
{
    char ts[RSCLOCK_TS_SIZE];
    rsclock_rfc3339(now_ms, ts);
    return fitted(snprintf(out, out_len, "{\"type\":\"pong\",\"ts\":\"%s\"}", ts), out, out_len);
}

int wsmsg_heartbeat(int64_t now_ms, char *out, size_t out_len)
{
    char ts[RSCLOCK_TS_SIZE];
    rsclock_rfc3339(now_ms, ts);
    return fitted(snprintf(out, out_len, "{\"type\":\"heartbeat\",\"ts\":\"%s\"}", ts), out,
                  out_len);
}

/* Copies s into out as the inside of a JSON string (quotes, backslashes and control characters
 * escaped). Returns the length or -1 when it does not fit. */
static int json_escape(const char *s, char *out, size_t out_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char buf[7];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c < 0x20) {
            memcpy(buf, "\\u00", 4);
            k = 4;
            buf[k++] = hex[c >> 4];
            buf[k++] = hex[c & 0x0f];
        } else {
            buf[k++] = (char)c;
        }
        if (n + k >= out_len)
            return -1;
        memcpy(out + n, buf, k);
        n += k;
    }
    out[n] = '\0';
    return (int)n;
}

int wsmsg_reset(const char *job_id, char *out, size_t out_len)
{
    char id[64];
    if (job_id == NULL || json_escape(job_id, id, sizeof(id)) < 0)
        return fitted(-1, out, out_len);
    return fitted(snprintf(out, out_len, "{\"type\":\"reset\",\"jobId\":\"%s\"}", id), out,
                  out_len);
}

int wsmsg_bad_message(const char *message, char *out, size_t out_len)
{
    char text[256];
    if (message == NULL || json_escape(message, text, sizeof(text)) < 0)
        return fitted(-1, out, out_len);
    return fitted(snprintf(out, out_len,
                           "{\"type\":\"error\",\"error\":{\"code\":\"bad_message\","
                           "\"message\":\"%s\"}}",
                           text),
                  out, out_len);
}

/* Writes a progress fraction with at most six decimals and at least one ("0.0", "0.4096",
 * "1.0"), as SQLite writes the stored status events' REAL values. */
static void format_progress(uint64_t done, uint64_t trials, char out[32])
{
    double p = trials > 0 ? (double)done / (double)trials : 0.0;
    if (p < 0.0)
        p = 0.0;
    if (p > 1.0)
        p = 1.0;
    snprintf(out, 32, "%.6f", p);
    size_t n = strlen(out);
    while (n > 3 && out[n - 1] == '0' && out[n - 2] != '.')
        out[--n] = '\0';
}

int wsmsg_status(int64_t seq, const char *job_id, const char *state, uint64_t trials_done,
                 uint64_t trials, int64_t now_ms, char *out, size_t out_len)
{
    char id[64], st[32], ts[RSCLOCK_TS_SIZE], progress[32];
    if (job_id == NULL || state == NULL || json_escape(job_id, id, sizeof(id)) < 0 ||
        json_escape(state, st, sizeof(st)) < 0)
        return fitted(-1, out, out_len);
    rsclock_rfc3339(now_ms, ts);
    format_progress(trials_done, trials, progress);
    return fitted(snprintf(out, out_len,
                           "{\"seq\":%lld,\"jobId\":\"%s\",\"type\":\"status\",\"status\":\"%s\","
                           "\"progress\":%s,\"trialsDone\":%llu,\"trials\":%llu,\"ts\":\"%s\"}",
                           (long long)seq, id, st, progress, (unsigned long long)trials_done,
                           (unsigned long long)trials, ts),
                  out, out_len);
}

int wsmsg_goaway_reason(unsigned retry_ms, char *out, size_t out_len)
{
    return fitted(snprintf(out, out_len, "{\"retryMs\":%u}", retry_ms), out, out_len);
}

int wsmsg_event_close(const char *type, const char **reason)
{
    const char *why = NULL;
    int code = 0;
    unsigned bit = wsmsg_type_bit(type);
    if (bit == WSMSG_T_COMPLETE) {
        code = WSMSG_CLOSE_NORMAL;
        why = "job completed";
    } else if (bit == WSMSG_T_CANCELLED) {
        code = WSMSG_CLOSE_NORMAL;
        why = "job cancelled";
    } else if (bit == WSMSG_T_ERROR) {
        code = WSMSG_CLOSE_JOB_FAILED;
        why = "job failed";
    }
    if (reason != NULL)
        *reason = why;
    return code;
}

int wsmsg_state_close(const char *state, const char **reason)
{
    const char *why = NULL;
    int code = 0;
    if (state != NULL && strcmp(state, "completed") == 0) {
        code = WSMSG_CLOSE_NORMAL;
        why = "job completed";
    } else if (state != NULL && strcmp(state, "cancelled") == 0) {
        code = WSMSG_CLOSE_NORMAL;
        why = "job cancelled";
    } else if (state != NULL && strcmp(state, "failed") == 0) {
        code = WSMSG_CLOSE_JOB_FAILED;
        why = "job failed";
    }
    if (reason != NULL)
        *reason = why;
    return code;
}
