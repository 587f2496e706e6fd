/* tinyq native runtime: standalone RELU (requantizes, as TFLM does) and RELU6
 * (TFLM clamps in the input's quantization without requantizing). */
#include "tq_kernels.h"

void tq_relu_s8(const tq_relu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = (int8_t)tq_requant((int32_t)input[i] - p->in_zp, p->mult, p->shift,
                                       p->out_zp, p->act_min, p->act_max);
    }
}

void tq_clamp_s8(const tq_clamp_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = (int8_t)tq_clamp(input[i], p->lo, p->hi);
    }
}
