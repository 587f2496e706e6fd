"""``tinyq deploy``: the one sequencer that strings the stages together.

Like Vela's ``compiler_driver``: one call per stage, a progress line before it,
a sanity check after it, and nothing else. The stages never import each other;
only this module knows their order::

    quantize (float model -> int8 .tflite; skipped for a .tflite)
    inspect  (ops supported by the runtime? does it fit the board?)
    generate (firmware project in OUT/project)
    build    (arm-none-eabi-gcc; sizes from the ELF)
    evaluate (with test data and a float model: the float model's accuracy on the host)
    device   (flash the board, or start the emulator; wait for the firmware)
    bench    (latency, RAM, flash, per-layer profile, output check)
    validate (with test data: on-device vs host accuracy, bit-exactness)
    report   (OUT/result.json, OUT/report.md + PNGs)

Bench and validate share one device session (one boot, one flash).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tinyq.device.flashing import FlashOptions
from tinyq.device.protocol import Timeouts
from tinyq.errors import FitError, UnsupportedError, UserInputError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Stage names in order (``device`` covers flashing or starting the emulator).
STAGES = ("quantize", "inspect", "generate", "build", "evaluate", "device", "bench", "validate",
          "report")
#: Model file suffixes that are already quantized (the quantize stage is skipped).
TFLITE_SUFFIXES = (".tflite",)
#: What deploy writes inside ``out_dir``.
TFLITE_NAME = "model.tflite"
PROJECT_NAME = "project"
REPORT_NAME = "report.md"
JSON_NAME = "result.json"
#: What the project's Makefile builds inside ``out_dir`` (not listed in its marker).
DEPLOY_SCRATCH = (f"{PROJECT_NAME}/build",)


@dataclass(frozen=True)
class DeployOptions:
    """Everything ``tinyq deploy`` takes besides the model and the board."""

    calib: str | None = None            # calibration data (needed for a float model)
    data: str | None = None             # labelled test data: adds the validate stage
    emulator: str | None = None
    port: str | None = None
    runtime: str = "native"
    out_dir: str = "tinyq_deploy"
    report: str | None = None           # default OUT/report.md
    json: str | None = None             # default OUT/result.json
    force: bool = False
    samples: int | None = None          # validate: the first N test samples
    runs: int = 5                       # bench: timed runs
    warmup: int = 1
    per_layer: bool = True
    float_accuracy: bool = True         # with data and a float model: its accuracy too
    flash: bool = True
    baud: int | None = None
    flashing: FlashOptions = FlashOptions()  # probe, method, drive (tinyq.device.flashing)
    quantize: Any = None                # tinyq.convert.ptq.QuantizeOptions
    generate: Any = None                # tinyq.firmware.codegen.GenerateOptions
    build: Any = None                   # tinyq.firmware.compiling.BuildOptions
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    summary: str


@dataclass(frozen=True)
class DeployResult:
    model: str
    board: str
    runtime: str
    out_dir: Path
    tflite: Path
    project: Path
    stages: tuple[StageTime, ...]
    wall_seconds: float
    quantized: Any                      # tinyq.convert.ptq.QuantizeResult | None
    fit: Any                            # tinyq.analyze.Fit
    firmware: Any                       # tinyq.firmware.compiling.Firmware
    bench: Any                          # tinyq.measure.benchmark.BenchResult
    validate: Any                       # tinyq.measure.validation.ValidateResult | None
    report: Path | None = None
    json: Path | None = None

    @property
    def ok(self) -> bool:
        """Outputs equal TFLM's, and (with data) every sample ran and was bit-exact."""
        if not self.bench.outputs_match:
            return False
        return self.validate is None or (self.validate.complete and self.validate.bit_exact)

    def to_json(self) -> dict[str, Any]:
        """Bench fields at the top, validate fields beside them (when --data was given)."""
        from tinyq.records import device_name, stamp

        out = stamp("deploy", self.bench.to_json())
        out["bench_max_lsb_diff"] = out["max_lsb_diff"]
        out["source_model"] = self.model
        out["tflite"] = str(self.tflite)
        out["tflite_bytes"] = self.tflite.stat().st_size if self.tflite.exists() else None
        out["project"] = str(self.project)
        if self.validate is not None:
            v = self.validate.to_json()
            for key in ("kind", "schema_version", "tinyq", "model", "model_id", "board",
                        "runtime", "device", "emulated"):
                v.pop(key, None)
            v["validate_seconds"] = v.pop("seconds")
            out.update(v)
            out["max_lsb_diff"] = max(out["bench_max_lsb_diff"], self.validate.max_lsb_diff)
        if self.quantized is not None:
            out["quantize"] = self.quantized.to_json()
        out["fit"] = self.fit.to_dict() if self.fit is not None else None
        out["stages"] = [{"name": s.name, "seconds": round(s.seconds, 3),
                          "summary": device_name(s.summary)} for s in self.stages]
        out["wall_seconds"] = round(self.wall_seconds, 3)
        out["ok"] = self.ok
        return out


