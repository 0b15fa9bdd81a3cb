/*
 * Allocation-failure injection for the engine.
 *
 * Why this file exists: every allocation in the engine is checked and a failure must come back
 * as RS_ENOMEM with nothing leaked (the daemons run for months). This binary is linked with
 * --wrap=malloc,calloc,realloc, so every allocation the engine makes goes through the wrappers
 * below; the test makes the 1st, 2nd, ... allocation fail in turn through parsing, simulating
 * (on one and on two threads) and writing the result, and checks each run fails cleanly. Leaks
 * show up under valgrind and ASan, which run this test too. (json-c's own allocations happen
 * inside its shared library and are not wrapped.)
 */
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "risksim/engine.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static atomic_long alloc_count; /* allocations since arming */
static atomic_long fail_at;     /* the allocation that fails (1-based); 0 = never */

static int should_fail(void)
{
    long target = atomic_load(&fail_at);
    return target != 0 && atomic_fetch_add(&alloc_count, 1) + 1 == target;
}

void *__wrap_malloc(size_t size)
{
    return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return should_fail() ? NULL : __real_realloc(p, size);
}

static const char *const REQUEST =
    "{\"name\":\"alloc\",\"trials\":3000,\"seed\":1,"
    "\"root\":{\"id\":\"root\",\"type\":\"portfolio\",\"children\":["
    " {\"id\":\"a\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.3},"
    "  \"severity\":{\"type\":\"lognormal\",\"lower\":1000,\"upper\":9000}},"
    " {\"id\":\"sub\",\"type\":\"portfolio\",\"children\":["
    "  {\"id\":\"b\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":2},"
    "   \"severity\":{\"type\":\"metalog\",\"percentiles\":[0.1,0.5,0.9],"
    "    \"quantiles\":[100,400,2000],\"lower\":0},"
    "   \"controls\":[{\"type\":\"limit\",\"amount\":1500}]},"
    "  {\"id\":\"c\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.1},"
    "   \"severity\":{\"type\":\"pert\",\"min\":10,\"mode\":50,\"max\":400}}]}]}}";

/* A flat-form request (the conversion allocates its own tables) and a request with many
 * problems (the diag list grows). */
static const char *const FLAT_REQUEST =
    "{\"name\":\"flat\",\"trials\":2000,\"portfolios\":[{\"name\":\"All\"},"
    "{\"name\":\"IT & Cyber\",\"parentName\":\"All\"}],\"leaves\":["
    "{\"name\":\"Phishing\",\"parentName\":\"IT & Cyber\",\"probability\":0.4,"
    "\"distributionShape\":{\"distributionType\":\"expert\",\"percentiles\":[0.1,0.5,0.9],"
    "\"quantiles\":[1000,5000,40000]}},"
    "{\"name\":\"Fire\",\"parentName\":\"All\",\"probability\":0.05,"
    "\"distributionShape\":{\"distributionType\":\"lognormal\",\"minLoss\":1e4,"
    "\"maxLoss\":1e6}}]}";
static const char *const BAD_REQUEST =
    "{\"trials\":0,\"seed\":-1,\"quantiles\":[2],\"root\":{\"id\":\"r\","
    "\"type\":\"portfolio\",\"children\":[{\"id\":\"a\",\"type\":\"leaf\","
    "\"frequency\":{\"type\":\"poisson\",\"lamda\":1},\"severity\":{\"type\":\"pert\","
    "\"min\":5,\"mode\":1,\"max\":2}},{\"id\":\"a\",\"type\":\"leaf\"}]}}";

/* One full pass over request: parse, simulate, write JSON. Returns the first error. */
static rs_err full_pass_of(const char *request, unsigned threads)
{
    rs_diag *diag = rs_diag_new();
    rs_model *model = NULL;
    rs_result *result = NULL;
    json_object *json = NULL;
    rs_err err = RS_ENOMEM;
    if (diag == NULL)
        goto out;
    err = rs_model_parse(request, strlen(request), NULL, &model, diag);
    if (err != RS_OK)
        goto out;
    rs_run_options opt = {.threads = threads, .chunk_trials = 1000};
    err = rs_simulate(model, &opt, &result);
    if (err != RS_OK)
        goto out;
    err = rs_result_to_json(result, model, NULL, &json);
out:
    json_object_put(json);
    rs_result_free(result);
    rs_model_free(model);
    rs_diag_free(diag);
    return err;
}

static const char *current_request = REQUEST;

static rs_err full_pass(unsigned threads)
{
    return full_pass_of(current_request, threads);
}

static void run_injection(unsigned threads, rs_err clean)
{
    /* count the allocations of a clean pass */
    fail_at = -1;
    alloc_count = 0;
    assert_int_equal(full_pass(threads), clean);
    long total = alloc_count;
    assert_true(total > 10);
    int failures = 0;
    for (long n = 1; n <= total; n++) {
        alloc_count = 0;
        fail_at = n;
        rs_err err = full_pass(threads);
        fail_at = 0;
        /* With threads, the order of allocations varies a little, so the n-th may land in a
         * place that is not reached this time; any failure must be RS_ENOMEM. */
        if (err != clean) {
            if (err != RS_ENOMEM)
                fail_msg("allocation %ld of %ld: %s instead of out of memory", n, total,
                         rs_strerror(err));
            failures++;
        }
    }
    print_message("threads %u: %ld allocations, %d injected failures reported as ENOMEM\n", threads,
                  total, failures);
    if (threads == 1)
        assert_int_equal(failures, total); /* single-threaded: every allocation is fatal */
    else
        assert_true(failures > total / 2);
}

static void test_alloc_failures_single_thread(void **state)
{
    (void)state;
    current_request = REQUEST;
    run_injection(1, RS_OK);
}

static void test_alloc_failures_two_threads(void **state)
{
    (void)state;
    current_request = REQUEST;
    run_injection(2, RS_OK);
}

static void test_alloc_failures_flat_form(void **state)
{
    (void)state;
    current_request = FLAT_REQUEST;
    run_injection(1, RS_OK);
}

static void test_alloc_failures_while_reporting_problems(void **state)
{
    (void)state;
    current_request = BAD_REQUEST;
    run_injection(1, RS_EVALIDATION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_failures_single_thread),
        cmocka_unit_test(test_alloc_failures_two_threads),
        cmocka_unit_test(test_alloc_failures_flat_form),
        cmocka_unit_test(test_alloc_failures_while_reporting_problems),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
