"""Pre-flash checks: each model here is built with the writer and really fails in TFLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyq import checks
from tinyq.errors import ModelError, UnsupportedError
from tinyq.interpreters import TflmInterpreter
from tinyq.tflite_reader import read_model_bytes
from tinyq.tflite_writer import GraphBuilder

REPO = Path(__file__).resolve().parent.parent


def _hybrid_fc() -> bytes:
    """FULLY_CONNECTED with float32 activations and int8 weights (dynamic-range)."""
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w = g.add_constant(np.ones((4, 8), np.int8), scale=0.1)
    b = g.add_constant(np.zeros(4, np.float32))
    y = g.add_tensor((1, 4), "float32")
    g.add_op("FULLY_CONNECTED", [x, w, b], [y], {"asymmetric_quantize_inputs": True})
    return g.build()


def _float16_fc() -> bytes:
    """float16 weights DEQUANTIZEd to float32 at run time, then FULLY_CONNECTED."""
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w16 = g.add_constant(np.ones((4, 8), np.float16))
    w = g.add_tensor((4, 8), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("DEQUANTIZE", [w16], [w])
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    return g.build(inputs=[x], outputs=[y])


def _uint8_relu() -> bytes:
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    y = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    g.add_op("RELU", [x], [y])
    return g.build()


def _names(found):
    return [p.check for p in found]


def test_hybrid_model_is_flagged_and_tflm_really_rejects_it():
    data = _hybrid_fc()
    found = checks.problems(read_model_bytes(data), "tflm")
    assert _names(found) == ["tflm_hybrid_model"]
    assert "--mode int8" in found[0].fix and found[0].op_index == 0
    assert "float32 activations with int8 weights" in found[0].message
    with pytest.raises((UnsupportedError, ModelError)):
        TflmInterpreter(data).invoke([np.ones((1, 8), np.float32)])


def test_float16_model_is_flagged_and_tflm_really_rejects_it():
    data = _float16_fc()
    found = checks.problems(read_model_bytes(data), "tflm")
    assert _names(found) == ["tflm_float16_weights"]
    assert found[0].opcode == "DEQUANTIZE" and "--mode int8" in found[0].fix
    with pytest.raises((UnsupportedError, ModelError)):
        TflmInterpreter(data).invoke([np.ones((1, 8), np.float32)])


def test_uint8_compute_is_flagged():
    found = checks.problems(read_model_bytes(_uint8_relu()), "tflm")
    assert _names(found) == ["tflm_uint8_tensors"]


def test_uint8_io_through_quantize_is_fine():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    y = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=0)
    z = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=0)
    g.add_op("QUANTIZE", [x], [y])
    g.add_op("RELU", [y], [z])
    assert checks.problems(read_model_bytes(g.build()), "tflm") == ()


def test_unsupported_op_is_flagged():
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("REDUCE_PROD", [x, g.add_constant(np.array([1], np.int32))], [y])
    found = checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm")
    assert _names(found) == ["tflm_unsupported_op"]
    assert found[0].message.startswith("REDUCE_PROD is not an op TFLM implements")


def test_int8_model_has_no_problems():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), scale=0.1)
    w = g.add_constant(np.ones((4, 8), np.int8), scale=0.1)
    y = g.add_tensor((1, 4), scale=0.2)
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    assert checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm") == ()


def test_messages_come_from_docstrings():
    for c in checks.CHECKS:
        assert c.message and c.fix, c.name
        assert c.message.split()[0] in (checks.inspect.getdoc(c.fn) or "")


def test_native_runtime_hook():
    found = checks.problems(read_model_bytes(_hybrid_fc()), "native")
    assert found and all(p.runtime == "native" for p in found)


def test_supported_ops_doc_is_generated_from_the_checks():
    text = checks.markdown()
    for c in checks.CHECKS:
        assert f"`{c.name}`" in text
    assert "`CONV_2D`" in text
    doc = (REPO / "docs" / "supported_ops.md").read_text()
    for line in text.splitlines():
        if line.startswith(("| tflm |", "| native |")):
            assert line in doc, "regenerate: python -m tinyq.checks --markdown"


def test_markdown_command():
    out = subprocess.run([sys.executable, "-m", "tinyq.checks", "--markdown"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("# Supported ops and pre-flash checks")
