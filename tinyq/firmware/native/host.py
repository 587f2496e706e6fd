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

from tinyq.cache import cached_folder
from tinyq.errors import BuildError, DataError, ToolNotFoundError
from tinyq.firmware.native import codegen
from tinyq.model import ir
from tinyq.resources import templates_dir
from tinyq.subprocesses import run_process

logger = logging.getLogger(__name__)

#: host C compiler (override with $CC)
DEFAULT_CC = "gcc"
#: flags for kernels and model.c; -Werror keeps the kernels warning-clean on the host too.
#: No -fno-strict-aliasing or -fwrapv: the kernels rely on neither (tq_kernels.h), and the
#: host must build them as the firmware does.
CFLAGS = ("-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror")
#: the sanitizer build: every undefined behaviour UBSan and ASan detect ends the run
#: (float-cast-overflow is not part of gcc's -fsanitize=undefined; it catches NaN -> int)
SANITIZE_FLAGS = ("-std=c99", "-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
                  "-Werror", "-fsanitize=undefined,address,float-cast-overflow",
                  "-fno-sanitize-recover=all")
#: seconds one compiler invocation may take before we call it hung
COMPILE_TIMEOUT_S = 300
#: seconds one sanitized inference may take (the largest random case runs in well under 1 s;
#: ASan slows it ~3x)
SANITIZED_RUN_TIMEOUT_S = 60


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


def kernel_library(defines: Sequence[str] = (), cflags: Sequence[str] = CFLAGS) -> Path:
    """The static library of every kernel, compiled once per kernel-source hash.

    ``defines`` are preprocessor macros, e.g. ``("TQ_SIMD_EMULATE",)`` to run the
    SIMD (DSP) code paths with portable stand-ins on the host.
    """
    cc = _cc()
    kdir = codegen.kernels_dir()
    flags = [*cflags, *_define_flags(defines)]
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

    def _own_bytes(self) -> list[np.ndarray]:
        """Per op, a mask of the arena bytes it may touch: its own tensors and scratch."""
        plan, arena = self.sources.plan, max(self.arena_bytes, 1)
        masks = []
        for op in self.model.operators:
            own = np.zeros(arena, dtype=bool)
            for t in (*op.inputs, *op.outputs):
                if t >= 0 and t in plan.offsets:
                    own[plan.offsets[t]:plan.offsets[t] + self.model.tensors[t].nbytes] = True
            call = self.sources.calls[op.index] if self.sources.calls else None
            if call is not None and call.scratch_bytes:
                start = plan.scratch_offsets[op.index]
                own[start:start + call.scratch_bytes] = True
            masks.append(own)
        return masks

    def invoke_poisoned(self, inputs: Sequence[np.ndarray], seed: int = 0
                        ) -> tuple[list[np.ndarray], list[str]]:
        """``invoke`` with every arena byte outside the running op's tensors poisoned.

        Before each op the bytes it does not own are saved and overwritten with random
        bytes; after it they must be unchanged (else the op wrote outside its tensors)
        and are restored. An op that reads outside its tensors reads the poison, so its
        output differs from an unpoisoned run. Returns (outputs, violations).
        """
        lib = self._lib
        masks = self._own_bytes()
        first_in = self.model.inputs[0]
        base = (lib.tq_input(0) or 0) - self.sources.plan.offsets[first_in]
        arena = np.ctypeslib.as_array((ctypes.c_uint8 * self.arena_bytes).from_address(base))
        rng = np.random.default_rng(seed)
        saved: dict[str, np.ndarray] = {}
        violations: list[str] = []

        @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int)
        def hook(layer: int, end: int) -> None:
            outside = ~masks[layer]
            if not end:
                saved["bytes"] = arena[outside].copy()
                saved["poison"] = rng.integers(0, 256, int(outside.sum()), dtype=np.uint8)
                arena[outside] = saved["poison"]
                return
            changed = int(np.count_nonzero(arena[outside] != saved["poison"]))
            if changed:
                op = self.model.operators[layer]
                violations.append(f"op {layer} {op.opcode} wrote {changed} byte(s) outside "
                                  f"its tensors")
            arena[outside] = saved["bytes"]

        fn_type = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int)
        lib.tq_set_layer_hook.argtypes = [fn_type]
        lib.tq_set_layer_hook(hook)
        try:
            outs = self.invoke(inputs)
        finally:
            lib.tq_set_layer_hook(ctypes.cast(None, fn_type))
        return outs, violations

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


