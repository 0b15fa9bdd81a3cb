/*
 * Tests of the simulation and its statistics.
 *
 * Why this file exists: the engine's promises are exactness (every statistic follows the
 * definitions of docs/api.md section 2), determinism (bit-identical results for any thread count
 * and chunk size) and control (progress between chunks, cancel within one chunk). These tests
 * check each against an independent computation: trial losses are recomputed one by one with
 * rs_leaf_trial_loss, sorted, and the statistics derived from their definitions. Statistical
 * checks use fixed seeds, so they are exact repeats, never flaky.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "model.h"
#include "risksim/engine.h"

static const char *const MIXED_TREE =
    "{\"name\":\"mixed\",\"trials\":20000,\"seed\":7,"
    "\"quantiles\":[0.5,0.9,0.99,0.995],"
    "\"root\":{\"id\":\"root\",\"type\":\"portfolio\",\"children\":["
    " {\"id\":\"it\",\"type\":\"portfolio\",\"children\":["
    "  {\"id\":\"ransom\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.2},"
    "   \"severity\":{\"type\":\"lognormal\",\"lower\":500000,\"upper\":8000000}},"
    "  {\"id\":\"outage\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":1.5},"
    "   \"severity\":{\"type\":\"metalog\",\"percentiles\":[0.1,0.5,0.9],"
    "    \"quantiles\":[20000,90000,600000],\"lower\":0},"
    "   \"controls\":[{\"type\":\"deductible\",\"amount\":25000}]}]},"
    " {\"id\":\"ops\",\"type\":\"portfolio\",\"children\":["
    "  {\"id\":\"fraud\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":0.3},"
    "   \"severity\":{\"type\":\"pert\",\"min\":1000,\"mode\":20000,\"max\":300000},"
    "   \"controls\":[{\"type\":\"insurance\",\"deductible\":5000,\"limit\":100000}]},"
    "  {\"id\":\"fine\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.05},"
    "   \"severity\":{\"type\":\"uniform\",\"min\":10000,\"max\":50000}}]},"
    " {\"id\":\"flat\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.5},"
    "  \"severity\":{\"type\":\"constant\",\"value\":1000},"
    "  \"controls\":[{\"type\":\"scale\",\"factor\":2},{\"type\":\"limit\",\"amount\":1500}]}"
    "]}}";

static rs_model *parse_or_fail(const char *json)
{
    rs_model *model = NULL;
    rs_diag *diag = rs_diag_new();
    assert_non_null(diag);
    rs_err err = rs_model_parse(json, strlen(json), NULL, &model, diag);
    if (err != RS_OK) {
        for (size_t i = 0; i < rs_diag_count(diag); i++)
            print_error("%s: %s [%s]\n", rs_diag_pointer(diag, i), rs_diag_message(diag, i),
                        rs_diag_code(diag, i));
        fail_msg("request rejected: %s", rs_strerror(err));
    }
    rs_diag_free(diag);
    return model;
}

static rs_result *run(const rs_model *model, unsigned threads, uint32_t chunk)
{
    rs_run_options opt = {.threads = threads, .chunk_trials = chunk};
    rs_result *result = NULL;
    assert_int_equal(rs_simulate(model, &opt, &result), RS_OK);
    assert_non_null(result);
    return result;
}

/* The result JSON without durationMs, as a string the caller frees. */
static char *result_text(const rs_result *result, const rs_model *model)
{
    json_object *o = NULL;
    assert_int_equal(rs_result_to_json(result, model, NULL, &o), RS_OK);
    json_object_object_del(o, "durationMs");
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, s, len + 1);
    json_object_put(o);
    return copy;
}

static int under_valgrind(void)
{
    return getenv("RISKSIM_UNDER_VALGRIND") != NULL;
}

/* ------------------------------------------------------------------------------------------
 * Determinism
 * ---------------------------------------------------------------------------------------- */

