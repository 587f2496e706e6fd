"""``tinyq validate``: accuracy on the device, sample by sample, against the host.

Streams N samples to the device in **one session** (``db load``/``db``
with the runner's 31-byte chunks, ``infer 1 0``, ``tq-out``), reads every raw
output back and computes, on the device and on the host with the ``tflite-micro``
interpreter (the oracle), the measures of the model's task (:data:`TASKS`, chosen
from the labels and the output shape by :func:`choose_task`, or given):

* ``classify``: top-1 accuracy, per-class precision and recall, a confusion matrix;
  optionally the float model's accuracy (``reference``, via :mod:`tinyq.convert.evaluation`);
* ``regress`` (float targets of the output's shape): MAE, RMSE, cosine similarity and
  L2 relative error ``||y - y_hat|| / ||y||`` over all values of all samples;
* ``anomaly`` (an autoencoder, output shape = input shape, or a one-value score): each
  sample's score, the mean squared reconstruction error over its values (as MLPerf
  Tiny's anomaly-detection reference scores; against the input the model saw) or the
  score itself, its mean, and the ROC AUC when labels (0 normal, 1 anomaly) are given;

and always how many outputs are byte-identical to the host's and the largest LSB
difference.

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


#: What validate measures: top-1 and confusion, regression errors, anomaly scores.
TASKS = ("classify", "regress", "anomaly")
#: Per-sample values a regress record keeps (sums over the sample's output values) so the
#: metrics of any subset (a shard, a resumed run) add up exactly.
REGRESS_VALUES = ("values", "device_abs", "device_sq", "device_dot", "device_norm2",
                  "host_abs", "host_sq", "host_dot", "host_norm2", "target_norm2",
                  "device_host_abs", "device_host_sq")
#: Per-sample values an anomaly record keeps.
ANOMALY_VALUES = ("device_score", "host_score")


def sample_columns(task: str) -> tuple[str, ...]:
    """The ``per_sample_columns`` of a ``task`` record."""
    if task == "classify":
        return ("index", "label", "device_pred", "host_pred", "lsb_diff")
    return ("index", "label", "lsb_diff",
            *(REGRESS_VALUES if task == "regress" else ANOMALY_VALUES))


@dataclass(frozen=True)
class ValidateOptions:
    """Options of ``tinyq validate`` beyond model, board, device and data."""

    samples: int | None = None          # the first N samples (None: all)
    task: str | None = None             # one of TASKS (None: from labels and output shape)
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
    label: int | None          # class (classify), 0/1 (anomaly, if given); None for regress
    device_pred: int | None    # top-1 classes (classify only)
    host_pred: int | None
    lsb_diff: int              # largest |device - host| over the outputs, in quanta
    values: tuple[float, ...] = ()   # REGRESS_VALUES or ANOMALY_VALUES (other tasks)

    @property
    def bit_exact(self) -> bool:
        return self.lsb_diff == 0

    def to_list(self) -> list[Any]:
        if not self.values:
            return [self.index, self.label, self.device_pred, self.host_pred, self.lsb_diff]
        return [self.index, self.label, self.lsb_diff, *self.values]

    @classmethod
    def from_list(cls, row: Sequence[Any], task: str = "classify") -> SampleRecord:
        if task == "classify":
            index, label, device_pred, host_pred, lsb = (int(v) for v in row)
            return cls(index, label, device_pred, host_pred, lsb)
        width = len(sample_columns(task))
        if len(row) != width:
            raise ValueError(f"a {task} row has {width} values, not {len(row)}")
        label = None if row[1] is None else int(row[1])
        return cls(int(row[0]), label, None, None, int(row[2]),
                   tuple(float(v) for v in row[3:]))


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
    task: str = "classify"               # one of TASKS
    classes: int = 0                     # classify: how many classes the model picks from
    score: str | None = None             # anomaly: "reconstruction_mse" or "output"

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
        if not self.records or self.task != "classify":
            return None
        return sum(r.device_pred == r.label for r in self.records) / self.samples

    @property
    def host_accuracy(self) -> float | None:
        if not self.records or self.task != "classify":
            return None
        return sum(r.host_pred == r.label for r in self.records) / self.samples

    def confusion(self, side: str) -> list[list[int]] | None:
        """classify: counts[true class][predicted class] of ``side`` ("device"/"host")."""
        if self.task != "classify":
            return None
        return confusion_matrix(self.records, self.classes, side)

    @property
    def per_class(self) -> list[dict[str, Any]] | None:
        """classify: support, precision and recall of each class on the device and host."""
        if self.task != "classify":
            return None
        return per_class_metrics(self.confusion("device") or [], self.confusion("host") or [])

    @property
    def regression(self) -> dict[str, Any] | None:
        """regress: {"device": {mae, rmse, cosine, l2r}, "host": ..., "device_vs_host": ...}."""
        return regression_metrics(self.records) if self.task == "regress" else None

    @property
    def anomaly(self) -> dict[str, Any] | None:
        """anomaly: mean score and AUC on the device and host, largest score difference."""
        return anomaly_metrics(self.records, self.score) if self.task == "anomaly" else None

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
    def agreement(self) -> int | None:
        """classify: samples where the device and the host predict the same class."""
        if self.task != "classify":
            return None
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
            "task": self.task,
            "classes": self.classes if self.task == "classify" else None,
            "per_class": self.per_class,
            "confusion_device": self.confusion("device"),
            "confusion_host": self.confusion("host"),
            "regression": self.regression,
            "anomaly": self.anomaly,
            "per_sample_columns": list(sample_columns(self.task)),
            "per_sample": [r.to_list() for r in self.records],
        })


# -- metrics ----------------------------------------------------------------------------

def confusion_matrix(records: Sequence[SampleRecord], classes: int,
                     side: str) -> list[list[int]]:
    """counts[true class][predicted class] of the ``side`` ("device" or "host") predictions."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    for r in records:
        pred = r.device_pred if side == "device" else r.host_pred
        if r.label is not None and pred is not None and 0 <= r.label < classes \
                and 0 <= pred < classes:
            counts[r.label, pred] += 1
    return counts.tolist()


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def per_class_metrics(device: Sequence[Sequence[int]],
                      host: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Per class: support (true samples) and precision/recall of the device and host
    confusion matrices (None where a class was never predicted, or never present)."""
    out = []
    for k in range(len(device)):
        row: dict[str, Any] = {"class": k, "support": int(sum(device[k]))}
        for side, m in (("device", np.asarray(device)), ("host", np.asarray(host))):
            row[f"{side}_precision"] = _ratio(m[k, k], m[:, k].sum())
            row[f"{side}_recall"] = _ratio(m[k, k], m[k, :].sum())
        out.append(row)
    return out


def regression_stats(device: np.ndarray, host: np.ndarray,
                     target: np.ndarray) -> tuple[float, ...]:
    """One sample's REGRESS_VALUES from dequantized outputs and its target."""
    d, h, t = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (device, host, target))
    return (float(t.size), float(np.abs(d - t).sum()), float(((d - t) ** 2).sum()),
            float(d @ t), float(d @ d), float(np.abs(h - t).sum()), float(((h - t) ** 2).sum()),
            float(h @ t), float(h @ h), float(t @ t), float(np.abs(d - h).sum()),
            float(((d - h) ** 2).sum()))


