"""tinyq.firmware.compiling: toolchain errors, linker overflow -> FitError, sizes, model cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tools

from tinyq import boards
from tinyq.cli import main
from tinyq.errors import BuildError, FitError, ToolNotFoundError
from tinyq.firmware.codegen import (
    GenerateOptions,
    ModelInfo,
    RuntimeSources,
    render_project,
    write_project,
)
from tinyq.firmware.compiling import BUILDS_FOLDER, BuildOptions, build, diagnose, read_elf

FIXTURE_RUNTIME = Path(__file__).parent / "fixtures" / "test_runtime.c"
NO_TOOLCHAIN = BuildOptions(cross="/nonexistent/arm-none-eabi-")
RECORD = {"board": {"name": "microbit", "flash": {"name": "flash", "size": 262144},
                    "ram": {"name": "ram", "size": 16384}, "stack_bytes": 2048,
                    "extra_ram": [{"name": "psram", "size": 1024}]},
          "model": {"name": "kws.tflite"}}


def fixture_project(tmp_path: Path, board_name: str, input_bytes: int = 16,
                    runtime_text: str | None = None) -> Path:
    board = boards.load(board_name)
    text = runtime_text if runtime_text is not None else FIXTURE_RUNTIME.read_text()
    files = render_project(
        board, RuntimeSources("test", {"test_runtime.c": text}, arena_bytes=2 * input_bytes),
        ModelInfo("test", "7e5700000001" + "0" * 52, input_bytes=input_bytes, num_layers=2),
        GenerateOptions(semihosting=True))
    return write_project(files, tmp_path / board_name, force=True)


def test_missing_compiler_says_how_to_install(tmp_path):
    project = fixture_project(tmp_path, "mps2-an386")
    with pytest.raises(ToolNotFoundError) as info:
        build(project, build_options=NO_TOOLCHAIN)
    assert str(info.value) == (
        "/nonexistent/arm-none-eabi-gcc not found — install it: sudo apt-get install "
        "gcc-arm-none-eabi libnewlib-arm-none-eabi")


def test_missing_compiler_cli_exit_code(tmp_path, monkeypatch, capsys):
    project = fixture_project(tmp_path, "mps2-an386")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["build", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("error: arm-none-eabi-gcc not found — install it: sudo apt-get "
                           "install gcc-arm-none-eabi libnewlib-arm-none-eabi")


def test_diagnose_overflow_is_a_fit_error(tmp_path):
    out = ("ld: build/app.elf section `.bss' will not fit in region `RAM'\n"
           "ld: region `RAM' overflowed by 5120 bytes\ncollect2: error: ld returned 1\n")
    err = diagnose(out, RECORD, tmp_path / "build.log")
    assert isinstance(err, FitError) and err.exit_code == 3
    assert err.bytes_over == 5120
    assert "kws.tflite needs 5,120 bytes more RAM than microbit has (16,384 bytes, 2,048 of " \
           "them stack)" in str(err)
    flash = diagnose("region `FLASH' overflowed by 12 bytes", RECORD, tmp_path / "l")
    assert "12 bytes more flash than microbit has (262,144 bytes)" in str(flash)
    extra = diagnose("region `PSRAM' overflowed by 7 bytes", RECORD, tmp_path / "l")
    assert "7 bytes more psram RAM" in str(extra)


def test_overflow_hint_names_boards_with_room_computed_from_the_linker(tmp_path):
    out = "ld: region `RAM' overflowed by 5120 bytes\n"
    err = diagnose(out, RECORD, tmp_path / "l")
    named = err.hint.split("use a board with room for it (")[1].split(")")[0].split(", ")
    assert named and "microbit" not in named
    static = 16384 + 5120 - 2048               # what the linker could not place, stack aside
    for name in named:
        b = boards.load(name)
        assert b.flash.size >= 262144 and b.ram.size - b.stack_bytes >= static, name
    assert named[0] == "lm3s6965evb"            # emulated like microbit, the smallest with room
    # Every bundled board too small: no board to name.
    huge = diagnose("region `FLASH' overflowed by 999999999 bytes", RECORD, tmp_path / "l")
    assert huge.hint.startswith("no bundled board has room for it: use a smaller model")
    # A board-specific bank overflowed: nothing to compare other boards with.
    extra = diagnose("region `PSRAM' overflowed by 7 bytes", RECORD, tmp_path / "l")
    assert extra.hint == "choose a bigger board or a smaller model (or lower stack_bytes)"


def test_tflm_overflow_suggests_native_only_when_native_fits(tmp_path):
    import numpy as np

    from tinyq.firmware.compiling import _native_instead
    from tinyq.model.tflite_writer import GraphBuilder

    g = GraphBuilder()
    x = g.add_tensor((1, 16), "int8", scale=0.1, zero_point=0)
    w = g.add_constant(np.ones((4, 16), np.int8), scale=0.01)
    b = g.add_constant(np.zeros(4, np.int32), "int32", scale=0.001)
    y = g.add_tensor((1, 4), "int8", scale=0.1, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    int8 = tmp_path / "int8.tflite"
    int8.write_bytes(g.build())
    hint = _native_instead(int8, boards.load("microbit"))
    assert hint is not None and hint.startswith("use --runtime native, which fits microbit")
    g = GraphBuilder()
    x = g.add_tensor((1, 16), "float32")
    y = g.add_tensor((1, 16), "float32")
    g.add_op("RELU", [x], [y])
    float32 = tmp_path / "float.tflite"
    float32.write_bytes(g.build())
    assert _native_instead(float32, boards.load("microbit")) is None    # native cannot run it


def test_diagnose_compile_error_quotes_first_error(tmp_path):
    out = ("gcc -c model.c\nmodel.c:3:1: error: unknown type name 'foo'\n"
           "model.c:9:1: error: second\nmake: *** [Makefile:40] Error 1\n")
    err = diagnose(out, RECORD, tmp_path / "build.log")
    assert isinstance(err, BuildError)
    assert str(err).startswith("firmware build failed: model.c:3:1: error: unknown type name")
    assert "build.log" in str(err)
    missing = diagnose("arm-none-eabi-gcc: fatal error: cannot read spec file 'nano.specs'",
                       RECORD, tmp_path / "l")
    assert isinstance(missing, ToolNotFoundError) and "libnewlib-arm-none-eabi" in str(missing)


@pytest.mark.qemu
def test_build_reports_sizes_that_match_arm_size(tmp_path):
    require_tools("arm-none-eabi-gcc")
    fw = build(fixture_project(tmp_path, "mps2-an386"))
    assert fw.elf.is_file() and fw.board == "mps2-an386" and not fw.cached
    sizes = {}
    for line in subprocess.run(["arm-none-eabi-size", "-A", str(fw.elf)], capture_output=True,
                               text=True, check=True).stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3:
            sizes[parts[0]] = int(parts[1])
    assert fw.flash_bytes == sum(sizes.get(s, 0) for s in
                                 (".vectors", ".text", ".rodata", ".ARM.exidx", ".data"))
    assert fw.static_ram_bytes == sizes[".data"] + sizes[".bss"]
    assert fw.arena_bytes == 32 and fw.stack_bytes == 16384
    assert fw.flash_available == 4 * 1024 * 1024
    _, symbols = read_elf(fw.elf)
    assert symbols["__stack_top__"] == 0x20400000


@pytest.mark.qemu
def test_ram_overflow_on_microbit_is_a_fit_error(tmp_path):
    require_tools("arm-none-eabi-gcc")
    project = fixture_project(tmp_path, "microbit", input_bytes=20000)   # 16 KB RAM board
    with pytest.raises(FitError, match=r"needs [\d,]+ bytes more RAM than microbit has"):
        build(project)


@pytest.mark.qemu
def test_compile_error_is_a_build_error(tmp_path):
    require_tools("arm-none-eabi-gcc")
    project = fixture_project(tmp_path, "mps2-an386", runtime_text="int tq_init(void) { oops }\n")
    with pytest.raises(BuildError, match=r"test_runtime\.c:1:\d+: error: 'oops' undeclared"):
        build(project)
    assert (project / "build" / "build.log").is_file()


@pytest.mark.qemu
def test_model_build_is_cached(tmp_path, shared_models):
    require_tools("arm-none-eabi-gcc")
    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not model.exists():
        pytest.skip("hello_world_int8.tflite missing from ../shared/models/tflm-examples")
    opts = BuildOptions(cache_dir=tmp_path / "cache")
    first = build(model, board="microbit", build_options=opts)
    again = build(model, board="microbit", build_options=opts)
    assert not first.cached and again.cached and again.elf == first.elf
    assert 0 < first.model_bytes < first.flash_bytes
    other = build(model, board="microbit", options=GenerateOptions(optimize="Os"),
                  build_options=opts)
    assert other.elf != first.elf and not other.cached
    shutil.rmtree(tmp_path / "cache")


@pytest.mark.qemu
def test_a_cached_build_whose_elf_changed_is_built_again(tmp_path, shared_models):
    """An entry is trusted only if its ELF matches the stamp written when it was built."""
    from tinyq.firmware.compiling import is_built

    require_tools("arm-none-eabi-gcc")
    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    opts = BuildOptions(cache_dir=tmp_path / "cache")
    first = build(model, board="mps2-an386", build_options=opts)
    assert is_built(first.project)
    size = first.elf.stat().st_size
    with open(first.elf, "r+b") as elf:                 # e.g. a disk that filled up
        elf.truncate(size // 2)
    assert not is_built(first.project)
    again = build(model, board="mps2-an386", build_options=opts)
    assert not again.cached and again.project == first.project and is_built(again.project)
    assert again.elf.stat().st_size == size


def test_a_failed_cache_build_keeps_its_log_and_no_entry(tmp_path, shared_models, monkeypatch):
    import tinyq.firmware.compiling

    require_tools("arm-none-eabi-gcc", "make")
    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"

    def failing_make(project, options, progress):
        (project / "build").mkdir()
        (project / "build" / "build.log").write_text("startup.c:1: error: boom\n")
        raise diagnose("startup.c:1: error: boom", {"board": {"name": "b"}},
                       project / "build" / "build.log")

    monkeypatch.setattr(tinyq.firmware.compiling, "run_make", failing_make)
    with pytest.raises(BuildError, match=r"error: boom — full log: .*/builds-v2/mps2-an386-\w+"
                       r"\.log$") as info:
        build(model, board="mps2-an386", build_options=BuildOptions(cache_dir=tmp_path))
    log = Path(info.value.log)
    assert log.read_text() == "startup.c:1: error: boom\n"
    assert sorted(p.name for p in (tmp_path / BUILDS_FOLDER).iterdir()) == sorted(
        [log.name, log.name[:-len(".log")] + ".lock"])


def test_cli_existing_json_refused_before_compiling(tmp_path, monkeypatch, capsys):
    import tinyq.firmware.compiling

    project = fixture_project(tmp_path, "mps2-an386")
    existing = tmp_path / "sizes.json"
    existing.write_text("keep")

    def no_build(*_a, **_k):
        raise AssertionError("must not compile")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_build)
    assert main(["build", str(project), "--json", str(existing)]) == 1
    assert "sizes.json already exists — pass --force" in capsys.readouterr().err
    assert existing.read_text() == "keep"


def test_cli_cmsis_nn_kernels_need_the_tflm_runtime(tmp_path, capsys):
    project = fixture_project(tmp_path, "mps2-an386")
    assert main(["build", str(project), "--kernels", "cmsis_nn"]) == 2
    assert "--kernels cmsis_nn applies to --runtime tflm" in capsys.readouterr().err
