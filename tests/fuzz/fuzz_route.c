/*
 * libFuzzer target: the responder's router and query-string parser (common/route.c).
 *
 * Why this file exists: REQUEST_URI and QUERY_STRING are the first bytes of a request the
 * responder reads, straight from the client. This target feeds arbitrary request targets to
 * route_match, route_uri_from_parts, query_check_names, query_param and query_uint and checks
 * what must hold for any input besides the absence of crashes and out-of-bounds accesses (the
 * sanitizers): a matched path is exactly the mount point followed by an endpoint's canonical
 * path, the query pointer is the text after the first '?', a valid id has the form of one, a
 * rebuilt URI is the concatenation of its parts or nothing, every decoded name or value is
 * NUL-terminated within its buffer, printable and valid UTF-8, and every accepted number has the
 * text it would be printed with.
 *
 * Input: the first byte chooses the mount point (its value modulo 3: "", "/risksim", "/a/b") and
 * the size of the small buffers (its value divided by 3); the remaining bytes, up to the first
 * NUL, are the request URI. Build with -DRISKSIM_FUZZ=ON and clang; seeds are in corpus/route,
 * words in route.dict.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risksim/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const BASES[] = {"", "/risksim", "/a/b"};
static const char *const NAMES[] = {"status", "limit", "before", "after", "wait", NULL};

/* Stops the run (libFuzzer reports it with the input) when cond is false. */
static void require(int cond)
{
    if (!cond)
        abort();
}

/* Returns the number of continuation bytes of a UTF-8 lead byte and its minimum code point, or
 * -1 for a byte that cannot start a character. */
static int utf8_lead(unsigned char c, uint32_t *cp, uint32_t *min)
{
    if (c < 0x80) {
        *cp = c;
        *min = 0;
        return 0;
    }
    if ((c & 0xE0) == 0xC0) {
        *cp = c & 0x1Fu;
        *min = 0x80;
        return 1;
    }
    if ((c & 0xF0) == 0xE0) {
        *cp = c & 0x0Fu;
        *min = 0x800;
        return 2;
    }
    if ((c & 0xF8) == 0xF0) {
        *cp = c & 0x07u;
        *min = 0x10000;
        return 3;
    }
    return -1;
}

/* Returns 1 when s is valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF) without
 * control characters (below 0x20 or 0x7F). */
