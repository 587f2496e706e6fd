"""The cached TFLM library: key logic and reuse, without TFLM code.

A fake `make` records its calls; one test (qemu marker: needs arm-none-eabi-gcc)
runs the real `make tflm-lib` of a generated project over a fake TFLM tree of
empty files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import require_tools
from tflm_helpers import make_fake_tflm, tiny_model_bytes

from tinyq import boards
from tinyq.errors import BuildError, UserInputError
from tinyq.firmware.codegen import GenerateOptions, generate, load_project
from tinyq.firmware.tflm import library, source
from tinyq.firmware.tflm.codegen import TflmOptions
from tinyq.firmware.tflm.library import (
    KEY_FILE,
    LIBRARY_NAME,
    ensure_library,
    library_folder,
    library_key,
    project_arch,
)

GCC = "arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205"


@pytest.fixture()
def tree(tmp_path) -> source.TflmTree:
    return source.check_tree(make_fake_tflm(tmp_path / "tflite-micro"), "--tflm-dir")


def _key(board: str, tree, kernels="reference", version="1.0", compiler=GCC):
    return library_key(boards.load(board).cflags, kernels, tree, compiler, version)


def test_boards_with_the_same_core_and_float_abi_share_a_library(tree, tmp_path):
    an386 = _key("mps2-an386", tree)            # Cortex-M4F
    netduino = _key("netduinoplus2", tree)      # Cortex-M4F too
    assert an386 == netduino
    assert library_folder(an386, tmp_path) == library_folder(netduino, tmp_path)
    assert library_folder(an386, tmp_path).name.startswith("cortex-m4-hard-reference-")


@pytest.mark.parametrize("change", [
    {"board": "microbit"},                      # another core, soft float
    {"board": "mps2-an385"},                    # Cortex-M3
    {"kernels": "cmsis_nn"},
    {"version": "1.1"},
    {"compiler": "arm-none-eabi-gcc 13.2"},
])
def test_core_float_abi_kernels_version_and_compiler_change_the_key(tree, tmp_path, change):
    base = {"board": "mps2-an386", "kernels": "reference", "version": "1.0", "compiler": GCC}
    a = _key(base["board"], tree, base["kernels"], base["version"], base["compiler"])
    base.update(change)
    b = _key(base["board"], tree, base["kernels"], base["version"], base["compiler"])
    assert a.digest() != b.digest()
    assert library_folder(a, tmp_path) != library_folder(b, tmp_path)


def test_another_tflm_tree_is_another_library(tree, tmp_path):
    other = source.check_tree(make_fake_tflm(tmp_path / "other"), "--tflm-dir")
    assert _key("mps2-an386", tree).digest() != _key("mps2-an386", other).digest()
    commit = dataclasses.replace(tree, commit="abc")
    assert _key("mps2-an386", tree).digest() != _key("mps2-an386", commit).digest()


def test_unknown_kernels_are_refused(tree):
    with pytest.raises(UserInputError, match="unknown TFLM kernels"):
        _key("mps2-an386", tree, kernels="xtensa")


def test_project_arch_comes_from_the_project_record():
    record = {"board": {"core": "cortex-m0", "fpu": "none"}, "runtime_context": {}}
    assert project_arch(record) == ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft")
    an386 = boards.load("mps2-an386")
    record = {"board": {"core": an386.core, "fpu": an386.fpu},
              "runtime_context": {"arch_flags": list(an386.cflags)}}
    assert project_arch(record) == an386.cflags


@pytest.fixture()
def project(tmp_path) -> Path:
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_model_bytes())
    return generate(model, "mps2-an386", runtime="tflm", out_dir=tmp_path / "project",
                    options=GenerateOptions(runtime_options=TflmOptions(arena_bytes=4096))).path


def _fake_make(folder: Path, seconds: float = 0) -> tuple[str, Path]:
    """A `make` that takes ``seconds``, writes $TFLM_BUILD/libtflm.a and logs its arguments."""
    calls = folder / "make-calls.txt"
    script = folder / "fake-make"
    script.write_text(f"""#!/bin/sh
[ "$1" = -n ] && exit 0      # the dry run that counts files for the progress bar
echo "$@" >> {calls}
for arg in "$@"; do
  case "$arg" in TFLM_BUILD=*) dir="${{arg#TFLM_BUILD=}}";; esac
done
sleep {seconds}
mkdir -p "$dir" && echo lib > "$dir/{LIBRARY_NAME}"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), calls


