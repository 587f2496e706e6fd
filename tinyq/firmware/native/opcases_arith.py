"""Random cases for SUB, SQUARED_DIFFERENCE, NEG and ABS (tinyq/firmware/native/ops_arith.py):
every registered dtype, numpy broadcasting, fused activations (SUB), and for int8/int16
different scales and zero points per tensor (output scales kept where TFLM's
multipliers stay in range). int8 ABS gets, a third of the time, all 256 values.
Registered into ``tinyq.firmware.native.opcases.CASES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from tinyq.firmware.native.opcases import (
    ACTIVATIONS,
    Case,
    CaseGen,
    _broadcast_shapes,
    _elementwise_input,
    _shape,
    rand_scale,
    rand_zp,
)
from tinyq.firmware.native.opcases_layout import _data
from tinyq.firmware.native.ops_arith import (
    SQDIFF_DTYPES,
    SQDIFF_LEFT_SHIFT,
    SUB_DTYPES,
    SUB_LEFT_SHIFT,
    sqdiff_multipliers,
    sub_multipliers,
)
from tinyq.firmware.native.quant import MultiplierRangeError
from tinyq.model.tflite_writer import GraphBuilder


def _quant(rng: np.random.Generator, dtype: str, scale: float) -> dict[str, object]:
    if dtype == "int8":
        return {"scale": scale, "zero_point": rand_zp(rng)}
    if dtype == "int16":
        return {"scale": scale, "zero_point": 0}
    return {}


def _binary_case(g: GraphBuilder, rng: np.random.Generator, opcode: str, dtype: str,
                 out_scale: Callable[[float], float], check: Callable[..., object] | None,
                 options: dict[str, object], broadcast: bool = True) -> Case:
    """Random (broadcast) shapes and scales (redrawn until ``check`` accepts them)."""
    sa, sb, so = _broadcast_shapes(rng)
    if not broadcast:
        sa = sb = so
    lo, hi = (1e-3, 0.5) if dtype == "int8" else (1e-5, 1e-2)
    while True:
        s1, s2 = rand_scale(rng, lo, hi), rand_scale(rng, lo, hi)
        s3 = float(np.float32(out_scale(max(s1, s2))))
        try:
            if check is not None:
                check(s1, s2, s3)
            break
        except MultiplierRangeError:
            continue
    a = g.add_tensor(sa, dtype, **_quant(rng, dtype, s1))
    b = g.add_tensor(sb, dtype, **_quant(rng, dtype, s2))
    y = g.add_tensor(so, dtype, **_quant(rng, dtype, s3))
    g.add_op(opcode, [a, b], [y], options)
    return Case(((a, _data(rng, dtype, sa)), (b, _data(rng, dtype, sb))), (y,),
                f"{dtype} {sa}, {sb} -> {so} {options}")


def gen_sub(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = str(rng.choice(SUB_DTYPES))
    act = "NONE" if dtype == "int32" else str(rng.choice(ACTIVATIONS))
    shift = SUB_LEFT_SHIFT.get(dtype)
    return _binary_case(
        g, rng, "SUB", dtype, lambda s: s * math.exp(rng.uniform(-0.5, 1.5)),
        None if shift is None else lambda *s: sub_multipliers(*s, shift),
        {"fused_activation_function": act}, broadcast=dtype != "int16")   # sub_int16_broadcast


def gen_squared_difference(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = str(rng.choice(SQDIFF_DTYPES))
    shift = SQDIFF_LEFT_SHIFT.get(dtype)
    span = 128 if dtype == "int8" else 32768
    # the output holds squares: its scale near max(s1, s2)^2 * the type's range
    return _binary_case(
        g, rng, "SQUARED_DIFFERENCE", dtype,
        lambda s: s * s * span * math.exp(rng.uniform(-2.0, 1.0)),
        None if shift is None else lambda *s: sqdiff_multipliers(*s, shift), {})


def _float_unary(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        if opcode == "ABS" and rng.random() < 0.5:
            shape, data = _elementwise_input(rng)
            in_scale = rand_scale(rng)
            out_scale = in_scale if rng.random() < 0.4 else \
                float(np.float32(in_scale * math.exp(rng.uniform(-1, 1))))
            x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=rand_zp(rng))
            y = g.add_tensor(shape, "int8", scale=out_scale, zero_point=rand_zp(rng))
            label = f"int8 {shape} {in_scale:.4g} -> {out_scale:.4g}"
        else:
            shape = _shape(rng)
            data = _data(rng, "float32", shape)
            data.reshape(-1)[: data.size // 4] *= np.float32(0)    # signed zeros too
            x, y = g.add_tensor(shape, "float32"), g.add_tensor(shape, "float32")
            label = f"float32 {shape}"
        g.add_op(opcode, [x], [y], {})
        return Case(((x, data),), (y,), label)
    return gen


def gen_prelu(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = str(rng.choice(["float32", "int8"]))
    shape = _shape(rng, 4, 6)
    # alpha: per channel (the converter's form), per element, or broadcast on some dims
    kind = rng.random()
    partial = tuple(1 if rng.random() < 0.5 else d for d in shape)
    alpha_shape = (shape[-1:] if kind < 0.4 else shape if kind < 0.6 else
                   partial[int(rng.integers(0, len(shape))):] or (1,))
    if dtype == "int8":
        s_in = rand_scale(rng)
        s_alpha = rand_scale(rng, 1e-3, 0.05)
        s_out = float(np.float32(s_in * math.exp(rng.uniform(-1, 1))))
        x = g.add_tensor(shape, "int8", scale=s_in, zero_point=rand_zp(rng))
        alpha = g.add_constant(_data(rng, "int8", alpha_shape), "int8", scale=s_alpha,
                               zero_point=rand_zp(rng))
        y = g.add_tensor(shape, "int8", scale=s_out, zero_point=rand_zp(rng))
    else:
        x = g.add_tensor(shape, "float32")
        alpha = g.add_constant(_data(rng, "float32", alpha_shape) * np.float32(0.05))
        y = g.add_tensor(shape, "float32")
    g.add_op("PRELU", [x, alpha], [y], {})
    return Case(((x, _data(rng, dtype, shape)),), (y,), f"{dtype} {shape} alpha {alpha_shape}")


CASES: dict[str, CaseGen] = {
    "SUB": gen_sub,
    "SQUARED_DIFFERENCE": gen_squared_difference,
    "PRELU": gen_prelu,
    "NEG": _float_unary("NEG"),
    "ABS": _float_unary("ABS"),
}
