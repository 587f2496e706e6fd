"""Random cases for the data-movement ops (tinyq/firmware/native/ops_layout.py).

Every case picks one of the dtypes the op is registered for (``LAYOUT_DTYPES``),
random shapes with odd sizes, negative axes, and for STRIDED_SLICE negative
strides, out-of-range begin/end (clamped) and random masks; parameter tensors
are int32 or, where the op takes them, int64. Registered into
``tinyq.firmware.native.opcases.CASES``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinyq.firmware.native.opcases import Case, CaseGen, rand_scale, rand_zp
from tinyq.firmware.native.ops_layout import (
    INT64_PARAMS,
    LAYOUT_DTYPES,
    STRIDED_SLICE_MAX_DIMS,
    strided_slice_ranges,
)
from tinyq.model.tflite_writer import GraphBuilder

#: most elements of one random case's input (keeps a 50-case model small)
MAX_CASE_ELEMENTS = 4096


def _dtype(rng: np.random.Generator, opcode: str) -> str:
    dtypes = LAYOUT_DTYPES[opcode]
    return str(dtypes[int(rng.integers(0, len(dtypes)))])


def _data(rng: np.random.Generator, dtype: str, shape: Sequence[int]) -> np.ndarray:
    shape = tuple(shape)
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32) * np.float32(10)
    info = np.iinfo(np.dtype(dtype))
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64).astype(dtype)


def _quant(rng: np.random.Generator, dtype: str) -> dict[str, object]:
    if dtype == "int8":
        return {"scale": rand_scale(rng), "zero_point": rand_zp(rng)}
    if dtype == "int16":
        return {"scale": rand_scale(rng, 1e-5, 1e-2), "zero_point": 0}
    return {}


def _io(g: GraphBuilder, rng: np.random.Generator, dtype: str, in_shape: Sequence[int],
        out_shapes: Sequence[Sequence[int]]) -> tuple[int, np.ndarray, list[int]]:
    q = _quant(rng, dtype)
    x = g.add_tensor(tuple(in_shape), dtype, **q)
    ys = [g.add_tensor(tuple(s), dtype, **q) for s in out_shapes]
    return x, _data(rng, dtype, in_shape), ys


def _shape(rng: np.random.Generator, lo: int, hi: int, max_dim: int = 6) -> list[int]:
    while True:
        shape = [int(rng.integers(1, max_dim + 1)) for _ in range(int(rng.integers(lo, hi + 1)))]
        if int(np.prod(shape)) <= MAX_CASE_ELEMENTS:
            return shape


def _params(g: GraphBuilder, rng: np.random.Generator, opcode: str,
            *values: object) -> list[int]:
    """Constant parameter tensors, all int32 or (where TFLM takes it) all int64."""
    wide = opcode in INT64_PARAMS and rng.random() < 0.3
    return [g.add_constant(np.array(v, dtype=np.int64 if wide else np.int32)) for v in values]


def gen_transpose(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "TRANSPOSE")
    shape = _shape(rng, 1, 5, 5)
    perm = [int(p) for p in rng.permutation(len(shape))]
    x, data, (y,) = _io(g, rng, dtype, shape, [[shape[p] for p in perm]])
    g.add_op("TRANSPOSE", [x, *_params(g, rng, "TRANSPOSE", perm)], [y], {})
    return Case(((x, data),), (y,), f"{dtype} {shape} perm {perm}")


def gen_slice(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "SLICE")
    shape = _shape(rng, 1, 5, 7)
    begin = [int(rng.integers(0, d)) for d in shape]
    size = [int(rng.integers(1, d - b + 1)) if rng.random() < 0.8 else -1
            for d, b in zip(shape, begin, strict=True)]
    out = [d - b if s == -1 else s for d, b, s in zip(shape, begin, size, strict=True)]
    x, data, (y,) = _io(g, rng, dtype, shape, [out])
    g.add_op("SLICE", [x, *_params(g, rng, "SLICE", begin, size)],
             [y], {})
    return Case(((x, data),), (y,), f"{dtype} {shape} begin {begin} size {size}")


def gen_strided_slice(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "STRIDED_SLICE")
    while True:
        shape = _shape(rng, 1, STRIDED_SLICE_MAX_DIMS, 7)
        rank = len(shape)
        strides = [int(rng.choice([1, 1, 2, 3, -1, -2])) for _ in range(rank)]
        begin = [int(rng.integers(-d - 2, d + 2)) for d in shape]
        end = [int(rng.integers(-d - 2, d + 2)) for d in shape]
        bits = (1 << rank) - 1
        opts = {"begin_mask": int(rng.integers(0, bits + 1)) if rng.random() < 0.4 else 0,
                "end_mask": int(rng.integers(0, bits + 1)) if rng.random() < 0.4 else 0,
                "shrink_axis_mask": (int(rng.integers(0, bits + 1)) if rng.random() < 0.3
                                     else 0)}
        shrink = int(opts["shrink_axis_mask"])
        for i in range(rank):       # shrunk axes take one valid element
            if shrink & (1 << i):
                begin[i] = int(rng.integers(-shape[i], shape[i]))
                strides[i] = 1
        ranges = strided_slice_ranges(shape, begin, end, strides, opts)
        out = [c for i, (_, _, c) in enumerate(ranges) if not shrink & (1 << i)]
        if all(c > 0 for _, _, c in ranges):
            break
    x, data, (y,) = _io(g, rng, dtype, shape, [out])
    params = _params(g, rng, "STRIDED_SLICE", begin, end, strides)
    g.add_op("STRIDED_SLICE", [x, *params], [y], opts)
    return Case(((x, data),), (y,),
                f"{dtype} {shape} [{begin}:{end}:{strides}] {opts} -> {out}")


def _split_case(g: GraphBuilder, rng: np.random.Generator, opcode: str) -> Case:
    dtype = _dtype(rng, opcode)
    shape = _shape(rng, 1, 4, 6)
    axis = int(rng.integers(0, len(shape)))
    neg = axis - len(shape) if rng.random() < 0.3 else axis
    if opcode == "UNPACK":
        outs = [shape[:axis] + shape[axis + 1:]] * shape[axis]
    elif opcode == "SPLIT":
        divisors = [k for k in range(1, shape[axis] + 1) if shape[axis] % k == 0]
        n = int(rng.choice(divisors))
        outs = [shape[:axis] + [shape[axis] // n] + shape[axis + 1:]] * n
    else:
        cuts = sorted(int(c) for c in rng.choice(np.arange(1, shape[axis]),
                                                 size=int(rng.integers(0, shape[axis])),
                                                 replace=False)) if shape[axis] > 1 else []
        sizes = np.diff([0, *cuts, shape[axis]]).tolist()
        outs = [shape[:axis] + [int(s)] + shape[axis + 1:] for s in sizes]
    x, data, ys = _io(g, rng, dtype, shape, outs)
    if opcode == "SPLIT":
        g.add_op("SPLIT", [g.add_constant(np.array([neg], dtype=np.int32)), x], ys,
                 {"num_splits": len(ys)})
    elif opcode == "SPLIT_V":
        sizes = [o[axis] for o in outs]
        if len(sizes) > 1 and rng.random() < 0.3:
            sizes[int(rng.integers(0, len(sizes)))] = -1        # "the rest"
        g.add_op("SPLIT_V", [x, *_params(g, rng, opcode, sizes),
                             g.add_constant(np.array([neg], dtype=np.int32))], ys,
                 {"num_splits": len(ys)})
    else:
        g.add_op("UNPACK", [x], ys, {"num": len(ys), "axis": neg})
    return Case(((x, data),), tuple(ys), f"{dtype} {shape} axis {neg} into {len(ys)}")


def gen_split(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _split_case(g, rng, "SPLIT")


def gen_split_v(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _split_case(g, rng, "SPLIT_V")


def gen_unpack(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _split_case(g, rng, "UNPACK")


def gen_pack(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "PACK")
    shape = _shape(rng, 1, 4, 5)
    n = int(rng.integers(1, 5))
    axis = int(rng.integers(0, len(shape) + 1))
    out = shape[:axis] + [n] + shape[axis:]
    q = _quant(rng, dtype)
    xs = [g.add_tensor(tuple(shape), dtype, **q) for _ in range(n)]
    y = g.add_tensor(tuple(out), dtype, **q)
    neg = axis - len(out) if rng.random() < 0.3 else axis
    g.add_op("PACK", xs, [y], {"values_count": n, "axis": neg})
    return Case(tuple((x, _data(rng, dtype, shape)) for x in xs), (y,),
                f"{dtype} {n} x {shape} axis {neg}")


def _block_shape(rng: np.random.Generator) -> tuple[int, int, int, int, int]:
    b = int(rng.integers(1, 4))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4)),
            int(rng.integers(1, 5)), b)


def gen_space_to_depth(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "SPACE_TO_DEPTH")
    n, h, w, c, b = _block_shape(rng)
    shape = [n, h * b, w * b, c]
    x, data, (y,) = _io(g, rng, dtype, shape, [[n, h, w, c * b * b]])
    g.add_op("SPACE_TO_DEPTH", [x], [y], {"block_size": b})
    return Case(((x, data),), (y,), f"{dtype} {shape} block {b}")


def gen_depth_to_space(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "DEPTH_TO_SPACE")
    n, h, w, c, b = _block_shape(rng)
    shape = [n, h, w, c * b * b]
    x, data, (y,) = _io(g, rng, dtype, shape, [[n, h * b, w * b, c]])
    g.add_op("DEPTH_TO_SPACE", [x], [y], {"block_size": b})
    return Case(((x, data),), (y,), f"{dtype} {shape} block {b}")


def gen_batch_to_space(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "BATCH_TO_SPACE_ND")
    four = rng.random() < 0.75
    ob, h, w, c = (int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 5)),
                   int(rng.integers(1, 4)))
    bh, bw = int(rng.integers(1, 4)), (int(rng.integers(1, 4)) if four else 1)
    crops = [int(rng.integers(0, bh)), int(rng.integers(0, bh))]
    if four:
        crops += [int(rng.integers(0, bw)), int(rng.integers(0, bw))]
    oh, ow = h * bh - crops[0] - crops[1], w * bw - (crops[2] + crops[3] if four else 0)
    if oh < 1 or ow < 1:
        crops = [0] * len(crops)
        oh, ow = h * bh, w * bw
    shape = [ob * bh * bw, h, w, c] if four else [ob * bh, h, c]
    out = [ob, oh, ow, c] if four else [ob, oh, c]
    block = [bh, bw] if four else [bh]
    x, data, (y,) = _io(g, rng, dtype, shape, [out])
    g.add_op("BATCH_TO_SPACE_ND", [x, *_params(g, rng, "BATCH_TO_SPACE_ND", block,
                                                  np.reshape(crops, (-1, 2)))], [y], {})
    return Case(((x, data),), (y,), f"{dtype} {shape} block {block} crops {crops}")


def gen_space_to_batch(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "SPACE_TO_BATCH_ND")
    four = rng.random() < 0.75
    ib, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    bh, bw = int(rng.integers(1, 4)), (int(rng.integers(1, 4)) if four else 1)
    oh, ow = int(rng.integers(1, 5)), (int(rng.integers(1, 5)) if four else 1)
    # no padding: the interpreter's pad value is undefined (space_to_batch_padding)
    ih, pt, pb = oh * bh, 0, 0
    iw, pl, pr = (ow * bw, 0, 0) if four else (1, 0, 0)
    shape = [ib, ih, iw, c] if four else [ib, ih, c]
    out = [ib * bh * bw, oh, ow, c] if four else [ib * bh, oh, c]
    block = [bh, bw] if four else [bh]
    pads = [[pt, pb], [pl, pr]] if four else [[pt, pb]]
    x, data, (y,) = _io(g, rng, dtype, shape, [out])
    g.add_op("SPACE_TO_BATCH_ND", [x, *_params(g, rng, "SPACE_TO_BATCH_ND", block, pads)],
             [y], {})
    return Case(((x, data),), (y,), f"{dtype} {shape} block {block} pads {pads}")


def gen_mirror_pad(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "MIRROR_PAD")
    shape = _shape(rng, 1, 4, 5)
    mode = str(rng.choice(["REFLECT", "SYMMETRIC"]))
    limit = [d - (1 if mode == "REFLECT" else 0) for d in shape]
    pads = [[int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1))] for m in limit]
    out = [d + a + b for d, (a, b) in zip(shape, pads, strict=True)]
    x, data, (y,) = _io(g, rng, dtype, shape, [out])
    g.add_op("MIRROR_PAD", [x, *_params(g, rng, "MIRROR_PAD", pads)], [y], {"mode": mode})
    return Case(((x, data),), (y,), f"{dtype} {shape} {mode} pads {pads}")


def gen_resize_nearest(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "RESIZE_NEAREST_NEIGHBOR")
    n, h, w, c = (int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                  int(rng.integers(1, 4)))
    size = [int(rng.integers(1, 17)), int(rng.integers(1, 17))]
    align = bool(rng.random() < 0.3)
    half = bool(rng.random() < 0.5) and not align
    x, data, (y,) = _io(g, rng, dtype, [n, h, w, c], [[n, *size, c]])
    g.add_op("RESIZE_NEAREST_NEIGHBOR", [x, g.add_constant(np.array(size, dtype=np.int32))],
             [y], {"align_corners": align, "half_pixel_centers": half})
    return Case(((x, data),), (y,),
                f"{dtype} {[n, h, w, c]} -> {size} align={align} half={half}")


def gen_gather(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "GATHER")
    shape = _shape(rng, 1, 4, 5)
    rank = len(shape)
    axis = int(rng.integers(0, rank))
    bd = int(rng.integers(0, axis + 1)) if rng.random() < 0.3 else 0
    idx_shape = shape[:bd] + [int(rng.integers(1, 4)) for _ in range(int(rng.integers(0, 3)))]
    indices = rng.integers(0, shape[axis], size=tuple(idx_shape))
    out = shape[:axis] + idx_shape[bd:] + shape[axis + 1:]
    q = _quant(rng, dtype)
    data = _data(rng, dtype, shape)
    # a constant table (an embedding lookup) with its indices a model input; or the
    # indices alone a model input (the interpreter sets no 0-D inputs)
    table = bool(idx_shape) and rng.random() < 0.3
    runtime = table or (bool(idx_shape) and rng.random() < 0.5)
    x = g.add_constant(data, dtype, **q) if table else g.add_tensor(tuple(shape), dtype, **q)
    y = g.add_tensor(tuple(out), dtype, **q)
    idx_dtype = "int32"                     # TFLM's GATHER fails on int64 indices
    inputs: list[tuple[int, np.ndarray]] = [] if table else [(x, data)]
    if runtime:
        it = g.add_tensor(tuple(idx_shape), idx_dtype)
        inputs.append((it, indices.astype(idx_dtype)))
    else:
        it = g.add_constant(indices.astype(idx_dtype))
    neg_axis = axis - rank if rng.random() < 0.3 else axis
    g.add_op("GATHER", [x, it], [y], {"axis": neg_axis, "batch_dims": bd})
    return Case(tuple(inputs), (y,),
                f"{dtype} {shape}{' constant' if table else ''} axis {neg_axis} batch_dims {bd} "
                f"indices {idx_shape}{' input' if runtime else ''}")


CASES: dict[str, CaseGen] = {
    "TRANSPOSE": gen_transpose,
    "SLICE": gen_slice,
    "STRIDED_SLICE": gen_strided_slice,
    "SPLIT": gen_split,
    "SPLIT_V": gen_split_v,
    "UNPACK": gen_unpack,
    "PACK": gen_pack,
    "SPACE_TO_DEPTH": gen_space_to_depth,
    "DEPTH_TO_SPACE": gen_depth_to_space,
    "BATCH_TO_SPACE_ND": gen_batch_to_space,
    "SPACE_TO_BATCH_ND": gen_space_to_batch,
    "MIRROR_PAD": gen_mirror_pad,
    "RESIZE_NEAREST_NEIGHBOR": gen_resize_nearest,
    "GATHER": gen_gather,
}
