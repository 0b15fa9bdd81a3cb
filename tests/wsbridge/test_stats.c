/*
 * Tests of the bridge's figures (wsbridge/stats.h) and of the poller's pure helpers (the retry
 * backoff and the search for the newest event seq, wsbridge/bridge.h).
 *
 * Why this file exists: /healthz decides whether a load balancer or an operator considers the
 * bridge healthy, /metrics is scraped by name, and the poller must start at the end of an event
 * log of any size in a few queries and back off from a failing database without giving up.
 * These tests pin the status codes, the metric names and labels, the escaping of the last
 * error, the cut of an output that does not fit, the backoff sequence, and the search against
 * simulated event logs (empty, small, huge, with gaps, and failing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bridge.h"
#include "stats.h"

static wsb_gauges healthy(void)
{
    wsb_gauges g;
    memset(&g, 0, sizeof(g));
    g.version = "9.9.9";
    g.sessions = 3;
    g.jobs = 2;
    g.db_ok = 1;
    g.cursor = 1234;
    g.poll_age_ms = 5;
    return g;
}

static void test_health(void **state)
{
    (void)state;
    wsb_stats s;
    memset(&s, 0, sizeof(s));
    wsb_gauges g = healthy();
    char buf[1024];
    int status = 0;
    size_t n = wsb_health_render(&s, &g, buf, sizeof(buf), &status);
    assert_int_equal(status, 200);
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "\"status\":\"ok\""));
    assert_non_null(strstr(buf, "\"db\":\"ok\""));
    assert_non_null(strstr(buf, "\"sessions\":3"));
    assert_non_null(strstr(buf, "\"cursor\":1234"));
    assert_null(strstr(buf, "stopping"));
    /* A failing database: 503 with the last error. */
    wsb_stats_db_error(&s, "read new events: the database is locked", 1000);
    g.db_ok = 0;
    wsb_health_render(&s, &g, buf, sizeof(buf), &status);
    assert_int_equal(status, 503);
    assert_non_null(strstr(buf, "\"db\":\"read new events: the database is locked\""));
    assert_non_null(strstr(buf, "\"dbErrors\":1"));
    /* Stopping. */
    g.db_ok = 1;
    g.stopping = 1;
    wsb_health_render(&s, &g, buf, sizeof(buf), &status);
    assert_int_equal(status, 503);
    assert_non_null(strstr(buf, "\"stopping\":true"));
    /* Too small a buffer. */
    char tiny[8];
    assert_int_equal(wsb_health_render(&s, &g, tiny, sizeof(tiny), &status), 0);
    assert_string_equal(tiny, "");
}

static void test_metrics(void **state)
{
    (void)state;
    wsb_stats s;
    memset(&s, 0, sizeof(s));
    s.msgs_sent = 10;
    s.msgs_collapsed = 4;
    s.msgs_dropped = 1;
    s.rejected[WSB_REJ_AUTH] = 2;
    s.closed[WSB_END_DONE] = 5;
    wsb_stats_lag(&s, 12);
    wsb_stats_lag(&s, 30);
    wsb_stats_lag(&s, -5);
    wsb_stats_db_error(&s, "say \"no\"\\\nnow", 1795322145123LL);
    wsb_gauges g = healthy();
    static char buf[65536];
    size_t n = wsb_metrics_render(&s, &g, buf, sizeof(buf));
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "risksim_bridge_info{version=\"9.9.9\"} 1\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_sessions 3\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_messages_sent_total 10\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_messages_collapsed_total 4\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_messages_dropped_total 1\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_rejected_total{code=\"4001\"} 2\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_rejected_total{code=\"route\"} 0\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_sessions_closed_total{reason=\"done\"} 5\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_poll_lag_seconds 0\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_poll_lag_max_seconds 0.03\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_poll_lag_summary_seconds_count 3\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_db_errors_total 1\n"));
    assert_non_null(
        strstr(buf, "\nrisksim_bridge_db_last_error_info{error=\"say \\\"no\\\"\\\\\\nnow\"} 1\n"));
    assert_non_null(strstr(buf, "\nrisksim_bridge_db_up 1\n"));
    /* Every line is a comment or "name[{labels}] value". */
    for (const char *line = buf; *line != '\0';) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (line[0] != '#')
            assert_non_null(memchr(line, ' ', (size_t)(end - line)));
        line = end + 1;
    }
    /* A small buffer is cut at a line. */
    char small[300];
    n = wsb_metrics_render(&s, &g, small, sizeof(small));
    assert_true(n > 0 && n < sizeof(small));
    assert_int_equal(small[n - 1], '\n');
    assert_int_equal(wsb_metrics_render(&s, &g, small, 0), 0);
}

static void test_labels(void **state)
{
    (void)state;
    assert_string_equal(wsb_reject_label(WSB_REJ_ROUTE), "route");
    assert_string_equal(wsb_reject_label(WSB_REJ_TOO_MANY), "4029");
    assert_string_equal(wsb_reject_label(WSB_REJ_KINDS), "other");
    assert_string_equal(wsb_end_label(WSB_END_IDLE), "idle");
    assert_string_equal(wsb_end_label(WSB_END_KINDS), "other");
}

static void test_backoff(void **state)
{
    (void)state;
    unsigned d = 0;
    const unsigned want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        d = wsb_backoff_next(d, 100, 5000);
        assert_int_equal(d, want[i]);
    }
    assert_int_equal(wsb_backoff_next(0, 9000, 5000), 5000);
}

/* A simulated event log: the sorted seqs of seqs[0..n). */
typedef struct fake_log {
    const int64_t *seqs;
    size_t n;
    int probes;
    int fail_at; /* fail this probe (1-based), 0 never */
} fake_log;

static int fake_probe(void *ctx, int64_t after, int64_t *first)
{
    fake_log *log = ctx;
    log->probes++;
    if (log->fail_at != 0 && log->probes == log->fail_at)
        return -1;
    *first = 0;
    for (size_t i = 0; i < log->n; i++) {
        if (log->seqs[i] > after) {
            *first = log->seqs[i];
            break;
        }
    }
    return 0;
}

static void check_newest(const int64_t *seqs, size_t n, int64_t want, int max_probes)
{
    fake_log log = {seqs, n, 0, 0};
    int64_t newest = -1;
    assert_int_equal(wsb_find_newest(fake_probe, &log, &newest), 0);
    assert_int_equal(newest, want);
    assert_true(log.probes <= max_probes);
}

static void test_find_newest(void **state)
{
    (void)state;
    check_newest(NULL, 0, 0, 16);
    const int64_t one[] = {1};
    check_newest(one, 1, 1, 16);
    const int64_t few[] = {3, 4, 9, 1000, 1024, 1025};
    check_newest(few, 6, 1025, 40);
    const int64_t gaps[] = {5, 70000, 70001, 5000000, 123456789};
    check_newest(gaps, 5, 123456789, 120);
    static int64_t many[100000];
    for (size_t i = 0; i < 100000; i++)
        many[i] = (int64_t)(i * 7 + 3);
    check_newest(many, 100000, 99999 * 7 + 3, 120);
    const int64_t huge[] = {1, INT64_MAX - 5};
    check_newest(huge, 2, INT64_MAX - 5, 200);
    /* A failing probe fails the search. */
    fake_log log = {few, 6, 0, 3};
    int64_t newest = 0;
    assert_int_equal(wsb_find_newest(fake_probe, &log, &newest), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health),      cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_labels),      cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_find_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
