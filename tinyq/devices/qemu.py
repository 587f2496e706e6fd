"""qemu-system-arm as a device: the firmware's UART on a local TCP socket.

The argv is built in one place (:func:`qemu_argv`, STYLE.md rule 5) and the
tests assert it exactly. Facts it rests on (DESIGN.md section 7):

* ``-serial tcp:127.0.0.1:PORT,server=on,wait=on`` holds the guest until the
  host connects, so no boot output is lost;
* ``-icount shift=0,align=off,sleep=off`` makes virtual time 1 ns per guest
  instruction, so a timer read is a deterministic instruction count;
* ``-semihosting-config enable=on,target=native`` lets the firmware end QEMU
  with an exit code (SYS_EXIT).

The QEMU process is always killed and reaped: on close(), on errors while
launching, on KeyboardInterrupt inside a ``with`` block, and at interpreter
exit for anything still running.
"""

from __future__ import annotations

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

from tinyq.devices import READ_SLICE_S, StreamDevice, open_serial_url
from tinyq.errors import DeviceError, DeviceTimeoutError, ToolNotFoundError

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-arm"
QEMU_INSTALL_HINT = "install it with `sudo apt-get install qemu-system-arm` (Debian/Ubuntu)"

#: How long QEMU may take to start listening on its serial socket (it usually
#: needs ~50 ms; a loaded 2-core CI machine can take seconds).
CONNECT_TIMEOUT_S = 15.0
#: Pause between connection attempts while QEMU starts up.
CONNECT_RETRY_DELAY_S = 0.05
#: Launch attempts when the chosen free port was taken by someone else between
#: choosing it and QEMU binding it (a race with other processes).
PORT_RETRIES = 3
#: After SIGTERM, how long QEMU gets to exit before SIGKILL.
TERMINATE_GRACE_S = 2.0
#: After the socket closes, how long to wait for QEMU's exit code before
#: reporting the disconnect without it.
EXIT_WAIT_S = 1.0
#: Characters of QEMU's stderr quoted in an error message.
STDERR_TAIL_CHARS = 400


def qemu_argv(machine: str, elf: str | os.PathLike[str], port: int,
              qemu: str = QEMU_BINARY, icount: bool = True,
              extra: tuple[str, ...] = ()) -> list[str]:
    """The one QEMU command line tinyq runs."""
    argv = [
        qemu,
        "-machine", machine,
        "-nographic",
        "-monitor", "none",
        "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
        "-semihosting-config", "enable=on,target=native",
    ]
    if icount:
        argv += ["-icount", "shift=0,align=off,sleep=off"]
    argv += [*extra, "-kernel", str(elf)]
    return argv


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_qemu(qemu: str = QEMU_BINARY) -> str:
    """The path of the QEMU binary, or ToolNotFoundError saying how to install it."""
    found = shutil.which(qemu)
    if found is None:
        raise ToolNotFoundError(f"{qemu} not found on PATH", hint=QEMU_INSTALL_HINT, tool=qemu)
    return found


# Every QEMU process still alive, killed at interpreter exit.
_LIVE: weakref.WeakSet[QemuDevice] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _reap_all() -> None:
    with _LIVE_LOCK:
        devices = list(_LIVE)
    for device in devices:
        device.close()


class QemuDevice(StreamDevice):
    """Firmware running in qemu-system-arm, its first UART on a TCP socket."""

    is_emulated = True
    disconnect_hint = "the firmware or QEMU crashed; rerun with --verbose for QEMU's messages"

    def __init__(self, elf: str | os.PathLike[str], machine: str, *,
                 qemu: str = QEMU_BINARY, icount: bool = True,
                 extra_args: tuple[str, ...] = (),
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__()
        self.elf = Path(elf)
        self.machine = machine
        self.qemu = qemu
        self.icount = icount
        self.extra_args = tuple(extra_args)
        self.connect_timeout = connect_timeout
        self.tcp_port: int | None = None
        self.argv: list[str] = []
        self.port = f"QEMU {machine}"
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._last_stderr = ""
        self._ser = None

    # -- launching ---------------------------------------------------------

    def open(self) -> None:
        if self._proc is not None:
            return
        binary = find_qemu(self.qemu)
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
        self.port = f"QEMU {self.machine} (tcp:127.0.0.1:{self.tcp_port})"
        self.argv = qemu_argv(self.machine, self.elf, self.tcp_port, qemu=binary,
                              icount=self.icount, extra=self.extra_args)
        log.debug("launching %s", " ".join(self.argv))
        self._stderr = tempfile.TemporaryFile(prefix="tinyq-qemu-")
        self._proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            start_new_session=True)  # Ctrl-C reaches us, not QEMU: we kill it ourselves
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._connect()

    def _connect(self) -> None:
        import serial

        url = f"socket://127.0.0.1:{self.tcp_port}"
        deadline = time.monotonic() + self.connect_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                tail = self.stderr_tail()
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
                        hint="the machine may be overloaded; retry, or check QEMU with --verbose",
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
        tail = self.stderr_tail()
        detail = f": {tail}" if tail else ""
        if rc is None:
            return DeviceError(f"lost the serial connection to {self.port} {when}{detail}",
                               hint=self.disconnect_hint, port=self.port)
        self.returncode = rc
        hint = self.disconnect_hint
        if when == "while starting":
            hint = (f"QEMU could not run {self.elf.name} on machine {self.machine}: check the "
                    "board profile's QEMU machine (`qemu-system-arm -machine help`)")
        return DeviceError(f"{self.port} exited with code {rc} {when}{detail}",
                           hint=hint, port=self.port, returncode=rc)

    def stderr_tail(self) -> str:
        """The last characters QEMU wrote to stdout/stderr, on one line."""
        text = self._last_stderr if self._stderr is None else _read_all(self._stderr)
        return " ".join(text.split())[-STDERR_TAIL_CHARS:]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the firmware to end QEMU (semihosting SYS_EXIT); return its exit code."""
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
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(TERMINATE_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
            log.debug("QEMU pid %d ended with %s", proc.pid, proc.returncode)
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        stderr, self._stderr = self._stderr, None
        if stderr is not None:
            self._last_stderr = _read_all(stderr)
            stderr.close()

    def __del__(self) -> None:  # last resort; close() is the contract
        with contextlib.suppress(Exception):
            if self._proc is not None:
                self.close()


def _read_all(handle) -> str:
    try:
        handle.seek(0)
        return handle.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


class _PortTaken(Exception):
    def __init__(self, error: DeviceError) -> None:
        super().__init__(str(error))
        self.error = error
