"""Every native kernel, bit for bit against the tflite-micro interpreter on random cases.

Each op gets ``CASES_PER_OP`` random cases (shapes, strides, dilations, padding,
fused activations, scales, zero points, weights, per-channel and per-tensor),
packed 50 to a model so one host compile covers many cases.
benchmarks/native_ops_random.py runs the same with --cases 1000.
"""

from __future__ import annotations

import shutil

import pytest

from tinyq.firmware.native.opcases import CASES, CASES_PER_MODEL, FAMILY_OPS, run_cases

#: random cases per op in the default test run (the benchmark runs >= 1000)
CASES_PER_OP = 100
#: for the ops of the op-family modules (data movement, comparisons, arithmetic): one
#: model of random cases each, to keep their CI share small; the benchmark runs 1000
FAMILY_CASES_PER_OP = CASES_PER_MODEL


@pytest.fixture(autouse=True)
def _need_cc(tmp_path, monkeypatch):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")


@pytest.mark.parametrize("opcode", sorted(CASES))
def test_op_is_bit_exact_with_tflm(opcode):
    count = FAMILY_CASES_PER_OP if opcode in FAMILY_OPS else CASES_PER_OP
    results = run_cases(opcode, count, seed=2024)
    assert len(results) == count
    bad = [r for r in results if not r.identical]
    assert not bad, (f"{len(bad)}/{len(results)} {opcode} cases differ from TFLM, e.g. "
                     f"{bad[0].label} (max diff {bad[0].max_diff})")



def test_every_lowering_has_random_cases():
    from tinyq.firmware.native.lower import LOWERINGS

    # EXPAND_DIMS shares RESHAPE's lowering (and its cases)
    missing = sorted(set(LOWERINGS) - set(CASES) - {"EXPAND_DIMS"})
    assert not missing, f"ops without random bit-exactness cases: {missing}"


#: ops whose kernels have a SIMD (Cortex-M DSP) path
SIMD_OPS = ("CONV_2D", "FULLY_CONNECTED")


@pytest.mark.parametrize("opcode", SIMD_OPS)
def test_simd_path_is_bit_exact_with_tflm(opcode):
    """The DSP code paths, run on the host with portable stand-ins for SXTB16/SMLAD."""
    results = run_cases(opcode, CASES_PER_OP, seed=77, defines=("TQ_SIMD_EMULATE",))
    bad = [r for r in results if not r.identical]
    assert not bad, f"{len(bad)} {opcode} cases differ, e.g. {bad[0].label}"
