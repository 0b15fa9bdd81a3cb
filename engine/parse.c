/*
 * Request JSON to model: the tree form, and the rules both forms share.
 *
 * Why this file exists: a request is untrusted input that decides what a risk model computes,
 * so every rule of docs/api.md section 1 is checked here, every broken rule is reported (with a
 * JSON pointer and a stable code, see docs/request.md) instead of only the first, and nothing in
 * the input can make the parser crash, recurse without bound or leak. This file holds the rules
 * both forms share (the top level, lognormal intervals, metalog fits, the final pass that
 * assigns seedVars) and walks the tree form ("root"); rs_model_from_json and rs_model_parse
 * live here. The generic readers and problem reporting are in parse_fields.c, the flat
 * compatibility form in parse_flat.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "parse.h"

#define DEFAULT_CI 0.9
#define DEFAULT_PERT_GAMMA 4.0
#define MAX_CONTROLS 16
#define MIN_METALOG_PAIRS 2

/* =============================================================================================
 * The top level both forms share
 * ========================================================================================== */

static const double default_levels[] = {0.5, 0.9, 0.95, 0.99, 0.995, 0.999};

/* Sets the default quantile levels. */
static void set_default_levels(rs_model *model)
{
    model->nlevels = sizeof default_levels / sizeof default_levels[0];
    for (size_t i = 0; i < model->nlevels; i++) {
        model->levels[i] = default_levels[i];
        rs_level_label(model->levels[i], model->level_labels[i], sizeof model->level_labels[i]);
    }
}

/* Checks one quantile level (the value at the current pointer) and, when valid, appends it to
 * the model's levels unless its label repeats an earlier one. */
static void parse_level(rs_pctx *ctx, const struct json_object *v, rs_model *model)
{
    char nb[32];
    static const rs_range open01 = {0.0, 1.0, 1, 1};
    char label[32];
    double d = 0;
    if (!rs_number_value(ctx, v, &open01, &d))
        return;
    rs_level_label(d, label, sizeof label);
    if (strlen(label) >= sizeof model->level_labels[0]) {
        rs_report(ctx, "out_of_range", "has too many digits: its label \"%s\" is too long", label);
        return;
    }
    for (size_t j = 0; j < model->nlevels; j++) {
        if (strcmp(model->level_labels[j], label) == 0) {
            rs_report(ctx, "duplicate", "gives the label \"%s\" like an earlier level (%s)", label,
                      rs_num_text(model->levels[j], nb));
            return;
        }
    }
    model->levels[model->nlevels] = d;
    memcpy(model->level_labels[model->nlevels], label, strlen(label) + 1);
    model->nlevels++;
}

/* Reads "quantiles" (1-32 distinct levels in (0,1)) or sets the defaults. */
static void parse_levels(rs_pctx *ctx, const struct json_object *request, rs_model *model)
{
    const struct json_object *arr = rs_get_array(ctx, request, "quantiles", RS_OPTIONAL);
    if (arr == NULL) {
        set_default_levels(model);
        return;
    }
    size_t n = json_object_array_length(arr);
    size_t mark = rs_ptr_push_key(&ctx->ptr, "quantiles");
    model->nlevels = 0;
    if (n == 0) {
        rs_report(ctx, "too_few", "must list at least one level");
    } else if (n > RS_MAX_QUANTILES) {
        rs_report(ctx, "too_many", "may list at most %d levels (has %zu)", RS_MAX_QUANTILES, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t m = rs_ptr_push_index(&ctx->ptr, i);
            parse_level(ctx, json_object_array_get_idx(arr, i), model);
            rs_ptr_pop(&ctx->ptr, m);
        }
    }
    rs_ptr_pop(&ctx->ptr, mark);
}

/* Reads "trials" or its alias "nTrials" (not both) in [1, limits.max_trials]. */
static void parse_trials(rs_pctx *ctx, const struct json_object *request, rs_model *model)
{
    int has_trials = rs_has(request, "trials"), has_alias = rs_has(request, "nTrials");
    int64_t max =
        ctx->limits.max_trials > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ctx->limits.max_trials;
    int64_t v = 0;
    model->trials = RS_DEFAULT_TRIALS;
    if (has_trials && has_alias)
        rs_report_key(ctx, "nTrials", "conflict",
                      "\"nTrials\" is an alias of \"trials\": give one of them, not both");
    if (!has_trials && !has_alias) {
        if (RS_DEFAULT_TRIALS > ctx->limits.max_trials)
            rs_report_key(ctx, "trials", "out_of_range",
                          "the default of %u trials is above this endpoint's limit of %" PRIu64
                          "; give \"trials\"",
                          RS_DEFAULT_TRIALS, ctx->limits.max_trials);
        return;
    }
    if (rs_get_integer(ctx, request, has_trials ? "trials" : "nTrials", RS_OPTIONAL, 1, max, &v))
        model->trials = (uint64_t)v;
}