static int printable_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u != '\0') {
        uint32_t cp = 0;
        uint32_t min = 0;
        int more = utf8_lead(*u++, &cp, &min);
        if (more < 0)
            return 0;
        for (int k = 0; k < more; k++, u++) {
            if ((*u & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (*u & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0x20 || cp == 0x7F)
            return 0;
    }
    return 1;
}

/* Checks a URI that matched: its path is the mount point followed by the canonical path of the
 * route (with the id segment free-form when the id is not valid). */
static void check_matched(const char *uri, size_t path_len, const char *base, const route *r)
{
    static const char *const suffix[ROUTE_KINDS] = {
        [ROUTE_JOB] = "", [ROUTE_EVENTS] = "/events", [ROUTE_STREAM] = "/stream"};
    size_t blen = strlen(base);
    require(path_len > blen && memcmp(uri, base, blen) == 0);
    const char *rest = uri + blen;
    size_t rest_len = path_len - blen;
    char expected[128];
    int n = -1;
    if (r->kind == ROUTE_SIMULATIONS || r->kind == ROUTE_HEALTHZ || r->kind == ROUTE_METRICS)
        n = snprintf(expected, sizeof(expected), "/%s", route_name(r->kind));
    else if (r->kind == ROUTE_ASYNC)
        n = snprintf(expected, sizeof(expected), "/simulations/async");
    else if (r->id_valid)
        n = snprintf(expected, sizeof(expected), "/simulations/%s%s", r->id, suffix[r->kind]);
    if (n >= 0) {
        require((size_t)n == rest_len && memcmp(rest, expected, rest_len) == 0);
        return;
    }
    /* A job route with a wrong-form id: "/simulations/" X suffix, X one clean segment. */
    const char *tail = suffix[r->kind];
    size_t head = strlen("/simulations/");
    size_t tail_len = strlen(tail);
    require(rest_len > head + tail_len && memcmp(rest, "/simulations/", head) == 0);
    require(memcmp(rest + rest_len - tail_len, tail, tail_len) == 0);
    const char *id = rest + head;
    size_t id_len = rest_len - head - tail_len;
    require(!route_id_valid(id, id_len) && memchr(id, '/', id_len) == NULL);
    require(!(id_len == 5 && memcmp(id, "async", 5) == 0));
    require(!(id_len <= 2 && id[0] == '.' && id[id_len - 1] == '.'));
    for (size_t i = 0; i < id_len; i++)
        require(id[i] > 0x20 && id[i] < 0x7F && id[i] != '%' && id[i] != '#');
}

/* Checks route_match on uri, and returns the route. */
static route check_match(const char *uri, const char *base)
{
    route r;
    require(route_match(uri, base, &r) == 0);
    require((unsigned)r.kind < ROUTE_KINDS && r.query != NULL);
    require(r.id_valid == 0 || r.id_valid == 1);
    if (r.id_valid) {
        require(r.kind == ROUTE_JOB || r.kind == ROUTE_EVENTS || r.kind == ROUTE_STREAM);
        require(strlen(r.id) == ROUTE_ID_LEN && route_id_valid(r.id, ROUTE_ID_LEN));
    } else {
        require(r.id[0] == '\0');
    }
    size_t len = strlen(uri);
    size_t path_len = strcspn(uri, "?");
    if (len > ROUTE_URI_MAX) {
        require(r.kind == ROUTE_NONE && r.query[0] == '\0');
        return r;
    }
    if (uri[path_len] == '?')
        require(r.query == uri + path_len + 1);
    else
        require(r.query[0] == '\0');
    if (r.kind != ROUTE_NONE)
        check_matched(uri, path_len, base, &r);
    require(route_allows(r.kind, METHOD_OPTIONS) == (r.kind != ROUTE_NONE));
    require(route_allows(r.kind, METHOD_HEAD) == route_allows(r.kind, METHOD_GET));
    return r;
}

/* Checks route_uri_from_parts(base, path, query) in a buffer of len bytes: it holds the
 * concatenation exactly when that fits, and "" otherwise. */
static void check_from_parts(const char *base, const char *path, const char *query, size_t len)
{
    char *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL)
        return;
    size_t nb = strlen(base), np = strlen(path), nq = strlen(query);
    size_t total = nb + np + (nq > 0 ? nq + 1 : 0);
    int rc = route_uri_from_parts(base, path, query, buf, len);
    if (len == 0) {
        require(rc == -1);
    } else if (total < len) {
        require(rc == 0 && strlen(buf) == total);
        require(memcmp(buf, base, nb) == 0 && memcmp(buf + nb, path, np) == 0);
        require(nq == 0 || (buf[nb + np] == '?' && memcmp(buf + nb + np + 1, query, nq) == 0));
    } else {
        require(rc == -1 && buf[0] == '\0');
    }
    free(buf);
}

/* Checks the number parser on a decoded value: an accepted number prints back as its text. */
static void check_uint(const char *text)
{
    uint64_t v = 0;
    uint64_t w = 0;
    int rc = query_uint(text, 0, UINT64_MAX, &v);
    if (rc == 0) {
        char printed[32];
        snprintf(printed, sizeof(printed), "%" PRIu64, v);
        require(strcmp(printed, text) == 0);
    }
    int bounded = query_uint(text, 1, 1000, &w);
    require((bounded == 0) == (rc == 0 && v >= 1 && v <= 1000));
    require(bounded != 0 || w == v);
}

/* Checks the query functions on query, with buffers of small bytes and of the query's size. */
static void check_query(const char *query, size_t small)
{
    size_t qlen = strlen(query);
    char *big = malloc(qlen + 1);
    char *tiny = malloc(small + 1);
    if (big == NULL || tiny == NULL)
        goto out;
    memset(tiny, 'x', small + 1);
    int rc = query_check_names(query, NAMES, tiny, small);
    require(rc == 0 || rc == -1);
    require(tiny[small] == 'x');
    if (small > 0)
        require(strlen(tiny) < small && printable_utf8(tiny) && (rc == -1 || tiny[0] == '\0'));
    for (size_t i = 0; NAMES[i] != NULL; i++) {
        int found = query_param(query, NAMES[i], big, qlen + 1);
        require(found >= -1 && found <= 1);
        require(strlen(big) <= qlen && printable_utf8(big));
        require(found == 1 || big[0] == '\0');
        memset(tiny, 'x', small + 1);
        int in_tiny = query_param(query, NAMES[i], tiny, small);
        require(tiny[small] == 'x');
        if (in_tiny == 1)
            require(found == 1 && strlen(tiny) < small && strcmp(tiny, big) == 0);
        else if (in_tiny == 0)
            require(found == 0);
        else
            require(found == -1 || strlen(big) + 1 > small);
        if (found == 1)
            check_uint(big);
    }
out:
    free(big);
    free(tiny);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *base = BASES[data[0] % 3];
    size_t small = data[0] / 3u;
    char *uri = malloc(size);
    if (uri == NULL)
        return 0;
    memcpy(uri, data + 1, size - 1);
    uri[size - 1] = '\0';

    route r = check_match(uri, base);
    size_t path_len = strcspn(uri, "?");
    char *path = malloc(path_len + 1);
    if (path != NULL) {
        memcpy(path, uri, path_len);
        path[path_len] = '\0';
        check_from_parts(base, path, r.query, small);
        check_from_parts(base, path, r.query, strlen(uri) + strlen(base) + 2);
        free(path);
    }
    check_query(r.query, small);
    check_query(uri, small);
    check_uint(uri);
    free(uri);
    return 0;
}
