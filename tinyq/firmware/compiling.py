"""Build a generated project with arm-none-eabi-gcc and measure the ELF.

``build(DIR)`` runs ``make`` in a project made by ``tinyq generate``;
``build(MODEL.tflite, board=B)`` first renders the project into a cache folder
keyed by the hash of every rendered file (so a new model, board, option,
template or tinyq version gives a new key) and reuses an existing build.
Several tinyq processes may build the same model at once (parallel CI jobs):
the project is built in a private folder and published whole (:mod:`tinyq.cache`),
a second process waits for the first one's result, and an entry is trusted only
with its stamp (:data:`BUILT_STAMP`, the ELF's size and sha256), so a build that
was killed half-way is never reused.

Toolchain failures become one-line errors: a missing compiler or newlib is a
:class:`ToolNotFoundError` saying what to install, a linker region overflow a
:class:`FitError` saying how many bytes are missing, anything else a
:class:`BuildError` quoting the first error line (the full log stays in
``build/build.log``). Sizes are read from the ELF's section headers by
:mod:`tinyq.firmware.elf` (no pyelftools).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinyq.board_profile import Board
from tinyq.errors import BuildError, FitError, ToolNotFoundError, UserInputError
from tinyq.firmware import elf
from tinyq.firmware.elf import SHF_ALLOC, SHT_NOBITS, ElfSection
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import run_process

log = logging.getLogger(__name__)

#: Seconds one ``make`` may run: the largest MLPerf Tiny model (vww, ~300 KB of
#: weights as C text) compiles in well under a minute on 2 cores; ten times that
#: covers a loaded CI machine without letting a wedged compiler hang tinyq.
BUILD_TIMEOUT_S = 600
#: Parallel compile jobs: the machines tinyq targets in CI have 2 cores.
DEFAULT_JOBS = 2
#: Toolchain prefix (the Makefile's CROSS).
DEFAULT_CROSS = "arm-none-eabi-"
APT_HINT = "install it: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
MAKE_HINT = "install it: sudo apt-get install make"
#: Where ``build(MODEL, board=...)`` keeps its projects (override: TINYQ_CACHE_DIR).
CACHE_ENV = "TINYQ_CACHE_DIR"
#: Cache folder of model builds. Its entries are published whole (tinyq.cache) and carry
#: tinyq's marker and a build stamp; "builds" (older tinyq, built in place) is left alone:
#: tinyq replaces only what it can tell is its own.
BUILDS_FOLDER = "builds-v2"
#: Characters of the cache key used as the folder name.
CACHE_KEY_CHARS = 20
#: How long a build waits for another process building the same firmware before
#: building it itself: that process finishes or gives up within BUILD_TIMEOUT_S
#: (plus the TFLM library build it may be waiting for, which has its own lock).
BUILD_LOCK_TIMEOUT_S = BUILD_TIMEOUT_S + 60
#: Written into a cached build last: the ELF's size and sha256. Without it (or if
#: the ELF no longer matches) the entry is not trusted.
BUILT_STAMP = "build/tinyq_built.json"

_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes?")
_ERROR_LINE = re.compile(r"(error:|undefined reference|No rule to make target|cannot find)",
                         re.IGNORECASE)
_SPEC_MISSING = re.compile(r"cannot read spec file '([^']+)'|cannot find -lc\b|"
                           r"stdint\.h: No such file", re.IGNORECASE)


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = DEFAULT_JOBS
    cross: str = DEFAULT_CROSS           # toolchain prefix
    make: str = "make"
    cache_dir: Path | None = None        # default: $TINYQ_CACHE_DIR or ~/.cache/tinyq
    rebuild: bool = False                # ignore an existing build in the cache
    tflm_dir: str | None = None          # TFLM tree (None: $TINYQ_TFLM_DIR, then the cache)


@dataclass(frozen=True)
class Firmware:
    """A built firmware and what it occupies."""

    elf: Path
    project: Path
    board: str
    runtime: str
    model_sha256: str
    flash_bytes: int          # everything programmed: vectors+text+rodata+exidx+data image
    model_bytes: int          # the model's constants (weights, biases, parameters)
    data_bytes: int
    bss_bytes: int
    arena_bytes: int          # the tensor arena section (reserved)
    arena_region: str
    stack_bytes: int
    flash_available: int
    ram_available: int        # the board's main RAM (arena/stack included when placed there)
    sections: Mapping[str, int] = field(default_factory=dict)
    cached: bool = False

    @property
    def code_bytes(self) -> int:
        """Flash that is not the model: runtime, harness, board glue, libc."""
        return self.flash_bytes - self.model_bytes

    @property
    def static_ram_bytes(self) -> int:
        """.data + .bss (the arena and the stack are counted apart)."""
        return self.data_bytes + self.bss_bytes

    @property
    def ram_bytes(self) -> int:
        """RAM reserved in the main RAM region: static + arena (if there) + stack."""
        arena = self.arena_bytes if self.arena_region == "ram" else 0
        return self.static_ram_bytes + arena + self.stack_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "elf": str(self.elf), "board": self.board, "runtime": self.runtime,
            "model_sha256": self.model_sha256,
            "flash": {"code": self.code_bytes, "model": self.model_bytes,
                      "total": self.flash_bytes, "available": self.flash_available},
            "ram": {"data": self.data_bytes, "bss": self.bss_bytes,
                    "static": self.static_ram_bytes, "arena": self.arena_bytes,
                    "arena_region": self.arena_region, "stack": self.stack_bytes,
                    "total": self.ram_bytes, "available": self.ram_available},
            "sections": dict(self.sections), "cached": self.cached,
        }

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` record of ``tinyq build`` (kind "build")."""
        from tinyq.records import stamp

        record = self.as_dict()
        record["firmware"] = record.pop("elf")         # the ELF, as in run/bench records
        record["model_id"] = self.model_sha256[:12]
        record["project"] = str(self.project)
        return stamp("build", record)


