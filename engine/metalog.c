/*
 * Keelin metalog: fit to expert (percentile, quantile) pairs, feasibility, quantile function.
 *
 * Why this file exists: experts describe a loss by a few quantiles ("10% chance below 20k, even
 * odds below 90k, 90% below 600k"); the metalog (Keelin 2016) is the quantile function that
 * passes through them (or fits them by least squares) and is sampled directly by evaluating it
 * at the trial's uniform. A fit is only usable if it is strictly increasing, so the fit also
 * proves (or, for many terms, checks densely) that the density is positive on (0,1).
 *
 * Notation: for y in (0,1), L = ln(y / (1-y)) and c = y - 1/2. The k-term metalog is
 * M(y) = sum_j a_j g_j(y) with g_1 = 1, g_2 = L, g_3 = c L, g_4 = c, then alternately
 * g_5 = c^2, g_6 = c^2 L, g_7 = c^3, g_8 = c^3 L, ... Grouping the terms gives
 * M(y) = P(c) + L Q(c) with P(c) = a1 + a4 c + a5 c^2 + a7 c^3 + a9 c^4 + ... and
 * Q(c) = a2 + a3 c + a6 c^2 + a8 c^3 + a10 c^4 + ..., hence
 * M'(y) = P'(c) + L Q'(c) + Q(c) / (y (1-y)). Both forms are used below.
 *
 * A property of the basis worth knowing: reflecting y -> 1-y maps c -> -c and L -> -L, so each
 * g_j is even or odd about 1/2. On a symmetric set of percentiles (p with 1-p, 1/2 included)
 * of 7, 11 or 15 points, the first 7, 11 or 15 terms have one odd function more than the data
 * has independent odd combinations (e.g. L, c, c^2 L, c^3 on three pairs): the exact fit is
 * not unique, and rs_metalog_fit says RS_METALOG_FIT_SINGULAR. One term fewer (least squares)
 * is well posed.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>

#include "dist.h"

/* Indices (0-based, into a[]) of the coefficients of P and Q in increasing powers of c. Both are
 * increasing, so a k-term metalog uses a prefix of each. */
static const int metalog_p_idx[8] = {0, 3, 4, 6, 8, 10, 12, 14};
static const int metalog_q_idx[8] = {1, 2, 5, 7, 9, 11, 13, 15};

/* Keelin (2016): a 3-term metalog is feasible iff a2 > 0 and |a3| / a2 < 1.66711. */
static const double metalog_3term_ratio = 1.66711;

/* A QR pivot below this fraction of the largest (the columns are scaled to unit norm first) is
 * taken as a rank-deficient system: its solution would be dominated by rounding. */
static const double metalog_rank_tol = 1e-12;

/* Feasibility grid for 4 or more terms (see check_feasible): points per tail and in the
 * centre. */
#define METALOG_GRID_TAIL 1500
#define METALOG_GRID_CENTER 2001
/* The grid's tail points run from 10^-METALOG_GRID_DECADES to 0.1 (and mirrored). */
#define METALOG_GRID_DECADES 9.0

/* Value of basis function j (0-based: j = 0 is g_1) at a point with logit L and centre c. */
static double basis(int j, double L, double c)
{
    switch (j) {
    case 0:
        return 1.0;
    case 1:
        return L;
    case 2:
        return c * L;
    case 3:
        return c;
    default:
        break;
    }
    int k = j + 1; /* Keelin's 1-based term number, >= 5 */
    if (k % 2 == 1) {
        return pow(c, (double)((k - 1) / 2));
    }
    return pow(c, (double)(k / 2 - 1)) * L;
}

/* Evaluates P(c) and Q(c) of the terms-term metalog with coefficients a. */
static void eval_pq(const double *a, int terms, double c, double *P, double *Q)
{
    double p = 0.0, q = 0.0;
    for (int i = 7; i >= 0; i--) {
        if (metalog_p_idx[i] < terms) {
            p = p * c + a[metalog_p_idx[i]];
        }
        if (metalog_q_idx[i] < terms) {
            q = q * c + a[metalog_q_idx[i]];
        }
    }
    *P = p;
    *Q = q;
}

