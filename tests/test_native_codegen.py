"""Native code generation: golden model.c, file layout, headers, refusal of unsupported models.

Golden file: tests/golden/native/model.c. After an intended change, regenerate with

    TINYQ_UPDATE_GOLDEN=1 pytest tests/test_native_codegen.py
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import tinyq
from tinyq.errors import DataError, UnsupportedError
from tinyq.firmware.native import support
from tinyq.firmware.native.codegen import NativeOptions, render
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

GOLDEN = Path(__file__).parent / "golden" / "native" / "model.c"
UPDATE = os.environ.get("TINYQ_UPDATE_GOLDEN") == "1"


def small_model_bytes() -> bytes:
    """input 1x5x5x2 -> CONV_2D 3x3 SAME RELU (per-channel) -> RESHAPE -> FC -> 1x4."""
    rng = np.random.default_rng(42)
    g = GraphBuilder(description="tinyq golden")
    x = g.add_tensor((1, 5, 5, 2), "int8", scale=0.05, zero_point=-3, name="input")
    w = g.add_constant(rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8),
                       scale=[0.01, 0.02, 0.015], zero_point=[0, 0, 0], name="conv/w")
    b = g.add_constant(rng.integers(-500, 500, 3).astype(np.int32),
                       scale=[0.0005, 0.001, 0.00075], zero_point=[0, 0, 0], name="conv/b")
    c = g.add_tensor((1, 5, 5, 3), "int8", scale=0.1, zero_point=-128, name="conv/out")
    g.add_op("CONV_2D", [x, w, b], [c], {"padding": "SAME", "fused_activation_function": "RELU"})
    shape = g.add_constant(np.array([1, 75], np.int32), name="shape")
    r = g.add_tensor((1, 75), "int8", scale=0.1, zero_point=-128, name="flat")
    g.add_op("RESHAPE", [c, shape], [r], {"new_shape": [1, 75]})
    fw = g.add_constant(rng.integers(-127, 128, (4, 75)).astype(np.int8), scale=0.02,
                        zero_point=0, name="fc/w")
    fb = g.add_constant(rng.integers(-1000, 1000, 4).astype(np.int32), scale=0.002,
                        zero_point=0, name="fc/b")
    y = g.add_tensor((1, 4), "int8", scale=0.3, zero_point=5, name="output")
    g.add_op("FULLY_CONNECTED", [r, fw, fb], [y], {})
    return g.build([x], [y])


def _model():
    return read_model_bytes(small_model_bytes(), path="golden.tflite")


def _normalise(text: str) -> str:
    return text.replace(f"tinyq {tinyq.__version__} ", "tinyq <version> ")


def test_model_c_matches_golden():
    text = _normalise(render(_model()).model_c)
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), "golden missing: run TINYQ_UPDATE_GOLDEN=1 pytest " + __file__
    assert text == GOLDEN.read_text(), "model.c changed: review, then TINYQ_UPDATE_GOLDEN=1"


def test_layout_headers_and_plan():
    model = _model()
    src = render(model, NativeOptions(prefix="src/native"))
    assert set(src.files) == {
        "src/native/model.c", "src/native/tq_kernels.h", "src/native/tq_common.c",
        "src/native/tq_conv.c", "src/native/tq_fully_connected.c"}
    for path, text in src.files.items():
        assert f"sha256 {model.sha256}" in text.splitlines()[0], path
        assert "golden.tflite" in text.splitlines()[0], path
    assert src.layer_names == ("CONV_2D", "RESHAPE", "FULLY_CONNECTED")
    assert src.plan.aliases            # the RESHAPE is aliased: no copy
    assert "aliased" in src.model_c
    # conv output (75 B, aligned to 80) + the 50-byte input live at op 0, rounded up to 16
    assert src.arena_bytes == src.plan.arena_bytes == 144
    assert re.search(r"static uint8_t tq_arena\[TQ_ARENA_BYTES\] TQ_ALIGN\(16\) TQ_ARENA_SECTION",
                     src.model_c)
    # weights wrap at a readable width
    assert max(len(line) for line in src.model_c.splitlines()[1:]) <= 110


def test_unsupported_op_is_refused_with_a_clear_error():
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int8", scale=0.1, zero_point=0)
    y = g.add_tensor((1, 4), "int8", scale=0.1, zero_point=0)
    g.add_op("FLOOR", [x], [y], {})
    model = read_model_bytes(g.build([x], [y]))
    found = support.problems(model)
    assert [p.opcode for p in found] == ["FLOOR"]
    with pytest.raises(UnsupportedError, match="no kernel for FLOOR"):
        render(model)


def test_float_model_is_refused_naming_the_dtypes():
    g = GraphBuilder()
    x = g.add_tensor((1, 3), "float32")
    w = g.add_constant(np.ones((2, 3), np.float32))
    y = g.add_tensor((1, 2), "float32")
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y], {})
    model = read_model_bytes(g.build([x], [y]))
    (problem,) = support.problems(model)
    assert "float32" in problem.message and problem.opcode == "FULLY_CONNECTED"
    with pytest.raises(UnsupportedError, match="unsupported dtypes"):
        render(model)


def test_int16_activations_are_refused():
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int16", scale=0.1, zero_point=0)
    y = g.add_tensor((1, 4), "int16", scale=0.1, zero_point=0)
    g.add_op("RELU", [x], [y], {})
    model = read_model_bytes(g.build([x], [y]))
    (problem,) = support.problems(model)
    assert (problem.opcode, problem.op_index) == ("RELU", 0)
    assert problem.message.startswith("unsupported dtypes (int16) -> (int16)")
    assert "--runtime tflm" in problem.fix             # TFLM runs int16x8 models
    with pytest.raises(UnsupportedError, match=r"unsupported dtypes \(int16\)"):
        render(model)


def test_supported_ops_table_lists_every_lowering():
    names = [row[0] for row in support.supported_ops_table()]
    assert "CONV_2D" in names and "FULLY_CONNECTED" in names and names == sorted(names)


def test_host_build_runs_the_golden_model_like_tflm():
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    from tinyq.firmware.native.host import HostModel
    from tinyq.model.interpreters import TflmInterpreter

    native = HostModel(_model())
    tflm = TflmInterpreter(small_model_bytes())
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.integers(-128, 128, (1, 5, 5, 2)).astype(np.int8)
        assert native.invoke([x])[0].tobytes() == tflm.invoke([x])[0].tobytes()
    with pytest.raises(DataError, match="takes 1 input"):
        native.invoke([])
    with pytest.raises(DataError, match="bytes"):
        native.invoke([np.zeros(3, np.int8)])
