"""Checks run on the laptop before any firmware is built.

A check is a small function whose docstring is the user message (STYLE.md rule 3):
the same text is shown by ``tinyq inspect``/``generate`` and rendered into the
supported-ops table of the docs (``python -m tinyq.ops_reference --markdown``). A failed
check yields a ``Problem``.

Docstring format: the first paragraph is the message, a paragraph starting with
``Fix:`` is the fix. Both may use ``{placeholders}`` filled from what the check
yields (an op, a tensor name, a count).
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tinyq.model import ir, tflm_dtypes


@dataclass(frozen=True)
class Problem:
    """Something a runtime cannot do with this model, and how to fix it."""

    runtime: str              # "tflm" | "native"
    message: str              # one line: what is wrong
    fix: str                  # one line: what to do
    op_index: int | None = None
    opcode: str | None = None
    check: str = ""           # name of the check that found it
    severity: str = "error"   # "error": the runtime cannot run the model; "warning": it can

    def __str__(self) -> str:
        where = f"op {self.op_index} {self.opcode}: " if self.op_index is not None else ""
        return f"{where}{self.message} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "check": self.check, "severity": self.severity,
                "op_index": self.op_index, "opcode": self.opcode, "message": self.message,
                "fix": self.fix}


#: What each runtime below the checks says it runs: runtime name -> a function giving
#: the problems it finds in a model. A runtime's own module registers itself when it is
#: imported (``tinyq.firmware.native.support`` registers "native"), so this layer never
#: imports a runtime: the arrow points from firmware down to model.
RUNTIME_PROBLEMS: dict[str, Callable[[ir.Model], Iterable[Problem]]] = {}


def register_runtime(name: str, problems: Callable[[ir.Model], Iterable[Problem]]) -> None:
    """Let the checks ask runtime ``name`` which ops of a model it cannot run."""
    RUNTIME_PROBLEMS[name] = problems


# ---------------------------------------------------------------------------- TFLM facts

#: Builtin ops TFLM can register (``MicroMutableOpResolver::Add...`` in
#: tensorflow/lite/micro/micro_mutable_op_resolver.h of tflite-micro, main branch,
#: August 2026). An op outside this set fails at run time with "Didn't find op for
#: builtin opcode".
TFLM_BUILTIN_OPS: frozenset[str] = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL
BATCH_TO_SPACE_ND BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D
COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU
EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED
GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D
LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX
MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU
QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE
RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE
SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())

#: The fix when tflite-micro refuses a model in Prepare although every check passed: a
#: kernel constraint the tables here do not know. Its message names the op and reason.
PREPARE_FAILED_HINT = ("change the op that message names (the dtypes or quantization the "
                       "TFLM kernel checks for, or another layer), or use --runtime native "
                       "if `tinyq inspect MODEL --runtime native` reports no problem")

#: Custom ops TFLM ships (``AddCustom`` calls in the same header).
TFLM_CUSTOM_OPS: frozenset[str] = frozenset({
    "TFLite_Detection_PostProcess", "CIRCULAR_BUFFER", "TFLM_DECODE", "ethos-u",
    "SignalDelay", "SignalEnergy", "SignalFftAutoScale", "SignalFilterBank",
    "SignalFilterBankLog", "SignalFilterBankSpectralSubtraction", "SignalFilterBankSquareRoot",
    "SignalFramer", "SignalIrfft", "SignalOverlapAdd", "SignalPCAN", "SignalRfft",
    "SignalStacker", "SignalWindow",
})

#: What to use instead of an op neither runtime runs, by op (measured with TensorFlow 2.21 and
#: Keras 3: activation="silu" converts to LOGISTIC and MUL, "hard_silu" to HARD_SWISH, and
#: both run in int8 on TFLM and on the native runtime).
BOTH_RUNTIMES_INSTEAD: Mapping[str, str] = MappingProxyType({
    "GELU": "replace the GELU activation with activation=\"silu\" (x * sigmoid(x), close to "
            "GELU: LOGISTIC and MUL ops) or \"hard_silu\" (one HARD_SWISH op), which TFLM "
            "and the native runtime both run in int8; fine-tune briefly, then convert again",
})


def instead_fix(opcode: str) -> str:
    """The fix for an op neither runtime runs: something that works in both."""
    return BOTH_RUNTIMES_INSTEAD.get(opcode, (
        f"replace the layer that makes {opcode} with layers whose ops both runtimes run "
        "(docs/supported_ops.md lists them) and convert again"))


def tflm_runs(model: ir.Model, op: ir.Operator) -> bool:
    """Whether TFLM has a kernel for ``op`` with its dtypes (ops the dtype table does not
    list: whether TFLM registers the op)."""
    if op.opcode == "CUSTOM":
        return op.custom_code in TFLM_CUSTOM_OPS
    if op.opcode not in TFLM_BUILTIN_OPS:
        return False
    sig = tflm_dtypes.op_signature(model, op)
    return sig is None or tflm_dtypes.TFLM_OP_DTYPES[op.opcode].accepts(sig)


#: Ops that multiply activations by constant weights: with float activations and int8
#: weights they are "hybrid" (dynamic-range quantization), which TFLM does not run.
WEIGHT_OPS: Mapping[str, int] = MappingProxyType({   # opcode -> weights input position
    "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1,
    "BATCH_MATMUL": 1, "SVDF": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "EMBEDDING_LOOKUP": 1,
    "CONV_3D": 1,
})

#: Ops through which uint8 data may legitimately enter or leave an int8 model.
UINT8_BOUNDARY_OPS: frozenset[str] = frozenset({"QUANTIZE", "DEQUANTIZE", "CAST"})


# ---------------------------------------------------------------------------- registry

Finding = Mapping[str, Any]
CheckFn = Callable[[ir.Model], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    runtime: str
    severity: str
    message: str      # template
    fix: str          # template
    fn: CheckFn

    def run(self, model: ir.Model) -> Iterator[Problem]:
        for found in self.fn(model):
            fields = dict(found)
            op = fields.get("op")
            if isinstance(op, ir.Operator):
                fields.setdefault("opcode", op.opcode)
                fields.setdefault("op_index", op.index)
            yield Problem(
                runtime=self.runtime,
                message=self.message.format_map(fields),
                fix=self.fix.format_map(fields),
                op_index=fields.get("op_index"),
                opcode=fields.get("opcode"),
                check=self.name,
                severity=self.severity,
            )


CHECKS: list[Check] = []


def _split_docstring(fn: Callable[..., Any]) -> tuple[str, str]:
    doc = inspect.getdoc(fn) or ""
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    message = paragraphs[0] if paragraphs else fn.__name__
    fix = next((p[len("Fix:"):].strip() for p in paragraphs if p.startswith("Fix:")), "")
    return message, fix


def check(runtime: str, severity: str = "error") -> Callable[[CheckFn], CheckFn]:
    """Register a check: its docstring's first paragraph is the message, ``Fix:`` the fix."""

    def register(fn: CheckFn) -> CheckFn:
        message, fix = _split_docstring(fn)
        CHECKS.append(Check(fn.__name__, runtime, severity, message, fix, fn))
        return fn

    return register