static void test_determinism_threads_and_chunks(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *ref = run(model, 1, 0);
    char *ref_text = result_text(ref, model);
    const unsigned threads[] = {1, 2, 3, 8};
    const uint32_t chunks[] = {1, 7, 1000, 4096, 20000, 65536};
    size_t nthreads = under_valgrind() ? 2 : sizeof(threads) / sizeof(threads[0]);
    for (size_t i = 0; i < nthreads; i++) {
        for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
            rs_result *r = run(model, threads[i], chunks[j]);
            char *text = result_text(r, model);
            if (strcmp(text, ref_text) != 0)
                fail_msg("threads %u chunk %u differs from the reference run", threads[i],
                         chunks[j]);
            free(text);
            rs_result_free(r);
        }
    }
    free(ref_text);
    rs_result_free(ref);
    rs_model_free(model);
}

/* ------------------------------------------------------------------------------------------
 * Exact statistics against a direct computation
 * ---------------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Per-trial losses of node ni, computed independently: leaves with rs_leaf_trial_loss,
 * portfolios as the sum of their children in order. */
static void node_losses(const rs_model *m, uint32_t ni, double *out)
{
    const rs_node *node = &m->nodes[ni];
    uint64_t n = m->trials;
    if (node->is_leaf) {
        for (uint64_t t = 0; t < n; t++)
            out[t] = rs_leaf_trial_loss(node, m->seed, t + 1);
        return;
    }
    double *tmp = malloc(n * sizeof(double));
    assert_non_null(tmp);
    memset(out, 0, n * sizeof(double));
    for (uint32_t c = 0; c < node->nchildren; c++) {
        node_losses(m, node->children[c], tmp);
        for (uint64_t t = 0; t < n; t++)
            out[t] += tmp[t];
    }
    free(tmp);
}

static void assert_close(double got, double want, double rel, const char *what)
{
    double tol = rel * fmax(fabs(want), 1e-300);
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.17g, want %.17g (relative tolerance %g)", what, got, want, rel);
}

