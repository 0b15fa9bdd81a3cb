/*
 * The router and query-string parser of the HTTP API, shared by the responder and the bridge.
 *
 * Why this file exists: the request line is the first untrusted input the responder sees, and
 * both the choice of endpoint and the reading of query parameters must be exact, bounded and the
 * same behind every web server. This file holds those rules as pure functions over strings (see
 * route.h for the contract), depending on libc alone so that the fuzz target can compile it on
 * its own. Paths are matched segment by segment without decoding; query names and values are
 * decoded on the fly, one byte at a time, so nothing is ever copied into a buffer that was not
 * given with its size.
 */
#include <string.h>

#include "risksim/route.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

route_method route_method_parse(const char *method)
{
    static const struct {
        const char *name;
        route_method method;
    } methods[] = {{"GET", METHOD_GET},
                   {"HEAD", METHOD_HEAD},
                   {"POST", METHOD_POST},
                   {"DELETE", METHOD_DELETE},
                   {"OPTIONS", METHOD_OPTIONS}};
    if (method == NULL)
        return METHOD_OTHER;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(method, methods[i].name) == 0)
            return methods[i].method;
    }
    return METHOD_OTHER;
}

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

/* A segment of a path: len bytes at p, without the slashes. */
typedef struct segment {
    const char *p;
    size_t len;
} segment;

/* The most segments an endpoint has after base_path ("simulations", {id}, "events"). */
#define MAX_SEGMENTS 3

/* Returns 1 when c may appear in a path: visible ASCII other than '%', '#' and '?'. */
static int path_char_ok(char c)
{
    return c >= 0x21 && c <= 0x7E && c != '%' && c != '#' && c != '?';
}

/* Returns 1 when a segment of len bytes at p is neither empty nor a dot segment. */
static int segment_ok(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    if (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.')))
        return 0;
    return 1;
}

/* Returns 1 when the len bytes at p are a clean absolute path: a '/' and then one or more
 * segments accepted by segment_ok, separated by single slashes, with no trailing slash and only
 * characters accepted by path_char_ok. */
static int path_clean(const char *p, size_t len)
{
    if (len == 0 || p[0] != '/')
        return 0;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || p[i] == '/') {
            if (!segment_ok(p + start, i - start))
                return 0;
            start = i + 1;
        } else if (!path_char_ok(p[i])) {
            return 0;
        }
    }
    return 1;
}

/* Splits a clean path (path_clean) of len bytes into segs. Returns the number of segments, or 0
 * when there are more than MAX_SEGMENTS. */
static size_t split_path(const char *p, size_t len, segment segs[MAX_SEGMENTS])
{
    size_t n = 0;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && p[i] != '/')
            continue;
        if (n == MAX_SEGMENTS)
            return 0;
        segs[n].p = p + start;
        segs[n].len = i - start;
        n++;
        start = i + 1;
    }
    return n;
}

/* Returns 1 when the segment is exactly word. */
static int segment_is(segment seg, const char *word)
{
    return seg.len == strlen(word) && memcmp(seg.p, word, seg.len) == 0;
}

int route_base_valid(const char *base_path)
{
    if (base_path == NULL)
        return 0;
    size_t len = strnlen(base_path, ROUTE_BASE_MAX + 1);
    if (len > ROUTE_BASE_MAX)
        return 0;
    return len == 0 || path_clean(base_path, len);
}

int route_id_valid(const char *text, size_t len)
{
    if (text == NULL || len != ROUTE_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\0' || strchr(crockford, text[i]) == NULL)
            return 0;
    }
    return 1;
}

/* Fills out for the {id} segment of a job route of the given kind. */
static void set_job(route *out, route_kind kind, segment id)
{
    out->kind = kind;
    if (route_id_valid(id.p, id.len)) {
        memcpy(out->id, id.p, ROUTE_ID_LEN);
        out->id[ROUTE_ID_LEN] = '\0';
        out->id_valid = 1;
    }
}

/* Chooses the route for the n segments that follow base_path (out->kind stays ROUTE_NONE when
 * none fits). */
