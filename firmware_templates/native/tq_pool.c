/* tinyq native runtime: AVERAGE_POOL_2D and MAX_POOL_2D int8 (TFLM reference
 * semantics: the window is clipped to the image; the average rounds half away
 * from zero over the clipped count; input and output share quantization). */
#include "tq_kernels.h"

#define TQ_POOL_BLOCK 16

void tq_avg_pool_s8(const tq_pool_params *p, const int8_t *input, int8_t *output)
{
    const int32_t ch = p->channels;
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)ch;
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
            const int32_t fy1 = p->f_h < p->in_h - iy0 ? p->f_h : p->in_h - iy0;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t fx1 = p->f_w < p->in_w - ix0 ? p->f_w : p->in_w - ix0;
                const int32_t count = (fy1 - fy0) * (fx1 - fx0);
                int32_t c0;
                for (c0 = 0; c0 < ch; c0 += TQ_POOL_BLOCK) {
                    const int32_t nc = ch - c0 < TQ_POOL_BLOCK ? ch - c0 : TQ_POOL_BLOCK;
                    int32_t acc[TQ_POOL_BLOCK];
                    int32_t c, fy, fx;
                    for (c = 0; c < nc; ++c) {
                        acc[c] = 0;
                    }
                    for (fy = fy0; fy < fy1; ++fy) {
                        for (fx = fx0; fx < fx1; ++fx) {
                            const int8_t *x = in_b + ((size_t)(iy0 + fy) * (size_t)p->in_w +
                                                      (size_t)(ix0 + fx)) * (size_t)ch + c0;
                            for (c = 0; c < nc; ++c) {
                                acc[c] += x[c];
                            }
                        }
                    }
                    for (c = 0; c < nc; ++c) {
                        int32_t a = acc[c];
                        if (count > 0) {
                            a = a > 0 ? (a + count / 2) / count : (a - count / 2) / count;
                        }
                        output[c0 + c] = (int8_t)tq_clamp(a, p->act_min, p->act_max);
                    }
                }
                output += ch;
            }
        }
    }
}

void tq_max_pool_s8(const tq_pool_params *p, const int8_t *input, int8_t *output)
{
    const int32_t ch = p->channels;
    const size_t in_batch = (size_t)p->in_h * (size_t)p->in_w * (size_t)ch;
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_batch;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
            const int32_t fy1 = p->f_h < p->in_h - iy0 ? p->f_h : p->in_h - iy0;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t fx1 = p->f_w < p->in_w - ix0 ? p->f_w : p->in_w - ix0;
                int32_t c;
                for (c = 0; c < ch; ++c) {
                    output[c] = -128;
                }
                {
                    int32_t fy, fx;
                    for (fy = fy0; fy < fy1; ++fy) {
                        for (fx = fx0; fx < fx1; ++fx) {
                            const int8_t *x = in_b + ((size_t)(iy0 + fy) * (size_t)p->in_w +
                                                      (size_t)(ix0 + fx)) * (size_t)ch;
                            for (c = 0; c < ch; ++c) {
                                if (x[c] > output[c]) {
                                    output[c] = x[c];
                                }
                            }
                        }
                    }
                }
                for (c = 0; c < ch; ++c) {
                    output[c] = (int8_t)tq_clamp(output[c], p->act_min, p->act_max);
                }
                output += ch;
            }
        }
    }
}
