/*
 * The sampling phase of a simulation run.
 *
 * Why this file exists: this is the engine's hot loop. Trials are cut into chunks; worker
 * threads take chunks in any order and, for every leaf, draw each trial's loss from HDR
 * (which depends only on seed, leaf and trial) and keep only the trials with a loss (bitmap +
 * packed losses per leaf and chunk). Because nothing a thread computes depends on which thread
 * computes it or on what was computed before, the store, and so the result, is the same for
 * any thread count and any chunk size. Between chunks the calling thread reports progress and
 * everybody checks the cancel flag. Statistics are stats.c's job.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "rng.h"
#include "sim.h"

#define DEFAULT_CHUNK_TRIALS 4096u

double rs_severity_quantile(const rs_severity *sev, double u)
{
    double x;
    switch (sev->kind) {
    case RS_SEV_LOGNORMAL:
        x = exp(sev->u.lognormal.mu + sev->u.lognormal.sigma * rs_norm_quantile(u));
        break;
    case RS_SEV_METALOG:
        x = rs_metalog_quantile(&sev->u.metalog, u);
        break;
    case RS_SEV_PERT:
        x = rs_pert_quantile(&sev->u.pert, u);
        break;
    case RS_SEV_UNIFORM:
        x = sev->u.uniform.min + u * (sev->u.uniform.max - sev->u.uniform.min);
        break;
    case RS_SEV_CONSTANT:
    default:
        x = sev->u.constant;
        break;
    }
    /* A loss is never negative (an unbounded metalog's left tail may go below 0) and one event
     * never loses more than RS_MAX_EVENT_LOSS (a heavy tail's most extreme draws), so every
     * sum stays finite; NaN, which valid parameters never produce, becomes 0. */
    if (!(x > 0.0))
        return 0.0;
    return x < RS_MAX_EVENT_LOSS ? x : RS_MAX_EVENT_LOSS;
}

/* An event's loss after its controls; below RS_MIN_EVENT_LOSS it counts as no loss. */
static inline double flush_tiny(double x)
{
    return x >= RS_MIN_EVENT_LOSS ? x : 0.0;
}

/* Applies the leaf's controls, in order, to one event's loss. */
static double apply_controls(const rs_node *leaf, double x)
{
    for (uint32_t i = 0; i < leaf->ncontrols; i++) {
        const rs_control *c = &leaf->controls[i];
        switch (c->kind) {
        case RS_CTRL_DEDUCTIBLE:
            x = x > c->a ? x - c->a : 0.0;
            break;
        case RS_CTRL_LIMIT:
            x = x < c->a ? x : c->a;
            break;
        case RS_CTRL_SCALE:
            x = x * c->a;
            break;
        case RS_CTRL_INSURANCE: {
            double covered = x > c->a ? x - c->a : 0.0;
            x -= covered < c->b ? covered : c->b;
            break;
        }
        }
    }
    return x;
}

/* Loss of event k (0-based) of a trial. */
static inline double event_loss(const rs_node *leaf, uint32_t seed, uint64_t trial, uint64_t k)
{
    double u = rs_hdr_inline(trial, rs_leaf_loss_var(leaf), seed, k, 0);
    return flush_tiny(apply_controls(leaf, rs_severity_quantile(&leaf->sev, u)));
}

double rs_leaf_trial_loss(const rs_node *leaf, uint32_t seed, uint64_t trial)
{
    double u = rs_hdr_inline(trial, rs_leaf_occurrence_var(leaf), seed, 0, 0);
    if (leaf->freq.kind == RS_FREQ_BERNOULLI)
        return u < leaf->freq.p ? event_loss(leaf, seed, trial, 0) : 0.0;
    uint32_t events = rs_poisson_quantile(&leaf->freq.poisson, u);
    double total = 0.0;
    for (uint32_t k = 0; k < events; k++)
        total += event_loss(leaf, seed, trial, k);
    return total;
}

/* ------------------------------------------------------------------------------------------
 * The store
 * ---------------------------------------------------------------------------------------- */

static void store_free(rs_store *store)
{
    if (store->segs != NULL) {
        size_t n = store->nleaves * store->nchunks;
        for (size_t i = 0; i < n; i++) {
            free(store->segs[i].bits);
            free(store->segs[i].losses);
        }
    }
    free(store->segs);
    store->segs = NULL;
}

static rs_err store_init(rs_store *store, const rs_model *model, uint32_t chunk)
{
    store->trials = model->trials;
    store->chunk = chunk;
    store->nchunks = (size_t)((model->trials + chunk - 1) / chunk);
    store->nleaves = model->nleaves;
    if (store->nleaves != 0 && store->nchunks > SIZE_MAX / sizeof(rs_segment) / store->nleaves)
        return RS_ENOMEM;
    store->segs = calloc(store->nleaves * store->nchunks, sizeof(rs_segment));
    return store->segs == NULL ? RS_ENOMEM : RS_OK;
}

