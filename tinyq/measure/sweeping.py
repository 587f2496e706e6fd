"""``tinyq sweep``: a grid of models × quantization modes × boards × runtimes, measured.

A sweep file (TOML, see docs/sweep.md) names the grid and the data; every cell runs
quantize → inspect (fit) → build → bench → validate through :func:`tinyq.pipeline.deploy`
and becomes one row of the result. A cell that cannot fit or run is recorded with the
reason, never fatal. Cells are cached by content: a cell's key hashes the model file's
bytes, the mode, the board profile, the runtime, the options, the data and tinyq's
version, so a rerun after changing one model redoes only that model's cells.

The local executor runs the cells in a process pool sized to the machine (one emulator
per worker). A worker process that dies takes only its own cell with it: that cell is
retried alone and, if it kills its worker again, recorded as an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinyq.errors import FitError, TinyqError, UnsupportedError, UserInputError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Quantization modes a Keras model can be swept over: tinyq.convert.ptq's modes plus QAT.
QAT_MODE = "qat"
#: The mode recorded for a .tflite model (it is measured as it is).
AS_IS_MODE = "as-is"
#: Model suffixes that are already converted (the modes do not apply to them).
TFLITE_SUFFIXES = (".tflite",)
#: Cell outcomes. Only ``ok``, ``does not fit`` and ``unsupported`` are cached: they follow
#: from the cell's inputs; ``failed`` and ``error`` (a device timeout, a crashed worker)
#: may not happen again, so a rerun tries the cell again.
CACHED_STATUSES = ("ok", "does not fit", "unsupported")
#: How process-pool workers start. "spawn": a fresh interpreter per worker, so a worker
#: never inherits the driver's threads or TensorFlow state (fork + TensorFlow can hang).
START_METHOD = "spawn"
#: Cells a crashed worker's cell is tried alone before it is recorded as an error: once
#: in the shared pool, once alone (so a neighbour's crash never condemns it).
CRASH_ATTEMPTS = 2
#: Names of the files a sweep writes in its folder.
JSON_NAME = "sweep.json"
REPORT_NAME = "sweep.md"
CELLS_DIR = "cells"
TFLITE_DIR = "tflite"
CELL_RECORD = "cell.json"


# -- the sweep file ------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (or the same given in Python). Paths are absolute."""

    models: tuple[str, ...] = ()
    boards: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("int8",)
    runtimes: tuple[str, ...] = ("native",)
    kernels: tuple[str, ...] = ("reference",)    # TFLM kernels; native cells ignore them
    calib: str | None = None        # calibration data (Keras models)
    test: str | None = None         # labelled test data: adds validate (accuracy)
    train: str | None = None        # training data (the qat mode)
    samples: int | None = None      # validate: the first N test samples
    runs: int = 3                   # bench: timed runs
    warmup: int = 1
    qat_epochs: int = 3
    tflm_dir: str | None = None

    def __post_init__(self) -> None:
        from tinyq.convert.ptq import MODES
        from tinyq.firmware.codegen import RUNTIMES

        if not self.models or not self.boards:
            raise UserInputError("a sweep needs at least one model and one board",
                                 hint="list them under [grid] as models = [...] and "
                                      "boards = [...]")
        for mode in self.modes:
            if mode not in (*MODES, QAT_MODE):
                raise UserInputError(f"unknown mode {mode!r} in the sweep",
                                     hint=f"use {', '.join((*MODES, QAT_MODE))}")
        for runtime in self.runtimes:
            if runtime not in RUNTIMES:
                raise UserInputError(f"unknown runtime {runtime!r} in the sweep",
                                     hint=f"use {', '.join(RUNTIMES)}")
        for kernels in self.kernels:
            if kernels not in ("reference", "cmsis_nn"):
                raise UserInputError(f"unknown kernels {kernels!r} in the sweep",
                                     hint="use reference or cmsis_nn")
        if QAT_MODE in self.modes and not self.train:
            raise UserInputError("the qat mode needs training data",
                                 hint="add train = \"TRAIN.npz\" under [data]")
        for name in ("runs", "qat_epochs"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be at least 1, got {getattr(self, name)}",
                                     hint=f"set {name} to 1 or more")