static void check_node_exact(const rs_model *m, const rs_result *r, uint32_t ni)
{
    uint64_t n = m->trials;
    double *x = malloc(n * sizeof(double));
    double *sorted = malloc(n * sizeof(double));
    assert_non_null(x);
    assert_non_null(sorted);
    node_losses(m, ni, x);
    memcpy(sorted, x, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
    const rs_node_stats *st = rs_result_node(r, ni);
    assert_non_null(st);

    long double sum = 0, nnz = 0;
    for (uint64_t t = 0; t < n; t++) {
        sum += x[t];
        nnz += x[t] > 0;
    }
    double mean = (double)(sum / n);
    assert_close(st->mean, mean, 1e-12, "mean");
    assert_true(st->max == sorted[n - 1]);
    assert_true(st->probability_of_loss == (double)nnz / (double)n);
    /* scaled by the largest loss, so that tiny losses cannot underflow (valgrind runs long
     * double at double precision and range) */
    long double ss = 0, scale = sorted[n - 1] > 0 ? sorted[n - 1] : 1.0;
    for (uint64_t t = 0; t < n; t++) {
        long double d = ((long double)x[t] - mean) / scale;
        ss += d * d;
    }
    assert_close(st->stddev, (double)(scale * sqrtl(ss / (n - 1))), 1e-9, "stddev");

    for (size_t j = 0; j < m->nlevels; j++) {
        /* smallest L with at least ceil(q n) trials <= L */
        uint64_t k = (uint64_t)ceil(m->levels[j] * (double)n - 1e-9);
        double var = sorted[k - 1];
        if (st->quantiles[j] != var)
            fail_msg("%s %s: got %.17g want %.17g", st->id, m->level_labels[j], st->quantiles[j],
                     var);
        long double tail = 0;
        uint64_t count = 0;
        for (uint64_t t = 0; t < n; t++)
            if (x[t] >= var) {
                tail += x[t];
                count++;
            }
        assert_close(st->tvar[j], (double)(tail / count), 1e-12, "tvar");
    }
    for (size_t i = 0; i < st->lec_count; i++) {
        double tick = st->lec_loss[i];
        uint64_t count = 0;
        for (uint64_t t = 0; t < n; t++)
            count += i == 0 ? x[t] > 0 : x[t] >= tick;
        assert_true(st->lec_exceedance[i] == (double)count / (double)n);
        if (i > 0) {
            assert_true(st->lec_loss[i] > st->lec_loss[i - 1]);
            assert_true(st->lec_exceedance[i] <= st->lec_exceedance[i - 1]);
        }
    }
    free(x);
    free(sorted);
}

static void test_statistics_match_definitions(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *r = run(model, 2, 3000);
    assert_int_equal(rs_result_node_count(r), 8);
    for (uint32_t i = 0; i < model->nnodes; i++)
        check_node_exact(model, r, i);
    rs_result_free(r);
    rs_model_free(model);
}

/* Every tail share of every portfolio's children against a direct computation. */
static void check_tail_contributions(const rs_model *model, const rs_result *r)
{
    uint64_t n = model->trials;
    double *p = malloc(n * sizeof(double)), *c = malloc(n * sizeof(double));
    assert_non_null(p);
    assert_non_null(c);
    for (uint32_t pi = 0; pi < model->nnodes; pi++) {
        const rs_node *node = &model->nodes[pi];
        if (node->is_leaf)
            continue;
        const rs_node_stats *ps = rs_result_node(r, pi);
        node_losses(model, pi, p);
        for (size_t j = 0; j < model->nlevels; j++) {
            double total_share = 0.0;
            long double tail = 0;
            for (uint64_t t = 0; t < n; t++)
                tail += p[t] >= ps->quantiles[j] ? p[t] : 0;
            for (uint32_t k = 0; k < node->nchildren; k++) {
                const rs_node_stats *cs = rs_result_node(r, node->children[k]);
                node_losses(model, node->children[k], c);
                long double part = 0;
                for (uint64_t t = 0; t < n; t++)
                    part += p[t] >= ps->quantiles[j] ? c[t] : 0;
                assert_close(cs->tail_contribution[j], (double)(part / tail), 1e-12,
                             "tail contribution");
                assert_true(cs->tail_contribution[j] >= 0.0 && cs->tail_contribution[j] <= 1.0);
                total_share += cs->tail_contribution[j];
            }
            assert_close(total_share, 1.0, 1e-12, "sum of tail shares");
        }
    }
    assert_null(rs_result_node(r, 0)->tail_contribution);
    free(p);
    free(c);
}

static void test_tail_contributions(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *r = run(model, 1, 0);
    check_tail_contributions(model, r);
    rs_result_free(r);
    rs_model_free(model);
}

/* Point masses (constant severities, so many equal losses) take the other selection path:
 * the quantiles' bucket holds most losses, so selection runs in place and the portfolio's
 * losses are recomputed for the tail shares. The statistics must not change. */
static void test_point_masses(void **state)
{
    (void)state;
    const char *req =
        "{\"trials\":5000,\"seed\":9,\"quantiles\":[0.3,0.5,0.6,0.9,0.99],"
        "\"root\":{\"id\":\"r\",\"type\":\"portfolio\",\"children\":["
        "{\"id\":\"a\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.5},"
        "\"severity\":{\"type\":\"constant\",\"value\":100}},"
        "{\"id\":\"b\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":0.7},"
        "\"severity\":{\"type\":\"uniform\",\"min\":0,\"max\":1000},"
        "\"controls\":[{\"type\":\"limit\",\"amount\":100}]}]}}";
    rs_model *model = parse_or_fail(req);
    rs_result *r = run(model, 2, 700);
    for (uint32_t i = 0; i < model->nnodes; i++)
        check_node_exact(model, r, i);
    check_tail_contributions(model, r);
    rs_result_free(r);
    rs_model_free(model);
}

static void test_portfolio_mean_is_sum_of_children(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *r = run(model, 2, 0);
    for (uint32_t pi = 0; pi < model->nnodes; pi++) {
        const rs_node *node = &model->nodes[pi];
        if (node->is_leaf)
            continue;
        double sum = 0.0;
        for (uint32_t k = 0; k < node->nchildren; k++)
            sum += rs_result_node(r, node->children[k])->mean;
        /* equal up to floating-point rounding of two different summation orders */
        assert_close(rs_result_node(r, pi)->mean, sum, 1e-12, "portfolio mean");
    }
    rs_result_free(r);
    rs_model_free(model);
}

