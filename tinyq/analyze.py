"""Know before you flash: ops, MACs, weights, arena, compatibility and board fit.

``inspect(model)`` returns an ``InspectReport`` (frozen; ``to_json()``):

* every op with its tensors (shape, dtype, scale/zero-point; per-channel as count and
  range), its constant (weight) bytes and its MACs;
* totals: MACs, weight bytes, the op set with versions;
* activation memory: the **smallest arena that allocates in the tflite-micro
  interpreter**, found by bisection in child processes (a too-small arena can kill
  the process), cached by model hash; and tinyq's native static plan
  (``tinyq.firmware.native.planner.plan``);
* problems from ``tinyq.model.checks`` for the chosen runtime;
* with a board: a fit table (flash and RAM needed vs available).

MACs (multiply-accumulates against weights, so totals compare with published figures)
are counted per op as :data:`MAC_RULES` says; docs/supported_ops.md is generated from it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinyq.board_profile import Board
from tinyq.errors import FitError, ModelError, ToolError, UnsupportedError, UserInputError
from tinyq.firmware.native import support as native_support  # registers "native"
from tinyq.model import ir
from tinyq.model.checks import PREPARE_FAILED_HINT, Problem, problems
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import run_process

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- constants

#: TFLM library code (.text) for the KWS op set, measured with arm-none-eabi-gcc 12.2
#: for mps2-an386 (TFLM built from source): 36.5 KB with reference kernels ...
TFLM_CODE_BYTES_REFERENCE = 37_376
#: ... and 80.6 KB with CMSIS-NN kernels.
TFLM_CODE_BYTES_CMSIS_NN = 82_534
#: tinyq native runtime code (kernels + generated calls, without weights). ESTIMATE
#: until measured from a built ELF: the aim is < 36.5 KB (TFLM's) for the KWS op set.
NATIVE_CODE_BYTES_ESTIMATE = 24 * 1024
#: Harness code (startup, vector table, UART, protocol, counters). ESTIMATE.
HARNESS_CODE_BYTES_ESTIMATE = 8 * 1024
#: Static RAM (.data+.bss) of the harness besides the input buffer: command line
#: (80 B), UART state, counters, result formatting. ESTIMATE.
HARNESS_STATIC_RAM_ESTIMATE = 1024
#: Static RAM of the TFLM objects outside the arena (MicroInterpreter, op resolver,
#: allocator handles). ESTIMATE.
TFLM_STATIC_RAM_ESTIMATE = 2048
#: Static RAM of the native runtime outside its arena (quantization tables are const
#: in flash). ESTIMATE.
NATIVE_STATIC_RAM_ESTIMATE = 256

#: Arena sizes are searched in steps of 16 bytes (TFLM aligns arena use to 16).
ARENA_STEP = 16
#: Give up the search above this arena (no Cortex-M has this much RAM).
ARENA_LIMIT_BYTES = 256 << 20
#: Wall-clock limit for one probe child process (a hung interpreter is killed).
PROBE_CHILD_TIMEOUT_S = 300
#: How many probe children may crash before the search gives up.
MAX_PROBE_CHILDREN = 40
#: Bump when the probe's method changes, so cached arenas are measured again.
ARENA_CACHE_VERSION = 1

# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class QuantSummary:
    count: int
    axis: int
    scale_min: float
    scale_max: float
    zero_point_min: int
    zero_point_max: int

    @property
    def per_channel(self) -> bool:
        return self.count > 1

    def text(self) -> str:
        if not self.per_channel:
            return f"s={self.scale_min:.6g} zp={self.zero_point_min}"
        zp = (str(self.zero_point_min) if self.zero_point_min == self.zero_point_max
              else f"[{self.zero_point_min}..{self.zero_point_max}]")
        return f"{self.count}ch s=[{self.scale_min:.3g}..{self.scale_max:.3g}] zp={zp}"


@dataclass(frozen=True)
class TensorSummary:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    constant: bool
    nbytes: int
    quant: QuantSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        q = self.quant
        out: dict[str, Any] = {
            "index": self.index, "name": self.name, "shape": list(self.shape),
            "dtype": self.dtype, "constant": self.constant, "bytes": self.nbytes,
            "scale": None, "zero_point": None, "per_channel": None,
        }
        if q is not None and not q.per_channel:
            out["scale"], out["zero_point"] = q.scale_min, q.zero_point_min
        elif q is not None:
            out["per_channel"] = {"count": q.count, "axis": q.axis,
                                  "scale_min": q.scale_min, "scale_max": q.scale_max,
                                  "zero_point_min": q.zero_point_min,
                                  "zero_point_max": q.zero_point_max}
        return out

    def text(self) -> str:
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        q = f" {self.quant.text()}" if self.quant else ""
        return f"{shape} {self.dtype}{q}"


@dataclass(frozen=True)
class OpReport:
    index: int
    type: str
    version: int
    inputs: tuple[TensorSummary | None, ...]   # None: omitted optional input
    outputs: tuple[TensorSummary, ...]
    weights_bytes: int
    macs: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.type, "version": self.version,
                "macs": self.macs, "weights_bytes": self.weights_bytes,
                "options": {k: v for k, v in self.options.items() if not isinstance(v, bytes)},
                "inputs": [t.to_dict() if t else None for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}


@dataclass(frozen=True)
class ArenaMeasurement:
    """The smallest tflite-micro arena that allocates (a multiple of 16 bytes)."""

    arena_bytes: int
    probes: int          # allocation attempts made (0 when cached)
    crashes: int         # probe children that died (SIGSEGV) on a too-small arena
    seconds: float
    cached: bool
    tflite_micro: str    # interpreter version it was measured with


@dataclass(frozen=True)
class Fit:
    board: str
    runtime: str
    flash_needed: int
    flash_available: int
    ram_needed: int
    ram_available: int
    flash_parts: Mapping[str, int]
    ram_parts: Mapping[str, int]
    arena_measured: bool          # False: the arena figure is a lower bound (not measured)
    arena_bytes: int = 0          # the arena figure the fit was computed with
    cmsis_nn: bool = False        # TFLM code size with CMSIS-NN kernels

    @property
    def flash_over(self) -> int:
        return max(0, self.flash_needed - self.flash_available)

    @property
    def ram_over(self) -> int:
        return max(0, self.ram_needed - self.ram_available)

    @property
    def fits(self) -> bool:
        return self.flash_over == 0 and self.ram_over == 0

    def summary(self) -> str:
        """One line: fits, or which memory is over and by how many bytes."""
        if self.fits:
            return (f"fits {self.board}: flash {self.flash_needed:,}/{self.flash_available:,} B, "
                    f"RAM {self.ram_needed:,}/{self.ram_available:,} B")
        over = []
        if self.flash_over:
            over.append(f"needs {self.flash_over:,} bytes more flash")
        if self.ram_over:
            over.append(f"needs {self.ram_over:,} bytes more RAM")
        return f"does not fit {self.board}: " + " and ".join(over) + f" ({self.runtime})"

    def to_dict(self) -> dict[str, Any]:
        return {"board": self.board, "runtime": self.runtime,
                "flash_needed": self.flash_needed, "flash_available": self.flash_available,
                "ram_needed": self.ram_needed, "ram_available": self.ram_available,
                "fits": self.fits, "flash_over": self.flash_over, "ram_over": self.ram_over,
                "flash_parts": dict(self.flash_parts), "ram_parts": dict(self.ram_parts),
                "arena_measured": self.arena_measured}


@dataclass(frozen=True)
class InspectReport:
    path: str | None
    sha256: str
    size_bytes: int
    runtime: str
    num_subgraphs: int
    ops: tuple[OpReport, ...]
    inputs: tuple[TensorSummary, ...]
    outputs: tuple[TensorSummary, ...]
    macs: int
    weights_bytes: int
    activation_bytes: int         # sum of all non-constant tensors (no reuse)
    op_set: tuple[tuple[str, int], ...]
    arena_tflm: ArenaMeasurement | None
    arena_native: int | None
    problems: tuple[Problem, ...]
    fit: Fit | None

    @property
    def unsupported(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity != "error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.path, "model_sha256": self.sha256, "size_bytes": self.size_bytes,
            "num_subgraphs": self.num_subgraphs,
            "runtime": self.runtime,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "layers": [op.to_dict() for op in self.ops],
            "macs": self.macs,
            "weights_bytes": self.weights_bytes,
            "activation_bytes": self.activation_bytes,
            "op_set": [{"op": name, "version": v} for name, v in self.op_set],
            "arena_bytes": {"tflm": self.arena_tflm.arena_bytes if self.arena_tflm else None,
                            "native": self.arena_native},
            "arena_search": asdict(self.arena_tflm) if self.arena_tflm else None,
            "unsupported": [p.to_dict() for p in self.unsupported],
            "warnings": [p.to_dict() for p in self.warnings],
            "fit": self.fit.to_dict() if self.fit else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` record (kind "inspect")."""
        from tinyq.records import stamp

        return stamp("inspect", self.to_dict())

    def to_text(self) -> str:
        """The record as indented JSON text."""
        return json.dumps(self.to_json(), indent=2) + "\n"


