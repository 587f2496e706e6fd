"""Extreme-parameter single-op cases: the edges of what a valid model may carry.

The random cases in ``opcases`` stay where converted models live; these go to the
limits the TFLite schema allows and the native runtime accepts: requantization
shifts from -32 (flushed to zero) to 30, multipliers whose mantissa rounds up to
2^31, zero points at the type limits, biases as close to +-2^31 as the int32
accumulator allows, NaN/+-Inf/huge float inputs, SOFTMAX rows of up to 8,191
equal maxima, MEAN over tens of thousands of values. Every case is a model tinyq
accepts (``tinyq inspect --runtime native`` finds nothing): the generators resample
parameters the support checks would refuse, and tests/test_native_extreme.py checks
the refusals separately.

Where TFLM's own result is undefined behaviour (NaN or out-of-range float -> int in
QUANTIZE) the case carries tinyq's documented result for those elements
(``Case.defined_by_tinyq``, docs/numerics.md). SOFTMAX rows of 8,192 or more maximal
terms (512 for int8 outputs) make the tflite-micro interpreter abort:
``tinyq_softmax_equal_row`` gives tinyq's result for them.

``EXTREME_CASES`` has the same shape as ``opcases.CASES``: pass it as ``generators``
to ``opcases.run_cases`` (with ``sanitize=True, poison=True``).
"""

from __future__ import annotations

import math

import numpy as np

from tinyq.firmware.native import fixedpoint, quant
from tinyq.firmware.native.opcases import Case, CaseGen, rand_int8, rand_scale
from tinyq.model.tflite_writer import GraphBuilder

#: requantization shifts the generators aim at, weighted toward both ends
_SHIFTS = (-32, -31, -31, -30, -29, -20, -8, -1, 0, 1, 8, 20, 28, 29, 30, 30)
#: mantissas in [0.5, 1): exactly 1/2, just below 1 (rounds up to 2^31 and renormalizes)
_MANTISSAS = (0.5, 1.0 - 2.0 ** -33, 1.0 - 2.0 ** -20, 0.75, 0.5 + 2.0 ** -31)
#: zero points at the limits of int8 (and one ordinary value)
_ZPS = (-128, -128, 127, 127, 0)


def _pick(rng: np.random.Generator, values: tuple) -> float:
    return values[int(rng.integers(0, len(values)))]


def _extreme_real(rng: np.random.Generator) -> float:
    """A real multiplier with an extreme shift and mantissa (before float32 rounding)."""
    return float(_pick(rng, _MANTISSAS)) * 2.0 ** int(_pick(rng, _SHIFTS))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _accepted(real: float) -> bool:
    try:
        quant.kernel_multiplier(real)
    except quant.MultiplierRangeError:
        return False
    return True


