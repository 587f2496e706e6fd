/* tinyq native runtime: int8 kernels, bit-exact with TFLM's reference kernels.
 *
 * Portable C99: no heap, no floating point except in QUANTIZE/DEQUANTIZE, no
 * unaligned word access (runs on Cortex-M0). Every parameter a kernel needs is
 * computed ahead of time by tinyq (tinyq/native/lower.py) and stored in a
 * const params struct in flash; activations live in one static arena.
 *
 * Conventions: inputs are `const T *`, outputs `T *`; convolution weights are
 * the .tflite layouts (OHWI for CONV_2D, 1HWO for DEPTHWISE_CONV_2D, OI for
 * FULLY_CONNECTED); `bias` arrays hold TFLM's bias minus input_zp * sum(weights)
 * per output channel (folded at generation time, exact in integers). */
#ifndef TQ_KERNELS_H
#define TQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TQ_ALIGN(n) __attribute__((aligned(n)))
#define TQ_INLINE static inline __attribute__((always_inline))
#define TQ_NOINLINE __attribute__((noinline))
#else
#define TQ_NOINLINE
#define TQ_ALIGN(n)
#define TQ_INLINE static inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TQ_RESTRICT __restrict__
#else
#define TQ_RESTRICT
#endif

/* ------------------------------------------------------------------ what the code relies on
 * Two implementation-defined behaviours of C99, checked here at compile time so a
 * compiler without them fails to build instead of computing something else
 * (docs/numerics.md): a right shift of a negative int32_t is arithmetic (rounds
 * toward minus infinity), and converting a uint32_t above INT32_MAX to int32_t
 * wraps modulo 2^32. gcc, clang, armcc and IAR all define both this way. Signed
 * overflow is never relied on: sums that may wrap are computed in uint32_t.
 * Float and int16 tensors in the uint8_t arena are read and written through
 * memcpy, so the code is correct under strict aliasing (no -fno-strict-aliasing). */
typedef char tq_requires_arithmetic_right_shift[((-8 >> 1) == -4) ? 1 : -1];
typedef char tq_requires_wrapping_u32_to_s32[((int32_t)(uint32_t)0xFFFFFFFFu == -1) ? 1 : -1];

/* ------------------------------------------------------------------ arithmetic */

/* TFLM MultiplyByQuantizedMultiplier with gemmlowp double rounding
 * (TFLITE_SINGLE_ROUNDING off): left shift, saturating rounding doubling
 * high multiply, rounding divide by a power of two. shift > 0 is a left shift.
 *
 * Branch-free forms of gemmlowp's steps, equal for every int32 input:
 * - SaturatingRoundingDoublingHighMul(a, m), m >= 0 (never saturates):
 *   trunc((a*m + (a*m >= 0 ? 2^30 : 1 - 2^30)) / 2^31) == (a*m + 2^30) >> 31
 *   (for a negative numerator, trunc(N / 2^31) == floor((N + 2^31 - 1) / 2^31));
 * - RoundingDivideByPOT(x, e), e > 0: (x >> e) + (remainder > threshold) ==
 *   (x >> e) + ((rem + 2^(e-1) - (x < 0)) >> e) with rem = x & (2^e - 1),
 *   computed in uint32 so it cannot overflow. */
TQ_INLINE int32_t tq_srdhm(int32_t a, int32_t mult)
{
    return (int32_t)(((int64_t)a * (int64_t)mult + ((int64_t)1 << 30)) >> 31);
}

/* shift must lie in [TQ_MIN_SHIFT, TQ_MAX_SHIFT] (tinyq refuses models whose
 * multipliers need more: tinyq/native/lower.py), mult in [0, 2^31). The left
 * shift wraps in uint32_t like TFLM's int32 `x * (1 << shift)` does on every target. */
#define TQ_MIN_SHIFT (-31)
#define TQ_MAX_SHIFT 30
TQ_INLINE int32_t tq_mul_by_quantized_mul(int32_t x, int32_t mult, int32_t shift)
{
    if (shift < 0) {
        /* the usual case (multiplier < 0.5): high multiply, then round by 2^-shift */
        const int32_t hi = tq_srdhm(x, mult);
        const int32_t right = -shift;
        const uint32_t mask = ((uint32_t)1 << right) - 1u;
        /* 2^(right-1) - (hi < 0) == (mask >> 1) + (hi >= 0) */
        const uint32_t half = (mask >> 1) + (uint32_t)(hi >= 0);
        return (hi >> right) + (int32_t)((((uint32_t)hi & mask) + half) >> right);
    }
    return tq_srdhm((int32_t)((uint32_t)x << shift), mult);
}

/* ------------------------------------------------------------------ SIMD primitives
 * On cores with the DSP extension and unaligned word loads (Cortex-M4/M7/M33/M55)
 * the dot-product kernels unpack 4 int8 per word (SXTB16) and multiply-accumulate
 * pairs (SMLAD): the same integer sums, in fewer instructions. Define
 * TQ_SIMD_EMULATE to run the same code paths on any host with C stand-ins (the
 * tests do, so the SIMD paths are checked bit for bit against TFLM too). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_UNALIGNED) && \
    (defined(__GNUC__) || defined(__clang__))
#define TQ_SIMD 1
TQ_INLINE uint32_t tq_sxtb16(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
TQ_INLINE uint32_t tq_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
TQ_INLINE int32_t tq_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
#elif defined(TQ_SIMD_EMULATE)
#define TQ_SIMD 1
TQ_INLINE uint32_t tq_sxtb16(uint32_t x)
{
    const uint32_t lo = (uint32_t)(int32_t)(int8_t)(x & 0xFFu) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFFu) & 0xFFFFu;
    return lo | (hi << 16);
}
TQ_INLINE uint32_t tq_sxtb16_ror8(uint32_t x)
{
    return tq_sxtb16((x >> 8) | (x << 24));
}
TQ_INLINE int32_t tq_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}
#endif

#ifdef TQ_SIMD
/* a little-endian word from any address (one LDR on cores with unaligned access) */
TQ_INLINE uint32_t tq_load32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
#endif

