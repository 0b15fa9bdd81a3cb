/*
 * Distributions of the engine: normal quantile, lognormal from an interval, PERT and Poisson.
 *
 * Why this file exists: every draw of the simulation turns an HDR uniform into a number through
 * an inverse CDF, so these functions decide both the accuracy and the reproducibility of every
 * result. They are pure functions of their arguments: no global state (not even libm's
 * `signgam`, which is why the log-gamma function is our own), no I/O, and the only allocation
 * is the Poisson CDF table and the PERT knot table. The metalog lives in metalog.c.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "dist.h"

/* ---------------------------------------------------------------------------------------------
 * Normal quantile: Wichura, Algorithm AS 241 (PPND16), Applied Statistics 37(3), 1988.
 * Three rational approximations of degree 7/7: a central one for |p - 0.5| <= 0.425, and two in
 * r = sqrt(-log(min(p, 1-p))) for r <= 5 and r > 5. The published relative accuracy is about
 * 1e-16.
 * ------------------------------------------------------------------------------------------- */

/* Central region: Phi^-1(p) = q * A(r) / B(r), q = p - 0.5, r = 0.180625 - q^2. */
static const double as241_a[8] = {3.3871328727963666080e0,  1.3314166789178437745e+2,
                                  1.9715909503065514427e+3, 1.3731693765509461125e+4,
                                  4.5921953931549871457e+4, 6.7265770927008700853e+4,
                                  3.3430575583588128105e+4, 2.5090809287301226727e+3};
static const double as241_b[8] = {1.0,
                                  4.2313330701600911252e+1,
                                  6.8718700749205790830e+2,
                                  5.3941960214247511077e+3,
                                  2.1213794301586595867e+4,
                                  3.9307895800092710610e+4,
                                  2.8729085735721942674e+4,
                                  5.2264952788528545610e+3};
/* Intermediate tail: C(r - 1.6) / D(r - 1.6) for r <= 5. */
static const double as241_c[8] = {1.42343711074968357734e0,  4.63033784615654529590e0,
                                  5.76949722146069140550e0,  3.64784832476320460504e0,
                                  1.27045825245236838258e0,  2.41780725177450611770e-1,
                                  2.27238449892691845833e-2, 7.74545014278341407640e-4};
static const double as241_d[8] = {1.0,
                                  2.05319162663775882187e0,
                                  1.67638483018380384940e0,
                                  6.89767334985100004550e-1,
                                  1.48103976427480074590e-1,
                                  1.51986665636164571966e-2,
                                  5.47593808499534494600e-4,
                                  1.05075007164441684324e-9};
/* Far tail: E(r - 5) / F(r - 5) for r > 5. */
static const double as241_e[8] = {6.65790464350110377720e0,  5.46378491116411436990e0,
                                  1.78482653991729133580e0,  2.96560571828504891230e-1,
                                  2.65321895265761230930e-2, 1.24266094738807843860e-3,
                                  2.71155556874348757815e-5, 2.01033439929228813265e-7};
static const double as241_f[8] = {1.0,
                                  5.99832206555887937690e-1,
                                  1.36929880922735805310e-1,
                                  1.48753612908506148525e-2,
                                  7.86869131145613259100e-4,
                                  1.84631831751005468180e-5,
                                  1.42151175831644588870e-7,
                                  2.04426310338993978564e-15};

/* Evaluates the degree-7 polynomial k[0] + k[1] x + ... + k[7] x^7 by Horner's rule. */
static double poly7(const double k[8], double x)
{
    double v = k[7];
    for (int i = 6; i >= 0; i--) {
        v = v * x + k[i];
    }
    return v;
}

/* Standard normal quantile (declared in risksim/engine.h): Phi^-1(p) for p in (0,1), relative
 * error below 1e-15 (measured: 6.1e-16 at worst against 60-digit values on 20,000 points and
 * every decade down to 1e-320); -inf at 0, +inf at 1, NaN outside [0,1] or for NaN. */
