"""Hostile inputs through the real CLI: each ends in one line, the right exit code, no
traceback, no partial output, in bounded time and memory.

Resource bombs (data headers claiming 10^12 samples, a zip bomb, a 20000x20000 PNG, a model
whose input would be 10 GB, absurd --runs/--samples), special files (FIFOs, /dev/zero) given
as data, boards, project files and records, and damaged parsers' inputs (deep nesting,
wrong field types, string labels, truncated archives).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinyq.cli import main
from tinyq.model.tflite_writer import TensorSpec, single_op_model

#: Peak Python/numpy heap a refused bomb may use (tracemalloc): the refusals read headers
#: only, so a few MB; a bomb that got through would allocate hundreds of MB to 10 GB.
PEAK_BYTES = 64 << 20
#: Seconds a refusal may take (each is a header read; a FIFO would block forever).
REFUSE_S = 15.0


# -- helpers ---------------------------------------------------------------------------

@pytest.fixture
def model(tmp_path) -> Path:
    """A one-op int8 model whose input is a 4x4 grayscale image."""
    spec = TensorSpec((1, 4, 4, 1), "int8", 1 / 255, -128)
    path = tmp_path / "m.tflite"
    path.write_bytes(single_op_model("RELU", [spec], [spec]))
    return path


@pytest.fixture
def no_build(monkeypatch):
    """Nothing may be built: every refusal here comes before the firmware."""
    import tinyq.firmware.compiling
    import tinyq.measure.runner

    def refuse(*_a, **_k):
        raise AssertionError("built firmware before refusing the input")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", refuse)
    monkeypatch.setattr(tinyq.measure.runner, "build_firmware", refuse)


def run_cli(argv: list[str]) -> dict:
    """main(argv) in a thread, stopped waiting after REFUSE_S (a blocked read never returns);
    returns exit code, seconds and the peak traced heap."""
    result: dict = {}

    def target():
        tracemalloc.start()
        start = time.monotonic()
        try:
            result["rc"] = main(argv)
        except BaseException as exc:        # a crash: shown by assert_refused
            result["rc"] = f"raised {exc!r}"
        finally:
            result["seconds"] = time.monotonic() - start
            result["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(REFUSE_S)
    result["finished"] = not thread.is_alive()
    return result


def assert_refused(result: dict, capsys, *words: str, code: int = 1) -> str:
    """One `error:` line holding ``words`` (after any progress lines), exit ``code``, fast,
    small, nothing on stdout."""
    assert result["finished"], f"still running after {REFUSE_S} s (blocked on a read?)"
    out, err = capsys.readouterr()
    assert result["rc"] == code, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    assert all(line.startswith("[") for line in lines[:-1]), err     # progress lines only
    assert "Traceback" not in err
    for word in words:
        assert word in lines[-1], err
    assert out == "", out
    assert result["peak"] < PEAK_BYTES, f"peak heap {result['peak']:,} bytes"
    return lines[-1]


def npy_bytes(shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"") -> bytes:
    """A .npy header for ``shape`` followed by ``data`` (which need not match it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grayscale pixels and holds almost none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@contextlib.contextmanager
def fifo(path: Path):
    """A named pipe at ``path``; unblocks any reader left waiting on it afterwards."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def run_argv(model: Path, tmp_path: Path, data: Path) -> list[str]:
    return ["run", str(model), "--board", "mps2-an386", "--emulator", "qemu", "--input",
            str(data), "--json", str(tmp_path / "out.json")]


def validate_argv(model: Path, tmp_path: Path, data: Path) -> list[str]:
    return ["validate", str(model), "--board", "mps2-an386", "--emulator", "qemu", "--data",
            str(data), "--json", str(tmp_path / "out.json")]


# -- resource bombs ----------------------------------------------------------------------

def test_npy_header_claiming_10e12_samples(model, tmp_path, capsys, no_build):
    data = tmp_path / "huge.npy"
    data.write_bytes(npy_bytes((10**12, 4, 4, 1), data=bytes(64)))
    assert_refused(run_cli(run_argv(model, tmp_path, data)), capsys,
                   "16,000,000,000,000 values", "over tinyq's limit of 268,435,456")
    assert not (tmp_path / "out.json").exists()


def test_npz_member_claiming_10e12_samples(model, tmp_path, capsys, no_build):
    data = tmp_path / "huge.npz"
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("x.npy", npy_bytes((10**12, 4, 4, 1), data=bytes(64)))
        archive.writestr("y.npy", npy_bytes((10**12,), "<i8", bytes(64)))
    assert_refused(run_cli(validate_argv(model, tmp_path, data)), capsys,
                   "array 'x' in", "over tinyq's limit")
    assert not (tmp_path / "out.json").exists()


def test_zip_bomb_npz_is_refused_before_decompressing(model, tmp_path, capsys, no_build):
    """300 MB of zeros in a ~0.3 MB archive: refused from the member's header."""
    values = 300_000_000 // 16 * 16
    data = tmp_path / "bomb.npz"
    zero_mb = bytes(1 << 20)
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes((values // 16, 4, 4, 1), "|i1"))
            for _ in range(values >> 20):
                member.write(zero_mb)
            member.write(bytes(values - (values >> 20 << 20)))
    assert data.stat().st_size < 2 << 20
    assert_refused(run_cli(run_argv(model, tmp_path, data)), capsys,
                   "300,000,000 values", "over tinyq's limit")


@pytest.mark.parametrize("width, height, words", [
    (20000, 20000, ("over tinyq's limit of 67,108,864 pixels",)),     # Pillow's own bomb error
    (9000, 9000, ("9000x9000 = 81,000,000 pixels", "over tinyq's limit")),
])
def test_huge_png_in_an_image_folder(model, tmp_path, capsys, no_build, width, height, words):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "big.png").write_bytes(png_header(width, height))
    argv = ["evaluate", str(model), "--data", str(folder), "--json", str(tmp_path / "out.json")]
    assert_refused(run_cli(argv), capsys, "big.png", *words)
    assert not (tmp_path / "out.json").exists()


def test_model_whose_input_would_be_10_gb(tmp_path, capsys, no_build):
    """run made a 9.6 GB random input before any fit check; bench/validate alike."""
    spec = TensorSpec((1, 100_000, 100_000, 1), "int8", 1 / 255, -128)
    model = tmp_path / "huge_input.tflite"
    model.write_bytes(single_op_model("RELU", [spec], [spec]))
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((1, 1), np.float32), y=np.zeros(1, np.int64))
    for argv in (["run", str(model)], ["bench", str(model)],
                 ["validate", str(model), "--data", str(data)]):
        result = run_cli([*argv, "--board", "mps2-an386", "--emulator", "qemu"])
        assert_refused(result, capsys, "does not fit mps2-an386",
                       "input alone is 10,000,000,000 bytes", code=3)
        assert result["seconds"] < 5


@pytest.mark.parametrize("argv, words", [
    (["bench", "--runs", "1000000000"], ("--runs 1,000,000,000", "limit of 1,000,000")),
    (["bench", "--warmup", "1000000000"], ("--warmup 1,000,000,000", "limit of 1,000,000")),
    (["run", "--runs", "1000000000"], ("--runs 1,000,000,000", "limit of 1,000,000")),
    (["run", "--samples", "100000"], ("--samples 100,000", "limit of 1,000 random inputs",
                                      "tinyq validate")),
    (["deploy", "--runs", "1000000000"], ("--runs 1,000,000,000", "limit of 1,000,000")),
])
def test_absurd_counts_are_capped_before_any_work(model, tmp_path, capsys, no_build, argv,
                                                  words):
    command, *options = argv
    if command == "deploy":
        options += ["-o", str(tmp_path / "deployed")]
    result = run_cli([command, str(model), "--board", "mps2-an386", "--emulator", "qemu",
                      *options, "--json", str(tmp_path / "out.json")])
    assert_refused(result, capsys, *words)
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "deployed").exists()


