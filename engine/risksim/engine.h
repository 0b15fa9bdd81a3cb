/*
 * risksim engine: the public interface of librisksim-engine.
 *
 * Why this file exists: every program of risksim (the FastCGI responder, its job workers, the
 * WebSocket bridge, the command-line tool) runs simulations through this one header. It turns a
 * JSON request into an immutable model (collecting every validation problem with its JSON
 * pointer), runs the Monte Carlo simulation on N threads with progress and cancel hooks, and
 * turns the result into the JSON of docs/api.md section 2. The engine does no I/O, keeps no global
 * state and never prints: errors come back as an rs_err plus details in an rs_diag.
 */
#ifndef RISKSIM_ENGINE_H
#define RISKSIM_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct json_object;

/* Error codes of every engine function. */
typedef enum rs_err {
    RS_OK = 0,
    RS_ENOMEM,      /* an allocation failed; nothing was leaked */
    RS_EINVAL,      /* a caller bug: NULL where an object is required, an option out of range */
    RS_EJSON,       /* the text is not JSON, not UTF-8, or has trailing garbage (HTTP 400) */
    RS_EVALIDATION, /* well-formed JSON that breaks a rule of the request (HTTP 422) */
    RS_ECANCELLED,  /* the run was cancelled through the cancel flag or the progress callback */
    RS_ETHREAD,     /* a worker thread could not be started */
    RS_ELIMIT       /* a size limit would be exceeded (e.g. the result would not fit in memory) */
} rs_err;

/* Returns a static, human-readable English description of err (never NULL). */
const char *rs_strerror(rs_err err);

/* ---------------------------------------------------------------------------------------------
 * Diagnostics: the list of problems found in a request. Each has a JSON pointer (RFC 6901) into
 * the request, a stable machine-readable code (see docs/api.md) and an English message.
 * ------------------------------------------------------------------------------------------- */

typedef struct rs_diag rs_diag;

/* Maximum number of problems an rs_diag keeps; one more entry with code "too_many_errors" marks
 * that the list was cut. */
#define RS_DIAG_MAX 256

/* Creates an empty problem list. Returns NULL when out of memory. Free with rs_diag_free. */
rs_diag *rs_diag_new(void);
/* Frees the list and its strings. rs_diag_free(NULL) does nothing. */
void rs_diag_free(rs_diag *diag);
/* Removes every entry so the list can be reused. */
void rs_diag_clear(rs_diag *diag);
/* Returns the number of entries (0 for NULL). */
size_t rs_diag_count(const rs_diag *diag);
/* Entry i's JSON pointer ("" is the whole document), code and message. The strings belong to
 * the list and stay valid until it is cleared or freed; i must be < rs_diag_count. */
const char *rs_diag_pointer(const rs_diag *diag, size_t i);
const char *rs_diag_code(const rs_diag *diag, size_t i);
const char *rs_diag_message(const rs_diag *diag, size_t i);
/* Appends a problem (copies the strings; message is truncated to 512 bytes). Returns RS_OK, or
 * RS_ENOMEM. Past RS_DIAG_MAX entries it records one "too_many_errors" entry and then ignores
 * further calls (returning RS_OK). */
rs_err rs_diag_add(rs_diag *diag, const char *pointer, const char *code, const char *message);

/* ---------------------------------------------------------------------------------------------
 * Requests and models
 * ------------------------------------------------------------------------------------------- */

/* Limits a server applies to requests; see docs/api.md for every rule. */
typedef struct rs_limits {
    uint64_t max_trials; /* largest accepted "trials" (default 10,000,000; at most 10^9) */
    uint32_t max_depth;  /* deepest tree: a lone root has depth 1 (default and maximum 32) */
    uint32_t max_nodes;  /* most nodes in a tree (default and maximum 10,000) */
} rs_limits;

/* Fills *limits with the defaults of docs/api.md section 1. */
void rs_limits_default(rs_limits *limits);

/* JSON nesting a request may have before rs_json_parse refuses it as RS_EJSON. */
#define RS_JSON_MAX_NESTING 200

