/*
 * Tests of the responder's router and query-string parser (common/risksim/route.h).
 *
 * Why this file exists: the router decides which endpoint answers a request and which bytes of
 * the request line reach a handler, so its refusals matter as much as its matches. These tests
 * walk every endpoint under three mount points, every path the rules refuse (trailing and double
 * slashes, dot segments, percent-encoding, fragments, control bytes, wrong-form ids, overlong
 * URIs), the rebuilding of a URI from SCRIPT_NAME and PATH_INFO as Apache and lighttpd split it,
 * the method table, and the decoding and refusals of query parameters and numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "risksim/route.h"

/* A valid job id and wrong-form variants of it. */
#define ID "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define ID_25 "01ARZ3NDEKTSV4RRFFQ69G5FA"
#define ID_27 "01ARZ3NDEKTSV4RRFFQ69G5FAVW"
#define ID_LOWER "01arz3ndektsv4rrffq69g5fav"

/* Matches uri against base and returns the route, failing the test when route_match fails. */
static route match(const char *uri, const char *base)
{
    route r;
    memset(&r, 0x5A, sizeof(r));
    assert_int_equal(route_match(uri, base, &r), 0);
    assert_non_null(r.query);
    if (r.kind == ROUTE_NONE || !r.id_valid)
        assert_string_equal(r.id, "");
    return r;
}

/* Asserts that uri under base is kind, with id (NULL for a route without a valid id). */
static void expect_route(const char *uri, const char *base, route_kind kind, const char *id)
{
    route r = match(uri, base);
    if (r.kind != kind)
        fail_msg("%s under \"%s\": kind %s, expected %s", uri, base, route_name(r.kind),
                 route_name(kind));
    assert_int_equal(r.id_valid, id != NULL);
    if (id != NULL)
        assert_string_equal(r.id, id);
}

/* Asserts that uri under base matches no route. */
static void expect_none(const char *uri, const char *base)
{
    expect_route(uri, base, ROUTE_NONE, NULL);
}