static void match_segments(const segment *segs, size_t n, route *out)
{
    if (n == 1) {
        if (segment_is(segs[0], "simulations"))
            out->kind = ROUTE_SIMULATIONS;
        else if (segment_is(segs[0], "healthz"))
            out->kind = ROUTE_HEALTHZ;
        else if (segment_is(segs[0], "metrics"))
            out->kind = ROUTE_METRICS;
        return;
    }
    if (n < 2 || !segment_is(segs[0], "simulations"))
        return;
    if (segment_is(segs[1], "async")) {
        if (n == 2)
            out->kind = ROUTE_ASYNC;
        return;
    }
    if (n == 2)
        set_job(out, ROUTE_JOB, segs[1]);
    else if (segment_is(segs[2], "events"))
        set_job(out, ROUTE_EVENTS, segs[1]);
    else if (segment_is(segs[2], "stream"))
        set_job(out, ROUTE_STREAM, segs[1]);
}

int route_match(const char *request_uri, const char *base_path, route *out)
{
    if (out == NULL)
        return -1;
    out->kind = ROUTE_NONE;
    out->id_valid = 0;
    out->id[0] = '\0';
    out->query = "";
    if (request_uri == NULL || !route_base_valid(base_path))
        return -1;
    if (strnlen(request_uri, ROUTE_URI_MAX + 1) > ROUTE_URI_MAX)
        return 0;
    size_t path_len = strcspn(request_uri, "?");
    if (request_uri[path_len] == '?')
        out->query = request_uri + path_len + 1;
    size_t base_len = strlen(base_path);
    if (path_len <= base_len || memcmp(request_uri, base_path, base_len) != 0)
        return 0;
    const char *rest = request_uri + base_len;
    size_t rest_len = path_len - base_len;
    if (!path_clean(rest, rest_len))
        return 0;
    segment segs[MAX_SEGMENTS];
    size_t n = split_path(rest, rest_len, segs);
    match_segments(segs, n, out);
    return 0;
}

/* Appends the string s to buf (len bytes, *used of them taken, NUL not counted). Returns 0, or
 * -1 when s and a NUL do not fit. */
static int append(char *buf, size_t len, size_t *used, const char *s)
{
    size_t n = strlen(s);
    if (n >= len - *used)
        return -1;
    memcpy(buf + *used, s, n);
    *used += n;
    buf[*used] = '\0';
    return 0;
}

int route_uri_from_parts(const char *script_name, const char *path_info, const char *query_string,
                         char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return -1;
    size_t used = 0;
    buf[0] = '\0';
    int has_query = query_string != NULL && query_string[0] != '\0';
    if (append(buf, len, &used, script_name != NULL ? script_name : "") != 0 ||
        append(buf, len, &used, path_info != NULL ? path_info : "") != 0 ||
        (has_query &&
         (append(buf, len, &used, "?") != 0 || append(buf, len, &used, query_string) != 0))) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* The methods each route kind answers, as bits (1 << route_method), and its Allow header. Both
 * are written side by side so that they cannot disagree (the unit test checks it too). */
#define BIT(m) (1u << (m))
static const struct {
    const char *name;
    unsigned methods;
    const char *allow;
} kinds[ROUTE_KINDS] = {
    [ROUTE_NONE] = {"none", 0, ""},
    [ROUTE_SIMULATIONS] = {"simulations",
                           BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_POST) |
                               BIT(METHOD_OPTIONS),
                           "GET, HEAD, POST, OPTIONS"},
    [ROUTE_ASYNC] = {"async", BIT(METHOD_POST) | BIT(METHOD_OPTIONS), "POST, OPTIONS"},
    [ROUTE_JOB] = {"job",
                   BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_DELETE) | BIT(METHOD_OPTIONS),
                   "GET, HEAD, DELETE, OPTIONS"},
    [ROUTE_EVENTS] = {"events", BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_OPTIONS),
                      "GET, HEAD, OPTIONS"},
    [ROUTE_STREAM] = {"stream", BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_OPTIONS),
                      "GET, HEAD, OPTIONS"},
    [ROUTE_HEALTHZ] = {"healthz", BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_OPTIONS),
                       "GET, HEAD, OPTIONS"},
    [ROUTE_METRICS] = {"metrics", BIT(METHOD_GET) | BIT(METHOD_HEAD) | BIT(METHOD_OPTIONS),
                       "GET, HEAD, OPTIONS"},
};
#undef BIT

/* Returns 1 when kind is one of route_kind's values. */
static int kind_known(route_kind kind)
{
    return (unsigned)kind < ROUTE_KINDS;
}