# ---------------------------------------------------------------------------- TFLM checks


def _const(model: ir.Model, index: int) -> ir.Tensor | None:
    if index < 0:
        return None
    t = model.tensors[index]
    return t if t.is_constant else None


@check("tflm")
def tflm_unsupported_op(model: ir.Model) -> Iterator[Finding]:
    """{opcode} is not an op TFLM implements, so the interpreter stops with "Didn't find
    op for builtin opcode".

    Fix: {fix}
    """
    native_ok = None
    for op in model.operators:
        if op.opcode == "CUSTOM" and op.custom_code in TFLM_CUSTOM_OPS:
            continue
        if op.opcode != "CUSTOM" and op.opcode in TFLM_BUILTIN_OPS:
            continue
        if native_ok is None:
            native_ok = _native_runs(model)
        name = op.opcode if op.opcode != "CUSTOM" else f"custom op {op.custom_code!r}"
        fix = (f"use --runtime native, which runs {name} (check the whole model with "
               "`tinyq inspect MODEL --runtime native`)" if op.index in native_ok
               else instead_fix(name))
        yield {"op": op, "opcode": name, "fix": fix}


@check("tflm")
def tflm_hybrid_model(model: ir.Model) -> Iterator[Finding]:
    """{opcode} takes {act_dtype} activations with {w_dtype} weights: this is a hybrid
    (dynamic-range quantized) model, and TFLM rejects hybrid models ("Hybrid models are
    not supported on TFLite Micro").

    Fix: re-quantize the float model it came from with --mode int8 (full-integer, with
    calibration data); a .tflite from elsewhere cannot be re-quantized: ask its publisher
    for the float model or a full-integer int8 export.
    """
    for op in model.operators:
        pos = WEIGHT_OPS.get(op.opcode)
        if pos is None or len(op.inputs) <= pos or op.inputs[0] < 0:
            continue
        act = model.tensors[op.inputs[0]]
        weights = _const(model, op.inputs[pos])
        if (weights is not None and act.dtype in ("float32", "float16")
                and weights.dtype in ("int8", "uint8", "int4")):
            yield {"op": op, "act_dtype": act.dtype, "w_dtype": weights.dtype}


