/* tinyq native runtime: SUB and SQUARED_DIFFERENCE (float32, int8, int16, int32, with
 * broadcasting), NEG and ABS on float32, bit-exact with TFLM's reference kernels
 * (quantized SUB and SQUARED_DIFFERENCE rescale both inputs to a common scale with
 * some bits of headroom, then requantize). int8 ABS runs as a table (tq_lut_s8).
 * Parameters are computed by tinyq (tinyq/native/ops_arith.py). */
#ifndef TQ_ARITH_H
#define TQ_ARITH_H

#include <stdint.h>

#include "tq_compare.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    tq_broadcast_geom geom;
    int32_t type;                          /* TQ_T_F32, TQ_T_S8, TQ_T_S16 or TQ_T_S32 */
    int32_t in1_zp, in2_zp, out_zp, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;              /* integer outputs */
    float f_min, f_max;                    /* float32 output (the fused activation) */
} tq_sub_params;

void tq_sub(const tq_sub_params *p, const void *in1, const void *in2, void *out);

/* SQUARED_DIFFERENCE: tq_sub_params with left_shift 7 (int8) or 0 (int16), the
 * output multiplier applied to the squared difference (it may exceed one), act_min/
 * act_max the type's range; float32 and int32 square the plain difference. */
void tq_squared_difference(const tq_sub_params *p, const void *in1, const void *in2,
                           void *out);

/* PRELU (float32, int8): x >= 0 ? x : x * alpha, alpha broadcast to the input (stride2).
 * int8: (x - zp) rescaled by mult1/shift1, or (x - zp) * (alpha - alpha_zp) by
 * mult2/shift2, plus the output zero point, clamped to int8. */
typedef struct {
    tq_broadcast_geom geom;
    int32_t type;
    int32_t in_zp, alpha_zp, out_zp, mult1, shift1, mult2, shift2;
} tq_prelu_params;

void tq_prelu(const tq_prelu_params *p, const void *in, const void *alpha, void *out);

#define TQ_UNARY_NEG 0
#define TQ_UNARY_ABS 1

/* float32 NEG (-x) and ABS (|x|, the sign bit cleared) */
typedef struct {
    int32_t size, op;
} tq_unary_f32_params;

void tq_unary_f32(const tq_unary_f32_params *p, const void *in, void *out);

#ifdef __cplusplus
}
#endif

#endif /* TQ_ARITH_H */
