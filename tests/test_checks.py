"""Pre-flash checks: each model here is built with the writer and really fails in TFLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphs import float16_fc, hybrid_fc

from tinyq import ops_reference
from tinyq.errors import ModelError, UnsupportedError
from tinyq.model import checks, tflm_dtypes
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder, TensorSpec, single_op_model

REPO = Path(__file__).resolve().parent.parent


def _uint8_relu() -> bytes:
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    y = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    g.add_op("RELU", [x], [y])
    return g.build()


def _names(found):
    return [p.check for p in found]


def test_hybrid_model_is_flagged_and_tflm_really_rejects_it():
    data = hybrid_fc()
    found = checks.problems(read_model_bytes(data), "tflm")
    assert _names(found) == ["tflm_hybrid_model"]
    assert "--mode int8" in found[0].fix and found[0].op_index == 0
    assert "float32 activations with int8 weights" in found[0].message
    with pytest.raises((UnsupportedError, ModelError)):
        TflmInterpreter(data).invoke([np.ones((1, 8), np.float32)])


def test_float16_model_is_flagged_and_tflm_really_rejects_it():
    data = float16_fc()
    found = checks.problems(read_model_bytes(data), "tflm")
    assert _names(found) == ["tflm_float16_weights"]
    assert found[0].opcode == "DEQUANTIZE" and "--mode int8" in found[0].fix
    with pytest.raises((UnsupportedError, ModelError)):
        TflmInterpreter(data).invoke([np.ones((1, 8), np.float32)])


def test_uint8_compute_is_flagged():
    found = checks.problems(read_model_bytes(_uint8_relu()), "tflm")
    assert _names(found) == ["tflm_uint8_tensors"]


def test_uint8_io_through_quantize_is_fine():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "uint8", scale=0.1, zero_point=128)
    y = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=0)
    z = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=0)
    g.add_op("QUANTIZE", [x], [y])
    g.add_op("RELU", [y], [z])
    assert checks.problems(read_model_bytes(g.build()), "tflm") == ()


def test_unsupported_op_is_flagged():
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("REDUCE_PROD", [x, g.add_constant(np.array([1], np.int32))], [y])
    found = checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm")
    assert _names(found) == ["tflm_unsupported_op"]
    assert found[0].message.startswith("REDUCE_PROD is not an op TFLM implements")


def _int8_unary(opcode: str):
    spec = TensorSpec((1, 8), "int8", scale=0.05, zero_point=0)
    return read_model_bytes(single_op_model(opcode, [spec], [spec]))


def test_an_op_neither_runtime_runs_gets_a_fix_that_works_in_both():
    import tinyq.firmware.native.support  # noqa: F401 - registers the native runtime

    model = _int8_unary("GELU")
    (tflm,) = checks.problems(model, "tflm")
    (native,) = checks.problems(model, "native")
    for problem, other in ((tflm, "--runtime native"), (native, "--runtime tflm")):
        assert other not in problem.fix, problem.fix
        assert 'activation="silu"' in problem.fix and "hard_silu" in problem.fix, problem.fix
    # the replacements it names convert to ops both runtimes run in int8
    for opcodes in (["LOGISTIC", "MUL"], ["HARD_SWISH"]):
        for opcode in opcodes:
            assert opcode in checks.TFLM_BUILTIN_OPS
            assert opcode in tinyq.firmware.native.support.LOWERINGS
    # an op only TFLM runs: native points at TFLM
    (elu,) = checks.problems(_int8_unary("ELU"), "native")
    assert elu.fix.startswith("use --runtime tflm, which runs ELU"), elu.fix


def test_an_op_only_native_runs_points_tflm_users_at_native(monkeypatch):
    monkeypatch.setitem(checks.RUNTIME_PROBLEMS, "native", lambda model: ())
    (found,) = checks.problems(_int8_unary("GELU"), "tflm")
    assert found.fix.startswith("use --runtime native, which runs GELU"), found.fix


def test_int8_model_has_no_problems():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), scale=0.1)
    w = g.add_constant(np.ones((4, 8), np.int8), scale=0.1)
    y = g.add_tensor((1, 4), scale=0.2)
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    assert checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm") == ()


def test_messages_come_from_docstrings():
    for c in checks.CHECKS:
        assert c.message and c.fix, c.name
        assert c.message.split()[0] in (checks.inspect.getdoc(c.fn) or "")


def test_native_runtime_hook():
    found = checks.problems(read_model_bytes(hybrid_fc()), "native")
    assert found and all(p.runtime == "native" for p in found)


def test_supported_ops_doc_is_generated_from_the_checks():
    text = ops_reference.markdown()
    for c in checks.CHECKS:
        assert f"`{c.name}`" in text
    assert "`CONV_2D`" in text
    doc = (REPO / "docs" / "supported_ops.md").read_text()
    for line in text.splitlines():
        if line.startswith(("| tflm |", "| native |")):
            assert line in doc, "regenerate: python -m tinyq.ops_reference --markdown"


def test_markdown_command():
    out = subprocess.run([sys.executable, "-m", "tinyq.ops_reference", "--markdown"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("# Supported ops and pre-flash checks")
    assert out == (REPO / "docs" / "supported_ops.md").read_text()


def test_the_model_layer_imports_no_runtime():
    """checks ask the native runtime through its registration, never by importing it."""
    import ast

    for path in (REPO / "tinyq" / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            names += [a.value for a in ast.walk(node) if isinstance(node, ast.Call)
                      and isinstance(a, ast.Constant) and isinstance(a.value, str)
                      and a.value.startswith("tinyq.")]
            for name in names:
                assert not name.startswith(("tinyq.firmware", "tinyq.analyze",
                                            "tinyq.measure", "tinyq.device",
                                            "tinyq.convert")), f"{path.name} imports {name}"


# ---------------------------------------------------------------- TFLM kernel dtypes


def _unary(opcode: str, dtype: str) -> bytes:
    quant = {"scale": 0.05, "zero_point": 0} if dtype in ("int8", "int16") else {}
    return single_op_model(opcode, [TensorSpec((1, 8), dtype, **quant)],
                           [TensorSpec((1, 8), dtype, **quant)])


@pytest.mark.parametrize("opcode", ["SQRT", "EXP"])
def test_int8_op_without_an_int8_tflm_kernel_is_flagged(opcode):
    found = checks.problems(read_model_bytes(_unary(opcode, "int8")), "tflm")
    assert _names(found) == ["tflm_unsupported_dtype"]
    p = found[0]
    assert (p.op_index, p.opcode) == (0, opcode)
    assert p.message.startswith(f"{opcode} has int8 tensors, but TFLM's {opcode} kernel")
    assert "runs only float32" in p.message
    assert "--mode float32" in p.fix and "tinyq inspect" not in p.fix
    assert "--runtime native" not in p.fix       # the native runtime has no such kernel
    assert "\n" not in str(p)


@pytest.mark.parametrize("opcode, dtype", [("SQRT", "float32"), ("EXP", "float32"),
                                           ("RSQRT", "int8"), ("ABS", "int16"),
                                           ("LEAKY_RELU", "int16")])
def test_a_dtype_the_tflm_kernel_runs_passes(opcode, dtype):
    assert checks.problems(read_model_bytes(_unary(opcode, dtype)), "tflm") == ()


def test_int8_op_with_an_int16_kernel_suggests_int16x8():
    data = single_op_model("MEAN", [TensorSpec((1, 4, 8), "int32"),
                                    TensorSpec((1,), "int32", data=np.array([1]))],
                           [TensorSpec((1, 8), "int32")], {"keep_dims": False})
    (p,) = checks.problems(read_model_bytes(data), "tflm")
    assert "runs only float32, int8 or int16" in p.message and "--mode float32" in p.fix
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "int8", scale=0.05)
    alpha = g.add_constant(np.ones(8, np.int16), scale=0.05)
    y = g.add_tensor((1, 8), "int8", scale=0.05)
    g.add_op("PRELU", [x, alpha], [y])
    (p,) = checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm")
    assert "int8, int16 -> int8" in p.message and "--mode int16x8" in p.fix


def test_mixed_signatures_are_matched_whole():
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "int16", scale=0.05)
    alpha = g.add_constant(np.ones(8, np.int8), scale=0.05)
    y = g.add_tensor((1, 8), "int16", scale=0.05)
    g.add_op("PRELU", [x, alpha], [y])
    assert checks.problems(read_model_bytes(g.build(inputs=[x], outputs=[y])), "tflm") == ()


def test_native_runtime_is_suggested_only_when_it_runs_the_op(monkeypatch):
    model = read_model_bytes(_unary("SQRT", "int8"))
    monkeypatch.setattr(checks, "_native_runs", lambda m: {0})
    (p,) = checks.problems(model, "tflm")
    assert "use --runtime native" in p.fix


def test_cli_inspect_refuses_int8_sqrt_in_one_line(tmp_path, capsys):
    from tinyq.cli import main as cli_main

    path = tmp_path / "sqrt.tflite"
    path.write_bytes(_unary("SQRT", "int8"))
    assert cli_main(["inspect", str(path), "--runtime", "tflm"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "op 0 SQRT" in errors[0] and "int8" in errors[0]
    assert "Traceback" not in captured.err
    assert "TFLM arena    not measured" in captured.out


def test_dtype_table_agrees_with_the_pinned_tflite_micro_interpreter():
    """Runs real one-op models in tflite-micro (child processes): accepted signatures
    must allocate and invoke, every other probed dtype must fail."""
    ops = ["SQRT", "EXP", "RSQRT", "SOFTMAX", "TRANSPOSE_CONV", "MEAN"]
    cases = tflm_dtypes.probe_cases(ops)
    assert sum(ok for _, ok in cases) >= 10 and sum(not ok for _, ok in cases) >= 10
    assert tflm_dtypes.verify(ops) == []


def test_dtype_table_verification_catches_a_wrong_row(monkeypatch):
    wrong = tflm_dtypes.OpDtypes((0,), frozenset({("float32", "float32"), ("int8", "int8")}),
                                 "elementwise.cc")
    monkeypatch.setattr(tflm_dtypes, "TFLM_OP_DTYPES",
                        {**tflm_dtypes.TFLM_OP_DTYPES, "SQRT": wrong})
    (line,) = tflm_dtypes.verify(["SQRT"])
    assert line.startswith("SQRT int8: table says runs, interpreter: invoke")


def test_dtype_table_rows_are_consistent():
    assert set(tflm_dtypes.TFLM_OP_DTYPES) <= checks.TFLM_BUILTIN_OPS
    for op, row in tflm_dtypes.TFLM_OP_DTYPES.items():
        assert row.signatures, op
        assert all(len(s) == len(row.positions) + 1 for s in row.signatures), op
        assert row.source.endswith(".cc"), op
    for op in ("SQRT", "RSQRT", "EXP", "LOG", "SIN", "COS", "ABS", "NEG", "SQUARE",
               "ROUND", "CEIL", "FLOOR", "DIV", "FLOOR_DIV", "FLOOR_MOD",
               "SQUARED_DIFFERENCE", "LOGISTIC", "TANH", "HARD_SWISH", "ELU", "PRELU",
               "LEAKY_RELU", "MAXIMUM", "MINIMUM", "SOFTMAX", "LOG_SOFTMAX",
               "L2_NORMALIZATION", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN",
               "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE_CONV",
               "BATCH_MATMUL", "SVDF"):
        assert op in tflm_dtypes.TFLM_OP_DTYPES, op


def test_supported_ops_doc_lists_the_dtype_table():
    doc = (REPO / "docs" / "supported_ops.md").read_text()
    for line in ops_reference.markdown().splitlines():
        if line.startswith("| `") and "kernels/" in line:
            assert line in doc, "regenerate: python -m tinyq.ops_reference --markdown"


SIGNAL_OPS = sorted(op for op in checks.TFLM_CUSTOM_OPS if op.startswith("Signal"))


def test_tflm_check_accepts_every_signal_op():
    from tinyq.model.tflite_reader import read_model_bytes
    from tinyq.model.tflite_writer import GraphBuilder

    for name in [*SIGNAL_OPS, "NotAnOp"]:
        g = GraphBuilder()
        x, y = g.add_tensor((1, 16), "int16"), g.add_tensor((1, 16), "int16")
        g.add_op("CUSTOM", [x], [y], custom_code=name)
        found = list(checks.tflm_unsupported_op(read_model_bytes(g.build(inputs=[x],
                                                                          outputs=[y]))))
        assert (found == []) == (name != "NotAnOp"), name


_REGISTRATION_PROBE = """
import sys, tflite_micro
from tinyq.model.tflite_writer import GraphBuilder
g = GraphBuilder(); x = g.add_tensor((1, 16), "int16"); y = g.add_tensor((1, 16), "int16")
g.add_op("CUSTOM", [x], [y], custom_code=sys.argv[1])
try:
    tflite_micro.runtime.Interpreter.from_bytes(g.build(inputs=[x], outputs=[y]), arena_size=65536)