class _Stages:
    """Runs one stage at a time: numbered progress line before, timing after."""

    def __init__(self, names: tuple[str, ...], progress: ProgressFn) -> None:
        self.names = names
        self.progress = progress
        self.times: list[StageTime] = []

    def run(self, name: str, what: str, fn: Callable[[], Any],
            summary: Callable[[Any], str]) -> Any:
        n = self.names.index(name) + 1
        self.progress(ProgressEvent("deploy", f"[{n}/{len(self.names)}] {name}: {what}"))
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        text = summary(result)
        self.times.append(StageTime(name, seconds, text))
        self.progress(ProgressEvent("deploy", f"[{n}/{len(self.names)}] {name}: {text} "
                                              f"({seconds:.1f} s)"))
        return result


# -- sanity checks after each stage --------------------------------------------------------

def _check_quantized(result) -> None:
    if result.mode != "int8":
        raise UnsupportedError(f"deploy needs an int8 model, quantize produced {result.mode}",
                               hint="use the default int8 mode")


def _check_inspect(report, fit_hint: Callable[[], str] | None = None) -> None:
    """Stop on an unsupported model, or one that does not fit (``fit_hint`` says how to fix it)."""
    if report.unsupported:
        first = report.unsupported[0]
        more = f" (and {len(report.unsupported) - 1} more)" if len(report.unsupported) > 1 else ""
        raise UnsupportedError(f"{report.runtime} runtime cannot run this model: "
                               f"{first.message}{more}",
                               hint=first.fix or "run `tinyq inspect` for the full list")
    if report.fit is not None and not report.fit.fits:
        name = Path(report.path).name + " " if getattr(report, "path", None) else ""
        raise FitError(name + report.fit.summary(),
                       hint=fit_hint() if fit_hint is not None
                       else "choose a bigger board or a smaller model (`tinyq inspect`)",
                       board=report.fit.board, flash_over=report.fit.flash_over,
                       ram_over=report.fit.ram_over)


def _check_firmware(firmware) -> None:
    if not Path(firmware.elf).is_file():
        raise UserInputError(f"the build produced no firmware at {firmware.elf}",
                             hint="run `tinyq build` on the project with --verbose")


# -- the sequencer -----------------------------------------------------------------------------

def _outputs(options: DeployOptions) -> tuple[Path, Path, Path, Path]:
    out = Path(options.out_dir)
    report = Path(options.report) if options.report else out / REPORT_NAME
    json_path = Path(options.json) if options.json else out / JSON_NAME
    return out, out / TFLITE_NAME, report, json_path


def _inputs(model: str | os.PathLike[str] | None, board: Any,
            options: DeployOptions) -> tuple[Any, ...]:
    """Every path deploy reads: no output may replace one of them."""
    build = options.build
    return (model, getattr(board, "source", None) or None, options.calib, options.data,
            getattr(build, "tflm_dir", None))


