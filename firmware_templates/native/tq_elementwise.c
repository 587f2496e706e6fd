/* tinyq native runtime: ADD and MUL int8 with numpy-style broadcasting up to
 * 6-D (TFLM reference semantics: ADD rescales both inputs to a common scale with
 * 20 bits of headroom, MUL requantizes the product). Element i of both inputs is
 * read before element i of the output is written, so the planner may run these
 * in place. */
#include "tq_kernels.h"

TQ_INLINE int8_t add1(const tq_add_params *p, int32_t a, int32_t b)
{
    const int32_t sa = (int32_t)((uint32_t)(a - p->in1_zp) << p->left_shift);
    const int32_t sb = (int32_t)((uint32_t)(b - p->in2_zp) << p->left_shift);
    const int32_t ra = tq_mul_by_quantized_mul(sa, p->in1_mult, p->in1_shift);
    const int32_t rb = tq_mul_by_quantized_mul(sb, p->in2_mult, p->in2_shift);
    return (int8_t)tq_requant(ra + rb, p->out_mult, p->out_shift, p->out_zp, p->act_min,
                              p->act_max);
}

TQ_INLINE int8_t mul1(const tq_mul_params *p, int32_t a, int32_t b)
{
    const int32_t prod = (a - p->in1_zp) * (b - p->in2_zp);
    return (int8_t)tq_requant(prod, p->out_mult, p->out_shift, p->out_zp, p->act_min,
                              p->act_max);
}

/* Walk the 6-D output in order; i1/i2 follow the inputs' (broadcast) strides. */
#define TQ_BROADCAST_LOOP(P, BODY)                                                       \
    do {                                                                                 \
        int32_t d0, d1, d2, d3, d4, d5;                                                  \
        int8_t *o_ = output;                                                             \
        for (d0 = 0; d0 < (P)->dims[0]; ++d0)                                            \
        for (d1 = 0; d1 < (P)->dims[1]; ++d1)                                            \
        for (d2 = 0; d2 < (P)->dims[2]; ++d2)                                            \
        for (d3 = 0; d3 < (P)->dims[3]; ++d3)                                            \
        for (d4 = 0; d4 < (P)->dims[4]; ++d4) {                                          \
            const int32_t b1_ = d0 * (P)->stride1[0] + d1 * (P)->stride1[1] +            \
                                d2 * (P)->stride1[2] + d3 * (P)->stride1[3] +            \
                                d4 * (P)->stride1[4];                                    \
            const int32_t b2_ = d0 * (P)->stride2[0] + d1 * (P)->stride2[1] +            \
                                d2 * (P)->stride2[2] + d3 * (P)->stride2[3] +            \
                                d4 * (P)->stride2[4];                                    \
            for (d5 = 0; d5 < (P)->dims[5]; ++d5) {                                      \
                const int32_t i1 = b1_ + d5 * (P)->stride1[5];                           \
                const int32_t i2 = b2_ + d5 * (P)->stride2[5];                           \
                *o_++ = BODY;                                                            \
            }                                                                            \
        }                                                                                \
    } while (0)

void tq_add_s8(const tq_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *output)
{
    if (!p->broadcast) {
        int32_t i;
        for (i = 0; i < p->size; ++i) {
            output[i] = add1(p, in1[i], in2[i]);
        }
        return;
    }
    TQ_BROADCAST_LOOP(p, add1(p, in1[i1], in2[i2]));
}

void tq_mul_s8(const tq_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *output)
{
    if (!p->broadcast) {
        int32_t i;
        for (i = 0; i < p->size; ++i) {
            output[i] = mul1(p, in1[i], in2[i]);
        }
        return;
    }
    TQ_BROADCAST_LOOP(p, mul1(p, in1[i1], in2[i2]));
}
