"""``tinyq run`` end to end: real firmware built with arm-none-eabi-gcc, run in QEMU
through the same serial code a board uses, outputs compared with the tflite-micro
interpreter. Boards: microbit (Cortex-M0), mps2-an385 (M3), mps2-an386 (M4F)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import mlperf_model, require_tools

from tinyq.firmware.compiling import BuildOptions
from tinyq.measure.runner import RunOptions, run

pytestmark = pytest.mark.qemu

REQUIRED_JSON = {"board", "runtime", "instructions", "arena_bytes", "outputs_match",
                 "max_lsb_diff"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    return BuildOptions(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def hello(shared_models):
    path = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not path.exists():
        pytest.skip("tflm-examples/hello_world_int8.tflite missing from ../shared/models")
    return path


@pytest.mark.parametrize("board", ["microbit", "mps2-an385", "mps2-an386"])
def test_hello_world_matches_tflm(hello, cache, board):
    result = run(hello, board, emulator="qemu",
                 options=RunOptions(samples=4, runs=3, seed=7, build=cache))
    assert result.outputs_match and result.max_lsb_diff == 0
    assert len(result.samples) == 4
    assert result.emulated and result.unit == "instructions"
    assert result.instructions > 100             # a real count, not a placeholder
    assert max(result.ticks) - min(result.ticks) <= 1        # deterministic under icount
    assert result.arena_bytes > 0 and result.stack_peak > 0
    record = result.to_json()
    assert REQUIRED_JSON <= set(record) and "cycles" not in record
    assert record["board"] == board and record["runtime"] == "native"
    json.dumps(record)


def test_mlperf_ad01_matches_tflm_on_m4f(cache):
    model = mlperf_model("ad01_int8.tflite")
    result = run(model, "mps2-an386", emulator="qemu",
                 options=RunOptions(samples=3, runs=2, build=cache))
    assert result.outputs_match, [s.max_lsb_diff for s in result.samples]
    # ~1M instructions at 40 per SysTick tick (TFLM reference kernels measured 1.95M)
    assert 100_000 < result.instructions < 10_000_000
    assert result.firmware.cached is False
    again = run(model, "mps2-an386", emulator="qemu",
                options=RunOptions(samples=1, runs=1, build=cache))
    assert again.firmware.cached and abs(again.instructions - result.instructions) <= 40


def test_given_input_data(hello, cache, tmp_path):
    x = np.linspace(-3.0, 3.0, 5, dtype=np.float32).reshape(5, 1)  # float: quantized by run
    result = run(hello, "mps2-an386", inputs=x, options=RunOptions(build=cache))
    assert len(result.samples) == 5 and result.outputs_match
    assert result.input_source == "given data (5 sample(s))"


def test_cli_run_writes_json_and_refuses_to_overwrite(hello, cache, tmp_path, monkeypatch,
                                                      capsys):
    from tinyq.cli import main

    monkeypatch.setenv("TINYQ_CACHE_DIR", str(cache.cache_dir))
    out = tmp_path / "run.json"
    data = tmp_path / "x.npy"
    np.save(data, np.array([[-1], [0], [1]], dtype=np.int8))
    assert main(["run", str(hello), "--board", "mps2-an385", "--emulator", "qemu",
                 "--input", str(data), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert REQUIRED_JSON <= set(record) and record["outputs_match"] is True
    assert record["samples"] == 3
    assert "instructions per inference" in capsys.readouterr().out
    assert main(["run", str(hello), "--board", "mps2-an385", "--json", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
