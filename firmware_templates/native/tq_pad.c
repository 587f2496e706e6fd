/* tinyq native runtime: PAD / PADV2 int8 up to 6-D: fill with the pad value
 * (output zero point, or PADV2's constant), then copy the input rows in. */
#include <string.h>

#include "tq_kernels.h"

void tq_pad_s8(const tq_pad_params *p, const int8_t *input, int8_t *output)
{
    const int32_t *od = p->out_dims;
    const int32_t *id = p->in_dims;
    const int32_t *bf = p->before;
    size_t out_size = 1;
    int32_t k, d0, d1, d2, d3, d4;
    for (k = 0; k < TQ_MAX_DIMS; ++k) {
        out_size *= (size_t)od[k];
    }
    memset(output, (int)(int8_t)p->value, out_size);
    for (d0 = 0; d0 < id[0]; ++d0)
    for (d1 = 0; d1 < id[1]; ++d1)
    for (d2 = 0; d2 < id[2]; ++d2)
    for (d3 = 0; d3 < id[3]; ++d3)
    for (d4 = 0; d4 < id[4]; ++d4) {
        size_t o = (size_t)(d0 + bf[0]);
        o = o * (size_t)od[1] + (size_t)(d1 + bf[1]);
        o = o * (size_t)od[2] + (size_t)(d2 + bf[2]);
        o = o * (size_t)od[3] + (size_t)(d3 + bf[3]);
        o = o * (size_t)od[4] + (size_t)(d4 + bf[4]);
        o = o * (size_t)od[5] + (size_t)bf[5];
        memcpy(output + o, input, (size_t)id[5]);
        input += id[5];
    }
}
