/* tinyq native runtime: QUANTIZE (float32 -> int8; int8/uint8 requantize) and
 * DEQUANTIZE (int8/uint8 -> float32), TFLM reference semantics.
 *
 * QUANTIZE divides by the float32 scale and rounds half away from zero (roundf),
 * as TFLM's AffineQuantize does. DEQUANTIZE multiplies in float32: TFLM
 * multiplies in double and narrows, which gives the same float32 because the
 * double product of a float32 and a 9-bit integer is exact. */
#include <math.h>

#include "tq_kernels.h"

void tq_quantize_f32_s8(const tq_quantize_params *p, const float *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        float r = roundf(input[i] / p->scale);
        int32_t q;
        /* clamp before converting: out-of-range floats are undefined in C */
        if (r > 1000.0f) {
            r = 1000.0f;
        } else if (r < -1000.0f) {
            r = -1000.0f;
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
            const int32_t v = tq_mul_by_quantized_mul((int32_t)input[i] - p->in_zp,       \
                                                      p->mult, p->shift) + p->out_zp;     \
            output[i] = (TOUT)tq_clamp(v, LO, HI);                                        \
        }                                                                                 \
    }

TQ_REQUANTIZE(tq_requantize_s8_s8, int8_t, int8_t, -128, 127)
TQ_REQUANTIZE(tq_requantize_u8_s8, uint8_t, int8_t, -128, 127)
TQ_REQUANTIZE(tq_requantize_s8_u8, int8_t, uint8_t, 0, 255)

void tq_dequantize_s8_f32(const tq_dequantize_params *p, const int8_t *input, float *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}

void tq_dequantize_u8_f32(const tq_dequantize_params *p, const uint8_t *input, float *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}
