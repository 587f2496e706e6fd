"""Quantize one float model in several modes and measure each on the same test data.

Per mode: file size, top-1 accuracy (with labels), error vs the float model (the
float32 conversion, see :mod:`tinyq.convert.evaluation`), host latency per sample, and whether
the ``tflite-micro`` interpreter runs it (actually tried: one inference).

Latency is measured on LiteRT (``ai-edge-litert``) with its default op resolver
(XNNPACK where it applies), batch 1, :data:`LATENCY_WARMUP` untimed then the median of
:data:`LATENCY_RUNS` timed invocations of the first test sample. It is a host
figure for relative comparison only, not a microcontroller latency.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from tinyq.convert.ptq import MODES, QuantizeOptions
from tinyq.errors import ConversionError, ModelError, UnsupportedError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

STAGE = "compare"
#: Untimed invocations before timing (first calls allocate and warm caches).
LATENCY_WARMUP = 5
#: Timed invocations; the median is reported.
LATENCY_RUNS = 50
LATENCY_INTERPRETER = (f"LiteRT (ai-edge-litert) default resolver, batch 1, median of "
                       f"{LATENCY_RUNS} runs")


@dataclass(frozen=True)
class CompareOptions:
    modes: tuple[str, ...] = MODES
    per_tensor_dense: bool = False
    calib_samples: int | None = None
    image_scale: str = "0-1"
    train: Any = None                   # training data: adds a "qat" row (the [qat] extra)
    qat_epochs: int = 3

    def __post_init__(self) -> None:
        for mode in self.modes:
            QuantizeOptions(mode=mode)  # validates the name


@dataclass(frozen=True)
class ModeResult:
    mode: str
    size_bytes: int | None
    accuracy: float | None
    max_abs_error: float | None
    rmse: float | None
    top1_agreement: float | None
    latency_us: float | None            # host, per sample (see LATENCY_INTERPRETER)
    tflm_runs: bool
    tflm_note: str                      # why not, when it does not
    error: str | None = None            # conversion failed: the converter's line
    tflite: bytes | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()         # layers converted in another form (unrolled...)


@dataclass(frozen=True)
class CompareReport:
    model: str
    data: str
    samples: int
    source_size_bytes: int
    reference_accuracy: float | None
    latency_interpreter: str
    rows: tuple[ModeResult, ...]

    def to_json(self) -> dict[str, Any]:
        from tinyq.records import stamp

        data = asdict(self)
        for row in data["rows"]:
            row.pop("tflite")
        return stamp("compare", data)


def host_latency_us(model_bytes: bytes, x: np.ndarray) -> float:
    """Median microseconds per inference of one sample on LiteRT's default resolver."""
    from tinyq.convert.evaluation import quantize_input
    from tinyq.model.interpreters import LiteRTInterpreter

    it = LiteRTInterpreter(model_bytes, reference_kernels=False)
    inp = it.input_details(0)
    sample = quantize_input(x[:1], inp.dtype, inp.scale, inp.zero_point).reshape(inp.shape)
    for _ in range(LATENCY_WARMUP):
        it.invoke([sample])
    times = []
    for _ in range(LATENCY_RUNS):
        t0 = time.perf_counter()
        it.invoke([sample])
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def tflm_check(model_bytes: bytes, x: np.ndarray) -> tuple[bool, str]:
    """Whether the tflite-micro interpreter prepares and runs one inference of the model."""
    from tinyq.convert.evaluation import TFLM_REJECTED_MODES, quantize_input
    from tinyq.convert.ptq import detect_mode
    from tinyq.model.interpreters import TflmInterpreter
    from tinyq.model.tflite_reader import read_model_bytes

    mode = detect_mode(read_model_bytes(model_bytes))
    try:
        it = TflmInterpreter(model_bytes)
        inp = it.input_details(0)
        it.invoke([quantize_input(x[:1], inp.dtype, inp.scale, inp.zero_point)
                   .reshape(inp.shape)])
    except (UnsupportedError, ModelError) as exc:
        return False, TFLM_REJECTED_MODES.get(mode, exc.message)
    return True, ""


def measure(mode: str, tflite: bytes, test, reference: bytes,
            reference_name: str) -> tuple[ModeResult, float | None]:
    """One table row for ``tflite`` (and the reference's accuracy on ``test``)."""
    from tinyq.convert.evaluation import evaluate_bytes

    report = evaluate_bytes(tflite, test, reference, "litert", name=mode,
                            reference_name=reference_name, layers=False)
    runs, note = tflm_check(tflite, test.x)
    m = report.metrics
    row = ModeResult(
        mode=mode, size_bytes=len(tflite), accuracy=report.accuracy,
        max_abs_error=m.max_abs_error if m else None, rmse=m.rmse if m else None,
        top1_agreement=m.top1_agreement if m else None,
        latency_us=host_latency_us(tflite, test.x), tflm_runs=runs, tflm_note=note,
        tflite=tflite)
    return row, report.reference_accuracy


