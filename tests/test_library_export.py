"""`tinyq export`: the model as a prefixed C library, built the ways its README says, with
outputs byte-identical to the tflite-micro interpreter."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools, shared_models_dir
from graphs import hybrid_fc
from test_native_codegen import small_model_bytes

from tinyq.board_profile import CORES
from tinyq.errors import DataError, UnsupportedError, UserInputError
from tinyq.fileio import read_marker
from tinyq.firmware.library_export import export
from tinyq.firmware.library_host import load
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model
from tinyq.subprocesses import run_process

#: seconds for one compile, cmake step or program run in these tests (a cmake configure
#: on the shared 2-core machine takes a few seconds; a hang must still fail the test)
STEP_TIMEOUT_S = 120
#: random inputs checked through the ctypes host build per model
HOST_INPUTS = 100
#: inputs checked through each compiled program (each is one line of text or one run)
PROGRAM_INPUTS = 8


def _run(argv, cwd=None, input=None) -> str:
    proc = run_process([str(a) for a in argv], cwd=cwd, input=input, capture_output=True,
                       text=True, timeout=STEP_TIMEOUT_S, guard=False)
    assert proc.returncode == 0, f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """hello_world_int8 (FULLY_CONNECTED) and a small CONV_2D/RESHAPE/FC graph."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    folder = tmp_path_factory.mktemp("models")
    conv = folder / "conv.tflite"
    conv.write_bytes(small_model_bytes())
    out = {"conv": conv}
    base = shared_models_dir()
    hello = None if base is None else base / "tflm-examples" / "hello_world_int8.tflite"
    if hello is not None and hello.exists():
        out["hello"] = hello
    return out


def _random(rng, model_path: Path, n: int) -> list[list[np.ndarray]]:
    model = read_model(model_path)
    out = []
    for _ in range(n):
        xs = []
        for t in model.input_tensors:
            info = np.iinfo(t.np_dtype)
            xs.append(rng.integers(info.min, info.max + 1, size=t.shape).astype(t.np_dtype))
        out.append(xs)
    return out


def _tflm(model_path: Path, xs) -> list[bytes]:
    return [np.asarray(y).tobytes() for y in TflmInterpreter(model_path.read_bytes()).invoke(xs)]


def _readme_block(folder: Path, lang: str, starts: str = "") -> str:
    text = (folder / "README.md").read_text()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if b.startswith(starts))


def _text_input(model_path: Path, x: np.ndarray) -> str:
    """Real values that quantize back to exactly ``x`` (what the README example reads)."""
    t = read_model(model_path).input_tensors[0]
    scale, zp = np.float32(t.quant.scale[0]), int(t.quant.zero_point[0])
    real = (x.astype(np.float32).reshape(-1) - np.float32(zp)) * scale
    return " ".join(f"{float(v):.9g}" for v in real.astype(np.float32)) + "\n"


def _check_example(app: Path, model_path: Path, seed: int) -> None:
    """The README's program, run on random inputs: raw outputs identical to tflite-micro."""
    for xs in _random(np.random.default_rng(seed), model_path, PROGRAM_INPUTS):
        out = _run([app], input=_text_input(model_path, xs[0]))
        raw = [int(line.split()[0]) for line in out.splitlines()]
        expected = np.frombuffer(_tflm(model_path, xs)[0], np.int8).tolist()
        assert raw == expected


@pytest.mark.parametrize("name", ["hello", "conv"])
def test_c_format_readme_example_matches_tflm(models, tmp_path, name):
    if name not in models:
        pytest.skip("hello_world_int8.tflite not found under ../shared/models/tflm-examples")
    lib = export(models[name], tmp_path / "lib", prefix="net", core="cortex-m4")
    folder = lib.path
    assert read_marker(folder) is not None                      # tinyq's folder
    assert sorted(p.name for p in folder.iterdir()) == [
        ".tinyq-folder.json", "README.md", "include", "net.mk", "src"]
    sources = "".join((folder / s).read_text() for s in lib.sources)
    assert "main(" not in sources and "malloc" not in sources and "tq_" not in sources
    # the README's 20-line program, built with the README's own command line
    app_c = _readme_block(folder, "c")
    assert len(app_c.splitlines()) <= 20
    (folder / "app.c").write_text(app_c)
    command = _readme_block(folder, "sh", "cc ").split()
    _run(["gcc", *command[1:]], cwd=folder)
    _check_example(folder / "app", models[name], seed=3)
    # and through the Makefile fragment, from another folder
    user = tmp_path / "user"
    user.mkdir()
    (user / "app.c").write_text(app_c)
    (user / "Makefile").write_text(
        f"NET_DIR := {folder}/\ninclude $(NET_DIR)net.mk\n"
        "app: app.c $(NET_SRCS)\n\tgcc $(NET_CFLAGS) $(NET_INCLUDES) $^ -o $@\n")
    _run(["make", "-s", "-C", user])
    _check_example(user / "app", models[name], seed=4)