# -- special files -------------------------------------------------------------------

def _report_argv(model, tmp_path, path):
    return ["report", str(path)]


def _board_argv(model, tmp_path, path):
    return ["inspect", str(model), "--board", str(path)]


def _project_argv(model, tmp_path, path):
    return ["build", str(path.parent)]


def _folder_entry_argv(model, tmp_path, path):
    return run_argv(model, tmp_path, path.parent)


@pytest.mark.parametrize("make_argv, name, words", [
    (run_argv, "x.npy", ("data", "FIFO")),
    (validate_argv, "test.npz", ("data", "FIFO")),
    (_folder_entry_argv, "images/a.png", ("image", "a.png", "FIFO")),
    (_board_argv, "board.toml", ("board file", "FIFO")),
    (_project_argv, "proj/tinyq_project.json", ("project file", "FIFO")),
    (_report_argv, "record.json", ("record", "FIFO")),
], ids=["run-input", "validate-data", "image-in-folder", "board", "project", "report"])
def test_a_fifo_is_refused_not_waited_on(model, tmp_path, capsys, make_argv, name, words):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with fifo(path):
        result = run_cli(make_argv(model, tmp_path, path))
    assert_refused(result, capsys, str(path), "not a regular file", *words)


@pytest.mark.parametrize("make_argv, name, words", [
    (_board_argv, "board.toml", ("board file", "character device")),
    (_report_argv, "record.json", ("record", "character device")),
    (_project_argv, "proj/tinyq_project.json", ("project file", "character device")),
], ids=["board", "report", "project"])
def test_dev_zero_is_refused_not_read_forever(model, tmp_path, capsys, make_argv, name, words):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/zero")
    assert_refused(run_cli(make_argv(model, tmp_path, path)), capsys, "not a regular file",
                   *words)


