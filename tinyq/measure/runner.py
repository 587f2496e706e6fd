"""``tinyq run``: build the firmware, run one model on a device, check it against TFLM.

Steps: generate + build (cached by the content hash of the rendered project),
open the device (QEMU/Renode, or a board's serial port before flashing it, so
no boot output is lost), wait for the firmware, check its identity (model
hash and runtime), send each input, run it, read the raw output bytes back and
compare them with the ``tflite-micro`` interpreter on the host (the oracle,
DESIGN.md section 3).

Counts: under QEMU ``-icount shift=0`` one guest instruction is 1 ns of virtual
time, so ticks × 1e9 / tick_hz are **instructions** (never milliseconds). On
hardware ticks × core_hz / tick_hz are **cycles** (DWT counts cycles; SysTick
runs at the core clock or a divider of it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyq.board_profile import Board
from tinyq.device import Device
from tinyq.device.flashing import FlashOptions
from tinyq.device.protocol import Client, Identity, Timeouts
from tinyq.errors import (
    BoardError,
    DataError,
    DeviceError,
    ModelError,
    ToolNotFoundError,
    UserInputError,
)
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Seed of the random input used when no data is given (reproducible runs).
RANDOM_INPUT_SEED = 0
#: Emulators ``run`` knows.
EMULATORS = ("qemu", "renode")
#: Most timed (and, separately, warm-up) inferences in one ``infer``. The firmware reads
#: the count as an int32 and the host waits INFER_TIMEOUT_PER_RUN_S per inference. 10^6
#: runs of the smallest models (hello_world: ~2,400 instructions each) take seconds in
#: QEMU, which tests use to keep an emulator busy; of a 10 ms model, almost 3 hours on a
#: board. 10^9 is a typo, not a benchmark: the median is stable long before.
MAX_RUNS = 1_000_000
#: Most random inputs ``run --samples`` makes. Each is a full round trip (send the input,
#: infer, read every output byte back, run TFLM on the host): about 0.1 s for a small model
#: in QEMU and seconds on a board at 115200 baud. For more, run a data file through
#: ``tinyq validate``, which can also resume.
MAX_RANDOM_SAMPLES = 1000


@dataclass(frozen=True)
class RunOptions:
    """Options of ``tinyq run`` beyond model, board and device."""

    runs: int = 1                       # timed inferences per input (median reported)
    warmup: int = 0                     # untimed inferences before them
    seed: int = RANDOM_INPUT_SEED       # random input seed when no inputs are given
    samples: int = 1                    # random inputs to try when no inputs are given
    flash: bool = True                  # on a board: flash the firmware first
    baud: int | None = None             # serial baud (default: the board profile's)
    flashing: FlashOptions = FlashOptions()  # probe, method, drive (tinyq.device.flashing)
    build: Any = None                   # firmware.compiling.BuildOptions, or None for defaults
    timeouts: Timeouts = field(default_factory=Timeouts)
    generate: Any = None                # firmware.codegen.GenerateOptions, or None for defaults


@dataclass(frozen=True)
class SampleResult:
    outputs_match: bool
    max_lsb_diff: int
    device_output: tuple[bytes, ...]
    expected_output: tuple[bytes, ...]


@dataclass(frozen=True)
class RunResult:
    board: str
    runtime: str
    device: str                         # the port or emulator that ran it
    emulated: bool
    model: str
    model_id: str                       # first 12 hex digits of the .tflite's sha256
    unit: str                           # "instructions" (emulator) or "cycles" (hardware)
    per_inference: int                  # median over the timed runs, in ``unit``
    ticks: tuple[int, ...]              # raw counter ticks of each timed run (first input)
    tick_hz: int
    counter: str
    core_hz: int                        # the board's core clock (cycles -> milliseconds)
    arena_bytes: int
    stack_peak: int
    static_ram: int
    outputs_match: bool                 # every sample byte-identical to TFLM
    max_lsb_diff: int                   # largest |device - TFLM| in output quanta
    samples: tuple[SampleResult, ...]
    input_source: str                   # where the inputs came from
    firmware: Any                       # firmware.compiling.Firmware (ELF, sizes, cache state)

    @property
    def instructions(self) -> int | None:
        return self.per_inference if self.unit == "instructions" else None

    @property
    def cycles(self) -> int | None:
        return self.per_inference if self.unit == "cycles" else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` record (``instructions`` under an emulator, ``cycles`` on hardware)."""
        from tinyq.records import device_name, stamp

        out: dict[str, Any] = {
            "board": self.board,
            "runtime": self.runtime,
            self.unit: self.per_inference,
            "unit": self.unit,
            "emulated": self.emulated,
            "ms": (None if self.emulated or not self.core_hz
                   else round(self.per_inference * 1000 / self.core_hz, 4)),
            "arena_bytes": self.arena_bytes,
            "stack_peak_bytes": self.stack_peak,
            "static_ram_bytes": self.static_ram,
            "outputs_match": self.outputs_match,
            "max_lsb_diff": self.max_lsb_diff,
            "samples": len(self.samples),
            "samples_matching": sum(s.outputs_match for s in self.samples),
            "ticks": list(self.ticks),
            "tick_hz": self.tick_hz,
            "counter": self.counter,
            "model": self.model,
            "model_id": self.model_id,
            "device": device_name(self.device),
            "input": self.input_source,
            "firmware": str(self.firmware.elf),
            "flash_bytes": self.firmware.flash_bytes,
            "code_bytes": self.firmware.code_bytes,
            "model_bytes": self.firmware.model_bytes,
        }
        return stamp("run", out)


