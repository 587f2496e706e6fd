"""tinyq.measure.benchmark: statistics, units, RAM/flash records, per-layer profiles (fake device),
and an end-to-end run under QEMU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from tinyq.board_profile import Board, Counter, Emulator, Flashing, MemoryRegion, Uart
from tinyq.device.fake import FakeDevice, FakeFirmware
from tinyq.device.protocol import Client, Layer, Timeouts
from tinyq.errors import OutputExistsError, UserInputError
from tinyq.firmware.compiling import Firmware
from tinyq.measure.benchmark import (
    BenchOptions,
    bench,
    bench_on_device,
    latency_from_ticks,
    layer_profile,
    percentile,
    ticks_to_counts,
)
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

FAST = Timeouts(default=0.5, infer=0.5, boot=0.5, probe_after=0.2, settle=0.05)

HW_BOARD = Board(
    name="hwboard", vendor="t", description="t", core="cortex-m4", fpu="fpv4-sp-d16",
    clock_hz=80_000_000, flash=MemoryRegion("flash", 0x08000000, 1 << 20),
    ram=MemoryRegion("ram", 0x20000000, 1 << 17), uart=Uart("cmsdk", 0x40004000),
    counter=Counter("dwt", 80_000_000), flashing=Flashing("pyocd", pyocd_target="x"),
    emulator=Emulator(qemu_machine="mps2-an386"))


def fc_classifier(n_in: int = 16, n_out: int = 4, seed: int = 0) -> bytes:
    """int8 FULLY_CONNECTED classifier (n_in -> n_out) that TFLM and the native runtime run."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("tinyq bench test classifier")
    x = g.add_tensor((1, n_in), "int8", scale=1 / 64, zero_point=0)
    w = g.add_constant(rng.integers(-127, 128, (n_out, n_in), dtype=np.int8), scale=1 / 128,
                       zero_point=0)
    b = g.add_constant(rng.integers(-500, 500, n_out).astype(np.int32), "int32",
                       scale=1 / 64 / 128, zero_point=0)
    y = g.add_tensor((1, n_out), "int8", scale=1 / 16, zero_point=-3)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.build()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "fc.tflite"
    path.write_bytes(fc_classifier())
    return path


def _firmware(tmp: Path) -> Firmware:
    return Firmware(elf=tmp / "app.elf", project=tmp, board="hwboard", runtime="native",
                    model_sha256="", flash_bytes=9000, model_bytes=120, data_bytes=8,
                    bss_bytes=100, arena_bytes=1024, arena_region="ram", stack_bytes=8192,
                    flash_available=1 << 20, ram_available=1 << 17)


def _client(model_bytes: bytes, emulated: bool, corrupt: bool = False, ticks: int = 1000,
            layers=(("FULLY_CONNECTED", 500),)) -> Client:
    oracle = TflmInterpreter(model_bytes)

    def compute(inputs):
        x = np.frombuffer(inputs[0], dtype=np.int8).reshape(1, 16)
        out = oracle.invoke([x])[0].tobytes()
        if corrupt:
            out = bytes([out[0] ^ 1]) + out[1:]          # one LSB off, no wrap
        return [out]

    clock = 25_000_000 if emulated else 80_000_000
    fw = FakeFirmware(input_sizes=(16,), compute=compute, board="hwboard",
                      model_id=read_model_bytes(model_bytes).sha256[:12],
                      ticks_per_inference=ticks, clock_hz=clock,
                      counter="systick" if emulated else "dwt", layers=layers)
    device = FakeDevice(fw, emulated=emulated)
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    return client


# -- statistics and units -------------------------------------------------------------------

def test_percentile_is_nearest_rank():
    assert percentile([5], 95) == 5
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([3, 1, 2], 50) == 2
    with pytest.raises(ValueError):
        percentile([], 95)