@pytest.fixture()
def fake_make(tmp_path) -> tuple[str, Path]:
    return _fake_make(tmp_path)


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_library_is_built_once_and_reused(project, tree, tmp_path, fake_make, monkeypatch):
    make, calls = fake_make
    monkeypatch.setattr(library, "compiler_version", lambda cross: GCC)
    record = load_project(project)
    cache = tmp_path / "cache"
    first = ensure_library(project, record, tree, make=make, cache=cache)
    assert not first.reused and first.path.is_file()
    assert len(_calls(calls)) == 1
    argv = _calls(calls)[0].split()
    assert "tflm-lib" in argv and f"TFLM_DIR={tree.path}" in argv
    # built in a private folder beside the entry, then published whole under its name
    private = Path(next(a for a in argv if a.startswith("TFLM_BUILD=")).split("=", 1)[1])
    assert private.parent == first.folder.parent and private.name.startswith(".tmp-")
    assert not private.exists() and "OPTIMIZED_KERNEL_DIR=" in argv
    assert json.loads((first.folder / KEY_FILE).read_text())["kernels"] == "reference"

    again = ensure_library(project, record, tree, make=make, cache=cache)
    assert again.reused and again.folder == first.folder
    assert len(_calls(calls)) == 1                      # no second make

    nn = ensure_library(project, record, tree, kernels="cmsis_nn", make=make, cache=cache)
    assert not nn.reused and nn.folder != first.folder
    assert "OPTIMIZED_KERNEL_DIR=cmsis_nn" in _calls(calls)[1].split()
    assert nn.make_variables() == (f"TFLM_DIR={tree.path}", f"TFLM_BUILD={nn.folder}",
                                   "OPTIMIZED_KERNEL_DIR=cmsis_nn")


def test_an_unfinished_library_is_built_again(project, tree, tmp_path, fake_make, monkeypatch):
    make, calls = fake_make
    monkeypatch.setattr(library, "compiler_version", lambda cross: GCC)
    record = load_project(project)
    lib = ensure_library(project, record, tree, make=make, cache=tmp_path / "c")
    (lib.folder / KEY_FILE).unlink()                    # e.g. interrupted before the key
    assert not ensure_library(project, record, tree, make=make, cache=tmp_path / "c").reused
    assert len(_calls(calls)) == 2


def test_parallel_builds_of_one_library_compile_it_once(project, tree, tmp_path, monkeypatch):
    """A second build waits for the first one's lock and reuses its library."""
    import threading

    monkeypatch.setattr(library, "compiler_version", lambda cross: GCC)
    make, calls = _fake_make(tmp_path, seconds=1)
    record = load_project(project)
    results = []

    def one() -> None:
        results.append(ensure_library(project, record, tree, make=make, cache=tmp_path / "c"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_calls(calls)) == 1
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].folder == results[1].folder and results[0].path.is_file()


