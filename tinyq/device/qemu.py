"""qemu-system-arm as a device: the firmware's UART on a local TCP socket.

The argv is built in one place (:func:`qemu_argv`, STYLE.md rule 5) and the
tests assert it exactly. Facts it rests on (DESIGN.md section 7):

* ``-serial tcp:127.0.0.1:PORT,server=on,wait=on`` holds the guest until the
  host connects, so no boot output is lost;
* ``nodelay=on`` turns off Nagle on QEMU's side: the guest UART sends byte by
  byte, and with Nagle every answer waited for the host's delayed ACK (~40 ms
  per command; measured: loading a 27 KB input took 105 s, now 8 s);
* ``-icount shift=0,align=off,sleep=off`` makes virtual time 1 ns per guest
  instruction, so a timer read is a deterministic instruction count;
* ``-semihosting-config enable=on,target=native`` lets the firmware end QEMU
  with an exit code (SYS_EXIT).

Process handling (launch, connect with retries, death, always reaping) is
:class:`tinyq.device.emulator.EmulatorDevice`.
"""

from __future__ import annotations

import os

from tinyq.device.emulator import CONNECT_TIMEOUT_S, EmulatorDevice, find_tool

QEMU_BINARY = "qemu-system-arm"
QEMU_INSTALL_HINT = "install it with `sudo apt-get install qemu-system-arm` (Debian/Ubuntu)"


def qemu_argv(machine: str, elf: str | os.PathLike[str], port: int,
              qemu: str = QEMU_BINARY, icount: bool = True,
              extra: tuple[str, ...] = (), serial: str = "") -> list[str]:
    """The one QEMU command line tinyq runs (``serial``: another ``-serial`` backend
    than the TCP server on ``port``, e.g. ``pty`` for ``tinyq emulate``)."""
    argv = [
        qemu,
        "-machine", machine,
        "-nographic",
        "-monitor", "none",
        "-serial", serial or f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
        "-semihosting-config", "enable=on,target=native",
    ]
    if icount:
        argv += ["-icount", "shift=0,align=off,sleep=off"]
    argv += [*extra, "-kernel", str(elf)]
    return argv


def find_qemu(qemu: str = QEMU_BINARY) -> str:
    """The path of the QEMU binary, or ToolNotFoundError saying how to install it."""
    return find_tool(qemu, QEMU_INSTALL_HINT)


class QemuDevice(EmulatorDevice):
    """Firmware running in qemu-system-arm, its first UART on a TCP socket."""

    emulator_name = "QEMU"
    binary = QEMU_BINARY
    install_hint = QEMU_INSTALL_HINT
    disconnect_hint = "the firmware or QEMU crashed; rerun with --verbose for QEMU's messages"
    output_noise = ("QEMU waiting for connection",)

    def __init__(self, elf: str | os.PathLike[str], machine: str, *,
                 qemu: str = QEMU_BINARY, icount: bool = True,
                 extra_args: tuple[str, ...] = (),
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__(elf, machine, binary=qemu, connect_timeout=connect_timeout)
        self.machine = machine
        self.icount = icount
        self.extra_args = tuple(extra_args)

    def build_argv(self, binary: str, tcp_port: int) -> list[str]:
        return qemu_argv(self.machine, self.elf, tcp_port, qemu=binary, icount=self.icount,
                         extra=self.extra_args)

    def _start_hint(self) -> str:
        return (f"QEMU could not run {self.elf.name} on machine {self.machine}: check the "
                "board profile's QEMU machine (`qemu-system-arm -machine help`)")
