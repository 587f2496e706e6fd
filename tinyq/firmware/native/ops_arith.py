"""Arithmetic beyond ADD/MUL: SUB and SQUARED_DIFFERENCE (float32, int8, int16, int32,
with broadcasting), PRELU (float32, int8), NEG (float32) and ABS (float32, int8).

Quantized SUB follows TFLM's ``CalculateOpDataSub`` to the bit: it computes its
multipliers in float32 (unlike ADD, which uses double), with 20 bits of headroom
for int8 and 15 for int16, and every multiplier must be below one
(``QuantizeMultiplierSmallerThanOneExp`` aborts otherwise). SQUARED_DIFFERENCE
(``PrepareQuantized``) uses double, 7 bits of headroom for int8 and none for int16,
and an output multiplier that may exceed one. int8 ABS is a function of one byte:
it runs as a 256-entry table of TFLM's ``AbsEvalQuantized``.
"""

from __future__ import annotations

import numpy as np

from tinyq.firmware.native import fixedpoint, quant
from tinyq.firmware.native.lower import (
    _NONLINEAR_HEADERS,
    Call,
    CExpr,
    LowerContext,
    Lowering,
    Sig,
    TensorArg,
    _act,
    _lut_call,
    bad_activation,
    c_float,
    constraint,
    requant_range,
    scale_zp,
    unquantized,
)
from tinyq.firmware.native.ops_compare import TYPE_CODES, broadcast_geom, broadcast_too_deep
from tinyq.model import ir

#: dtypes TFLM's SUB runs (sub.cc), checked against the tflite-micro interpreter
SUB_DTYPES = ("float32", "int8", "int16", "int32")
#: headroom bits of TFLM's quantized SUB
SUB_LEFT_SHIFT = {"int8": 20, "int16": 15}
_INT_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-(1 << 31), (1 << 31) - 1)}
#: float32 clamp of each fused activation (CalculateActivationRange<float>)
_FLOAT_RANGE = {"NONE": (float(np.finfo(np.float32).min), float(np.finfo(np.float32).max)),
                "RELU": (0.0, float(np.finfo(np.float32).max)), "RELU6": (0.0, 6.0),
                "RELU_N1_TO_1": (-1.0, 1.0)}


def sub_multipliers(s1: float, s2: float, so: float, left_shift: int
                    ) -> tuple[tuple[int, int], ...]:
    """(multiplier, shift) for input 1, input 2 and the output, in float32 as TFLM does.

    Raises ``quant.MultiplierRangeError`` when one is not below one (TFLM aborts)."""
    f = np.float32
    twice = f(2) * max(f(s1), f(s2))
    reals = (float(f(s1) / twice), float(f(s2) / twice),
             float(twice / (f(1 << left_shift) * f(so))))
    if not all(0 < r < 1 for r in reals):
        raise quant.MultiplierRangeError("a SUB multiplier is not below one")
    return tuple(quant.kernel_multiplier(r) for r in reals)


def _sub_like_call(ctx: LowerContext, op: ir.Operator, kernel: str, left_shift: int,
                   mults: tuple[tuple[int, int], ...], act: tuple[int, int],
                   float_act: tuple[float, float]) -> Call:
    """The tq_sub_params call SUB and SQUARED_DIFFERENCE share."""
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    (m1, s1), (m2, s2), (mo, so) = mults
    return Call(
        kernel, "tq_sub_params",
        params=(
            broadcast_geom(ctx, a, b, y), ("type", CExpr(TYPE_CODES[y.dtype])),
            ("in1_zp", scale_zp(a)[1]), ("in2_zp", scale_zp(b)[1]), ("out_zp", scale_zp(y)[1]),
            ("left_shift", left_shift), ("in1_mult", m1), ("in1_shift", s1),
            ("in2_mult", m2), ("in2_shift", s2), ("out_mult", mo), ("out_shift", so),
            ("act_min", act[0]), ("act_max", act[1]),
            ("f_min", CExpr(c_float(float_act[0]))), ("f_max", CExpr(c_float(float_act[1])))),
        args=(TensorArg(a.index), TensorArg(b.index), TensorArg(y.index)),
        comment=f"{y.dtype} {_act(op)}")


def _lower_sub(ctx: LowerContext, op: ir.Operator) -> Call:
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    act = _act(op)
    shift = SUB_LEFT_SHIFT.get(y.dtype, 0)
    mults = ((0, 0),) * 3
    lo, hi = _INT_RANGE.get(y.dtype, (0, 0))
    if y.dtype in SUB_LEFT_SHIFT:
        mults = sub_multipliers(scale_zp(a)[0], scale_zp(b)[0], scale_zp(y)[0], shift)
        lo, hi = _int_activation_range(y.dtype, act, *scale_zp(y))
    return _sub_like_call(ctx, op, "tq_sub", shift, mults, (lo, hi),
                          _FLOAT_RANGE.get(act, _FLOAT_RANGE["NONE"]))