void rs_parse_top(rs_pctx *ctx, const struct json_object *request, const char *const *allowed,
                  size_t n, rs_model *model)
{
    const char *s = NULL;
    size_t len = 0;
    int64_t seed = 0;
    rs_check_fields(ctx, request, allowed, n);
    if (rs_get_string(ctx, request, "name", RS_OPTIONAL, &s, &len)) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "name");
        if (rs_check_name(ctx, s, len))
            model->name = rs_copy_str(ctx, s, len);
        rs_ptr_pop(&ctx->ptr, mark);
    }
    if (model->name == NULL && !rs_failed(ctx))
        model->name = rs_copy_str(ctx, "", 0);
    parse_trials(ctx, request, model);
    model->seed = RS_DEFAULT_SEED;
    if (rs_get_integer(ctx, request, "seed", RS_OPTIONAL, 0, (int64_t)RS_MAX_SEED - 1, &seed))
        model->seed = (uint32_t)seed;
    parse_levels(ctx, request, model);
}

/* =============================================================================================
 * Building the model
 * ========================================================================================== */

int32_t rs_model_add_node(rs_pctx *ctx, rs_model *model, const char *too_many_pointer)
{
    if (ctx->stopped || rs_failed(ctx))
        return -1;
    if (model->nnodes >= ctx->limits.max_nodes) {
        rs_report_at(ctx, too_many_pointer, "too_many",
                     "the tree has more than %" PRIu32 " nodes, the limit", ctx->limits.max_nodes);
        ctx->stopped = 1;
        return -1;
    }
    if (model->nnodes == ctx->node_cap) {
        size_t cap = ctx->node_cap == 0 ? 16 : ctx->node_cap * 2;
        if (cap > ctx->limits.max_nodes)
            cap = ctx->limits.max_nodes;
        rs_node *nodes = realloc(model->nodes, cap * sizeof *nodes);
        if (nodes == NULL) {
            ctx->err = RS_ENOMEM;
            return -1;
        }
        model->nodes = nodes;
        ctx->node_cap = cap;
    }
    rs_node *node = &model->nodes[model->nnodes];
    memset(node, 0, sizeof *node);
    node->parent = -1;
    return (int32_t)model->nnodes++;
}

/* Fills model->leaves, leaf_index and height. Returns RS_OK or RS_ENOMEM. */
static rs_err index_leaves(rs_model *model)
{
    size_t nleaves = 0;
    for (size_t i = 0; i < model->nnodes; i++)
        nleaves += model->nodes[i].is_leaf ? 1 : 0;
    model->leaves = malloc((nleaves > 0 ? nleaves : 1) * sizeof *model->leaves);
    if (model->leaves == NULL)
        return RS_ENOMEM;
    model->height = 0;
    for (size_t i = 0; i < model->nnodes; i++) {
        rs_node *node = &model->nodes[i];
        if (node->depth + 1 > model->height)
            model->height = node->depth + 1;
        if (node->is_leaf) {
            node->leaf_index = (uint32_t)model->nleaves;
            model->leaves[model->nleaves++] = (uint32_t)i;
        }
    }
    return RS_OK;
}

/* Gives every leaf without an explicit seedVar its default: 1 + FNV-1a64(position path) mod
 * (RS_MAX_SEED_VAR - 1), moved up (wrapping) past values already taken. hash is scratch space
 * for nnodes path hashes. Returns RS_OK or RS_ENOMEM. */
static rs_err assign_seed_vars(rs_pctx *ctx, rs_model *model, uint64_t *hash)
{
    hash[0] = FNV_OFFSET; /* the root's path is empty */
    for (size_t i = 0; i < model->nnodes; i++) {
        const rs_node *node = &model->nodes[i];
        for (uint32_t k = 0; k < node->nchildren; k++)
            hash[node->children[k]] = rs_fnv_index(hash[i], k);
    }
    for (size_t l = 0; l < model->nleaves; l++) {
        rs_node *leaf = &model->nodes[model->leaves[l]];
        if (leaf->seed_var != 0)
            continue;
        uint32_t v = 1u + (uint32_t)(hash[model->leaves[l]] % (RS_MAX_SEED_VAR - 1u));
        while (rs_set_find(&ctx->seeds, NULL, v, NULL))
            v = v + 1u >= RS_MAX_SEED_VAR ? 1u : v + 1u;
        if (rs_set_insert(ctx, &ctx->seeds, NULL, v, model->leaves[l], NULL) < 0)
            return RS_ENOMEM;
        leaf->seed_var = v;
    }
    return RS_OK;
}

/* Builds the Poisson tables of the Poisson leaves. Returns RS_OK or RS_ENOMEM. */
static rs_err init_poisson(rs_model *model)
{
    for (size_t l = 0; l < model->nleaves; l++) {
        rs_node *leaf = &model->nodes[model->leaves[l]];
        if (leaf->freq.kind != RS_FREQ_POISSON)
            continue;
        rs_err err = rs_poisson_init(&leaf->freq.poisson, leaf->freq.poisson.lambda);
        if (err != RS_OK)
            return err;
    }
    return RS_OK;
}

rs_err rs_model_finalize(rs_pctx *ctx, rs_model *model)
{
    uint64_t *hash = NULL;
    rs_err err = index_leaves(model);
    if (err != RS_OK)
        goto out;
    hash = malloc(model->nnodes * sizeof *hash);
    if (hash == NULL) {
        err = RS_ENOMEM;
        goto out;
    }
    err = assign_seed_vars(ctx, model, hash);
    if (err != RS_OK)
        goto out;
    err = init_poisson(model);
out:
    free(hash);
    if (err != RS_OK)
        ctx->err = err;
    return err;
}

