/*
 * Numbers as text: the shortest decimal form of a double that reads back to the same double.
 *
 * Why this file exists: a result holds over a thousand doubles, and writing them was most of a
 * small synchronous request's time when it was done with printf's "%.15g" to "%.17g" and a
 * strtod to check each try (about 1 µs a number). This is Florian Loitsch's Grisu2 ("Printing
 * floating-point numbers quickly and accurately with integers", PLDI 2010): the digits come from
 * 64-bit integer arithmetic with one cached power of ten, about 20 times faster. Its output
 * always reads back to the same double (it stays inside the double's rounding interval, made
 * narrower by one unit on each side); it is the shortest such text except in rare cases, where
 * it is one digit longer. No C library on Debian provides this (json-c itself uses "%.17g"), so
 * the engine has its own; tests/engine/test_numtext.c checks it against strtod on millions of
 * doubles of every exponent.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "numtext.h"

/* A 64-bit significand and a binary exponent: f * 2^e. */
typedef struct diy_fp {
    uint64_t f;
    int e;
} diy_fp;

#define DP_SIGNIFICAND_MASK 0x000FFFFFFFFFFFFFull
#define DP_EXPONENT_MASK 0x7FF0000000000000ull
#define DP_HIDDEN_BIT 0x0010000000000000ull
#define DP_EXPONENT_BIAS (0x3FF + 52)
#define DP_MIN_EXPONENT (-DP_EXPONENT_BIAS)

/* 10^k for k = -348, -340, ..., 340 as f * 2^e with f normalized (bit 63 set) and rounded to
 * nearest. Made with Python's integers:
 *   k >= 0: e = (10**k).bit_length() - 64; f = round(10**k / 2**e)
 *   k < 0:  the e with 2**63 <= round(2**-e / 10**-k) < 2**64, f that value. */
static const diy_fp cached_powers[] = {
    {0xfa8fd5a0081c0288u, -1220}, {0xbaaee17fa23ebf76u, -1193}, {0x8b16fb203055ac76u, -1166},
    {0xcf42894a5dce35eau, -1140}, {0x9a6bb0aa55653b2du, -1113}, {0xe61acf033d1a45dfu, -1087},
    {0xab70fe17c79ac6cau, -1060}, {0xff77b1fcbebcdc4fu, -1034}, {0xbe5691ef416bd60cu, -1007},
    {0x8dd01fad907ffc3cu, -980},  {0xd3515c2831559a83u, -954},  {0x9d71ac8fada6c9b5u, -927},
    {0xea9c227723ee8bcbu, -901},  {0xaecc49914078536du, -874},  {0x823c12795db6ce57u, -847},
    {0xc21094364dfb5637u, -821},  {0x9096ea6f3848984fu, -794},  {0xd77485cb25823ac7u, -768},
    {0xa086cfcd97bf97f4u, -741},  {0xef340a98172aace5u, -715},  {0xb23867fb2a35b28eu, -688},
    {0x84c8d4dfd2c63f3bu, -661},  {0xc5dd44271ad3cdbau, -635},  {0x936b9fcebb25c996u, -608},
    {0xdbac6c247d62a584u, -582},  {0xa3ab66580d5fdaf6u, -555},  {0xf3e2f893dec3f126u, -529},
    {0xb5b5ada8aaff80b8u, -502},  {0x87625f056c7c4a8bu, -475},  {0xc9bcff6034c13053u, -449},
    {0x964e858c91ba2655u, -422},  {0xdff9772470297ebdu, -396},  {0xa6dfbd9fb8e5b88fu, -369},
    {0xf8a95fcf88747d94u, -343},  {0xb94470938fa89bcfu, -316},  {0x8a08f0f8bf0f156bu, -289},
    {0xcdb02555653131b6u, -263},  {0x993fe2c6d07b7facu, -236},  {0xe45c10c42a2b3b06u, -210},
    {0xaa242499697392d3u, -183},  {0xfd87b5f28300ca0eu, -157},  {0xbce5086492111aebu, -130},
    {0x8cbccc096f5088ccu, -103},  {0xd1b71758e219652cu, -77},   {0x9c40000000000000u, -50},
    {0xe8d4a51000000000u, -24},   {0xad78ebc5ac620000u, 3},     {0x813f3978f8940984u, 30},
    {0xc097ce7bc90715b3u, 56},    {0x8f7e32ce7bea5c70u, 83},    {0xd5d238a4abe98068u, 109},
    {0x9f4f2726179a2245u, 136},   {0xed63a231d4c4fb27u, 162},   {0xb0de65388cc8ada8u, 189},
    {0x83c7088e1aab65dbu, 216},   {0xc45d1df942711d9au, 242},   {0x924d692ca61be758u, 269},
    {0xda01ee641a708deau, 295},   {0xa26da3999aef774au, 322},   {0xf209787bb47d6b85u, 348},
    {0xb454e4a179dd1877u, 375},   {0x865b86925b9bc5c2u, 402},   {0xc83553c5c8965d3du, 428},
    {0x952ab45cfa97a0b3u, 455},   {0xde469fbd99a05fe3u, 481},   {0xa59bc234db398c25u, 508},
    {0xf6c69a72a3989f5cu, 534},   {0xb7dcbf5354e9beceu, 561},   {0x88fcf317f22241e2u, 588},
    {0xcc20ce9bd35c78a5u, 614},   {0x98165af37b2153dfu, 641},   {0xe2a0b5dc971f303au, 667},
    {0xa8d9d1535ce3b396u, 694},   {0xfb9b7cd9a4a7443cu, 720},   {0xbb764c4ca7a44410u, 747},
    {0x8bab8eefb6409c1au, 774},   {0xd01fef10a657842cu, 800},   {0x9b10a4e5e9913129u, 827},
    {0xe7109bfba19c0c9du, 853},   {0xac2820d9623bf429u, 880},   {0x80444b5e7aa7cf85u, 907},
    {0xbf21e44003acdd2du, 933},   {0x8e679c2f5e44ff8fu, 960},   {0xd433179d9c8cb841u, 986},
    {0x9e19db92b4e31ba9u, 1013},  {0xeb96bf6ebadf77d9u, 1039},  {0xaf87023b9bf0ee6bu, 1066},
};
#define CACHED_POWERS_MIN_K (-348)
#define CACHED_POWERS_STEP 8

