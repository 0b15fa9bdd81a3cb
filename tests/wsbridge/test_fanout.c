/*
 * Tests of the fan-out map and the per-address session counts (wsbridge/fanout.h).
 *
 * Why this file exists: every event the poller reads is handed to the sessions found here, and
 * every handshake is counted here against max_sessions_per_ip; a session left linked after it
 * closed would be written to after its memory is gone, and a count never released would lock
 * an address out. These tests add and remove sessions in every order, across many jobs (so the
 * table grows), and check the lists, the counts and that empty entries are forgotten.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "fanout.h"

/* The nodes of job in list order, compared with want (n nodes). */
static void expect_list(const fan_map *m, const char *job, fan_node *const *want, size_t n)
{
    fan_node *node = fan_first(m, job);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(node, want[i]);
        node = node->next;
    }
    assert_null(node);
}

static void test_add_remove(void **state)
{
    (void)state;
    fan_map *m = fan_map_new();
    assert_non_null(m);
    fan_node a = {0}, b = {0}, c = {0}, d = {0};
    assert_int_equal(fan_add(m, "JOB1", &a), 0);
    assert_int_equal(fan_add(m, "JOB1", &b), 0);
    assert_int_equal(fan_add(m, "JOB1", &c), 0);
    assert_int_equal(fan_add(m, "JOB2", &d), 0);
    assert_int_equal(fan_jobs(m), 2);
    fan_node *abc[] = {&a, &b, &c};
    expect_list(m, "JOB1", abc, 3);
    fan_node *dd[] = {&d};
    expect_list(m, "JOB2", dd, 1);
    assert_null(fan_first(m, "JOB3"));
    assert_null(fan_first(m, NULL));
    /* Middle, head, tail. */
    fan_remove(m, &b);
    fan_node *ac[] = {&a, &c};
    expect_list(m, "JOB1", ac, 2);
    fan_remove(m, &a);
    fan_node *cc[] = {&c};
    expect_list(m, "JOB1", cc, 1);
    fan_remove(m, &c);
    assert_null(fan_first(m, "JOB1"));
    assert_int_equal(fan_jobs(m), 1);
    /* Removing an unlinked node does nothing. */
    fan_remove(m, &c);
    fan_remove(m, &d);
    assert_int_equal(fan_jobs(m), 0);
    /* A node can be linked again. */
    assert_int_equal(fan_add(m, "JOB1", &a), 0);
    fan_node *aa[] = {&a};
    expect_list(m, "JOB1", aa, 1);
    fan_remove(m, &a);
    fan_map_free(m);
    fan_map_free(NULL);
}

static void test_many_jobs(void **state)
{
    (void)state;
    enum { N = 3000 };
    static fan_node nodes[N][2];
    memset(nodes, 0, sizeof(nodes));
    fan_map *m = fan_map_new();
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "JOB%05d", i);
        assert_int_equal(fan_add(m, key, &nodes[i][0]), 0);
        assert_int_equal(fan_add(m, key, &nodes[i][1]), 0);
    }
    assert_int_equal(fan_jobs(m), N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "JOB%05d", i);
        fan_node *both[] = {&nodes[i][0], &nodes[i][1]};
        expect_list(m, key, both, 2);
    }
    for (int i = 0; i < N; i += 2) {
        fan_remove(m, &nodes[i][1]);
        fan_remove(m, &nodes[i][0]);
    }
    assert_int_equal(fan_jobs(m), N / 2);
    for (int i = 1; i < N; i += 2) {
        snprintf(key, sizeof(key), "JOB%05d", i);
        assert_ptr_equal(fan_first(m, key), &nodes[i][0]);
        snprintf(key, sizeof(key), "JOB%05d", i - 1);
        assert_null(fan_first(m, key));
    }
    fan_map_free(m);
}

static void test_long_key(void **state)
{
    (void)state;
    fan_map *m = fan_map_new();
    char key[FAN_KEY_MAX + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    fan_node n = {0};
    assert_int_equal(fan_add(m, key, &n), -1);
    assert_null(n.entry);
    key[FAN_KEY_MAX] = '\0';
    assert_int_equal(fan_add(m, key, &n), 0);
    fan_remove(m, &n);
    fan_map_free(m);
}

static void test_ip_counts(void **state)
{
    (void)state;
    ip_map *m = ip_map_new();
    assert_non_null(m);
    assert_int_equal(ip_acquire(m, "192.0.2.7", 2), 0);
    assert_int_equal(ip_acquire(m, "192.0.2.7", 2), 0);
    assert_int_equal(ip_acquire(m, "192.0.2.7", 2), 1);
    assert_int_equal(ip_count(m, "192.0.2.7"), 2);
    assert_int_equal(ip_acquire(m, "2001:db8::1", 2), 0);
    assert_int_equal(ip_addresses(m), 2);
    ip_release(m, "192.0.2.7");
    assert_int_equal(ip_count(m, "192.0.2.7"), 1);
    assert_int_equal(ip_acquire(m, "192.0.2.7", 2), 0);
    ip_release(m, "192.0.2.7");
    ip_release(m, "192.0.2.7");
    assert_int_equal(ip_count(m, "192.0.2.7"), 0);
    assert_int_equal(ip_addresses(m), 1);
    /* Unknown addresses and a limit of 0. */
    ip_release(m, "198.51.100.1");
    ip_release(m, NULL);
    assert_int_equal(ip_count(m, NULL), 0);
    assert_int_equal(ip_acquire(m, "198.51.100.1", 0), 1);
    assert_int_equal(ip_addresses(m), 1);
    ip_release(m, "2001:db8::1");
    assert_int_equal(ip_addresses(m), 0);
    ip_map_free(m);
    ip_map_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove),
        cmocka_unit_test(test_many_jobs),
        cmocka_unit_test(test_long_key),
        cmocka_unit_test(test_ip_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
