"""Random cases for SUB (tinyq/native/ops_arith.py): every registered dtype, numpy
broadcasting, fused activations, and for int8/int16 different scales and zero points
per tensor (output scales kept where TFLM's multipliers stay below one).
Registered into ``tinyq.native.opcases.CASES``.
"""

from __future__ import annotations

import math

import numpy as np

from tinyq.native.opcases import ACTIVATIONS, Case, CaseGen, _broadcast_shapes, rand_scale, rand_zp
from tinyq.native.opcases_layout import _data
from tinyq.native.ops_arith import SUB_DTYPES, SUB_LEFT_SHIFT, sub_multipliers
from tinyq.native.quant import MultiplierRangeError
from tinyq.tflite_writer import GraphBuilder


def _quant(rng: np.random.Generator, dtype: str, scale: float) -> dict[str, object]:
    if dtype == "int8":
        return {"scale": scale, "zero_point": rand_zp(rng)}
    if dtype == "int16":
        return {"scale": scale, "zero_point": 0}
    return {}


def gen_sub(g: GraphBuilder, rng: np.random.Generator) -> Case:
    dtype = str(rng.choice(SUB_DTYPES))
    sa, sb, so = _broadcast_shapes(rng)
    lo, hi = (1e-3, 0.5) if dtype == "int8" else (1e-5, 1e-2)
    while True:
        s1, s2 = rand_scale(rng, lo, hi), rand_scale(rng, lo, hi)
        s3 = float(np.float32(max(s1, s2) * math.exp(rng.uniform(-0.5, 1.5))))
        if dtype not in SUB_LEFT_SHIFT:
            break
        try:
            sub_multipliers(s1, s2, s3, SUB_LEFT_SHIFT[dtype])
            break
        except MultiplierRangeError:
            continue
    act = "NONE" if dtype == "int32" else str(rng.choice(ACTIVATIONS))
    a = g.add_tensor(sa, dtype, **_quant(rng, dtype, s1))
    b = g.add_tensor(sb, dtype, **_quant(rng, dtype, s2))
    y = g.add_tensor(so, dtype, **_quant(rng, dtype, s3))
    g.add_op("SUB", [a, b], [y], {"fused_activation_function": act})
    return Case(((a, _data(rng, dtype, sa)), (b, _data(rng, dtype, sb))), (y,),
                f"{dtype} {sa} - {sb} -> {so} {act}")


CASES: dict[str, CaseGen] = {"SUB": gen_sub}