/* ------------------------------------------------------------------------------------------
 * Statistical checks (fixed seeds)
 * ---------------------------------------------------------------------------------------- */

static void test_single_leaf_quantiles_match_mixture(void **state)
{
    (void)state;
    /* Bernoulli(0.3) x lognormal with 90% interval [1000, 50000]: for q > 0.7 the annual-loss
     * quantile is the lognormal quantile at (q - 0.7) / 0.3. */
    const char *req = "{\"trials\":200000,\"seed\":11,\"quantiles\":[0.5,0.8,0.9,0.95,0.99],"
                      "\"root\":{\"id\":\"r\",\"type\":\"leaf\","
                      "\"frequency\":{\"type\":\"bernoulli\",\"p\":0.3},"
                      "\"severity\":{\"type\":\"lognormal\",\"lower\":1000,\"upper\":50000}}}";
    rs_model *model = parse_or_fail(req);
    rs_result *r = run(model, 2, 0);
    const rs_node_stats *st = rs_result_node(r, 0);
    double mu = (log(1000.0) + log(50000.0)) / 2,
           sigma = (log(50000.0) - log(1000.0)) / 2 / rs_norm_quantile(0.95);
    assert_true(st->quantiles[0] == 0.0); /* 70% of trials lose nothing */
    for (size_t j = 1; j < 5; j++) {
        double q = model->levels[j];
        double want = exp(mu + sigma * rs_norm_quantile((q - 0.7) / 0.3));
        assert_close(st->quantiles[j], want, 0.03, "mixture quantile");
    }
    assert_close(st->probability_of_loss, 0.3, 0.01, "probability of loss");
    assert_close(st->mean, 0.3 * exp(mu + sigma * sigma / 2), 0.03, "mean");
    rs_result_free(r);
    rs_model_free(model);
}

static void test_poisson_mean(void **state)
{
    (void)state;
    /* mean = lambda * E[severity]; the standard error sets the tolerance (4 SE). */
    const char *req =
        "{\"trials\":200000,\"seed\":3,\"root\":{\"id\":\"p\",\"type\":\"portfolio\","
        "\"children\":[{\"id\":\"a\",\"type\":\"leaf\","
        "\"frequency\":{\"type\":\"poisson\",\"lambda\":2.5},"
        "\"severity\":{\"type\":\"lognormal\",\"mu\":8,\"sigma\":0.5}},"
        "{\"id\":\"b\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":40},"
        "\"severity\":{\"type\":\"constant\",\"value\":10}}]}}";
    rs_model *model = parse_or_fail(req);
    rs_result *r = run(model, 2, 0);
    const rs_node_stats *a = rs_result_node(r, 1), *b = rs_result_node(r, 2);
    double want_a = 2.5 * exp(8 + 0.125);
    assert_true(fabs(a->mean - want_a) < 4 * a->standard_error);
    assert_true(fabs(b->mean - 400.0) < 4 * b->standard_error);
    /* a Poisson(40) count times 10: variance 40 * 100 */
    assert_close(b->stddev, sqrt(4000.0), 0.02, "poisson stddev");
    rs_result_free(r);
    rs_model_free(model);
}

/* ------------------------------------------------------------------------------------------
 * Progress and cancel
 * ---------------------------------------------------------------------------------------- */

typedef struct progress_log {
    int calls;
    int cancel_at; /* return non-zero at this call (1-based); 0 never */
    uint64_t last_done;
    int sampling_calls, aggregating_calls;
    int cancel_phase_calls; /* return non-zero at this aggregating call; 0 never */
    atomic_int *flag;       /* set the flag instead of returning non-zero */
} progress_log;