# -- parsers ---------------------------------------------------------------------------

def test_truncated_npz_is_not_called_python_objects(model, tmp_path, capsys, no_build):
    data = tmp_path / "cut.npz"
    with zipfile.ZipFile(data, "w") as archive:     # the data stops after 100 of 2000 values
        archive.writestr("x.npy", npy_bytes((125, 4, 4, 1), data=bytes(400)))
    err = assert_refused(run_cli(run_argv(model, tmp_path, data)), capsys,
                         "truncated", "promises 8,000 bytes", "it holds 400")
    assert "Python objects" not in err


def test_string_labels_are_named(model, tmp_path, capsys, no_build):
    data = tmp_path / "test.npz"
    np.savez(data, x=np.zeros((2, 4, 4, 1), np.float32), y=np.array(["cat", "dog"]))
    assert_refused(run_cli(validate_argv(model, tmp_path, data)), capsys,
                   "labels y", "'cat'", "not class numbers")


def test_deeply_nested_board_toml(model, tmp_path, capsys):
    board = tmp_path / "deep.toml"
    board.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    assert_refused(run_cli(["boards", "validate", str(board)]), capsys, "nested too deeply")


def test_deeply_nested_record_json(tmp_path, capsys):
    record = tmp_path / "deep.json"
    record.write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(run_cli(["report", str(record)]), capsys, "nested too deeply")


@pytest.mark.parametrize("record, words", [
    ({"board": 5}, ("field 'board' must be an object, not 5",)),
    ({"board": {"name": "b", "core": "cortex-m4", "flash": {"size": "big"},
                "ram": {"name": "ram", "size": 1}}, "runtime": "native"},
     ("field 'board.flash.size' must be an integer",)),
    ({"board": {"name": "b", "core": "z80", "flash": {"size": 1}, "ram": {"name": "ram",
                                                                          "size": 1}},
      "runtime": "native"}, ("field 'board.core'", '"z80"', "cortex-m4")),
])
def test_project_file_with_wrong_field_types(tmp_path, capsys, record, words):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "tinyq_project.json").write_text(json.dumps(record))
    assert_refused(run_cli(["build", str(project)]), capsys, "tinyq_project.json", *words)


