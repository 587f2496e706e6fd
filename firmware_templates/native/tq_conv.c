/* tinyq native runtime: CONV_2D int8 (per-channel requantization, TFLM reference semantics).
 *
 * The input zero point is folded into the bias at generation time (bias' = bias -
 * in_zp * sum(w)), so the inner loops multiply raw int8 values; a filter tap
 * outside the image then contributes in_zp * w, which is exactly TFLM's "skip
 * the tap" after the fold.
 *
 * Output pixels whose window lies inside the image are computed two pixels x two
 * output channels at a time (four accumulators share every load); a window row
 * is one contiguous run of k_w * in_c bytes (k_w runs of in_c with dilation).
 * Border pixels walk only the taps inside the image and add in_zp * sum(w) for
 * the others. No scratch memory, no division, no unaligned word access. */
#include "tq_kernels.h"

TQ_INLINE int8_t requant(const tq_conv_params *p, int32_t acc, int32_t oc)
{
    return (int8_t)tq_requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min,
                              p->act_max);
}

/* *s0 += sum(w0[0..n)), *s1 += sum(w1[0..n)) */
TQ_INLINE void sum2(const int8_t *w0, const int8_t *w1, int32_t n, int32_t *s0, int32_t *s1)
{
    int32_t a = 0, b = 0, i;
    for (i = 0; i < n; ++i) {
        a += w0[i];
        b += w1[i];
    }
    *s0 += a;
    *s1 += b;
}

/* *a0 += x.w0, *a1 += x.w1 over n */
TQ_INLINE void dot2(const int8_t *TQ_RESTRICT x, const int8_t *TQ_RESTRICT w0,
                    const int8_t *TQ_RESTRICT w1, int32_t n, int32_t *a0, int32_t *a1)
{
    int32_t s0 = *a0, s1 = *a1;
    int32_t i = 0;
#ifdef TQ_SIMD
    for (; i + 4 <= n; i += 4) {
        const uint32_t xw = tq_load32(x + i);
        const uint32_t xe = tq_sxtb16(xw), xo = tq_sxtb16_ror8(xw);
        const uint32_t u = tq_load32(w0 + i), v = tq_load32(w1 + i);
        s0 = tq_smlad(xe, tq_sxtb16(u), s0);
        s0 = tq_smlad(xo, tq_sxtb16_ror8(u), s0);
        s1 = tq_smlad(xe, tq_sxtb16(v), s1);
        s1 = tq_smlad(xo, tq_sxtb16_ror8(v), s1);
    }
#endif
    for (; i + 2 <= n; i += 2) {
        const int32_t x0 = x[i], x1 = x[i + 1];
        s0 += x0 * w0[i] + x1 * w0[i + 1];
        s1 += x0 * w1[i] + x1 * w1[i + 1];
    }
    if (i < n) {
        s0 += x[i] * w0[i];
        s1 += x[i] * w1[i];
    }
    *a0 = s0;
    *a1 = s1;
}

/* One output pixel whose window crosses the border: channels oc0 and oc1
 * (oc1 may equal oc0 for an odd last channel). */
