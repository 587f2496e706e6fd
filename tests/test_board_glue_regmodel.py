"""Real-board firmware executed instruction by instruction against register models.

No emulator tinyq can use models the STM32F7/F446/L4R5, nRF52840 or RP2040, and
no board is attached here. So each real board's firmware (glue + harness + the
test runtime) runs on the Unicorn CPU emulator (the bare Cortex-M core) with the
SoC's peripherals replaced by small Python models of the registers the glue
touches, written from the same reference manuals and checking their rules as
the firmware goes: a PLL configured only while it is off, flash wait states
raised before SYSCLK goes up, over-drive/boost on above the limit, bus clocks
within their maxima, a peripheral's clock enabled before its registers are
touched, the UART's baud divisor matching the bus clock, ... The firmware must
boot through its clock set-up (RP2040: the boot ROM's hand-over to boot2 from
flash offset 0, then boot2's XIP set-up and jump), print the MLPerf boot lines
over its UART, and answer a command sent to it.

What this does NOT show: that silicon behaves like the models (status bits,
timings, errata). It catches wrong addresses/bits between glue and model,
ordering mistakes, hangs on the wrong ready bit, faults, and boot2 layout or
position-dependence errors. Needs the ``unicorn`` package (dev extra).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_tools

from tinyq import boards
from tinyq.board_profile import Board
from tinyq.firmware.codegen import (
    GenerateOptions,
    ModelInfo,
    RuntimeSources,
    render_project,
    write_project,
)
from tinyq.firmware.codegen.board import (
    STM32_FAMILIES,
    STM32_HSI_HZ,
    board_glue,
    crc32_mpeg2,
)
from tinyq.firmware.compiling import build

unicorn = pytest.importorskip("unicorn", reason="needs the unicorn CPU emulator (dev extra)")
from unicorn import arm_const as A  # noqa: E402

pytestmark = pytest.mark.qemu

FIXTURE_RUNTIME = Path(__file__).parent / "fixtures" / "test_runtime.c"
INPUT_BYTES = 16
#: Instructions the firmware may take to boot and answer one command (boot needs
#: ~10^5; the RP2040's XOSC/PLL waits and the harness's stack painting add a few 10^5).
MAX_INSTRUCTIONS = 20_000_000
#: Instructions per emu_start slice (the model stops the CPU when the UART has said
#: what the test waits for).
SLICE = 200_000
REAL_BOARDS = tuple(n for n in boards.names() if not boards.load(n).emulated_only)
CORES = {
    "cortex-m0plus": A.UC_CPU_ARM_CORTEX_M0,
    "cortex-m4": A.UC_CPU_ARM_CORTEX_M4,
    "cortex-m7": A.UC_CPU_ARM_CORTEX_M7,
}


class ModelError(AssertionError):
    """The firmware broke a rule of the reference manual (as the model encodes it)."""


class SocModel:
    """Registers as a dict; subclasses derive status bits and check the rules."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.regs: dict[int, int] = {}
        self.tx = bytearray()
        self.rx = bytearray()
        self.errors: list[str] = []
        self.ticks = 0
        self.uc = None

    # -- helpers
    def get(self, addr: int) -> int:
        return self.regs.get(addr, self.reset_value(addr))

    def reset_value(self, addr: int) -> int:
        return 0

    def fail(self, message: str) -> None:
        self.errors.append(message)
        if self.uc is not None:
            self.uc.emu_stop()

    # -- the Cortex-M private peripheral bus (SysTick, SCB, DWT)
    def ppb_read(self, addr: int) -> int:
        self.ticks += 97
        if addr == 0xE000E018:                   # SYST_CVR counts down
            return 0xFFFFFF - (self.ticks & 0xFFFFFF)
        if addr == 0xE0001004:                   # DWT_CYCCNT counts up
            return self.ticks & 0xFFFFFFFF
        if addr == 0xE000ED80:                   # CCSIDR: STM32F746 4 KB D-cache, 4 ways x 32 B
            return (3 << 3) | (31 << 13) | 1
        return self.get(addr)

    def ppb_write(self, addr: int, value: int) -> None:
        self.regs[addr] = value

    def read(self, addr: int) -> int:
        return self.get(addr)

    def write(self, addr: int, value: int) -> None:
        self.regs[addr] = value


