"""Prepare-time arithmetic must use the tflite-micro build's precision (double).

The build divides/multiplies float32 scales after widening them to double
(ReluPrepare, GetQuantizedConvolutionMultipler). Random cases hit a
float32-vs-double difference only about once in a thousand, so these tests
search for parameters where the two precisions give different multipliers and
check the native runtime against TFLM on exactly those.
"""

from __future__ import annotations

import numpy as np

from tinyq.firmware.native import fixedpoint, quant
from tinyq.firmware.native.host import HostModel
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

f32 = np.float32


def _relu_table(si: float, zi: int, so: float, zo: int, double: bool) -> np.ndarray:
    ratio = float(f32(si)) / float(f32(so)) if double else float(f32(si) / f32(so))
    m, s = quant.quantize_multiplier(ratio)
    v = fixedpoint.mul_by_quantized_mul(fixedpoint.INT8_VALUES - zi, m, s) + zo
    return np.clip(v, max(-128, zo), 127)


def _differs_relu(si: float, zi: int, so: float, zo: int) -> bool:
    """True when float32 and double Prepare math give different RELU outputs."""
    return not np.array_equal(_relu_table(si, zi, so, zo, False),
                              _relu_table(si, zi, so, zo, True))


def _differs_fc(si: float, sw: float, so: float) -> bool:
    single = quant.quantize_multiplier(float(f32(si) * f32(sw)) / float(f32(so)))
    double = quant.quantize_multiplier(float(f32(si)) * float(f32(sw)) / float(f32(so)))
    return single != double


def _check(model_bytes: bytes, inputs: list[np.ndarray]) -> None:
    ours = HostModel(read_model_bytes(model_bytes)).invoke(inputs)
    theirs = TflmInterpreter(model_bytes).invoke(inputs)
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(o.reshape(-1), t.reshape(-1))


def test_relu_multiplier_in_double() -> None:
    rng = np.random.default_rng(3)
    g = GraphBuilder()
    ins, outs = [], []
    while len(ins) < 5:
        si = float(f32(10 ** rng.uniform(-3, 0)))
        so = float(f32(si * np.exp(rng.uniform(-1, 1))))
        zi, zo = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        if not _differs_relu(si, zi, so, zo):
            continue
        a = g.add_tensor((1, 256), "int8", scale=si, zero_point=zi)
        b = g.add_tensor((1, 256), "int8", scale=so, zero_point=zo)
        g.add_op("RELU", [a], [b])
        ins.append(a)
        outs.append(b)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    _check(g.build(ins, outs), [x] * len(ins))


def _fc_outputs(acc: np.ndarray, si: float, sw: float, so: float, zo: int,
                double: bool) -> np.ndarray:
    if double:
        m, sh = quant.quantize_multiplier(float(f32(si)) * float(f32(sw)) / float(f32(so)))
    else:
        m, sh = quant.quantize_multiplier(float(f32(si) * f32(sw)) / float(f32(so)))
    return np.clip(fixedpoint.mul_by_quantized_mul(acc, m, sh) + zo, -128, 127)


def test_fully_connected_per_tensor_multiplier_in_double() -> None:
    """Per-tensor FC layers (256 rows x 1 input -> 64 outputs) chosen so that float32 and
    double Prepare math give different outputs on these exact accumulators."""
    rng = np.random.default_rng(4)
    x = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    g = GraphBuilder()
    ins, outs = [], []
    while len(ins) < 4:
        si = float(f32(10 ** rng.uniform(-3, -1)))
        sw = float(f32(10 ** rng.uniform(-3, -1.5)))
        so = float(f32(si * sw * 64 * np.exp(rng.uniform(-1, 1))))
        zi, zo = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        w = rng.integers(-127, 128, (64, 1)).astype(np.int8)
        acc = (x.astype(np.int64) - zi) @ w.astype(np.int64).T
        if np.array_equal(_fc_outputs(acc, si, sw, so, zo, False),
                          _fc_outputs(acc, si, sw, so, zo, True)):
            continue
        a = g.add_tensor((256, 1), "int8", scale=si, zero_point=zi)
        wt = g.add_constant(w, scale=[sw], zero_point=[0])
        y = g.add_tensor((256, 64), "int8", scale=so, zero_point=zo)
        g.add_op("FULLY_CONNECTED", [a, wt, -1], [y], {"fused_activation_function": "NONE"})
        ins.append(a)
        outs.append(y)
    _check(g.build(ins, outs), [x] * len(ins))