static void conv_border2(const tq_conv_params *p, const int8_t *in_b, const int8_t *w0,
                         const int8_t *w1, int32_t iy0, int32_t ix0, int32_t *acc0,
                         int32_t *acc1)
{
    const int32_t ic = p->in_c;
    const int32_t row = p->k_w * ic;
    int32_t a0 = *acc0, a1 = *acc1;
    int32_t zs0 = 0, zs1 = 0;   /* weight sums of the taps outside the image */
    int32_t ky, kx;
    for (ky = 0; ky < p->k_h; ++ky, w0 += row, w1 += row) {
        const int32_t iy = iy0 + ky * p->dil_h;
        const int8_t *in_row;
        if (iy < 0 || iy >= p->in_h) {
            sum2(w0, w1, row, &zs0, &zs1);
            continue;
        }
        in_row = in_b + (size_t)iy * (size_t)p->in_w * (size_t)ic;
        if (p->dil_w == 1) {
            /* taps kx in [lo, hi) are inside: one contiguous run */
            const int32_t lo = ix0 < 0 ? -ix0 : 0;
            int32_t hi = p->in_w - ix0;
            if (hi > p->k_w) {
                hi = p->k_w;
            }
            if (hi <= lo) {
                sum2(w0, w1, row, &zs0, &zs1);
                continue;
            }
            sum2(w0, w1, lo * ic, &zs0, &zs1);
            dot2(in_row + (size_t)(ix0 + lo) * (size_t)ic, w0 + lo * ic, w1 + lo * ic,
                 (hi - lo) * ic, &a0, &a1);
            sum2(w0 + hi * ic, w1 + hi * ic, (p->k_w - hi) * ic, &zs0, &zs1);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (ix >= 0 && ix < p->in_w) {
                    dot2(in_row + (size_t)ix * (size_t)ic, w0 + kx * ic, w1 + kx * ic, ic, &a0,
                         &a1);
                } else {
                    sum2(w0 + kx * ic, w1 + kx * ic, ic, &zs0, &zs1);
                }
            }
        }
    }
    *acc0 = a0 + p->in_zp * zs0;
    *acc1 = a1 + p->in_zp * zs1;
}

/* acc[0..3] += a.u, a.v, b.u, b.v over n bytes. Kept out of line so the four
 * accumulators, four pointers and the loads fit in registers (no spills). */
static TQ_NOINLINE void mac_2x2(const int8_t *TQ_RESTRICT a, const int8_t *TQ_RESTRICT b,
                                const int8_t *TQ_RESTRICT u, const int8_t *TQ_RESTRICT v,
                                int32_t n, int32_t *acc)
{
    int32_t s00 = acc[0], s01 = acc[1], s10 = acc[2], s11 = acc[3];
    const int8_t *end = a + n;
#ifdef TQ_SIMD
    const int8_t *end4 = a + (n & ~(int32_t)3);
    while (a < end4) {
        /* 4 taps: even lanes (0, 2) then odd lanes (1, 3) of each word */
        const uint32_t uw = tq_load32(u), vw = tq_load32(v);
        const uint32_t ue = tq_sxtb16(uw), uo = tq_sxtb16_ror8(uw);
        const uint32_t ve = tq_sxtb16(vw), vo = tq_sxtb16_ror8(vw);
        uint32_t w = tq_load32(a), t;
        t = tq_sxtb16(w);
        s00 = tq_smlad(t, ue, s00);
        s01 = tq_smlad(t, ve, s01);
        t = tq_sxtb16_ror8(w);
        s00 = tq_smlad(t, uo, s00);
        s01 = tq_smlad(t, vo, s01);
        w = tq_load32(b);
        t = tq_sxtb16(w);
        s10 = tq_smlad(t, ue, s10);
        s11 = tq_smlad(t, ve, s11);
        t = tq_sxtb16_ror8(w);
        s10 = tq_smlad(t, uo, s10);
        s11 = tq_smlad(t, vo, s11);
        a += 4;
        b += 4;
        u += 4;
        v += 4;
    }
#endif
    while (a < end) {
        const int32_t av = *a++;
        const int32_t bv = *b++;
        const int32_t uv = *u++;
        const int32_t vv = *v++;
        s00 += av * uv;
        s01 += av * vv;
        s10 += bv * uv;
        s11 += bv * vv;
    }
    acc[0] = s00;
    acc[1] = s01;
    acc[2] = s10;
    acc[3] = s11;
}

/* Two output pixels (windows at x0 and x1, both inside the image) x two
 * channels. Segments: k_h rows of `segs` runs of `seg_len` bytes. */