def _edge_int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """int8 data: random, all -128, all 127, or only the two extremes."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return rand_int8(rng, shape)
    if kind == 3:
        return rng.choice(np.array([-128, 127], dtype=np.int8), size=shape)
    return np.full(shape, -128 if kind == 1 else 127, dtype=np.int8)


def _edge_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = _edge_int8(rng, shape)
    w[w == -128] = -127                   # symmetric weights, as the converter writes
    return w


def _scale_for(rng: np.random.Generator, other: float) -> float:
    """A float32 scale s with other / s an extreme multiplier tinyq accepts."""
    while True:
        s = _f32(other / _extreme_real(rng))
        if 0 < s < math.inf and np.float32(s) > 0 and _accepted(_f32(other) / s):
            return s


def _near_limit_bias(rng: np.random.Generator, w: np.ndarray, axis_channels: int,
                     depthwise: bool) -> np.ndarray:
    """Biases within a few counts of the largest magnitude the accumulator bound allows."""
    per_ch = (w.reshape(-1, axis_channels).T if depthwise
              else w.reshape(axis_channels, -1)).astype(np.int64)
    abs_sums = np.abs(per_ch).sum(axis=1)
    # |bias| + 128 |sum w| (zero-point fold) + 256 sum|w| <= INT32_MAX
    room = quant.INT32_MAX - 384 * abs_sums - rng.integers(0, 3, size=axis_channels)
    sign = rng.choice(np.array([-1, 1]), size=axis_channels)
    near = sign * room
    ordinary = rng.integers(-20000, 20000, size=axis_channels)
    return np.where(rng.random(axis_channels) < 0.7, near, ordinary).astype(np.int32)


def _weighted(opcode: str) -> CaseGen:
    """CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with extreme requantization."""
    depthwise = opcode == "DEPTHWISE_CONV_2D"

    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        in_scale, out_scale = rand_scale(rng), rand_scale(rng)
        in_zp, out_zp = int(_pick(rng, _ZPS)), int(_pick(rng, _ZPS))
        if opcode == "FULLY_CONNECTED":
            depth, oc = int(rng.integers(1, 40)), int(rng.integers(1, 9))
            x_shape: tuple[int, ...] = (1, depth)
            y_shape: tuple[int, ...] = (1, oc)
            w_shape: tuple[int, ...] = (oc, depth)
        else:
            ih, iw, ic = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 6))
            k = int(rng.integers(1, 4))
            oc = ic * int(rng.integers(1, 3)) if depthwise else int(rng.integers(1, 7))
            x_shape, y_shape = (1, ih, iw, ic), (1, ih, iw, oc)     # SAME, stride 1
            w_shape = (1, k, k, oc) if depthwise else (oc, k, k, ic)
        per_channel = opcode != "FULLY_CONNECTED" or rng.random() < 0.5
        # weight scale from the multiplier: real = in * w / out
        w_scales = [_scale_for(rng, 1.0) * out_scale / in_scale for _ in
                    range(oc if per_channel else 1)]
        w_scales = [_f32(s) for s in w_scales]
        mults = [_f32(in_scale) * _f32(s) / _f32(out_scale) for s in w_scales]
        if not all(_accepted(m) and m > 0 for m in mults):
            return gen(g, rng)                   # float32 rounding left the accepted range
        w = _edge_weights(rng, w_shape)
        bias = _near_limit_bias(rng, w, oc, depthwise)
        act = str(rng.choice(["NONE", "RELU", "RELU6"]))
        build = (x_shape, w_shape, y_shape, in_scale, in_zp, out_scale, out_zp, w_scales,
                 per_channel, w, bias, act)
        # TFLM's FULLY_CONNECTED Prepare rejects some large multipliers (from shift 21 on
        # in the tflite-micro build): keep to what it accepts
        if opcode == "FULLY_CONNECTED" and not _tflm_prepares(lambda gb: add(gb, *build)):
            return gen(g, rng)
        x, y = add(g, *build)
        label = (f"{x_shape} oc{oc} zp {in_zp}/{out_zp} shifts "
                 f"{[quant.kernel_multiplier(m)[1] for m in mults][:4]} {act}")
        return Case(((x, _edge_int8(rng, x_shape)),), (y,), label)

    def add(g: GraphBuilder, x_shape, w_shape, y_shape, in_scale, in_zp, out_scale, out_zp,
            w_scales, per_channel, w, bias, act) -> tuple[int, int]:
        oc = y_shape[-1]
        x = g.add_tensor(x_shape, "int8", scale=in_scale, zero_point=in_zp)
        wt = g.add_constant(w, scale=w_scales, zero_point=[0] * len(w_scales),
                            axis=3 if depthwise else 0)
        b_scales = [in_scale * s for s in (w_scales if per_channel else w_scales * oc)]
        bt = g.add_constant(bias, scale=b_scales, zero_point=[0] * oc)
        y = g.add_tensor(y_shape, "int8", scale=out_scale, zero_point=out_zp)
        if opcode == "FULLY_CONNECTED":
            opts: dict[str, object] = {"fused_activation_function": act}
        else:
            opts = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1,
                    "dilation_w_factor": 1, "fused_activation_function": act}
            if depthwise:
                opts["depth_multiplier"] = oc // x_shape[-1]
        g.add_op(opcode, [x, wt, bt], [y], opts)
        return x, y
    return gen


def _tflm_prepares(add) -> bool:
    """Does the tflite-micro interpreter prepare a one-op model built by ``add(g)``?"""
    from tinyq.errors import TinyqError
    from tinyq.model.interpreters import TflmInterpreter

    g = GraphBuilder()
    x, y = add(g)
    try:
        TflmInterpreter(g.build([x], [y]))
    except TinyqError:
        return False
    return True


def _binary(opcode: str) -> CaseGen:
    """ADD / MUL with scale ratios at the extremes and zero points at the limits."""
    def gen(g: GraphBuilder, rng: np.random.Generator) -> Case:
        shape = tuple(int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 4))))
        a_scale = rand_scale(rng)
        # ADD: one input's scale may be 2^-40 of the other's (its multiplier flushes to 0)
        b_scale = _f32(a_scale * 2.0 ** int(rng.integers(-40, 41))) if opcode == "ADD" \
            else rand_scale(rng)
        if opcode == "ADD":
            # TFLM aborts unless the output multiplier is below 1 (shift <= 0)
            twice = 2.0 * max(_f32(a_scale), _f32(b_scale))
            y_scale = _scale_for(rng, twice / (1 << 20))
            if _f32(twice) / ((1 << 20) * _f32(y_scale)) >= 1.0:
                return gen(g, rng)
        else:
            y_scale = _scale_for(rng, _f32(a_scale) * _f32(b_scale))
        try:
            if opcode == "ADD":
                quant.add_params(a_scale, b_scale, y_scale)
        except quant.MultiplierRangeError:
            return gen(g, rng)
        zps = [int(_pick(rng, _ZPS)) for _ in range(3)]
        a = g.add_tensor(shape, "int8", scale=a_scale, zero_point=zps[0])
        b = g.add_tensor(shape, "int8", scale=b_scale, zero_point=zps[1])
        y = g.add_tensor(shape, "int8", scale=y_scale, zero_point=zps[2])
        g.add_op(opcode, [a, b], [y], {"fused_activation_function": "NONE"})
        return Case(((a, _edge_int8(rng, shape)), (b, _edge_int8(rng, shape))), (y,),
                    f"{shape} scales {a_scale:.3g}/{b_scale:.3g}->{y_scale:.3g} zps {zps}")
    return gen


#: float inputs where C's float -> int conversion (TFLM's) is undefined or special
_SPECIAL_FLOATS = np.array([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -1e-45, 0.0,
                            -0.0, 2.5, -2.5, 127.5, -128.5, 1e10, -1e10], dtype=np.float32)


def tinyq_quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """tinyq's QUANTIZE float32 -> int8 (docs/numerics.md): round half away from zero of
    the float32 quotient, NaN -> the zero point, +-Inf and overflow saturate."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = x.astype(np.float32) / np.float32(scale)
        r = np.sign(q) * np.floor(np.abs(q) + np.float32(0.5))
        r = np.where(np.isnan(r), 0.0, np.clip(r, -1000.0, 1000.0))
    return np.clip(r.astype(np.int64) + zero_point, -128, 127).astype(np.int8)