/* Evaluates P'(c) and Q'(c). */
static void eval_dpq(const double *a, int terms, double c, double *dP, double *dQ)
{
    double p = 0.0, q = 0.0;
    for (int i = 7; i >= 1; i--) {
        if (metalog_p_idx[i] < terms) {
            p = p * c + (double)i * a[metalog_p_idx[i]];
        }
        if (metalog_q_idx[i] < terms) {
            q = q * c + (double)i * a[metalog_q_idx[i]];
        }
    }
    *dP = p;
    *dQ = q;
}

/* M'(y), given y and ym = 1 - y separately so that points near 1 keep their precision. */
static double metalog_deriv(const double *a, int terms, double y, double ym)
{
    double L = log(y / ym);
    double c = y < 0.5 ? y - 0.5 : 0.5 - ym;
    double P, Q, dP, dQ;
    eval_pq(a, terms, c, &P, &Q);
    eval_dpq(a, terms, c, &dP, &dQ); /* P itself does not enter M' */
    return dP + L * dQ + Q / (y * ym);
}

/* Is M'(y) > 0 on (0,1)?
 *
 * 2 terms: M' = a2 / (y(1-y)), so a2 > 0. 3 terms: Keelin's condition (the exact bound on
 * |a3|/a2 is 1.667113..., so 1.66711 errs on the safe side). 4 or more terms: there is no
 * closed form, so two checks are made.
 *  - The tails: as y -> 0 or 1 the term Q(c) / (y(1-y)) dominates M' (the others grow at most
 *    like |L|), so Q(-1/2) and Q(1/2) must not be negative.
 *  - A dense grid, with M' from the analytic derivative of the basis: METALOG_GRID_TAIL = 1,500
 *    points log-spaced in y from 1e-9 to 0.1 (about 190 per decade), the same mirrored from
 *    1 - 1e-9 to 0.9 (as y = 1 - t, with 1 - y passed as t itself so the tail keeps its
 *    precision), and METALOG_GRID_CENTER = 2,001 evenly spaced points on [0.1, 0.9] (spacing
 *    4e-4): 5,001 points in all, M' > 0 at every one.
 * The grid is a check, not a proof: a dip of the density below 0 narrower than the grid spacing
 * would pass. With at most 16 terms (polynomials of degree 7 in c, with and without the factor
 * L) the quantile function is far too smooth for that on fits to real expert data. */
static int check_feasible(const double *a, int terms)
{
    if (terms == 2) {
        return a[1] > 0.0;
    }
    if (terms == 3) {
        return a[1] > 0.0 && fabs(a[2]) / a[1] < metalog_3term_ratio;
    }
    double P, Qlo, Qhi;
    eval_pq(a, terms, -0.5, &P, &Qlo);
    eval_pq(a, terms, 0.5, &P, &Qhi);
    if (!(Qlo >= 0.0) || !(Qhi >= 0.0)) {
        return 0;
    }
    for (int i = 0; i < METALOG_GRID_TAIL; i++) {
        double e = -METALOG_GRID_DECADES +
                   (METALOG_GRID_DECADES - 1.0) * (double)i / (double)(METALOG_GRID_TAIL - 1);
        double t = pow(10.0, e);
        if (!(metalog_deriv(a, terms, t, 1.0 - t) > 0.0) ||
            !(metalog_deriv(a, terms, 1.0 - t, t) > 0.0)) {
            return 0;
        }
    }
    for (int i = 0; i < METALOG_GRID_CENTER; i++) {
        double y = 0.1 + 0.8 * (double)i / (double)(METALOG_GRID_CENTER - 1);
        if (!(metalog_deriv(a, terms, y, 1.0 - y) > 0.0)) {
            return 0;
        }
    }
    return 1;
}

/* Least-squares (or exact, when n == terms) solution of A coef = z by Householder QR with the
 * columns first scaled to unit norm. A is n x terms, row-major with row stride
 * RS_METALOG_MAX_TERMS, and is overwritten, as is z. Returns 0, or -1 when the system is
 * rank-deficient or ill-conditioned. */