# ---------------------------------------------------------------------------- per op


def _quant_summary(q: ir.Quantization | None) -> QuantSummary | None:
    if q is None or not q.scale:
        return None
    return QuantSummary(count=len(q.scale), axis=q.axis, scale_min=min(q.scale),
                        scale_max=max(q.scale), zero_point_min=min(q.zero_point),
                        zero_point_max=max(q.zero_point))


def stored_bytes(t: ir.Tensor) -> int:
    """Bytes a constant occupies in the .tflite (int4 is packed two per byte)."""
    if t.data is None:
        return 0
    return (len(t.data) + 1) // 2 if t.dtype == "int4" else len(t.data)


def tensor_nbytes(t: ir.Tensor) -> int:
    """Bytes of a tensor's values; 0 for dtypes without a fixed size (string, resource)."""
    return t.nbytes if t.dtype in ir.DTYPES else 0


def summarize_tensor(t: ir.Tensor) -> TensorSummary:
    return TensorSummary(index=t.index, name=t.name, shape=t.shape, dtype=t.dtype,
                         constant=t.is_constant,
                         nbytes=stored_bytes(t) if t.is_constant else tensor_nbytes(t),
                         quant=_quant_summary(t.quant))


#: How each op's MACs are counted (``op_macs``); every other op counts 0 (pooling,
#: elementwise ops, softmax... do not multiply-accumulate against weights).
MAC_RULES: Mapping[str, str] = MappingProxyType({
    "CONV_2D": "output elements x kernel height x kernel width x input channels per group "
               "(the filter's last dimension)",
    "DEPTHWISE_CONV_2D": "output elements x kernel height x kernel width",
    "FULLY_CONNECTED": "output elements (batch rows x units) x input features",
    "TRANSPOSE_CONV": "input elements x kernel height x kernel width x output channels "
                      "(each input value is multiplied into a kernel-sized patch of every "
                      "output channel)",
    "BATCH_MATMUL": "output elements x the contracted dimension (the left operand's "
                    "columns, or rows with adj_x); both operands may be activations",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "batch x time steps x (elements of every input-to-gate "
                                    "and recurrent-to-gate weight matrix present, plus the "
                                    "peephole vectors and the projection matrix when "
                                    "present): one MAC per weight per step; the gates' "
                                    "elementwise products are not counted",
    "SVDF": "batch x (feature weights + time weights elements): each step multiplies the "
            "input by the feature weights and the state by the time weights",
})

