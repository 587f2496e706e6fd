"""The real-board glue with the Arm toolchain and QEMU.

What runs where:

* STM32F4 glue (stm32 SoC template: RCC peripheral clocks, GPIO alternate
  functions, F4 USART) runs on QEMU's netduinoplus2 (STM32F405). QEMU's RCC
  and GPIO blocks are "unimplemented devices", so ``-d unimp`` logs every
  access: the tests check the exact register writes and that the emulated
  build leaves the clock set-up out, while the real-board build does run it
  first (and, as on any stub RCC, waits for HSIRDY forever).
* Stellaris (lm3s6965evb), nRF51 (microbit) and CMSDK (MPS2) glue run in
  tests/test_harness_qemu.py.
* Every real board (STM32F7/F446/L4R5, nRF52840 x2, RP2040) is built with
  the native runtime and a small model, and its image layout is checked
  (vector table at the flash origin, RP2040 boot2 with a valid CRC first and
  the vector table at flash + 0x100). Their clock code cannot run here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools
from test_harness_qemu import ANSWER_TIMEOUT_S, INPUT_BYTES, Session, _build, check_board

from tinyq import boards
from tinyq.firmware.codegen import (
    GenerateOptions,
    ModelInfo,
    RuntimeSources,
    generate,
    render_project,
    write_project,
)
from tinyq.firmware.codegen.board import RP2040_BOOT2_CODE, crc32_mpeg2, render_board, rp2040_boot2
from tinyq.firmware.compiling import build, read_elf
from tinyq.model.tflite_writer import GraphBuilder
from tinyq.resources import templates_dir

pytestmark = pytest.mark.qemu

FIXTURE_RUNTIME = Path(__file__).parent / "fixtures" / "test_runtime.c"
REAL_BOARDS = tuple(n for n in boards.names() if not boards.load(n).emulated_only)
#: Seconds of QEMU wall time for the real-board build to reach (and hang in) its
#: HSIRDY wait: it gets there after a few hundred instructions.
HANG_WALL_S = 3.0
#: Flash the glue + harness + native runtime for a 16->8 fully connected model may
#: take: a bound that catches a runaway (e.g. printf pulled in), not a measurement.
MAX_SMALL_FIRMWARE_FLASH = 64 * 1024
#: netduinoplus2: RCC and GPIOA offsets written by the stm32 glue for USART1 on PA9/PA10.
RCC_AHB1ENR, RCC_APB2ENR, RCC_CR = 0x30, 0x44, 0x00
GPIO_MODER, GPIO_AFRH = 0x00, 0x24


def _unimp_writes(log: Path, device: str) -> list[tuple[int, int]]:
    """(offset, value) of every write QEMU logged to an unimplemented ``device``."""
    writes = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(f"{device}: unimplemented device write"):
            fields = dict(part.strip().split(" ", 1) for part in
                          line.split("(", 1)[1].rstrip(")").split(","))
            writes.append((int(fields["offset"], 16), int(fields["value"], 16)))
    return writes


def _unimp_reads(log: Path, device: str) -> list[int]:
    return [int(line.split("offset ")[1].split(")")[0], 16)
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith(f"{device}: unimplemented device read")]


def test_boot2_source_assembles_to_the_committed_bytes(tmp_path):
    require_tools("arm-none-eabi-as", "arm-none-eabi-objcopy")
    source = templates_dir() / "board" / "soc" / "rp2040_boot2.S"
    obj, raw = tmp_path / "boot2.o", tmp_path / "boot2.bin"
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m0plus", "-mthumb", str(source),
                    "-o", str(obj)], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".boot2", str(obj),
                    str(raw)], check=True)
    assert raw.read_bytes() == RP2040_BOOT2_CODE
    assert len(RP2040_BOOT2_CODE) <= 252


def test_stm32_glue_runs_the_protocol_on_netduinoplus2(tmp_path):
    """Every protocol command through the stm32 soc template + F4 USART driver."""
    files = render_board(boards.load("netduinoplus2"), "x", semihosting=True)
    assert "tq_gpio_af(0u, 9u, 7u);" in files["board/board.c"]     # PA9 = USART1 TX
    assert "#define TQ_EMULATED 1" in files["board/board.c"]
    check_board(tmp_path, "netduinoplus2")


def test_stm32_glue_sets_pins_and_clocks_under_qemu(tmp_path):
    """QEMU's log of the unimplemented RCC/GPIOA blocks shows exactly the glue's writes."""
    from tinyq.device.qemu import QemuDevice

    board, fw = _build(tmp_path, "netduinoplus2")
    log = tmp_path / "unimp.log"
    with QemuDevice(fw.elf, board.emulator.qemu_machine,
                    extra_args=("-d", "unimp", "-D", str(log))) as dev:
        s = Session(dev)
        assert s.until_ready()[-1] == "m-init-done"
        assert s(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
        assert s("db " + "05" * INPUT_BYTES) == ["m-load-done"]
        assert s("infer 1 0")[-1].startswith("m-results-[")
        assert s("tq-out") == [f"m-tq-out-0-[{'06' * INPUT_BYTES}]"]
        dev.write(b"tq-exit 0%")
        s.until_ready()
        assert dev.wait_exit(ANSWER_TIMEOUT_S) == 0
    rcc = _unimp_writes(log, "RCC")
    assert (RCC_AHB1ENR, 1 << 0) in rcc                      # GPIOA clock
    assert (RCC_APB2ENR, 1 << 4) in rcc                      # USART1 clock
    assert RCC_CR not in _unimp_reads(log, "RCC")            # clock set-up compiled out
    gpio = _unimp_writes(log, "GPIOA")
    moder = [v for off, v in gpio if off == GPIO_MODER]
    afrh = [v for off, v in gpio if off == GPIO_AFRH]
    # (an unimplemented device reads 0, so each read-modify-write shows one pin)
    assert any(v & (3 << 18) == 2 << 18 for v in moder)     # PA9  alternate function
    assert any(v & (3 << 20) == 2 << 20 for v in moder)     # PA10 alternate function
    assert any(v & (0xF << 4) == 7 << 4 for v in afrh)      # PA9  -> AF7
    assert any(v & (0xF << 8) == 7 << 8 for v in afrh)      # PA10 -> AF7


def test_real_board_build_runs_the_clock_setup_first(tmp_path):
    """Without TQ_EMULATED the F4 glue starts with HSI/PLL set-up: on QEMU's stub RCC
    it polls RCC_CR for HSIRDY forever, before touching any pin (why TQ_EMULATED exists)."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    board = boards.load("netduinoplus2")
    files = render_project(
        board, RuntimeSources("test", {"test_runtime.c": FIXTURE_RUNTIME.read_text()},
                              arena_bytes=2 * INPUT_BYTES),
        ModelInfo("test.tflite", "7e5700000001" + "0" * 52, input_bytes=INPUT_BYTES,
                  num_layers=2), GenerateOptions(semihosting=True))
    real = render_board(board, "real-board glue", semihosting=True, emulated=False)
    assert "#define TQ_EMULATED 0" in real["board/board.c"]
    files["board/board.c"] = real["board/board.c"]
    fw = build(write_project(files, tmp_path / "real", force=True))
    log = tmp_path / "unimp.log"
    argv = [shutil.which("qemu-system-arm") or "qemu-system-arm", "-machine", "netduinoplus2",
            "-nographic", "-monitor", "none", "-serial", "null", "-d", "unimp",
            "-D", str(log), "-kernel", str(fw.elf)]
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(argv, timeout=HANG_WALL_S, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    reads = _unimp_reads(log, "RCC")
    assert reads.count(RCC_CR) > 100                         # spinning on HSIRDY
    assert (0x40, 1 << 28) in _unimp_writes(log, "RCC")      # PWREN came first
    assert _unimp_writes(log, "GPIOA") == []                 # pins wait for the clock


def _small_model(path: Path) -> Path:
    """int8 FULLY_CONNECTED 16 -> 8 (made in code, no model files needed)."""
    g = GraphBuilder()
    x = g.add_tensor((1, 16), "int8", scale=0.05, zero_point=-3)
    rng = np.random.default_rng(7)
    w = g.add_constant(rng.integers(-100, 100, (8, 16)).astype(np.int8), scale=0.02)
    b = g.add_constant(rng.integers(-500, 500, 8).astype(np.int32), scale=0.001)
    y = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=4)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    path.write_bytes(g.build())
    return path