# ------------------------------------------------------------------ STM32

class Stm32Model(SocModel):
    """RCC/PWR/FLASH/GPIO/USART of the F4/F7 (RM0090/RM0390/RM0385) and L4+ (RM0432)."""

    def __init__(self, board: Board) -> None:
        super().__init__(board)
        self.l4 = board.soc == "stm32l4"
        self.family = STM32_FAMILIES[board.soc]
        self.rcc = 0x40021000 if self.l4 else 0x40023800
        self.flash_acr = 0x40022000 if self.l4 else 0x40023C00
        self.gpio0 = 0x48000000 if self.l4 else 0x40020000
        self.gpio_enr = self.rcc + (0x4C if self.l4 else 0x30)
        self.pwr_enr = self.rcc + (0x58 if self.l4 else 0x40)
        _, bus, enr, bit = self.family.uarts[board.uart.base]
        self.uart_enr, self.uart_bit, self.uart_bus = self.rcc + enr, bit, bus
        self.sysclk = 4_000_000 if self.l4 else STM32_HSI_HZ     # MSI / HSI at reset
        self.layout = "isr" if self.l4 or board.uart.kind == "stm32-lpuart" else \
            self.family.usart_layout

    def reset_value(self, addr: int) -> int:
        if addr == self.rcc:                                  # CR: MSI (L4) / HSI (F4/F7) on
            return 1 << 0 | 1 << 1
        if not self.l4 and addr == self.rcc + 0x04:
            return 0x24003010                                 # PLLCFGR
        if self.l4 and addr == 0x40007000:
            return 1 << 9                                     # PWR_CR1 VOS range 1
        if self.l4 and addr == 0x40007080:
            return 1 << 8                                     # PWR_CR5 R1MODE normal
        in_gpio = self.gpio0 <= addr < self.gpio0 + 0x2C00
        if self.l4 and in_gpio and (addr - self.gpio0) % 0x400 == 0:
            return 0xFFFFFFFF                                 # L4 GPIO MODER: analog
        return 0

    def _periph_clock_on(self, addr: int) -> bool:
        if self.gpio0 <= addr < self.gpio0 + 0x2C00:
            port = (addr - self.gpio0) // 0x400
            return bool(self.get(self.gpio_enr) >> port & 1)
        if self.board.uart.base <= addr < self.board.uart.base + 0x400:
            return bool(self.get(self.uart_enr) >> self.uart_bit & 1)
        if 0x40007000 <= addr < 0x40007400:
            return bool(self.get(self.pwr_enr) >> 28 & 1)
        return True

    def read(self, addr: int) -> int:
        rcc, value = self.rcc, self.get(addr)
        if addr == rcc:                                       # CR: ready bits follow the on bits
            on = value
            value &= ~((1 << 10 | 1 << 25) if self.l4 else (1 << 1 | 1 << 25))
            if self.l4:
                value |= (1 << 10) if on & (1 << 8) else 0
                value |= 1 << 1 if on & 1 else 0              # MSIRDY
            else:
                value |= (1 << 1) if on & 1 else 0
            value |= (1 << 25) if on & (1 << 24) else 0
        elif addr == rcc + 0x08:                              # CFGR: SWS follows SW
            value = (value & ~0xC) | ((value & 3) << 2)
        elif not self.l4 and addr == 0x40007004:              # PWR_CSR: ODRDY, ODSWRDY
            cr = self.get(0x40007000)
            value = (cr >> 16 & 1) << 16 | (cr >> 17 & 1) << 17
        elif self.board.uart.base <= addr < self.board.uart.base + 0x400:
            off = addr - self.board.uart.base
            status = 0x1C if self.layout == "isr" else 0x00
            data = 0x24 if self.layout == "isr" else 0x04
            if off == status:
                value = 1 << 7 | (1 << 5 if self.rx else 0)  # TXE, RXNE
            elif off == data:
                value = self.rx.pop(0) if self.rx else 0
        return value

    def write(self, addr: int, value: int) -> None:
        rcc = self.rcc
        if not self._periph_clock_on(addr):
            self.fail(f"write 0x{value:08X} to 0x{addr:08X} before its bus clock is enabled")
        old = self.get(addr)
        pll_on = self.get(rcc) >> 24 & 1
        pllcfgr = rcc + (0x0C if self.l4 else 0x04)
        if addr == pllcfgr and pll_on:
            self.fail("PLLCFGR written while the PLL is on")
        if not self.l4 and addr == 0x40007000 and (old ^ value) & (3 << 14) and pll_on:
            self.fail("VOS changed while the PLL is on")
        if addr == rcc + 0x08 and (value & 3) != (old & 3):
            self._switch(value)
        if addr == self.board.uart.base + (0x0C if self.layout == "sr" else 0x00):
            self._uart_enable(value)
        self.regs[addr] = value
        if self.board.uart.base <= addr < self.board.uart.base + 0x400:
            off = addr - self.board.uart.base
            if off == (0x28 if self.layout == "isr" else 0x04):
                cr1 = self.get(self.board.uart.base + (0x00 if self.layout == "isr" else 0x0C))
                ue = 1 << (0 if self.layout == "isr" else 13)
                if not (cr1 & ue and cr1 & (1 << 3)):
                    self.fail("UART data written with the UART or its transmitter off")
                self.tx.append(value & 0xFF)

    def _pll_hz(self) -> int:
        cfg = self.get(self.rcc + (0x0C if self.l4 else 0x04))
        if self.l4:
            if cfg & 3 != 2 or not cfg >> 24 & 1:
                self.fail(f"PLL source/enable wrong: PLLCFGR=0x{cfg:08X}")
            m, n, r = (cfg >> 4 & 0xF) + 1, cfg >> 8 & 0x7F, 2 * ((cfg >> 25 & 3) + 1)
            vco_in, vco = STM32_HSI_HZ // m, STM32_HSI_HZ // m * n
            if not (2_660_000 <= vco_in <= 16_000_000 and 64_000_000 <= vco <= 344_000_000):
                self.fail(f"PLL out of range: VCO in {vco_in}, VCO {vco}")
            return vco // r
        if cfg >> 22 & 1:
            self.fail("PLL source is HSE, the glue uses HSI")
        m, n, p = cfg & 0x3F, cfg >> 6 & 0x1FF, 2 * ((cfg >> 16 & 3) + 1)
        vco_in, vco = STM32_HSI_HZ // m, STM32_HSI_HZ // m * n
        if not (1_000_000 <= vco_in <= 2_000_000 and 100_000_000 <= vco <= 432_000_000):
            self.fail(f"PLL out of range: VCO in {vco_in}, VCO {vco}")
        return vco // p

    def _switch(self, cfgr: int) -> None:
        sw = cfgr & 3
        pll_sw = 3 if self.l4 else 2
        if sw != pll_sw:
            return
        if not self.get(self.rcc) >> 24 & 1:
            self.fail("SYSCLK switched to a PLL that is off")
        f = self._pll_hz()
        hpre = cfgr >> 4 & 0xF
        hclk = f >> (hpre - 7) if hpre >= 8 else f
        latency = self.get(self.flash_acr) & 0xF
        need = (hclk - 1) // self.family.hz_per_wait_state
        if latency < need:
            self.fail(f"{latency} flash wait states at HCLK {hclk} Hz (needs {need})")
        if self.l4:
            if f > 80_000_000 and self.get(0x40007080) >> 8 & 1:
                self.fail("above 80 MHz without range 1 boost (PWR_CR5.R1MODE = 0)")
            if f > 80_000_000 and hpre != 8:
                self.fail("RM0432: switch to >80 MHz with HCLK = SYSCLK / 2 first")
            ppre1, ppre2 = cfgr >> 8 & 7, cfgr >> 11 & 7
        else:
            cr = self.get(0x40007000)
            if f > self.family.no_overdrive_max_hz and not (cr >> 16 & 1 and cr >> 17 & 1):
                self.fail(f"{f} Hz without over-drive")
            ppre1, ppre2 = cfgr >> 10 & 7, cfgr >> 13 & 7
        div = {0: 1, 4: 2, 5: 4, 6: 8, 7: 16}
        apb1, apb2 = f // div[ppre1], f // div[ppre2]
        if apb1 > self.family.max_apb1_hz or apb2 > self.family.max_apb2_hz:
            self.fail(f"APB1 {apb1} / APB2 {apb2} Hz over the maximum")
        self.sysclk = f
        self.pclk = apb1 if self.uart_bus == "APB1" else apb2

    def _uart_enable(self, cr1: int) -> None:
        ue = cr1 & (1 << (0 if self.layout == "isr" else 13))
        if not ue:
            return
        brr = self.get(self.board.uart.base + (0x0C if self.layout == "isr" else 0x08))
        pclk = getattr(self, "pclk", self.board.uart.clock_hz)
        factor = 256 if self.board.uart.kind == "stm32-lpuart" else 1
        baud = factor * pclk / brr if brr else 0
        if abs(baud - self.board.uart.baud) > 0.02 * self.board.uart.baud:
            self.fail(f"UART on at {baud:.0f} baud (BRR {brr}, {pclk} Hz)")
        if self.board.soc == "stm32l4" and self.board.uart.kind == "stm32-lpuart":
            if not self.get(0x40007004) >> 9 & 1:
                self.fail("LPUART on PG7/PG8 without PWR_CR2.IOSV")

    def check_final(self) -> None:
        if self.sysclk != self.board.clock_hz:
            self.fail(f"SYSCLK ended at {self.sysclk} Hz, profile says {self.board.clock_hz}")
        glue = board_glue(self.board)
        for pin in glue.soc["pins"]:
            base = self.gpio0 + 0x400 * pin.port
            if self.get(base) >> (2 * pin.number) & 3 != 2:
                self.fail(f"{pin.name} not in alternate-function mode")
            afr = self.get(base + (0x20 if pin.number < 8 else 0x24))
            if afr >> (4 * (pin.number & 7)) & 0xF != pin.af:
                self.fail(f"{pin.name} not AF{pin.af}")
        if self.board.core == "cortex-m7" and self.get(0xE000ED14) & (3 << 16) != 3 << 16:
            self.fail("Cortex-M7 caches not enabled")