# ------------------------------------------------------------------ ELF reading

def read_elf(path: str | os.PathLike[str]) -> tuple[tuple[ElfSection, ...], dict[str, int]]:
    """Sections and symbol values of a little-endian ELF32 file (see :mod:`tinyq.firmware.elf`)."""
    try:
        image = elf.read(path)
    except UserInputError as exc:
        raise BuildError(exc.message, hint="rebuild the project (make clean all)") from exc
    return image.sections, image.symbols


def _map_rodata_bytes(map_text: str, objects: tuple[str, ...]) -> int:
    """Bytes of .rodata input sections from the given object files (a linker map)."""
    total = 0
    # " .rodata.name\n                0x00001234       0x40 build/src/native/model.o"
    pattern = re.compile(r"^\s*\.rodata\S*\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$|"
                         r"^\s*\.rodata\S*\n\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$",
                         re.MULTILINE)
    for m in pattern.finditer(map_text):
        size = m.group(1) or m.group(3)
        obj = m.group(2) or m.group(4)
        if any(obj.endswith(o) for o in objects):
            total += int(size, 16)
    return total


def measure(elf: Path, project: Path, record: Mapping[str, Any], cached: bool = False) -> Firmware:
    """Sizes of a built ELF against the board budget stored in the project record."""
    sections, symbols = read_elf(elf)
    alloc = {s.name: s.size for s in sections if s.flags & SHF_ALLOC}
    flash = sum(s.size for s in sections if s.flags & SHF_ALLOC and s.type != SHT_NOBITS)
    model = symbols.get("__tq_model_end__", 0) - symbols.get("__tq_model_start__", 0)
    if model <= 0:
        objects = tuple("build/" + src[:-2] + ".o" for src in record.get("model_sources", ()))
        map_file = elf.with_suffix(".map")
        model = _map_rodata_bytes(map_file.read_text(errors="replace"), objects) \
            if objects and map_file.exists() else 0
    board = record["board"]
    arena_region = board.get("arena_region", "ram")
    return Firmware(
        elf=elf, project=project, board=board["name"], runtime=record.get("runtime", ""),
        model_sha256=record.get("model", {}).get("sha256", ""),
        flash_bytes=flash, model_bytes=model,
        data_bytes=alloc.get(".data", 0), bss_bytes=alloc.get(".bss", 0),
        arena_bytes=alloc.get(".tq_arena", 0),
        arena_region="ram" if arena_region == board["ram"]["name"] else arena_region,
        stack_bytes=alloc.get(".stack", 0),
        flash_available=board["flash"]["size"], ram_available=board["ram"]["size"],
        sections=MappingProxyType(dict(alloc)), cached=cached,
    )


