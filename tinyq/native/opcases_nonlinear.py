"""Random single-op cases for the native nonlinear/reduction kernels.

Generators in the style of ``tinyq.native.opcases`` (one op per call, added to a
shared ``GraphBuilder``) for SOFTMAX, MEAN, LOGISTIC, TANH, HARD_SWISH and
LEAKY_RELU. They cover random shapes, scales, zero points, beta, alpha, axes
(negative and repeated ones too) and keep_dims; the table-driven ops get, in a
third of the cases, an input holding all 256 int8 values, so every table entry
is compared with TFLM. Parameters stay inside what TFLM's Prepare accepts
(outside it TFLM fails or aborts, and the native support checks refuse).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from tinyq.native import fixedpoint
from tinyq.native.opcases import Case, CaseGen, rand_int8, rand_scale, rand_zp
from tinyq.tflite_writer import GraphBuilder


def _shape(rng: np.random.Generator, max_rank: int = 4, max_dim: int = 8) -> tuple[int, ...]:
    rank = int(rng.integers(1, max_rank + 1))
    return tuple(int(rng.integers(1, max_dim + 1)) for _ in range(rank))


def _elementwise_input(rng: np.random.Generator) -> tuple[tuple[int, ...], np.ndarray]:
    """A random shape and data; a third of the time every int8 value once (exhaustive)."""
    if rng.random() < 1 / 3:
        shapes: list[tuple[int, ...]] = [(256,), (1, 256), (4, 64), (2, 8, 16)]
        shape = shapes[int(rng.integers(0, len(shapes)))]
        data = rng.permutation(np.arange(-128, 128)).astype(np.int8).reshape(shape)
        return shape, data
    shape = _shape(rng)
    return shape, rand_int8(rng, shape)


def _unary_case(g: GraphBuilder, rng: np.random.Generator, opcode: str,
                in_q: tuple[float, int], out_q: tuple[float, int],
                options: Mapping[str, object] | None = None, label: str = "") -> Case:
    shape, data = _elementwise_input(rng)
    x = g.add_tensor(shape, "int8", scale=in_q[0], zero_point=in_q[1])
    y = g.add_tensor(shape, "int8", scale=out_q[0], zero_point=out_q[1])
    g.add_op(opcode, [x], [y], dict(options or {}))
    return Case(((x, data),), (y,),
                f"{shape} in {in_q[0]:.4g}/{in_q[1]} out {out_q[0]:.4g}/{out_q[1]} {label}".strip())


def gen_logistic(g: GraphBuilder, rng: np.random.Generator) -> Case:
    in_q = (rand_scale(rng, 1e-3, 1.0), rand_zp(rng))
    # TFLM checks only the zero point; the output is Q0.8 whatever the scale says
    out_scale = 1 / 256 if rng.random() < 0.9 else rand_scale(rng)
    return _unary_case(g, rng, "LOGISTIC", in_q, (out_scale, -128))


def gen_tanh(g: GraphBuilder, rng: np.random.Generator) -> Case:
    in_q = (rand_scale(rng, 1e-3, 1.0), rand_zp(rng))
    out_q = (1 / 128, 0) if rng.random() < 0.9 else (rand_scale(rng), rand_zp(rng))
    return _unary_case(g, rng, "TANH", in_q, out_q)


def gen_hard_swish(g: GraphBuilder, rng: np.random.Generator) -> Case:
    in_q = (rand_scale(rng, 1e-3, 1.0), rand_zp(rng))
    while True:
        out_q = (float(np.float32(in_q[0] * math.exp(rng.uniform(-3.0, 1.5)))), rand_zp(rng))
        try:
            fixedpoint.hard_swish_params(*in_q, *out_q)
        except ValueError:
            continue
        return _unary_case(g, rng, "HARD_SWISH", in_q, out_q)


def gen_leaky_relu(g: GraphBuilder, rng: np.random.Generator) -> Case:
    in_q = (rand_scale(rng, 1e-3, 1.0), rand_zp(rng))
    out_q = (float(np.float32(in_q[0] * math.exp(rng.uniform(-1.5, 1.5)))), rand_zp(rng))
    pick = rng.random()
    alpha = (float(rng.choice([0.01, 0.1, 0.2, 0.3])) if pick < 0.4
             else float(rng.uniform(0.0, 1.0)) if pick < 0.8
             else float(rng.uniform(-1.0, 3.0)))
    alpha = float(np.float32(alpha))
    return _unary_case(g, rng, "LEAKY_RELU", in_q, out_q, {"alpha": alpha},
                       f"alpha {alpha:.4g}")


def gen_softmax(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = _shape(rng, 4, 6)
    if rng.random() < 0.5:
        shape = shape[:-1] + (int(rng.integers(1, 40 if rng.random() < 0.8 else 300)),)
    in_scale, in_zp = rand_scale(rng, 1e-3, 1.0), rand_zp(rng)
    beta = float(np.float32(1.0 if rng.random() < 0.5 else rng.uniform(0.1, 3.0)))
    data = rand_int8(rng, shape)
    if rng.random() < 0.3:          # peaked rows: many values near the maximum
        data = np.clip(data.astype(np.int64) // 16 + 100, -128, 127).astype(np.int8)
    out16 = rng.random() < 0.25
    x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=in_zp)
    y = (g.add_tensor(shape, "int16", scale=1 / 65536, zero_point=-32768) if out16
         else g.add_tensor(shape, "int8", scale=1 / 256, zero_point=-128))
    g.add_op("SOFTMAX", [x], [y], {"beta": beta})
    return Case(((x, data),), (y,),
                f"{shape} beta {beta:.4g} in {in_scale:.4g} -> {'int16' if out16 else 'int8'}")


def gen_mean(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = _shape(rng, 5 if rng.random() < 0.2 else 4, 9)
    rank = len(shape)
    if rank == 4 and rng.random() < 0.4:            # global average pool, as converted
        axes = [1, 2] if rng.random() < 0.7 else [2, 1]
        if rng.random() < 0.5:
            shape = (int(rng.choice([1, 1, 2])), int(rng.integers(1, 25)),
                     int(rng.integers(1, 25)), int(rng.integers(1, 65)))
    else:
        k = int(rng.integers(1, rank + 1))
        axes = [int(a) for a in rng.choice(rank, size=k, replace=False)]
        axes = [a - rank if rng.random() < 0.3 else a for a in axes]
        if rng.random() < 0.1:
            axes.append(axes[0])                    # duplicates are ignored by TFLM
    keep = bool(rng.random() < 0.5)
    reduced = {a % rank for a in axes}
    out_shape = (tuple(1 if i in reduced else d for i, d in enumerate(shape)) if keep
                 else tuple(d for i, d in enumerate(shape) if i not in reduced))
    in_scale, in_zp = rand_scale(rng), rand_zp(rng)
    out_scale = float(np.float32(in_scale * math.exp(rng.uniform(-2.5, 2.5))))
    x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=in_zp)
    ax = g.add_constant(np.array(axes, dtype=np.int32))
    y = g.add_tensor(out_shape, "int8", scale=out_scale, zero_point=rand_zp(rng))
    g.add_op("MEAN", [x, ax], [y], {"keep_dims": keep})
    return Case(((x, rand_int8(rng, shape)),), (y,), f"{shape} axes {axes} keep={keep}")


#: opcode -> random case generator for the nonlinear/reduction kernels
NONLINEAR_CASES: Mapping[str, CaseGen] = MappingProxyType({
    "SOFTMAX": gen_softmax,
    "MEAN": gen_mean,
    "LOGISTIC": gen_logistic,
    "TANH": gen_tanh,
    "HARD_SWISH": gen_hard_swish,
    "LEAKY_RELU": gen_leaky_relu,
})