# ------------------------------------------------------------------ nRF52

class Nrf52Model(SocModel):
    """CLOCK, NVMC, GPIO and UARTE0 of the nRF52840 product specification."""

    def read(self, addr: int) -> int:
        base = self.board.uart.base
        if addr == 0x4000040C:                       # HFCLKSTAT
            return 0x10001 if self.get(0x40000100) or self.regs.get("hfxo") else 0
        if addr == base + 0x110:                     # EVENTS_ENDRX
            if self.get(addr) == 0 and self.rx and self.regs.get("rx_armed"):
                ptr = self.get(base + 0x534)
                self.uc.mem_write(ptr, bytes([self.rx.pop(0)]))
                self.regs["rx_armed"] = 0
                return 1
        return self.get(addr)

    def write(self, addr: int, value: int) -> None:
        base = self.board.uart.base
        self.regs[addr] = value
        if addr == 0x40000000 and value:             # TASKS_HFCLKSTART
            self.regs[0x40000100] = 1
            self.regs["hfxo"] = 1
        elif addr == base + 0x110 and value == 0:
            self.regs[addr] = 0
        elif addr == base + 0x000 and value:         # TASKS_STARTRX
            if self.get(base + 0x538) != 1:
                self.fail("RXD.MAXCNT is not 1")
            self.regs["rx_armed"] = 1
        elif addr == base + 0x008 and value:         # TASKS_STARTTX
            glue = board_glue(self.board)
            if self.get(base + 0x500) != 8:
                self.fail("STARTTX with the UARTE not enabled")
            if (self.get(base + 0x50C), self.get(base + 0x524)) != (glue.nrf_tx_pin,
                                                                     glue.nrf_baudrate):
                self.fail("UARTE TX pin or baud rate not as the profile says")
            if not self.regs.get("hfxo"):
                self.fail("UART used before the HFXO was started")
            ptr, count = self.get(base + 0x544), self.get(base + 0x548)
            if not 0x20000000 <= ptr < 0x20040000:
                self.fail(f"TXD.PTR 0x{ptr:08X} is not in Data RAM (EasyDMA)")
            self.tx += self.uc.mem_read(ptr, count)
            self.regs[base + 0x120] = 1              # EVENTS_ENDTX

    def check_final(self) -> None:
        glue = board_glue(self.board)
        for pin in (glue.nrf_tx_pin, glue.nrf_rx_pin):
            cnf = self.get((0x50000000 if pin < 32 else 0x50000300) + 0x700 + 4 * (pin & 31))
            want = 3 if pin == glue.nrf_tx_pin else 0xC
            if cnf != want:
                self.fail(f"PIN_CNF of pin {pin} = 0x{cnf:X}, expected 0x{want:X}")


