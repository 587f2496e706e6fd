"""tinyq.measure.report: Markdown sections, PNG plots, side-by-side comparison, atomic outputs."""

from __future__ import annotations

import json

import pytest

from tinyq.device.protocol import Layer
from tinyq.errors import OutputExistsError, UserInputError
from tinyq.measure.benchmark import (
    BenchResult,
    FlashUsage,
    RamUsage,
    latency_from_ticks,
    layer_profile,
)
from tinyq.measure.report import (
    accuracy_points,
    compare_markdown,
    labels_for,
    layers_png,
    load_record,
    markdown,
    write_json,
    write_report,
)
from tinyq.measure.validation import SampleRecord, ValidateResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench_record(emulated: bool = True, per_layer: bool = True, ticks: int = 1000,
                 board: str = "mps2-an386") -> dict:
    tick_hz = 25_000_000
    lat = latency_from_ticks([ticks, ticks + 1, ticks], tick_hz, "systick", emulated, tick_hz,
                             runs=3, warmup=1)
    layers = layer_profile([Layer(0, "CONV_2D", ticks * 3 // 4), Layer(1, "SOFTMAX", ticks // 4)],
                           [4000, 0], tick_hz, emulated, tick_hz) if per_layer else None
    return BenchResult(
        model="/x/kws.tflite", model_id="0123456789ab", board=board, runtime="native",
        device="QEMU" if emulated else "/dev/ttyACM0", emulated=emulated,
        input_source="random (seed 0)", latency=lat,
        ram=RamUsage(static=1000, stack_peak=500, arena=2000, available=65536),
        flash=FlashUsage(code=9000, model=20000, available=1 << 20), layers=layers, macs=4000,
        outputs_match=True, max_lsb_diff=0, firmware="/x/app.elf").to_json()


def validate_record(done: int = 10, requested: int = 10) -> dict:
    records = tuple(SampleRecord(i, i % 3, i % 3, i % 3, 0) for i in range(done))
    return ValidateResult(
        model="/x/kws.tflite", model_id="0123456789ab", data="/x/test.npz", data_sha256="d",
        board="mps2-an386", runtime="native", device="QEMU", emulated=True,
        requested=requested, records=records,
        error=None if done == requested else "sample 4: disconnected",
        float_accuracy=0.95, float_model_bytes=80_000, tflite_bytes=22_000).to_json()


def test_bench_markdown_under_emulator_says_instructions_never_ms():
    text = markdown(bench_record(emulated=True))
    assert "# tinyq bench: kws.tflite on mps2-an386 (native)" in text
    assert "| median | 40,000 |" in text and "emulator instructions" in text
    assert "| ms" not in text and "ms |" not in text
    assert "| **total peak** | **3,500** |" in text and "| board RAM | 65,536 |" in text
    assert "| model (weights, biases, parameters) | 20,000 |" in text
    assert "| 0 | CONV_2D | 30,000 | 75.0 % | 4,000 |" in text
    assert "identical to the tflite-micro interpreter" in text


def test_bench_markdown_on_hardware_has_cycles_and_ms():
    text = markdown(bench_record(emulated=False, ticks=25_000))
    assert "|  | cycles | ms |" in text and "| median | 25,000 | 1 |" in text
    assert "emulator instructions" not in text


def test_validate_markdown_and_incomplete_warning():
    text = markdown(validate_record())
    assert "| on-device top-1 | 100.00 % |" in text and "| float model top-1 | 95.00 % |" in text
    assert "10 of 10 (all)" in text and "Incomplete" not in text
    partial = markdown(validate_record(done=4, requested=10))
    assert "**Incomplete:**" in partial and "6 are missing" in partial


def test_accuracy_points_use_tflite_sizes():
    points = accuracy_points(validate_record())
    assert ("float (host)", 80_000, 0.95) in points
    assert ("int8 on device", 22_000, 1.0) in points


def test_write_report_writes_markdown_and_pngs(tmp_path):
    rec = {**bench_record(), **{k: v for k, v in validate_record().items()
                                if k not in ("kind", "model")}}
    files = write_report(rec, tmp_path / "r.md")
    names = sorted(p.name for p in files.images)
    assert names == ["r-accuracy.png", "r-layers.png"]
    for png in files.images:
        assert png.read_bytes()[:8] == PNG_MAGIC
    text = (tmp_path / "r.md").read_text()
    assert "![per-layer profile](r-layers.png)" in text
    assert "![accuracy vs size](r-accuracy.png)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r-accuracy.png", "r-layers.png",
                                                          "r.md"]   # no temporary files left


def test_write_report_refuses_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "r-layers.png").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="r-layers.png"):
        write_report(bench_record(), tmp_path / "r.md")
    assert not (tmp_path / "r.md").exists()
    assert (tmp_path / "r-layers.png").read_bytes() == b"keep"
    write_report(bench_record(), tmp_path / "r.md", force=True)
    assert (tmp_path / "r-layers.png").read_bytes()[:8] == PNG_MAGIC


def test_no_layer_chart_without_layers(tmp_path):
    assert layers_png(bench_record(per_layer=False)) is None
    files = write_report(bench_record(per_layer=False), tmp_path / "r.md")
    assert files.images == ()
    assert "Per-layer" not in (tmp_path / "r.md").read_text()


def test_compare_side_by_side_with_ratio():
    a = bench_record(ticks=1000)
    b = bench_record(ticks=500, board="mps2-an385")
    text = compare_markdown([a, b], ["before", "after"])
    assert "|  | before | after | ratio (2nd / 1st) |" in text
    assert "| latency median | 40,000 | 20,000 | 0.500 |" in text
    assert "| board | mps2-an386 | mps2-an385 |  |" in text
    assert "## Per layer" in text and "| 0 | CONV_2D | 30,000 | 15,000 | 0.500 |" in text


