"""tinyq.convert.comparison: every mode in one table, TFLM actually tried, plot and JSON."""

from __future__ import annotations

import json

import pytest

from tinyq.convert.comparison import CompareOptions, compare, plot
from tinyq.errors import OutputExistsError, UserInputError


def test_unknown_mode_is_refused():
    with pytest.raises(UserInputError, match="unknown quantization mode"):
        CompareOptions(modes=("int8", "int3"))


@pytest.fixture(scope="module")
def report(tiny_float_model):
    return compare(tiny_float_model["model"], tiny_float_model["calib"],
                   tiny_float_model["test"])


@pytest.mark.tensorflow
def test_all_modes_measured(report):
    rows = {r.mode: r for r in report.rows}
    assert list(rows) == ["int8", "int16x8", "dynamic", "float16", "float32"]
    assert report.reference_accuracy == 0.5
    assert {m for m, r in rows.items() if r.tflm_runs} == {"int8", "int16x8", "float32"}
    assert "hybrid" in rows["dynamic"].tflm_note and "float16" in rows["float16"].tflm_note
    assert rows["float32"].max_abs_error == 0 and rows["float32"].accuracy == 0.5
    for r in rows.values():
        assert r.error is None and r.latency_us > 0 and r.size_bytes == len(r.tflite)
        assert 0 <= r.accuracy <= 1 and r.top1_agreement >= 0.9
    assert rows["int8"].size_bytes < rows["float16"].size_bytes < rows["float32"].size_bytes
    assert 0 < rows["int8"].rmse < 0.1
    data = report.to_json()
    json.dumps(data)
    assert "tflite" not in data["rows"][0] and "LiteRT" in data["latency_interpreter"]


@pytest.mark.tensorflow
def test_plot_png(report, tmp_path):
    out = tmp_path / "plot.png"
    plot(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OutputExistsError):
        plot(report, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


@pytest.mark.tensorflow
def test_too_few_calibration_samples_refused_whichever_mode_comes_first(tiny_float_model,
                                                                        tmp_path):
    import numpy as np

    from tinyq.errors import DataError

    few = tmp_path / "few.npz"
    np.savez(few, x=np.load(tiny_float_model["calib"])["x"][:5])
    with pytest.raises(DataError, match="5 calibration sample.*int8 needs at least 32"):
        compare(tiny_float_model["model"], few, tiny_float_model["test"],
                CompareOptions(modes=("dynamic", "int8")))
