"""Host interpreters: the TFLM oracle and the general (LiteRT) interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.errors import UnsupportedError
from tinyq.model.interpreters import LiteRTInterpreter, TflmInterpreter, capture_fd2
from tinyq.model.tflite_writer import TensorSpec, single_op_model


def _relu_model() -> bytes:
    return single_op_model("RELU", [TensorSpec((1, 8), "int8", 0.1, -3)],
                           [TensorSpec((1, 8), "int8", 0.1, -3)])


def test_tflm_and_litert_agree_on_relu():
    x = np.arange(-4, 4, dtype=np.int8).reshape(1, 8)
    tflm = TflmInterpreter(_relu_model()).invoke([x])
    litert = LiteRTInterpreter(_relu_model()).invoke([x])
    np.testing.assert_array_equal(tflm[0], np.maximum(x, -3))
    np.testing.assert_array_equal(litert[0], tflm[0])


def test_tflm_reports_output_count_without_probing(capfd):
    it = TflmInterpreter(_relu_model())
    assert it.num_outputs == 1
    it.invoke([np.zeros((1, 8), np.int8)])
    out, err = capfd.readouterr()
    assert "out of range" not in out + err


def test_capture_fd2_collects_c_level_stderr():
    import os

    with capture_fd2() as log:
        os.write(2, b"from C\n")
    assert log == ["from C\n"]


def test_unknown_host_interpreter_is_named(monkeypatch):
    monkeypatch.setenv("TINYQ_HOST_INTERPRETER", "tensorflow")
    with pytest.raises(UnsupportedError, match="TINYQ_HOST_INTERPRETER=tensorflow"):
        LiteRTInterpreter(_relu_model())


@pytest.mark.skipif(int(np.__version__.split(".")[0]) < 2, reason="needs NumPy 2 to refuse")
def test_tflite_runtime_refused_with_numpy2(monkeypatch):
    monkeypatch.setenv("TINYQ_HOST_INTERPRETER", "tflite-runtime")
    with pytest.raises(UnsupportedError, match="crashes with NumPy 2"):
        LiteRTInterpreter(_relu_model())


def _stderr_of(code: str) -> str:
    """C-level stderr of a fresh interpreter process (start-up lines print once per process)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    return proc.stderr


def test_litert_default_resolver_keeps_stderr_clean():
    err = _stderr_of(
        "from tinyq.model.interpreters import LiteRTInterpreter\n"
        "from tinyq.model.tflite_writer import TensorSpec, single_op_model\n"
        "m = single_op_model('RELU', [TensorSpec((1, 4), 'float32')], "
        "[TensorSpec((1, 4), 'float32')])\n"
        "LiteRTInterpreter(m, reference_kernels=False)\n")
    assert "XNNPACK" not in err and err.strip() == ""


@pytest.mark.tensorflow
def test_tensorflow_import_and_first_use_keep_stderr_clean():
    pytest.importorskip("tensorflow", reason="needs the [convert] extra (tensorflow-cpu)")
    err = _stderr_of("from tinyq.convert.model_loader import import_tensorflow\n"
                     "tf = import_tensorflow()\n"
                     "print(float(tf.constant(2.0) * 3))\n")
    assert "cuInit" not in err and err.strip() == ""