/* Per-thread scratch space for one chunk. */
typedef struct chunk_scratch {
    double *losses;
    uint64_t *bits;
} chunk_scratch;

static rs_err scratch_init(chunk_scratch *scratch, uint32_t chunk)
{
    scratch->losses = malloc((size_t)chunk * sizeof(double));
    scratch->bits = malloc(((size_t)chunk + 63) / 64 * sizeof(uint64_t));
    return scratch->losses == NULL || scratch->bits == NULL ? RS_ENOMEM : RS_OK;
}

static void scratch_free(chunk_scratch *scratch)
{
    free(scratch->losses);
    free(scratch->bits);
}

/* Samples one leaf over trials first..first+len-1 into seg. */
static rs_err sample_leaf_chunk(const rs_node *leaf, uint32_t seed, uint64_t first, uint32_t len,
                                chunk_scratch *scratch, rs_segment *seg)
{
    size_t words = ((size_t)len + 63) / 64;
    memset(scratch->bits, 0, words * sizeof(uint64_t));
    uint32_t nnz = 0;
    for (uint32_t i = 0; i < len; i++) {
        double x = rs_leaf_trial_loss(leaf, seed, first + i);
        if (x > 0.0) {
            scratch->losses[nnz++] = x;
            scratch->bits[i / 64] |= (uint64_t)1 << (i % 64);
        }
    }
    if (nnz == 0)
        return RS_OK;
    seg->bits = malloc(words * sizeof(uint64_t));
    seg->losses = malloc((size_t)nnz * sizeof(double));
    if (seg->bits == NULL || seg->losses == NULL) {
        free(seg->bits);
        free(seg->losses);
        seg->bits = NULL;
        seg->losses = NULL;
        return RS_ENOMEM;
    }
    memcpy(seg->bits, scratch->bits, words * sizeof(uint64_t));
    memcpy(seg->losses, scratch->losses, (size_t)nnz * sizeof(double));
    seg->nnz = nnz;
    return RS_OK;
}

/* Samples every leaf of chunk c. */
static rs_err sample_chunk(const rs_model *model, rs_store *store, size_t c, chunk_scratch *scratch)
{
    uint64_t first = (uint64_t)c * store->chunk + 1;
    uint32_t len = rs_store_chunk_len(store, c);
    for (size_t l = 0; l < model->nleaves; l++) {
        const rs_node *leaf = &model->nodes[model->leaves[l]];
        rs_err err = sample_leaf_chunk(leaf, model->seed, first, len, scratch,
                                       &store->segs[l * store->nchunks + c]);
        if (err != RS_OK)
            return err;
    }
    return RS_OK;
}

/* ------------------------------------------------------------------------------------------
 * Running the chunks on threads
 * ---------------------------------------------------------------------------------------- */

typedef struct run_state {
    const rs_model *model;
    rs_store *store;
    const atomic_int *cancel;
    atomic_size_t next_chunk;
    atomic_int stop; /* set on cancel or error: workers take no new chunk */
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    uint64_t trials_done; /* under mutex */
    unsigned running;     /* workers still running, under mutex */
    rs_err err;           /* first worker error, under mutex */
    int cancelled;        /* the progress callback asked to stop */
} run_state;

static int cancel_requested(const atomic_int *cancel)
{
    return cancel != NULL && atomic_load(cancel) != 0;
}

/* Takes chunks until none is left or the run stops. */
static void *sample_worker(void *arg)
{
    run_state *st = arg;
    chunk_scratch scratch;
    rs_err err = scratch_init(&scratch, st->store->chunk);
    while (err == RS_OK && !atomic_load(&st->stop) && !cancel_requested(st->cancel)) {
        size_t c = atomic_fetch_add(&st->next_chunk, 1);
        if (c >= st->store->nchunks)
            break;
        err = sample_chunk(st->model, st->store, c, &scratch);
        pthread_mutex_lock(&st->mutex);
        if (err == RS_OK)
            st->trials_done += rs_store_chunk_len(st->store, c);
        pthread_cond_signal(&st->changed);
        pthread_mutex_unlock(&st->mutex);
    }
    scratch_free(&scratch);
    pthread_mutex_lock(&st->mutex);
    if (err != RS_OK && st->err == RS_OK) {
        st->err = err;
        atomic_store(&st->stop, 1);
    }
    st->running--;
    pthread_cond_signal(&st->changed);
    pthread_mutex_unlock(&st->mutex);
    return NULL;
}