/* Asserts every endpoint of the API under base (given as the prefix to put before each path). */
static void check_all_routes(const char *base)
{
    static const struct {
        const char *path;
        route_kind kind;
        int has_id;
    } cases[] = {
        {"/simulations", ROUTE_SIMULATIONS, 0},
        {"/simulations/async", ROUTE_ASYNC, 0},
        {"/simulations/" ID, ROUTE_JOB, 1},
        {"/simulations/" ID "/events", ROUTE_EVENTS, 1},
        {"/simulations/" ID "/stream", ROUTE_STREAM, 1},
        {"/healthz", ROUTE_HEALTHZ, 0},
        {"/metrics", ROUTE_METRICS, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char uri[256];
        snprintf(uri, sizeof(uri), "%s%s", base, cases[i].path);
        expect_route(uri, base, cases[i].kind, cases[i].has_id ? ID : NULL);
        snprintf(uri, sizeof(uri), "%s%s?a=1", base, cases[i].path);
        route r = match(uri, base);
        assert_int_equal(r.kind, cases[i].kind);
        assert_string_equal(r.query, "a=1");
        assert_ptr_equal(r.query, uri + strlen(base) + strlen(cases[i].path) + 1);
    }
}

static void test_method_parse(void **state)
{
    (void)state;
    assert_int_equal(route_method_parse("GET"), METHOD_GET);
    assert_int_equal(route_method_parse("HEAD"), METHOD_HEAD);
    assert_int_equal(route_method_parse("POST"), METHOD_POST);
    assert_int_equal(route_method_parse("DELETE"), METHOD_DELETE);
    assert_int_equal(route_method_parse("OPTIONS"), METHOD_OPTIONS);
    assert_int_equal(route_method_parse("get"), METHOD_OTHER);
    assert_int_equal(route_method_parse("GET "), METHOD_OTHER);
    assert_int_equal(route_method_parse("GETX"), METHOD_OTHER);
    assert_int_equal(route_method_parse("PUT"), METHOD_OTHER);
    assert_int_equal(route_method_parse("PATCH"), METHOD_OTHER);
    assert_int_equal(route_method_parse(""), METHOD_OTHER);
    assert_int_equal(route_method_parse(NULL), METHOD_OTHER);
}

static void test_base_valid(void **state)
{
    (void)state;
    assert_true(route_base_valid(""));
    assert_true(route_base_valid("/risksim"));
    assert_true(route_base_valid("/a/b"));
    assert_true(route_base_valid("/api-v1/risk_sim.x"));
    assert_false(route_base_valid(NULL));
    assert_false(route_base_valid("/"));
    assert_false(route_base_valid("risksim"));
    assert_false(route_base_valid("/risksim/"));
    assert_false(route_base_valid("//risksim"));
    assert_false(route_base_valid("/a//b"));
    assert_false(route_base_valid("/a/./b"));
    assert_false(route_base_valid("/a/.."));
    assert_false(route_base_valid("/a%20b"));
    assert_false(route_base_valid("/a b"));
    assert_false(route_base_valid("/a?b"));
    assert_false(route_base_valid("/a#b"));
    assert_true(route_base_valid("/..."));

    char base[ROUTE_BASE_MAX + 2];
    memset(base, 'a', sizeof(base));
    base[0] = '/';
    base[ROUTE_BASE_MAX] = '\0';
    assert_true(route_base_valid(base));
    base[ROUTE_BASE_MAX] = 'a';
    base[ROUTE_BASE_MAX + 1] = '\0';
    assert_false(route_base_valid(base));
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(route_id_valid(ID, strlen(ID)));
    assert_true(route_id_valid("0123456789ABCDEFGHJKMNPQRS", 26));
    assert_true(route_id_valid("TVWXYZ00000000000000000000", 26));
    assert_false(route_id_valid(ID_25, strlen(ID_25)));
    assert_false(route_id_valid(ID_27, strlen(ID_27)));
    assert_false(route_id_valid(ID_LOWER, strlen(ID_LOWER)));
    assert_false(route_id_valid("I1ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    assert_false(route_id_valid("L1ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    assert_false(route_id_valid("O1ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    assert_false(route_id_valid("U1ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    assert_false(route_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FA-", 26));
    assert_false(route_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FA\0", 26));
    assert_false(route_id_valid(NULL, 26));
    assert_false(route_id_valid("", 0));
}

static void test_routes_with_base(void **state)
{
    (void)state;
    check_all_routes("/risksim");
}

static void test_routes_empty_base(void **state)
{
    (void)state;
    check_all_routes("");
}

static void test_routes_nested_base(void **state)
{
    (void)state;
    check_all_routes("/api/v1");
}

static void test_base_boundary(void **state)
{
    (void)state;
    expect_none("/risksimx/healthz", "/risksim");
    expect_none("/risksi/healthz", "/risksim");
    expect_none("/RISKSIM/healthz", "/risksim");
    expect_none("/risksim", "/risksim");
    expect_none("/risksim?x=1", "/risksim");
    expect_none("/risksim/", "/risksim");
    expect_none("/healthz", "/risksim");
    expect_none("/other/risksim/healthz", "/risksim");
    expect_none("/risksim/risksim/healthz", "/risksim");
    expect_none("/api/healthz", "/api/v1");
    expect_none("/api/v1x/healthz", "/api/v1");
    /* Under "" the mount point's own prefix is just another unknown segment. */
    expect_none("/risksim/healthz", "");
    expect_route("/healthz", "", ROUTE_HEALTHZ, NULL);
}

static void test_trailing_slash(void **state)
{
    (void)state;
    const char *bases[] = {"", "/risksim"};
    const char *paths[] = {"/simulations/",
                           "/simulations/async/",
                           "/simulations/" ID "/",
                           "/simulations/" ID "/events/",
                           "/simulations/" ID "/stream/",
                           "/healthz/",
                           "/metrics/",
                           "/",
                           "/healthz/?a=1"};
    for (size_t b = 0; b < 2; b++) {
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
            char uri[256];
            snprintf(uri, sizeof(uri), "%s%s", bases[b], paths[i]);
            expect_none(uri, bases[b]);
        }
    }
}

static void test_double_slash(void **state)
{
    (void)state;
    expect_none("//healthz", "");
    expect_none("/risksim//healthz", "/risksim");
    expect_none("//risksim/healthz", "/risksim");
    expect_none("/simulations//" ID, "");
    expect_none("/simulations/" ID "//events", "");
    expect_none("/simulations//async", "");
    expect_none("/simulations/" ID "/events//", "");
}

static void test_dot_segments(void **state)
{
    (void)state;
    expect_none("/risksim/./healthz", "/risksim");
    expect_none("/risksim/../risksim/healthz", "/risksim");
    expect_none("/risksim/x/../healthz", "/risksim");
    expect_none("/simulations/.", "");
    expect_none("/simulations/..", "");
    expect_none("/simulations/../metrics", "");
    expect_none("/simulations/" ID "/.", "");
    expect_none("/simulations/" ID "/../events", "");
    expect_none("/./healthz", "");
    /* Dots inside a segment are not dot segments: such a segment is just a wrong-form id. */
    expect_route("/simulations/...", "", ROUTE_JOB, NULL);
    expect_route("/simulations/.x", "", ROUTE_JOB, NULL);
}

static void test_percent_and_fragment(void **state)
{
    (void)state;
    expect_none("/simulations%2F" ID, "");
    expect_none("/simulations/" ID "%2Fevents", "");
    expect_none("/risksim%2Fhealthz", "/risksim");
    expect_none("/%72isksim/healthz", "/risksim");
    expect_none("/risksim/%68ealthz", "/risksim");
    expect_none("/simulations/%30" ID_25, "");
    expect_none("/healthz%", "");
    expect_none("/healthz#top", "");
    expect_none("/simulations/" ID "#x", "");
    /* In the query both are the query's business. */
    route r = match("/healthz?a=%2F#x", "");
    assert_int_equal(r.kind, ROUTE_HEALTHZ);
    assert_string_equal(r.query, "a=%2F#x");
}

static void test_control_and_non_ascii(void **state)
{
    (void)state;
    expect_none("/healthz\x7f", "");
    expect_none("/simulations/ab cd", "");
    expect_none("/simulations/\t", "");
    expect_none("/simulations/\xc3\xa9", "");
    expect_none("/simulations/" ID "/events\r", "");
    expect_none(" /healthz", "");
}

static void test_wrong_ids(void **state)
{
    (void)state;
    const char *bad[] = {ID_25,
                         ID_27,
                         ID_LOWER,
                         "I1ARZ3NDEKTSV4RRFFQ69G5FAV",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAL",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAO",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAU",
                         "01aRZ3NDEKTSV4RRFFQ69G5FAV",
                         "XYZ",
                         "ASYNC",
                         "Async",
                         "async2",
                         "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char uri[128];
        snprintf(uri, sizeof(uri), "/risksim/simulations/%s", bad[i]);
        expect_route(uri, "/risksim", ROUTE_JOB, NULL);
        snprintf(uri, sizeof(uri), "/risksim/simulations/%s/events?after=1", bad[i]);
        expect_route(uri, "/risksim", ROUTE_EVENTS, NULL);
        snprintf(uri, sizeof(uri), "/risksim/simulations/%s/stream", bad[i]);
        expect_route(uri, "/risksim", ROUTE_STREAM, NULL);
    }
}

static void test_async_reserved(void **state)
{
    (void)state;
    expect_route("/simulations/async", "", ROUTE_ASYNC, NULL);
    expect_route("/simulations/async?x", "", ROUTE_ASYNC, NULL);
    expect_none("/simulations/async/", "");
    expect_none("/simulations/async/events", "");
    expect_none("/simulations/async/stream", "");
    expect_none("/simulations/async/" ID, "");
}

static void test_unknown_paths(void **state)
{
    (void)state;
    expect_none("", "");
    expect_none("", "/risksim");
    expect_none("?a=1", "");
    expect_none("*", "");
    expect_none("healthz", "");
    expect_none("http://host/healthz", "");
    expect_none("/Healthz", "");
    expect_none("/SIMULATIONS", "");
    expect_none("/simulation", "");
    expect_none("/simulationsx", "");
    expect_none("/healthz/x", "");
    expect_none("/metrics/x", "");
    expect_none("/healthzx", "");
    expect_none("/simulations/" ID "/event", "");
    expect_none("/simulations/" ID "/Events", "");
    expect_none("/simulations/" ID "/result", "");
    expect_none("/simulations/" ID "/events/x", "");
    expect_none("/simulations/" ID "/events/" ID, "");
    expect_none("/jobs/" ID, "");
    expect_none("/" ID, "");
}

static void test_query_pointer(void **state)
{
    (void)state;
    const char *uri = "/risksim/simulations?status=queued&limit=10";
    route r = match(uri, "/risksim");
    assert_int_equal(r.kind, ROUTE_SIMULATIONS);
    assert_ptr_equal(r.query, uri + strlen("/risksim/simulations?"));

    r = match("/risksim/healthz", "/risksim");
    assert_string_equal(r.query, "");
    r = match("/risksim/healthz?", "/risksim");
    assert_int_equal(r.kind, ROUTE_HEALTHZ);
    assert_string_equal(r.query, "");
    r = match("/risksim/healthz?a?b/c", "/risksim");
    assert_int_equal(r.kind, ROUTE_HEALTHZ);
    assert_string_equal(r.query, "a?b/c");
    /* The first '?' ends the path, even inside what would otherwise be a segment. */
    r = match("/risksim/health?z", "/risksim");
    assert_int_equal(r.kind, ROUTE_NONE);
    assert_string_equal(r.query, "z");
    r = match("/risksim?/healthz", "/risksim");
    assert_int_equal(r.kind, ROUTE_NONE);
    assert_string_equal(r.query, "/healthz");
}

static void test_uri_length(void **state)
{
    (void)state;
    static char uri[ROUTE_URI_MAX + 2];
    const char *path = "/healthz?x=";
    size_t n = strlen(path);
    memcpy(uri, path, n);
    memset(uri + n, 'a', ROUTE_URI_MAX - n);
    uri[ROUTE_URI_MAX] = '\0';
    route r = match(uri, "");
    assert_int_equal(r.kind, ROUTE_HEALTHZ);
    assert_int_equal(strlen(r.query), ROUTE_URI_MAX - n + 2);
    uri[ROUTE_URI_MAX] = 'a';
    uri[ROUTE_URI_MAX + 1] = '\0';
    r = match(uri, "");
    assert_int_equal(r.kind, ROUTE_NONE);
    assert_string_equal(r.query, "");
}

static void test_match_bad_arguments(void **state)
{
    (void)state;
    route r;
    memset(&r, 0x5A, sizeof(r));
    assert_int_equal(route_match(NULL, "", &r), -1);
    assert_int_equal(r.kind, ROUTE_NONE);
    assert_string_equal(r.query, "");
    assert_int_equal(route_match("/healthz", NULL, &r), -1);
    assert_int_equal(r.kind, ROUTE_NONE);
    assert_int_equal(route_match("/healthz", "/risksim/", &r), -1);
    assert_int_equal(route_match("/healthz", "risksim", &r), -1);
    assert_int_equal(route_match("/healthz", "/", &r), -1);
    assert_int_equal(route_match("/healthz", "", NULL), -1);
}

static void test_uri_from_parts_apache(void **state)
{
    (void)state;
    char buf[256];
    assert_int_equal(
        route_uri_from_parts("/risksim", "/simulations/" ID, "after=3&wait=10", buf, sizeof(buf)),
        0);
    assert_string_equal(buf, "/risksim/simulations/" ID "?after=3&wait=10");
    route r = match(buf, "/risksim");
    assert_int_equal(r.kind, ROUTE_JOB);
    assert_string_equal(r.id, ID);
    assert_string_equal(r.query, "after=3&wait=10");

    assert_int_equal(route_uri_from_parts("/risksim", "/healthz", "", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/risksim/healthz");
    assert_int_equal(route_uri_from_parts("/risksim", "/healthz", NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/risksim/healthz");
}

static void test_uri_from_parts_lighttpd(void **state)
{
    (void)state;
    char buf[256];
    /* Whole path in SCRIPT_NAME, no PATH_INFO. */
    assert_int_equal(route_uri_from_parts("/risksim/simulations/" ID "/events", NULL, "after=0",
                                          buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "/risksim/simulations/" ID "/events?after=0");
    expect_route(buf, "/risksim", ROUTE_EVENTS, ID);
    /* Mounted at "/" with fix-root-scriptname: empty SCRIPT_NAME, whole path in PATH_INFO. */
    assert_int_equal(route_uri_from_parts("", "/simulations", "status=queued", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "/simulations?status=queued");
    expect_route(buf, "", ROUTE_SIMULATIONS, NULL);
    assert_int_equal(route_uri_from_parts(NULL, "/metrics", NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/metrics");
    assert_int_equal(route_uri_from_parts(NULL, NULL, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void test_uri_from_parts_overflow(void **state)
{
    (void)state;
    char buf[17];
    /* "/risksim/healthz" is 16 bytes: it fits exactly with its NUL. */
    assert_int_equal(route_uri_from_parts("/risksim", "/healthz", "", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/risksim/healthz");
    assert_int_equal(route_uri_from_parts("/risksim", "/healthz", "a", buf, sizeof(buf)), -1);
    assert_string_equal(buf, "");
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(route_uri_from_parts("/risksim", "/healthz", "", buf, 16), -1);
    assert_string_equal(buf, "");
    assert_int_equal(buf[16], 'x');
    assert_int_equal(route_uri_from_parts("/risksim/healthzz", NULL, NULL, buf, sizeof(buf)), -1);
    assert_int_equal(route_uri_from_parts("/healthz", NULL, "a=", buf, 12), 0);
    assert_string_equal(buf, "/healthz?a=");
    assert_int_equal(route_uri_from_parts("/healthz", NULL, "a=1", buf, 12), -1);
    assert_int_equal(route_uri_from_parts("", NULL, NULL, buf, 1), 0);
    assert_string_equal(buf, "");
    assert_int_equal(route_uri_from_parts("", NULL, NULL, buf, 0), -1);
    assert_int_equal(route_uri_from_parts("", NULL, NULL, NULL, 10), -1);
}

static void test_allows(void **state)
{
    (void)state;
    assert_true(route_allows(ROUTE_SIMULATIONS, METHOD_GET));
    assert_true(route_allows(ROUTE_SIMULATIONS, METHOD_POST));
    assert_false(route_allows(ROUTE_SIMULATIONS, METHOD_DELETE));
    assert_true(route_allows(ROUTE_ASYNC, METHOD_POST));
    assert_false(route_allows(ROUTE_ASYNC, METHOD_GET));
    assert_false(route_allows(ROUTE_ASYNC, METHOD_HEAD));
    assert_true(route_allows(ROUTE_JOB, METHOD_GET));
    assert_true(route_allows(ROUTE_JOB, METHOD_DELETE));
    assert_false(route_allows(ROUTE_JOB, METHOD_POST));
    assert_true(route_allows(ROUTE_EVENTS, METHOD_GET));
    assert_false(route_allows(ROUTE_EVENTS, METHOD_DELETE));
    assert_true(route_allows(ROUTE_STREAM, METHOD_GET));
    assert_false(route_allows(ROUTE_STREAM, METHOD_POST));
    assert_true(route_allows(ROUTE_HEALTHZ, METHOD_GET));
    assert_false(route_allows(ROUTE_HEALTHZ, METHOD_POST));
    assert_true(route_allows(ROUTE_METRICS, METHOD_GET));
    assert_false(route_allows(ROUTE_METRICS, METHOD_DELETE));
    assert_string_equal(route_allow_header(ROUTE_SIMULATIONS), "GET, HEAD, POST, OPTIONS");
    assert_string_equal(route_allow_header(ROUTE_ASYNC), "POST, OPTIONS");
    assert_string_equal(route_allow_header(ROUTE_JOB), "GET, HEAD, DELETE, OPTIONS");
    assert_string_equal(route_allow_header(ROUTE_EVENTS), "GET, HEAD, OPTIONS");
    assert_string_equal(route_allow_header(ROUTE_NONE), "");
    assert_string_equal(route_allow_header((route_kind)99), "");
    assert_false(route_allows((route_kind)99, METHOD_GET));
    assert_false(route_allows(ROUTE_JOB, (route_method)99));
}

/* The Allow header lists exactly what route_allows accepts, HEAD follows GET, OPTIONS is
 * everywhere, and nothing answers METHOD_OTHER or ROUTE_NONE. */
static void test_allow_header_consistent(void **state)
{
    (void)state;
    static const char *const names[] = {"GET", "HEAD", "POST", "DELETE", "OPTIONS"};
    for (int k = 0; k < ROUTE_KINDS; k++) {
        char expected[64] = "";
        size_t used = 0;
        for (int m = METHOD_GET; m < METHOD_OTHER; m++) {
            if (!route_allows((route_kind)k, (route_method)m))
                continue;
            int n = snprintf(expected + used, sizeof(expected) - used, "%s%s", used > 0 ? ", " : "",
                             names[m]);
            assert_true(n > 0 && (size_t)n < sizeof(expected) - used);
            used += (size_t)n;
            assert_int_equal(route_method_parse(names[m]), m);
        }
        assert_string_equal(route_allow_header((route_kind)k), expected);
        assert_int_equal(route_allows((route_kind)k, METHOD_HEAD),
                         route_allows((route_kind)k, METHOD_GET));
        assert_int_equal(route_allows((route_kind)k, METHOD_OPTIONS), k != ROUTE_NONE);
        assert_false(route_allows((route_kind)k, METHOD_OTHER));
    }
}

static void test_route_name(void **state)
{
    (void)state;
    static const char *const expected[ROUTE_KINDS] = {
        "none", "simulations", "async", "job", "events", "stream", "healthz", "metrics"};
    for (int k = 0; k < ROUTE_KINDS; k++)
        assert_string_equal(route_name((route_kind)k), expected[k]);
    assert_string_equal(route_name((route_kind)-1), "none");
    assert_string_equal(route_name((route_kind)ROUTE_KINDS), "none");
}

/* Looks name up in query with a 64-byte buffer; returns query_param's answer. */
static int param(const char *query, const char *name, char out[64])
{
    return query_param(query, name, out, 64);
}

static void test_query_decoding(void **state)
{
    (void)state;
    char v[64];
    assert_int_equal(param("status=queued&limit=10", "status", v), 1);
    assert_string_equal(v, "queued");
    assert_int_equal(param("status=queued&limit=10", "limit", v), 1);
    assert_string_equal(v, "10");
    assert_int_equal(param("a=%41", "a", v), 1);
    assert_string_equal(v, "A");
    assert_int_equal(param("a=%4a%4A", "a", v), 1);
    assert_string_equal(v, "JJ");
    assert_int_equal(param("a=x+y", "a", v), 1);
    assert_string_equal(v, "x y");
    assert_int_equal(param("a=x%2By", "a", v), 1);
    assert_string_equal(v, "x+y");
    assert_int_equal(param("a=%25", "a", v), 1);
    assert_string_equal(v, "%");
    assert_int_equal(param("a=b=c", "a", v), 1);
    assert_string_equal(v, "b=c");
    assert_int_equal(param("a=%26&b=1", "a", v), 1);
    assert_string_equal(v, "&");
    assert_int_equal(param("a=caf%C3%A9", "a", v), 1);
    assert_string_equal(v, "caf\xc3\xa9");
    assert_int_equal(param("a=\xe2\x82\xac", "a", v), 1);
    assert_string_equal(v, "\xe2\x82\xac");
    assert_int_equal(param("%61%62=1", "ab", v), 1);
    assert_string_equal(v, "1");
    assert_int_equal(param("my+name=1", "my name", v), 1);
    assert_int_equal(param("a=#x?y/z", "a", v), 1);
    assert_string_equal(v, "#x?y/z");
}

static void test_query_absent_and_empty(void **state)
{
    (void)state;
    char v[64];
    memset(v, 'x', sizeof(v));
    assert_int_equal(param("", "a", v), 0);
    assert_string_equal(v, "");
    assert_int_equal(param("b=1", "a", v), 0);
    assert_int_equal(param("ab=1&ba=1", "a", v), 0);
    assert_int_equal(param("A=1", "a", v), 0);
    assert_int_equal(param("a", "a", v), 1);
    assert_string_equal(v, "");
    assert_int_equal(param("a=", "a", v), 1);
    assert_string_equal(v, "");
    assert_int_equal(param("b=2&a&c=3", "a", v), 1);
    assert_string_equal(v, "");
    assert_int_equal(param("&&a=1&&", "a", v), 1);
    assert_string_equal(v, "1");
    assert_int_equal(param("&", "a", v), 0);
}

static void test_query_malformed(void **state)
{
    (void)state;
    char v[64];
    const char *bad[] = {"a=%4",     "a=%",      "a=%zz",       "a=%4g",       "a=%00",
                         "a=%1F",    "a=%7F",    "a=%0A",       "a=x\ty",      "a=\x7f",
                         "a=%C3",    "a=%C3%28", "a=%ED%A0%80", "a=%C0%AF",    "a=%F4%90%80%80",
                         "a=%FF",    "a=\xc3",   "a=1&=2",      "=2&a=1",      "a=1&b=%zz",
                         "a=1&%zz=", "a=1&%0A",  "a=1&b=\x01",  "a=1&b=%E2%82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(v, 'x', sizeof(v));
        if (param(bad[i], "a", v) != -1)
            fail_msg("query \"%s\" was accepted", bad[i]);
        assert_string_equal(v, "");
    }
    /* Lookups of other names fail the same way: the query as a whole is malformed. */
    assert_int_equal(param("a=%zz&b=1", "b", v), -1);
}

static void test_query_duplicates(void **state)
{
    (void)state;
    char v[64];
    assert_int_equal(param("a=1&a=2", "a", v), -1);
    assert_string_equal(v, "");
    assert_int_equal(param("a=1&a=1", "a", v), -1);
    assert_int_equal(param("a&a", "a", v), -1);
    assert_int_equal(param("a=1&%61=2", "a", v), -1);
    assert_int_equal(param("a=1&b=2&b=3", "a", v), 1);
    assert_string_equal(v, "1");
}

static void test_query_lengths(void **state)
{
    (void)state;
    char v[8];
    assert_int_equal(query_param("a=1234567", "a", v, sizeof(v)), 1);
    assert_string_equal(v, "1234567");
    assert_int_equal(query_param("a=12345678", "a", v, sizeof(v)), -1);
    assert_string_equal(v, "");
    assert_int_equal(query_param("a=%41%41%41%41%41%41%41", "a", v, sizeof(v)), 1);
    assert_string_equal(v, "AAAAAAA");
    assert_int_equal(query_param("a", "a", v, 1), 1);
    assert_string_equal(v, "");
    assert_int_equal(query_param("a=1", "a", v, 1), -1);
    assert_int_equal(query_param("a=1", "a", NULL, 0), -1);
    assert_int_equal(query_param("b=1", "a", NULL, 0), 0);
    assert_int_equal(query_param("a=1", "a", NULL, 4), -1);

    /* A long value in a large buffer, and a long name. */
    static char query[4096];
    static char out[4096];
    memcpy(query, "v=", 2);
    memset(query + 2, 'z', sizeof(query) - 3);
    query[sizeof(query) - 1] = '\0';
    assert_int_equal(query_param(query, "v", out, sizeof(out)), 1);
    assert_int_equal(strlen(out), sizeof(query) - 3);
    assert_int_equal(query_param(query, "v", out, sizeof(query) - 2), 1);
    assert_int_equal(query_param(query, "v", out, sizeof(query) - 3), -1);

    char name[QUERY_NAME_MAX + 2];
    memset(name, 'n', sizeof(name));
    name[QUERY_NAME_MAX] = '\0';
    char q[QUERY_NAME_MAX + 8];
    snprintf(q, sizeof(q), "%s=5", name);
    char small[8];
    assert_int_equal(query_param(q, name, small, sizeof(small)), 1);
    assert_string_equal(small, "5");
    name[QUERY_NAME_MAX] = 'n';
    name[QUERY_NAME_MAX + 1] = '\0';
    assert_int_equal(query_param(q, name, small, sizeof(small)), -1);
    /* A longer name in the query is just another name. */
    char q2[QUERY_NAME_MAX + 16];
    snprintf(q2, sizeof(q2), "%s=1&a=2", name);
    assert_int_equal(query_param(q2, "a", small, sizeof(small)), 1);
    assert_string_equal(small, "2");
}

static void test_query_bad_arguments(void **state)
{
    (void)state;
    char v[64];
    assert_int_equal(param(NULL, "a", v), -1);
    assert_int_equal(param("a=1", NULL, v), -1);
    assert_int_equal(param("a=1", "", v), -1);
    assert_int_equal(param("=1", "", v), -1);
}

static void test_query_through_route(void **state)
{
    (void)state;
    route r = match("/risksim/simulations/" ID "/events?after=41&wait=25", "/risksim");
    assert_int_equal(r.kind, ROUTE_EVENTS);
    char v[32];
    uint64_t n = 0;
    assert_int_equal(query_param(r.query, "after", v, sizeof(v)), 1);
    assert_int_equal(query_uint(v, 0, UINT64_MAX, &n), 0);
    assert_int_equal(n, 41);
    assert_int_equal(query_param(r.query, "wait", v, sizeof(v)), 1);
    assert_int_equal(query_uint(v, 0, 30, &n), 0);
    assert_int_equal(n, 25);
    assert_int_equal(query_param(r.query, "limit", v, sizeof(v)), 0);
}

static const char *const LIST_NAMES[] = {"status", "limit", "before", NULL};

static void test_check_names(void **state)
{
    (void)state;
    char bad[32];
    assert_int_equal(query_check_names("", LIST_NAMES, bad, sizeof(bad)), 0);
    assert_int_equal(query_check_names("status=queued&limit=5&before=X", LIST_NAMES, bad, 32), 0);
    assert_int_equal(query_check_names("status=queued&&limit=5&", LIST_NAMES, bad, 32), 0);
    assert_int_equal(query_check_names("&&&", LIST_NAMES, bad, sizeof(bad)), 0);
    assert_int_equal(query_check_names("%73tatus=1", LIST_NAMES, bad, sizeof(bad)), 0);
    assert_int_equal(query_check_names("limit", LIST_NAMES, bad, sizeof(bad)), 0);
    /* Duplicates are query_param's business. */
    assert_int_equal(query_check_names("limit=1&limit=2", LIST_NAMES, bad, sizeof(bad)), 0);

    memset(bad, 'x', sizeof(bad));
    assert_int_equal(query_check_names("status=1&colour=red&x=1", LIST_NAMES, bad, 32), -1);
    assert_string_equal(bad, "colour");
    assert_int_equal(query_check_names("Status=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "Status");
    assert_int_equal(query_check_names("my+name=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "my name");
    assert_int_equal(query_check_names("limit=1&=2", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "");
    assert_int_equal(query_check_names("limit=%zz", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "limit");
    assert_int_equal(query_check_names("limit=%00", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "limit");
    assert_int_equal(query_check_names("li%zzmit=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "li%zzmit");
    assert_int_equal(query_check_names("a%0Ab\x01=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "a%0Ab?");
    assert_int_equal(query_check_names("x=1", NULL, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "");
    assert_int_equal(query_check_names(NULL, LIST_NAMES, bad, sizeof(bad)), -1);
    assert_int_equal(query_check_names("x=1", LIST_NAMES, NULL, 0), -1);
    assert_int_equal(query_check_names("limit=1", LIST_NAMES, NULL, 0), 0);
}

static void test_check_names_truncation(void **state)
{
    (void)state;
    char bad[6];
    assert_int_equal(query_check_names("abcdefgh=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "abcde");
    /* "abc" then a 3-byte character: it does not fit whole, so it is left out. */
    assert_int_equal(query_check_names("abc%E2%82%AC=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "abc");
    assert_int_equal(query_check_names("ab%E2%82%AC=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "ab\xe2\x82\xac");
    assert_int_equal(query_check_names("%C3%A9%C3%A9%C3%A9=1", LIST_NAMES, bad, sizeof(bad)), -1);
    assert_string_equal(bad, "\xc3\xa9\xc3\xa9");
    char one[1];
    assert_int_equal(query_check_names("abc=1", LIST_NAMES, one, sizeof(one)), -1);
    assert_string_equal(one, "");
    char raw[4];
    assert_int_equal(query_check_names("%zzzz=1", LIST_NAMES, raw, sizeof(raw)), -1);
    assert_string_equal(raw, "%zz");
}

static void test_uint(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(query_uint("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(query_uint("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(query_uint("1", 1, 1, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(query_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(query_uint("18446744073709551614", 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX - 1);
    assert_int_equal(query_uint("9999999999999999999", 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_C(9999999999999999999));

    const char *refused[] = {"11",
                             "18446744073709551616",
                             "18446744073709551620",
                             "99999999999999999999",
                             "184467440737095516150",
                             "",
                             "+1",
                             "-1",
                             "-0",
                             " 1",
                             "1 ",
                             "01",
                             "00",
                             "007",
                             "1.0",
                             "1e3",
                             "0x10",
                             "1a",
                             "\xd9\xa1"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        uint64_t max = i == 0 ? 10 : UINT64_MAX;
        v = 7;
        if (query_uint(refused[i], 0, max, &v) != -1)
            fail_msg("\"%s\" was accepted", refused[i]);
        assert_int_equal(v, 7);
    }
    assert_int_equal(query_uint("0", 1, 10, &v), -1);
    assert_int_equal(query_uint("5", 6, 5, &v), -1);
    assert_int_equal(v, 7);
    assert_int_equal(query_uint(NULL, 0, 10, &v), -1);
    assert_int_equal(query_uint("1", 0, 10, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_parse),
        cmocka_unit_test(test_base_valid),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_routes_with_base),
        cmocka_unit_test(test_routes_empty_base),
        cmocka_unit_test(test_routes_nested_base),
        cmocka_unit_test(test_base_boundary),
        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_double_slash),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_percent_and_fragment),
        cmocka_unit_test(test_control_and_non_ascii),
        cmocka_unit_test(test_wrong_ids),
        cmocka_unit_test(test_async_reserved),
        cmocka_unit_test(test_unknown_paths),
        cmocka_unit_test(test_query_pointer),
        cmocka_unit_test(test_uri_length),
        cmocka_unit_test(test_match_bad_arguments),
        cmocka_unit_test(test_uri_from_parts_apache),
        cmocka_unit_test(test_uri_from_parts_lighttpd),
        cmocka_unit_test(test_uri_from_parts_overflow),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_allow_header_consistent),
        cmocka_unit_test(test_route_name),
        cmocka_unit_test(test_query_decoding),
        cmocka_unit_test(test_query_absent_and_empty),
        cmocka_unit_test(test_query_malformed),
        cmocka_unit_test(test_query_duplicates),
        cmocka_unit_test(test_query_lengths),
        cmocka_unit_test(test_query_bad_arguments),
        cmocka_unit_test(test_query_through_route),
        cmocka_unit_test(test_check_names),
        cmocka_unit_test(test_check_names_truncation),
        cmocka_unit_test(test_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
