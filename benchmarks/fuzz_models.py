"""Seeded mutation fuzzer: corrupt real .tflite files and drive tinyq's CLI with them.

    python benchmarks/fuzz_models.py                 # a quick run (what the test suite runs)
    python benchmarks/fuzz_models.py --long          # thousands of mutants, by hand
    python benchmarks/fuzz_models.py --mutants 500 --seed 7 --models DIR

Every mutant is one of:

* ``bit_flip``       one bit flipped (half the time in the flatbuffer's tables and vectors,
                     half anywhere, weights included);
* ``byte_overwrite`` 1-8 bytes set to random or boundary values (0x00, 0x7f, 0x80, 0xff);
* ``truncate``       the file cut short;
* ``field_rewrite``  one field rewritten in place through the schema (the ``tflite``
                     package's generated bindings locate it): a shape dimension, a tensor's
                     type or buffer index, a scale, a zero point, a quantized dimension, an
                     op's opcode index or tensor index, a builtin code, a subgraph
                     input/output, a buffer's offset/size (on the same model re-written with
                     its weights after the flatbuffer).

and runs through each command (the real entry point, ``tinyq.cli.main``) in a forked
child, so a segfault is seen as a signal, not the death of the fuzzer:

* ``inspect M`` (with the arena search: tflite-micro in its child processes),
* ``generate M --board mps2-an386 -o DIR``,
* ``evaluate M --data X.npy --interpreter tflm`` (the tflite-micro interpreter),
* ``run M --board mps2-an386`` up to the device: everything ``run`` does before it would
  start QEMU (model checks, random inputs, native code generation with its support and
  fit checks); the build step is replaced by code generation and a stop.

Each outcome is one of: ``success`` (exit 0), ``clean_error`` (non-zero exit, exactly one
``error:`` line of one line, no traceback), ``crash`` (killed by a signal), ``traceback``,
``hang`` (no end in :data:`CASE_TIMEOUT_S`) or ``unclear`` (non-zero exit without one
clean error line). Peak memory is the largest ``ru_maxrss`` of a case (its own process
and the interpreter/probe children it waited for).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Models fuzzed when --models is not given (they sit beside the checkout in CI).
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "models"
MODEL_GLOBS = ("mlperf-tiny/*.tflite", "tflm-examples/*.tflite")
MUTATIONS = ("bit_flip", "byte_overwrite", "truncate", "field_rewrite")
COMMANDS = ("inspect", "generate", "evaluate", "run")
OUTCOMES = ("success", "clean_error", "crash", "traceback", "hang", "unclear")
#: Outcomes that are bugs: every one must stay at zero.
FAILURES = ("crash", "traceback", "hang", "unclear")
#: One case (one command on one mutant) that has not ended after this long hangs. The
#: slowest clean case measured (inspect's arena search on vww_96_int8) takes ~3 s on a
#: loaded 2-core machine; 60 s is far beyond any honest run.
CASE_TIMEOUT_S = 60.0
#: Address space of one case (and the interpreter/probe processes it starts): a case that
#: believes a corrupt header and allocates more fails (a MemoryError, counted as a
#: traceback) instead of swapping a shared machine. Clean cases stay under 1 GB.
CASE_ADDRESS_SPACE_BYTES = 6 << 30
#: Mutants of the quick run (the test suite's): sized so all four commands on them add
#: well under a minute to CI on 2 shared cores.
QUICK_MUTANTS = 24
#: Mutants of --long (by hand; about 2,000 cases an hour per core).
LONG_MUTANTS = 2000
#: The board the generate/run cases target (emulated, plenty of flash and RAM).
BOARD = "mps2-an386"
#: Samples in the evaluate cases' data file.
EVAL_SAMPLES = 4
#: Exit code of a forked case whose exception escaped tinyq.cli.main.
ESCAPED_EXIT = 70
#: Exit code of a ``run`` case that reached the device stage (counted as success).
REACHED_DEVICE_EXIT = 0
#: Modules the fuzzer imports before forking, so each case starts warm.
WARM_MODULES = ("tinyq.analyze", "tinyq.model.checks", "tinyq.firmware.codegen", "tinyq.data",
                "tinyq.convert.evaluation", "tinyq.model.interpreters",
                "tinyq.firmware.native.lower", "tinyq.firmware.native.planner",
                "tinyq.firmware.native.support", "tinyq.convert.ptq", "tinyq.measure.runner",
                "tinyq.firmware.tflm.codegen")
#: The fields rewrites touch, per schema table: (field, vtable offset, struct format,
#: is a vector). The offsets are the generated bindings' (``tflite/Tensor.py``: ``Shape``
#: reads ``self._tab.Offset(4)``...).
FIELDS = {
    "opcode": (("deprecated_builtin_code", 4, "<b", False), ("builtin_code", 10, "<i", False),
               ("version", 8, "<i", False)),
    "buffer": (("offset", 6, "<Q", False), ("size", 8, "<Q", False)),
    "subgraph": (("inputs", 6, "<i", True), ("outputs", 8, "<i", True)),
    "tensor": (("shape", 4, "<i", True), ("type", 6, "<b", False), ("buffer", 8, "<I", False)),
    "quantization": (("scale", 8, "<f", True), ("zero_point", 10, "<q", True),
                     ("quantized_dimension", 16, "<i", False)),
    "op": (("opcode_index", 4, "<I", False), ("inputs", 6, "<i", True),
           ("outputs", 8, "<i", True), ("builtin_options_type", 10, "<B", False)),
}
#: Boundary values written by field rewrites, per field encoding.
INT_VALUES = (-(1 << 31), -2, -1, 0, 1, 2, 3, 7, 127, 128, 255, 65535, 1 << 20,
              (1 << 31) - 1)
FLOAT_VALUES = (float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-45, 1e-30, 1e30,
                3.4e38)
UINT64_VALUES = (0, 1, 2, 16, 1 << 20, 1 << 31, (1 << 63) - 1, (1 << 64) - 1)


# --------------------------------------------------------------------------- mutations

@dataclass(frozen=True)
class Slot:
    """A rewritable field: absolute byte position and struct format in the file."""

    where: str
    pos: int
    fmt: str


@dataclass
class Seed:
    """One original model, with what the mutators need to know about it."""

    name: str
    data: bytes
    external: bytes | None            # the same model with buffers after the flatbuffer
    slots: list[Slot] = field(default_factory=list)
    external_slots: list[Slot] = field(default_factory=list)
    structure: list[tuple[int, int]] = field(default_factory=list)   # non-weight ranges
    input_shape: tuple[int, ...] = ()
    input_dtype: str = "float32"


def _field_pos(tab, vt_offset: int) -> int | None:
    o = tab.Offset(vt_offset)
    return tab.Pos + o if o else None


def _vector(tab, vt_offset: int) -> tuple[int, int] | None:
    o = tab.Offset(vt_offset)
    return (tab.Vector(o), tab.VectorLen(o)) if o else None


def _slots(data: bytes) -> tuple[list[Slot], list[tuple[int, int]]]:
    """Every scalar field the rewrites may touch, and the byte ranges of weights."""
    import tflite

    model = tflite.Model.GetRootAs(data, 0)
    slots: list[Slot] = []
    weights: list[tuple[int, int]] = []

    def scalar(where: str, tab, vt: int, fmt: str) -> None:
        pos = _field_pos(tab, vt)
        if pos is not None:
            slots.append(Slot(where, pos, fmt))

    def vector(where: str, tab, vt: int, fmt: str) -> None:
        found = _vector(tab, vt)
        if found:
            start, n = found
            size = struct.calcsize(fmt)
            slots.extend(Slot(f"{where}[{j}]", start + j * size, fmt) for j in range(n))

    def fields(kind: str, label: str, tab) -> None:
        for name, vt, fmt, is_vector in FIELDS[kind]:
            (vector if is_vector else scalar)(f"{label} {name}", tab, vt, fmt)

    for i in range(model.OperatorCodesLength()):
        fields("opcode", f"opcode {i}", model.OperatorCodes(i)._tab)
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        found = _vector(buf._tab, 4)
        if found and found[1] > 0:
            weights.append((found[0], found[0] + found[1]))
        fields("buffer", f"buffer {b}", buf._tab)
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        fields("subgraph", f"subgraph {s}", sub._tab)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            fields("tensor", f"tensor {t}", tensor._tab)
            if tensor.Quantization() is not None:
                fields("quantization", f"tensor {t}", tensor.Quantization()._tab)
        for o in range(sub.OperatorsLength()):
            fields("op", f"op {o}", sub.Operators(o)._tab)
    weights.sort()
    structure, at = [], 0
    for lo, hi in weights:
        if lo > at:
            structure.append((at, lo))
        at = max(at, hi)
    if at < len(data):
        structure.append((at, len(data)))
    return slots, structure


def load_seed(path: Path) -> Seed:
    from tinyq.model.tflite_reader import read_model_bytes
    from tinyq.model.tflite_writer import write_model

    data = path.read_bytes()
    model = read_model_bytes(data, str(path))
    try:
        external = write_model(model, external_buffers=True)
    except Exception:  # noqa: BLE001 - a model the writer cannot re-write: no such rewrites
        external = None
    seed = Seed(path.name, data, external)
    seed.slots, seed.structure = _slots(data)
    if external is not None:
        seed.external_slots = [s for s in _slots(external)[0] if s.where.startswith("buffer")]
    first = model.input_tensors[0]
    seed.input_shape, seed.input_dtype = tuple(first.shape), first.dtype
    return seed


def _value_for(fmt: str, rng: random.Random) -> int | float:
    if fmt == "<f":
        return rng.choice(FLOAT_VALUES)
    if fmt == "<Q":
        return rng.choice(UINT64_VALUES)
    bits = struct.calcsize(fmt) * 8
    signed = fmt[-1].islower()
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    value = rng.choice(INT_VALUES + (rng.randint(lo, hi),))
    return min(max(value, lo), hi)


def mutate(seed: Seed, rng: random.Random, kind: str) -> tuple[bytes, str]:
    """One mutant of ``seed`` and a description of what was done."""
    data = bytearray(seed.data)
    if kind == "bit_flip":
        if seed.structure and rng.random() < 0.5:
            lo, hi = rng.choice(seed.structure)
            pos = rng.randrange(lo, hi)
        else:
            pos = rng.randrange(len(data))
        bit = rng.randrange(8)
        data[pos] ^= 1 << bit
        return bytes(data), f"bit {bit} of byte {pos} flipped"
    if kind == "byte_overwrite":
        lo, hi = rng.choice(seed.structure) if seed.structure else (0, len(data))
        pos = rng.randrange(lo, hi)
        n = min(rng.randint(1, 8), len(data) - pos)
        for k in range(n):
            data[pos + k] = rng.choice((0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        return bytes(data), f"{n} byte(s) at {pos} overwritten"
    if kind == "truncate":
        cut = rng.choice((0, 4, 8, 16, rng.randrange(len(data)), len(data) - 1,
                          len(data) // 2))
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    use_external = seed.external is not None and seed.external_slots and rng.random() < 0.15
    if use_external:
        data = bytearray(seed.external)
        slot = rng.choice(seed.external_slots)
    else:
        slot = rng.choice(seed.slots)
    value = _value_for(slot.fmt, rng)
    struct.pack_into(slot.fmt, data, slot.pos, value)
    layout = " (external buffers)" if use_external else ""
    return bytes(data), f"{slot.where} := {value!r}{layout}"


# --------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Outcome:
    kind: str
    code: int
    message: str
    seconds: float
    maxrss_kb: int


class StopBeforeDevice(Exception):
    """Raised where ``run`` would start building for QEMU: the fuzz case ends there."""


def _stop_before_device(model_path, board, runtime, options, progress=None):
    """Replaces ``tinyq.measure.runner.build_firmware`` in a forked ``run`` case: generate the
    project (support and fit checks included), then stop before compiling."""
    from tinyq.firmware.codegen import generate

    generate(model_path, board, runtime=runtime, out_dir=Path("run-project"),
             options=options.generate)
    raise StopBeforeDevice


def _child(argv: Sequence[str], workdir: Path) -> None:
    """In the forked child: run the CLI, exit with its code (never returns)."""
    code = ESCAPED_EXIT
    try:
        faulthandler.disable()            # a crash is counted from the exit status
        resource.setrlimit(resource.RLIMIT_AS, (CASE_ADDRESS_SPACE_BYTES,) * 2)
        os.chdir(workdir)
        out = os.open("stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open("stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
        from tinyq.cli import main
        from tinyq.measure import runner as run_module

        run_module.build_firmware = _stop_before_device
        try:
            code = int(main(list(argv)) or 0)
        except StopBeforeDevice:
            code = REACHED_DEVICE_EXIT
        except SystemExit as exc:                      # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - an escaped exception is what we count
        traceback.print_exc()
        code = ESCAPED_EXIT
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def classify(status: int, stderr: str) -> tuple[str, str]:
    """(outcome, message) of a finished case from its wait status and stderr."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if os.WIFSIGNALED(status):
        return "crash", signal.Signals(os.WTERMSIG(status)).name
    code = os.WEXITSTATUS(status)
    if "Traceback (most recent call last)" in stderr or code == ESCAPED_EXIT:
        last = lines[-1] if lines else ""
        return "traceback", last[:300]
    if code == 0:
        return "success", ""
    other = [line for line in lines if not line.startswith(("error: ", "warning: ", "["))]
    if len(errors) == 1 and not other:
        return "clean_error", errors[0][len("error: "):]
    return "unclear", " | ".join(lines)[:300]