#: [section] -> keys the sweep file accepts there (and the SweepSpec field each fills).
_FILE_KEYS = {
    "grid": {"models": "models", "modes": "modes", "boards": "boards",
             "runtimes": "runtimes", "kernels": "kernels"},
    "data": {"calib": "calib", "test": "test", "train": "train", "samples": "samples"},
    "bench": {"runs": "runs", "warmup": "warmup"},
    "qat": {"epochs": "qat_epochs"},
    "build": {"tflm_dir": "tflm_dir"},
}
_PATH_FIELDS = ("models", "calib", "test", "train", "tflm_dir")


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a sweep file; relative paths are relative to the file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"sweep file {path} not found",
                             hint="pass a TOML file (see examples/sweep/)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserInputError(f"cannot read sweep file {path}: {exc}",
                             hint="fix the TOML (see docs/sweep.md)") from None
    values: dict[str, Any] = {}
    for section, content in raw.items():
        keys = _FILE_KEYS.get(section)
        if keys is None or not isinstance(content, dict):
            raise UserInputError(f"{path}: unknown section [{section}]",
                                 hint=f"use {', '.join(f'[{s}]' for s in _FILE_KEYS)}")
        for key, value in content.items():
            if key not in keys:
                raise UserInputError(f"{path}: unknown key {key!r} in [{section}]",
                                     hint=f"use {', '.join(keys)}")
            values[keys[key]] = value
    return spec_from(values, base=path.parent, where=str(path))


def spec_from(values: Mapping[str, Any], base: Path = Path("."), where: str = "the sweep"
              ) -> SweepSpec:
    """A SweepSpec from plain values (lists or single strings), paths resolved from ``base``."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("models", "modes", "boards", "runtimes", "kernels"):
            value = [value] if isinstance(value, str | os.PathLike) else list(value)
            if not all(isinstance(v, str | os.PathLike) for v in value):
                raise UserInputError(f"{where}: {name} must be a list of strings",
                                     hint=f'e.g. {name} = ["a", "b"]')
            value = tuple(str(v) for v in value)
        if name == "boards":        # a board profile file, not a bundled board's name
            value = tuple(str((base / v).resolve()) if v.endswith(".toml") else v
                          for v in value)
        if name in _PATH_FIELDS and value is not None:
            value = (tuple(str((base / v).resolve()) for v in value) if name == "models"
                     else str((base / str(value)).resolve()))
        out[name] = value
    try:
        return SweepSpec(**out)
    except TypeError as exc:
        raise UserInputError(f"{where}: {exc}", hint="see docs/sweep.md") from None


# -- cells ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One point of the grid, and where its files go."""

    model: str
    mode: str
    board: str
    runtime: str
    kernels: str                # "reference"/"cmsis_nn" for tflm, "-" for native
    key: str = ""               # content hash (see cell_key)
    tflite: str = ""            # the converted model the cell measures

    @property
    def label(self) -> str:
        return _label(_cell_fields(self))


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of every file under a folder (a SavedModel) in name order."""
    from tinyq.measure.validation import file_sha256

    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + file_sha256(f).encode())
        return h.hexdigest()
    return file_sha256(p)


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _optional_digest(path: str | None) -> str | None:
    return file_digest(path) if path else None


def tflite_key(spec: SweepSpec, model_sha: str, mode: str) -> str:
    """What the converted model depends on: the model's bytes, the mode, its data."""
    from tinyq import __version__

    return _digest({"model": model_sha, "mode": mode, "tinyq": __version__,
                    "calib": _optional_digest(spec.calib) if mode != AS_IS_MODE else None,
                    "train": _optional_digest(spec.train) if mode == QAT_MODE else None,
                    "qat_epochs": spec.qat_epochs if mode == QAT_MODE else None})


