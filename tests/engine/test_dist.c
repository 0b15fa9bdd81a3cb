/*
 * Unit tests of the engine's distributions (engine/dist.c, engine/metalog.c).
 *
 * Why this file exists: a wrong digit in an inverse CDF shifts every quantile the server
 * reports, silently. These tests pin the numbers down against references that do not share
 * code with the implementation: high-precision values (computed once with 40-digit arithmetic
 * and written here), closed forms, and CDFs evaluated in the test itself by other methods
 * (binomial sums and power series for the incomplete beta, direct summation for Poisson,
 * normal equations for least squares), inverted by plain bisection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "dist.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* The largest and smallest HDR draws are 1 - 2^-33 and 2^-33 away from the ends. */
#define HDR_EPS (1.0 / 8589934592.0)

static void check_rel(double got, double want, double tol, const char *expr, const char *file,
                      int line)
{
    double err = want == 0.0 ? fabs(got) : fabs((got - want) / want);
    if (!(err <= tol)) {
        print_error("%s = %.17g, want %.17g (relative error %.3g > %.3g)\n", expr, got, want, err,
                    tol);
        _fail(file, line);
    }
}

static void check_abs(double got, double want, double tol, const char *expr, const char *file,
                      int line)
{
    double err = fabs(got - want);
    if (!(err <= tol)) {
        print_error("%s = %.17g, want %.17g (absolute error %.3g > %.3g)\n", expr, got, want, err,
                    tol);
        _fail(file, line);
    }
}

#define assert_rel(got, want, tol) check_rel((got), (want), (tol), #got, __FILE__, __LINE__)
#define assert_abs(got, want, tol) check_abs((got), (want), (tol), #got, __FILE__, __LINE__)

/* Smallest x in [0,1] with cdf(x) >= u by bisection down to adjacent doubles. cdf returns
 * I_x and writes 1 - I_x to *comp; the comparison uses whichever of u and 1 - u is smaller so
 * that tail targets keep their precision. */
typedef double (*cdf_fn)(double x, const void *ctx, double *comp);

static double bisect_cdf(cdf_fn cdf, const void *ctx, double u)
{
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 3000; i++) {
        /* Halve towards 0, geometric steps over wide brackets, then plain bisection. */
        double mid = lo == 0.0 ? 0.5 * hi : (hi / lo > 4.0 ? sqrt(lo * hi) : 0.5 * (lo + hi));
        if (!(mid > lo && mid < hi)) {
            break;
        }
        double comp, v = cdf(mid, ctx, &comp);
        int below = u <= 0.5 ? v < u : comp > 1.0 - u;
        if (below) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 0.5 * (lo + hi);
}

/* ---------------------------------------------------------------------------------------------
 * Normal quantile
 * ------------------------------------------------------------------------------------------- */

/* Phi^-1 at the given doubles: 60-digit Newton iterations on log Phi(x) = log p with Phi from
 * erfc (the double input is taken exactly, e.g. 0.975 is 0.97499999999999997780, whose
 * quantile is 1.95996398454005385560). */
static const struct {
    double p, x;
} norm_ref[] = {
    {0.975, 1.9599639845400538556},
    {0.025, -1.9599639845400542118},
    {1e-10, -6.3613409024040561991},
    {1.0 - 1e-10, 6.3613408896974218642},
    {1e-300, -37.047096299361199237},
    {0.1, -1.2815515655446004353},
    {0.3, -0.52440051270804081597},
    {0.7, 0.52440051270804065631},
    {0.92, 1.4050715603096328248},
    {0.93, 1.475791028179171099},
    {0.075, -1.4395314709384559349},
    {0.925, 1.4395314709384562291},
    {1e-5, -4.2648907939228246102},
    {1.3887943864964021e-11, -6.6579046435011035837}, /* e^-25: r = 5, the last split */
    {1e-50, -14.933337534788488981},
    {0.95, 1.6448536269514722843},
    {0.999999, 4.7534243088170877657},
    {5e-324, -38.467405617144346251}, /* the smallest denormal */
    {HDR_EPS, -6.3379577545537892525},
    {1.0 - HDR_EPS, 6.3379577545537892525},
    {0.6, 0.25334710313579974132},
    {0.4999, -0.00025066283008800749239},
};

static void test_norm_quantile_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof norm_ref / sizeof norm_ref[0]; i++) {
        assert_rel(rs_norm_quantile(norm_ref[i].p), norm_ref[i].x, 1e-15);
    }
    assert_true(rs_norm_quantile(0.5) == 0.0);
    /* The two classic textbook values. */
    assert_rel(rs_norm_quantile(0.975), 1.959963984540054, 1e-15);
    assert_rel(rs_norm_quantile(0.95), 1.6448536269514722, 1e-15);
}

static void test_norm_quantile_symmetry(void **state)
{
    (void)state;
    /* For dyadic p both p and 1 - p are exact, and AS241 is then exactly antisymmetric. */
    for (int k = 1; k < 4096; k++) {
        double p = (double)k / 8192.0;
        assert_true(rs_norm_quantile(1.0 - p) == -rs_norm_quantile(p));
    }
    for (int e = 1; e <= 52; e++) {
        double p = ldexp(1.0, -e);
        assert_true(rs_norm_quantile(1.0 - p) == -rs_norm_quantile(p));
    }
}

static void test_norm_quantile_edges(void **state)
{
    (void)state;
    assert_true(isinf(rs_norm_quantile(0.0)) && rs_norm_quantile(0.0) < 0.0);
    assert_true(isinf(rs_norm_quantile(1.0)) && rs_norm_quantile(1.0) > 0.0);
    assert_true(isnan(rs_norm_quantile(-1e-300)));
    assert_true(isnan(rs_norm_quantile(1.0 + DBL_EPSILON)));
    assert_true(isnan(rs_norm_quantile(NAN)));
    assert_true(isnan(rs_norm_quantile(INFINITY)));
}