# ------------------------------------------------------------------ RP2040

class Rp2040Model(SocModel):
    """RESETS, XOSC, CLOCKS, PLL_SYS, IO/PADS_BANK0, UART0 and the XIP SSI (datasheet)."""

    RESETS = 0x4000C000

    def __init__(self, board: Board) -> None:
        super().__init__(board)
        # The boot ROM leaves everything in reset except what it used for flash boot.
        self.regs[self.RESETS] = 0x01FFFFFF & ~((1 << 6) | (1 << 9) | (1 << 18) | (1 << 19))
        self.ssi_enabled_config: dict[int, int] | None = None

    def _in_reset(self, bit: int) -> bool:
        return bool(self.get(self.RESETS) >> bit & 1)

    def read(self, addr: int) -> int:
        if addr == 0x4000C008:                       # RESET_DONE
            return ~self.get(self.RESETS) & 0x01FFFFFF
        if addr == 0x40024004:                       # XOSC STATUS: STABLE once enabled
            return (1 << 31) if self.get(0x40024000) >> 12 == 0xFAB else 0
        if addr == 0x40008038:                       # CLK_REF_SELECTED
            return 1 << (self.get(0x40008030) & 3)
        if addr == 0x40008044:                       # CLK_SYS_SELECTED
            return 1 << (self.get(0x4000803C) & 1)
        if addr == 0x40028000:                       # PLL_SYS CS: LOCK
            pwr = self.get(0x40028004) if 0x40028004 in self.regs else 0x2D
            locked = not self._in_reset(12) and not pwr & 0x21 and 16 <= self.get(0x40028008)
            return self.get(addr) | (locked << 31)
        if addr == 0x40028004 and addr not in self.regs:
            return 0x2D
        if addr == 0x40034018:                       # UART0 FR: TXFF 0, RXFE
            return 0 if self.rx else 1 << 4
        if addr == 0x40034000:
            return self.rx.pop(0) if self.rx else 0
        return self.get(addr)

    def write(self, addr: int, value: int) -> None:
        alias = (addr >> 12) & 3 if 0x40000000 <= addr < 0x50000000 else 0
        reg = addr & ~0x3000 if alias else addr
        old = self.read(reg) if reg != 0x4000C000 else self.get(reg)
        value = {0: value, 1: old ^ value, 2: old | value, 3: old & ~value}[alias]
        if 0x40028000 <= reg < 0x4002C000 and self._in_reset(12):
            self.fail("PLL_SYS written while in reset")
        if 0x40014000 <= reg < 0x40018000 and self._in_reset(5):
            self.fail("IO_BANK0 written while in reset")
        if 0x4001C000 <= reg < 0x40020000 and self._in_reset(8):
            self.fail("PADS_BANK0 written while in reset")
        if 0x40034000 <= reg < 0x40038000:
            if self._in_reset(22):
                self.fail("UART0 written while in reset")
            if not self.get(0x40008048) >> 11 & 1:
                self.fail("UART0 written with clk_peri off")
        if reg == 0x4000803C and value & 1 and not old & 1:   # clk_sys -> aux
            self._check_sys_switch(value)
        if reg == 0x40008030 and value & 3 == 2 and not self.read(0x40024004) >> 31:
            self.fail("clk_ref switched to an XOSC that is not stable")
        if reg == 0x40008048 and value >> 11 & 1 and old >> 11 & 1 and (old ^ value) & 0xE0:
            self.fail("clk_peri AUXSRC changed while enabled")
        if reg == 0x4000C000 and value >> 22 & 1 == 0 and old >> 22 & 1 and \
                not self.get(0x40008048) >> 11 & 1:
            self.fail("UART0 taken out of reset with clk_peri off")
        self.regs[reg] = value & 0xFFFFFFFF
        if reg == 0x4003402C:                        # LCRH latches IBRD/FBRD
            ibrd, fbrd = self.get(0x40034024), self.get(0x40034028)
            baud = self.board.clock_hz * 4 / (64 * ibrd + fbrd)
            if abs(baud - self.board.uart.baud) > 0.02 * self.board.uart.baud:
                self.fail(f"UART0 at {baud:.0f} baud")
        if reg == 0x40034000:
            if self.get(0x40034030) & 0x101 != 0x101:
                self.fail("UART0 DR written with UARTEN/TXE off")
            self.tx.append(value & 0xFF)

    def _check_sys_switch(self, ctrl: int) -> None:
        if ctrl >> 5 & 7 != 0:
            self.fail("clk_sys aux source is not pll_sys")
        if not self.read(0x40028000) >> 31 or self.get(0x40028004) & 0x08:
            self.fail("clk_sys switched to a PLL that is unlocked or has its post dividers off")
        prim = self.get(0x4002800C)
        pd1, pd2 = prim >> 16 & 7, prim >> 12 & 7
        vco = 12_000_000 * self.get(0x40028008) // (self.get(0x40028000) & 0x3F)
        if not 750_000_000 <= vco <= 1_600_000_000 or not pd1 or not pd2:
            self.fail(f"PLL_SYS VCO {vco} Hz / {pd1} / {pd2} out of range")
        self.sysclk = vco // (pd1 * pd2)

    # XIP SSI (written by boot2)
    def ssi_write(self, off: int, value: int) -> None:
        if off != 0x08 and self.get(0x18000008) & 1:
            self.fail(f"SSI register 0x{off:02X} written while the SSI is enabled")
        self.regs[0x18000000 + off] = value

    def check_final(self) -> None:
        want = {0x00: 0x001F0300, 0x04: 0, 0x08: 1, 0x10: 1, 0xF4: 0x03000218}
        got = {off: self.get(0x18000000 + off) for off in want}
        if got != want:
            self.fail(f"SSI XIP configuration {got} != {want}")
        if self.get(0x18000014) not in range(2, 65536, 2):
            self.fail("SSI BAUDR must be even and >= 2")
        if getattr(self, "sysclk", 0) != self.board.clock_hz:
            self.fail(f"clk_sys ended at {getattr(self, 'sysclk', 0)} Hz")
        for pin in (0, 1):
            if self.get(0x40014004 + 8 * pin) & 0x1F != 2:
                self.fail(f"GP{pin} is not on the UART function")
        if self.get(0xE000ED08) != 0x10000100:
            self.fail("VTOR does not point at flash + 0x100")