except RuntimeError:
    pass
"""


@pytest.mark.parametrize("name", [*SIGNAL_OPS, "NotAnOp"])
def test_the_pinned_tflite_micro_registers_the_signal_ops(name):
    """A custom op TFLM does not register fails with "Failed to get registration"; a
    registered Signal kernel gets as far as its own Init/Prepare (which, without the
    op's options, refuses the node or crashes the child: either proves registration)."""
    pytest.importorskip("tflite_micro")
    proc = subprocess.run([sys.executable, "-c", _REGISTRATION_PROBE, name],
                          capture_output=True, text=True, timeout=60, check=False)
    unregistered = "Failed to get registration" in proc.stderr + proc.stdout
    assert unregistered == (name == "NotAnOp"), (name, proc.returncode, proc.stderr[-300:])


def test_supported_ops_doc_says_how_macs_are_counted():
    from tinyq.analyze import MAC_RULES

    doc = (REPO / "docs" / "supported_ops.md").read_text()
    for op, rule in MAC_RULES.items():
        assert f"| `{op}` | {rule} |" in doc, "regenerate: python -m tinyq.ops_reference --markdown"


def test_a_while_loop_is_named_with_a_fix_for_keras_and_third_party_models():
    from tinyq.model.tflite_writer import GraphBuilder

    g = GraphBuilder()
    x, y = g.add_tensor((1, 4), "float32"), g.add_tensor((1, 4), "float32")
    g.add_op("WHILE", [x], [y], {"cond_subgraph_index": 1, "body_subgraph_index": 2})
    # in memory: the writer makes one subgraph, and the reader refuses a file whose WHILE
    # names subgraphs it lacks
    found = [p for p in checks.problems(g.model([x], [y]), "tflm")
             if p.check == "tflm_while_loop"]
    (p,) = found
    assert p.severity == "warning" and p.opcode == "WHILE"
    assert "Keras 3 LSTM and GRU" in p.message
    assert "`tinyq quantize`" in p.fix and "a .tflite from elsewhere" in p.fix