#: the sanitizer build's main(): model inputs on stdin, outputs on stdout (raw bytes)
_DRIVER_C = r"""
#include <stdio.h>
#include "tq_runtime.h"
int main(void)
{
    int i;
    if (tq_init() != 0) {
        return 2;
    }
    for (i = 0; i < tq_num_inputs(); ++i) {
        if (fread(tq_input(i), 1, tq_input_bytes(i), stdin) != tq_input_bytes(i)) {
            return 3;
        }
    }
    if (tq_invoke() != 0) {
        return 4;
    }
    for (i = 0; i < tq_num_outputs(); ++i) {
        fwrite(tq_output(i), 1, tq_output_bytes(i), stdout);
    }
    return 0;
}
"""


def build_sanitized(model_c: str, defines: Sequence[str] = ()) -> Path:
    """Compile model.c, every kernel and a stdin/stdout driver with UBSan + ASan."""
    cc = _cc()
    kdir = codegen.kernels_dir()
    flags = [*SANITIZE_FLAGS, *_define_flags(defines)]
    lib = kernel_library(defines, SANITIZE_FLAGS)
    key = hashlib.sha256(model_c.encode() + str(lib).encode()).hexdigest()[:20]
    final = cache_dir() / "sanitized" / key

    def build(tmp: Path) -> None:
        (tmp / "model.c").write_text(model_c)
        (tmp / "driver.c").write_text(_DRIVER_C)
        _run([cc, *flags, "-I", str(kdir), "-I", str(templates_dir() / "common"),
              str(tmp / "model.c"), str(tmp / "driver.c"), "-L", str(lib.parent),
              "-ltq_kernels", "-lm", "-o", str(tmp / "model")])

    return _atomic_dir(final, build) / "model"


class SanitizerFinding(BuildError):
    """The sanitizer build stopped on undefined behaviour or a bad memory access."""


class SanitizedModel:
    """A model built with ``-fsanitize=undefined,address``; each invoke is one process."""

    def __init__(self, model: ir.Model, options: codegen.NativeOptions | None = None,
                 defines: Sequence[str] = ()) -> None:
        self.model = model
        self.path = build_sanitized(codegen.render(model, options).model_c, defines)

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        data = b"".join(np.ascontiguousarray(x, dtype=t.np_dtype).tobytes()
                        for x, t in zip(inputs, self.model.input_tensors, strict=True))
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        try:
            # guard=False: one short run that starts nothing, thousands of times in tests
            proc = run_process([str(self.path)], input=data, capture_output=True,
                               timeout=SANITIZED_RUN_TIMEOUT_S, env=env, guard=False)
        except subprocess.TimeoutExpired as exc:
            raise SanitizerFinding(f"the sanitized build hung for {SANITIZED_RUN_TIMEOUT_S} s",
                                   hint="a kernel loops forever on this model") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            first = next((ln for ln in err.splitlines()
                          if "runtime error" in ln or "ERROR:" in ln), err.strip()[:200])
            raise SanitizerFinding(f"sanitizer: {first}", hint="a tinyq kernel bug", log=err)
        outs, pos = [], 0
        for t in self.model.output_tensors:
            n = t.nbytes
            outs.append(np.frombuffer(proc.stdout[pos:pos + n], dtype=t.np_dtype)
                        .reshape(t.shape).copy())
            pos += n
        return outs