@pytest.mark.parametrize("board_name", REAL_BOARDS)
def test_real_board_firmware_builds_with_the_image_where_the_boot_rom_looks(tmp_path,
                                                                            board_name):
    require_tools("arm-none-eabi-gcc")
    board = boards.load(board_name)
    model = _small_model(tmp_path / "fc.tflite")
    project = generate(model, board, "native", out_dir=tmp_path / "proj")
    fw = build(project.path)
    log = (project.path / "build" / "build.log").read_text()
    assert "warning:" not in log, log
    assert 0 < fw.flash_bytes < min(MAX_SMALL_FIRMWARE_FLASH, board.flash.size)
    sections, symbols = read_elf(fw.elf)
    by_name = {s.name: s for s in sections}
    image = (project.path / "build" / "app.bin").read_bytes()
    origin = board.flash.origin
    vectors = origin
    if board.soc == "rp2040":
        boot2 = by_name[".boot2"]
        assert (boot2.addr, boot2.size) == (origin, 256)
        assert image[:256] == rp2040_boot2()
        assert int.from_bytes(image[252:256], "little") == crc32_mpeg2(image[:252])
        vectors = origin + 256
    assert by_name[".vectors"].addr == vectors == symbols["tq_vectors"]
    table = image[vectors - origin:vectors - origin + 8]
    stack_top, reset = int.from_bytes(table[:4], "little"), int.from_bytes(table[4:], "little")
    assert stack_top == symbols["__stack_top__"] == board.ram.end
    assert reset == symbols["Reset_Handler"] | 1                  # Thumb bit set
    assert origin <= reset < origin + board.flash.size
    assert by_name[".tq_arena"].addr >= board.ram.origin
