"""Random cases for comparisons and selections (tinyq/firmware/native/ops_compare.py).

Each case picks one of the op's registered dtypes; values are drawn from a small
range half of the time so ties and equal elements (EQUAL, ARG_MAX's first index,
REDUCE_MAX's first pick) really occur. Shapes broadcast (numpy style, leading
dims dropped too); axes are negative some of the time. int8/int16 comparison
inputs get different scales and zero points (TFLM rescales them).
Registered into ``tinyq.firmware.native.opcases.CASES``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinyq.firmware.native.opcases import (
    Case,
    CaseGen,
    _broadcast_shapes,
    _shape,
    rand_scale,
    rand_zp,
    random_axes,
    reduced_shape,
)
from tinyq.firmware.native.opcases_layout import _data, _quant
from tinyq.firmware.native.ops_compare import ARG_INDEX_DTYPES, COMPARE_DTYPES, COMPARISONS
from tinyq.model.tflite_writer import GraphBuilder


def _dtype(rng: np.random.Generator, opcode: str) -> str:
    dtypes = COMPARE_DTYPES[opcode]
    return str(dtypes[int(rng.integers(0, len(dtypes)))])


def _values(rng: np.random.Generator, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """Random data; half of the time from a few values only (ties, equal elements)."""
    if dtype == "bool":
        return rng.random(tuple(shape)) < 0.5
    if rng.random() < 0.5:
        few = rng.integers(-3, 4, size=tuple(shape))
        return (few.astype(np.float32) * np.float32(0.5) if dtype == "float32"
                else few.astype(dtype))
    return _data(rng, dtype, shape)


def _compare_quant(rng: np.random.Generator, dtype: str) -> dict[str, object]:
    if dtype == "int8":
        return {"scale": rand_scale(rng, 1e-3, 0.9), "zero_point": rand_zp(rng)}
    if dtype == "int16":
        return {"scale": rand_scale(rng, 1e-5, 0.9), "zero_point": 0}
    return {}


def _binary(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        dtype = _dtype(rng, opcode)
        sa, sb, so = _broadcast_shapes(rng)
        qa = _compare_quant(rng, dtype)
        qb = qa if rng.random() < 0.3 else _compare_quant(rng, dtype)
        a = g.add_tensor(sa, dtype, **qa)
        b = g.add_tensor(sb, dtype, **qb)
        compare = opcode in COMPARISONS
        y = g.add_tensor(so, "bool") if compare else g.add_tensor(so, dtype, **qa)
        g.add_op(opcode, [a, b], [y], {})
        return Case(((a, _values(rng, dtype, sa)), (b, _values(rng, dtype, sb))), (y,),
                    f"{dtype} {sa} vs {sb} -> {so}")
    return gen


def gen_select_v2(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = _dtype(rng, "SELECT_V2")
    sc, sx, so = _broadcast_shapes(rng)
    sy = sx if rng.random() < 0.5 else tuple(1 if rng.random() < 0.4 else d for d in so)
    q = _quant(rng, dtype)
    c = g.add_tensor(sc, "bool")
    x = g.add_tensor(sx, dtype, **q)
    z = g.add_tensor(sy, dtype, **q)
    out = tuple(np.broadcast_shapes(sc, sx, sy))
    y = g.add_tensor(out, dtype, **q)
    g.add_op("SELECT_V2", [c, x, z], [y], {})
    return Case(((c, rng.random(sc) < 0.5), (x, _values(rng, dtype, sx)),
                 (z, _values(rng, dtype, sy))), (y,), f"{dtype} {sc} ? {sx} : {sy} -> {out}")


def _arg(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        dtype = _dtype(rng, opcode)
        shape = _shape(rng, 4, 7)
        rank = len(shape)
        axis = int(rng.integers(0, rank))
        neg = axis - rank if rng.random() < 0.3 else axis
        out_dtype = axis_dtype = str(rng.choice(ARG_INDEX_DTYPES))
        x = g.add_tensor(shape, dtype, **_quant(rng, dtype))
        ax = g.add_constant(np.array([neg], dtype=axis_dtype))
        y = g.add_tensor(shape[:axis] + shape[axis + 1:], out_dtype)
        g.add_op(opcode, [x, ax], [y], {"output_type": out_dtype})
        return Case(((x, _values(rng, dtype, shape)),), (y,),
                    f"{dtype} {shape} axis {neg} ({axis_dtype}) -> {out_dtype}")
    return gen


def _reduce(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        dtype = _dtype(rng, opcode)
        shape = _shape(rng, 4, 7)
        axes = random_axes(rng, len(shape))
        keep = bool(rng.random() < 0.5)
        out = reduced_shape(shape, axes, keep)
        q = _quant(rng, dtype)
        x = g.add_tensor(shape, dtype, **q)
        y = g.add_tensor(out, dtype, **q)
        g.add_op(opcode, [x, g.add_constant(np.array(axes, dtype=np.int32))], [y],
                 {"keep_dims": keep})
        return Case(((x, _values(rng, dtype, shape)),), (y,),
                    f"{dtype} {shape} axes {axes} keep={keep}")
    return gen


CASES: dict[str, CaseGen] = {
    **{op: _binary(op) for op in ("MAXIMUM", "MINIMUM", *COMPARISONS)},
    "SELECT_V2": gen_select_v2,
    "ARG_MAX": _arg("ARG_MAX"),
    "ARG_MIN": _arg("ARG_MIN"),
    "REDUCE_MAX": _reduce("REDUCE_MAX"),
    "REDUCE_MIN": _reduce("REDUCE_MIN"),
}
