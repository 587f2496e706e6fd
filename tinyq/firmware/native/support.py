"""Can the native runtime run this model? Small checks whose docstrings are the messages.

``problems(model)`` runs the model-level checks below, then for every op: is
there a lowering (``lower.LOWERINGS``), does a dtype signature match, and the
lowering's own constraints. ``tinyq inspect --runtime native`` prints the
result; ``codegen.render`` refuses to generate when the list is not empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tinyq.errors import UnsupportedError
from tinyq.firmware.native.lower import LOWERINGS, Sig
from tinyq.model import ir
from tinyq.model.checks import Problem, instead_fix, register_runtime, tflm_runs

RUNTIME = "native"

ModelCheck = Callable[[ir.Model], bool]
_MODEL_CHECKS: list[tuple[ModelCheck, str]] = []


def _model_check(fix: str) -> Callable[[ModelCheck], ModelCheck]:
    def wrap(fn: ModelCheck) -> ModelCheck:
        _MODEL_CHECKS.append((fn, fix))
        return fn
    return wrap


def _message(fn: Callable[..., bool]) -> str:
    return " ".join((fn.__doc__ or fn.__name__).split())


@_model_check(fix="use --runtime tflm")
def multiple_subgraphs(model: ir.Model) -> bool:
    """the model has more than one subgraph, and the native runtime runs subgraph 0 only
    (no WHILE, IF or CALL_ONCE yet)"""
    return model.num_subgraphs > 1


@_model_check(fix="use --runtime tflm")
def variable_tensors(model: ir.Model) -> bool:
    """the model keeps state in variable tensors, which the native runtime does not hold
    between invocations yet"""
    variables = {t.index for t in model.tensors if t.is_variable}
    # state of an op native has no kernel for (an LSTM's, an SVDF's): that op's own
    # problem is the real reason, so this one stays quiet
    return any(op.opcode in LOWERINGS for op in model.operators
               if variables.intersection(op.inputs))


@_model_check(fix="every model input and output must be a non-constant tensor")
def constant_io(model: ir.Model) -> bool:
    """a model input or output is a constant tensor"""
    return any(model.tensors[i].is_constant for i in (*model.inputs, *model.outputs))


#: integer range of each quantized dtype whose zero point the kernels use
_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def _quantized(model: ir.Model) -> list[ir.Tensor]:
    return [t for t in model.tensors
            if t.dtype in _ZP_RANGE and t.quant is not None and t.quant.scale]


@_model_check(fix="re-convert the model: every scale must be a positive finite number")
def bad_scale(model: ir.Model) -> bool:
    """a quantized tensor has a scale that is zero, negative, infinite or NaN"""
    return any(not (math.isfinite(s) and s > 0) for t in _quantized(model) for s in t.quant.scale)


@_model_check(fix="re-convert the model: a zero point must lie in its tensor type's range")
def bad_zero_point(model: ir.Model) -> bool:
    """a quantized tensor has a zero point outside its type's range (e.g. int8 -128..127)"""
    return any(not _ZP_RANGE[t.dtype][0] <= z <= _ZP_RANGE[t.dtype][1]
               for t in _quantized(model) for z in t.quant.zero_point)


def _dtypes(model: ir.Model, ids: tuple[int, ...]) -> list[str]:
    return [model.tensors[i].dtype for i in ids if i >= 0]


#: How to make a full-int8 model, the one kind of model both runtimes run.
REQUANTIZE = "re-quantize with `tinyq quantize MODEL --calib DATA --mode int8`"
#: Quantization modes (``tinyq.convert.ptq.detect_mode``) TFLM cannot run either, and why.
TFLM_CANNOT_RUN = {
    "dynamic": "TFLM cannot run dynamic-range (hybrid) models either",
    "float16": "TFLM cannot run float16-quantized models either",
}


def requantize_fix(model: ir.Model) -> str | None:
    """The fix for a dynamic-range or float16 model (neither runtime runs it), else None."""
    from tinyq.convert.ptq import detect_mode

    why = TFLM_CANNOT_RUN.get(detect_mode(model))
    return f"{REQUANTIZE} ({why})" if why else None


