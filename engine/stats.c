/*
 * The statistics phase of a simulation run: from sampled leaf losses to every node's result.
 *
 * Why this file exists: the result of API.md section 2 needs, per node, the distribution of
 * its per-trial loss. Leaves are stored sparse (simulate.c); a portfolio's loss in a trial is
 * the sum of its children's, recomputed chunk by chunk in a fixed order (first child first) so
 * it is the same number whatever the chunking. Each node takes two passes over its trials in
 * trial order (so every floating-point sum has one fixed order):
 *   pass 1: sum, maximum, count and a copy of the nonzero losses; order statistics of that
 *           copy give the quantiles, and a binned count gives the loss exceedance curve;
 *   pass 2: the spread around the mean, the tail sums (TVaR) and, for a portfolio, each
 *           child's sum over the portfolio's tail trials (tail contributions).
 * Nodes are independent of each other, so threads take whole nodes.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* Neumaier's compensated sum: accurate, and deterministic for a fixed order of additions. */
typedef struct ksum {
    double sum, comp;
} ksum;

static inline void ksum_add(ksum *k, double x)
{
    double t = k->sum + x;
    if (fabs(k->sum) >= fabs(x))
        k->comp += (k->sum - t) + x;
    else
        k->comp += (x - t) + k->sum;
    k->sum = t;
}

static inline double ksum_value(const ksum *k)
{
    return k->sum + k->comp;
}

uint64_t rs_quantile_rank(double q, uint64_t n)
{
    double x = q * (double)n;
    double r = nearbyint(x);
    uint64_t k = fabs(x - r) <= 1e-9 * (r > 1.0 ? r : 1.0) ? (uint64_t)r : (uint64_t)ceil(x);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return k;
}

/* ------------------------------------------------------------------------------------------
 * Chunk values of a node
 * ---------------------------------------------------------------------------------------- */

static const rs_segment *leaf_segment(const rs_store *store, const rs_node *leaf, size_t chunk)
{
    return &store->segs[(size_t)leaf->leaf_index * store->nchunks + chunk];
}

/* Adds a leaf's losses of one chunk into out (trials without a loss add nothing). */
static void add_segment(double *out, const rs_segment *seg, uint32_t len)
{
    if (seg->nnz == 0)
        return;
    uint32_t k = 0;
    for (uint32_t w = 0; w * 64u < len; w++) {
        uint64_t bits = seg->bits[w];
        while (bits != 0) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            out[w * 64u + b] += seg->losses[k++];
            bits &= bits - 1;
        }
    }
}

/* Writes the per-trial losses of node over chunk c into stack[level] (len values); deeper
 * levels of stack are scratch for the children. Children are added first to last. */
static void node_chunk_values(const rs_model *model, const rs_store *store, const rs_node *node,
                              size_t c, uint32_t len, double **stack, uint32_t level)
{
    double *out = stack[level];
    memset(out, 0, (size_t)len * sizeof(double));
    if (node->is_leaf) {
        add_segment(out, leaf_segment(store, node, c), len);
        return;
    }
    for (uint32_t i = 0; i < node->nchildren; i++) {
        const rs_node *child = &model->nodes[node->children[i]];
        if (child->is_leaf) {
            add_segment(out, leaf_segment(store, child, c), len);
            continue;
        }
        node_chunk_values(model, store, child, c, len, stack, level + 1);
        const double *in = stack[level + 1];
        for (uint32_t t = 0; t < len; t++)
            out[t] += in[t];
    }
}

/* ------------------------------------------------------------------------------------------
 * Order statistics
 * ---------------------------------------------------------------------------------------- */

static inline void swap_d(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges v[lo..hi) so that v[k] is the value a full sort would put there, smaller or equal
 * values before it and greater or equal after. Three-way partitioning keeps runs of equal
 * values (constant severities) linear. */
static void select_kth(double *v, size_t lo, size_t hi, size_t k)
{
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        double a = v[lo], b = v[mid], c = v[hi - 1];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < pivot)
                swap_d(&v[lt++], &v[i++]);
            else if (v[i] > pivot)
                swap_d(&v[i], &v[--gt]);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
}