static int on_progress(void *ctx, const rs_progress *p)
{
    progress_log *log = ctx;
    log->calls++;
    assert_true(p->trials_done >= log->last_done);
    assert_true(p->trials_done <= p->trials_total);
    log->last_done = p->trials_done;
    if (strcmp(p->phase, "sampling") == 0)
        log->sampling_calls++;
    else if (strcmp(p->phase, "aggregating") == 0)
        log->aggregating_calls++;
    else
        fail_msg("unknown phase %s", p->phase);
    if (log->cancel_phase_calls != 0 && strcmp(p->phase, RS_PHASE_AGGREGATING) == 0 &&
        log->aggregating_calls == log->cancel_phase_calls)
        return 1;
    if (log->cancel_at != 0 && log->calls == log->cancel_at) {
        if (log->flag != NULL)
            atomic_store(log->flag, 1);
        else
            return 1;
    }
    return 0;
}

static void test_progress_reports_every_chunk(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    progress_log log = {0};
    rs_run_options opt = {
        .threads = 1, .chunk_trials = 1000, .progress = on_progress, .progress_ctx = &log};
    rs_result *r = NULL;
    assert_int_equal(rs_simulate(model, &opt, &r), RS_OK);
    /* one at the start (0 trials), one after each of the 20 chunks */
    assert_int_equal(log.sampling_calls, 21);
    /* one as aggregation starts, one after each of the 8 nodes */
    assert_int_equal(log.aggregating_calls, 9);
    assert_true(log.last_done == 20000);
    rs_result_free(r);
    /* with threads the caller still hears of progress, ending at all trials */
    progress_log log2 = {0};
    opt.threads = 2;
    opt.progress_ctx = &log2;
    assert_int_equal(rs_simulate(model, &opt, &r), RS_OK);
    assert_true(log2.sampling_calls >= 2 && log2.sampling_calls <= 21);
    assert_true(log2.aggregating_calls >= 2 && log2.aggregating_calls <= 9);
    assert_true(log2.last_done == 20000);
    rs_result_free(r);
    rs_model_free(model);
}

static const char *const LONG_REQUEST =
    "{\"trials\":2000000,\"seed\":5,\"root\":{\"id\":\"r\",\"type\":\"leaf\","
    "\"frequency\":{\"type\":\"poisson\",\"lambda\":3},"
    "\"severity\":{\"type\":\"lognormal\",\"mu\":9,\"sigma\":1}}}";

static void test_cancel_within_one_chunk(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(LONG_REQUEST);
    const uint32_t chunk = 1000;
    uint64_t sampled = 0;
    rs_result *r = (rs_result *)&sampled; /* must be reset to NULL */

    /* one thread: the callback after the first chunk (its second call) cancels; nothing more
     * is sampled */
    progress_log log = {.cancel_at = 2};
    rs_run_options opt = {.threads = 1,
                          .chunk_trials = chunk,
                          .progress = on_progress,
                          .progress_ctx = &log,
                          .trials_sampled = &sampled};
    assert_int_equal(rs_simulate(model, &opt, &r), RS_ECANCELLED);
    assert_null(r);
    assert_int_equal(log.calls, 2);
    assert_true(sampled == chunk);

    /* one thread, through the flag set from the callback: the same */
    atomic_int flag;
    atomic_init(&flag, 0);
    progress_log log2 = {.cancel_at = 2, .flag = &flag};
    opt.progress_ctx = &log2;
    opt.cancel = &flag;
    assert_int_equal(rs_simulate(model, &opt, &r), RS_ECANCELLED);
    assert_int_equal(log2.calls, 2);
    assert_true(sampled == chunk);

    /* two threads: cancelled, no progress after the cancel, and only whole chunks sampled. How
     * many chunks the workers finished before the callback ran depends on the scheduler (under
     * valgrind, which runs one thread at a time, possibly all of them), so the bound of one
     * chunk per thread is checked exactly with one thread above, and here only that the run is
     * cancelled even then. */
    for (int by_flag = 0; by_flag <= 1; by_flag++) {
        atomic_store(&flag, 0);
        progress_log log3 = {.cancel_at = 2, .flag = by_flag ? &flag : NULL};
        rs_run_options opt2 = {.threads = 2,
                               .chunk_trials = chunk,
                               .progress = on_progress,
                               .progress_ctx = &log3,
                               .cancel = &flag,
                               .trials_sampled = &sampled};
        assert_int_equal(rs_simulate(model, &opt2, &r), RS_ECANCELLED);
        assert_null(r);
        assert_int_equal(log3.calls, 2);
        assert_true(sampled <= rs_model_trials(model));
        assert_true(sampled % chunk == 0);
    }

    /* a flag already set: nothing is sampled, nobody is called */
    atomic_store(&flag, 1);
    progress_log log4 = {0};
    rs_run_options opt3 = {.threads = 2,
                           .progress = on_progress,
                           .progress_ctx = &log4,
                           .cancel = &flag,
                           .trials_sampled = &sampled};
    assert_int_equal(rs_simulate(model, &opt3, &r), RS_ECANCELLED);
    assert_int_equal(log4.calls, 0);
    assert_true(sampled == 0);
    rs_model_free(model);
}