static void test_norm_quantile_roundtrip(void **state)
{
    (void)state;
    /* Phi(Phi^-1(p)) == p, with Phi from libm's erfc (an independent computation), and strict
     * monotonicity on a grid that crosses all three regions. */
    double prev = -INFINITY;
    for (int i = 1; i < 100000; i++) {
        double p = (double)i / 100000.0;
        double x = rs_norm_quantile(p);
        assert_true(x > prev);
        prev = x;
        double back = x < 0.0 ? 0.5 * erfc(-x / sqrt(2.0)) : 1.0 - 0.5 * erfc(x / sqrt(2.0));
        assert_rel(back, p, 1e-14);
    }
    /* In the tail Phi amplifies a relative error d of x to about x^2 d. */
    for (int e = 300; e >= 1; e--) {
        double p = pow(10.0, -(double)e) * 3.7;
        double x = rs_norm_quantile(p);
        assert_rel(0.5 * erfc(-x / sqrt(2.0)), p, 1e-14 * (1.0 + x * x));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Lognormal from an interval
 * ------------------------------------------------------------------------------------------- */

static void test_lognormal_interval(void **state)
{
    (void)state;
    double mu, sigma;
    rs_lognormal_from_interval(1000.0, 50000.0, 0.9, &mu, &sigma);
    assert_rel(mu, 0.5 * (log(1000.0) + log(50000.0)), 1e-15);
    const double z95 = 1.6448536269514722;
    assert_rel(exp(mu - z95 * sigma), 1000.0, 1e-12);
    assert_rel(exp(mu + z95 * sigma), 50000.0, 1e-12);
    /* Through the engine's own quantile, as the sampler does it. */
    assert_rel(exp(mu + sigma * rs_norm_quantile(0.05)), 1000.0, 1e-12);
    assert_rel(exp(mu + sigma * rs_norm_quantile(0.95)), 50000.0, 1e-12);

    /* Another level: the 80% interval [500000, 8000000]. */
    rs_lognormal_from_interval(500000.0, 8000000.0, 0.8, &mu, &sigma);
    assert_rel(exp(mu + sigma * rs_norm_quantile(0.1)), 500000.0, 1e-12);
    assert_rel(exp(mu + sigma * rs_norm_quantile(0.9)), 8000000.0, 1e-12);
    assert_rel(sigma, (log(8000000.0) - log(500000.0)) / (2.0 * 1.2815515655446004353), 1e-15);
}

/* ---------------------------------------------------------------------------------------------
 * Metalog
 * ------------------------------------------------------------------------------------------- */

static void test_metalog_symmetric_3term(void **state)
{
    (void)state;
    const double p[] = {0.1, 0.5, 0.9}, x[] = {10.0, 20.0, 30.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m), RS_METALOG_FIT_OK);
    assert_int_equal(m.terms, 3);
    assert_abs(m.a[2], 0.0, 1e-12);
    assert_rel(m.a[0], 20.0, 1e-14);
    assert_rel(m.a[1], 10.0 / log(9.0), 1e-14); /* a2 ln 9 = 10 */
    assert_rel(rs_metalog_quantile(&m, 0.5), 20.0, 1e-14);
    for (int i = 0; i < 3; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-12);
    }
    /* Symmetric about the median. */
    assert_rel(rs_metalog_quantile(&m, 0.25) + rs_metalog_quantile(&m, 0.75), 40.0, 1e-14);
}

static void test_metalog_two_terms(void **state)
{
    (void)state;
    /* Two terms: a logistic distribution; M(y) = a1 + a2 L. */
    const double p[] = {0.1, 0.9}, x[] = {10.0, 30.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 2, 2, RS_METALOG_UNBOUNDED, 0, 0, &m), RS_METALOG_FIT_OK);
    assert_rel(m.a[0], 20.0, 1e-14);
    assert_rel(m.a[1], 10.0 / log(9.0), 1e-14);
    assert_rel(rs_metalog_quantile(&m, 0.1), 10.0, 1e-13);
    assert_rel(rs_metalog_quantile(&m, 0.9), 30.0, 1e-13);
}

static void test_metalog_exact_4term(void **state)
{
    (void)state;
    /* Unbounded, through four points; coefficients from a 40-digit solve. */
    const double p[] = {0.1, 0.4, 0.6, 0.9}, x[] = {10.0, 19.0, 21.0, 30.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 4, 4, RS_METALOG_UNBOUNDED, 0, 0, &m), RS_METALOG_FIT_OK);
    assert_rel(m.a[0], 20.0, 1e-13);
    assert_rel(m.a[1], 10.428178490346618, 1e-12);
    assert_abs(m.a[2], 0.0, 1e-12);
    assert_rel(m.a[3], -32.282625189596256, 1e-12);
    for (int i = 0; i < 4; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-10);
    }

    /* Four expert points of a loss, log-bounded at 0 (the flat form's "expert" default). */
    const double pe[] = {0.1, 0.25, 0.75, 0.9}, xe[] = {20000.0, 45000.0, 150000.0, 600000.0};
    assert_int_equal(rs_metalog_fit(pe, xe, 4, 4, RS_METALOG_LOWER, 0.0, 0, &m), RS_METALOG_FIT_OK);
    assert_rel(m.a[0], 11.185639592528252, 1e-12);
    assert_rel(m.a[1], 1.6780725442829612, 1e-12);
    assert_rel(m.a[2], 0.47610819480529941, 1e-12);
    assert_rel(m.a[3], -4.9662588650514154, 1e-12);
    for (int i = 0; i < 4; i++) {
        assert_rel(rs_metalog_quantile(&m, pe[i]), xe[i], 1e-10);
    }
}

/* Solves the 3x3 system S v = r by Cramer's rule. */
static void solve3(double S[3][3], const double r[3], double v[3])
{
    double det = S[0][0] * (S[1][1] * S[2][2] - S[1][2] * S[2][1]) -
                 S[0][1] * (S[1][0] * S[2][2] - S[1][2] * S[2][0]) +
                 S[0][2] * (S[1][0] * S[2][1] - S[1][1] * S[2][0]);
    for (int k = 0; k < 3; k++) {
        double T[3][3];
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++) {
                T[i][j] = j == k ? r[i] : S[i][j];
            }
        }
        v[k] = (T[0][0] * (T[1][1] * T[2][2] - T[1][2] * T[2][1]) -
                T[0][1] * (T[1][0] * T[2][2] - T[1][2] * T[2][0]) +
                T[0][2] * (T[1][0] * T[2][1] - T[1][1] * T[2][0])) /
               det;
    }
}

static void test_metalog_least_squares(void **state)
{
    (void)state;
    const double p[] = {0.1, 0.3, 0.5, 0.7, 0.9}, x[] = {12.0, 17.0, 20.0, 24.0, 31.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 5, 3, RS_METALOG_UNBOUNDED, 0, 0, &m), RS_METALOG_FIT_OK);

    /* Independent solution: the normal equations (A'A) a = A'x. */
    double A[5][3], S[3][3] = {{0}}, r[3] = {0}, want[3];
    for (int i = 0; i < 5; i++) {
        double L = log(p[i] / (1.0 - p[i])), c = p[i] - 0.5;
        A[i][0] = 1.0;
        A[i][1] = L;
        A[i][2] = c * L;
    }
    for (int j = 0; j < 3; j++) {
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 5; i++) {
                S[j][k] += A[i][j] * A[i][k];
            }
        }
        for (int i = 0; i < 5; i++) {
            r[j] += A[i][j] * x[i];
        }
    }
    solve3(S, r, want);
    for (int j = 0; j < 3; j++) {
        assert_rel(m.a[j], want[j], 1e-10);
    }
    /* The least-squares residual is orthogonal to every basis column. */
    for (int j = 0; j < 3; j++) {
        double dot = 0.0;
        for (int i = 0; i < 5; i++) {
            dot += A[i][j] * (x[i] - rs_metalog_quantile(&m, p[i]));
        }
        assert_abs(dot, 0.0, 1e-11);
    }
    assert_true(m.a[3] == 0.0); /* unused coefficients are zeroed */
}

