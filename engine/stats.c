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

/* ------------------------------------------------------------------------------------------
 * Loss exceedance curve and binning
 *
 * Every nonzero loss is put in the bin of the LEC ticks it falls between. The bin counts give
 * the curve, and they also say in which bin each wanted quantile lies, so the order statistics
 * only need to look at a few small bins instead of the whole array.
 * ---------------------------------------------------------------------------------------- */

/* Ticks: 0, then RS_LEC_POINTS - 1 points spaced evenly in log(loss) from lo to the maximum
 * loss, lo being the smallest loss, but at least one and at most six decades below the
 * maximum. */
static void lec_ticks(double min_loss, double max_loss, double *ticks)
{
    double hi = max_loss > 0.0 ? max_loss : 1.0;
    double lo = max_loss > 0.0 ? min_loss : 0.1;
    if (lo < hi * 1e-6)
        lo = hi * 1e-6;
    if (!(lo < hi / 10.0))
        lo = hi / 10.0; /* at least one decade, so the ticks stay distinct */
    const int n = RS_LEC_POINTS - 1;
    double step = (log(hi) - log(lo)) / (n - 1);
    ticks[0] = 0.0;
    for (int i = 0; i < n; i++)
        ticks[i + 1] = exp(log(lo) + step * i);
    ticks[1] = lo;
    ticks[n] = hi;
}

/* A fast, monotone approximation of log2(x) for x > 0 (absolute error below 0.01): the
 * exponent bits plus a quadratic fit of log2(1 + m) on the mantissa. */
static inline double approx_log2(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    double e = (double)((int64_t)(bits >> 52) - 1023);
    double m = (double)(bits & 0xFFFFFFFFFFFFFull) / 4503599627370496.0;
    return e + m + 0.3466 * m * (1.0 - m);
}

/* How a loss maps to its bin. */
typedef struct lec_scale {
    const double *ticks;
    double log2_lo, inv_step;
} lec_scale;

static lec_scale make_scale(const double *ticks)
{
    lec_scale sc = {ticks, approx_log2(ticks[1]), 0.0};
    sc.inv_step = (RS_LEC_POINTS - 2) / (approx_log2(ticks[RS_LEC_POINTS - 1]) - sc.log2_lo);
    return sc;
}

/* Bin of x: the number of ticks[1..] that are <= x. The logarithm only guesses; comparisons
 * with the ticks decide, so the bin is exact whatever the error of the guess. */
static inline uint8_t tick_bin(const lec_scale *sc, double x)
{
    double guess = (approx_log2(x) - sc->log2_lo) * sc->inv_step + 1.0;
    size_t i = guess <= 0.0 ? 0 : (guess >= RS_LEC_POINTS - 1 ? RS_LEC_POINTS - 1 : (size_t)guess);
    while (i > 0 && sc->ticks[i] > x)
        i--;
    while (i + 1 < RS_LEC_POINTS && sc->ticks[i + 1] <= x)
        i++;
    return (uint8_t)i;
}

/* Writes each loss's bin to bins[] and the count of each bin to counts[0..RS_LEC_POINTS). */
static void bin_losses(const double *buf, uint64_t nnz, const double *ticks, uint8_t *bins,
                       uint64_t *counts)
{
    lec_scale sc = make_scale(ticks);
    memset(counts, 0, RS_LEC_POINTS * sizeof(uint64_t));
    for (uint64_t i = 0; i < nnz; i++) {
        bins[i] = tick_bin(&sc, buf[i]);
        counts[bins[i]]++;
    }
}

/* exceedance[i] = share of the n trials with loss >= ticks[i] (i >= 1); exceedance[0] is
 * P(loss > 0). A loss in bin j exceeds ticks 1..j. */
static void lec_from_counts(const uint64_t *counts, uint64_t nnz, uint64_t n, double *exceedance)
{
    uint64_t above = 0;
    for (size_t i = RS_LEC_POINTS - 1; i >= 1; i--) {
        above += counts[i];
        exceedance[i] = (double)above / (double)n;
    }
    exceedance[0] = (double)nnz / (double)n;
}