static void test_cancel_while_aggregating(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    for (unsigned threads = 1; threads <= 2; threads++) {
        /* cancel at the second aggregating report: after the start of aggregation */
        progress_log log = {.cancel_phase_calls = 2};
        uint64_t sampled = 0;
        rs_run_options opt = {.threads = threads,
                              .chunk_trials = 1000,
                              .progress = on_progress,
                              .progress_ctx = &log,
                              .trials_sampled = &sampled};
        rs_result *r = NULL;
        assert_int_equal(rs_simulate(model, &opt, &r), RS_ECANCELLED);
        assert_null(r);
        assert_true(sampled == 20000);
        assert_true(log.aggregating_calls == 2);
    }
    rs_model_free(model);
}

/* A heavy tail's draws beyond 1e15 count as 1e15: statistics stay finite, even for a
 * portfolio of many such events. */
static void test_event_loss_cap(void **state)
{
    (void)state;
    const char *req =
        "{\"trials\":4000,\"root\":{\"id\":\"p\",\"type\":\"portfolio\",\"children\":["
        "{\"id\":\"a\",\"type\":\"leaf\",\"frequency\":{\"type\":\"poisson\",\"lambda\":1000},"
        "\"severity\":{\"type\":\"lognormal\",\"mu\":34,\"sigma\":5}},"
        "{\"id\":\"b\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":1},"
        "\"severity\":{\"type\":\"metalog\",\"percentiles\":[0.1,0.5,0.9],"
        "\"quantiles\":[1000,20000,300000],\"lower\":0}}]}}";
    rs_model *model = parse_or_fail(req);
    rs_result *r = run(model, 2, 0);
    for (size_t i = 0; i < rs_result_node_count(r); i++) {
        const rs_node_stats *st = rs_result_node(r, i);
        assert_true(isfinite(st->mean) && isfinite(st->stddev) && isfinite(st->max));
        for (size_t j = 0; j < rs_result_level_count(r); j++)
            assert_true(isfinite(st->quantiles[j]) && isfinite(st->tvar[j]));
    }
    /* about 46% of a's draws pass 1e15; each counts as exactly 1e15 */
    const rs_node_stats *b = rs_result_node(r, 2);
    assert_true(b->max <= 1e15);
    assert_true(rs_severity_quantile(&model->nodes[1].sev, 1.0 - 1e-9) == 1e15);
    assert_true(rs_result_node(r, 1)->max <= 1000 * 1.3e15);
    rs_result_free(r);
    rs_model_free(model);
}

/* A slow progress callback on a threaded run: reports of chunks and nodes finished while it
 * ran are merged, but the last report of each phase always has the final count. */
typedef struct slow_log {
    uint64_t last_trials;
    size_t last_nodes, nodes_total;
    int sampling_calls;
} slow_log;

static int slow_progress(void *ctx, const rs_progress *p)
{
    slow_log *log = ctx;
    struct timespec pause = {0, 2000000}; /* 2 ms */
    nanosleep(&pause, NULL);
    if (strcmp(p->phase, RS_PHASE_SAMPLING) == 0) {
        log->last_trials = p->trials_done;
        log->sampling_calls++;
    } else {
        log->last_nodes = p->nodes_done;
        log->nodes_total = p->nodes_total;
    }
    return 0;
}