/* Parses text (len bytes, need not be NUL-terminated) as one strict JSON value: UTF-8 checked,
 * no NaN/Infinity literals, nothing but whitespace after the value, nesting at most
 * RS_JSON_MAX_NESTING. On success stores a new json-c object in *out (release it with
 * json_object_put) and returns RS_OK. Otherwise returns RS_EJSON (one diag entry, code
 * "invalid_json", saying where and why) or RS_ENOMEM. diag may be NULL. */
rs_err rs_json_parse(const char *text, size_t len, struct json_object **out, rs_diag *diag);

typedef struct rs_model rs_model;

/* Builds a model from a parsed request (the tree form of docs/api.md section 1 or the flat
 * compatibility form). limits may be NULL for the defaults. Every broken rule is appended to
 * diag (may be NULL) with its JSON pointer. Returns RS_OK and a new model in *out, or
 * RS_EVALIDATION (with *out NULL), or RS_ENOMEM. The request object is not kept. */
rs_err rs_model_from_json(const struct json_object *request, const rs_limits *limits,
                          rs_model **out, rs_diag *diag);

/* rs_json_parse followed by rs_model_from_json. Returns RS_EJSON, RS_EVALIDATION, RS_ENOMEM or
 * RS_OK with a new model in *out. */
rs_err rs_model_parse(const char *text, size_t len, const rs_limits *limits, rs_model **out,
                      rs_diag *diag);

/* Frees a model. rs_model_free(NULL) does nothing. A model must outlive every result made from
 * it. */
void rs_model_free(rs_model *model);

/* Read-only facts of a model. */
uint64_t rs_model_trials(const rs_model *model);
uint32_t rs_model_seed(const rs_model *model);
const char *rs_model_name(const rs_model *model); /* "" when the request had none */
size_t rs_model_node_count(const rs_model *model);
size_t rs_model_leaf_count(const rs_model *model);

struct rs_run_options;

/* Estimated peak bytes rs_simulate needs for this model run with these options (NULL: the
 * defaults); the memory formula of docs/engine.md. Servers use it to refuse a job before
 * running it. */
uint64_t rs_model_memory_estimate(const rs_model *model, const struct rs_run_options *options);

/* ---------------------------------------------------------------------------------------------
 * Simulation
 * ------------------------------------------------------------------------------------------- */

/* The phases of a run, as rs_progress.phase. */
#define RS_PHASE_SAMPLING "sampling"
#define RS_PHASE_AGGREGATING "aggregating"

/* What a progress callback is told. */
typedef struct rs_progress {
    uint64_t trials_done;  /* trials sampled so far (0..trials_total) */
    uint64_t trials_total; /* the model's trials */
    const char *phase;     /* RS_PHASE_SAMPLING, then RS_PHASE_AGGREGATING */
    size_t nodes_done;     /* aggregating: nodes whose statistics are done (0..nodes_total) */
    size_t nodes_total;    /* the model's nodes */
} rs_progress;

/* Called once at the start (0 trials), after each chunk while sampling, and once when
 * aggregation starts and after each node while aggregating; always on the thread that called
 * rs_simulate, never concurrently. With several threads, chunks or nodes that finish while the
 * callback runs are reported together by its next call; the last call of each phase always
 * has the phase's total. Return 0 to go on, non-zero to cancel the run (rs_simulate then
 * returns RS_ECANCELLED). */
typedef int (*rs_progress_fn)(void *ctx, const rs_progress *progress);

/* Largest chunk a run accepts. */
#define RS_MAX_CHUNK_TRIALS (1u << 20)
/* Most threads a run accepts. */
#define RS_MAX_THREADS 256u

typedef struct rs_run_options {
    unsigned threads;         /* worker threads; 0 means 1; at most RS_MAX_THREADS */
    uint32_t chunk_trials;    /* trials per chunk; 0 means 4096; at most RS_MAX_CHUNK_TRIALS */
    rs_progress_fn progress;  /* optional */
    void *progress_ctx;       /* passed to progress */
    const atomic_int *cancel; /* optional; a non-zero value cancels within one chunk */
    uint64_t *trials_sampled; /* optional; set to the trials sampled when rs_simulate returns,
                                 also when it was cancelled or failed */
} rs_run_options;