@check("tflm")
def tflm_float16_weights(model: ir.Model) -> Iterator[Finding]:
    """{opcode} dequantizes float16 constants at run time (a float16-quantized model);
    TFLM's DEQUANTIZE has no float16 kernel and does not store float16 weights.

    Fix: re-quantize the float model it came from with --mode int8 (or export float32
    weights if the model must stay float); for a .tflite from elsewhere, ask its publisher
    for an int8 or float32 export.
    """
    reported = False
    for op in model.operators:
        if op.opcode == "DEQUANTIZE" and op.inputs and op.inputs[0] >= 0:
            if model.tensors[op.inputs[0]].dtype == "float16":
                reported = True
                yield {"op": op}
    if not reported:
        for t in model.tensors:
            if t.is_constant and t.dtype == "float16":
                yield {"opcode": f"tensor {t.name!r}"}
                return


@check("tflm")
def tflm_uint8_tensors(model: ir.Model) -> Iterator[Finding]:
    """{opcode} computes on uint8 tensor {tensor!r}: legacy uint8 quantization (TF1 style)
    has no TFLM kernels; TFLM's int8 kernels need int8 activations and weights (uint8
    I/O is fine only through a QUANTIZE/DEQUANTIZE at the model's edge).

    Fix: re-quantize the float model it came from with --mode int8 (inputs/outputs int8,
    the tinyq default); for a .tflite from elsewhere, ask its publisher for an int8 export.
    """
    for op in model.operators:
        if op.opcode in UINT8_BOUNDARY_OPS or op.opcode == "CUSTOM":
            continue
        for i in (*op.inputs, *op.outputs):
            if i >= 0 and model.tensors[i].dtype == "uint8":
                yield {"op": op, "tensor": model.tensors[i].name}
                break