# ------------------------------------------------------------------ running make

def check_toolchain(options: BuildOptions) -> None:
    """Raise ToolNotFoundError unless the compiler and make are on PATH."""
    gcc = options.cross + "gcc"
    if shutil.which(gcc) is None:
        raise ToolNotFoundError(f"{gcc} not found", hint=APT_HINT, tool=gcc)
    if shutil.which(options.make) is None:
        raise ToolNotFoundError(f"{options.make} not found", hint=MAKE_HINT, tool=options.make)


def _region_words(region: str, record: Mapping[str, Any]) -> tuple[str, int | None]:
    board = record["board"]
    if region == "FLASH":
        return "flash", board["flash"]["size"]
    if region in ("RAM", "STACK"):
        return "RAM", board["ram"]["size"]
    for extra in board.get("extra_ram", ()):
        if re.sub(r"[^0-9A-Za-z_]", "_", extra["name"]).upper() == region:
            return f"{extra['name']} RAM", extra["size"]
    return region, None


def boards_with_room(record: Mapping[str, Any], overflows: Mapping[str, int]) -> list[str] | None:
    """Bundled boards with room for a firmware the linker could not place, or None when
    the overflow cannot be judged (a board-specific RAM bank overflowed).

    From the linker's figures, conservatively: an overflowed region needs its size plus
    the overflow; one that did not overflow needs as much as this board has. RAM is
    counted without the stack (each board reserves its own ``stack_bytes``) and with
    the arena moved to the bank each board puts it in.
    """
    from tinyq import boards
    from tinyq.analyze import FIT_HINT_BOARDS

    if set(overflows) - {"FLASH", "RAM", "STACK"}:
        return None
    board = record["board"]
    arena = int(record.get("arena_bytes", 0) or 0)
    arena_in_main = board.get("arena_region", "ram") == board["ram"]["name"]
    flash_need = board["flash"]["size"] + overflows.get("FLASH", 0)
    ram_over = max(overflows.get("RAM", 0), overflows.get("STACK", 0))
    static_need = (board["ram"]["size"] + ram_over - board.get("stack_bytes", 0)
                   - (arena if arena_in_main else 0))
    this_kind = None
    if board["name"] in boards.names():
        this_kind = boards.load(board["name"]).emulated_only
    fitting = []
    for cand in boards.available():
        if cand.name == board["name"] or cand.flash.size < flash_need:
            continue
        main = static_need + cand.stack_bytes
        try:
            bank = cand.region(cand.arena_region)
        except KeyError:
            bank = cand.ram
        if bank.name == cand.ram.name:
            main += arena
        elif bank.size < arena:
            continue
        if main <= cand.ram.size:
            fitting.append(cand)
    fitting.sort(key=lambda b: (b.emulated_only != this_kind,
                                b.ram.size + sum(r.size for r in b.extra_ram), b.flash.size,
                                b.name))
    return [b.name for b in fitting[:FIT_HINT_BOARDS]]


def _overflow_hint(record: Mapping[str, Any], overflows: Mapping[str, int]) -> str:
    names = boards_with_room(record, overflows)
    if names is None:
        return "choose a bigger board or a smaller model (or lower stack_bytes)"
    if names:
        return (f"use a board with room for it ({', '.join(names)}) or a smaller model "
                "(or lower stack_bytes)")
    return "no bundled board has room for it: use a smaller model (or lower stack_bytes)"


