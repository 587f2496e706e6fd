/* tinyq native runtime: DEPTHWISE_CONV_2D int8 (any depth multiplier, stride,
 * dilation, padding; TFLM reference semantics).
 *
 * As in tq_conv.c the input zero point is folded into the bias; a tap outside
 * the image contributes in_zp * w. Output channel oc = ic * depth_mult + m reads
 * input channel ic; the weights are 1 x k_h x k_w x out_c. Channels are
 * processed in blocks with local accumulators so every load is contiguous. */
#include "tq_kernels.h"

#define TQ_DW_BLOCK 16

TQ_INLINE int8_t requant(const tq_dwconv_params *p, int32_t acc, int32_t oc)
{
    int32_t v = tq_mul_by_quantized_mul(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
    return (int8_t)tq_clamp(v, p->act_min, p->act_max);
}

void tq_depthwise_conv2d_s8(const tq_dwconv_params *p, const int8_t *input,
                            const int8_t *weights, int8_t *output)
{
    const int32_t ic = p->in_c;
    const int32_t m = p->depth_mult;
    const int32_t oc_total = ic * m;
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)ic;
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t c0;
                for (c0 = 0; c0 < oc_total; c0 += TQ_DW_BLOCK) {
                    const int32_t nc = oc_total - c0 < TQ_DW_BLOCK ? oc_total - c0 : TQ_DW_BLOCK;
                    int32_t acc[TQ_DW_BLOCK];
                    int32_t c, ky, kx;
                    for (c = 0; c < nc; ++c) {
                        acc[c] = p->bias[c0 + c];
                    }
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        const int y_in = iy >= 0 && iy < p->in_h;
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            const int8_t *TQ_RESTRICT w =
                                weights + (size_t)(ky * p->k_w + kx) * (size_t)oc_total + c0;
                            if (y_in && ix >= 0 && ix < p->in_w) {
                                const int8_t *TQ_RESTRICT x =
                                    in_b + ((size_t)iy * (size_t)p->in_w + (size_t)ix) *
                                               (size_t)ic;
                                if (m == 1) {
                                    x += c0;
                                    for (c = 0; c < nc; ++c) {
                                        acc[c] += x[c] * w[c];
                                    }
                                } else {
                                    for (c = 0; c < nc; ++c) {
                                        acc[c] += x[(c0 + c) / m] * w[c];
                                    }
                                }
                            } else if (p->in_zp != 0) {
                                for (c = 0; c < nc; ++c) {
                                    acc[c] += p->in_zp * w[c];
                                }
                            }
                        }
                    }
                    for (c = 0; c < nc; ++c) {
                        output[c0 + c] = requant(p, acc[c], c0 + c);
                    }
                }
                output += oc_total;
            }
        }
    }
}
