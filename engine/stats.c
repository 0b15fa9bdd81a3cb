/*
 * The statistics phase of a simulation run: from sampled leaf losses to every node's result.
 *
 * Why this file exists: the result of docs/api.md section 2 needs, per node, the distribution of
 * its per-trial loss. Leaves are stored sparse (simulate.c); a portfolio's loss in a trial is
 * the sum of its children's, recomputed chunk by chunk in a fixed order (first child first) so
 * it is the same number whatever the chunking. For each node:
 *   pass 1 copies its nonzero losses in trial order and sums them (the mean);
 *   a bucket pass counts and sums the losses in fine buckets cut by the top bits of their
 *           doubles, and counts them per bin of the loss exceedance curve's ticks (the
 *           curve, the spread around the mean);
 *   the quantiles are selected inside the few buckets that hold them, and each tail sum
 *           (TVaR) is the sums of the buckets above plus a scan of the quantile's bucket;
 *   for a portfolio, a last pass sums each child's losses over the portfolio's tail trials
 *           (tail contributions).
 * Every floating-point sum runs in one fixed order (trial order, or a fixed order of buckets), so
 * results are bit-for-bit the same whatever the threads and chunks. Nodes are independent of
 * each other, so threads take whole nodes.
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

/* Walks a leaf's losses of one chunk in trial order, with each one's offset in the chunk. */
typedef struct seg_walk {
    const rs_segment *seg;
    uint32_t word, nwords, k;
    uint64_t bits;
} seg_walk;

static inline seg_walk seg_walk_start(const rs_segment *seg, uint32_t len)
{
    seg_walk it = {seg, 0, 0, 0, 0};
    if (seg->nnz > 0) {
        it.nwords = (len + 63) / 64;
        it.bits = seg->bits[0];
    }
    return it;
}

/* Sets the next loss and its offset; returns 0 when there is none left. */
static inline int seg_walk_next(seg_walk *it, uint32_t *offset, double *loss)
{
    while (it->bits == 0) {
        if (++it->word >= it->nwords)
            return 0;
        it->bits = it->seg->bits[it->word];
    }
    *offset = it->word * 64u + (uint32_t)__builtin_ctzll(it->bits);
    *loss = it->seg->losses[it->k++];
    it->bits &= it->bits - 1;
    return 1;
}

