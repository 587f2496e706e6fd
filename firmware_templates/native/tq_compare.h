/* tinyq native runtime: MAXIMUM, MINIMUM, the comparisons (EQUAL, NOT_EQUAL, LESS,
 * LESS_EQUAL, GREATER, GREATER_EQUAL), SELECT_V2, ARG_MAX, ARG_MIN, REDUCE_MAX and
 * REDUCE_MIN, for every element type TFLM runs them on, bit-exact with TFLM's
 * reference kernels. Elements are read and written with memcpy (no type punning);
 * a result that is one of the inputs is copied byte for byte. Parameters are
 * computed by tinyq (tinyq/native/ops_compare.py). */
#ifndef TQ_COMPARE_H
#define TQ_COMPARE_H

#include <stddef.h>
#include <stdint.h>

#include "tq_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* element types */
#define TQ_T_S8 0
#define TQ_T_S16 1
#define TQ_T_S32 2
#define TQ_T_S64 3
#define TQ_T_F32 4
#define TQ_T_BOOL 5

/* binary ops */
#define TQ_OP_MAX 0
#define TQ_OP_MIN 1
#define TQ_OP_EQ 2
#define TQ_OP_NE 3
#define TQ_OP_LT 4
#define TQ_OP_LE 5
#define TQ_OP_GT 6
#define TQ_OP_GE 7

/* Broadcasting: advance the 6-D output position `pos` (an odometer over `dims`) by one
 * element, and the `count` input indices that follow it with their `strides`. */
void tq_broadcast_step(const int32_t *dims, int32_t *pos, int32_t count,
                       const int32_t *const *strides, int32_t *index);

/* The output of a two-input elementwise op: `size` elements; with `broadcast`, the
 * 6-D `dims` walked in order, each input following its strides (0 on broadcast dims). */
typedef struct {
    int32_t size, broadcast;
    int32_t dims[TQ_MAX_DIMS], stride1[TQ_MAX_DIMS], stride2[TQ_MAX_DIMS];
} tq_broadcast_geom;

/* Call fn(params, &in1[i1], &in2[i2], &out[i]) for every output element i (element
 * sizes in bytes: es1, es2, eso). */
typedef void (*tq_elem_fn)(const void *params, const uint8_t *a, const uint8_t *b,
                           uint8_t *o);
void tq_broadcast_apply(const tq_broadcast_geom *g, const void *params, tq_elem_fn fn,
                        const void *in1, size_t es1, const void *in2, size_t es2, void *out,
                        size_t eso);

/* Output element i from input elements i1, i2: with broadcast, the 6-D output is
 * walked in order and i1/i2 follow each input's strides (0 on broadcast dims).
 * MAXIMUM/MINIMUM pick raw values (TFLM ignores quantization there); comparisons of
 * int8/int16 (scaled != 0) compare TFLM's rescaled values
 * ((x - zp) * 2^8 times the input scale as a multiplier below one), others compare
 * the values. Comparison outputs are bool bytes (0 or 1). */
typedef struct {
    tq_broadcast_geom geom;
    int32_t type, op, scaled;
    int32_t in1_zp, in1_mult, in1_shift, in2_zp, in2_mult, in2_shift;
} tq_binary_params;

void tq_binary(const tq_binary_params *p, const void *in1, const void *in2, void *out);

/* SELECT_V2: out = cond ? x : y, each of the three broadcast to the output. */
typedef struct {
    int32_t size, elem;
    int32_t dims[TQ_MAX_DIMS], stride_c[TQ_MAX_DIMS], stride_x[TQ_MAX_DIMS],
        stride_y[TQ_MAX_DIMS];
} tq_select_params;

void tq_select(const tq_select_params *p, const uint8_t *cond, const void *x, const void *y,
               void *out);

/* ARG_MAX/ARG_MIN over the middle dim of [outer, axis, inner]: the first index of the
 * largest (smallest) value, written as int32 or int64 (out_bytes 4 or 8). */
typedef struct {
    int32_t outer, axis, inner, type, is_max, out_bytes;
} tq_arg_params;

void tq_arg_minmax(const tq_arg_params *p, const void *in, void *out);

/* REDUCE_MAX/REDUCE_MIN: as tq_mean_params, the input as runs of kept and reduced
 * (size, stride) dims; each output is the first largest (smallest) value met in
 * input order, copied. */
typedef struct {
    int32_t n_kept, n_red;
    int32_t kept_dims[TQ_MAX_DIMS], kept_strides[TQ_MAX_DIMS];
    int32_t red_dims[TQ_MAX_DIMS], red_strides[TQ_MAX_DIMS];
    int32_t type, is_max;
} tq_reduce_params;

void tq_reduce_minmax(const tq_reduce_params *p, const void *in, void *out);

#ifdef __cplusplus
}
#endif

#endif /* TQ_COMPARE_H */
