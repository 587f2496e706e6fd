"""SUB, SQUARED_DIFFERENCE, PRELU, NEG, ABS on the native runtime: the refusals, and the
coverage figure docs/supported_ops.md prints.

Bit-exactness on random cases is tests/test_native_ops.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.firmware.native import support
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder
from tinyq.model.tflm_dtypes import TFLM_OP_DTYPES


def _binary(opcode: str, dtype: str, scales: tuple[float, float, float],
            zps: tuple[int, int, int] = (0, 0, 0), options: dict | None = None) -> bytes:
    g = GraphBuilder()
    q = [{"scale": s, "zero_point": z} if dtype in ("int8", "int16") else {}
         for s, z in zip(scales, zps, strict=True)]
    a, b, y = (g.add_tensor((2, 3), dtype, **qi) for qi in q)
    g.add_op(opcode, [a, b], [y], options or {})
    return g.build([a, b], [y])


def _messages(data: bytes) -> list[str]:
    return [p.message for p in support.problems(read_model_bytes(data))]


def test_sub_output_scale_too_small_is_refused_as_tflm_aborts():
    assert _messages(_binary("SUB", "int8", (0.1, 0.1, 0.1))) == []
    tiny = _binary("SUB", "int8", (0.1, 0.1, 1e-9))
    assert _messages(tiny) == ["the output scale is too small for TFLM's SUB rescaling"]


def test_int32_sub_with_an_activation_is_refused():
    relu = _binary("SUB", "int32", (0, 0, 0), options={"fused_activation_function": "RELU"})
    assert _messages(relu) == [
        "int32 SUB has quantized tensors (TFLM refuses them) or a fused activation"]


def test_int16_squared_difference_needs_zero_points_of_zero():
    ok = _binary("SQUARED_DIFFERENCE", "int16", (0.001, 0.001, 0.01))
    assert _messages(ok) == []
    shifted = _binary("SQUARED_DIFFERENCE", "int16", (0.001, 0.001, 0.01), (3, 0, 0))
    assert _messages(shifted) == [
        "the quantization is outside what TFLM's SQUARED_DIFFERENCE computes"]
    with pytest.raises(Exception, match="could not prepare"):
        TflmInterpreter(shifted).invoke([np.zeros((2, 3), np.int16)] * 2)


def test_coverage_counts_the_tflm_table():
    covered, total, left = support.coverage()
    assert total == sum(len(row.signatures) for row in TFLM_OP_DTYPES.values())
    assert covered + len(left) == total
    assert ("SUB", ("int8", "int8", "int8")) not in left                    # native
    assert ("SUB", ("float32", "float32", "float32")) not in left
    assert ("TRANSPOSE_CONV", ("int8", "int8", "int8")) in left             # not yet
    assert ("SOFTMAX", ("int8", "int16")) not in left                       # mixed signature


def test_int16_sub_broadcast_is_refused():
    g = GraphBuilder()
    a = g.add_tensor((2, 3), "int16", scale=0.001, zero_point=0)
    b = g.add_tensor((1, 3), "int16", scale=0.001, zero_point=0)
    y = g.add_tensor((2, 3), "int16", scale=0.002, zero_point=0)
    g.add_op("SUB", [a, b], [y], {})
    (message,) = _messages(g.build([a, b], [y]))
    assert message.startswith("int16 SUB broadcasts")
