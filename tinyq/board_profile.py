"""The typed board record. Loading and validating TOML files is ``tinyq.boards``.

A board profile is data (one TOML file in ``boards/``), never code. Every
stage that needs board facts (fit checks, linker script, compiler flags,
UART driver, cycle counter, flashing, emulation) reads them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: core name -> (gcc -mcpu, has DWT cycle counter, Thumb-1 only)
CORES: dict[str, tuple[str, bool, bool]] = {
    "cortex-m0": ("cortex-m0", False, True),
    "cortex-m0plus": ("cortex-m0plus", False, True),
    "cortex-m3": ("cortex-m3", True, False),
    "cortex-m4": ("cortex-m4", True, False),
    "cortex-m7": ("cortex-m7", True, False),
    "cortex-m33": ("cortex-m33", True, False),
    "cortex-m55": ("cortex-m55", True, False),
}

#: FPU name (gcc -mfpu) -> precision. "none" means soft float.
FPUS: dict[str, str] = {
    "none": "none",
    "fpv4-sp-d16": "single",
    "fpv5-sp-d16": "single",
    "fpv5-d16": "double",
    "auto": "auto",  # -mfpu=auto: implied by -mcpu (M55: FP + MVE)
}

#: Pin naming styles (``uart.tx_pin``/``rx_pin``): style -> (pattern, example). The groups
#: are what the board glue needs: STM32/Stellaris port letter and number, nRF port and
#: number, RP2040 GPIO number. ``tinyq.boards`` checks names against these when a profile
#: is loaded; ``tinyq.firmware.codegen.board`` parses them with the same patterns.
PIN_STYLES: dict[str, tuple[re.Pattern[str], str]] = {
    "port-letter": (re.compile(r"P([A-K])(\d{1,2})", re.IGNORECASE), "PA9"),
    "nrf": (re.compile(r"P?(\d+)\.(\d+)", re.IGNORECASE), "P0.24"),
    "rp2040": (re.compile(r"GP(\d{1,2})", re.IGNORECASE), "GP0"),
}


@dataclass(frozen=True)
class MemoryRegion:
    name: str
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class Uart:
    """The UART the host talks to (the one behind the board's USB-serial bridge)."""

    # cmsdk | pl011 | stm32-usart | stm32-lpuart | nrf-uart | nrf-uarte
    kind: str
    base: int
    baud: int = 115200
    clock_hz: int = 0    # peripheral clock feeding the baud generator (0: same as core clock)
    tx_pin: str = ""     # e.g. "PA9" or "P0.06"; informational for real boards, used by glue
    rx_pin: str = ""


@dataclass(frozen=True)
class Counter:
    """How the firmware counts time: DWT CYCCNT (M3+ real boards) or SysTick."""

    kind: str            # dwt | systick
    clock_hz: int        # clock the counter runs at

    @property
    def instructions_per_tick_under_icount(self) -> float:
        """Under QEMU ``-icount shift=0`` virtual time is 1 ns per instruction."""
        return 1e9 / self.clock_hz


@dataclass(frozen=True)
class Flashing:
    method: str                  # pyocd | openocd | copy | uf2 | emulator
    pyocd_target: str = ""
    openocd_config: str = ""
    drive_label: str = ""        # mass-storage volume label ("DIS_F746NG", "RPI-RP2")


@dataclass(frozen=True)
class Emulator:
    qemu_machine: str = ""
    renode_platform: str = ""


@dataclass(frozen=True)
class Board:
    name: str
    vendor: str
    description: str
    core: str                    # key of CORES
    fpu: str                     # key of FPUS
    clock_hz: int
    flash: MemoryRegion
    ram: MemoryRegion
    uart: Uart
    counter: Counter
    flashing: Flashing
    emulator: Emulator = field(default_factory=Emulator)
    soc: str = ""                # chip family for the glue: a key of tinyq.boards.SOCS, or ""
    extra_ram: tuple[MemoryRegion, ...] = ()
    arena_region: str = "ram"    # which RAM region holds the tensor arena
    stack_bytes: int = 8192
    dsp: bool = False
    mve: bool = False
    emulated_only: bool = False  # a QEMU model with no physical counterpart tinyq targets
    source: str = ""             # the file this profile came from

    @property
    def mcpu(self) -> str:
        return CORES[self.core][0]

    @property
    def has_dwt(self) -> bool:
        return CORES[self.core][1]

    @property
    def thumb1_only(self) -> bool:
        return CORES[self.core][2]

    @property
    def hard_float(self) -> bool:
        return self.fpu != "none"

    @property
    def cflags(self) -> tuple[str, ...]:
        """gcc flags selecting the core and float ABI."""
        flags = [f"-mcpu={self.mcpu}", "-mthumb"]
        if self.hard_float:
            flags += [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]
        else:
            flags += ["-mfloat-abi=soft"]
        return tuple(flags)

    @property
    def can_emulate(self) -> bool:
        return bool(self.emulator.qemu_machine or self.emulator.renode_platform)

    def region(self, name: str) -> MemoryRegion:
        for region in (self.flash, self.ram, *self.extra_ram):
            if region.name == name:
                return region
        raise KeyError(name)