def cell_key(spec: SweepSpec, quant_key: str, board: Any, runtime: str, kernels: str,
             test_sha: str | None) -> str:
    """What a cell's result depends on: the converted model's key (model bytes, mode,
    calibration), the board profile (every field), runtime, kernels, bench and validate
    options, the test data, and tinyq's version."""
    from tinyq import __version__

    return _digest({"tflite": quant_key, "board": repr(board), "runtime": runtime,
                    "kernels": kernels, "runs": spec.runs, "warmup": spec.warmup,
                    "samples": spec.samples, "test": test_sha, "tflm_dir": spec.tflm_dir,
                    "tinyq": __version__})


def plan_cells(spec: SweepSpec, out_dir: Path) -> list[Cell]:
    """Every cell of the grid with its key, in file order (model, mode, board, runtime)."""
    from tinyq import boards
    from tinyq.errors import ModelError

    test_sha = _optional_digest(spec.test)
    board_objs = {name: boards.load(name) for name in spec.boards}
    cells = []
    for model in spec.models:
        if not Path(model).exists():
            raise ModelError(f"model {model} not found", hint="fix the path in the sweep file",
                             path=model)
        model_sha = file_digest(model)
        is_tflite = Path(model).suffix.lower() in TFLITE_SUFFIXES
        modes = (AS_IS_MODE,) if is_tflite else spec.modes
        for mode in modes:
            qkey = tflite_key(spec, model_sha, mode)
            tflite = model if is_tflite else str(out_dir / TFLITE_DIR / f"{qkey[:16]}.tflite")
            for board in spec.boards:
                for runtime in spec.runtimes:
                    for kernels in (spec.kernels if runtime == "tflm" else ("-",)):
                        key = cell_key(spec, qkey, board_objs[board], runtime, kernels,
                                       test_sha)
                        cells.append(Cell(model, mode, board, runtime, kernels, key, tflite))
    return cells


# -- running one cell (in a worker process) ------------------------------------------------

def convert_model(spec: SweepSpec, model: str, mode: str, out: str) -> dict[str, Any]:
    """Write ``model`` converted in ``mode`` to ``out`` (kept when already there)."""
    from tinyq.fileio import write_bytes

    if Path(out).is_file():
        return {"status": "ok", "cached": True}
    start = time.monotonic()
    try:
        if mode == QAT_MODE:
            from tinyq.convert.qat_training import QatOptions, qat_tflite

            data = qat_tflite(model, spec.train, QatOptions(epochs=spec.qat_epochs,
                                                            compare_ptq=False),
                              calib=spec.calib)
        else:
            from tinyq.convert.ptq import QuantizeOptions, quantize

            data = quantize(model, spec.calib, QuantizeOptions(mode=mode)).tflite
    except TinyqError as exc:
        return {"status": _status(exc), "stage": "quantize", "reason": str(exc)}
    write_bytes(out, data)
    return {"status": "ok", "cached": False, "seconds": round(time.monotonic() - start, 3)}


def run_cell(spec: SweepSpec, cell: Cell, out_dir: str) -> dict[str, Any]:
    """Deploy one cell (inspect → build → bench → validate) into ``out_dir``; its row."""
    from tinyq.firmware.codegen import GenerateOptions
    from tinyq.firmware.compiling import BuildOptions
    from tinyq.pipeline import DeployOptions, deploy

    runtime_options = None
    if cell.runtime == "tflm":
        from tinyq.firmware.tflm.codegen import TflmOptions

        runtime_options = TflmOptions(kernels=cell.kernels)
    options = DeployOptions(data=spec.test, runtime=cell.runtime, out_dir=out_dir,
                            samples=spec.samples, runs=spec.runs, warmup=spec.warmup,
                            per_layer=False, float_accuracy=False, force=True,
                            generate=GenerateOptions(runtime_options=runtime_options),
                            build=BuildOptions(tflm_dir=spec.tflm_dir))
    # The sweep owns its cell folders: what an earlier, killed attempt left (no tinyq
    # marker, so deploy would refuse it) goes before the cell runs again.
    shutil.rmtree(out_dir, ignore_errors=True)
    start = time.monotonic()
    try:
        result = deploy(cell.tflite, cell.board, options)
    except TinyqError as exc:
        return {"status": _status(exc), "stage": _stage_of(exc), "reason": str(exc),
                "seconds": round(time.monotonic() - start, 3)}
    return {"status": "ok", "seconds": round(time.monotonic() - start, 3),
            **measures(result.to_json())}


