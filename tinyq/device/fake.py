"""A scripted fake device: a Python model of the firmware's protocol with injectable faults.

It implements the same :class:`tinyq.device.Device` interface as a board or
QEMU, answers the MLPerf Tiny commands and tinyq's own exactly as the firmware
harness does, and can misbehave on cue (:class:`Fault`), so the protocol
client's error paths are tested in milliseconds.

Example::

    fw = FakeFirmware(input_sizes=(4,), compute=lambda ins: [ins[0][::-1]])
    with FakeDevice(fw, faults=[Fault("reset", command="infer")]) as dev:
        ...
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tinyq.device import QUOTED_CHARS, Device, line_too_long
from tinyq.errors import DeviceError, DeviceTimeoutError

#: Kinds of fault the fake can inject.
FAULT_KINDS = (
    "silent",      # answer nothing (at boot: the device is dead)
    "no_ready",    # answer, but leave out m-ready
    "truncate",    # cut the answer's last line in half, then go silent
    "garbage",     # binary junk (a wrong baud rate) before the answer
    "stray",       # many printable non-protocol lines before the answer
    "reset",       # start answering, then reboot (banner again)
    "disconnect",  # the link drops (cable pulled, emulator died)
    "error",       # answer e-[...] (and m-ready)
    "crash",       # report a HardFault (e-[...]), then the link drops (QEMU exits)
)


@dataclass(frozen=True)
class Fault:
    """Misbehave once, on the ``after``+1-th command whose first word is ``command``.

    ``command=None`` means at boot (when the device is opened).
    """

    kind: str
    command: str | None = None
    after: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


def _default_compute(inputs: Sequence[bytes]) -> list[bytes]:
    return [bytes(reversed(inputs[0]))]


@dataclass
class FakeFirmware:
    """What the fake firmware was 'built' with."""

    name: str = "tinyq"
    firmware: str = "tinyq-fake"
    mlperf_model: str = "ic01"
    model_id: str = "0123456789ab"
    runtime: str = "native"
    board: str = "fake"
    input_sizes: tuple[int, ...] = (4,)
    compute: Callable[[Sequence[bytes]], list[bytes]] = _default_compute
    output_scale: float = 1 / 256
    output_zero_point: int = -128
    ticks_per_inference: int = 1000
    clock_hz: int = 25_000_000
    counter: str = "systick"
    arena_bytes: int = 1024
    stack_peak: int = 600
    stack_size: int = 8192
    layers: tuple[tuple[str, int], ...] = (("CONV_2D", 700), ("SOFTMAX", 300))
    max_db_bytes: int = 1 << 16
    mode: str = "performance"
    tinyq_commands: bool = True     # False: plain MLPerf firmware (no tq-* commands)
    db_offset: int = 0              # added (mod 256) to db bytes when copied to the input
    init_error: str = ""            # tq_init() failure reported at boot
    extra_boot_lines: tuple[str, ...] = field(default_factory=tuple)


class FakeDevice(Device):
    """The firmware harness, modelled in Python, behind the Device interface."""

    def __init__(self, firmware: FakeFirmware | None = None, faults: Iterable[Fault] = (),
                 port: str = "fake0", emulated: bool = False,
                 banner_on_open: bool = True) -> None:
        self.fw = firmware or FakeFirmware()
        self.faults = list(faults)
        self.port = port
        self.is_emulated = emulated
        self.banner_on_open = banner_on_open   # False: the board booted before the port opened
        self.is_open = False
        self.closed_count = 0
        self.commands: list[str] = []
        self.timeouts_seen: list[float] = []
        self._out: deque[str] = deque()
        self._partial = ""
        self._pending = ""
        self._dead = False
        self._silent_forever = False
        self._exit_after_ready = False
        self._seen: dict[str | None, int] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        self._db = bytearray()
        self._db_size = 0
        self._outputs: list[bytes] = []
        self._results: list[float] = []
        self._ticks: list[int] = []

    # -- Device interface ----------------------------------------------------

    def open(self) -> None:
        if self.is_open:
            return
        self.is_open = True
        fault = self._fault_for(None)
        if fault is not None and fault.kind == "silent":
            self._silent_forever = True
            return
        if fault is not None and fault.kind == "disconnect":
            self._dead = True
            return
        if fault is not None and fault.kind == "garbage":
            self._out.append("\ufffd\x00\ufffd\ufffd")
        self._boot()
        if not self.banner_on_open:
            self._out.clear()

    def _boot(self) -> None:
        self._reset_state()
        init = [f"e-[tq_init failed: {self.fw.init_error}]"] if self.fw.init_error else []
        self._out.extend([f"m-timestamp-mode-{self.fw.mode}", "m-lap-us-0",
                          *self.fw.extra_boot_lines, *init, "m-init-done", "m-ready"])

    def readline(self, timeout: float) -> str:
        if self._out and self.is_open:      # lines already on the wire arrive even if it died
            self.timeouts_seen.append(timeout)
            line = self._out.popleft()
            if len(line) + 2 > self.max_line_bytes:     # + "\r\n", as a real link sends it
                raise line_too_long(self.port, line[:QUOTED_CHARS], self.max_line_bytes)
            return line
        self._check()
        self.timeouts_seen.append(timeout)
        time.sleep(max(0.0, timeout))   # a silent device really makes the host wait
        self._check()
        raise DeviceTimeoutError(f"no complete line from {self.port} within {timeout:g} s",
                                 port=self.port, partial=self._partial)

    def write(self, data: bytes) -> None:
        self._check()
        self._pending += bytes(data).decode("ascii", "replace")
        while "%" in self._pending:
            cmd, self._pending = self._pending.split("%", 1)
            self._handle(cmd.strip())

    def close(self) -> None:
        if self.is_open:
            self.closed_count += 1
        self.is_open = False

    def _check(self) -> None:
        if not self.is_open:
            raise DeviceError(f"{self.port} is not open", hint="open the device first",
                              port=self.port)
        if self._dead:
            raise DeviceError(f"{self.port} disconnected (device reports readiness to read "
                              "but returned no data)", hint=self.disconnect_hint, port=self.port)

    # -- faults ----------------------------------------------------------------

    def _fault_for(self, verb: str | None) -> Fault | None:
        count = self._seen.get(verb, 0)
        self._seen[verb] = count + 1
        for fault in self.faults:
            if fault.command == verb and fault.after == count:
                return fault
        return None

    # -- the firmware ----------------------------------------------------------

    def _handle(self, cmd: str) -> None:
        self.commands.append(cmd)
        if self._silent_forever:
            return
        words = cmd.split()
        verb = words[0] if words else ""
        fault = self._fault_for(verb)
        answer = self._answer(words)
        if fault is None:
            self._out.extend([*answer, "m-ready"])
            self._dead = self._dead or self._exit_after_ready
            return
        kind = fault.kind
        if kind == "silent":
            return
        if kind == "no_ready":
            self._out.extend(answer)
        elif kind == "truncate":
            full = answer or ["m-ready"]
            self._out.extend(full[:-1])
            self._partial = full[-1][: max(1, len(full[-1]) // 2)]
        elif kind == "garbage":
            self._out.extend(["\ufffd\ufffd\x13\ufffd", *answer, "m-ready"])
        elif kind == "stray":
            self._out.extend([f"debug line {i}" for i in range(100)] + [*answer, "m-ready"])
        elif kind == "reset":
            self._out.extend(answer[:1])
            self._boot()
        elif kind == "disconnect":
            self._dead = True
        elif kind == "crash":
            self._out.extend([*answer[:1], "e-[HardFault pc=0x00000456 lr=0x00000123]"])
            self._dead = True
        elif kind == "error":
            self._out.extend(["e-[fake failure]", "m-ready"])

    def _answer(self, words: list[str]) -> list[str]:
        fw = self.fw
        verb = words[0] if words else ""
        if verb == "":
            return []
        if verb == "name":
            return [f"m-name-dut-[{fw.name}]"]
        if verb == "profile":
            return [f"m-profile-[{fw.firmware}]", f"m-model-[{fw.mlperf_model}]"]
        if verb == "timestamp":
            return ["m-lap-us-0"]
        if verb == "db":
            return self._db_command(words[1:])
        if verb == "infer":
            return self._infer(words[1:])
        if verb == "results":
            return [self._results_line()] if self._outputs else self._no_results()
        if verb.startswith("tq-") and not fw.tinyq_commands:
            return [f"e-[Unknown command: {verb}]"]
        if verb == "tq-id":
            return [f"m-tq-id-[model={fw.model_id},runtime={fw.runtime},board={fw.board},"
                    f"tinyq=0.1.0,counter={fw.counter},clock_hz={fw.clock_hz},"
                    f"core_hz={fw.clock_hz},db_bytes={fw.max_db_bytes},"
                    f"db_offset={fw.db_offset},mlperf={fw.mlperf_model}]"]
        if verb == "tq-out":
            if not self._outputs:
                return self._no_results()
            return [f"m-tq-out-{i}-[{out[k:k + 64].hex()}]"
                    for i, out in enumerate(self._outputs)
                    for k in range(0, max(1, len(out)), 64)]
        if verb == "tq-cycles":
            ticks = ",".join(str(t) for t in self._ticks)
            return [f"m-tq-cycles-[counter={fw.counter},clock_hz={fw.clock_hz},"
                    f"runs={len(self._ticks)},recorded={len(self._ticks)},"
                    f"total={sum(self._ticks)}]", f"m-tq-ticks-[{ticks}]"]
        if verb == "tq-mem":
            return [f"m-tq-mem-[arena={fw.arena_bytes},arena_section={fw.arena_bytes},"
                    f"stack_peak={fw.stack_peak},stack_size={fw.stack_size},data=8,bss=100,"
                    "static=108]"]
        if verb == "tq-layers":
            error = self._input_error()
            if error:
                return error
            self._run_model()
            return ([f"m-tq-layers-[layers={len(fw.layers)},counter={fw.counter},"
                     f"clock_hz={fw.clock_hz}]"]
                    + [f"m-tq-layer-{i}-[{name},{ticks}]"
                       for i, (name, ticks) in enumerate(fw.layers)])
        if verb == "tq-exit":
            self._exit_after_ready = True
            return []
        return [f"e-[Unknown command: {verb}]"]

    @staticmethod
    def _no_results() -> list[str]:
        return ["e-[No results: run infer first]"]

    def _db_command(self, args: list[str]) -> list[str]:
        if not args:
            return ["e-[Command 'db' requires a subcommand]"]
        if args[0] == "load":
            if len(args) < 2:
                return ["e-[Command 'db load' requires the # of bytes]"]
            size = int(args[1]) if args[1].isdigit() else 0
            if size == 0:
                return ["e-[Command 'db load' must be >0 bytes]"]
            if size > self.fw.max_db_bytes:
                self._db_size = 0
                return [f"e-[Supplied buffer size {size} exceeds maximum of "
                        f"{self.fw.max_db_bytes}]"]
            self._db_size, self._db = size, bytearray()
            return [f"m-[Expecting {size} bytes]"]
        if args[0] == "print":
            return ["m-buffer-" + "-".join(f"{b:02x}" for b in self._db[k:k + 8])
                    for k in range(0, self._db_size, 8)]
        digits = args[0]
        if len(digits) % 2:
            return ["e-[Insufficent number of hex digits]"]
        if self._db_size == 0:
            return ["e-[Command 'db load N' must come first]"]
        for i in range(0, len(digits), 2):
            if len(self._db) == self._db_size:
                break
            try:
                self._db.append(int(digits[i:i + 2], 16))
            except ValueError:
                return [f"e-[Invalid hex digit '{digits[i:i + 2]}']"]
            if len(self._db) == self._db_size:
                return ["m-load-done"]
        return []

    def _input_error(self) -> list[str]:
        need = sum(self.fw.input_sizes)
        if len(self._db) != need:
            return [f"e-[Input db has {len(self._db)} bytes, expected {need}]"]
        return []

    def _run_model(self) -> None:
        inputs, pos = [], 0
        for size in self.fw.input_sizes:
            inputs.append(bytes((b + self.fw.db_offset) & 0xFF
                                for b in self._db[pos:pos + size]))
            pos += size
        self._outputs = [bytes(o) for o in self.fw.compute(inputs)]
        q = self.fw
        values = [(b - 256 if b > 127 else b) for out in self._outputs for b in out]
        self._results = [(v - q.output_zero_point) * q.output_scale for v in values]

    def _infer(self, args: list[str]) -> list[str]:
        n = int(args[0]) if args else 1
        w = int(args[1]) if len(args) > 1 else 10
        if n <= 0:
            return ["e-[Inference iterations must be >0]"]
        if w < 0:
            return ["e-[Inference warmup must be >=0]"]
        error = self._input_error()
        if error:
            return error
        self._run_model()
        q = self.fw
        self._ticks = [q.ticks_per_inference] * n
        t1 = int(n * q.ticks_per_inference * 1e6 / q.clock_hz)
        return [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}", "m-lap-us-0",
                f"m-lap-us-{t1}", "m-infer-done", self._results_line()]

    def _results_line(self) -> str:
        return "m-results-[" + ",".join(f"{v:0.3f}" for v in self._results) + "]"
