"""Data-movement ops on the native runtime: what is refused, and why.

Bit-exactness on random cases is tests/test_native_ops.py; here the limits: each
refusal is one the tflite-micro interpreter also makes (or a parameter the native
runtime cannot fold ahead of time), and names its fix.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.firmware.native import ops_layout, support
from tinyq.firmware.native.lower import LowerContext
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder


def _problems(data: bytes) -> list[str]:
    return [p.message for p in support.problems(read_model_bytes(data))]


def _strided_slice(shape: tuple[int, ...], options: dict[str, object]) -> bytes:
    g = GraphBuilder()
    x = g.add_tensor(shape, "int8", scale=0.1, zero_point=0)
    rank = len(shape)
    params = [g.add_constant(np.array(v, dtype=np.int32))
              for v in ([0] * rank, list(shape), [1] * rank)]
    y = g.add_tensor(shape, "int8", scale=0.1, zero_point=0)
    g.add_op("STRIDED_SLICE", [x, *params], [y], options)
    return g.build([x], [y])


def test_strided_slice_limits_match_the_interpreter():
    ok = _strided_slice((2, 3, 4, 5), {})
    assert _problems(ok) == []
    TflmInterpreter(ok).invoke([np.zeros((2, 3, 4, 5), np.int8)])
    refused = "the op's parameters are not constant, or do not fit the input and output shapes"
    five_d = _strided_slice((1, 2, 3, 4, 5), {})
    assert _problems(five_d) == [refused]
    with pytest.raises(Exception, match="could not prepare"):
        TflmInterpreter(five_d).invoke([np.zeros((1, 2, 3, 4, 5), np.int8)])
    # offset (end relative to begin): TFLM's output shapes disagree with it, so refused
    assert _problems(_strided_slice((4, 5), {"offset": True})) == [refused]


def test_runtime_permutation_and_unsupported_dtype_are_refused():
    g = GraphBuilder()
    x = g.add_tensor((2, 3), "int8", scale=0.1, zero_point=0)
    perm = g.add_tensor((2,), "int32")
    y = g.add_tensor((3, 2), "int8", scale=0.1, zero_point=0)
    g.add_op("TRANSPOSE", [x, perm], [y], {})
    (problem,) = support.problems(read_model_bytes(g.build([x, perm], [y])))
    assert "not constant" in problem.message and "constant parameter tensors" in problem.fix

    g = GraphBuilder()
    x = g.add_tensor((2, 3), "int32")
    y = g.add_tensor((3, 2), "int32")
    g.add_op("TRANSPOSE", [x, g.add_constant(np.array([1, 0], np.int32))], [y], {})
    (problem,) = support.problems(read_model_bytes(g.build([x], [y])))
    assert problem.message.startswith("unsupported dtypes (int32, int32) -> (int32)")


def test_requantizing_copy_is_refused():
    g = GraphBuilder()
    x = g.add_tensor((2, 3), "int8", scale=0.1, zero_point=0)
    y = g.add_tensor((3, 2), "int8", scale=0.2, zero_point=0)
    g.add_op("TRANSPOSE", [x, g.add_constant(np.array([1, 0], np.int32))], [y], {})
    assert _problems(g.build([x], [y])) == ["input and output quantization differ"]


def test_contiguous_runs_are_one_copy():
    """A TRANSPOSE that only moves a size-1 dim compacts to one row: one memcpy."""
    g = GraphBuilder()
    x = g.add_tensor((2, 1, 3, 4), "float32")
    y = g.add_tensor((2, 3, 1, 4), "float32")
    g.add_op("TRANSPOSE", [x, g.add_constant(np.array([0, 2, 1, 3], np.int32))], [y], {})
    model = read_model_bytes(g.build([x], [y]))
    op = model.operators[0]
    call = ops_layout._lower_table_op(LowerContext(model, op, {}), op)
    params = dict(call.params)
    assert str(params["dims"].text) == "{1, 1, 1, 1, 1, 24}" and params["inner_run"] == 1


@pytest.mark.parametrize(("i", "before", "size", "offset", "want"), [
    (0, 2, 3, 1, 2), (1, 2, 3, 1, 1), (2, 2, 3, 1, 0), (5, 2, 3, 1, 1),   # REFLECT
    (0, 2, 3, 0, 1), (1, 2, 3, 0, 0), (5, 2, 3, 0, 2), (6, 2, 3, 0, 1),   # SYMMETRIC
])
def test_mirror_index_is_numpy_pad(i, before, size, offset, want):
    assert ops_layout.mirror_index(i, before, size, offset) == want


def test_padded_space_to_batch_is_refused_with_one_reason():
    g = GraphBuilder()
    x = g.add_tensor((1, 3, 4, 2), "float32")
    y = g.add_tensor((4, 2, 2, 2), "float32")
    block = g.add_constant(np.array([2, 2], np.int32))
    pads = g.add_constant(np.array([[1, 0], [0, 0]], np.int32))
    g.add_op("SPACE_TO_BATCH_ND", [x, block, pads], [y], {})
    assert _problems(g.build([x], [y])) == ["SPACE_TO_BATCH_ND has non-zero paddings"]
