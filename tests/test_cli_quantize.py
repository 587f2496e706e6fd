"""CLI: tinyq quantize / evaluate / compare outputs, exit codes, refusals, no partial files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyq.cli import main


def _errors(err: str) -> list[str]:
    """The error lines on stderr (progress lines go there too)."""
    return [line for line in err.splitlines() if line.startswith("error:")]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_mode_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "m.keras", "--mode", "int3", "-o", str(tmp_path / "o.tflite")])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_missing_model_is_one_line(capsys, tmp_path):
    code, out, err = _run(capsys, "quantize", tmp_path / "none.keras", "-o",
                          tmp_path / "o.tflite")
    assert code == 1 and "not found" in err
    assert "Traceback" not in err and len(_errors(err)) == 1
    assert list(tmp_path.iterdir()) == []


def test_evaluate_truncated_model(capsys, tmp_path):
    bad = tmp_path / "t.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8)
    data = tmp_path / "d.npy"
    np.save(data, np.zeros((2, 3), np.float32))
    code, _, err = _run(capsys, "evaluate", bad, "--data", data, "--json", tmp_path / "r.json")
    assert code == 1 and "Traceback" not in err and len(_errors(err)) == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.tensorflow
def test_quantize_summary_refusal_and_force(capsys, tiny_float_model, tmp_path):
    out = tmp_path / "q.tflite"
    code, text, _ = _run(capsys, "quantize", tiny_float_model["model"], "--calib",
                         tiny_float_model["calib"], "-o", out)
    assert code == 0, text
    assert "int8, 64 calibration samples" in text
    assert "input   int8[1, 6, 6, 1] scale" in text and "zero point" in text
    assert "ops     CONV_2D x1, RESHAPE x1, FULLY_CONNECTED x2" in text
    assert "parameters" in text
    before = out.read_bytes()
    code, _, err = _run(capsys, "quantize", tiny_float_model["model"], "--mode", "float32",
                        "-o", out)
    assert code == 1 and "already exists" in err and "--force" in err
    assert out.read_bytes() == before
    code, text, _ = _run(capsys, "quantize", tiny_float_model["model"], "--mode", "float32",
                         "-o", out, "--force")
    assert code == 0 and out.read_bytes() != before and "input   float32" in text


@pytest.mark.tensorflow
@pytest.mark.parametrize("extra, message", [
    (["--calib-samples", "1000"], "64 samples, 1000 were asked"),
    (["--io", "int16"], "does not go with"),
    (["--mode", "int16x8", "--no-calib"], "needs calibration data"),
])
def test_quantize_bad_input(capsys, tiny_float_model, tmp_path, extra, message):
    argv = ["quantize", tiny_float_model["model"], "-o", tmp_path / "q.tflite"]
    if "--no-calib" in extra:
        extra = [e for e in extra if e != "--no-calib"]
    else:
        argv += ["--calib", tiny_float_model["calib"]]
    code, _, err = _run(capsys, *argv, *extra)
    assert code == 1 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.tensorflow
def test_quantize_refuses_one_calibration_sample(capsys, tiny_float_model, tmp_path):
    calib = tmp_path / "one.npz"
    np.savez(calib, x=np.load(tiny_float_model["calib"])["x"][:1])
    out = tmp_path / "q.tflite"
    code, _, err = _run(capsys, "quantize", tiny_float_model["model"], "--calib", calib,
                        "-o", out)
    assert code == 1 and "Traceback" not in err and len(_errors(err)) == 1
    assert "holds 1 calibration sample(s); int8 needs at least 32" in err
    assert not out.exists()


@pytest.mark.tensorflow
def test_quantize_wrong_calib_shape_says_both(capsys, tiny_float_model, tmp_path):
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.zeros((3, 4, 4), np.float32))
    code, _, err = _run(capsys, "quantize", tiny_float_model["model"], "--calib", calib,
                        "-o", tmp_path / "q.tflite")
    assert code == 1 and "(4, 4)" in err and "(6, 6, 1)" in err
    assert not (tmp_path / "q.tflite").exists()


@pytest.mark.tensorflow
def test_converter_crash_exit_1_one_line_no_file(capsys, tmp_path):
    """TensorFlow 2.21's int8 converter segfaults on RNN(LSTMCell) (measured)."""
    import keras

    model = keras.Sequential([keras.Input((6, 2)),
                              keras.layers.RNN(keras.layers.LSTMCell(3), name="rnn"),
                              keras.layers.Dense(2)])
    path = tmp_path / "rnn.keras"
    model.save(path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((32, 6, 2)).astype(np.float32))
    out = tmp_path / "rnn.tflite"
    code, _, err = _run(capsys, "quantize", path, "--calib", calib, "-o", out)
    assert code == 1 and f"crashed (SIGSEGV) converting {path} to int8" in err
    assert len(_errors(err)) == 1 and "Traceback" not in err and not out.exists()


@pytest.mark.tensorflow
def test_a_model_the_converter_child_cannot_load_is_one_line(capsys, tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    code, _, err = _run(capsys, "quantize", path, "--mode", "float32", "-o", tmp_path / "o.tflite")
    assert code == 1 and f"cannot load {path} as a Keras model" in err
    assert len(_errors(err)) == 1 and "Traceback" not in err


@pytest.mark.tensorflow
def test_evaluate_json(capsys, tiny_float_model, tmp_path):
    q = tmp_path / "q.tflite"
    assert _run(capsys, "quantize", tiny_float_model["model"], "--calib",
                tiny_float_model["calib"], "-o", q)[0] == 0
    report = tmp_path / "r.json"
    code, text, _ = _run(capsys, "evaluate", q, "--data", tiny_float_model["test"],
                         "--reference", tiny_float_model["model"], "--json", report)
    assert code == 0 and "top-1 agreement" in text and "per-layer SQNR" in text
    data = json.loads(report.read_text())
    assert data["mode"] == "int8" and data["reference_accuracy"] == 0.5
    assert data["layers"] and set(data["layers"][0]) >= {"name", "op", "sqnr_db"}
    code, _, err = _run(capsys, "evaluate", q, "--data", tiny_float_model["test"],
                        "--json", report)
    assert code == 1 and "already exists" in err


@pytest.mark.tensorflow
def test_compare_table_json_plot(capsys, tiny_float_model, tmp_path):
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    code, text, _ = _run(capsys, "compare", tiny_float_model["model"], "--calib",
                         tiny_float_model["calib"], "--data", tiny_float_model["test"],
                         "--modes", "int8", "dynamic", "--json", js, "--plot", png)
    assert code == 0
    assert "no: TFLM does not run hybrid" in text and "LiteRT" in text
    assert [r["mode"] for r in json.loads(js.read_text())["rows"]] == ["int8", "dynamic"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, err = _run(capsys, "compare", tiny_float_model["model"], "--calib",
                        tiny_float_model["calib"], "--data", tiny_float_model["test"],
                        "--plot", png)
    assert code == 1 and "already exists" in err