static const uint64_t pow10_u64[] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};

/* The exact value of a positive finite double. */
static diy_fp diy_of_double(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int biased = (int)((bits & DP_EXPONENT_MASK) >> 52);
    uint64_t significand = bits & DP_SIGNIFICAND_MASK;
    if (biased != 0)
        return (diy_fp){significand + DP_HIDDEN_BIT, biased - DP_EXPONENT_BIAS};
    return (diy_fp){significand, DP_MIN_EXPONENT + 1}; /* subnormal */
}

static diy_fp diy_normalize(diy_fp x)
{
    int s = __builtin_clzll(x.f);
    return (diy_fp){x.f << s, x.e - s};
}

/* x * y, the upper 64 bits of the product rounded. */
static diy_fp diy_multiply(diy_fp x, diy_fp y)
{
    unsigned __int128 p = (unsigned __int128)x.f * y.f;
    uint64_t high = (uint64_t)(p >> 64);
    uint64_t low = (uint64_t)p;
    if (low & (1ull << 63))
        high++;
    return (diy_fp){high, x.e + y.e + 64};
}

/* The boundaries of v's rounding interval (the midpoints to its neighbours), both with the
 * exponent of the normalized upper one. */
static void diy_boundaries(diy_fp v, diy_fp *minus, diy_fp *plus)
{
    diy_fp pl = {(v.f << 1) + 1, v.e - 1};
    while (!(pl.f & (DP_HIDDEN_BIT << 1))) {
        pl.f <<= 1;
        pl.e--;
    }
    pl.f <<= 64 - 53 - 2;
    pl.e -= 64 - 53 - 2;
    /* Below a power of two the lower neighbour is half as far. */
    diy_fp mi = v.f == DP_HIDDEN_BIT ? (diy_fp){(v.f << 2) - 1, v.e - 2}
                                     : (diy_fp){(v.f << 1) - 1, v.e - 1};
    mi.f <<= mi.e - pl.e;
    mi.e = pl.e;
    *minus = mi;
    *plus = pl;
}

/* The cached power c with binary exponent such that e + c.e + 64 lands in [-60, -32]; *k is
 * set to minus its decimal exponent. */
static diy_fp cached_power(int e, int *k)
{
    double dk = (-61 - e) * 0.30102999566398114 + 347; /* log10(2), shifted to stay positive */
    int ik = (int)dk;
    if (dk - ik > 0.0)
        ik++;
    unsigned index = (unsigned)((ik >> 3) + 1);
    *k = -(CACHED_POWERS_MIN_K + (int)(index * CACHED_POWERS_STEP));
    return cached_powers[index];
}

static int decimal_digits_u32(uint32_t n)
{
    int digits = 1;
    while (n >= 10) {
        n /= 10;
        digits++;
    }
    return digits;
}

/* Moves the last digit down while that brings the number closer to w and keeps it inside the
 * interval. */
static void grisu_round(char *buf, int len, uint64_t delta, uint64_t rest, uint64_t ten_kappa,
                        uint64_t wp_w)
{
    while (rest < wp_w && delta - rest >= ten_kappa &&
           (rest + ten_kappa < wp_w || wp_w - rest > rest + ten_kappa - wp_w)) {
        buf[len - 1]--;
        rest += ten_kappa;
    }
}