def _status(exc: BaseException) -> str:
    if isinstance(exc, FitError):
        return "does not fit"
    if isinstance(exc, UnsupportedError):
        return "unsupported"
    return "failed"


def _stage_of(exc: BaseException) -> str:
    if isinstance(exc, FitError | UnsupportedError):
        return "inspect"
    from tinyq.errors import DeviceError, ToolError

    if isinstance(exc, DeviceError):
        return "device"
    if isinstance(exc, ToolError):
        return "build"
    return "deploy"


def measures(record: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a sweep row keeps from a deploy record."""
    latency = record.get("latency") or {}
    ram = record.get("ram") or {}
    flash = record.get("flash") or {}
    return {"accuracy": record.get("device_accuracy"),
            "host_accuracy": record.get("host_accuracy"),
            "latency": latency.get("median"), "latency_unit": latency.get("unit"),
            "ram_bytes": ram.get("total"), "flash_bytes": flash.get("total"),
            "tflite_bytes": record.get("tflite_bytes"),
            "bit_exact": record.get("bit_exact", record.get("outputs_match")),
            "samples": record.get("samples"), "ok": record.get("ok")}


# -- executing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep."""

    executor: str = "local"         # "local" (a process pool here) or "ray"
    jobs: int | None = None         # local: worker processes (None: one per CPU core)
    address: str | None = None      # ray: the cluster (None: $RAY_ADDRESS, else a local one)


@dataclass(frozen=True)
class SweepResult:
    spec: SweepSpec
    rows: tuple[dict[str, Any], ...]
    out_dir: Path
    json: Path
    report: Path
    seconds: float
    cached: int = 0                 # cells taken from the cache
    ran: int = 0                    # cells run this time

    def to_json(self) -> dict[str, Any]:
        from tinyq.records import stamp

        return stamp("sweep", {
                "spec": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in asdict(self.spec).items()},
                "cells": len(self.rows), "cached": self.cached, "ran": self.ran,
                "seconds": round(self.seconds, 3),
                "pareto": {"latency": pareto_labels(self.rows, "latency"),
                           "ram": pareto_labels(self.rows, "ram_bytes")},
                "rows": list(self.rows)})


