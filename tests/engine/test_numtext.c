/*
 * Tests of the number formatter (engine/numtext.c).
 *
 * Why this file exists: every number of every stored result goes through rs_num_format, so it
 * must never write a text that reads back as another double. These tests check that with
 * strtod on random doubles of every binary exponent (subnormals included) and on the edge
 * cases, check the layout (plain or scientific, as printf's %g), and check that the text is
 * never longer than printf's exact "%.17g".
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "numtext.h"

/* xorshift64: a fixed sequence, so a failure reproduces. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Significant digits of a text: the digits before any exponent, without leading zeros. */
static size_t significant_digits(const char *text)
{
    size_t n = 0;
    int leading = 1;
    for (const char *p = text; *p != '\0' && *p != 'e'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (*p == '0' && leading)
            continue;
        leading = 0;
        n++;
    }
    return n;
}

/* v's text reads back as v, has at most 17 significant digits, and is no longer than
 * "%.17g". */
static void check_exact(double v)
{
    char text[RS_NUM_TEXT_SIZE];
    size_t len = rs_num_format(v, text);
    assert_int_equal(len, strlen(text));
    double back = strtod(text, NULL);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("%a was written as %s, which reads back as %a", v, text, back);
    assert_true(significant_digits(text) <= 17);
    char printf_text[40];
    snprintf(printf_text, sizeof printf_text, "%.17g", v);
    if (len > strlen(printf_text))
        fail_msg("%a was written as %s, longer than %s", v, text, printf_text);
}

static void test_random_bit_patterns(void **state)
{
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int checked = 0;
    for (int i = 0; i < 300000; i++) {
        uint64_t bits = next_random(&s);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        check_exact(v);
        checked++;
    }
    assert_true(checked > 290000);
}

/* Every binary exponent, with random significands (the cached power differs by exponent). */
static void test_every_exponent(void **state)
{
    (void)state;
    uint64_t s = 12345;
    for (uint64_t exponent = 0; exponent < 2047; exponent++) {
        for (int i = 0; i < 40; i++) {
            uint64_t bits = exponent << 52 | (next_random(&s) & 0x000FFFFFFFFFFFFFull);
            double v;
            memcpy(&v, &bits, sizeof v);
            check_exact(v);
        }
    }
}

/* Short decimals, integers, powers of two and ten, the limits. */
static void test_edges(void **state)
{
    (void)state;
    static const double edges[] = {
        0.0,    -0.0,   DBL_MIN,    DBL_MAX, DBL_TRUE_MIN, DBL_EPSILON,        1.0,
        0.1,    0.3,    2.0 / 3.0,  1e22,    1e23,         9007199254740992.0, 9007199254740993.0,
        5e-324, 1e-300, 123456.789, 0.000123};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        check_exact(edges[i]);
    for (int e = -1074; e <= 1023; e++)
        check_exact(ldexp(1.0, e));
    for (int e = -323; e <= 308; e++) {
        char power[16];
        snprintf(power, sizeof power, "1e%d", e);
        check_exact(strtod(power, NULL)); /* the double nearest 10^e */
    }
    uint64_t s = 7;
    for (int i = 0; i < 20000; i++) {
        double k = (double)(next_random(&s) % 100000);
        check_exact(k);                   /* integers */
        check_exact(k / 1000.0);          /* three decimals, e.g. exceedances */
        check_exact((double)i / 20000.0); /* shares of a trial count */
    }
}

/* Plain notation for decimal exponents from -5 to 16, scientific beyond, as printf's %g. */
static void test_layout(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "-0"},
        {1.0, "1"},
        {640.0, "640"},
        {-3.5, "-3.5"},
        {0.1, "0.1"},
        {0.0125, "0.0125"},
        {0.773, "0.773"},
        {123.456, "123.456"},
        {0.0001, "0.0001"},
        {1e-5, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {1e16, "10000000000000000"},
        {1e17, "1e+17"},
        {2.5e300, "2.5e+300"},
        {1e-300, "1e-300"},
        {1342106.1938497412, "1342106.1938497412"},
        {9007199254740992.0, "9007199254740992"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[RS_NUM_TEXT_SIZE];
        assert_string_equal(rs_num_text(cases[i].v, text), cases[i].text);
    }
}

static void test_non_finite(void **state)
{
    (void)state;
    char text[RS_NUM_TEXT_SIZE];
    assert_string_equal(rs_num_text(NAN, text), "nan");
    assert_string_equal(rs_num_text(INFINITY, text), "inf");
    assert_string_equal(rs_num_text(-INFINITY, text), "-inf");
    assert_int_equal(rs_num_format(-INFINITY, text), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bit_patterns),
        cmocka_unit_test(test_every_exponent),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_non_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