def test_compare_never_divides_instructions_by_cycles():
    text = compare_markdown([bench_record(emulated=True), bench_record(emulated=False)],
                            ["qemu", "board"])
    assert "| latency median | 40,000 | 1,000 |  |" in text
    assert "units differ" in text


def test_compare_needs_two_records():
    with pytest.raises(UserInputError, match="at least two"):
        compare_markdown([bench_record()], ["a"])


def test_load_record_errors(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_record(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UserInputError, match="not readable JSON"):
        load_record(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserInputError, match="not a tinyq"):
        load_record(other)


def _damage(record: dict, edit) -> dict:
    record = json.loads(json.dumps(record))
    edit(record)
    return record


DAMAGED = [
    ("bench", lambda r: r["latency"].update(median="40000"),
     'latency.median must be a number, not the string "40000"'),
    ("validate", lambda r: r.update(device_accuracy="high"),
     'device_accuracy must be a number, not the string "high"'),
    ("bench", lambda r: r.update(ram="lots"), 'ram must be an object, not the string "lots"'),
    ("bench", lambda r: r["layers"][1].pop("share"), "layers[1].share is missing"),
    ("bench", lambda r: r["layers"][0].update(instructions="many"),
     'layers[0].instructions must be a number, not the string "many"'),
    ("bench", lambda r: r.update(layers=[7]), "layers[0] must be an object, not 7"),
    ("bench", lambda r: r["latency"].pop("median"), "latency.median is missing"),
    ("bench", lambda r: r["latency"].update(unit="seconds"),
     'latency.unit must be one of instructions, cycles, not the string "seconds"'),
    ("validate", lambda r: r.update(samples=True), "samples must be an integer, not true"),
    ("deploy", lambda r: r["stages"][0].update(seconds="1.5"),
     'stages[0].seconds must be a number, not the string "1.5"'),
]


@pytest.mark.parametrize("kind, edit, message", DAMAGED, ids=[d[2][:30] for d in DAMAGED])
def test_damaged_record_fails_in_one_line_naming_file_and_field(tmp_path, capsys, kind, edit,
                                                                message):
    from tinyq.cli import main

    base = {"bench": bench_record, "validate": validate_record,
            "deploy": lambda: {**bench_record(), "kind": "deploy",
                               "stages": [{"name": "build", "seconds": 1.5, "summary": ""}]}}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base[kind]()))
    assert load_record(good)                                  # the undamaged record loads
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_damage(base[kind](), edit)))
    with pytest.raises(UserInputError) as info:
        load_record(bad)
    assert str(info.value).startswith(f"{bad}: {message} — ")
    md = tmp_path / "out.md"
    assert main(["report", str(bad), "-o", str(md)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {info.value}\n" and not md.exists()


def test_write_json_is_atomic_and_refuses_overwrite(tmp_path):
    out = tmp_path / "a.json"
    write_json(bench_record(), out)
    assert load_record(out)["latency"]["unit"] == "instructions"
    with pytest.raises(OutputExistsError):
        write_json(bench_record(), out)


def test_labels_for_paths():
    assert labels_for(["x/native.json", "y/tflm.json"]) == ["native", "tflm"]
    assert labels_for(["x/r.json", "y/r.json"]) == ["x/r.json", "y/r.json"]


def test_cli_report(tmp_path, capsys):
    from tinyq.cli import main

    a, b = tmp_path / "native.json", tmp_path / "tflm.json"
    write_json(bench_record(ticks=1000), a)
    write_json(bench_record(ticks=3000), b)
    assert main(["report", str(a), str(b)]) == 0
    assert "| latency median | 40,000 | 120,000 | 3.000 |" in capsys.readouterr().out
    md = tmp_path / "cmp.md"
    assert main(["report", str(a), str(b), "-o", str(md)]) == 0
    assert "side by side" in md.read_text()
    assert main(["report", str(a), str(b), "-o", str(md)]) == 1        # exists, no --force
    assert "already exists" in capsys.readouterr().err
    assert main(["report", str(a), "--md", str(tmp_path / "one.md")]) == 0
    assert (tmp_path / "one-layers.png").exists()


def test_compare_record_renders_modes_and_accuracy_vs_size(tmp_path):
    """A `tinyq compare --json` record: one row per mode, plotted as accuracy vs size."""
    rec = {"model": "m.keras", "data": "test.npz", "samples": 10, "source_size_bytes": 9000,
           "reference_accuracy": 0.9, "latency_interpreter": "LiteRT",
           "rows": [{"mode": "int8", "size_bytes": 2000, "accuracy": 0.88,
                     "top1_agreement": 0.95, "max_abs_error": 0.5, "tflm_runs": True,
                     "tflm_note": "", "error": None},
                    {"mode": "float16", "size_bytes": 4000, "accuracy": 0.9,
                     "top1_agreement": 1.0, "max_abs_error": 0.01, "tflm_runs": False,
                     "tflm_note": "TFLM cannot dequantize float16 weights", "error": None}]}
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(rec))
    loaded = load_record(path)
    assert accuracy_points(loaded) == [("int8", 2000, 0.88), ("float16", 4000, 0.9)]
    files = write_report(loaded, tmp_path / "cmp.md")
    text = files.markdown.read_text()
    assert text.startswith("# tinyq compare: m.keras\n")
    assert "| int8 | 2,000 | 88.00 % | 95.00 % | 0.5 | yes |" in text
    assert "no (TFLM cannot dequantize float16 weights)" in text
    assert "![accuracy vs size](cmp-accuracy.png)" in text
    assert [p.name for p in files.images] == ["cmp-accuracy.png"]