@pytest.mark.parametrize("record, words", [
    ('{"latency": {"unit": "instructions", "median": 5}, "layers": [{"index": 0, "op": "X", '
     '"share": 0.5, "instructions": Infinity}]}', ("Infinity is not a number",)),
    ('{"latency": {"unit": "instructions", "median": 1e400}}', ("1e400 is too large",)),
    ('{"latency": {"unit": "instructions", "median": ' + "9" * 400 + "}}",
     ("latency.median", "400-digit number")),
])
def test_record_with_numbers_that_cannot_be_shown(tmp_path, capsys, record, words):
    path = tmp_path / "r.json"
    path.write_text(record)
    assert_refused(run_cli(["report", str(path)]), capsys, *words)


# -- one loader for every command ---------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    for label, name in enumerate(("cat", "dog")):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.full((6, 6), 40 * i + 100 * label, np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


@pytest.mark.qemu
@pytest.mark.parametrize("command", ["run", "validate"])
def test_run_and_validate_take_an_image_folder(model, tmp_path, capsys, image_folder, command):
    from conftest import require_tools

    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    option = "--input" if command == "run" else "--data"
    out = tmp_path / "out.json"
    assert main([command, str(model), "--board", "mps2-an386", "--emulator", "qemu", option,
                 str(image_folder), "--json", str(out)]) == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    if command == "run":
        assert record["samples"] == 4 and record["outputs_match"]
        assert "4 sample(s)" in record["input"]
    else:
        assert record["samples"] == 4 and record["bit_exact"]
        assert [row[1] for row in record["per_sample"]] == [0, 0, 1, 1]


