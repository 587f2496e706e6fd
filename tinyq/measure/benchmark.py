"""``tinyq bench``: how fast and how big one model is on one device.

Measures, on a board over serial or in an emulator:

* **latency** per inference from the device's counter over ``runs`` timed
  inferences after ``warmup`` untimed ones: median, min, max and p95. Under an
  emulator (QEMU ``-icount shift=0``: 1 instruction = 1 ns of virtual time) the
  unit is **instructions** (ticks x 1e9 / counter clock), never milliseconds; on
  a real board it is **cycles** (ticks x core clock / counter clock) and the
  milliseconds at the profile's core clock;
* **RAM**: static (.data + .bss), the stack high-water mark (painted at boot),
  the arena the runtime uses, their total beside the board's RAM;
* **flash**: code (runtime, harness, glue), the model's constants, the total,
  beside the board's flash (sizes from the ELF, :mod:`tinyq.firmware.compiling`);
* optionally the **per-layer profile**: counts per op (one extra inference with
  the layer hook on, so timed runs carry no hook cost), share of the total and
  MACs per cycle/instruction (MACs from :mod:`tinyq.analyze`);
* the **output check**: the device's raw output for the benchmark input against
  the ``tflite-micro`` interpreter (identical, or the largest LSB difference).

Building, the device session and the TFLM comparison are :mod:`tinyq.firmware.compiling` and
:mod:`tinyq.measure.runner`; this module adds the statistics and the record.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyq.board_profile import Board
from tinyq.device.flashing import FlashOptions
from tinyq.device.protocol import Client, Layer, Timeouts
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Default timed inferences (the README's benchmark tables report the median of 5).
DEFAULT_RUNS = 5
#: Default untimed inferences before them (caches, first-call effects on boards).
DEFAULT_WARMUP = 1
#: The upper percentile reported beside the median.
PERCENTILE = 95
#: Seed of the random benchmark input when none is given (reproducible runs).
DEFAULT_SEED = 0


@dataclass(frozen=True)
class BenchOptions:
    """Options of ``tinyq bench`` beyond model, board and device."""

    runs: int = DEFAULT_RUNS            # timed inferences
    warmup: int = DEFAULT_WARMUP        # untimed inferences before them
    per_layer: bool = False             # also profile each op (one extra inference)
    seed: int = DEFAULT_SEED            # random benchmark input when no input is given
    flash: bool = True                  # on a board: flash the firmware first
    baud: int | None = None             # serial baud (default: the board profile's)
    flashing: FlashOptions = FlashOptions()  # probe, method, drive (tinyq.device.flashing)
    build: Any = None                   # tinyq.firmware.compiling.BuildOptions (None: defaults)
    generate: Any = None                # tinyq.firmware.codegen.GenerateOptions (None: defaults)
    timeouts: Timeouts = field(default_factory=Timeouts)

    def check(self) -> None:
        from tinyq.measure.runner import check_counts

        check_counts(self.runs, self.warmup)


@dataclass(frozen=True)
class Latency:
    """Per-inference counts in ``unit`` over the timed runs."""

    unit: str                  # "instructions" (emulator) | "cycles" (hardware)
    median: int
    min: int
    max: int
    p95: int
    values: tuple[int, ...]    # each recorded run, in ``unit``
    runs: int                  # timed runs asked for
    warmup: int
    ticks: tuple[int, ...]     # the raw counter ticks the device recorded
    tick_hz: int               # the counter's clock
    counter: str               # systick | dwt
    core_hz: int               # the board's core clock (cycles -> ms)
    emulated: bool

    def ms(self, value: int) -> float | None:
        """Milliseconds at the core clock; None under an emulator (counts are instructions)."""
        if self.emulated or not self.core_hz:
            return None
        return value * 1000 / self.core_hz

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit, "median": self.median, "min": self.min, "max": self.max,
            "p95": self.p95, "runs": self.runs, "recorded": len(self.values),
            "warmup": self.warmup, "values": list(self.values), "ticks": list(self.ticks),
            "tick_hz": self.tick_hz, "counter": self.counter, "emulated": self.emulated,
        }
        if not self.emulated:
            out["ms"] = round(self.ms(self.median) or 0.0, 4)
            out["ms_min"] = round(self.ms(self.min) or 0.0, 4)
            out["ms_max"] = round(self.ms(self.max) or 0.0, 4)
            out["ms_p95"] = round(self.ms(self.p95) or 0.0, 4)
            out["core_hz"] = self.core_hz
        else:
            out["note"] = ("emulator instruction counts (QEMU icount: 1 instruction = 1 ns of "
                           "virtual time), not cycles or time on a real core")
        return out


@dataclass(frozen=True)
class RamUsage:
    static: int                # .data + .bss (the arena section excluded)
    stack_peak: int            # stack high-water mark since boot
    arena: int                 # arena bytes the runtime uses
    available: int             # the board's RAM
    data: int = 0
    bss: int = 0
    stack_reserved: int = 0    # stack the linker script reserves
    arena_reserved: int = 0    # the arena section's size
    arena_region: str = "ram"

    @property
    def total(self) -> int:
        """Peak RAM in use: static + stack high-water mark + arena."""
        return self.static + self.stack_peak + self.arena

    def to_dict(self) -> dict[str, Any]:
        return {"static": self.static, "stack_peak": self.stack_peak, "arena": self.arena,
                "total": self.total, "available": self.available, "data": self.data,
                "bss": self.bss, "stack_reserved": self.stack_reserved,
                "arena_reserved": self.arena_reserved, "arena_region": self.arena_region}


@dataclass(frozen=True)
class FlashUsage:
    code: int                  # runtime + harness + board glue + libc
    model: int                 # the model's constants (weights, biases, parameters)
    available: int             # the board's flash

    @property
    def total(self) -> int:
        return self.code + self.model

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "model": self.model, "total": self.total,
                "available": self.available}


@dataclass(frozen=True)
class LayerProfile:
    index: int
    op: str
    count: int                 # in the latency unit
    share: float               # of the summed layer counts
    macs: int

    @property
    def macs_per_count(self) -> float | None:
        return self.macs / self.count if self.count and self.macs else None

    def to_dict(self, unit: str) -> dict[str, Any]:
        per = self.macs_per_count
        return {"index": self.index, "op": self.op, unit: self.count,
                "share": round(self.share, 6), "macs": self.macs,
                f"macs_per_{unit[:-1]}": round(per, 4) if per is not None else None}


@dataclass(frozen=True)
class BenchResult:
    model: str
    model_id: str
    board: str
    runtime: str
    device: str
    emulated: bool
    input_source: str
    latency: Latency
    ram: RamUsage
    flash: FlashUsage
    layers: tuple[LayerProfile, ...] | None
    macs: int
    outputs_match: bool
    max_lsb_diff: int
    firmware: str              # the ELF

    @property
    def unit(self) -> str:
        return self.latency.unit

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` record."""
        from tinyq.records import device_name, stamp

        unit = self.latency.unit
        per = self.macs / self.latency.median if self.latency.median else None
        return stamp("bench", {
            "model": self.model,
            "model_id": self.model_id,
            "board": self.board,
            "runtime": self.runtime,
            "device": device_name(self.device),
            "emulated": self.emulated,
            "input": self.input_source,
            "latency": self.latency.to_dict(),
            "ram": self.ram.to_dict(),
            "flash": self.flash.to_dict(),
            "macs": self.macs,
            f"macs_per_{unit[:-1]}": round(per, 4) if per is not None else None,
            "layers": ([layer.to_dict(unit) for layer in self.layers]
                       if self.layers is not None else None),
            "outputs_match": self.outputs_match,
            "max_lsb_diff": self.max_lsb_diff,
            "firmware": self.firmware,
        })