def _call(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn`` in a worker; any exception becomes the cell's row (never fatal)."""
    try:
        return fn(*args)
    except Exception as exc:        # noqa: BLE001 - recorded as the cell's error
        log.exception("sweep cell failed")
        return {"status": "error", "stage": "worker",
                "reason": f"{type(exc).__name__}: {exc}"}


def execute(tasks: Sequence[tuple[Callable[..., dict[str, Any]], tuple]], jobs: int,
            on_done: Callable[[int, dict[str, Any]], None]) -> None:
    """Run ``tasks`` (``(fn, args)``, picklable) on ``jobs`` worker processes; call
    ``on_done(index, row)`` as each finishes. Always in worker processes, also for one
    job: a converter or emulator that takes its process down must not take the sweep.

    A worker that dies (a segfault, os._exit, the OOM killer) breaks the pool: the
    tasks it had in flight are retried each in a pool of their own, and a task that
    kills its worker again is reported as an error row.
    """
    pending = list(range(len(tasks)))
    attempts = dict.fromkeys(pending, 0)
    width = jobs
    while pending:
        batch, pending = pending, []
        for chunk in ([batch] if width > 1 else [[i] for i in batch]):
            pending += _run_pool(tasks, chunk, width, attempts, on_done)
        width = 1                   # suspects of a crash go one at a time


def _run_pool(tasks, indices: list[int], width: int, attempts: dict[int, int],
              on_done: Callable[[int, dict[str, Any]], None]) -> list[int]:
    """One pool over ``indices``; returns those to retry after a crashed worker."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    retry: list[int] = []
    context = multiprocessing.get_context(START_METHOD)
    with ProcessPoolExecutor(max_workers=min(width, len(indices)), mp_context=context) as pool:
        futures = {pool.submit(_call, tasks[i][0], *tasks[i][1]): i for i in indices}
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    row = future.result()
                except BrokenProcessPool:
                    attempts[i] += 1
                    if attempts[i] < CRASH_ATTEMPTS:
                        retry.append(i)
                    else:
                        on_done(i, {"status": "error", "stage": "worker",
                                    "reason": "its worker process died (crashed or was "
                                              f"killed) {attempts[i]} times"})
                    continue
                on_done(i, row)
        except BaseException:
            # Ctrl-C/SIGTERM: stop the workers now rather than wait for their cells (their
            # emulators go with them); finished cells are already in the cache.
            pool.shutdown(wait=False, cancel_futures=True)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise
    return retry


#: Executors ``--executor`` accepts.
EXECUTORS = ("local", "ray")
#: Times Ray runs a cell again after its worker process or node died. Ray retries it on
#: any live node; a cell's row is taken from the one attempt that finished, so a retried
#: cell is never counted twice. Three covers a node lost mid-sweep plus a second one.
RAY_TASK_RETRIES = 3


def ray_module():
    """Ray, imported lazily (the [cluster] extra), or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        from tinyq.errors import ToolNotFoundError

        raise ToolNotFoundError("Ray is not installed (needed by --executor ray)",
                                hint="pip install 'tinyq[cluster]', or use --executor local",
                                tool="ray") from None
    return ray


def execute_ray(tasks: Sequence[tuple[Callable[..., dict[str, Any]], tuple]],
                on_done: Callable[[int, dict[str, Any]], None],
                address: str | None = None) -> None:
    """Run ``tasks`` as Ray tasks (one CPU each) on the cluster at ``address`` (None:
    $RAY_ADDRESS, else a local cluster sized to this machine); ``on_done(index, row)``
    once per task, as each finishes.

    A worker process or node that dies has its task rerun elsewhere (RAY_TASK_RETRIES);
    a task that still fails becomes an error row. Cells write their folders under the
    sweep's output folder, so every node must see that path (a shared file system).
    """
    ray = ray_module()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False, include_dashboard=False,
                 configure_logging=False)
    pending: dict[Any, int] = {}
    try:
        remote = ray.remote(_call).options(num_cpus=1, max_retries=RAY_TASK_RETRIES)
        pending.update({remote.remote(fn, *args): i for i, (fn, args) in enumerate(tasks)})
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    row = {"status": "error", "stage": "worker",
                           "reason": f"the cell's Ray task failed after {RAY_TASK_RETRIES} "
                                     f"retries: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}"}
                on_done(i, row)
    except BaseException:
        for ref in pending:         # Ctrl-C: stop the cells still running
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


def default_jobs(cells: int) -> int:
    from tinyq.measure.validation import MAX_DEFAULT_JOBS, available_cpus

    return max(1, min(available_cpus(), MAX_DEFAULT_JOBS, cells))


