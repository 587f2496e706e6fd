/* tinyq native runtime: data movement kernels (tq_layout.h). Elements are copied as
 * bytes with memcpy, so any element type works and nothing is read through a
 * pointer of another type. */
#include <string.h>

#include "tq_layout.h"

static void copy_row(const tq_gather_nd_params *p, const uint8_t *in, int32_t base,
                     const int32_t *table, uint8_t *out)
{
    const size_t elem = (size_t)p->elem;
    const int32_t n = p->dims[TQ_LAYOUT_MAX_DIMS - 1];
    int32_t i;
    if (base < 0) {
        for (i = 0; i < n; ++i) {
            memcpy(out + (size_t)i * elem, p->fill, elem);
        }
        return;
    }
    if (p->inner_run) {
        memcpy(out, in + (size_t)base * elem, (size_t)n * elem);
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t t = table[i];
        if (t < 0) {
            memcpy(out + (size_t)i * elem, p->fill, elem);
        } else {
            memcpy(out + (size_t)i * elem, in + (size_t)(base + t) * elem, elem);
        }
    }
}

/* the offset of one index of dim k added to the base, or -1 once any is outside */
static int32_t step(int32_t base, int32_t t)
{
    return (base < 0 || t < 0) ? -1 : base + t;
}

void tq_gather_nd(const tq_gather_nd_params *p, const void *in, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    uint8_t *output = (uint8_t *)out;
    const int32_t *t0 = p->offsets;
    const int32_t *t1 = t0 + p->dims[0];
    const int32_t *t2 = t1 + p->dims[1];
    const int32_t *t3 = t2 + p->dims[2];
    const int32_t *t4 = t3 + p->dims[3];
    const int32_t *t5 = t4 + p->dims[4];
    const size_t row = (size_t)p->dims[5] * (size_t)p->elem;
    int32_t i0, i1, i2, i3, i4;
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        const int32_t b0 = t0[i0];
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            const int32_t b1 = step(b0, t1[i1]);
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                const int32_t b2 = step(b1, t2[i2]);
                for (i3 = 0; i3 < p->dims[3]; ++i3) {
                    const int32_t b3 = step(b2, t3[i3]);
                    for (i4 = 0; i4 < p->dims[4]; ++i4) {
                        copy_row(p, input, step(b3, t4[i4]), t5, output);
                        output += row;
                    }
                }
            }
        }
    }
}

void tq_split(const tq_split_params *p, const void *in, const uint8_t *const *outputs)
{
    const uint8_t *input = (const uint8_t *)in;
    int32_t o, i;
    for (o = 0; o < p->outer; ++o) {
        for (i = 0; i < p->count; ++i) {
            const size_t n = (size_t)p->sizes[i];
            /* the table is const only because tq_concat's inputs share its type: the
             * pointers are into the (writable) arena */
            uint8_t *dst = (uint8_t *)(uintptr_t)outputs[i];
            memcpy(dst + (size_t)o * n, input, n);
            input += n;
        }
    }
}

static int32_t read_index(const uint8_t *indices, int32_t pos, int32_t bytes)
{
    uint32_t v = 0;
    int32_t k;
    /* little-endian low word (int64 indices above 2^31 are out of range anyway) */
    for (k = 3; k >= 0; --k) {
        v = (v << 8) | indices[(size_t)pos * (size_t)bytes + (size_t)k];
    }
    if (bytes == 8) {
        uint32_t hi = 0;
        for (k = 7; k >= 4; --k) {
            hi = (hi << 8) | indices[(size_t)pos * (size_t)bytes + (size_t)k];
        }
        /* a value that does not fit int32 is out of range: report -1 */
        if (!((hi == 0u && v <= 0x7FFFFFFFu) || (hi == 0xFFFFFFFFu && v > 0x7FFFFFFFu))) {
            return -1;
        }
    }
    return (int32_t)v;
}

void tq_gather(const tq_gather_params *p, const void *in, const void *indices, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    const uint8_t *idx = (const uint8_t *)indices;
    uint8_t *output = (uint8_t *)out;
    const size_t inner = (size_t)p->inner_bytes;
    int32_t b, o, j;
    for (b = 0; b < p->batch; ++b) {
        for (o = 0; o < p->outer; ++o) {
            const uint8_t *src = input + ((size_t)b * (size_t)p->outer + (size_t)o)
                                 * (size_t)p->axis * inner;
            for (j = 0; j < p->count; ++j) {
                const int32_t v = read_index(idx, b * p->count + j, p->index_bytes);
                if (v >= 0 && v < p->axis) {
                    memcpy(output, src + (size_t)v * inner, inner);
                } else {
                    memset(output, 0, inner);
                }
                output += inner;
            }
        }
    }
}

void tq_space_to_batch(const tq_space_to_batch_params *p, const void *in, void *out)
{
    const uint8_t *input = (const uint8_t *)in;
    uint8_t *output = (uint8_t *)out;
    const size_t depth = (size_t)p->depth_bytes;
    int32_t b, h, w;
    for (b = 0; b < p->out_b; ++b) {
        const int32_t src_b = b % p->in_b;
        const int32_t shift_w = (b / p->in_b) % p->block_w;
        const int32_t shift_h = (b / p->in_b) / p->block_w;
        for (h = 0; h < p->out_h; ++h) {
            const int32_t src_h = h * p->block_h + shift_h - p->pad_top;
            for (w = 0; w < p->out_w; ++w) {
                const int32_t src_w = w * p->block_w + shift_w - p->pad_left;
                if (src_h < 0 || src_h >= p->in_h || src_w < 0 || src_w >= p->in_w) {
                    memset(output, p->fill, depth);
                } else {
                    memcpy(output, input + (((size_t)src_b * (size_t)p->in_h + (size_t)src_h)
                                            * (size_t)p->in_w + (size_t)src_w) * depth, depth);
                }
                output += depth;
            }
        }
    }
}
