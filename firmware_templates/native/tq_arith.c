/* tinyq native runtime: SUB, SQUARED_DIFFERENCE, float NEG/ABS (tq_arith.h). Elements
 * are read and written with memcpy. */
#include <string.h>

#include "tq_arith.h"

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* both inputs rescaled to the common scale: (x - zp) * 2^left_shift times a multiplier
 * of at most one half (|x - zp| < 2^16, left_shift <= 20 for int8, 15 for int16, 7 and 0
 * for SQUARED_DIFFERENCE: no overflow); returns their difference */
static int32_t rescaled_difference(const tq_sub_params *p, int32_t a, int32_t b)
{
    const int32_t sa = (a - p->in1_zp) * ((int32_t)1 << p->left_shift);
    const int32_t sb = (b - p->in2_zp) * ((int32_t)1 << p->left_shift);
    return tq_mul_by_quantized_mul(sa, p->in1_mult, p->in1_shift)
           - tq_mul_by_quantized_mul(sb, p->in2_mult, p->in2_shift);
}

/* TFLM's quantized SubElementwise / SquaredDifference for one pair (int8 or int16) */
static int32_t quantized(const tq_sub_params *p, int square, int32_t a, int32_t b)
{
    const int32_t d = rescaled_difference(p, a, b);
    /* SQUARED_DIFFERENCE: |d| <= 2^15, so the square fits int32 */
    const int32_t out = tq_mul_by_quantized_mul(square ? d * d : d, p->out_mult, p->out_shift);
    return clamp32(out + p->out_zp, p->act_min, p->act_max);
}

/* an int8 (n = 1) or int16 (n = 2) element */
static int32_t load_small(const uint8_t *src, size_t n)
{
    int8_t b;
    int16_t h;
    if (n == 1u) {
        memcpy(&b, src, 1);
        return b;
    }
    memcpy(&h, src, 2);
    return h;
}

static void store_small(uint8_t *dst, int32_t v, size_t n)
{
    const int8_t b = (int8_t)v;
    const int16_t h = (int16_t)v;
    memcpy(dst, n == 1u ? (const void *)&b : (const void *)&h, n);
}

static void binary_one(const tq_sub_params *p, int square, const uint8_t *a, const uint8_t *b,
                       uint8_t *o)
{
    switch (p->type) {
    case TQ_T_F32: {
        float x, y, r;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        r = x - y;
        if (square) {
            r = r * r;
        } else {
            /* ActivationFunctionWithMinMax: min(max(r, lo), hi) */
            r = r < p->f_min ? p->f_min : r;
            r = p->f_max < r ? p->f_max : r;
        }
        memcpy(o, &r, 4);
        break;
    }
    case TQ_T_S8:
    case TQ_T_S16: {
        const size_t n = p->type == TQ_T_S8 ? 1u : 2u;
        store_small(o, quantized(p, square, load_small(a, n), load_small(b, n)), n);
        break;
    }
    default: {                                          /* int32: wraps like hardware */
        int32_t x, y, r;
        uint32_t d;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        d = (uint32_t)x - (uint32_t)y;
        r = square ? (int32_t)(d * d) : clamp32((int32_t)d, p->act_min, p->act_max);
        memcpy(o, &r, 4);
        break;
    }
    }
}

static void sub_one(const void *p, const uint8_t *a, const uint8_t *b, uint8_t *o)
{
    binary_one((const tq_sub_params *)p, 0, a, b, o);
}

static void sqdiff_one(const void *p, const uint8_t *a, const uint8_t *b, uint8_t *o)
{
    binary_one((const tq_sub_params *)p, 1, a, b, o);
}

static size_t sub_elem(int32_t type)
{
    return type == TQ_T_S8 ? 1u : (type == TQ_T_S16 ? 2u : 4u);
}

void tq_sub(const tq_sub_params *p, const void *in1, const void *in2, void *out)
{
    const size_t es = sub_elem(p->type);
    tq_broadcast_apply(&p->geom, p, sub_one, in1, es, in2, es, out, es);
}

void tq_squared_difference(const tq_sub_params *p, const void *in1, const void *in2,
                           void *out)
{
    const size_t es = sub_elem(p->type);
    tq_broadcast_apply(&p->geom, p, sqdiff_one, in1, es, in2, es, out, es);
}

void tq_unary_f32(const tq_unary_f32_params *p, const void *in, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    uint8_t *output = (uint8_t *)out;
    int32_t i;
    /* -x flips the sign bit and fabs clears it (NaN, -0.0 included) on IEEE targets */
    const uint32_t sign = 0x80000000u;
    for (i = 0; i < p->size; ++i) {
        uint32_t bits;
        memcpy(&bits, input + (size_t)i * 4u, 4);
        bits = p->op == TQ_UNARY_NEG ? bits ^ sign : bits & ~sign;
        memcpy(output + (size_t)i * 4u, &bits, 4);
    }
}

static void prelu_one(const void *params, const uint8_t *xp, const uint8_t *ap, uint8_t *o)
{
    const tq_prelu_params *p = (const tq_prelu_params *)params;
    if (p->type == TQ_T_F32) {
        float x, a, r;
        memcpy(&x, xp, 4);
        memcpy(&a, ap, 4);
        r = x >= 0.0f ? x : x * a;
        memcpy(o, &r, 4);
    } else {
        int8_t x, a, r;
        int32_t v;
        memcpy(&x, xp, 1);
        memcpy(&a, ap, 1);
        v = (int32_t)x - p->in_zp;
        v = v >= 0 ? tq_mul_by_quantized_mul(v, p->mult1, p->shift1)
                   : tq_mul_by_quantized_mul(v * ((int32_t)a - p->alpha_zp), p->mult2, p->shift2);
        r = (int8_t)clamp32(v + p->out_zp, -128, 127);
        memcpy(o, &r, 1);
    }
}

void tq_prelu(const tq_prelu_params *p, const void *in, const void *alpha, void *out)
{
    const size_t es = p->type == TQ_T_F32 ? 4u : 1u;
    tq_broadcast_apply(&p->geom, p, prelu_one, in, es, alpha, es, out, es);
}
