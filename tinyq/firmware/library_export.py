"""Export a model as a C library for the user's own firmware (``tinyq export``).

``export(model, out_dir, prefix=..., core=... | board=..., fmt="c"|"cmake")`` writes the
model compiled ahead of time by the native runtime (:mod:`tinyq.firmware.native.codegen`) plus only
the kernels it uses: no ``main``, no harness, no board glue, no heap. Every file name,
function, type and macro of the runtime is renamed from ``tq_``/``TQ_`` to the user's
prefix, so two exported models link into one firmware without clashing.

Layout of ``out_dir`` (prefix ``kws``)::

    include/kws.h      the one public header: the whole API, documented
    src/kws_*.c|h      the generated model and its kernels (internal)
    README.md          a complete integration and the compile flags per core
    kws.mk             (format c) a Makefile fragment: KWS_SRCS, KWS_INCLUDES, KWS_CFLAGS
    CMakeLists.txt     (format cmake) the library target ``kws`` (alias ``tinyq::kws``)
    cmake/arm-none-eabi.cmake   (format cmake) a toolchain file for the chosen core

Format ``arduino`` follows the Arduino library layout instead: ``library.properties``,
``src/kws.h`` beside the sources, ``examples/kws_demo/kws_demo.ino``.

The folder is written atomically and carries tinyq's folder marker, so ``--force`` may
replace it later (and never a folder tinyq did not write).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tinyq.board_profile import CORES, Board
from tinyq.errors import ModelError, UserInputError
from tinyq.fileio import atomic_path, check_output
from tinyq.firmware.codegen import write_files
from tinyq.firmware.templating import c_string, environment
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

__all__ = ["FORMATS", "CORE_FPUS", "LibraryExport", "export", "render_library",
           "core_cflags", "PREFIX_PATTERN"]

#: export formats: plain sources + Makefile fragment, or a CMake library target
FORMATS = ("c", "cmake", "arduino")
#: a prefix: lower case (its upper-case form names the macros), a C identifier, short
#: enough that prefixed names stay readable and within old linkers' 31-char identifiers
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,23}")
#: the FPU each core gets with --core (its usual hardware FPU; gcc -mfpu): the float ABI
#: must match the rest of the firmware, so README.md says how to change it
CORE_FPUS: Mapping[str, str] = MappingProxyType({
    "cortex-m0": "none", "cortex-m0plus": "none", "cortex-m3": "none",
    "cortex-m4": "fpv4-sp-d16", "cortex-m7": "fpv5-d16", "cortex-m33": "fpv5-sp-d16",
    "cortex-m55": "auto",
})
#: what the DSP extension changes in the kernels (README text, per core below)
_DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
#: templates (under firmware_templates/export/)
_TEMPLATES = "export"
#: the one line of the rendered model.c that declares the arena; the export makes it
#: optionally the caller's (see _caller_arena). A test fails if codegen stops emitting it.
_ARENA_LINE = "static uint8_t tq_arena[TQ_ARENA_BYTES] TQ_ALIGN(16) TQ_ARENA_SECTION;"
_INIT_LINE = "int tq_init(void) { return 0; }  /* the plan is static: nothing to prepare */"
#: kernel-file header the model.c includes; replaced by the public header
_RUNTIME_INCLUDE = '#include "tq_runtime.h"'
#: tensor types the exported header adds to the runtime's enum (values 5, 6)
_EXTRA_TYPES = {"bool": "TQ_BOOL", "int64": "TQ_INT64"}
#: arena alignment the kernels rely on (the planner aligns every offset to this)
ARENA_ALIGN = 16


@dataclass(frozen=True)
class LibraryExport:
    """An exported library (``files`` is what was written, relative to ``path``)."""

    path: Path
    prefix: str
    fmt: str
    core: str
    cflags: tuple[str, ...]
    arena_bytes: int
    files: Mapping[str, str]
    model_name: str
    model_sha256: str

    @property
    def header(self) -> str:
        return header_path(self.prefix, self.fmt)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted(p for p in self.files if p.startswith("src/") and p.endswith(".c")))


def header_path(prefix: str, fmt: str) -> str:
    """Where the public header goes: ``include/`` (c, cmake) or beside the sources (arduino,
    whose IDE puts only a library's ``src/`` on the include path)."""
    return f"src/{prefix}.h" if fmt == "arduino" else f"include/{prefix}.h"


def core_cflags(core: str, fpu: str | None = None) -> tuple[str, ...]:
    """gcc flags for a core (and its FPU; default :data:`CORE_FPUS`), as the board glue uses."""
    if core not in CORES:
        raise UserInputError(f"unknown core {core!r}", hint=f"use one of {', '.join(CORES)}")
    fpu = CORE_FPUS[core] if fpu is None else fpu
    flags = [f"-mcpu={CORES[core][0]}", "-mthumb"]
    if fpu == "none":
        return (*flags, "-mfloat-abi=soft")
    return (*flags, f"-mfpu={fpu}", "-mfloat-abi=hard")


#: prefixes tinyq's own firmware uses (the harness and the board glue name things tq_...)
RESERVED_PREFIXES = frozenset({"tq"})


def check_prefix(prefix: str) -> str:
    if prefix in RESERVED_PREFIXES:
        raise UserInputError(f"the prefix {prefix!r} is tinyq's own (its board glue and "
                             "harness use it)", hint="choose another, e.g. --prefix kws")
    if not PREFIX_PATTERN.fullmatch(prefix or ""):
        raise UserInputError(
            f"invalid prefix {prefix!r}: it names every C symbol of the library",
            hint="use 1-24 lower-case letters, digits or '_', starting with a letter "
                 "(e.g. --prefix kws)")
    return prefix


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserInputError(f"unknown export format {fmt!r}",
                             hint=f"use one of {', '.join(FORMATS)}")
    return fmt


def namespaced(text: str, prefix: str) -> str:
    """``text`` with every ``tq_`` identifier renamed ``<prefix>_`` and ``TQ_`` ``<PREFIX>_``."""
    text = re.sub(r"\btq_", prefix + "_", text)
    return re.sub(r"(\b|(?<=-D))TQ_", prefix.upper() + "_", text)


def _caller_arena(model_c: str) -> str:
    """Let the caller own the arena: with ``-DTQ_ARENA_EXTERNAL=name`` model.c uses the
    caller's ``uint8_t name[TQ_ARENA_BYTES]`` (an extern array: its address is a link-time
    constant, so the static tensor tables still work) and init checks its alignment."""
    for line in (_ARENA_LINE, _INIT_LINE, _RUNTIME_INCLUDE):
        if model_c.count(line) != 1:
            raise RuntimeError(f"the native model.c no longer has {line!r}: update "
                               "tinyq.firmware.library_export to the new template")
    arena = (
        "#ifdef TQ_ARENA_EXTERNAL\n"
        "/* the caller defines the arena: uint8_t NAME[TQ_ARENA_BYTES], 16-byte aligned */\n"
        "extern uint8_t TQ_ARENA_EXTERNAL[];\n"
        "#define tq_arena TQ_ARENA_EXTERNAL\n"
        "#else\n" + _ARENA_LINE + "\n#endif"
    )
    init = (
        "int tq_init(void)\n{\n"
        "#ifdef TQ_ARENA_EXTERNAL\n"
        f"    if (((uintptr_t)tq_arena % {ARENA_ALIGN}u) != 0u) {{\n"
        "        return TQ_ERR_ARENA;  /* the caller's arena is misaligned */\n"
        "    }\n"
        "#endif\n"
        "    return TQ_OK;  /* the plan is static: nothing else to prepare */\n}"
    )
    return model_c.replace(_ARENA_LINE, arena).replace(_INIT_LINE, init)


def _type_name(dtype: str) -> str:
    """The header's enum name of a tensor type (the runtime's five, plus BOOL and INT64)."""
    from tinyq.firmware.native.codegen import _TQ_TYPES

    return {**_TQ_TYPES, **_EXTRA_TYPES}[dtype]


def _io_types(model_c: str, model) -> str:
    """model.c with its input/output type tables from :func:`_type_name` (the shared
    runtime interface names only five types and calls bool and int64 tensors int8)."""
    for kind, tensors in (("input", model.input_tensors), ("output", model.output_tensors)):
        pattern = re.compile(rf"^static const enum tq_type tq_{kind}_types\[\d+\] = .*$",
                             re.M)
        if len(pattern.findall(model_c)) != 1:
            raise RuntimeError(f"the native model.c no longer has its {kind} type table: "
                               "update tinyq.firmware.library_export to the new template")
        names = ", ".join(_type_name(t.dtype) for t in tensors)
        line = (f"static const enum tq_type tq_{kind}_types[{len(tensors)}] = "
                f"{{ {names}, }};")
        model_c = pattern.sub(lambda _m, line=line: line, model_c)
    return model_c


def _tensor(t, index: int, kind: str) -> dict[str, object]:
    from tinyq.firmware.native.lower import CTYPES, c_float, scale_zp

    scale, zp = scale_zp(t)
    return {"index": index, "kind": kind, "name": t.name, "c_name": c_string(t.name),
            "ctype": CTYPES[t.dtype], "elements": int(t.nbytes // t.np_dtype.itemsize),
            "shape": [int(d) for d in t.shape] or [1], "rank": len(t.shape),
            "dtype": t.dtype, "type": _type_name(t.dtype)[3:],
            "bytes": int(t.nbytes), "scale": c_float(scale), "zero_point": int(zp)}


def _cores_table() -> list[dict[str, object]]:
    rows = []
    for core in CORES:
        rows.append({"core": core, "flags": " ".join(core_cflags(core)),
                     "dsp": core in _DSP_CORES, "fpu": CORE_FPUS[core]})
    return rows


def render_library(model, *, prefix: str, core: str, cflags: tuple[str, ...], fmt: str = "c",
                   model_name: str | None = None) -> tuple[dict[str, str], int]:
    """Every file of the exported library as ``{relative path: text}`` (nothing written),
    and the arena bytes it needs."""
    from tinyq.firmware.native.codegen import NativeOptions, render
    from tinyq.firmware.native.planner import ALIGNMENT

    check_prefix(prefix)
    check_format(fmt)
    name = model_name or (Path(model.path).name if model.path else "model.tflite")
    src = render(model, NativeOptions(prefix="src", model_name=name))
    header = header_path(prefix, fmt)
    include = posixpath.relpath(header, "src")          # as the sources include it
    files: dict[str, str] = {}
    for rel, text in src.files.items():
        base = rel.split("/", 1)[1]
        if base == "model.c":
            text = _io_types(_caller_arena(text), model)
            base = "tq_model.c"
        text = namespaced(text, prefix)
        if base == "tq_model.c":      # the public header declares what tq_runtime.h did
            text = text.replace(f'#include "{prefix}_runtime.h"',
                                f'#include "{include}"')
            text = text.replace(f"{prefix}_runtime.h", f"{prefix}.h")
        files["src/" + namespaced(base, prefix)] = text
    header_line = next(iter(src.files.values())).splitlines()[0]
    inputs = [_tensor(t, i, "input") for i, t in enumerate(model.input_tensors)]
    outputs = [_tensor(t, i, "output") for i, t in enumerate(model.output_tensors)]
    ctx = {
        "p": prefix, "P": prefix.upper(), "include": include, "header_path": header,
        "header": header_line.strip("/* ").strip(),
        "model_name": name, "sha256": model.sha256 or "unknown",
        "arena_bytes": max(src.arena_bytes, ALIGNMENT), "arena_align": ARENA_ALIGN,
        "inputs": inputs, "outputs": outputs, "tensors": inputs + outputs,
        "num_layers": len(src.layer_names), "core": core, "cflags": " ".join(cflags),
        "fmt": fmt, "sources": sorted(p for p in files if p.endswith(".c")),
        "cores": _cores_table(),
        "needs_libm": any("<math.h>" in text for text in files.values()),
    }
    env = environment()
    files[f"src/{prefix}_api.c"] = env.get_template(f"{_TEMPLATES}/api.c.j2").render(**ctx)
    ctx["sources"] = sorted(p for p in files if p.endswith(".c"))
    files[header] = env.get_template(f"{_TEMPLATES}/header.h.j2").render(**ctx)
    files["README.md"] = env.get_template(f"{_TEMPLATES}/README.md.j2").render(**ctx)
    if fmt == "arduino":
        files["library.properties"] = env.get_template(
            f"{_TEMPLATES}/library.properties.j2").render(**ctx)
        files[f"examples/{prefix}_demo/{prefix}_demo.ino"] = env.get_template(
            f"{_TEMPLATES}/demo.ino.j2").render(**ctx)
    elif fmt == "c":
        files[f"{prefix}.mk"] = env.get_template(f"{_TEMPLATES}/library.mk.j2").render(**ctx)
    else:
        files["CMakeLists.txt"] = env.get_template(
            f"{_TEMPLATES}/CMakeLists.txt.j2").render(**ctx)
        files["cmake/arm-none-eabi.cmake"] = env.get_template(
            f"{_TEMPLATES}/arm-none-eabi.cmake.j2").render(**ctx)
    return files, int(ctx["arena_bytes"])


def export(model_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
           prefix: str, core: str | None = None, board: str | Board | None = None,
           fmt: str = "c", force: bool = False,
           progress: ProgressFn = null_progress) -> LibraryExport:
    """Write ``model_path`` as a C library into ``out_dir`` (see the module docstring).

    Exactly one of ``core`` (e.g. ``"cortex-m4"``) or ``board`` (a board name, TOML path or
    :class:`~tinyq.board_profile.Board`) chooses the compile flags README.md and the
    toolchain file give; the C itself is the same for every core.

    Example::

        lib = tinyq.export("hello_world_int8.tflite", "sine_lib", prefix="sine", board="mps2-an386")
        print(lib.header, lib.arena_bytes)
    """
    from tinyq import boards
    from tinyq.model.tflite_reader import read_model

    check_prefix(prefix)
    check_format(fmt)
    if (core is None) == (board is None):
        raise UserInputError("export needs exactly one of a board or a core",
                             hint="pass --board NAME or --core cortex-m4")
    if board is not None:
        board_obj = board if isinstance(board, Board) else boards.load(board)
        core_name, cflags = board_obj.core, tuple(board_obj.cflags)
    else:
        core_name, cflags = core, core_cflags(core)
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model {path} not found", hint="pass the path of a .tflite file",
                         path=str(path))
    out = check_output(out_dir, force, inputs=(path,), kind="folder")   # before the work
    progress(ProgressEvent("export", f"reading {path.name}"))
    model = read_model(path)
    progress(ProgressEvent("export", f"rendering the {prefix} library for {core_name}"))
    files, arena = render_library(model, prefix=prefix, core=core_name, cflags=cflags,
                                  fmt=fmt, model_name=path.name)
    with atomic_path(out, force, inputs=(path,), kind="folder") as tmp:
        write_files(files, tmp)
    return LibraryExport(path=out, prefix=prefix, fmt=fmt, core=core_name, cflags=cflags,
                         arena_bytes=arena,
                         files=MappingProxyType(files), model_name=path.name,
                         model_sha256=model.sha256 or "")
