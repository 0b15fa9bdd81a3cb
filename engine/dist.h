/*
 * Distributions of the engine (private header).
 *
 * Why this file exists: the sampling loop turns HDR uniforms into losses through inverse CDFs.
 * This header gathers the numerical pieces that do it: the normal quantile, lognormal
 * parameters from an interval, the Keelin metalog (fit, feasibility, quantile), PERT (inverse
 * regularized incomplete beta) and the Poisson count table. All functions are pure; fitting
 * functions allocate nothing except where noted (the PERT knot table and the Poisson table).
 */
#ifndef RISKSIM_DIST_H
#define RISKSIM_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "risksim/engine.h"

/* Most (percentile, quantile) pairs and terms a metalog accepts. */
#define RS_METALOG_MAX_TERMS 16

typedef enum rs_metalog_bounds {
    RS_METALOG_UNBOUNDED = 0,
    RS_METALOG_LOWER,  /* log-transformed: Q = lower + exp(M) */
    RS_METALOG_UPPER,  /* Q = upper - exp(-M) */
    RS_METALOG_BOUNDED /* logit-transformed: Q = (lower + upper e^M) / (1 + e^M) */
} rs_metalog_bounds;

typedef struct rs_metalog {
    rs_metalog_bounds bounds;
    int terms;                      /* 2..16 */
    double a[RS_METALOG_MAX_TERMS]; /* coefficients a1..ak (a[0] = a1) */
    double lower, upper;            /* used per bounds */
} rs_metalog;

/* Why a metalog fit failed. */
typedef enum rs_metalog_fit_status {
    RS_METALOG_FIT_OK = 0,
    RS_METALOG_FIT_BAD_INPUT, /* counts, ordering or bounds violated (caller validates first) */
    RS_METALOG_FIT_SINGULAR,  /* the linear system has no unique solution */
    RS_METALOG_FIT_INFEASIBLE /* the fitted quantile function is not increasing on (0,1) */
} rs_metalog_fit_status;

/* Fits a metalog with `terms` terms to n (p[i], x[i]) pairs (2 <= terms <= n <= 16, p strictly
 * increasing in (0,1), x strictly increasing and strictly inside the bounds). terms == n solves
 * exactly (the fit passes through every pair); terms < n is ordinary least squares on the
 * transformed x. Checks feasibility (density > 0 on (0,1)). Fills *out on success. */
rs_metalog_fit_status rs_metalog_fit(const double *p, const double *x, size_t n, int terms,
                                     rs_metalog_bounds bounds, double lower, double upper,
                                     rs_metalog *out);

/* Quantile function of a fitted metalog at y in (0,1). */
double rs_metalog_quantile(const rs_metalog *m, double y);

/* Lognormal parameters from a central interval: lower and upper bound the central ci interval
 * (0 < lower < upper, 0 < ci < 1). */
void rs_lognormal_from_interval(double lower, double upper, double ci, double *mu, double *sigma);

/* PERT distribution as a scaled Beta(alpha, beta) on [min, max]. */
typedef struct rs_pert {
    double min, max, alpha, beta;
    double lbeta;  /* log B(alpha, beta), precomputed */
    double *knots; /* owned; the exact quantile at fixed points, a start for the inversion;
                    * NULL unless rs_pert_init_table built it */
} rs_pert;

/* Sets up a PERT with min <= mode <= max, min < max, gamma > 0. Allocates nothing (knots is
 * NULL): the quantile then uses the inversion from its generic start, which is exact but slow
 * (about 1 to 4 microseconds). */
void rs_pert_init(rs_pert *pert, double min, double mode, double max, double gamma);

/* Builds the knot table of an initialized PERT (about 3 KB with malloc; about 0.1 ms, 0.3 ms
 * for shapes in the thousands), which makes rs_pert_quantile 3 to 4 times faster without
 * changing its accuracy. Builds nothing when alpha or beta is 1 (closed forms) or
 * alpha + beta > 1e5. Returns RS_OK or RS_ENOMEM (knots then stays NULL and the PERT remains
 * usable). Release with rs_pert_free. */
rs_err rs_pert_init_table(rs_pert *pert);

/* Bytes of the knot table of pert (0 when it has none). */
size_t rs_pert_table_bytes(const rs_pert *pert);

/* Frees the knot table and sets knots to NULL: safe on NULL, on a zeroed struct, without a
 * table, after a failed rs_pert_init_table and twice in a row. */
void rs_pert_free(rs_pert *pert);

/* Quantile of the PERT at u in (0,1): min + (max - min) * I^-1_u(alpha, beta), accurate to
 * about 1e-12 relative. The table only gives the inversion its start: every result is finished
 * on the exact incomplete beta function, so the accuracy does not depend on it. Deterministic
 * (the same u gives the same result on every call and thread). */
double rs_pert_quantile(const rs_pert *pert, double u);

/* Poisson CDF table for inverse-CDF draws: cdf[k] = P(N <= k), k = 0..n-1, with cdf[n-1] so
 * close to 1 that no HDR draw (at most 1 - 2^-33) exceeds it. */
typedef struct rs_poisson {
    double lambda;
    double *cdf; /* owned; NULL when lambda == 0 */
    size_t n;
} rs_poisson;

/* Builds the table for lambda in [0, 1000]. Returns RS_OK or RS_ENOMEM (allocates with malloc
 * only). */
rs_err rs_poisson_init(rs_poisson *pois, double lambda);
/* Frees the table (safe on a zeroed struct). */
void rs_poisson_free(rs_poisson *pois);
/* Smallest k with P(N <= k) >= u, for u in (0,1). */
uint32_t rs_poisson_quantile(const rs_poisson *pois, double u);

#endif