static int report_progress(const rs_run_options *opt, uint64_t done, uint64_t total,
                           const char *phase)
{
    if (opt->progress == NULL)
        return 0;
    rs_progress p = {done, total, phase, 0, 0};
    return opt->progress(opt->progress_ctx, &p);
}

/* Context of the aggregation progress: the run's options and model. */
typedef struct aggregation_ctx {
    const rs_run_options *opt;
    uint64_t trials;
} aggregation_ctx;

/* rs_nodes_progress_fn forwarding to the run's progress callback. */
static int report_nodes(void *ctx, size_t nodes_done, size_t nodes_total)
{
    const aggregation_ctx *agg = ctx;
    rs_progress p = {agg->trials, agg->trials, RS_PHASE_AGGREGATING, nodes_done, nodes_total};
    return agg->opt->progress(agg->opt->progress_ctx, &p);
}

/* Waits for the workers, reporting progress whenever trials were done; a non-zero answer of
 * the progress callback stops the run. Returns with every worker finished. */
static void coordinate(run_state *st, const rs_run_options *opt)
{
    uint64_t reported = 0;
    pthread_mutex_lock(&st->mutex);
    for (;;) {
        /* look before waiting, so that chunks finished while the callback ran, or before the
         * first wait, are reported too: the last report always has the final count */
        uint64_t done = st->trials_done;
        int stopped = atomic_load(&st->stop) || cancel_requested(st->cancel);
        if (done != reported && !stopped) {
            reported = done;
            pthread_mutex_unlock(&st->mutex);
            int stop = report_progress(opt, done, st->model->trials, RS_PHASE_SAMPLING);
            pthread_mutex_lock(&st->mutex);
            if (stop) {
                st->cancelled = 1;
                atomic_store(&st->stop, 1);
            }
            continue;
        }
        if (st->running == 0)
            break;
        pthread_cond_wait(&st->changed, &st->mutex);
    }
    pthread_mutex_unlock(&st->mutex);
}

/* Runs the sampling on the calling thread alone (threads == 1). */
static rs_err sample_inline(run_state *st, const rs_run_options *opt)
{
    chunk_scratch scratch;
    rs_err err = scratch_init(&scratch, st->store->chunk);
    for (size_t c = 0; err == RS_OK && c < st->store->nchunks; c++) {
        if (cancel_requested(st->cancel)) {
            err = RS_ECANCELLED;
            break;
        }
        err = sample_chunk(st->model, st->store, c, &scratch);
        if (err != RS_OK)
            break;
        st->trials_done += rs_store_chunk_len(st->store, c);
        if (report_progress(opt, st->trials_done, st->model->trials, RS_PHASE_SAMPLING))
            err = RS_ECANCELLED;
    }
    scratch_free(&scratch);
    return err;
}

/* Runs the sampling on `threads` worker threads while the calling thread reports progress. */
static rs_err sample_threaded(run_state *st, const rs_run_options *opt, unsigned threads)
{
    pthread_t *tids = malloc(threads * sizeof(pthread_t));
    if (tids == NULL)
        return RS_ENOMEM;
    rs_err err = RS_OK;
    unsigned started = 0;
    pthread_mutex_lock(&st->mutex);
    for (; started < threads; started++) {
        if (pthread_create(&tids[started], NULL, sample_worker, st) != 0) {
            err = RS_ETHREAD;
            atomic_store(&st->stop, 1);
            break;
        }
        st->running++;
    }
    pthread_mutex_unlock(&st->mutex);
    coordinate(st, opt);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    if (err == RS_OK)
        err = st->err;
    if (err == RS_OK && (st->cancelled || st->trials_done < st->model->trials))
        err = RS_ECANCELLED;
    return err;
}

/* The chunk size a run uses: the option (default DEFAULT_CHUNK_TRIALS), but never more than
 * the trials, so no buffer is sized for trials that do not exist. */
static uint32_t run_chunk(const rs_model *model, const rs_run_options *opt)
{
    uint32_t chunk = opt->chunk_trials == 0 ? DEFAULT_CHUNK_TRIALS : opt->chunk_trials;
    return (uint64_t)chunk > model->trials ? (uint32_t)model->trials : chunk;
}

static rs_err check_options(const rs_run_options *opt)
{
    if (opt->threads > RS_MAX_THREADS || opt->chunk_trials > RS_MAX_CHUNK_TRIALS)
        return RS_EINVAL;
    return RS_OK;
}