# -- statistics ---------------------------------------------------------------------

def percentile(values: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile (always one of the measured values)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def unit_for(emulated: bool) -> str:
    return "instructions" if emulated else "cycles"


def ticks_to_counts(ticks: Sequence[int], tick_hz: int, emulated: bool,
                    core_hz: int) -> tuple[int, ...]:
    """Counter ticks -> instructions (emulator: 1e9 per second of virtual time) or cycles."""
    if tick_hz <= 0:
        raise ValueError(f"counter clock must be positive, got {tick_hz}")
    factor = 1e9 / tick_hz if emulated else core_hz / tick_hz
    return tuple(round(t * factor) for t in ticks)


def latency_from_ticks(ticks: Sequence[int], tick_hz: int, counter: str, emulated: bool,
                       core_hz: int, runs: int, warmup: int) -> Latency:
    """Median/min/max/p95 of the recorded runs in the right unit."""
    values = ticks_to_counts(ticks, tick_hz, emulated, core_hz)
    if not values:
        raise ValueError("no timed runs were recorded")
    return Latency(unit=unit_for(emulated), median=round(statistics.median(values)),
                   min=min(values), max=max(values), p95=percentile(values, PERCENTILE),
                   values=values, runs=runs, warmup=warmup, ticks=tuple(ticks),
                   tick_hz=tick_hz, counter=counter, core_hz=core_hz, emulated=emulated)


def layer_profile(layers: Sequence[Layer], macs: Sequence[int], tick_hz: int, emulated: bool,
                  core_hz: int) -> tuple[LayerProfile, ...]:
    """Per-op counts in the latency unit, share of the total, MACs (by op index)."""
    counts = ticks_to_counts([layer.ticks for layer in layers], tick_hz, emulated, core_hz)
    total = sum(counts)
    return tuple(LayerProfile(index=layer.index, op=layer.name, count=count,
                              share=count / total if total else 0.0,
                              macs=macs[layer.index] if layer.index < len(macs) else 0)
                 for layer, count in zip(layers, counts, strict=True))


def ram_usage(mem, firmware) -> RamUsage:
    """RAM from the device's ``tq-mem`` (static, stack, arena) and the ELF (budget)."""
    data = int(mem.extra.get("data", firmware.data_bytes))
    bss = int(mem.extra.get("bss", firmware.bss_bytes))
    static = int(mem.extra.get("static", data + bss))
    return RamUsage(static=static, stack_peak=mem.stack_peak, arena=mem.arena,
                    available=firmware.ram_available, data=data, bss=bss,
                    stack_reserved=mem.stack_size,
                    arena_reserved=int(mem.extra.get("arena_section", firmware.arena_bytes)),
                    arena_region=firmware.arena_region)


def flash_usage(firmware) -> FlashUsage:
    return FlashUsage(code=firmware.code_bytes, model=firmware.model_bytes,
                      available=firmware.flash_available)


# -- running ------------------------------------------------------------------------

def _benchmark_input(model, inputs: Any, seed: int) -> tuple[list, str]:
    from tinyq.measure.runner import _specs, random_inputs, samples_from

    specs = _specs(model.input_tensors)
    if inputs is None:
        return random_inputs(specs, 1, seed)[0], f"random (seed {seed})"
    samples = samples_from(inputs, specs)
    if not samples:
        from tinyq.errors import DataError
        raise DataError("the input data holds no samples", hint="pass at least one sample")
    return samples[0], "given data (first sample)"


def bench_on_device(client: Client, model_path: str | os.PathLike[str], board: Board,
                    runtime: str, firmware, options: BenchOptions | None = None,
                    inputs: Any = None, progress: ProgressFn = null_progress) -> BenchResult:
    """Benchmark on an open, ready device running ``firmware`` (built for ``model_path``)."""
    from tinyq.analyze import op_macs
    from tinyq.measure.runner import RunOptions, run_on_device
    from tinyq.model.tflite_reader import read_model

    options = options or BenchOptions()
    options.check()
    path = Path(model_path)
    model = read_model(path)
    sample, source = _benchmark_input(model, inputs, options.seed)
    progress(ProgressEvent("bench", f"{options.runs} timed run(s) after {options.warmup} "
                                    f"warm-up(s) on {client.port}"))
    ident, results, ticks, tick_hz, counter, mem = run_on_device(
        client, path.read_bytes(), board, runtime, [sample],
        RunOptions(runs=options.runs, warmup=options.warmup, timeouts=options.timeouts),
        model_sha256=model.sha256 or None, model_name=str(path))
    emulated = client.device.is_emulated
    latency = latency_from_ticks(ticks, tick_hz, counter, emulated, board.clock_hz,
                                 options.runs, options.warmup)
    macs = [op_macs(model, op) for op in model.operators]
    layers = None
    if options.per_layer:
        progress(ProgressEvent("bench", "profiling each layer (one more inference)"))
        raw = client.layers()
        if len(raw) != len(model.operators):
            log.warning("the device reported %d layers, the model has %d ops: MACs are "
                        "matched by index", len(raw), len(model.operators))
        layers = layer_profile(raw, macs, tick_hz, emulated, board.clock_hz)
    return BenchResult(
        model=str(path), model_id=ident.model_id, board=board.name, runtime=runtime,
        device=client.port, emulated=emulated, input_source=source, latency=latency,
        ram=ram_usage(mem, firmware), flash=flash_usage(firmware), layers=layers,
        macs=sum(macs), outputs_match=all(r.outputs_match for r in results),
        max_lsb_diff=max(r.max_lsb_diff for r in results), firmware=str(firmware.elf))


def bench(model_path: str | os.PathLike[str], board: Board | str, emulator: str | None = None,
          port: str | None = None, runtime: str = "native", inputs: Any = None,
          options: BenchOptions | None = None,
          progress: ProgressFn = null_progress) -> BenchResult:
    """Build ``model_path`` for ``board`` (cached), run it on the device, measure it.

    Example::

        result = tinyq.bench("hello_world_int8.tflite", "mps2-an386", emulator="qemu",
                             options=tinyq.BenchOptions(runs=5))
        print(result.latency.median, result.latency.unit)
    """
    from tinyq.measure.runner import built_session, load_target

    options = options or BenchOptions()
    options.check()
    path, board_obj, _ = load_target(model_path, board)
    with built_session(path, board_obj, runtime, emulator, port, options,
                       progress) as (firmware, client):
        return bench_on_device(client, path, board_obj, runtime, firmware, options, inputs,
                               progress)


__all__ = ["BenchOptions", "BenchResult", "FlashUsage", "LayerProfile", "Latency", "RamUsage",
           "bench", "bench_on_device", "latency_from_ticks", "layer_profile", "percentile",
           "ticks_to_counts"]