def test_emulator_ticks_are_instructions():
    # mps2-an386: SysTick at 25 MHz under icount -> 40 instructions per tick.
    assert ticks_to_counts([1000, 1001], 25_000_000, True, 25_000_000) == (40_000, 40_040)
    lat = latency_from_ticks([1000, 1002, 1001, 1000, 1100], 25_000_000, "systick", True,
                             25_000_000, runs=5, warmup=1)
    assert lat.unit == "instructions"
    assert (lat.median, lat.min, lat.max, lat.p95) == (40_040, 40_000, 44_000, 44_000)
    assert lat.ms(lat.median) is None
    d = lat.to_dict()
    assert d["unit"] == "instructions" and "ms" not in d and "instruction" in d["note"]


def test_hardware_ticks_are_cycles_and_milliseconds():
    # DWT counts core cycles; SysTick on a /8 reference clock counts 8 cycles per tick.
    assert ticks_to_counts([100], 80_000_000, False, 80_000_000) == (100,)
    assert ticks_to_counts([100], 10_000_000, False, 80_000_000) == (800,)
    lat = latency_from_ticks([800_000, 800_000, 880_000], 80_000_000, "dwt", False, 80_000_000,
                             runs=3, warmup=0)
    assert lat.unit == "cycles" and lat.median == 800_000
    d = lat.to_dict()
    assert d["ms"] == 10.0 and d["ms_max"] == 11.0 and "note" not in d


def test_layer_profile_shares_and_macs_per_cycle():
    layers = [Layer(0, "CONV_2D", 300), Layer(1, "RESHAPE", 0), Layer(2, "SOFTMAX", 100)]
    prof = layer_profile(layers, [6000, 0, 0], 25_000_000, True, 25_000_000)
    assert [p.count for p in prof] == [12_000, 0, 4_000]
    assert [round(p.share, 3) for p in prof] == [0.75, 0.0, 0.25]
    assert prof[0].macs_per_count == 0.5 and prof[1].macs_per_count is None
    assert prof[0].to_dict("instructions")["macs_per_instruction"] == 0.5


def test_options_are_checked():
    with pytest.raises(UserInputError, match="--runs"):
        BenchOptions(runs=0).check()
    with pytest.raises(UserInputError, match="--warmup"):
        BenchOptions(warmup=-1).check()


# -- on the fake device --------------------------------------------------------------------

def test_bench_on_emulator_reports_instructions(model_file, tmp_path):
    data = model_file.read_bytes()
    client = _client(data, emulated=True, ticks=1234)
    result = bench_on_device(client, model_file, HW_BOARD, "native", _firmware(tmp_path),
                             BenchOptions(runs=7, warmup=2, per_layer=True))
    rec = json.loads(json.dumps(result.to_json()))
    assert rec["latency"]["unit"] == "instructions"
    assert rec["latency"]["median"] == 1234 * 40 and rec["latency"]["recorded"] == 7
    assert "ms" not in rec["latency"]
    assert "infer 7 2" in client.device.commands
    assert rec["ram"] == {**rec["ram"], "static": 108, "stack_peak": 600, "arena": 1024,
                          "total": 108 + 600 + 1024, "available": 1 << 17}
    assert rec["flash"] == {"code": 9000 - 120, "model": 120, "total": 9000,
                            "available": 1 << 20}
    assert rec["outputs_match"] is True and rec["max_lsb_diff"] == 0
    assert rec["macs"] == 64 and rec["layers"][0]["macs"] == 64
    assert rec["layers"][0]["instructions"] == 500 * 40 and rec["layers"][0]["share"] == 1.0


def test_bench_on_hardware_reports_cycles_and_ms(model_file, tmp_path):
    client = _client(model_file.read_bytes(), emulated=False, ticks=80_000)
    result = bench_on_device(client, model_file, HW_BOARD, "native", _firmware(tmp_path),
                             BenchOptions(runs=3, warmup=0))
    rec = result.to_json()
    assert rec["latency"]["unit"] == "cycles" and rec["latency"]["median"] == 80_000
    assert rec["latency"]["ms"] == 1.0
    assert rec["layers"] is None and "tq-layers" not in client.device.commands
    assert rec["macs_per_cycle"] == round(64 / 80_000, 4)


