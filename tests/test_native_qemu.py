"""Every native kernel path on a target: one small model per core in QEMU, byte-compared
(and the layout, comparison and arithmetic families on the M0 and the M55).

The model (tests/graphs.py ``kernel_paths_model``) runs CONV_2D, DEPTHWISE_CONV_2D, ADD,
MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE and FULLY_CONNECTED. Cores without the DSP
extension (M0, M3) run the portable kernels; M4F, M7, M33 and M55 the SIMD ones
(SXTB16/SMLAD), checked in the ELF's disassembly. Outputs must equal the tflite-micro
interpreter's byte for byte; the stack high-water mark the harness measures must cover
the convolution's own frame as gcc's -fstack-usage reports it.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import require_tools
from graphs import LONG_TAIL_OPS, kernel_paths_model, long_tail_model

from tinyq import boards
from tinyq.firmware.codegen import GenerateOptions
from tinyq.firmware.compiling import BuildOptions
from tinyq.firmware.native.codegen import kernels_dir
from tinyq.measure.runner import RunOptions, run
from tinyq.model.tflite_reader import read_model

pytestmark = pytest.mark.qemu

#: board -> does its core run the SIMD (DSP) kernel paths
BOARDS = {"microbit": False, "mps2-an385": False, "mps2-an386": True, "mps2-an500": True,
          "mps2-an505": True, "mps3-an547": True}
#: seconds for one objdump / gcc call
TOOL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "arm-none-eabi-objdump", "qemu-system-arm", "make")
    return BuildOptions(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "kernel_paths.tflite"
    path.write_bytes(kernel_paths_model())
    return path


def _function(elf, name: str) -> str:
    out = subprocess.run(["arm-none-eabi-objdump", "-d", f"--disassemble={name}", str(elf)],
                         capture_output=True, text=True, check=True, timeout=TOOL_TIMEOUT_S)
    return out.stdout


def _conv_frame(board, tmp_path) -> int:
    """-fstack-usage's figure for tq_conv2d_s8, compiled as the firmware compiles it."""
    obj = tmp_path / "tq_conv.o"
    subprocess.run(["arm-none-eabi-gcc", *board.cflags, f"-{GenerateOptions().optimize}",
                    "-std=gnu11", "-ffunction-sections", "-fstack-usage", "-I", str(kernels_dir()),
                    "-c", str(kernels_dir() / "tq_conv.c"), "-o", str(obj)],
                   check=True, timeout=TOOL_TIMEOUT_S)
    su = (tmp_path / "tq_conv.su").read_text()
    return int(re.search(r":tq_conv2d_s8\t(\d+)\t", su).group(1))


@pytest.mark.parametrize("board_name", sorted(BOARDS))
def test_kernel_paths_match_tflm_on_every_core(model, cache, board_name, tmp_path):
    result = run(model, board_name, emulator="qemu",
                 options=RunOptions(samples=3, runs=1, seed=11, build=cache))
    assert result.outputs_match and result.max_lsb_diff == 0, \
        [s.max_lsb_diff for s in result.samples]
    # the convolution's inner product (mac_2x2, kept out of line) and FULLY_CONNECTED
    for fn in ("mac_2x2", "tq_fully_connected_s8"):
        code = _function(result.firmware.elf, fn)
        assert f"<{fn}>:" in code, f"{fn} not in the firmware"
        simd = "smlad" in code
        assert simd == BOARDS[board_name], f"{board_name} {fn}: SIMD {'not ' * (not simd)}built"
    board = boards.load(board_name)
    frame = _conv_frame(board, tmp_path)
    assert frame <= result.stack_peak < result.firmware.stack_bytes, (frame, result.stack_peak)


#: the layout/comparison/arithmetic kernels are portable C only: the M0 (no unaligned
#: access, no hardware divide) and the M55 (the newest core) bound what they meet
LONG_TAIL_BOARDS = ("microbit", "mps3-an547")


@pytest.mark.parametrize("board_name", LONG_TAIL_BOARDS)
def test_long_tail_kernels_match_tflm_on_target(cache, board_name, tmp_path):
    path = tmp_path / "long_tail.tflite"
    path.write_bytes(long_tail_model(per_op=1))     # small enough for the micro:bit's 16 KB
    result = run(path, board_name, emulator="qemu",
                 options=RunOptions(samples=2, runs=1, seed=5, build=cache))
    assert result.outputs_match and result.max_lsb_diff == 0, \
        [s.max_lsb_diff for s in result.samples]
    ops = {op.opcode for op in read_model(path).operators}
    assert ops == set(LONG_TAIL_OPS)          # every family's kernels ran on the target
