"""A virtual board: firmware in QEMU with its UART on a pseudo-terminal or a TCP port.

``tinyq emulate`` runs one until it is stopped, so any serial tool (the MLPerf
Tiny runner, a terminal, the user's own scripts) can open it like a USB serial
port. Facts about QEMU's backends that users meet:

* ``-serial pty``: QEMU prints ``char device redirected to /dev/pts/N`` and
  keeps the boot lines until it notices the first client, then delivers them.
  QEMU notices that a client opened (or reopened) the pty on a 1-second poll, so
  the first command after opening may be answered only after up to
  :data:`PTY_RECONNECT_S`; clients must wait that long before their first read
  times out (the MLPerf runner sleeps 2 s after opening the port).
* ``-serial tcp:...,server=on,wait=off``: the guest boots at once; one client
  at a time may connect.

Processes are started only through :func:`tinyq.subprocesses.spawn`, so QEMU
ends with tinyq however tinyq ends.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tinyq.device.qemu import QEMU_INSTALL_HINT, find_qemu, qemu_argv
from tinyq.errors import DeviceError, UserInputError
from tinyq.subprocesses import spawn, stop

#: Seconds QEMU may take to answer after a client opens (or reopens) the pty:
#: its pty backend polls for a connected client once a second.
PTY_RECONNECT_S = 1.0
#: Seconds to wait for QEMU to say which pty it made (it does so before the guest
#: starts, within milliseconds; seconds allow a loaded machine).
PTY_ANNOUNCE_TIMEOUT_S = 10.0
#: QEMU's line naming the pty of a ``-serial pty`` backend.
PTY_LINE = re.compile(r"char device redirected to (\S+)")


@dataclass
class VirtualBoard:
    """One running emulator; ``serial`` is what a client opens (a path or host:port)."""

    proc: subprocess.Popen
    serial: str
    argv: list[str]

    def wait(self) -> int:
        """Block until QEMU ends (the caller's Ctrl-C/SIGTERM interrupts this)."""
        return self.proc.wait()

    def close(self) -> None:
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_virtual_board(elf: str | os.PathLike[str], machine: str, *, tcp_port: int | None = None,
                        qemu: str = "qemu-system-arm", icount: bool = True) -> VirtualBoard:
    """Start ``elf`` on QEMU ``machine`` with its UART on a pty (default) or ``tcp_port``."""
    if not Path(elf).is_file():
        raise DeviceError(f"firmware {elf} does not exist",
                          hint="build it first with `tinyq build`")
    if tcp_port is not None and not 1 <= tcp_port <= 65535:
        raise UserInputError(f"TCP port {tcp_port} is not a port number", hint="use 1..65535")
    binary = find_qemu(qemu)
    serial = ("pty" if tcp_port is None
              else f"tcp:127.0.0.1:{tcp_port},server=on,wait=off,nodelay=on")
    argv = qemu_argv(machine, elf, 0, qemu=binary, icount=icount, serial=serial)
    try:
        proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError as exc:
        raise DeviceError(f"{binary} could not be started", hint=QEMU_INSTALL_HINT) from exc
    board = VirtualBoard(proc, f"127.0.0.1:{tcp_port}", argv)
    try:
        if tcp_port is None:
            board.serial = _announced_pty(proc)
        else:
            _wait_listening(proc, tcp_port)
    except BaseException:
        board.close()
        raise
    return board


def _announced_pty(proc: subprocess.Popen) -> str:
    """Read QEMU's output up to its ``char device redirected to`` line."""
    import selectors

    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + PTY_ANNOUNCE_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            match = PTY_LINE.search(line)
            if match:
                return match.group(1)
    raise DeviceError("QEMU did not open a pseudo-terminal"
                      + (f": {seen[-1]}" if seen else ""),
                      hint="check the board's QEMU machine, or use --tcp PORT")


def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    """Wait until QEMU listens on ``port`` (or has died saying why)."""
    import socket

    deadline = time.monotonic() + PTY_ANNOUNCE_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().strip() if proc.stdout else ""
            raise DeviceError(f"QEMU ended at once: {out.splitlines()[-1] if out else 'no output'}",
                              hint=f"is TCP port {port} taken? choose another with --tcp")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            # Connecting takes QEMU's single client slot only until we close: wait=off
            # QEMU accepts the next client.
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise DeviceError(f"QEMU did not listen on TCP port {port}", hint="choose another port")