def test_every_global_symbol_carries_the_prefix(models, tmp_path):
    lib = export(models["conv"], tmp_path / "lib", prefix="kws", core="cortex-m4")
    objs = []
    for src in lib.sources:
        obj = tmp_path / (Path(src).stem + ".o")
        _run(["gcc", "-std=c99", "-O2", "-c", lib.path / src, "-o", obj])
        objs.append(obj)
    nm = _run(["nm", "-g", "--defined-only", *objs])
    symbols = [line.split()[-1] for line in nm.splitlines() if len(line.split()) == 3]
    assert symbols and all(s.startswith("kws_") for s in symbols), symbols


def test_every_kernel_names_its_globals_tq_so_export_can_prefix_them(tmp_path):
    """export renames tq_/TQ_ names only: a kernel global named otherwise would clash when
    two exported models link together."""
    from tinyq.firmware.native.codegen import kernels_dir
    from tinyq.resources import templates_dir

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    sources = sorted(kernels_dir().glob("*.c"))
    _run(["gcc", "-std=c99", "-O2", "-I", kernels_dir(), "-I", templates_dir() / "common",
          "-c", *sources], cwd=tmp_path)
    nm = _run(["nm", "-g", "--defined-only", *sorted(tmp_path.glob("*.o"))])
    symbols = [line.split()[-1] for line in nm.splitlines() if len(line.split()) == 3]
    assert len(list(tmp_path.glob("*.o"))) == len(sources)
    assert symbols and [s for s in symbols if not s.startswith("tq_")] == []


def test_a_model_of_every_native_op_exports_unchanged(tmp_path):
    """Two random cases of every op the native runtime supports, in one model: the exported
    (renamed) library gives the native runtime's outputs byte for byte, and reports each
    I/O tensor's type and shape (bool and int64 too). tests/test_native_ops*.py check the
    runtime itself against tflite-micro."""
    from tinyq.firmware.native.host import HostModel
    from tinyq.firmware.native.opcases import CASES
    from tinyq.model.tflite_reader import read_model_bytes
    from tinyq.model.tflite_writer import GraphBuilder

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    rng = np.random.default_rng(0)
    g = GraphBuilder(description="every native op")
    cases = [CASES[op](g, rng) for op in sorted(CASES) for _ in range(2)]
    model_bytes = g.build([t for c in cases for t, _ in c.inputs],
                          [t for c in cases for t in c.outputs])
    data = [a for c in cases for _, a in c.inputs]
    (tmp_path / "all.tflite").write_bytes(model_bytes)
    model = read_model_bytes(model_bytes)
    lib = load(export(tmp_path / "all.tflite", tmp_path / "lib", prefix="all",
                      core="cortex-m4").path)
    assert [(tuple(t.shape), t.np_dtype) for t in model.output_tensors] == lib.output_specs
    ours = lib.run(data)
    theirs = HostModel(model).invoke(data)
    assert [a.tobytes() for a in ours] == [b.tobytes() for b in theirs]


def test_host_library_is_byte_identical_to_tflm(models):
    for name, path in models.items():
        with_tmp = path.parent / f"export-{name}"
        shutil.rmtree(with_tmp, ignore_errors=True)
        lib = load(export(path, with_tmp, prefix=name, core="cortex-m4").path)
        assert lib.arena_bytes > 0
        for k, xs in enumerate(_random(np.random.default_rng(11), path, HOST_INPUTS)):
            ours = [y.tobytes() for y in lib.run(xs)]
            assert ours == _tflm(path, xs), f"{name}: input {k} differs"