/* ------------------------------------------------------------------------------------------
 * Quantiles from the bins
 * ---------------------------------------------------------------------------------------- */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* The sorted positions (0-based among the nonzero losses) the levels need, ascending and
 * without repeats. Returns their number. */
static size_t wanted_positions(uint64_t nnz, uint64_t n, const double *levels, size_t nlevels,
                               size_t *pos)
{
    size_t npos = 0;
    uint64_t zeros = n - nnz;
    for (size_t j = 0; j < nlevels; j++) {
        uint64_t k = rs_quantile_rank(levels[j], n);
        if (k > zeros)
            pos[npos++] = (size_t)(k - zeros - 1);
    }
    qsort(pos, npos, sizeof(size_t), cmp_size);
    size_t unique = 0;
    for (size_t i = 0; i < npos; i++)
        if (unique == 0 || pos[i] != pos[unique - 1])
            pos[unique++] = pos[i];
    return unique;
}

/* Selects every wanted position directly in buf (smallest first, each right of the previous
 * one). Used when the wanted bins hold too many losses to copy. */
static void select_in_place(double *buf, size_t nnz, const size_t *pos, size_t npos, double *found)
{
    size_t lo = 0;
    for (size_t i = 0; i < npos; i++) {
        select_kth(buf, lo, nnz, pos[i]);
        found[i] = buf[pos[i]];
        lo = pos[i] + 1;
    }
}

/* Finds the value at each wanted position pos[0..npos) (ascending) of the sorted nonzero
 * losses, into found[]. The bins say which bins hold wanted positions; one pass copies those
 * bins' losses, grouped by bin, into a small array where the selection runs. Returns RS_OK or
 * RS_ENOMEM. */
static rs_err select_positions(double *buf, const uint8_t *bins, const uint64_t *counts, size_t nnz,
                               const size_t *pos, size_t npos, double *found, int *reordered)
{
    size_t first[RS_LEC_POINTS]; /* sorted position of each bin's first loss */
    size_t slot[RS_LEC_POINTS];  /* where the next copied loss of a wanted bin goes */
    unsigned char wanted[RS_LEC_POINTS] = {0};
    size_t total = 0, at = 0;
    for (size_t b = 0, i = 0; b < RS_LEC_POINTS; b++) {
        first[b] = at;
        at += (size_t)counts[b];
        while (i < npos && pos[i] < at) {
            wanted[b] = 1;
            i++;
        }
        if (wanted[b]) {
            slot[b] = total;
            total += (size_t)counts[b];
        }
    }
    *reordered = total > nnz / 4;
    if (*reordered) {
        select_in_place(buf, nnz, pos, npos, found);
        return RS_OK;
    }
    double *copy = malloc((total > 0 ? total : 1) * sizeof(double));
    if (copy == NULL)
        return RS_ENOMEM;
    size_t start[RS_LEC_POINTS];
    for (size_t b = 0; b < RS_LEC_POINTS; b++)
        start[b] = slot[b];
    for (size_t i = 0; i < nnz; i++)
        if (wanted[bins[i]])
            copy[slot[bins[i]]++] = buf[i];
    size_t b = 0, lo = 0;
    for (size_t i = 0; i < npos; i++) {
        while (pos[i] >= first[b] + counts[b]) {
            b++;
            lo = start[b];
        }
        size_t k = start[b] + (pos[i] - first[b]);
        select_kth(copy, lo, start[b] + (size_t)counts[b], k);
        found[i] = copy[k];
        lo = k + 1;
    }
    free(copy);
    return RS_OK;
}

/* Fills quantiles[j] for every level from the nonzero losses buf[0..nnz) of a node with n
 * trials (the other n - nnz trials lost 0), binned by bin_losses. Sets *reordered when it
 * had to reorder buf (only when the wanted bins hold over a quarter of the losses). Returns
 * RS_OK or RS_ENOMEM. */