def sweep(spec: SweepSpec | str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
          options: SweepOptions | None = None, *, progress: ProgressFn = null_progress,
          **grid: Any) -> SweepResult:
    """Run a sweep. ``spec``: a sweep file, a :class:`SweepSpec`, or None with the grid
    as keywords named like the file's keys (``models=[...], boards=[...], modes=[...],
    runtimes=[...], test="test.npz", calib=...``; see :class:`SweepSpec`).

    Writes ``out_dir/sweep.json`` (``kind: "sweep"``), ``sweep.md`` and its PNGs; keeps
    each cell's deploy folder under ``out_dir/cells/<key>/`` as the cache.

    Example::

        result = tinyq.sweep(None, "sweep_out", models=["digits_int8.tflite"],
                             boards=["mps2-an386", "microbit"], test="test.npz", samples=20)
        for row in result.rows:
            print(row["board"], row["status"], row.get("accuracy"))
    """
    from tinyq.fileio import check_output

    options = options or SweepOptions()
    if options.executor not in EXECUTORS:
        raise UserInputError(f"unknown executor {options.executor!r}",
                             hint=f"use {' or '.join(EXECUTORS)}")
    if options.executor == "ray":
        ray_module()                # installed? (before any work)
    if options.jobs is not None and options.jobs < 1:
        raise UserInputError(f"--jobs {options.jobs} must be at least 1", hint="e.g. --jobs 2")
    if spec is not None and grid:
        raise UserInputError("pass a sweep file (or SweepSpec) or the grid as keywords, "
                             "not both", hint="put everything in one of them")
    if spec is None:
        spec = spec_from(grid)
    elif not isinstance(spec, SweepSpec):
        spec = load_sweep(spec)
    out = Path(out_dir)
    _check_folder(out)
    json_path, report_path = out / JSON_NAME, out / REPORT_NAME
    from tinyq.measure.report import report_paths

    for path in (json_path, *report_paths(report_path, SWEEP_IMAGES)):
        check_output(path, force=True)
    start = time.monotonic()
    cells = plan_cells(spec, out)
    # Made here, before any worker: a failed deploy removes the folders it created, and a
    # cell that created the shared cells/ folder would take its neighbours' folders along.
    for shared in (out / CELLS_DIR, out / TFLITE_DIR):
        try:
            shared.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from tinyq.fileio import os_error

            raise os_error(shared, exc) from None
    total = len(cells)
    rows: dict[int, dict[str, Any]] = {}
    done = [0]

    def finish(i: int, row: dict[str, Any], cached: bool) -> None:
        cell = cells[i]
        row = {**_cell_fields(cell), **row, "cached": cached}
        rows[i] = row
        if not cached and row["status"] in CACHED_STATUSES:
            _store(out, cell, row)
        done[0] += 1
        # a line per cell (no done/total: a bar would show only the latest cell)
        progress(ProgressEvent("sweep", f"[{done[0]}/{total}] {cell.label}: {summary(row)}"))

    todo = []
    for i, cell in enumerate(cells):
        hit = _cached(out, cell)
        if hit is not None:
            finish(i, hit, cached=True)
        else:
            todo.append(i)
    jobs = options.jobs or default_jobs(len(todo))

    def run_tasks(tasks, jobs, on_done) -> None:
        if options.executor == "ray":
            execute_ray(tasks, on_done, options.address)
        else:
            execute(tasks, jobs, on_done)

    # Convert each (model, mode) the remaining cells need once, then run the cells.
    conversions: dict[str, list[int]] = {}
    for i in todo:
        if cells[i].mode != AS_IS_MODE:
            conversions.setdefault(cells[i].tflite, []).append(i)
    failed_conversion: dict[str, dict[str, Any]] = {}
    conversions = {k: v for k, v in conversions.items() if not Path(k).is_file()}
    if conversions:
        keys = list(conversions)
        tasks = [(convert_model, (spec, cells[conversions[k][0]].model,
                                  cells[conversions[k][0]].mode, k)) for k in keys]
        progress(ProgressEvent("sweep", f"converting {len(keys)} model(s)"))

        def converted(n: int, row: dict[str, Any]) -> None:
            if row.get("status") != "ok":
                failed_conversion[keys[n]] = row

        run_tasks(tasks, min(jobs, len(tasks)), converted)
    runnable = []
    for i in todo:
        bad = failed_conversion.get(cells[i].tflite)
        if bad is not None:
            finish(i, bad, cached=False)
        else:
            runnable.append(i)
    tasks = [(run_cell, (spec, cells[i], str(out / CELLS_DIR / cells[i].key[:16])))
             for i in runnable]
    run_tasks(tasks, min(jobs, max(1, len(tasks))),
              lambda n, row: finish(runnable[n], row, cached=False))
    ordered = tuple(rows[i] for i in range(total))
    result = SweepResult(spec=spec, rows=ordered, out_dir=out, json=json_path,
                         report=report_path, seconds=time.monotonic() - start,
                         cached=total - len(todo), ran=len(todo))
    write_sweep(result)
    return result


