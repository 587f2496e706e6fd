"""Comparisons and selections: MAXIMUM, MINIMUM, EQUAL, NOT_EQUAL, LESS, LESS_EQUAL,
GREATER, GREATER_EQUAL, SELECT_V2, ARG_MAX, ARG_MIN, REDUCE_MAX and REDUCE_MIN.

TFLM runs these on raw values (MAXIMUM/MINIMUM/SELECT_V2/ARG_*/REDUCE_* pick an
input element; int8 REDUCE_MAX/MIN requires the output quantized like the input),
except the int8/int16 comparisons, which first rescale both inputs to a common
scale (``ComparisonsPrepare``: ``(x - zp) * 2^8`` times the input's scale as a
multiplier below one). One kernel file serves every dtype (tq_compare.c).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinyq.firmware.native import quant
from tinyq.firmware.native.lower import (
    Call,
    CExpr,
    LowerContext,
    Lowering,
    Sig,
    TensorArg,
    _broadcast,
    _mean_axes,
    _t,
    constraint,
    reduce_layout,
    scale_zp,
)
from tinyq.firmware.native.ops_layout import layout_requantizes
from tinyq.model import ir

#: element type codes of tq_compare.h
TYPE_CODES = {"int8": "TQ_T_S8", "int16": "TQ_T_S16", "int32": "TQ_T_S32",
              "int64": "TQ_T_S64", "float32": "TQ_T_F32", "bool": "TQ_T_BOOL"}
#: opcode -> binary op code of tq_compare.h
BINARY_OPS = {"MAXIMUM": "TQ_OP_MAX", "MINIMUM": "TQ_OP_MIN", "EQUAL": "TQ_OP_EQ",
              "NOT_EQUAL": "TQ_OP_NE", "LESS": "TQ_OP_LT", "LESS_EQUAL": "TQ_OP_LE",
              "GREATER": "TQ_OP_GT", "GREATER_EQUAL": "TQ_OP_GE"}
COMPARISONS = tuple(op for op in BINARY_OPS if op not in ("MAXIMUM", "MINIMUM"))
#: dims TFLM broadcasts over when the input shapes differ (Broadcast4DSlow* for the
#: comparisons, MaximumMinimumBroadcastSlow<5>, BroadcastSelect5DSlow and
#: Broadcast(Quant)SubSlow<5> for the others; BroadcastBinaryFunction4DSlow for
#: SQUARED_DIFFERENCE, BroadcastPrelu4DSlow for PRELU)
BROADCAST_DIMS = {**{op: 4 for op in COMPARISONS}, "MAXIMUM": 5, "MINIMUM": 5,
                  "SELECT_V2": 5, "SUB": 5, "SQUARED_DIFFERENCE": 4,
                  "PRELU": 4}
#: most dims the kernels walk (TQ_MAX_DIMS)
MAX_DIMS = 6


def broadcast_geom(ctx: LowerContext, a: ir.Tensor, b: ir.Tensor, y: ir.Tensor
                   ) -> tuple[str, CExpr]:
    """The ``geom`` parameter (tq_broadcast_geom) of a two-input op: ``lower._broadcast``."""
    fields = ", ".join(f".{name} = {value.text if isinstance(value, CExpr) else value}"
                       for name, value in _broadcast(ctx, a, b, y))
    return "geom", CExpr("{" + fields + "}")


def _rescale(t: ir.Tensor) -> tuple[int, int, int]:
    """(zero point, multiplier, shift): QuantizeMultiplierSmallerThanOneExp(scale)."""
    scale, zp = scale_zp(t)
    mult, shift = quant.kernel_multiplier(float(quant.f32(scale)))
    return zp, mult, shift


def _lower_binary(ctx: LowerContext, op: ir.Operator) -> Call:
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    scaled = op.opcode in COMPARISONS and a.dtype in ("int8", "int16")
    z1, m1, s1 = _rescale(a) if scaled else (0, 0, 0)
    z2, m2, s2 = _rescale(b) if scaled else (0, 0, 0)
    return Call(
        "tq_binary", "tq_binary_params",
        params=(
            broadcast_geom(ctx, a, b, y),
            ("type", CExpr(TYPE_CODES[a.dtype])), ("op", CExpr(BINARY_OPS[op.opcode])),
            ("scaled", int(scaled)), ("in1_zp", z1), ("in1_mult", m1), ("in1_shift", s1),
            ("in2_zp", z2), ("in2_mult", m2), ("in2_shift", s2)),
        args=(TensorArg(a.index), TensorArg(b.index), TensorArg(y.index)),
        comment=f"{a.dtype}{' rescaled' if scaled else ''}")


def broadcast_strides(shape: Sequence[int], out: Sequence[int]) -> list[int]:
    """Element strides of ``shape`` walked as the (6-D, padded) ``out``: 0 where broadcast."""
    dims = [1] * (len(out) - len(shape)) + list(shape)
    strides, acc = [0] * len(out), 1
    for i in range(len(out) - 1, -1, -1):
        strides[i] = 0 if dims[i] == 1 and out[i] != 1 else acc
        acc *= dims[i]
    return strides


def _c_list(values: Sequence[int]) -> CExpr:
    return CExpr("{" + ", ".join(str(int(v)) for v in values) + "}")


def _lower_select(ctx: LowerContext, op: ir.Operator) -> Call:
    c, x, z = (ctx.input(op, i) for i in range(3))
    y = ctx.output(op)
    assert c is not None and x is not None and z is not None
    out = [1] * (MAX_DIMS - len(y.shape)) + list(y.shape)
    return Call(
        "tq_select", "tq_select_params",
        params=(("size", y.size), ("elem", y.np_dtype.itemsize), ("dims", _c_list(out)),
                ("stride_c", _c_list(broadcast_strides(c.shape, out))),
                ("stride_x", _c_list(broadcast_strides(x.shape, out))),
                ("stride_y", _c_list(broadcast_strides(z.shape, out)))),
        args=(TensorArg(c.index), TensorArg(x.index), TensorArg(z.index), TensorArg(y.index)))


def _arg_axis(model: ir.Model, op: ir.Operator) -> int | None:
    x, a = _t(model, op, 0), _t(model, op, 1)
    if x is None or a is None or not a.is_constant or a.size != 1 or not x.shape:
        return None
    axis = int(a.array().reshape(-1)[0])
    axis = axis + len(x.shape) if axis < 0 else axis
    return axis if 0 <= axis < len(x.shape) else None


def _lower_arg(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    axis = _arg_axis(ctx.model, op)
    assert x is not None and axis is not None
    return Call(
        "tq_arg_minmax", "tq_arg_params",
        params=(("outer", int(np.prod(x.shape[:axis], dtype=np.int64))),
                ("axis", x.shape[axis]),
                ("inner", int(np.prod(x.shape[axis + 1:], dtype=np.int64))),
                ("type", CExpr(TYPE_CODES[x.dtype])), ("is_max", int(op.opcode == "ARG_MAX")),
                ("out_bytes", y.np_dtype.itemsize)),
        args=(TensorArg(x.index), TensorArg(y.index)),
        comment=f"axis {axis}")


def _lower_reduce(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    axes = _mean_axes(ctx.model, op)
    assert x is not None and axes is not None
    kept, red, _ = reduce_layout(x.shape, axes)

    def padded(values: Sequence[int]) -> CExpr:
        return _c_list(list(values) + [0] * (MAX_DIMS - len(values)))

    return Call(
        "tq_reduce_minmax", "tq_reduce_params",
        params=(("n_kept", len(kept)), ("n_red", len(red)),
                ("kept_dims", padded([d for d, _ in kept])),
                ("kept_strides", padded([s for _, s in kept])),
                ("red_dims", padded([d for d, _ in red])),
                ("red_strides", padded([s for _, s in red])),
                ("type", CExpr(TYPE_CODES[x.dtype])),
                ("is_max", int(op.opcode == "REDUCE_MAX"))),
        args=(TensorArg(x.index), TensorArg(y.index)),
        comment=f"over axes {axes}")


# ----------------------------------------------------------------------------- constraints


@constraint(fix="give both inputs the same shape, or broadcast over at most 4 dims for "
                "comparisons and 5 for MAXIMUM/MINIMUM/SELECT_V2 (TFLM's limit)")
def broadcast_too_deep(model: ir.Model, op: ir.Operator) -> bool:
    """the inputs broadcast over more dims than TFLM's kernel takes"""
    ins = [model.tensors[i] for i in op.inputs if i >= 0]
    y = model.tensors[op.outputs[0]]
    same = all(tuple(t.shape) == tuple(ins[0].shape) for t in ins) \
        and op.opcode != "PRELU"                # TFLM's PRELU always walks 4-D
    limit = MAX_DIMS if same else BROADCAST_DIMS[op.opcode]
    return any(len(t.shape) > limit for t in (*ins, y))


