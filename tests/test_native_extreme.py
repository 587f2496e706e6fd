"""Extreme quantization parameters: exact under UBSan+ASan and arena poisoning, or refused.

Every native kernel that requantizes or converts floats runs extreme-parameter cases
(tinyq/firmware/native/extremecases.py) and a sample of the random cases through a host build
with -fsanitize=undefined,address -fno-sanitize-recover=all and through the
arena-poisoning check, bit for bit against the tflite-micro interpreter. Parameters
with no exact answer are refused by ``tinyq inspect --runtime native`` and by code
generation alike (docs/numerics.md). benchmarks/native_ops_random.py --long runs more.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinyq.errors import ModelError, UnsupportedError
from tinyq.firmware.native import codegen, quant, support
from tinyq.firmware.native.extremecases import (
    EXTREME_CASES,
    tinyq_quantize,
    tinyq_softmax_equal_row,
)
from tinyq.firmware.native.host import HostModel, SanitizedModel
from tinyq.firmware.native.opcases import CASES, run_cases
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

#: extreme cases per op in CI (one model each: one sanitized build, one TFLM run)
EXTREME_PER_OP = 40
#: random cases per op run sanitized and poisoned in CI (test_native_ops runs 100 unsanitized)
RANDOM_SAMPLE_PER_OP = 20

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _check(results, what):
    assert results
    bad = [r for r in results if not r.identical]
    assert not bad, (f"{len(bad)}/{len(results)} {what} cases fail, e.g. {bad[0].label}: "
                     f"{bad[0].finding or f'max diff {bad[0].max_diff}'}")


@pytest.mark.parametrize("opcode", sorted(EXTREME_CASES))
def test_extreme_parameters_are_exact_sanitized_and_poisoned(opcode):
    results = run_cases(opcode, EXTREME_PER_OP, seed=18, generators=EXTREME_CASES,
                        per_model=EXTREME_PER_OP, sanitize=True, poison=True)
    _check(results, f"extreme {opcode}")


@pytest.mark.parametrize("opcode", sorted(CASES))
def test_random_cases_are_clean_sanitized_and_poisoned(opcode):
    results = run_cases(opcode, RANDOM_SAMPLE_PER_OP, seed=5, per_model=RANDOM_SAMPLE_PER_OP,
                        sanitize=True, poison=True)
    _check(results, opcode)


@pytest.mark.parametrize("opcode", ["CONV_2D", "FULLY_CONNECTED"])
def test_simd_paths_are_clean_sanitized_and_poisoned(opcode):
    for gens, what in ((CASES, "random"), (EXTREME_CASES, "extreme")):
        results = run_cases(opcode, RANDOM_SAMPLE_PER_OP, seed=6, generators=gens,
                            per_model=RANDOM_SAMPLE_PER_OP, defines=("TQ_SIMD_EMULATE",),
                            sanitize=True, poison=True)
        _check(results, f"SIMD {what} {opcode}")


# ----------------------------------------------------------------------------- the checks bite


def _fc(out_scale=0.05, bias=0, in_zp=0, w_value=1, depth=8, in_scale=0.02, w_scale=0.01,
        in_memory=False):
    g = GraphBuilder()
    x = g.add_tensor((1, depth), "int8", scale=in_scale, zero_point=in_zp)
    w = g.add_constant(np.full((2, depth), w_value, np.int8), scale=w_scale, zero_point=0)
    b = g.add_constant(np.array([bias, 0], np.int32), scale=in_scale * w_scale, zero_point=0)
    y = g.add_tensor((1, 2), "int8", scale=out_scale, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.model() if in_memory else g.build()


def _refusals(data):
    model = read_model_bytes(data) if isinstance(data, bytes) else data
    found = support.problems(model)
    with pytest.raises(UnsupportedError) as caught:
        codegen.render(model)
    # code generation refuses with the first problem `inspect --runtime native` lists
    assert str(found[0]) in str(caught.value)
    return found


def test_requantization_shift_above_30_is_refused_not_wrapped():
    # real multiplier 0.02 * 0.01 / 2^-158... = 2^146.x: the shift (147) used to wrap in
    # the int8_t shift array to -109 and give [0 1] where TFLM gives [127 127]
    found = _refusals(_fc(out_scale=float(np.float32(2.0 ** -149))))
    assert [(p.opcode, p.op_index) for p in found] == [("FULLY_CONNECTED", 0)]
    assert found[0].message.startswith("output scale too small")
    # the largest accepted multiplier (shift 30) generates and is exact
    ok = _fc(out_scale=float(np.float32(0.02 * 0.01 / 2 ** 29.5)))
    assert not support.problems(read_model_bytes(ok))


@pytest.mark.parametrize(("real", "expected"), [
    (2.0 ** 30 * (1 - 2.0 ** -20), (2147481600, 30)),     # the largest accepted shift
    (2.0 ** 30 * (1 - 2.0 ** -33), None),     # mantissa rounds to 2^31: the shift becomes 31
    (2.0 ** 30, None),
    (2.0 ** -32, (1 << 30, -31)),             # the smallest shift TFLM keeps
    (2.0 ** -33, (0, 0)),                     # flushed to zero, as TFLM does
    (-0.5, None), (float("inf"), None), (float("nan"), None),
])
def test_kernel_multiplier_bounds(real, expected):
    if expected is None:
        with pytest.raises(quant.MultiplierRangeError):
            quant.kernel_multiplier(real)
    else:
        assert quant.kernel_multiplier(real) == expected


def test_cli_inspect_and_generate_agree_on_a_refusal(tmp_path, capsys):
    from tinyq.cli import main

    path = tmp_path / "m.tflite"
    path.write_bytes(_fc(out_scale=float(np.float32(2.0 ** -149))))
    main(["inspect", str(path), "--runtime", "native"])
    listed = [ln.strip() for ln in capsys.readouterr().out.splitlines()
              if ln.strip().startswith("error: op 0 FULLY_CONNECTED")]
    assert len(listed) == 1 and "output scale too small" in listed[0]
    assert main(["generate", str(path), "--board", "mps2-an386", "-o",
                 str(tmp_path / "p")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and listed[0].removeprefix("error: ") in err[0]
    assert "Traceback" not in err[0] and not (tmp_path / "p").exists()


def test_accumulator_bound_refuses_exactly_above_int32_max():
    depth, w_value = 8, 127
    room = 2 ** 31 - 1 - 256 * depth * w_value         # in_zp = 0: folded == bias
    assert not support.problems(read_model_bytes(_fc(bias=room, w_value=w_value)))
    found = _refusals(_fc(bias=room + 1, w_value=w_value))
    assert [p.opcode for p in found] == ["FULLY_CONNECTED"]
    assert "accumulator could overflow" in found[0].message
    # the zero-point fold counts: bias - zp * sum(w) moves the bound
    assert _refusals(_fc(bias=room, w_value=w_value, in_zp=-1))


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_scales_are_refused_in_one_line(scale):
    # a .tflite file: the reader refuses it; a model built in memory: the support checks
    with pytest.raises(ModelError, match=f"tensor 3 .* has quantization scale {scale}"):
        read_model_bytes(_fc(out_scale=scale))
    found = _refusals(_fc(out_scale=scale, in_memory=True))
    assert any("scale that is zero, negative, infinite or NaN" in p.message for p in found)


def test_zero_point_outside_the_type_is_refused():
    with pytest.raises(ModelError, match="tensor 0 .* has zero point 200, outside int8's"):
        read_model_bytes(_fc(in_zp=200))
    found = _refusals(_fc(in_zp=200, in_memory=True))
    assert any("zero point outside its type's range" in p.message for p in found)


def test_mean_of_too_many_values_is_refused():
    g = GraphBuilder()
    x = g.add_tensor((1, 1 << 24), "int8", scale=0.1, zero_point=0)
    ax = g.add_constant(np.array([1], np.int32))
    y = g.add_tensor((1,), "int8", scale=0.1, zero_point=0)
    g.add_op("MEAN", [x, ax], [y], {"keep_dims": False})
    found = support.problems(read_model_bytes(g.build()))
    assert [p.message for p in found] == [
        "MEAN reduces 2^24 or more values per output (the int32 sum could overflow)"]


def test_quantize_of_nan_and_inf_has_tinyqs_documented_result():
    g = GraphBuilder()
    x = g.add_tensor((6,), "float32")
    y = g.add_tensor((6,), "int8", scale=0.5, zero_point=-3)
    g.add_op("QUANTIZE", [x], [y], {})
    model = read_model_bytes(g.build())
    data = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1.25], np.float32)
    want = np.array([-3, 127, -128, 127, -128, 0], np.int8)      # 1.25 / 0.5 = 2.5 -> 3
    assert np.array_equal(tinyq_quantize(data, 0.5, -3), want)
    assert np.array_equal(HostModel(model).invoke([data])[0], want)
    assert np.array_equal(SanitizedModel(model).invoke([data])[0], want)


def _softmax_rows(depths, out16):
    g = GraphBuilder()
    ios = []
    for depth in depths:
        x = g.add_tensor((1, depth), "int8", scale=0.1, zero_point=0)
        y = (g.add_tensor((1, depth), "int16", scale=1 / 65536, zero_point=-32768) if out16
             else g.add_tensor((1, depth), "int8", scale=1 / 256, zero_point=-128))
        g.add_op("SOFTMAX", [x], [y], {"beta": 1.0})
        ios.append((x, y))
    data = g.build([x for x, _ in ios], [y for _, y in ios])
    return data, [np.full((1, d), 7, np.int8) for d in depths]


@pytest.mark.parametrize("out16", [False, True], ids=["int8", "int16"])
def test_softmax_of_8192_equal_maxima_saturates(out16):
    """From 8192 maximal terms TFLM's sum wraps to 0; tinyq's saturates. int8 outputs
    abort TFLM from 512 maximal terms on (its output shift exceeds 31; tinyq caps it).
    Where the tflite-micro interpreter does not abort, both agree."""
    data, inputs = _softmax_rows((4096, 8191) if out16 else (300, 511), out16)
    ours = SanitizedModel(read_model_bytes(data)).invoke(inputs)
    theirs = TflmInterpreter(data).invoke(inputs)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, np.asarray(b).reshape(a.shape))
    assert tinyq_softmax_equal_row(8192, out16) == (-32760 if out16 else -128)
    data, inputs = _softmax_rows((8192, 9000) if out16 else (512, 8191, 8192, 9000), out16)
    for out, x in zip(SanitizedModel(read_model_bytes(data)).invoke(inputs), inputs,
                      strict=True):
        assert (out == tinyq_softmax_equal_row(x.shape[1], out16)).all()


def test_poisoning_catches_reads_and_writes_outside_an_ops_tensors(monkeypatch):
    """The check can fail: shrink what an op owns and its own accesses are flagged."""
    from tinyq.firmware.native import opcases

    g = GraphBuilder()
    case = opcases.gen_fully_connected(g, np.random.default_rng(3))
    model = read_model_bytes(g.build([case.inputs[0][0]], list(case.outputs)))
    host = HostModel(model)
    data = [case.inputs[0][1]]
    clean = host.invoke(data)[0]
    plan = host.sources.plan
    (inp,), (out,) = model.inputs, model.outputs
    assert plan.offsets[inp] != plan.offsets[out]

    def without(tensor):
        masks = host._own_bytes()
        start = plan.offsets[tensor]
        masks[0][start:start + model.tensors[tensor].nbytes] = False
        return lambda: masks

    monkeypatch.setattr(host, "_own_bytes", without(inp))      # reads its input: poisoned
    outs, _ = host.invoke_poisoned(data, seed=1)
    assert not np.array_equal(outs[0], clean)
    monkeypatch.setattr(host, "_own_bytes", without(out))      # writes its output: flagged
    _, violations = host.invoke_poisoned(data, seed=1)
    assert violations and violations[0].startswith("op 0 FULLY_CONNECTED wrote")