int route_allows(route_kind kind, route_method method)
{
    if (!kind_known(kind) || (unsigned)method >= METHOD_OTHER)
        return 0;
    return (kinds[kind].methods >> method) & 1u;
}

const char *route_allow_header(route_kind kind)
{
    return kind_known(kind) ? kinds[kind].allow : "";
}

const char *route_name(route_kind kind)
{
    return kind_known(kind) ? kinds[kind].name : "none";
}

/* ---------------------------------------------------------------------------------------------
 * Query strings
 * ------------------------------------------------------------------------------------------- */

/* One parameter of a query: the raw (still encoded) name and value. */
typedef struct param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} param;

/* Reads the next non-empty parameter at *cursor into *out and moves *cursor past it. Returns 1,
 * or 0 at the end of the query. */
static int next_param(const char **cursor, param *out)
{
    const char *p = *cursor;
    while (*p == '&')
        p++;
    if (*p == '\0') {
        *cursor = p;
        return 0;
    }
    size_t len = strcspn(p, "&");
    const char *eq = memchr(p, '=', len);
    out->name = p;
    out->name_len = eq != NULL ? (size_t)(eq - p) : len;
    out->value = eq != NULL ? eq + 1 : p + len;
    out->value_len = eq != NULL ? len - out->name_len - 1 : 0;
    *cursor = p + len;
    return 1;
}

/* Returns the value of the hex digit c, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the byte at s[*i] (n bytes in all) and moves *i past it. Returns the byte (0 to 255),
 * or -1 for a '%' without two hex digits after it. */
static int decode_byte(const char *s, size_t n, size_t *i)
{
    char c = s[*i];
    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c != '%') {
        (*i)++;
        return (unsigned char)c;
    }
    if (n - *i < 3)
        return -1;
    int hi = hex_value(s[*i + 1]);
    int lo = hex_value(s[*i + 2]);
    if (hi < 0 || lo < 0)
        return -1;
    *i += 3;
    return hi * 16 + lo;
}

/* The state of a UTF-8 check, one byte at a time: how many continuation bytes are still due and
 * the range the next one must fall in (narrower after E0, ED, F0 and F4, which excludes overlong
 * forms, surrogates and code points above U+10FFFF). */
typedef struct utf8_state {
    int need;
    unsigned char lo, hi;
} utf8_state;

/* Feeds byte c to the UTF-8 check. Returns 0, or -1 when the sequence is not valid UTF-8. */
static int utf8_step(utf8_state *st, unsigned char c)
{
    if (st->need > 0) {
        if (c < st->lo || c > st->hi)
            return -1;
        st->need--;
        st->lo = 0x80;
        st->hi = 0xBF;
        return 0;
    }
    st->lo = 0x80;
    st->hi = 0xBF;
    if (c < 0x80)
        return 0;
    if (c >= 0xC2 && c <= 0xDF) {
        st->need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        st->need = 2;
        if (c == 0xE0)
            st->lo = 0xA0;
        if (c == 0xED)
            st->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        st->need = 3;
        if (c == 0xF0)
            st->lo = 0x90;
        if (c == 0xF4)
            st->hi = 0x8F;
    } else {
        return -1;
    }
    return 0;
}

/* Returns the length of the longest prefix of the len bytes at s that does not end inside a
 * UTF-8 sequence (s is valid UTF-8 cut anywhere). */
static size_t utf8_boundary(const char *s, size_t len)
{
    size_t start = len;
    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80)
        start--;
    if (start == 0)
        return len;
    unsigned char lead = (unsigned char)s[start - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return len - (start - 1) >= want ? len : start - 1;
}

/* Decodes a raw name or value (n bytes at s). When out is not NULL, writes as much of the result
 * as fits in out_len bytes, cut at a UTF-8 boundary, with a NUL. Stores the full decoded length in
 * *full. Returns 0, or -1 when the text is malformed (bad escape, control character, not UTF-8). */
