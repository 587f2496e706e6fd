"""Board glue: startup, vector table, linker script, UART driver and tick counter.

Everything is derived from the board profile's data (``uart.kind``,
``counter.kind``, ``soc``, memory map, FPU), never from the board's name: one
template per UART kind (``firmware_templates/board/uart/<kind>.c.j2``), one per
counter kind, one optional SoC set-up fragment, and one startup and linker
script template for all boards. :func:`board_glue` computes the derived numbers
(baud divisors, memory regions); :func:`render_board` renders the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tinyq.board_profile import Board
from tinyq.errors import BoardError
from tinyq.resources import templates_dir
from tinyq.templating import render

#: Interrupt slots in the vector table after the 16 system exceptions. 32 is
#: the Cortex-M0 maximum; no tinyq firmware enables a peripheral interrupt, the
#: slots only make a stray one report itself instead of jumping to garbage.
NUM_IRQS = 32

#: board.soc -> SoC set-up fragment (firmware_templates/board/soc/<name>.c.j2).
#: SoCs not listed need nothing before the UART works (QEMU machines, boot ROMs).
SOC_TEMPLATES: dict[str, str] = {
    "lm3s": "lm3s",
}

#: Stack alignment the AAPCS requires at public interfaces.
STACK_ALIGN = 8


@dataclass(frozen=True)
class LinkRegion:
    """One MEMORY line of the linker script."""

    name: str      # FLASH, RAM, STACK, or an extra bank's name in capitals
    attrs: str
    origin: int
    length: int


@dataclass(frozen=True)
class BoardGlue:
    """The numbers the board templates need, computed once from the profile."""

    regions: tuple[LinkRegion, ...]
    arena_region: str              # linker region holding .tq_arena
    enable_fpu: bool               # CPACR CP10/CP11 in the reset handler
    num_irqs: int
    soc_template: str
    uart_clock_hz: int
    uart_divisor: int              # CMSDK BAUDDIV / STM32 BRR
    pl011_ibrd: int
    pl011_fbrd: int
    nrf_baudrate: int
    nrf_tx_pin: int | None
    nrf_rx_pin: int | None


def available(kind: str) -> tuple[str, ...]:
    """Names of the templates in ``firmware_templates/board/<kind>/``."""
    folder = templates_dir() / "board" / kind
    return tuple(sorted(p.name.removesuffix(".c.j2") for p in folder.glob("*.c.j2")))


def linker_region_name(region: str) -> str:
    """The MEMORY name tinyq uses for a board region (``ram`` -> ``RAM``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", region).upper()


def nrf_baudrate(baud: int) -> int:
    """nRF UART BAUDRATE register: baud * 2^32 / 16 MHz, rounded to a multiple of 0x1000.

    Reproduces the datasheet's table (115200 -> 0x01D7E000, 9600 -> 0x00275000).
    """
    raw = baud * (1 << 32) // 16_000_000
    return ((raw + 0x800) >> 12) << 12


def _nrf_pin(pin: str) -> int | None:
    """``"P0.24"`` -> 24; empty -> None (keep the reset pin selection)."""
    if not pin:
        return None
    match = re.fullmatch(r"P?(\d+)\.(\d+)", pin.strip(), flags=re.IGNORECASE)
    if not match:
        raise BoardError(f"uart pin {pin!r} is not an nRF pin name",
                         hint='write it as "P0.24"')
    port, number = int(match.group(1)), int(match.group(2))
    return port * 32 + number


def board_glue(board: Board) -> BoardGlue:
    """Check the board's glue kinds and compute the numbers the templates need."""
    where = f"board {board.name}" + (f" ({board.source})" if board.source else "")
    uarts = available("uart")
    if board.uart.kind not in uarts:
        raise BoardError(
            f"{where}: uart.kind {board.uart.kind!r} has no driver in tinyq",
            hint=f"use one of {', '.join(uarts)} or add "
                 f"firmware_templates/board/uart/{board.uart.kind}.c.j2",
        )
    counters = available("counter")
    if board.counter.kind not in counters:
        raise BoardError(
            f"{where}: counter.kind {board.counter.kind!r} is not supported",
            hint=f"use one of {', '.join(counters)}",
        )
    if board.counter.kind == "dwt" and not board.has_dwt:
        raise BoardError(f"{where}: {board.core} has no DWT cycle counter",
                         hint='set counter.kind = "systick"')
    if board.counter.clock_hz <= 0:
        raise BoardError(f"{where}: counter.clock_hz must be > 0",
                         hint="set it to the clock the counter runs at")
    stack = board.stack_bytes
    if stack <= 0 or stack % STACK_ALIGN or stack >= board.ram.size:
        raise BoardError(
            f"{where}: stack_bytes={stack} must be a positive multiple of {STACK_ALIGN} "
            f"smaller than RAM ({board.ram.size} bytes)",
            hint="fix stack_bytes in the board file",
        )

    regions = [
        LinkRegion("FLASH", "rx", board.flash.origin, board.flash.size),
        LinkRegion("RAM", "rwx", board.ram.origin, board.ram.size - stack),
        LinkRegion("STACK", "rw", board.ram.end - stack, stack),
    ]
    for extra in board.extra_ram:
        regions.append(LinkRegion(linker_region_name(extra.name), "rwx", extra.origin, extra.size))
    names = {r.name for r in regions}
    if len(names) != len(regions):
        raise BoardError(f"{where}: extra_ram region names clash with flash/ram/stack",
                         hint="rename the extra RAM banks")
    arena = "RAM" if board.arena_region == board.ram.name else linker_region_name(
        board.arena_region)
    if arena not in names or arena in ("FLASH", "STACK"):
        raise BoardError(
            f"{where}: arena_region {board.arena_region!r} is not a RAM region of the board",
            hint=f"use {board.ram.name!r} or one of the extra_ram names",
        )

    uart_clock = board.uart.clock_hz or board.clock_hz
    baud = board.uart.baud
    if baud <= 0 or uart_clock <= 0:
        raise BoardError(f"{where}: uart baud and clock must be > 0",
                         hint="set uart.baud and clock_hz (or uart.clock_hz)")
    divisor = max(16, round(uart_clock / baud)) if board.uart.kind == "cmsdk" else max(
        1, round(uart_clock / baud))
    pl011 = uart_clock * 4 // baud      # 64 x (clock / (16 x baud)), rounded down
    pl011_ibrd, pl011_fbrd = pl011 >> 6, pl011 & 63
    nrf_tx = _nrf_pin(board.uart.tx_pin) if board.uart.kind.startswith("nrf") else None
    nrf_rx = _nrf_pin(board.uart.rx_pin) if board.uart.kind.startswith("nrf") else None

    return BoardGlue(
        regions=tuple(regions),
        arena_region=arena,
        enable_fpu=board.hard_float or board.mve,
        num_irqs=NUM_IRQS,
        soc_template=SOC_TEMPLATES.get(board.soc, "none"),
        uart_clock_hz=uart_clock,
        uart_divisor=divisor,
        pl011_ibrd=max(1, pl011_ibrd),
        pl011_fbrd=pl011_fbrd,
        nrf_baudrate=nrf_baudrate(baud),
        nrf_tx_pin=nrf_tx,
        nrf_rx_pin=nrf_rx,
    )


def render_board(board: Board, generated: str, semihosting: bool) -> dict[str, str]:
    """The board glue files of a project: ``{relative path: text}``."""
    glue = board_glue(board)
    ctx = {"board": board, "glue": glue, "generated": generated, "semihosting": semihosting}
    return {
        "board/startup.c": render("board/startup.c.j2", **ctx),
        "board/board.c": render("board/board.c.j2", **ctx),
        "board/link.ld": render("board/link.ld.j2", **ctx),
    }