/* =============================================================================================
 * Severities both forms use
 * ========================================================================================== */

static const rs_range positive = {0.0, HUGE_VAL, 1, 0};
static const rs_range non_negative = {0.0, HUGE_VAL, 0, 0};
static const rs_range open_unit = {0.0, 1.0, 1, 1};
static const rs_range closed_unit = {0.0, 1.0, 0, 0};
static const rs_range scale_range = {0.0, RS_MAX_SCALE_FACTOR, 0, 0};
/* Money amounts a severity is given: at most RS_MAX_EVENT_LOSS (signed where a metalog allows
 * it); draws beyond it from a distribution's far tail are capped by the sampler. */
static const rs_range amount = {0.0, RS_MAX_EVENT_LOSS, 0, 0};
static const rs_range positive_amount = {0.0, RS_MAX_EVENT_LOSS, 1, 0};
static const rs_range signed_amount = {-RS_MAX_EVENT_LOSS, RS_MAX_EVENT_LOSS, 0, 0};
/* The lognormal's mu: its median e^mu is at most RS_MAX_EVENT_LOSS. */
static const rs_range log_amount = {-HUGE_VAL, 34.538776394910684, 0, 0};

int rs_parse_lognormal_interval(rs_pctx *ctx, const struct json_object *obj, const char *lower_key,
                                const char *upper_key, double ci, rs_severity *sev)
{
    char nb[32];
    double lower = 0, upper = 0, mu = 0, sigma = 0;
    int ok = rs_get_number(ctx, obj, lower_key, RS_REQUIRED, &positive_amount, &lower);
    ok &= rs_get_number(ctx, obj, upper_key, RS_REQUIRED, &positive_amount, &upper);
    if (!ok)
        return 0;
    if (!(lower < upper)) {
        rs_report_key(ctx, upper_key, "conflict", "must be greater than \"%s\" (%s)", lower_key,
                      rs_num_text(lower, nb));
        return 0;
    }
    rs_lognormal_from_interval(lower, upper, ci, &mu, &sigma);
    if (!isfinite(mu) || !isfinite(sigma) || !(sigma > 0)) {
        rs_report_key(ctx, upper_key, "conflict",
                      "\"%s\" and \"%s\" are too close to define a lognormal", lower_key,
                      upper_key);
        return 0;
    }
    sev->kind = RS_SEV_LOGNORMAL;
    sev->u.lognormal.mu = mu;
    sev->u.lognormal.sigma = sigma;
    return 1;
}

/* Reads obj[key] as an array of 2..16 finite numbers in range, strictly increasing, into
 * out[] and *n. Returns 1 when all is well. */
static int read_increasing(rs_pctx *ctx, const struct json_object *obj, const char *key,
                           const rs_range *range, double *out, size_t *n)
{
    char nb[32];
    const struct json_object *arr = rs_get_array(ctx, obj, key, RS_REQUIRED);
    size_t before = ctx->nerrors;
    if (arr == NULL)
        return 0;
    size_t len = json_object_array_length(arr);
    size_t mark = rs_ptr_push_key(&ctx->ptr, key);
    if (len < MIN_METALOG_PAIRS) {
        rs_report(ctx, "too_few", "needs at least %d values (has %zu)", MIN_METALOG_PAIRS, len);
    } else if (len > RS_METALOG_MAX_TERMS) {
        rs_report(ctx, "too_many", "may have at most %d values (has %zu)", RS_METALOG_MAX_TERMS,
                  len);
    } else {
        int prev_ok = 0;
        for (size_t i = 0; i < len; i++) {
            size_t m = rs_ptr_push_index(&ctx->ptr, i);
            int ok = rs_number_value(ctx, json_object_array_get_idx(arr, i), range, &out[i]);
            if (ok && prev_ok && !(out[i] > out[i - 1]))
                rs_report(ctx, "not_increasing",
                          "must be greater than the value before it (%s): the values must be "
                          "strictly increasing",
                          rs_num_text(out[i - 1], nb));
            prev_ok = ok;
            rs_ptr_pop(&ctx->ptr, m);
        }
        *n = len;
    }
    rs_ptr_pop(&ctx->ptr, mark);
    return ctx->nerrors == before;
}

/* Checks the bounds of spec against the quantiles x[0..n) (strictly increasing). */
static void check_metalog_bounds(rs_pctx *ctx, const rs_metalog_spec *spec, const double *x,
                                 size_t n)
{
    char nb[32];
    int has_lower = spec->bounds == RS_METALOG_LOWER || spec->bounds == RS_METALOG_BOUNDED;
    int has_upper = spec->bounds == RS_METALOG_UPPER || spec->bounds == RS_METALOG_BOUNDED;
    if (has_lower && has_upper && !(spec->lower < spec->upper)) {
        rs_report_key(ctx, spec->upper_key, "conflict", "must be greater than \"%s\" (%s)",
                      spec->lower_key, rs_num_text(spec->lower, nb));
        return;
    }
    if (has_lower && !(x[0] > spec->lower)) {
        if (spec->lower_key != NULL) {
            rs_report_key(ctx, spec->lower_key, "conflict",
                          "must be below every quantile (the smallest is %s)",
                          rs_num_text(x[0], nb));
        } else {
            size_t mark = rs_ptr_push_key(&ctx->ptr, "quantiles");
            size_t m = rs_ptr_push_index(&ctx->ptr, 0);
            rs_report(ctx, "out_of_range", "must be above the lower bound %s",
                      rs_num_text(spec->lower, nb));
            rs_ptr_pop(&ctx->ptr, m);
            rs_ptr_pop(&ctx->ptr, mark);
        }
    }
    if (has_upper && !(x[n - 1] < spec->upper))
        rs_report_key(ctx, spec->upper_key, "conflict",
                      "must be above every quantile (the largest is %s)",
                      rs_num_text(x[n - 1], nb));
}