double rs_norm_quantile(double p)
{
    if (!(p >= 0.0 && p <= 1.0)) {
        return NAN; /* also catches NaN */
    }
    if (p == 0.0) {
        return -INFINITY;
    }
    if (p == 1.0) {
        return INFINITY;
    }
    double q = p - 0.5;
    if (fabs(q) <= 0.425) {
        double r = 0.180625 - q * q;
        return q * poly7(as241_a, r) / poly7(as241_b, r);
    }
    /* min(p, 1-p): 1 - p is exact here because p > 0.5 (Sterbenz). */
    double r = q < 0.0 ? p : 1.0 - p;
    r = sqrt(-log(r));
    double v;
    if (r <= 5.0) {
        r -= 1.6;
        v = poly7(as241_c, r) / poly7(as241_d, r);
    } else {
        r -= 5.0;
        v = poly7(as241_e, r) / poly7(as241_f, r);
    }
    return q < 0.0 ? -v : v;
}

/* ---------------------------------------------------------------------------------------------
 * Lognormal from a central interval
 * ------------------------------------------------------------------------------------------- */

/* mu = (ln upper + ln lower) / 2, sigma = (ln upper - ln lower) / (2 Phi^-1((1 + ci) / 2)), so
 * that exp(mu +- sigma Phi^-1((1 + ci) / 2)) are lower and upper. Requires 0 < lower < upper and
 * 0 < ci < 1 (the caller validates). */
void rs_lognormal_from_interval(double lower, double upper, double ci, double *mu, double *sigma)
{
    double ll = log(lower), lu = log(upper);
    double z = rs_norm_quantile(0.5 + 0.5 * ci); /* Phi^-1((1 + ci) / 2) */
    *mu = 0.5 * (lu + ll);
    *sigma = (lu - ll) / (2.0 * z);
}

/* ---------------------------------------------------------------------------------------------
 * Log-gamma (thread-safe replacement for lgamma, which writes the global `signgam`)
 * ------------------------------------------------------------------------------------------- */

/* Below this, log_gamma shifts its argument up; at and above it Stirling's series is used. */
#define STIRLING_MIN 15.0

/* Stirling's correction delta(x) = log Gamma(x) - ((x - 1/2) log x - x + log(2 pi) / 2) for
 * x >= STIRLING_MIN: sum_k B_2k / (2k (2k-1) x^(2k-1)), k = 1..7. The first omitted term is
 * below 7e-20 there. */
static double stirling_delta(double x)
{
    double z = 1.0 / x, z2 = z * z;
    return z * (1.0 / 12.0 -
                z2 * (1.0 / 360.0 -
                      z2 * (1.0 / 1260.0 -
                            z2 * (1.0 / 1680.0 -
                                  z2 * (1.0 / 1188.0 - z2 * (691.0 / 360360.0 - z2 / 156.0))))));
}

static const double half_log_2pi = 0.91893853320467274178;

/* log Gamma(x) for x > 0. Shifts x up to at least STIRLING_MIN with Gamma(x) = Gamma(x+n) /
 * (x (x+1) ... (x+n-1)) and uses Stirling's series there: absolute error about 1e-14 for
 * x < 15, a few ulp above. */
static double log_gamma(double x)
{
    double prod = 1.0;
    while (x < STIRLING_MIN) {
        prod *= x;
        x += 1.0;
    }
    return (x - 0.5) * log(x) - x + half_log_2pi + stirling_delta(x) - log(prod);
}

/* log B(a, b) = log Gamma(a) + log Gamma(b) - log Gamma(a+b) for a, b > 0, without the
 * cancellation of the direct formula: when b is large the Stirling terms are combined
 * analytically first, e.g. for a, b >= 15
 *   log B = (a - 1/2) log(a/(a+b)) - b log1p(a/b) - log(b)/2 + log(2 pi)/2
 *           + delta(a) + delta(b) - delta(a+b),
 * whose terms are all of the size of the result (the direct formula subtracts numbers near
 * 8e4 for a = b = 1e4 and loses 1e-11). Absolute error about 1e-14. */
static double log_beta(double a, double b)
{
    if (a > b) {
        double t = a;
        a = b;
        b = t;
    }
    if (b < STIRLING_MIN) {
        return log_gamma(a) + log_gamma(b) - log_gamma(a + b);
    }
    double s = a + b;
    if (a < STIRLING_MIN) {
        /* log Gamma(b) - log Gamma(a+b) = -(b - 1/2) log1p(a/b) - a log(a+b) + a
         *                                 + delta(b) - delta(a+b) */
        return log_gamma(a) - (b - 0.5) * log1p(a / b) - a * log(s) + a + stirling_delta(b) -
               stirling_delta(s);
    }
    return (a - 0.5) * log(a / s) - b * log1p(a / b) - 0.5 * log(b) + half_log_2pi +
           stirling_delta(a) + stirling_delta(b) - stirling_delta(s);
}