def gen_quantize(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = (int(rng.integers(1, 40)),)
    if rng.random() < 0.6:                       # float32 -> int8 with non-finite inputs
        scale = _f32(2.0 ** float(rng.uniform(-126, 100)))
        zp = int(_pick(rng, _ZPS))
        data = np.where(rng.random(shape) < 0.5,
                        rng.choice(_SPECIAL_FLOATS, size=shape),
                        (rng.standard_normal(shape) * 200 * scale).astype(np.float32)
                        ).astype(np.float32)
        x = g.add_tensor(shape, "float32")
        y = g.add_tensor(shape, "int8", scale=scale, zero_point=zp)
        g.add_op("QUANTIZE", [x], [y], {})
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            q = data / np.float32(scale)
        # TFLM converts with static_cast<int32_t>: undefined for NaN and beyond int32
        undefined = ~np.isfinite(q) | (np.abs(q) >= 2.0 ** 31)
        return Case(((x, data),), (y,), f"float32 {shape} scale {scale:.3g} zp {zp}",
                    ((undefined, tinyq_quantize(data, scale, zp)),))
    return _rescale_case(g, rng, "QUANTIZE", shape)


def _rescale_case(g: GraphBuilder, rng: np.random.Generator, opcode: str,
                  shape: tuple[int, ...]) -> Case:
    """int8 -> int8 ``opcode`` (QUANTIZE, RELU) with an extreme in/out scale ratio."""
    in_scale = rand_scale(rng)
    out_scale = _scale_for(rng, in_scale)
    zps = (int(_pick(rng, _ZPS)), int(_pick(rng, _ZPS)))
    x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=zps[0])
    y = g.add_tensor(shape, "int8", scale=out_scale, zero_point=zps[1])
    g.add_op(opcode, [x], [y], {})
    return Case(((x, _edge_int8(rng, shape)),), (y,),
                f"{shape} {in_scale:.3g}->{out_scale:.3g} zps {zps}")


def gen_relu(g: GraphBuilder, rng: np.random.Generator) -> Case:
    return _rescale_case(g, rng, "RELU", (int(rng.integers(1, 30)),))


def gen_mean(g: GraphBuilder, rng: np.random.Generator) -> Case:
    rows = int(rng.choice([1, 3, 300, 20000]))
    shape = (1, rows, int(rng.integers(1, 4)))
    in_scale = rand_scale(rng)
    out_scale = _scale_for(rng, in_scale)
    zps = (int(_pick(rng, _ZPS)), int(_pick(rng, _ZPS)))
    x = g.add_tensor(shape, "int8", scale=in_scale, zero_point=zps[0])
    ax = g.add_constant(np.array([1], dtype=np.int32))
    y = g.add_tensor((1, shape[2]), "int8", scale=out_scale, zero_point=zps[1])
    g.add_op("MEAN", [x, ax], [y], {"keep_dims": False})
    return Case(((x, _edge_int8(rng, shape)),), (y,),
                f"{shape} {in_scale:.3g}->{out_scale:.3g} zps {zps}")