/* Adds a leaf's losses of one chunk into out (trials without a loss add nothing). */
static void add_segment(double *out, const rs_segment *seg, uint32_t len)
{
    seg_walk it = seg_walk_start(seg, len);
    uint32_t t;
    double x;
    while (seg_walk_next(&it, &t, &x))
        out[t] += x;
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
 * Every nonzero loss is put in the bin of the LEC ticks it falls between, and each bin keeps
 * its count and its sum. The counts give the curve; they also say in which bin each wanted
 * quantile lies, so the order statistics only look at a few small bins; and a tail sum (TVaR)
 * is the sums of the bins above the quantile's bin plus a scan of that one bin.
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

/* Selection buckets. The top bits of a positive double (its exponent and the first 8 bits of
 * its mantissa) order it, so they cut the losses into buckets 1/256 of an octave wide, found
 * with a shift. The buckets span FINE_OCTAVES octaves below the largest loss; smaller losses
 * share bucket 0. A quantile is found by counting, then selecting inside its one small bucket;
 * a loss's LEC bin is its bucket's bin plus one comparison, since LEC ticks lie at least 8
 * buckets apart (99 ticks over at least a decade). */
#define FINE_SHIFT 44
#define FINE_OCTAVES 24
#define FINE_BUCKETS (FINE_OCTAVES * 256 + 1)

typedef struct fine_buckets {
    uint64_t top; /* key of the largest loss */
    uint64_t count[FINE_BUCKETS];
    double sum[FINE_BUCKETS];      /* summed in trial order */
    uint8_t lec_bin[FINE_BUCKETS]; /* LEC bin of the bucket's smallest value */
    double lec_next[FINE_BUCKETS]; /* the next tick: a loss at or above it is one bin up */
    uint8_t slot[FINE_BUCKETS];    /* selection: 1 + index of a wanted bucket, 0 otherwise */
} fine_buckets;

static inline uint64_t fine_key(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits >> FINE_SHIFT;
}

static inline size_t fine_bucket(const fine_buckets *fb, double x)
{
    uint64_t below = fb->top - fine_key(x);
    return below >= FINE_BUCKETS - 1 ? 0 : (size_t)(FINE_BUCKETS - 1 - below);
}

/* Sets the buckets' window below max and maps each bucket to its LEC bin. */
static void fine_init(fine_buckets *fb, double max, const double *ticks)
{
    fb->top = fine_key(max);
    memset(fb->count, 0, sizeof(fb->count));
    memset(fb->sum, 0, sizeof(fb->sum));
    size_t bin = 0; /* ticks[1..bin] <= the bucket's smallest value */
    for (size_t k = 0; k < FINE_BUCKETS; k++) {
        double low = 0.0;
        if (k > 0 && fb->top >= FINE_BUCKETS - 1 - k) {
            uint64_t bits = (fb->top - (FINE_BUCKETS - 1 - k)) << FINE_SHIFT;
            memcpy(&low, &bits, sizeof low);
        }
        while (bin + 1 < RS_LEC_POINTS && ticks[bin + 1] <= low)
            bin++;
        fb->lec_bin[k] = (uint8_t)bin;
        fb->lec_next[k] = bin + 1 < RS_LEC_POINTS ? ticks[bin + 1] : INFINITY;
    }
}

/* The nonzero losses of a node, counted per LEC bin, with their spread around the mean. */
typedef struct loss_bins {
    uint64_t count[RS_LEC_POINTS];
    double spread; /* sum of ((x - mean) / max)^2, in trial order: scaled so that it cannot
                      underflow or overflow whatever the size of the losses */
} loss_bins;

/* One pass over buf[0..nnz) in trial order (so every sum has one fixed order): LEC bin counts
 * and spread into lb, selection bucket counts and sums into fb (max: the largest loss). */
static void bin_losses(const double *buf, uint64_t nnz, const double *ticks, double mean,
                       double max, loss_bins *lb, fine_buckets *fb)
{
    memset(lb, 0, sizeof(*lb));
    fine_init(fb, max, ticks);
    double spread = 0.0, scale = max > 0.0 ? 1.0 / max : 1.0;
    for (uint64_t i = 0; i < nnz; i++) {
        double x = buf[i];
        size_t k = fine_bucket(fb, x);
        fb->count[k]++;
        fb->sum[k] += x;
        lb->count[fb->lec_bin[k] + (x >= fb->lec_next[k])]++;
        double d = (x - mean) * scale;
        spread += d * d;
    }
    lb->spread = spread;
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
 * Quantiles and tails from the bins
 * ---------------------------------------------------------------------------------------- */

/* What the selection finds for one wanted sorted position: the loss there (the quantile) and
 * the sum and count of the nonzero losses at or above it (the tail). */
typedef struct order_stat {
    size_t pos; /* 0-based among the sorted nonzero losses */
    double value;
    double tail_sum;
    uint64_t tail_count;
} order_stat;

static int cmp_order_stat(const void *a, const void *b)
{
    size_t x = ((const order_stat *)a)->pos, y = ((const order_stat *)b)->pos;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* The sorted positions the levels need, ascending and without repeats. Returns their number. */
static size_t wanted_positions(uint64_t nnz, uint64_t n, const double *levels, size_t nlevels,
                               order_stat *want)
{
    size_t count = 0;
    uint64_t zeros = n - nnz;
    for (size_t j = 0; j < nlevels; j++) {
        uint64_t k = rs_quantile_rank(levels[j], n);
        if (k > zeros)
            want[count++].pos = (size_t)(k - zeros - 1);
    }
    qsort(want, count, sizeof(order_stat), cmp_order_stat);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++)
        if (unique == 0 || want[i].pos != want[unique - 1].pos)
            want[unique++] = want[i];
    return unique;
}

/* Sum and count of the values of v[0..len) at or above x, added to the accumulators. */
static void scan_tail(const double *v, size_t len, double x, ksum *sum, uint64_t *count)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] >= x) {
            ksum_add(sum, v[i]);
            (*count)++;
        }
    }
}

/* Selects every wanted position directly in buf (smallest first, each right of the previous
 * one) and scans buf for each tail. Used when the wanted buckets hold too many losses to copy. */