/* Reports a failed fit as "infeasible" at the current pointer. */
static void report_fit(rs_pctx *ctx, const rs_metalog_spec *spec, rs_metalog_fit_status status)
{
    const char *why =
        status == RS_METALOG_FIT_SINGULAR
            ? "cannot be fitted to these percentiles and quantiles (singular system)"
        : status == RS_METALOG_FIT_INFEASIBLE
            ? "fitted to these percentiles and quantiles has a density that is not positive "
              "everywhere on (0,1)"
            : "cannot be fitted to these percentiles and quantiles";
    rs_report(ctx, "infeasible", "%s: the metalog %s; move the quantiles or use fewer terms",
              spec->label, why);
}

int rs_parse_metalog(rs_pctx *ctx, const struct json_object *obj, const rs_metalog_spec *spec,
                     rs_metalog *out)
{
    double p[RS_METALOG_MAX_TERMS], x[RS_METALOG_MAX_TERMS];
    size_t np = 0, nx = 0, before = ctx->nerrors;
    int64_t terms = 0;
    int p_ok = read_increasing(ctx, obj, "percentiles", &open_unit, p, &np);
    int x_ok = read_increasing(ctx, obj, "quantiles", &signed_amount, x, &nx);
    int paired = p_ok && x_ok && np == nx;
    if (p_ok && x_ok && np != nx)
        rs_report_key(ctx, "quantiles", "conflict",
                      "has %zu values but \"percentiles\" has %zu: they must pair up", nx, np);
    terms = paired ? (int64_t)np : 0;
    rs_get_integer(ctx, obj, "terms", RS_OPTIONAL, 2, paired ? (int64_t)np : RS_METALOG_MAX_TERMS,
                   &terms);
    if (x_ok)
        check_metalog_bounds(ctx, spec, x, nx);
    if (ctx->nerrors != before || rs_failed(ctx))
        return 0;
    int explicit_terms = rs_has(obj, "terms");
    rs_metalog_fit_status status =
        rs_metalog_fit(p, x, np, (int)terms, spec->bounds, spec->lower, spec->upper, out);
    /* Symmetric percentile sets of 7, 11 or 15 pairs make the exact system singular (a
     * property of the metalog basis). Without an explicit "terms", the fit then falls back to
     * least squares with one term fewer, which is well determined. */
    if (status == RS_METALOG_FIT_SINGULAR && !explicit_terms && terms > 2)
        status =
            rs_metalog_fit(p, x, np, (int)terms - 1, spec->bounds, spec->lower, spec->upper, out);
    if (status != RS_METALOG_FIT_OK) {
        report_fit(ctx, spec, status);
        return 0;
    }
    return 1;
}

/* =============================================================================================
 * The tree form
 * ========================================================================================== */

/* What a tree walk shares. */
typedef struct tree_walk {
    rs_pctx *ctx;
    rs_model *model;
    rs_set ids; /* node id -> node index */
} tree_walk;

/* Node kinds as far as the walk can tell. */
typedef enum node_kind { KIND_UNKNOWN = 0, KIND_PORTFOLIO, KIND_LEAF } node_kind;

static const char *const portfolio_fields[] = {"id", "name", "type", "children"};
static const char *const leaf_fields[] = {"id",       "name",     "type",   "frequency",
                                          "severity", "controls", "seedVar"};
