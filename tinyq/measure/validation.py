"""``tinyq validate``: accuracy on the device, sample by sample, against the host.

Streams N labelled samples to the device in **one session** (``db load``/``db``
with the runner's 31-byte chunks, ``infer 1 0``, ``tq-out``), reads every raw
output back and computes:

* on-device top-1 accuracy;
* host top-1 accuracy with the ``tflite-micro`` interpreter (the oracle);
* how many outputs are byte-identical to the host's, and the largest LSB difference;
* optionally the float model's accuracy (``reference``, via :mod:`tinyq.convert.evaluation`).

Never silently truncated: when the device fails mid-way the result says how
many samples were done and that the rest are missing (``complete=False``, with
the device's error), and its JSON can be passed back as ``resume`` to continue
from the first missing sample in a new session.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyq.board_profile import Board
from tinyq.data import DEFAULT_IMAGE_SCALE
from tinyq.device.flashing import FlashOptions
from tinyq.device.protocol import MODEL_ID_DIGITS, Client, Timeouts
from tinyq.errors import DataError, DeviceError, Interrupted, ModelError, UserInputError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Samples between progress events (a bar per sample would flood a log file).
PROGRESS_EVERY = 10


@dataclass(frozen=True)
class ValidateOptions:
    """Options of ``tinyq validate`` beyond model, board, device and data."""

    samples: int | None = None          # the first N samples (None: all)
    reference: str | None = None        # float model whose accuracy is reported too
    flash: bool = True                  # on a board: flash the firmware first
    baud: int | None = None
    flashing: FlashOptions = FlashOptions()  # probe, method, drive (tinyq.device.flashing)
    build: Any = None                   # tinyq.firmware.compiling.BuildOptions
    generate: Any = None                # tinyq.firmware.codegen.GenerateOptions
    timeouts: Timeouts = field(default_factory=Timeouts)
    image_scale: str = DEFAULT_IMAGE_SCALE  # pixel scaling of an image folder (tinyq.data)
    jobs: int | None = None             # parallel emulators (None: from the CPU count)


@dataclass(frozen=True)
class SampleRecord:
    index: int                 # position in the data file
    label: int
    device_pred: int
    host_pred: int
    lsb_diff: int              # largest |device - host| over the outputs, in quanta

    @property
    def bit_exact(self) -> bool:
        return self.lsb_diff == 0

    def to_list(self) -> list[int]:
        return [self.index, self.label, self.device_pred, self.host_pred, self.lsb_diff]

    @classmethod
    def from_list(cls, row: Sequence[int]) -> SampleRecord:
        index, label, device_pred, host_pred, lsb = (int(v) for v in row)
        return cls(index, label, device_pred, host_pred, lsb)


@dataclass(frozen=True)
class ValidateResult:
    model: str
    model_id: str
    data: str
    data_sha256: str
    board: str
    runtime: str
    device: str
    emulated: bool
    requested: int                       # samples asked for
    records: tuple[SampleRecord, ...]    # samples done (resumed ones included)
    error: str | None = None             # why the device stopped early
    resumed: int = 0                     # records taken from a previous partial run
    float_accuracy: float | None = None
    reference: str | None = None
    float_model_bytes: int | None = None    # the float reference as .tflite
    tflite_bytes: int = 0                   # the model under test (.tflite file)
    seconds: float = 0.0                 # device time of this session

    @property
    def samples(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        return self.samples == self.requested

    @property
    def missing(self) -> int:
        return self.requested - self.samples

    @property
    def device_accuracy(self) -> float | None:
        if not self.records:
            return None
        return sum(r.device_pred == r.label for r in self.records) / self.samples

    @property
    def host_accuracy(self) -> float | None:
        if not self.records:
            return None
        return sum(r.host_pred == r.label for r in self.records) / self.samples

    @property
    def bit_exact_count(self) -> int:
        return sum(r.bit_exact for r in self.records)

    @property
    def bit_exact(self) -> bool:
        """Every output done is byte-identical to the host's (see ``complete`` for coverage)."""
        return bool(self.records) and self.bit_exact_count == self.samples

    @property
    def max_lsb_diff(self) -> int:
        return max((r.lsb_diff for r in self.records), default=0)

    @property
    def agreement(self) -> int:
        """Samples where the device and the host predict the same class."""
        return sum(r.device_pred == r.host_pred for r in self.records)

    def to_json(self) -> dict[str, Any]:
        from tinyq.records import device_name, stamp

        return stamp("validate", {
            "model": self.model,
            "model_id": self.model_id,
            "data": self.data,
            "data_sha256": self.data_sha256,
            "board": self.board,
            "runtime": self.runtime,
            "device": device_name(self.device),
            "emulated": self.emulated,
            "samples": self.samples,
            "samples_requested": self.requested,
            "complete": self.complete,
            "missing": self.missing,
            "error": self.error,
            "resumed": self.resumed,
            "device_accuracy": self.device_accuracy,
            "host_accuracy": self.host_accuracy,
            "float_accuracy": self.float_accuracy,
            "reference": self.reference,
            "float_model_bytes": self.float_model_bytes,
            "tflite_bytes": self.tflite_bytes,
            "bit_exact": self.bit_exact,
            "bit_exact_count": self.bit_exact_count,
            "max_lsb_diff": self.max_lsb_diff,
            "prediction_agreement": self.agreement,
            "seconds": round(self.seconds, 3),
            "per_sample_columns": ["index", "label", "device_pred", "host_pred", "lsb_diff"],
            "per_sample": [r.to_list() for r in self.records],
        })