def test_float_helpers_round_half_away_from_zero_and_saturate(models, tmp_path):
    path = models["conv"]
    lib = load(export(path, tmp_path / "q", prefix="q", core="cortex-m4").path)
    t_in = read_model(path).input_tensors[0]
    t_out = read_model(path).output_tensors[0]
    scale, zp = np.float32(t_in.quant.scale[0]), t_in.quant.zero_point[0]
    rng = np.random.default_rng(2)
    n = int(np.prod(t_in.shape))
    # halfway points (k + 0.5) * scale, random reals and values far out of range
    halves = (rng.integers(-60, 60, n) + np.float32(0.5)) * scale
    for real in (halves, rng.normal(0, 4, n), rng.normal(0, 1e4, n)):
        real = real.astype(np.float32)
        r = real / scale
        half = np.where(r >= 0, np.float32(0.5), np.float32(-0.5)).astype(np.float32)
        expected = np.clip(np.trunc(r + half) + zp, -128, 127)
        assert lib.quantize_input(0, real).reshape(-1).tolist() == expected.astype(
            np.int8).tolist()
    y = lib.run([rng.integers(-128, 128, t_in.shape).astype(np.int8)])[0]
    oscale, ozp = np.float32(t_out.quant.scale[0]), t_out.quant.zero_point[0]
    expected = (y.astype(np.float32) - np.float32(ozp)) * oscale
    assert np.array_equal(lib.dequantize_output(0), expected.reshape(y.shape))
    with pytest.raises(DataError, match="returned -3"):       # Q_ERR_SIZE
        lib.quantize_input(0, np.zeros(n + 1, np.float32))


def test_layer_hook_sees_every_layer_begin_and_end(models, tmp_path):
    import ctypes

    path = models["conv"]
    lib = load(export(path, tmp_path / "h", prefix="h", core="cortex-m4").path)
    calls = []
    hook_type = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int)
    hook = hook_type(lambda layer, end: calls.append((layer, end)))
    lib._lib.h_set_layer_hook(hook)
    lib.run(_random(np.random.default_rng(1), path, 1)[0])
    n = len(read_model(path).operators)
    assert lib._lib.h_num_layers() == n
    assert calls == [(i, end) for i in range(n) for end in (0, 1)]
    lib._lib.h_set_layer_hook(None)
    lib.run(_random(np.random.default_rng(1), path, 1)[0])
    assert len(calls) == 2 * n
    assert lib._fn("reset")() == 0


TWO_MODELS_MAIN = """
#include <stdio.h>
#include <string.h>
#include "a.h"
#include "b.h"
#define MAX(x, y) ((x) > (y) ? (x) : (y))
uint8_t shared_arena[MAX(A_ARENA_BYTES, B_ARENA_BYTES)] __attribute__((aligned(16)));
int main(void)
{
    static uint8_t in_a[A_INPUT0_BYTES], in_b[B_INPUT0_BYTES];
    if (fread(in_a, 1, sizeof in_a, stdin) != sizeof in_a) return 2;
    if (fread(in_b, 1, sizeof in_b, stdin) != sizeof in_b) return 2;
    if (a_init() != A_OK || b_init() != B_OK) return 1;
    memcpy(a_input(0), in_a, sizeof in_a);
    if (a_invoke() != A_OK) return 1;
    fwrite(a_output(0), 1, a_output_bytes(0), stdout);
    memcpy(b_input(0), in_b, sizeof in_b);
    if (b_invoke() != B_OK) return 1;
    fwrite(b_output(0), 1, b_output_bytes(0), stdout);
    return a_reset() | b_reset();
}
"""