static const char *const any_node_fields[] = {"id",        "name",     "type",     "children",
                                              "frequency", "severity", "controls", "seedVar"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- frequency ---- */

/* Reads a frequency object (at the current pointer) into *freq. */
static void parse_frequency(rs_pctx *ctx, const struct json_object *obj, rs_frequency *freq)
{
    static const char *const kinds[] = {"bernoulli", "poisson"};
    static const char *const bernoulli_fields[] = {"type", "p"};
    static const char *const poisson_fields[] = {"type", "lambda"};
    static const rs_range lambda_range = {0.0, RS_MAX_POISSON_LAMBDA, 0, 0};
    int kind = rs_get_enum(ctx, obj, "type", kinds, COUNT(kinds));
    if (kind == 0) {
        rs_check_fields(ctx, obj, bernoulli_fields, COUNT(bernoulli_fields));
        freq->kind = RS_FREQ_BERNOULLI;
        rs_get_number(ctx, obj, "p", RS_REQUIRED, &closed_unit, &freq->p);
    } else if (kind == 1) {
        rs_check_fields(ctx, obj, poisson_fields, COUNT(poisson_fields));
        freq->kind = RS_FREQ_POISSON;
        rs_get_number(ctx, obj, "lambda", RS_REQUIRED, &lambda_range, &freq->poisson.lambda);
    }
}

/* ---- severities ---- */

/* Reads a lognormal severity: the interval form or the direct form, never both. */
static void parse_lognormal(rs_pctx *ctx, const struct json_object *obj, rs_severity *sev)
{
    static const char *const fields[] = {"type", "lower", "upper", "ci", "mu", "sigma"};
    int interval = rs_has(obj, "lower") || rs_has(obj, "upper") || rs_has(obj, "ci");
    int direct = rs_has(obj, "mu") || rs_has(obj, "sigma");
    double ci = DEFAULT_CI;
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    if (interval && direct) {
        rs_report(ctx, "conflict",
                  "give either \"lower\"/\"upper\" (and \"ci\") or \"mu\"/\"sigma\", not both");
        return;
    }
    if (!interval && !direct) {
        rs_report(ctx, "required",
                  "a lognormal needs \"lower\" and \"upper\" (and optionally \"ci\"), or \"mu\" "
                  "and \"sigma\"");
        return;
    }
    if (direct) {
        sev->kind = RS_SEV_LOGNORMAL;
        rs_get_number(ctx, obj, "mu", RS_REQUIRED, &log_amount, &sev->u.lognormal.mu);
        rs_get_number(ctx, obj, "sigma", RS_REQUIRED, &positive, &sev->u.lognormal.sigma);
        return;
    }
    rs_get_number(ctx, obj, "ci", RS_OPTIONAL, &open_unit, &ci);
    rs_parse_lognormal_interval(ctx, obj, "lower", "upper", ci, sev);
}

/* Reads a metalog severity; its bounds form follows which of lower/upper are present. */
static void parse_metalog(rs_pctx *ctx, const struct json_object *obj, const char *label,
                          rs_severity *sev)
{
    static const char *const fields[] = {"type",  "percentiles", "quantiles",
                                         "lower", "upper",       "terms"};
    rs_metalog_spec spec = {RS_METALOG_UNBOUNDED, 0.0, 0.0, "lower", "upper", label};
    int has_lower = rs_has(obj, "lower"), has_upper = rs_has(obj, "upper");
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    if (has_lower)
        rs_get_number(ctx, obj, "lower", RS_OPTIONAL, &signed_amount, &spec.lower);
    if (has_upper)
        rs_get_number(ctx, obj, "upper", RS_OPTIONAL, &signed_amount, &spec.upper);
    spec.bounds = has_lower && has_upper ? RS_METALOG_BOUNDED
                  : has_lower            ? RS_METALOG_LOWER
                  : has_upper            ? RS_METALOG_UPPER
                                         : RS_METALOG_UNBOUNDED;
    sev->kind = RS_SEV_METALOG;
    rs_parse_metalog(ctx, obj, &spec, &sev->u.metalog);
}

/* Reads a PERT severity: 0 <= min <= mode <= max, min < max, gamma > 0 (default 4). Records
 * RS_ENOMEM in ctx when its knot table cannot be allocated. */
static void parse_pert(rs_pctx *ctx, const struct json_object *obj, rs_severity *sev)
{
    char nb[32], nb2[32];
    static const char *const fields[] = {"type", "min", "mode", "max", "gamma"};
    double min = 0, mode = 0, max = 0, gamma = DEFAULT_PERT_GAMMA;
    size_t before = ctx->nerrors;
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    int ok = rs_get_number(ctx, obj, "min", RS_REQUIRED, &amount, &min);
    ok &= rs_get_number(ctx, obj, "mode", RS_REQUIRED, NULL, &mode);
    ok &= rs_get_number(ctx, obj, "max", RS_REQUIRED, &amount, &max);
    rs_get_number(ctx, obj, "gamma", RS_OPTIONAL, &positive, &gamma);
    if (ok && !(min < max))
        rs_report_key(ctx, "max", "conflict", "must be greater than \"min\" (%s)",
                      rs_num_text(min, nb));
    else if (ok && !(mode >= min && mode <= max))
        rs_report_key(ctx, "mode", "conflict", "must be between \"min\" (%s) and \"max\" (%s)",
                      rs_num_text(min, nb), rs_num_text(max, nb2));
    sev->kind = RS_SEV_PERT;
    if (ctx->nerrors == before) {
        rs_pert_init(&sev->u.pert, min, mode, max, gamma);
        if (rs_pert_init_table(&sev->u.pert) != RS_OK)
            ctx->err = RS_ENOMEM;
    }
}

/* Reads a uniform severity: 0 <= min <= max. */
static void parse_uniform(rs_pctx *ctx, const struct json_object *obj, rs_severity *sev)
{
    char nb[32];
    static const char *const fields[] = {"type", "min", "max"};
    double min = 0, max = 0;
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    int ok = rs_get_number(ctx, obj, "min", RS_REQUIRED, &amount, &min);
    ok &= rs_get_number(ctx, obj, "max", RS_REQUIRED, &amount, &max);
    if (ok && !(min <= max))
        rs_report_key(ctx, "max", "conflict", "must be at least \"min\" (%s)",
                      rs_num_text(min, nb));
    sev->kind = RS_SEV_UNIFORM;
    sev->u.uniform.min = min;
    sev->u.uniform.max = max;
}

/* Reads a constant severity: value >= 0. */
static void parse_constant(rs_pctx *ctx, const struct json_object *obj, rs_severity *sev)
{
    static const char *const fields[] = {"type", "value"};
    rs_check_fields(ctx, obj, fields, COUNT(fields));
    sev->kind = RS_SEV_CONSTANT;
    rs_get_number(ctx, obj, "value", RS_REQUIRED, &amount, &sev->u.constant);
}

/* Reads a severity object (at the current pointer) into *sev. label names the node. */
static void parse_severity(rs_pctx *ctx, const struct json_object *obj, const char *label,
                           rs_severity *sev)
{
    static const char *const kinds[] = {"lognormal", "metalog", "pert", "uniform", "constant"};
    switch (rs_get_enum(ctx, obj, "type", kinds, COUNT(kinds))) {
    case 0:
        parse_lognormal(ctx, obj, sev);
        break;
    case 1:
        parse_metalog(ctx, obj, label, sev);
        break;
    case 2:
        parse_pert(ctx, obj, sev);
        break;
    case 3:
        parse_uniform(ctx, obj, sev);
        break;
    case 4:
        parse_constant(ctx, obj, sev);
        break;
    default:
        break;
    }
}

/* ---- controls ---- */

/* Reads one control object (at the current pointer) into *control. */
static void parse_control(rs_pctx *ctx, const struct json_object *obj, rs_control *control)
{
    static const char *const kinds[] = {"deductible", "limit", "scale", "insurance"};
    static const char *const amount_fields[] = {"type", "amount"};
    static const char *const scale_fields[] = {"type", "factor"};
    static const char *const insurance_fields[] = {"type", "deductible", "limit"};
    int kind = rs_get_enum(ctx, obj, "type", kinds, COUNT(kinds));
    control->a = control->b = 0;
    switch (kind) {
    case 0:
    case 1:
        rs_check_fields(ctx, obj, amount_fields, COUNT(amount_fields));
        control->kind = kind == 0 ? RS_CTRL_DEDUCTIBLE : RS_CTRL_LIMIT;
        rs_get_number(ctx, obj, "amount", RS_REQUIRED, &non_negative, &control->a);
        break;
    case 2:
        rs_check_fields(ctx, obj, scale_fields, COUNT(scale_fields));
        control->kind = RS_CTRL_SCALE;
        rs_get_number(ctx, obj, "factor", RS_REQUIRED, &scale_range, &control->a);
        break;
    case 3:
        rs_check_fields(ctx, obj, insurance_fields, COUNT(insurance_fields));
        control->kind = RS_CTRL_INSURANCE;
        rs_get_number(ctx, obj, "deductible", RS_REQUIRED, &non_negative, &control->a);
        rs_get_number(ctx, obj, "limit", RS_REQUIRED, &non_negative, &control->b);
        break;
    default:
        break;
    }
}

/* Reads the optional "controls" array of a leaf node into model->nodes[idx]. */
static void parse_controls(tree_walk *w, const struct json_object *obj, int32_t idx)
{
    rs_pctx *ctx = w->ctx;
    const struct json_object *arr = rs_get_array(ctx, obj, "controls", RS_OPTIONAL);
    if (arr == NULL)
        return;
    size_t n = json_object_array_length(arr);
    if (n > MAX_CONTROLS) {
        rs_report_key(ctx, "controls", "too_many", "may have at most %d controls (has %zu)",
                      MAX_CONTROLS, n);
        return;
    }
    if (n == 0)
        return;
    rs_control *controls = calloc(n, sizeof *controls);
    if (controls == NULL) {
        ctx->err = RS_ENOMEM;
        return;
    }
    w->model->nodes[idx].controls = controls;
    w->model->nodes[idx].ncontrols = (uint32_t)n;
    size_t mark = rs_ptr_push_key(&ctx->ptr, "controls");
    for (size_t i = 0; i < n; i++) {
        size_t m = rs_ptr_push_index(&ctx->ptr, i);
        const struct json_object *c = json_object_array_get_idx(arr, i);
        if (json_object_is_type(c, json_type_object))
            parse_control(ctx, c, &controls[i]);
        else
            rs_report(ctx, "type", "a control must be an object, not %s", rs_type_name(c));
        rs_ptr_pop(&ctx->ptr, m);
    }
    rs_ptr_pop(&ctx->ptr, mark);
}

/* Reads the optional explicit "seedVar" of leaf idx and reserves it. */
static void parse_seed_var(tree_walk *w, const struct json_object *obj, int32_t idx)
{
    rs_pctx *ctx = w->ctx;
    int64_t v = 0;
    uint32_t other = 0;
    if (!rs_get_integer(ctx, obj, "seedVar", RS_OPTIONAL, 1, (int64_t)RS_MAX_SEED_VAR - 1, &v))
        return;
    int r = rs_set_insert(ctx, &ctx->seeds, NULL, (size_t)v, (uint32_t)idx, &other);
    if (r == 0) {
        const char *id = w->model->nodes[other].id;
        rs_report_key(ctx, "seedVar", "duplicate", "seedVar %" PRId64 " is already used by %s%s%s",
                      v, id ? "node \"" : "an earlier leaf", id ? id : "", id ? "\"" : "");
        return;
    }
    w->model->nodes[idx].seed_var = (uint32_t)v;
}

/* Reads the leaf parts (frequency, severity, controls, seedVar) of node idx. */
static void parse_leaf(tree_walk *w, const struct json_object *obj, int32_t idx, const char *label)
{
    rs_pctx *ctx = w->ctx;
    const struct json_object *freq = rs_get_object(ctx, obj, "frequency", RS_REQUIRED);
    const struct json_object *sev = rs_get_object(ctx, obj, "severity", RS_REQUIRED);
    w->model->nodes[idx].is_leaf = 1;
    if (freq != NULL) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "frequency");
        parse_frequency(ctx, freq, &w->model->nodes[idx].freq);
        rs_ptr_pop(&ctx->ptr, mark);
    }
    if (sev != NULL) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "severity");
        parse_severity(ctx, sev, label, &w->model->nodes[idx].sev);
        rs_ptr_pop(&ctx->ptr, mark);
    }
    parse_controls(w, obj, idx);
    parse_seed_var(w, obj, idx);
}