# -- building -----------------------------------------------------------------------

def build_firmware(model_path: Path, board: Board, runtime: str, options: RunOptions,
                   progress: ProgressFn = null_progress):
    """Generate and build (firmware.compiling caches by the rendered project's content hash)."""
    from tinyq.firmware.compiling import BuildOptions, build

    return build(model_path, board, runtime=runtime, options=options.generate,
                 build_options=options.build or BuildOptions(), progress=progress)


# -- inputs and outputs -------------------------------------------------------------

@dataclass(frozen=True)
class _TensorSpec:
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


def _specs(tensors) -> tuple[_TensorSpec, ...]:
    out = []
    for t in tensors:
        scale = float(t.quant.scale[0]) if t.quant and t.quant.scale else 0.0
        zp = int(t.quant.zero_point[0]) if t.quant and t.quant.zero_point else 0
        out.append(_TensorSpec(tuple(int(s) for s in t.shape), t.np_dtype, scale, zp))
    return tuple(out)


def data_input_shape(model) -> tuple[int, ...] | None:
    """The per-sample shape data for ``model`` (an ``ir.Model``) must have: its input's
    shape without the batch dimension, for a one-input model (None for several inputs).
    Passed to :func:`tinyq.data.load_data`, so image folders load for every command."""
    if len(model.input_tensors) != 1:
        return None
    return tuple(int(d) for d in model.input_tensors[0].shape[1:])


def output_values(model) -> int:
    """How many values the outputs of ``model`` (an ``ir.Model``) hold together: what the
    firmware's results line carries (tinyq.device.protocol.Client.expect_outputs)."""
    return sum(math.prod(max(int(d), 1) for d in t.shape) for t in model.output_tensors)


def check_counts(runs: int, warmup: int, samples: int = 1) -> None:
    """Refuse run/warm-up/sample counts below 1 (0 warm-ups are fine) or over the caps."""
    if runs < 1 or warmup < 0 or samples < 1:
        raise UserInputError(f"runs and samples must be >= 1 and warmup >= 0 (got runs {runs}, "
                             f"warmup {warmup}, samples {samples})",
                             hint="e.g. --runs 5 --warmup 1")
    for what, value in (("--runs", runs), ("--warmup", warmup)):
        if value > MAX_RUNS:
            raise UserInputError(f"{what} {value:,} is over tinyq's limit of {MAX_RUNS:,} "
                                 "inferences in one go",
                                 hint=f"pass {what} {MAX_RUNS:,} or fewer: the median is "
                                      "stable long before that")
    if samples > MAX_RANDOM_SAMPLES:
        raise UserInputError(f"--samples {samples:,} is over tinyq's limit of "
                             f"{MAX_RANDOM_SAMPLES:,} random inputs (each is a round trip "
                             "to the device and a TFLM run on the host)",
                             hint=f"pass --samples {MAX_RANDOM_SAMPLES:,} or fewer, or run a "
                                  "data file with `tinyq validate`")