static int solve_qr(double A[][RS_METALOG_MAX_TERMS], double *z, int n, int terms, double *coef)
{
    double scale[RS_METALOG_MAX_TERMS];
    for (int j = 0; j < terms; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            s = hypot(s, A[i][j]);
        }
        if (!(s > 0.0) || !isfinite(s)) {
            return -1;
        }
        scale[j] = s;
        for (int i = 0; i < n; i++) {
            A[i][j] /= s;
        }
    }

    double rdiag[RS_METALOG_MAX_TERMS];
    for (int k = 0; k < terms; k++) {
        /* Householder reflector that zeroes A[k+1..n-1][k]. */
        double norm = 0.0;
        for (int i = k; i < n; i++) {
            norm = hypot(norm, A[i][k]);
        }
        if (norm == 0.0) {
            return -1;
        }
        double alpha = A[k][k] > 0.0 ? -norm : norm;
        /* v = x - alpha e1, stored in A[k..n-1][k]; v'v = 2 norm (norm + |x0|). */
        A[k][k] -= alpha;
        double vtv = 2.0 * norm * (norm + fabs(A[k][k] + alpha));
        for (int j = k + 1; j < terms; j++) {
            double dot = 0.0;
            for (int i = k; i < n; i++) {
                dot += A[i][k] * A[i][j];
            }
            double f = 2.0 * dot / vtv;
            for (int i = k; i < n; i++) {
                A[i][j] -= f * A[i][k];
            }
        }
        double dot = 0.0;
        for (int i = k; i < n; i++) {
            dot += A[i][k] * z[i];
        }
        double f = 2.0 * dot / vtv;
        for (int i = k; i < n; i++) {
            z[i] -= f * A[i][k];
        }
        rdiag[k] = alpha;
    }

    double rmax = 0.0;
    for (int k = 0; k < terms; k++) {
        rmax = fmax(rmax, fabs(rdiag[k]));
    }
    for (int k = 0; k < terms; k++) {
        if (!(fabs(rdiag[k]) > metalog_rank_tol * rmax)) {
            return -1;
        }
    }
    /* Back substitution R coef = (Q'z)[0..terms-1]; R's off-diagonal is in A above the diagonal. */
    for (int k = terms - 1; k >= 0; k--) {
        double s = z[k];
        for (int j = k + 1; j < terms; j++) {
            s -= A[k][j] * coef[j];
        }
        coef[k] = s / rdiag[k];
    }
    for (int j = 0; j < terms; j++) {
        coef[j] /= scale[j];
        if (!isfinite(coef[j])) {
            return -1;
        }
    }
    return 0;
}

/* Transforms a quantile x to the metalog's unbounded scale. */
static double to_z(rs_metalog_bounds bounds, double lower, double upper, double x)
{
    switch (bounds) {
    case RS_METALOG_LOWER:
        return log(x - lower);
    case RS_METALOG_UPPER:
        return -log(upper - x);
    case RS_METALOG_BOUNDED:
        return log((x - lower) / (upper - x));
    case RS_METALOG_UNBOUNDED:
    default:
        return x;
    }
}

/* Fits a terms-term metalog to n pairs (see dist.h): validates the input (BAD_INPUT), builds the
 * n x terms basis matrix at the percentiles and the transformed quantiles, solves it by
 * Householder QR (exact when terms == n, least squares otherwise; SINGULAR when a pivot is below
 * 1e-12 of the largest after scaling the columns to unit norm), then checks feasibility
 * (INFEASIBLE). Writes *out only on success, with unused coefficients set to 0. No allocation. */