/* ---- nodes ---- */

/* Reads "id" and "name" of node idx (name defaults to the id) and checks the id is unique.
 * Writes into label how messages name the node. */
static void parse_node_names(tree_walk *w, const struct json_object *obj, int32_t idx, char *label,
                             size_t label_size)
{
    rs_pctx *ctx = w->ctx;
    const char *id = NULL, *name = NULL;
    size_t id_len = 0, name_len = 0;
    uint32_t other = 0;
    snprintf(label, label_size, "this node");
    if (rs_get_string(ctx, obj, "id", RS_REQUIRED, &id, &id_len)) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "id");
        if (rs_check_id(ctx, id, id_len)) {
            snprintf(label, label_size, "node \"%s\"", id);
            char *copy = rs_copy_str(ctx, id, id_len);
            w->model->nodes[idx].id = copy;
            if (copy != NULL &&
                rs_set_insert(ctx, &w->ids, copy, id_len, (uint32_t)idx, &other) == 0)
                rs_report(ctx, "duplicate", "the id \"%s\" is already used by an earlier node",
                          copy);
        }
        rs_ptr_pop(&ctx->ptr, mark);
    }
    if (rs_get_string(ctx, obj, "name", RS_OPTIONAL, &name, &name_len)) {
        size_t mark = rs_ptr_push_key(&ctx->ptr, "name");
        if (rs_check_name(ctx, name, name_len))
            w->model->nodes[idx].name = rs_copy_str(ctx, name, name_len);
        rs_ptr_pop(&ctx->ptr, mark);
    } else if (w->model->nodes[idx].id != NULL) {
        w->model->nodes[idx].name = rs_copy_str(ctx, id, id_len);
    }
}

