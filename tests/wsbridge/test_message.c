/*
 * Tests of the bridge's parsers and formatters (wsbridge/message.h).
 *
 * Why this file exists: everything a WebSocket client controls (the stream URL's query, the
 * Origin, Host and X-Forwarded-For headers, its messages) passes through these functions
 * before the bridge acts on it, and the bridge's own messages must match the objects the
 * polling endpoint serves byte for byte in their layout. These tests pin the accepted and
 * refused inputs, the Origin rules of the three allowed_origins forms, the choice of the client
 * address behind a proxy, the re-encoding of decoded query parameters, and the exact text of
 * every message the bridge writes itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "risksim/clock.h"
#include "message.h"

#define ID "01ARZ3NDEKTSV4RRFFQ69G5FAV"

static void test_type_bits(void **state)
{
    (void)state;
    assert_int_equal(wsmsg_type_bit("status"), WSMSG_T_STATUS);
    assert_int_equal(wsmsg_type_bit("progress"), WSMSG_T_PROGRESS);
    assert_int_equal(wsmsg_type_bit("complete"), WSMSG_T_COMPLETE);
    assert_int_equal(wsmsg_type_bit("error"), WSMSG_T_ERROR);
    assert_int_equal(wsmsg_type_bit("cancelled"), WSMSG_T_CANCELLED);
    assert_int_equal(wsmsg_type_bit("heartbeat"), 0);
    assert_int_equal(wsmsg_type_bit("Status"), 0);
    assert_int_equal(wsmsg_type_bit(""), 0);
    assert_int_equal(wsmsg_type_bit(NULL), 0);
}

static void test_query_defaults(void **state)
{
    (void)state;
    wsmsg_query q;
    char why[WSMSG_REASON_MAX + 1];
    assert_int_equal(wsmsg_query_parse("", &q, why, sizeof(why)), 0);
    assert_int_equal(q.after, 0);
    assert_int_equal(q.types, WSMSG_T_ALL);
    assert_int_equal(wsmsg_query_parse("token=abc.def.ghi", &q, why, sizeof(why)), 0);
    assert_int_equal(wsmsg_query_parse("after=0", &q, why, sizeof(why)), 0);
    assert_int_equal(q.after, 0);
    assert_int_equal(wsmsg_query_parse("after=9223372036854775807&token=x", &q, why, sizeof(why)),
                     0);
    assert_int_equal(q.after, INT64_MAX);
    /* The token's value is looked at only when auth is on (wsmsg_query_token), as by the
     * polling endpoint. */
    assert_int_equal(wsmsg_query_parse("token=a&token=b", &q, why, sizeof(why)), 0);
    assert_int_equal(wsmsg_query_parse("&&after=17&", &q, why, sizeof(why)), 0);
    assert_int_equal(q.after, 17);
}

static void test_query_types(void **state)
{
    (void)state;
    wsmsg_query q;
    char why[WSMSG_REASON_MAX + 1];
    assert_int_equal(wsmsg_query_parse("types=progress", &q, why, sizeof(why)), 0);
    assert_int_equal(q.types, WSMSG_T_ALWAYS | WSMSG_T_PROGRESS);
    assert_int_equal(wsmsg_query_parse("types=complete", &q, why, sizeof(why)), 0);
    assert_int_equal(q.types, WSMSG_T_ALWAYS);
    assert_int_equal(q.types & WSMSG_T_PROGRESS, 0);
    /* %2C is a comma, as URLSearchParams writes it. */
    assert_int_equal(wsmsg_query_parse("types=progress%2Ccomplete&after=3", &q, why, sizeof(why)),
                     0);
    assert_int_equal(q.types, WSMSG_T_ALWAYS | WSMSG_T_PROGRESS);
    assert_int_equal(q.after, 3);
    assert_int_equal(
        wsmsg_query_parse("types=status,progress,complete,error,cancelled", &q, why, sizeof(why)),
        0);
    assert_int_equal(q.types, WSMSG_T_ALL);
}