@constraint(fix="quantize the compared int8/int16 tensors with scales below 1 (TFLM's "
                "comparison rescaling requires it)")
def compare_scale(model: ir.Model, op: ir.Operator) -> bool:
    """a quantized comparison input has a scale of 1 or more"""
    ins = [model.tensors[i] for i in op.inputs[:2]]
    return any(t.dtype in ("int8", "int16") and not 0 < scale_zp(t)[0] < 1 for t in ins)


@constraint(fix="give ARG_MAX/ARG_MIN a constant axis inside the input's rank")
def arg_axis(model: ir.Model, op: ir.Operator) -> bool:
    """the axis is not constant or out of range"""
    return _arg_axis(model, op) is None


@constraint(fix="give the reduction a constant int32 axis tensor with axes inside the "
                "input's rank, and at most 6 dims")
def reduce_axes(model: ir.Model, op: ir.Operator) -> bool:
    """the reduction axes are not constant or out of range"""
    x = _t(model, op, 0)
    return _mean_axes(model, op) is None or x is None or len(x.shape) > MAX_DIMS \
        or x.size == 0


#: dtypes TFLM runs each op on (its Eval type switch, checked against the
#: tflite-micro interpreter by tinyq.firmware.native.opcases). Left out: int64 MAXIMUM/MINIMUM
#: (the native runtime's model outputs have no int64 type, so they cannot be checked),
#: and int16 GREATER (the interpreter's Prepare never sets its int16 rescaling
#: parameters: it answers false for every pair in a fresh process, other things later).
COMPARE_DTYPES: dict[str, tuple[str, ...]] = {
    "MAXIMUM": ("float32", "int8", "int16", "int32"),
    "MINIMUM": ("float32", "int8", "int16", "int32"),
    "EQUAL": ("bool", "float32", "int8", "int32", "int64"),
    "NOT_EQUAL": ("bool", "float32", "int8", "int32", "int64"),
    "LESS": ("float32", "int8", "int32", "int64"),
    "LESS_EQUAL": ("float32", "int8", "int32", "int64"),
    "GREATER": ("float32", "int8", "int32", "int64"),
    "GREATER_EQUAL": ("float32", "int8", "int32", "int64"),
    "SELECT_V2": ("float32", "int8", "int16"),
    "ARG_MAX": ("float32", "int8"),
    "ARG_MIN": ("float32", "int8"),
    "REDUCE_MAX": ("float32", "int8"),
    "REDUCE_MIN": ("float32", "int8"),
}
#: ARG_MAX/ARG_MIN axis and output index dtype (the interpreter fails on int64 ones)
ARG_INDEX_DTYPES = ("int32",)