@pytest.mark.parametrize("record", [
    {"latency": None, "device_accuracy": 0.5},
    {"stages": [{"name": "build", "seconds": 1.5}], "wall_seconds": None},
])
def test_record_with_null_sections_still_renders(tmp_path, capsys, record):
    """null is how a record says "not measured": the report leaves that part out."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    result = run_cli(["report", str(path)])
    out, err = capsys.readouterr()
    assert result["rc"] == 0 and err == "", err
    assert out.startswith("#")


# -- a seeded mutation fuzzer over data files ------------------------------------------------

#: Mutants per CI run (about a second). By hand, thousands: TINYQ_DATA_FUZZ=20000.
DATA_MUTANTS = int(os.environ.get("TINYQ_DATA_FUZZ", "400"))


def _mutate(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.5:                                          # a bit flip
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind < 0.7:                                        # a truncation
            out = out[:rng.randrange(len(out))] or bytearray(b"P")
        elif kind < 0.85:                                       # a size field rewritten
            at = rng.randrange(max(1, len(out) - 8))
            out[at:at + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\0\0\0\0", b"9999", b"(10,"])
        else:                                                   # a byte replaced
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def test_mutated_data_files_end_in_data_errors(tmp_path):
    """Bit flips, truncations and rewritten size fields in .npy/.npz (stored and deflated):
    every mutant loads or ends in a DataError, quickly and in little memory."""
    import random

    from tinyq.data import load_data
    from tinyq.errors import DataError

    x = np.random.default_rng(0).random((20, 4, 4, 1), np.float32)
    seeds = {}
    for name, save in (("s.npz", np.savez), ("d.npz", np.savez_compressed), ("a.npy", np.save)):
        path = tmp_path / name
        if name.endswith(".npy"):
            save(path, x)
        else:
            save(path, x=x, y=np.arange(20) % 3)
        seeds[name] = path.read_bytes()
    rng = random.Random(11)
    crashes, peak, slowest = [], 0, 0.0
    for i in range(DATA_MUTANTS):
        name = rng.choice(sorted(seeds))
        path = tmp_path / f"mutant{i % 8}{Path(name).suffix}"
        path.write_bytes(_mutate(rng, seeds[name]))
        tracemalloc.start()
        start = time.monotonic()
        try:
            load_data(path, input_shape=(4, 4, 1))
        except DataError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:        # noqa: BLE001 - any other exception is the finding
            crashes.append(f"{name} mutant {i}: {exc!r}"[:200])
        slowest = max(slowest, time.monotonic() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert not crashes, crashes[:5]
    assert peak < 16 << 20, f"peak heap {peak:,} bytes"
    assert slowest < 2.0


def test_resume_record_with_a_number_too_large(model, tmp_path, capsys, no_build):
    import hashlib

    from tinyq.measure.validation import file_sha256

    data = tmp_path / "test.npz"
    np.savez(data, x=np.zeros((3, 4, 4, 1), np.float32), y=np.array([0, 1, 0]))
    record = tmp_path / "partial.json"
    record.write_text(json.dumps({
        "kind": "validate", "version": 1, "device_accuracy": 1.0,
        "model_id": hashlib.sha256(model.read_bytes()).hexdigest()[:12],
        "data_sha256": file_sha256(data)}).replace("}", ', "per_sample": [[0, 1e400, 0, 0, 0]]}'))
    assert_refused(run_cli([*validate_argv(model, tmp_path, data), "--resume", str(record)]),
                   capsys, "partial.json", "1e400 is too large")


def test_every_record_field_with_any_value_is_refused_or_rendered():
    """Each field of a full record set to null, a string, a list, an object, a bool, a
    negative, a huge or a tiny number: check_record refuses it in one line, or the
    report (alone and beside a good record) renders it."""
    import copy

    from tinyq.errors import UserInputError
    from tinyq.measure.report import RECORD_FIELDS, check_record, compare_markdown, markdown

    good = {
        "kind": "deploy", "model": "m.tflite", "board": "mps2-an386", "runtime": "native",
        "device": "qemu", "emulated": True,
        "latency": {"unit": "instructions", "median": 100, "min": 90, "max": 110, "p95": 108,
                    "runs": 5, "recorded": 3, "warmup": 1, "tick_hz": 25_000_000,
                    "counter": "systick", "core_hz": 25_000_000, "emulated": True,
                    "values": [90, 100, 110], "ticks": [1, 2, 3]},
        "ram": {"static": 10, "stack_peak": 20, "arena": 30, "total": 60, "available": 1000,
                "data": 1, "bss": 9, "stack_reserved": 100, "arena_reserved": 32,
                "arena_region": "ram"},
        "flash": {"code": 100, "model": 50, "total": 150, "available": 10_000}, "macs": 1000,
        "layers": [{"index": 0, "op": "CONV_2D", "share": 0.7, "macs": 700,
                    "instructions": 70}],
        "outputs_match": True, "max_lsb_diff": 0, "device_accuracy": 0.9,
        "host_accuracy": 0.9, "float_accuracy": 0.91, "samples": 10, "samples_requested": 10,
        "bit_exact": True, "bit_exact_count": 10, "per_sample": [[0, 1, 1, 1, 0]],
        "stages": [{"name": "build", "seconds": 1.0, "summary": "x"}], "wall_seconds": 3.0,
        "rows": [{"mode": "int8", "size_bytes": 100, "accuracy": 0.9, "top1_agreement": 1.0,
                  "max_abs_error": 0.1, "tflm_runs": True}],
    }
    values = [None, "x", -1, 0, -1e300, 1e300, 1e-300, [], {}, [1, "a"], True, 2**62]
    crashes = []
    for key in RECORD_FIELDS:
        *parents, last = key.replace("[]", "").split(".")
        for value in values:
            record = copy.deepcopy(good)
            holder = record
            for part in parents:
                holder = holder.get(part)
                holder = holder[0] if isinstance(holder, list) and holder else holder
            if not isinstance(holder, dict):
                continue
            holder[last] = [value] if key.endswith("[]") else value
            try:
                check_record(record, "r.json")
            except UserInputError as exc:
                assert "\n" not in str(exc)
                continue
            try:
                markdown(record)
                compare_markdown([record, good], ["a", "b"])
            except Exception as exc:        # noqa: BLE001 - any exception is the finding
                crashes.append(f"{key}={value!r}: {exc!r}"[:160])
    assert not crashes, crashes[:5]