# -- data -----------------------------------------------------------------------------

def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a data file, or of an image folder (every file's relative path and bytes,
    in sorted order), so ``--resume`` recognises the same test data."""
    h = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if file != root:
            h.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_labelled(path: str | os.PathLike[str], input_shape: Sequence[int] | None = None,
                  image_scale: str = DEFAULT_IMAGE_SCALE) -> tuple[Any, np.ndarray]:
    """Inputs and integer labels of a test set (through tinyq's one data loader; an image
    folder needs the model's ``input_shape``, see :func:`tinyq.measure.runner.data_input_shape`)."""
    from tinyq.data import load_data

    loaded = load_data(path, input_shape=input_shape, image_scale=image_scale)
    return loaded.x, labels_of(loaded.y, path)


def check_labels(model: Any, labels: np.ndarray, where: str | os.PathLike[str]) -> None:
    """Refuse labels outside the classes ``model`` (an ``ir.Model``) can predict."""
    from tinyq.convert.evaluation import output_classes
    from tinyq.data import check_label_range

    # a single-score output (binary classifier) still picks between 2 classes
    check_label_range(labels, max(2, output_classes(model)), str(where))


def labels_of(y: Any, where: str | os.PathLike[str] = "the data") -> np.ndarray:
    """Class indices from integer labels or one-hot rows."""
    from tinyq.data import require_class_labels

    return require_class_labels(y, str(where))


def top1(output: np.ndarray, scale: float, zero_point: int) -> int:
    """The predicted class of one output tensor (a single score: > 0.5 after dequantizing)."""
    flat = np.asarray(output).reshape(-1)
    if flat.size == 1:
        value = float(flat[0])
        if np.issubdtype(flat.dtype, np.integer) and scale > 0:
            value = (value - zero_point) * scale
        return int(value > 0.5)
    return int(np.argmax(flat))


# -- resuming ------------------------------------------------------------------------

def resume_records(previous: Mapping[str, Any], model_sha256: str, data_sha256: str,
                   requested: int) -> tuple[SampleRecord, ...]:
    """The samples a partial ``validate`` JSON already holds, after checking it matches."""
    from tinyq.records import SCHEMA_VERSIONS, upgrade

    previous = upgrade(previous)      # a record an older tinyq wrote reads the same
    kind = previous.get("kind")
    if kind not in ("validate", "deploy") or "per_sample" not in previous or \
            previous.get("schema_version") != SCHEMA_VERSIONS[kind]:
        raise UserInputError("the --resume file is not a tinyq validate record",
                             hint="pass the JSON an interrupted `tinyq validate --json` (or "
                                  "`tinyq deploy --data`) wrote")
    if str(previous.get("model_id", "")).lower() != model_sha256[:MODEL_ID_DIGITS]:
        raise UserInputError(
            f"the --resume file is for model {previous.get('model_id')}, not this one "
            f"({model_sha256[:12]})", hint="resume with the same model, or start afresh")
    if previous.get("data_sha256") != data_sha256:
        raise UserInputError("the --resume file was made with other test data",
                             hint="resume with the same --data file, or start afresh")
    try:
        records = tuple(SampleRecord.from_list(row) for row in previous.get("per_sample", ()))
    except (TypeError, ValueError, OverflowError) as exc:
        raise UserInputError(f"the --resume file's per_sample rows are damaged: {exc}",
                             hint="start afresh without --resume") from None
    if [r.index for r in records] != list(range(len(records))):
        raise UserInputError("the --resume file's samples are not the first N in order",
                             hint="start afresh without --resume")
    if len(records) > requested:
        raise UserInputError(f"the --resume file holds {len(records)} samples, more than the "
                             f"{requested} asked for", hint="raise --samples or start afresh")
    return records


# -- running ------------------------------------------------------------------------

def validate_on_device(client: Client, model_path: str | os.PathLike[str], runtime: str,
                       x: Any, labels: np.ndarray, *, data_name: str = "",
                       data_sha256: str = "", samples: int | None = None,
                       done: Sequence[SampleRecord] = (), board_name: str = "",
                       progress: ProgressFn = null_progress, shard: range | None = None,
                       cancel: threading.Event | None = None) -> ValidateResult:
    """Run every sample not yet ``done`` on an open, ready device; never raises mid-way.

    A DeviceError after the identity check (or Ctrl-C) ends the loop: the result
    holds the samples done and ``error`` says why the rest are missing.
    ``shard``: run only these sample indices (one worker of ``validate --jobs``; the
    result's records are that shard's). ``cancel``: set by another thread to stop
    before the next sample (Ctrl-C reaches only the main thread).
    """
    from tinyq.measure.runner import _specs, lsb_diff, output_values, samples_from
    from tinyq.model.interpreters import open_interpreter
    from tinyq.model.tflite_reader import read_model

    path = Path(model_path)
    model = read_model(path)
    model_bytes = path.read_bytes()
    specs = _specs(model.input_tensors)
    all_samples = samples_from(x, specs)
    if len(all_samples) != len(labels):
        raise DataError(f"{data_name or 'the data'} has {len(all_samples)} inputs but "
                        f"{len(labels)} labels", hint="store one label per sample")
    requested = len(all_samples) if samples is None else samples
    if requested < 1 or requested > len(all_samples):
        raise DataError(f"--samples {requested} is outside 1..{len(all_samples)} "
                        f"({data_name or 'the data'} holds {len(all_samples)})",
                        hint=f"pass --samples between 1 and {len(all_samples)}")
    out_spec = _specs(model.output_tensors)[0]
    sha = model.sha256 or hashlib.sha256(model_bytes).hexdigest()
    ident = client.check_identity(sha, runtime=runtime, board=board_name or None)
    client.expect_outputs(output_values(model))
    offset = int(ident.extra.get("db_offset", "0") or 0)
    oracle = open_interpreter(model_bytes, "tflm", name=str(path))
    records = [] if shard is not None else list(done)
    indices = shard if shard is not None else range(len(records), requested)
    error: str | None = None
    start = time.monotonic()
    progress(ProgressEvent("validate", f"{len(indices)} sample(s) on {client.port}",
                           done=len(records), total=requested))
    for i in indices:
        if cancel is not None and cancel.is_set():
            error = f"sample {i}: interrupted"     # Ctrl-C, a stop signal, or a failed shard
            break
        sample = all_samples[i]
        payload = b"".join(np.ascontiguousarray(a).tobytes() for a in sample)
        if offset:
            payload = bytes((b - offset) & 0xFF for b in payload)
        try:
            client.load_input(payload)
            client.infer(1, 0)
            device_out = client.raw_output()
        except DeviceError as exc:
            error = f"sample {i}: {exc}"
            log.info("validate stopped at sample %d: %s", i, exc)
            break
        except KeyboardInterrupt as exc:
            # Keep what is done: the caller can write it and resume from it.
            how = exc if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"
            error = f"sample {i}: {how}"
            break
        reference = oracle.invoke(sample)
        expected = [np.ascontiguousarray(o).tobytes() for o in reference]
        if len(device_out) != len(expected):
            error = (f"sample {i}: the device returned {len(device_out)} outputs, the model "
                     f"has {len(expected)} (firmware built for another model?)")
            break
        diffs = [lsb_diff(d, e, r.dtype) for d, e, r in zip(device_out, expected, reference,
                                                             strict=True)]
        if any(d < 0 for d in diffs):
            error = f"sample {i}: the device returned outputs of the wrong size"
            break
        device0 = np.frombuffer(device_out[0], dtype=reference[0].dtype)
        records.append(SampleRecord(
            index=i, label=int(labels[i]),
            device_pred=top1(device0, out_spec.scale, out_spec.zero_point),
            host_pred=top1(reference[0], out_spec.scale, out_spec.zero_point),
            lsb_diff=max(diffs, default=0)))
        n = len(records)
        if n % PROGRESS_EVERY == 0 or i + 1 == indices.stop:
            progress(ProgressEvent("validate", "samples on the device", done=n,
                                   total=requested))
    return ValidateResult(
        model=str(path), model_id=ident.model_id, data=data_name, data_sha256=data_sha256,
        board=board_name or ident.board, runtime=runtime, device=client.port,
        emulated=client.device.is_emulated, requested=requested, records=tuple(records),
        error=error, resumed=len(done), seconds=time.monotonic() - start,
        tflite_bytes=len(model_bytes))


def reference_accuracy(reference: str | os.PathLike[str], x: Any, labels: np.ndarray,
                       progress: ProgressFn = null_progress) -> tuple[float, int]:
    """Top-1 accuracy of the float model on the same samples, and its float .tflite size.

    Uses :mod:`tinyq.convert.evaluation` (Keras/SavedModel references are converted to a float32
    .tflite in memory and run on LiteRT).
    """
    from tinyq.convert.evaluation import evaluate_bytes, reference_tflite
    from tinyq.data import Dataset

    progress(ProgressEvent("validate", f"evaluating the float model {Path(reference).name}"))
    ref_bytes, ref_name = reference_tflite(reference, progress)
    report = evaluate_bytes(ref_bytes, Dataset(x=np.asarray(x), y=labels, source=str(reference)),
                            name=ref_name, layers=False, progress=progress)
    if report.accuracy is None:
        raise ModelError(f"could not compute the accuracy of {reference}",
                         hint="pass a classifier with one output and integer labels")
    return float(report.accuracy), len(ref_bytes)


# -- parallel emulators ------------------------------------------------------------

#: Default ``--jobs`` at most: each QEMU takes one host core while it runs, and beyond
#: 8 the host-side oracle and protocol work in this one Python process become the limit.
MAX_DEFAULT_JOBS = 8
#: Fewest samples worth one more emulator by default: a QEMU boot and identity check
#: cost about as much as a dozen digits samples, so smaller shards only add overhead.
MIN_SAMPLES_PER_JOB = 16


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | None, board: Board, emulator: str | None, port: str | None,
                 remaining: int) -> int:
    """How many devices validate uses: ``jobs`` if given, else one per core for an emulator
    (capped, and never more than the samples fill), one for a real board."""
    from tinyq.measure.runner import default_emulator

    if jobs is not None and jobs < 1:
        raise UserInputError(f"--jobs {jobs} must be at least 1", hint="e.g. --jobs 2")
    if port is not None:
        if jobs is not None and jobs > 1:
            raise UserInputError(f"--jobs {jobs} needs emulators: one board on --port runs "
                                 "one sample at a time", hint="drop --jobs, or use --emulator")
        return 1
    if default_emulator(board, emulator, port) is None:
        return 1                     # no device at all: validate's own check says so
    if jobs is None:
        jobs = min(available_cpus(), MAX_DEFAULT_JOBS, -(-remaining // MIN_SAMPLES_PER_JOB))
    return max(1, min(jobs, remaining))


def shard_ranges(start: int, stop: int, jobs: int) -> list[range]:
    """``start..stop`` cut into ``jobs`` contiguous, nearly equal, non-empty ranges."""
    count = stop - start
    jobs = max(1, min(jobs, count))
    size, extra = divmod(count, jobs)
    out, first = [], start
    for k in range(jobs):
        last = first + size + (k < extra)
        out.append(range(first, last))
        first = last
    return out


def merge_shards(done: Sequence[SampleRecord], shards: Sequence[range],
                 results: Sequence[ValidateResult | BaseException]
                 ) -> tuple[tuple[SampleRecord, ...], str | None]:
    """The records of every shard in sample order, up to the first missing sample.

    A resume record must hold the first N samples in order, so the samples that later
    shards finished after an earlier shard stopped are dropped (rerun on ``--resume``):
    nothing is counted twice and nothing is skipped. Returns ``(records, error)``.
    """
    records = list(done)
    for rng, res in zip(shards, results, strict=True):
        if isinstance(res, BaseException):
            return tuple(records), f"sample {rng.start}: {res}"
        records.extend(res.records)
        if len(res.records) < len(rng):
            return tuple(records), res.error or f"sample {rng.start + len(res.records)}: missing"
    return tuple(records), None


def _validate_parallel(path: Path, board: Board, runtime: str, emulator: str | None,
                       options: ValidateOptions, jobs: int, x: Any, labels: np.ndarray,
                       data_name: str, data_sha: str, requested: int,
                       done: tuple[SampleRecord, ...], progress: ProgressFn) -> ValidateResult:
    """Build once, then one emulator per shard of the missing samples, merged in order."""
    from concurrent.futures import ThreadPoolExecutor

    from tinyq.measure.runner import RunOptions, build_firmware, check_device, session

    check_device(board, Path("app.elf"), emulator, None)
    progress(ProgressEvent("build", f"building {path.name} for {board.name} ({runtime})"))
    firmware = build_firmware(path, board, runtime, options, progress)
    run_options = RunOptions(flash=False, timeouts=options.timeouts)
    shards = shard_ranges(len(done), requested, jobs)
    # one stop flag per shard: a failed shard stops the shards after it (their samples
    # would be dropped at the merge) and never those before it
    cancels = [threading.Event() for _ in shards]
    lock = threading.Lock()
    counts = [0] * len(shards)
    ports: list[str] = [""] * len(shards)

    def worker(k: int) -> ValidateResult:
        def report(event: ProgressEvent) -> None:
            if event.stage != "validate" or event.done is None:
                return              # N boots' chatter would drown the merged bar
            with lock:
                counts[k] = event.done
                total_done = len(done) + sum(counts)
            progress(ProgressEvent("validate", f"samples on {len(shards)} emulators",
                                   done=total_done, total=requested))

        result = None
        try:
            with session(board, firmware.elf, emulator, None, run_options) as client:
                ports[k] = client.port
                result = validate_on_device(client, path, runtime, x, labels,
                                            data_name=data_name, data_sha256=data_sha,
                                            samples=requested, board_name=board.name,
                                            progress=report, shard=shards[k],
                                            cancel=cancels[k])
        except DeviceError as exc:
            if result is None:      # failed before or at the identity check
                stop_after(k)
                raise
            log.info("closing %s failed after validate: %s", ports[k], exc)
        except BaseException:
            stop_after(k)
            raise
        if result.error is not None:
            stop_after(k)
        return result

    def stop_after(k: int) -> None:
        for event in cancels[k + 1:]:
            event.set()

    progress(ProgressEvent("validate", f"{requested - len(done)} sample(s) on "
                           f"{len(shards)} emulators", done=len(done), total=requested))
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="validate") as pool:
        futures = [pool.submit(worker, k) for k in range(len(shards))]
        results: list[ValidateResult | BaseException] = []
        try:
            for future in futures:
                results.append(_outcome(future))
        except KeyboardInterrupt:
            stop_after(-1)          # every worker stops before its next sample
            results += [_outcome(f) for f in futures[len(results):]]
    records, error = merge_shards(done, shards, results)
    first = next((r for r in results if isinstance(r, ValidateResult)), None)
    if first is None:               # no emulator got as far as the identity check
        raise results[0]            # type: ignore[misc]
    device = ports[0] + (f" and {len(shards) - 1} more" if len(shards) > 1 else "")
    return ValidateResult(
        model=str(path), model_id=first.model_id, data=data_name, data_sha256=data_sha,
        board=board.name, runtime=runtime, device=device, emulated=True, requested=requested,
        records=records, error=error, resumed=len(done), seconds=time.monotonic() - start,
        tflite_bytes=first.tflite_bytes)


def _outcome(future: Any) -> ValidateResult | BaseException:
    """A worker's result, or the error it raised (kept for the merge, never lost)."""
    try:
        return future.result()
    except KeyboardInterrupt:
        raise
    except Exception as exc:        # noqa: BLE001 - recorded as the shard's error
        return exc


def validate(model_path: str | os.PathLike[str], board: Board | str,
             data: str | os.PathLike[str], emulator: str | None = None,
             port: str | None = None, runtime: str = "native",
             options: ValidateOptions | None = None,
             resume: Mapping[str, Any] | None = None,
             progress: ProgressFn = null_progress) -> ValidateResult:
    """Build (cached), open the device once, run the samples, compare with the host.

    Example::

        result = tinyq.validate("digits_int8.tflite", "mps2-an386", data="test.npz",
                                emulator="qemu", options=tinyq.ValidateOptions(samples=20))
        print(result.device_accuracy, result.bit_exact)
    """
    from dataclasses import replace

    from tinyq import boards
    from tinyq.measure.runner import built_session, check_input_size, data_input_shape
    from tinyq.model.tflite_reader import read_model

    options = options or ValidateOptions()
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model {path} not found", hint="pass the path of a .tflite file",
                         path=str(path))
    board_obj = board if isinstance(board, Board) else boards.load(board)
    model = read_model(path)
    check_input_size(model, board_obj, path.name)
    x, labels = load_labelled(data, data_input_shape(model), options.image_scale)
    check_labels(model, labels, data)
    data_sha = file_sha256(data)
    requested = options.samples if options.samples is not None else len(labels)
    done: tuple[SampleRecord, ...] = ()
    if resume is not None:
        done = resume_records(resume, read_model(path).sha256, data_sha, requested)
        if len(done) >= requested:
            raise UserInputError(f"the --resume file already holds all {requested} samples",
                                 hint="nothing to resume; drop --resume to start afresh")
    float_accuracy = float_bytes = None
    if options.reference:
        n = min(requested, len(labels))
        float_accuracy, float_bytes = reference_accuracy(options.reference, np.asarray(x)[:n],
                                                         labels[:n], progress)
    remaining = requested - len(done)
    jobs = resolve_jobs(options.jobs, board_obj, emulator, port, remaining)
    if jobs > 1:
        result = _validate_parallel(path, board_obj, runtime, emulator, options, jobs, x,
                                    labels, str(data), data_sha, requested, done, progress)
    else:
        result = None
        try:
            with built_session(path, board_obj, runtime, emulator, port, options,
                               progress) as (_firmware, client):
                result = validate_on_device(client, path, runtime, x, labels,
                                            data_name=str(data), data_sha256=data_sha,
                                            samples=requested, done=done,
                                            board_name=board_obj.name, progress=progress)
        except DeviceError as exc:
            if result is None:       # failed before or at the identity check
                raise
            log.info("closing the device failed after validate: %s", exc)
    return replace(result, float_accuracy=float_accuracy, reference=options.reference,
                   float_model_bytes=float_bytes)


__all__ = ["SampleRecord", "ValidateOptions", "ValidateResult", "check_labels", "load_labelled",
           "merge_shards", "resolve_jobs", "resume_records", "shard_ranges", "top1", "validate",
           "validate_on_device"]