def regression_metrics(records: Sequence[SampleRecord]) -> dict[str, Any]:
    """MAE, RMSE, cosine similarity and L2 relative error over every value of every sample,
    on the device and the host, and the device's MAE/RMSE against the host."""
    total = dict.fromkeys(REGRESS_VALUES, 0.0)
    for r in records:
        for key, value in zip(REGRESS_VALUES, r.values, strict=True):
            total[key] += value
    n, t2 = total["values"], total["target_norm2"]

    def side(name: str) -> dict[str, float | None]:
        sq = total[f"{name}_sq"]
        return {"mae": _ratio(total[f"{name}_abs"], n),
                "rmse": None if n == 0 else float(np.sqrt(sq / n)),
                "cosine": _ratio(total[f"{name}_dot"], np.sqrt(total[f"{name}_norm2"] * t2)),
                "l2r": _ratio(np.sqrt(sq), np.sqrt(t2))}

    return {"device": side("device"), "host": side("host"),
            "device_vs_host": {"mae": _ratio(total["device_host_abs"], n),
                               "rmse": None if n == 0 else
                               float(np.sqrt(total["device_host_sq"] / n))}}


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve of ``scores`` for labels 1 (anomaly) vs 0 (normal): the
    chance a random anomaly scores above a random normal sample (ties count half).
    None unless both kinds are present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
    values = np.concatenate([neg, pos])[order]
    ranks = np.empty(len(values))
    ranks[order] = _average_ranks(values)
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    """1-based ranks of sorted values, tied values sharing their mean rank."""
    ranks = np.arange(1, len(sorted_values) + 1, dtype=np.float64)
    start = 0
    for i in range(1, len(sorted_values) + 1):
        if i == len(sorted_values) or sorted_values[i] != sorted_values[start]:
            ranks[start:i] = ranks[start:i].mean()
            start = i
    return ranks