static double elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* Samples every trial into store; *sampled tells how many were (all unless stopped). */
static rs_err sample_all(const rs_model *model, const rs_run_options *opt, unsigned threads,
                         rs_store *store, uint64_t *sampled)
{
    rs_err err = RS_ETHREAD;
    run_state st;
    memset(&st, 0, sizeof(st));
    st.model = model;
    st.store = store;
    st.cancel = opt->cancel;
    atomic_init(&st.next_chunk, 0);
    atomic_init(&st.stop, 0);
    if (threads == 1) {
        err = sample_inline(&st, opt);
    } else if (pthread_mutex_init(&st.mutex, NULL) == 0) {
        if (pthread_cond_init(&st.changed, NULL) == 0) {
            err = sample_threaded(&st, opt, threads);
            pthread_cond_destroy(&st.changed);
        }
        pthread_mutex_destroy(&st.mutex);
    }
    *sampled = st.trials_done;
    return err;
}

rs_err rs_simulate(const rs_model *model, const rs_run_options *options, rs_result **out)
{
    static const rs_run_options defaults = {0};
    const rs_run_options *opt = options != NULL ? options : &defaults;
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    if (model == NULL || check_options(opt) != RS_OK)
        return RS_EINVAL;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned threads = opt->threads == 0 ? 1 : opt->threads;
    unsigned sampling_threads = threads;
    uint32_t chunk = run_chunk(model, opt);
    if ((uint64_t)sampling_threads > (model->trials + chunk - 1) / chunk)
        sampling_threads = (unsigned)((model->trials + chunk - 1) / chunk);

    rs_store store = {0};
    rs_result *result = NULL;
    uint64_t sampled = 0;
    rs_err err = store_init(&store, model, chunk);
    if (err != RS_OK)
        goto out;
    if (cancel_requested(opt->cancel) ||
        report_progress(opt, 0, model->trials, RS_PHASE_SAMPLING)) {
        err = RS_ECANCELLED;
        goto out;
    }
    err = sample_all(model, opt, sampling_threads, &store, &sampled);
    if (err != RS_OK)
        goto out;
    aggregation_ctx agg = {opt, model->trials};
    if (cancel_requested(opt->cancel) ||
        (opt->progress != NULL && report_nodes(&agg, 0, model->nnodes))) {
        err = RS_ECANCELLED;
        goto out;
    }
    result = rs_result_alloc(model);
    if (result == NULL) {
        err = RS_ENOMEM;
        goto out;
    }
    rs_stats_options stats = {threads, opt->cancel, opt->progress ? report_nodes : NULL, &agg};
    err = rs_stats_compute(model, &store, &stats, result);
    if (err != RS_OK)
        goto out;
    result->duration_ms = elapsed_ms(&start);
    *out = result;
    result = NULL;
out:
    if (opt->trials_sampled != NULL)
        *opt->trials_sampled = sampled;
    rs_result_free(result);
    store_free(&store);
    return err;
}

uint64_t rs_model_memory_estimate(const rs_model *model, const rs_run_options *options)
{
    static const rs_run_options defaults = {0};
    const rs_run_options *opt = options != NULL ? options : &defaults;
    if (model == NULL)
        return 0;
    uint64_t n = model->trials;
    uint32_t chunk = run_chunk(model, opt);
    unsigned threads = opt->threads == 0 ? 1 : opt->threads;
    double chunks = (double)((n + chunk - 1) / chunk);
    double leaf_bytes = 0.0;
    for (size_t l = 0; l < model->nleaves; l++) {
        const rs_node *leaf = &model->nodes[model->leaves[l]];
        double p_loss = leaf->freq.kind == RS_FREQ_BERNOULLI
                            ? leaf->freq.p
                            : 1.0 - exp(-leaf->freq.poisson.lambda);
        /* packed losses, one bit per trial, and per chunk the segment record plus the
         * allocator's overhead of its two blocks */
        leaf_bytes += (double)n * p_loss * 8.0 + (double)n / 8.0 + chunks * 56.0 +
                      (double)leaf->freq.poisson.n * 8.0; /* the Poisson table */
        if (leaf->sev.kind == RS_SEV_PERT)
            leaf_bytes += (double)rs_pert_table_bytes(&leaf->sev.u.pert);
    }
    /* per thread: sampling scratch (a chunk of losses and bits) and the statistics buffers */
    double thread_bytes =
        (double)threads * ((double)chunk * 8.125 + (double)rs_stats_thread_bytes(model, chunk));
    double result_bytes =
        (double)model->nnodes *
        ((double)sizeof(rs_node_stats) + (3.0 * RS_MAX_QUANTILES + 2.0 * RS_LEC_POINTS) * 8.0);
    return (uint64_t)(leaf_bytes + thread_bytes + result_bytes);
}
