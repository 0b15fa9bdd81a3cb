/*
 * Tests of a session's bounded message queue (wsbridge/queue.h).
 *
 * Why this file exists: the queue is what keeps a slow client from making the bridge buffer
 * without bound, and what guarantees that status, complete, error, cancelled and reset are
 * never lost while doing so. These tests fill queues past their limit in every order of
 * message classes and check what is kept, in which order, what is counted as collapsed or
 * dropped, the hard limit, the ring's wrap-around, and the reference counts of shared messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "queue.h"

/* A message whose text is its seq, for checking the order. */
static wsq_msg *msg(int64_t seq)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%lld", (long long)seq);
    wsq_msg *m = wsq_msg_new(text, (size_t)n, 16);
    assert_non_null(m);
    return m;
}

/* Pushes a new message of seq and class and drops the caller's reference. */
static wsq_result push(wsq *q, int64_t seq, wsq_class cls, size_t *collapsed)
{
    wsq_msg *m = msg(seq);
    wsq_result r = wsq_push(q, m, cls, seq, collapsed);
    wsq_msg_unref(m);
    return r;
}

/* Pops everything and checks the seqs in order. */
static void expect(wsq *q, const int64_t *seqs, size_t n)
{
    assert_int_equal(wsq_count(q), n);
    for (size_t i = 0; i < n; i++) {
        wsq_item it;
        assert_int_equal(wsq_pop(q, &it), 1);
        assert_int_equal(it.seq, seqs[i]);
        char text[32];
        snprintf(text, sizeof(text), "%lld", (long long)seqs[i]);
        assert_string_equal((const char *)it.msg->text, text);
        wsq_msg_unref(it.msg);
    }
    wsq_item it;
    assert_int_equal(wsq_pop(q, &it), 0);
}

static void test_message(void **state)
{
    (void)state;
    wsq_msg *m = wsq_msg_new("hello", 5, 10);
    assert_non_null(m);
    assert_int_equal(m->len, 5);
    assert_ptr_equal(m->text, m->data + 10);
    assert_string_equal((const char *)m->text, "hello");
    assert_ptr_equal(wsq_msg_ref(m), m);
    assert_int_equal(m->refs, 2);
    wsq_msg_unref(m);
    wsq_msg_unref(m);
    wsq_msg_unref(NULL);
    assert_null(wsq_msg_new(NULL, 0, 0));
}

static void test_fifo_below_limit(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 4);
    assert_int_equal(wsq_room(&q), 4);
    assert_int_equal(push(&q, 1, WSQ_EVENT, NULL), WSQ_QUEUED);
    assert_int_equal(push(&q, 2, WSQ_PROGRESS, NULL), WSQ_QUEUED);
    assert_int_equal(push(&q, 3, WSQ_AUX, NULL), WSQ_QUEUED);
    assert_int_equal(wsq_room(&q), 1);
    const int64_t want[] = {1, 2, 3};
    expect(&q, want, 3);
    wsq_clear(&q);
}

static void test_progress_collapses(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 4);
    size_t collapsed = 0;
    push(&q, 1, WSQ_EVENT, NULL);
    push(&q, 2, WSQ_PROGRESS, NULL);
    push(&q, 3, WSQ_PROGRESS, NULL);
    push(&q, 4, WSQ_PROGRESS, NULL);
    /* Full: a newer progress replaces the three queued ones. */
    assert_int_equal(push(&q, 5, WSQ_PROGRESS, &collapsed), WSQ_QUEUED);
    assert_int_equal(collapsed, 3);
    assert_int_equal(wsq_count(&q), 2);
    const int64_t want[] = {1, 5};
    expect(&q, want, 2);
    wsq_clear(&q);
}

static void test_events_never_dropped(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 4);
    size_t collapsed = 0;
    push(&q, 1, WSQ_PROGRESS, NULL);
    push(&q, 2, WSQ_PROGRESS, NULL);
    push(&q, 3, WSQ_EVENT, NULL);
    push(&q, 4, WSQ_PROGRESS, NULL);
    /* Full: an event keeps the newest progress (4), removes the older ones, and is queued. */
    assert_int_equal(push(&q, 5, WSQ_EVENT, &collapsed), WSQ_QUEUED);
    assert_int_equal(collapsed, 2);
    /* Still more events: queued past the limit. */
    for (int64_t s = 6; s < 12; s++) {
        assert_int_equal(push(&q, s, WSQ_EVENT, &collapsed), WSQ_QUEUED);
        assert_int_equal(collapsed, 0);
    }
    assert_int_equal(wsq_room(&q), 0);
    const int64_t want[] = {3, 4, 5, 6, 7, 8, 9, 10, 11};
    expect(&q, want, 9);
    wsq_clear(&q);
}