#: UNIDIRECTIONAL_SEQUENCE_LSTM inputs that are weights: input-to-gate (1-4),
#: recurrent-to-gate (5-8), peephole (9-11) and projection (16) (TFLite's operand order).
LSTM_WEIGHT_INPUTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16)


def _lstm_macs(model: ir.Model, op: ir.Operator) -> int:
    inp = model.tensors[op.inputs[0]]
    if len(inp.shape) != 3:
        return 0
    per_step = sum(model.tensors[op.inputs[i]].size for i in LSTM_WEIGHT_INPUTS
                   if i < len(op.inputs) and op.inputs[i] >= 0)
    return inp.shape[0] * inp.shape[1] * per_step


def op_macs(model: ir.Model, op: ir.Operator) -> int:
    """Multiply-accumulates of one op, counted as :data:`MAC_RULES` says."""
    if op.opcode not in MAC_RULES:
        return 0
    if len(op.inputs) < 2 or op.inputs[1] < 0 or not op.outputs:
        return 0
    out = model.tensors[op.outputs[0]]
    weights = model.tensors[op.inputs[1]]
    if op.opcode == "CONV_2D" and len(weights.shape) == 4:
        _, kh, kw, in_per_group = weights.shape
        return out.size * kh * kw * in_per_group
    if op.opcode == "DEPTHWISE_CONV_2D" and len(weights.shape) == 4:
        _, kh, kw, _ = weights.shape
        return out.size * kh * kw
    if op.opcode == "FULLY_CONNECTED" and weights.shape:
        return out.size * weights.shape[-1]
    if op.opcode == "TRANSPOSE_CONV" and len(weights.shape) == 4 and len(op.inputs) > 2:
        out_ch, kh, kw, _ = weights.shape
        return model.tensors[op.inputs[2]].size * kh * kw * out_ch
    if op.opcode == "BATCH_MATMUL":
        lhs = model.tensors[op.inputs[0]].shape
        if len(lhs) < 2:
            return 0
        return out.size * (lhs[-2] if op.options.get("adj_x") else lhs[-1])
    if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        return _lstm_macs(model, op)
    if op.opcode == "SVDF" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        batch = model.tensors[op.inputs[0]].shape[0] if model.tensors[op.inputs[0]].shape else 1
        return batch * (weights.size + model.tensors[op.inputs[2]].size)
    return 0