static int decode_field(const char *s, size_t n, char *out, size_t out_len, size_t *full)
{
    utf8_state st = {0, 0x80, 0xBF};
    size_t used = 0;
    size_t i = 0;
    while (i < n) {
        int c = decode_byte(s, n, &i);
        if (c < 0 || c < 0x20 || c == 0x7F || utf8_step(&st, (unsigned char)c) != 0)
            return -1;
        if (out != NULL && used + 1 < out_len)
            out[used] = (char)c;
        used++;
    }
    if (st.need != 0)
        return -1;
    *full = used;
    if (out != NULL && out_len > 0) {
        size_t kept = used < out_len ? used : utf8_boundary(out, out_len - 1);
        out[kept] = '\0';
    }
    return 0;
}

/* Decodes the name of p into buf (QUERY_NAME_MAX + 1 bytes). Returns 1 when it fits, 0 when it
 * is longer (it then matches no name that query_param may look up), -1 when p is malformed: an
 * empty name, or a name or value that does not decode. */
static int param_name(const param *p, char buf[QUERY_NAME_MAX + 1])
{
    size_t full = 0;
    size_t value_full = 0;
    if (p->name_len == 0 ||
        decode_field(p->name, p->name_len, buf, QUERY_NAME_MAX + 1, &full) != 0 ||
        decode_field(p->value, p->value_len, NULL, 0, &value_full) != 0)
        return -1;
    return full <= QUERY_NAME_MAX;
}

/* Writes "" to out when it has room. */
static void clear_out(char *out, size_t out_len)
{
    if (out != NULL && out_len > 0)
        out[0] = '\0';
}

int query_param(const char *query, const char *name, char *out, size_t out_len)
{
    clear_out(out, out_len);
    if (query == NULL || name == NULL || name[0] == '\0' ||
        strnlen(name, QUERY_NAME_MAX + 1) > QUERY_NAME_MAX || (out == NULL && out_len > 0))
        return -1;
    const char *cursor = query;
    param p;
    param found = {NULL, 0, NULL, 0};
    char buf[QUERY_NAME_MAX + 1];
    while (next_param(&cursor, &p)) {
        int rc = param_name(&p, buf);
        if (rc < 0)
            return -1;
        if (rc == 0 || strcmp(buf, name) != 0)
            continue;
        if (found.name != NULL)
            return -1;
        found = p;
    }
    if (found.name == NULL)
        return 0;
    size_t full = 0;
    if (decode_field(found.value, found.value_len, out, out_len, &full) != 0 || full >= out_len) {
        clear_out(out, out_len);
        return -1;
    }
    return 1;
}

/* Returns 1 when name is one of allowed (ending with NULL). */
static int name_allowed(const char *name, const char *const *allowed)
{
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(name, allowed[i]) == 0)
            return 1;
    }
    return 0;
}

/* Writes the raw bytes of a name that does not decode to bad (bad_len bytes, with a NUL), each
 * byte outside visible ASCII replaced by '?'. */
static void copy_raw_name(const param *p, char *bad, size_t bad_len)
{
    if (bad_len == 0)
        return;
    size_t n = p->name_len < bad_len - 1 ? p->name_len : bad_len - 1;
    for (size_t i = 0; i < n; i++) {
        char c = p->name[i];
        bad[i] = c >= 0x21 && c <= 0x7E ? c : '?';
    }
    bad[n] = '\0';
}

/* Checks one parameter of query_check_names. Returns 0 when it is well-formed and allowed;
 * otherwise writes its name to bad and returns -1. */
static int check_param(const param *p, const char *const *allowed, char *bad, size_t bad_len)
{
    char buf[QUERY_NAME_MAX + 1];
    size_t full = 0;
    int rc = param_name(p, buf);
    if (rc > 0 && name_allowed(buf, allowed))
        return 0;
    if (p->name_len == 0)
        clear_out(bad, bad_len);
    else if (decode_field(p->name, p->name_len, bad, bad_len, &full) != 0)
        copy_raw_name(p, bad, bad_len);
    return -1;
}

int query_check_names(const char *query, const char *const *allowed, char *bad, size_t bad_len)
{
    clear_out(bad, bad_len);
    if (query == NULL || allowed == NULL || (bad == NULL && bad_len > 0))
        return -1;
    const char *cursor = query;
    param p;
    while (next_param(&cursor, &p)) {
        if (check_param(&p, allowed, bad, bad_len) != 0)
            return -1;
    }
    return 0;
}

int query_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (text == NULL || out == NULL || text[0] == '\0' || (text[0] == '0' && text[1] != '\0'))
        return -1;
    uint64_t v = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
