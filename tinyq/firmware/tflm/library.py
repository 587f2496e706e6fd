"""Compile TFLM once per (core, float ABI, kernels, tinyq version) and reuse it.

A TFLM project's Makefile (``tflm/tflm.mk``) can build the TFLM static library
itself, into ``TFLM_BUILD``. ``tinyq build`` points ``TFLM_BUILD`` at a folder of
the user cache named by :class:`LibraryKey`, builds the library once (``make
tflm-lib`` in a private folder, published whole under a file lock: see
:mod:`tinyq.cache`), and every later project with the same key links the same
``libtflm.a``. The key holds what changes the library's code: the
compiler flags selecting core and float ABI, the kernel set, the tinyq version
(its make fragment decides sources and flags), the TFLM tree and its commit, and
the compiler's version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinyq.cache import cached_folder, keep_log
from tinyq.errors import BuildError, ToolNotFoundError, UserInputError
from tinyq.firmware.tflm import source
from tinyq.firmware.tflm.codegen import KERNELS
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import run_process, spawn, stop

log = logging.getLogger(__name__)

#: Seconds the one-time TFLM library build may take: ~200 files, a few minutes on
#: two cores; ten times that before tinyq calls it hung.
LIBRARY_BUILD_TIMEOUT_S = 1800
#: What users are told the one-time library build takes: measured 4-12 min on two cores
#: (reference kernels ~4, CMSIS-NN ~12), shown where it starts.
LIBRARY_BUILD_EXPECTED = "4-12 min on 2 cores"
#: Seconds `make -n tflm-lib` (counting the files to compile for the progress bar) may take:
#: it only expands the make fragment's wildcards.
DRY_RUN_TIMEOUT_S = 60
#: Without a total (the dry run failed), report every this many compiled files: a line
#: per file would bury the terminal under ~200 lines.
UNCOUNTED_PROGRESS_EVERY = 25
#: Seconds to wait for `arm-none-eabi-gcc --version`.
COMPILER_PROBE_TIMEOUT_S = 30
#: Characters of the key digest in the folder name.
KEY_CHARS = 16
#: Name of the library inside its folder (tflm.mk's TFLM_LIB).
LIBRARY_NAME = "libtflm.a"
#: The key, written beside a finished library.
KEY_FILE = "key.json"
#: How long to wait for another process building the same library before building
#: it too: that build ends within LIBRARY_BUILD_TIMEOUT_S, so waiting longer is useless.
LIBRARY_LOCK_TIMEOUT_S = LIBRARY_BUILD_TIMEOUT_S + 60


@dataclass(frozen=True)
class LibraryKey:
    """Everything that changes the compiled TFLM library."""

    arch_flags: tuple[str, ...]    # -mcpu/-mthumb/-mfpu/-mfloat-abi: core and float ABI
    kernels: str                   # "reference" | "cmsis_nn"
    tinyq_version: str
    tflm_dir: str                  # the tree (absolute)
    tflm_commit: str | None
    compiler: str                  # first line of `gcc --version`
    fragment: str = ""             # sha256 of firmware_templates/tflm/tflm.mk.j2 (sources, flags)

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def core(self) -> str:
        return next((f.split("=", 1)[1] for f in self.arch_flags if f.startswith("-mcpu=")),
                    "unknown")

    @property
    def float_abi(self) -> str:
        return next((f.split("=", 1)[1] for f in self.arch_flags
                     if f.startswith("-mfloat-abi=")), "soft")

    def folder_name(self) -> str:
        return f"{self.core}-{self.float_abi}-{self.kernels}-{self.digest()[:KEY_CHARS]}"


@dataclass(frozen=True)
class TflmLibrary:
    """A built (or reused) TFLM library and the make variables that use it."""

    folder: Path
    key: LibraryKey
    tree: source.TflmTree
    reused: bool

    @property
    def path(self) -> Path:
        return self.folder / LIBRARY_NAME

    def make_variables(self) -> tuple[str, ...]:
        kernel_dir = "" if self.key.kernels == "reference" else self.key.kernels
        return (f"TFLM_DIR={self.tree.path}", f"TFLM_BUILD={self.folder}",
                f"OPTIMIZED_KERNEL_DIR={kernel_dir}")


def compiler_version(cross: str) -> str:
    """First line of ``<cross>gcc --version`` (ToolNotFoundError if missing)."""
    gcc = cross + "gcc"
    try:
        proc = run_process([gcc, "--version"], capture_output=True, text=True,
                           timeout=COMPILER_PROBE_TIMEOUT_S)
    except FileNotFoundError:
        raise ToolNotFoundError(f"{gcc} not found", hint="install it: sudo apt-get install "
                                "gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                "libstdc++-arm-none-eabi-newlib", tool=gcc) from None
    except subprocess.TimeoutExpired:
        raise ToolNotFoundError(f"{gcc} --version did not answer",
                                hint="check the toolchain installation", tool=gcc) from None
    return (proc.stdout.splitlines() or [""])[0].strip()


def project_arch(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The core/float-ABI flags of a project (from its tinyq_project.json)."""
    ctx = record.get("runtime_context") or {}
    flags = ctx.get("arch_flags")
    if flags:
        return tuple(flags)
    from tinyq.board_profile import CORES

    board = record["board"]
    flags = [f"-mcpu={CORES[board['core']][0]}", "-mthumb"]
    if board.get("fpu", "none") != "none":
        flags += [f"-mfpu={board['fpu']}", "-mfloat-abi=hard"]
    else:
        flags += ["-mfloat-abi=soft"]
    return tuple(flags)