_SRC, _HDR = ("tq_compare.c",), ("tq_compare.h",)


def rows() -> dict[str, Lowering]:
    """This family's rows of ``lower.LOWERINGS``."""
    d = COMPARE_DTYPES
    out: dict[str, Lowering] = {}
    for name in ("MAXIMUM", "MINIMUM"):
        out[name] = Lowering(_lower_binary, _SRC, tuple(Sig((t, t), (t,)) for t in d[name]),
                             (broadcast_too_deep,), "with broadcasting", _HDR)
    for name in COMPARISONS:
        out[name] = Lowering(_lower_binary, _SRC,
                             tuple(Sig((t, t), ("bool",)) for t in d[name]),
                             (broadcast_too_deep, compare_scale),
                             "with broadcasting; int8 rescaled as TFLM does", _HDR)
    out["SELECT_V2"] = Lowering(_lower_select, _SRC,
                                tuple(Sig(("bool", t, t), (t,)) for t in d["SELECT_V2"]),
                                (broadcast_too_deep,), "with broadcasting", _HDR)
    for name in ("ARG_MAX", "ARG_MIN"):
        out[name] = Lowering(_lower_arg, _SRC,
                             tuple(Sig((t, a), (o,)) for t in d[name]
                                   for a in ARG_INDEX_DTYPES for o in ARG_INDEX_DTYPES),
                             (arg_axis,), "any axis; first index on ties", _HDR)
    for name in ("REDUCE_MAX", "REDUCE_MIN"):
        out[name] = Lowering(_lower_reduce, _SRC,
                             tuple(Sig((t, "int32"), (t,)) for t in d[name]),
                             (reduce_axes, layout_requantizes), "any axes, keep_dims or not",
                             _HDR)
    return out