static rs_err compute_quantiles(double *buf, const uint8_t *bins, const uint64_t *counts,
                                uint64_t nnz, uint64_t n, const double *levels, size_t nlevels,
                                double *quantiles, int *reordered)
{
    size_t pos[RS_MAX_QUANTILES];
    double found[RS_MAX_QUANTILES];
    size_t npos = wanted_positions(nnz, n, levels, nlevels, pos);
    rs_err err = select_positions(buf, bins, counts, (size_t)nnz, pos, npos, found, reordered);
    if (err != RS_OK)
        return err;
    uint64_t zeros = n - nnz;
    for (size_t j = 0; j < nlevels; j++) {
        uint64_t k = rs_quantile_rank(levels[j], n);
        quantiles[j] = 0.0;
        for (size_t i = 0; k > zeros && i < npos; i++)
            if (pos[i] == (size_t)(k - zeros - 1))
                quantiles[j] = found[i];
    }
    return RS_OK;
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

/* Pass-1 accumulators: the sum and range of the nonzero losses, which are copied to buf. */
typedef struct collect {
    double *buf;
    uint64_t *nz; /* portfolios: bit t set when trial t+1 had a loss (NULL for leaves) */
    uint64_t nnz;
    ksum sum;
    double lo, hi;
} collect;

static inline void collect_value(collect *c, double x)
{
    ksum_add(&c->sum, x);
    c->buf[c->nnz++] = x;
    c->lo = x < c->lo ? x : c->lo;
    c->hi = x > c->hi ? x : c->hi;
}

/* Pass 1: collects the node's nonzero losses in trial order (a leaf's straight from its
 * segments, a portfolio's from its recomputed chunk values). */
static void pass_collect(const node_work *w, const rs_node *node, collect *c)
{
    c->nnz = 0;
    c->lo = INFINITY;
    c->hi = 0.0;
    for (size_t k = 0; k < w->store->nchunks; k++) {
        if (node->is_leaf) {
            const rs_segment *seg = leaf_segment(w->store, node, k);
            for (uint32_t i = 0; i < seg->nnz; i++)
                collect_value(c, seg->losses[i]);
            continue;
        }
        uint32_t len = rs_store_chunk_len(w->store, k);
        uint64_t base = (uint64_t)k * w->store->chunk;
        node_chunk_values(w->model, w->store, node, k, len, w->stack, 0);
        const double *v = w->stack[0];
        for (uint32_t t = 0; t < len; t++) {
            if (v[t] > 0.0) {
                collect_value(c, v[t]);
                c->nz[(base + t) / 64] |= (uint64_t)1 << ((base + t) % 64);
            }
        }
    }
    if (c->nnz == 0)
        c->lo = 0.0;
}

/* The levels' quantiles sorted ascending cut the losses into bands: band b holds the losses
 * that reach exactly the b smallest quantiles (band 0: none). A loss adds to one band sum; a
 * level's tail sum is the sum of the bands that reach it. This keeps pass 2 at one addition
 * per loss whatever the number of levels. Levels whose quantile is 0 take every trial: their
 * tail is the pass-1 sum, so only the positive quantiles make bands. */
typedef struct bands {
    double cut[RS_MAX_QUANTILES]; /* positive quantiles, ascending */
    size_t ncut;
} bands;

static void bands_init(bands *bd, const double *var, size_t nlevels)
{
    bd->ncut = 0;
    for (size_t j = 0; j < nlevels; j++) {
        if (!(var[j] > 0.0))
            continue;
        size_t i = bd->ncut++;
        while (i > 0 && bd->cut[i - 1] > var[j]) {
            bd->cut[i] = bd->cut[i - 1];
            i--;
        }
        bd->cut[i] = var[j];
    }
}

/* Band of loss x: how many cuts it reaches. */
static inline size_t band_of(const bands *bd, double x)
{
    size_t b = 0;
    while (b < bd->ncut && x >= bd->cut[b])
        b++;
    return b;
}

/* Sum of the bands whose losses reach quantile var, highest band first; for var <= 0 every
 * band, band 0 (losses below every positive quantile) included. */
static double band_tail(const bands *bd, const ksum *band_sum, double var)
{
    ksum total = {0, 0};
    for (size_t b = bd->ncut + 1; b-- > 0;)
        if (b == 0 ? !(var > 0.0) : bd->cut[b - 1] >= var)
            ksum_add(&total, ksum_value(&band_sum[b]));
    return ksum_value(&total);
}

/* Number of losses in the bands that reach quantile var > 0. */
static uint64_t band_tail_count(const bands *bd, const uint64_t *band_count, double var)
{
    uint64_t count = 0;
    for (size_t b = bd->ncut; b >= 1; b--)
        if (bd->cut[b - 1] >= var)
            count += band_count[b];
    return count;
}

/* Pass 2 accumulators of one node. */
typedef struct tail_sums {
    ksum spread;                         /* sum of (x - mean)^2 over the nonzero trials */
    ksum band_sum[RS_MAX_QUANTILES + 1]; /* losses per band */
    uint64_t band_count[RS_MAX_QUANTILES + 1];
} tail_sums;

static inline void add_tail_value(tail_sums *ts, const bands *bd, double x, double mean)
{
    size_t b = band_of(bd, x);
    ksum_add(&ts->spread, (x - mean) * (x - mean));
    ksum_add(&ts->band_sum[b], x);
    ts->band_count[b]++;
}

/* Adds child's losses of one chunk to its band sums, the band being the portfolio's band in
 * that trial (band[t]). */
static void add_child_bands(const uint8_t *band, const double *child, uint32_t len, ksum *band_sum)
{
    for (uint32_t t = 0; t < len; t++)
        if (child[t] != 0.0)
            ksum_add(&band_sum[band[t]], child[t]);
}

/* add_child_bands for a leaf child, straight from its segment (same additions, same order). */
static void add_leaf_bands(const uint8_t *band, const rs_segment *seg, uint32_t len, ksum *band_sum)
{
    if (seg->nnz == 0)
        return;
    uint32_t k = 0;
    for (uint32_t w = 0; w * 64u < len; w++) {
        uint64_t bits = seg->bits[w];
        while (bits != 0) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            ksum_add(&band_sum[band[w * 64u + b]], seg->losses[k++]);
            bits &= bits - 1;
        }
    }
}