/* ---------------------------------------------------------------------------------------------
 * PERT: a Beta(alpha, beta) scaled to [min, max]; quantile by inverting the regularized
 * incomplete beta function I_x(a, b).
 * ------------------------------------------------------------------------------------------- */

/* Most terms of the continued fraction; it needs O(sqrt(max(a, b))) of them, about 300 for
 * a = b = 1e4, so this bound is only reached far outside the supported range. */
#define BETA_CF_MAX_ITER 20000
/* Most Halley/bisection steps of the inversion (typically 3 to 6 are used). */
#define BETA_INV_MAX_ITER 200
/* A Halley step this small (relative to x) ends the inversion. */
#define BETA_INV_STEP_TOL 1e-13

/* Partial numerator d_j (j >= 1) of the continued fraction of I_x(a, b) (DLMF 8.17.22):
 * d_{2m} = m (b-m) x / ((a+2m-1)(a+2m)), d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)). */
static double beta_cf_term(int j, double x, double a, double b)
{
    double m = (double)(j / 2);
    if (j % 2 == 0) {
        return m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
    }
    return -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
}

/* The continued fraction of I_x(a, b): I_x(a,b) = x^a (1-x)^b / (a B(a,b)) / G with
 * G = 1 + d1 / (1 + d2 / (1 + d3 / ...)). Returns 1 / G. Converges fast for
 * x < (a+1)/(a+b+2); when b is an integer some d_{2m} is 0 and the fraction ends there exactly.
 * xm is 1 - x, passed separately (see below).
 *
 * Two passes. The forward modified Lentz method finds how many terms converge G to machine
 * precision; G is then evaluated backwards from there, t_j = 1 + d_j / t_{j+1}. The backward
 * form matters when b >> a and x is small, in the reflected evaluation 1 - I_{1-x}(b, a): there
 * every 1 + d_{2m+1} cancels down to about x, which wrecks Lentz's running product (1e-12
 * relative for b = 1e4) while the backward recurrence damps those errors by the small d_{2m}.
 * Only the top level's cancellation remains, and it is removed algebraically:
 * G = (1 + d1) - d1 s2 / (1 + s2) with s2 = d2 / t3, and 1 + d1 = ((a+1) - (a+b) x) / (a+1) =
 * ((1-b) + (a+b)(1-x)) / (a+1), whichever form has the smaller terms. */
static double beta_cf(double x, double xm, double a, double b)
{
    const double tiny = 1e-300;
    int n_terms = 2 * BETA_CF_MAX_ITER;
    double c = 1.0, d = 0.0;
    int settled = 0; /* consecutive convergents that changed by at most one ulp */
    for (int j = 1; j <= 2 * BETA_CF_MAX_ITER; j++) {
        double dj = beta_cf_term(j, x, a, b);
        d = 1.0 + dj * d;
        if (fabs(d) < tiny) {
            d = tiny;
        }
        c = 1.0 + dj / c;
        if (fabs(c) < tiny) {
            c = tiny;
        }
        d = 1.0 / d;
        /* The even and odd convergents can converge at very different speeds (the even d_{2m}
         * may be tiny while the odd ones are near -1), so both must have settled. */
        settled = fabs(c * d - 1.0) <= DBL_EPSILON ? settled + 1 : 0;
        if (settled >= 2) {
            n_terms = j;
            break;
        }
    }

    double t = 1.0, s = 0.0;
    for (int j = n_terms + 4; j >= 2; j--) {
        s = beta_cf_term(j, x, a, b) / t;
        t = 1.0 + s;
        if (fabs(t) < tiny) {
            t = tiny;
        }
    }
    double d1 = -(a + b) * x / (a + 1.0);
    double one_d1 = fmax(b - 1.0, (a + b) * xm) < a + 1.0 ? ((1.0 - b) + (a + b) * xm) / (a + 1.0)
                                                          : ((a + 1.0) - (a + b) * x) / (a + 1.0);
    return 1.0 / (one_d1 - d1 * (s / t));
}

/* Computes I = I_x(a, b) and its complement Ic = 1 - I, each accurate relative to itself where
 * it is the smaller one (the continued fraction is evaluated on the side where it converges and
 * the other is obtained by subtraction). 0 < x < 1, lbeta = log B(a, b). */
