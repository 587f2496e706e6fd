"""Board glue: startup, vector table, linker script, clocks, pins, UART driver, tick counter.

Everything is derived from the board profile's data (``soc``, ``uart.kind``,
``counter.kind``, memory map, FPU), never from the board's name: one template
per UART kind (``firmware_templates/board/uart/<kind>.c.j2``), one per counter
kind, one SoC set-up fragment per chip family (clock tree, peripheral clocks,
UART pins; ``firmware_templates/board/soc/<name>.c.j2``), and one startup and
linker script template for all boards. :func:`board_glue` computes the derived
numbers (PLL factors, flash wait states, bus clocks, baud divisors, pin
functions, memory regions) and checks them against the profile, so that the
profile's ``clock_hz`` and ``uart.clock_hz`` are what the firmware really sets
up; :func:`render_board` renders the files.

The clock set-up of the real-board SoCs is written from the vendors' reference
manuals (register level, no vendor HAL). An emulated build (``TQ_EMULATED``)
skips it: QEMU's STM32 RCC is a stub whose ready bits never rise, so waiting
for the PLL would hang; pins, peripheral clocks and the UART are still set up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tinyq.board_profile import PIN_STYLES, Board
from tinyq.errors import BoardError
from tinyq.firmware.templating import render
from tinyq.resources import templates_dir

#: Interrupt slots in the vector table after the 16 system exceptions. 32 is
#: the Cortex-M0 maximum; no tinyq firmware enables a peripheral interrupt, the
#: slots only make a stray one report itself instead of jumping to garbage.
NUM_IRQS = 32

#: Stack alignment the AAPCS requires at public interfaces.
STACK_ALIGN = 8

MHZ = 1_000_000

# ---------------------------------------------------------------- STM32 tables
#: HSI frequency of the STM32 F4/F7/L4 families (the PLL source tinyq uses: it is
#: on every chip and needs no knowledge of the board's crystal or ST-LINK MCO).
STM32_HSI_HZ = 16 * MHZ
#: PLL input after the M divider. F4/F7: 1-2 MHz allowed, 2 MHz recommended for
#: jitter (RM0090/RM0390/RM0385 "RCC PLL configuration register"); L4+: 2.66-8 MHz.
STM32_F4F7_PLL_IN_HZ = 2 * MHZ
STM32_L4_PLL_IN_HZ = 8 * MHZ


@dataclass(frozen=True)
class Stm32Family:
    """Limits of one STM32 family (reference manual numbers)."""

    max_sysclk_hz: int
    no_overdrive_max_hz: int     # above this the F4/F7 regulator needs over-drive mode
    hz_per_wait_state: int       # flash: one more wait state per this many Hz (2.7-3.6 V)
    max_apb1_hz: int
    max_apb2_hz: int
    usart_layout: str            # "sr": SR/DR/BRR/CR1 (F1/F2/F4); "isr": CR1..TDR (F0/F3/F7/L4)
    #: UART base -> (name, bus, enable register offset in RCC, enable bit)
    uarts: Mapping[int, tuple[str, str, int, int]]
    #: UART base -> {pin: alternate function number} (datasheet "alternate function" tables)
    pins: Mapping[int, Mapping[str, int]]


STM32_FAMILIES: dict[str, Stm32Family] = {
    # RM0090 (F405/F407/F42x) and RM0390 (F446): 168 MHz without, 180 MHz with over-drive;
    # APB1 <= 45 MHz, APB2 <= 90 MHz; 5 wait states at 150-180 MHz.
    "stm32f4": Stm32Family(
        max_sysclk_hz=180 * MHZ, no_overdrive_max_hz=168 * MHZ, hz_per_wait_state=30 * MHZ,
        max_apb1_hz=45 * MHZ, max_apb2_hz=90 * MHZ, usart_layout="sr",
        uarts={
            0x40011000: ("USART1", "APB2", 0x44, 4),
            0x40011400: ("USART6", "APB2", 0x44, 5),
            0x40004400: ("USART2", "APB1", 0x40, 17),
            0x40004800: ("USART3", "APB1", 0x40, 18),
            0x40004C00: ("UART4", "APB1", 0x40, 19),
            0x40005000: ("UART5", "APB1", 0x40, 20),
        },
        pins={
            0x40011000: {"PA9": 7, "PA10": 7, "PB6": 7, "PB7": 7},
            0x40011400: {"PC6": 8, "PC7": 8},
            0x40004400: {"PA2": 7, "PA3": 7, "PD5": 7, "PD6": 7},
            0x40004800: {"PB10": 7, "PB11": 7, "PC10": 7, "PC11": 7, "PD8": 7, "PD9": 7},
            0x40004C00: {"PA0": 8, "PA1": 8, "PC10": 8, "PC11": 8},
            0x40005000: {"PC12": 8, "PD2": 8},
        },
    ),
    # RM0385 (F74x/F75x): 216 MHz with over-drive (180 MHz without); APB1 <= 54 MHz,
    # APB2 <= 108 MHz; 7 wait states at 210-216 MHz.
    "stm32f7": Stm32Family(
        max_sysclk_hz=216 * MHZ, no_overdrive_max_hz=180 * MHZ, hz_per_wait_state=30 * MHZ,
        max_apb1_hz=54 * MHZ, max_apb2_hz=108 * MHZ, usart_layout="isr",
        uarts={
            0x40011000: ("USART1", "APB2", 0x44, 4),
            0x40011400: ("USART6", "APB2", 0x44, 5),
            0x40004400: ("USART2", "APB1", 0x40, 17),
            0x40004800: ("USART3", "APB1", 0x40, 18),
        },
        pins={
            0x40011000: {"PA9": 7, "PA10": 7, "PB6": 7, "PB7": 7},
            0x40011400: {"PC6": 8, "PC7": 8, "PG14": 8, "PG9": 8},
            0x40004400: {"PA2": 7, "PA3": 7, "PD5": 7, "PD6": 7},
            0x40004800: {"PB10": 7, "PB11": 7, "PC10": 7, "PC11": 7, "PD8": 7, "PD9": 7},
        },
    ),
    # RM0432 (L4R/L4S, "L4+"): 120 MHz in range 1 boost mode; APB1/APB2 <= 120 MHz;
    # 5 wait states at 100-120 MHz (one per 20 MHz).
    "stm32l4": Stm32Family(
        max_sysclk_hz=120 * MHZ, no_overdrive_max_hz=80 * MHZ, hz_per_wait_state=20 * MHZ,
        max_apb1_hz=120 * MHZ, max_apb2_hz=120 * MHZ, usart_layout="isr",
        uarts={
            0x40008000: ("LPUART1", "APB1", 0x5C, 0),
            0x40013800: ("USART1", "APB2", 0x60, 14),
            0x40004400: ("USART2", "APB1", 0x58, 17),
            0x40004800: ("USART3", "APB1", 0x58, 18),
        },
        pins={
            0x40008000: {"PG7": 8, "PG8": 8, "PA2": 8, "PA3": 8, "PB10": 8, "PB11": 8,
                         "PC0": 8, "PC1": 8},
            0x40013800: {"PA9": 7, "PA10": 7, "PB6": 7, "PB7": 7, "PG9": 7, "PG10": 7},
            0x40004400: {"PA2": 7, "PA3": 7, "PD5": 7, "PD6": 7},
            0x40004800: {"PB10": 7, "PB11": 7, "PC10": 7, "PC11": 7, "PD8": 7, "PD9": 7},
        },
    ),
}

# ---------------------------------------------------------------- nRF tables
#: nRF52 UARTE BAUDRATE register values (nRF52840 product specification, UARTE
#: BAUDRATE; they differ slightly from the legacy UART's).
NRF_UARTE_BAUDRATES: dict[int, int] = {
    9600: 0x00275000,
    19200: 0x004EA000,
    38400: 0x009D0000,
    57600: 0x00EB0000,
    115200: 0x01D60000,
    230400: 0x03B00000,
    460800: 0x07400000,
    921600: 0x0F000000,
    1_000_000: 0x10000000,
}
#: nRF52840: the CPU clock is fixed at 64 MHz.
NRF52_HCLK_HZ = 64 * MHZ

# ---------------------------------------------------------------- RP2040 tables
#: Crystal of the Raspberry Pi Pico (and of most RP2040 boards).
RP2040_XOSC_HZ = 12 * MHZ
#: PLL VCO range (RP2040 datasheet, 2.18.2 "PLL: calculating parameters").
RP2040_VCO_MIN_HZ = 750 * MHZ
RP2040_VCO_MAX_HZ = 1600 * MHZ
RP2040_MAX_SYSCLK_HZ = 133 * MHZ
#: UART base -> instance number.
RP2040_UARTS = {0x40034000: 0, 0x40038000: 1}
#: XOSC start-up delay in units of 256 XOSC cycles: about 1 ms at 12 MHz.
RP2040_XOSC_STARTUP = (RP2040_XOSC_HZ // 1000 + 128) // 256

#: The boot2 stage every RP2040 flash image starts with (firmware_templates/board/soc/
#: rp2040_boot2.S, tinyq's own, assembled with arm-none-eabi-as -mcpu=cortex-m0plus;
#: tests/test_board_glue_qemu.py re-assembles the source and checks these bytes).
RP2040_BOOT2_CODE = bytes.fromhex(
    "0b4b00209860042058610a48186000205860012018610848f4215850012098600648074908600168"
    "426881f3088810470000001800031f00180200030001001008ed00e0")
#: Size of boot2 in flash, the last 4 bytes being the CRC32 the boot ROM checks.
RP2040_BOOT2_BYTES = 256


@dataclass(frozen=True)
class LinkRegion:
    """One MEMORY line of the linker script."""

    name: str      # FLASH, RAM, STACK, or an extra bank's name in capitals
    attrs: str
    origin: int
    length: int


@dataclass(frozen=True)
class StmPin:
    """An STM32 pin handed to a peripheral."""

    name: str      # "PA9"
    port: int      # 0 = A
    number: int
    af: int


@dataclass(frozen=True)
class BoardGlue:
    """The numbers the board templates need, computed once from the profile."""

    regions: tuple[LinkRegion, ...]
    arena_region: str              # linker region holding .tq_arena
    extra_sections: tuple[str, ...]  # extra RAM regions user data can be placed in
    enable_fpu: bool               # CPACR CP10/CP11 in the reset handler
    set_vtor: bool                 # point VTOR at the vector table (cores that have it)
    num_irqs: int
    soc_template: str
    uart_clock_hz: int
    uart_divisor: int              # CMSDK BAUDDIV / STM32 BRR / LPUART BRR
    pl011_ibrd: int
    pl011_fbrd: int
    nrf_baudrate: int
    nrf_tx_pin: int | None
    nrf_rx_pin: int | None
    soc: Mapping[str, Any] = field(default_factory=dict)   # the SoC template's numbers
    boot2: bytes = b""             # RP2040: the 256-byte second stage (CRC included)


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


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, MSB first, no final XOR).

    The checksum the RP2040 boot ROM computes over the first 252 bytes of boot2.
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def rp2040_boot2() -> bytes:
    """The 256 bytes at the start of an RP2040 flash image: code, zero padding, CRC32."""
    body = RP2040_BOOT2_CODE.ljust(RP2040_BOOT2_BYTES - 4, b"\0")
    return body + crc32_mpeg2(body).to_bytes(4, "little")


def _pin(style: str, pin: str) -> re.Match[str]:
    """Parse a pin name ``tinyq.boards`` already checked against ``PIN_STYLES[style]``."""
    match = PIN_STYLES[style][0].fullmatch(pin.strip())
    if not match:   # only a Board built without tinyq.boards.load gets here
        raise ValueError(f"uart pin {pin!r} is not a {style} pin name; load boards with "
                         "tinyq.boards.load, which validates them")
    return match


def _nrf_pin(pin: str) -> int | None:
    """``"P0.24"`` -> 24; empty -> None (keep the reset pin selection)."""
    if not pin:
        return None
    match = _pin("nrf", pin)
    port, number = int(match.group(1)), int(match.group(2))
    return port * 32 + number


def _where(board: Board) -> str:
    return f"board {board.name}" + (f" ({board.source})" if board.source else "")


def _apb_divider(hclk: int, limit: int) -> int:
    """Smallest power-of-two APB prescaler (1..16) keeping the bus at or under ``limit``."""
    div = 1
    while hclk // div > limit or hclk % div:
        div *= 2
        if div > 16:
            break
    return div


#: APB prescaler -> PPREx field value (RCC_CFGR, all three families).
_PPRE = {1: 0b000, 2: 0b100, 4: 0b101, 8: 0b110, 16: 0b111}


def _stm32_pin(board: Board, family: Stm32Family, role: str, pin: str) -> StmPin:
    where = _where(board)
    match = _pin("port-letter", pin.upper())
    table = family.pins.get(board.uart.base, {})
    name = match.group(0)
    if name not in table:
        raise BoardError(
            f"{where}: uart.{role}_pin {name} is not a pin tinyq knows for the UART at "
            f"0x{board.uart.base:08X} on {board.soc}",
            hint=f"use one of {', '.join(sorted(table)) or '(none)'} or add it to the "
                 "alternate-function table in tinyq/firmware/codegen/board.py")
    return StmPin(name, ord(match.group(1)) - ord("A"), int(match.group(2)), table[name])


def _check_uart_clock(board: Board, actual: int, what: str) -> None:
    if board.uart.clock_hz and board.uart.clock_hz != actual:
        raise BoardError(
            f"{_where(board)}: uart.clock_hz = {board.uart.clock_hz} but the board glue "
            f"clocks the UART at {actual} Hz ({what})",
            hint=f"set uart.clock_hz = {actual}")


def _plan_stm32(board: Board) -> dict[str, Any]:
    """PLL from HSI 16 MHz to clock_hz, regulator, wait states, bus prescalers, pins."""
    where = _where(board)
    family = STM32_FAMILIES[board.soc]
    f = board.clock_hz
    if board.uart.base not in family.uarts:
        known = ", ".join(f"{n} 0x{b:08X}" for b, (n, *_) in family.uarts.items())
        raise BoardError(f"{where}: no {board.soc} UART at uart.base 0x{board.uart.base:08X}",
                         hint=f"use one of {known}")
    uart_name, bus, enr_offset, enr_bit = family.uarts[board.uart.base]
    if board.soc == "stm32l4":
        pll_in = STM32_L4_PLL_IN_HZ
        m = STM32_HSI_HZ // pll_in
        # sysclk = VCO / R with R = 2; VCO = 8 MHz x N, N in 8..127, VCO 64..344 MHz.
        n, r = (2 * f) // pll_in, 2
        ok = (2 * f) % pll_in == 0 and 8 <= n <= 127 and 64 * MHZ <= n * pll_in <= 344 * MHZ
        pll = {"m": m, "n": n, "r": r}
        rule = "a multiple of 4 MHz from 32 to 120 MHz"
    else:
        pll_in = STM32_F4F7_PLL_IN_HZ
        m = STM32_HSI_HZ // pll_in
        # sysclk = VCO / P with P = 2; VCO = 2 MHz x N, N in 50..432, VCO 100..432 MHz.
        n, p = (2 * f) // pll_in, 2
        ok = (2 * f) % pll_in == 0 and 50 <= n <= 432 and 100 * MHZ <= n * pll_in <= 432 * MHZ
        # Q only feeds USB/SDIO (unused); keep its 48 MHz rule's input range legal.
        q = max(2, min(15, -(-n * pll_in // (48 * MHZ))))
        pll = {"m": m, "n": n, "p": p, "q": q}
        rule = "a whole number of MHz from 50 MHz"
    if not ok or f > family.max_sysclk_hz:
        raise BoardError(
            f"{where}: clock_hz = {f} cannot be made by the {board.soc} glue's PLL "
            f"(HSI 16 MHz; {rule} up to {family.max_sysclk_hz // MHZ} MHz)",
            hint=f"set clock_hz to e.g. {family.max_sysclk_hz}")
    apb1 = _apb_divider(f, family.max_apb1_hz)
    apb2 = _apb_divider(f, family.max_apb2_hz)
    pclk = f // (apb1 if bus == "APB1" else apb2)
    _check_uart_clock(board, pclk, f"{uart_name} on {bus} = {f} Hz / "
                                   f"{apb1 if bus == 'APB1' else apb2}")
    tx = _stm32_pin(board, family, "tx", board.uart.tx_pin)
    rx = _stm32_pin(board, family, "rx", board.uart.rx_pin)
    return {
        "family": board.soc,
        "sysclk_hz": f,
        "pll": pll,
        "overdrive": f > family.no_overdrive_max_hz,
        "flash_latency": (f - 1) // family.hz_per_wait_state,
        "apb1_div": apb1,
        "apb2_div": apb2,
        "ppre1": _PPRE[apb1],
        "ppre2": _PPRE[apb2],
        "uart_name": uart_name,
        "uart_bus": bus,
        "uart_enr_offset": enr_offset,
        "uart_enr_bit": enr_bit,
        "uart_clock_hz": pclk,
        "usart_layout": family.usart_layout,
        "pins": (tx, rx),
        "gpio_ports": tuple(sorted({tx.port, rx.port})),
        # PG2..PG15 of the L4+ are powered from VDDIO2 (RM0432, PWR_CR2.IOSV).
        "needs_vddio2": board.soc == "stm32l4" and any(
            p.port == 6 and p.number >= 2 for p in (tx, rx)),
        "dcache": board.core == "cortex-m7",
    }


def _plan_nrf52(board: Board) -> dict[str, Any]:
    where = _where(board)
    if board.clock_hz != NRF52_HCLK_HZ:
        raise BoardError(f"{where}: the nRF52 core clock is fixed at 64 MHz, not {board.clock_hz}",
                         hint=f"set clock_hz = {NRF52_HCLK_HZ}")
    return {"tx": _nrf_pin(board.uart.tx_pin), "rx": _nrf_pin(board.uart.rx_pin)}


def _rp2040_pll(f: int) -> tuple[int, int, int]:
    """(FBDIV, POSTDIV1, POSTDIV2) making exactly ``f`` from the 12 MHz crystal, or raise."""
    for fbdiv in range(RP2040_VCO_MAX_HZ // RP2040_XOSC_HZ, 15, -1):   # highest VCO first
        vco = fbdiv * RP2040_XOSC_HZ
        if vco < RP2040_VCO_MIN_HZ:
            break
        for pd1 in range(7, 0, -1):
            for pd2 in range(pd1, 0, -1):
                if vco == f * pd1 * pd2:
                    return fbdiv, pd1, pd2
    raise ValueError(f)


def _plan_rp2040(board: Board) -> dict[str, Any]:
    where = _where(board)
    f = board.clock_hz
    try:
        if f > RP2040_MAX_SYSCLK_HZ:
            raise ValueError(f)
        fbdiv, pd1, pd2 = _rp2040_pll(f)
    except ValueError:
        raise BoardError(
            f"{where}: clock_hz = {f} cannot be made by the RP2040 PLL from the 12 MHz "
            f"crystal (VCO 750-1600 MHz, post dividers 1-7, at most 133 MHz)",
            hint="set clock_hz = 125_000_000") from None
    _check_uart_clock(board, f, "clk_peri = clk_sys")
    if board.uart.base not in RP2040_UARTS:
        raise BoardError(f"{where}: no RP2040 UART at uart.base 0x{board.uart.base:08X}",
                         hint="use 0x40034000 (UART0) or 0x40038000 (UART1)")
    instance = RP2040_UARTS[board.uart.base]
    pins = []
    for role, pin, offset in (("tx", board.uart.tx_pin, 0), ("rx", board.uart.rx_pin, 1)):
        number = int(_pin("rp2040", pin).group(1))
        # UART function (F2): GPIO 4k+0 is TX, 4k+1 RX; UART0 on GPIO 0-3, 12-19, 28-29,
        # UART1 on 4-11, 20-27 (datasheet 1.4.3 "GPIO functions").
        if not (0 <= number <= 29 and number % 4 == offset
                and ((number + 4) // 8) % 2 == instance):
            raise BoardError(
                f"{where}: uart.{role}_pin {pin!r} is not a UART{instance} {role.upper()} pin",
                hint=f"UART{instance} {role.upper()} is on "
                     + ", ".join(f"GP{n}" for n in range(30)
                                 if n % 4 == offset and ((n + 4) // 8) % 2 == instance))
        pins.append(number)
    return {
        "xosc_hz": RP2040_XOSC_HZ,
        "xosc_startup": RP2040_XOSC_STARTUP,
        "fbdiv": fbdiv,
        "postdiv1": pd1,
        "postdiv2": pd2,
        "uart_instance": instance,
        "tx": pins[0],
        "rx": pins[1],
    }


@dataclass(frozen=True)
class SocGlue:
    """How one chip family is set up: its template and the planner computing its numbers."""

    template: str
    plan: Callable[[Board], dict[str, Any]] | None = None
    boot2: bool = False


#: board.soc -> SoC set-up. SoCs not listed need nothing before the UART works
#: (QEMU's MPS2/MPS3 FPGA images, the nRF51 of the micro:bit model).
SOCS: dict[str, SocGlue] = {
    "lm3s": SocGlue("lm3s"),
    "stm32f4": SocGlue("stm32", _plan_stm32),
    "stm32f7": SocGlue("stm32", _plan_stm32),
    "stm32l4": SocGlue("stm32", _plan_stm32),
    "nrf52": SocGlue("nrf52", _plan_nrf52),
    "rp2040": SocGlue("rp2040", _plan_rp2040, boot2=True),
}


def board_glue(board: Board) -> BoardGlue:
    """Check the board against the glue's tables and compute the numbers the templates need.

    The profile's own consistency (known soc, UART kind of that soc, counter on that
    core, pin name style) is checked by ``tinyq.boards`` when the board is loaded; here
    only what depends on the glue (drivers, PLLs, alternate-function tables) is checked.
    """
    where = _where(board)
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
    stack = board.stack_bytes
    if stack <= 0 or stack % STACK_ALIGN or stack >= board.ram.size:
        raise BoardError(
            f"{where}: stack_bytes={stack} must be a positive multiple of {STACK_ALIGN} "
            f"smaller than RAM ({board.ram.size} bytes)",
            hint="fix stack_bytes in the board file",
        )
    if board.uart.kind == "nrf-uarte" and board.uart.baud not in NRF_UARTE_BAUDRATES:
        raise BoardError(
            f"{where}: uart.baud {board.uart.baud} has no nRF UARTE BAUDRATE value in tinyq",
            hint=f"use one of {', '.join(map(str, NRF_UARTE_BAUDRATES))}")

    soc = SOCS.get(board.soc, SocGlue("none"))
    plan = soc.plan(board) if soc.plan else {}

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
    if soc.boot2 and board.flash.origin != 0x10000000:
        raise BoardError(f"{where}: the RP2040 boots from flash at 0x10000000, "
                         f"not memory.flash.origin 0x{board.flash.origin:08X}",
                         hint="set memory.flash.origin = 0x10000000")

    uart_clock = board.uart.clock_hz or board.clock_hz
    baud = board.uart.baud
    if baud <= 0 or uart_clock <= 0:
        raise BoardError(f"{where}: uart baud and clock must be > 0",
                         hint="set uart.baud and clock_hz (or uart.clock_hz)")
    if board.uart.kind == "cmsdk":
        divisor = max(16, round(uart_clock / baud))
    elif board.uart.kind == "stm32-lpuart":
        divisor = round(256 * uart_clock / baud)   # RM0432 LPUART_BRR = 256 x fck / baud
        if not (3 * baud <= uart_clock <= 4096 * baud) or not 0x300 <= divisor < 1 << 20:
            raise BoardError(f"{where}: LPUART at {uart_clock} Hz cannot make {baud} baud",
                             hint="fck must lie within 3x and 4096x the baud rate")
    else:
        divisor = max(1, round(uart_clock / baud))
    pl011 = uart_clock * 4 // baud      # 64 x (clock / (16 x baud)), rounded down
    pl011_ibrd, pl011_fbrd = pl011 >> 6, pl011 & 63
    nrf_tx = _nrf_pin(board.uart.tx_pin) if board.uart.kind.startswith("nrf") else None
    nrf_rx = _nrf_pin(board.uart.rx_pin) if board.uart.kind.startswith("nrf") else None
    nrf_baud = (NRF_UARTE_BAUDRATES[baud] if board.uart.kind == "nrf-uarte"
                else nrf_baudrate(baud))

    return BoardGlue(
        regions=tuple(regions),
        arena_region=arena,
        extra_sections=tuple(r.name for r in regions[3:]),
        enable_fpu=board.hard_float or board.mve,
        set_vtor=board.core != "cortex-m0",
        num_irqs=NUM_IRQS,
        soc_template=soc.template,
        uart_clock_hz=uart_clock,
        uart_divisor=divisor,
        pl011_ibrd=max(1, pl011_ibrd),
        pl011_fbrd=pl011_fbrd,
        nrf_baudrate=nrf_baud,
        nrf_tx_pin=nrf_tx,
        nrf_rx_pin=nrf_rx,
        soc=MappingProxyType(plan),
        boot2=rp2040_boot2() if soc.boot2 else b"",
    )


def render_board(board: Board, generated: str, semihosting: bool,
                 emulated: bool | None = None) -> dict[str, str]:
    """The board glue files of a project: ``{relative path: text}``.

    ``emulated`` (default: the board is emulator-only or the build uses
    semihosting, i.e. it is meant for an emulator) compiles the SoC's clock
    set-up out (``TQ_EMULATED``).
    """
    glue = board_glue(board)
    if emulated is None:
        emulated = board.emulated_only or semihosting
    ctx = {"board": board, "glue": glue, "generated": generated, "semihosting": semihosting,
           "emulated": emulated}
    files = {
        "board/startup.c": render("board/startup.c.j2", **ctx),
        "board/board.c": render("board/board.c.j2", **ctx),
        "board/link.ld": render("board/link.ld.j2", **ctx),
    }
    if glue.boot2:
        source = (templates_dir() / "board" / "soc" / "rp2040_boot2.S").read_text()
        files["board/boot2.c"] = render("board/boot2.c.j2", boot2_source=source, **ctx)
    return files
