"""One device interface for boards and emulators (STYLE.md rule 6).

The protocol layer (``tinyq.device.protocol``) only sees :class:`Device`: ``open()``
(launch an emulator or open a serial port), ``readline(timeout)``,
``write(data)`` and ``close()``. Implementations:

* :class:`tinyq.device.serial_port.SerialDevice` -- a real board over pyserial
  (any pyserial URL works too, e.g. ``socket://host:port``);
* :class:`tinyq.device.qemu.QemuDevice` -- qemu-system-arm with the UART on a
  TCP socket;
* :class:`tinyq.device.renode.RenodeDevice` -- Renode with the UART on a TCP socket;
* :class:`tinyq.device.fake.FakeDevice` -- a scripted Python model of the
  firmware with injectable faults, for fast tests.

A device is a context manager: ``with QemuDevice(...) as dev:`` launches and
always closes (an emulator process is killed and reaped, also on errors and
KeyboardInterrupt).
"""

from __future__ import annotations

import abc
import time

from tinyq.errors import DeviceTimeoutError, ProtocolError

#: Longest line (terminator included) a device may send before the host knows the model:
#: boot lines, tq-id and tq-out chunks are under 200 bytes. Once the model is known the
#: protocol client raises a device's ``max_line_bytes`` to what that model's results line
#: can reach (``tinyq.device.protocol.answer_line_bound``), so a model with many outputs is never
#: mistaken for a garbled link.
MAX_LINE_BYTES = 16384
#: How long one low-level read may block while readline() waits for a line, so
#: a deadline is honoured promptly and a dead emulator is noticed quickly.
READ_SLICE_S = 0.05


class Device(abc.ABC):
    """A target that talks the tinyq/MLPerf serial protocol.

    ``port`` names the target in every error message (a serial port path, or
    e.g. ``"QEMU mps2-an386 (tcp:127.0.0.1:40123)"``). ``is_emulated`` tells
    whether counts are emulator instruction counts or real cycles.
    """

    port: str = "device"
    is_emulated: bool = False
    #: Longest line accepted, terminator included (see MAX_LINE_BYTES).
    max_line_bytes: int = MAX_LINE_BYTES
    #: What to tell the user when the link drops (emulators override).
    disconnect_hint: str = "check the USB cable and that no other program uses the port"

    @abc.abstractmethod
    def open(self) -> None:
        """Open the link (launch the emulator, open the port). Idempotent."""

    @abc.abstractmethod
    def readline(self, timeout: float) -> str:
        """Return the next line (without ``\\r\\n``) within ``timeout`` seconds.

        Raises DeviceTimeoutError when no complete line arrives in time (its
        ``partial`` field holds any bytes of an unfinished line), DeviceError
        when the link is gone.
        """

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the device."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the link and release everything (kill an emulator). Idempotent."""

    def drain(self, quiet: float) -> list[str]:
        """Read and return lines until the device has been silent for ``quiet`` seconds."""
        lines: list[str] = []
        while True:
            try:
                lines.append(self.readline(quiet))
            except DeviceTimeoutError:
                return lines

    def __enter__(self):
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_serial_url(url: str, **settings):
    """``serial.serial_for_url`` that keeps what a socket delivers during opening.

    pyserial's open() ends with reset_input_buffer(), which for ``socket://``
    reads and discards whatever already arrived; QEMU (``wait=on``) starts the
    guest the moment we connect, so the boot banner could be thrown away. A
    fresh socket holds no stale data, so skip that flush for sockets; a real
    port keeps it (stale bytes from an earlier session must go).
    """
    import serial

    ser = serial.serial_for_url(url, do_not_open=True, **settings)
    if url.startswith("socket://"):
        ser.reset_input_buffer = lambda: None
    ser.open()
    return ser


def decode_line(raw: bytes) -> str:
    """Bytes of one line (terminator included or not) -> text; undecodable bytes become U+FFFD."""
    return raw.rstrip(b"\r\n").decode("ascii", "replace")


#: Characters of a device line quoted in an error message (a line may be ~1 KB).
QUOTED_CHARS = 60


def quote_line(text: str, what: str = "a truncated line") -> str:
    """``what`` and an excerpt of ``text`` for an error message; bytes that are mostly
    unreadable (a wrong baud rate, another program on the port) are said to be so."""
    # decode_line turns non-ASCII bytes into U+FFFD: count those as unreadable too
    readable = sum(c.isascii() and c.isprintable() for c in text)
    if len(text) >= 8 and readable < 0.8 * len(text):
        return (f"{len(text):,} bytes of unreadable data (a wrong baud rate, or another "
                "program on the port?)")
    more = f"… ({len(text):,} characters)" if len(text) > QUOTED_CHARS else ""
    return f"{what} {text[:QUOTED_CHARS]!r}{more}"


def line_too_long(port: str, head: str, limit: int) -> ProtocolError:
    """The error for a line over ``limit`` bytes, saying which it was: protocol text the
    model cannot need (a firmware/model mismatch), other text, or unreadable bytes."""
    if head.startswith(("m-", "e-")) and "unreadable" not in quote_line(head):
        return ProtocolError(
            f"{port} sent a protocol line longer than {limit:,} bytes, the longest this "
            f"model's answers can be (starting {head[:QUOTED_CHARS]!r})",
            hint="the link is fine (the text is readable): the firmware prints more than this "
                 "model needs, so rebuild and reflash it for this model", port=port, limit=limit)
    return ProtocolError(
        f"{port} sent over {limit:,} bytes without a line end "
        f"({quote_line(head, 'starting')})",
        hint=f"this is not tinyq firmware output: check the baud rate and that {port} is "
             "the board's port", port=port, limit=limit)


class StreamDevice(Device):
    """A device whose link is a byte stream: line assembly and deadlines live here.

    Subclasses implement ``_read_some(timeout) -> bytes`` (``b""`` when nothing
    arrived; raise DeviceError when the link is gone) and ``_write_all(data)``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @abc.abstractmethod
    def _read_some(self, timeout: float) -> bytes:
        ...

    @abc.abstractmethod
    def _write_all(self, data: bytes) -> None:
        ...

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            newline = self._buffer.find(b"\n", 0, self.max_line_bytes)
            if newline >= 0:
                raw = bytes(self._buffer[: newline + 1])
                del self._buffer[: newline + 1]
                return decode_line(raw)
            if len(self._buffer) >= self.max_line_bytes:
                head = decode_line(bytes(self._buffer[:QUOTED_CHARS]))
                self._buffer.clear()
                raise line_too_long(self.port, head, self.max_line_bytes)
            left = deadline - time.monotonic()
            if left <= 0:
                partial = decode_line(bytes(self._buffer))
                raise DeviceTimeoutError(
                    f"no complete line from {self.port} within {timeout:g} s"
                    + (f" (got {quote_line(partial)})" if partial else ""),
                    port=self.port, partial=partial)
            self._buffer += self._read_some(min(left, READ_SLICE_S))

    def write(self, data: bytes) -> None:
        self._write_all(bytes(data))