static void test_query_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "afer=3",                    /* unknown name */
        "after=-1",                  /* sign */
        "after=01",                  /* leading zero */
        "after=",                    /* empty */
        "after=1&after=2",           /* twice */
        "after=9223372036854775808", /* above INT64_MAX */
        "after=1e3",
        "types=",          /* empty list */
        "types=progress,", /* empty entry */
        "types=,progress",
        "types=progress,,complete",
        "types=heartbeat", /* not an event type */
        "types=Progress",
        "types=progress, complete", /* blank */
        "types=a&types=b",
        "=x",
        "after=%zz",
        "wait=3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wsmsg_query q;
        char why[WSMSG_REASON_MAX + 1] = "";
        int rc = wsmsg_query_parse(bad[i], &q, why, sizeof(why));
        if (rc != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(strlen(why) > 0);
        assert_true(strlen(why) <= WSMSG_REASON_MAX);
    }
    char why[WSMSG_REASON_MAX + 1];
    wsmsg_query q;
    wsmsg_query_parse("afer=3", &q, why, sizeof(why));
    assert_string_equal(why, "unknown or malformed query parameter \"afer\"");
    assert_int_equal(wsmsg_query_parse(NULL, &q, why, sizeof(why)), -1);
}

static void test_query_reason_bounded(void **state)
{
    (void)state;
    char query[400];
    memset(query, 'n', 300);
    memcpy(query + 300, "=1", 3);
    wsmsg_query q;
    char why[WSMSG_REASON_MAX + 1];
    assert_int_equal(wsmsg_query_parse(query, &q, why, sizeof(why)), -1);
    assert_true(strlen(why) <= WSMSG_REASON_MAX);
}

static void test_query_token(void **state)
{
    (void)state;
    char tok[64];
    assert_int_equal(wsmsg_query_token("after=1&token=a.b.c", tok, sizeof(tok)), 1);
    assert_string_equal(tok, "a.b.c");
    assert_int_equal(wsmsg_query_token("after=1", tok, sizeof(tok)), 0);
    assert_string_equal(tok, "");
    assert_int_equal(wsmsg_query_token("token=a&token=b", tok, sizeof(tok)), -1);
    assert_int_equal(wsmsg_query_token("token=%zz", tok, sizeof(tok)), -1);
    char tiny[3];
    assert_int_equal(wsmsg_query_token("token=abcdef", tiny, sizeof(tiny)), -1);
    assert_int_equal(wsmsg_query_token(NULL, tok, sizeof(tok)), -1);
}

