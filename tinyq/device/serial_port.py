"""A real board over a serial port (pyserial), or any pyserial URL.

Opening maps the operating system's refusals to one clear line each: a port
that does not exist, a port the user may not open (Linux: the ``dialout``
group), a port another program holds.
"""

from __future__ import annotations

import errno
import logging
import sys

from tinyq.device import READ_SLICE_S, StreamDevice, open_serial_url
from tinyq.errors import DeviceError, ToolNotFoundError

log = logging.getLogger(__name__)

#: Bytes per write() call: small enough that a USB-serial bridge never drops
#: bytes on a board whose UART driver has a small receive FIFO.
WRITE_CHUNK_BYTES = 64
#: How long a write may block before the link is declared stuck (a 64-byte
#: chunk needs 6 ms at 115200 baud; flow control may hold it longer).
WRITE_TIMEOUT_S = 5.0


def _serial():
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - pyserial is a core dependency
        raise ToolNotFoundError("pyserial is not installed",
                                hint="pip install pyserial") from exc
    return serial


def _errno_of(exc: BaseException) -> int | None:
    for candidate in (getattr(exc, "errno", None), *(getattr(exc, "args", ()) or ())[:1]):
        if isinstance(candidate, int):
            return candidate
    text = str(exc)
    known = ((errno.ENOENT, ("No such file", "FileNotFoundError", "could not find")),
             (errno.EACCES, ("Permission denied", "PermissionError", "Access is denied")),
             (errno.EBUSY, ("busy", "Resource temporarily unavailable")))
    for code, words in known:
        if any(w in text for w in words):
            return code
    return None


def open_error(port: str, exc: BaseException) -> DeviceError:
    """The DeviceError for a port that cannot be opened, naming the port and the fix."""
    code = _errno_of(exc)
    if code == errno.ENOENT:
        hint = ("plug the board in and pass the right --port "
                "(list ports with `python -m serial.tools.list_ports`)")
        return DeviceError(f"serial port {port} not found", hint=hint, port=port)
    if code in (errno.EACCES, errno.EPERM):
        if sys.platform.startswith("linux"):
            hint = ("add yourself to the dialout group (`sudo usermod -aG dialout $USER`, "
                    "then log out and in again)")
        else:
            hint = "check that your user may open the port"
        return DeviceError(f"permission denied opening serial port {port}", hint=hint, port=port)
    if code in (errno.EBUSY, errno.EAGAIN):
        return DeviceError(f"serial port {port} is busy",
                           hint="close the other program using it "
                                "(a serial monitor, a pyocd gdbserver)",
                           port=port)
    return DeviceError(f"cannot open serial port {port}: {exc}",
                       hint="check the port name and the cable", port=port)


class SerialDevice(StreamDevice):
    """A board behind a serial port (``/dev/ttyACM0``, ``COM3``) or a pyserial URL."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        super().__init__()
        self.port = port
        self.baud = baud
        self._ser = None

    def open(self) -> None:
        if self._ser is not None:
            return
        serial = _serial()
        try:
            self._ser = open_serial_url(self.port, baudrate=self.baud, timeout=READ_SLICE_S,
                                        write_timeout=WRITE_TIMEOUT_S)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_error(self.port, exc) from exc
        log.debug("opened %s at %d baud", self.port, self.baud)

    def _read_some(self, timeout: float) -> bytes:
        serial = _serial()
        if self._ser is None:
            raise DeviceError(f"{self.port} is not open", hint="open the device first",
                              port=self.port)
        try:
            # The port's timeout stays READ_SLICE_S (re-setting it reconfigures
            # the port on every call); a deadline overshoots by at most one slice.
            waiting = self._ser.in_waiting
            return self._ser.read(max(1, waiting))
        except (serial.SerialException, OSError) as exc:
            raise self.disconnected(exc) from exc

    def _write_all(self, data: bytes) -> None:
        serial = _serial()
        if self._ser is None:
            raise DeviceError(f"{self.port} is not open", hint="open the device first",
                              port=self.port)
        try:
            for start in range(0, len(data), WRITE_CHUNK_BYTES):
                self._ser.write(data[start:start + WRITE_CHUNK_BYTES])
            self._ser.flush()
        except serial.SerialTimeoutException as exc:
            raise DeviceError(f"writing to {self.port} timed out after {WRITE_TIMEOUT_S:g} s",
                              hint="the board stopped reading its UART: reset it",
                              port=self.port) from exc
        except (serial.SerialException, OSError) as exc:
            raise self.disconnected(exc) from exc

    def disconnected(self, exc: BaseException) -> DeviceError:
        """The error for a link that went away."""
        return DeviceError(f"{self.port} disconnected ({exc})", hint=self.disconnect_hint,
                           port=self.port)

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the real error
                log.debug("closing %s failed", self.port, exc_info=True)