def _writable(path: Path, what: str) -> None:
    """Refuse an output path whose nearest existing parent folder the user may not write to
    (a folder where a file goes, or the reverse, :func:`tinyq.fileio.check_output` refuses)."""
    parent = path if what == "folder" and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserInputError(f"cannot create {path}: {parent} is not a folder",
                             hint="choose another output path", path=str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write {path}: no write permission in {parent}",
                             hint="choose another output path (e.g. --output in your home folder)",
                             path=str(path))


def preflight(board: Any, options: DeployOptions,
              model: str | os.PathLike[str] | None = None) -> None:
    """Every cheap precondition of a deploy, before any work: the runtime, the device
    (port, emulator, flashing tool), the compiler, the TFLM tree, and the outputs
    (writable, none of them an input of ``model``'s deploy, and not there already unless
    --force; see :func:`tinyq.fileio.check_output`)."""
    from tinyq.fileio import check_output
    from tinyq.firmware.codegen import RUNTIMES
    from tinyq.firmware.compiling import BuildOptions, check_toolchain
    from tinyq.measure.runner import check_device

    if options.runtime not in RUNTIMES:
        raise UserInputError(f"unknown runtime {options.runtime!r}",
                             hint=f"use one of {', '.join(RUNTIMES)}")
    out, tflite_out, report_path, json_path = _outputs(options)
    project_dir = out / PROJECT_NAME
    inputs = _inputs(model, board, options)
    check_output(out, inputs=inputs, kind="folder", into=True)
    _writable(out, "folder")
    for path in (report_path, json_path):
        check_output(path, force=True, inputs=inputs)    # a name too long, an input
        _writable(path, "file")
    from tinyq.measure.report import report_paths

    quantizes = model is None or Path(model).suffix.lower() not in TFLITE_SUFFIXES
    files = [*report_paths(report_path), json_path] + ([tflite_out] if quantizes else [])
    if len({p.absolute() for p in files}) < len(files):
        raise UserInputError(f"--report {report_path} and --json {json_path} name the same "
                             "file (or one of deploy's own outputs in --output)",
                             hint="give each output its own path")
    for path in files:
        check_output(path, options.force, inputs=inputs)
    check_output(project_dir, options.force, inputs=inputs, kind="folder")
    check_device(board, project_dir / "build" / "app.elf", options.emulator, options.port,
                 flash=options.flash, baud=options.baud, flashing=options.flashing)
    build_options = options.build or BuildOptions()
    if options.runtime == "tflm":
        from tinyq.firmware.tflm.source import locate

        locate(build_options.tflm_dir)
    check_toolchain(build_options)


def deploy(model: str | os.PathLike[str], board: Any, options: DeployOptions | None = None,
           progress: ProgressFn = null_progress) -> DeployResult:
    """Quantize -> inspect -> generate -> build -> device -> bench (-> validate) -> report.

    When the run fails, the output folders this run created are removed again, so a
    failed deploy leaves nothing half-written behind. An existing --output must be empty or a
    folder tinyq generated (checked in :func:`preflight`); the run marks it as tinyq's
    (:func:`tinyq.fileio.write_marker`) so the next ``--force`` run may write into it.

    Example::

        result = tinyq.deploy("digits_int8.tflite", "mps2-an386", options=tinyq.DeployOptions(
            data="test.npz", emulator="qemu", out_dir="deploy_out", samples=20, runs=3))
        print(result.ok, result.report)
    """
    from tinyq.fileio import foreign_content, output_folder, write_marker

    out = _outputs(options or DeployOptions())[0]
    with output_folder(out) as created:
        ours = not created and out.is_dir() and foreign_content(out) is None
        try:
            result = _deploy(model, board, options, progress)
        except BaseException:
            if ours:        # it held only tinyq's files, and still does: say so again
                write_marker(out, scratch=DEPLOY_SCRATCH)
            raise
        write_marker(out, scratch=DEPLOY_SCRATCH)
        return result


