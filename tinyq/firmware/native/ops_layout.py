"""Data-movement ops: TRANSPOSE, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK,
SPACE_TO_DEPTH, DEPTH_TO_SPACE, BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND, MIRROR_PAD,
RESIZE_NEAREST_NEIGHBOR and GATHER.

They only move elements, so one C kernel serves every dtype TFLM accepts: which
input element each output element copies is worked out here, from the constant
parameters, with the index arithmetic of TFLM's reference kernels, and handed to
``tq_gather_nd`` as one small offset table per output dimension (separable:
the input offset is the sum of one entry per dimension). SPLIT, SPLIT_V and
UNPACK cut rows (``tq_split``), PACK reuses CONCATENATION's ``tq_concat``,
GATHER (whose indices may be computed at run time) has ``tq_gather``, and
SPACE_TO_BATCH_ND (whose padding test couples two dims) ``tq_space_to_batch``.

Each op's ``_<op>_tables`` returns None when its parameters are not constant
or not what TFLM accepts; the ``layout_params`` constraint reports that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tinyq.firmware.native.lower import (
    Call,
    CExpr,
    LowerContext,
    Lowering,
    Sig,
    TensorArg,
    TensorListArg,
    _t,
    constraint,
    scale_zp,
)
from tinyq.model import ir

#: dims ``tq_gather_nd`` loops over (TQ_LAYOUT_MAX_DIMS in tq_layout.h)
MAX_DIMS = 6
#: offsets are int32 in the kernel: inputs must have fewer elements than this
MAX_ELEMENTS = (1 << 31) - 1

Tables = list[np.ndarray]           # one int64 offset array per output dim, -1: fill
Plan = Callable[[ir.Model, ir.Operator], "Tables | None"]


def _strides(shape: Sequence[int]) -> list[int]:
    out, acc = [1] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= int(shape[i])
    return out


def _ramp(count: int, stride: int, start: int = 0) -> np.ndarray:
    return start + stride * np.arange(count, dtype=np.int64)


def _const_ints(model: ir.Model, op: ir.Operator, pos: int) -> list[int] | None:
    t = _t(model, op, pos)
    if t is None or not t.is_constant or t.dtype not in ("int32", "int64"):
        return None
    return [int(v) for v in t.array().reshape(-1)]


def _affine(t: np.ndarray) -> int | None:
    """The stride of an evenly spaced table starting at 0 (None if it is not one)."""
    if len(t) == 0 or t[0] != 0:
        return None
    step = int(t[1]) if len(t) > 1 else 0
    return step if np.array_equal(t, _ramp(len(t), step)) else None


def compact(tables: Tables) -> Tables:
    """Drop size-1 dims (their offset moves into another table) and merge evenly
    spaced neighbours, so the kernel copies long rows with few loop levels."""
    shift, kept = 0, []
    for t in tables:
        if len(t) == 1 and t[0] >= 0:
            shift += int(t[0])
        else:
            kept.append(t.copy())
    merged: Tables = []
    for t in kept:
        if merged:
            a, b = _affine(merged[-1]), _affine(t)
            if a is not None and b is not None and a == len(t) * b:
                merged[-1] = _ramp(len(merged[-1]) * len(t), b)
                continue
        merged.append(t)
    if not merged:
        merged = [np.array([0], dtype=np.int64)]
    for t in merged:
        if (t >= 0).all():
            t += shift
            break
    else:
        merged.insert(0, np.array([shift], dtype=np.int64))
    return merged


def _gather_nd_call(ctx: LowerContext, x: ir.Tensor, y: ir.Tensor, tables: Tables,
                    what: str, fill: bytes | None = None) -> Call:
    tables = compact(tables)
    tables = [np.zeros(1, dtype=np.int64)] * (MAX_DIMS - len(tables)) + tables
    dims = [len(t) for t in tables]
    inner_run = int(np.array_equal(tables[-1], _ramp(dims[-1], 1)))
    fill_ref: CExpr | object = CExpr("NULL")
    if fill is not None:
        fill_ref = ctx.array("fill", "uint8_t", np.frombuffer(fill, dtype=np.uint8))
    return Call(
        "tq_gather_nd", "tq_gather_nd_params",
        params=(("elem", y.np_dtype.itemsize),
                ("dims", CExpr("{" + ", ".join(str(d) for d in dims) + "}")),
                ("inner_run", inner_run),
                ("offsets", ctx.array("offsets", "int32_t", np.concatenate(tables))),
                ("fill", fill_ref)),  # type: ignore[arg-type]
        args=(TensorArg(x.index), TensorArg(y.index)),
        comment=what)


# ----------------------------------------------------------------------------- tables per op


#: dims TFLM's TRANSPOSE and SLICE take
TRANSPOSE_MAX_DIMS = SLICE_MAX_DIMS = 5


def _transpose_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, perm = _t(model, op, 0), _const_ints(model, op, 1)
    if x is None or perm is None or sorted(perm) != list(range(len(x.shape))) \
            or len(x.shape) > TRANSPOSE_MAX_DIMS:
        return None
    st = _strides(x.shape)
    return [_ramp(x.shape[p], st[p]) for p in perm]


def _slice_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, begin, size = _t(model, op, 0), _const_ints(model, op, 1), _const_ints(model, op, 2)
    if x is None or begin is None or size is None or len(x.shape) > SLICE_MAX_DIMS \
            or not len(begin) == len(size) == len(x.shape):
        return None
    st, tables = _strides(x.shape), []
    for d, b, s, stride in zip(x.shape, begin, size, st, strict=True):
        s = d - b if s == -1 else s
        if not (0 <= b and 0 <= s and b + s <= d):
            return None
        tables.append(_ramp(s, stride, b * stride))
    return tables


#: dims TFLM's STRIDED_SLICE takes (its reference code pads to 5-D, but the
#: tflite-micro interpreter refuses every 5-D input at AllocateTensors)
STRIDED_SLICE_MAX_DIMS = 4


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else lo if v < lo else v


def strided_slice_ranges(shape: Sequence[int], begin: Sequence[int], end: Sequence[int],
                         strides: Sequence[int], options: dict[str, object]
                         ) -> list[tuple[int, int, int]]:
    """(start, stride, count) per input dim, as TFLM's StridedSliceStartForAxis and
    StridedSliceEndForAxis compute them (masks, negative indices, clamping)."""
    begin_mask = int(options.get("begin_mask", 0) or 0)
    end_mask = int(options.get("end_mask", 0) or 0)
    shrink = int(options.get("shrink_axis_mask", 0) or 0)
    out = []
    for axis, size in enumerate(shape):
        stride = strides[axis]
        start = begin[axis] + size if begin[axis] < 0 else begin[axis]
        start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
        if begin_mask & (1 << axis):
            start = 0 if stride > 0 else size - 1
        if shrink & (1 << axis):
            stop = start if start >= size else start + 1
        else:
            stop = end[axis] + size if end[axis] < 0 else end[axis]
            stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
            if end_mask & (1 << axis):
                stop = size if stride > 0 else -1
        count = (max(0, -(-(stop - start) // stride)) if stride > 0
                 else max(0, -(-(start - stop) // -stride)))
        out.append((start, stride, count))
    return out


def _strided_slice_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x = _t(model, op, 0)
    b, e, s = (_const_ints(model, op, i) for i in (1, 2, 3))
    o = dict(op.options)
    if (x is None or b is None or e is None or s is None
            or not len(b) == len(e) == len(s) == len(x.shape)
            or len(x.shape) > STRIDED_SLICE_MAX_DIMS or 0 in s
            or int(o.get("ellipsis_mask", 0) or 0) or int(o.get("new_axis_mask", 0) or 0)
            or o.get("offset")):        # TFLM's kernel ignores offset: refuse, not guess
        return None
    ranges = strided_slice_ranges(x.shape, b, e, s, o)
    st = _strides(x.shape)
    y = model.tensors[op.outputs[0]]
    shrink = int(o.get("shrink_axis_mask", 0) or 0)
    shape = [c for i, (_, _, c) in enumerate(ranges) if not shrink & (1 << i)]
    if int(np.prod(shape, dtype=np.int64)) != y.size or (
            y.size and [d for d in y.shape if d != 1] != [d for d in shape if d != 1]):
        return None
    return [_ramp(c, stride * st[i], start * st[i])
            for i, (start, stride, c) in enumerate(ranges)]


def _block(op: ir.Operator) -> int:
    return int(op.options.get("block_size", 0) or 0)


def _space_to_depth_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, b = _t(model, op, 0), _block(op)
    if x is None or len(x.shape) != 4 or b < 1 or x.shape[1] % b or x.shape[2] % b:
        return None
    n, h, w, c = x.shape
    return [_ramp(n, h * w * c), _ramp(h // b, b * w * c), _ramp(w // b, b * c),
            _ramp(b, w * c), _ramp(b, c), _ramp(c, 1)]


def _depth_to_space_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, b = _t(model, op, 0), _block(op)
    if x is None or len(x.shape) != 4 or b < 1 or x.shape[3] % (b * b):
        return None
    n, h, w, d = x.shape
    c = d // (b * b)
    return [_ramp(n, h * w * d), _ramp(h, w * d), _ramp(b, b * c), _ramp(w, d), _ramp(b, c),
            _ramp(c, 1)]


def _batch_to_space_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, block, crops = _t(model, op, 0), _const_ints(model, op, 1), _const_ints(model, op, 2)
    if x is None or block is None or crops is None or len(x.shape) not in (3, 4):
        return None
    spatial = len(x.shape) - 2
    if len(block) != spatial or len(crops) != 2 * spatial or min(block) < 1 or min(crops) < 0:
        return None
    shape = list(x.shape) if spatial == 2 else [x.shape[0], x.shape[1], 1, x.shape[2]]
    bh, bw = block[0], (block[1] if spatial == 2 else 1)
    top, left = crops[0], (crops[2] if spatial == 2 else 0)
    ib, ih, iw, c = shape
    if ib % (bh * bw):
        return None
    ob = ib // (bh * bw)
    oh = ih * bh - top - crops[1]
    ow = iw * bw - left - (crops[3] if spatial == 2 else 0)
    if oh < 0 or ow < 0:
        return None
    img = ih * iw * c
    rows = [((h + top) % bh) * bw * ob * img + ((h + top) // bh) * iw * c for h in range(oh)]
    cols = [((w + left) % bw) * ob * img + ((w + left) // bw) * c for w in range(ow)]
    return [_ramp(ob, img), np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
            _ramp(c, 1)]


def mirror_index(i: int, before: int, size: int, offset: int) -> int:
    """TFLM mirror_pad.cc GetInputDimension: output index -> input index on one dim."""
    if i < before:
        original = before + offset - 1
        return original - min(i, original - offset)
    i -= before
    if i >= size:
        i -= size
        original = size - (1 + offset)
        return original - min(i, original)
    return i


def _mirror_pad_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, pads = _t(model, op, 0), _const_ints(model, op, 1)
    mode = str(op.options.get("mode", "REFLECT"))
    if x is None or pads is None or len(pads) != 2 * len(x.shape) or min(pads, default=0) < 0 \
            or len(x.shape) > MAX_DIMS:
        return None
    offset = 1 if mode in ("REFLECT", "0") else 0
    st, tables = _strides(x.shape), []
    for axis, size in enumerate(x.shape):
        before, after = pads[2 * axis], pads[2 * axis + 1]
        if max(before, after) > size - offset:      # TFLM's limit (and numpy's)
            return None
        tables.append(np.array([mirror_index(i, before, size, offset) * st[axis]
                                for i in range(size + before + after)], dtype=np.int64))
    return tables


def nearest_index(i: int, in_size: int, out_size: int, align_corners: bool,
                  half_pixel: bool) -> int:
    """TFLM resize_nearest_neighbor GetNearestNeighbor, in float32 as TFLM computes it."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    value = (f(i) + f(0.5 if half_pixel else 0.0)) * scale
    v = float(value)                # exact: TfLiteRound (half away from zero) or floor
    idx = math.floor(v) + (1 if align_corners and v - math.floor(v) >= 0.5 else 0)
    idx = min(idx, in_size - 1)
    return max(0, idx) if half_pixel else idx


