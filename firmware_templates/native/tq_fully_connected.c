/* tinyq native runtime: FULLY_CONNECTED int8 (per-channel or per-tensor, batches;
 * TFLM reference semantics). The input zero point is folded into the bias;
 * two output channels share each input load. */
#include "tq_kernels.h"

TQ_INLINE int8_t requant(const tq_fc_params *p, int32_t acc, int32_t oc)
{
    return (int8_t)tq_requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min,
                              p->act_max);
}

void tq_fully_connected_s8(const tq_fc_params *p, const int8_t *input, const int8_t *weights,
                           int8_t *output)
{
    const int32_t n = p->in_depth;
    int32_t b;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *TQ_RESTRICT x = input + (size_t)b * (size_t)n;
        int32_t oc = 0;
        for (; oc + 2 <= p->out_depth; oc += 2) {
            const int8_t *TQ_RESTRICT w0 = weights + (size_t)oc * (size_t)n;
            const int8_t *TQ_RESTRICT w1 = w0 + n;
            int32_t a0 = p->bias[oc], a1 = p->bias[oc + 1];
            int32_t i = 0;
#ifdef TQ_SIMD
            for (; i + 4 <= n; i += 4) {
                const uint32_t xw = tq_load32(x + i);
                const uint32_t xe = tq_sxtb16(xw), xo = tq_sxtb16_ror8(xw);
                const uint32_t u = tq_load32(w0 + i), v = tq_load32(w1 + i);
                a0 = tq_smlad(xe, tq_sxtb16(u), a0);
                a0 = tq_smlad(xo, tq_sxtb16_ror8(u), a0);
                a1 = tq_smlad(xe, tq_sxtb16(v), a1);
                a1 = tq_smlad(xo, tq_sxtb16_ror8(v), a1);
            }
#endif
            for (; i + 4 <= n; i += 4) {
                const int32_t x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
                a0 += x0 * w0[i] + x1 * w0[i + 1] + x2 * w0[i + 2] + x3 * w0[i + 3];
                a1 += x0 * w1[i] + x1 * w1[i + 1] + x2 * w1[i + 2] + x3 * w1[i + 3];
            }
            for (; i < n; ++i) {
                a0 += x[i] * w0[i];
                a1 += x[i] * w1[i];
            }
            output[oc] = requant(p, a0, oc);
            output[oc + 1] = requant(p, a1, oc + 1);
        }
        if (oc < p->out_depth) {
            const int8_t *TQ_RESTRICT w0 = weights + (size_t)oc * (size_t)n;
            int32_t a0 = p->bias[oc];
            int32_t i;
            for (i = 0; i < n; ++i) {
                a0 += x[i] * w0[i];
            }
            output[oc] = requant(p, a0, oc);
        }
        output += p->out_depth;
    }
}
