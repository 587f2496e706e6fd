/* tinyq native runtime: SUB for float32, int8, int16 and int32, with broadcasting,
 * bit-exact with TFLM's reference kernels (sub.h: both inputs rescaled to a common
 * scale with 20 bits of headroom for int8, 15 for int16, the difference requantized).
 * Parameters are computed by tinyq (tinyq/native/ops_arith.py). */
#ifndef TQ_ARITH_H
#define TQ_ARITH_H

#include <stdint.h>

#include "tq_compare.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t size, broadcast;
    int32_t dims[TQ_MAX_DIMS], stride1[TQ_MAX_DIMS], stride2[TQ_MAX_DIMS];
    int32_t type;                          /* TQ_T_F32, TQ_T_S8, TQ_T_S16 or TQ_T_S32 */
    int32_t in1_zp, in2_zp, out_zp, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;              /* integer outputs */
    float f_min, f_max;                    /* float32 output (the fused activation) */
} tq_sub_params;

void tq_sub(const tq_sub_params *p, const void *in1, const void *in2, void *out);

#ifdef __cplusplus
}
#endif

#endif /* TQ_ARITH_H */