def _deploy(model: str | os.PathLike[str], board: Any, options: DeployOptions | None,
            progress: ProgressFn) -> DeployResult:
    from tinyq import boards
    from tinyq.analyze import fit_hint, inspect
    from tinyq.board_profile import Board
    from tinyq.firmware.codegen import generate
    from tinyq.firmware.compiling import BuildOptions, build
    from tinyq.measure.benchmark import BenchOptions, bench_on_device
    from tinyq.measure.report import write_json, write_report
    from tinyq.measure.runner import RunOptions, check_counts, data_input_shape, session
    from tinyq.measure.validation import (
        check_labels,
        file_sha256,
        load_labelled,
        reference_accuracy,
        validate_on_device,
    )
    from tinyq.model.tflite_reader import read_model

    options = options or DeployOptions()
    wall = time.perf_counter()
    source = Path(model)
    if not source.exists():
        from tinyq.errors import ModelError
        raise ModelError(f"model {source} not found",
                         hint="pass a .keras/.h5/SavedModel (with --calib) or an int8 .tflite",
                         path=str(source))
    is_tflite = source.suffix.lower() in TFLITE_SUFFIXES
    if not is_tflite and not options.calib:
        from tinyq.errors import DataError
        raise DataError(f"{source.name} is a float model: quantizing it needs calibration data",
                        hint="pass --calib DATA (a few hundred training samples)")
    board_obj = board if isinstance(board, Board) else boards.load(board)
    check_counts(options.runs, options.warmup)      # before minutes of work
    out, tflite_out, report_path, json_path = _outputs(options)
    project_dir = out / PROJECT_NAME
    # bad data fails early (an image folder is sized to a .tflite's input here; a float
    # model's input shape is known only after converting it)
    shape = data_input_shape(read_model(source)) if is_tflite and options.data else None
    test = load_labelled(options.data, shape) if options.data else None
    if test is not None and is_tflite:
        check_labels(read_model(source), test[1], options.data)
    preflight(board_obj, options, model=source)
    evaluate_float = test is not None and not is_tflite and options.float_accuracy
    names = tuple(s for s in STAGES if (s != "quantize" or not is_tflite)
                  and (s != "validate" or test is not None)
                  and (s != "evaluate" or evaluate_float))
    stages = _Stages(names, progress)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from tinyq.fileio import os_error

        raise os_error(out, exc) from None

    quantized = None
    if is_tflite:
        tflite = source
    else:
        from tinyq.convert.ptq import QuantizeOptions, quantize

        quantized = stages.run(
            "quantize", f"{source.name} to int8 with {options.calib}",
            lambda: quantize(source, options.calib, options.quantize or QuantizeOptions(),
                             output=tflite_out, force=options.force, progress=progress),
            lambda r: f"{r.size_bytes:,} bytes, {r.calib_samples} calibration samples")
        _check_quantized(quantized)
        tflite = tflite_out
        if test is not None:
            check_labels(read_model(tflite), test[1], options.data)

    report = stages.run(
        "inspect", f"ops and fit on {board_obj.name} ({options.runtime})",
        lambda: inspect(tflite, board_obj, runtime=options.runtime,
                        measure_arena=options.runtime == "tflm", progress=progress),
        lambda r: (f"{len(r.ops)} ops, {r.macs:,} MACs; "
                   + (f"estimate: {r.fit.summary()}" if r.fit else "no fit table")))
    _check_inspect(report, lambda: fit_hint(read_model(tflite), board_obj, report.fit,
                                            native_arena=report.arena_native))

    project = stages.run(
        "generate", f"{options.runtime} firmware project in {project_dir}",
        lambda: generate(tflite, board_obj, runtime=options.runtime, out_dir=project_dir,
                         options=options.generate, force=options.force, progress=progress),
        lambda p: f"{len(p.files)} files, arena {p.arena_bytes:,} bytes")

    firmware = stages.run(
        "build", f"arm-none-eabi-gcc for {board_obj.mcpu}",
        lambda: build(project.path, build_options=options.build or BuildOptions(),
                      progress=progress),
        lambda f: f"measured (ELF): flash {f.flash_bytes:,}/{f.flash_available:,} B, "
                  f"static RAM {f.static_ram_bytes:,} B")
    _check_firmware(firmware)

    float_acc = float_bytes = None
    if evaluate_float:
        x, labels = test
        n = options.samples or len(labels)
        float_acc, float_bytes = stages.run(
            "evaluate", f"float model {source.name} on {n} test samples (host)",
            lambda: reference_accuracy(source, x[:n], labels[:n], progress),
            lambda r: f"top-1 {100 * r[0]:.2f} %, float .tflite {r[1]:,} bytes")

    run_options = RunOptions(flash=options.flash, baud=options.baud, timeouts=options.timeouts,
                             flashing=options.flashing)
    where = options.port or options.emulator or ("qemu" if board_obj.emulated_only else "?")
    bench_options = BenchOptions(runs=options.runs, warmup=options.warmup,
                                 per_layer=options.per_layer, timeouts=options.timeouts)
    progress(ProgressEvent("deploy", f"[{names.index('device') + 1}/{len(names)}] device: "
                                     f"{'flashing' if options.port else 'starting'} {where}"))
    start = time.perf_counter()
    with session(board_obj, firmware.elf, options.emulator, options.port, run_options,
                 progress) as client:
        stages.times.append(StageTime("device", time.perf_counter() - start,
                                      f"firmware ready on {client.port}"))
        benched = stages.run(
            "bench", f"{options.runs} timed runs after {options.warmup} warm-up(s)",
            lambda: bench_on_device(client, tflite, board_obj, options.runtime, firmware,
                                    bench_options, progress=progress),
            lambda b: (f"{b.latency.median:,} {b.latency.unit}/inference, RAM "
                       f"{b.ram.total:,} B, outputs "
                       + ("identical to TFLM" if b.outputs_match
                          else f"DIFFER (max {b.max_lsb_diff} LSB)")))
        validated = None
        if test is not None:
            x, labels = test
            validated = stages.run(
                "validate", f"{options.samples or len(labels)} test samples on the device",
                lambda: validate_on_device(client, tflite, options.runtime, x, labels,
                                           data_name=str(options.data),
                                           data_sha256=file_sha256(options.data),
                                           samples=options.samples, board_name=board_obj.name,
                                           progress=progress),
                lambda v: (f"device {100 * (v.device_accuracy or 0):.2f} %, host "
                           f"{100 * (v.host_accuracy or 0):.2f} %, bit-exact "
                           f"{v.bit_exact_count}/{v.samples}"
                           + ("" if v.complete else f", {v.missing} MISSING")))
            validated = replace(validated, float_accuracy=float_acc,
                                reference=str(source) if float_acc is not None else None,
                                float_model_bytes=float_bytes)

    result = DeployResult(
        model=str(source), board=board_obj.name, runtime=options.runtime, out_dir=out,
        tflite=Path(tflite), project=project.path, stages=tuple(stages.times),
        wall_seconds=time.perf_counter() - wall, quantized=quantized, fit=report.fit,
        firmware=firmware, bench=benched, validate=validated, report=report_path,
        json=json_path)

    def write() -> None:
        # The files carry the stages up to here; the returned result adds the report's time.
        record = replace(result, stages=tuple(stages.times),
                         wall_seconds=time.perf_counter() - wall).to_json()
        inputs = _inputs(source, board_obj, options)
        write_json(record, json_path, force=True, inputs=inputs)
        write_report(record, report_path, force=True, inputs=inputs)

    stages.run("report", f"{report_path} and {json_path}", write,
               lambda _r: f"wrote {report_path.name} and {json_path.name}")
    return replace(result, stages=tuple(stages.times), wall_seconds=time.perf_counter() - wall)


__all__ = ["DeployOptions", "DeployResult", "STAGES", "StageTime", "deploy", "preflight"]