def load_target(model_path: str | os.PathLike[str], board: Board | str):
    """(path, Board, ir.Model) for a measuring command: the model must exist and be valid,
    the board must load, and the model's inputs must fit the board's RAM (checked before
    anything is built or any input is made)."""
    from tinyq import boards
    from tinyq.model.tflite_reader import read_model

    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model {path} not found", hint="pass the path of a .tflite file",
                         path=str(path))
    board_obj = board if isinstance(board, Board) else boards.load(board)
    model = read_model(path)
    check_input_size(model, board_obj, path.name)
    return path, board_obj, model


def check_input_size(model, board: Board, what: str) -> None:
    """Refuse a model whose inputs alone exceed the board's RAM, before any input is made.

    The full fit check runs when the firmware is built; this one costs nothing and comes
    before anything the size of the input is allocated on the host (a random input, TFLM).
    """
    from tinyq.errors import FitError

    ram = board.ram.size + sum(r.size for r in board.extra_ram)
    need = 0
    for tensor in model.input_tensors:
        need += math.prod(max(int(d), 0) for d in tensor.shape) * np.dtype(tensor.np_dtype).itemsize
    if need > ram:
        raise FitError(f"{what} does not fit {board.name}: its input alone is {need:,} bytes, "
                       f"the board has {ram:,} bytes of RAM",
                       hint="use a board with more RAM or a model with a smaller input",
                       board=board.name, bytes_over=need - ram)