/* Checks that the quantile function of m is nondecreasing on a grid reaching the HDR ends,
 * and stays within [lo, hi]; strict says the ends themselves are excluded. */
static void check_metalog_range(const rs_metalog *m, double lo, double hi, int strict)
{
    double prev = -INFINITY;
    for (int i = 0; i <= 20000; i++) {
        double y = i == 0 ? HDR_EPS : (i == 20000 ? 1.0 - HDR_EPS : (double)i / 20000.0);
        double v = rs_metalog_quantile(m, y);
        assert_true(v >= prev);
        prev = v;
        if (strict) {
            assert_true(v > lo && v < hi);
        } else {
            assert_true(v >= lo && v <= hi);
        }
    }
}

static void test_metalog_lower_bound(void **state)
{
    (void)state;
    /* The request example of docs/api.md section 1. */
    const double p[] = {0.1, 0.5, 0.9}, x[] = {20000.0, 90000.0, 600000.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_LOWER, 0.0, 0, &m), RS_METALOG_FIT_OK);
    for (int i = 0; i < 3; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-12);
    }
    check_metalog_range(&m, 0.0, INFINITY, 1);
    /* Far below the smallest HDR draw it still never goes below the bound. */
    assert_true(rs_metalog_quantile(&m, 1e-300) >= 0.0);
    assert_true(rs_metalog_quantile(&m, 0.0) == 0.0);

    /* A non-zero lower bound. */
    const double xs[] = {1500.0, 2000.0, 4000.0};
    assert_int_equal(rs_metalog_fit(p, xs, 3, 3, RS_METALOG_LOWER, 1000.0, 0, &m),
                     RS_METALOG_FIT_OK);
    for (int i = 0; i < 3; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), xs[i], 1e-12);
    }
    check_metalog_range(&m, 1000.0, INFINITY, 1);
    assert_true(rs_metalog_quantile(&m, 1e-300) >= 1000.0);
}

static void test_metalog_upper_bound(void **state)
{
    (void)state;
    const double p[] = {0.1, 0.5, 0.9}, x[] = {50.0, 80.0, 95.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_UPPER, 0, 100.0, &m), RS_METALOG_FIT_OK);
    for (int i = 0; i < 3; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-12);
    }
    check_metalog_range(&m, -INFINITY, 100.0, 1);
    assert_true(rs_metalog_quantile(&m, 1.0 - 1e-16) <= 100.0);
}

static void test_metalog_bounded(void **state)
{
    (void)state;
    const double p[] = {0.1, 0.5, 0.9}, x[] = {0.2, 0.5, 0.9};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_BOUNDED, 0.0, 1.0, &m),
                     RS_METALOG_FIT_OK);
    for (int i = 0; i < 3; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-12);
    }
    check_metalog_range(&m, 0.0, 1.0, 1);

    /* Losses between 1000 and 1e6, 4 terms, least squares on 6 points. */
    const double p6[] = {0.05, 0.2, 0.4, 0.6, 0.8, 0.95};
    const double x6[] = {5000.0, 20000.0, 50000.0, 90000.0, 200000.0, 500000.0};
    assert_int_equal(rs_metalog_fit(p6, x6, 6, 4, RS_METALOG_BOUNDED, 1000.0, 1e6, &m),
                     RS_METALOG_FIT_OK);
    check_metalog_range(&m, 1000.0, 1e6, 1);
    /* Out at the very ends it saturates at the bounds, never beyond. */
    double lo = rs_metalog_quantile(&m, 1e-300), hi = rs_metalog_quantile(&m, 1.0 - 1e-16);
    assert_true(lo >= 1000.0 && lo < 1e6 && hi > 1000.0 && hi <= 1e6);
}

static void test_metalog_many_terms(void **state)
{
    (void)state;
    /* 16 quantiles of a lognormal, fitted exactly with 16 terms (log-bounded at 0 and
     * unbounded), and by least squares with 5 and 9 terms. */
    double p[16], x[16];
    for (int i = 0; i < 16; i++) {
        p[i] = (double)(i + 1) / 17.0;
        x[i] = exp(10.0 + 1.5 * rs_norm_quantile(p[i]));
    }
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 16, 16, RS_METALOG_LOWER, 0.0, 0, &m), RS_METALOG_FIT_OK);
    for (int i = 0; i < 16; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-10);
    }
    check_metalog_range(&m, 0.0, INFINITY, 1);
    assert_int_equal(rs_metalog_fit(p, x, 16, 16, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_OK);
    for (int i = 0; i < 16; i++) {
        assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 1e-10);
    }
    for (int terms = 5; terms <= 9; terms += 4) {
        assert_int_equal(rs_metalog_fit(p, x, 16, terms, RS_METALOG_LOWER, 0.0, 0, &m),
                         RS_METALOG_FIT_OK);
        for (int i = 0; i < 16; i++) {
            assert_rel(rs_metalog_quantile(&m, p[i]), x[i], 0.02);
        }
        for (int j = terms; j < RS_METALOG_MAX_TERMS; j++) {
            assert_true(m.a[j] == 0.0);
        }
    }
}

