"""Build the native runtime for the host and run it through ctypes.

The same kernels and generated ``model.c`` that go on the device compile with
the system C compiler, so thousands of random cases can be compared with the
tflite-micro interpreter in seconds. The kernels are compiled once into a
static library (cached by the hash of their sources and flags); each model
then costs one small compile of its ``model.c`` (cached by its text's hash).

Cache: ``$TINYQ_CACHE_DIR/native-host`` or ``~/.cache/tinyq/native-host``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinyq import ir
from tinyq.cache import cached_folder
from tinyq.errors import BuildError, DataError, ToolNotFoundError
from tinyq.native import codegen
from tinyq.resources import templates_dir
from tinyq.subprocesses import run_process

logger = logging.getLogger(__name__)

#: host C compiler (override with $CC)
DEFAULT_CC = "gcc"
#: flags for kernels and model.c; -Werror keeps the kernels warning-clean on the host too
CFLAGS = ("-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing")
#: seconds one compiler invocation may take before we call it hung
COMPILE_TIMEOUT_S = 300


def cache_dir() -> Path:
    base = os.environ.get("TINYQ_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "tinyq"
    return root / "native-host"


def _cc() -> str:
    cc = os.environ.get("CC", DEFAULT_CC)
    if shutil.which(cc) is None:
        raise ToolNotFoundError(
            f"the host C compiler {cc!r} was not found",
            hint="install gcc (apt-get install gcc) or set CC")
    return cc


def _run(argv: Sequence[str]) -> None:
    try:
        # guard=False: one short compile, run thousands of times by the tests
        proc = run_process(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                           guard=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"host compile timed out after {COMPILE_TIMEOUT_S} s: {argv[0]}",
                         hint="retry; if it persists report a bug") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        first = next((ln for ln in detail if "error" in ln), detail[0] if detail else "")
        raise BuildError(f"host compile failed: {first}",
                         hint="this is a tinyq bug if the model passed `tinyq inspect`",
                         log=proc.stderr)


def _atomic_dir(final: Path, build) -> Path:
    """Build into a private folder and publish it whole as ``final`` (parallel-safe)."""
    cached_folder(final, build, complete=Path.is_dir)
    return final


def _kernel_sources() -> list[Path]:
    return sorted(codegen.kernels_dir().glob("*.c"))


def _define_flags(defines: Sequence[str]) -> list[str]:
    return [f"-D{d}" for d in defines]


def kernel_library(defines: Sequence[str] = ()) -> Path:
    """The static library of every kernel, compiled once per kernel-source hash.

    ``defines`` are preprocessor macros, e.g. ``("TQ_SIMD_EMULATE",)`` to run the
    SIMD (DSP) code paths with portable stand-ins on the host.
    """
    cc = _cc()
    kdir = codegen.kernels_dir()
    flags = [*CFLAGS, *_define_flags(defines)]
    h = hashlib.sha256()
    h.update(" ".join((cc, *flags)).encode())
    for path in sorted(kdir.glob("*.[ch]")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    final = cache_dir() / f"kernels-{h.hexdigest()[:16]}"

    def build(tmp: Path) -> None:
        objs = []
        for src in _kernel_sources():
            obj = tmp / (src.stem + ".o")
            _run([cc, *flags, "-I", str(kdir), "-c", str(src), "-o", str(obj)])
            objs.append(str(obj))
        _run(["ar", "rcs", str(tmp / "libtq_kernels.a"), *objs])

    return _atomic_dir(final, build) / "libtq_kernels.a"


def build_shared(model_c: str, defines: Sequence[str] = ()) -> Path:
    """Compile one generated model.c against the kernel library into a shared object."""
    cc = _cc()
    lib = kernel_library(defines)
    kdir = codegen.kernels_dir()
    common = templates_dir() / "common"
    key = hashlib.sha256(model_c.encode() + str(lib).encode()).hexdigest()[:20]
    final = cache_dir() / "models" / key

    def build(tmp: Path) -> None:
        src = tmp / "model.c"
        src.write_text(model_c)
        _run([cc, *CFLAGS, *_define_flags(defines), "-shared", "-I", str(kdir),
              "-I", str(common), str(src), "-L", str(lib.parent), "-ltq_kernels", "-lm",
              "-o", str(tmp / "model.so")])

    return _atomic_dir(final, build) / "model.so"


_TYPES = {0: np.dtype("int8"), 1: np.dtype("uint8"), 2: np.dtype("int16"),
          3: np.dtype("int32"), 4: np.dtype("float32")}


class HostModel:
    """A model compiled with the native runtime for this machine.

    ``HostModel(model).invoke([x])`` returns the outputs as numpy arrays shaped
    like the model's output tensors.
    """

    def __init__(self, model: ir.Model, options: codegen.NativeOptions | None = None,
                 defines: Sequence[str] = ()) -> None:
        self.model = model
        self.sources = codegen.render(model, options)
        self.path = build_shared(self.sources.model_c, defines)
        lib = ctypes.CDLL(str(self.path))
        for name, restype, argtypes in (
            ("tq_init", ctypes.c_int, []),
            ("tq_invoke", ctypes.c_int, []),
            ("tq_input", ctypes.c_void_p, [ctypes.c_int]),
            ("tq_output", ctypes.c_void_p, [ctypes.c_int]),
            ("tq_input_bytes", ctypes.c_size_t, [ctypes.c_int]),
            ("tq_output_bytes", ctypes.c_size_t, [ctypes.c_int]),
            ("tq_input_type", ctypes.c_int, [ctypes.c_int]),
            ("tq_output_type", ctypes.c_int, [ctypes.c_int]),
            ("tq_num_inputs", ctypes.c_int, []),
            ("tq_num_outputs", ctypes.c_int, []),
            ("tq_arena_bytes", ctypes.c_size_t, []),
            ("tq_num_layers", ctypes.c_int, []),
            ("tq_layer_name", ctypes.c_char_p, [ctypes.c_int]),
            ("tq_model_id", ctypes.c_char_p, []),
            ("tq_runtime_name", ctypes.c_char_p, []),
            ("tq_output_scale", ctypes.c_float, [ctypes.c_int]),
            ("tq_output_zero_point", ctypes.c_int32, [ctypes.c_int]),
        ):
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self._lib = lib
        if lib.tq_init() != 0:
            raise BuildError("the native runtime failed to initialise on the host")

    @property
    def arena_bytes(self) -> int:
        return int(self._lib.tq_arena_bytes())

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        lib = self._lib
        n_in = lib.tq_num_inputs()
        if len(inputs) != n_in:
            raise DataError(f"the model takes {n_in} input(s), got {len(inputs)}",
                            hint="pass one array per model input")
        for i, (x, t) in enumerate(zip(inputs, self.model.input_tensors, strict=True)):
            arr = np.ascontiguousarray(x, dtype=t.np_dtype)
            size = lib.tq_input_bytes(i)
            if arr.nbytes != size:
                raise DataError(f"input {i} has {arr.nbytes} bytes, the model expects {size}",
                                hint=f"pass shape {list(t.shape)} {t.dtype}")
            ctypes.memmove(lib.tq_input(i), arr.ctypes.data, size)
        if lib.tq_invoke() != 0:
            raise BuildError("tq_invoke failed on the host build")
        outs = []
        for i, t in enumerate(self.model.output_tensors):
            size = lib.tq_output_bytes(i)
            raw = ctypes.string_at(lib.tq_output(i), size)
            outs.append(np.frombuffer(raw, dtype=_TYPES[lib.tq_output_type(i)])
                        .reshape(t.shape).copy())
        return outs