#: SOFTMAX row lengths: TFLM's int32 sum of maximal terms overflows from 4,096 on (it
#: wraps, and TFLM reads it as uint32: exact). From 8,192 the sum reaches 0 and the
#: tflite-micro interpreter aborts, so those rows are checked without it
#: (tests/test_native_extreme.py, against ``tinyq_softmax_equal_row``).
_SOFTMAX_DEPTHS = (4095, 4096, 5000, 8191)
#: int8 SOFTMAX outputs abort TFLM from 512 maximal terms (output shift above 31)
_SOFTMAX_DEPTHS_S8 = (200, 511)


def tinyq_softmax_equal_row(depth: int, out16: bool) -> int:
    """tinyq's SOFTMAX output for a row of ``depth`` equal values (docs/numerics.md):
    each term is exp(0) = 1.0 = 2^19 in Q12.19 and the uint32 sum saturates."""
    total = min(depth << 19, 0xFFFFFFFF)
    headroom = 32 - total.bit_length()
    shifted = np.array([((total << headroom) & 0xFFFFFFFF) - (1 << 31)], dtype=np.int64)
    scale = fixedpoint.one_over_one_plus_x_for_x_in_0_1(shifted)
    exponent = (12 - headroom) + 31 - (16 if out16 else 8)
    exponent = min(exponent, 31)
    term = fixedpoint.rdbpot(fixedpoint.srdhm(scale, quant.INT32_MAX), exponent)
    zero = -32768 if out16 else -128
    hi = 32767 if out16 else 127
    return int(np.clip(int(term[0]) + zero, zero, hi))


def gen_softmax(g: GraphBuilder, rng: np.random.Generator) -> Case:
    out16 = rng.random() < 0.4
    if rng.random() < 0.5:
        depth = int(_pick(rng, _SOFTMAX_DEPTHS if out16 else _SOFTMAX_DEPTHS_S8))
        data = np.full((1, depth), int(rng.integers(-128, 128)), dtype=np.int8)
        beta = 1.0
        in_scale = rand_scale(rng, 1e-3, 1.0)
    else:                          # beta * scale at the top of the range (left shift 31)
        depth = int(rng.integers(1, 60))
        data = _edge_int8(rng, (1, depth))
        beta = _f32(float(rng.choice([1.0, 1e3, 1e6])))
        in_scale = _f32(float(rng.choice([0.5, 40.0, 1e4])))
    x = g.add_tensor((1, depth), "int8", scale=in_scale, zero_point=int(_pick(rng, _ZPS)))
    y = (g.add_tensor((1, depth), "int16", scale=1 / 65536, zero_point=-32768) if out16
         else g.add_tensor((1, depth), "int8", scale=1 / 256, zero_point=-128))
    g.add_op("SOFTMAX", [x], [y], {"beta": beta})
    return Case(((x, data),), (y,),
                f"depth {depth} beta {beta:g} scale {in_scale:g} -> "
                f"{'int16' if out16 else 'int8'}")


def gen_dequantize(g: GraphBuilder, rng: np.random.Generator) -> Case:
    shape = (int(rng.integers(1, 30)),)
    scale = _f32(2.0 ** float(rng.uniform(-140, 127)))
    zp = int(_pick(rng, _ZPS))
    x = g.add_tensor(shape, "int8", scale=scale, zero_point=zp)
    y = g.add_tensor(shape, "float32")
    g.add_op("DEQUANTIZE", [x], [y], {})
    return Case(((x, _edge_int8(rng, shape)),), (y,), f"{shape} scale {scale:.3g} zp {zp}")


#: opcode -> extreme-parameter case generator (ops whose kernels do requantization or
#: float conversion; the table-driven ops compute their tables in Python)
EXTREME_CASES: dict[str, CaseGen] = {
    "CONV_2D": _weighted("CONV_2D"),
    "DEPTHWISE_CONV_2D": _weighted("DEPTHWISE_CONV_2D"),
    "FULLY_CONNECTED": _weighted("FULLY_CONNECTED"),
    "ADD": _binary("ADD"),
    "MUL": _binary("MUL"),
    "QUANTIZE": gen_quantize,
    "DEQUANTIZE": gen_dequantize,
    "RELU": gen_relu,
    "MEAN": gen_mean,
    "SOFTMAX": gen_softmax,
}
