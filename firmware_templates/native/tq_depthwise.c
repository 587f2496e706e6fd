/* tinyq native runtime: DEPTHWISE_CONV_2D int8 (any depth multiplier, stride,
 * dilation, padding; TFLM reference semantics).
 *
 * As in tq_conv.c the input zero point is folded into the bias; a tap outside
 * the image contributes in_zp * w. The weights are stored channel-major by the
 * code generator (out_c x k_h x k_w: each channel's taps contiguous).
 *
 * Depth multiplier 1: every output pixel runs one channel loop over a window
 * given by a pointer and x/y steps: the input itself when the window is inside
 * the image, else a small local copy of the window (blocks of channels) whose
 * outside taps hold the input zero point. Other multipliers: a plain loop. */
#include <string.h>

#include "tq_kernels.h"

/* bytes of the local window copy used for border pixels */
#define TQ_DW_PATCH_MAX 288

TQ_INLINE int8_t requant(const tq_dwconv_params *p, int32_t acc, int32_t oc)
{
    return (int8_t)tq_requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min,
                              p->act_max);
}

/* Channels c0 .. c0+nc-1 of one output pixel. x: tap (0,0) of channel c0; xs/ys:
 * steps to the next tap in x/y; wt: channel c0's taps. */
static TQ_NOINLINE void dw_channels(const tq_dwconv_params *p, const int8_t *x, size_t xs,
                                    size_t ys, const int8_t *wt, int32_t c0, int32_t nc,
                                    int8_t *out)
{
    int32_t c, ky, kx;
    if (p->k_h == 3 && p->k_w == 3) {
        const int8_t *r0 = x;
        const int8_t *r1 = x + ys;
        const int8_t *r2 = x + 2 * ys;
        for (c = c0; c < c0 + nc; ++c) {
            int32_t acc = p->bias[c];
            acc += r0[0] * wt[0];
            acc += r0[xs] * wt[1];
            acc += r0[2 * xs] * wt[2];
            acc += r1[0] * wt[3];
            acc += r1[xs] * wt[4];
            acc += r1[2 * xs] * wt[5];
            acc += r2[0] * wt[6];
            acc += r2[xs] * wt[7];
            acc += r2[2 * xs] * wt[8];
            out[c] = requant(p, acc, c);
            ++r0;
            ++r1;
            ++r2;
            wt += 9;
        }
        return;
    }
    for (c = c0; c < c0 + nc; ++c, ++x) {
        const int8_t *row = x;
        int32_t acc = p->bias[c];
        for (ky = 0; ky < p->k_h; ++ky, row += ys) {
            const int8_t *t = row;
            for (kx = 0; kx < p->k_w; ++kx, t += xs) {
                acc += *t * *wt++;
            }
        }
        out[c] = requant(p, acc, c);
    }
}

/* Any output pixel, any depth multiplier: taps outside the image add in_zp * w. */
static void dw_generic(const tq_dwconv_params *p, const int8_t *in_b, const int8_t *wt,
                       int32_t iy0, int32_t ix0, int8_t *out)
{
    const int32_t ic = p->in_c;
    const int32_t m = p->depth_mult;
    int32_t c, j, ky, kx;
    for (c = 0; c < ic; ++c) {
        for (j = 0; j < m; ++j) {
            const int32_t oc = c * m + j;
            int32_t acc = p->bias[oc];
            int32_t zsum = 0;
            for (ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = iy0 + ky * p->dil_h;
                const int y_in = iy >= 0 && iy < p->in_h;
                for (kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * p->dil_w;
                    const int32_t w = *wt++;
                    if (y_in && ix >= 0 && ix < p->in_w) {
                        acc += in_b[((size_t)iy * (size_t)p->in_w + (size_t)ix) * (size_t)ic +
                                    (size_t)c] * w;
                    } else {
                        zsum += w;
                    }
                }
            }
            out[oc] = requant(p, acc + p->in_zp * zsum, oc);
        }
    }
}

/* Border pixel, depth multiplier 1: copy the window channel block by block. */
static void dw_border(const tq_dwconv_params *p, const int8_t *in_b, const int8_t *weights,
                      int32_t iy0, int32_t ix0, int8_t *out)
{
    const int32_t ch = p->in_c;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t block = TQ_DW_PATCH_MAX / taps;
    int8_t patch[TQ_DW_PATCH_MAX];
    int32_t c0, ky, kx;
    for (c0 = 0; c0 < ch; c0 += block) {
        const int32_t nc = ch - c0 < block ? ch - c0 : block;
        int8_t *dst = patch;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx, dst += nc) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                    memcpy(dst, in_b + ((size_t)iy * (size_t)p->in_w + (size_t)ix) * (size_t)ch +
                                    (size_t)c0, (size_t)nc);
                } else {
                    memset(dst, (int)(int8_t)p->in_zp, (size_t)nc);
                }
            }
        }
        dw_channels(p, patch, (size_t)nc, (size_t)nc * (size_t)p->k_w,
                    weights + (size_t)c0 * (size_t)taps, c0, nc, out);
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
    const size_t xs = (size_t)p->dil_w * (size_t)ic;
    const size_t ys = (size_t)p->dil_h * (size_t)p->in_w * (size_t)ic;
    const int fast = p->depth_mult == 1 && p->k_h * p->k_w <= TQ_DW_PATCH_MAX;
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int y_inside = iy0 >= 0 && iy0 + span_h < p->in_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                if (!fast) {
                    dw_generic(p, in_b, weights, iy0, ix0, output);
                } else if (y_inside && ix0 >= 0 && ix0 + span_w < p->in_w) {
                    dw_channels(p, in_b + ((size_t)iy0 * (size_t)p->in_w + (size_t)ix0) *
                                              (size_t)ic,
                                xs, ys, weights, 0, ic, output);
                } else {
                    dw_border(p, in_b, weights, iy0, ix0, output);
                }
                output += oc_total;
            }
        }
    }
}
