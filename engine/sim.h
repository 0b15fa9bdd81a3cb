/*
 * Shared internals of a simulation run (private header).
 *
 * Why this file exists: sampling (simulate.c) fills a store of sparse per-leaf losses and the
 * statistics pass (stats.c) reads it to build the result. This header is the contract between
 * the two: the store layout, the result layout and the statistics entry point.
 */
#ifndef RISKSIM_SIM_H
#define RISKSIM_SIM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "risksim/engine.h"

/* Points of every loss exceedance curve: loss 0, then RS_LEC_POINTS - 1 log-spaced ticks. */
#define RS_LEC_POINTS 100

/* The losses of one leaf in one chunk of trials: bit i of bits is set when trial
 * (chunk start + i) had a loss, and losses holds those losses in trial order. */
typedef struct rs_segment {
    uint32_t nnz;
    uint64_t *bits; /* NULL when nnz == 0 */
    double *losses; /* NULL when nnz == 0 */
} rs_segment;

/* Every leaf's sampled losses: segs[leaf_index * nchunks + chunk]. Chunk c holds trials
 * c*chunk+1 .. min((c+1)*chunk, trials) (trials are numbered from 1). */
typedef struct rs_store {
    uint64_t trials;
    uint32_t chunk;
    size_t nchunks;
    size_t nleaves;
    rs_segment *segs;
} rs_store;

/* Number of trials in chunk c of the store. */
static inline uint32_t rs_store_chunk_len(const rs_store *store, size_t c)
{
    uint64_t first = (uint64_t)c * store->chunk;
    uint64_t left = store->trials - first;
    return left < store->chunk ? (uint32_t)left : store->chunk;
}

struct rs_result {
    uint64_t trials;
    uint32_t seed;
    size_t nlevels;
    double levels[RS_MAX_QUANTILES];
    char level_labels[RS_MAX_QUANTILES][16];
    double duration_ms;
    size_t nnodes;
    rs_node_stats *nodes; /* one per model node, same order */
    double *arena;        /* every per-node array */
};

/* Allocates a result for model with every per-node array in place (values zero). Returns NULL
 * when out of memory. */
rs_result *rs_result_alloc(const rs_model *model);

/* Told after each node's statistics are done (on the thread that called rs_stats_compute);
 * a non-zero answer cancels. */
typedef int (*rs_nodes_progress_fn)(void *ctx, size_t nodes_done, size_t nodes_total);

typedef struct rs_stats_options {
    unsigned threads;
    const atomic_int *cancel;
    rs_nodes_progress_fn progress; /* optional */
    void *progress_ctx;
} rs_stats_options;

/* Computes every node's statistics from the store into result (allocated by rs_result_alloc).
 * Returns RS_OK, RS_ENOMEM, RS_ETHREAD or RS_ECANCELLED. */
rs_err rs_stats_compute(const rs_model *model, const rs_store *store, const rs_stats_options *opt,
                        rs_result *result);

/* Bytes one statistics thread allocates at most for model run with chunks of `chunk`
 * trials (part of rs_model_memory_estimate). */
uint64_t rs_stats_thread_bytes(const rs_model *model, uint32_t chunk);

/* The rank (1-based) of quantile level q among n sorted trials: the smallest k with
 * k >= q*n, where q*n within 1e-9 of an integer counts as that integer (so 0.995 * 100000 is
 * 99500, not 99501 after rounding). */
uint64_t rs_quantile_rank(double q, uint64_t n);

#endif
