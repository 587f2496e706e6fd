"""Board profiles: load and validate the TOML files in ``boards/`` (or a user's file).

A board is data, one TOML file per board (schema: docs/boards.md). ``load`` accepts a
bundled name (``"mps2-an386"``) or a path to a ``.toml`` file and returns the typed,
frozen :class:`tinyq.board_profile.Board`. Every file is validated on load; a problem
raises :class:`tinyq.errors.BoardError` with one line naming the file, the field and
the fix, e.g.::

    boards/x.toml: memory.flash.size must be a positive integer (e.g. 0x100000) — fix the value

The schema below is one table (``_SCHEMA``) used for unknown-key detection, types and
defaults; the cross-field rules are small functions after it.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyq.board_profile import (
    CORES,
    FPUS,
    PIN_STYLES,
    Board,
    Counter,
    Emulator,
    Flashing,
    MemoryRegion,
    Uart,
)
from tinyq.errors import BoardError
from tinyq.fileio import read_input_text
from tinyq.resources import boards_dir

log = logging.getLogger(__name__)

#: Largest board profile read: a bundled one is ~1.5 KB; 1 MiB is far beyond any real
#: profile and keeps a wrong file (a log, /dev/zero behind a symlink) from eating memory.
MAX_BOARD_FILE_BYTES = 1 << 20

__all__ = [
    "SOCS", "Soc", "UART_KINDS", "COUNTER_KINDS", "FLASH_METHODS", "FPUS_FOR_CORE",
    "QEMU_MACHINES",
    "load", "loads", "available", "names", "validate_file",
]

#: UART peripheral kinds tinyq's board glue knows how to drive.
UART_KINDS: dict[str, str] = {
    "cmsdk": "Arm CMSDK APB UART (MPS2/MPS3 FPGA images)",
    "pl011": "Arm PrimeCell PL011 (Stellaris LM3S; RP2040, whose pin muxing the soc glue does)",
    "stm32-usart": "STM32 USART (SR/DR or ISR/TDR register layout chosen by soc)",
    "stm32-lpuart": "STM32 low-power UART (LPUART1)",
    "nrf-uart": "Nordic legacy UART (nRF51, nRF52 UART0 without EasyDMA)",
    "nrf-uarte": "Nordic UARTE with EasyDMA (nRF52)",
}


@dataclass(frozen=True)
class Soc:
    """A chip family tinyq has board glue for (``soc = "..."`` in a profile)."""

    description: str
    uart_kinds: tuple[str, ...]  # the UART kinds the family has (keys of UART_KINDS)
    pin_style: str = ""          # key of board_profile.PIN_STYLES; "" = pins not used
    pins_required: bool = False  # the glue muxes uart.tx_pin/rx_pin, so both must be given


#: Chip families (``soc``), the one list docs/boards.md shows (a test keeps them equal).
#: A profile may leave ``soc`` out: then the glue does no chip set-up before the UART
#: (fine for cmsdk, pl011 and nrf-uart(e) kinds; STM32 UARTs need their soc).
SOCS: dict[str, Soc] = {
    "cmsdk-mps2": Soc("Arm MPS2 FPGA images AN385/AN386/AN500", ("cmsdk",)),
    "cmsdk-an505": Soc("Arm MPS2 AN505 (Cortex-M33, Secure aliases)", ("cmsdk",)),
    "cmsdk-an547": Soc("Arm MPS3 AN547 (Cortex-M55)", ("cmsdk",)),
    "stm32f4": Soc("STM32F4 (F405/F407/F42x/F446)", ("stm32-usart",), "port-letter", True),
    "stm32f7": Soc("STM32F7 (F74x/F75x)", ("stm32-usart",), "port-letter", True),
    "stm32l4": Soc("STM32L4+ (L4R/L4S)", ("stm32-usart", "stm32-lpuart"), "port-letter", True),
    "lm3s": Soc("TI Stellaris LM3S", ("pl011",), "port-letter"),
    "nrf51": Soc("Nordic nRF51", ("nrf-uart",), "nrf"),
    "nrf52": Soc("Nordic nRF52", ("nrf-uart", "nrf-uarte"), "nrf", True),
    "rp2040": Soc("Raspberry Pi RP2040", ("pl011",), "rp2040", True),
}

#: Cycle/time counters.
COUNTER_KINDS: dict[str, str] = {
    "dwt": "DWT CYCCNT, counts core cycles (Cortex-M3 and up; not modelled by QEMU)",
    "systick": "SysTick, 24-bit down-counter with wrap counting (every core; QEMU under -icount)",
}

#: How firmware gets onto the board (backends in tinyq.device.flashing).
FLASH_METHODS: dict[str, str] = {
    "pyocd": "pyOCD over SWD (needs flashing.pyocd_target)",
    "openocd": "OpenOCD over SWD (needs flashing.openocd_config)",
    "copy": "copy a .bin onto the debug probe's USB drive (needs flashing.drive_label)",
    "uf2": "copy a .uf2 onto the bootloader's USB drive (needs flashing.drive_label)",
    "emulator": "nothing to flash: the emulator loads the ELF (needs [emulator])",
}

#: QEMU machines tinyq runs firmware on (measured with qemu-system-arm 7.2, facts in
#: docs and QEMU_BOARDS.md): each has a UART on -serial and a SysTick the board glue drives.
#: Other Cortex-M machines exist in QEMU, but tinyq has no startup/UART glue for them.
QEMU_MACHINES: dict[str, str] = {
    "mps2-an385": "Arm MPS2 AN385, Cortex-M3, CMSDK UART",
    "mps2-an386": "Arm MPS2 AN386, Cortex-M4F, CMSDK UART",
    "mps2-an500": "Arm MPS2 AN500, Cortex-M7 (double-precision FPU), CMSDK UART",
    "mps2-an505": "Arm MPS2 AN505, Cortex-M33 (boots Secure), CMSDK UART",
    "mps3-an547": "Arm MPS3 AN547, Cortex-M55 with MVE (boots Secure), CMSDK UART",
    "netduinoplus2": "Netduino Plus 2, STM32F405 Cortex-M4F, USART1",
    "lm3s6965evb": "TI Stellaris LM3S6965 EVB, Cortex-M3, PL011 UART",
    "microbit": "BBC micro:bit, nRF51822 Cortex-M0, nRF UART",
}

#: FPUs a core may be built with (gcc -mfpu). M0/M0+/M3 have none; M4 has FPv4-SP;
#: M7 has FPv5 single or double; M33 FPv5-SP; M55 FP+MVE selected by -mfpu=auto.
FPUS_FOR_CORE: dict[str, tuple[str, ...]] = {
    "cortex-m0": ("none",),
    "cortex-m0plus": ("none",),
    "cortex-m3": ("none",),
    "cortex-m4": ("none", "fpv4-sp-d16"),
    "cortex-m7": ("none", "fpv5-sp-d16", "fpv5-d16"),
    "cortex-m33": ("none", "fpv5-sp-d16"),
    "cortex-m55": ("none", "auto"),
}

#: Cores with the DSP (SIMD) extension option.
_DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
#: Cores with the M-profile Vector Extension (Helium) option.
_MVE_CORES = ("cortex-m55",)

_ADDRESS_LIMIT = 1 << 32
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REGION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# ----------------------------------------------------------------------------- schema

@dataclass(frozen=True)
class _Field:
    kind: str                  # "str" | "int" | "bool" | "table" | "tables"
    required: bool = False
    default: Any = None
    positive: bool = False     # ints: must be > 0 (else >= 0)
    example: str = ""          # shown in type errors
    children: Mapping[str, _Field] | None = None


def _region(name_field: bool) -> dict[str, _Field]:
    fields = {
        "origin": _Field("int", required=True, example="0x20000000"),
        "size": _Field("int", required=True, positive=True, example="0x100000"),
    }
    if name_field:
        fields = {"name": _Field("str", required=True, example='"ccm"'), **fields}
    return fields


_SCHEMA: dict[str, _Field] = {
    "name": _Field("str", required=True, example='"my-board"'),
    "vendor": _Field("str", required=True, example='"STMicroelectronics"'),
    "description": _Field("str", required=True, example='"NUCLEO-F446RE: ..."'),
    "soc": _Field("str", default="", example='"stm32f4"'),
    "core": _Field("str", required=True, example='"cortex-m4"'),
    "fpu": _Field("str", default="none", example='"fpv4-sp-d16"'),
    "dsp": _Field("bool", default=False, example="true"),
    "mve": _Field("bool", default=False, example="false"),
    "clock_hz": _Field("int", required=True, positive=True, example="180_000_000"),
    "stack_bytes": _Field("int", default=8192, positive=True, example="8192"),
    "arena_region": _Field("str", default="ram", example='"ram"'),
    "emulated_only": _Field("bool", default=False, example="false"),
    "memory": _Field("table", required=True, children={
        "flash": _Field("table", required=True, children=_region(False)),
        "ram": _Field("table", required=True, children=_region(False)),
        "extra_ram": _Field("tables", default=(), children=_region(True)),
    }),
    "uart": _Field("table", required=True, children={
        "kind": _Field("str", required=True, example='"stm32-usart"'),
        "base": _Field("int", required=True, example="0x40011000"),
        "baud": _Field("int", default=115200, positive=True, example="115200"),
        "clock_hz": _Field("int", default=0, example="45_000_000"),
        "tx_pin": _Field("str", default="", example='"PA9"'),
        "rx_pin": _Field("str", default="", example='"PB7"'),
    }),
    "counter": _Field("table", required=True, children={
        "kind": _Field("str", required=True, example='"dwt"'),
        "clock_hz": _Field("int", required=True, positive=True, example="216_000_000"),
    }),
    "flashing": _Field("table", required=True, children={
        "method": _Field("str", required=True, example='"pyocd"'),
        "pyocd_target": _Field("str", default="", example='"stm32f446retx"'),
        "openocd_config": _Field("str", default="", example='"board/st_nucleo_f4.cfg"'),
        "drive_label": _Field("str", default="", example='"NODE_F446RE"'),
    }),
    "emulator": _Field("table", default=None, children={
        "qemu_machine": _Field("str", default="", example='"mps2-an386"'),
        "renode_platform": _Field("str", default="", example='"platforms/cpus/nrf51.repl"'),
    }),
}


# ----------------------------------------------------------------------------- errors

def _display(path: Path | str) -> str:
    """The file as the user should see it: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