static void conv_inside_2x2(const tq_conv_params *p, const int8_t *x0, const int8_t *x1,
                            const int8_t *w0, const int8_t *w1, int32_t acc[4])
{
    const int32_t ic = p->in_c;
    const int32_t segs = p->dil_w == 1 ? 1 : p->k_w;
    const int32_t seg_len = p->dil_w == 1 ? p->k_w * ic : ic;
    const size_t seg_step = (size_t)p->dil_w * (size_t)ic;
    const size_t row_step = (size_t)p->dil_h * (size_t)p->in_w * (size_t)ic;
    int32_t ky, sg;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int8_t *r0 = x0 + (size_t)ky * row_step;
        const int8_t *r1 = x1 + (size_t)ky * row_step;
        for (sg = 0; sg < segs; ++sg) {
            mac_2x2(r0 + (size_t)sg * seg_step, r1 + (size_t)sg * seg_step, w0, w1, seg_len,
                    acc);
            w0 += seg_len;
            w1 += seg_len;
        }
    }
}

/* Two output pixels whose receptive fields are contiguous K-byte runs x0 and x1
 * (x1 may equal x0, then out1 is NULL): all output channels. */
static void conv_pair(const tq_conv_params *p, const int8_t *x0, const int8_t *x1, int32_t k,
                      const int8_t *weights, int8_t *out0, int8_t *out1)
{
    const int32_t oc_n = p->out_c;
    int32_t oc;
    for (oc = 0; oc < oc_n; oc += 2) {
        const int32_t oc1 = oc + 1 < oc_n ? oc + 1 : oc;
        int32_t acc[4];
        acc[0] = acc[2] = p->bias[oc];
        acc[1] = acc[3] = p->bias[oc1];
        mac_2x2(x0, x1, weights + (size_t)oc * (size_t)k, weights + (size_t)oc1 * (size_t)k, k,
                acc);
        out0[oc] = requant(p, acc[0], oc);
        if (oc1 != oc) {
            out0[oc1] = requant(p, acc[1], oc1);
        }
        if (out1 != NULL) {
            out1[oc] = requant(p, acc[2], oc);
            if (oc1 != oc) {
                out1[oc1] = requant(p, acc[3], oc1);
            }
        }
    }
}

/* Copy the receptive field of one output pixel into col (OHWI order, the
 * weights' order); taps outside the image read the input zero point. */
static void gather_patch(const tq_conv_params *p, const int8_t *in_b, int32_t iy0, int32_t ix0,
                         int8_t *col)
{
    const int32_t ic = p->in_c;
    int32_t ky, kx, i;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        const int y_in = iy >= 0 && iy < p->in_h;
        const int8_t *in_row = in_b + (size_t)(y_in ? iy : 0) * (size_t)p->in_w * (size_t)ic;
        for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (y_in && ix >= 0 && ix < p->in_w) {
                const int8_t *src = in_row + (size_t)ix * (size_t)ic;
                for (i = 0; i < ic; ++i) {
                    col[i] = src[i];
                }
            } else {
                for (i = 0; i < ic; ++i) {
                    col[i] = (int8_t)p->in_zp;
                }
            }
            col += ic;
        }
    }
}

/* Receptive fields of at most this many bytes are gathered into two local
 * buffers (2 x this on the stack), so every pixel, border or not, runs the
 * 2x2 inner kernel over one contiguous run. */
#define TQ_CONV_PATCH_MAX 160

