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

/* One output pixel whose window is inside the image, depth multiplier 1:
 * channel-outer, taps inner; 3x3 fully unrolled. Out of line so its loop
 * gets the registers to itself. */
static TQ_NOINLINE void dw_inside_m1(const tq_dwconv_params *p, const int8_t *base,
                                     const int8_t *weights, int8_t *out)
{
    const int32_t ch = p->in_c;
    const size_t xs = (size_t)p->dil_w * (size_t)ch;                      /* next tap in x */
    const size_t ys = (size_t)p->dil_h * (size_t)p->in_w * (size_t)ch;   /* next tap in y */
    const size_t ws = (size_t)p->k_w * (size_t)ch;                       /* next filter row */
    int32_t c, ky, kx;
    if (p->k_h == 3 && p->k_w == 3) {
        const int8_t *x0 = base, *x1 = base + ys, *x2 = base + 2 * ys;
        const int8_t *w0 = weights, *w1 = weights + ws, *w2 = weights + 2 * ws;
        for (c = 0; c < ch; ++c) {
            int32_t acc = p->bias[c];
            acc += x0[c] * w0[c];
            acc += x0[c + xs] * w0[c + ch];
            acc += x0[c + 2 * xs] * w0[c + 2 * ch];
            acc += x1[c] * w1[c];
            acc += x1[c + xs] * w1[c + ch];
            acc += x1[c + 2 * xs] * w1[c + 2 * ch];
            acc += x2[c] * w2[c];
            acc += x2[c + xs] * w2[c + ch];
            acc += x2[c + 2 * xs] * w2[c + 2 * ch];
            out[c] = requant(p, acc, c);
        }
        return;
    }
    for (c = 0; c < ch; ++c) {
        const int8_t *TQ_RESTRICT x = base + c;
        const int8_t *TQ_RESTRICT w = weights + c;
        int32_t acc = p->bias[c];
        for (ky = 0; ky < p->k_h; ++ky) {
            for (kx = 0; kx < p->k_w; ++kx) {
                acc += x[(size_t)kx * xs] * w[(size_t)kx * (size_t)ch];
            }
            x += ys;
            w += ws;
        }
        out[c] = requant(p, acc, c);
    }
}

/* Any output pixel, any depth multiplier: channel blocks with local accumulators. */
static void dw_generic(const tq_dwconv_params *p, const int8_t *in_b, const int8_t *weights,
                       int32_t iy0, int32_t ix0, int8_t *output)
{
    const int32_t ic = p->in_c;
    const int32_t m = p->depth_mult;
    const int32_t oc_total = ic * m;
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
                        in_b + ((size_t)iy * (size_t)p->in_w + (size_t)ix) * (size_t)ic;
                    if (m == 1) {
                        x += c0;
                        for (c = 0; c < nc; ++c) {
                            acc[c] += x[c] * w[c];
                        }
                    } else {
                        /* output channel c0 + c reads input channel (c0 + c) / m */
                        int32_t in_c = c0 / m, j = c0 % m;
                        for (c = 0; c < nc; ++c) {
                            acc[c] += x[in_c] * w[c];
                            if (++j == m) {
                                j = 0;
                                ++in_c;
                            }
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
}

void tq_depthwise_conv2d_s8(const tq_dwconv_params *p, const int8_t *input,
                            const int8_t *weights, int8_t *output)
{
    const int32_t ic = p->in_c;
    const int32_t oc_total = ic * p->depth_mult;
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)ic;
    const int32_t span_h = (p->k_h - 1) * p->dil_h;
    const int32_t span_w = (p->k_w - 1) * p->dil_w;
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int y_inside = iy0 >= 0 && iy0 + span_h < p->in_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                if (p->depth_mult == 1 && y_inside && ix0 >= 0 && ix0 + span_w < p->in_w) {
                    dw_inside_m1(p, in_b + ((size_t)iy0 * (size_t)p->in_w + (size_t)ix0) *
                                               (size_t)ic,
                                 weights, output);
                } else {
                    dw_generic(p, in_b, weights, iy0, ix0, output);
                }
                output += oc_total;
            }
        }
    }
}
