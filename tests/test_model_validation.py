"""Structurally bad .tflite files end in one error line naming the problem, never a crash.

Each test builds a bad model in code (tinyq.model.tflite_writer, or one field rewritten in place
through the schema bindings), runs the real CLI entry on it and checks: exit code 1, one
``error:`` line that names the file, the tensor or op and the problem, and no traceback.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading

import numpy as np
import pytest

from tinyq.cli import main
from tinyq.errors import ModelError
from tinyq.model import ir
from tinyq.model.tflite_reader import read_model, read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder, write_model

IN, W, B, OUT = 0, 1, 2, 3      # tensor indices of _fc_model


def _fc_model() -> ir.Model:
    """input (1,4) -> FULLY_CONNECTED (per-channel int8 weights (3,4)) -> output (1,3)."""
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int8", scale=0.5, zero_point=-1)
    w = g.add_constant(np.arange(12, dtype=np.int8).reshape(3, 4), scale=(0.1, 0.2, 0.3),
                       zero_point=(0, 0, 0), axis=0)
    b = g.add_constant(np.zeros(3, np.int32), scale=(0.05, 0.1, 0.15),
                       zero_point=(0, 0, 0), axis=0)
    y = g.add_tensor((1, 3), "int8", scale=1.0, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    assert (x, w, b, y) == (IN, W, B, OUT)
    return g.model()


def _tensor(model: ir.Model, index: int, **changes) -> ir.Model:
    tensors = list(model.tensors)
    tensors[index] = dataclasses.replace(tensors[index], **changes)
    return dataclasses.replace(model, tensors=tuple(tensors))


def _quant(model: ir.Model, index: int, **changes) -> ir.Model:
    return _tensor(model, index, quant=dataclasses.replace(model.tensors[index].quant, **changes))


def _op(model: ir.Model, **changes) -> ir.Model:
    return dataclasses.replace(model, operators=(
        dataclasses.replace(model.operators[0], **changes),))


def _cli_error(capsys, *argv: str) -> str:
    """Run ``tinyq ARGV``; assert a clean one-line error and return its text."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and len(lines) == 1, err
    return lines[0]


def _inspect_error(tmp_path, capsys, data: bytes) -> str:
    path = tmp_path / "bad.tflite"
    path.write_bytes(data)
    line = _cli_error(capsys, "inspect", str(path), "--no-arena-search")
    assert str(path) in line                     # names the file
    return line


def test_the_good_model_is_accepted(tmp_path, capsys):
    path = tmp_path / "good.tflite"
    path.write_bytes(write_model(_fc_model()))
    assert main(["inspect", str(path), "--no-arena-search"]) == 0
    assert read_model(path).tensors[W].quant.per_channel