static void test_full_of_events(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 4);
    size_t collapsed = 9;
    for (int64_t s = 1; s <= 4; s++)
        push(&q, s, WSQ_EVENT, NULL);
    /* No progress to collapse: a progress message and an auxiliary one are dropped. */
    assert_int_equal(push(&q, 5, WSQ_PROGRESS, &collapsed), WSQ_DROPPED);
    assert_int_equal(collapsed, 0);
    assert_int_equal(push(&q, 0, WSQ_AUX, &collapsed), WSQ_DROPPED);
    const int64_t want[] = {1, 2, 3, 4};
    expect(&q, want, 4);
    wsq_clear(&q);
}

static void test_aux_dropped_when_full(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 2);
    push(&q, 1, WSQ_PROGRESS, NULL);
    push(&q, 2, WSQ_PROGRESS, NULL);
    assert_int_equal(push(&q, 0, WSQ_AUX, NULL), WSQ_DROPPED);
    assert_int_equal(wsq_count(&q), 2);
    wsq_clear(&q);
    assert_int_equal(wsq_count(&q), 0);
}

static void test_hard_limit(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 4);
    int64_t s = 1;
    for (; s <= 4 + WSQ_EXTRA; s++)
        assert_int_equal(push(&q, s, WSQ_EVENT, NULL), WSQ_QUEUED);
    assert_int_equal(push(&q, s, WSQ_EVENT, NULL), WSQ_OVERFLOW);
    assert_int_equal(wsq_count(&q), 4 + WSQ_EXTRA);
    assert_int_equal(wsq_push(&q, NULL, WSQ_EVENT, 1, NULL), WSQ_OVERFLOW);
    assert_int_equal(wsq_push(&q, NULL, WSQ_PROGRESS, 1, NULL), WSQ_DROPPED);
    wsq_clear(&q);
}

static void test_ring_wraps(void **state)
{
    (void)state;
    wsq q;
    wsq_init(&q, 5);
    int64_t next = 1, expected = 1;
    /* Push three, pop two, many times: the ring wraps around its first allocation. */
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 3 && wsq_room(&q) > 0; i++)
            assert_int_equal(push(&q, next++, WSQ_EVENT, NULL), WSQ_QUEUED);
        for (int i = 0; i < 2; i++) {
            wsq_item it;
            if (!wsq_pop(&q, &it))
                break;
            assert_int_equal(it.seq, expected++);
            wsq_msg_unref(it.msg);
        }
    }
    /* A collapse on a wrapped ring keeps the order. */
    while (wsq_room(&q) > 0)
        push(&q, next++, WSQ_PROGRESS, NULL);
    size_t collapsed = 0;
    int64_t last = next;
    assert_int_equal(push(&q, next++, WSQ_PROGRESS, &collapsed), WSQ_QUEUED);
    assert_true(collapsed > 0);
    wsq_item it;
    int64_t prev = 0;
    while (wsq_pop(&q, &it)) {
        assert_true(it.seq > prev);
        prev = it.seq;
        wsq_msg_unref(it.msg);
    }
    assert_int_equal(prev, last);
    wsq_clear(&q);
}

static void test_shared_message(void **state)
{
    (void)state;
    wsq a, b;
    wsq_init(&a, 2);
    wsq_init(&b, 2);
    wsq_msg *m = msg(7);
    assert_int_equal(wsq_push(&a, m, WSQ_EVENT, 7, NULL), WSQ_QUEUED);
    assert_int_equal(wsq_push(&b, m, WSQ_EVENT, 7, NULL), WSQ_QUEUED);
    assert_int_equal(m->refs, 3);
    wsq_clear(&a);
    assert_int_equal(m->refs, 2);
    wsq_item it;
    assert_int_equal(wsq_pop(&b, &it), 1);
    assert_ptr_equal(it.msg, m);
    wsq_msg_unref(it.msg);
    assert_int_equal(m->refs, 1);
    wsq_msg_unref(m);
    wsq_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_fifo_below_limit),
        cmocka_unit_test(test_progress_collapses),
        cmocka_unit_test(test_events_never_dropped),
        cmocka_unit_test(test_full_of_events),
        cmocka_unit_test(test_aux_dropped_when_full),
        cmocka_unit_test(test_hard_limit),
        cmocka_unit_test(test_ring_wraps),
        cmocka_unit_test(test_shared_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