def run_case(argv: Sequence[str], workdir: Path, timeout: float = CASE_TIMEOUT_S) -> Outcome:
    """Run ``tinyq ARGV`` in a forked child in ``workdir``; classify how it ended."""
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads: the
        pid = os.fork()                                       # child only runs the CLI
    if pid == 0:  # pragma: no cover - the child
        _child(argv, workdir)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return Outcome("hang", -1, f"no end in {timeout:g} s", time.monotonic() - start,
                           usage.ru_maxrss)
        time.sleep(0.005)
    stderr = (workdir / "stderr").read_text("utf-8", "replace")
    kind, message = classify(status, stderr)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return Outcome(kind, code, message, time.monotonic() - start, usage.ru_maxrss)


def command_argv(command: str, model: Path, data: Path, out: Path) -> list[str]:
    if command == "inspect":
        return ["inspect", str(model)]
    if command == "generate":
        return ["generate", str(model), "--board", BOARD, "-o", str(out)]
    if command == "evaluate":
        return ["evaluate", str(model), "--data", str(data), "--interpreter", "tflm"]
    if command == "run":
        return ["run", str(model), "--board", BOARD]
    raise ValueError(command)


def _eval_data(seed: Seed, path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (EVAL_SAMPLES, *seed.input_shape[1:])
    if seed.input_dtype.startswith("float"):
        x = rng.normal(size=shape).astype(np.float32)
    else:
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    np.save(path, x)


# --------------------------------------------------------------------------- driver

@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)        # outcome -> cases
    per_command: dict[str, Counter] = field(default_factory=dict)
    mutants: int = 0
    cases: int = 0
    peak_rss_kb: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)       # one line per failing case

    def table(self) -> str:
        head = ("command",) + OUTCOMES + ("peak MB",)
        rows = []
        for command, counts in self.per_command.items():
            rows.append((command, *(str(counts[o]) for o in OUTCOMES),
                         f"{counts['_peak_kb'] / 1024:.0f}"))
        rows.append(("all", *(str(self.counts[o]) for o in OUTCOMES),
                     f"{self.peak_rss_kb / 1024:.0f}"))
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head)] + [fmt.format(*r) for r in rows]
        lines.append(f"{self.mutants} mutants, {self.cases} cases in {self.seconds:.1f} s")
        return "\n".join(lines)