BAD_MODELS = {
    # name: (how to break the model, what the one line must say)
    "input index": (lambda m: dataclasses.replace(m, inputs=(9,)),
                    "model input 9 is not a tensor (subgraph 0 has 4 tensors)"),
    "output index": (lambda m: dataclasses.replace(m, outputs=(-3,)),
                     "model output -3 is not a tensor"),
    "no inputs": (lambda m: dataclasses.replace(m, inputs=()), "the model has no inputs"),
    "no outputs": (lambda m: dataclasses.replace(m, outputs=()), "the model has no outputs"),
    "constant input": (lambda m: dataclasses.replace(m, inputs=(W,)),
                       "model input 1 ('t1') is a constant tensor"),
    "op input index": (lambda m: _op(m, inputs=(IN, 40, B)),
                       "op 0 FULLY_CONNECTED reads tensor 40 but subgraph 0 has 4 tensors"),
    "op output index": (lambda m: _op(m, outputs=(-1,)),
                        "op 0 FULLY_CONNECTED writes tensor -1"),
    "op writes a constant": (lambda m: _op(m, outputs=(W,)),
                             "op 0 FULLY_CONNECTED writes tensor 1 ('t1'), which is a constant"),
    "negative dimension": (lambda m: _tensor(m, OUT, shape=(1, -3)),
                           "tensor 3 ('t3') has a negative dimension [1, -3]"),
    "dynamic dimension": (lambda m: _tensor(m, IN, shape=(-1, 4)),
                          "tensor 0 ('t0') has an unknown (dynamic) dimension [-1, 4]"),
    "huge shape": (lambda m: _tensor(m, OUT, shape=(1 << 20, 1 << 20, 1 << 20)),
                   "tensor 3 ('t3') claims shape [1048576, 1048576, 1048576] "
                   "(1,152,921,504,606,846,976 elements of int8)"),
    "short weights": (lambda m: _tensor(m, W, data=m.tensors[W].data[:5]),
                      "tensor 1 ('t1') has 5 bytes of data but its shape [3, 4] of int8 needs 12"),
    "long weights": (lambda m: _tensor(m, W, data=m.tensors[W].data * 2),
                     "tensor 1 ('t1') has 24 bytes of data but its shape [3, 4] of int8 "
                     "needs 12"),
    "NaN scale": (lambda m: _quant(m, IN, scale=(math.nan,)),
                  "tensor 0 ('t0') has quantization scale nan"),
    "zero scale": (lambda m: _quant(m, OUT, scale=(0.0,)),
                   "tensor 3 ('t3') has quantization scale 0.0"),
    "infinite scale": (lambda m: _quant(m, W, scale=(0.1, math.inf, 0.3)),
                       "tensor 1 ('t1') has quantization scale inf"),
    "negative scale": (lambda m: _quant(m, W, scale=(0.1, -0.2, 0.3)),
                       "tensor 1 ('t1') has quantization scale -0.2"),
    "per-channel count": (lambda m: _quant(m, W, scale=(0.1, 0.2), zero_point=(0, 0)),
                          "tensor 1 ('t1') has 2 per-channel scales but dimension 0 of its "
                          "shape [3, 4] has 3 channels"),
    "quantized dimension": (lambda m: _quant(m, W, axis=2),
                            "tensor 1 ('t1') is quantized per channel along dimension 2 but "
                            "has shape [3, 4]"),
    "zero point count": (lambda m: _quant(m, W, zero_point=(0, 0)),
                         "tensor 1 ('t1') has 3 scales but 2 zero points"),
    "string input": (lambda m: _tensor(m, IN, dtype="string", quant=None),
                     "model input 0 ('t0') has type string; tinyq feeds and reads numeric "
                     "tensors"),
    "zero point range": (lambda m: _quant(m, IN, zero_point=(300,)),
                         "tensor 0 ('t0') has zero point 300, outside int8's range [-128, 127]"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_bad_structure_is_one_line(tmp_path, capsys, name):
    breaker, expected = BAD_MODELS[name]
    line = _inspect_error(tmp_path, capsys, write_model(breaker(_fc_model())))
    assert expected in line
    assert "re-export" in line                   # ... and says what to do


def _rewrite(data: bytes, locate, fmt: str, value) -> bytes:
    """``data`` with one field rewritten in place; ``locate(model)`` -> its byte position."""
    import struct

    import tflite

    out = bytearray(data)
    struct.pack_into(fmt, out, locate(tflite.Model.GetRootAs(data, 0)), value)
    return bytes(out)


def _two_op_model() -> bytes:
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int8", scale=0.5)
    y = g.add_tensor((1, 4), "int8", scale=0.5)
    z = g.add_tensor((1, 4), "int8", scale=0.5)
    g.add_op("RELU", [x], [y])
    g.add_op("RESHAPE", [y], [z], {"new_shape": [1, 4]})
    return g.build()


def _field(tab, vt: int) -> int:
    offset = tab.Offset(vt)
    assert offset, "the field is absent (default value): pick a model where it is set"
    return tab.Pos + offset


def test_opcode_index_out_of_range(tmp_path, capsys):
    data = _rewrite(_two_op_model(),
                    lambda m: _field(m.Subgraphs(0).Operators(1)._tab, 4), "<I", 7)
    line = _inspect_error(tmp_path, capsys, data)
    assert "op 1 uses opcode index 7 but the model has 2 operator codes" in line


def test_unknown_builtin_code(tmp_path, capsys):
    data = _rewrite(_two_op_model(),
                    lambda m: _field(m.OperatorCodes(1)._tab, 10), "<i", 4000)
    line = _inspect_error(tmp_path, capsys, data)
    assert "op 1 has builtin operator code 4000, which the TFLite schema tinyq knows" in line


def test_tensor_buffer_index_out_of_range(tmp_path, capsys):
    data = _rewrite(write_model(_fc_model()),
                    lambda m: _field(m.Subgraphs(0).Tensors(W)._tab, 8), "<I", 99)
    line = _inspect_error(tmp_path, capsys, data)
    assert "tensor 1 ('t1') refers to buffer 99 but the model has" in line


def test_subgraph_index_out_of_range(tmp_path, capsys):
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int8", scale=0.5)
    y = g.add_tensor((1, 4), "int8", scale=0.5)
    g.add_op("WHILE", [x], [y], {"cond_subgraph_index": 0, "body_subgraph_index": 5})
    line = _inspect_error(tmp_path, capsys, g.build())
    assert "op 0 WHILE has body_subgraph_index 5 but the model has 1 subgraphs" in line


def test_buffers_after_the_flatbuffer_are_refused_by_every_command(tmp_path, capsys):
    """TFLM (the oracle and the firmware) reads them as zeros: refused in one line."""
    path = tmp_path / "external.tflite"
    path.write_bytes(write_model(_fc_model(), external_buffers=True))
    for argv in (["inspect", str(path)],
                 ["generate", str(path), "--board", "mps2-an386", "-o", str(tmp_path / "p")]):
        line = _cli_error(capsys, *argv)
        assert "tensor 1 ('t1') keeps its data after the flatbuffer" in line
        assert "re-export the model without external buffers" in line
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------- special files

def test_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    # if tinyq opened the FIFO it would block forever: a watchdog unblocks and fails
    timer = threading.Timer(20, lambda: os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    timer.start()
    try:
        line = _cli_error(capsys, "inspect", str(fifo))
    finally:
        timer.cancel()
    assert f"{fifo} is not a regular file (a pipe, device or socket)" in line


def test_dev_zero_is_refused(capsys):
    line = _cli_error(capsys, "inspect", "/dev/zero")
    assert "/dev/zero is not a regular file" in line


def test_oversized_model_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    import tinyq.model.tflite_reader as reader

    monkeypatch.setattr(reader, "MAX_MODEL_BYTES", 1000)
    path = tmp_path / "big.tflite"
    path.write_bytes(b"\0" * 1001)
    line = _cli_error(capsys, "inspect", str(path))
    assert f"{path} is 1,001 bytes, more than the 1,000 a TFLite flatbuffer can hold" in line


# ---------------------------------------------------------------------- multipliers

def test_absurd_scale_ratio_is_a_range_error_not_an_overflow():
    from tinyq.firmware.native import quant

    with pytest.raises(quant.MultiplierRangeError, match=r"is 2\^30 or more"):
        quant.conv_multipliers(1e30, [1e30], 1e30, 1)
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.kernel_multiplier(2.0 ** 29) == (1 << 30, 30)


def test_generate_refuses_scales_no_kernel_can_apply(tmp_path, capsys):
    model = _quant(_quant(_fc_model(), IN, scale=(3e38,)), OUT, scale=(1e-38,))
    path = tmp_path / "absurd.tflite"
    path.write_bytes(write_model(model))
    line = _cli_error(capsys, "generate", str(path), "--board", "mps2-an386",
                      "-o", str(tmp_path / "p"))
    assert "op 0 FULLY_CONNECTED: output scale too small" in line and "re-quantize" in line
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------- crash isolation

def test_an_interpreter_crash_is_one_error_naming_the_file(tmp_path):
    from tinyq.model.interpreters import IsolatedInterpreter

    it = IsolatedInterpreter(write_model(_fc_model()), "tflm", name="bad.tflite")
    x = np.ones((1, 4), np.int8)
    assert it.invoke([x])[0].shape == (1, 3)
    os.kill(it._call("pid"), signal.SIGSEGV)   # what a corrupt model does to the child
    with pytest.raises(ModelError, match=r"the tflite-micro interpreter crashed \(SIGSEGV\) "
                                         r"on bad.tflite — the model file is corrupt"):
        it.invoke([x])


def test_isolated_interpreter_matches_in_process():
    from tinyq.model.interpreters import IsolatedInterpreter, TflmInterpreter

    data = write_model(_fc_model())
    x = np.arange(4, dtype=np.int8).reshape(1, 4)
    with IsolatedInterpreter(data, "tflm") as it:
        assert it.output_details(0).shape == (1, 3) and it.num_outputs == 1
        np.testing.assert_array_equal(it.invoke([x])[0], TflmInterpreter(data).invoke([x])[0])
    with IsolatedInterpreter(data, "litert") as it:
        assert it.num_inputs == 1 and it.invoke([x])[0].shape == (1, 3)


def test_isolated_interpreter_passes_tinyq_errors_through_naming_the_file():
    from tinyq.model.interpreters import IsolatedInterpreter

    g = GraphBuilder()
    x = g.add_tensor((1, 4), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("RANK", [x], [y])               # an op this tflite-micro build cannot prepare
    with pytest.raises(ModelError, match=r"^rank.tflite: TFLM could not prepare the model"):
        IsolatedInterpreter(g.build(), "tflm", name="rank.tflite")


def test_scales_kernels_cannot_divide_by_are_model_errors():
    from tinyq.firmware.native import quant

    with pytest.raises(ModelError, match="a quantization scale is 1e-50 as float32"):
        quant.conv_multipliers(0.5, [0.1], 1e-50, 1)        # float32 turns it into 0
    with pytest.raises(ModelError, match="a quantization scale is 0.0 as float32"):
        quant.add_params(0.0, 0.0, 0.5)
    # a valid (positive, finite) but denormal scale: 6.0 / 1e-45 overflows float32
    with pytest.raises(ModelError, match=r"scale 1e-45 is too small to represent 6.0"):
        quant.activation_range("RELU6", 1e-45, 0)
    assert quant.activation_range("RELU6", 6 / 255, -128) == (-128, 127)


def test_an_unused_buffer_reaching_past_the_file_is_refused(tmp_path, capsys):
    """The tflite-micro interpreter reads every buffer, used or not: so does the reader."""
    import tflite

    data = write_model(_fc_model())
    fb = tflite.Model.GetRootAs(data, 0)
    buffer_index = fb.Subgraphs(0).Tensors(W).Buffer()
    tab = fb.Buffers(buffer_index)._tab
    length_at = tab.Vector(tab.Offset(4)) - 4            # the data vector's length prefix
    # the weights tensor no longer uses its buffer (it becomes an activation) ...
    data = _rewrite(data, lambda m: _field(m.Subgraphs(0).Tensors(W)._tab, 8), "<I", 0)
    read_model_bytes(data)
    # ... and that unused buffer now claims 2 GB
    data = _rewrite(data, lambda m: length_at, "<I", 1 << 31)
    line = _inspect_error(tmp_path, capsys, data)
    assert "is truncated or corrupt" in line and "re-export the model" in line


def test_arena_search_stops_when_the_model_crashes_the_interpreter_at_any_size(monkeypatch):
    from tinyq import analyze

    calls = []

    def always_crashes(model_bytes, lo, hi):
        calls.append((lo, hi))
        return [f"try {hi}"], -signal.SIGSEGV, ""

    monkeypatch.setattr(analyze, "_run_probe_child", always_crashes)
    model = dataclasses.replace(_fc_model(), path="crashy.tflite")
    with pytest.raises(ModelError, match=r"crashed \(SIGSEGV\) preparing crashy.tflite, even "
                                         r"with a 256 MB arena — the file is corrupt"):
        analyze.measure_tflm_arena(model, write_model(model), use_cache=False)
    assert len(calls) == 2 and calls[1][1] == analyze.ARENA_LIMIT_BYTES   # not 40 children


def test_arena_probe_reports_a_file_its_wrapper_cannot_read(monkeypatch):
    """A Python exception in the interpreter's wrapper is "corrupt", not a crash to retry."""
    import subprocess
    import sys

    code = ("import sys, tflite_micro, struct\n"
            "def boom(*a, **k): raise struct.error('unpack_from requires more bytes')\n"
            "tflite_micro.runtime.Interpreter.from_bytes = boom\n"
            "from tinyq import _arena_probe\n"
            "_arena_probe.main(['16', '32', '64'])\n")
    proc = subprocess.run([sys.executable, "-c", code], input=b"x", capture_output=True,
                          timeout=120, check=False)
    assert proc.stdout.decode().splitlines()[-1] == (
        "error corrupt struct.error: unpack_from requires more bytes")
    from tinyq.analyze import _prepare_error

    err = _prepare_error("corrupt struct.error: unpack_from requires more bytes", "m.tflite")
    assert isinstance(err, ModelError) and str(err).startswith(
        "m.tflite: the tflite-micro interpreter cannot read it (struct.error")


def test_evaluate_refuses_a_batch_it_cannot_feed(tmp_path, capsys):
    model = _tensor(_tensor(_fc_model(), IN, shape=(2, 4)), OUT, shape=(2, 3))
    path = tmp_path / "batch2.tflite"
    path.write_bytes(write_model(model))
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((5, 4), np.float32))
    line = _cli_error(capsys, "evaluate", str(path), "--data", str(data), "--interpreter",
                      "tflm")
    assert (f"{path}'s first input has shape [2, 4]; tinyq evaluates one sample per "
            "inference (batch size 1 first) — re-export the model with batch size 1") in line


def test_native_refuses_a_bias_that_does_not_match_the_output(tmp_path, capsys):
    """Found by the fuzzer: an op input rewritten to another tensor made a bias of 8 values
    for 3 channels, and code generation failed with a numpy broadcasting traceback."""
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "int8", scale=0.5)
    w = g.add_constant(np.ones((3, 4), np.int8), scale=0.1)
    b = g.add_constant(np.zeros(8, np.int32), scale=0.05)
    y = g.add_tensor((1, 3), "int8", scale=1.0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    path = tmp_path / "bias8.tflite"
    path.write_bytes(g.build())
    line = _cli_error(capsys, "generate", str(path), "--board", "mps2-an386",
                      "-o", str(tmp_path / "p"))
    assert "op 0 FULLY_CONNECTED: the bias or the weights do not match the output's " \
           "channels" in line
