"""tinyq.pipeline (tinyq deploy): refusals before work, stage checks, and end-to-end on QEMU."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import mlperf_model, require_tools

from tinyq.errors import (
    BoardError,
    DataError,
    DeviceError,
    FitError,
    OutputExistsError,
    ToolNotFoundError,
    UnsupportedError,
    UserInputError,
)
from tinyq.fileio import MARKER_NAME, write_marker
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_writer import GraphBuilder
from tinyq.pipeline import DeployOptions, _check_inspect, deploy

#: Keys ``deploy --json`` must carry: bench's and, with --data, validate's.
BENCH_KEYS = ("latency", "ram", "flash", "outputs_match")
VALIDATE_KEYS = ("samples", "device_accuracy", "host_accuracy", "bit_exact", "max_lsb_diff")


def fc_classifier(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    g = GraphBuilder("tinyq pipeline test classifier")
    x = g.add_tensor((1, 16), "int8", scale=1 / 64, zero_point=0)
    w = g.add_constant(rng.integers(-127, 128, (4, 16), dtype=np.int8), scale=1 / 128,
                       zero_point=0)
    b = g.add_constant(rng.integers(-500, 500, 4).astype(np.int32), "int32",
                       scale=1 / 64 / 128, zero_point=0)
    y = g.add_tensor((1, 4), "int8", scale=1 / 16, zero_point=-3)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.build()


@pytest.fixture()
def tflite_case(tmp_path):
    model = tmp_path / "fc.tflite"
    data = fc_classifier()
    model.write_bytes(data)
    x = np.random.default_rng(5).uniform(-2, 2, (24, 16)).astype(np.float32)
    oracle = TflmInterpreter(data)
    xq = np.clip(np.round(x * 64), -128, 127).astype(np.int8)
    y = np.array([int(np.argmax(oracle.invoke([r.reshape(1, 16)])[0])) for r in xq])
    test = tmp_path / "test.npz"
    np.savez(test, x=x, y=y)
    return model, test


def test_float_model_needs_calibration_data(tmp_path):
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"not really")
    with pytest.raises(DataError, match="--calib"):
        deploy(keras_file, "mps2-an386", DeployOptions(out_dir=str(tmp_path / "out")))


def test_existing_outputs_are_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("keep")
    write_marker(out)       # a folder an earlier deploy made (a foreign one is refused too)
    with pytest.raises(OutputExistsError, match="report.md"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(out), emulator="qemu"))
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "report.md"]


def test_bad_test_data_fails_before_building(tflite_case, tmp_path):
    model, _test = tflite_case
    with pytest.raises(DataError, match="not found"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(tmp_path / "o"),
                                                  data=str(tmp_path / "nope.npz")))
    assert not (tmp_path / "o" / "project").exists()


def _refused_before_work(model, board, options, error, match):
    """deploy raises ``error`` before any stage starts and leaves no --out folder."""
    events = []
    with pytest.raises(error, match=match):
        deploy(model, board, options, progress=events.append)
    assert [e.message for e in events] == []
    assert not Path(options.out_dir).exists()


def test_missing_serial_port_is_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    options = DeployOptions(out_dir=str(tmp_path / "out"), port=str(tmp_path / "ttyNOPE"))
    _refused_before_work(model, "nucleo-f446re", options, DeviceError,
                         "serial port .*ttyNOPE not found")


def test_a_file_is_not_a_serial_port(tflite_case, tmp_path):
    model, _test = tflite_case
    options = DeployOptions(out_dir=str(tmp_path / "out"), port=str(model))
    _refused_before_work(model, "nucleo-f446re", options, DeviceError,
                         "not a serial port .not a character device")


def test_port_on_an_emulated_board_is_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    options = DeployOptions(out_dir=str(tmp_path / "out"), port="loop://")
    _refused_before_work(model, "mps2-an386", options, UserInputError, "nothing to flash")


def test_missing_emulator_is_refused_before_any_work(tflite_case, tmp_path, monkeypatch):
    model, _test = tflite_case
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    options = DeployOptions(out_dir=str(tmp_path / "out"), emulator="qemu")
    _refused_before_work(model, "mps2-an386", options, ToolNotFoundError,
                         "qemu-system-arm not found")


def test_board_without_a_device_is_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    options = DeployOptions(out_dir=str(tmp_path / "out"))
    _refused_before_work(model, "nucleo-f446re", options, UserInputError,
                         "no device given for board nucleo-f446re")
    _refused_before_work(model, "nucleo-f446re",
                         replace(options, emulator="qemu"), BoardError, "has no QEMU machine")
    _refused_before_work(model, "no-such-board", options, BoardError, "unknown board")


def test_missing_tflm_tree_is_refused_before_any_work(tflite_case, tmp_path, monkeypatch):
    model, _test = tflite_case
    monkeypatch.setenv("TINYQ_TFLM_DIR", str(tmp_path / "no-tflm"))
    options = DeployOptions(out_dir=str(tmp_path / "out"), runtime="tflm", emulator="qemu")
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed (checked before the TFLM tree)")
    _refused_before_work(model, "mps2-an386", options, UserInputError, "no-tflm is not a folder")


def test_unwritable_outputs_are_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    events = []
    with pytest.raises(UserInputError, match="is a file, not a folder"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(a_file), emulator="qemu"),
               progress=events.append)
    (tmp_path / "d").mkdir()
    with pytest.raises(UserInputError, match="it is a folder and the output is a file"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(tmp_path / "o"), emulator="qemu",
                                                  json=str(tmp_path / "d")),
               progress=events.append)
    with pytest.raises(UserInputError, match="holds the input"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(tmp_path / "o"), emulator="qemu",
                                                  json=str(tmp_path)), progress=events.append)
    with pytest.raises(UserInputError, match="cannot create .*: .*a_file is not a folder"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(a_file / "sub"),
                                                  emulator="qemu"), progress=events.append)
    assert events == [] and a_file.read_text() == "keep"
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere (POSIX permissions do not apply)")
def test_read_only_parent_is_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        options = DeployOptions(out_dir=str(locked / "out"), emulator="qemu")
        _refused_before_work(model, "mps2-an386", options, UserInputError,
                             "no write permission in")
    finally:
        locked.chmod(0o700)


def test_inspect_check_stops_unsupported_and_oversized_models():
    from tinyq.model.checks import Problem

    problem = Problem("native", "op FOO is not supported", "remove FOO", 0, "FOO")
    with pytest.raises(UnsupportedError, match="FOO.*remove FOO"):
        _check_inspect(SimpleNamespace(unsupported=(problem,), runtime="native", fit=None))
    fit = SimpleNamespace(fits=False, board="tiny", flash_over=0, ram_over=10,
                          summary=lambda: "does not fit tiny: needs 10 bytes more RAM")
    with pytest.raises(FitError, match="10 bytes more RAM") as caught:
        _check_inspect(SimpleNamespace(unsupported=(), runtime="native", fit=fit,
                                       path="/m/net.tflite"),
                       fit_hint=lambda: "use a board it fits with --runtime native (big)")
    assert str(caught.value) == ("net.tflite does not fit tiny: needs 10 bytes more RAM — "
                                 "use a board it fits with --runtime native (big)")
    assert caught.value.ram_over == 10


def test_deploy_fit_failure_hint_is_computed_for_the_runtime(tmp_path):
    require_tools("qemu-system-arm", "arm-none-eabi-gcc", "make")   # checked before the fit
    vww = mlperf_model("vww_96_int8.tflite")
    events = []
    with pytest.raises(FitError) as caught:
        deploy(vww, "lm3s6965evb", DeployOptions(out_dir=str(tmp_path / "out")),
               progress=events.append)
    text = str(caught.value)
    assert text.startswith("vww_96_int8.tflite does not fit lm3s6965evb: needs ")
    assert "use a board it fits with --runtime native (" in text
    assert "use --runtime native" not in text
    assert not any("generate" in e.message for e in events)
    assert not (tmp_path / "out").exists()


def _check_outputs(out, rec):
    for key in BENCH_KEYS + VALIDATE_KEYS:
        assert key in rec, key
    assert rec["kind"] == "deploy" and rec["ok"] is True
    assert rec["latency"]["unit"] == "instructions" and "ms" not in rec["latency"]
    assert rec["bit_exact"] is True and rec["max_lsb_diff"] == 0
    assert rec["device_accuracy"] == rec["host_accuracy"]
    text = (out / "report.md").read_text()
    assert "## Pipeline stages" in text and "## Accuracy" in text
    assert (out / "report-layers.png").exists() and (out / "project" / "build" /
                                                     "app.elf").exists()


@pytest.mark.qemu
def test_deploy_tflite_on_qemu(tflite_case, tmp_path):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    model, test = tflite_case
    out = tmp_path / "out"
    events = []
    result = deploy(model, "mps2-an386",
                    DeployOptions(data=str(test), emulator="qemu", out_dir=str(out)),
                    progress=events.append)
    assert result.ok and result.validate.samples == 24
    assert [s.name for s in result.stages] == ["inspect", "generate", "build", "device",
                                               "bench", "validate", "report"]
    rec = json.loads((out / "result.json").read_text())
    _check_outputs(out, rec)
    assert [s["name"] for s in rec["stages"]][-1] == "validate"
    assert any(e.message.startswith("[1/7] inspect") for e in events)
    with pytest.raises(OutputExistsError):             # a second run needs --force
        deploy(model, "mps2-an386", DeployOptions(emulator="qemu", out_dir=str(out)))


@pytest.mark.tensorflow
@pytest.mark.qemu
def test_deploy_keras_model_end_to_end(tiny_float_model, tmp_path, capsys):
    """The README demo's path on a tiny Keras model: quantize -> ... -> report, via the CLI."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    from tinyq.cli import main

    out = tmp_path / "out"
    code = main(["deploy", str(tiny_float_model["model"]),
                 "--calib", str(tiny_float_model["calib"]),
                 "--data", str(tiny_float_model["test"]), "--board", "mps2-an386",
                 "--emulator", "qemu", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out / "result.json").read_text())
    _check_outputs(out, rec)
    assert [s["name"] for s in rec["stages"]] == ["quantize", "inspect", "generate", "build",
                                                  "evaluate", "device", "bench", "validate"]
    assert rec["quantize"]["mode"] == "int8"
    assert rec["samples"] == 40 and rec["float_accuracy"] is not None
    assert (out / "report-accuracy.png").exists()
    assert "on-device top-1" in capsys.readouterr().out