def compare(model_path: str | os.PathLike[str], calib: Any, data: Any,
            options: CompareOptions = CompareOptions(),
            progress: ProgressFn = null_progress) -> CompareReport:
    """Quantize ``model_path`` in each of ``options.modes`` and measure each on ``data``.

    Example::

        report = tinyq.compare("digits.keras", calib="calib.npz", data="test.npz",
                               options=tinyq.CompareOptions(modes=("int8", "float32")))
        for row in report.rows:
            print(row.mode, row.accuracy, row.size_bytes)
    """
    from tinyq._convert_worker import ConverterProcess
    from tinyq.convert.ptq import CALIBRATED_MODES, calibration_samples
    from tinyq.data import load_data

    if options.train is not None:
        from tinyq.convert.qat_training import require_qat_extra

        require_qat_extra()  # before any conversion work
    progress(ProgressEvent(STAGE, f"loading {model_path}"))
    with ConverterProcess(model_path, progress) as converter:
        float_model = converter.load()
        test = load_data(data, input_shape=float_model.input_shape, dtype="float32",
                         image_scale=options.image_scale)
        q_options = {m: QuantizeOptions(mode=m, per_tensor_dense=options.per_tensor_dense,
                                        calib_samples=options.calib_samples,
                                        image_scale=options.image_scale)
                     for m in options.modes}
        # one calibration set serves every mode: check it against the most demanding one
        strictest = next((m for m in options.modes if m in CALIBRATED_MODES),
                         options.modes[0])
        samples = calibration_samples(calib, float_model.input_shape, q_options[strictest])
        progress(ProgressEvent(STAGE, "converting the float32 reference"))
        float32 = converter.convert(QuantizeOptions(mode="float32"))
        reference = float32.tflite
        rows, ref_acc = [], None
        for n, mode in enumerate(options.modes):
            progress(ProgressEvent(STAGE, f"{mode}: converting", n, len(options.modes)))
            try:
                converted = float32 if mode == "float32" else converter.convert(
                    q_options[mode], samples)
            except ConversionError as exc:
                rows.append(ModeResult(mode, None, None, None, None, None, None, False,
                                       "not converted", error=exc.message))
                continue
            progress(ProgressEvent(STAGE, f"{mode}: evaluating", n, len(options.modes)))
            row, ref_acc = measure(mode, converted.tflite, test, reference, str(model_path))
            rows.append(replace(row, notes=converted.notes))
    if options.train is not None:
        from tinyq.convert.qat_training import QatOptions, qat_tflite

        progress(ProgressEvent(STAGE, "qat: fine-tuning with fake quantization"))
        tflite = qat_tflite(model_path, options.train,
                            QatOptions(epochs=options.qat_epochs,
                                       calib_samples=options.calib_samples, compare_ptq=False),
                            calib=calib, progress=progress)
        row, ref_acc = measure("qat", tflite, test, reference, str(model_path))
        rows.append(row)
    progress(ProgressEvent(STAGE, "done", len(options.modes), len(options.modes)))
    return CompareReport(model=str(model_path), data=test.source, samples=len(test),
                         source_size_bytes=float_model.size_bytes, reference_accuracy=ref_acc,
                         latency_interpreter=LATENCY_INTERPRETER, rows=tuple(rows))


#: Marker area (points^2) of the first mode drawn; each later mode is drawn smaller
#: (PLOT_MARKER_SHRINK), so modes with the same size and accuracy (int8 and dynamic on
#: small models) show as concentric rings instead of one hiding the other.
PLOT_MARKER_AREA = 220.0
PLOT_MARKER_SHRINK = 0.6
#: Markers per mode, in the order of the rows.
PLOT_MARKERS = "osD^vP"


def figure(report: CompareReport):
    """The compare figure (matplotlib): one marker per mode, accuracy axis ending at 100 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.size_bytes is not None]
    use_acc = any(r.accuracy is not None for r in rows)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    lowest = 100.0
    area = PLOT_MARKER_AREA
    for i, r in enumerate(rows):
        y = r.accuracy if use_acc else r.top1_agreement
        if y is None:
            continue
        color = "tab:blue" if r.tflm_runs else "tab:red"
        ax.scatter(r.size_bytes / 1024, 100 * y, s=area, marker=PLOT_MARKERS[i % len(
            PLOT_MARKERS)], facecolors="none" if i else color, edgecolors=color,
            linewidths=1.5, label=r.mode, zorder=3 + i, clip_on=False)
        area *= PLOT_MARKER_SHRINK
        lowest = min(lowest, 100 * y)
        ax.annotate(r.mode, (r.size_bytes / 1024, 100 * y), textcoords="offset points",
                    xytext=(8, 6 - 11 * (i % 3)), fontsize=9)  # staggered: sizes may coincide
    ax.set_ylim(max(0.0, lowest - 5.0), 100.0)       # accuracy ends at 100 %, not at 102
    ax.set_xlabel("model size (KiB)")
    ax.set_ylabel("top-1 accuracy (%)" if use_acc else "top-1 agreement with float (%)")
    ax.set_title(f"{os.path.basename(report.model)}: blue = TFLM runs it, red = it does not",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot(report: CompareReport, path: str | os.PathLike[str], force: bool = False,
         inputs: Any = ()) -> None:
    """PNG: accuracy (or top-1 agreement without labels) against file size, one point per mode.

    ``inputs``: paths the PNG may not replace (the compared model and data by default)."""
    inputs = tuple(inputs) or (report.model, report.data)
    import matplotlib.pyplot as plt

    from tinyq.fileio import atomic_path

    fig = figure(report)
    try:
        with atomic_path(path, force, inputs=inputs) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