def anomaly_metrics(records: Sequence[SampleRecord], score: str | None) -> dict[str, Any]:
    """Mean score and ROC AUC (with labels) on the device and host, largest difference."""
    dev = [r.values[0] for r in records]
    host = [r.values[1] for r in records]
    labelled = [r for r in records if r.label is not None]
    labels = [r.label for r in labelled] if len(labelled) == len(records) else None
    return {"score": score,
            "device_mean_score": float(np.mean(dev)) if dev else None,
            "host_mean_score": float(np.mean(host)) if host else None,
            "device_auc": roc_auc(dev, labels) if labels else None,
            "host_auc": roc_auc(host, labels) if labels else None,
            "max_score_diff": max((abs(a - b) for a, b in zip(dev, host, strict=True)),
                                  default=0.0)}


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


def _per_sample_size(tensor: Any) -> int:
    return int(np.prod([max(int(d), 1) for d in tensor.shape[1:]], dtype=np.int64))


def choose_task(model: Any, y: np.ndarray | None, task: str | None = None) -> str:
    """The task validate measures for ``model`` (an ``ir.Model``) and labels ``y``.

    Given ``task`` wins. Otherwise: no labels, or 0/1 labels for a model whose output has
    its input's shape (an autoencoder), is ``anomaly``; float (non-integer) labels holding
    as many values per sample as the output, other than rows of class probabilities, are
    ``regress``; anything else (class indices, one-hot or soft labels) ``classify``.
    """
    if task is not None:
        if task not in TASKS:
            raise UserInputError(f"unknown task {task!r}",
                                 hint=f"pass --task {', '.join(TASKS)}")
        return task
    out_size = _per_sample_size(model.output_tensors[0])
    autoencoder = len(model.input_tensors) == 1 and \
        _per_sample_size(model.input_tensors[0]) == out_size and out_size > 1
    if y is None:
        return "anomaly" if autoencoder else "classify"   # classify: "needs labels"
    y = np.asarray(y)
    if autoencoder and y.size == len(y) and np.isin(y, (0, 1)).all():
        return "anomaly"
    integral = np.issubdtype(y.dtype, np.integer) or \
        bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    if len(y) and y.size // len(y) == out_size and not integral \
            and not _probability_rows(y):
        return "regress"
    return "classify"


#: How far from 1 a row of class probabilities may sum (float32 soft labels).
PROBABILITY_SUM_TOLERANCE = 1e-3


def _probability_rows(y: np.ndarray) -> bool:
    """Rows of class probabilities (soft or smoothed one-hot labels): classify, not regress."""
    if y.ndim != 2 or y.shape[1] < 2 or not np.all(np.isfinite(y)):
        return False
    return bool(np.all((y >= 0) & (y <= 1))
                and np.all(np.abs(y.sum(axis=1) - 1) <= PROBABILITY_SUM_TOLERANCE))