static void beta_inc(double x, double a, double b, double lbeta, double *I, double *Ic)
{
    double xm = 1.0 - x;
    double front = exp(a * log(x) + b * log1p(-x) - lbeta);
    if (x < (a + 1.0) / (a + b + 2.0)) {
        *I = front * beta_cf(x, xm, a, b) / a;
        *Ic = 1.0 - *I;
    } else {
        *Ic = front * beta_cf(xm, x, b, a) / b;
        *I = 1.0 - *Ic;
    }
}

/* Normal-approximation first guess of I^-1_p(a, b) for a, b >= 1 (Abramowitz & Stegun 26.5.22
 * with z the upper-tail normal deviate of p). */
static double beta_inv_guess(double p, double a, double b)
{
    double z = -rs_norm_quantile(p); /* Q(z) = p */
    double lam = (z * z - 3.0) / 6.0;
    double ia = 1.0 / (2.0 * a - 1.0), ib = 1.0 / (2.0 * b - 1.0);
    double h = 2.0 / (ia + ib);
    double w = z * sqrt(h + lam) / h - (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h));
    return a / (a + b * exp(2.0 * w));
}

/* Midpoint of the bracket [lo, hi] for a bisection step: geometric (in x near 0, in 1 - x near
 * 1) when the bracket spans orders of magnitude, so that a far tail is reached in a few dozen
 * steps. */
static double bracket_mid(double lo, double hi)
{
    if (lo > 0.0 && hi > 1e3 * lo) {
        return sqrt(lo * hi);
    }
    double ylo = 1.0 - lo, yhi = 1.0 - hi;
    if (yhi > 0.0 && ylo > 1e3 * yhi) {
        return 1.0 - sqrt(ylo * yhi);
    }
    return 0.5 * (lo + hi);
}

/* Inverse of the regularized incomplete beta function: the x in (0,1) with I_x(a, b) = p, for
 * a, b >= 1, 0 < p < 1, q = 1 - p computed by the caller (so that whichever of p, q is small
 * keeps its full precision), lbeta = log B(a, b).
 *
 * Bracket: for a, b >= 1, x^a (1-x)^(b-1) <= a B(a,b) I_x(a,b) <= x^a, and the same with a, b
 * and x, 1-x exchanged for 1 - I_x. So the root x* lies in [xl, 1 - yu] with
 * xl = (p a B)^(1/a) and yu = (q b B)^(1/b), and x* (1-x*)^((b-1)/a) <= xl: in the lower tail,
 * where xl (b-1)/a is small, xl is within a fraction xl (b-1)/a of the root (likewise 1 - yu in
 * the upper tail). Elsewhere the start is the normal approximation, moved into the bracket.
 * Then Halley steps on f(x) = I_x - p (f' is the Beta density, f''/f' = (a-1)/x - (b-1)/(1-x)),
 * shrinking the bracket with the sign of f at every iterate and bisecting whenever a step
 * would leave the bracket or fails to halve the previous one (which bounds the work when the
 * start is poor). Stops after a step below 1e-13 x: the error of the result is then of the
 * order of the step squared, i.e. at the rounding level of I_x. */