static void test_metalog_infeasible(void **state)
{
    (void)state;
    rs_metalog m;
    /* 3 terms: |a3| / a2 = 2.45 > 1.66711. */
    const double p3[] = {0.1, 0.5, 0.9}, x3[] = {1.0, 100.0, 101.0};
    assert_int_equal(rs_metalog_fit(p3, x3, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_INFEASIBLE);
    /* ... and the same shape through the log transform. */
    assert_int_equal(rs_metalog_fit(p3, x3, 3, 3, RS_METALOG_LOWER, 0.0, 0, &m),
                     RS_METALOG_FIT_INFEASIBLE);
    /* 4 terms with a wiggle: a2 < 0, the density is negative in both tails. */
    const double p4[] = {0.1, 0.4, 0.6, 0.9}, x4[] = {10.0, 11.0, 29.0, 30.0};
    assert_int_equal(rs_metalog_fit(p4, x4, 4, 4, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_INFEASIBLE);
    /* 4 terms whose tails are fine but which decreases inside (M' < 0 near y = 0.31): only the
     * grid sees it. */
    const double pe[] = {0.1, 0.25, 0.75, 0.9}, xe[] = {20000.0, 45000.0, 150000.0, 600000.0};
    assert_int_equal(rs_metalog_fit(pe, xe, 4, 4, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_INFEASIBLE);
    /* Either side of Keelin's 3-term bound |a3| / a2 < 1.66711: with a1 = 0, a2 = 1 and
     * a3 = -r, M(0.1) = -(1 + 0.4 r) ln 9, M(0.5) = 0, M(0.9) = (1 - 0.4 r) ln 9. */
    double L = log(9.0);
    const double ok[3] = {-(1.0 + 0.4 * 1.6) * L, 0.0, (1.0 - 0.4 * 1.6) * L};
    assert_int_equal(rs_metalog_fit(p3, ok, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_OK);
    assert_rel(m.a[2] / m.a[1], -1.6, 1e-12);
    const double bad[3] = {-(1.0 + 0.4 * 1.7) * L, 0.0, (1.0 - 0.4 * 1.7) * L};
    assert_int_equal(rs_metalog_fit(p3, bad, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_INFEASIBLE);
}

static void test_metalog_singular(void **state)
{
    (void)state;
    /* Two percentiles one ulp apart: the system is numerically rank-deficient. */
    const double p[] = {0.3, nextafter(0.3, 1.0), 0.7}, x[] = {1.0, 2.0, 3.0};
    rs_metalog m;
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_SINGULAR);

    /* Seven symmetric percentiles with seven terms: the four odd basis functions L, c, c^2 L
     * and c^3 live on three pairs, so the exact fit is not unique. Six terms are fine. */
    const double p7[] = {0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95};
    const double x7[] = {1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 80000.0, 150000.0};
    assert_int_equal(rs_metalog_fit(p7, x7, 7, 7, RS_METALOG_LOWER, 0.0, 0, &m),
                     RS_METALOG_FIT_SINGULAR);
    assert_int_equal(rs_metalog_fit(p7, x7, 7, 6, RS_METALOG_LOWER, 0.0, 0, &m), RS_METALOG_FIT_OK);
    /* Not symmetric: seven terms through seven points. */
    const double q7[] = {0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99};
    assert_int_equal(rs_metalog_fit(q7, x7, 7, 7, RS_METALOG_LOWER, 0.0, 0, &m), RS_METALOG_FIT_OK);
    for (int i = 0; i < 7; i++) {
        assert_rel(rs_metalog_quantile(&m, q7[i]), x7[i], 1e-10);
    }
}

static void test_metalog_bad_input(void **state)
{
    (void)state;
    rs_metalog m;
    const double p[] = {0.1, 0.5, 0.9}, x[] = {10.0, 20.0, 30.0};
    assert_int_equal(rs_metalog_fit(p, x, 3, 4, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT); /* terms > n */
    assert_int_equal(rs_metalog_fit(p, x, 3, 1, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT); /* terms < 2 */
    assert_int_equal(rs_metalog_fit(p, x, 17, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT); /* n > 16 */
    assert_int_equal(rs_metalog_fit(NULL, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, NULL),
                     RS_METALOG_FIT_BAD_INPUT);
    const double p_dec[] = {0.1, 0.9, 0.5}, p_out[] = {0.0, 0.5, 0.9}, p_one[] = {0.1, 0.5, 1.0};
    const double p_nan[] = {0.1, NAN, 0.9};
    assert_int_equal(rs_metalog_fit(p_dec, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p_out, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p_one, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p_nan, x, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    const double x_eq[] = {10.0, 20.0, 20.0}, x_inf[] = {10.0, 20.0, INFINITY};
    assert_int_equal(rs_metalog_fit(p, x_eq, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x_inf, 3, 3, RS_METALOG_UNBOUNDED, 0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    /* Quantiles on or outside the bounds, bounds in the wrong order. */
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_LOWER, 10.0, 0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_UPPER, 0, 30.0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_BOUNDED, 0.0, 25.0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, RS_METALOG_BOUNDED, 40.0, 0.0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
    assert_int_equal(rs_metalog_fit(p, x, 3, 3, (rs_metalog_bounds)7, 0.0, 40.0, &m),
                     RS_METALOG_FIT_BAD_INPUT);
}

/* ---------------------------------------------------------------------------------------------
 * PERT
 * ------------------------------------------------------------------------------------------- */

/* Reference CDFs of Beta(a, b), written independently of dist.c. */
typedef struct beta_ref {
    double a, b;
} beta_ref;

/* Integer a, b: I_x(a,b) = P(Binomial(a+b-1, x) >= a), a sum of positive terms on each side. */
static double beta_cdf_binomial(double x, const void *ctx, double *comp)
{
    const beta_ref *r = ctx;
    int a = (int)r->a, n = (int)r->a + (int)r->b - 1;
    double lo = 0.0, hi = 0.0, coef = 1.0; /* coef = C(n, j) */
    for (int j = 0; j <= n; j++) {
        double t = coef * pow(x, j) * pow(1.0 - x, n - j);
        if (j < a) {
            lo += t;
        } else {
            hi += t;
        }
        coef = coef * (double)(n - j) / (double)(j + 1);
    }
    *comp = lo;
    return hi;
}

/* Any a, b > 0: I_x(a,b) = x^a (1-x)^b / (a B(a,b)) sum_n (a+b)_n / (a+1)_n x^n (positive
 * terms; DLMF 8.17.8 with 2F1(a+b, 1; a+1; x)), used for x <= 1/2 and by reflection above. */
static double beta_series(double x, double a, double b)
{
    double lbeta = lgamma(a) + lgamma(b) - lgamma(a + b);
    double sum = 0.0, term = 1.0;
    for (int n = 0; n < 100000 && term > 1e-18 * sum; n++) {
        sum += term;
        term *= (a + b + n) / (a + 1.0 + n) * x;
    }
    return exp(a * log(x) + b * log1p(-x) - lbeta) / a * sum;
}

static double beta_cdf_series(double x, const void *ctx, double *comp)
{
    const beta_ref *r = ctx;
    if (x <= 0.5) {
        double v = beta_series(x, r->a, r->b);
        *comp = 1.0 - v;
        return v;
    }
    *comp = beta_series(1.0 - x, r->b, r->a);
    return 1.0 - *comp;
}

/* Beta(2, b) for any b: I_x(2,b) = 1 - (1-x)^b (1 + b x). */
static double beta_cdf_2b(double x, const void *ctx, double *comp)
{
    const beta_ref *r = ctx;
    double lc = r->b * log1p(-x) + log1p(r->b * x);
    *comp = exp(lc);
    return -expm1(lc);
}

/* A PERT on [0,1] with the given shape parameters (mode = (a-1)/(a+b-2), gamma = a+b-2). */
static rs_pert pert_for(double a, double b)
{
    rs_pert pt;
    rs_pert_init(&pt, 0.0, (a - 1.0) / (a + b - 2.0), 1.0, a + b - 2.0);
    return pt;
}

static const double pert_us[] = {HDR_EPS, 1e-6, 0.001, 0.01, 0.1,      0.25,         0.5,
                                 0.6,     0.75, 0.9,   0.99, 0.999999, 1.0 - HDR_EPS};

static void test_pert_init(void **state)
{
    (void)state;
    rs_pert pt;
    rs_pert_init(&pt, 1000.0, 3000.0, 11000.0, 4.0);
    assert_rel(pt.alpha, 1.8, 1e-15);
    assert_rel(pt.beta, 4.2, 1e-15);
    assert_rel(pt.lbeta, lgamma(1.8) + lgamma(4.2) - lgamma(6.0), 1e-13);
    assert_true(pt.min == 1000.0 && pt.max == 11000.0);
    rs_pert_init(&pt, 0.0, 0.5, 1.0, 4.0);
    assert_true(pt.alpha == 3.0 && pt.beta == 3.0);
    assert_rel(pt.lbeta, log(1.0 / 30.0), 1e-14);
}

static void test_pert_symmetric(void **state)
{
    (void)state;
    rs_pert pt;
    rs_pert_init(&pt, 0.0, 0.5, 1.0, 4.0);
    assert_rel(rs_pert_quantile(&pt, 0.5), 0.5, 1e-15);
    for (int k = 1; k < 512; k++) {
        double u = (double)k / 1024.0; /* dyadic: 1 - u is exact */
        assert_abs(rs_pert_quantile(&pt, u) + rs_pert_quantile(&pt, 1.0 - u), 1.0, 1e-14);
    }
    /* Beta(3,3) CDF is 10x^3 - 15x^4 + 6x^5: the quartile by its own bisection. */
    beta_ref ref = {3.0, 3.0};
    for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
        double u = pert_us[i];
        assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_binomial, &ref, u), 1e-12);
    }
    /* The same shape scaled to [1000, 5000]. */
    rs_pert_init(&pt, 1000.0, 3000.0, 5000.0, 4.0);
    assert_rel(rs_pert_quantile(&pt, 0.5), 3000.0, 1e-15);
}

static void test_pert_beta_2_5(void **state)
{
    (void)state;
    /* min 0, mode 0.2, max 1, gamma 5: alpha = 2, beta = 5. */
    rs_pert pt;
    rs_pert_init(&pt, 0.0, 0.2, 1.0, 5.0);
    assert_rel(pt.alpha, 2.0, 1e-15);
    assert_rel(pt.beta, 5.0, 1e-15);
    beta_ref ref = {2.0, 5.0};
    double median = bisect_cdf(beta_cdf_binomial, &ref, 0.5);
    assert_abs(median, 0.26444998329566, 5e-15); /* the published value */
    assert_rel(rs_pert_quantile(&pt, 0.5), median, 1e-13);
    for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
        double u = pert_us[i];
        assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_binomial, &ref, u), 1e-12);
    }
    /* Deep tail: I_x(2,5) ~ 15 x^2 for tiny x. */
    assert_rel(rs_pert_quantile(&pt, 1e-300), sqrt(1e-300 / 15.0), 1e-12);
}

static void test_pert_integer_shapes(void **state)
{
    (void)state;
    const double shapes[][2] = {{2, 2}, {2, 4}, {4, 2}, {3, 7}, {5, 5}, {10, 3}, {20, 30}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        beta_ref ref = {shapes[s][0], shapes[s][1]};
        rs_pert pt = pert_for(ref.a, ref.b);
        for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
            double u = pert_us[i];
            assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_binomial, &ref, u), 1e-12);
        }
    }
}

static void test_pert_general_shapes(void **state)
{
    (void)state;
    /* Non-integer shapes against the power series. */
    const double shapes[][2] = {{1.8, 4.2}, {1.2, 4.8}, {4.9, 1.1}, {1.5, 1.5}, {2.5, 3.5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        beta_ref ref = {shapes[s][0], shapes[s][1]};
        rs_pert pt = pert_for(ref.a, ref.b);
        for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
            double u = pert_us[i];
            assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_series, &ref, u), 1e-12);
        }
    }
    /* Scaled: 1000 + 10000 * Beta(1.8, 4.2). */
    rs_pert pt;
    rs_pert_init(&pt, 1000.0, 3000.0, 11000.0, 4.0);
    beta_ref ref = {pt.alpha, pt.beta};
    for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
        double u = pert_us[i];
        assert_rel(rs_pert_quantile(&pt, u),
                   1000.0 + 10000.0 * bisect_cdf(beta_cdf_series, &ref, u), 1e-12);
    }
}

