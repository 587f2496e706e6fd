"""tinyq.firmware.codegen.generate: the board-fit check before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from tinyq import analyze, boards
from tinyq.cli import main as cli_main
from tinyq.errors import FitError
from tinyq.firmware.codegen import generate
from tinyq.model.tflite_reader import read_model
from tinyq.model.tflite_writer import GraphBuilder

#: Weights of the too-big model: more than microbit's 256 KB of flash.
BIG_WEIGHTS = (300, 1000)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))


def _fc(tmp_path, shape: tuple[int, int], name: str):
    """An int8 FULLY_CONNECTED model with ``shape`` (units, features) weights."""
    rng = np.random.default_rng(0)
    units, features = shape
    g = GraphBuilder("tinyq generate fit test")
    x = g.add_tensor((1, features), "int8", scale=1 / 64, zero_point=0)
    w = g.add_constant(rng.integers(-127, 128, shape, dtype=np.int8), scale=1 / 128,
                       zero_point=0)
    b = g.add_constant(np.zeros(units, np.int32), "int32", scale=1 / 64 / 128, zero_point=0)
    y = g.add_tensor((1, units), "int8", scale=1 / 16, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    path = tmp_path / name
    path.write_bytes(g.build())
    return path


@pytest.mark.parametrize("runtime", ["native", "tflm"])
def test_generate_refuses_a_model_that_does_not_fit_before_writing(tmp_path, runtime):
    model = _fc(tmp_path, BIG_WEIGHTS, "big.tflite")
    out = tmp_path / "project"
    with pytest.raises(FitError) as caught:
        generate(model, "microbit", runtime=runtime, out_dir=out)
    err = caught.value
    assert err.exit_code == 3 and err.flash_over > 0 and err.board == "microbit"
    assert str(err).startswith("big.tflite does not fit microbit: needs ")
    assert f"({runtime})" in err.message and "--no-fit-check" in err.hint
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == {"big.tflite"}
    # The override writes it anyway.
    project = generate(model, "microbit", runtime=runtime, out_dir=out, fit_check=False)
    assert (project.path / "tinyq_project.json").is_file()
    # The boards the hint names are computed: each one fits, with the same runtime and
    # the arena the project reserves.
    named = err.hint.split(f"--runtime {runtime} (")[1].split(")")[0].split(", ")
    assert named and "microbit" not in named
    ir_model = read_model(model)
    for name in named:
        assert analyze.fit(ir_model, boards.load(name), runtime, project.arena_bytes).fits, name


def test_generate_keeps_writing_models_that_fit(tmp_path):
    model = _fc(tmp_path, (4, 16), "small.tflite")
    for runtime in ("native", "tflm"):
        project = generate(model, "microbit", runtime=runtime, out_dir=tmp_path / runtime)
        assert (project.path / "Makefile").is_file()


def test_cli_generate_exit_3_one_line_and_the_override(tmp_path, capsys):
    model = _fc(tmp_path, BIG_WEIGHTS, "big.tflite")
    out = tmp_path / "p"
    assert cli_main(["generate", str(model), "--board", "microbit", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: big.tflite does not fit microbit")
    assert "use --runtime native" not in lines[0] and "Traceback" not in err
    assert not out.exists()
    assert cli_main(["generate", str(model), "--board", "microbit", "-o", str(out),
                     "--no-fit-check"]) == 0
    assert (out / "Makefile").is_file()