class _Reporter:
    """Raises BoardErrors that name the file, the field and the fix."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str, fix: str) -> BoardError:
        where = f"{field} " if field else ""
        return BoardError(f"{self.source}: {where}{problem}", hint=fix,
                          path=self.source, field=field)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


# ----------------------------------------------------------------------------- parsing

def _check_table(raw: Mapping[str, Any], schema: Mapping[str, _Field], prefix: str,
                 rep: _Reporter) -> dict[str, Any]:
    """Unknown keys, required keys, types and defaults for one table; recursive."""
    for key in raw:
        if key not in schema:
            where = f"{prefix}." if prefix else ""
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            section = f"[{prefix}]" if prefix else "the top level"
            if close:
                fix = f"did you mean '{close[0]}'?"
            else:
                fix = f"allowed in {section}: {', '.join(schema)}"
            raise rep.fail("", f"unknown field '{where}{key}'", fix)
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in raw:
            if spec.required:
                if spec.kind in ("table", "tables"):
                    raise rep.fail(path, "is missing", f"add a [{path}] section")
                raise rep.fail(path, "is missing", f"add it (e.g. {key} = {spec.example})")
            out[key] = spec.default
            continue
        out[key] = _check_value(raw[key], spec, path, rep)
    return out


def _check_value(value: Any, spec: _Field, path: str, rep: _Reporter) -> Any:
    if spec.kind == "str":
        if not isinstance(value, str):
            raise rep.fail(path, f"must be a string (e.g. {spec.example}), not {_describe(value)}",
                           "quote the value")
        return value.strip()
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise rep.fail(path, f"must be true or false, not {_describe(value)}",
                           "write true or false without quotes")
        return value
    if spec.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < (1 if spec.positive else 0):
            what = "a positive integer" if spec.positive else "a non-negative integer"
            raise rep.fail(path, f"must be {what} (e.g. {spec.example}), not {_describe(value)}",
                           "fix the value (hex like 0x20000000 and 1_000 separators are fine)")
        return value
    if spec.kind == "table":
        if not isinstance(value, dict):
            raise rep.fail(path, f"must be a table, not {_describe(value)}",
                           f"write it as a [{path}] section")
        return _check_table(value, spec.children or {}, path, rep)
    if spec.kind == "tables":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise rep.fail(path, f"must be an array of tables, not {_describe(value)}",
                           f"write each entry as a [[{path}]] section")
        return [_check_table(v, spec.children or {}, f"{path}[{i}]", rep)
                for i, v in enumerate(value)]
    raise AssertionError(spec.kind)  # pragma: no cover - schema bug


# ----------------------------------------------------------------------------- rules

def _choice(value: str, allowed: Mapping[str, object] | tuple[str, ...], path: str,
            rep: _Reporter, what: str) -> None:
    if value in allowed:
        return
    close = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
    fix = f"did you mean '{close[0]}'? " if close else ""
    raise rep.fail(path, f'"{value}" is not a known {what}',
                   f"{fix}use one of: {', '.join(allowed)}")


def _rule_name(d: dict[str, Any], rep: _Reporter) -> None:
    if not _NAME_RE.match(d["name"]):
        raise rep.fail("name", f'"{d["name"]}" is not a valid board name',
                       "use lowercase letters, digits, '.', '_' or '-' (e.g. \"nucleo-f446re\")")
    for key in ("vendor", "description"):
        if not d[key]:
            raise rep.fail(key, "must not be empty", "describe the board in a few words")


def _rule_core(d: dict[str, Any], rep: _Reporter) -> None:
    _choice(d["core"], CORES, "core", rep, "core")
    _choice(d["fpu"], FPUS, "fpu", rep, "FPU")
    allowed = FPUS_FOR_CORE.get(d["core"], tuple(FPUS))
    if d["fpu"] not in allowed:
        raise rep.fail("fpu", f'"{d["fpu"]}" is not available on a {d["core"]}',
                       f"use one of: {', '.join(allowed)}")
    if d["dsp"] and d["core"] not in _DSP_CORES:
        raise rep.fail("dsp", f"= true, but {d['core']} has no DSP extension",
                       "set dsp = false (DSP exists on Cortex-M4/M7/M33/M55)")
    if d["mve"] and d["core"] not in _MVE_CORES:
        raise rep.fail("mve", f"= true, but {d['core']} has no MVE (Helium)",
                       "set mve = false (MVE exists on Cortex-M55)")


def _rule_memory(d: dict[str, Any], rep: _Reporter) -> None:
    mem = d["memory"]
    named = [("flash", "memory.flash", mem["flash"]), ("ram", "memory.ram", mem["ram"])]
    named += [(r["name"], f"memory.extra_ram[{i}]", r) for i, r in enumerate(mem["extra_ram"])]
    seen: dict[str, str] = {}
    for name, path, region in named:
        if path.startswith("memory.extra_ram"):
            if not _REGION_NAME_RE.match(name):
                raise rep.fail(f"{path}.name", f'"{name}" is not a valid region name',
                               'use lowercase letters, digits and "_" (e.g. "ccm")')
            if name in seen:
                raise rep.fail(f"{path}.name", f'"{name}" is already used by {seen[name]}',
                               "give every memory region its own name")
        seen[name] = path
        if region["origin"] + region["size"] > _ADDRESS_LIMIT:
            raise rep.fail(f"{path}.size",
                           f"ends at {region['origin'] + region['size']:#x}, beyond 4 GB",
                           "check origin and size (32-bit addresses)")
    ordered = sorted(named, key=lambda n: n[2]["origin"])
    for (_, pa, a), (_, pb, b) in zip(ordered, ordered[1:], strict=False):
        if a["origin"] + a["size"] > b["origin"]:
            raise rep.fail(pb, f"({b['origin']:#x}..{b['origin'] + b['size']:#x}) overlaps "
                               f"{pa} ({a['origin']:#x}..{a['origin'] + a['size']:#x})",
                           "fix origin/size so memory regions do not overlap")
    ram_names = [n for n, _, _ in named if n != "flash"]
    if d["arena_region"] not in ram_names:
        raise rep.fail("arena_region", f'"{d["arena_region"]}" is not a RAM region of this board',
                       f"use one of: {', '.join(ram_names)}")
    if d["stack_bytes"] >= mem["ram"]["size"]:
        raise rep.fail("stack_bytes", f"({d['stack_bytes']}) does not fit in memory.ram "
                                      f"({mem['ram']['size']} bytes)",
                       "use a smaller stack (e.g. 8192)")


def _rule_uart(d: dict[str, Any], rep: _Reporter) -> None:
    _choice(d["uart"]["kind"], UART_KINDS, "uart.kind", rep, "UART kind")
    if d["uart"]["base"] >= _ADDRESS_LIMIT:
        raise rep.fail("uart.base", f"{d['uart']['base']:#x} is beyond 4 GB",
                       "use the UART's 32-bit base address from the reference manual")


def _rule_soc(d: dict[str, Any], rep: _Reporter) -> None:
    soc, kind = d["soc"], d["uart"]["kind"]
    if not soc:
        if kind.startswith("stm32-"):
            stm32 = [name for name, s in SOCS.items() if kind in s.uart_kinds]
            raise rep.fail("soc", f'is missing, but uart.kind "{kind}" needs an STM32 soc',
                           f'add soc = "..." with one of: {", ".join(stm32)}')
        return
    _choice(soc, SOCS, "soc", rep, "soc (chip family)")
    allowed = SOCS[soc].uart_kinds
    if kind not in allowed:
        fitting = [name for name, s in SOCS.items() if kind in s.uart_kinds]
        other = f", or a soc with {kind}: {', '.join(fitting)}" if fitting else ""
        raise rep.fail("uart.kind", f'"{kind}" is not a UART of soc "{soc}"',
                       f"use {' or '.join(allowed)}{other}")


def _rule_pins(d: dict[str, Any], rep: _Reporter) -> None:
    uart, soc = d["uart"], SOCS.get(d["soc"])
    if soc is not None:
        style, required = soc.pin_style, soc.pins_required
    else:
        style, required = ("nrf" if uart["kind"].startswith("nrf-") else ""), False
    if not style:
        return
    pattern, example = PIN_STYLES[style]
    family = d["soc"] or uart["kind"]
    for role in ("tx", "rx"):
        pin = uart[f"{role}_pin"]
        if not pin:
            if required:
                raise rep.fail(f"uart.{role}_pin", f"is missing; the {family} glue sets the "
                                                   "UART pins up",
                               f'add uart.{role}_pin (e.g. "{example}")')
            continue
        if not pattern.fullmatch(pin):
            raise rep.fail(f"uart.{role}_pin", f'"{pin}" is not a {family} pin name',
                           f'write it as "{example}"')


def _rule_counter(d: dict[str, Any], rep: _Reporter) -> None:
    counter = d["counter"]
    _choice(counter["kind"], COUNTER_KINDS, "counter.kind", rep, "counter kind")
    if counter["kind"] == "dwt" and not CORES[d["core"]][1]:
        raise rep.fail("counter.kind", f"dwt is not available on a {d['core']}",
                       'use kind = "systick"')
    if counter["clock_hz"] > d["clock_hz"]:
        raise rep.fail("counter.clock_hz", f"({counter['clock_hz']}) is faster than the core "
                                           f"clock_hz ({d['clock_hz']})",
                       "use the clock that feeds the counter (the core clock for dwt)")
    if counter["kind"] == "dwt" and counter["clock_hz"] != d["clock_hz"]:
        raise rep.fail("counter.clock_hz", "must equal clock_hz for dwt (CYCCNT counts core "
                                           "cycles)", f"set counter.clock_hz = {d['clock_hz']}")


def _rule_flashing(d: dict[str, Any], rep: _Reporter) -> None:
    fl = d["flashing"]
    _choice(fl["method"], FLASH_METHODS, "flashing.method", rep, "flashing method")
    needs = {"pyocd": "pyocd_target", "openocd": "openocd_config", "copy": "drive_label",
             "uf2": "drive_label"}.get(fl["method"])
    if needs and not fl[needs]:
        raise rep.fail(f"flashing.{needs}", f"is needed when flashing.method = "
                                            f"\"{fl['method']}\"",
                       f"add flashing.{needs} (e.g. {_SCHEMA['flashing'].children[needs].example})")


def _rule_emulator(d: dict[str, Any], rep: _Reporter) -> None:
    emu = d["emulator"]
    has_emulator = bool(emu and (emu["qemu_machine"] or emu["renode_platform"]))
    if emu is not None and not has_emulator:
        raise rep.fail("emulator", "names neither qemu_machine nor renode_platform",
                       "set one of them, or delete the [emulator] section")
    if emu and emu["qemu_machine"]:
        _choice(emu["qemu_machine"], QEMU_MACHINES, "emulator.qemu_machine", rep,
                "QEMU machine tinyq supports")
    if d["emulated_only"] and not has_emulator:
        raise rep.fail("emulator", "is missing but emulated_only = true",
                       'add [emulator] with qemu_machine = "..." or set emulated_only = false')
    if d["flashing"]["method"] == "emulator" and not has_emulator:
        raise rep.fail("emulator", 'is missing but flashing.method = "emulator"',
                       'add [emulator] with qemu_machine = "..." (or renode_platform)')
    if d["emulated_only"] and d["flashing"]["method"] != "emulator":
        raise rep.fail("flashing.method", "must be \"emulator\" when emulated_only = true",
                       'set flashing.method = "emulator"')


#: Cross-field rules, run in order after the schema check.
_RULES: tuple[Callable[[dict[str, Any], _Reporter], None], ...] = (
    _rule_name, _rule_core, _rule_memory, _rule_uart, _rule_counter, _rule_flashing,
    _rule_emulator, _rule_soc, _rule_pins,
)


# ----------------------------------------------------------------------------- build

def _to_board(d: dict[str, Any], source: str) -> Board:
    mem = d["memory"]
    emu = d["emulator"] or {"qemu_machine": "", "renode_platform": ""}
    return Board(
        name=d["name"],
        vendor=d["vendor"],
        description=d["description"],
        core=d["core"],
        fpu=d["fpu"],
        clock_hz=d["clock_hz"],
        flash=MemoryRegion("flash", mem["flash"]["origin"], mem["flash"]["size"]),
        ram=MemoryRegion("ram", mem["ram"]["origin"], mem["ram"]["size"]),
        uart=Uart(**d["uart"]),
        counter=Counter(**d["counter"]),
        flashing=Flashing(**d["flashing"]),
        emulator=Emulator(**emu),
        soc=d["soc"],
        extra_ram=tuple(MemoryRegion(r["name"], r["origin"], r["size"])
                        for r in mem["extra_ram"]),
        arena_region=d["arena_region"],
        stack_bytes=d["stack_bytes"],
        dsp=d["dsp"],
        mve=d["mve"],
        emulated_only=d["emulated_only"],
        source=source,
    )


def loads(text: str, source: str = "<string>") -> Board:
    """Parse and validate one board profile given as TOML text.

    ``source`` names the file in error messages.
    """
    rep = _Reporter(source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise rep.fail("", f"not valid TOML ({exc})",
                       "fix the syntax at that line (see docs/boards.md for an example)") from None
    except RecursionError:
        raise rep.fail("", "not valid TOML (arrays or tables nested too deeply)",
                       "a board profile nests two levels at most (see docs/boards.md)") from None
    data = _check_table(raw, _SCHEMA, "", rep)
    for rule in _RULES:
        rule(data, rep)
    return _to_board(data, source)


def _load_file(path: Path) -> Board:
    shown = _display(path)
    if not path.exists() and not path.is_symlink():
        raise BoardError(f"board file {shown} not found",
                         hint="check the path, or use a bundled board name (`tinyq boards` "
                              "lists them)", path=shown)
    text = read_input_text(path, "board file", BoardError, MAX_BOARD_FILE_BYTES)
    board = loads(text, shown)
    log.debug("loaded board %s from %s", board.name, shown)
    return board


def _bundled_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(boards_dir().glob("*.toml"))}


def names() -> list[str]:
    """Names of the bundled boards, sorted (without loading them)."""
    return sorted(_bundled_paths())


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or os.sep in text or "/" in text


def load(name_or_path: str | os.PathLike[str] | Board) -> Board:
    """A board profile: a bundled name (``"mps2-an386"``) or a path to a ``.toml`` file.

    Raises BoardError for an unknown name (with close matches) or an invalid file.
    A ``Board`` passes through unchanged.
    """
    if isinstance(name_or_path, Board):
        return name_or_path
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        return _load_file(Path(name_or_path))
    name = str(name_or_path).strip()
    bundled = _bundled_paths()
    if name in bundled:
        board = _load_file(bundled[name])
        if board.name != name:
            raise BoardError(f"{board.source}: name \"{board.name}\" differs from the file name",
                             hint=f'set name = "{name}" or rename the file', path=board.source,
                             field="name")
        return board
    if Path(name).is_file():
        return _load_file(Path(name))
    close = difflib.get_close_matches(name.lower(), list(bundled), n=3, cutoff=0.5)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    raise BoardError(f"unknown board '{name}'",
                     hint=f"{suggestion}`tinyq boards` lists the bundled boards; "
                          "or pass a path to a .toml profile", board=name)


def validate_file(path: str | os.PathLike[str]) -> Board:
    """Validate a user's board file; returns the Board or raises BoardError."""
    return _load_file(Path(path))


def available() -> list[Board]:
    """Every bundled board, loaded and validated, sorted by name."""
    return [load(name) for name in names()]
