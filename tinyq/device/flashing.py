"""Flashing firmware onto a board: one backend per method, one seam that runs tools.

Each backend declares what it can do (``Capabilities``), builds its command line
(or pyOCD API calls) in one place, and hands external commands to ``run_tool``,
the single seam tests replace (STYLE.md rule 5, after Zephyr's flash runners).
The board profile picks the backend (``board.flashing.method``); the user may
override it.

==========  ======================================================================
method      what happens
==========  ======================================================================
pyocd       pyOCD Python API: choose the probe, program the ELF, reset (default for
            CMSIS-DAP / ST-Link / J-Link probes; ``pip install 'tinyq[flash]'``)
openocd     ``openocd -f CFG [-c "adapter serial ID"] -c "program ELF verify reset exit"``
copy        ``arm-none-eabi-objcopy -O binary`` then copy onto the DAPLink/mbed drive
uf2         ELF -> .bin -> UF2 (RP2040 family id) then copy onto the RPI-RP2 drive
emulator    nothing to flash: the emulator loads the ELF (``tinyq run --emulator qemu``)
==========  ======================================================================
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tinyq.board_profile import Board
from tinyq.errors import DeviceError, ToolNotFoundError, UserInputError
from tinyq.firmware import elf as elffile
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import run_process

log = logging.getLogger(__name__)

#: Seconds one flashing tool may run before we give up (a full 2 MB erase+write
#: over SWD takes well under a minute; a hung probe should not hang tinyq).
FLASH_TOOL_TIMEOUT_S = 180

#: UF2 block constants (https://github.com/microsoft/uf2 format description).
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_PAYLOAD = 256
#: Stands for the temporary folder in a dry-run plan.
PLAN_WORK_DIR = Path("$TMP")
#: The symbol the harness stores its board name under (firmware_templates/common/tq_main.c.j2).
BOARD_ID_SYMBOL = "tq_board_id"
#: UF2 family id of the RP2040.
UF2_FAMILY_RP2040 = 0xE48BFF56


@dataclass(frozen=True)
class FlashOptions:
    probe: str | None = None          # probe unique id / serial number
    method: str | None = None         # override the board profile's method
    mount_point: Path | None = None   # drive to copy to (copy/uf2); found by label if None
    verify: bool = True
    check_board: bool = True          # refuse an image built for another board


@dataclass(frozen=True)
class Capabilities:
    select_probe: bool   # can pick one of several attached probes
    verify: bool         # verifies what it wrote
    reset: bool          # resets the target afterwards
    needs_drive: bool    # writes to a mounted USB drive


@dataclass(frozen=True)
class FlashResult:
    board: str
    method: str
    firmware: str
    commands: tuple[tuple[str, ...], ...]   # the external commands run, for the record

    def to_json(self) -> dict[str, Any]:
        """The flashing as a record (kind "flash")."""
        from tinyq.records import stamp

        return stamp("flash", {"board": self.board, "method": self.method,
                               "firmware": self.firmware,
                               "commands": [list(c) for c in self.commands]})


def run_tool(argv: Sequence[str], timeout: float = FLASH_TOOL_TIMEOUT_S) -> str:
    """Run one external tool; the only place flashing starts a process."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise ToolNotFoundError(f"{argv[0]} not found", hint=_INSTALL.get(argv[0], "install it"))
    try:
        proc = run_process(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"{argv[0]} did not finish within {timeout:.0f} s",
                          hint="check the probe connection and power, then retry") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        key = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "no output")
        raise DeviceError(f"{argv[0]} failed (exit {proc.returncode}): {key.strip()}",
                          hint=_hint_for(key))
    return proc.stdout


_INSTALL = {
    "openocd": "install it: sudo apt-get install openocd",
    "arm-none-eabi-objcopy": "install it: sudo apt-get install gcc-arm-none-eabi",
}


