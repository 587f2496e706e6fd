/* tinyq native runtime: gemmlowp-style fixed-point arithmetic (int32 raw values).
 *
 * The same integer steps TFLM's reference kernels take through gemmlowp's
 * FixedPoint<int32_t, N> (SaturatingRoundingDoublingHighMul, RoundingDivideByPOT,
 * Rescale, exp_on_negative_values, one_over_one_plus_x_for_x_in_0_1), written as
 * plain C99 functions on raw int32 values. "Qm" below means FixedPoint<int32_t, m>:
 * m integer bits, 31 - m fractional bits. Adds that may wrap are done in
 * uint32_t (two's complement on every target, no undefined behaviour). */
#ifndef TQ_FIXEDPOINT_H
#define TQ_FIXEDPOINT_H

#include <stdint.h>

#include "tq_kernels.h"

#define TQ_FP_INT32_MIN ((int32_t)(-2147483647 - 1))
#define TQ_FP_INT32_MAX ((int32_t)2147483647)

TQ_INLINE int32_t tq_fp_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

TQ_INLINE int32_t tq_fp_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), -1 * -1 -> max. */
TQ_INLINE int32_t tq_fp_srdhm(int32_t a, int32_t b)
{
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t sum = ab + (ab >= 0 ? ((int64_t)1 << 30) : (int64_t)1 - ((int64_t)1 << 30));
    if (a == TQ_FP_INT32_MIN && b == TQ_FP_INT32_MIN) {
        return TQ_FP_INT32_MAX;
    }
    /* C division truncates toward zero; so does gemmlowp's "/ (1ll << 31)". */
    return (int32_t)(sum >= 0 ? (sum >> 31) : -((-sum) >> 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from 0. */
TQ_INLINE int32_t tq_fp_rdbpot(int32_t x, int32_t exponent)
{
    const uint32_t mask = (exponent >= 32) ? 0xFFFFFFFFu : (((uint32_t)1 << exponent) - 1u);
    const uint32_t remainder = (uint32_t)x & mask;
    const uint32_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for 0 < exponent < 31. */
TQ_INLINE int32_t tq_fp_sat_shl(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return TQ_FP_INT32_MAX;
    }
    if (x < -threshold) {
        return TQ_FP_INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(x) for x in [-1/4, 0): Q0 -> Q0 (gemmlowp's 4th-order Taylor around -1/8). */
TQ_INLINE int32_t tq_fp_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;   /* exp(-1/8) in Q0 */
    const int32_t one_third = 715827883;        /* 1/3 in Q0 */
    const int32_t x = tq_fp_add(a, (int32_t)1 << 28);
    const int32_t x2 = tq_fp_srdhm(x, x);
    const int32_t x3 = tq_fp_srdhm(x2, x);
    const int32_t x4 = tq_fp_srdhm(x2, x2);
    const int32_t x4_over_4 = tq_fp_rdbpot(x4, 2);
    const int32_t poly = tq_fp_rdbpot(
        tq_fp_add(tq_fp_srdhm(tq_fp_add(x4_over_4, x3), one_third), x2), 1);
    return tq_fp_add(constant_term, tq_fp_srdhm(constant_term, tq_fp_add(x, poly)));
}

/* gemmlowp exp_on_negative_values for a Q<integer_bits> input (1 <= integer_bits <= 5):
 * exp(a) for a <= 0, as Q0. integer_bits is a compile-time constant at every call. */
TQ_INLINE int32_t tq_fp_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    static const int32_t barrel[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1)   */
        290630308,  /* exp(-2)   */
        39332535,   /* exp(-4)   */
        720401,     /* exp(-8)   */
        242,        /* exp(-16)  */
    };
    const int32_t frac = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (frac - 2);
    const int32_t a_mod = tq_fp_sub(a & (one_quarter - 1), one_quarter);
    int32_t result = tq_fp_exp_quarter(tq_fp_sat_shl(a_mod, integer_bits));
    const uint32_t remainder = (uint32_t)tq_fp_sub(a_mod, a);
    int32_t k;
    if (a == 0) {
        return TQ_FP_INT32_MAX;
    }
    /* barrel shifter: exponents -2 .. +4 exist while integer_bits > exponent */
    for (k = 0; k < 7 && (k - 2) < integer_bits; ++k) {
        if (remainder & ((uint32_t)1 << (frac + k - 2))) {
            result = tq_fp_srdhm(result, barrel[k]);
        }
    }
    return result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in [0, 1), Q0 -> Q0. */
TQ_INLINE int32_t tq_fp_one_over_one_plus_x(int32_t a)
{
    const int32_t one_q2 = (int32_t)1 << 29;
    /* RoundingHalfSum(a, One): (a + max + sign) / 2, truncating toward zero */
    const int64_t sum = (int64_t)a + TQ_FP_INT32_MAX;
    const int64_t s2 = sum + (sum >= 0 ? 1 : -1);
    const int32_t half_den = (int32_t)(s2 >= 0 ? s2 / 2 : -((-s2) / 2));
    int32_t x = tq_fp_add(1515870810, tq_fp_srdhm(half_den, -1010580540)); /* 48/17 - 32/17 d */
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = tq_fp_sub(one_q2, tq_fp_srdhm(half_den, x));
        x = tq_fp_add(x, tq_fp_sat_shl(tq_fp_srdhm(x, one_minus), 2));
    }
    return tq_fp_sat_shl(x, 1);
}

/* count leading zeros of a non-zero 32-bit value */
TQ_INLINE int32_t tq_fp_clz(uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return (int32_t)__builtin_clz(x);
#else
    int32_t n = 0;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
#endif
}

#endif /* TQ_FIXEDPOINT_H */
