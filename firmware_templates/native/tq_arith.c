/* tinyq native runtime: SUB, SQUARED_DIFFERENCE, float NEG/ABS (tq_arith.h). Elements
 * are read and written with memcpy. */
#include <string.h>

#include "tq_arith.h"

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* TFLM's quantized SubElementwise for one pair of values (int8 or int16) */
static int32_t sub_quantized(const tq_sub_params *p, int32_t a, int32_t b)
{
    /* |x - zp| < 2^16 and left_shift <= 20 for int8 (15 for int16): no overflow */
    const int32_t sa = (a - p->in1_zp) * ((int32_t)1 << p->left_shift);
    const int32_t sb = (b - p->in2_zp) * ((int32_t)1 << p->left_shift);
    const int32_t ra = tq_mul_by_quantized_mul(sa, p->in1_mult, p->in1_shift);
    const int32_t rb = tq_mul_by_quantized_mul(sb, p->in2_mult, p->in2_shift);
    /* both are below 2^30 in magnitude (the multipliers are below one half) */
    const int32_t out = tq_mul_by_quantized_mul(ra - rb, p->out_mult, p->out_shift) + p->out_zp;
    return clamp32(out, p->act_min, p->act_max);
}

/* TFLM's quantized SquaredDifference for one pair (int8: left_shift 7, int16: 0) */
static int32_t sqdiff_quantized(const tq_sub_params *p, int32_t a, int32_t b)
{
    const int32_t sa = (a - p->in1_zp) * ((int32_t)1 << p->left_shift);
    const int32_t sb = (b - p->in2_zp) * ((int32_t)1 << p->left_shift);
    const int32_t ra = tq_mul_by_quantized_mul(sa, p->in1_mult, p->in1_shift);
    const int32_t rb = tq_mul_by_quantized_mul(sb, p->in2_mult, p->in2_shift);
    const int32_t d = ra - rb;             /* |d| <= 2^15: the square fits int32 */
    const int32_t out = tq_mul_by_quantized_mul(d * d, p->out_mult, p->out_shift) + p->out_zp;
    return clamp32(out, p->act_min, p->act_max);
}

typedef int32_t (*tq_quantized_fn)(const tq_sub_params *p, int32_t a, int32_t b);

static void binary_one(const tq_sub_params *p, int square, const uint8_t *a, const uint8_t *b,
                       uint8_t *o)
{
    const tq_quantized_fn q = square ? sqdiff_quantized : sub_quantized;
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
    case TQ_T_S8: {
        int8_t x, y, r;
        memcpy(&x, a, 1);
        memcpy(&y, b, 1);
        r = (int8_t)q(p, x, y);
        memcpy(o, &r, 1);
        break;
    }
    case TQ_T_S16: {
        int16_t x, y, r;
        memcpy(&x, a, 2);
        memcpy(&y, b, 2);
        r = (int16_t)q(p, x, y);
        memcpy(o, &r, 2);
        break;
    }
    default: {                                          /* int32: wraps like hardware */
        int32_t x, y, r;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        const uint32_t d = (uint32_t)x - (uint32_t)y;
        r = square ? (int32_t)(d * d) : clamp32((int32_t)d, p->act_min, p->act_max);
        memcpy(o, &r, 4);
        break;
    }
    }
}

static void binary(const tq_sub_params *p, int square, const void *in1, const void *in2,
                   void *out)
{
    const uint8_t *a = (const uint8_t *)in1;
    const uint8_t *b = (const uint8_t *)in2;
    uint8_t *o = (uint8_t *)out;
    const size_t es = p->type == TQ_T_S8 ? 1u : (p->type == TQ_T_S16 ? 2u : 4u);
    const int32_t *const strides[2] = {p->stride1, p->stride2};
    int32_t pos[TQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t index[2] = {0, 0};
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t i1 = p->broadcast ? index[0] : i;
        const int32_t i2 = p->broadcast ? index[1] : i;
        binary_one(p, square, a + (size_t)i1 * es, b + (size_t)i2 * es, o + (size_t)i * es);
        if (p->broadcast) {
            tq_broadcast_step(p->dims, pos, 2, strides, index);
        }
    }
}

void tq_sub(const tq_sub_params *p, const void *in1, const void *in2, void *out)
{
    binary(p, 0, in1, in2, out);
}

void tq_squared_difference(const tq_sub_params *p, const void *in1, const void *in2,
                           void *out)
{
    binary(p, 1, in1, in2, out);
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

static void prelu_one(const tq_prelu_params *p, const uint8_t *xp, const uint8_t *ap, uint8_t *o)
{
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
    const uint8_t *x = (const uint8_t *)in;
    const uint8_t *a = (const uint8_t *)alpha;
    uint8_t *o = (uint8_t *)out;
    const size_t es = p->type == TQ_T_F32 ? 4u : 1u;
    const int32_t *const strides[2] = {p->stride1, p->stride2};
    int32_t pos[TQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int32_t index[2] = {0, 0};
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t i1 = p->broadcast ? index[0] : i;
        const int32_t i2 = p->broadcast ? index[1] : i;
        prelu_one(p, x + (size_t)i1 * es, a + (size_t)i2 * es, o + (size_t)i * es);
        if (p->broadcast) {
            tq_broadcast_step(p->dims, pos, 2, strides, index);
        }
    }
}