def diagnose(output: str, record: Mapping[str, Any], log_path: Path) -> Exception:
    """Turn failed compiler/linker output into the right TinyqError."""
    board = record["board"]
    overflows = _OVERFLOW.findall(output)
    if overflows:
        parts = []
        for region, nbytes in dict(overflows).items():
            what, size = _region_words(region, record)
            has = f" ({size:,} bytes" if size is not None else ""
            if has and what == "RAM":
                has += f", {board.get('stack_bytes', 0):,} of them stack"
            parts.append(f"{int(nbytes):,} bytes more {what} than {board['name']} has"
                         f"{has + ')' if has else ''}")
        model = record.get("model", {}).get("name", "the firmware")
        return FitError(f"{model} needs " + " and ".join(parts),
                        hint=_overflow_hint(record, {r: int(n) for r, n in overflows}),
                        board=board["name"], bytes_over=int(overflows[0][1]),
                        region=overflows[0][0])
    if _SPEC_MISSING.search(output):
        return ToolNotFoundError("newlib for arm-none-eabi not found",
                                 hint="install it: sudo apt-get install libnewlib-arm-none-eabi")
    first = next((line.strip() for line in output.splitlines() if _ERROR_LINE.search(line)),
                 None)
    if first is None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        first = lines[-1] if lines else "make failed without output"
    return BuildError(f"firmware build failed: {first}", hint=f"full log: {log_path}",
                      log=str(log_path))


def run_make(project: Path, options: BuildOptions,
             progress: ProgressFn = null_progress) -> str:
    """Run make in ``project``; return its output or raise the diagnosed error."""
    from tinyq.firmware.codegen import load_project

    record = load_project(project)
    check_toolchain(options)
    argv = [options.make, "-C", str(project), f"-j{max(1, options.jobs)}",
            f"CROSS={options.cross}"]
    if record.get("runtime") == "tflm":
        from tinyq.firmware.tflm.library import make_variables

        # TFLM itself is compiled once per core/float ABI/kernels into the cache.
        argv += make_variables(project, record, tflm_dir=options.tflm_dir, cross=options.cross,
                               make=options.make, jobs=options.jobs,
                               cache=cache_root(options), progress=progress)
    try:
        proc = run_process(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"make did not finish in {BUILD_TIMEOUT_S} s in {project}",
                         hint="run `make` there by hand to see where it hangs") from None
    log_path = project / "build" / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise diagnose(proc.stdout, record, log_path)
    return proc.stdout


