"""inspect: MAC counting by hand, the arena search in child processes, fit arithmetic, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import mlperf_model

from tinyq import analyze
from tinyq.board_profile import Board, Counter, Flashing, MemoryRegion, Uart
from tinyq.cli import main as cli_main
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))


def _small_net() -> bytes:
    """conv 3x3 (3->4 ch, 6x6 -> 4x4) -> depthwise 3x3 SAME -> reshape -> FC 64->5."""
    rng = np.random.default_rng(1)
    g = GraphBuilder()
    x = g.add_tensor((1, 6, 6, 3), scale=0.5, zero_point=-1)
    w1 = g.add_constant(rng.integers(-9, 9, (4, 3, 3, 3), dtype=np.int8), scale=[0.02] * 4,
                        zero_point=[0] * 4)
    b1 = g.add_constant(np.zeros(4, np.int32), scale=[0.01] * 4, zero_point=[0] * 4)
    y1 = g.add_tensor((1, 4, 4, 4), scale=0.3, zero_point=-5)
    w2 = g.add_constant(rng.integers(-9, 9, (1, 3, 3, 4), dtype=np.int8), scale=[0.02] * 4,
                        zero_point=[0] * 4, axis=3)
    b2 = g.add_constant(np.zeros(4, np.int32), scale=[0.006] * 4, zero_point=[0] * 4)
    y2 = g.add_tensor((1, 4, 4, 4), scale=0.3, zero_point=-5)
    y3 = g.add_tensor((1, 64), scale=0.3, zero_point=-5)
    w3 = g.add_constant(rng.integers(-9, 9, (5, 64), dtype=np.int8), scale=0.01)
    b3 = g.add_constant(np.zeros(5, np.int32), scale=0.003)
    y4 = g.add_tensor((1, 5), scale=0.2, zero_point=0)
    g.add_op("CONV_2D", [x, w1, b1], [y1])
    g.add_op("DEPTHWISE_CONV_2D", [y1, w2, b2], [y2], {"padding": "SAME"})
    g.add_op("RESHAPE", [y2], [y3], {"new_shape": [1, 64]})
    g.add_op("FULLY_CONNECTED", [y3, w3, b3], [y4])
    return g.build()


def test_macs_by_hand_on_a_small_model():
    report = analyze.inspect(read_model_bytes(_small_net()), measure_arena=False)
    conv, dw, reshape, fc = report.ops
    assert conv.macs == (4 * 4 * 4) * 3 * 3 * 3      # outputs x kh x kw x in_ch = 1728
    assert dw.macs == (4 * 4 * 4) * 3 * 3            # outputs x kh x kw = 576
    assert reshape.macs == 0
    assert fc.macs == 5 * 64                         # outputs x inputs = 320
    assert report.macs == 1728 + 576 + 320
    assert conv.weights_bytes == 4 * 27 + 4 * 4      # int8 weights + int32 bias
    assert report.weights_bytes == 124 + (36 + 16) + (320 + 20)
    assert conv.inputs[1].quant.count == 4 and conv.inputs[1].quant.per_channel
    assert report.activation_bytes == 108 + 64 + 64 + 64 + 5


MLPERF_MACS = {
    "ad01_int8.tflite": 264_192,
    "kws_ref_model.tflite": 2_656_768,
    "vww_96_int8.tflite": 7_489_664,
    "pretrainedResnet_quant.tflite": 12_501_632,
}


@pytest.mark.parametrize("name", sorted(MLPERF_MACS))
def test_mlperf_macs_match_the_reference_table(name):
    report = analyze.inspect(mlperf_model(name), measure_arena=False)
    assert report.macs == MLPERF_MACS[name]
    assert report.unsupported == ()


def _allocates(data: bytes, size: int) -> bool:
    """Allocate in a fresh child process; a crash counts as "does not allocate"."""
    code = ("import sys, tflite_micro\n"
            "d = sys.stdin.buffer.read()\n"
            "try:\n"
            f"    tflite_micro.runtime.Interpreter.from_bytes(d, arena_size={size})\n"
            "except RuntimeError:\n"
            "    sys.exit(1)\n")
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                          timeout=120, check=False)
    return proc.returncode == 0


def test_arena_search_finds_the_smallest_arena():
    data = _small_net()
    model = read_model_bytes(data)
    found = analyze.measure_tflm_arena(model, data)
    assert found.arena_bytes % 16 == 0 and not found.cached and found.probes > 0
    assert _allocates(data, found.arena_bytes)
    assert not _allocates(data, found.arena_bytes - 16)
    again = analyze.measure_tflm_arena(model, data)
    assert again.cached and again.arena_bytes == found.arena_bytes


def test_arena_search_survives_crashing_probes(monkeypatch):
    data = _small_net()
    model = read_model_bytes(data)
    reference = analyze.measure_tflm_arena(model, data, use_cache=False).arena_bytes
    # From 0 up, tiny arenas SIGSEGV the tflite-micro interpreter: each crash loses one child.
    monkeypatch.setattr(analyze, "arena_search_bounds", lambda m: (0, 32))
    found = analyze.measure_tflm_arena(model, data, use_cache=False)
    assert found.arena_bytes == reference


def _board(flash: int, ram: int, stack: int = 4096, name: str = "testboard") -> Board:
    return Board(name=name, vendor="t", description="", core="cortex-m4", fpu="none",
                 clock_hz=10**8, flash=MemoryRegion("flash", 0, flash),
                 ram=MemoryRegion("ram", 0x20000000, ram), uart=Uart("cmsdk", 0x40004000),
                 counter=Counter("systick", 10**8), flashing=Flashing("emulator"),
                 stack_bytes=stack)


def test_fit_arithmetic():
    model = read_model_bytes(_small_net())
    f = analyze.fit(model, _board(flash=200_000, ram=20_000), "tflm", arena_bytes=3000)
    assert f.flash_needed == (model.size_bytes + analyze.TFLM_CODE_BYTES_REFERENCE
                              + analyze.HARNESS_CODE_BYTES_ESTIMATE)
    assert f.ram_needed == (3000 + 4096 + analyze.HARNESS_STATIC_RAM_ESTIMATE
                            + analyze.TFLM_STATIC_RAM_ESTIMATE + 108)
    assert f.fits and f.flash_over == 0 and f.ram_over == 0
    small = analyze.fit(model, _board(flash=40_000, ram=8_000), "tflm", arena_bytes=3000)
    assert not small.fits
    assert small.flash_over == small.flash_needed - 40_000
    assert small.ram_over == small.ram_needed - 8_000
    assert f"{small.ram_over:,} bytes more RAM" in small.summary()
    native = analyze.fit(model, _board(flash=200_000, ram=10_000), "native", arena_bytes=200)
    assert native.flash_parts["weights"] == analyze.weights_bytes(model)


def test_fit_hint_native_names_boards_that_fit_never_native():
    model = read_model_bytes(_small_net())
    tiny = _board(flash=30_000, ram=5_000, name="tiny")
    failed = analyze.fit(model, tiny, "native", arena_bytes=200)
    assert not failed.fits
    candidates = [_board(2_000_000, 2_000_000, name="huge"), tiny,
                  _board(40_000, 20_000, name="small-enough"),
                  _board(40_000, 5_500, name="ram-too-small")]
    hint = analyze.fit_hint(model, tiny, failed, candidates=candidates)
    assert "--runtime native (small-enough, huge)" in hint     # smallest first, computed
    assert "ram-too-small" not in hint and "use --runtime" not in hint
    none = analyze.fit_hint(model, tiny, failed, candidates=[candidates[3]])
    assert none.startswith("no bundled board has room for it with --runtime native")
    assert "smaller model" in none


def test_fit_hint_tflm_suggests_native_only_when_native_fits():
    model = read_model_bytes(_small_net())
    # Flash between native's need (weights + native code) and TFLM's (.tflite + TFLM code).
    flash = analyze.NATIVE_CODE_BYTES_ESTIMATE + analyze.HARNESS_CODE_BYTES_ESTIMATE + 4096
    middle = _board(flash=flash, ram=20_000, name="middle")
    failed = analyze.fit(model, middle, "tflm", arena_bytes=3000)
    assert not failed.fits and analyze.fit(model, middle, "native", 200).fits
    hint = analyze.fit_hint(model, middle, failed, native_arena=200, candidates=[middle])
    assert hint.startswith("use --runtime native, which fits middle (flash ")
    # Too little RAM for native as well: no native advice, a board that fits TFLM instead.
    cramped = _board(flash=flash, ram=4_000, name="cramped")
    failed = analyze.fit(model, cramped, "tflm", arena_bytes=3000)
    big = _board(300_000, 300_000, name="big")
    hint = analyze.fit_hint(model, cramped, failed, native_arena=200, candidates=[big])
    assert hint == "use a board it fits with --runtime tflm (big) or a smaller model"


def test_fit_hint_tflm_float_model_never_suggests_native():
    g = GraphBuilder()
    x = g.add_tensor((1, 4096), "float32")
    y = g.add_tensor((1, 4096), "float32")
    g.add_op("RELU", [x], [y])
    model = read_model_bytes(g.build())
    board = _board(flash=1_000_000, ram=20_000, name="small")
    failed = analyze.fit(model, board, "tflm", arena_bytes=32_768)
    assert not failed.fits
    hint = analyze.fit_hint(model, board, failed, candidates=[board])
    assert "--runtime native" not in hint and "smaller model" in hint


def test_cli_json_keys_and_exit_codes(tmp_path, capsys):
    path = tmp_path / "net.tflite"
    path.write_bytes(_small_net())
    out = tmp_path / "report.json"
    assert cli_main(["inspect", str(path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "inspect" and report["schema_version"] == 1
    for key in ("layers", "macs", "weights_bytes", "arena_bytes", "unsupported", "fit"):
        assert key in report
    assert set(report["layers"][0]) >= {"index", "op", "version", "macs", "inputs", "outputs"}
    assert set(report["arena_bytes"]) == {"tflm", "native"}
    assert report["arena_bytes"]["tflm"] > 0 and report["macs"] == 2624
    assert "FULLY_CONNECTED" in capsys.readouterr().out
    # The JSON file is not overwritten without --force.
    assert cli_main(["inspect", str(path), "--json", str(out), "--no-arena-search"]) == 1


def test_cli_exit_3_when_it_does_not_fit(tmp_path, capsys):
    pytest.importorskip("tinyq.boards")
    vww = mlperf_model("vww_96_int8.tflite")
    out = tmp_path / "vww.json"
    code = cli_main(["inspect", str(vww), "--board", "microbit", "--runtime", "tflm",
                     "--json", str(out)])
    assert code == 3
    fit = json.loads(out.read_text())["fit"]
    assert fit["fits"] is False and fit["ram_over"] > 0
    assert "bytes more RAM" in capsys.readouterr().err


def test_cli_fit_hint_on_native_names_bigger_boards(capsys):
    from tinyq import boards
    from tinyq.model.tflite_reader import read_model

    vww = mlperf_model("vww_96_int8.tflite")
    code = cli_main(["inspect", str(vww), "--board", "lm3s6965evb", "--runtime", "native",
                     "--no-arena-search"])
    assert code == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1
    assert "or --runtime native" not in err[0] and "use --runtime native" not in err[0]
    named = err[0].split("--runtime native (")[1].split(")")[0].split(", ")
    model = read_model(vww)
    arena = analyze.native_plan_bytes(model)
    for name in named:          # every board the hint names really fits
        assert analyze.fit(model, boards.load(name), "native", arena).fits, name
    assert not analyze.fit(model, boards.load("lm3s6965evb"), "native", arena).fits


def test_cli_exit_1_for_unsupported_ops(tmp_path, capsys):
    g = GraphBuilder()
    x = g.add_tensor((1, 4), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("REDUCE_PROD", [x, g.add_constant(np.array([1], np.int32))], [y])
    path = tmp_path / "prod.tflite"
    path.write_bytes(g.build(inputs=[x], outputs=[y]))
    assert cli_main(["inspect", str(path), "--runtime", "tflm"]) == 1
    captured = capsys.readouterr()
    assert "REDUCE_PROD is not an op TFLM implements" in captured.out
    assert "cannot run this model" in captured.err


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    assert cli_main(["inspect", str(tmp_path / "nope.tflite")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "does not exist" in errors[0]
    assert "Traceback" not in "".join(errors)


def test_a_model_tflm_refuses_in_prepare_is_a_problem_with_a_fix_that_is_not_inspect(tmp_path):
    """The checks pass (int8 -> int16 SOFTMAX exists in TFLM) but the kernel wants output
    zero point -32768: inspect lists the interpreter's reason, not "run tinyq inspect"."""
    from tinyq.model.checks import PREPARE_FAILED_HINT
    from tinyq.model.tflite_writer import TensorSpec, single_op_model

    data = single_op_model("SOFTMAX", [TensorSpec((1, 8), "int8", scale=0.05)],
                           [TensorSpec((1, 8), "int16", scale=1 / 32768)])
    report = analyze.inspect(read_model_bytes(data), runtime="tflm", use_cache=False)
    [problem] = [p for p in report.problems if p.severity == "error"]
    assert problem.check == "tflm_prepare" and "softmax_common.cc" in problem.message
    assert problem.fix == PREPARE_FAILED_HINT
    path = tmp_path / "softmax.tflite"
    path.write_bytes(data)
    assert cli_main(["inspect", str(path), "--runtime", "tflm"]) == 1


