"""tinyq.firmware.native.support: the fix a refusal names depends on what the model is.

Dynamic-range and float16 models run on neither runtime (the tflite-micro interpreter
really rejects them here), so the fix is to re-quantize to int8, never --runtime tflm;
float32 and int16x8 models do run on TFLM (really invoked here), so that stays the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
from graphs import float16_fc, hybrid_fc

from tinyq.cli import main as cli_main
from tinyq.errors import ModelError, UnsupportedError
from tinyq.firmware.native import support
from tinyq.firmware.native.lower import lowering_for
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

REQUANTIZE = "re-quantize with `tinyq quantize MODEL --calib DATA --mode int8`"


def _float32_fc() -> bytes:
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w = g.add_constant(np.ones((4, 8), np.float32))
    y = g.add_tensor((1, 4), "float32")
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    return g.build(inputs=[x], outputs=[y])


def _int16x8_fc() -> bytes:
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "int16", scale=0.01, zero_point=0)
    w = g.add_constant(np.ones((4, 8), np.int8), scale=0.02, zero_point=0)
    b = g.add_constant(np.zeros(4, np.int64), "int64", scale=0.0002, zero_point=0)
    y = g.add_tensor((1, 4), "int16", scale=0.05, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.build()


@pytest.mark.parametrize("make", [hybrid_fc, float16_fc], ids=["dynamic", "float16"])
def test_models_tflm_cannot_run_either_say_requantize(make):
    data = make()
    # The float32 twin runs in the same default arena, so this is the model kind, not size.
    with pytest.raises((UnsupportedError, ModelError)):
        TflmInterpreter(data).invoke([np.zeros((1, 8), np.float32)])
    found = support.problems(read_model_bytes(data))
    assert found
    for problem in found:
        assert problem.fix.startswith(REQUANTIZE), problem.fix
        assert "--runtime tflm" not in problem.fix and "TFLM cannot run" in problem.fix
    with pytest.raises(UnsupportedError) as caught:
        support.require_supported(read_model_bytes(data))
    assert REQUANTIZE in str(caught.value) and "--runtime tflm" not in str(caught.value)


@pytest.mark.parametrize(("make", "x"), [
    (_float32_fc, np.ones((1, 8), np.float32)),
    (_int16x8_fc, np.ones((1, 8), np.int16)),
], ids=["float32", "int16x8"])
def test_models_tflm_runs_keep_the_tflm_fix(make, x):
    data = make()
    out = TflmInterpreter(data).invoke([x])[0]      # TFLM really runs them
    assert out.shape == (1, 4)
    (problem,) = support.problems(read_model_bytes(data))
    assert problem.fix.startswith("use --runtime tflm (it runs float32 and int16x8 models)")


def test_missing_kernel_in_a_float16_model_says_requantize():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w16 = g.add_constant(np.ones((8,), np.float16))
    w = g.add_tensor((8,), "float32")
    y = g.add_tensor((1, 8), "float32")
    g.add_op("DEQUANTIZE", [w16], [w])
    g.add_op("FLOOR_MOD", [x, w], [y])
    model = read_model_bytes(g.build(inputs=[x], outputs=[y]))
    floor = model.operators[1]
    no_kernel = [p for p in support.problems(model) if p.opcode == "FLOOR_MOD"]
    assert no_kernel and no_kernel[0].fix.startswith(REQUANTIZE)
    with pytest.raises(UnsupportedError) as caught:
        lowering_for(floor, model)
    assert caught.value.hint.startswith(REQUANTIZE)
    with pytest.raises(UnsupportedError, match="use --runtime tflm"):
        lowering_for(floor)                          # without the model: the general advice


def test_cli_generate_on_a_hybrid_model_says_requantize(tmp_path, capsys):
    path = tmp_path / "hybrid.tflite"
    path.write_bytes(hybrid_fc())
    assert cli_main(["generate", str(path), "--board", "mps2-an386", "-o",
                     str(tmp_path / "p")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and REQUANTIZE in err[0] and "--runtime tflm" not in err[0]
    assert not (tmp_path / "p").exists()