def op_weights_bytes(model: ir.Model, op: ir.Operator) -> int:
    seen = {i for i in op.inputs if i >= 0}
    return sum(stored_bytes(model.tensors[i]) for i in seen)


def op_report(model: ir.Model, op: ir.Operator) -> OpReport:
    return OpReport(
        index=op.index, type=op.opcode if op.opcode != "CUSTOM" else f"CUSTOM:{op.custom_code}",
        version=op.version,
        inputs=tuple(summarize_tensor(model.tensors[i]) if i >= 0 else None for i in op.inputs),
        outputs=tuple(summarize_tensor(model.tensors[i]) for i in op.outputs),
        weights_bytes=op_weights_bytes(model, op), macs=op_macs(model, op),
        options=MappingProxyType(dict(op.options)))


def weights_bytes(model: ir.Model) -> int:
    """Constant bytes of subgraph 0 (each tensor once, even if several ops use it)."""
    return sum(stored_bytes(t) for t in model.tensors)


def activation_bytes(model: ir.Model) -> int:
    return sum(tensor_nbytes(t) for t in model.tensors if not t.is_constant)


# ---------------------------------------------------------------------------- arena search


def cache_dir() -> Path:
    """``$TINYQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/tinyq``, else ``~/.cache/tinyq``."""
    env = os.environ.get("TINYQ_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tinyq"


def _tflite_micro_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError as exc:
        raise ToolError("the tflite-micro interpreter is not installed",
                        hint="pip install tflite-micro (see pyproject.toml for the pin)") from exc


def _cache_path(sha256: str, tflm_version: str) -> Path:
    return cache_dir() / "arena" / f"{sha256}-{tflm_version}-v{ARENA_CACHE_VERSION}.json"


def _floor16(n: int) -> int:
    return n // ARENA_STEP * ARENA_STEP


def _ceil16(n: int) -> int:
    return (n + ARENA_STEP - 1) // ARENA_STEP * ARENA_STEP


def arena_search_bounds(model: ir.Model) -> tuple[int, int]:
    """(lo, hi): an arena of ``lo`` bytes cannot allocate (the largest activation tensor
    alone does not fit with TFLM's bookkeeping); ``hi`` is a first guess that likely
    does (the child doubles it when not)."""
    sizes = [tensor_nbytes(t) for t in model.tensors if not t.is_constant]
    lo = _floor16(max(sizes, default=0))
    hi = _ceil16(2 * activation_bytes(model) + 1024 + 512 * len(model.tensors))
    return lo, max(hi, lo + ARENA_STEP)


def _run_probe_child(model_bytes: bytes, lo: int, hi: int) -> tuple[list[str], int, str]:
    from tinyq._convert_worker import child_command

    cmd, env = child_command("_arena_probe", str(lo), str(hi), str(ARENA_LIMIT_BYTES))
    try:
        proc = run_process(cmd, input=model_bytes, capture_output=True, env=env,
                           timeout=PROBE_CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"the tflite-micro arena probe hung for {PROBE_CHILD_TIMEOUT_S} s",
                        hint="run with --no-arena-search and report the model") from exc
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    return lines, proc.returncode, proc.stderr.decode("utf-8", "replace")


def _prepare_error(text: str, where: str = "the model") -> Exception:
    flat = " ".join(text.split())
    if flat.startswith("MemoryError"):
        return UnsupportedError(f"{where} needs more memory than the tflite-micro interpreter "
                                f"can get on this host ({flat[:100]})",
                                hint="a microcontroller model is far smaller: check its tensor "
                                     "shapes with `tinyq inspect --no-arena-search`")
    if flat.startswith("corrupt "):
        return ModelError(f"{where}: the tflite-micro interpreter cannot read it "
                          f"({flat[len('corrupt '):][:200]})",
                          hint="the file is corrupt: re-export the model (or copy it again)",
                          path=where)
    if "Hybrid" in flat or "hybrid" in flat:
        return UnsupportedError("TFLM cannot run hybrid (dynamic-range) models",
                                hint="re-quantize the float model it came from with --mode "
                                     "int8 (a .tflite from elsewhere: ask for an int8 export)")
    if "Didn't find op" in flat:
        return UnsupportedError(f"TFLM lacks an op this model uses: {flat[:200]}",
                                hint="replace the layer with ops docs/supported_ops.md lists")
    return UnsupportedError(f"the tflite-micro interpreter cannot prepare this model: "
                            f"{flat[:300]}", hint=PREPARE_FAILED_HINT)


def _check_prepares_at_limit(model: ir.Model, model_bytes: bytes, code: int) -> None:
    """Raise ``ModelError`` when the interpreter also dies with the largest arena searched
    (the model, not the arena size, crashes it); return when that size allocates."""
    import signal

    lines, limit_code, err = _run_probe_child(model_bytes, ARENA_LIMIT_BYTES - ARENA_STEP,
                                              ARENA_LIMIT_BYTES)
    for line in lines:
        word, _, arg = line.partition(" ")
        if word in ("ok", "result"):
            return
        if word == "error":
            raise _prepare_error(arg + " " + err, model.path or "the model")
    code = limit_code if limit_code < 0 else code
    try:
        how = signal.Signals(-code).name if code < 0 else f"exit code {code}"
    except ValueError:
        how = f"signal {-code}"
    where = model.path or "the model"
    raise ModelError(f"the tflite-micro interpreter crashed ({how}) preparing {where}, even "
                     f"with a {ARENA_LIMIT_BYTES >> 20} MB arena",
                     hint="the file is corrupt or trips a bug in the interpreter: re-export the "
                          "model", path=where)


def measure_tflm_arena(model: ir.Model, model_bytes: bytes, *, use_cache: bool = True,
                       progress: ProgressFn = null_progress) -> ArenaMeasurement:
    """The smallest arena (multiple of 16 B) that allocates in the tflite-micro interpreter.

    Bisection between ``arena_search_bounds``; every attempt runs in a child process
    (``python -m tinyq._arena_probe``) because a too-small arena can SIGSEGV. One child
    runs the whole search; if it dies, the size it was trying counts as "does not
    allocate" and a new child continues from there. Results are cached in
    ``cache_dir()/arena`` by model sha256 and tflite-micro version.
    """
    import hashlib

    sha = hashlib.sha256(model_bytes).hexdigest()
    tflm_version = _tflite_micro_version()
    cache = _cache_path(sha, tflm_version)
    if use_cache and cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            return ArenaMeasurement(arena_bytes=int(cached["arena_bytes"]), probes=0, crashes=0,
                                    seconds=0.0, cached=True, tflite_micro=tflm_version)
        except (ValueError, KeyError, OSError):
            logger.warning("ignoring unreadable arena cache file %s", cache)

    start = time.monotonic()
    lo, hi = arena_search_bounds(model)
    best_ok: int | None = None
    probes = crashes = 0
    limit_checked = False
    while True:
        progress(ProgressEvent("arena", f"searching the smallest TFLM arena in ({lo}, {hi}]"))
        lines, code, err = _run_probe_child(model_bytes, lo, hi)
        trying: int | None = None
        result: int | None = None
        for line in lines:
            word, _, arg = line.partition(" ")
            if word == "try":
                trying = int(arg)
                probes += 1
            elif word == "ok":
                best_ok = int(arg) if best_ok is None else min(best_ok, int(arg))
                trying = None
            elif word == "fail":
                lo = max(lo, int(arg))
                trying = None
            elif word == "result":
                result = int(arg)
            elif word == "error":
                raise _prepare_error(arg + " " + err, model.path or "the model")
        if result is not None:
            break
        if trying is not None and best_ok is None and not limit_checked:
            # A crash before any size allocated: a too-small arena, or a model the
            # interpreter cannot survive at any size. One child at the largest size tells.
            limit_checked = True
            _check_prepares_at_limit(model, model_bytes, code)
        if trying is None:
            raise ToolError(f"the tflite-micro arena probe exited with code {code} "
                            f"without an answer: {' '.join(err.split())[:300]}",
                            hint="check that tflite-micro is installed and imports")
        crashes += 1
        logger.debug("arena probe child died (code %s) trying %d bytes", code, trying)
        lo = max(lo, trying)
        if crashes >= MAX_PROBE_CHILDREN:
            raise ToolError(f"the tflite-micro interpreter crashed {crashes} times while "
                            "searching the arena", hint="run with --no-arena-search")
        hi = best_ok if best_ok is not None else max(hi, 2 * trying)
        if hi - lo <= ARENA_STEP and best_ok is not None:
            result = best_ok
            break
    measurement = ArenaMeasurement(arena_bytes=result, probes=probes, crashes=crashes,
                                   seconds=round(time.monotonic() - start, 3), cached=False,
                                   tflite_micro=tflm_version)
    if use_cache:
        from tinyq.fileio import write_text

        try:
            write_text(cache, json.dumps({"arena_bytes": result, "sha256": sha,
                                          "tflite_micro": tflm_version, "probes": probes}))
        except (OSError, UserInputError) as exc:   # a cache we cannot write is no error
            logger.warning("cannot write the arena cache %s: %s", cache, exc)
    return measurement


# ---------------------------------------------------------------------------- fit


def fit(model: ir.Model, board: Board, runtime: str, arena_bytes: int,
        arena_measured: bool = True, cmsis_nn: bool = False) -> Fit:
    """Flash and RAM needed by ``model`` on ``board`` with ``runtime``, vs what it has.

    Flash: the model (the whole .tflite for TFLM; the weights for native) + runtime
    code + harness code. RAM: arena + stack (``board.stack_bytes``) + static data
    (harness, runtime objects, and the harness's input buffer of the model's input
    bytes for MLPerf ``db load``). Constants named ``*_ESTIMATE`` are estimates.
    """
    if runtime == "tflm":
        flash_parts = {
            "model (.tflite)": model.size_bytes,
            "TFLM code (CMSIS-NN)" if cmsis_nn else "TFLM code (reference)":
                TFLM_CODE_BYTES_CMSIS_NN if cmsis_nn else TFLM_CODE_BYTES_REFERENCE,
        }
        runtime_static = TFLM_STATIC_RAM_ESTIMATE
    else:
        flash_parts = {"weights": weights_bytes(model),
                       "native code (estimate)": NATIVE_CODE_BYTES_ESTIMATE}
        runtime_static = NATIVE_STATIC_RAM_ESTIMATE
    flash_parts["harness code (estimate)"] = HARNESS_CODE_BYTES_ESTIMATE
    input_bytes = sum(tensor_nbytes(t) for t in model.input_tensors)
    ram_parts = {
        "arena" if arena_measured else "arena (lower bound, not measured)": arena_bytes,
        "stack": board.stack_bytes,
        "static (estimate)": HARNESS_STATIC_RAM_ESTIMATE + runtime_static,
        "input buffer": input_bytes,
    }
    try:
        ram_region = board.region(board.arena_region)
    except KeyError:
        ram_region = board.ram
    ram_available = ram_region.size
    if ram_region.name != board.ram.name:
        # The arena lives in its own bank; stack and static data stay in the main RAM.
        # Report the tighter of the two as the RAM figure.
        main_needed = sum(v for k, v in ram_parts.items() if not k.startswith("arena"))
        if board.ram.size - main_needed < ram_region.size - arena_bytes:
            ram_parts = {k: v for k, v in ram_parts.items() if not k.startswith("arena")}
            ram_available = board.ram.size
        else:
            ram_parts = {k: v for k, v in ram_parts.items() if k.startswith("arena")}
    return Fit(board=board.name, runtime=runtime,
               flash_needed=sum(flash_parts.values()), flash_available=board.flash.size,
               ram_needed=sum(ram_parts.values()), ram_available=ram_available,
               flash_parts=MappingProxyType(flash_parts), ram_parts=MappingProxyType(ram_parts),
               arena_measured=arena_measured, arena_bytes=arena_bytes, cmsis_nn=cmsis_nn)


#: Boards a fit hint names at most (the smallest that fit first).
FIT_HINT_BOARDS = 3


def native_arena_bytes(model: ir.Model, planned: int | None = None) -> int | None:
    """The native runtime's arena (``planned`` if already known); None when native
    cannot run ``model``."""
    if native_support.problems(model):
        return None
    if planned is not None:
        return planned
    try:
        return native_plan_bytes(model)
    except (KeyError, ValueError) as exc:   # a dtype the planner cannot size
        logger.info("native plan failed: %s", exc)
        return None


def boards_that_fit(model: ir.Model, board: Board, runtime: str, arena_bytes: int,
                    cmsis_nn: bool = False,
                    candidates: list[Board] | None = None) -> list[Board]:
    """Other boards (default: the bundled ones) ``model`` fits with ``runtime``.

    Boards of the same kind as ``board`` (real or emulator-only) come first, then the
    smallest memory first: the likeliest replacement for the board that is too small.
    """
    if candidates is None:
        from tinyq import boards

        candidates = boards.available()
    fitting = [b for b in candidates if b.name != board.name
               and fit(model, b, runtime, arena_bytes, cmsis_nn=cmsis_nn).fits]
    return sorted(fitting, key=lambda b: (b.emulated_only != board.emulated_only,
                                          b.ram.size + sum(r.size for r in b.extra_ram),
                                          b.flash.size, b.name))


def fit_hint(model: ir.Model, board: Board, failed: Fit, *, native_arena: int | None = None,
             candidates: list[Board] | None = None) -> str:
    """How to fix ``failed`` (``model`` does not fit ``board``), computed, not canned.

    TFLM: the native runtime when *it* fits this board. Otherwise the boards (from
    ``candidates``, default the bundled ones) that fit with the same runtime (for
    TFLM when none does: with native), else a smaller model.
    """
    runtime = failed.runtime
    native = native_arena_bytes(model, native_arena) if runtime == "tflm" else None
    if native is not None:
        here = fit(model, board, "native", native)
        if here.fits:
            return (f"use --runtime native, which fits {board.name} (flash "
                    f"{here.flash_needed:,}/{here.flash_available:,} B, RAM "
                    f"{here.ram_needed:,}/{here.ram_available:,} B)")
    bigger = boards_that_fit(model, board, runtime, failed.arena_bytes, failed.cmsis_nn,
                             candidates)
    if bigger:
        names = ", ".join(b.name for b in bigger[:FIT_HINT_BOARDS])
        return f"use a board it fits with --runtime {runtime} ({names}) or a smaller model"
    if native is not None:
        bigger = boards_that_fit(model, board, "native", native, candidates=candidates)
        if bigger:
            names = ", ".join(b.name for b in bigger[:FIT_HINT_BOARDS])
            return (f"no bundled board has room for it with --runtime tflm; with --runtime "
                    f"native it fits {names} (or use a smaller model)")
    return (f"no bundled board has room for it with --runtime {runtime}: use a smaller model "
            "(fewer or narrower layers)")


def fit_error(model: ir.Model, board: Board, failed: Fit, *, native_arena: int | None = None,
              candidates: list[Board] | None = None) -> FitError:
    """The FitError (exit 3) for a failed fit, with :func:`fit_hint` as its fix."""
    name = Path(model.path).name if model.path else "the model"
    return FitError(f"{name} {failed.summary()}",
                    hint=fit_hint(model, board, failed, native_arena=native_arena,
                                  candidates=candidates),
                    board=failed.board, flash_over=failed.flash_over, ram_over=failed.ram_over)


# ---------------------------------------------------------------------------- inspect


def _load(model_or_path: ir.Model | str | os.PathLike[str]) -> tuple[ir.Model, bytes]:
    from tinyq.model.tflite_reader import read_model_bytes
    from tinyq.model.tflite_writer import write_model

    if isinstance(model_or_path, ir.Model):
        model = model_or_path
        if model.path and Path(model.path).is_file():
            data = Path(model.path).read_bytes()
            if not model.sha256 or read_model_bytes(data).sha256 == model.sha256:
                return model, data
        data = write_model(model)
        return read_model_bytes(data), data
    from tinyq.model.tflite_reader import read_model

    model = read_model(model_or_path)
    return model, Path(model_or_path).read_bytes()


def native_plan_bytes(model: ir.Model) -> int:
    from tinyq.firmware.native.planner import plan

    return int(plan(model).arena_bytes)


def inspect(model: ir.Model | str | os.PathLike[str], board: Board | str | None = None,
            runtime: str = "tflm", measure_arena: bool = True,
            progress: ProgressFn = null_progress, use_cache: bool = True,
            cmsis_nn: bool = False) -> InspectReport:
    """Analyse a .tflite (path or ``ir.Model``) for ``runtime`` ("tflm" or "native").

    ``board`` (a ``Board``, a bundled board name, or a TOML path) adds the fit table.
    ``measure_arena=False`` skips the TFLM arena search (then the fit uses the native
    plan as a lower bound for the TFLM arena). Never raises for an unsupported model:
    problems are in the report; raises ``ModelError`` for an unreadable file.

    Example::

        report = tinyq.inspect("hello_world_int8.tflite", board="mps2-an386", runtime="native")
        print(report.macs, "MACs;", "fits" if not report.problems else report.problems[0])
    """
    if runtime not in ("tflm", "native"):
        raise UnsupportedError(f"unknown runtime {runtime!r}", hint="use tflm or native")
    progress(ProgressEvent("inspect", "reading the model"))
    ir_model, data = _load(model)
    if isinstance(board, (str, os.PathLike)):
        from tinyq import boards

        board = boards.load(board)

    found = problems(ir_model, runtime)
    errors = [p for p in found if p.severity == "error"]

    progress(ProgressEvent("inspect", "planning the native arena"))
    # None (no "native plan" line) when native cannot run the model: a plan for a model
    # it refuses would be a number nobody can use
    arena_native = native_arena_bytes(ir_model)

    arena_tflm: ArenaMeasurement | None = None
    tflm_errors = errors if runtime == "tflm" else [
        p for p in problems(ir_model, "tflm") if p.severity == "error"]
    if measure_arena and not tflm_errors:
        progress(ProgressEvent("inspect", "measuring the smallest TFLM arena"))
        try:
            arena_tflm = measure_tflm_arena(ir_model, data, use_cache=use_cache,
                                            progress=progress)
        except UnsupportedError as exc:
            found = (*found, Problem("tflm", exc.message, exc.hint or "", check="tflm_prepare"))
            if runtime != "tflm":
                found = tuple(p for p in found if p.runtime == runtime)

    fit_result: Fit | None = None
    if board is not None:
        if runtime == "tflm" and arena_tflm is not None:
            arena, measured = arena_tflm.arena_bytes, True
        elif runtime == "native" and arena_native is not None:
            arena, measured = arena_native, True
        else:
            arena, measured = (arena_native or activation_bytes(ir_model)), False
        fit_result = fit(ir_model, board, runtime, arena, measured, cmsis_nn)

    ops = tuple(op_report(ir_model, op) for op in ir_model.operators)
    return InspectReport(
        path=ir_model.path, sha256=ir_model.sha256, size_bytes=ir_model.size_bytes or len(data),
        runtime=runtime, num_subgraphs=ir_model.num_subgraphs, ops=ops,
        inputs=tuple(summarize_tensor(t) for t in ir_model.input_tensors),
        outputs=tuple(summarize_tensor(t) for t in ir_model.output_tensors),
        macs=sum(op.macs for op in ops), weights_bytes=weights_bytes(ir_model),
        activation_bytes=activation_bytes(ir_model), op_set=ir_model.op_set,
        arena_tflm=arena_tflm, arena_native=arena_native, problems=tuple(found),
        fit=fit_result)
