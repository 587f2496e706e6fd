"""Which tensor dtypes TFLM's kernels accept, per builtin op (data for ``tinyq.model.checks``).

``MicroMutableOpResolver`` registers an op whatever the model's dtypes are; the
kernel then refuses a dtype it has no code for in Prepare (AllocateTensors
fails) or only in Eval (the first Invoke fails). Either way the model cannot run,
so ``tinyq.model.checks.tflm_unsupported_dtype`` compares every op of a model with
:data:`TFLM_OP_DTYPES`. Ops not in the table are not checked (no guessing).

Source of the facts: the Prepare and Eval type checks of
``tensorflow/lite/micro/kernels/<file>.cc`` (the file is named in each row) of
tflite-micro, main branch as of August 2026; then verified against the pinned
``tflite-micro`` wheel (TFLM compiled for the host, version in
:data:`VERIFIED_WITH`): ``python -m tinyq.model.tflm_dtypes --verify`` builds a
one-op model for every accepted signature (it must allocate and invoke) and for
every other uniform dtype among :data:`PROBE_DTYPES` (it must fail at
AllocateTensors or Invoke), each in a child process because a bad model can
crash the interpreter. ``tests/test_checks.py`` re-runs a few rows of it, so
the table cannot drift silently from the pinned interpreter.

The CMSIS-NN variants of ADD, MUL, the pools, SOFTMAX, SVDF, TRANSPOSE_CONV,
BATCH_MATMUL and MAXIMUM/MINIMUM (``kernels/cmsis_nn/``) accept the same dtypes
(read in the source; the host wheel runs the reference kernels only).

Where the wheel and the source disagree, the wheel wins (it is what tinyq's
arena measurement and output comparison run): RSQRT runs int16 in the wheel
although the August source's Prepare refuses it; and several kernels (SIN, COS,
LOG, SQRT, SQUARE, FLOOR, NEG, ...) let a wrong dtype through AllocateTensors
and fail only at the first Invoke, which is why the arena measurement alone
does not catch them.

A signature lists the dtypes of the op's inputs at ``OpDtypes.positions``, then
of output 0: ``("int16", "int8", "int16")`` for TRANSPOSE_CONV means int16
activations (input 2), int8 filter (input 1), int16 output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyq.model import ir
from tinyq.subprocesses import run_process

if TYPE_CHECKING:
    from tinyq.model.tflite_writer import GraphBuilder

#: The ``tflite-micro`` wheel the table was verified with (``pip show tflite-micro``).
VERIFIED_WITH = "0.dev20261023182759"

#: Uniform dtypes ``verify`` tries on every op: those not accepted must fail.
PROBE_DTYPES = ("float32", "int8", "int16", "int32")

#: Wall-clock limit for one probe child process (it runs many one-op models, each in
#: milliseconds; a hung interpreter is killed and its case reported as "crash").
PROBE_CHILD_TIMEOUT_S = 120


@dataclass(frozen=True)
class OpDtypes:
    """What one TFLM kernel accepts."""

    positions: tuple[int, ...]              # input positions checked (then output 0)
    signatures: frozenset[tuple[str, ...]]  # accepted (inputs at positions..., output 0)
    source: str                             # kernels/<source> holds the type checks

    def accepts(self, signature: tuple[str, ...]) -> bool:
        return signature in self.signatures

    def describe(self) -> str:
        """'float32, int8 or int16' (uniform) or 'int16, int8 -> int16; ...' (mixed)."""
        return describe_signatures(self.signatures)


def _sig_text(sig: tuple[str, ...]) -> str:
    if len(set(sig)) == 1:
        return sig[0]
    return f"{', '.join(sig[:-1])} -> {sig[-1]}"


def describe_signatures(signatures: Iterable[tuple[str, ...]]) -> str:
    order = {d: i for i, d in enumerate(("float32", "int8", "int16", "int32", "int64",
                                         "bool"))}
    texts = [_sig_text(s) for s in sorted(signatures,
                                          key=lambda s: [order.get(d, 99) for d in s])]
    if len(texts) == 1:
        return texts[0]
    return ", ".join(texts[:-1]) + " or " + texts[-1]


def _uniform(positions: tuple[int, ...], *dtypes: str) -> frozenset[tuple[str, ...]]:
    return frozenset((d,) * (len(positions) + 1) for d in dtypes)


def _row(source: str, positions: tuple[int, ...], uniform: Sequence[str] = (),
         mixed: Sequence[tuple[str, ...]] = ()) -> OpDtypes:
    sigs = _uniform(positions, *uniform) | frozenset(mixed)
    return OpDtypes(positions, sigs, source)


_UNARY = (0,)
_BINARY = (0, 1)

#: builtin op -> the dtypes its TFLM kernel runs (see the module docstring).
TFLM_OP_DTYPES: Mapping[str, OpDtypes] = MappingProxyType({
    # elementwise.cc: SIN/COS/LOG/SQRT/SQUARE are float-only (in the wheel int8/int16
    # fail at Invoke, not Prepare); ABS and RSQRT also have quantized kernels (the
    # August source's RSQRT Prepare refuses int16, the pinned wheel runs it).
    "ABS": _row("elementwise.cc", _UNARY, ("float32", "int8", "int16")),
    "RSQRT": _row("elementwise.cc", _UNARY, ("float32", "int8", "int16")),
    "SIN": _row("elementwise.cc", _UNARY, ("float32",)),
    "COS": _row("elementwise.cc", _UNARY, ("float32",)),
    "LOG": _row("elementwise.cc", _UNARY, ("float32",)),
    "SQRT": _row("elementwise.cc", _UNARY, ("float32",)),
    "SQUARE": _row("elementwise.cc", _UNARY, ("float32",)),
    "EXP": _row("exp.cc", _UNARY, ("float32",)),
    "NEG": _row("neg.cc", _UNARY, ("float32",)),
    "ROUND": _row("round.cc", _UNARY, ("float32",)),
    "CEIL": _row("ceil.cc", _UNARY, ("float32",)),
    "FLOOR": _row("floor.cc", _UNARY, ("float32",)),
    "LOGISTIC": _row("logistic.cc", _UNARY, ("float32", "int8", "int16")),
    "TANH": _row("tanh.cc", _UNARY, ("float32", "int8", "int16")),
    "HARD_SWISH": _row("hard_swish.cc", _UNARY, ("float32", "int8")),
    "ELU": _row("elu.cc", _UNARY, ("float32", "int8")),
    "LEAKY_RELU": _row("leaky_relu.cc", _UNARY, ("float32", "int8", "int16")),
    "RELU": _row("activations.cc", _UNARY, ("float32", "int8", "int16")),
    "RELU6": _row("activations.cc", _UNARY, ("float32", "int8", "int16")),
    "PRELU": _row("prelu.cc", _BINARY, ("float32", "int8"),
                  mixed=[("int16", "int8", "int16")]),          # (input, alpha) -> output
    "SOFTMAX": _row("softmax.cc", _UNARY, ("float32", "int8", "int16"),
                    mixed=[("int8", "int16")]),
    "LOG_SOFTMAX": _row("log_softmax.cc", _UNARY, ("float32", "int8")),
    "L2_NORMALIZATION": _row("l2norm.cc", _UNARY, ("float32", "int8")),
    "DIV": _row("div.cc", _BINARY, ("float32", "int8", "int32")),
    "FLOOR_DIV": _row("floor_div.cc", _BINARY, ("float32",)),
    "FLOOR_MOD": _row("floor_mod.cc", _BINARY, ("float32",)),
    "SQUARED_DIFFERENCE": _row("squared_difference.cc", _BINARY,
                               ("float32", "int8", "int16", "int32")),
    "MAXIMUM": _row("maximum_minimum.cc", _BINARY,
                    ("float32", "int8", "int16", "int32", "int64")),
    "MINIMUM": _row("maximum_minimum.cc", _BINARY,
                    ("float32", "int8", "int16", "int32", "int64")),
    "ADD": _row("add.cc", _BINARY, ("float32", "int8", "int16", "int32")),
    "SUB": _row("sub.cc", _BINARY, ("float32", "int8", "int16", "int32")),
    "MUL": _row("mul_common.cc", _BINARY, ("float32", "int8", "int16", "int32")),
    "ADD_N": _row("add_n.cc", _BINARY, ("float32", "int8")),      # first two inputs
    "CUMSUM": _row("cumsum.cc", _UNARY, ("float32", "int8")),
    "AVERAGE_POOL_2D": _row("pooling.cc", _UNARY, ("float32", "int8", "int16")),
    "MAX_POOL_2D": _row("pooling.cc", _UNARY, ("float32", "int8", "int16")),
    "L2_POOL_2D": _row("l2_pool_2d.cc", _UNARY, ("float32",)),
    # reduce_common.cc: MEAN/SUM have int8 and int16 kernels, MAX/MIN only int8.
    "MEAN": _row("reduce_common.cc", _UNARY, ("float32", "int8", "int16")),
    "SUM": _row("reduce_common.cc", _UNARY, ("float32", "int8", "int16")),
    "REDUCE_MAX": _row("reduce_common.cc", _UNARY, ("float32", "int8")),
    "REDUCE_MIN": _row("reduce_common.cc", _UNARY, ("float32", "int8")),
    "REDUCE_ALL": _row("reduce_common.cc", _UNARY, ("bool",)),
    "RESIZE_BILINEAR": _row("resize_bilinear.cc", _UNARY, ("float32", "int8")),
    "RESIZE_NEAREST_NEIGHBOR": _row("resize_nearest_neighbor.cc", _UNARY,
                                    ("float32", "int8", "int16")),
    # (input 2 = activations, input 1 = filter) -> output
    "TRANSPOSE_CONV": _row("transpose_conv.cc", (2, 1), ("float32", "int8"),
                           mixed=[("int16", "int8", "int16")]),
    "BATCH_MATMUL": _row("batch_matmul.cc", _BINARY, ("float32", "int8", "int16")),
    # (input, weights_feature, weights_time) -> output (svdf_common.cc PrepareSvdf)
    "SVDF": _row("svdf_common.cc", (0, 1, 2), ("float32", "int8"),
                 mixed=[("int8", "int8", "int16", "int8")]),
})


def op_signature(model: ir.Model, op: ir.Operator) -> tuple[str, ...] | None:
    """The dtypes of ``op`` that :data:`TFLM_OP_DTYPES` compares (None: not checked)."""
    row = TFLM_OP_DTYPES.get(op.opcode)
    if row is None or not op.outputs or op.outputs[0] < 0:
        return None
    ids = [op.inputs[p] if p < len(op.inputs) else -1 for p in row.positions]
    if any(i < 0 for i in ids):
        return None          # a malformed op; other checks and the interpreter say so
    return (*(model.tensors[i].dtype for i in ids), model.tensors[op.outputs[0]].dtype)


def unsupported_dtypes(model: ir.Model) -> Iterator[tuple[ir.Operator, tuple[str, ...]]]:
    """(op, its signature) for every op whose dtypes its TFLM kernel does not run."""
    for op in model.operators:
        sig = op_signature(model, op)
        if sig is not None and not TFLM_OP_DTYPES[op.opcode].accepts(sig):
            yield op, sig


# ---------------------------------------------------------------------------- probes

#: Output quantization the TFLM kernels require (they check it in Prepare).
_FIXED_OUTPUT_QUANT: Mapping[tuple[str, str], tuple[float, int]] = MappingProxyType({
    ("LOGISTIC", "int8"): (1 / 256, -128), ("LOGISTIC", "int16"): (1 / 32768, 0),
    ("TANH", "int8"): (1 / 128, 0), ("TANH", "int16"): (1 / 32768, 0),
    ("SOFTMAX", "int8"): (1 / 256, -128), ("SOFTMAX", "int16"): (1 / 32768, 0),
    ("LOG_SOFTMAX", "int8"): (16 / 256, 127),
    ("L2_NORMALIZATION", "int8"): (1 / 128, 0),
})
_NP = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
       "int64": np.int64, "bool": np.bool_}


def _quant(dtype: str, opcode: str = "", output: bool = False,
           signature: tuple[str, ...] = ()) -> dict[str, Any]:
    if output and opcode == "SOFTMAX" and signature == ("int8", "int16"):
        return {"scale": 1 / 65536, "zero_point": -32768}   # softmax_common.cc
    if output and (opcode, dtype) in _FIXED_OUTPUT_QUANT:
        scale, zp = _FIXED_OUTPUT_QUANT[(opcode, dtype)]
        return {"scale": scale, "zero_point": zp}
    if dtype == "int8":
        return {"scale": 0.05, "zero_point": 0}
    if dtype == "int16":
        return {"scale": 1 / 1024, "zero_point": 0}
    return {}


def _const(g: GraphBuilder, array: np.ndarray, dtype: str, **quant: Any) -> int:
    return g.add_constant(np.asarray(array).astype(_NP[dtype]), dtype, **quant)


def probe_model(opcode: str, signature: tuple[str, ...]) -> bytes:
    """A one-op .tflite running ``opcode`` with ``signature`` (positions of its row)."""
    from tinyq.model.tflite_writer import GraphBuilder

    g = GraphBuilder(f"tinyq.model.tflm_dtypes probe {opcode} {signature}")
    out_dt = signature[-1]

    def act(shape: tuple[int, ...], dtype: str) -> int:
        return g.add_tensor(shape, dtype, **_quant(dtype))

    def out(shape: tuple[int, ...]) -> int:
        quant = _quant(out_dt, opcode, output=True, signature=signature)
        return g.add_tensor(shape, out_dt, **quant)

    if opcode in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_ALL"):
        x = act((1, 4, 8), signature[0])
        axis = _const(g, np.array([1]), "int32")
        g.add_op(opcode, [x, axis], [out((1, 8))], {"keep_dims": False})
    elif opcode in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        x = act((1, 2, 2, 4), signature[0])
        size = _const(g, np.array([4, 4]), "int32")
        g.add_op(opcode, [x, size], [out((1, 4, 4, 4))])
    elif opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        x = act((1, 4, 4, 4), signature[0])
        g.add_op(opcode, [x], [out((1, 3, 3, 4))],
                 {"padding": "VALID", "stride_w": 1, "stride_h": 1, "filter_width": 2,
                  "filter_height": 2, "fused_activation_function": "NONE"})
    elif opcode == "CUMSUM":
        x = act((1, 8), signature[0])
        axis = g.add_constant(np.array(1, np.int32), "int32")
        g.add_op(opcode, [x, axis], [out((1, 8))], {"exclusive": False, "reverse": False})
    elif opcode == "PRELU":
        x = act((1, 8), signature[0])
        alpha = _const(g, np.full(8, 5), signature[1], **_quant(signature[1]))
        g.add_op(opcode, [x, alpha], [out((1, 8))])
    elif opcode == "TRANSPOSE_CONV":
        shape = _const(g, np.array([1, 4, 4, 2]), "int32")
        wq = _quant(signature[1])
        if wq:
            wq = {"scale": [0.05, 0.05], "zero_point": [0, 0], "axis": 0}
        w = _const(g, np.ones((2, 3, 3, 4)), signature[1], **wq)
        x = act((1, 4, 4, 4), signature[0])
        g.add_op(opcode, [shape, w, x, -1], [out((1, 4, 4, 2))],
                 {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                  "fused_activation_function": "NONE"})
    elif opcode == "BATCH_MATMUL":
        a = act((1, 2, 4), signature[0])
        b = act((1, 4, 3), signature[1])
        g.add_op(opcode, [a, b], [out((1, 2, 3))], {"adj_x": False, "adj_y": False})
    elif opcode == "SVDF":
        units, memory, n_in = 4, 3, 8
        x = act((1, n_in), signature[0])
        wf = _const(g, np.ones((units, n_in)), signature[1], **_quant(signature[1]))
        wt = _const(g, np.ones((units, memory)), signature[2], **_quant(signature[2]))
        integer = signature[0] != "float32"
        state_dt = signature[2] if integer else "float32"
        # svdf_common.cc: bias scale = activation state scale * weights_time scale
        bias_q = ({"scale": _quant(state_dt)["scale"] * _quant(signature[2])["scale"],
                   "zero_point": 0} if integer and _quant(signature[2]) else {})
        bias = _const(g, np.zeros(units), "int32" if integer else "float32", **bias_q)
        state = g.add_tensor((1, units * memory), state_dt,
                             is_variable=True, **_quant(state_dt))
        g.add_op(opcode, [x, wf, wt, bias, state], [out((1, units))],
                 {"rank": 1, "fused_activation_function": "NONE"})
    else:
        row = TFLM_OP_DTYPES[opcode]
        ins = [act((1, 8), signature[k]) for k in range(len(row.positions))]
        options = {"alpha": 0.2} if opcode == "LEAKY_RELU" else None
        g.add_op(opcode, ins, [out((1, 8))], options)
    return g.build()


def _input_value(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return np.ones(shape, np.bool_)
    value = 1.0 if dtype == "float32" else 20   # positive: RSQRT/LOG/DIV need it
    return np.full(shape, value, dtype=_NP.get(dtype, np.int8))


def run_probe(model_bytes: bytes) -> str:
    """'ok' (allocates and invokes), 'prepare: ...' or 'invoke: ...' (in this process)."""
    from tinyq.errors import TinyqError
    from tinyq.model.interpreters import TflmInterpreter
    from tinyq.model.tflite_reader import read_model_bytes

    model = read_model_bytes(model_bytes)
    try:
        it = TflmInterpreter(model_bytes)
    except TinyqError as exc:
        return f"prepare: {' '.join(str(exc).split())[:200]}"
    inputs = [_input_value(model.tensors[i].dtype, model.tensors[i].shape)
              for i in model.inputs]
    try:
        it.invoke(inputs)
    except TinyqError as exc:
        return f"invoke: {' '.join(str(exc).split())[:200]}"
    return "ok"


Case = tuple[str, tuple[str, ...]]


def probe_cases(opcodes: Iterable[str] | None = None) -> list[tuple[Case, bool]]:
    """((opcode, signature), expected to run) for every accepted signature and every
    other uniform signature of :data:`PROBE_DTYPES`."""
    cases: list[tuple[Case, bool]] = []
    for opcode in (sorted(TFLM_OP_DTYPES) if opcodes is None else opcodes):
        row = TFLM_OP_DTYPES[opcode]
        n = len(row.positions) + 1
        sigs = set(row.signatures) | {(d,) * n for d in PROBE_DTYPES}
        for sig in sorted(sigs):
            cases.append(((opcode, sig), row.accepts(sig)))
    return cases


def run_probes(cases: Sequence[Case]) -> dict[Case, str]:
    """Outcome of every case, run in child processes (a crash costs one case, not all)."""
    results: dict[Case, str] = {}
    todo = list(cases)
    while todo:
        payload = json.dumps([[op, list(sig)] for op, sig in todo])
        try:
            proc = run_process([sys.executable, "-m", "tinyq.model.tflm_dtypes", "--child"],
                               input=payload, capture_output=True, text=True,
                               timeout=PROBE_CHILD_TIMEOUT_S)
            lines = proc.stdout.splitlines()
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            lines = (out.decode() if isinstance(out, bytes) else out).splitlines()
        done = 0
        for line in lines:
            if line.startswith("result "):
                results[todo[done]] = line[len("result "):]
                done += 1
        if done < len(todo):          # the child died (or hung) on todo[done]
            results[todo[done]] = "crash"
            done += 1
        todo = todo[done:]
    return results


def verify(opcodes: Iterable[str] | None = None) -> list[str]:
    """Mismatches between the table and the pinned interpreter (empty: the table holds)."""
    cases = probe_cases(opcodes)
    outcomes = run_probes([c for c, _ in cases])
    wrong = []
    for (opcode, sig), expected in cases:
        got = outcomes[(opcode, sig)]
        if got.startswith("build:") or (got == "ok") != expected:   # a broken probe proves nothing
            wrong.append(f"{opcode} {_sig_text(sig)}: table says "
                         f"{'runs' if expected else 'fails'}, interpreter: {got}")
    return wrong


def _child() -> int:
    import os

    for op, sig in json.loads(sys.stdin.read()):
        try:
            outcome = run_probe(probe_model(op, tuple(sig)))
        except (ValueError, KeyError) as exc:        # the probe itself is wrong
            outcome = f"build: {exc}"
        sys.stdout.write(f"result {outcome}\n")
        sys.stdout.flush()
    os._exit(0)   # skip interpreter teardown: the answers are out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyq.model.tflm_dtypes",
                                     description="Check the TFLM dtype table against the "
                                     "installed tflite-micro interpreter.")
    parser.add_argument("--verify", action="store_true", help="probe every table entry")
    parser.add_argument("--list", action="store_true", help="print every probe's outcome")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("ops", nargs="*", help="only these ops")
    args = parser.parse_args(argv)
    if args.child:
        return _child()
    ops = args.ops or None
    if args.list:
        cases = probe_cases(ops)
        outcomes = run_probes([c for c, _ in cases])
        for (op, sig), expected in cases:
            mark = "ok  " if (outcomes[(op, sig)] == "ok") == expected else "DIFF"
            sys.stdout.write(f"{mark} {op} {_sig_text(sig)}: {outcomes[(op, sig)]}\n")
        return 0
    wrong = verify(ops)
    for line in wrong:
        sys.stdout.write(line + "\n")
    n = len(probe_cases(ops))
    sys.stdout.write(f"{n - len(wrong)}/{n} probes agree with the table\n")
    return 1 if wrong else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