static void test_encode_param(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(wsmsg_encode_param("after=12", 8, out, sizeof(out)), 8);
    assert_string_equal(out, "after=12");
    /* A decoded comma, space, ampersand and a second '=' are encoded again. */
    const char in[] = "types=progress,complete& x=y";
    assert_true(wsmsg_encode_param(in, strlen(in), out, sizeof(out)) > 0);
    assert_string_equal(out, "types=progress%2Ccomplete%26%20x%3Dy");
    assert_int_equal(wsmsg_encode_param("tok.en_~-", 9, out, sizeof(out)), 9);
    assert_string_equal(out, "tok.en_~-");
    const char bytes[] = {'a', '=', (char)0xC3, (char)0xA9, 0x01};
    assert_true(wsmsg_encode_param(bytes, sizeof(bytes), out, sizeof(out)) > 0);
    assert_string_equal(out, "a=%C3%A9%01");
    /* Exactly fitting, and one byte short. */
    assert_int_equal(wsmsg_encode_param("abc", 3, out, 4), 3);
    assert_int_equal(wsmsg_encode_param("a,c", 3, out, 5), -1);
    assert_string_equal(out, "");
    assert_int_equal(wsmsg_encode_param("", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void test_origin_same(void **state)
{
    (void)state;
    /* No Origin (not a browser), or no Host to compare with: allowed. */
    assert_true(wsmsg_origin_allowed("", NULL, "risk.example.com"));
    assert_true(wsmsg_origin_allowed("", "", "risk.example.com"));
    assert_true(wsmsg_origin_allowed("", "https://risk.example.com", NULL));
    assert_true(wsmsg_origin_allowed("", "https://risk.example.com", ""));
    /* Same host and port, the default port written or not, any case. */
    assert_true(wsmsg_origin_allowed("", "https://risk.example.com", "risk.example.com"));
    assert_true(wsmsg_origin_allowed("", "https://Risk.Example.com", "risk.example.COM:443"));
    assert_true(wsmsg_origin_allowed("", "http://risk.example.com:80", "risk.example.com"));
    assert_true(wsmsg_origin_allowed("", "http://127.0.0.1:8080", "127.0.0.1:8080"));
    assert_true(wsmsg_origin_allowed("", "http://[::1]:8080", "[::1]:8080"));
    /* Another host, another port, or the default port of the other scheme. */
    assert_false(wsmsg_origin_allowed("", "https://evil.example", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "http://127.0.0.1:8081", "127.0.0.1:8080"));
    assert_false(wsmsg_origin_allowed("", "https://risk.example.com", "risk.example.com:80"));
    assert_false(wsmsg_origin_allowed("", "http://risk.example.com", "risk.example.com:443"));
    /* Origins that are not http(s)://host[:port]. */
    assert_false(wsmsg_origin_allowed("", "null", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "file://", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "https://risk.example.com/", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "https://risk.example.com:0", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "https://risk.example.com:65536", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "https://", "risk.example.com"));
    assert_false(wsmsg_origin_allowed("", "https://a b", "a b"));
    assert_false(wsmsg_origin_allowed("", "https://x:80:80", "x"));
    /* A Host that cannot be parsed does not match. */
    assert_false(wsmsg_origin_allowed("", "https://risk.example.com", "risk example"));
}

static void test_origin_any_and_list(void **state)
{
    (void)state;
    assert_true(wsmsg_origin_allowed("*", "https://anything.example", "other"));
    assert_true(wsmsg_origin_allowed("*", "null", "other"));
    const char *list = "https://risk.example.com, http://localhost:8080 ,https://b.example:8443";
    assert_true(wsmsg_origin_allowed(list, "https://risk.example.com", "internal"));
    assert_true(wsmsg_origin_allowed(list, "https://risk.example.com:443", "internal"));
    assert_true(wsmsg_origin_allowed(list, "HTTP://LOCALHOST:8080", NULL));
    assert_true(wsmsg_origin_allowed(list, "https://b.example:8443", NULL));
    assert_false(wsmsg_origin_allowed(list, "https://b.example", NULL));
    assert_false(wsmsg_origin_allowed(list, "http://risk.example.com", "risk.example.com"));
    assert_false(wsmsg_origin_allowed(list, "null", NULL));
    /* With a list, the same origin is not implied. */
    assert_false(wsmsg_origin_allowed(list, "https://internal", "internal"));
    /* Without an Origin every mode allows. */
    assert_true(wsmsg_origin_allowed(list, NULL, NULL));
    /* Bad list entries are skipped, not fatal. */
    assert_true(wsmsg_origin_allowed("bogus,,https://ok.example", "https://ok.example", NULL));
}

static void test_client_ip(void **state)
{
    (void)state;
    char ip[64];
    /* Behind the proxy: the last X-Forwarded-For entry. */
    assert_int_equal(wsmsg_client_ip("127.0.0.1", 1, "10.1.1.1, 192.0.2.7", ip, sizeof(ip)), 1);
    assert_string_equal(ip, "192.0.2.7");
    assert_int_equal(wsmsg_client_ip("unix", 1, "2001:db8::1", ip, sizeof(ip)), 1);
    assert_string_equal(ip, "2001:db8::1");
    assert_int_equal(wsmsg_client_ip("127.0.0.1", 1, " 192.0.2.9 ", ip, sizeof(ip)), 1);
    assert_string_equal(ip, "192.0.2.9");
    /* Not an address, no header, or a peer that is not the proxy: the peer. */
    assert_int_equal(wsmsg_client_ip("127.0.0.1", 1, "192.0.2.7, unknown", ip, sizeof(ip)), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(wsmsg_client_ip("127.0.0.1", 1, NULL, ip, sizeof(ip)), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(wsmsg_client_ip("198.51.100.4", 0, "192.0.2.7", ip, sizeof(ip)), 0);
    assert_string_equal(ip, "198.51.100.4");
    assert_int_equal(wsmsg_client_ip("127.0.0.1", 1, "", ip, sizeof(ip)), 0);
    assert_int_equal(wsmsg_client_ip(NULL, 0, NULL, ip, sizeof(ip)), 0);
    assert_string_equal(ip, "");
    char small[4];
    wsmsg_client_ip("198.51.100.4", 0, NULL, small, sizeof(small));
    assert_string_equal(small, "198");
}

static void test_client_messages(void **state)
{
    (void)state;
    char why[128];
    const char *ping = "{\"type\":\"ping\"}";
    assert_int_equal(wsmsg_client_parse(ping, strlen(ping), why, sizeof(why)), WSMSG_CLIENT_PING);
    const char *ping2 = " {\"id\": 7, \"type\" : \"ping\"} ";
    assert_int_equal(wsmsg_client_parse(ping2, strlen(ping2), why, sizeof(why)), WSMSG_CLIENT_PING);
    static const char *const bad[] = {
        "ping",
        "{\"type\":\"pong\"}",
        "{\"type\":\"PING\"}",
        "{\"type\":1}",
        "{}",
        "[{\"type\":\"ping\"}]",
        "{\"type\":\"ping\"} x",
        "{\"type\":\"ping\"}{}",
        "{\"type\":\"ping\",}",
        "{'type':'ping'}",
        "\"ping\"",
        "{\"type\":\"ping\"",
        "{\"a\":[[[[[[[[[[1]]]]]]]]]],\"type\":\"ping\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (wsmsg_client_parse(bad[i], strlen(bad[i]), why, sizeof(why)) != WSMSG_CLIENT_BAD)
            fail_msg("accepted %s", bad[i]);
        assert_true(strlen(why) > 0);
    }
    /* Bytes after a NUL, invalid UTF-8, nothing. */
    const char nul[] = "{\"type\":\"ping\"}\0x";
    assert_int_equal(wsmsg_client_parse(nul, sizeof(nul) - 1, why, sizeof(why)), WSMSG_CLIENT_BAD);
    const char bad_utf8[] = "{\"type\":\"ping\",\"x\":\"\xff\"}";
    assert_int_equal(wsmsg_client_parse(bad_utf8, strlen(bad_utf8), why, sizeof(why)),
                     WSMSG_CLIENT_BAD);
    assert_int_equal(wsmsg_client_parse("", 0, why, sizeof(why)), WSMSG_CLIENT_BAD);
    assert_int_equal(wsmsg_client_parse(NULL, 3, why, sizeof(why)), WSMSG_CLIENT_BAD);
}

static void test_timestamps(void **state)
{
    (void)state;
    char ts[RSCLOCK_TS_SIZE];
    rsclock_rfc3339(1795322145123LL, ts);
    assert_string_equal(ts, "2026-11-22T04:35:45.123Z");
    rsclock_rfc3339(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
    rsclock_rfc3339(-1, ts);
    assert_string_equal(ts, "1969-12-31T23:59:59.999Z");
}

static void test_own_messages(void **state)
{
    (void)state;
    char out[WSMSG_SMALL_MAX];
    int64_t t = 1795322145123LL;
    int n = wsmsg_pong(t, out, sizeof(out));
    assert_string_equal(out, "{\"type\":\"pong\",\"ts\":\"2026-11-22T04:35:45.123Z\"}");
    assert_int_equal(n, (int)strlen(out));
    wsmsg_heartbeat(t, out, sizeof(out));
    assert_string_equal(out, "{\"type\":\"heartbeat\",\"ts\":\"2026-11-22T04:35:45.123Z\"}");
    wsmsg_reset(ID, out, sizeof(out));
    assert_string_equal(out, "{\"type\":\"reset\",\"jobId\":\"" ID "\"}");
    wsmsg_bad_message("say \"hi\"\n", out, sizeof(out));
    assert_string_equal(out, "{\"type\":\"error\",\"error\":{\"code\":\"bad_message\","
                             "\"message\":\"say \\\"hi\\\"\\u000a\"}}");
    wsmsg_goaway_reason(1234, out, sizeof(out));
    assert_string_equal(out, "{\"retryMs\":1234}");
    assert_true(strlen(out) <= WSMSG_REASON_MAX);
    char tiny[8];
    assert_int_equal(wsmsg_pong(t, tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "");
}

static void test_status_message(void **state)
{
    (void)state;
    char out[WSMSG_SMALL_MAX];
    int64_t t = 1795322145123LL;
    wsmsg_status(42, ID, "running", 40960, 100000, t, out, sizeof(out));
    assert_string_equal(out, "{\"seq\":42,\"jobId\":\"" ID "\",\"type\":\"status\","
                             "\"status\":\"running\",\"progress\":0.4096,\"trialsDone\":40960,"
                             "\"trials\":100000,\"ts\":\"2026-11-22T04:35:45.123Z\"}");
    wsmsg_status(1, ID, "queued", 0, 100000, t, out, sizeof(out));
    assert_non_null(strstr(out, "\"progress\":0.0,"));
    wsmsg_status(9, ID, "completed", 100000, 100000, t, out, sizeof(out));
    assert_non_null(strstr(out, "\"progress\":1.0,"));
    wsmsg_status(9, ID, "running", 1, 3, t, out, sizeof(out));
    assert_non_null(strstr(out, "\"progress\":0.333333,"));
    wsmsg_status(9, ID, "queued", 0, 0, t, out, sizeof(out));
    assert_non_null(strstr(out, "\"progress\":0.0,"));
    assert_int_equal(wsmsg_status(9, ID, "queued", 0, 0, t, out, 20), -1);
}

static void test_closes(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(wsmsg_event_close("complete", &why), 1000);
    assert_string_equal(why, "job completed");
    assert_int_equal(wsmsg_event_close("cancelled", &why), 1000);
    assert_string_equal(why, "job cancelled");
    assert_int_equal(wsmsg_event_close("error", &why), 4000);
    assert_string_equal(why, "job failed");
    /* A status event never ends a session, whatever state it reports: a failed job's session
     * ends with its error event. */
    assert_int_equal(wsmsg_event_close("status", &why), 0);
    assert_null(why);
    assert_int_equal(wsmsg_event_close("progress", NULL), 0);
    assert_int_equal(wsmsg_state_close("completed", &why), 1000);
    assert_int_equal(wsmsg_state_close("cancelled", &why), 1000);
    assert_int_equal(wsmsg_state_close("failed", &why), 4000);
    assert_string_equal(why, "job failed");
    assert_int_equal(wsmsg_state_close("running", &why), 0);
    assert_int_equal(wsmsg_state_close("queued", NULL), 0);
    assert_int_equal(wsmsg_state_close(NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_bits),
        cmocka_unit_test(test_query_defaults),
        cmocka_unit_test(test_query_types),
        cmocka_unit_test(test_query_refusals),
        cmocka_unit_test(test_query_reason_bounded),
        cmocka_unit_test(test_query_token),
        cmocka_unit_test(test_encode_param),
        cmocka_unit_test(test_origin_same),
        cmocka_unit_test(test_origin_any_and_list),
        cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_client_messages),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_own_messages),
        cmocka_unit_test(test_status_message),
        cmocka_unit_test(test_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