def test_library_build_progress_counts_compiled_files(tmp_path):
    """make -n gives the total; each compile line make echoes advances the bar."""
    script = tmp_path / "make"
    script.write_text("""#!/bin/sh
for f in a b c; do echo "arm-none-eabi-g++ -Os -c src/$f.cc -o build/$f.cc.o"; done
echo "arm-none-eabi-ar qcs libtflm.a build/a.cc.o"
[ "$1" = -n ] || echo "make: warning: something"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    argv = [str(script), "tflm-lib"]
    assert library.count_compiles(argv) == 3
    events: list = []
    code, output = library.run_counting(argv, 3, events.append)
    assert code == 0 and "make: warning: something" in output
    assert [(e.done, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    # without a total (the dry run failed): a line now and then, not one per file
    events.clear()
    library.run_counting(argv, None, events.append)
    assert events == []          # 3 files: fewer than UNCOUNTED_PROGRESS_EVERY


def test_a_hung_library_build_is_stopped_at_its_timeout(tmp_path):
    script = tmp_path / "make"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(subprocess.TimeoutExpired):
        library.run_counting([str(script)], None, lambda e: None, timeout=0.5)


def test_a_failing_library_build_is_one_build_error(project, tree, tmp_path, monkeypatch):
    monkeypatch.setattr(library, "compiler_version", lambda cross: GCC)
    script = tmp_path / "failing-make"
    script.write_text("#!/bin/sh\necho 'kernels/conv.cc:1:1: error: boom'\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(BuildError, match="building TFLM failed: kernels/conv.cc:1:1: error"):
        ensure_library(project, load_project(project), tree, make=str(script),
                       cache=tmp_path / "c")


def test_a_tree_without_its_downloads_is_refused_before_building(project, tmp_path):
    bare = source.check_tree(make_fake_tflm(tmp_path / "bare", files=(source.MARKER,)), "x")
    with pytest.raises(UserInputError, match="has no flatbuffers"):
        ensure_library(project, load_project(project), bare, make="false", cache=tmp_path)


@pytest.mark.qemu
def test_real_make_builds_the_library_from_a_tflm_layout(project, tree, tmp_path):
    if shutil.which("arm-none-eabi-g++") is None or shutil.which("make") is None:
        pytest.skip("arm-none-eabi-g++ or make not installed")
    record = load_project(project)
    events: list = []
    lib = ensure_library(project, record, tree, cache=tmp_path / "cache",
                         progress=events.append)
    # the start says how long it takes; the bar counts every compiled file up to the total
    assert library.LIBRARY_BUILD_EXPECTED in events[0].message
    bar = [(e.done, e.total) for e in events if e.total]
    n_objects = len(list(lib.folder.rglob("*.o")))
    assert bar == [(i, n_objects) for i in range(1, n_objects + 1)]
    members = subprocess.run(["arm-none-eabi-ar", "t", str(lib.path)], capture_output=True,
                             text=True, check=True).stdout.split()
    # both common.cc files are kept although they share a name; no tests, no debug_log
    assert members.count("common.cc.o") == 2
    assert "micro_interpreter.cc.o" in members and "conv.cc.o" in members
    assert not any("test" in m or "debug_log" in m for m in members)
    objects = sorted(p.name for p in lib.folder.rglob("*.o"))
    assert ensure_library(project, record, tree, cache=tmp_path / "cache").reused
    assert sorted(p.name for p in lib.folder.rglob("*.o")) == objects


def _make_in(project: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "-C", str(project), *args], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _symbols(lib: Path) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.count(" ") >= 2}


@pytest.mark.qemu
def test_plain_make_switches_kernels_back_and_forth(project, tmp_path):
    """reference -> cmsis_nn -> reference with the project's own Makefile: each choice
    links its own library, and the project objects are recompiled at every switch."""
    require_tools("make", "arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar")
    tflm = make_fake_tflm(tmp_path / "tflite-micro")
    micro = tflm / "tensorflow/lite/micro/kernels"
    (micro / "conv.cc").write_text("int tq_reference_conv = 1;\n")
    (micro / "cmsis_nn" / "conv.cc").write_text("int tq_cmsis_nn_conv = 1;\n")
    tflm_dir = f"TFLM_DIR={tflm}"
    obj = "build/tflm/model_data.o"
    stamp = project / "build" / "tflm" / "flags.stamp"
    libs = {"reference": project / "build" / "tflm-lib-reference" / LIBRARY_NAME,
            "cmsis_nn": project / "build" / "tflm-lib-cmsis_nn" / LIBRARY_NAME}

    def build(kernels: str) -> subprocess.CompletedProcess:
        extra = ("OPTIMIZED_KERNEL_DIR=cmsis_nn",) if kernels == "cmsis_nn" else ()
        _make_in(project, tflm_dir, *extra, "tflm-lib")
        return _make_in(project, tflm_dir, *extra, obj)

    def compiled_object(proc: subprocess.CompletedProcess) -> str:
        return next(line for line in proc.stdout.splitlines()
                    if line.endswith(f"-c tflm/model_data.cc -o {obj}"))

    first = build("reference")
    assert "-DCMSIS_NN" not in compiled_object(first)
    assert "-DCMSIS_NN" not in stamp.read_text()
    ref_members = subprocess.run(["arm-none-eabi-ar", "t", str(libs["reference"])],
                                 capture_output=True, text=True, check=True).stdout.split()
    assert "arm_convolve_s8.c.o" not in ref_members
    assert "tq_reference_conv" in _symbols(libs["reference"])
    assert "tq_cmsis_nn_conv" not in _symbols(libs["reference"])

    second = build("cmsis_nn")
    assert "-DCMSIS_NN" in compiled_object(second)            # rebuilt with the new flags
    nn_members = subprocess.run(["arm-none-eabi-ar", "t", str(libs["cmsis_nn"])],
                                capture_output=True, text=True, check=True).stdout.split()
    assert "arm_convolve_s8.c.o" in nn_members
    assert "tq_cmsis_nn_conv" in _symbols(libs["cmsis_nn"])
    assert "tq_reference_conv" not in _symbols(libs["cmsis_nn"])

    ref_lib_bytes = libs["reference"].read_bytes()
    third = build("reference")
    assert "-DCMSIS_NN" not in compiled_object(third)          # rebuilt again, without it
    assert "-DCMSIS_NN" not in stamp.read_text()
    assert libs["reference"].read_bytes() == ref_lib_bytes     # the reference library as built
    assert "tq_cmsis_nn_conv" not in _symbols(libs["reference"])
    link = _make_in(project, tflm_dir, "-n", "build/app.elf").stdout
    assert "tflm-lib-reference/libtflm.a" in link and "tflm-lib-cmsis_nn" not in link

    # nothing changed: the stamp keeps its time and the object is not compiled again
    stamp_mtime = stamp.stat().st_mtime_ns
    again = _make_in(project, tflm_dir, obj)
    assert not any(" -c " in line for line in again.stdout.splitlines())
    assert stamp.stat().st_mtime_ns == stamp_mtime