/* Pass 2 over a leaf: its stored nonzero losses, in trial order. */
static void leaf_tails(const node_work *w, const rs_node *leaf, double mean, const bands *bd,
                       tail_sums *ts)
{
    for (size_t c = 0; c < w->store->nchunks; c++) {
        const rs_segment *seg = leaf_segment(w->store, leaf, c);
        for (uint32_t k = 0; k < seg->nnz; k++)
            add_tail_value(ts, bd, seg->losses[k], mean);
    }
}

/* Pass 2 over a portfolio: its losses (those pass 1 kept, or recomputed when the selection
 * reordered them), and each child's losses per portfolio band
 * (child_bands[child * (RS_MAX_QUANTILES + 1) + band]). band is scratch of chunk size. */
static void portfolio_tails(const node_work *w, const rs_node *node, double mean, const bands *bd,
                            const collect *col, int recompute, tail_sums *ts, ksum *child_bands,
                            uint8_t *band)
{
    uint8_t band0 = (uint8_t)band_of(bd, 0.0);
    uint64_t k = 0; /* next stored loss */
    for (size_t c = 0; c < w->store->nchunks; c++) {
        uint32_t len = rs_store_chunk_len(w->store, c);
        if (recompute) {
            node_chunk_values(w->model, w->store, node, c, len, w->stack, 0);
            const double *v = w->stack[0];
            for (uint32_t t = 0; t < len; t++) {
                band[t] = (uint8_t)band_of(bd, v[t]);
                if (v[t] > 0.0)
                    add_tail_value(ts, bd, v[t], mean);
            }
        } else {
            /* the losses pass 1 kept, still in trial order, and where they were */
            uint64_t base = (uint64_t)c * w->store->chunk;
            for (uint32_t t = 0; t < len; t++) {
                band[t] = band0;
                if ((col->nz[(base + t) / 64] >> ((base + t) % 64)) & 1u) {
                    double x = col->buf[k++];
                    band[t] = (uint8_t)band_of(bd, x);
                    add_tail_value(ts, bd, x, mean);
                }
            }
        }
        for (uint32_t i = 0; i < node->nchildren; i++) {
            const rs_node *child = &w->model->nodes[node->children[i]];
            ksum *sums = &child_bands[(size_t)i * (RS_MAX_QUANTILES + 1)];
            if (child->is_leaf) {
                add_leaf_bands(band, leaf_segment(w->store, child, c), len, sums);
                continue;
            }
            node_chunk_values(w->model, w->store, child, c, len, w->stack, 1);
            add_child_bands(band, w->stack[1], len, sums);
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

/* Writes the TVaR of node and the tail shares of its children from the band sums. A level
 * whose quantile is 0 takes every trial: the node's tail is then its pass-1 sum. */
static void write_tails(const node_work *w, const rs_node *node, const bands *bd, const ksum *sum,
                        const tail_sums *ts, const ksum *child_bands)
{
    const rs_model *m = w->model;
    rs_node_stats *st = &w->result->nodes[node - m->nodes];
    double *tvar = (double *)st->tvar;
    for (size_t j = 0; j < m->nlevels; j++) {
        double var = st->quantiles[j];
        double total = var > 0.0 ? band_tail(bd, ts->band_sum, var) : ksum_value(sum);
        uint64_t count = var > 0.0 ? band_tail_count(bd, ts->band_count, var) : w->store->trials;
        tvar[j] = count > 0 ? total / (double)count : 0.0;
        for (uint32_t i = 0; i < node->nchildren; i++) {
            double part = band_tail(bd, &child_bands[(size_t)i * (RS_MAX_QUANTILES + 1)], var);
            double *share = (double *)w->result->nodes[node->children[i]].tail_contribution;
            share[j] = total > 0.0 ? part / total : NAN;
        }
    }
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
    collect c = {.buf = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(double))};
    if (!node->is_leaf)
        c.nz = calloc((size_t)(n / 64 + 1), sizeof(uint64_t));
    uint8_t *bins = malloc((size_t)(cap > 0 ? cap : 1));
    size_t nchild_bands =
        (size_t)(node->nchildren > 0 ? node->nchildren : 1) * (RS_MAX_QUANTILES + 1);
    ksum *child_bands = calloc(nchild_bands, sizeof(ksum));
    uint8_t *band = malloc(w->store->chunk);
    tail_sums *ts = calloc(1, sizeof(tail_sums));
    rs_err err = RS_ENOMEM;
    if (c.buf == NULL || bins == NULL || child_bands == NULL || band == NULL || ts == NULL ||
        (!node->is_leaf && c.nz == NULL))
        goto out;

    pass_collect(w, node, &c);
    double mean = ksum_value(&c.sum) / (double)n;
    st->mean = mean;
    st->max = c.hi;
    st->probability_of_loss = (double)c.nnz / (double)n;
    double *ticks = (double *)st->lec_loss;
    lec_ticks(c.lo, c.hi, ticks);
    uint64_t counts[RS_LEC_POINTS];
    bin_losses(c.buf, c.nnz, ticks, bins, counts);
    lec_from_counts(counts, c.nnz, n, (double *)st->lec_exceedance);
    double *var = (double *)st->quantiles;
    int reordered = 0;
    err = compute_quantiles(c.buf, bins, counts, c.nnz, n, m->levels, nl, var, &reordered);
    if (err != RS_OK)
        goto out;

    bands bd;
    bands_init(&bd, var, nl);
    if (node->is_leaf)
        leaf_tails(w, node, mean, &bd, ts);
    else
        portfolio_tails(w, node, mean, &bd, &c, reordered, ts, child_bands, band);
    double spread = ksum_value(&ts->spread) + (double)(n - c.nnz) * mean * mean;
    st->stddev = n > 1 ? sqrt(spread / (double)(n - 1)) : 0.0;
    st->standard_error = st->stddev / sqrt((double)n);
    write_tails(w, node, &bd, &c.sum, ts, child_bands);
    err = RS_OK;
out:
    free(c.buf);
    free(c.nz);
    free(bins);
    free(child_bands);
    free(band);
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
