/*
 * Tests of the responder's pure helpers: the JSON content-type rule and reason phrases
 * (fcgi/http.c), and the counters and their Prometheus text (fcgi/metrics.c).
 *
 * Why this file exists: a 415 for a legitimate content type, or a scrape that Prometheus cannot
 * parse (a cumulative histogram that is not cumulative, a missing +Inf bucket), are failures
 * that no HTTP-level test would notice quickly; these are checked here directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"

static void test_json_content_types(void **state)
{
    (void)state;
    assert_true(http_is_json_type("application/json"));
    assert_true(http_is_json_type("application/json; charset=utf-8"));
    assert_true(http_is_json_type("Application/JSON"));
    assert_true(http_is_json_type("application/json ;charset=UTF-8"));
    assert_true(http_is_json_type("application/vnd.risksim+json"));
    assert_false(http_is_json_type(NULL));
    assert_false(http_is_json_type(""));
    assert_false(http_is_json_type("text/plain"));
    assert_false(http_is_json_type("application/jsonx"));
    assert_false(http_is_json_type("text/json"));
    assert_false(http_is_json_type("application/+json"));
    assert_false(http_is_json_type("application/x-www-form-urlencoded"));
    assert_false(http_is_json_type("multipart/form-data; boundary=x+json"));
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(413), "Content Too Large");
    assert_string_equal(http_reason(503), "Service Unavailable");
    assert_string_equal(http_reason(299), "Unknown");
}

/* The value of the first line of text starting with prefix, or -1. */
static double value_of(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);
    while (p != NULL && *p != '\0') {
        if (strncmp(p, prefix, n) == 0)
            return strtod(p + n, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static void test_metrics_text(void **state)
{
    (void)state;
    metrics *m = metrics_new();
    assert_non_null(m);
    metrics_count_request(m, ROUTE_HEALTHZ, 200);
    metrics_count_request(m, ROUTE_HEALTHZ, 200);
    metrics_count_request(m, ROUTE_ASYNC, 503);
    metrics_count_request(m, ROUTE_ASYNC, 99);  /* ignored: not a status */
    metrics_count_request(m, ROUTE_ASYNC, 600); /* ignored */
    metrics_record_job(m, "completed", 0.02);
    metrics_record_job(m, "completed", 2.0);
    metrics_record_job(m, "completed", 5000.0); /* only in +Inf */
    metrics_record_job(m, "nonsense", 1.0);     /* ignored */
    metrics_record_progress(m, 0.004);
    metrics_record_progress(m, 0.001);
    char buf[32768];
    size_t len = 0;
    buf[0] = '\0';
    metrics_render(m, buf, sizeof(buf), &len);
    assert_int_equal(len, strlen(buf));
    assert_true(value_of(buf, "risksim_http_requests_total{route=\"healthz\",status=\"200\"} ") ==
                2);
    assert_true(value_of(buf, "risksim_http_requests_total{route=\"async\",status=\"503\"} ") == 1);
    assert_null(strstr(buf, "status=\"99\""));
    assert_true(
        value_of(buf, "risksim_job_run_seconds_bucket{outcome=\"completed\",le=\"0.01\"} ") == 0);
    assert_true(
        value_of(buf, "risksim_job_run_seconds_bucket{outcome=\"completed\",le=\"0.05\"} ") == 1);
    assert_true(value_of(buf, "risksim_job_run_seconds_bucket{outcome=\"completed\",le=\"5\"} ") ==
                2);
    assert_true(
        value_of(buf, "risksim_job_run_seconds_bucket{outcome=\"completed\",le=\"1800\"} ") == 2);
    assert_true(
        value_of(buf, "risksim_job_run_seconds_bucket{outcome=\"completed\",le=\"+Inf\"} ") == 3);
    assert_true(value_of(buf, "risksim_job_run_seconds_count{outcome=\"completed\"} ") == 3);
    assert_true(value_of(buf, "risksim_job_run_seconds_count{outcome=\"failed\"} ") == 0);
    assert_true(value_of(buf, "risksim_progress_writes_total ") == 2);
    assert_true(value_of(buf, "risksim_progress_lag_seconds_max ") == 0.004);
    /* Every sample line belongs to a family announced by a TYPE line. */
    assert_non_null(strstr(buf, "# TYPE risksim_http_requests_total counter\n"));
    assert_non_null(strstr(buf, "# TYPE risksim_job_run_seconds histogram\n"));
    metrics_free(m);
    metrics_free(NULL);
}

/* A buffer too small cuts the text at a line boundary, never mid-line. */
static void test_metrics_cut(void **state)
{
    (void)state;
    char buf[64];
    size_t len = 0;
    buf[0] = '\0';
    metrics_appendf(buf, sizeof(buf), &len, "first %d\n", 1);
    metrics_appendf(buf, sizeof(buf), &len, "%s\n",
                    "a line much too long to fit into what is left of the buffer");
    metrics_appendf(buf, sizeof(buf), &len, "never %d\n", 3);
    assert_string_equal(buf, "first 1\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_content_types),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_metrics_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
