/* tinyq native runtime: CONV_2D int8 (per-channel requantization, TFLM reference semantics).
 *
 * The input zero point is folded into the bias at generation time, so the inner
 * loops multiply raw int8 values; a filter tap outside the image contributes
 * in_zp * w, which is what TFLM's "skip the tap" means after the fold. Windows
 * fully inside the image (the common case) take a fast path that walks
 * contiguous rows of kw * in_c bytes and computes two output channels per pass. */
#include "tq_kernels.h"

/* acc0 += sum(x[i] * w0[i]), acc1 += sum(x[i] * w1[i]) for i < n */
TQ_INLINE void dot2(const int8_t *TQ_RESTRICT x, const int8_t *TQ_RESTRICT w0,
                    const int8_t *TQ_RESTRICT w1, int32_t n, int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = *acc0, a1 = *acc1;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        a0 += x0 * w0[i] + x1 * w0[i + 1] + x2 * w0[i + 2] + x3 * w0[i + 3];
        a1 += x0 * w1[i] + x1 * w1[i + 1] + x2 * w1[i + 2] + x3 * w1[i + 3];
    }
    for (; i < n; ++i) {
        const int32_t xv = x[i];
        a0 += xv * w0[i];
        a1 += xv * w1[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}

TQ_INLINE int32_t dot1(const int8_t *TQ_RESTRICT x, const int8_t *TQ_RESTRICT w, int32_t n)
{
    int32_t a = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += x[i] * w[i] + x[i + 1] * w[i + 1] + x[i + 2] * w[i + 2] + x[i + 3] * w[i + 3];
    }
    for (; i < n; ++i) {
        a += x[i] * w[i];
    }
    return a;
}

TQ_INLINE int32_t wsum(const int8_t *w, int32_t n)
{
    int32_t s = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        s += w[i];
    }
    return s;
}

TQ_INLINE int8_t requant(const tq_conv_params *p, int32_t acc, int32_t oc)
{
    int32_t v = tq_mul_by_quantized_mul(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
    return (int8_t)tq_clamp(v, p->act_min, p->act_max);
}

/* One output pixel whose window touches the border (or uses dilation). */
static void conv_pixel_generic(const tq_conv_params *p, const int8_t *in_b,
                               const int8_t *weights, int32_t iy0, int32_t ix0, int8_t *out)
{
    const int32_t ic = p->in_c;
    int32_t oc;
    for (oc = 0; oc < p->out_c; ++oc) {
        const int8_t *w = weights + (size_t)oc * (size_t)(p->k_h * p->k_w * ic);
        int32_t acc = p->bias[oc];
        int32_t ky, kx;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                const int8_t *wt = w + (size_t)(ky * p->k_w + kx) * (size_t)ic;
                if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                    acc += dot1(in_b + ((size_t)iy * (size_t)p->in_w + (size_t)ix) * (size_t)ic,
                                wt, ic);
                } else if (p->in_zp != 0) {
                    acc += p->in_zp * wsum(wt, ic);
                }
            }
        }
        out[oc] = requant(p, acc, oc);
    }
}

/* One output pixel whose window is inside the image, dilation 1 in x:
 * each filter row is one contiguous run of k_w * in_c bytes. */
static void conv_pixel_inside(const tq_conv_params *p, const int8_t *in_b,
                              const int8_t *weights, int32_t iy0, int32_t ix0, int8_t *out)
{
    const int32_t row = p->k_w * p->in_c;
    const int32_t wsize = p->k_h * row;
    const size_t in_row_step = (size_t)p->dil_h * (size_t)p->in_w * (size_t)p->in_c;
    const int8_t *base = in_b + ((size_t)iy0 * (size_t)p->in_w + (size_t)ix0) * (size_t)p->in_c;
    int32_t oc = 0;
    for (; oc + 2 <= p->out_c; oc += 2) {
        const int8_t *w0 = weights + (size_t)oc * (size_t)wsize;
        const int8_t *w1 = w0 + wsize;
        const int8_t *x = base;
        int32_t acc0 = p->bias[oc], acc1 = p->bias[oc + 1];
        int32_t ky;
        for (ky = 0; ky < p->k_h; ++ky) {
            dot2(x, w0, w1, row, &acc0, &acc1);
            x += in_row_step;
            w0 += row;
            w1 += row;
        }
        out[oc] = requant(p, acc0, oc);
        out[oc + 1] = requant(p, acc1, oc + 1);
    }
    if (oc < p->out_c) {
        const int8_t *w0 = weights + (size_t)oc * (size_t)wsize;
        const int8_t *x = base;
        int32_t acc0 = p->bias[oc];
        int32_t ky;
        for (ky = 0; ky < p->k_h; ++ky) {
            acc0 += dot1(x, w0, row);
            x += in_row_step;
            w0 += row;
        }
        out[oc] = requant(p, acc0, oc);
    }
}

void tq_conv2d_s8(const tq_conv_params *p, const int8_t *input, const int8_t *weights,
                  int8_t *output)
{
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c;
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
                if (y_inside && p->dil_w == 1 && ix0 >= 0 && ix0 + span_w < p->in_w) {
                    conv_pixel_inside(p, in_b, weights, iy0, ix0, output);
                } else {
                    conv_pixel_generic(p, in_b, weights, iy0, ix0, output);
                }
                output += p->out_c;
            }
        }
    }
}