@check("tflm")
def tflm_unsupported_dtype(model: ir.Model) -> Iterator[Finding]:
    """{opcode} has {dtypes} tensors, but TFLM's {opcode} kernel (kernels/{source}) runs
    only {accepted}, so the interpreter stops with a type error at AllocateTensors or at
    the first Invoke.

    Fix: {remedy}, or replace the layer with ops TFLM runs in {dtype}{native}.
    """
    found = list(tflm_dtypes.unsupported_dtypes(model))
    if not found:
        return
    # uint8 and hybrid ops have their own checks with a better fix.
    skip = {f["op"].index for f in (*tflm_uint8_tensors(model), *tflm_hybrid_model(model))}
    native_ok = _native_runs(model)
    for op, sig in found:
        if op.index in skip or "uint8" in sig:
            continue
        row = tflm_dtypes.TFLM_OP_DTYPES[op.opcode]
        accepted = {s[-1] for s in row.signatures}
        dtype = sig[0]
        if dtype == "int8" and "int16" in accepted:
            remedy = (f"re-quantize with --mode int16x8 so {op.opcode} runs in int16")
        elif "float32" in accepted:
            remedy = (f"keep {op.opcode} in float32 (re-quantize with --mode float32, or "
                      "compute it in your application code on the model's output)")
        else:
            remedy = f"convert the model so {op.opcode} gets {row.describe()} tensors"
        native = ("; the native runtime runs this op: use --runtime native (check the "
                  "whole model with `tinyq inspect MODEL --runtime native`)"
                  if op.index in native_ok else "")
        yield {"op": op, "dtypes": tflm_dtypes.describe_signatures([sig]),
               "accepted": row.describe(), "source": row.source, "remedy": remedy,
               "dtype": dtype, "native": native}


def _native_runs(model: ir.Model) -> set[int]:
    """Indices of the ops the native runtime has a kernel for with these dtypes."""
    native = RUNTIME_PROBLEMS.get("native")
    if native is None:
        return set()
    refused = {p.op_index for p in native(model) if p.op_index is not None}
    return {op.index for op in model.operators if op.index not in refused}


@check("tflm", severity="warning")
def tflm_extra_subgraphs(model: ir.Model) -> Iterator[Finding]:
    """The model has {count} subgraphs; tinyq analyses subgraph 0 only (MACs, weights and
    checks cover subgraph 0; the measured TFLM arena covers the whole model).

    Fix: nothing to do if the extra subgraphs are unused (signatures, init); otherwise
    check the ops of the other subgraphs yourself.
    """
    if model.num_subgraphs > 1 and not any(op.opcode == "WHILE" for op in model.operators):
        yield {"count": model.num_subgraphs}


@check("tflm", severity="warning")
def tflm_while_loop(model: ir.Model) -> Iterator[Finding]:
    """{opcode} runs a loop in other subgraphs, which tinyq's checks and MACs do not
    cover; the TFLite converter makes such loops from Keras 3 LSTM and GRU layers, and
    TFLM users report them hanging on boards.

    Fix: with the Keras model at hand, quantize it with `tinyq quantize` (LSTMs become the
    fused UNIDIRECTIONAL_SEQUENCE_LSTM, GRUs are unrolled); for a .tflite from elsewhere,
    check its outputs on the tflite-micro interpreter with `tinyq evaluate` before
    flashing.
    """
    for op in model.operators:
        if op.opcode == "WHILE":
            yield {"op": op}


@check("native")
def native_support(model: ir.Model) -> Iterator[Finding]:
    """{message}

    Fix: {fix}
    """
    native = RUNTIME_PROBLEMS.get("native")
    if native is None:
        yield {"message": "the native runtime's support table is not loaded, so native "
               "support cannot be checked (import tinyq.firmware.native.support first)",
               "fix": "use tinyq.inspect, which loads it, or --runtime tflm"}
        return
    for problem in native(model):
        yield {"message": problem.message, "fix": problem.fix, "op_index": problem.op_index,
               "opcode": problem.opcode}


def problems(model: ir.Model, runtime: str = "tflm") -> tuple[Problem, ...]:
    """Every problem the checks of ``runtime`` ("tflm" or "native") find in ``model``."""
    if runtime not in ("tflm", "native"):
        raise ValueError(f"unknown runtime {runtime!r}")
    found: list[Problem] = []
    for c in CHECKS:
        if c.runtime == runtime:
            found.extend(c.run(model))
    return tuple(found)


# ---------------------------------------------------------------------------- docs


def placeholders(template: str) -> str:
    """A message template with each ``{name}`` shown as ``<name>`` (for docs)."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return template.format_map({n: f"<{n}>" for n in names})
