"""What QEMU and Renode share: an emulator process whose UART is a local TCP socket.

:class:`EmulatorDevice` launches the process, connects to the UART socket with
retries (pyserial ``socket://``), turns the process's death into a DeviceError
quoting its output, and always kills and reaps it: on close(), on errors while
launching, on KeyboardInterrupt inside a ``with`` block, and at interpreter
exit for anything still running. The process is started by
:func:`tinyq.subprocesses.spawn`, so it ends with tinyq even when tinyq is
killed with SIGKILL. Subclasses only build the argv.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from tinyq.device import READ_SLICE_S, StreamDevice, open_serial_url
from tinyq.errors import DeviceError, DeviceTimeoutError, ToolNotFoundError
from tinyq.subprocesses import spawn, stop

log = logging.getLogger(__name__)

#: How long the emulator may take to start listening on its UART socket
#: (QEMU needs ~50 ms, Renode (.NET start-up) a few seconds; a loaded 2-core
#: CI machine can take several times longer).
CONNECT_TIMEOUT_S = 30.0
#: Pause between connection attempts while the emulator starts up.
CONNECT_RETRY_DELAY_S = 0.05
#: Launch attempts when the chosen free port was taken by another process
#: between choosing it and the emulator binding it.
PORT_RETRIES = 3
#: After the socket closes, how long to wait for the emulator's exit code
#: before reporting the disconnect without it.
EXIT_WAIT_S = 1.0
#: Characters of the emulator's output quoted in an error message.
OUTPUT_TAIL_CHARS = 400


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tool(name: str, install_hint: str) -> str:
    """The path of an emulator binary, or ToolNotFoundError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise ToolNotFoundError(f"{name} not found on PATH", hint=install_hint, tool=name)
    return found


# Every emulator process still alive, killed at interpreter exit.
_LIVE: weakref.WeakSet[EmulatorDevice] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _reap_all() -> None:
    with _LIVE_LOCK:
        devices = list(_LIVE)
    for device in devices:
        device.close()


