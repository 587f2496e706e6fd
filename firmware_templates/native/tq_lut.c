/* tinyq native runtime: int8 -> int8 table lookup, used for LOGISTIC, TANH,
 * HARD_SWISH and LEAKY_RELU. Each table is TFLM's integer reference computation
 * run on all 256 inputs at generation time (tinyq/native/fixedpoint.py). */
#include "tq_nonlinear.h"

void tq_lut_s8(const tq_lut_params *p, const int8_t *input, int8_t *output)
{
    const int8_t *table = p->table + 128;
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = table[input[i]];
    }
}
