/* tinyq native runtime: SOFTMAX int8 -> int8 / int16, bit-exact with TFLM's
 * reference_ops::Softmax (gemmlowp fixed point: exp on Q5.26, sum in Q12.19,
 * reciprocal by Newton-Raphson). */
#include "tq_nonlinear.h"

#include "tq_fixedpoint.h"

/* The softmax input is Q5.26 after rescaling (kScaledDiffIntegerBits = 5); the
 * sum of exps is accumulated in Q12.19 (kAccumulationIntegerBits = 12). */
#define TQ_SOFTMAX_DIFF_BITS 5
#define TQ_SOFTMAX_ACCUM_BITS 12

/* exp(beta * scale * diff) as Q0.31, for diff = x - max >= diff_min (so diff <= 0) */
static int32_t softmax_exp(const tq_softmax_params *p, int32_t diff)
{
    /* MultiplyByQuantizedMultiplierGreaterThanOne (double rounding) */
    const int32_t rescaled = tq_fp_srdhm((int32_t)((uint32_t)diff << p->input_left_shift),
                                         p->input_multiplier);
    return tq_fp_exp_on_negative_values(rescaled, TQ_SOFTMAX_DIFF_BITS);
}

/* One row: its max, the reciprocal of its sum of exps (Q0) and the output shift. */
static int32_t softmax_row(const tq_softmax_params *p, const int8_t *row, int32_t out_bits,
                           int32_t *scale, int32_t *exponent)
{
    int32_t max = -128;
    /* Q12.19. Each term is at most 1.0 (2^19) and the maximum contributes exactly 1.0,
     * so 1.0 <= sum and the sum is exact below 8192 terms: TFLM's int32 sum overflows
     * beyond 4096 maximal terms (undefined in C; on every target it wraps, and TFLM
     * then reads it as uint32, which is this sum). From 8192 terms on TFLM's sum can
     * wrap to 0 and reach clz(0); this one saturates (docs/numerics.md). */
    uint32_t sum = 0;
    int32_t c, headroom;
    for (c = 0; c < p->depth; ++c) {
        if (row[c] > max) {
            max = row[c];
        }
    }
    for (c = 0; c < p->depth; ++c) {
        const int32_t diff = (int32_t)row[c] - max;
        if (diff >= p->diff_min) {
            const uint32_t e = (uint32_t)tq_fp_rdbpot(softmax_exp(p, diff),
                                                      TQ_SOFTMAX_ACCUM_BITS);
            sum = (sum > 0xFFFFFFFFu - e) ? 0xFFFFFFFFu : sum + e;
        }
    }
    /* GetReciprocal: normalise the sum to [1, 2), take 1/x of the fraction. The sum is
     * at least 2^19, so headroom is in [0, 12] and the exponents below are in
     * [23, 35] (int8) and [15, 27] (int16): never negative. */
    headroom = tq_fp_clz(sum);
    *scale = tq_fp_one_over_one_plus_x((int32_t)((sum << headroom) - 0x80000000u));
    *exponent = (TQ_SOFTMAX_ACCUM_BITS - headroom) + 31 - out_bits;
    /* TFLM aborts (TFLITE_CHECK) beyond 31: only for rows of more than 512
     * near-maximal int8 outputs; keep the shift defined there. */
    if (*exponent > 31) {
        *exponent = 31;
    }
    return max;
}

void tq_softmax_s8(const tq_softmax_params *p, const int8_t *input, int8_t *output)
{
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *row = input + (size_t)i * (size_t)p->depth;
        int8_t *out = output + (size_t)i * (size_t)p->depth;
        int32_t scale, exponent;
        const int32_t max = softmax_row(p, row, 8, &scale, &exponent);
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)row[c] - max;
            int32_t v = -128;
            if (diff >= p->diff_min) {
                v = tq_fp_rdbpot(tq_fp_srdhm(scale, softmax_exp(p, diff)), exponent) - 128;
                v = tq_clamp(v, -128, 127);
            }
            out[c] = (int8_t)v;
        }
    }
}

void tq_softmax_s8_s16(const tq_softmax_params *p, const int8_t *input, int16_t *output)
{
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *row = input + (size_t)i * (size_t)p->depth;
        int16_t *out = output + (size_t)i * (size_t)p->depth;
        int32_t scale, exponent;
        const int32_t max = softmax_row(p, row, 16, &scale, &exponent);
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)row[c] - max;
            int32_t v = -32768;
            if (diff >= p->diff_min) {
                v = tq_fp_rdbpot(tq_fp_srdhm(scale, softmax_exp(p, diff)), exponent) - 32768;
                v = tq_clamp(v, -32768, 32767);
            }
            {
                const int16_t v16 = (int16_t)v;   /* int16 into the uint8_t arena: memcpy */
                memcpy(out + c, &v16, sizeof v16);
            }
        }
    }
}
