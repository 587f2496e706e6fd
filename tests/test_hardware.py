"""Real-board tests: flash, run, bench and validate on an attached board.

Run with ``pytest -m hardware --board nucleo-l4r5zi --port /dev/ttyACM0``; without
--board/--port every test here is skipped with that reason (never faked).
"""

from __future__ import annotations

import pytest
from conftest import shared_models_dir

pytestmark = pytest.mark.hardware


def _model():
    base = shared_models_dir()
    path = base / "tflm-examples" / "hello_world_int8.tflite" if base else None
    if path is None or not path.exists():
        pytest.skip("hello_world_int8.tflite not found under ../shared/models")
    return path


def test_run_on_board_matches_tflm(hardware):
    from tinyq.measure.runner import RunOptions, run

    result = run(_model(), hardware["board"], port=hardware["port"],
                 options=RunOptions(samples=5, runs=3))
    assert result.outputs_match and result.max_lsb_diff == 0
    assert result.unit == "cycles" and result.per_inference > 0


def test_bench_on_board_reports_cycles_and_ms(hardware):
    from tinyq.measure.benchmark import BenchOptions, bench

    result = bench(_model(), hardware["board"], port=hardware["port"],
                   options=BenchOptions(runs=5, warmup=1))
    record = result.to_json()
    assert record["latency"]["unit"] == "cycles"
    assert record["latency"]["ms"] is not None
    assert record["outputs_match"] is True


def test_flash_then_run_without_reflashing(hardware):
    """The profile's flashing method programs the board; the firmware then answers as built."""
    from tinyq import boards
    from tinyq.device.flashing import flash
    from tinyq.firmware.compiling import build
    from tinyq.measure.runner import RunOptions, run

    board = boards.load(hardware["board"])
    firmware = build(_model(), board)
    flash(firmware.elf, board)
    result = run(_model(), board, port=hardware["port"],
                 options=RunOptions(samples=3, runs=1, flash=False))
    assert result.board == board.name
    assert result.outputs_match