def find_models(models_dir: Path) -> list[Path]:
    return sorted(p for g in MODEL_GLOBS for p in models_dir.glob(g))


def fuzz(models: Iterable[Path], mutants: int, seed: int, workdir: Path,
         commands: Sequence[str] = COMMANDS,
         on_case: Callable[[str], None] | None = None) -> Report:
    """Make ``mutants`` mutants (seeded), run each through ``commands``; count outcomes."""
    # Import what every case needs once, so each fork starts warm (a cold case spends
    # ~0.2 s importing and building the parser).
    import importlib

    import tinyq.cli

    for module in WARM_MODULES:
        importlib.import_module(module)
    tinyq.cli.build_parser()

    seeds = [load_seed(p) for p in models]
    if not seeds:
        raise SystemExit("no models to fuzz")
    rng = random.Random(seed)
    report = Report(per_command={c: Counter() for c in commands})
    start = time.monotonic()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    for n in range(mutants):
        s = seeds[n % len(seeds)]
        kind = MUTATIONS[(n // len(seeds)) % len(MUTATIONS)]
        data, what = mutate(s, rng, kind)
        case_dir = workdir / f"m{n:05d}"
        case_dir.mkdir(parents=True, exist_ok=True)
        model = case_dir / "model.tflite"
        model.write_bytes(data)
        eval_data = case_dir / "x.npy"
        _eval_data(s, eval_data)
        report.mutants += 1
        for command in commands:
            argv = command_argv(command, model, eval_data, case_dir / "project")
            outcome = run_case(argv, case_dir / command)
            report.cases += 1
            report.counts[outcome.kind] += 1
            counts = report.per_command[command]
            counts[outcome.kind] += 1
            counts["_peak_kb"] = max(counts["_peak_kb"], outcome.maxrss_kb)
            report.peak_rss_kb = max(report.peak_rss_kb, outcome.maxrss_kb)
            line = (f"{outcome.kind:<11} {command:<8} {s.name} {kind}: {what} -> "
                    f"exit {outcome.code} in {outcome.seconds:.2f} s, "
                    f"{outcome.maxrss_kb // 1024} MB: {outcome.message}")
            if outcome.kind in FAILURES:
                report.failures.append(line)
            if on_case:
                on_case(line)
        shutil.rmtree(case_dir, ignore_errors=True)     # projects are ~1 MB each
    report.seconds = time.monotonic() - start
    # grandchildren (interpreter and converter children) show only in RUSAGE_CHILDREN,
    # whose maximum also holds every earlier child of this process: count it only when
    # it rose during this run
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children > children_before:
        report.peak_rss_kb = max(report.peak_rss_kb, children)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true",
                        help=f"{LONG_MUTANTS} mutants instead of {QUICK_MUTANTS}")
    parser.add_argument("--mutants", type=int, help="how many mutants (overrides --long)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR,
                        help="folder holding mlperf-tiny/ and tflm-examples/")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"comma-separated subset of {','.join(COMMANDS)}")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    n = args.mutants or (LONG_MUTANTS if args.long else QUICK_MUTANTS)
    models = find_models(args.models)
    commands = [c for c in args.commands.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="tinyq-fuzz-") as tmp:
        os.environ.setdefault("TINYQ_CACHE_DIR", str(Path(tmp) / "cache"))
        report = fuzz(models, n, args.seed, Path(tmp),
                      commands=commands, on_case=print if args.verbose else None)
    for line in report.failures:
        print(line)
    print(report.table())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