MODELS = {"stm32f4": Stm32Model, "stm32f7": Stm32Model, "stm32l4": Stm32Model,
          "nrf52": Nrf52Model, "rp2040": Rp2040Model}


def _firmware(tmp_path: Path, board: Board) -> bytes:
    require_tools("arm-none-eabi-gcc")
    files = render_project(
        board, RuntimeSources("test", {"test_runtime.c": FIXTURE_RUNTIME.read_text()},
                              arena_bytes=2 * INPUT_BYTES),
        ModelInfo("test.tflite", "7e5700000001" + "0" * 52, input_bytes=INPUT_BYTES,
                  num_layers=2), GenerateOptions(semihosting=False))
    fw = build(write_project(files, tmp_path / board.name, force=True))
    return (fw.project / "build" / "app.bin").read_bytes()


def _emulator(board: Board, image: bytes, model: SocModel):
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(CORES[board.core])
    model.uc = uc
    page = 0x1000
    flash_size = -(-board.flash.size // page) * page
    uc.mem_map(board.flash.origin, flash_size)
    uc.mem_write(board.flash.origin, image)
    ram_size = -(-board.ram.size // page) * page
    uc.mem_map(board.ram.origin, ram_size)
    for extra in board.extra_ram:
        uc.mem_map(extra.origin, -(-extra.size // page) * page)

    def rd(_uc, off, _size, base):
        return model.read(base + off) & 0xFFFFFFFF

    def wr(_uc, off, _size, value, base):
        model.write(base + off, value & 0xFFFFFFFF)

    for base, size in ((0x40000000, 0x10000000), (0x50000000, 0x10000000)):
        uc.mmio_map(base, size, rd, base, wr, base)
    uc.mmio_map(0xE0000000, 0x100000,
                lambda _u, off, _s, _d: model.ppb_read(0xE0000000 + off),
                None, lambda _u, off, _s, v, _d: model.ppb_write(0xE0000000 + off, v), None)
    if board.soc == "rp2040":
        uc.mmio_map(0x18000000, 0x1000, lambda _u, off, _s, _d: model.get(0x18000000 + off),
                    None, lambda _u, off, _s, v, _d: model.ssi_write(off, v), None)
    return uc


def _run(uc, model: SocModel, pc: int, budget: int) -> None:
    """Run from ``pc`` until the model stops the CPU at 'm-ready' (or the budget is spent)."""
    done = 0
    start = len(model.tx)
    while done < budget and not model.errors:
        try:
            uc.emu_start(pc | 1, 0xFFFFFFFF, count=SLICE)
        except unicorn.UcError as exc:      # a fault: the bare core has no handler to run
            at = uc.reg_read(A.UC_ARM_REG_PC)
            raise AssertionError(f"CPU exception {exc} at pc=0x{at:08X}; UART said "
                                 f"{bytes(model.tx)!r}; model: {model.errors}") from None
        pc = uc.reg_read(A.UC_ARM_REG_PC)
        done += SLICE
        if b"m-ready" in model.tx[start:]:
            return
    raise AssertionError(f"no m-ready after {done} instructions (pc=0x{pc:08X}); "
                         f"UART said {bytes(model.tx)!r}; model: {model.errors}")


@pytest.mark.parametrize("board_name", REAL_BOARDS)
def test_real_board_boots_and_answers_on_register_models(tmp_path, board_name):
    board = boards.load(board_name)
    image = _firmware(tmp_path, board)
    model = MODELS[board.soc](board)
    uc = _emulator(board, image, model)
    if board.soc == "rp2040":
        # The boot ROM: copy flash[0:256] to SRAM, check the CRC, run it with lr = 0.
        boot2 = image[:256]
        assert int.from_bytes(boot2[252:], "little") == crc32_mpeg2(boot2[:252])
        uc.mem_write(0x20041F00, boot2)
        uc.reg_write(A.UC_ARM_REG_SP, 0x20042000)
        uc.reg_write(A.UC_ARM_REG_LR, 0)
        pc = 0x20041F00
    else:
        # Cortex-M reset: SP and PC from the vector table at the flash origin.
        uc.reg_write(A.UC_ARM_REG_SP, int.from_bytes(image[0:4], "little"))
        pc = int.from_bytes(image[4:8], "little")
    _run(uc, model, pc, MAX_INSTRUCTIONS)
    assert model.errors == []
    lines = model.tx.decode().split()
    assert lines[0] == "m-timestamp-mode-performance" and lines[-2:] == ["m-init-done",
                                                                         "m-ready"], lines
    model.check_final()
    assert model.errors == []
    # one command through the RX path
    model.rx += b"name%"
    _run(uc, model, uc.reg_read(A.UC_ARM_REG_PC), MAX_INSTRUCTIONS)
    assert model.tx.decode().split()[-2:] == [f"m-name-dut-[tinyq-{board_name}]", "m-ready"]
    assert model.errors == []