static void test_pert_closed_forms(void **state)
{
    (void)state;
    /* mode == min: Beta(1, b), x = 1 - (1-u)^(1/b); mode == max: Beta(a, 1), x = u^(1/a). */
    rs_pert lo, hi;
    rs_pert_init(&lo, 0.0, 0.0, 1.0, 4.0);
    rs_pert_init(&hi, 0.0, 1.0, 1.0, 4.0);
    assert_true(lo.alpha == 1.0 && lo.beta == 5.0 && hi.alpha == 5.0 && hi.beta == 1.0);
    for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
        double u = pert_us[i];
        /* Through the CDFs 1 - (1-x)^5 and x^5, which have no cancellation this way round. */
        double x = rs_pert_quantile(&lo, u);
        assert_rel(-expm1(5.0 * log1p(-x)), u, 1e-14);
        assert_rel(x, 1.0 - pow(1.0 - u, 0.2), u < 1e-3 ? 1e-6 : 1e-12);
        x = rs_pert_quantile(&hi, u);
        assert_rel(pow(x, 5.0), u, 1e-14);
        assert_rel(x, pow(u, 0.2), 1e-14);
    }
    /* Tiny u where 1 - (1-u)^(1/b) cancels: x ~ u / b. */
    assert_rel(rs_pert_quantile(&lo, 1e-20), 1e-20 / 5.0, 1e-13);
}