typedef struct rs_result rs_result;

/* Runs the simulation of model. options may be NULL (one thread, default chunk). The result
 * depends only on the model (request and seed): it is bit-for-bit the same for any thread count
 * and chunk size. Returns RS_OK and a new result in *out, or RS_ECANCELLED, RS_ENOMEM,
 * RS_ETHREAD, RS_EINVAL, with *out NULL and nothing leaked. */
rs_err rs_simulate(const rs_model *model, const rs_run_options *options, rs_result **out);

/* Frees a result. rs_result_free(NULL) does nothing. */
void rs_result_free(rs_result *result);

/* The statistics of one node. Every pointer belongs to the result. Arrays indexed by quantile
 * level have rs_result_level_count entries, in the request's order. */
typedef struct rs_node_stats {
    const char *id;
    const char *name;
    int is_leaf;
    const char *parent_id; /* NULL for the root */
    size_t depth;          /* root 0 */
    double mean;
    double stddev; /* sample standard deviation (n - 1 denominator; 0 for one trial) */
    double standard_error;
    double probability_of_loss;
    double max;
    const double *quantiles;         /* VaR at each level */
    const double *tvar;              /* mean of the trials at or above each quantile */
    const double *tail_contribution; /* share of the parent's TVaR; NULL for the root, NaN where
                                        the parent's TVaR is 0 */
    size_t lec_count;
    const double *lec_loss;       /* ascending, lec_loss[0] == 0 */
    const double *lec_exceedance; /* P(loss >= x); at x = 0, P(loss > 0) */
} rs_node_stats;

/* Number of nodes (same order as the request: root, then depth-first in request order). */
size_t rs_result_node_count(const rs_result *result);
/* Node i's statistics, or NULL when i is out of range. */
const rs_node_stats *rs_result_node(const rs_result *result, size_t i);
/* Number of quantile levels and their values (in (0,1), request order). */
size_t rs_result_level_count(const rs_result *result);
const double *rs_result_levels(const rs_result *result);
/* The label of level i as the result JSON uses it ("p50", "p99.5"), or NULL when i is out of
 * range. The string belongs to the result. */
const char *rs_result_level_label(const rs_result *result, size_t i);
/* Wall-clock milliseconds the run took. */
double rs_result_duration_ms(const rs_result *result);

/* Optional fields a caller puts in front of the result JSON (docs/api.md section 2). */
typedef struct rs_result_meta {
    const char *id;     /* job id, or NULL to omit */
    const char *status; /* e.g. "completed", or NULL to omit */
} rs_result_meta;

/* Writes the result object of docs/api.md section 2 (nodes, LEC points, Vega-Lite spec) as
 * compact JSON. meta may be NULL. model must be the one the result was made from. Returns RS_OK
 * with the NUL-terminated text in *out (release with free) and its length in *len (len may be
 * NULL), or RS_EINVAL or RS_ENOMEM with *out NULL. */
rs_err rs_result_json(const rs_result *result, const rs_model *model, const rs_result_meta *meta,
                      char **out, size_t *len);

/* The same object as a json-c tree, for callers that look into it or print it indented (the
 * text of rs_result_json parsed; numbers keep their text). Returns RS_OK with a new object in
 * *out (release with json_object_put), or RS_EINVAL or RS_ENOMEM. */
rs_err rs_result_to_json(const rs_result *result, const rs_model *model, const rs_result_meta *meta,
                         struct json_object **out);

/* ---------------------------------------------------------------------------------------------
 * The HDR generator (Hubbard 2019), exposed for tests, benchmarks and tools.
 * ------------------------------------------------------------------------------------------- */

/* Returns HDR(trial, variable, entity, seed3, seed4), a uniform draw in (0,1). Every argument
 * must be in [0, 10^9]. */
double rs_hdr(uint64_t trial, uint64_t variable, uint64_t entity, uint64_t seed3, uint64_t seed4);

/* Returns the standard normal quantile Phi^-1(p) for p in (0,1) (AS241, relative error below
 * 1e-15); -inf/+inf at 0/1 and NaN outside [0,1]. */
double rs_norm_quantile(double p);

#ifdef __cplusplus
}
#endif

#endif
