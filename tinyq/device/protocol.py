"""Host client for the device protocol: MLPerf Tiny's commands plus tinyq's own.

Facts (PROTOCOL.md): a host command is ASCII terminated by ``%``; the device
answers ``m-`` lines, errors as ``e-[...]``, and ends every command, unknown
ones included, with ``m-ready``. Boot prints ``m-timestamp-mode-...``,
``m-init-done``, ``m-ready``.

The client only sees :class:`tinyq.device.Device`. It never hangs: every wait
has a deadline (the constants below), and every way the device can misbehave
ends in one DeviceError naming the port and the likely fix:

* silence (at boot or after a command)          -> DeviceTimeoutError
* a line cut off mid-way, then silence          -> DeviceTimeoutError quoting the partial line
* an answer without ``m-ready``                 -> DeviceTimeoutError quoting the last line
* binary junk on the line (wrong baud rate)     -> ProtocolError
* too many non-protocol lines                   -> ProtocolError
* ``e-[...]``                                   -> ProtocolError quoting the device
* the boot banner again in the middle of a run  -> ProtocolError (device reset)
* an answer that does not parse                 -> ProtocolError
* firmware built for another model              -> ProtocolError (identity check)
* the link or the emulator goes away            -> DeviceError (raised by the device)
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from tinyq.device import MAX_LINE_BYTES, Device, quote_line
from tinyq.errors import DeviceError, DeviceTimeoutError, ProtocolError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Answer timeout for an ordinary command (the MLPerf runner's default).
DEFAULT_TIMEOUT_S = 5.0
#: Base timeout of ``infer`` (the MLPerf runner's) ...
INFER_TIMEOUT_S = 30.0
#: ... plus this much per inference, warm-ups included (the largest MLPerf
#: model takes ~1.3 s per inference on an 80 MHz Cortex-M4), like esptool
#: scaling a timeout by the payload.
INFER_TIMEOUT_PER_RUN_S = 2.0
#: From opening the link to the boot's ``m-ready``.
BOOT_TIMEOUT_S = 10.0
#: Silence after opening before the host probes with ``name%``: a board that
#: booted before the port was opened printed its banner to nobody.
BOOT_PROBE_AFTER_S = 1.0
#: How many probes may be sent during one boot wait.
BOOT_PROBES = 2
#: After a probed boot, quiet time that ends draining stale answers.
SETTLE_S = 0.2
#: Characters per second of the slowest link the MLPerf runner uses (9600 baud
#: 8N1): answers carrying a payload get payload_chars / this added to their timeout.
LINK_CHARS_PER_S_FLOOR = 960
#: Bytes per ``db`` command: the MLPerf runner's chunk (62 hex digits + ``db `` + ``%``
#: stays under the firmware's 80-character command buffer).
DB_CHUNK_BYTES = 31
#: Longest command the firmware buffers (MLPerf EE_CMD_SIZE).
MAX_COMMAND_CHARS = 80
#: Printable lines that are not protocol (``m-``/``e-``) tolerated in one answer
#: (e.g. a debug print in user code) before the link is declared garbled.
MAX_STRAY_LINES = 20

#: Characters of one value in ``m-results-[...]``: the firmware prints ``%0.3f`` and
#: saturates magnitudes at 4,000,000 (put_fixed3 in tq_main.c.j2), so at most
#: ``-4000000.000`` and a comma.
RESULT_VALUE_CHARS = 13
#: Hex digits of a model id in ``tq-id``: the first 12 of the .tflite's sha256.
MODEL_ID_DIGITS = 12
#: Bits of the counts the firmware prints: ``m-lap-us-`` stamps are uint32 (MLPerf), ticks
#: and their totals uint64; memory sizes fit a Cortex-M's 32-bit address space.
LAP_BITS, TICK_BITS, SIZE_BITS = 32, 64, 32

READY = "m-ready"
_BANNER = re.compile(r"^m-(timestamp-mode-\w+|init-done)$")
_BRACKET = re.compile(r"^\[(.*)\]$")
_GARBLED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")


@dataclass(frozen=True)
class Timeouts:
    """Every wait of the client, in seconds (tests pass short ones)."""

    default: float = DEFAULT_TIMEOUT_S
    infer: float = INFER_TIMEOUT_S
    infer_per_run: float = INFER_TIMEOUT_PER_RUN_S
    boot: float = BOOT_TIMEOUT_S
    probe_after: float = BOOT_PROBE_AFTER_S
    settle: float = SETTLE_S

    def for_infer(self, n: int, warmup: int) -> float:
        return self.infer + (n + warmup) * self.infer_per_run

    def for_payload(self, chars: int) -> float:
        return self.default + chars / LINK_CHARS_PER_S_FLOOR


@dataclass(frozen=True)
class BootInfo:
    mode: str                    # "performance" / "energy", "" if the banner was missed
    lines: tuple[str, ...]
    probed: bool                 # the banner was missed and a probe found the firmware


@dataclass(frozen=True)
class Profile:
    firmware: str                # m-profile-[...]
    model: str                   # m-model-[...]: kws01, vww01, ic01, ad01, ...


@dataclass(frozen=True)
class InferResult:
    iterations: int
    warmup: int
    lap_us: tuple[int, int]      # the two m-lap-us- stamps around the timed loop
    results: tuple[float, ...]   # m-results-[...] (dequantized scores)
    emulated: bool               # stamps derive from instruction counts (QEMU icount)

    @property
    def elapsed_us(self) -> int:
        """Microseconds between the stamps (uint32 wrap handled)."""
        return (self.lap_us[1] - self.lap_us[0]) % (1 << 32)


@dataclass(frozen=True)
class Cycles:
    clock_hz: int                # the counter's clock
    counter: str                 # systick | dwt
    ticks: tuple[int, ...]       # one count per timed inference of the last `infer` (capped)
    runs: int = 0                # timed inferences of the last `infer` (may exceed len(ticks))
    total: int = 0               # their summed ticks


@dataclass(frozen=True)
class Memory:
    arena: int                   # tensor arena bytes the runtime uses
    stack_peak: int              # stack high-water mark (painted at boot)
    stack_size: int              # stack reserved by the linker script
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    index: int
    name: str
    ticks: int


@dataclass(frozen=True)
class Identity:
    model_id: str                # first 12 hex digits of the .tflite's sha256
    runtime: str                 # native | tflm
    board: str
    extra: dict[str, str] = field(default_factory=dict)


def answer_line_bound(output_values: int) -> int:
    """Longest line (terminator included) the firmware can send for a model with
    ``output_values`` output values: its ``m-results-[...]`` line, or MAX_LINE_BYTES."""
    return max(MAX_LINE_BYTES, len("m-results-[]\r\n") + output_values * RESULT_VALUE_CHARS)


def parse_uint(text: str, bits: int, base: int = 10) -> int:
    """A count the firmware printed: an unsigned integer below ``2**bits``, else ValueError
    (a 400-digit number is a garbled line, not a count)."""
    text = text.strip()
    if not text.isascii() or not text or len(text) > 2 + (bits + 2) // 3:
        raise ValueError(f"{text[:24]!r} is not a {bits}-bit count")
    value = int(text, base)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{text[:24]!r} is not a {bits}-bit count")
    return value


def _unbracket(text: str) -> str:
    match = _BRACKET.match(text)
    return match.group(1) if match else text


def parse_kv(text: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


class Client:
    """Talks to one device. Call :meth:`wait_ready` once after opening it."""

    def __init__(self, device: Device, timeouts: Timeouts | None = None) -> None:
        self.device = device
        self.timeouts = timeouts or Timeouts()
        self.output_values = 0

    def expect_outputs(self, output_values: int) -> None:
        """Tell the client how many output values the model has: the longest line the
        device may send, and the time its answers take, grow with them."""
        self.output_values = max(0, int(output_values))
        self.device.max_line_bytes = answer_line_bound(self.output_values)

    @property
    def _results_chars(self) -> int:
        return self.output_values * RESULT_VALUE_CHARS

    @property
    def port(self) -> str:
        return self.device.port

    # -- framing -----------------------------------------------------------

    def wait_ready(self, timeout: float | None = None, probe: bool = True) -> BootInfo:
        """Wait for the boot banner's ``m-ready``; probe a board that booted earlier."""
        total = self.timeouts.boot if timeout is None else timeout
        deadline = time.monotonic() + total
        lines: list[str] = []
        probes = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._boot_timeout(total, lines, "")
            wait = min(left, self.timeouts.probe_after) if probe and probes < BOOT_PROBES else left
            try:
                line = self.device.readline(wait)
            except DeviceTimeoutError as exc:
                partial = getattr(exc, "partial", "")
                if probe and probes < BOOT_PROBES and time.monotonic() < deadline:
                    log.debug("%s silent after opening: probing with name%%", self.port)
                    self.device.write(b"name%")
                    probes += 1
                    continue
                raise self._boot_timeout(total, lines, partial) from exc
            line = line.strip()
            if not line:
                continue
            lines.append(line)
            if line.startswith("e-"):
                raise ProtocolError(
                    f"firmware on {self.port} failed to start: {_unbracket(line[2:])}",
                    hint="rebuild the firmware for this board; if it persists, report it",
                    port=self.port, line=line)
            if line == READY:
                if probes:
                    self.device.drain(self.timeouts.settle)
                mode = next((x[len("m-timestamp-mode-"):] for x in lines
                             if x.startswith("m-timestamp-mode-")), "")
                return BootInfo(mode=mode, lines=tuple(lines), probed=bool(probes))
            # Anything else before the first m-ready is boot noise (a USB bridge
            # waking up, a bootloader): the deadline bounds it.

    def _boot_timeout(self, total: float, lines: list[str], partial: str) -> DeviceTimeoutError:
        seen = ""
        if partial:
            seen = f"; got {quote_line(partial)}"
        elif lines:
            seen = f"; {quote_line(lines[-1], 'last line')}"
        if self.device.is_emulated:
            hint = ("the firmware did not start on this machine: check that it was built for "
                    "this board and rerun with --verbose")
        else:
            hint = ("check that the board runs tinyq firmware (`tinyq flash`) at the port's "
                    "baud rate, then press its reset button")
        return DeviceTimeoutError(f"no m-ready from {self.port} within {total:g} s of opening "
                                  f"it{seen}", hint=hint, port=self.port)

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd%``; return the ``m-`` lines before ``m-ready`` (``m-ready`` excluded)."""
        if "%" in cmd or len(cmd) > MAX_COMMAND_CHARS or not cmd.isascii():
            raise ValueError(f"not a valid device command: {cmd!r}")
        limit = self.timeouts.default if timeout is None else timeout
        shown = cmd if len(cmd) <= 24 else cmd[:21] + "..."
        self.device.write(cmd.encode("ascii") + b"%")
        deadline = time.monotonic() + limit
        answer: list[str] = []
        errors: list[str] = []
        stray = 0
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise DeviceTimeoutError("deadline passed", partial="")
                line = self.device.readline(left)
            except DeviceTimeoutError as exc:
                partial = getattr(exc, "partial", "")
                last = answer[-1] if answer else ""
                if errors:
                    seen = f"; it reported {self._errors_text(errors)}"
                elif partial:
                    seen = f"; got {quote_line(partial)}"
                elif last:
                    seen = f"; {quote_line(last, 'last line')}"
                else:
                    seen = "; it sent nothing"
                raise DeviceTimeoutError(
                    f"no m-ready from {self.port} within {limit:g} s after '{shown}'{seen}",
                    hint=self._hang_hint(), port=self.port, command=cmd) from exc
            except DeviceError as exc:
                if not errors:
                    raise
                # The firmware said why before the link went (a HardFault report, then
                # the emulator exits): lead with the firmware's words.
                raise DeviceError(
                    f"{self.port} failed during '{shown}': {self._errors_text(errors)}; "
                    f"then {exc.message}", hint=self._crash_hint(errors), port=self.port,
                    command=cmd, device_error=self._errors_text(errors)) from exc
            text = line.strip()
            if not text:
                continue
            if _GARBLED.search(text):
                raise ProtocolError(
                    f"garbled data from {self.port} in the answer to '{shown}': {text[:60]!r}",
                    hint=self._garble_hint(), port=self.port, command=cmd, line=text)
            if _BANNER.match(text):
                said = f" after reporting {self._errors_text(errors)}" if errors else ""
                raise ProtocolError(
                    f"{self.port} reset while running '{shown}'{said} (boot banner {text!r} "
                    "seen again)", hint=self._reset_hint(), port=self.port, command=cmd)
            if text == READY:
                break
            if text.startswith("e-"):
                errors.append(text)
            elif text.startswith("m-"):
                answer.append(text)
            else:
                stray += 1
                log.debug("%s: stray line %r", self.port, text)
                if stray > MAX_STRAY_LINES:
                    raise ProtocolError(
                        f"{self.port} sent over {MAX_STRAY_LINES} non-protocol lines in the "
                        f"answer to '{shown}' (e.g. {text[:60]!r})",
                        hint=self._garble_hint(), port=self.port, command=cmd)
        if errors:
            detail = self._errors_text(errors)
            if "Unknown command" in detail:
                hint = ("the firmware on the device is not tinyq firmware (or is older): "
                        "flash the firmware tinyq built")
            else:
                hint = "the firmware rejected the command; check the model input size and arguments"
            raise ProtocolError(f"{self.port} rejected '{shown}': {detail}", hint=hint,
                                port=self.port, command=cmd, device_error=detail)
        log.debug("%s %r -> %r", self.port, cmd[:30], answer)
        return answer

    @staticmethod
    def _errors_text(errors: list[str]) -> str:
        return "; ".join(_unbracket(e[2:].strip()) for e in errors)

    def _crash_hint(self, errors: list[str]) -> str:
        if any("HardFault" in e for e in errors):
            return ("the firmware crashed: usually a stack overflow or too small an arena; "
                    "rebuild with a larger stack_bytes, and report it if it persists")
        return self.device.disconnect_hint

    def _hang_hint(self) -> str:
        if self.device.is_emulated:
            return ("the firmware hung or crashed (HardFault, stack overflow, arena too small); "
                    "rerun with --verbose")
        return ("the firmware hung or crashed: press reset and retry; if it persists check "
                "the stack and arena sizes")

    def _garble_hint(self) -> str:
        baud = getattr(self.device, "baud", None)
        if baud:
            return (f"check that the board's UART runs at {baud} baud and that {self.port} "
                    "is the board's port")
        return "the firmware's UART output is corrupt: check the board profile's UART settings"

    def _reset_hint(self) -> str:
        return ("the firmware crashed and restarted (watchdog, HardFault) or the board lost power: "
                "check the USB cable and the stack/arena sizes")

    def _malformed(self, cmd: str, answer: list[str], expected: str) -> ProtocolError:
        got = answer if len(answer) <= 4 else [*answer[:4], "..."]
        return ProtocolError(
            f"unexpected answer to '{cmd}' from {self.port}: expected {expected}, got {got}",
            hint="the firmware does not speak this version of the protocol: rebuild and "
                 "reflash it with this tinyq", port=self.port, command=cmd)

    def _one(self, cmd: str, answer: list[str], prefix: str, expected: str) -> str:
        """The bracketed payload of the one line starting with ``prefix``."""
        for line in answer:
            if line.startswith(prefix):
                match = _BRACKET.match(line[len(prefix):])
                if match:
                    return match.group(1)
        raise self._malformed(cmd, answer, expected)

    # -- MLPerf Tiny commands ------------------------------------------------

    def name(self) -> str:
        """``name`` -> the device name (``m-name-dut-[NAME]``)."""
        answer = self.command("name")
        for line in answer:
            match = re.match(r"^m-name-(\w+)-\[([^\]]+)\]$", line)
            if match:
                return match.group(2)
        raise self._malformed("name", answer, "m-name-dut-[...]")

    def profile(self) -> Profile:
        answer = self.command("profile")
        return Profile(firmware=self._one("profile", answer, "m-profile-", "m-profile-[...]"),
                       model=self._one("profile", answer, "m-model-", "m-model-[...]"))

    def load_input(self, data: bytes, progress: ProgressFn = null_progress) -> None:
        """Send ``data`` with ``db load N`` and ``db <hex>`` chunks of 31 bytes."""
        data = bytes(data)
        if not data:
            raise ValueError("load_input needs at least one byte")
        cmd = f"db load {len(data)}"
        answer = self.command(cmd)
        if f"m-[Expecting {len(data)} bytes]" not in answer:
            raise ProtocolError(
                f"{self.port} did not accept {len(data)} input bytes (answer: {answer})",
                hint="the firmware's input buffer is smaller than the model input: rebuild "
                     "the firmware for this model", port=self.port, command=cmd)
        chunks = range(0, len(data), DB_CHUNK_BYTES)
        total = len(chunks)
        for n, start in enumerate(chunks, 1):
            cmd = "db " + data[start:start + DB_CHUNK_BYTES].hex()
            answer = self.command(cmd)
            last = n == total
            if ("m-load-done" in answer) != last:
                where = "early" if not last else "not at the end"
                raise ProtocolError(
                    f"{self.port} reported m-load-done {where} while loading {len(data)} bytes "
                    f"(chunk {n}/{total})",
                    hint="bytes were lost on the link: retry, or lower the baud rate",
                    port=self.port, command=cmd)
            if n == total or n % 64 == 0:
                progress(ProgressEvent("load", "sending input", done=n, total=total))

    def infer(self, n: int = 1, warmup: int = 0) -> InferResult:
        """``infer N W``: the two lap stamps and the results vector."""
        if n < 1 or warmup < 0:
            raise ValueError(f"infer needs n >= 1 and warmup >= 0, got {n}, {warmup}")
        cmd = f"infer {n} {warmup}"
        answer = self.command(cmd, timeout=self.timeouts.for_infer(n, warmup)
                              + self._results_chars / LINK_CHARS_PER_S_FLOOR)
        laps = []
        for line in answer:
            if line.startswith("m-lap-us-"):
                try:
                    laps.append(parse_uint(line[len("m-lap-us-"):], LAP_BITS))
                except ValueError:
                    raise self._malformed(cmd, answer, "m-lap-us-<uint32>") from None
        expected = [f"m-warmup-start-{warmup}", "m-warmup-done", f"m-infer-start-{n}",
                    "m-infer-done"]
        if len(laps) != 2 or any(e not in answer for e in expected):
            raise self._malformed(cmd, answer, "m-warmup-start/done, m-infer-start, two "
                                  "m-lap-us- stamps, m-infer-done, m-results-[...]")
        results = self._results(cmd, answer)
        return InferResult(iterations=n, warmup=warmup, lap_us=(laps[0], laps[1]),
                           results=results, emulated=self.device.is_emulated)

    def _results(self, cmd: str, answer: list[str]) -> tuple[float, ...]:
        payload = self._one(cmd, answer, "m-results-", "m-results-[v0,v1,...]")
        try:
            return tuple(float(v) for v in payload.split(",") if v.strip())
        except ValueError:
            raise self._malformed(cmd, answer, "m-results-[v0,v1,...] of numbers") from None

    def results(self) -> tuple[float, ...]:
        return self._results("results", self.command(
            "results", timeout=self.timeouts.for_payload(self._results_chars)))

    def timestamp(self) -> int:
        answer = self.command("timestamp")
        for line in answer:
            if line.startswith("m-lap-us-"):
                try:
                    return parse_uint(line[len("m-lap-us-"):], LAP_BITS)
                except ValueError:
                    break
        raise self._malformed("timestamp", answer, "m-lap-us-<uint32>")

    # -- tinyq commands ------------------------------------------------------

    def raw_output(self) -> tuple[bytes, ...]:
        """``tq-out``: every output tensor's raw bytes from the last inference."""
        cmd = "tq-out"
        # hex: 2 digits a byte, up to 4 bytes a value, plus each 64-byte line's framing
        chars = max(1 << 16, 10 * self.output_values)
        answer = self.command(cmd, timeout=self.timeouts.for_payload(chars))
        parts: dict[int, bytearray] = {}
        for line in answer:
            match = re.match(r"^m-tq-out-(\d+)-\[([0-9a-fA-F]*)\]$", line)
            if not match:
                continue
            hexdigits = match.group(2)
            if len(hexdigits) % 2:
                raise self._malformed(cmd, answer, "an even number of hex digits")
            parts.setdefault(int(match.group(1)), bytearray()).extend(bytes.fromhex(hexdigits))
        if not parts or sorted(parts) != list(range(len(parts))):
            raise self._malformed(cmd, answer, "m-tq-out-<i>-[hex] for outputs 0..n-1")
        return tuple(bytes(parts[i]) for i in range(len(parts)))

    def cycles(self) -> Cycles:
        """``tq-cycles``: the counter's clock and ticks of each timed inference."""
        cmd = "tq-cycles"
        answer = self.command(cmd, timeout=self.timeouts.for_payload(1 << 12))
        try:
            info = parse_kv(self._one(cmd, answer, "m-tq-cycles-", "m-tq-cycles-[clock_hz=..]"))
            ticks_text = self._one(cmd, answer, "m-tq-ticks-", "m-tq-ticks-[t1,t2,...]")
            ticks = tuple(parse_uint(t, TICK_BITS) for t in ticks_text.split(",") if t.strip())
            clock = parse_uint(info["clock_hz"], SIZE_BITS)
            runs = parse_uint(info.get("runs", str(len(ticks))), SIZE_BITS)
            total = parse_uint(info.get("total", str(sum(ticks))), TICK_BITS + SIZE_BITS)
        except (KeyError, ValueError):
            raise self._malformed(cmd, answer, "clock_hz=<Hz> and ticks as 64-bit counts") \
                from None
        if clock <= 0 or not ticks:
            raise self._malformed(cmd, answer, "a positive clock and at least one count "
                                  "(run infer first)")
        return Cycles(clock_hz=clock, counter=info.get("counter", ""), ticks=ticks, runs=runs,
                      total=total)

    def mem(self) -> Memory:
        """``tq-mem``: arena bytes, stack high-water mark, stack size."""
        cmd = "tq-mem"
        answer = self.command(cmd)
        try:
            info = {k: parse_uint(v, SIZE_BITS, 0) for k, v in
                    parse_kv(self._one(cmd, answer, "m-tq-mem-", "m-tq-mem-[...]")).items()}
            return Memory(arena=info.pop("arena"), stack_peak=info.pop("stack_peak"),
                          stack_size=info.pop("stack_size"), extra=info)
        except (KeyError, ValueError):
            raise self._malformed(cmd, answer, "arena=, stack_peak=, stack_size= as 32-bit "
                                  "sizes") from None

    def layers(self) -> tuple[Layer, ...]:
        """``tq-layers``: run one inference on the loaded input; ticks of each op."""
        cmd = "tq-layers"
        answer = self.command(cmd, timeout=self.timeouts.for_infer(1, 0)
                              + self.timeouts.for_payload(1 << 14) - self.timeouts.default)
        out = []
        for line in answer:
            match = re.match(r"^m-tq-layer-(\d{1,9})-\[(.*),(\d+)\]$", line)
            if match:
                try:
                    ticks = parse_uint(match.group(3), TICK_BITS)
                except ValueError:
                    raise self._malformed(cmd, answer, "ticks as 64-bit counts") from None
                out.append(Layer(int(match.group(1)), match.group(2), ticks))
        if not out or [layer.index for layer in out] != list(range(len(out))):
            raise self._malformed(cmd, answer, "m-tq-layer-<i>-[<op>,<ticks>] for i = 0..n-1")
        return tuple(out)

    def identity(self) -> Identity:
        """``tq-id``: which model (hash), runtime and board the firmware was built for."""
        cmd = "tq-id"
        try:
            answer = self.command(cmd)
        except ProtocolError as exc:
            if "Unknown command" in str(exc):
                raise ProtocolError(
                    f"the firmware on {self.port} is not tinyq firmware (it does not know tq-id)",
                    hint="flash the firmware tinyq built for this model (`tinyq flash`)",
                    port=self.port) from exc
            raise
        try:
            info = parse_kv(self._one(cmd, answer, "m-tq-id-", "m-tq-id-[model=...]"))
            if "db_offset" in info:
                parse_uint(info["db_offset"], 8)
            return Identity(model_id=info.pop("model"), runtime=info.pop("runtime", ""),
                            board=info.pop("board", ""), extra=info)
        except (KeyError, ValueError):
            raise self._malformed(cmd, answer, "m-tq-id-[model=<hash>,runtime=..,board=..] "
                                  "with db_offset=0..255") from None

    def exit_emulator(self, code: int = 0) -> None:
        """``tq-exit C``: ask firmware built for an emulator to end it (semihosting)."""
        self.command(f"tq-exit {int(code)}")

    def check_identity(self, model_id: str, runtime: str | None = None,
                       board: str | None = None) -> Identity:
        """Refuse firmware built for another model (or runtime, or board)."""
        ident = self.identity()
        # The firmware reports the first MODEL_ID_DIGITS hex digits of the sha256: all of
        # them must match (a shorter id, even a matching prefix, is another firmware's).
        want = model_id.lower()[:MODEL_ID_DIGITS]
        have = ident.model_id.lower()
        if len(want) < MODEL_ID_DIGITS or have != want:
            raise ProtocolError(
                f"wrong firmware on {self.port}: it was built for model {ident.model_id}, "
                f"expected {model_id[:12]}",
                hint="let `tinyq run MODEL --board B --port P` build and flash it "
                     "(drop --no-flash)",
                port=self.port, device_model=ident.model_id, expected_model=model_id)
        if runtime and ident.runtime and ident.runtime != runtime:
            raise ProtocolError(
                f"wrong firmware on {self.port}: it runs the {ident.runtime} runtime, "
                f"expected {runtime}",
                hint=f"flash firmware built with --runtime {runtime}", port=self.port)
        if board and ident.board and ident.board != board:
            raise ProtocolError(
                f"wrong firmware on {self.port}: it was built for board {ident.board}, "
                f"expected {board}",
                hint=f"flash firmware built with --board {board}", port=self.port)
        from tinyq.firmware.codegen.harness import MLPERF_FLOAT_SCORE

        # That firmware takes the runner's float32 input and answers one score: tinyq's
        # own runs (raw input bytes, every output) cannot use it.
        if ident.extra.get("mlperf") == MLPERF_FLOAT_SCORE:
            raise ProtocolError(
                f"the firmware on {self.port} was built with --mlperf-model "
                f"{MLPERF_FLOAT_SCORE} for the MLPerf runner: it takes float32 input and "
                "answers one anomaly score, not the model's outputs",
                hint="flash firmware built without --mlperf-model", port=self.port)
        return ident


__all__ = [
    "BootInfo", "Client", "Cycles", "DeviceError", "Identity", "InferResult", "Layer",
    "Memory", "Profile", "Timeouts", "answer_line_bound", "parse_kv", "parse_uint",
]