static void test_pert_large_shapes(void **state)
{
    (void)state;
    /* gamma = 1e4 with the mode near the minimum: alpha = 2, beta about 1e4. */
    rs_pert pt;
    rs_pert_init(&pt, 0.0, 1e-4, 1.0, 1e4);
    assert_true(pt.alpha == 2.0); /* what beta_cdf_2b needs */
    assert_rel(pt.beta, 1e4, 1e-12);
    beta_ref ref = {pt.alpha, pt.beta};
    for (size_t i = 0; i < sizeof pert_us / sizeof pert_us[0]; i++) {
        double u = pert_us[i];
        if (u < 1e-4) {
            continue; /* the closed form cancels below that */
        }
        assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_2b, &ref, u), 1e-12);
    }
    /* Symmetric and very peaked: alpha = beta = 10001. */
    rs_pert_init(&pt, 0.0, 0.5, 1.0, 20000.0);
    assert_true(pt.alpha == 10001.0 && pt.beta == 10001.0);
    assert_rel(rs_pert_quantile(&pt, 0.5), 0.5, 1e-15);
    for (int k = 1; k < 64; k++) {
        double u = (double)k / 128.0;
        assert_abs(rs_pert_quantile(&pt, u) + rs_pert_quantile(&pt, 1.0 - u), 1.0, 1e-13);
    }
    /* Close to normal: the 97.5% point is about 0.5 + 1.96 sd, sd = 1/(2 sqrt(20003)). */
    double q = rs_pert_quantile(&pt, 0.975);
    assert_rel(q, 0.5 + 1.959963984540054 * 0.5 / sqrt(20003.0), 1e-5);
}

static void test_pert_monotone_and_ends(void **state)
{
    (void)state;
    const double shapes[][2] = {{3, 3}, {1.8, 4.2}, {1, 5}, {5, 1}, {2, 10000}, {300, 700}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        rs_pert pt;
        double a = shapes[s][0], b = shapes[s][1];
        rs_pert_init(&pt, 100.0, 100.0 + 900.0 * (a - 1.0) / (a + b - 2.0), 1000.0, a + b - 2.0);
        double prev = pt.min;
        for (int i = 0; i <= 20000; i++) {
            double u = i == 0 ? HDR_EPS : (i == 20000 ? 1.0 - HDR_EPS : (double)i / 20000.0);
            double v = rs_pert_quantile(&pt, u);
            assert_true(v >= prev && v <= pt.max);
            prev = v;
        }
        assert_true(rs_pert_quantile(&pt, 0.0) == 100.0);
        assert_true(rs_pert_quantile(&pt, 1.0) == 1000.0);
        assert_true(isnan(rs_pert_quantile(&pt, NAN)));
    }
}

/* log B(a, b) for the references. lgamma's absolute error grows with its argument (about
 * 1e-11 near 4e3), so when the smaller shape m is an integer, log B = log (m-1)! - sum_k
 * log(M + k), k = 0..m-1 (M the larger shape), summed with compensation. */
static double ref_log_beta(double a, double b)
{
    double m = fmin(a, b), M = fmax(a, b);
    if (m != floor(m) || m > 1e4) {
        return lgamma(a) + lgamma(b) - lgamma(a + b);
    }
    double sum = 0.0, comp = 0.0;
    for (int k = 0; k < (int)m; k++) {
        double y = log(M + k) - comp;
        double t = sum + y;
        comp = (t - sum) - y;
        sum = t;
    }
    return lgamma(m) - sum;
}

/* The power series of beta_series with ref_log_beta. */
static double beta_series_ref(double x, double a, double b)
{
    double sum = 0.0, term = 1.0;
    for (int n = 0; n < 1000000 && term > 1e-18 * sum; n++) {
        sum += term;
        term *= (a + b + n) / (a + 1.0 + n) * x;
    }
    return exp(a * log(x) + b * log1p(-x) - ref_log_beta(a, b)) / a * sum;
}

/* beta_cdf_series for shapes up to 1e4: each side summed where it is the smaller value
 * (switching at the mean, where the series converges fast) and with ref_log_beta. */
static double beta_cdf_series_ref(double x, const void *ctx, double *comp)
{
    const beta_ref *r = ctx;
    if (x <= r->a / (r->a + r->b)) {
        double v = beta_series_ref(x, r->a, r->b);
        *comp = 1.0 - v;
        return v;
    }
    *comp = beta_series_ref(1.0 - x, r->b, r->a);
    return 1.0 - *comp;
}

/* u from 2^-40 to 1 - 2^-40, evenly in logit(u) (i = 0..n-1): past both ends of the knot
 * table and through every interval of it several times. */
static double pert_logit_u(int i, int n)
{
    double t = -27.7 + 55.4 * ((double)i + 0.37) / (double)n;
    return t < 0.0 ? exp(t) / (1.0 + exp(t)) : 1.0 / (1.0 + exp(-t));
}

/* Shapes for the table tests: gamma 4 (the default) with the mode near either end and in the
 * middle, a mode just off min (alpha barely above 1), gamma 4000 and a very lopsided 1e4. */
static const double table_shapes[][2] = {{1.2542, 4.7458},  {3.0, 3.0},      {4.6, 1.4},
                                         {1.0 + 1e-6, 5.0}, {2.0, 5.0},      {1201.0, 2801.0},
                                         {2001.0, 2001.0},  {3901.0, 101.0}, {2.0, 1e4}};

static void test_pert_table_vs_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof table_shapes / sizeof table_shapes[0]; s++) {
        beta_ref ref = {table_shapes[s][0], table_shapes[s][1]};
        rs_pert pt = pert_for(ref.a, ref.b);
        rs_pert slow = pt;
        assert_int_equal(rs_pert_init_table(&pt), RS_OK);
        assert_non_null(pt.knots);
        /* Against the independent power series (bisected to adjacent doubles). */
        for (int i = 0; i < 97; i++) {
            double u = pert_logit_u(i, 97);
            assert_rel(rs_pert_quantile(&pt, u), bisect_cdf(beta_cdf_series_ref, &ref, u), 1e-12);
        }
        /* Against the untabled inversion, densely. */
        for (int i = 0; i < 20000; i++) {
            double u = pert_logit_u(i, 20000);
            assert_rel(rs_pert_quantile(&pt, u), rs_pert_quantile(&slow, u), 1e-12);
        }
        rs_pert_free(&pt);
    }
}

/* Real PERTs through rs_pert_init and rs_pert_init_table: the CLI's example with gamma 4 and 4000,
 * and min = mode and mode = max (closed forms, no table) at both gammas. */