rs_metalog_fit_status rs_metalog_fit(const double *p, const double *x, size_t n, int terms,
                                     rs_metalog_bounds bounds, double lower, double upper,
                                     rs_metalog *out)
{
    if (p == NULL || x == NULL || out == NULL || terms < 2 || terms > RS_METALOG_MAX_TERMS ||
        n < (size_t)terms || n > RS_METALOG_MAX_TERMS) {
        return RS_METALOG_FIT_BAD_INPUT;
    }
    int has_lower = bounds == RS_METALOG_LOWER || bounds == RS_METALOG_BOUNDED;
    int has_upper = bounds == RS_METALOG_UPPER || bounds == RS_METALOG_BOUNDED;
    if (bounds != RS_METALOG_UNBOUNDED && !has_lower && !has_upper) {
        return RS_METALOG_FIT_BAD_INPUT;
    }
    if ((has_lower && !isfinite(lower)) || (has_upper && !isfinite(upper)) ||
        (has_lower && has_upper && !(lower < upper))) {
        return RS_METALOG_FIT_BAD_INPUT;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(p[i] > 0.0 && p[i] < 1.0) || !isfinite(x[i])) {
            return RS_METALOG_FIT_BAD_INPUT;
        }
        if (i > 0 && !(p[i] > p[i - 1] && x[i] > x[i - 1])) {
            return RS_METALOG_FIT_BAD_INPUT;
        }
        if ((has_lower && !(x[i] > lower)) || (has_upper && !(x[i] < upper))) {
            return RS_METALOG_FIT_BAD_INPUT;
        }
    }

    double A[RS_METALOG_MAX_TERMS][RS_METALOG_MAX_TERMS];
    double z[RS_METALOG_MAX_TERMS];
    int rows = (int)n;
    for (int i = 0; i < rows; i++) {
        double L = log(p[i] / (1.0 - p[i]));
        double c = p[i] - 0.5;
        for (int j = 0; j < terms; j++) {
            A[i][j] = basis(j, L, c);
        }
        z[i] = to_z(bounds, lower, upper, x[i]);
        if (!isfinite(z[i])) {
            return RS_METALOG_FIT_BAD_INPUT;
        }
    }

    double coef[RS_METALOG_MAX_TERMS] = {0};
    if (solve_qr(A, z, rows, terms, coef) != 0) {
        return RS_METALOG_FIT_SINGULAR;
    }
    if (!check_feasible(coef, terms)) {
        return RS_METALOG_FIT_INFEASIBLE;
    }

    out->bounds = bounds;
    out->terms = terms;
    for (int j = 0; j < RS_METALOG_MAX_TERMS; j++) {
        out->a[j] = j < terms ? coef[j] : 0.0;
    }
    out->lower = has_lower ? lower : 0.0;
    out->upper = has_upper ? upper : 0.0;
    return RS_METALOG_FIT_OK;
}

/* Evaluates M(y) = P(c) + L Q(c) and applies the back-transform of m->bounds; the bounded forms
 * never leave [lower, upper] (they return a bound itself only where the distance to it is lost
 * in rounding, far beyond the HDR draws for any sensible fit). y <= 0 and y >= 1 give the ends of
 * the support (a bound or -inf/+inf), NaN gives NaN. */
double rs_metalog_quantile(const rs_metalog *m, double y)
{
    if (isnan(y)) {
        return NAN;
    }
    int has_lower = m->bounds == RS_METALOG_LOWER || m->bounds == RS_METALOG_BOUNDED;
    int has_upper = m->bounds == RS_METALOG_UPPER || m->bounds == RS_METALOG_BOUNDED;
    if (y <= 0.0) {
        return has_lower ? m->lower : -INFINITY;
    }
    if (y >= 1.0) {
        return has_upper ? m->upper : INFINITY;
    }
    double L = log(y / (1.0 - y));
    double P, Q;
    eval_pq(m->a, m->terms, y - 0.5, &P, &Q);
    double M = P + L * Q;

    switch (m->bounds) {
    case RS_METALOG_LOWER:
        return m->lower + exp(M);
    case RS_METALOG_UPPER:
        return m->upper - exp(-M);
    case RS_METALOG_BOUNDED: {
        /* (lower + upper e^M) / (1 + e^M), written from the nearer end so that exp never
         * overflows and a point close to an end keeps its precision. */
        double range = m->upper - m->lower, v;
        if (M < 0.0) {
            double e = exp(M);
            v = m->lower + range * (e / (1.0 + e));
        } else {
            double e = exp(-M);
            v = m->upper - range * (e / (1.0 + e));
        }
        return v < m->lower ? m->lower : (v > m->upper ? m->upper : v);
    }
    case RS_METALOG_UNBOUNDED:
    default:
        return M;
    }
}
