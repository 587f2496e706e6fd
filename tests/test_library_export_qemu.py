"""An exported library linked into a bare-metal program of the user's own (tinyq's board
glue for mps2-an386, no harness) and run in QEMU: outputs byte-identical to tflite-micro."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools
from test_library_export import PROGRAM_INPUTS, _random, _tflm, models  # noqa: F401

from tinyq import boards
from tinyq.firmware.codegen import GenerateOptions, ModelInfo, RuntimeSources, render_project
from tinyq.firmware.codegen.board import render_board
from tinyq.firmware.library_export import export
from tinyq.subprocesses import run_process

pytestmark = pytest.mark.qemu

#: seconds for the cross compile and for the QEMU run (a few inferences of a small model
#: take well under a second; the margin is for the shared, loaded CI machine)
STEP_TIMEOUT_S = 120
BOARD = "mps2-an386"

APP = """
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "tq_board.h"
#include "net.h"

static const uint8_t inputs[{n}][NET_INPUT0_BYTES] = {{
{rows}
}};

static void put_hex(uint8_t b)
{{
    tq_putc("0123456789abcdef"[b >> 4]);
    tq_putc("0123456789abcdef"[b & 15u]);
}}

int main(void)
{{
    tq_board_init();
    if (net_init() != NET_OK) {{
        tq_exit(1);
    }}
    for (int k = 0; k < {n}; k++) {{
        memcpy(net_input(0), inputs[k], NET_INPUT0_BYTES);
        if (net_invoke() != NET_OK) {{
            tq_exit(1);
        }}
        const uint8_t *y = net_output(0);
        for (size_t i = 0; i < net_output_bytes(0); i++) {{
            put_hex(y[i]);
        }}
        tq_putc('\\n');
    }}
    tq_exit(0);
}}
"""


def build_bare_metal(lib, board, inputs: list[bytes], fw: Path) -> Path:
    """A bare-metal program (prefix ``net``) running ``inputs`` through input 0 and printing
    each output 0 in hex: tinyq's board glue (startup, linker script, UART, exit) only."""
    glue = render_board(board, "board glue", semihosting=True)
    project = render_project(board, RuntimeSources("none", {}, arena_bytes=16),
                             ModelInfo("none", "0" * 64, input_bytes=1, num_layers=1),
                             GenerateOptions(semihosting=True))
    for rel, text in {**glue, "tq_board.h": project["tq_board.h"],
                      "tq_config.h": project["tq_config.h"]}.items():
        (fw / rel).parent.mkdir(parents=True, exist_ok=True)
        (fw / rel).write_text(text)
    rows = ",\n".join("    {" + ", ".join(str(b) for b in x) + "}" for x in inputs)
    (fw / "app.c").write_text(APP.format(n=len(inputs), rows=rows))
    _run(["arm-none-eabi-gcc", *board.cflags, "-Os", "-std=gnu11", "-Wall", "-Werror",
          "-ffunction-sections", "-fdata-sections", "-nostartfiles", "-T", "board/link.ld",
          "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments", "--specs=nano.specs",
          "--specs=nosys.specs", "-I.", "-I", lib.path / "include", "board/startup.c",
          "board/board.c", "app.c", *(lib.path / s for s in lib.sources), "-lm",
          "-o", "app.elf"], cwd=fw)
    return fw / "app.elf"


def qemu_command(board, elf: Path, icount: bool = False) -> list[str]:
    """QEMU with the first UART on stdout and semihosting exit."""
    return ["qemu-system-arm", "-machine", board.emulator.qemu_machine, "-nographic",
            "-monitor", "none", "-serial", "stdio", "-semihosting-config",
            "enable=on,target=native", *(["-icount", "shift=0,align=off,sleep=off"]
                                         if icount else []), "-kernel", str(elf)]


def _run(argv, cwd=None):
    proc = run_process([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                       timeout=STEP_TIMEOUT_S, guard=False)
    assert proc.returncode == 0, f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("name", ["hello", "conv"])
def test_user_bare_metal_program_runs_the_library_in_qemu(models, tmp_path, name):  # noqa: F811
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    if name not in models:
        pytest.skip("hello_world_int8.tflite not found under ../shared/models/tflm-examples")
    path = models[name]
    board = boards.load(BOARD)
    lib = export(path, tmp_path / "net", prefix="net", board=board)
    xs = _random(np.random.default_rng(21), path, PROGRAM_INPUTS)
    elf = build_bare_metal(lib, board, [x[0].tobytes() for x in xs], tmp_path / "fw")
    out = _run(qemu_command(board, elf))
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    assert lines == [_tflm(path, x)[0].hex() for x in xs]