static void select_in_place(double *buf, size_t nnz, order_stat *want, size_t nwant)
{
    size_t lo = 0;
    for (size_t i = 0; i < nwant; i++) {
        select_kth(buf, lo, nnz, want[i].pos);
        want[i].value = buf[want[i].pos];
        lo = want[i].pos + 1;
    }
    for (size_t i = 0; i < nwant; i++) {
        ksum tail = {0, 0};
        want[i].tail_count = 0;
        scan_tail(buf, nnz, want[i].value, &tail, &want[i].tail_count);
        want[i].tail_sum = ksum_value(&tail);
    }
}

/* One bucket holding wanted positions. */
typedef struct wanted_bucket {
    size_t bucket;
    size_t first; /* sorted position of its first loss */
    size_t start; /* where its losses go in copy */
    double above; /* sum of the losses in the buckets above it */
    uint64_t above_count;
} wanted_bucket;

/* Finds the buckets holding the wanted positions (ascending) and the sums above each. Returns
 * their number; sets *total to the losses they hold. */
static size_t find_buckets(fine_buckets *fb, const order_stat *want, size_t nwant,
                           wanted_bucket *wb, size_t *total)
{
    size_t nwb = 0, at = 0;
    *total = 0;
    memset(fb->slot, 0, sizeof(fb->slot));
    for (size_t k = 0, i = 0; k < FINE_BUCKETS && i < nwant; k++) {
        size_t count = (size_t)fb->count[k];
        if (want[i].pos < at + count) {
            wb[nwb] = (wanted_bucket){k, at, *total, 0.0, 0};
            fb->slot[k] = (uint8_t)(++nwb);
            *total += count;
            while (i < nwant && want[i].pos < at + count)
                i++;
        }
        at += count;
    }
    /* sums above each wanted bucket, highest bucket first (one fixed order) */
    ksum above = {0, 0};
    uint64_t above_count = 0;
    size_t next = nwb;
    for (size_t k = FINE_BUCKETS; k-- > 0 && next > 0;) {
        if (k == wb[next - 1].bucket) {
            wb[next - 1].above = ksum_value(&above);
            wb[next - 1].above_count = above_count;
            next--;
        }
        ksum_add(&above, fb->sum[k]);
        above_count += fb->count[k];
    }
    return nwb;
}

/* Finds every wanted order statistic of buf[0..nnz). Normally one pass copies the losses of
 * the buckets holding wanted positions, grouped by bucket, into copy[] (capacity at least
 * nnz / 4), where the selection runs and buf stays in trial order; if those buckets hold more
 * than that (a point mass, e.g. a limit many losses reach), the selection runs in buf itself
 * and *reordered is set. */
static void select_positions(double *buf, fine_buckets *fb, size_t nnz, order_stat *want,
                             size_t nwant, double *copy, int *reordered)
{
    wanted_bucket wb[RS_MAX_QUANTILES];
    size_t total = 0;
    size_t nwb = find_buckets(fb, want, nwant, wb, &total);
    *reordered = total > nnz / 4;
    if (*reordered) {
        select_in_place(buf, nnz, want, nwant);
        return;
    }
    size_t fill[RS_MAX_QUANTILES];
    for (size_t j = 0; j < nwb; j++)
        fill[j] = wb[j].start;
    for (size_t i = 0; i < nnz; i++) {
        uint8_t slot = fb->slot[fine_bucket(fb, buf[i])];
        if (slot != 0)
            copy[fill[slot - 1]++] = buf[i];
    }
    size_t j = 0, lo = 0;
    for (size_t i = 0; i < nwant; i++) {
        while (want[i].pos >= wb[j].first + fb->count[wb[j].bucket]) {
            j++;
            lo = wb[j].start;
        }
        size_t count = (size_t)fb->count[wb[j].bucket];
        size_t k = wb[j].start + (want[i].pos - wb[j].first);
        select_kth(copy, lo, wb[j].start + count, k);
        want[i].value = copy[k];
        lo = k + 1;
        /* the tail: the buckets above, then this bucket's losses at or above the value */
        ksum tail = {wb[j].above, 0};
        want[i].tail_count = wb[j].above_count;
        scan_tail(copy + wb[j].start, count, want[i].value, &tail, &want[i].tail_count);
        want[i].tail_sum = ksum_value(&tail);
    }
}

/* ------------------------------------------------------------------------------------------
 * Per-thread scratch
 * ---------------------------------------------------------------------------------------- */