class EmulatorDevice(StreamDevice):
    """An emulator process with the firmware's UART on 127.0.0.1:<tcp_port>."""

    is_emulated = True
    #: The name used in messages ("QEMU", "Renode").
    emulator_name = "emulator"
    binary = ""
    install_hint = ""
    disconnect_hint = "the firmware or the emulator crashed; rerun with --verbose"

    def __init__(self, elf: str | os.PathLike[str], target: str, *, binary: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__()
        self.elf = Path(elf)
        self.target = target                  # QEMU machine / Renode platform
        if binary:
            self.binary = binary
        self.connect_timeout = connect_timeout
        self.tcp_port: int | None = None
        self.argv: list[str] = []
        self.port = f"{self.emulator_name} {target}"
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._output = None
        self._last_output = ""
        self._ser = None

    @abc.abstractmethod
    def build_argv(self, binary: str, tcp_port: int) -> list[str]:
        """The emulator's command line with the UART on ``tcp_port``."""

    def _after_connect(self) -> None:
        """Hook run once the UART socket is connected (e.g. start the emulation)."""

    def _start_hint(self) -> str:
        return f"{self.emulator_name} could not run {self.elf.name} on {self.target}"

    # -- launching ---------------------------------------------------------

    def open(self) -> None:
        if self._proc is not None:
            return
        binary = find_tool(self.binary, self.install_hint)
        if not self.elf.is_file():
            raise DeviceError(f"firmware {self.elf} does not exist",
                              hint="build it first with `tinyq build`", port=self.port)
        last: DeviceError | None = None
        for attempt in range(PORT_RETRIES):
            try:
                self._launch(binary)
                return
            except _PortTaken as exc:
                log.debug("port race on attempt %d: %s", attempt + 1, exc)
                last = exc.error
                self.close()
            except BaseException:
                self.close()
                raise
        assert last is not None
        raise last

    def _launch(self, binary: str) -> None:
        self.tcp_port = free_tcp_port()
        self.port = f"{self.emulator_name} {self.target} (tcp:127.0.0.1:{self.tcp_port})"
        self.argv = self.build_argv(binary, self.tcp_port)
        log.debug("launching %s", " ".join(self.argv))
        self._output = tempfile.TemporaryFile(prefix="tinyq-emulator-")
        # In its own session: Ctrl-C reaches us, not the emulator; close() ends it.
        self._proc = spawn(self.argv, stdin=subprocess.PIPE, stdout=self._output,
                           stderr=self._output)
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._connect()
        self._after_connect()

    def _connect(self) -> None:
        import serial

        url = f"socket://127.0.0.1:{self.tcp_port}"
        deadline = time.monotonic() + self.connect_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                tail = self.output_tail()
                error = self._exit_error("while starting")
                if "Address already in use" in tail or "Failed to bind" in tail:
                    raise _PortTaken(error)
                raise error
            try:
                self._ser = open_serial_url(url, timeout=READ_SLICE_S)
                log.debug("connected to %s", url)
                return
            except serial.SerialException as exc:
                if time.monotonic() >= deadline:
                    raise DeviceTimeoutError(
                        f"{self.port} did not open its serial socket within "
                        f"{self.connect_timeout:g} s ({exc})",
                        hint="the machine may be overloaded; retry, or rerun with --verbose",
                        port=self.port) from exc
                time.sleep(CONNECT_RETRY_DELAY_S)

    # -- I/O ---------------------------------------------------------------

    def _read_some(self, timeout: float) -> bytes:
        import serial

        if self._ser is None:
            raise DeviceError(f"{self.port} is not running", hint="open the device first",
                              port=self.port)
        try:
            data = self._ser.read(max(1, self._ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise self._gone() from exc
        if not data and self._proc is not None and self._proc.poll() is not None:
            raise self._gone()
        return data

    def _write_all(self, data: bytes) -> None:
        import serial

        if self._ser is None:
            raise DeviceError(f"{self.port} is not running", hint="open the device first",
                              port=self.port)
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._gone() from exc

    def _gone(self) -> DeviceError:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(EXIT_WAIT_S)
        return self._exit_error("during the run")

    def _exit_error(self, when: str) -> DeviceError:
        rc = self._proc.poll() if self._proc is not None else None
        tail = self.output_tail()
        detail = f": {tail}" if tail else ""
        if rc is None:
            return DeviceError(f"lost the serial connection to {self.port} {when}{detail}",
                               hint=self.disconnect_hint, port=self.port)
        self.returncode = rc
        hint = self._start_hint() if when == "while starting" else self.disconnect_hint
        return DeviceError(f"{self.port} exited with code {rc} {when}{detail}",
                           hint=hint, port=self.port, returncode=rc)

    #: Lines of the emulator's output that are routine, not a diagnosis.
    output_noise: tuple[str, ...] = ()

    def output_tail(self) -> str:
        """The last characters the emulator wrote to stdout/stderr, on one line."""
        text = self._last_output if self._output is None else _read_all(self._output)
        lines = [line for line in text.splitlines()
                 if line.strip() and not any(n in line for n in self.output_noise)]
        return " ".join(" ".join(lines).split())[-OUTPUT_TAIL_CHARS:]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the firmware to end the emulator (semihosting SYS_EXIT); return the code."""
        if self._proc is None:
            raise DeviceError(f"{self.port} is not running", hint="open the device first",
                              port=self.port)
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeoutError(f"{self.port} did not exit within {timeout:g} s",
                                     hint="the firmware did not call SYS_EXIT",
                                     port=self.port) from exc
        return self.returncode

    # -- teardown ----------------------------------------------------------

    def close(self) -> None:
        proc, self._proc = self._proc, None
        ser, self._ser = self._ser, None
        if proc is not None:
            self.returncode = stop(proc)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            log.debug("%s pid %d ended with %s", self.emulator_name, proc.pid, proc.returncode)
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        output, self._output = self._output, None
        if output is not None:
            self._last_output = _read_all(output)
            output.close()
            if self._last_output.strip():
                log.debug("%s output:\n%s", self.emulator_name, self._last_output.rstrip())

    def __del__(self) -> None:  # last resort; close() is the contract
        with contextlib.suppress(Exception):
            if self._proc is not None:
                self.close()


def _read_all(handle) -> str:
    try:
        handle.flush()
        handle.seek(0)
        return handle.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


class _PortTaken(Exception):
    def __init__(self, error: DeviceError) -> None:
        super().__init__(str(error))
        self.error = error
