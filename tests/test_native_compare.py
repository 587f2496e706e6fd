"""Comparisons and selections on the native runtime: the refusals and the dtypes left out.

Bit-exactness on random cases is tests/test_native_ops.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.firmware.native import support
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder


def _compare(opcode: str, dtype: str, shapes: tuple[tuple[int, ...], ...], scale: float = 0.1
             ) -> bytes:
    g = GraphBuilder()
    q = {"scale": scale, "zero_point": 0} if dtype in ("int8", "int16") else {}
    a, b = (g.add_tensor(s, dtype, **q) for s in shapes[:2])
    y = g.add_tensor(shapes[2], "bool")
    g.add_op(opcode, [a, b], [y], {})
    return g.build([a, b], [y])


def _messages(data: bytes) -> list[str]:
    return [p.message for p in support.problems(read_model_bytes(data))]


def test_comparison_scale_of_one_is_refused():
    assert _messages(_compare("LESS", "int8", ((4,), (4,), (4,)), 0.5)) == []
    assert _messages(_compare("LESS", "int8", ((4,), (4,), (4,)), 1.0)) == [
        "a quantized comparison input has a scale of 1 or more"]


def test_comparisons_broadcast_over_four_dims_at_most():
    assert _messages(_compare("EQUAL", "float32", ((2, 1, 3, 4, 5),) * 3)) == []
    deep = _compare("EQUAL", "float32", ((2, 1, 3, 1, 5), (1, 2, 1, 4, 1), (2, 2, 3, 4, 5)))
    assert _messages(deep) == ["the inputs broadcast over more dims than TFLM's kernel takes"]


def test_int16_greater_is_left_to_tflm():
    """The interpreter's int16 GREATER rescales with parameters its Prepare never sets (all
    false in a fresh process, other answers after other models ran): native refuses it."""
    data = _compare("GREATER", "int16", ((3,), (3,), (3,)))
    TflmInterpreter(data).invoke([np.array([5, 0, -5], np.int16),
                                  np.array([0, 0, 0], np.int16)])      # it does run
    (message,) = _messages(data)
    assert message.startswith("unsupported dtypes (int16, int16) -> (bool)")


@pytest.mark.parametrize("opcode", ["REDUCE_MAX", "REDUCE_MIN"])
def test_reduce_minmax_needs_the_input_quantization(opcode):
    g = GraphBuilder()
    x = g.add_tensor((2, 3), "int8", scale=0.1, zero_point=0)
    y = g.add_tensor((2,), "int8", scale=0.2, zero_point=0)
    g.add_op(opcode, [x, g.add_constant(np.array([1], np.int32))], [y], {"keep_dims": False})
    assert _messages(g.build([x], [y])) == ["input and output quantization differ"]