def other_runtime_fix(model: ir.Model, op: ir.Operator) -> str:
    """The fix for an op native has no kernel for: TFLM when it runs the op, else what both
    runtimes run."""
    if tflm_runs(model, op):
        return f"use --runtime tflm, which runs {op.opcode} with these dtypes"
    return instead_fix(op.opcode)


def _op_problems(model: ir.Model, op: ir.Operator, requantize: str | None,
                 check_params: bool = True) -> list[Problem]:
    lowering = LOWERINGS.get(op.opcode)
    if lowering is None:
        return [Problem(RUNTIME, f"the native runtime has no kernel for {op.opcode}",
                        requantize or other_runtime_fix(model, op), op.index, op.opcode)]
    ins, outs = _dtypes(model, op.inputs), _dtypes(model, op.outputs)
    if not any(sig.matches(ins, outs) for sig in lowering.signatures):
        accepted = "; ".join(str(s) for s in lowering.signatures)
        return [Problem(
            RUNTIME,
            f"unsupported dtypes ({', '.join(ins)}) -> ({', '.join(outs)}); "
            f"the native runtime supports {accepted}",
            requantize or f"use --runtime tflm (it runs float32 and int16x8 models), or "
                          f"{REQUANTIZE}",
            op.index, op.opcode)]
    found: list[Problem] = []
    if not check_params:     # bad scales/zero points: the op checks would divide by them
        return found
    for check in lowering.constraints:
        if check(model, op):
            found.append(Problem(RUNTIME, _message(check), getattr(check, "fix", ""),
                                 op.index, op.opcode))
    return found


def problems(model: ir.Model) -> list[Problem]:
    """Everything that stops the native runtime from running ``model`` (empty: supported)."""
    found = [Problem(RUNTIME, _message(fn), fix) for fn, fix in _MODEL_CHECKS if fn(model)]
    requantize = requantize_fix(model)
    check_params = not (bad_scale(model) or bad_zero_point(model))
    for op in model.operators:
        found.extend(_op_problems(model, op, requantize, check_params))
    return found


def require_supported(model: ir.Model) -> None:
    """Raise ``UnsupportedError`` naming the first problem (and how many more there are)."""
    found = problems(model)
    if found:
        more = f" (and {len(found) - 1} more; run `tinyq inspect --runtime native`)" \
            if len(found) > 1 else ""
        first = found[0]
        raise UnsupportedError(
            f"the native runtime cannot run this model: {first.__str__()}{more}",
            hint=None, op=first.opcode, problems=tuple(found))


def supported_ops_table() -> list[tuple[str, str, str]]:
    """(opcode, dtype signatures, note) for the docs' supported-ops table."""
    return [(name, "; ".join(str(s) for s in low.signatures), low.note)
            for name, low in sorted(LOWERINGS.items())]


def _projections(sig: Sig, positions: tuple[int, ...]) -> tuple[str, ...] | None:
    """A native signature seen at the input positions TFLM's dtype table compares."""
    ins = list(sig.inputs)
    if sig.variadic and positions:
        ins += [ins[-1]] * (max(positions) + 1 - len(ins))
    if any(p >= len(ins) for p in positions) or not sig.outputs:
        return None
    return (*(ins[p] for p in positions), sig.outputs[0])


def coverage() -> tuple[int, int, list[tuple[str, tuple[str, ...]]]]:
    """(pairs native runs, pairs TFLM runs, the pairs left) over TFLM's (op, dtype) table
    (``tinyq.model.tflm_dtypes.TFLM_OP_DTYPES``) against the native signatures (``LOWERINGS``)."""
    from tinyq.model.tflm_dtypes import TFLM_OP_DTYPES

    covered, left = 0, []
    for op, row in sorted(TFLM_OP_DTYPES.items()):
        low = LOWERINGS.get(op)
        native = [] if low is None else [_projections(s, row.positions) for s in low.signatures]
        for sig in sorted(row.signatures):
            if any(n is not None and all(w in ("*", g) for w, g in zip(n, sig, strict=True))
                   for n in native):
                covered += 1
            else:
                left.append((op, sig))
    return covered, covered + len(left), left


# The checks (one layer below) ask the native runtime through this registration.
register_runtime("native", problems)
