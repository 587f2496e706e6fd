/* tinyq native runtime: nonlinear and reduction kernels (SOFTMAX, MEAN, and the
 * int8 -> int8 table kernel used for LOGISTIC, TANH, HARD_SWISH and LEAKY_RELU),
 * bit-exact with TFLM's reference kernels. Parameters are computed by tinyq
 * (tinyq/native/lower.py, tinyq/native/fixedpoint.py) exactly as TFLM's Prepare does. */
#ifndef TQ_NONLINEAR_H
#define TQ_NONLINEAR_H

#include <stdint.h>

#include "tq_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An int8 -> int8 function of one value: out[i] = table[in[i] + 128]. The table is
 * TFLM's integer computation run on all 256 inputs at generation time. Reads in[i]
 * before writing out[i], so it may run in place. */
typedef struct {
    int32_t size;
    const int8_t *table;
} tq_lut_params;

/* SOFTMAX over the last dimension (PreprocessSoftmaxScaling with 5 integer bits). */
typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} tq_softmax_params;

/* MEAN over any set of axes. The input's dims are merged into runs of kept and
 * reduced dims (row-major); kept dims enumerate outputs in order, reduced dims
 * are summed. mult/shift already include TFLM's 1/count folding. */
#define TQ_REDUCE_MAX_DIMS 6
typedef struct {
    int32_t n_kept, n_red;
    int32_t kept_dims[TQ_REDUCE_MAX_DIMS], kept_strides[TQ_REDUCE_MAX_DIMS];
    int32_t red_dims[TQ_REDUCE_MAX_DIMS], red_strides[TQ_REDUCE_MAX_DIMS];
    int32_t bias;   /* -input_zp * count, wrapped to int32 */
    int32_t mult, shift, out_zp;
} tq_mean_params;

void tq_lut_s8(const tq_lut_params *p, const int8_t *input, int8_t *output);
void tq_softmax_s8(const tq_softmax_params *p, const int8_t *input, int8_t *output);
void tq_softmax_s8_s16(const tq_softmax_params *p, const int8_t *input, int16_t *output);
void tq_mean_s8(const tq_mean_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TQ_NONLINEAR_H */