static void test_pert_table_scaled(void **state)
{
    (void)state;
    const double params[][4] = {{1000, 20000, 300000, 4},
                                {1000, 20000, 300000, 4000},
                                {0, 1, 2, 4},
                                {0, 1, 2, 4000},
                                {1000, 1000, 300000, 4},
                                {1000, 1000, 300000, 4000},
                                {1000, 300000, 300000, 4},
                                {1000, 300000, 300000, 4000},
                                {1000, 1000.001, 300000, 4},
                                {1000, 299999.999, 300000, 4000}};
    for (size_t s = 0; s < sizeof params / sizeof params[0]; s++) {
        const double *p = params[s];
        rs_pert pt;
        rs_pert_init(&pt, p[0], p[1], p[2], p[3]);
        assert_null(pt.knots);
        rs_pert slow = pt; /* without the table: the inversion from its generic start */
        assert_int_equal(rs_pert_init_table(&pt), RS_OK);
        int closed = p[1] == p[0] || p[1] == p[2];
        assert_true(closed ? pt.knots == NULL : pt.knots != NULL);
        beta_ref ref = {pt.alpha, pt.beta};
        /* Non-integer shapes in the thousands have no accurate reference log B here: those
         * are checked against the untabled inversion only. */
        for (int i = 0; i < 41 && pt.alpha + pt.beta < 100.0; i++) {
            double u = pert_logit_u(i, 41);
            double want = p[0] + (p[2] - p[0]) * bisect_cdf(beta_cdf_series_ref, &ref, u);
            assert_rel(rs_pert_quantile(&pt, u), want, 1e-12);
        }
        for (int i = 0; i < 5000; i++) {
            double u = pert_logit_u(i, 5000);
            assert_rel(rs_pert_quantile(&pt, u), rs_pert_quantile(&slow, u), 1e-12);
        }
        rs_pert_free(&pt);
    }
}

/* The same u gives bit-identical results: twice in a row, in another order, and from a second
 * table built from the same parameters. */
static void test_pert_table_deterministic(void **state)
{
    (void)state;
    rs_pert a, b;
    rs_pert_init(&a, 1000.0, 20000.0, 300000.0, 4000.0);
    rs_pert_init(&b, 1000.0, 20000.0, 300000.0, 4000.0);
    assert_int_equal(rs_pert_init_table(&a), RS_OK);
    assert_int_equal(rs_pert_init_table(&b), RS_OK);
    assert_non_null(a.knots);
    double first[1000];
    for (int i = 0; i < 1000; i++) {
        first[i] = rs_pert_quantile(&a, pert_logit_u(i, 1000));
    }
    for (int i = 999; i >= 0; i--) {
        double u = pert_logit_u(i, 1000);
        double again = rs_pert_quantile(&a, u), other = rs_pert_quantile(&b, u);
        assert_memory_equal(&again, &first[i], sizeof again);
        assert_memory_equal(&other, &first[i], sizeof other);
    }
    rs_pert_free(&a);
    rs_pert_free(&b);
}

/* rs_pert_free on a zeroed struct, twice on the same struct, on NULL, and on a struct without
 * a table; the quantile still works (from the old start) once the table is gone. */
static void test_pert_free_safety(void **state)
{
    (void)state;
    rs_pert zero = {0};
    rs_pert_free(&zero);
    rs_pert_free(NULL);
    rs_pert pt;
    rs_pert_init(&pt, 0.0, 0.2, 1.0, 5.0);
    rs_pert_free(&pt); /* no table yet */
    assert_int_equal(rs_pert_init_table(&pt), RS_OK);
    assert_int_equal(rs_pert_init_table(&pt), RS_OK); /* a second call keeps the table */
    assert_non_null(pt.knots);
    double tabled = rs_pert_quantile(&pt, 0.3);
    rs_pert_free(&pt);
    assert_null(pt.knots);
    rs_pert_free(&pt);
    assert_rel(rs_pert_quantile(&pt, 0.3), tabled, 1e-13);
    rs_pert closed;
    rs_pert_init(&closed, 0.0, 0.0, 1.0, 4.0);
    assert_int_equal(rs_pert_init_table(&closed), RS_OK);
    assert_null(closed.knots);
    rs_pert_free(&closed);
}

/* ---------------------------------------------------------------------------------------------
 * Poisson
 * ------------------------------------------------------------------------------------------- */

/* Direct CDF: pmf by the recurrence e^-lambda lambda^k / k! for small lambda, and in log space
 * with libm's lgamma for large; cdf[k] for k < n. */
static void poisson_direct(double lambda, double *cdf, size_t n)
{
    double sum = 0.0, pmf = exp(-lambda);
    for (size_t k = 0; k < n; k++) {
        if (lambda > 100.0) {
            pmf = exp(-lambda + (double)k * log(lambda) - lgamma((double)k + 1.0));
        } else if (k > 0) {
            pmf *= lambda / (double)k;
        }
        sum += pmf;
        cdf[k] = sum;
    }
}

/* P(N > k) summed downwards from far out in log space (no cancellation). */
static double poisson_upper_tail(double lambda, size_t k)
{
    double sum = 0.0;
    for (size_t j = k + 1 + (size_t)(lambda + 40.0 * sqrt(lambda) + 60.0); j > k; j--) {
        sum += exp(-lambda + (double)j * log(lambda) - lgamma((double)j + 1.0));
    }
    return sum;
}

/* Compares rs_poisson_quantile with the direct CDF at many u (skipping u within tie of a CDF
 * value, where rounding may legitimately decide either way). */
static void check_poisson_quantiles(const rs_poisson *pois, const double *direct, size_t nd,
                                    double tie)
{
    size_t k = 0;
    for (int i = 0; i <= 100000; i++) {
        double u = i == 0 ? HDR_EPS : (i == 100000 ? 1.0 - HDR_EPS : (double)i / 100000.0);
        while (k + 1 < nd && direct[k] < u) {
            k++;
        }
        if (fabs(direct[k] - u) < tie || (k > 0 && fabs(direct[k - 1] - u) < tie)) {
            continue;
        }
        assert_int_equal(rs_poisson_quantile(pois, u), k);
    }
}

static void test_poisson_zero(void **state)
{
    (void)state;
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, 0.0), RS_OK);
    assert_null(pois.cdf);
    assert_int_equal(pois.n, 0);
    assert_int_equal(rs_poisson_quantile(&pois, 0.5), 0);
    assert_int_equal(rs_poisson_quantile(&pois, 1.0 - HDR_EPS), 0);
    rs_poisson_free(&pois);
    rs_poisson_free(&pois);
    rs_poisson_free(NULL);
}