def load_task_data(path: str | os.PathLike[str], model: Any, task: str | None = None,
                   image_scale: str = DEFAULT_IMAGE_SCALE
                   ) -> tuple[Any, np.ndarray | None, str]:
    """Inputs, labels and task of a test set for ``model`` (an ``ir.Model``).

    Labels are class indices (classify), float targets ``(N, *output shape)`` (regress),
    or 0/1 per sample or None (anomaly); each refused with one line when they do not fit.
    """
    from tinyq.data import load_data
    from tinyq.measure.runner import data_input_shape

    loaded = load_data(path, input_shape=data_input_shape(model), image_scale=image_scale)
    task = choose_task(model, loaded.y, task)
    where = str(path)
    if task == "classify":
        labels = labels_of(loaded.y, path)
        check_labels(model, labels, path)
        return loaded.x, labels, task
    if task == "regress":
        out_size = _per_sample_size(model.output_tensors[0])
        if loaded.y is None:
            raise DataError(f"{where} has no targets `y`: regression needs them",
                            hint="save the file with numpy.savez(path, x=..., y=...)")
        y = np.asarray(loaded.y, dtype=np.float64)
        if not len(y) or y.size // len(y) != out_size or y.size != len(y) * out_size:
            raise DataError(f"the targets in {where} have shape {y.shape}; the model's output "
                            f"holds {out_size} values per sample",
                            hint=f"store targets of shape (N, {out_size}) under 'y'")
        if not np.all(np.isfinite(y)):
            raise DataError(f"the targets in {where} hold NaN or infinite values",
                            hint="store finite float targets under 'y'")
        return loaded.x, y.reshape(len(y), out_size), task
    # anomaly
    out_size = _per_sample_size(model.output_tensors[0])
    in_size = _per_sample_size(model.input_tensors[0]) if len(model.input_tensors) == 1 else -1
    if out_size not in (1, in_size):
        raise ModelError(f"anomaly validation needs a reconstruction (output shape = input "
                         f"shape) or a one-value score; this output holds {out_size} values "
                         f"per sample", hint="pass --task classify or regress for this model")
    if loaded.y is None:
        return loaded.x, None, task
    y = np.asarray(loaded.y).reshape(len(loaded.y), -1)
    if y.shape[1] != 1 or not np.isin(y, (0, 1)).all():
        raise DataError(f"the labels in {where} are not 0 (normal) / 1 (anomaly) per sample",
                        hint="store one 0/1 label per sample under 'y', or none")
    return loaded.x, y[:, 0].astype(np.int64), task


