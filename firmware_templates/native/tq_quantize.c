/* tinyq native runtime: QUANTIZE (float32 -> int8; int8/uint8 requantize) and
 * DEQUANTIZE (int8/uint8 -> float32), TFLM reference semantics.
 *
 * QUANTIZE divides by the float32 scale and rounds half away from zero (roundf),
 * as TFLM's AffineQuantize does. DEQUANTIZE multiplies in float32: TFLM
 * multiplies in double and narrows, which gives the same float32 because the
 * double product of a float32 and a 9-bit integer is exact. */
#include <math.h>

#include "tq_kernels.h"

/* Non-finite inputs (TFLM converts them to int32 with undefined behaviour; what it
 * gives differs between x86 and Arm) have a defined result here: +Inf and values
 * beyond the int8 range saturate to 127 / -128, -Inf to -128, NaN gives the zero
 * point (the quantized 0.0). docs/numerics.md. */
void tq_quantize_f32_s8(const tq_quantize_params *p, const float *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        float x, r;
        int32_t q;
        memcpy(&x, input + i, sizeof x);   /* the arena is uint8_t: no aliasing assumption */
        r = roundf(x / p->scale);
        /* clamp before converting: out-of-range floats are undefined in C */
        if (r > 1000.0f) {
            r = 1000.0f;
        } else if (r < -1000.0f) {
            r = -1000.0f;
        } else if (!(r == r)) {
            r = 0.0f;                      /* NaN */
        }
        q = (int32_t)r + p->zero_point;
        output[i] = (int8_t)tq_clamp(q, -128, 127);
    }
}

#define TQ_REQUANTIZE(NAME, TIN, TOUT, LO, HI)                                            \
    void NAME(const tq_requantize_params *p, const TIN *input, TOUT *output)              \
    {                                                                                     \
        int32_t i;                                                                        \
        for (i = 0; i < p->size; ++i) {                                                   \
            output[i] = (TOUT)tq_requant((int32_t)input[i] - p->in_zp, p->mult, p->shift, \
                                         p->out_zp, LO, HI);                              \
        }                                                                                 \
    }

TQ_REQUANTIZE(tq_requantize_s8_s8, int8_t, int8_t, -128, 127)
TQ_REQUANTIZE(tq_requantize_u8_s8, uint8_t, int8_t, -128, 127)
TQ_REQUANTIZE(tq_requantize_s8_u8, int8_t, uint8_t, 0, 255)

void tq_dequantize_s8_f32(const tq_dequantize_params *p, const int8_t *input, float *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const float v = p->scale * (float)((int32_t)input[i] - p->zero_point);
        memcpy(output + i, &v, sizeof v);
    }
}

void tq_dequantize_u8_f32(const tq_dequantize_params *p, const uint8_t *input, float *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const float v = p->scale * (float)((int32_t)input[i] - p->zero_point);
        memcpy(output + i, &v, sizeof v);
    }
}