def _hint_for(line: str) -> str:
    low = line.lower()
    if "no device found" in low or "unable to find" in low or "open failed" in low:
        return "no probe found: connect the board over USB (and check `lsusb`)"
    if "permission" in low or "libusb_open" in low:
        return "no permission for the USB probe: install the udev rules or run as root"
    return "see the tool's output with --verbose"


class FlashBackend:
    """One way of putting an ELF onto a board."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def commands(self, elf: Path, board: Board, options: FlashOptions,
                 work: Path) -> list[tuple[str, ...]]:
        """The external commands this backend runs (empty for API-driven backends)."""
        return []

    def flash(self, elf: Path, board: Board, options: FlashOptions,
              progress: ProgressFn) -> FlashResult:
        with tempfile.TemporaryDirectory(prefix="tinyq-flash-") as tmp:
            cmds = self.commands(elf, board, options, Path(tmp))
            for argv in cmds:
                progress(ProgressEvent("flash", shlex.join(argv)))
                run_tool(argv)
            self.after_commands(elf, board, options, Path(tmp), progress)
        return FlashResult(board.name, self.name, str(elf), tuple(cmds))

    def after_commands(self, elf: Path, board: Board, options: FlashOptions, work: Path,
                       progress: ProgressFn) -> None:
        """Work after the commands (e.g. copying onto a drive)."""

    def plan(self, elf: Path, board: Board, options: FlashOptions) -> list[str]:
        """What ``flash`` would do, one step per line (``tinyq flash --dry-run``)."""
        return [shlex.join(argv) for argv in self.commands(elf, board, options, PLAN_WORK_DIR)]


class OpenOcdBackend(FlashBackend):
    name = "openocd"
    capabilities = Capabilities(select_probe=True, verify=True, reset=True, needs_drive=False)

    def commands(self, elf, board, options, work):
        if not board.flashing.openocd_config:
            raise UserInputError(f"board {board.name} has no flashing.openocd_config",
                                 hint="add one to its TOML file or use --method pyocd")
        argv = ["openocd"]
        # several files allowed: "interface/cmsis-dap.cfg target/nrf52.cfg"
        for cfg in board.flashing.openocd_config.split():
            argv += ["-f", cfg]
        if options.probe:
            argv += ["-c", f"adapter serial {options.probe}"]
        verify = " verify" if options.verify else ""
        argv += ["-c", f"program {elf}{verify} reset exit"]
        return [tuple(argv)]


class PyOcdBackend(FlashBackend):
    """pyOCD through its Python API (no subprocess)."""

    name = "pyocd"
    capabilities = Capabilities(select_probe=True, verify=True, reset=True, needs_drive=False)

    def flash(self, elf, board, options, progress):
        try:
            from pyocd.core.helpers import ConnectHelper
            from pyocd.flash.file_programmer import FileProgrammer
        except ImportError as exc:
            raise ToolNotFoundError("pyOCD is not installed",
                                    hint="pip install 'tinyq[flash]'") from exc
        if not board.flashing.pyocd_target:
            raise UserInputError(f"board {board.name} has no flashing.pyocd_target",
                                 hint="add one to its TOML file (see `pyocd list --targets`)")
        probes = ConnectHelper.get_all_connected_probes(blocking=False,
                                                        unique_id=options.probe)
        if not probes:
            which = f" matching '{options.probe}'" if options.probe else ""
            raise DeviceError(f"no debug probe{which} found for {board.name}",
                              hint="connect the board's debug USB port; `pyocd list` shows probes")
        if len(probes) > 1:
            ids = ", ".join(p.unique_id for p in probes)
            raise UserInputError(f"{len(probes)} probes attached ({ids})",
                                 hint="choose one with --probe ID")
        uid = probes[0].unique_id
        progress(ProgressEvent("flash", f"pyOCD: {board.flashing.pyocd_target} via probe {uid}"))
        session = ConnectHelper.session_with_chosen_probe(
            blocking=False, unique_id=uid,
            options={"target_override": board.flashing.pyocd_target})
        if session is None:
            raise DeviceError(f"could not open probe {uid}",
                              hint="check the USB cable and that no other tool holds the probe")

        def report(fraction: float) -> None:
            progress(ProgressEvent("flash", "programming", int(fraction * 100), 100))

        with session:
            FileProgrammer(session, progress=report).program(str(elf), file_format="elf")
            session.target.reset()
        return FlashResult(board.name, self.name, str(elf), ())

    def plan(self, elf, board, options):
        probe = repr(options.probe) if options.probe else "None"
        return [f"pyOCD API: ConnectHelper.session_with_chosen_probe(unique_id={probe}, "
                f"target_override={board.flashing.pyocd_target!r})",
                f"pyOCD API: FileProgrammer(session).program({str(elf)!r}, file_format='elf')",
                "pyOCD API: session.target.reset()"]


class CopyBackend(FlashBackend):
    """Mass-storage copy of a raw binary (mbed/DAPLink drives)."""

    name = "copy"
    capabilities = Capabilities(select_probe=False, verify=False, reset=True, needs_drive=True)
    suffix = ".bin"

    def commands(self, elf, board, options, work):
        return [("arm-none-eabi-objcopy", "-O", "binary", str(elf), str(self.binary(work, elf)))]

    def binary(self, work: Path, elf: Path) -> Path:
        return work / (elf.stem + ".bin")

    def image(self, work: Path, elf: Path, board: Board) -> Path:
        return self.binary(work, elf)

    def plan(self, elf, board, options):
        drive = options.mount_point or f"<the drive labelled {board.flashing.drive_label}>"
        image = self.image_name(elf)
        return [*super().plan(elf, board, options), f"copy {PLAN_WORK_DIR / image} to {drive}"]

    def image_name(self, elf: Path) -> str:
        return elf.stem + self.suffix

    def after_commands(self, elf, board, options, work, progress):
        drive = options.mount_point or find_drive(board.flashing.drive_label)
        if not Path(drive).is_dir():
            raise DeviceError(f"mount point {drive} not found",
                              hint="plug the board in and check --mount-point")
        image = self.image(work, elf, board)
        target = Path(drive) / image.name
        progress(ProgressEvent("flash", f"copying {image.name} to {drive}"))
        shutil.copyfile(image, target)
        with open(target, "rb") as fh:  # make sure it reached the device before we return
            os.fsync(fh.fileno())


class Uf2Backend(CopyBackend):
    """RP2040-style UF2 drag-and-drop."""

    name = "uf2"
    suffix = ".uf2"

    def plan(self, elf, board, options):
        steps = super().plan(elf, board, options)
        return [steps[0], f"wrap {PLAN_WORK_DIR / (elf.stem + '.bin')} into UF2 blocks at "
                          f"0x{board.flash.origin:08x} (family 0x{UF2_FAMILY_RP2040:08x})",
                *steps[1:]]

    def image(self, work: Path, elf: Path, board: Board) -> Path:
        out = work / self.image_name(elf)
        out.write_bytes(bin_to_uf2(self.binary(work, elf).read_bytes(), board.flash.origin))
        return out


class EmulatorBackend(FlashBackend):
    name = "emulator"
    capabilities = Capabilities(select_probe=False, verify=False, reset=False, needs_drive=False)

    def flash(self, elf, board, options, progress):
        raise self._nothing_to_flash(board)

    def plan(self, elf, board, options):
        raise self._nothing_to_flash(board)

    @staticmethod
    def _nothing_to_flash(board: Board) -> UserInputError:
        return UserInputError(f"{board.name} is an emulated board: there is nothing to flash",
                              hint=f"run it with `tinyq run MODEL --board {board.name} "
                                   "--emulator qemu`")


BACKENDS: dict[str, type[FlashBackend]] = {
    b.name: b for b in (PyOcdBackend, OpenOcdBackend, CopyBackend, Uf2Backend, EmulatorBackend)
}


def backend_for(board: Board, method: str | None = None) -> FlashBackend:
    """The backend for ``method`` (default: the profile's), if it can flash ``board``.

    Only the methods :func:`methods_for` lists are accepted: a UF2 image for a chip
    whose bootloader is not the RP2040's, or a raw binary dropped on the RP2040's UF2
    drive, would be "flashed" without error and leave the board silent.
    """
    name = method or board.flashing.method
    if name not in BACKENDS:
        raise UserInputError(f"unknown flashing method '{name}'",
                             hint=f"choose one of {', '.join(BACKENDS)}")
    usable = methods_for(board)
    if name not in usable:
        raise UserInputError(f"{board.name} cannot be flashed with --method {name}"
                             f"{_WHY_NOT.get(name, '')}",
                             hint=f"use --method {' or '.join(usable)}"
                                  + (" (the profile names no other)" if len(usable) == 1
                                     else ""))
    return BACKENDS[name]()


_WHY_NOT = {
    "uf2": " (UF2 drag-and-drop is the RP2040 bootloader's)",
    "copy": " (its USB drive is a bootloader that takes UF2 images, not raw binaries)",
    "emulator": " (it is a real board: emulators load the ELF themselves)",
    "pyocd": " (its profile names no flashing.pyocd_target)",
    "openocd": " (its profile names no flashing.openocd_config)",
}


def flash(firmware: str | os.PathLike[str], board: Board, options: FlashOptions = FlashOptions(),
          progress: ProgressFn = null_progress) -> FlashResult:
    """Put ``firmware`` (an ELF) onto ``board`` with the profile's (or the chosen) method."""
    elf, backend = _prepare(firmware, board, options)
    return backend.flash(elf, board, options, progress)


def plan(firmware: str | os.PathLike[str], board: Board,
         options: FlashOptions = FlashOptions()) -> list[str]:
    """The steps ``flash`` would take (commands or pyOCD calls), touching no hardware.

    The firmware is checked exactly as ``flash`` checks it.
    """
    elf, backend = _prepare(firmware, board, options)
    return backend.plan(elf, board, options)


def _prepare(firmware: str | os.PathLike[str], board: Board,
             options: FlashOptions) -> tuple[Path, FlashBackend]:
    elf = Path(firmware)
    if elf.is_dir():
        from tinyq.firmware.codegen import PROJECT_FILE

        if (elf / PROJECT_FILE).is_file() and not (elf / "build" / "app.elf").is_file():
            raise UserInputError(f"{elf} is a tinyq project that is not built yet",
                                 hint=f"run `tinyq build {elf}` first")
        elf = elf / "build" / "app.elf" if (elf / "build" / "app.elf").exists() else elf / "app.elf"
    if not elf.is_file():
        raise UserInputError(f"firmware {elf} not found",
                             hint="build it first with `tinyq build`")
    with open(elf, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            raise UserInputError(f"{elf} is not an ELF file",
                                 hint="pass the app.elf that `tinyq build` made")
    backend = backend_for(board, options.method)
    if options.check_board and not isinstance(backend, EmulatorBackend):
        check_image(elf, board)
    return elf, backend


def check_image(elf: Path, board: Board) -> None:
    """Refuse an ELF that was not built for ``board``, before a probe touches the chip.

    A tinyq firmware names its board (symbol ``tq_board_id``): it must be this
    board, since boards that share a chip differ in UART pins and clocks. Any
    ELF (tinyq's or not) must be Arm code whose every programmed byte lies in
    the board's flash: an image linked for another memory map would be
    written to the wrong addresses, or refused half-way by the probe.
    """
    image = elffile.read(elf)
    rebuild = f"rebuild it with `tinyq build MODEL --board {board.name}`"
    if image.machine != elffile.EM_ARM:
        raise UserInputError(f"{elf} is not Arm code (ELF machine {image.machine})",
                             hint=rebuild)
    built_for = image.symbol_string(BOARD_ID_SYMBOL)
    if built_for is not None and built_for != board.name:
        raise UserInputError(f"{elf} was built for {built_for}, not {board.name}",
                             hint=f"flash it with --board {built_for}, or {rebuild}")
    programmed = [s for s in image.segments if s.filesz]
    if not programmed:
        raise UserInputError(f"{elf} has nothing to program (no loadable bytes)", hint=rebuild)
    for seg in programmed:
        if not (board.flash.origin <= seg.paddr
                and seg.paddr + seg.filesz <= board.flash.end):
            raise UserInputError(
                f"{elf} puts {seg.filesz:,} bytes at 0x{seg.paddr:08x}, outside "
                f"{board.name}'s flash (0x{board.flash.origin:08x}-0x{board.flash.end:08x})",
                hint=f"it was linked for another board: {rebuild}")
    log.debug("%s: built for %s, %d segment(s) inside flash", elf, built_for or "?",
              len(programmed))


def drive_roots() -> list[Path]:
    user = getpass.getuser()
    return [Path("/media") / user, Path("/run/media") / user, Path("/media"), Path("/Volumes")]


def find_drive(label: str, roots: Sequence[Path] | None = None) -> Path:
    """The mount point of the USB drive named ``label`` (e.g. RPI-RP2, DIS_F746NG)."""
    if not label:
        raise UserInputError("the board profile names no drive label",
                             hint="pass --mount-point DIR")
    for root in roots if roots is not None else drive_roots():
        candidate = root / label
        if candidate.is_dir():
            return candidate
    raise DeviceError(f"no USB drive named {label} is mounted",
                      hint="plug the board in (RP2040: hold BOOTSEL while plugging) "
                           "or pass --mount-point DIR")


def bin_to_uf2(data: bytes, base: int, family: int = UF2_FAMILY_RP2040) -> bytes:
    """Wrap a flat binary loaded at ``base`` into UF2 blocks of 256 payload bytes."""
    blocks = [data[i:i + UF2_PAYLOAD] for i in range(0, len(data), UF2_PAYLOAD)] or [b""]
    out = bytearray()
    for n, chunk in enumerate(blocks):
        header = struct.pack("<8I", UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_FLAG_FAMILY_ID,
                             base + n * UF2_PAYLOAD, UF2_PAYLOAD, n, len(blocks), family)
        payload = chunk.ljust(476, b"\x00")
        out += header + payload + struct.pack("<I", UF2_MAGIC_END)
    return bytes(out)



def methods_for(board: Board) -> list[str]:
    """The flashing methods ``board``'s profile has the fields for, its default first."""
    f = board.flashing
    available = {"pyocd": bool(f.pyocd_target), "openocd": bool(f.openocd_config),
                 "copy": bool(f.drive_label) and f.method != "uf2",
                 "uf2": f.method == "uf2" or (board.soc == "rp2040" and bool(f.drive_label))}
    return [f.method] + [m for m, ok in available.items() if ok and m != f.method]


def markdown() -> str:
    """docs/flashing.md's table: every board's methods and the exact steps each takes."""
    from tinyq import boards

    elf = Path("build/app.elf")
    lines = ["| board | method | steps (`tinyq flash build/app.elf --board B "
             "[--method M] --dry-run`) |", "|---|---|---|"]
    emulated = []
    for name in boards.names():
        board = boards.load(name)
        if board.flashing.method == "emulator":
            emulated.append(name)
            continue
        for n, method in enumerate(methods_for(board)):
            try:
                steps = backend_for(board, method).plan(elf, board, FlashOptions())
            except UserInputError as exc:
                steps = [exc.message]
            cells = "<br>".join(f"`{step}`" for step in steps)
            label = f"**{method}** (default)" if n == 0 else method
            lines.append(f"| {name if n == 0 else ''} | {label} | {cells} |")
    lines += ["", f"Emulated boards (method `emulator`: nothing to flash, `tinyq run --emulator "
                  f"qemu` loads the ELF): {', '.join(emulated)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tinyq.device.flashing",
                                     description="Print each board's flashing steps.")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table of docs/flashing.md")
    parser.parse_args(argv)
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