def library_key(arch_flags: Sequence[str], kernels: str, tree: source.TflmTree,
                compiler: str, tinyq_version: str | None = None) -> LibraryKey:
    if kernels not in KERNELS:
        raise UserInputError(f"unknown TFLM kernels {kernels!r}",
                             hint=f"use one of {', '.join(KERNELS)}")
    if tinyq_version is None:
        from tinyq import __version__ as tinyq_version
    return LibraryKey(arch_flags=tuple(arch_flags), kernels=kernels,
                      tinyq_version=tinyq_version, tflm_dir=str(tree.path),
                      tflm_commit=tree.commit, compiler=compiler, fragment=fragment_digest())


def fragment_digest() -> str:
    """sha256 of the make fragment template: it decides the library's sources and flags."""
    from tinyq.resources import templates_dir

    text = (templates_dir() / "tflm" / "tflm.mk.j2").read_bytes()
    return hashlib.sha256(text).hexdigest()[:KEY_CHARS]


def library_folder(key: LibraryKey, cache: Path | None = None) -> Path:
    return (cache or source.cache_root()) / "tflm-lib" / key.folder_name()


def is_built(folder: Path, key: LibraryKey) -> bool:
    """True when ``folder`` holds a finished library for exactly ``key``."""
    try:
        stored = json.loads((folder / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stored == json.loads(json.dumps(asdict(key))) and (folder / LIBRARY_NAME).is_file()


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if "error" in line.lower() or "No rule to make target" in line:
            return line.strip()
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "make failed without output"


def is_compile_line(line: str) -> bool:
    """True for a line make echoes when it compiles one file (``... -c src -o obj.o``)."""
    words = line.split()
    return "-c" in words and "-o" in words and words[-1].endswith(".o")


def count_compiles(argv: list[str]) -> int | None:
    """How many files ``argv`` (a make command) would compile, from ``make -n``; None when
    the dry run fails (the bar then shows no total)."""
    try:
        proc = run_process([argv[0], "-n", *argv[1:]], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=DRY_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return sum(is_compile_line(line) for line in proc.stdout.splitlines()) or None


def run_counting(argv: list[str], total: int | None, progress: ProgressFn,
                 timeout: float = LIBRARY_BUILD_TIMEOUT_S) -> tuple[int, str]:
    """Run make, reporting each compiled file; (exit status, output with stderr)."""
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        stop(proc)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    lines: list[str] = []
    done = 0
    try:
        with proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if is_compile_line(line):
                    done += 1
                    if total:
                        progress(ProgressEvent("build", "TFLM files compiled",
                                               done=min(done, total), total=total))
                    elif done % UNCOUNTED_PROGRESS_EVERY == 0:
                        progress(ProgressEvent("build", f"{done} TFLM files compiled"))
            proc.wait()
    except BaseException:
        stop(proc)
        raise
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(argv, timeout, output="".join(lines))
    return proc.returncode, "".join(lines)


def ensure_library(project: Path, record: Mapping[str, Any], tree: source.TflmTree, *,
                   kernels: str | None = None, cross: str = "arm-none-eabi-",
                   make: str = "make", jobs: int = 2, cache: Path | None = None,
                   rebuild: bool = False,
                   progress: ProgressFn = null_progress) -> TflmLibrary:
    """The TFLM library for ``project``'s core and ``kernels``: reused, or built once."""
    ctx = record.get("runtime_context") or {}
    kernels = kernels or ctx.get("kernels") or "reference"
    tree.require(kernels)
    key = library_key(project_arch(record), kernels, tree, compiler_version(cross))
    folder = library_folder(key, cache)

    def compile_into(private: Path) -> None:
        progress(ProgressEvent("build", f"compiling TFLM ({key.core}, {key.float_abi} float, "
                               f"{kernels} kernels) once into {folder}: this takes "
                               f"{LIBRARY_BUILD_EXPECTED}; later builds reuse it"))
        argv = [make, "-C", str(project), f"-j{max(1, jobs)}", f"CROSS={cross}", "tflm-lib",
                *TflmLibrary(private, key, tree, reused=False).make_variables()]
        try:
            total = count_compiles(argv)
            returncode, output = run_counting(argv, total, progress)
        except FileNotFoundError:
            raise ToolNotFoundError(f"{make} not found",
                                    hint="install it: sudo apt-get install make") from None
        except subprocess.TimeoutExpired:
            raise BuildError(f"building the TFLM library took over {LIBRARY_BUILD_TIMEOUT_S} s",
                             hint=f"run `make tflm-lib` in {project} by hand") from None
        log_path = private / "build.log"
        log_path.write_text(output, encoding="utf-8")
        if returncode != 0:
            kept = keep_log(log_path, folder) or log_path
            raise BuildError(f"building TFLM failed: {_first_error(output)}",
                             hint=f"full log: {kept}", log=str(kept))
        (private / KEY_FILE).write_text(json.dumps(asdict(key), indent=2, sort_keys=True)
                                        + "\n")

    def waiting(lock: Path) -> None:
        progress(ProgressEvent("build", f"waiting for another tinyq compiling the same TFLM "
                               f"library (lock {lock})"))

    reused = cached_folder(folder, compile_into, complete=lambda f: is_built(f, key),
                           rebuild=rebuild, lock_timeout=LIBRARY_LOCK_TIMEOUT_S,
                           on_wait=waiting)
    if reused:
        progress(ProgressEvent("build", f"reusing the TFLM library {folder.name}"))
    return TflmLibrary(folder, key, tree, reused=reused)


def make_variables(project: Path, record: Mapping[str, Any], *,
                   tflm_dir: str | os.PathLike[str] | None = None, kernels: str | None = None,
                   cross: str = "arm-none-eabi-", make: str = "make", jobs: int = 2,
                   cache: Path | None = None, rebuild: bool = False,
                   progress: ProgressFn = null_progress) -> tuple[str, ...]:
    """Make variables that build ``project`` against the cached TFLM library."""
    tree = source.locate(tflm_dir)
    lib = ensure_library(project, record, tree, kernels=kernels, cross=cross, make=make,
                         jobs=jobs, cache=cache, rebuild=rebuild, progress=progress)
    return lib.make_variables()