def _resize_nearest_tables(model: ir.Model, op: ir.Operator) -> Tables | None:
    x, size = _t(model, op, 0), _const_ints(model, op, 1)
    y = model.tensors[op.outputs[0]]
    if x is None or size is None or len(x.shape) != 4 or len(size) != 2 or min(size) < 1 \
            or list(y.shape) != [x.shape[0], size[0], size[1], x.shape[3]]:
        return None
    align = bool(op.options.get("align_corners", False))
    half = bool(op.options.get("half_pixel_centers", False))
    n, h, w, c = x.shape
    rows = [nearest_index(i, h, size[0], align, half) * w * c for i in range(size[0])]
    cols = [nearest_index(i, w, size[1], align, half) * c for i in range(size[1])]
    return [_ramp(n, h * w * c), np.array(rows, dtype=np.int64),
            np.array(cols, dtype=np.int64), _ramp(c, 1)]


_TABLES: dict[str, Plan] = {
    "TRANSPOSE": _transpose_tables,
    "SLICE": _slice_tables,
    "STRIDED_SLICE": _strided_slice_tables,
    "SPACE_TO_DEPTH": _space_to_depth_tables,
    "DEPTH_TO_SPACE": _depth_to_space_tables,
    "BATCH_TO_SPACE_ND": _batch_to_space_tables,
    "MIRROR_PAD": _mirror_pad_tables,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest_tables,
}