/* Decides the kind of a node: its "type", or when that is missing or wrong, a guess from its
 * fields so that the rest of the node is still checked. */
static node_kind parse_node_kind(rs_pctx *ctx, const struct json_object *obj)
{
    static const char *const kinds[] = {"portfolio", "leaf"};
    int kind = rs_get_enum(ctx, obj, "type", kinds, COUNT(kinds));
    if (kind == 0)
        return KIND_PORTFOLIO;
    if (kind == 1)
        return KIND_LEAF;
    if (rs_has(obj, "children"))
        return KIND_PORTFOLIO;
    if (rs_has(obj, "frequency") || rs_has(obj, "severity"))
        return KIND_LEAF;
    return KIND_UNKNOWN;
}

static int32_t walk_node(tree_walk *w, const struct json_object *obj, int32_t parent,
                         uint32_t depth);

/* Walks the children of portfolio idx (at depth). */
static void walk_children(tree_walk *w, const struct json_object *obj, int32_t idx, uint32_t depth)
{
    rs_pctx *ctx = w->ctx;
    const struct json_object *arr = rs_get_array(ctx, obj, "children", RS_REQUIRED);
    if (arr == NULL)
        return;
    size_t n = json_object_array_length(arr);
    if (n == 0) {
        rs_report_key(ctx, "children", "too_few", "a portfolio needs at least one child");
        return;
    }
    size_t cap = n < ctx->limits.max_nodes ? n : ctx->limits.max_nodes;
    uint32_t *children = malloc(cap * sizeof *children);
    if (children == NULL) {
        ctx->err = RS_ENOMEM;
        return;
    }
    w->model->nodes[idx].children = children;
    size_t mark = rs_ptr_push_key(&ctx->ptr, "children");
    for (size_t i = 0; i < n && !ctx->stopped && !rs_failed(ctx); i++) {
        size_t m = rs_ptr_push_index(&ctx->ptr, i);
        int32_t child = walk_node(w, json_object_array_get_idx(arr, i), idx, depth + 1);
        rs_ptr_pop(&ctx->ptr, m);
        rs_node *node = &w->model->nodes[idx]; /* nodes may have moved */
        if (child >= 0 && node->nchildren < cap)
            node->children[node->nchildren++] = (uint32_t)child;
    }
    rs_ptr_pop(&ctx->ptr, mark);
}

/* Checks and builds the node obj (at the current pointer) and, depth first, its subtree.
 * depth is 0 for the root. Recursion stops at limits.max_depth. Returns the node's index or -1
 * when no node was made. */
