"""The native kernels build warning-free for the firmware with strict flags, -Werror.

Every kernel and a generated model.c (float input and output, int16 SOFTMAX: the
memcpy-accessed tensors) compile with arm-none-eabi-gcc for the Cortex-M0
(portable C, Thumb-1), the Cortex-M4F and M7 (the SIMD path) and the Cortex-M55 (Armv8.1-M)
with -Wall -Wextra -Wconversion -Wcast-align -Werror and -Wstack-usage=N, N per
kernel file below (each a little above the measured figure, so growth is a decision).
No -fno-strict-aliasing and no -fwrapv: the code relies on neither (docs/numerics.md),
and the host build (tinyq.firmware.native.host.CFLAGS) uses neither either.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from conftest import require_tools

from tinyq import boards
from tinyq.firmware.native import codegen, host
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder
from tinyq.resources import templates_dir

#: boards whose cores cover the code shapes (portable Thumb-1, DSP SIMD on v7E-M, v8.1-M)
BOARDS = ("microbit", "mps2-an386", "mps2-an500", "mps3-an547")
#: warnings that fail the build
STRICT = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wcast-align", "-Werror")
#: -Wstack-usage limit per kernel file, bytes (measured with -fstack-usage, gcc 12.2 -O2:
#: conv 560 on M0, depthwise border path 376, average pool 176, comparisons' broadcast
#: walk 184, others <= 120)
STACK_LIMITS = {"tq_conv.c": 640, "tq_depthwise.c": 448, "tq_pool.c": 224, "tq_compare.c": 224}
#: every other kernel file and model.c
DEFAULT_STACK_LIMIT = 160
#: seconds one cross compile may take
COMPILE_TIMEOUT_S = 120


def _model_c() -> str:
    g = GraphBuilder()
    x = g.add_tensor((1, 16), "float32")
    q = g.add_tensor((1, 16), "int8", scale=0.05, zero_point=3)
    s = g.add_tensor((1, 16), "int16", scale=1 / 65536, zero_point=-32768)
    q2 = g.add_tensor((1, 16), "int8", scale=0.05, zero_point=3)
    y = g.add_tensor((1, 16), "float32")
    g.add_op("QUANTIZE", [x], [q], {})
    g.add_op("SOFTMAX", [q], [s], {"beta": 1.0})
    g.add_op("DEQUANTIZE", [q2], [y], {})
    w = g.add_constant(np.ones((16, 16), np.int8), scale=0.01, zero_point=0)
    g.add_op("FULLY_CONNECTED", [q, w, -1], [q2], {})
    return codegen.render(read_model_bytes(g.build([x], [s, y]))).model_c


@pytest.mark.parametrize("board", BOARDS)
def test_kernels_build_warning_free_with_strict_flags(board, tmp_path):
    require_tools("arm-none-eabi-gcc")
    arch = boards.load(board).cflags
    kdir = codegen.kernels_dir()
    (tmp_path / "model.c").write_text(_model_c())
    sources = [*sorted(kdir.glob("*.c")), tmp_path / "model.c"]
    for src in sources:
        limit = STACK_LIMITS.get(src.name, DEFAULT_STACK_LIMIT)
        argv = ["arm-none-eabi-gcc", *arch, *STRICT, f"-Wstack-usage={limit}", "-fstack-usage",
                "-I", str(kdir), "-I", str(templates_dir() / "common"),
                "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                              check=False)
        assert proc.returncode == 0, f"{board} {src.name}:\n{proc.stderr}"
        assert "warning" not in proc.stderr, proc.stderr
    usage = [line.split("\t") for su in tmp_path.glob("*.su")
             for line in su.read_text().splitlines()]
    assert len(usage) > 20                    # every kernel function was measured
    assert all(re.fullmatch(r"\d+", n) and kind == "static" for _, n, kind in usage)


def test_host_and_firmware_flags_agree_on_what_the_code_relies_on():
    makefile = (templates_dir() / "Makefile.j2").read_text()
    for flag in ("-fno-strict-aliasing", "-fwrapv"):
        assert flag not in host.CFLAGS and flag not in makefile