static void test_poisson_small(void **state)
{
    (void)state;
    const double lambdas[] = {1.5, 0.2, 1.0, 7.3, 30.0};
    for (size_t j = 0; j < sizeof lambdas / sizeof lambdas[0]; j++) {
        double lambda = lambdas[j];
        rs_poisson pois;
        assert_int_equal(rs_poisson_init(&pois, lambda), RS_OK);
        assert_non_null(pois.cdf);
        assert_true(pois.lambda == lambda);
        assert_true(pois.cdf[pois.n - 1] == 1.0);
        assert_rel(pois.cdf[0], exp(-lambda), 1e-14);
        double direct[200];
        poisson_direct(lambda, direct, 200);
        for (size_t k = 0; k < pois.n; k++) {
            assert_abs(pois.cdf[k], direct[k], 1e-14);
            if (k > 0) {
                assert_true(pois.cdf[k] >= pois.cdf[k - 1]);
            }
        }
        /* The mass left out past the table is below 1e-16. */
        assert_true(poisson_upper_tail(lambda, pois.n - 1) < 1e-16);
        check_poisson_quantiles(&pois, direct, 200, 1e-13);
        rs_poisson_free(&pois);
        assert_null(pois.cdf);
    }
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, 1.5), RS_OK);
    assert_rel(pois.cdf[0], exp(-1.5), 1e-15);
    assert_rel(pois.cdf[1], 2.5 * exp(-1.5), 1e-15);
    assert_rel(pois.cdf[2], 3.625 * exp(-1.5), 1e-15);
    assert_int_equal(rs_poisson_quantile(&pois, exp(-1.5) * 0.999), 0);
    assert_int_equal(rs_poisson_quantile(&pois, exp(-1.5) * 1.001), 1);
    rs_poisson_free(&pois);
}

static void test_poisson_large(void **state)
{
    (void)state;
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, 1000.0), RS_OK);
    /* The table ends some 10 standard deviations above the mean. */
    assert_true(pois.n > 1000 + 6 * 32 && pois.n < 1500);
    assert_true(pois.cdf[pois.n - 1] == 1.0);
    uint32_t med = rs_poisson_quantile(&pois, 0.5);
    assert_true(med == 999 || med == 1000);

    double *direct = malloc(pois.n * sizeof *direct);
    assert_non_null(direct);
    poisson_direct(1000.0, direct, pois.n);
    for (size_t k = 0; k < pois.n; k++) {
        assert_abs(pois.cdf[k], direct[k], 1e-12);
    }
    check_poisson_quantiles(&pois, direct, pois.n, 1e-11);
    /* The largest HDR draw: P(N > answer) <= 2^-33 < P(N > answer - 1), well inside the
     * table, and the mass left out past the table is below 1e-16. */
    uint32_t top = rs_poisson_quantile(&pois, 1.0 - HDR_EPS);
    assert_true(top < pois.n - 1);
    assert_true(poisson_upper_tail(1000.0, top) <= HDR_EPS);
    assert_true(poisson_upper_tail(1000.0, top - 1) > HDR_EPS);
    assert_true(poisson_upper_tail(1000.0, pois.n - 1) < 1e-16);
    free(direct);
    rs_poisson_free(&pois);
}

static void test_poisson_tiny_lambda(void **state)
{
    (void)state;
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, 1e-12), RS_OK);
    assert_rel(pois.cdf[0], exp(-1e-12), 1e-15);
    assert_int_equal(rs_poisson_quantile(&pois, 0.5), 0);
    assert_int_equal(rs_poisson_quantile(&pois, 1.0 - HDR_EPS), 0);
    assert_int_equal(rs_poisson_quantile(&pois, 1.0 - 1e-13), 1);
    rs_poisson_free(&pois);
}

static void test_poisson_sweep(void **state)
{
    (void)state;
    /* Every table: nondecreasing, ends at 1, covers the largest HDR draw, sane size. */
    for (double lambda = 0.001; lambda <= 1000.0; lambda *= 1.37) {
        rs_poisson pois;
        assert_int_equal(rs_poisson_init(&pois, lambda), RS_OK);
        assert_true(pois.n >= 2 && pois.n < 1500);
        assert_true(pois.cdf[pois.n - 1] == 1.0);
        for (size_t k = 1; k < pois.n; k++) {
            assert_true(pois.cdf[k] >= pois.cdf[k - 1]);
        }
        /* Past the mean plus 8 standard deviations. */
        assert_true((double)pois.n > lambda + 8.0 * sqrt(lambda));
        assert_true(rs_poisson_quantile(&pois, 1.0 - HDR_EPS) < pois.n);
        assert_true(rs_poisson_quantile(&pois, 1.0) <= pois.n - 1);
        rs_poisson_free(&pois);
    }
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, 1000.0), RS_OK);
    rs_poisson_free(&pois);
}

static void test_poisson_invalid(void **state)
{
    (void)state;
    rs_poisson pois;
    assert_int_equal(rs_poisson_init(&pois, -1.0), RS_EINVAL);
    assert_null(pois.cdf);
    assert_int_equal(rs_poisson_init(&pois, 1000.5), RS_EINVAL);
    assert_null(pois.cdf);
    assert_int_equal(rs_poisson_init(&pois, NAN), RS_EINVAL);
    assert_null(pois.cdf);
    assert_int_equal(rs_poisson_init(&pois, INFINITY), RS_EINVAL);
    rs_poisson_free(&pois);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_quantile_reference),
        cmocka_unit_test(test_norm_quantile_symmetry),
        cmocka_unit_test(test_norm_quantile_edges),
        cmocka_unit_test(test_norm_quantile_roundtrip),
        cmocka_unit_test(test_lognormal_interval),
        cmocka_unit_test(test_metalog_symmetric_3term),
        cmocka_unit_test(test_metalog_two_terms),
        cmocka_unit_test(test_metalog_exact_4term),
        cmocka_unit_test(test_metalog_least_squares),
        cmocka_unit_test(test_metalog_lower_bound),
        cmocka_unit_test(test_metalog_upper_bound),
        cmocka_unit_test(test_metalog_bounded),
        cmocka_unit_test(test_metalog_many_terms),
        cmocka_unit_test(test_metalog_infeasible),
        cmocka_unit_test(test_metalog_singular),
        cmocka_unit_test(test_metalog_bad_input),
        cmocka_unit_test(test_pert_init),
        cmocka_unit_test(test_pert_symmetric),
        cmocka_unit_test(test_pert_beta_2_5),
        cmocka_unit_test(test_pert_integer_shapes),
        cmocka_unit_test(test_pert_general_shapes),
        cmocka_unit_test(test_pert_closed_forms),
        cmocka_unit_test(test_pert_large_shapes),
        cmocka_unit_test(test_pert_monotone_and_ends),
        cmocka_unit_test(test_pert_table_vs_reference),
        cmocka_unit_test(test_pert_table_scaled),
        cmocka_unit_test(test_pert_table_deterministic),
        cmocka_unit_test(test_pert_free_safety),
        cmocka_unit_test(test_poisson_zero),
        cmocka_unit_test(test_poisson_small),
        cmocka_unit_test(test_poisson_large),
        cmocka_unit_test(test_poisson_tiny_lambda),
        cmocka_unit_test(test_poisson_sweep),
        cmocka_unit_test(test_poisson_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