def _lstm_svdf_bmm_tconv() -> bytes:
    """int8 UNIDIRECTIONAL_SEQUENCE_LSTM (5 steps, 3 inputs, 4 cells, no peephole or
    projection), SVDF, BATCH_MATMUL and TRANSPOSE_CONV, each on its own inputs."""
    g = GraphBuilder()

    def w(*shape, dtype=np.int8):
        return g.add_constant(np.ones(shape, dtype), scale=0.01)

    x = g.add_tensor((1, 5, 3))
    gates_in = [w(4, 3) for _ in range(4)]
    gates_rec = [w(4, 4) for _ in range(4)]
    biases = [w(4, dtype=np.int32) for _ in range(4)]
    h = g.add_tensor((1, 4), is_variable=True)
    c = g.add_tensor((1, 4), "int16", is_variable=True)
    y = g.add_tensor((1, 5, 4))
    g.add_op("UNIDIRECTIONAL_SEQUENCE_LSTM",
             [x, *gates_in, *gates_rec, -1, -1, -1, *biases, -1, -1, h, c], [y])
    s_in = g.add_tensor((2, 6))
    state = g.add_tensor((2, 3 * 10), "int16", is_variable=True)
    s_out = g.add_tensor((2, 3))
    g.add_op("SVDF", [s_in, w(3, 6), w(3, 10, dtype=np.int16), -1, state], [s_out],
             {"rank": 1})
    a, b = g.add_tensor((1, 2, 7, 5)), g.add_tensor((1, 2, 5, 6))
    g.add_op("BATCH_MATMUL", [a, b], [g.add_tensor((1, 2, 7, 6))])
    t_in = g.add_tensor((1, 4, 4, 3))
    g.add_op("TRANSPOSE_CONV", [g.add_constant(np.array([1, 8, 8, 2], np.int32)), w(2, 3, 3, 3),
                                t_in], [g.add_tensor((1, 8, 8, 2))], {"stride_w": 2,
                                                                      "stride_h": 2})
    return g.build(inputs=[x, s_in, a, b, t_in])