static void test_progress_final_report_with_threads(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    for (unsigned threads = 2; threads <= 4; threads += 2) {
        slow_log log = {0};
        rs_run_options opt = {.threads = threads,
                              .chunk_trials = 100,
                              .progress = slow_progress,
                              .progress_ctx = &log};
        rs_result *r = NULL;
        assert_int_equal(rs_simulate(model, &opt, &r), RS_OK);
        assert_true(log.last_trials == 20000);
        assert_int_equal(log.last_nodes, 8);
        assert_int_equal(log.nodes_total, 8);
        rs_result_free(r);
    }
    rs_model_free(model);
}

/* The cancel flag also stops aggregation, inside a node's passes. */
static int flag_at_aggregation(void *ctx, const rs_progress *p)
{
    if (strcmp(p->phase, RS_PHASE_AGGREGATING) == 0)
        atomic_store((atomic_int *)ctx, 1);
    return 0;
}

static void test_cancel_flag_while_aggregating(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    for (unsigned threads = 1; threads <= 2; threads++) {
        atomic_int flag;
        atomic_init(&flag, 0);
        rs_run_options opt = {.threads = threads,
                              .progress = flag_at_aggregation,
                              .progress_ctx = &flag,
                              .cancel = &flag};
        rs_result *r = NULL;
        assert_int_equal(rs_simulate(model, &opt, &r), RS_ECANCELLED);
        assert_null(r);
    }
    rs_model_free(model);
}

/* Losses far below a cent behave: below 1e-300 they count as no loss, tiny ones above it keep
 * exact statistics (no underflow in the spread), and equal losses have no spread at all. */
static void test_tiny_and_equal_losses(void **state)
{
    (void)state;
    const char *req =
        "{\"trials\":3000,\"seed\":4,\"root\":{\"id\":\"r\",\"type\":\"portfolio\",\"children\":["
        "{\"id\":\"gone\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":1},"
        "\"severity\":{\"type\":\"constant\",\"value\":1e-300},"
        "\"controls\":[{\"type\":\"scale\",\"factor\":1e-10}]},"
        "{\"id\":\"sub\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.5},"
        "\"severity\":{\"type\":\"uniform\",\"min\":0,\"max\":4e-320}},"
        "{\"id\":\"tiny\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":0.5},"
        "\"severity\":{\"type\":\"uniform\",\"min\":1e-200,\"max\":3e-200}},"
        "{\"id\":\"same\",\"type\":\"leaf\",\"frequency\":{\"type\":\"bernoulli\",\"p\":1},"
        "\"severity\":{\"type\":\"constant\",\"value\":999999999980000}}]}}";
    rs_model *model = parse_or_fail(req);
    rs_result *r = run(model, 2, 0);
    assert_true(rs_result_node(r, 1)->probability_of_loss == 0.0);
    assert_true(rs_result_node(r, 2)->probability_of_loss == 0.0);
    const rs_node_stats *tiny = rs_result_node(r, 3);
    assert_true(tiny->stddev > 0.5e-200 && tiny->stddev < 2e-200);
    check_node_exact(model, r, 3);
    const rs_node_stats *same = rs_result_node(r, 4);
    assert_true(same->mean == 999999999980000.0);
    assert_true(same->stddev == 0.0);
    rs_result_free(r);
    rs_model_free(model);
}

/* The memory estimate follows the run's options: one-trial chunks cost a record per leaf and
 * chunk. */
static void test_memory_estimate_follows_options(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_run_options one = {.threads = 1, .chunk_trials = 1};
    rs_run_options two = {.threads = 2};
    uint64_t base = rs_model_memory_estimate(model, NULL);
    assert_true(base > 20000u * 8u);
    assert_true(rs_model_memory_estimate(model, &one) > base + 20000u * 5u * 24u);
    assert_true(rs_model_memory_estimate(model, &two) > base);
    rs_model_free(model);
}