def test_failed_deploy_leaves_no_output_folder(tmp_path):
    from tinyq.model.tflite_writer import GraphBuilder
    from tinyq.pipeline import DeployOptions, deploy

    g = GraphBuilder()
    x = g.add_tensor((1, 4), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("RELU", [x], [y])
    model = tmp_path / "float.tflite"
    model.write_bytes(g.build())
    out = tmp_path / "out"
    from tinyq.errors import TinyqError

    with pytest.raises(TinyqError):
        deploy(model, "mps2-an386", DeployOptions(out_dir=out))
    assert not out.exists()


def test_labels_outside_the_classes_are_refused_before_any_work(tflite_case, tmp_path):
    model, test = tflite_case
    with np.load(test) as d:
        x, y = d["x"], d["y"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=np.where(np.arange(len(y)) < 3, 9, y))    # the model has 4 classes
    _refused_before_work(model, "mps2-an386",
                         DeployOptions(out_dir=str(tmp_path / "o"), emulator="qemu",
                                       data=str(bad)),
                         DataError, r"3 of 24 labels in .*bad.npz are outside the valid range")


def test_existing_report_plots_are_refused_before_any_work(tflite_case, tmp_path):
    model, _test = tflite_case
    out = tmp_path / "out"
    out.mkdir()
    (out / "report-layers.png").write_bytes(b"keep")
    write_marker(out)
    with pytest.raises(OutputExistsError, match="report-layers.png"):
        deploy(model, "mps2-an386", DeployOptions(out_dir=str(out), emulator="qemu"))
    assert (out / "report-layers.png").read_bytes() == b"keep"


def test_cli_contradicting_options_exit_2_before_any_work(tflite_case, tmp_path, capsys):
    from tinyq.cli import main

    model, _test = tflite_case
    out = tmp_path / "o"
    assert main(["deploy", str(model), "--board", "mps2-an386", "--emulator", "qemu",
                 "--no-flash", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--no-flash only applies to a board on --port" in err and err.count("\n") == 1
    assert not out.exists()
