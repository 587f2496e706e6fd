"""Random single-op cases for checking native kernels against the tflite-micro interpreter.

Each generator adds ONE op with its own inputs, constants and output to a
``GraphBuilder`` and returns the input data, so many independent cases share
one model: one host compile and one TFLM invoke check dozens of cases.
``CASES`` maps an opcode to its generator; adding an op to the native runtime
means adding one generator here (tests/test_native_ops.py and
benchmarks/native_ops_random.py pick it up).

``run_cases(opcode, n, seed)`` builds the models, runs both runtimes and
returns per-case results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from tinyq.firmware.native import fixedpoint
from tinyq.model.tflite_writer import GraphBuilder

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


@dataclass(frozen=True)
class Case:
    """One op in a multi-case model: its graph inputs with data, and its output tensors."""

    inputs: tuple[tuple[int, np.ndarray], ...]
    outputs: tuple[int, ...]
    label: str
    #: per output, (mask, values): elements where TFLM's result is undefined behaviour,
    #: checked against tinyq's documented result instead (docs/numerics.md)
    defined_by_tinyq: tuple[tuple[np.ndarray, np.ndarray] | None, ...] = ()


CaseGen = Callable[[GraphBuilder, np.random.Generator], Case]


# ----------------------------------------------------------------------------- helpers


def rand_scale(rng: np.random.Generator, lo: float = 1e-3, hi: float = 0.5) -> float:
    return float(np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def rand_zp(rng: np.random.Generator) -> int:
    return int(rng.integers(-128, 128))


def rand_int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def out_size(padding: str, size: int, k: int, stride: int, dilation: int) -> int:
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def _act(rng: np.random.Generator) -> str:
    return str(rng.choice(ACTIVATIONS, p=[0.5, 0.25, 0.15, 0.1]))


def _requant_scale(rng: np.random.Generator, in_scale: float, w_scale: float,
                   terms: int) -> float:
    """An output scale that keeps typical accumulators inside int8 (with a random spread)."""
    acc_std = 74.0 * 74.0 * math.sqrt(max(terms, 1)) * 0.5
    return float(np.float32(in_scale * w_scale * acc_std / 40.0 * math.exp(rng.uniform(-1, 1))))


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = rand_int8(rng, shape)
    w[w == -128] = -127                       # the converter keeps weights symmetric
    return w


def _conv_like(g: GraphBuilder, rng: np.random.Generator, depthwise: bool) -> Case:
    while True:
        n = int(rng.choice([1, 1, 1, 2]))
        ih, iw = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        ic = int(rng.integers(1, 13))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dil = rng.random() < 0.2
        dh = int(rng.integers(1, 4)) if dil else 1
        dw = int(rng.integers(1, 4)) if dil else 1
        padding = str(rng.choice(["SAME", "VALID"]))
        oh, ow = out_size(padding, ih, kh, sh, dh), out_size(padding, iw, kw, sw, dw)
        if oh >= 1 and ow >= 1:
            break
    mult = int(rng.integers(1, 4)) if depthwise else 1
    oc = ic * mult if depthwise else int(rng.integers(1, 17))
    in_scale, in_zp = rand_scale(rng), rand_zp(rng)
    per_channel = rng.random() < 0.8
    w_scales = [rand_scale(rng, 1e-3, 2e-2) for _ in range(oc)] if per_channel \
        else [rand_scale(rng, 1e-3, 2e-2)]
    wshape = (1, kh, kw, oc) if depthwise else (oc, kh, kw, ic)
    terms = kh * kw * (1 if depthwise else ic)
    out_scale = _requant_scale(rng, in_scale, float(np.mean(w_scales)), terms)
    x = g.add_tensor((n, ih, iw, ic), "int8", scale=in_scale, zero_point=in_zp)
    w = g.add_constant(_weights(rng, wshape), scale=w_scales, zero_point=[0] * len(w_scales),
                       axis=3 if depthwise else 0)
    inputs = [x, w]
    # TFLM's DEPTHWISE_CONV_2D crashes without a bias (the converter always writes one)
    if depthwise or rng.random() < 0.9:
        bias = rng.integers(-20000, 20000, size=oc).astype(np.int32)
        b_scales = [in_scale * s for s in (w_scales if per_channel else w_scales * oc)]
        inputs.append(g.add_constant(bias, scale=b_scales, zero_point=[0] * oc))
    else:
        inputs.append(-1)
    y = g.add_tensor((n, oh, ow, oc), "int8", scale=out_scale, zero_point=rand_zp(rng))
    opts = {"padding": padding, "stride_h": sh, "stride_w": sw, "dilation_h_factor": dh,
            "dilation_w_factor": dw, "fused_activation_function": _act(rng)}
    if depthwise:
        opts["depth_multiplier"] = mult
    g.add_op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", inputs, [y], opts)
    label = (f"{n}x{ih}x{iw}x{ic} k{kh}x{kw} s{sh}x{sw} d{dh}x{dw} {padding} oc{oc} "
             f"{'pc' if per_channel else 'pt'} {opts['fused_activation_function']}")
    return Case(((x, rand_int8(rng, (n, ih, iw, ic))),), (y,), label)


def gen_conv2d(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _conv_like(g, rng, depthwise=False)


def gen_depthwise(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _conv_like(g, rng, depthwise=True)


def gen_fully_connected(g: GraphBuilder, rng: np.random.Generator) -> Case:
    depth = int(rng.integers(1, 70))
    units = int(rng.integers(1, 33))
    batches = int(rng.choice([1, 1, 2, 3]))
    keep = bool(rng.random() < 0.25)
    if keep:
        in_shape: tuple[int, ...] = (1, batches, depth)
        out_shape: tuple[int, ...] = (1, batches, units)
    else:
        in_shape, out_shape = (batches, depth), (batches, units)
    in_scale, in_zp = rand_scale(rng), rand_zp(rng)
    per_channel = rng.random() < 0.5
    w_scales = [rand_scale(rng, 1e-3, 2e-2) for _ in range(units)] if per_channel \
        else [rand_scale(rng, 1e-3, 2e-2)]
    x = g.add_tensor(in_shape, "int8", scale=in_scale, zero_point=in_zp)
    w = g.add_constant(_weights(rng, (units, depth)), scale=w_scales,
                       zero_point=[0] * len(w_scales))
    inputs = [x, w]
    if rng.random() < 0.85:
        b_scales = [in_scale * s for s in (w_scales if per_channel else w_scales * units)]
        bias = rng.integers(-20000, 20000, size=units).astype(np.int32)
        inputs.append(g.add_constant(bias, scale=b_scales, zero_point=[0] * units))
    else:
        inputs.append(-1)
    out_scale = _requant_scale(rng, in_scale, float(np.mean(w_scales)), depth)
    y = g.add_tensor(out_shape, "int8", scale=out_scale, zero_point=rand_zp(rng))
    act = _act(rng)
    g.add_op("FULLY_CONNECTED", inputs, [y], {"fused_activation_function": act,
                                             "keep_num_dims": keep})
    label = f"{in_shape}->{units} {'pc' if per_channel else 'pt'} keep={keep} {act}"
    return Case(((x, rand_int8(rng, in_shape)),), (y,), label)


def _pool(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        while True:
            n = int(rng.choice([1, 1, 2]))
            ih, iw, c = int(rng.integers(1, 14)), int(rng.integers(1, 14)), int(rng.integers(1, 20))
            fh, fw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
            sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            padding = str(rng.choice(["SAME", "VALID"]))
            oh, ow = out_size(padding, ih, fh, sh, 1), out_size(padding, iw, fw, sw, 1)
            if oh >= 1 and ow >= 1:
                break
        scale, zp = rand_scale(rng), rand_zp(rng)
        x = g.add_tensor((n, ih, iw, c), "int8", scale=scale, zero_point=zp)
        y = g.add_tensor((n, oh, ow, c), "int8", scale=scale, zero_point=zp)
        act = _act(rng)
        g.add_op(opcode, [x], [y], {"padding": padding, "stride_h": sh, "stride_w": sw,
                                    "filter_height": fh, "filter_width": fw,
                                    "fused_activation_function": act})
        label = f"{n}x{ih}x{iw}x{c} f{fh}x{fw} s{sh}x{sw} {padding} {act}"
        return Case(((x, rand_int8(rng, (n, ih, iw, c))),), (y,), label)
    return gen


def _broadcast_shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...],
                                                          tuple[int, ...]]:
    rank = int(rng.integers(1, 5))
    out = tuple(int(rng.integers(1, 6)) for _ in range(rank))
    if rng.random() < 0.4:
        return out, out, out

    def shrink(shape: tuple[int, ...]) -> tuple[int, ...]:
        dims = [1 if rng.random() < 0.4 else d for d in shape]
        drop = int(rng.integers(0, len(dims))) if rng.random() < 0.3 else 0
        return tuple(dims[drop:])

    a, b = shrink(out), shrink(out)
    # the output of broadcasting a and b
    rank_ab = max(len(a), len(b))
    pa = (1,) * (rank_ab - len(a)) + a
    pb = (1,) * (rank_ab - len(b)) + b
    res = tuple(max(x, y) for x, y in zip(pa, pb, strict=True))
    return a, b, res


def _binary(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        sa, sb, so = _broadcast_shapes(rng)
        a_scale, b_scale = rand_scale(rng), rand_scale(rng)
        if opcode == "ADD":
            out_scale = float(np.float32(max(a_scale, b_scale) * math.exp(rng.uniform(0, 1.2))))
        else:
            out_scale = float(np.float32(a_scale * b_scale * 128 * math.exp(rng.uniform(-1.5, 1))))
        a = g.add_tensor(sa, "int8", scale=a_scale, zero_point=rand_zp(rng))
        b = g.add_tensor(sb, "int8", scale=b_scale, zero_point=rand_zp(rng))
        y = g.add_tensor(so, "int8", scale=out_scale, zero_point=rand_zp(rng))
        act = _act(rng)
        g.add_op(opcode, [a, b], [y], {"fused_activation_function": act})
        return Case(((a, rand_int8(rng, sa)), (b, rand_int8(rng, sb))), (y,),
                    f"{sa}*{sb}->{so} {act}")
    return gen


def _factor_shape(rng: np.random.Generator, size: int) -> tuple[int, ...]:
    dims = []
    rest = size
    for _ in range(int(rng.integers(0, 3))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = int(rng.choice(divisors))
        dims.append(d)
        rest //= d
    dims.append(rest)
    rng.shuffle(dims)
    return tuple(dims)


def gen_reshape(g: GraphBuilder, rng: np.random.Generator) -> Case:
    size = int(rng.integers(1, 97))
    si, so = _factor_shape(rng, size), _factor_shape(rng, size)
    scale, zp = rand_scale(rng), rand_zp(rng)
    x = g.add_tensor(si, "int8", scale=scale, zero_point=zp)
    shape = g.add_constant(np.array(so, dtype=np.int32))
    y = g.add_tensor(so, "int8", scale=scale, zero_point=zp)
    g.add_op("RESHAPE", [x, shape], [y], {"new_shape": list(so)})
    return Case(((x, rand_int8(rng, si)),), (y,), f"{si}->{so}")


def gen_squeeze(g: GraphBuilder, rng: np.random.Generator) -> Case:
    rank = int(rng.integers(2, 5))
    shape = [int(rng.integers(1, 5)) if rng.random() < 0.5 else 1 for _ in range(rank)]
    ones = [i for i, d in enumerate(shape) if d == 1]
    dims = sorted(int(i) for i in rng.choice(ones, size=int(rng.integers(0, len(ones) + 1)),
                                             replace=False)) if ones else []
    squeezed = [i for i in (dims or ones)]
    out = tuple(d for i, d in enumerate(shape) if i not in squeezed)
    scale, zp = rand_scale(rng), rand_zp(rng)
    x = g.add_tensor(tuple(shape), "int8", scale=scale, zero_point=zp)
    y = g.add_tensor(out, "int8", scale=scale, zero_point=zp)
    g.add_op("SQUEEZE", [x], [y], {"squeeze_dims": dims})
    return Case(((x, rand_int8(rng, tuple(shape))),), (y,), f"{tuple(shape)} dims={dims}")


def _pad(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        rank = int(rng.integers(1, 5))
        shape = tuple(int(rng.integers(1, 6)) for _ in range(rank))
        pads = rng.integers(0, 3, size=(rank, 2)).astype(np.int32)
        out = tuple(int(d + p0 + p1) for d, (p0, p1) in zip(shape, pads, strict=True))
        scale, zp = rand_scale(rng), rand_zp(rng)
        x = g.add_tensor(shape, "int8", scale=scale, zero_point=zp)
        p = g.add_constant(pads)
        inputs = [x, p]
        if opcode == "PADV2":
            inputs.append(g.add_constant(np.array([rand_zp(rng)], dtype=np.int8), scale=scale,
                                         zero_point=zp))
        y = g.add_tensor(out, "int8", scale=scale, zero_point=zp)
        g.add_op(opcode, inputs, [y], {})
        return Case(((x, rand_int8(rng, shape)),), (y,), f"{shape} pads={pads.tolist()}")
    return gen


def gen_concat(g: GraphBuilder, rng: np.random.Generator) -> Case:
    rank = int(rng.integers(1, 5))
    base = [int(rng.integers(1, 5)) for _ in range(rank)]
    axis = int(rng.integers(0, rank))
    count = int(rng.integers(1, 5))
    scale, zp = rand_scale(rng), rand_zp(rng)
    inputs, data = [], []
    total = 0
    for _ in range(count):
        shape = list(base)
        shape[axis] = int(rng.integers(1, 5))
        total += shape[axis]
        t = g.add_tensor(tuple(shape), "int8", scale=scale, zero_point=zp)
        inputs.append(t)
        data.append((t, rand_int8(rng, tuple(shape))))
    out = list(base)
    out[axis] = total
    y = g.add_tensor(tuple(out), "int8", scale=scale, zero_point=zp)
    neg = rng.random() < 0.3
    g.add_op("CONCATENATION", inputs, [y], {"axis": axis - rank if neg else axis,
                                            "fused_activation_function": "NONE"})
    return Case(tuple(data), (y,), f"{count} inputs axis {axis} -> {tuple(out)}")


def _rand_u8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.int64).astype(np.uint8)


def gen_quantize(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = tuple(int(rng.integers(1, 8)) for _ in range(int(rng.integers(1, 4))))
    out_scale, out_zp = rand_scale(rng, 1e-3, 0.2), rand_zp(rng)
    out_dtype = "int8"
    kind = rng.random()
    if kind < 0.4:
        x = g.add_tensor(shape, "float32")
        data = (rng.standard_normal(shape) * out_scale * 60 + out_scale * rng.uniform(-40, 40))
        # exact halfway points exercise the rounding
        half = rng.random(shape) < 0.2
        data = np.where(half, (rng.integers(-140, 140, size=shape) + 0.5) * out_scale, data)
        arr = data.astype(np.float32)
        label = "float32->int8"
    elif kind < 0.7:
        in_scale = rand_scale(rng, 1e-3, 0.2)
        x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=rand_zp(rng))
        arr = rand_int8(rng, shape)
        label = "int8->int8"
    elif kind < 0.85:
        # a uint8 model input, as the converter writes with inference_input_type=uint8
        same = rng.random() < 0.5
        in_scale = out_scale if same else rand_scale(rng, 1e-3, 0.2)
        in_zp = out_zp + 128 if same else int(rng.integers(0, 256))
        x = g.add_tensor(shape, "uint8", scale=in_scale, zero_point=in_zp)
        arr = _rand_u8(rng, shape)
        label = "uint8->int8"
    else:
        in_scale = rand_scale(rng, 1e-3, 0.2)
        x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=rand_zp(rng))
        arr = rand_int8(rng, shape)
        out_dtype, out_zp = "uint8", int(rng.integers(0, 256))
        label = "int8->uint8"
    y = g.add_tensor(shape, out_dtype, scale=out_scale, zero_point=out_zp)
    g.add_op("QUANTIZE", [x], [y], {})
    return Case(((x, arr),), (y,), f"{shape} {label}")


def gen_dequantize(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = tuple(int(rng.integers(1, 8)) for _ in range(int(rng.integers(1, 4))))
    if rng.random() < 0.8:
        x = g.add_tensor(shape, "int8", scale=rand_scale(rng, 1e-4, 10.0),
                         zero_point=rand_zp(rng))
        arr = rand_int8(rng, shape)
    else:
        x = g.add_tensor(shape, "uint8", scale=rand_scale(rng, 1e-4, 10.0),
                         zero_point=int(rng.integers(0, 256)))
        arr = _rand_u8(rng, shape)
    y = g.add_tensor(shape, "float32")
    g.add_op("DEQUANTIZE", [x], [y], {})
    return Case(((x, arr),), (y,), f"{shape} {arr.dtype}")


def _unary(opcode: str) -> CaseGen:
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        shape = tuple(int(rng.integers(1, 8)) for _ in range(int(rng.integers(1, 5))))
        in_scale, in_zp = rand_scale(rng), rand_zp(rng)
        if rng.random() < 0.5:
            out_scale, out_zp = in_scale, in_zp
        else:
            out_scale = float(np.float32(in_scale * math.exp(rng.uniform(-1, 1))))
            out_zp = rand_zp(rng)
        x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=in_zp)
        y = g.add_tensor(shape, "int8", scale=out_scale, zero_point=out_zp)
        g.add_op(opcode, [x], [y], {})
        return Case(((x, rand_int8(rng, shape)),), (y,), f"{shape}")
    return gen


# ----------------------------------------------------------------------------- nonlinear, MEAN
# SOFTMAX, MEAN, LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU: random shapes, scales, zero
# points, beta, alpha, axes (negative and repeated too) and keep_dims. The table-driven
# ops get, a third of the time, an input holding all 256 int8 values, so every table
# entry is compared with TFLM. Parameters stay inside what TFLM's Prepare accepts.


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


def random_axes(rng: np.random.Generator, rank: int) -> list[int]:
    """Some distinct axes of a ``rank``-D tensor, some negative, now and then one repeated."""
    k = int(rng.integers(1, rank + 1))
    axes = [int(a) for a in rng.choice(rank, size=k, replace=False)]
    axes = [a - rank if rng.random() < 0.3 else a for a in axes]
    if rng.random() < 0.1:
        axes.append(axes[0])                    # duplicates are ignored by TFLM
    return axes


def reduced_shape(shape: tuple[int, ...], axes: list[int], keep: bool) -> tuple[int, ...]:
    """The output shape of a reduction over ``axes`` (with or without keep_dims)."""
    reduced = {a % len(shape) for a in axes}
    return (tuple(1 if i in reduced else d for i, d in enumerate(shape)) if keep
            else tuple(d for i, d in enumerate(shape) if i not in reduced))


def gen_mean(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = _shape(rng, 5 if rng.random() < 0.2 else 4, 9)
    rank = len(shape)
    if rank == 4 and rng.random() < 0.4:            # global average pool, as converted
        axes = [1, 2] if rng.random() < 0.7 else [2, 1]
        if rng.random() < 0.5:
            shape = (int(rng.choice([1, 1, 2])), int(rng.integers(1, 25)),
                     int(rng.integers(1, 25)), int(rng.integers(1, 65)))
    else:
        axes = random_axes(rng, rank)
    keep = bool(rng.random() < 0.5)
    out_shape = reduced_shape(shape, axes, keep)
    in_scale, in_zp = rand_scale(rng), rand_zp(rng)
    out_scale = float(np.float32(in_scale * math.exp(rng.uniform(-2.5, 2.5))))
    x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=in_zp)
    ax = g.add_constant(np.array(axes, dtype=np.int32))
    y = g.add_tensor(out_shape, "int8", scale=out_scale, zero_point=rand_zp(rng))
    g.add_op("MEAN", [x, ax], [y], {"keep_dims": keep})
    return Case(((x, rand_int8(rng, shape)),), (y,), f"{shape} axes {axes} keep={keep}")


#: opcode -> random case generator. One entry per op the native runtime supports.
CASES: dict[str, CaseGen] = {
    "CONV_2D": gen_conv2d,
    "DEPTHWISE_CONV_2D": gen_depthwise,
    "FULLY_CONNECTED": gen_fully_connected,
    "AVERAGE_POOL_2D": _pool("AVERAGE_POOL_2D"),
    "MAX_POOL_2D": _pool("MAX_POOL_2D"),
    "ADD": _binary("ADD"),
    "MUL": _binary("MUL"),
    "RESHAPE": gen_reshape,
    "SQUEEZE": gen_squeeze,
    "PAD": _pad("PAD"),
    "PADV2": _pad("PADV2"),
    "CONCATENATION": gen_concat,
    "QUANTIZE": gen_quantize,
    "DEQUANTIZE": gen_dequantize,
    "RELU": _unary("RELU"),
    "RELU6": _unary("RELU6"),
    "SOFTMAX": gen_softmax,
    "MEAN": gen_mean,
    "LOGISTIC": gen_logistic,
    "TANH": gen_tanh,
    "HARD_SWISH": gen_hard_swish,
    "LEAKY_RELU": gen_leaky_relu,
}

#: cases per generated model (one host compile + one TFLM invoke each)
CASES_PER_MODEL = 50


@dataclass(frozen=True)
class CaseResult:
    opcode: str
    label: str
    identical: bool
    max_diff: float
    #: what the sanitizer or the arena-poisoning check found ("" = nothing)
    finding: str = ""


#: arena-poisoning runs per model (each with different random poison)
POISON_RUNS = 2


def _checked_runs(model, data: list[np.ndarray], defines: tuple[str, ...], sanitize: bool,
                  poison: bool) -> tuple[list[np.ndarray], str]:
    """The native outputs, plus what the sanitizer/poisoning runs found ("" = nothing)."""
    from tinyq.firmware.native.host import HostModel, SanitizedModel, SanitizerFinding

    host = HostModel(model, defines=defines)
    ours = host.invoke(data)
    findings: list[str] = []
    if sanitize:
        try:
            san = SanitizedModel(model, defines=defines).invoke(data)
        except SanitizerFinding as exc:
            findings.append(str(exc))
        else:
            if not all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                       for a, b in zip(ours, san, strict=True)):
                findings.append("the sanitized build computes different outputs")
    for run in range(POISON_RUNS if poison else 0):
        outs, violations = host.invoke_poisoned(data, seed=run)
        findings.extend(violations)
        if not all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                   for a, b in zip(ours, outs, strict=True)):
            findings.append("an op read arena bytes outside its tensors (poisoned run differs)")
    return ours, "; ".join(dict.fromkeys(findings))


def run_cases(opcode: str, count: int, seed: int = 0,
              per_model: int = CASES_PER_MODEL,
              generators: Mapping[str, CaseGen] = MappingProxyType(CASES),
              defines: tuple[str, ...] = (), sanitize: bool = False,
              poison: bool = False) -> list[CaseResult]:
    """Generate ``count`` random ``opcode`` cases; compare native host vs tflite-micro.

    ``defines`` go to the host build (``("TQ_SIMD_EMULATE",)`` checks the DSP paths).
    ``sanitize`` also runs a ``-fsanitize=undefined,address`` build, ``poison`` the
    arena-poisoning check (``HostModel.invoke_poisoned``); a finding of either marks every
    case of that model.
    """
    from tinyq.model.interpreters import TflmInterpreter
    from tinyq.model.tflite_reader import read_model_bytes

    gen = generators[opcode]
    rng = np.random.default_rng([seed, sum(map(ord, opcode))])
    results: list[CaseResult] = []
    done = 0
    while done < count:
        k = min(per_model, count - done)
        g = GraphBuilder(description=f"tinyq random {opcode} cases")
        cases = [gen(g, rng) for _ in range(k)]
        inputs = [t for c in cases for t, _ in c.inputs]
        outputs = [t for c in cases for t in c.outputs]
        data = [a for c in cases for _, a in c.inputs]
        model_bytes = g.build(inputs, outputs)
        model = read_model_bytes(model_bytes)
        ours, finding = _checked_runs(model, data, defines, sanitize, poison)
        theirs = TflmInterpreter(model_bytes).invoke(data)
        pos = 0
        for c in cases:
            same, diff = not finding, 0.0
            for out_pos, _ in enumerate(c.outputs):
                a, b = ours[pos], np.asarray(theirs[pos]).reshape(ours[pos].shape).copy()
                pos += 1
                tinyq_only = (c.defined_by_tinyq[out_pos]
                              if out_pos < len(c.defined_by_tinyq) else None)
                if tinyq_only is not None:
                    mask, values = tinyq_only
                    b[mask] = values[mask]
                if a.dtype.kind == "f":
                    same &= bool(np.array_equal(a.view(np.int32), b.view(np.int32)))
                    with np.errstate(invalid="ignore"):        # inf - inf
                        d = np.nan_to_num(np.abs(a.astype(np.float64) - b.astype(np.float64)))
                else:
                    same &= bool(np.array_equal(a, b))
                    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
                diff = max(diff, float(d.max()) if d.size else 0.0)
            results.append(CaseResult(opcode, c.label, same, diff, finding))
        done += k
    return results


#: ops whose generators live in an op-family module (opcases_<family>.py)
FAMILY_OPS: set[str] = set()


def _register_families() -> None:
    """Add the generators of the op families kept in their own modules."""
    from tinyq.firmware.native import opcases_arith, opcases_compare, opcases_layout

    for family in (opcases_layout, opcases_compare, opcases_arith):
        for name, gen in family.CASES.items():
            assert name not in CASES, f"{name} has two generators"
            CASES[name] = gen
            FAMILY_OPS.add(name)


_register_families()