/* Sorted positions wanted, largest first, each selected within the part left of the
 * previous one. */
static int cmp_size_desc(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* Fills quantiles[j] for every level from the nonzero losses buf[0..nnz) of a node with n
 * trials (the other n - nnz trials lost 0). Reorders buf. */
static void compute_quantiles(double *buf, uint64_t nnz, uint64_t n, const double *levels,
                              size_t nlevels, double *quantiles)
{
    size_t pos[RS_MAX_QUANTILES];
    size_t npos = 0;
    uint64_t zeros = n - nnz;
    for (size_t j = 0; j < nlevels; j++) {
        uint64_t k = rs_quantile_rank(levels[j], n);
        if (k > zeros)
            pos[npos++] = (size_t)(k - zeros - 1);
    }
    qsort(pos, npos, sizeof(size_t), cmp_size_desc);
    size_t hi = (size_t)nnz;
    for (size_t i = 0; i < npos; i++) {
        if (i > 0 && pos[i] == pos[i - 1])
            continue;
        select_kth(buf, 0, hi, pos[i]);
        hi = pos[i]; /* the selected value stays where it is; smaller ones lie left of it */
    }
    for (size_t j = 0; j < nlevels; j++) {
        uint64_t k = rs_quantile_rank(levels[j], n);
        quantiles[j] = k > zeros ? buf[k - zeros - 1] : 0.0;
    }
}

/* ------------------------------------------------------------------------------------------
 * Loss exceedance curve
 * ---------------------------------------------------------------------------------------- */

/* Ticks: 0, then RS_LEC_POINTS - 1 points spaced evenly in log(loss) from lo to the maximum
 * loss, lo being the smallest loss but at most 6 decades below the maximum. */
static void lec_ticks(double min_loss, double max_loss, double *ticks)
{
    double hi = max_loss > 0.0 ? max_loss : 1.0;
    double lo = max_loss > 0.0 ? min_loss : 0.1;
    if (lo < hi * 1e-6)
        lo = hi * 1e-6;
    if (!(lo < hi))
        lo = hi / 10.0;
    const int n = RS_LEC_POINTS - 1;
    double step = (log(hi) - log(lo)) / (n - 1);
    ticks[0] = 0.0;
    for (int i = 0; i < n; i++)
        ticks[i + 1] = exp(log(lo) + step * i);
    ticks[1] = lo;
    ticks[n] = hi;
}

/* Number of ticks[1..] that are <= x (ticks ascending). */
static size_t ticks_at_or_below(const double *ticks, double x)
{
    size_t lo = 1, hi = RS_LEC_POINTS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ticks[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* exceedance[i] = share of the n trials with loss >= ticks[i] (i >= 1); exceedance[0] is
 * P(loss > 0). */
static void compute_lec(const double *buf, uint64_t nnz, uint64_t n, const double *ticks,
                        double *exceedance)
{
    uint64_t counts[RS_LEC_POINTS + 1] = {0};
    for (uint64_t i = 0; i < nnz; i++)
        counts[ticks_at_or_below(ticks, buf[i])]++;
    /* a loss with j ticks at or below it exceeds ticks 1..j */
    uint64_t above = 0;
    for (size_t i = RS_LEC_POINTS - 1; i >= 1; i--) {
        above += counts[i];
        exceedance[i] = (double)above / (double)n;
    }
    exceedance[0] = (double)nnz / (double)n;
}

/* ------------------------------------------------------------------------------------------
 * One node
 * ---------------------------------------------------------------------------------------- */

typedef struct node_work {
    const rs_model *model;
    const rs_store *store;
    rs_result *result;
    double **stack; /* model->height + 1 chunk buffers */
} node_work;

/* Pass 1: fills buf with the node's nonzero losses; returns their count; sets sum/min/max. */
static uint64_t pass_collect(const node_work *w, const rs_node *node, double *buf, ksum *sum,
                             double *min_loss, double *max_loss)
{
    uint64_t nnz = 0;
    double lo = INFINITY, hi = 0.0;
    for (size_t c = 0; c < w->store->nchunks; c++) {
        uint32_t len = rs_store_chunk_len(w->store, c);
        node_chunk_values(w->model, w->store, node, c, len, w->stack, 0);
        const double *v = w->stack[0];
        for (uint32_t t = 0; t < len; t++) {
            double x = v[t];
            if (x > 0.0) {
                ksum_add(sum, x);
                buf[nnz++] = x;
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
        }
    }
    *min_loss = nnz > 0 ? lo : 0.0;
    *max_loss = hi;
    return nnz;
}

/* Pass 2 accumulators of one node. */
typedef struct tail_sums {
    ksum spread;                      /* sum of (x - mean)^2 over the nonzero trials */
    ksum tail[RS_MAX_QUANTILES];      /* sum of losses at or above each quantile */
    uint64_t count[RS_MAX_QUANTILES]; /* number of such trials */
} tail_sums;

/* Adds the tail sums of child for portfolio values p over one chunk. */
static void add_child_tails(const double *p, const double *child, uint32_t len, const double *var,
                            size_t nlevels, ksum *contrib)
{
    for (uint32_t t = 0; t < len; t++) {
        if (child[t] == 0.0)
            continue;
        for (size_t j = 0; j < nlevels; j++)
            if (p[t] >= var[j])
                ksum_add(&contrib[j], child[t]);
    }
}

/* Pass 2 for node: spread, tail sums, and for a portfolio each child's tail sums (written to
 * contrib[child * nlevels + j]). */
static void pass_tails(const node_work *w, const rs_node *node, double mean, const double *var,
                       tail_sums *ts, ksum *contrib)
{
    size_t nlevels = w->model->nlevels;
    for (size_t c = 0; c < w->store->nchunks; c++) {
        uint32_t len = rs_store_chunk_len(w->store, c);
        node_chunk_values(w->model, w->store, node, c, len, w->stack, 0);
        const double *v = w->stack[0];
        for (uint32_t t = 0; t < len; t++) {
            double x = v[t];
            if (x > 0.0)
                ksum_add(&ts->spread, (x - mean) * (x - mean));
            for (size_t j = 0; j < nlevels; j++) {
                if (x >= var[j]) {
                    ksum_add(&ts->tail[j], x);
                    ts->count[j]++;
                }
            }
        }
        for (uint32_t i = 0; !node->is_leaf && i < node->nchildren; i++) {
            const rs_node *child = &w->model->nodes[node->children[i]];
            node_chunk_values(w->model, w->store, child, c, len, w->stack, 1);
            add_child_tails(v, w->stack[1], len, var, nlevels, &contrib[i * nlevels]);
        }
    }
}

/* Number of losses pass 1 may collect for node: at most the trials, at most the leaves'
 * stored losses below it. */
static uint64_t node_capacity(const node_work *w, const rs_node *node)
{
    uint64_t total = 0;
    size_t first = (size_t)(node - w->model->nodes);
    for (size_t i = first; i < w->model->nnodes; i++) {
        const rs_node *d = &w->model->nodes[i];
        if (i > first && d->depth <= node->depth)
            break; /* preorder: the subtree ends at the next node no deeper than node */
        if (!d->is_leaf)
            continue;
        for (size_t c = 0; c < w->store->nchunks; c++)
            total += leaf_segment(w->store, d, c)->nnz;
        if (total >= w->store->trials)
            return w->store->trials;
    }
    return total;
}

/* Computes every statistic of node index ni. Returns RS_OK or RS_ENOMEM. */
static rs_err compute_node(const node_work *w, size_t ni)
{
    const rs_model *m = w->model;
    const rs_node *node = &m->nodes[ni];
    rs_node_stats *st = &w->result->nodes[ni];
    uint64_t n = m->trials;
    size_t nl = m->nlevels;
    uint64_t cap = node_capacity(w, node);
    double *buf = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(double));
    ksum *contrib =
        calloc((size_t)(node->nchildren > 0 ? node->nchildren : 1) * (nl ? nl : 1), sizeof(ksum));
    tail_sums *ts = calloc(1, sizeof(tail_sums));
    rs_err err = RS_ENOMEM;
    if (buf == NULL || contrib == NULL || ts == NULL)
        goto out;

    ksum sum = {0, 0};
    double min_loss, max_loss;
    uint64_t nnz = pass_collect(w, node, buf, &sum, &min_loss, &max_loss);
    double mean = ksum_value(&sum) / (double)n;
    st->mean = mean;
    st->max = max_loss;
    st->probability_of_loss = (double)nnz / (double)n;
    double *quantiles = (double *)st->quantiles;
    compute_quantiles(buf, nnz, n, m->levels, nl, quantiles);
    double *ticks = (double *)st->lec_loss;
    lec_ticks(min_loss, max_loss, ticks);
    compute_lec(buf, nnz, n, ticks, (double *)st->lec_exceedance);

    pass_tails(w, node, mean, quantiles, ts, contrib);
    double spread = ksum_value(&ts->spread) + (double)(n - nnz) * mean * mean;
    st->stddev = n > 1 ? sqrt(spread / (double)(n - 1)) : 0.0;
    st->standard_error = st->stddev / sqrt((double)n);
    double *tvar = (double *)st->tvar;
    for (size_t j = 0; j < nl; j++)
        tvar[j] = ts->count[j] > 0 ? ksum_value(&ts->tail[j]) / (double)ts->count[j] : 0.0;
    for (uint32_t i = 0; i < node->nchildren; i++) {
        double *share = (double *)w->result->nodes[node->children[i]].tail_contribution;
        for (size_t j = 0; j < nl; j++) {
            double total = ksum_value(&ts->tail[j]);
            share[j] = total > 0.0 ? ksum_value(&contrib[i * nl + j]) / total : NAN;
        }
    }
    err = RS_OK;
out:
    free(buf);
    free(contrib);
    free(ts);
    return err;
}

/* ------------------------------------------------------------------------------------------
 * Threads over nodes
 * ---------------------------------------------------------------------------------------- */

typedef struct stats_state {
    const rs_model *model;
    const rs_store *store;
    rs_result *result;
    const atomic_int *cancel;
    atomic_size_t next_node;
    atomic_int err; /* first error (rs_err) */
} stats_state;

static void free_stack(double **stack, size_t levels)
{
    if (stack == NULL)
        return;
    for (size_t i = 0; i < levels; i++)
        free(stack[i]);
    free(stack);
}

static double **alloc_stack(size_t levels, uint32_t chunk)
{
    double **stack = calloc(levels, sizeof(double *));
    if (stack == NULL)
        return NULL;
    for (size_t i = 0; i < levels; i++) {
        stack[i] = malloc((size_t)chunk * sizeof(double));
        if (stack[i] == NULL) {
            free_stack(stack, levels);
            return NULL;
        }
    }
    return stack;
}

static void *stats_worker(void *arg)
{
    stats_state *st = arg;
    size_t levels = (size_t)st->model->height + 1;
    node_work w = {st->model, st->store, st->result, alloc_stack(levels, st->store->chunk)};
    if (w.stack == NULL) {
        int expected = RS_OK;
        atomic_compare_exchange_strong(&st->err, &expected, RS_ENOMEM);
        return NULL;
    }
    while (atomic_load(&st->err) == RS_OK) {
        if (st->cancel != NULL && atomic_load(st->cancel) != 0) {
            int expected = RS_OK;
            atomic_compare_exchange_strong(&st->err, &expected, RS_ECANCELLED);
            break;
        }
        size_t ni = atomic_fetch_add(&st->next_node, 1);
        if (ni >= st->model->nnodes)
            break;
        rs_err err = compute_node(&w, ni);
        if (err != RS_OK) {
            int expected = RS_OK;
            atomic_compare_exchange_strong(&st->err, &expected, (int)err);
        }
    }
    free_stack(w.stack, levels);
    return NULL;
}

rs_err rs_stats_compute(const rs_model *model, const rs_store *store, unsigned threads,
                        const atomic_int *cancel, rs_result *result)
{
    stats_state st = {.model = model, .store = store, .result = result, .cancel = cancel};
    atomic_init(&st.next_node, 0);
    atomic_init(&st.err, RS_OK);
    if (threads > model->nnodes)
        threads = (unsigned)model->nnodes;
    if (threads <= 1) {
        stats_worker(&st);
        return (rs_err)atomic_load(&st.err);
    }
    pthread_t *tids = malloc(threads * sizeof(pthread_t));
    if (tids == NULL)
        return RS_ENOMEM;
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, stats_worker, &st) != 0)
            break;
    if (started == 0)
        stats_worker(&st); /* no thread could start: do the work here */
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    return (rs_err)atomic_load(&st.err);
}

/* ------------------------------------------------------------------------------------------
 * The result object
 * ---------------------------------------------------------------------------------------- */

rs_result *rs_result_alloc(const rs_model *model)
{
    rs_result *r = calloc(1, sizeof(rs_result));
    if (r == NULL)
        return NULL;
    size_t nl = model->nlevels;
    size_t per_node = 3 * nl + 2 * RS_LEC_POINTS;
    r->nodes = calloc(model->nnodes, sizeof(rs_node_stats));
    r->arena = calloc(model->nnodes * per_node, sizeof(double));
    if (r->nodes == NULL || r->arena == NULL) {
        rs_result_free(r);
        return NULL;
    }
    r->trials = model->trials;
    r->seed = model->seed;
    r->nlevels = nl;
    memcpy(r->levels, model->levels, nl * sizeof(double));
    r->nnodes = model->nnodes;
    for (size_t i = 0; i < model->nnodes; i++) {
        const rs_node *node = &model->nodes[i];
        rs_node_stats *st = &r->nodes[i];
        double *a = r->arena + i * per_node;
        st->id = node->id;
        st->name = node->name;
        st->is_leaf = node->is_leaf;
        st->parent_id = node->parent >= 0 ? model->nodes[node->parent].id : NULL;
        st->depth = node->depth;
        st->quantiles = a;
        st->tvar = a + nl;
        st->tail_contribution = node->parent >= 0 ? a + 2 * nl : NULL;
        st->lec_count = RS_LEC_POINTS;
        st->lec_loss = a + 3 * nl;
        st->lec_exceedance = a + 3 * nl + RS_LEC_POINTS;
    }
    return r;
}

void rs_result_free(rs_result *result)
{
    if (result == NULL)
        return;
    free(result->nodes);
    free(result->arena);
    free(result);
}

size_t rs_result_node_count(const rs_result *result)
{
    return result == NULL ? 0 : result->nnodes;
}

const rs_node_stats *rs_result_node(const rs_result *result, size_t i)
{
    return result == NULL || i >= result->nnodes ? NULL : &result->nodes[i];
}

size_t rs_result_level_count(const rs_result *result)
{
    return result == NULL ? 0 : result->nlevels;
}

const double *rs_result_levels(const rs_result *result)
{
    return result == NULL ? NULL : result->levels;
}

double rs_result_duration_ms(const rs_result *result)
{
    return result == NULL ? 0.0 : result->duration_ms;
}