def test_two_prefixed_models_link_into_one_program_sharing_an_arena(models, tmp_path):
    """Same kernels in both libraries, one program: only prefixes keep them apart; both
    use the caller's arena (-D<P>_ARENA_EXTERNAL), one after the other."""
    a_model = models.get("hello", models["conv"])
    b_model = models["conv"]
    a = export(a_model, tmp_path / "a", prefix="a", core="cortex-m4")
    b = export(b_model, tmp_path / "b", prefix="b", core="cortex-m4", fmt="cmake")
    (tmp_path / "main.c").write_text(TWO_MODELS_MAIN)
    _run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-DA_ARENA_EXTERNAL=shared_arena",
          "-DB_ARENA_EXTERNAL=shared_arena", "-I", a.path / "include", "-I", b.path / "include",
          tmp_path / "main.c", *(a.path / s for s in a.sources),
          *(b.path / s for s in b.sources), "-o", tmp_path / "two"])
    for xa, xb in zip(_random(np.random.default_rng(5), a_model, PROGRAM_INPUTS),
                      _random(np.random.default_rng(6), b_model, PROGRAM_INPUTS), strict=True):
        proc = run_process([str(tmp_path / "two")], input=xa[0].tobytes() + xb[0].tobytes(),
                           capture_output=True, timeout=STEP_TIMEOUT_S, guard=False)
        assert proc.returncode == 0
        assert proc.stdout == _tflm(a_model, xa)[0] + _tflm(b_model, xb)[0]


MISALIGNED_MAIN = """
#include "m.h"
uint8_t raw[M_ARENA_BYTES + 1] __attribute__((aligned(16)));
int main(void) { return m_init() == M_ERR_ARENA ? 0 : 1; }
"""


def test_misaligned_caller_arena_is_an_error_code(models, tmp_path):
    lib = export(models["conv"], tmp_path / "m", prefix="m", core="cortex-m4")
    (tmp_path / "main.c").write_text(MISALIGNED_MAIN)
    # the arena symbol resolves to raw + 1: a misaligned buffer
    _run(["gcc", "-std=c99", "-DM_ARENA_EXTERNAL=arena1", "-Wl,--defsym=arena1=raw+1",
          "-I", lib.path / "include", tmp_path / "main.c",
          *(lib.path / s for s in lib.sources), "-o", tmp_path / "mis"])
    _run([tmp_path / "mis"])


def test_cmake_format_builds_for_host_and_arm(models, tmp_path):
    require_tools("cmake", "make")
    path = models.get("hello", models["conv"])
    lib = export(path, tmp_path / "lib", prefix="net", core="cortex-m4", fmt="cmake")
    assert (lib.path / "CMakeLists.txt").is_file() and not (lib.path / "net.mk").exists()
    # a user project pulling the library in with add_subdirectory, as the README says
    user = tmp_path / "user"
    user.mkdir()
    (user / "app.c").write_text(_readme_block(lib.path, "c"))
    (user / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(user C)\n"
        f"add_subdirectory({lib.path} net)\nadd_executable(app app.c)\n"
        "target_link_libraries(app PRIVATE tinyq::net)\n")
    _run(["cmake", "-S", user, "-B", user / "build"])
    _run(["cmake", "--build", user / "build"])
    _check_example(user / "build" / "app", path, seed=8)
    # installed, then found with find_package by another project
    _run(["cmake", "--install", user / "build" / "net", "--prefix", tmp_path / "prefix"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "app.c").write_text(_readme_block(lib.path, "c"))
    (other / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(other C)\n"
        "find_package(net CONFIG REQUIRED)\nadd_executable(app app.c)\n"
        "target_link_libraries(app PRIVATE tinyq::net)\n")
    _run(["cmake", "-S", other, "-B", other / "build", f"-DCMAKE_PREFIX_PATH={tmp_path}/prefix"])
    _run(["cmake", "--build", other / "build"])
    _check_example(other / "build" / "app", path, seed=10)
    # stand-alone with the generated toolchain file: an ARM static library
    require_tools("arm-none-eabi-gcc")
    for step in _readme_block(lib.path, "sh", "cmake ").splitlines()[1].split(" && "):
        _run(step.split(), cwd=lib.path)
    archive = lib.path / "build-arm" / "libnet.a"
    headers = _run(["arm-none-eabi-objdump", "-f", archive])
    assert "elf32-littlearm" in headers
    attrs = _run(["arm-none-eabi-readelf", "-A", archive])
    assert "Cortex-M4" in attrs or "v7E-M" in attrs


#: what an Arduino sketch gets from Arduino.h, enough to compile the example sketch as the
#: IDE does (C++, the sketch's functions as written) without an Arduino core installed
ARDUINO_STUB = """
#include <stdint.h>
struct SerialStub {
    void begin(unsigned long) {}
    explicit operator bool() const { return true; }
    void print(float, int) {}
    void print(char) {}
    void print(const char *) {}
    void println(const char *) {}
    void println(unsigned long) {}
};
extern SerialStub Serial;
unsigned long micros(void);
void delay(unsigned long);
"""
#: the compile flags of Arduino's mbed core for the Nano 33 BLE (Sense)
NANO33_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16",
                "-Os", "-ffunction-sections", "-fdata-sections")