void tq_conv2d_s8(const tq_conv_params *p, const int8_t *input, const int8_t *weights,
                  int8_t *output)
{
    const int32_t ic = p->in_c;
    const int32_t oc_n = p->out_c;
    const int32_t wsize = p->k_h * p->k_w * ic;
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)ic;
    const int32_t span_h = (p->k_h - 1) * p->dil_h;
    const int32_t span_w = (p->k_w - 1) * p->dil_w;
    const int pointwise = p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0;
    /* output columns whose window is inside the image in x: [ox_lo, ox_hi) */
    int32_t ox_lo = (p->pad_w + p->stride_w - 1) / p->stride_w;
    int32_t ox_hi = p->out_w;
    int32_t b, oy, ox, oc;
    if (pointwise || wsize <= TQ_CONV_PATCH_MAX) {
        /* pixels in output order, paired across rows */
        int8_t patch[2][TQ_CONV_PATCH_MAX];
        const int8_t *pend = NULL;
        int8_t *pend_out = NULL;
        for (b = 0; b < p->batches; ++b) {
            const int8_t *in_b = input + (size_t)b * in_batch;
            for (oy = 0; oy < p->out_h; ++oy) {
                const int32_t iy0 = oy * p->stride_h - p->pad_h;
                for (ox = 0; ox < p->out_w; ++ox) {
                    const int32_t ix0 = ox * p->stride_w - p->pad_w;
                    const int8_t *x;
                    if (pointwise) {
                        x = in_b + ((size_t)iy0 * (size_t)p->in_w + (size_t)ix0) * (size_t)ic;
                    } else {
                        int8_t *col = patch[pend != NULL ? 1 : 0];
                        gather_patch(p, in_b, iy0, ix0, col);
                        x = col;
                    }
                    if (pend == NULL) {
                        pend = x;
                        pend_out = output;
                    } else {
                        conv_pair(p, pend, x, wsize, weights, pend_out, output);
                        pend = NULL;
                    }
                    output += oc_n;
                }
            }
        }
        if (pend != NULL) {
            conv_pair(p, pend, pend, wsize, weights, pend_out, NULL);
        }
        return;
    }
    while (ox_hi > ox_lo && (ox_hi - 1) * p->stride_w - p->pad_w + span_w >= p->in_w) {
        --ox_hi;
    }
    if (ox_lo > ox_hi) {
        ox_lo = ox_hi;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int y_inside = iy0 >= 0 && iy0 + span_h < p->in_h;
            for (ox = 0; ox < p->out_w;) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                if (y_inside && ox >= ox_lo && ox < ox_hi) {
                    /* one or two inside pixels (the second repeats the first at a row end) */
                    const int two = ox + 1 < ox_hi;
                    const int8_t *x0 = in_b + ((size_t)iy0 * (size_t)p->in_w + (size_t)ix0) *
                                                  (size_t)ic;
                    const int8_t *x1 = two ? x0 + (size_t)p->stride_w * (size_t)ic : x0;
                    for (oc = 0; oc < oc_n; oc += 2) {
                        const int32_t oc1 = oc + 1 < oc_n ? oc + 1 : oc;
                        int32_t acc[4];
                        acc[0] = acc[2] = p->bias[oc];
                        acc[1] = acc[3] = p->bias[oc1];
                        conv_inside_2x2(p, x0, x1, weights + (size_t)oc * (size_t)wsize,
                                        weights + (size_t)oc1 * (size_t)wsize, acc);
                        output[oc] = requant(p, acc[0], oc);
                        if (oc1 != oc) {
                            output[oc1] = requant(p, acc[1], oc1);
                        }
                        if (two) {
                            output[oc_n + oc] = requant(p, acc[2], oc);
                            if (oc1 != oc) {
                                output[oc_n + oc1] = requant(p, acc[3], oc1);
                            }
                        }
                    }
                    ox += two ? 2 : 1;
                    output += (two ? 2 : 1) * oc_n;
                } else {
                    for (oc = 0; oc < oc_n; oc += 2) {
                        const int32_t oc1 = oc + 1 < oc_n ? oc + 1 : oc;
                        int32_t a0 = p->bias[oc], a1 = p->bias[oc1];
                        conv_border2(p, in_b, weights + (size_t)oc * (size_t)wsize,
                                     weights + (size_t)oc1 * (size_t)wsize, iy0, ix0, &a0, &a1);
                        output[oc] = requant(p, a0, oc);
                        if (oc1 != oc) {
                            output[oc1] = requant(p, a1, oc1);
                        }
                    }
                    ox += 1;
                    output += oc_n;
                }
            }
        }
    }
}