def _cell_fields(cell: Cell) -> dict[str, Any]:
    return {"model": cell.model, "mode": cell.mode, "board": cell.board,
            "runtime": cell.runtime, "kernels": cell.kernels, "key": cell.key}


def _check_folder(out: Path) -> None:
    """The output folder is new, empty, or an earlier sweep's (its cache is reused)."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} is a file, not a folder",
                             hint="pass a folder for the sweep's results with -o")
    ours = (CELLS_DIR, TFLITE_DIR, JSON_NAME)      # a sweep stopped early has some of them
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in ours):
        raise UserInputError(f"{out} holds other files, not an earlier sweep's results",
                             hint="pass a new or empty folder with -o (an earlier sweep's "
                                  "folder is reused as its cache)")


def _cached(out: Path, cell: Cell) -> dict[str, Any] | None:
    path = out / CELLS_DIR / cell.key[:16] / CELL_RECORD
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if row.get("key") != cell.key or row.get("status") not in CACHED_STATUSES:
        return None
    return {k: v for k, v in row.items() if k != "cached"}


def _store(out: Path, cell: Cell, row: Mapping[str, Any]) -> None:
    from tinyq.fileio import write_text

    write_text(out / CELLS_DIR / cell.key[:16] / CELL_RECORD,
               json.dumps({k: v for k, v in row.items() if k != "cached"}, indent=2) + "\n")


def summary(row: Mapping[str, Any]) -> str:
    """One line for a cell's progress line and report."""
    if row.get("status") != "ok":
        return f"{row.get('status')} ({row.get('reason')})"
    parts = []
    if row.get("accuracy") is not None:
        parts.append(f"{100 * row['accuracy']:.2f} %")
    if row.get("latency") is not None:
        parts.append(f"{row['latency']:,} {row.get('latency_unit') or ''}".strip())
    if row.get("ram_bytes") is not None:
        parts.append(f"RAM {row['ram_bytes']:,} B")
    return ", ".join(parts) + (" (cached)" if row.get("cached") else "")


# -- Pareto front and report ---------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (cost, accuracy) points are Pareto-optimal: no other point costs no more and
    is at least as accurate, and strictly better in one of the two."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a)
                        for j, (c2, a2) in enumerate(points) if j != i)
        front.append(not dominated)
    return front


def _plotted(rows: Sequence[Mapping[str, Any]], cost: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and r.get("accuracy") is not None
            and r.get(cost) is not None]


def _label(row: Mapping[str, Any]) -> str:
    k = f"/{row['kernels']}" if row.get("kernels", "-") != "-" else ""
    return (f"{Path(str(row['model'])).name} {row['mode']} {Path(str(row['board'])).name} "
            f"{row['runtime']}{k}")


def pareto_labels(rows: Sequence[Mapping[str, Any]], cost: str) -> list[str]:
    """Labels of the rows on the accuracy-vs-``cost`` Pareto front."""
    plotted = _plotted(rows, cost)
    front = pareto_front([(float(r[cost]), float(r["accuracy"])) for r in plotted])
    return [_label(r) for r, on in zip(plotted, front, strict=True) if on]


