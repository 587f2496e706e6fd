/* tinyq native runtime: MEAN int8 over any axes, bit-exact with TFLM's
 * reference_ops::QuantizedMeanOrSum (int32 sums, 1/count folded into the
 * multiplier, gemmlowp double rounding). */
#include "tq_nonlinear.h"

#include "tq_fixedpoint.h"

/* Sum of the reduced block starting at `base` (int32: exact below 2^24 elements). */
static int32_t mean_block_sum(const tq_mean_params *p, const int8_t *base)
{
    int32_t idx[TQ_REDUCE_MAX_DIMS] = {0};
    const int32_t last = p->n_red - 1;
    int32_t sum = 0, offset = 0, i, k, n, stride;
    if (last < 0) {
        return base[0];
    }
    n = p->red_dims[last];
    stride = p->red_strides[last];
    for (;;) {
        const int8_t *q = base + offset;
        if (stride == 1) {
            for (i = 0; i < n; ++i) {
                sum += q[i];
            }
        } else {
            for (i = 0; i < n; ++i) {
                sum += *q;
                q += stride;
            }
        }
        /* advance the outer reduced dims (odometer, last fastest) */
        for (k = last - 1; k >= 0; --k) {
            offset += p->red_strides[k];
            if (++idx[k] < p->red_dims[k]) {
                break;
            }
            offset -= p->red_strides[k] * p->red_dims[k];
            idx[k] = 0;
        }
        if (k < 0) {
            return sum;
        }
    }
}

void tq_mean_s8(const tq_mean_params *p, const int8_t *input, int8_t *output)
{
    int32_t idx[TQ_REDUCE_MAX_DIMS] = {0};
    int32_t offset = 0, k;
    for (;;) {
        const int32_t sum = tq_fp_add(mean_block_sum(p, input + offset), p->bias);
        *output++ = (int8_t)tq_requant(sum, p->mult, p->shift, p->out_zp, -128, 127);
        for (k = p->n_kept - 1; k >= 0; --k) {
            offset += p->kept_strides[k];
            if (++idx[k] < p->kept_dims[k]) {
                break;
            }
            offset -= p->kept_strides[k] * p->kept_dims[k];
            idx[k] = 0;
        }
        if (k < 0) {
            return;
        }
    }
}
