/* tinyq native runtime: int8 -> int8 table lookup, used for LOGISTIC, TANH,
 * HARD_SWISH and LEAKY_RELU. Each table is TFLM's integer reference computation
 * run on all 256 inputs at generation time (tinyq/native/fixedpoint.py). */
#include "tq_nonlinear.h"

void tq_lut_s8(const tq_lut_params *p, const int8_t *input, int8_t *output)
{
    const int8_t *table = p->table + 128;
    int32_t n = p->size;
    /* four at a time; each group reads its inputs before writing (in place is safe) */
    for (; n >= 4; n -= 4) {
        const int8_t a = input[0], b = input[1], c = input[2], d = input[3];
        output[0] = table[a];
        output[1] = table[b];
        output[2] = table[c];
        output[3] = table[d];
        input += 4;
        output += 4;
    }
    for (; n > 0; --n) {
        *output++ = table[*input++];
    }
}