/* Writes the digits of the number in [w_plus - delta, w_plus] closest to w (all scaled by the
 * cached power) with as few digits as possible; adjusts *k by the exponent of the last one. */
static int digit_gen(diy_fp w, diy_fp w_plus, uint64_t delta, char *buf, int *k)
{
    const int shift = -w_plus.e;
    const uint64_t one = 1ull << shift;
    const uint64_t wp_w = w_plus.f - w.f;
    uint32_t p1 = (uint32_t)(w_plus.f >> shift);
    uint64_t p2 = w_plus.f & (one - 1);
    int kappa = decimal_digits_u32(p1);
    int len = 0;
    while (kappa > 0) {
        uint32_t divisor = (uint32_t)pow10_u64[kappa - 1];
        uint32_t d = p1 / divisor;
        p1 %= divisor;
        if (d || len)
            buf[len++] = (char)('0' + d);
        kappa--;
        uint64_t rest = ((uint64_t)p1 << shift) + p2;
        if (rest <= delta) {
            *k += kappa;
            grisu_round(buf, len, delta, rest, pow10_u64[kappa] << shift, wp_w);
            return len;
        }
    }
    for (;;) {
        p2 *= 10;
        delta *= 10;
        char d = (char)(p2 >> shift);
        if (d || len)
            buf[len++] = (char)('0' + d);
        p2 &= one - 1;
        kappa--;
        if (p2 < delta) {
            *k += kappa;
            int index = -kappa;
            grisu_round(buf, len, delta, p2, one, wp_w * (index < 20 ? pow10_u64[index] : 0));
            return len;
        }
    }
}

/* The digits of positive finite v (at most 17) and its decimal exponent: v ~ digits * 10^k. */
static int grisu2(double v, char *digits, int *k)
{
    diy_fp x = diy_of_double(v);
    diy_fp minus, plus;
    diy_boundaries(x, &minus, &plus);
    diy_fp c = cached_power(plus.e, k);
    diy_fp w = diy_multiply(diy_normalize(x), c);
    diy_fp w_plus = diy_multiply(plus, c);
    diy_fp w_minus = diy_multiply(minus, c);
    w_minus.f++; /* narrower by one unit on each side: the product's rounding error */
    w_plus.f--;
    return digit_gen(w, w_plus, w_plus.f - w_minus.f, digits, k);
}

/* Writes the exponent of scientific notation as printf does: a sign and at least two digits. */
static size_t put_exponent(char *out, int e)
{
    size_t n = 0;
    out[n++] = 'e';
    out[n++] = e < 0 ? '-' : '+';
    unsigned u = (unsigned)(e < 0 ? -e : e);
    if (u >= 100)
        out[n++] = (char)('0' + u / 100);
    out[n++] = (char)('0' + u / 10 % 10);
    out[n++] = (char)('0' + u % 10);
    return n;
}

/* Lays out digits * 10^k as printf's %g would at 17 digits of precision: plain notation for
 * decimal exponents from -5 to 16, scientific otherwise. */
static size_t layout(const char *digits, int len, int k, char *out)
{
    int point = len + k; /* digits before the decimal point */
    int exp10 = point - 1;
    size_t n = 0;
    if (exp10 < -4 || exp10 >= 17) {
        out[n++] = digits[0];
        if (len > 1) {
            out[n++] = '.';
            memcpy(out + n, digits + 1, (size_t)len - 1);
            n += (size_t)len - 1;
        }
        return n + put_exponent(out + n, exp10);
    }
    if (point <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -point; i++)
            out[n++] = '0';
        memcpy(out + n, digits, (size_t)len);
        return n + (size_t)len;
    }
    if (point >= len) {
        memcpy(out, digits, (size_t)len);
        n = (size_t)len;
        for (int i = len; i < point; i++)
            out[n++] = '0';
        return n;
    }
    memcpy(out, digits, (size_t)point);
    n = (size_t)point;
    out[n++] = '.';
    memcpy(out + n, digits + point, (size_t)(len - point));
    return n + (size_t)(len - point);
}

size_t rs_num_format(double v, char buf[RS_NUM_TEXT_SIZE])
{
    size_t n = 0;
    if (v != v) {
        memcpy(buf, "nan", 4);
        return 3;
    }
    if (signbit(v)) {
        buf[n++] = '-';
        v = -v;
    }
    if (v == 0.0) {
        buf[n++] = '0';
    } else if (v > 1.7976931348623157e308) {
        memcpy(buf + n, "inf", 3);
        n += 3;
    } else {
        char digits[20];
        int k = 0;
        int len = grisu2(v, digits, &k);
        n += layout(digits, len, k, buf + n);
    }
    buf[n] = '\0';
    return n;
}

const char *rs_num_text(double v, char buf[RS_NUM_TEXT_SIZE])
{
    rs_num_format(v, buf);
    return buf;
}