def test_arduino_layout_compiles_with_the_nano33_flags_and_matches_tflm(models, tmp_path):
    path = models.get("hello", models["conv"])
    lib = export(path, tmp_path / "net", prefix="net", board="arduino-nano-33-ble-sense",
                 fmt="arduino")
    props = (lib.path / "library.properties").read_text()
    assert "name=net\n" in props and "includes=net.h" in props
    assert lib.header == "src/net.h" and not (lib.path / "include").exists()
    sketch = lib.path / "examples" / "net_demo" / "net_demo.ino"
    assert sketch.is_file()
    host = load(lib.path)                   # the Arduino layout on the host, too
    for xs in _random(np.random.default_rng(9), path, PROGRAM_INPUTS):
        assert [y.tobytes() for y in host.run(xs)] == _tflm(path, xs)
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-g++")
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    for src in lib.sources:
        _run(["arm-none-eabi-gcc", *NANO33_FLAGS, "-std=gnu11", "-Wall", "-Werror", "-c",
              lib.path / src, "-o", tmp_path / (Path(src).stem + ".o")])
    _run(["arm-none-eabi-g++", *NANO33_FLAGS, "-std=gnu++17", "-Wall", "-Werror", "-x", "c++",
          "-include", tmp_path / "Arduino.h", "-I", lib.path / "src", "-c", sketch,
          "-o", tmp_path / "sketch.o"])
    syms = _run(["arm-none-eabi-nm", tmp_path / "sketch.o"])
    assert " U net_invoke" in syms                       # C linkage from C++


def test_readme_flags_compile_the_library_for_every_core(models, tmp_path):
    require_tools("arm-none-eabi-gcc")
    lib = export(models["conv"], tmp_path / "lib", prefix="net", core="cortex-m4")
    table = re.findall(r"^\| (cortex-m\w+) \| `([^`]+)` \|", (lib.path / "README.md").read_text(),
                       flags=re.M)
    assert [core for core, _ in table] == list(CORES)
    for core, flags in table:
        (tmp_path / core).mkdir()
        _run(["arm-none-eabi-gcc", *flags.split(), "-std=c99", "-Os", "-Wall", "-Werror",
              "-I", lib.path / "include", "-c", *(lib.path / s for s in lib.sources)],
             cwd=tmp_path / core)
        assert len(list((tmp_path / core).glob("*.o"))) == len(lib.sources)


def test_bad_prefix_target_and_foreign_folder_are_refused(models, tmp_path):
    path = models["conv"]
    with pytest.raises(UserInputError, match="invalid prefix"):
        export(path, tmp_path / "x", prefix="Kws-1", core="cortex-m4")
    with pytest.raises(UserInputError, match="tinyq's own"):
        export(path, tmp_path / "x", prefix="tq", core="cortex-m4")
    hybrid = tmp_path / "hybrid.tflite"
    hybrid.write_bytes(hybrid_fc())                 # float activations: not supported
    with pytest.raises(UnsupportedError):
        export(hybrid, tmp_path / "x", prefix="kws", core="cortex-m4")
    with pytest.raises(UserInputError, match="exactly one"):
        export(path, tmp_path / "x", prefix="kws", core="cortex-m4", board="mps2-an386")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserInputError, match="refusing"):
        export(path, mine, prefix="kws", core="cortex-m4", force=True)
    assert (mine / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "x").exists()


def test_cli_export_and_one_line_error(models, tmp_path, capsys):
    from tinyq.cli import main

    out = tmp_path / "lib"
    assert main(["export", str(models["conv"]), "--board", "mps2-an386", "--prefix", "kws",
                 "--format", "cmake", "-o", str(out)]) == 0
    assert "-mcpu=cortex-m4" in (out / "cmake" / "arm-none-eabi.cmake").read_text()
    assert main(["export", str(models["conv"]), "--core", "cortex-m4", "--prefix", "kws",
                 "-o", str(out)]) == 1                            # exists, no --force
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already exists" in errors[0] and "--force" in errors[0]