def labels_of(y: Any, where: str | os.PathLike[str] = "the data") -> np.ndarray:
    """Class indices from integer labels or one-hot rows."""
    from tinyq.data import require_class_labels

    return require_class_labels(y, str(where))


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a tensor's raw values (float tensors as they are)."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer) and scale > 0:
        return (arr.astype(np.float64) - zero_point) * scale
    return arr.astype(np.float64)


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
                   requested: int, task: str = "classify") -> tuple[SampleRecord, ...]:
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
    if previous.get("task", "classify") != task:
        raise UserInputError(f"the --resume file measured task {previous.get('task')}, not "
                             f"{task}", hint=f"resume with --task {previous.get('task')}, "
                                             "or start afresh")
    try:
        records = tuple(SampleRecord.from_list(row, task)
                        for row in previous.get("per_sample", ()))
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
                       x: Any, labels: np.ndarray | None, *, data_name: str = "",
                       data_sha256: str = "", samples: int | None = None,
                       done: Sequence[SampleRecord] = (), board_name: str = "",
                       progress: ProgressFn = null_progress, shard: range | None = None,
                       cancel: threading.Event | None = None,
                       task: str = "classify") -> ValidateResult:
    """Run every sample not yet ``done`` on an open, ready device; never raises mid-way.

    ``labels``: as :func:`load_task_data` gives them for ``task``.

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
    if labels is not None and len(all_samples) != len(labels):
        raise DataError(f"{data_name or 'the data'} has {len(all_samples)} inputs but "
                        f"{len(labels)} labels", hint="store one label per sample")
    requested = len(all_samples) if samples is None else samples
    if requested < 1 or requested > len(all_samples):
        raise DataError(f"--samples {requested} is outside 1..{len(all_samples)} "
                        f"({data_name or 'the data'} holds {len(all_samples)})",
                        hint=f"pass --samples between 1 and {len(all_samples)}")
    out_spec = _specs(model.output_tensors)[0]
    in_spec = specs[0]
    score = None
    if task == "anomaly":
        score = "output" if _per_sample_size(model.output_tensors[0]) == 1 \
            else "reconstruction_mse"
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
        records.append(_sample_record(task, i, labels, device0, reference[0], sample[0],
                                      max(diffs, default=0), out_spec, in_spec))
        n = len(records)
        if n % PROGRESS_EVERY == 0 or i + 1 == indices.stop:
            progress(ProgressEvent("validate", "samples on the device", done=n,
                                   total=requested))
    return ValidateResult(
        model=str(path), model_id=ident.model_id, data=data_name, data_sha256=data_sha256,
        board=board_name or ident.board, runtime=runtime, device=client.port,
        emulated=client.device.is_emulated, requested=requested, records=tuple(records),
        error=error, resumed=len(done), seconds=time.monotonic() - start,
        tflite_bytes=len(model_bytes), task=task, score=score,
        classes=max(2, _per_sample_size(model.output_tensors[0])))


def _sample_record(task: str, i: int, labels: np.ndarray | None, device: np.ndarray,
                   host: np.ndarray, model_input: np.ndarray, lsb: int, out_spec: Any,
                   in_spec: Any) -> SampleRecord:
    """One sample's record: the classes (classify) or the task's values (others)."""
    if task == "classify":
        assert labels is not None
        return SampleRecord(index=i, label=int(labels[i]),
                            device_pred=top1(device, out_spec.scale, out_spec.zero_point),
                            host_pred=top1(host, out_spec.scale, out_spec.zero_point),
                            lsb_diff=lsb)
    d = dequantize(device, out_spec.scale, out_spec.zero_point).reshape(-1)
    h = dequantize(host, out_spec.scale, out_spec.zero_point).reshape(-1)
    if task == "regress":
        assert labels is not None
        return SampleRecord(i, None, None, None, lsb, regression_stats(d, h, labels[i]))
    if d.size == 1:
        values = (float(d[0]), float(h[0]))
    else:           # reconstruction error against the input the model saw
        seen = dequantize(model_input, in_spec.scale, in_spec.zero_point).reshape(-1)
        values = (float(np.mean((d - seen) ** 2)), float(np.mean((h - seen) ** 2)))
    return SampleRecord(i, None if labels is None else int(labels[i]), None, None, lsb, values)


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
                       options: ValidateOptions, jobs: int, x: Any, labels: np.ndarray | None,
                       data_name: str, data_sha: str, requested: int,
                       done: tuple[SampleRecord, ...], progress: ProgressFn,
                       task: str = "classify") -> ValidateResult:
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
                                            cancel=cancels[k], task=task)
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
        tflite_bytes=first.tflite_bytes, task=task, classes=first.classes, score=first.score)


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

    What is measured follows ``options.task`` or, by default, the labels and the output
    shape (:func:`choose_task`): top-1 accuracy with per-class precision/recall and
    confusion matrices, regression errors, or anomaly scores and AUC.

    Example::

        result = tinyq.validate("digits_int8.tflite", "mps2-an386", data="test.npz",
                                emulator="qemu", options=tinyq.ValidateOptions(samples=20))
        print(result.device_accuracy, result.bit_exact)
    """
    from dataclasses import replace

    from tinyq.measure.runner import built_session, load_target

    options = options or ValidateOptions()
    path, board_obj, model = load_target(model_path, board)
    x, labels, task = load_task_data(data, model, options.task, options.image_scale)
    if options.reference and task != "classify":
        raise UserInputError(f"--reference reports a float model's top-1 accuracy, which a "
                             f"{task} model has not", hint="drop --reference")
    data_sha = file_sha256(data)
    requested = options.samples if options.samples is not None else len(x)
    done: tuple[SampleRecord, ...] = ()
    if resume is not None:
        done = resume_records(resume, model.sha256, data_sha, requested, task)
        if len(done) >= requested:
            raise UserInputError(f"the --resume file already holds all {requested} samples",
                                 hint="nothing to resume; drop --resume to start afresh")
    float_accuracy = float_bytes = None
    if options.reference:
        assert labels is not None
        n = min(requested, len(labels))
        float_accuracy, float_bytes = reference_accuracy(options.reference, np.asarray(x)[:n],
                                                         labels[:n], progress)
    remaining = requested - len(done)
    jobs = resolve_jobs(options.jobs, board_obj, emulator, port, remaining)
    if jobs > 1:
        result = _validate_parallel(path, board_obj, runtime, emulator, options, jobs, x,
                                    labels, str(data), data_sha, requested, done, progress,
                                    task)
    else:
        result = None
        try:
            with built_session(path, board_obj, runtime, emulator, port, options,
                               progress) as (_firmware, client):
                result = validate_on_device(client, path, runtime, x, labels,
                                            data_name=str(data), data_sha256=data_sha,
                                            samples=requested, done=done,
                                            board_name=board_obj.name, progress=progress,
                                            task=task)
        except DeviceError as exc:
            if result is None:       # failed before or at the identity check
                raise
            log.info("closing the device failed after validate: %s", exc)
    return replace(result, float_accuracy=float_accuracy, reference=options.reference,
                   float_model_bytes=float_bytes)


__all__ = ["TASKS", "SampleRecord", "ValidateOptions", "ValidateResult", "anomaly_metrics",
           "check_labels", "choose_task", "confusion_matrix", "load_labelled", "load_task_data",
           "per_class_metrics", "regression_metrics", "roc_auc",
           "merge_shards", "resolve_jobs", "resume_records", "shard_ranges", "top1", "validate",
           "validate_on_device"]