typedef struct node_scratch {
    double *buf;      /* the node's nonzero losses */
    fine_buckets *fb; /* their selection buckets */
    double *copy;     /* the wanted buckets' losses (a quarter of buf) */
    uint64_t *nz;     /* portfolios: bit t set when trial t+1 had a loss */
    uint8_t *band;    /* a chunk's trials' bands */
    size_t cap;       /* entries of buf */
    size_t nz_words;
} node_scratch;

static void scratch_free(node_scratch *s)
{
    free(s->buf);
    free(s->fb);
    free(s->copy);
    free(s->nz);
    free(s->band);
    memset(s, 0, sizeof(*s));
}

/* Makes room for cap losses and n trials, keeping what is there when it is big enough (the
 * pages stay mapped from node to node). Returns RS_OK or RS_ENOMEM. */
static rs_err scratch_reserve(node_scratch *s, size_t cap, uint64_t n, uint32_t chunk)
{
    if (cap < 4)
        cap = 4;
    if (cap > s->cap) {
        double *buf = realloc(s->buf, cap * sizeof(double));
        if (buf != NULL)
            s->buf = buf;
        double *copy = realloc(s->copy, (cap / 4 + 1) * sizeof(double));
        if (copy != NULL)
            s->copy = copy;
        if (buf == NULL || copy == NULL)
            return RS_ENOMEM;
        s->cap = cap;
    }
    if (s->fb == NULL && (s->fb = malloc(sizeof(fine_buckets))) == NULL)
        return RS_ENOMEM;
    size_t words = (size_t)(n / 64 + 1);
    if (s->nz == NULL) {
        s->nz = malloc(words * sizeof(uint64_t));
        s->band = malloc(chunk);
        if (s->nz == NULL || s->band == NULL)
            return RS_ENOMEM;
        s->nz_words = words;
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
    node_scratch scratch;
    const atomic_int *cancel; /* checked between chunks of a node's passes */
} node_work;

/* Non-zero when the run's cancel flag is set. */
static int work_cancelled(const node_work *w)
{
    return w->cancel != NULL && atomic_load(w->cancel) != 0;
}

/* Pass-1 accumulators: the sum and range of the nonzero losses, which are copied to buf. */
typedef struct collect {
    double *buf;
    uint64_t *nz; /* portfolios: which trials had a loss */
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
 * segments, a portfolio's from its recomputed chunk values, noting which trials had one).
 * Returns 0 when the run was cancelled on the way, else 1. */
static int pass_collect(const node_work *w, const rs_node *node, collect *c)
{
    c->nnz = 0;
    c->lo = INFINITY;
    c->hi = 0.0;
    for (size_t k = 0; k < w->store->nchunks; k++) {
        if (!node->is_leaf && work_cancelled(w))
            return 0;
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
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Tail contributions
 *
 * The portfolio's quantiles sorted ascending cut its trials into bands: band b holds the
 * trials whose portfolio loss reaches exactly the b smallest positive quantiles (band 0: none).
 * Each child adds its loss in a trial to the sum of that trial's band; a level's tail share is
 * the sum of the bands that reach its quantile (every band when the quantile is 0). One
 * addition per child and trial, whatever the number of levels.
 * ---------------------------------------------------------------------------------------- */

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
static inline uint8_t band_of(const bands *bd, double x)
{
    size_t b = 0;
    while (b < bd->ncut && x >= bd->cut[b])
        b++;
    return (uint8_t)b;
}

/* Sum of the bands whose trials reach quantile var, highest band first; for var <= 0 every
 * band, band 0 included. */
static double band_tail(const bands *bd, const ksum *band_sum, double var)
{
    ksum total = {0, 0};
    for (size_t b = bd->ncut + 1; b-- > 0;)
        if (b == 0 ? !(var > 0.0) : bd->cut[b - 1] >= var)
            ksum_add(&total, ksum_value(&band_sum[b]));
    return ksum_value(&total);
}

/* Adds child's losses of one chunk to its band sums. */
static void add_child_bands(const uint8_t *band, const double *child, uint32_t len, ksum *band_sum)
{
    for (uint32_t t = 0; t < len; t++)
        if (child[t] != 0.0)
            ksum_add(&band_sum[band[t]], child[t]);
}

/* add_child_bands for a leaf child, straight from its segment (same additions, same order). */
static void add_leaf_bands(const uint8_t *band, const rs_segment *seg, uint32_t len, ksum *band_sum)
{
    seg_walk it = seg_walk_start(seg, len);
    uint32_t t;
    double x;
    while (seg_walk_next(&it, &t, &x))
        ksum_add(&band_sum[band[t]], x);
}

/* Writes the bands of one chunk of the portfolio's trials: from the losses pass 1 kept (still
 * in trial order; *k is the next one) or, when the selection reordered them, recomputed. */
static void chunk_bands(const node_work *w, const rs_node *node, const collect *col, int recompute,
                        const bands *bd, size_t c, uint64_t *k, uint8_t *band)
{
    uint32_t len = rs_store_chunk_len(w->store, c);
    if (recompute) {
        node_chunk_values(w->model, w->store, node, c, len, w->stack, 0);
        for (uint32_t t = 0; t < len; t++)
            band[t] = band_of(bd, w->stack[0][t]);
        return;
    }
    uint8_t band0 = band_of(bd, 0.0);
    uint64_t base = (uint64_t)c * w->store->chunk;
    for (uint32_t t = 0; t < len; t++) {
        int had_loss = (int)((col->nz[(base + t) / 64] >> ((base + t) % 64)) & 1u);
        band[t] = had_loss ? band_of(bd, col->buf[(*k)++]) : band0;
    }
}

/* Each child's losses summed per band of the portfolio's trials, into
 * child_bands[child * (RS_MAX_QUANTILES + 1) + band]. Returns 0 when the run was cancelled on
 * the way, else 1. */
static int children_bands(const node_work *w, const rs_node *node, const collect *col,
                          int recompute, const bands *bd, ksum *child_bands)
{
    uint8_t *band = w->scratch.band;
    uint64_t k = 0;
    for (size_t c = 0; c < w->store->nchunks; c++) {
        if (work_cancelled(w))
            return 0;
        uint32_t len = rs_store_chunk_len(w->store, c);
        chunk_bands(w, node, col, recompute, bd, c, &k, band);
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
    return 1;
}

/* Writes the tail shares of node's children for every level; tail[j] is the node's tail sum. */
static rs_err write_shares(const node_work *w, const rs_node *node, const collect *col,
                           int recompute, const double *tail)
{
    const rs_model *m = w->model;
    const double *var = w->result->nodes[node - m->nodes].quantiles;
    ksum *child_bands = calloc((size_t)node->nchildren * (RS_MAX_QUANTILES + 1), sizeof(ksum));
    if (child_bands == NULL)
        return RS_ENOMEM;
    bands bd;
    bands_init(&bd, var, m->nlevels);
    if (!children_bands(w, node, col, recompute, &bd, child_bands)) {
        free(child_bands);
        return RS_ECANCELLED;
    }
    for (uint32_t i = 0; i < node->nchildren; i++) {
        double *share = (double *)w->result->nodes[node->children[i]].tail_contribution;
        for (size_t j = 0; j < m->nlevels; j++) {
            double part = band_tail(&bd, &child_bands[(size_t)i * (RS_MAX_QUANTILES + 1)], var[j]);
            share[j] = tail[j] > 0.0 ? part / tail[j] : NAN;
        }
    }
    free(child_bands);
    return RS_OK;
}

/* ------------------------------------------------------------------------------------------
 * Statistics of one node
 * ---------------------------------------------------------------------------------------- */

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

/* Quantiles, TVaR and the tail sums of node from its binned losses; tail[j] gets the sum of
 * the trials at or above level j's quantile. Sets *reordered as select_positions does. */
static void write_quantiles(const node_work *w, rs_node_stats *st, collect *col, double *tail,
                            int *reordered)
{
    const rs_model *m = w->model;
    uint64_t n = m->trials, zeros = n - col->nnz;
    order_stat want[RS_MAX_QUANTILES];
    size_t nwant = wanted_positions(col->nnz, n, m->levels, m->nlevels, want);
    select_positions(col->buf, w->scratch.fb, (size_t)col->nnz, want, nwant, w->scratch.copy,
                     reordered);
    double *var = (double *)st->quantiles, *tvar = (double *)st->tvar;
    for (size_t j = 0; j < m->nlevels; j++) {
        uint64_t k = rs_quantile_rank(m->levels[j], n);
        /* a quantile of 0 takes every trial: the tail is the whole sum */
        var[j] = 0.0;
        tail[j] = ksum_value(&col->sum);
        uint64_t count = n;
        for (size_t i = 0; k > zeros && i < nwant; i++) {
            if (want[i].pos == (size_t)(k - zeros - 1)) {
                var[j] = want[i].value;
                tail[j] = want[i].tail_sum;
                count = want[i].tail_count;
            }
        }
        tvar[j] = count > 0 ? tail[j] / (double)count : 0.0;
    }
}

/* Standard deviation and standard error from the scaled spread. Losses that are all equal
 * (in every trial) have none, whatever the rounding of their mean. */
static void write_spread(rs_node_stats *st, const collect *col, const loss_bins *lb, uint64_t n)
{
    double scale = col->hi > 0.0 ? col->hi : 1.0;
    double zero_part = st->mean / scale;
    double spread = lb->spread + (double)(n - col->nnz) * zero_part * zero_part;
    st->stddev = n > 1 ? scale * sqrt(spread / (double)(n - 1)) : 0.0;
    if (col->nnz == n && col->lo == col->hi)
        st->stddev = 0.0;
    st->standard_error = st->stddev / sqrt((double)n);
}

/* Computes every statistic of node index ni. Returns RS_OK, RS_ENOMEM, or RS_ECANCELLED when
 * the cancel flag was set during one of its passes. */
static rs_err compute_node(node_work *w, size_t ni)
{
    const rs_model *m = w->model;
    const rs_node *node = &m->nodes[ni];
    rs_node_stats *st = &w->result->nodes[ni];
    uint64_t n = m->trials;
    rs_err err = scratch_reserve(&w->scratch, (size_t)node_capacity(w, node), n, w->store->chunk);
    if (err != RS_OK)
        return err;
    collect col = {.buf = w->scratch.buf, .nz = w->scratch.nz};
    if (!node->is_leaf)
        memset(col.nz, 0, w->scratch.nz_words * sizeof(uint64_t));
    if (!pass_collect(w, node, &col))
        return RS_ECANCELLED;
    /* losses all equal in every trial: their mean is that loss, not its rounded average */
    double mean = col.nnz == n && col.lo == col.hi ? col.lo : ksum_value(&col.sum) / (double)n;
    st->mean = mean;
    st->max = col.hi;
    st->probability_of_loss = (double)col.nnz / (double)n;

    double *ticks = (double *)st->lec_loss;
    lec_ticks(col.lo, col.hi, ticks);
    loss_bins lb;
    bin_losses(col.buf, col.nnz, ticks, mean, col.hi, &lb, w->scratch.fb);
    lec_from_counts(lb.count, col.nnz, n, (double *)st->lec_exceedance);
    write_spread(st, &col, &lb, n);

    double tail[RS_MAX_QUANTILES];
    int reordered = 0;
    write_quantiles(w, st, &col, tail, &reordered);
    if (node->is_leaf)
        return RS_OK;
    return write_shares(w, node, &col, reordered, tail);
}

/* ------------------------------------------------------------------------------------------
 * Threads over nodes
 * ---------------------------------------------------------------------------------------- */

typedef struct stats_state {
    const rs_model *model;
    const rs_store *store;
    rs_result *result;
    const rs_stats_options *opt;
    atomic_size_t next_node;
    atomic_int err; /* first error (rs_err) */
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    size_t nodes_done; /* under mutex */
    unsigned running;  /* under mutex */
    int threaded;
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

static void record_error(stats_state *st, rs_err err)
{
    int expected = RS_OK;
    atomic_compare_exchange_strong(&st->err, &expected, (int)err);
}

static int stats_cancelled(const stats_state *st)
{
    return st->opt->cancel != NULL && atomic_load(st->opt->cancel) != 0;
}

/* Tells the coordinator (threaded runs) or the progress callback (inline runs) that one more
 * node is done. */
static void node_done(stats_state *st)
{
    if (!st->threaded) {
        st->nodes_done++;
        if (st->opt->progress != NULL &&
            st->opt->progress(st->opt->progress_ctx, st->nodes_done, st->model->nnodes))
            record_error(st, RS_ECANCELLED);
        return;
    }
    pthread_mutex_lock(&st->mutex);
    st->nodes_done++;
    pthread_cond_signal(&st->changed);
    pthread_mutex_unlock(&st->mutex);
}

static void *stats_worker(void *arg)
{
    stats_state *st = arg;
    size_t levels = (size_t)st->model->height + 1;
    node_work w = {st->model, st->store,      st->result, alloc_stack(levels, st->store->chunk),
                   {0},       st->opt->cancel};
    if (w.stack == NULL)
        record_error(st, RS_ENOMEM);
    while (w.stack != NULL && atomic_load(&st->err) == RS_OK) {
        if (stats_cancelled(st)) {
            record_error(st, RS_ECANCELLED);
            break;
        }
        size_t ni = atomic_fetch_add(&st->next_node, 1);
        if (ni >= st->model->nnodes)
            break;
        rs_err err = compute_node(&w, ni);
        if (err != RS_OK)
            record_error(st, err);
        else
            node_done(st);
    }
    scratch_free(&w.scratch);
    free_stack(w.stack, levels);
    if (st->threaded) {
        pthread_mutex_lock(&st->mutex);
        st->running--;
        pthread_cond_signal(&st->changed);
        pthread_mutex_unlock(&st->mutex);
    }
    return NULL;
}

/* Waits for the workers, reporting each finished node to the progress callback. */
static void stats_coordinate(stats_state *st)
{
    size_t reported = 0;
    pthread_mutex_lock(&st->mutex);
    for (;;) {
        /* look before waiting: nodes finished while the callback ran, or before the first
         * wait, are reported too, so the last report has the final count */
        size_t done = st->nodes_done;
        if (done != reported && atomic_load(&st->err) == RS_OK && st->opt->progress != NULL) {
            reported = done;
            pthread_mutex_unlock(&st->mutex);
            int stop = st->opt->progress(st->opt->progress_ctx, done, st->model->nnodes);
            pthread_mutex_lock(&st->mutex);
            if (stop)
                record_error(st, RS_ECANCELLED);
            continue;
        }
        if (st->running == 0)
            break;
        pthread_cond_wait(&st->changed, &st->mutex);
    }
    pthread_mutex_unlock(&st->mutex);
}

/* Runs stats_worker on `threads` threads while the calling thread reports progress. */
static void stats_threaded(stats_state *st, unsigned threads)
{
    pthread_t *tids = malloc(threads * sizeof(pthread_t));
    if (tids == NULL) {
        record_error(st, RS_ENOMEM);
        return;
    }
    unsigned started = 0;
    pthread_mutex_lock(&st->mutex);
    for (; started < threads; started++) {
        if (pthread_create(&tids[started], NULL, stats_worker, st) != 0)
            break;
        st->running++;
    }
    pthread_mutex_unlock(&st->mutex);
    if (started == 0)
        record_error(st, RS_ETHREAD);
    stats_coordinate(st);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
}

rs_err rs_stats_compute(const rs_model *model, const rs_store *store, const rs_stats_options *opt,
                        rs_result *result)
{
    stats_state st = {.model = model, .store = store, .result = result, .opt = opt};
    atomic_init(&st.next_node, 0);
    atomic_init(&st.err, RS_OK);
    unsigned threads = opt->threads;
    if (threads > model->nnodes)
        threads = (unsigned)model->nnodes;
    if (threads <= 1) {
        stats_worker(&st);
        return (rs_err)atomic_load(&st.err);
    }
    st.threaded = 1;
    if (pthread_mutex_init(&st.mutex, NULL) != 0)
        return RS_ETHREAD;
    if (pthread_cond_init(&st.changed, NULL) != 0) {
        pthread_mutex_destroy(&st.mutex);
        return RS_ETHREAD;
    }
    stats_threaded(&st, threads);
    pthread_cond_destroy(&st.changed);
    pthread_mutex_destroy(&st.mutex);
    return (rs_err)atomic_load(&st.err);
}

uint64_t rs_stats_thread_bytes(const rs_model *model, uint32_t chunk)
{
    uint64_t n = model->trials;
    /* losses (8 bytes each, up to n), their quarter copied for selection, the portfolio's bit
     * per trial, the selection buckets, one chunk buffer per tree level and the chunk's bands */
    return n * 8 + (n / 4 + 1) * 8 + (n / 64 + 1) * 8 + sizeof(fine_buckets) +
           ((uint64_t)model->height + 1) * chunk * 8 + chunk;
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
    memcpy(r->level_labels, model->level_labels, sizeof(r->level_labels));
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

const char *rs_result_level_label(const rs_result *result, size_t i)
{
    return result == NULL || i >= result->nlevels ? NULL : result->level_labels[i];
}

double rs_result_duration_ms(const rs_result *result)
{
    return result == NULL ? 0.0 : result->duration_ms;
}
