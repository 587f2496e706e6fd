/* tinyq native runtime: data movement (TRANSPOSE, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V,
 * UNPACK, SPACE_TO_DEPTH, DEPTH_TO_SPACE, BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND,
 * MIRROR_PAD, RESIZE_NEAREST_NEIGHBOR, GATHER). These ops only move elements, so one
 * kernel serves every element type: elements are copied as `elem` bytes with memcpy.
 * Which input element lands where is computed by tinyq (tinyq/native/ops_layout.py)
 * exactly as TFLM's reference kernels index. */
#ifndef TQ_LAYOUT_H
#define TQ_LAYOUT_H

#include <stdint.h>

#include "tq_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TQ_LAYOUT_MAX_DIMS 6

/* out[i0, ..., i5] = in[t0[i0] + t1[i1] + ... + t5[i5]] (offsets in elements), where
 * t_k is the dims[k] entries of `offsets` after those of dims 0..k-1. The output is
 * written in row-major order. An entry of -1 means "outside the input": the element
 * is `fill` (elem bytes) instead (SPACE_TO_BATCH_ND's padding). `inner_run` != 0 says
 * the last table is 0, 1, ..., dims[5] - 1, so each innermost row is one memcpy. */
typedef struct {
    int32_t elem;
    int32_t dims[TQ_LAYOUT_MAX_DIMS];
    int32_t inner_run;
    const int32_t *offsets;
    const uint8_t *fill;
} tq_gather_nd_params;

void tq_gather_nd(const tq_gather_nd_params *p, const void *in, void *out);

/* SPLIT, SPLIT_V, UNPACK: the input viewed as [outer, sum(sizes)] bytes; output i gets
 * the sizes[i] bytes of each outer row after those of outputs 0..i-1 (the inverse of
 * tq_concat). `outputs` are arena pointers (never constants). */
typedef struct {
    int32_t outer, count;
    const int32_t *sizes;
} tq_split_params;

void tq_split(const tq_split_params *p, const void *in, const uint8_t *const *outputs);

/* SPACE_TO_BATCH_ND on NHWC (3-D inputs as NH1C): output batch b takes block offset
 * ((b / in_b) / block_w, (b / in_b) % block_w) of input batch b % in_b; positions in
 * the padding get `fill` in every byte (TFLM memsets its pad value). */
typedef struct {
    int32_t in_b, in_h, in_w, out_b, out_h, out_w, depth_bytes;
    int32_t block_h, block_w, pad_top, pad_left, fill;
} tq_space_to_batch_params;

void tq_space_to_batch(const tq_space_to_batch_params *p, const void *in, void *out);

/* GATHER: the input viewed as [batch, outer, axis, inner] elements; indices as
 * [batch, count]; out[b, o, j, :] = in[b, o, idx[b, j], :]. An index outside
 * [0, axis) (TFLM stops with an error) writes zeros. `index_bytes` is 4 (int32) or
 * 8 (int64, little-endian: its low word is read). */
typedef struct {
    int32_t batch, outer, axis, inner_bytes, count, index_bytes;
} tq_gather_params;

void tq_gather(const tq_gather_params *p, const void *in, const void *indices, void *out);

#ifdef __cplusplus
}
#endif

#endif /* TQ_LAYOUT_H */