static double beta_inv(double p, double q, double a, double b, double lbeta, double x0)
{
    double lo = 0.0, hi = 1.0;
    double xl = exp((log(p) + log(a) + lbeta) / a);
    if (xl > 0.0 && xl < 1.0) {
        lo = xl * (1.0 - 1e-12); /* widened by far more than its rounding error */
    }
    double yu = exp((log(q) + log(b) + lbeta) / b);
    if (yu > 0.0 && yu < 1.0) {
        hi = 1.0 - yu * (1.0 - 1e-12);
    }
    if (!(lo < hi)) { /* cannot happen for a, b >= 1; keep the trivial bracket */
        lo = 0.0;
        hi = 1.0;
    }

    double x = x0;
    if (x > lo && x < hi) {
        /* the caller's start */
    } else if (p <= 0.5 && lo > 0.0 && xl * (b - 1.0) / a < 0.1) {
        x = xl;
    } else if (p > 0.5 && hi < 1.0 && yu * (a - 1.0) / b < 0.1) {
        x = 1.0 - yu;
    } else {
        x = beta_inv_guess(p, a, b);
    }
    if (!(x > lo && x < hi)) {
        x = bracket_mid(lo, hi);
    }

    double prev_step = hi - lo;
    for (int iter = 0; iter < BETA_INV_MAX_ITER; iter++) {
        double I, Ic;
        beta_inc(x, a, b, lbeta, &I, &Ic);
        /* f = I - p, computed from the side where it keeps its precision. */
        double f = p <= 0.5 ? I - p : q - Ic;
        if (f == 0.0) {
            return x;
        }
        if (f < 0.0) {
            lo = x;
        } else {
            hi = x;
        }

        double xn = NAN;
        double dens = exp((a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - lbeta);
        if (dens > 0.0 && isfinite(dens)) {
            double t = f / dens; /* Newton step */
            double curv = (a - 1.0) / x - (b - 1.0) / (1.0 - x);
            double den = 1.0 - 0.5 * t * curv;
            double step = (den > 0.5 && den < 2.0) ? t / den : t; /* Halley when tame */
            xn = x - step;
            /* Converged: x was within about |step| of the root, so xn is within about
             * step^2 (f' is exact, not estimated). */
            if (fabs(step) <= BETA_INV_STEP_TOL * x && xn >= lo && xn <= hi) {
                return xn;
            }
            if (fabs(step) > 0.5 * prev_step) {
                xn = NAN; /* too slow: bisect instead */
            }
        }
        if (!(xn > lo && xn < hi)) {
            xn = bracket_mid(lo, hi);
            if (!(xn > lo && xn < hi)) {
                return x; /* the bracket is down to adjacent doubles */
            }
        }
        prev_step = fabs(xn - x);
        x = xn;
    }
    return x;
}

/* The knot table of a PERT: the exact quantile at PERT_KNOTS points equally spaced in
 * t = logit(u) over [-PERT_T_MAX, PERT_T_MAX], stored as y = logit(x) with its first two
 * derivatives in t, so that a quintic Hermite interpolant gives a start within about 1e-8
 * (relative) of the root.
 * In these variables both tails are nearly straight lines (x ~ c u^(1/alpha) in the lower
 * tail gives y ~ t / alpha), so the equal spacing serves the whole range. PERT_T_MAX covers
 * every HDR draw (|logit(u)| <= 22.9 for u in [2^-33, 1 - 2^-33]). */
#define PERT_KNOTS 129
#define PERT_T_MAX 24.0
#define PERT_T_STEP (2.0 * PERT_T_MAX / (PERT_KNOTS - 1))
/* Largest alpha + beta with a table: beyond the supported shapes (each in [1, 1e4]) the exact
 * inversion slows down (its continued fraction grows with sqrt(alpha + beta)) and building
 * the table would cost more than it saves. */
#define PERT_TABLE_MAX_SHAPE 1e5

/* logit(x) = log(x / (1 - x)) for 0 < x < 1. */
static double logit(double x)
{
    return log(x) - log1p(-x);
}

/* The logistic function 1 / (1 + e^-y), accurate relative to the result in both tails. */
static double logistic(double y)
{
    if (y < 0.0) {
        double e = exp(y);
        return e / (1.0 + e);
    }
    return 1.0 / (1.0 + exp(-y));
}

/* One unguarded Halley step from a start x0 close to the root of I_x(a, b) = p
 * (q = 1 - p), with a test that the result is already as accurate as beta_inv's: writes the
 * new point to *x1 and returns 1 when it may be returned as it is, 0 otherwise (then *x1 is
 * still the best point known and a good start for beta_inv).
 *
 * The test: with g = log of the density, a Halley step from x at distance e from the root
 * lands within about (g'^2/12 - g''/6) e^3 of it, and e is the step to first order. With
 * S = |g'| + sqrt|g''| + 1 / min(x, 1 - x) (the last term bounds the higher derivatives near
 * the ends, where the expansion would fail first), the step is accepted when |step| S <= 1e-3
 * (the expansion holds) and |step| (|step| S)^2 <= 1e-17 x (its error is far below the rounding
 * of I_x). A start within 1e-8 passes this in one step for every shape in [1, 1e4]. */
static int beta_inv_polish(double p, double q, double a, double b, double lbeta, double x0,
                           double *x1)
{
    *x1 = x0;
    if (!(x0 > 0.0 && x0 < 1.0)) {
        return 0;
    }
    double xm = 1.0 - x0;
    double lx = log(x0), lxm = log1p(-x0);
    double front = exp(a * lx + b * lxm - lbeta);
    double f;
    if (x0 < (a + 1.0) / (a + b + 2.0)) {
        double I = front * beta_cf(x0, xm, a, b) / a;
        f = p <= 0.5 ? I - p : q - (1.0 - I);
    } else {
        double Ic = front * beta_cf(xm, x0, b, a) / b;
        f = p <= 0.5 ? (1.0 - Ic) - p : q - Ic;
    }
    if (f == 0.0) {
        return 1;
    }
    double dens = front / (x0 * xm); /* x^(a-1) (1-x)^(b-1) / B(a, b) */
    if (!(dens > 0.0 && isfinite(dens))) {
        return 0;
    }
    double t = f / dens;
    double g1 = (a - 1.0) / x0 - (b - 1.0) / xm;
    double g2 = (a - 1.0) / (x0 * x0) + (b - 1.0) / (xm * xm);
    double den = 1.0 - 0.5 * t * g1;
    if (!(den > 0.5 && den < 2.0)) {
        return 0;
    }
    double step = t / den;
    double xn = x0 - step;
    if (!(xn > 0.0 && xn < 1.0)) {
        return 0;
    }
    *x1 = xn;
    double r = fabs(step) * (fabs(g1) + sqrt(g2) + 1.0 / fmin(x0, xm));
    return r <= 1e-3 && fabs(step) * r * r <= 1e-17 * xn;
}

/* Inverse of I_x(a, b) at p (q = 1 - p) as beta_inv, starting from x0 when it is usable. */
static double beta_inv_from(double p, double q, double a, double b, double lbeta, double x0)
{
    double x1;
    if (beta_inv_polish(p, q, a, b, lbeta, x0, &x1)) {
        return x1;
    }
    return beta_inv(p, q, a, b, lbeta, x1);
}

/* Fills the knot table (3 * PERT_KNOTS doubles: y, h dy/dt and h^2 d2y/dt2 at t_k,
 * interleaved, h the knot spacing). Each knot
 * is solved exactly, starting from the previous knot extrapolated along its slope. Returns 0
 * if some entry is not finite (the table is then unusable). */
static int pert_fill_knots(const rs_pert *pert, double *knots)
{
    double a = pert->alpha, b = pert->beta;
    double y = NAN, slope = NAN, curve = NAN;
    for (int k = 0; k < PERT_KNOTS; k++) {
        double t = -PERT_T_MAX + PERT_T_STEP * k;
        double u = logistic(t), uc = logistic(-t);
        double x0 = k == 0 ? NAN : logistic(y + slope + 0.5 * curve);
        double x = beta_inv_from(u, uc, a, b, pert->lbeta, x0);
        double front = exp(a * log(x) + b * log1p(-x) - pert->lbeta);
        y = logit(x);
        /* dy/dt = u (1-u) / F with F = x^a (1-x)^b / B, and since d log F / dy = a - (a+b) x,
         * d2y/dt2 = dy/dt ((1 - 2u) - (a - (a+b) x) dy/dt). */
        double d1 = u * uc / front;
        double d2 = d1 * ((uc - u) - (a - (a + b) * x) * d1);
        slope = PERT_T_STEP * d1;
        curve = PERT_T_STEP * PERT_T_STEP * d2;
        if (!(isfinite(y) && isfinite(slope) && isfinite(curve))) {
            return 0;
        }
        knots[3 * k] = y;
        knots[3 * k + 1] = slope;
        knots[3 * k + 2] = curve;
    }
    return 1;
}

/* alpha = 1 + gamma (mode - min) / (max - min), beta = 1 + gamma (max - mode) / (max - min)
 * and log B(alpha, beta). Requires min <= mode <= max, min < max, gamma > 0 (the caller
 * validates), so alpha, beta >= 1. Allocates nothing: knots is NULL until rs_pert_init_table. */
void rs_pert_init(rs_pert *pert, double min, double mode, double max, double gamma)
{
    double range = max - min;
    pert->min = min;
    pert->max = max;
    pert->alpha = 1.0 + gamma * (mode - min) / range;
    pert->beta = 1.0 + gamma * (max - mode) / range;
    pert->lbeta = log_beta(pert->alpha, pert->beta);
    pert->knots = NULL;
}

/* No table when alpha or beta is 1 (closed forms) or beyond PERT_TABLE_MAX_SHAPE. */
rs_err rs_pert_init_table(rs_pert *pert)
{
    if (pert->knots != NULL || pert->alpha == 1.0 || pert->beta == 1.0 ||
        !(pert->alpha + pert->beta <= PERT_TABLE_MAX_SHAPE)) {
        return RS_OK;
    }
    double *knots = malloc(3 * PERT_KNOTS * sizeof *knots);
    if (knots == NULL) {
        return RS_ENOMEM;
    }
    if (pert_fill_knots(pert, knots)) {
        pert->knots = knots;
    } else {
        free(knots); /* cannot happen in the supported range; the slow path stays exact */
    }
    return RS_OK;
}

size_t rs_pert_table_bytes(const rs_pert *pert)
{
    return pert != NULL && pert->knots != NULL ? 3 * PERT_KNOTS * sizeof(double) : 0;
}

void rs_pert_free(rs_pert *pert)
{
    if (pert == NULL) {
        return;
    }
    free(pert->knots);
    pert->knots = NULL;
}

/* Start for the inversion at u from the knot table (quintic Hermite in t = logit(u)), or NaN
 * when u lies outside the table. */
static double pert_table_start(const double *knots, double u)
{
    double t = log(u) - log1p(-u);
    if (!(t > -PERT_T_MAX && t < PERT_T_MAX)) {
        return NAN;
    }
    double s = (t + PERT_T_MAX) * (1.0 / PERT_T_STEP);
    int k = (int)s;
    if (k > PERT_KNOTS - 2) {
        k = PERT_KNOTS - 2;
    }
    double w = s - k, w2 = w * w, w3 = w2 * w, v3 = (1.0 - w) * (1.0 - w) * (1.0 - w);
    const double *c = knots + 3 * k; /* y0, h y0', h^2 y0'', y1, h y1', h^2 y1'' */
    /* quintic Hermite basis, written in factored form */
    double h0 = v3 * (1.0 + w * (3.0 + 6.0 * w));
    double h1 = v3 * w * (1.0 + 3.0 * w);
    double h2 = 0.5 * v3 * w2;
    double h5 = w3 * (10.0 - w * (15.0 - 6.0 * w));
    double h4 = w3 * (-4.0 + w * (7.0 - 3.0 * w));
    double h3 = 0.5 * w3 * (1.0 - w) * (1.0 - w);
    double y = h0 * c[0] + h1 * c[1] + h2 * c[2] + h5 * c[3] + h4 * c[4] + h3 * c[5];
    return logistic(y);
}

/* min + (max - min) I^-1_u(alpha, beta), relative error about 1e-14 (1e-12 promised) for
 * alpha, beta in [1, 1e4]; closed forms when alpha or beta is 1. u <= 0 gives min, u >= 1 max,
 * NaN gives NaN. The result is always within [min, max]. Thread-safe, deterministic. */
double rs_pert_quantile(const rs_pert *pert, double u)
{
    if (isnan(u)) {
        return NAN;
    }
    if (u <= 0.0) {
        return pert->min;
    }
    if (u >= 1.0) {
        return pert->max;
    }
    double a = pert->alpha, b = pert->beta, x;
    if (a == 1.0 && b == 1.0) {
        x = u; /* uniform */
    } else if (a == 1.0) {
        x = -expm1(log1p(-u) / b); /* I_x(1,b) = 1 - (1-x)^b */
    } else if (b == 1.0) {
        x = exp(log(u) / a); /* I_x(a,1) = x^a */
    } else if (a == b && u == 0.5) {
        x = 0.5; /* symmetric: exact median */
    } else {
        double x0 = pert->knots != NULL ? pert_table_start(pert->knots, u) : NAN;
        x = beta_inv_from(u, 1.0 - u, a, b, pert->lbeta, x0);
    }
    double v = pert->min + (pert->max - pert->min) * x;
    if (v < pert->min) {
        v = pert->min;
    }
    if (v > pert->max) {
        v = pert->max;
    }
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Poisson CDF table
 *
 * The pmf is built relative to its mode m = floor(lambda): w(m) = 1, w(k-1) = w(k) k / lambda
 * below it and w(k+1) = w(k) lambda / (k+1) above it, then normalized by the (compensated) sum
 * of the table. Working relative to the mode means e^-1000 never appears: the weights far below
 * the mode underflow harmlessly to 0 instead of taking the whole table with them, the rounding
 * error of each weight grows only with |k - m| (a few 1e-14 at most for lambda = 1000), and the
 * normalization makes the last entry exactly 1. The table stops at the first k >= m whose
 * remaining tail, bounded by w(k+1) / (1 - lambda/(k+2)) (a geometric series, since the ratios
 * keep falling), is below 1e-17 of the total: far below the 2^-33 that separates the largest
 * HDR draw from 1: the table reaches about 9.4 standard deviations above the mean for large
 * lambda (1,298 entries for 1000) and more for small ones (22 entries for 1.5).
 * ------------------------------------------------------------------------------------------- */

/* Largest lambda of docs/api.md section 1. */
static const double poisson_max_lambda = 1000.0;
/* Tail mass (relative to the mode's weight, hence to the total) left out of the table. */
static const double poisson_tail = 1e-17;
/* Safety cap on entries past the mode; lambda <= 1000 needs fewer than 400. */
#define POISSON_MAX_ABOVE_MODE 100000u

/* Fills *pois with lambda and its CDF table (see above). Returns RS_OK; RS_EINVAL, with no
 * table, when lambda is not in [0, 1000] (or is NaN); RS_ENOMEM when malloc fails. *pois is
 * always left safe to pass to rs_poisson_free. lambda == 0 needs no table (cdf NULL, n 0). */
rs_err rs_poisson_init(rs_poisson *pois, double lambda)
{
    pois->lambda = lambda;
    pois->cdf = NULL;
    pois->n = 0;
    if (!(lambda >= 0.0 && lambda <= poisson_max_lambda)) {
        return RS_EINVAL;
    }
    if (lambda == 0.0) {
        return RS_OK;
    }

    size_t m = (size_t)floor(lambda);
    /* Pass 1: where the table ends. The same products as pass 2, so the same decision. */
    size_t last = m;
    double w = 1.0;
    for (;;) {
        double next = w * lambda / (double)(last + 1);
        double ratio = lambda / (double)(last + 2); /* < 1 since last + 2 > lambda */
        if (next / (1.0 - ratio) <= poisson_tail || last - m >= POISSON_MAX_ABOVE_MODE) {
            break;
        }
        w = next;
        last++;
    }
    size_t n = last + 1;

    double *cdf = malloc(n * sizeof *cdf);
    if (cdf == NULL) {
        return RS_ENOMEM;
    }
    /* Pass 2: the weights, stored in cdf[] for now. */
    cdf[m] = 1.0;
    for (size_t k = m; k > 0; k--) {
        cdf[k - 1] = cdf[k] * (double)k / lambda;
    }
    for (size_t k = m; k + 1 < n; k++) {
        cdf[k + 1] = cdf[k] * lambda / (double)(k + 1);
    }
    /* Prefix sums with Neumaier's compensation, then normalization by the full sum. */
    double sum = 0.0, comp = 0.0;
    for (size_t k = 0; k < n; k++) {
        double v = cdf[k];
        double t = sum + v;
        if (fabs(sum) >= fabs(v)) {
            comp += (sum - t) + v;
        } else {
            comp += (v - t) + sum;
        }
        sum = t;
        cdf[k] = sum + comp;
    }
    double total = cdf[n - 1];
    for (size_t k = 0; k < n; k++) {
        double c = cdf[k] / total;
        cdf[k] = c < 1.0 ? c : 1.0;
    }
    cdf[n - 1] = 1.0; /* covers every u < 1 */

    pois->cdf = cdf;
    pois->n = n;
    return RS_OK;
}

/* Frees the table and zeroes cdf and n; NULL, a zeroed struct or a second call are fine. */
void rs_poisson_free(rs_poisson *pois)
{
    if (pois == NULL) {
        return;
    }
    free(pois->cdf);
    pois->cdf = NULL;
    pois->n = 0;
}

/* Smallest k with cdf[k] >= u by binary search (0 when lambda == 0). u >= 1 gives the first k
 * whose entry rounds to 1, at most n - 1. */
uint32_t rs_poisson_quantile(const rs_poisson *pois, double u)
{
    if (pois->cdf == NULL || pois->n == 0) {
        return 0;
    }
    /* Smallest k with cdf[k] >= u; cdf[n-1] == 1 so the answer is in [0, n-1]. */
    size_t lo = 0, hi = pois->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pois->cdf[mid] >= u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return (uint32_t)lo;
}