def _lower_table_op(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    tables = _TABLES[op.opcode](ctx.model, op)
    assert tables is not None
    return _gather_nd_call(ctx, x, y, tables, f"{op.opcode} {list(x.shape)} -> {list(y.shape)}")


# ----------------------------------------------------------------------------- split, pack


def _axis(value: int, rank: int) -> int | None:
    value = value + rank if value < 0 else value
    return value if 0 <= value < rank else None


def _split_layout(model: ir.Model, op: ir.Operator) -> tuple[int, list[int]] | None:
    """(outer rows, bytes of each output per row) for SPLIT, SPLIT_V and UNPACK."""
    if op.opcode == "SPLIT":
        x, axes = _t(model, op, 1), _const_ints(model, op, 0)
    elif op.opcode == "SPLIT_V":
        x, axes = _t(model, op, 0), _const_ints(model, op, 2)
    else:
        x, axes = _t(model, op, 0), [int(op.options.get("axis", 0) or 0)]
    if x is None or axes is None or len(axes) != 1 or not x.shape:
        return None
    axis = _axis(axes[0], len(x.shape))
    if axis is None:
        return None
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    ys = [model.tensors[i] for i in op.outputs]
    if outer == 0 or any(y.dtype != x.dtype for y in ys):
        return None
    sizes = [y.size // outer * y.np_dtype.itemsize for y in ys]
    if any(y.size % outer for y in ys) or sum(sizes) * outer != x.nbytes:
        return None
    if op.opcode == "UNPACK" and (len(ys) != x.shape[axis] or len(set(sizes)) > 1):
        return None
    if op.opcode == "SPLIT" and len(set(sizes)) > 1:
        return None
    return outer, sizes


def _lower_split(ctx: LowerContext, op: ir.Operator) -> Call:
    x = ctx.input(op, 1 if op.opcode == "SPLIT" else 0)
    layout = _split_layout(ctx.model, op)
    assert x is not None and layout is not None
    outer, sizes = layout
    return Call("tq_split", "tq_split_params",
                params=(("outer", outer), ("count", len(sizes)),
                        ("sizes", ctx.array("sizes", "int32_t", np.array(sizes)))),
                args=(TensorArg(x.index), TensorListArg(tuple(op.outputs))),
                comment=f"{len(sizes)} outputs, {outer} rows")


def _pack_layout(model: ir.Model, op: ir.Operator) -> tuple[int, int] | None:
    """(outer rows, bytes of each input per row) for PACK."""
    y = model.tensors[op.outputs[0]]
    xs = [model.tensors[i] for i in op.inputs]
    axis = _axis(int(op.options.get("axis", 0) or 0), len(y.shape))
    if axis is None or y.shape[axis] != len(xs) or any(
            x.dtype != y.dtype or x.size * len(xs) != y.size for x in xs):
        return None
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    return outer, int(np.prod(y.shape[axis + 1:], dtype=np.int64)) * y.np_dtype.itemsize


def _lower_pack(ctx: LowerContext, op: ir.Operator) -> Call:
    layout = _pack_layout(ctx.model, op)
    assert layout is not None
    outer, size = layout
    return Call("tq_concat", "tq_concat_params",
                params=(("outer", outer), ("count", len(op.inputs)),
                        ("sizes", ctx.array("sizes", "int32_t",
                                            np.full(len(op.inputs), size)))),
                args=(TensorListArg(tuple(op.inputs)), TensorArg(op.outputs[0])),
                comment=f"{len(op.inputs)} inputs stacked")


# ----------------------------------------------------------------------------- space to batch


def _space_to_batch_layout(model: ir.Model, op: ir.Operator) -> dict[str, int] | None:
    """tq_space_to_batch_params for SPACE_TO_BATCH_ND (3-D or 4-D, constant block and
    paddings; the kernel pads with 0, but space_to_batch_padding refuses padding)."""
    x, block, pads = _t(model, op, 0), _const_ints(model, op, 1), _const_ints(model, op, 2)
    y = model.tensors[op.outputs[0]]
    if x is None or block is None or pads is None or len(x.shape) not in (3, 4) \
            or len(y.shape) != len(x.shape):
        return None
    four = len(x.shape) == 4
    spatial = 2 if four else 1
    if len(block) != spatial or len(pads) != 2 * spatial or min(block) < 1 or min(pads) < 0:
        return None
    ib, ih, iw = x.shape[0], x.shape[1], (x.shape[2] if four else 1)
    bh, bw = block[0], (block[1] if four else 1)
    pt, pb = pads[0], pads[1]
    pl, pr = (pads[2], pads[3]) if four else (0, 0)
    if (ih + pt + pb) % bh or (iw + pl + pr) % bw:
        return None
    want = [ib * bh * bw, (ih + pt + pb) // bh] + ([(iw + pl + pr) // bw] if four else []) \
        + [x.shape[-1]]
    if list(y.shape) != want:
        return None
    return {"in_b": ib, "in_h": ih, "in_w": iw, "out_b": want[0], "out_h": want[1],
            "out_w": want[2] if four else 1, "depth_bytes": x.shape[-1] * x.np_dtype.itemsize,
            "block_h": bh, "block_w": bw, "pad_top": pt, "pad_left": pl, "fill": 0}


def _lower_space_to_batch(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    layout = _space_to_batch_layout(ctx.model, op)
    assert x is not None and layout is not None
    return Call("tq_space_to_batch", "tq_space_to_batch_params",
                params=tuple(layout.items()),
                args=(TensorArg(x.index), TensorArg(y.index)),
                comment=f"{list(x.shape)} -> {list(y.shape)}")


# ----------------------------------------------------------------------------- gather


def _gather_layout(model: ir.Model, op: ir.Operator) -> tuple[int, int, int, int, int] | None:
    """(batch, outer, axis size, inner elements, indices per batch) as TFLM's gather.cc."""
    x, idx = _t(model, op, 0), _t(model, op, 1)
    y = model.tensors[op.outputs[0]]
    if x is None or idx is None:
        return None
    rank = len(x.shape)
    axis = _axis(int(op.options.get("axis", 0) or 0), rank)
    bd = int(op.options.get("batch_dims", 0) or 0)
    bd = bd + len(idx.shape) if bd < 0 else bd
    if axis is None or not 0 <= bd <= min(axis, len(idx.shape)) \
            or list(x.shape[:bd]) != list(idx.shape[:bd]):
        return None
    want = list(x.shape[:axis]) + list(idx.shape[bd:]) + list(x.shape[axis + 1:])
    if list(y.shape) != want:
        return None
    batch = int(np.prod(x.shape[:bd], dtype=np.int64))
    outer = int(np.prod(x.shape[bd:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    count = int(np.prod(idx.shape[bd:], dtype=np.int64))
    return batch, outer, x.shape[axis], inner, count


def _lower_gather(ctx: LowerContext, op: ir.Operator) -> Call:
    x, idx, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    layout = _gather_layout(ctx.model, op)
    assert x is not None and idx is not None and layout is not None
    batch, outer, axis, inner, count = layout
    return Call("tq_gather", "tq_gather_params",
                params=(("batch", batch), ("outer", outer), ("axis", axis),
                        ("inner_bytes", inner * y.np_dtype.itemsize), ("count", count),
                        ("index_bytes", idx.np_dtype.itemsize)),
                args=(TensorArg(x.index), TensorArg(idx.index), TensorArg(y.index)),
                comment=f"{count} of {axis} along the axis")


# ----------------------------------------------------------------------------- constraints

_LAYOUTS: dict[str, Callable[[ir.Model, ir.Operator], object]] = {
    **_TABLES, "SPLIT": _split_layout, "SPLIT_V": _split_layout, "UNPACK": _split_layout,
    "PACK": _pack_layout, "GATHER": _gather_layout, "SPACE_TO_BATCH_ND": _space_to_batch_layout,
}


@constraint(fix="give the op constant parameter tensors (shape, axis, begin/end/strides, "
                "block, crops, paddings, size) whose values TFLM accepts for the input's shape")
def layout_params(model: ir.Model, op: ir.Operator) -> bool:
    """the op's parameters are not constant, or do not fit the input and output shapes"""
    return _LAYOUTS[op.opcode](model, op) is None


@constraint(fix="keep the input's quantization (scale and zero point) on the output: the op "
                "moves values, it does not requantize them")
def layout_requantizes(model: ir.Model, op: ir.Operator) -> bool:
    """input and output quantization differ"""
    data = (op.inputs if op.opcode == "PACK" else
            op.inputs[1:2] if op.opcode == "SPLIT" else op.inputs[:1])
    ref = [scale_zp(model.tensors[i]) for i in data]
    return any(scale_zp(model.tensors[o]) != ref[0] for o in op.outputs) or len(set(ref)) > 1


@constraint(fix="pad with an explicit PAD before SPACE_TO_BATCH_ND: the values the "
                "tflite-micro interpreter writes into SPACE_TO_BATCH_ND's padding change from "
                "run to run (its pad value is never set), so no runtime can match them")
def space_to_batch_padding(model: ir.Model, op: ir.Operator) -> bool:
    """SPACE_TO_BATCH_ND has non-zero paddings"""
    pads = _const_ints(model, op, 2)
    return op.opcode == "SPACE_TO_BATCH_ND" and pads is not None and max(pads, default=0) > 0


@constraint(fix="split the tensor: the native runtime indexes tensors below 2^31 elements")
def layout_too_large(model: ir.Model, op: ir.Operator) -> bool:
    """a tensor has 2^31 or more elements"""
    return any(model.tensors[i].size > MAX_ELEMENTS for i in (*op.inputs, *op.outputs) if i >= 0)


def _sigs(dtypes: Sequence[str], extra: Sequence[str] = (), outputs: int = 1,
          variadic: bool = False) -> tuple[Sig, ...]:
    """One signature per data dtype (``extra``: the parameter tensors' dtypes)."""
    return tuple(Sig((d, *extra), (d,) * outputs, variadic=variadic) for d in dtypes)


_SOURCES = ("tq_layout.c",)
_HEADERS = ("tq_layout.h",)
_CHECKS = (layout_params, layout_requantizes, layout_too_large, space_to_batch_padding)


def _row(dtypes: tuple[Sig, ...], note: str, fn: Callable[[LowerContext, ir.Operator], Call]
         = _lower_table_op, sources: tuple[str, ...] = _SOURCES) -> Lowering:
    return Lowering(fn, sources, dtypes, _CHECKS, note, _HEADERS)


@dataclass(frozen=True)
class MultiOutSig(Sig):
    """A signature whose one output dtype repeats for every output (SPLIT, UNPACK)."""

    def matches(self, ins: Sequence[str], outs: Sequence[str]) -> bool:
        return bool(outs) and Sig(self.inputs, (outs[0],) * len(outs)).matches(ins, outs) \
            and outs[0] == self.outputs[0]

    def __str__(self) -> str:
        return f"({', '.join(self.inputs)}) -> ({self.outputs[0]}, ...)"


#: dtypes TFLM's kernels move for each op (its Prepare/Eval type switches, checked
#: against the tflite-micro interpreter by tinyq.firmware.native.opcases)
LAYOUT_DTYPES: dict[str, tuple[str, ...]] = {
    "TRANSPOSE": ("float32", "int8", "int16"),
    "SLICE": ("float32", "int8", "int16", "int32"),
    "STRIDED_SLICE": ("float32", "int8", "int16", "int32"),
    "SPLIT": ("float32", "int8", "int16", "int32"),
    "SPLIT_V": ("float32", "int8", "int16", "int32"),
    "UNPACK": ("float32", "int8", "int16", "int32"),
    "PACK": ("float32", "int8", "int16", "int32"),
    "SPACE_TO_DEPTH": ("float32", "int8"),
    "DEPTH_TO_SPACE": ("float32", "int8"),
    "BATCH_TO_SPACE_ND": ("float32", "int8"),
    "SPACE_TO_BATCH_ND": ("float32", "int8"),
    "MIRROR_PAD": ("float32", "int8"),
    "RESIZE_NEAREST_NEIGHBOR": ("float32", "int8", "int16"),
    "GATHER": ("float32", "int8"),
}
#: ops whose parameter tensors TFLM also takes as int64 (all of one op's alike; the
#: others take int32 only: int64 crashes BATCH_TO_SPACE_ND, STRIDED_SLICE refuses it,
#: TRANSPOSE reads an int64 permutation as int32 words)
INT64_PARAMS = frozenset({"SLICE", "SPLIT_V", "MIRROR_PAD"})


def _index_dtypes(opcode: str) -> tuple[str, ...]:
    return ("int32", "int64") if opcode in INT64_PARAMS else ("int32",)


def _param_sigs(opcode: str, params: int) -> tuple[Sig, ...]:
    """Data dtype, then ``params`` int32 (or int64) constant inputs (all the same type)."""
    return tuple(Sig((d, *(i,) * params), (d,)) for d in LAYOUT_DTYPES[opcode]
                 for i in _index_dtypes(opcode))


def rows() -> dict[str, Lowering]:
    """This family's rows of ``lower.LOWERINGS``."""
    d = LAYOUT_DTYPES
    return {
        "TRANSPOSE": _row(_param_sigs("TRANSPOSE", 1), "any permutation, up to 5-D"),
        "SLICE": _row(_param_sigs("SLICE", 2), "constant begin and size, up to 5-D"),
        "STRIDED_SLICE": _row(_param_sigs("STRIDED_SLICE", 3),
                              "constant begin/end/strides (negative too), begin/end/shrink "
                              "masks, up to 4-D"),
        "SPLIT": _row(tuple(MultiOutSig(("int32", t), (t,)) for t in d["SPLIT"]),
                      "constant axis", _lower_split),
        "SPLIT_V": _row(tuple(MultiOutSig((t, i, "int32"), (t,)) for t in d["SPLIT_V"]
                              for i in _index_dtypes("SPLIT_V")), "constant sizes and axis",
                        _lower_split),
        "UNPACK": _row(tuple(MultiOutSig((t,), (t,)) for t in d["UNPACK"]), "any axis",
                       _lower_split),
        "PACK": _row(tuple(Sig((t,), (t,), variadic=True) for t in d["PACK"]), "any axis",
                     _lower_pack, ("tq_common.c",)),
        "SPACE_TO_DEPTH": _row(_sigs(d["SPACE_TO_DEPTH"]), "NHWC, any block size"),
        "DEPTH_TO_SPACE": _row(_sigs(d["DEPTH_TO_SPACE"]), "NHWC, any block size"),
        "BATCH_TO_SPACE_ND": _row(_param_sigs("BATCH_TO_SPACE_ND", 2),
                                  "3-D or 4-D, constant block and crops"),
        "SPACE_TO_BATCH_ND": _row(_param_sigs("SPACE_TO_BATCH_ND", 2),
                                  "3-D or 4-D, constant block, no padding",
                                  _lower_space_to_batch),
        "MIRROR_PAD": _row(_param_sigs("MIRROR_PAD", 1), "REFLECT and SYMMETRIC"),
        "RESIZE_NEAREST_NEIGHBOR": _row(tuple(Sig((t, "int32"), (t,))
                                              for t in d["RESIZE_NEAREST_NEIGHBOR"]),
                                        "constant size, align_corners, half_pixel_centers"),
        "GATHER": _row(tuple(Sig((t, "int32"), (t,)) for t in d["GATHER"]),
                       "any axis and batch_dims; indices may be computed at run time",
                       _lower_gather),
    }