#: The sweep report's plots: name -> (row field on the x axis, axis label).
SWEEP_IMAGES = ("latency", "ram")
_AXES = {"latency": ("latency", "latency per inference"), "ram": ("ram_bytes", "RAM (bytes)")}


def pareto_png(rows: Sequence[Mapping[str, Any]], which: str) -> bytes | None:
    """Accuracy vs latency or RAM, every measured cell a dot, the Pareto front marked."""
    from tinyq.measure.report import _png, _pyplot

    cost, axis = _AXES[which]
    plotted = _plotted(rows, cost)
    if not plotted:
        return None
    units = {r.get("latency_unit") for r in plotted} if which == "latency" else set()
    if len(units) == 1:
        axis = f"{next(iter(units))} per inference"
    xs = [float(r[cost]) for r in plotted]
    ys = [100 * float(r["accuracy"]) for r in plotted]
    front = pareto_front(list(zip(xs, ys, strict=True)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    try:
        ax.scatter(xs, ys, c="#bbbbbb", s=30, zorder=2, label="cell")
        on = sorted(((x, y, r) for x, y, r, f in zip(xs, ys, plotted, front, strict=True) if f),
                    key=lambda p: (p[0], p[1]))
        ax.plot([p[0] for p in on], [p[1] for p in on], "-o", color="#cc3311", zorder=3,
                label="Pareto front")
        for x, y, r in on:
            ax.annotate(_label(r), (x, y), fontsize=6, xytext=(4, -8),
                        textcoords="offset points")
        ax.set_xlabel(axis)
        ax.set_ylabel("on-device top-1 accuracy (%)")
        ax.set_title(f"accuracy vs {which}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return _png(fig)
    finally:
        plt.close(fig)


def sweep_markdown(record: Mapping[str, Any], images: Mapping[str, str]) -> str:
    from tinyq.measure.report import _n, _pct, _table

    rows = record["rows"]
    front = set(record["pareto"]["latency"]) | set(record["pareto"]["ram"])
    table = [(Path(str(r["model"])).name, r["mode"], Path(str(r["board"])).name, r["runtime"]
              + (f" ({r['kernels']})" if r.get("kernels", "-") != "-" else ""),
              r["status"], _pct(r.get("accuracy")), _n(r.get("latency")),
              _n(r.get("ram_bytes")), _n(r.get("flash_bytes")),
              "yes" if _label(r) in front else "",
              r.get("reason") or ("cached" if r.get("cached") else ""))
             for r in rows]
    unit = next((r.get("latency_unit") for r in rows if r.get("latency_unit")), "latency")
    lines = [f"# tinyq sweep: {len(rows)} cells", "",
             f"{record['ran']} run, {record['cached']} from the cache, "
             f"{record['seconds']:.1f} s.", "",
             _table(("model", "mode", "board", "runtime", "status", "accuracy",
                     f"latency ({unit})", "RAM (B)", "flash (B)", "Pareto", "note"),
                    table, align="llllrrrrrll"), ""]
    for name, file in images.items():
        lines += [f"![accuracy vs {name}]({file})", ""]
    return "\n".join(lines)


def write_sweep(result: SweepResult) -> None:
    """``sweep.json``, ``sweep.md`` and its PNGs, each written atomically."""
    from tinyq.fileio import write_bytes, write_text
    from tinyq.measure.report import report_paths, write_json

    record = result.to_json()
    pngs = {name: pareto_png(result.rows, name) for name in SWEEP_IMAGES}
    paths = dict(zip(SWEEP_IMAGES, report_paths(result.report, SWEEP_IMAGES)[1:], strict=True))
    for name, data in pngs.items():
        if data is not None:
            write_bytes(paths[name], data)
    write_text(result.report, sweep_markdown(record, {n: paths[n].name for n, d in pngs.items()
                                                      if d is not None}))
    write_json(record, result.json, force=True)


__all__ = ["EXECUTORS", "Cell", "SweepOptions", "SweepResult", "SweepSpec", "load_sweep",
           "pareto_front", "plan_cells", "sweep"]
