/*
 * The engine's model of a request (private header).
 *
 * Why this file exists: the parser (parse.c) builds this structure and the simulation
 * (simulate.c, stats.c) and the JSON writer (result_json.c) read it. It is immutable once
 * built. Nodes are stored in preorder (root first, then depth-first in request order), which is
 * the order of the result's "nodes" array.
 */
#ifndef RISKSIM_MODEL_H
#define RISKSIM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "risksim/engine.h"

/* Defaults and bounds of docs/api.md section 1. */
#define RS_DEFAULT_TRIALS 10000u
#define RS_DEFAULT_SEED 0u
#define RS_MAX_SEED 100000000u    /* seed < 10^8 */
#define RS_MAX_SEED_VAR 50000000u /* seedVar in [1, 5*10^7) */
#define RS_MAX_QUANTILES 32
#define RS_MAX_DEPTH 32u
#define RS_MAX_NODES 10000u
#define RS_MAX_TRIALS 1000000000u /* HDR's counters take at most 10^9 */
#define RS_MAX_ID_LEN 64
#define RS_MAX_NAME_CHARS 200
#define RS_MAX_POISSON_LAMBDA 1000.0
/* Smallest nonzero loss: an event's loss below it counts as no loss, so every loss the
 * statistics see is a normal double far from underflow. */
#define RS_MIN_EVENT_LOSS 1e-300
/* Largest amount a severity may be given and largest loss one event may draw (before
 * controls: larger draws count as this), and the largest scale factor: with these, every sum
 * the engine forms stays finite. */
#define RS_MAX_EVENT_LOSS 1e15
#define RS_MAX_SCALE_FACTOR 1e6

typedef enum rs_freq_kind { RS_FREQ_BERNOULLI = 0, RS_FREQ_POISSON } rs_freq_kind;

typedef struct rs_frequency {
    rs_freq_kind kind;
    double p;           /* bernoulli: probability of the one event */
    rs_poisson poisson; /* poisson: lambda and its CDF table (owned) */
} rs_frequency;

typedef enum rs_sev_kind {
    RS_SEV_LOGNORMAL = 0,
    RS_SEV_METALOG,
    RS_SEV_PERT,
    RS_SEV_UNIFORM,
    RS_SEV_CONSTANT
} rs_sev_kind;

typedef struct rs_severity {
    rs_sev_kind kind;
    union {
        struct {
            double mu, sigma;
        } lognormal;
        rs_metalog metalog;
        rs_pert pert;
        struct {
            double min, max;
        } uniform;
        double constant;
    } u;
} rs_severity;

typedef enum rs_control_kind {
    RS_CTRL_DEDUCTIBLE = 0, /* loss = max(0, loss - a) */
    RS_CTRL_LIMIT,          /* loss = min(loss, a) */
    RS_CTRL_SCALE,          /* loss = loss * a */
    RS_CTRL_INSURANCE       /* loss = loss - min(max(loss - a, 0), b): a deductible, b limit */
} rs_control_kind;

typedef struct rs_control {
    rs_control_kind kind;
    double a, b;
} rs_control;

typedef struct rs_node {
    char *id;   /* owned */
    char *name; /* owned; equals id when the request gave no name */
    int is_leaf;
    int32_t parent; /* index of the parent node, -1 for the root */
    uint32_t depth; /* root 0 */
    /* portfolio */
    uint32_t *children; /* owned; indices of the children in request order */
    uint32_t nchildren;
    /* leaf */
    rs_frequency freq;
    rs_severity sev;
    rs_control *controls; /* owned */
    uint32_t ncontrols;
    uint32_t seed_var;   /* in [1, RS_MAX_SEED_VAR) */
    uint32_t leaf_index; /* position among the leaves (preorder) */
} rs_node;

struct rs_model {
    char *name; /* owned, "" when absent */
    uint64_t trials;
    uint32_t seed;
    double levels[RS_MAX_QUANTILES];
    char level_labels[RS_MAX_QUANTILES][16]; /* "p50", "p99.5", ... */
    size_t nlevels;
    rs_node *nodes; /* owned, preorder, nodes[0] is the root */
    size_t nnodes;
    uint32_t *leaves; /* owned, node indices of the leaves in preorder */
    size_t nleaves;
    uint32_t height; /* number of levels: 1 for a lone root */
};

/* Formats the label of a quantile level ("p50", "p99.5") into buf (size >= 16). */
void rs_level_label(double level, char *buf, size_t size);

/* HDR variables of a leaf: the occurrence draw uses variable 2*seedVar, every event's
 * severity draw uses variable 2*seedVar+1 with the event index in seed3 (docs/engine.md). */
static inline uint64_t rs_leaf_occurrence_var(const rs_node *leaf)
{
    return 2u * (uint64_t)leaf->seed_var;
}
static inline uint64_t rs_leaf_loss_var(const rs_node *leaf)
{
    return 2u * (uint64_t)leaf->seed_var + 1u;
}

/* Loss of one trial of one leaf: frequency draw, then one severity draw per event with the
 * controls applied to each, summed. Depends only on (leaf, seed, trial). trial is 1-based. */
double rs_leaf_trial_loss(const rs_node *leaf, uint32_t seed, uint64_t trial);

/* Severity quantile at u (before controls), never negative. */
double rs_severity_quantile(const rs_severity *sev, double u);

#endif