def random_inputs(specs: Sequence[_TensorSpec], samples: int, seed: int) -> list[list[np.ndarray]]:
    """Reproducible random inputs covering each input type's whole range."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        sample = []
        for spec in specs:
            if np.issubdtype(spec.dtype, np.integer):
                info = np.iinfo(spec.dtype)
                sample.append(rng.integers(info.min, info.max, size=spec.shape, endpoint=True,
                                           dtype=spec.dtype))
            else:
                sample.append(rng.standard_normal(spec.shape).astype(spec.dtype))
        out.append(sample)
    return out


def _conform(value: np.ndarray, spec: _TensorSpec, where: str) -> np.ndarray:
    """One sample for one input tensor: quantize float data for an integer input."""
    arr = np.asarray(value)
    if arr.size != int(np.prod(spec.shape)):
        raise DataError(f"{where} has {arr.size} values, the model input needs "
                        f"{int(np.prod(spec.shape))} (shape {spec.shape})",
                        hint="pass data shaped like the model input")
    if np.issubdtype(arr.dtype, np.floating) and np.issubdtype(spec.dtype, np.integer):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{where} contains NaN or infinity", hint="clean the data")
        if spec.scale <= 0:
            raise DataError(f"{where} is float but the model input is {spec.dtype} without "
                            "a quantization scale", hint="pass integer data")
        info = np.iinfo(spec.dtype)
        arr = np.clip(np.round(arr / spec.scale) + spec.zero_point, info.min, info.max)
    elif np.issubdtype(arr.dtype, np.integer) and np.issubdtype(spec.dtype, np.integer):
        info = np.iinfo(spec.dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise DataError(f"{where} has values outside {spec.dtype}'s range",
                            hint=f"pass {spec.dtype} data (or float data to be quantized)")
    return arr.astype(spec.dtype).reshape(spec.shape)


def samples_from(inputs: Any, specs: Sequence[_TensorSpec]) -> list[list[np.ndarray]]:
    """Normalise ``inputs`` to a list of samples, each a list of one array per model input.

    Accepted: one array (one sample, or a batch whose first axis is samples) for a
    one-input model; a sequence of per-input arrays/batches; a list of samples.
    """
    if len(specs) == 1:
        arr = np.asarray(inputs)
        size = int(np.prod(specs[0].shape))
        if arr.size == size:
            return [[_conform(arr, specs[0], "the input")]]
        if arr.ndim >= 1 and arr.size == arr.shape[0] * size:
            return [[_conform(x, specs[0], f"input sample {i}")] for i, x in enumerate(arr)]
        raise DataError(f"the input data has shape {arr.shape}; the model input needs "
                        f"{specs[0].shape} per sample",
                        hint="pass data shaped like the model input")
    per_input = list(inputs)
    if len(per_input) != len(specs):
        raise DataError(f"the model has {len(specs)} inputs, the data {len(per_input)}",
                        hint="pass one array per model input")
    batches = [np.asarray(x) for x in per_input]
    counts = {b.size // int(np.prod(s.shape)) for b, s in zip(batches, specs, strict=True)}
    if len(counts) != 1:
        raise DataError("the model inputs' data hold different numbers of samples",
                        hint="pass the same number of samples for every input")
    n = counts.pop()
    return [[_conform(b.reshape(n, -1)[i], s, f"input {k} sample {i}")
             for k, (b, s) in enumerate(zip(batches, specs, strict=True))] for i in range(n)]


def lsb_diff(device: bytes, expected: bytes, dtype: np.dtype) -> int:
    """Largest difference in output quanta (float outputs: in units of the bit pattern)."""
    if len(device) != len(expected):
        return -1
    if np.issubdtype(dtype, np.floating):
        view = np.dtype(f"<i{dtype.itemsize}")
    else:
        view = np.dtype(dtype).newbyteorder("<")
    a = np.frombuffer(device, dtype=view).astype(np.int64)
    b = np.frombuffer(expected, dtype=view).astype(np.int64)
    return int(np.max(np.abs(a - b))) if a.size else 0


# -- running ------------------------------------------------------------------------

def open_device(board: Board, elf: Path, emulator: str | None, port: str | None,
                options: RunOptions) -> Device:
    """The device for ``board``: an emulator, or the serial port of a real board."""
    if emulator and port:
        raise UserInputError("choose --emulator or --port, not both",
                             hint="--emulator runs in an emulator, --port on a board")
    if emulator == "qemu":
        if not board.emulator.qemu_machine:
            raise BoardError(f"board {board.name} has no QEMU machine",
                             hint="run it on the board with --port, or pick an emulated board "
                                  "(`tinyq boards`)", board=board.name)
        from tinyq.device.qemu import QemuDevice
        return QemuDevice(elf, board.emulator.qemu_machine)
    if emulator == "renode":
        if not board.emulator.renode_platform:
            raise BoardError(f"board {board.name} has no Renode platform",
                             hint="use --emulator qemu or --port", board=board.name)
        from tinyq.device.renode import RenodeDevice, renode_uart
        return RenodeDevice(elf, board.emulator.renode_platform, renode_uart(board))
    if emulator:
        raise UserInputError(f"unknown emulator {emulator!r}",
                             hint=f"use one of {', '.join(EMULATORS)}")
    if not port:
        hint = ("pass --emulator qemu" if board.can_emulate
                else "pass --port with the board's serial port")
        raise UserInputError(f"no device given for board {board.name}", hint=hint)
    from tinyq.device.serial_port import SerialDevice
    return SerialDevice(port, baud=options.baud or board.uart.baud)


def _check_port(port: str, baud: int) -> None:
    """The serial port opens: it exists, is a character device, the user may open it and
    no other program holds it. Opened and closed at once, like twister opens the port
    before flashing; a board this resets is flashed and reset again later anyway."""
    import stat

    from tinyq.device.serial_port import SerialDevice, open_error

    if "://" not in port and os.name == "posix":   # a device path, not a pyserial URL
        try:
            mode = Path(port).stat().st_mode
        except OSError as exc:          # ENOENT: "not found"; EACCES: "permission denied"
            raise open_error(port, exc) from None
        if not stat.S_ISCHR(mode):
            raise DeviceError(f"{port} is not a serial port (not a character device)",
                              hint="pass the board's serial device, e.g. /dev/ttyACM0 (list "
                                   "ports with `python -m serial.tools.list_ports`)", port=port)
    device = SerialDevice(port, baud=baud)
    device.open()
    device.close()


def default_emulator(board: Board, emulator: str | None, port: str | None) -> str | None:
    """The emulator a session uses: the one asked for; QEMU for an emulator-only board."""
    if emulator is None and port is None and board.emulated_only and \
            board.emulator.qemu_machine:
        return "qemu"
    return emulator


def check_device(board: Board, elf: Path, emulator: str | None, port: str | None, *,
                 flash: bool = True, baud: int | None = None,
                 flashing: FlashOptions | None = None) -> None:
    """Before any build: the device can be reached. The emulator is installed (and models
    the board), or the serial port opens and the tool that flashes the board is installed."""
    import shutil

    from tinyq.device.emulator import EmulatorDevice, find_tool

    device = open_device(board, elf, default_emulator(board, emulator, port), port,
                         RunOptions(baud=baud))
    if isinstance(device, EmulatorDevice):
        try:
            find_tool(device.binary, device.install_hint)
        finally:
            device.close()      # never started: this frees what its constructor made
        return
    if port is None:
        return
    _check_port(port, baud or board.uart.baud)
    if not flash:
        return
    from tinyq.device.flashing import PyOcdBackend, backend_for

    flashing = flashing or FlashOptions()
    backend = backend_for(board, flashing.method)     # refuses a method the board cannot take
    backend.plan(elf, board, flashing)                # and an emulated board: nothing to flash
    if isinstance(backend, PyOcdBackend):
        import importlib.util

        if importlib.util.find_spec("pyocd") is None:
            raise ToolNotFoundError("pyOCD is not installed (needed to flash "
                                    f"{board.name})", hint="pip install 'tinyq[flash]', or "
                                    "flash it yourself and pass --no-flash", tool="pyocd")
    for argv in backend.commands(elf, board, flashing, Path(".")):
        if shutil.which(argv[0]) is None:
            raise ToolNotFoundError(f"{argv[0]} not found (needed to flash {board.name})",
                                    hint="install it, or flash the board yourself and pass "
                                         "--no-flash", tool=argv[0])


def _units(ticks: Sequence[int], tick_hz: int, emulated: bool, board: Board) -> tuple[str, int]:
    median = statistics.median(ticks)
    if emulated:
        return "instructions", round(median * 1e9 / tick_hz)
    return "cycles", round(median * board.clock_hz / tick_hz)


def run_on_device(client: Client, model_bytes: bytes, board: Board, runtime: str,
                  samples: list[list[np.ndarray]], options: RunOptions,
                  progress: ProgressFn = null_progress, model_sha256: str | None = None,
                  model_name: str = "the model"
                  ) -> tuple[Identity, list[SampleResult], tuple[int, ...], int, str, Any]:
    """Identity check, then every sample: send, infer, read back, compare with TFLM."""
    from tinyq.model.interpreters import open_interpreter
    from tinyq.model.tflite_reader import read_model_bytes

    sha = model_sha256 or hashlib.sha256(model_bytes).hexdigest()
    ident = client.check_identity(sha, runtime=runtime, board=board.name)
    offset = int(ident.extra.get("db_offset", "0") or 0)
    client.expect_outputs(output_values(read_model_bytes(model_bytes)))
    oracle = open_interpreter(model_bytes, "tflm", name=model_name)
    results: list[SampleResult] = []
    ticks: tuple[int, ...] = ()
    tick_hz = 0
    counter = ""
    for n, sample in enumerate(samples):
        payload = b"".join(np.ascontiguousarray(x).tobytes() for x in sample)
        if offset:
            payload = bytes((b - offset) & 0xFF for b in payload)
        client.load_input(payload)
        first = n == 0
        client.infer(options.runs if first else 1, options.warmup if first else 0)
        device_out = client.raw_output()
        if first:
            cycles = client.cycles()
            ticks, tick_hz, counter = cycles.ticks, cycles.clock_hz, cycles.counter
        reference = oracle.invoke(sample)
        expected = tuple(np.ascontiguousarray(o).tobytes() for o in reference)
        if len(device_out) != len(expected):
            raise DeviceError(
                f"{client.port} returned {len(device_out)} outputs, the model has "
                f"{len(expected)}", hint="the firmware was built for another model: rebuild it",
                port=client.port)
        diffs = [lsb_diff(d, e, r.dtype)
                 for d, e, r in zip(device_out, expected, reference, strict=True)]
        if any(d < 0 for d in diffs):
            raise DeviceError(f"{client.port} returned outputs of the wrong size",
                              hint="the firmware was built for another model: rebuild it",
                              port=client.port)
        results.append(SampleResult(outputs_match=device_out == expected,
                                    max_lsb_diff=max(diffs, default=0),
                                    device_output=device_out, expected_output=expected))
        progress(ProgressEvent("run", "comparing outputs with TFLM", done=n + 1,
                               total=len(samples)))
    mem = client.mem()
    return ident, results, ticks, tick_hz, counter, mem


@contextlib.contextmanager
def session(board: Board, elf: Path, emulator: str | None = None, port: str | None = None,
            options: RunOptions | None = None,
            progress: ProgressFn = null_progress) -> Iterator[Client]:
    """One device session for ``elf``: open (flash a board first), wait for the firmware.

    Yields a ready :class:`Client`; the device is closed (an emulator reaped) on exit.
    An emulator-only board defaults to QEMU. Used by ``bench``, ``validate`` and
    ``deploy`` so several stages share one boot.
    """
    options = options or RunOptions()
    emulator = default_emulator(board, emulator, port)
    device = open_device(board, Path(elf), emulator, port, options)
    with device:
        if not device.is_emulated and options.flash:
            from tinyq.device.flashing import flash
            progress(ProgressEvent("flash", f"flashing {board.name}"))
            flash(Path(elf), board, options.flashing, progress=progress)
        progress(ProgressEvent("run", f"waiting for the firmware on {device.port}"))
        client = Client(device, timeouts=options.timeouts)
        client.wait_ready()
        yield client


@contextlib.contextmanager
def built_session(model_path: Path, board: Board, runtime: str, emulator: str | None,
                  port: str | None, options: Any,
                  progress: ProgressFn = null_progress) -> Iterator[tuple[Any, Client]]:
    """What run, bench and validate do before measuring: check that the device can be
    reached (before minutes of building), build the model for the board (cached), and
    open one session on it. Yields ``(firmware, client)``.

    ``options``: a RunOptions, BenchOptions or ValidateOptions (their ``flash``, ``baud``,
    ``flashing``, ``timeouts``, ``generate`` and ``build`` fields).
    """
    check_device(board, Path("app.elf"), emulator, port, flash=options.flash,
                 baud=options.baud, flashing=options.flashing)
    progress(ProgressEvent("build", f"building {model_path.name} for {board.name} ({runtime})"))
    firmware = build_firmware(model_path, board, runtime, options, progress)
    run_options = RunOptions(flash=options.flash, baud=options.baud, timeouts=options.timeouts,
                             flashing=options.flashing)
    with session(board, firmware.elf, emulator, port, run_options, progress) as client:
        yield firmware, client


def run(model_path: str | os.PathLike[str], board: Board | str, emulator: str | None = None,
        port: str | None = None, inputs: Any = None, runtime: str = "native",
        options: RunOptions | None = None, progress: ProgressFn = null_progress) -> RunResult:
    """Build ``model_path`` for ``board``, run it on the device, compare with TFLM.

    Example::

        result = tinyq.run("hello_world_int8.tflite", "mps2-an386", emulator="qemu")
        print(result.per_inference, result.unit, "identical to TFLM:", result.outputs_match)
    """
    options = options or RunOptions()
    check_counts(options.runs, options.warmup, options.samples)
    path, board_obj, model = load_target(model_path, board)
    model_bytes = path.read_bytes()
    specs = _specs(model.input_tensors)
    if inputs is None:
        samples = random_inputs(specs, options.samples, options.seed)
        source = f"random (seed {options.seed}, {options.samples} sample(s))"
    else:
        samples = samples_from(inputs, specs)
        source = f"given data ({len(samples)} sample(s))"
    if not samples:
        raise DataError("the input data holds no samples", hint="pass at least one sample")

    with built_session(path, board_obj, runtime, emulator, port, options,
                       progress) as (firmware, client):
        device = client.device
        ident, results, ticks, tick_hz, counter, mem = run_on_device(
            client, model_bytes, board_obj, runtime, samples, options, progress,
            model_sha256=model.sha256 or None, model_name=str(path))
    unit, per_inference = _units(ticks, tick_hz, device.is_emulated, board_obj)
    return RunResult(
        board=board_obj.name, runtime=runtime, device=device.port, emulated=device.is_emulated,
        model=str(path), model_id=ident.model_id, unit=unit, per_inference=per_inference,
        ticks=ticks, tick_hz=tick_hz, counter=counter, core_hz=board_obj.clock_hz,
        arena_bytes=mem.arena,
        stack_peak=mem.stack_peak, static_ram=int(mem.extra.get("static", 0)),
        outputs_match=all(s.outputs_match for s in results),
        max_lsb_diff=max(s.max_lsb_diff for s in results), samples=tuple(results),
        input_source=source, firmware=firmware)


__all__ = ["MAX_RANDOM_SAMPLES", "MAX_RUNS", "RunOptions", "RunResult", "SampleResult",
           "built_session", "check_counts", "check_device", "check_input_size",
           "data_input_shape", "output_values", "run", "run_on_device", "session"]