static void test_bad_options(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *r = NULL;
    rs_run_options opt = {.threads = RS_MAX_THREADS + 1};
    assert_int_equal(rs_simulate(model, &opt, &r), RS_EINVAL);
    opt.threads = 1;
    opt.chunk_trials = RS_MAX_CHUNK_TRIALS + 1;
    assert_int_equal(rs_simulate(model, &opt, &r), RS_EINVAL);
    assert_int_equal(rs_simulate(NULL, NULL, &r), RS_EINVAL);
    assert_int_equal(rs_simulate(model, NULL, NULL), RS_EINVAL);
    rs_model_free(model);
}

/* ------------------------------------------------------------------------------------------
 * JSON output
 * ---------------------------------------------------------------------------------------- */

static void test_result_json_shape(void **state)
{
    (void)state;
    rs_model *model = parse_or_fail(MIXED_TREE);
    rs_result *r = run(model, 1, 0);
    json_object *o = NULL;
    rs_result_meta meta = {.id = "job1", .status = "completed"};
    assert_int_equal(rs_result_to_json(r, model, &meta, &o), RS_OK);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "id", &v));
    assert_string_equal(json_object_get_string(v), "job1");
    assert_true(json_object_object_get_ex(o, "rng", &v));
    assert_string_equal(json_object_get_string(v), "hdr");
    assert_true(json_object_object_get_ex(o, "trials", &v));
    assert_int_equal(json_object_get_int64(v), 20000);
    json_object *nodes;
    assert_true(json_object_object_get_ex(o, "nodes", &nodes));
    assert_int_equal(json_object_array_length(nodes), 8);
    json_object *root = json_object_array_get_idx(nodes, 0);
    assert_true(json_object_object_get_ex(root, "parent", &v));
    assert_null(v);
    assert_true(json_object_object_get_ex(root, "tailContribution", &v));
    assert_null(v);
    json_object *q;
    assert_true(json_object_object_get_ex(root, "quantiles", &q));
    assert_true(json_object_object_get_ex(q, "p99.5", &v));
    json_object *lec;
    assert_true(json_object_object_get_ex(root, "lec", &lec));
    assert_int_equal(json_object_array_length(lec), 100);
    json_object *child = json_object_array_get_idx(nodes, 1);
    assert_true(json_object_object_get_ex(child, "parent", &v));
    assert_string_equal(json_object_get_string(v), "root");
    json_object *vl, *schema, *data, *values;
    assert_true(json_object_object_get_ex(o, "vegaLite", &vl));
    assert_true(json_object_object_get_ex(vl, "$schema", &schema));
    assert_string_equal(json_object_get_string(schema),
                        "https://vega.github.io/schema/vega-lite/v5.json");
    assert_true(json_object_object_get_ex(vl, "data", &data));
    assert_true(json_object_object_get_ex(data, "values", &values));
    /* root + 3 children, 99 positive ticks each */
    assert_int_equal(json_object_array_length(values), 4 * 99);
    /* numbers read back exactly */
    json_object *mean;
    assert_true(json_object_object_get_ex(root, "mean", &mean));
    const char *text = json_object_to_json_string(mean);
    assert_true(strtod(text, NULL) == rs_result_node(r, 0)->mean);
    json_object_put(o);
    rs_result_free(r);
    rs_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism_threads_and_chunks),
        cmocka_unit_test(test_statistics_match_definitions),
        cmocka_unit_test(test_tail_contributions),
        cmocka_unit_test(test_point_masses),
        cmocka_unit_test(test_portfolio_mean_is_sum_of_children),
        cmocka_unit_test(test_single_leaf_quantiles_match_mixture),
        cmocka_unit_test(test_poisson_mean),
        cmocka_unit_test(test_progress_reports_every_chunk),
        cmocka_unit_test(test_cancel_within_one_chunk),
        cmocka_unit_test(test_cancel_while_aggregating),
        cmocka_unit_test(test_event_loss_cap),
        cmocka_unit_test(test_progress_final_report_with_threads),
        cmocka_unit_test(test_cancel_flag_while_aggregating),
        cmocka_unit_test(test_tiny_and_equal_losses),
        cmocka_unit_test(test_memory_estimate_follows_options),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_result_json_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