def test_macs_of_recurrent_matmul_and_transpose_conv_by_hand():
    report = analyze.inspect(read_model_bytes(_lstm_svdf_bmm_tconv()), measure_arena=False)
    lstm, svdf, bmm, tconv = report.ops
    assert lstm.macs == 1 * 5 * (4 * (4 * 3) + 4 * (4 * 4))   # batch x steps x weights = 560
    assert svdf.macs == 2 * (3 * 6 + 3 * 10)                   # batch x (feature + time) = 96
    assert bmm.macs == (2 * 7 * 6) * 5                         # outputs x contracted dim = 420
    assert tconv.macs == (4 * 4 * 3) * 3 * 3 * 2               # inputs x kh x kw x out_ch = 864


def test_native_refusal_names_the_op_not_its_state_and_prints_no_plan(tmp_path, capsys):
    path = tmp_path / "lstm.tflite"
    path.write_bytes(_lstm_svdf_bmm_tconv())
    report = analyze.inspect(read_model_bytes(path.read_bytes()), runtime="native",
                             measure_arena=False)
    assert report.arena_native is None
    texts = [str(p) for p in report.problems]
    assert any("no kernel for UNIDIRECTIONAL_SEQUENCE_LSTM" in t for t in texts)
    assert not any("variable tensors" in t or "resource variables" in t for t in texts)
    assert cli_main(["inspect", str(path), "--runtime", "tflm", "--no-arena-search"]) in (0, 1)
    out = capsys.readouterr().out
    assert "native plan   none: the native runtime cannot run this model" in out


def test_repeated_problems_share_one_line():
    from tinyq.cli.cmd_inspect import problem_lines
    from tinyq.model.checks import Problem

    same = [Problem("native", "no kernel for SPLIT", "use --runtime tflm", i, "SPLIT")
            for i in (3, 9, 11, 20, 31, 40)]
    lines = problem_lines([*same, Problem("native", "other", "fix", 5, "TANH")])
    assert lines == ["error: ops 3, 9, 11, 20 and 2 more SPLIT: no kernel for SPLIT — "
                     "use --runtime tflm", "error: op 5 TANH: other — fix"]