static int32_t walk_node(tree_walk *w, const struct json_object *obj, int32_t parent,
                         uint32_t depth)
{
    rs_pctx *ctx = w->ctx;
    char label[96];
    if (ctx->stopped || rs_failed(ctx))
        return -1;
    if (depth >= ctx->limits.max_depth) {
        if (!ctx->deep_seen)
            rs_report(ctx, "too_deep", "the tree may have at most %" PRIu32 " levels",
                      ctx->limits.max_depth);
        ctx->deep_seen = 1;
        return -1;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        rs_report(ctx, "type", "a node must be an object, not %s", rs_type_name(obj));
        return -1;
    }
    int32_t idx = rs_model_add_node(ctx, w->model, "/root");
    if (idx < 0)
        return -1;
    w->model->nodes[idx].parent = parent;
    w->model->nodes[idx].depth = depth;
    parse_node_names(w, obj, idx, label, sizeof label);
    node_kind kind = parse_node_kind(ctx, obj);
    if (kind == KIND_PORTFOLIO) {
        rs_check_fields(ctx, obj, portfolio_fields, COUNT(portfolio_fields));
        walk_children(w, obj, idx, depth);
    } else if (kind == KIND_LEAF) {
        rs_check_fields(ctx, obj, leaf_fields, COUNT(leaf_fields));
        parse_leaf(w, obj, idx, label);
    } else {
        rs_check_fields(ctx, obj, any_node_fields, COUNT(any_node_fields));
    }
    return idx;
}

/* Builds the nodes of the tree form from "root". */
static void parse_tree(rs_pctx *ctx, const struct json_object *request, rs_model *model)
{
    tree_walk w = {ctx, model, {NULL, 0, 0}};
    struct json_object *root = NULL;
    if (!json_object_object_get_ex(request, "root", &root)) {
        rs_report_key(ctx, "root", "required", "is required");
        return;
    }
    size_t mark = rs_ptr_push_key(&ctx->ptr, "root");
    walk_node(&w, root, -1, 0);
    rs_ptr_pop(&ctx->ptr, mark);
    rs_set_free(&w.ids);
}

/* =============================================================================================
 * Entry points
 * ========================================================================================== */

/* Sets up a parse: checks and caps the limits. Returns RS_OK or RS_EINVAL. */
static rs_err ctx_init(rs_pctx *ctx, const rs_limits *limits, rs_diag *diag)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->diag = diag;
    if (limits == NULL)
        rs_limits_default(&ctx->limits);
    else
        ctx->limits = *limits;
    if (ctx->limits.max_trials == 0 || ctx->limits.max_depth == 0 || ctx->limits.max_nodes == 0)
        return RS_EINVAL;
    if (ctx->limits.max_depth > RS_MAX_DEPTH)
        ctx->limits.max_depth = RS_MAX_DEPTH;
    if (ctx->limits.max_nodes > RS_MAX_NODES)
        ctx->limits.max_nodes = RS_MAX_NODES;
    if (ctx->limits.max_trials > RS_MAX_TRIALS)
        ctx->limits.max_trials = RS_MAX_TRIALS;
    return RS_OK;
}

/* Returns non-zero when the request uses the flat compatibility form. */
static int is_flat(const struct json_object *request)
{
    return !rs_has(request, "root") && (rs_has(request, "portfolios") || rs_has(request, "leaves"));
}

/* Checks the whole request and builds model (which is only usable when no problem was
 * found). */
static void build(rs_pctx *ctx, const struct json_object *request, rs_model *model)
{
    static const char *const tree_top[] = {"name", "trials",    "nTrials",
                                           "seed", "quantiles", "root"};
    static const char *const flat_top[] = {"name",      "trials",     "nTrials", "seed",
                                           "quantiles", "portfolios", "leaves"};
    if (!json_object_is_type(request, json_type_object)) {
        rs_report(ctx, "type", "the request must be a JSON object, not %s", rs_type_name(request));
        return;
    }
    if (is_flat(request)) {
        rs_parse_top(ctx, request, flat_top, COUNT(flat_top), model);
        rs_parse_flat(ctx, request, model);
    } else {
        rs_parse_top(ctx, request, tree_top, COUNT(tree_top), model);
        parse_tree(ctx, request, model);
    }
    if (ctx->nerrors == 0 && !rs_failed(ctx))
        rs_model_finalize(ctx, model);
}

rs_err rs_model_from_json(const struct json_object *request, const rs_limits *limits,
                          rs_model **out, rs_diag *diag)
{
    rs_pctx ctx;
    rs_model *model = NULL;
    rs_err err;
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    err = ctx_init(&ctx, limits, diag);
    if (err != RS_OK)
        return err;
    model = calloc(1, sizeof *model);
    if (model == NULL) {
        err = RS_ENOMEM;
        goto out;
    }
    build(&ctx, request, model);
    if (rs_failed(&ctx))
        err = ctx.err;
    else if (ctx.nerrors > 0)
        err = RS_EVALIDATION;
    if (err == RS_OK) {
        *out = model;
        model = NULL;
    }
out:
    rs_model_free(model);
    rs_set_free(&ctx.seeds);
    return err;
}

rs_err rs_model_parse(const char *text, size_t len, const rs_limits *limits, rs_model **out,
                      rs_diag *diag)
{
    struct json_object *request = NULL;
    rs_err err;
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    err = rs_json_parse(text, len, &request, diag);
    if (err != RS_OK)
        return err;
    err = rs_model_from_json(request, limits, out, diag);
    json_object_put(request);
    return err;
}