def _int_activation_range(dtype: str, act: str, scale: float, zp: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 or int16 output."""
    if dtype == "int8":
        return quant.activation_range(act, scale, zp)
    lo, hi = _INT_RANGE["int16"]

    def q(v: float) -> int:
        return zp + quant.round_half_away(float(np.float32(v) / np.float32(scale)))

    if act == "RELU":
        return max(lo, q(0.0)), hi
    if act == "RELU6":
        return max(lo, q(0.0)), min(hi, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


@constraint(fix="re-quantize with a larger output scale: TFLM's SUB needs every rescaling "
                "multiplier below one")
def sub_range(model: ir.Model, op: ir.Operator) -> bool:
    """the output scale is too small for TFLM's SUB rescaling"""
    ts = [model.tensors[i] for i in (*op.inputs[:2], op.outputs[0])]
    if ts[2].dtype not in SUB_LEFT_SHIFT:
        return False
    try:
        sub_multipliers(*(scale_zp(t)[0] for t in ts), SUB_LEFT_SHIFT[ts[2].dtype])
    except quant.MultiplierRangeError:
        return True
    return False


@constraint(fix="give both int16 SUB inputs the output's shape (e.g. an explicit broadcast "
                "first), or use --runtime tflm")
def sub_int16_broadcast(model: ir.Model, op: ir.Operator) -> bool:
    """int16 SUB broadcasts: the tflite-micro interpreter's int16 broadcast path rounds
    differently from its element-wise one (1 LSB, now and then), so no match is promised"""
    ts = [model.tensors[i] for i in (*op.inputs[:2], op.outputs[0])]
    return ts[2].dtype == "int16" and not tuple(ts[0].shape) == tuple(ts[1].shape)


@constraint(fix="give an int32 SUB unquantized tensors and no fused activation")
def sub_int32_options(model: ir.Model, op: ir.Operator) -> bool:
    """int32 SUB has quantized tensors (TFLM refuses them) or a fused activation"""
    ts = [model.tensors[i] for i in (*op.inputs[:2], op.outputs[0])]
    return ts[2].dtype == "int32" and (
        _act(op) != "NONE" or any(t.quant is not None and bool(t.quant.scale) for t in ts))


#: dtypes of TFLM's SQUARED_DIFFERENCE (squared_difference.cc) and its headroom bits
SQDIFF_DTYPES = ("float32", "int8", "int16", "int32")
SQDIFF_LEFT_SHIFT = {"int8": 7, "int16": 0}


def sqdiff_multipliers(s1: float, s2: float, so: float, left_shift: int
                       ) -> tuple[tuple[int, int], ...]:
    """(multiplier, shift) for input 1, input 2 and the output, in double as TFLM does."""
    f = np.float32
    twice = 2.0 * float(max(f(s1), f(s2)))
    r1, r2 = float(f(s1)) / twice, float(f(s2)) / twice
    ro = twice * twice / float(f(1 << (2 * left_shift)) * f(so))
    if not (0 < r1 < 1 and 0 < r2 < 1):
        raise quant.MultiplierRangeError("a SQUARED_DIFFERENCE multiplier is not below one")
    return quant.kernel_multiplier(r1), quant.kernel_multiplier(r2), quant.kernel_multiplier(ro)


def _lower_sqdiff(ctx: LowerContext, op: ir.Operator) -> Call:
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    shift = SQDIFF_LEFT_SHIFT.get(y.dtype, 0)
    mults = ((0, 0),) * 3
    if y.dtype in SQDIFF_LEFT_SHIFT:
        mults = sqdiff_multipliers(scale_zp(a)[0], scale_zp(b)[0], scale_zp(y)[0], shift)
    return _sub_like_call(ctx, op, "tq_squared_difference", shift, mults,
                          _INT_RANGE.get(y.dtype, (0, 0)), (0.0, 0.0))


@constraint(fix="re-quantize: TFLM's SQUARED_DIFFERENCE needs both input multipliers below "
                "one, an output multiplier below 2^30, and int16 zero points of 0")
def sqdiff_range(model: ir.Model, op: ir.Operator) -> bool:
    """the quantization is outside what TFLM's SQUARED_DIFFERENCE computes"""
    ts = [model.tensors[i] for i in (*op.inputs[:2], op.outputs[0])]
    if ts[2].dtype not in SQDIFF_LEFT_SHIFT:
        return False
    if ts[2].dtype == "int16" and any(scale_zp(t)[1] != 0 for t in ts):
        return True
    try:
        sqdiff_multipliers(*(scale_zp(t)[0] for t in ts), SQDIFF_LEFT_SHIFT[ts[2].dtype])
    except quant.MultiplierRangeError:
        return True
    return False


def abs_s8(params: tuple[int, int, int, int, bool], x: np.ndarray) -> np.ndarray:
    """TFLM ``AbsEvalQuantized`` for int8 on every value of ``x``."""
    in_zp, out_zp, mult, shift, rescale = params
    out = []
    for v in x.tolist():
        value = abs(int(v) - in_zp)
        if rescale:
            value = quant.multiply_by_quantized_multiplier(value, mult, shift)
        out.append(max(-128, min(127, value + out_zp)))
    return np.array(out)


def _abs_params(x: ir.Tensor, y: ir.Tensor) -> tuple[int, int, int, int, bool]:
    (sx, zx), (sy, zy) = scale_zp(x), scale_zp(y)
    rescale = bool(np.float32(sx) != np.float32(sy))
    m, s = quant.kernel_multiplier(float(np.float32(sx)) / float(np.float32(sy))) \
        if rescale else (0, 0)
    return zx, zy, m, s, rescale


def _lower_unary(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    if x.dtype == "int8":
        table = fixedpoint.lut_s8(abs_s8, _abs_params(x, y))
        return _lut_call(ctx, op, table, "ABS")
    return Call("tq_unary_f32", "tq_unary_f32_params",
                params=(("size", y.size),
                        ("op", CExpr("TQ_UNARY_NEG" if op.opcode == "NEG" else "TQ_UNARY_ABS"))),
                args=(TensorArg(x.index), TensorArg(y.index)))


def prelu_multipliers(s_in: float, s_alpha: float, s_out: float
                      ) -> tuple[tuple[int, int], tuple[int, int]]:
    """PRELU's two (multiplier, shift): input/output and input*alpha/output, in double."""
    f = np.float32
    r1 = float(f(s_in)) / float(f(s_out))
    r2 = float(f(s_in)) * float(f(s_alpha)) / float(f(s_out))
    return quant.kernel_multiplier(r1), quant.kernel_multiplier(r2)


def _lower_prelu(ctx: LowerContext, op: ir.Operator) -> Call:
    x, a, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert x is not None and a is not None
    (sx, zx), (sa, za), (sy, zy) = scale_zp(x), scale_zp(a), scale_zp(y)
    (m1, s1), (m2, s2) = prelu_multipliers(sx, sa, sy) if x.dtype == "int8" else ((0, 0),) * 2
    return Call(
        "tq_prelu", "tq_prelu_params",
        params=(
            broadcast_geom(ctx, x, a, y), ("type", CExpr(TYPE_CODES[x.dtype])), ("in_zp", zx),
            ("alpha_zp", za), ("out_zp", zy), ("mult1", m1), ("shift1", s1), ("mult2", m2),
            ("shift2", s2)),
        args=(TensorArg(x.index), TensorArg(a.index), TensorArg(y.index)),
        comment=x.dtype)


def rows() -> dict[str, Lowering]:
    """This family's rows of ``lower.LOWERINGS``."""
    return {
        "SUB": Lowering(_lower_sub, ("tq_arith.c", "tq_compare.c"),
                        tuple(Sig((t, t), (t,)) for t in SUB_DTYPES),
                        (unquantized, bad_activation, broadcast_too_deep, sub_range,
                         sub_int32_options, sub_int16_broadcast),
                        "with broadcasting and fused activations", ("tq_arith.h",)),
        "SQUARED_DIFFERENCE": Lowering(_lower_sqdiff, ("tq_arith.c", "tq_compare.c"),
                                       tuple(Sig((t, t), (t,)) for t in SQDIFF_DTYPES),
                                       (unquantized, broadcast_too_deep, sqdiff_range),
                                       "with broadcasting", ("tq_arith.h",)),
        "PRELU": Lowering(_lower_prelu, ("tq_arith.c", "tq_compare.c"),
                          (Sig(("float32", "float32"), ("float32",)),
                           Sig(("int8", "int8"), ("int8",))),
                          (unquantized, broadcast_too_deep, requant_range),
                          "alpha broadcast to the input", ("tq_arith.h",)),
        "NEG": Lowering(_lower_unary, ("tq_arith.c",), (Sig(("float32",), ("float32",)),),
                        (), "", ("tq_arith.h",)),
        "ABS": Lowering(_lower_unary, ("tq_arith.c", "tq_lut.c"),
                        (Sig(("float32",), ("float32",)), Sig(("int8",), ("int8",))),
                        (unquantized, requant_range), "int8: 256-entry table",
                        ("tq_arith.h", *_NONLINEAR_HEADERS)),
    }