def cache_root(options: BuildOptions) -> Path:
    if options.cache_dir is not None:
        return Path(options.cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyq"


def build(target: str | os.PathLike[str], board: Board | str | None = None, *,
          runtime: str = "native", options: Any = None,
          build_options: BuildOptions | None = None,
          progress: ProgressFn = null_progress) -> Firmware:
    """Build a project folder, or a model for ``board`` (cached by content hash).

    ``options`` are :class:`tinyq.firmware.codegen.GenerateOptions` (model builds only).

    Example::

        firmware = tinyq.build("hello_world_int8.tflite", "mps2-an386")
        print(firmware.elf, f"{firmware.flash_bytes:,} bytes of flash")
    """
    from tinyq.cache import cached_folder
    from tinyq.fileio import cache_name, write_marker
    from tinyq.firmware.codegen import (
        SCRATCH_FOLDERS,
        files_digest,
        load_project,
        render_model_project,
        write_files,
    )

    build_options = build_options or BuildOptions()
    path = Path(target)
    if path.is_dir():
        if board is not None:
            log.debug("board %s ignored: the project records its board", board)
        check_toolchain(build_options)
        record = load_project(path)
        progress(ProgressEvent("build", f"compiling {path} for {record['board']['name']}"))
        run_make(path, build_options, progress)
        return measure(path / "build" / "app.elf", path, record)
    if not path.exists():
        raise UserInputError(f"{path} not found",
                             hint="pass a project folder or a .tflite model")
    if board is None:
        raise UserInputError(f"building the model {path.name} needs a board",
                             hint="pass --board NAME (see `tinyq boards`)")
    check_toolchain(build_options)
    files, _info, _rt, board_obj = render_model_project(path, board, runtime, options, progress)
    identity = dict(files)
    if runtime == "tflm":
        from tinyq.firmware.tflm.source import locate

        tree = locate(build_options.tflm_dir)   # the ELF also depends on the TFLM tree
        identity["<tflm tree>"] = f"{tree.path} {tree.commit}"
    key = files_digest(identity)[:CACHE_KEY_CHARS]
    project = cache_root(build_options) / BUILDS_FOLDER / cache_name(board_obj.name, key)

    def compile_into(folder: Path) -> None:
        write_files(files, folder)
        write_marker(folder, scratch=SCRATCH_FOLDERS)
        progress(ProgressEvent("build", f"compiling {path.name} for {board_obj.name} "
                               f"into {project}"))
        try:
            run_make(folder, build_options, progress)
        except FitError as exc:
            if runtime == "tflm":
                native = _native_instead(path, board_obj)
                if native is not None:
                    raise FitError(exc.message, hint=native, **exc.fields) from None
            raise
        except BuildError as exc:
            raise _keep_log(exc, folder, project) from None
        stamp_build(folder)

    def waiting(lock: Path) -> None:
        progress(ProgressEvent("build", f"waiting for another tinyq building the same "
                               f"firmware (lock {lock})"))

    reused = cached_folder(project, compile_into, complete=is_built,
                           rebuild=build_options.rebuild, lock_timeout=BUILD_LOCK_TIMEOUT_S,
                           on_wait=waiting)
    if reused:
        progress(ProgressEvent("build", f"reusing the build in {project}"))
    return measure(project / "build" / "app.elf", project, load_project(project),
                   cached=reused)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_build(project: Path) -> None:
    """Mark a finished build: the ELF's size and sha256 in :data:`BUILT_STAMP`."""
    elf_path = project / "build" / "app.elf"
    stamp = {"elf_bytes": elf_path.stat().st_size, "elf_sha256": _sha256(elf_path)}
    (project / BUILT_STAMP).write_text(json.dumps(stamp) + "\n", encoding="utf-8")


def is_built(project: Path) -> bool:
    """True when ``project`` holds a finished build whose ELF matches its stamp."""
    from tinyq.firmware.codegen import PROJECT_FILE

    elf_path = project / "build" / "app.elf"
    try:
        stamp = json.loads((project / BUILT_STAMP).read_text(encoding="utf-8"))
        return ((project / PROJECT_FILE).is_file()
                and elf_path.stat().st_size == stamp["elf_bytes"]
                and _sha256(elf_path) == stamp["elf_sha256"])
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _keep_log(exc: BuildError, folder: Path, project: Path) -> BuildError:
    """The error of a failed cache build, its log kept beside the cache entry (the private
    folder it was built in is deleted)."""
    from tinyq.cache import keep_log

    kept = keep_log(folder / "build" / "build.log", project)
    if kept is None:
        return exc
    return BuildError(exc.message.replace(str(folder), str(project)), hint=f"full log: {kept}",
                      log=str(kept))


def _native_instead(model_path: Path, board: Board) -> str | None:
    """The hint for a TFLM build that overflowed: the native runtime, if it fits."""
    from tinyq.analyze import fit, native_arena_bytes
    from tinyq.model.tflite_reader import read_model

    model = read_model(model_path)
    arena = native_arena_bytes(model)
    if arena is None:
        return None
    native = fit(model, board, "native", arena)
    if not native.fits:
        return None
    return (f"use --runtime native, which fits {board.name} (estimated flash "
            f"{native.flash_needed:,}/{native.flash_available:,} B, RAM "
            f"{native.ram_needed:,}/{native.ram_available:,} B)")