TQ_INLINE int32_t tq_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* requantize an accumulator, add the output zero point and clamp: TFLM's
 * `MultiplyByQuantizedMultiplier(acc) + output_offset`, clamped. The add wraps in
 * uint32_t (where TFLM's int32 add overflows, undefined in C, it wraps on every target
 * TFLM runs on), so huge multipliers give TFLM's answer without undefined behaviour. */
TQ_INLINE int32_t tq_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo,
                             int32_t hi)
{
    const uint32_t v = (uint32_t)tq_mul_by_quantized_mul(acc, mult, shift) + (uint32_t)zp;
    return tq_clamp((int32_t)v, lo, hi);
}

/* ------------------------------------------------------------------ params */

typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t in_zp, out_zp, act_min, act_max;
    const int32_t *bias;   /* folded, per output channel */
    const int32_t *mult;   /* per output channel */
    const int8_t *shift;   /* per output channel */
} tq_conv_params;

typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, depth_mult, k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t in_zp, out_zp, act_min, act_max;
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
} tq_dwconv_params;

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t out_zp, act_min, act_max;
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
} tq_fc_params;

typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w, f_h, f_w;
    int32_t stride_h, stride_w, pad_h, pad_w, act_min, act_max;
} tq_pool_params;

#define TQ_MAX_DIMS 6

typedef struct {
    int32_t size, broadcast;
    int32_t dims[TQ_MAX_DIMS], stride1[TQ_MAX_DIMS], stride2[TQ_MAX_DIMS];
    int32_t in1_zp, in2_zp, out_zp, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} tq_add_params;

typedef struct {
    int32_t size, broadcast;
    int32_t dims[TQ_MAX_DIMS], stride1[TQ_MAX_DIMS], stride2[TQ_MAX_DIMS];
    int32_t in1_zp, in2_zp, out_zp, out_mult, out_shift, act_min, act_max;
} tq_mul_params;

typedef struct {
    int32_t in_dims[TQ_MAX_DIMS], out_dims[TQ_MAX_DIMS], before[TQ_MAX_DIMS];
    int32_t value;
} tq_pad_params;

typedef struct {
    int32_t outer, count;
    const int32_t *sizes;  /* bytes each input contributes per outer step */
} tq_concat_params;

typedef struct {
    int32_t size;
    float scale;           /* the output scale: q = round(x / scale) + zero_point */
    int32_t zero_point;
} tq_quantize_params;

typedef struct {
    int32_t size, in_zp, out_zp, mult, shift;
} tq_requantize_params;

typedef struct {
    int32_t size;
    float scale;
    int32_t zero_point;
} tq_dequantize_params;

typedef struct {
    int32_t size, in_zp, out_zp, mult, shift, act_min, act_max;
} tq_relu_params;

typedef struct {
    int32_t size, lo, hi;
} tq_clamp_params;

/* ------------------------------------------------------------------ kernels */

void tq_copy(void *dst, const void *src, size_t bytes);

void tq_conv2d_s8(const tq_conv_params *p, const int8_t *input, const int8_t *weights,
                  int8_t *output);
void tq_depthwise_conv2d_s8(const tq_dwconv_params *p, const int8_t *input,
                            const int8_t *weights, int8_t *output);
void tq_fully_connected_s8(const tq_fc_params *p, const int8_t *input, const int8_t *weights,
                           int8_t *output);
void tq_avg_pool_s8(const tq_pool_params *p, const int8_t *input, int8_t *output);
void tq_max_pool_s8(const tq_pool_params *p, const int8_t *input, int8_t *output);
void tq_add_s8(const tq_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *output);
void tq_mul_s8(const tq_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *output);
void tq_pad_s8(const tq_pad_params *p, const int8_t *input, int8_t *output);
void tq_concat(const tq_concat_params *p, const uint8_t *const *inputs, void *output);
void tq_quantize_f32_s8(const tq_quantize_params *p, const float *input, int8_t *output);
void tq_requantize_s8_s8(const tq_requantize_params *p, const int8_t *input, int8_t *output);
void tq_requantize_u8_s8(const tq_requantize_params *p, const uint8_t *input, int8_t *output);
void tq_requantize_s8_u8(const tq_requantize_params *p, const int8_t *input, uint8_t *output);
void tq_dequantize_s8_f32(const tq_dequantize_params *p, const int8_t *input, float *output);
void tq_dequantize_u8_f32(const tq_dequantize_params *p, const uint8_t *input, float *output);
void tq_relu_s8(const tq_relu_params *p, const int8_t *input, int8_t *output);
void tq_clamp_s8(const tq_clamp_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TQ_KERNELS_H */