def test_bench_reports_output_differences(model_file, tmp_path):
    client = _client(model_file.read_bytes(), emulated=True, corrupt=True)
    result = bench_on_device(client, model_file, HW_BOARD, "native", _firmware(tmp_path))
    assert result.outputs_match is False and result.max_lsb_diff == 1


def test_bench_given_input_is_used(model_file, tmp_path):
    client = _client(model_file.read_bytes(), emulated=True)
    x = np.arange(16, dtype=np.int8).reshape(1, 16)
    result = bench_on_device(client, model_file, HW_BOARD, "native", _firmware(tmp_path),
                             inputs=x)
    assert result.input_source == "given data (first sample)"
    assert f"db {x.tobytes().hex()}" in client.device.commands


def test_cli_refuses_existing_json_before_any_work(model_file, tmp_path, capsys):
    from tinyq.cli import main

    out = tmp_path / "bench.json"
    out.write_text("{}")
    code = main(["bench", str(model_file), "--board", "no-such-board", "--json", str(out)])
    assert code == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "{}"
    with pytest.raises(OutputExistsError):
        from tinyq.fileio import check_output
        check_output(out, False)


def _no_work(monkeypatch):
    import tinyq.firmware.compiling
    import tinyq.measure.benchmark

    def no_work(*_a, **_k):
        raise AssertionError("must not build or run before checking the outputs")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_work)
    monkeypatch.setattr(tinyq.measure.benchmark, "bench", no_work)


def test_cli_refuses_existing_report_png_before_any_work(model_file, tmp_path, capsys,
                                                          monkeypatch):
    from tinyq.cli import main

    _no_work(monkeypatch)
    png = tmp_path / "r-layers.png"
    png.write_bytes(b"old")
    argv = ["bench", str(model_file), "--board", "mps2-an386", "--emulator", "qemu",
            "--report", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")]
    assert main([*argv, "--per-layer"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {png} already exists — pass --force to overwrite it or choose " \
                  "another path\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r-layers.png"]
    assert png.read_bytes() == b"old"
    # without --per-layer the report has no layer chart: the PNG is not in the way
    with pytest.raises(AssertionError, match="must not build"):
        main(argv)


def test_validate_cli_refuses_existing_accuracy_png_before_any_work(model_file, tmp_path,
                                                                     capsys, monkeypatch):
    from tinyq.cli import main

    _no_work(monkeypatch)
    data = tmp_path / "t.npz"
    np.savez(data, x=np.zeros((4, 16), np.float32), y=np.arange(4))
    png = tmp_path / "v-accuracy.png"
    png.write_bytes(b"old")
    assert main(["validate", str(model_file), "--board", "mps2-an386", "--emulator", "qemu",
                 "--data", str(data), "--report", str(tmp_path / "v.md")]) == 1
    assert f"{png} already exists" in capsys.readouterr().err
    assert png.read_bytes() == b"old" and not (tmp_path / "v.md").exists()


# -- end to end on QEMU -------------------------------------------------------------------------

@pytest.mark.qemu
def test_bench_on_qemu_mps2_an386(model_file, tmp_path, monkeypatch):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    result = bench(model_file, "mps2-an386", emulator="qemu",
                   options=BenchOptions(runs=5, warmup=1, per_layer=True))
    rec = result.to_json()
    lat = rec["latency"]
    assert lat["unit"] == "instructions" and "ms" not in lat and lat["recorded"] == 5
    # icount is deterministic: runs differ only by where tick boundaries fall (40 instr).
    assert 0 < lat["min"] <= lat["median"] <= lat["p95"] <= lat["max"] <= lat["min"] + 40
    assert rec["outputs_match"] is True
    assert rec["ram"]["arena"] > 0 and rec["ram"]["stack_peak"] > 0
    assert rec["ram"]["total"] == rec["ram"]["static"] + rec["ram"]["stack_peak"] + \
        rec["ram"]["arena"]
    assert rec["flash"]["model"] > 0 and rec["flash"]["code"] > 0
    assert [layer["op"] for layer in rec["layers"]] == ["FULLY_CONNECTED"]
    assert rec["layers"][0]["macs"] == 64
