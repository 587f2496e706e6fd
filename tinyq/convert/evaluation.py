"""Measure a .tflite model on host interpreters, against labels and a float reference.

What is run:

* the model under test on LiteRT (``ai-edge-litert``, reference kernels, so results
  are deterministic) or on the ``tflite-micro`` interpreter (``runtime="tflm"``, what a
  microcontroller computes). Float samples are quantized with the input tensor's
  scale/zero point (q = round(x / scale) + zero_point, clipped); samples whose dtype
  already is the integer input dtype are fed as they are. Outputs are dequantized:
  real = scale x (q - zero_point).
* the float reference: a float ``.tflite``, or a Keras/SavedModel converted to a float32
  ``.tflite`` in memory (same converter, batch 1), both on LiteRT. Running the float
  .tflite instead of Keras gives a graph with the same op structure as the quantized
  one, which is what the per-layer comparison needs (outputs agree with Keras to
  float rounding).

Metrics against the reference (first output, all samples): max abs error, RMSE,
relative L2 (||q - f|| / ||f||), mean per-sample cosine similarity, top-1 agreement.
Top-1 accuracy when the data has class labels (labels outside the first output's
classes are refused, see :func:`tinyq.data.check_label_range`).

Per-layer SQNR: both models run with every intermediate tensor preserved on the first
:data:`LAYER_SAMPLES` samples. Each op of the model under test (QUANTIZE and
DEQUANTIZE skipped: they only convert types) is matched to the reference op whose
output tensor has the same name; ops without a name match are matched by position
after aligning the two op sequences (QUANTIZE/DEQUANTIZE removed; ``difflib`` longest
matching blocks of op names, so an op one graph has and the other lacks shifts
nothing), and only when the output shapes agree. Its
dequantized output gives SQNR = 10 log10(sum f^2 / sum (q - f)^2) in dB (infinite when
equal). Outputs that are not float/int8/int16 (shapes, indices) and unmatched ops are
skipped and listed in :attr:`EvalReport.layers_skipped`.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyq.errors import ModelError, UnsupportedError, UserInputError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

STAGE = "evaluate"
RUNTIMES = ("litert", "tflm")
#: Samples run with every tensor preserved for the per-layer SQNR (a few dozen give a
#: stable figure; the full data set would only cost time).
LAYER_SAMPLES = 32
#: Ops that only convert between dtypes: not layers of the model.
CONVERT_OPS = ("QUANTIZE", "DEQUANTIZE")
#: Modes the tflite-micro interpreter rejects, and why (its own message is a generic
#: "failed to allocate tensors"; measured with tflite-micro 0.dev20261023182759).
TFLM_REJECTED_MODES = {
    "dynamic": "TFLM does not run hybrid (dynamic-range) models",
    "float16": "TFLM cannot dequantize float16 weights",
}
#: Samples sent to the interpreter's child process per round trip (and per progress
#: update): large enough that the pipe costs little, small enough to show progress.
INVOKE_CHUNK = 256
#: Tensor dtypes compared per layer.
COMPARED_DTYPES = ("float32", "int8", "int16", "uint8")


@dataclass(frozen=True)
class Metrics:
    """Model outputs vs the float reference's (first output, all samples)."""

    max_abs_error: float
    rmse: float
    relative_l2: float
    cosine_similarity: float        # mean over samples
    top1_agreement: float | None    # None for single-value outputs


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one op output vs the reference's matching op output."""

    index: int                      # op index in the model under test
    name: str                       # output tensor name
    op: str
    sqnr_db: float                  # math.inf when equal
    max_abs_error: float
    matched_by: str                 # "name" or "position"

    def to_json(self) -> dict[str, Any]:
        finite = math.isfinite(self.sqnr_db)
        return {"name": self.name, "op": self.op, "index": self.index,
                "sqnr_db": round(self.sqnr_db, 3) if finite else None,
                "exact": self.sqnr_db == math.inf, "max_abs_error": self.max_abs_error,
                "matched_by": self.matched_by}


@dataclass(frozen=True)
class EvalReport:
    model: str
    mode: str
    size_bytes: int
    runtime: str
    samples: int
    accuracy: float | None
    reference: str | None
    reference_accuracy: float | None
    metrics: Metrics | None
    layers: tuple[LayerError, ...]            # worst (lowest SQNR) first
    layers_skipped: tuple[str, ...]
    layer_samples: int
    outputs: np.ndarray = field(repr=False, compare=False)   # dequantized first output

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        from tinyq.records import stamp

        return stamp("evaluate", {
            "model": self.model, "mode": self.mode, "size_bytes": self.size_bytes,
            "interpreter": self.runtime, "samples": self.samples, "accuracy": self.accuracy,
            "reference": self.reference, "reference_accuracy": self.reference_accuracy,
            "metrics": asdict(self.metrics) if self.metrics else None,
            "layers": [layer.to_json() for layer in self.layers],
            "layers_skipped": list(self.layers_skipped),
            "layer_samples": self.layer_samples,
        })


# --------------------------------------------------------------------------- running

def make_interpreter(model_bytes: bytes, runtime: str, preserve_all_tensors: bool = False,
                     name: str = "the model"):
    """The interpreter for ``runtime``, in a child process (a corrupt model that crashes
    it ends in one error line naming ``name``, not in a crash of tinyq)."""
    from tinyq.model.interpreters import open_interpreter

    if runtime in RUNTIMES:
        return open_interpreter(model_bytes, runtime, name=name,
                                preserve_all_tensors=preserve_all_tensors)
    raise UserInputError(f"unknown runtime {runtime!r}", hint=f"use one of {', '.join(RUNTIMES)}")


def quantize_input(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Samples in the model's input dtype: q = round(x / scale) + zero_point, clipped."""
    if x.dtype == dtype:
        return x
    if dtype.kind == "f":
        return x.astype(dtype)
    if not scale:
        raise ModelError(f"the model's {dtype} input has no quantization scale",
                         hint="pass data already in the input dtype")
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if q.dtype.kind == "f":
        return q.astype(np.float32)
    if not scale:
        return q.astype(np.float32)
    return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


def run_model(model_bytes: bytes, x: np.ndarray, runtime: str = "litert",
              progress: ProgressFn = null_progress, what: str = "model",
              name: str | None = None) -> np.ndarray:
    """Dequantized first output for every sample of ``x`` (batch first), one at a time."""
    it = make_interpreter(model_bytes, runtime, name=name or what)
    inp, out = it.input_details(0), it.output_details(0)
    xq = quantize_input(x, inp.dtype, inp.scale, inp.zero_point)
    results = np.empty((len(x), *out.shape[1:]), dtype=np.float32)
    step = max(1, min(INVOKE_CHUNK, len(x) // 20))
    for start in range(0, len(x), step):
        end = min(start + step, len(x))
        # each sample is a whole input, as the float model saw it: a stateful model (LSTM,
        # SVDF) starts every sample from a reset state
        outputs = it.invoke_many([[xq[i:i + 1].reshape(inp.shape)] for i in range(start, end)],
                                 reset_state=it.has_state)
        for i, ys in zip(range(start, end), outputs, strict=True):
            results[i] = dequantize(ys[0], out.scale, out.zero_point).reshape(out.shape[1:])
        progress(ProgressEvent(STAGE, f"running {what} on {runtime}", end, len(x)))
    return results


def compute_metrics(outputs: np.ndarray, reference: np.ndarray) -> Metrics:
    q = outputs.reshape(len(outputs), -1).astype(np.float64)
    f = reference.reshape(len(reference), -1).astype(np.float64)
    diff = q - f
    norm_f = float(np.linalg.norm(f))
    norms = np.linalg.norm(q, axis=1) * np.linalg.norm(f, axis=1)
    dots = np.sum(q * f, axis=1)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0),
                   np.where(np.all(diff == 0, axis=1), 1.0, 0.0))
    return Metrics(
        max_abs_error=float(np.max(np.abs(diff))) if diff.size else 0.0,
        rmse=float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0,
        relative_l2=float(np.linalg.norm(diff) / norm_f) if norm_f > 0 else
        (0.0 if not diff.any() else math.inf),
        cosine_similarity=float(np.mean(cos)),
        top1_agreement=float(np.mean(np.argmax(q, 1) == np.argmax(f, 1))) if q.shape[1] > 1
        else None)


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    flat = outputs.reshape(len(outputs), -1)
    if flat.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(flat, axis=1) == labels[: len(flat)]))


def output_classes(model) -> int:
    """How many scores the first output holds per sample (the classes top-1 picks from)."""
    return int(np.prod(model.output_tensors[0].shape[1:], dtype=np.int64))


def sqnr_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


# --------------------------------------------------------------------------- per layer

def _layer_ops(model) -> list:
    return [op for op in model.operators if op.opcode not in CONVERT_OPS]


def match_layers(model, reference) -> tuple[list[tuple[Any, Any, str]], list[str]]:
    """[(op, reference op, "name"|"position")] and the skipped ops with reasons."""
    ops, ref_ops = _layer_ops(model), _layer_ops(reference)
    by_name = {reference.tensors[op.outputs[0]].name: op for op in ref_ops if op.outputs}
    matcher = difflib.SequenceMatcher(None, [o.opcode for o in ops],
                                      [o.opcode for o in ref_ops], autojunk=False)
    aligned = {block.a + k: block.b + k for block in matcher.get_matching_blocks()
               for k in range(block.size)}
    matched, skipped = [], []
    for pos, op in enumerate(ops):
        if not op.outputs:
            continue
        tensor = model.tensors[op.outputs[0]]
        label = f"{op.opcode} #{op.index} ({tensor.name})"
        if tensor.dtype not in COMPARED_DTYPES:
            skipped.append(f"{label}: {tensor.dtype} output")
            continue
        ref = by_name.get(tensor.name)
        how = "name"
        if ref is None and pos in aligned:
            ref, how = ref_ops[aligned[pos]], "position"
        if ref is None:
            skipped.append(f"{label}: no reference op with this output name")
            continue
        ref_tensor = reference.tensors[ref.outputs[0]]
        if tuple(ref_tensor.shape) != tuple(tensor.shape):
            skipped.append(f"{label}: shape {tensor.shape} vs reference {ref_tensor.shape}")
            continue
        if ref_tensor.dtype != "float32":
            skipped.append(f"{label}: reference output is {ref_tensor.dtype}")
            continue
        matched.append((op, ref, how))
    return matched, skipped


def layer_errors(model_bytes: bytes, reference_bytes: bytes, x: np.ndarray, runtime: str,
                 progress: ProgressFn = null_progress, name: str = "the model",
                 reference_name: str = "the reference"
                 ) -> tuple[tuple[LayerError, ...], tuple[str, ...]]:
    """Per-op SQNR of ``model_bytes`` against the float ``reference_bytes`` (worst first)."""
    from tinyq.model.tflite_reader import read_model_bytes

    model, reference = read_model_bytes(model_bytes), read_model_bytes(reference_bytes)
    matched, skipped = match_layers(model, reference)
    if not matched:
        return (), tuple(skipped)
    it = make_interpreter(model_bytes, runtime, preserve_all_tensors=True, name=name)
    ref_it = make_interpreter(reference_bytes, "litert", preserve_all_tensors=True,
                              name=reference_name)
    inp, ref_inp = it.input_details(0), ref_it.input_details(0)
    xq = quantize_input(x, inp.dtype, inp.scale, inp.zero_point)
    xf = x.astype(np.float32) if x.dtype.kind == "f" else dequantize(
        x, inp.scale, inp.zero_point)
    signal = np.zeros(len(matched))
    noise = np.zeros(len(matched))
    worst = np.zeros(len(matched))
    for i in range(len(x)):
        for interp in (it, ref_it):
            if interp.has_state:   # each sample is a whole input (see run_model)
                interp.reset_state()
        it.invoke([xq[i:i + 1].reshape(inp.shape)])
        ref_it.invoke([xf[i:i + 1].reshape(ref_inp.shape)])
        for k, (op, ref, _) in enumerate(matched):
            t = model.tensors[op.outputs[0]]
            q = it.tensor(t.index).reshape(t.shape)
            scale, zp = (t.quant.scale[0], t.quant.zero_point[0]) if t.quant else (0.0, 0)
            got = dequantize(q, scale, zp).astype(np.float64)
            want = ref_it.tensor(ref.outputs[0]).reshape(t.shape).astype(np.float64)
            signal[k] += float(np.sum(want ** 2))
            noise[k] += float(np.sum((got - want) ** 2))
            worst[k] = max(worst[k], float(np.max(np.abs(got - want))) if got.size else 0.0)
        progress(ProgressEvent(STAGE, "per-layer SQNR", i + 1, len(x)))
    layers = [LayerError(op.index, model.tensors[op.outputs[0]].name, op.opcode,
                         sqnr_db(signal[k], noise[k]), worst[k], how)
              for k, (op, _, how) in enumerate(matched)]
    layers.sort(key=lambda e: (e.sqnr_db, e.index))
    return tuple(layers), tuple(skipped)


# --------------------------------------------------------------------------- entry points

def reference_tflite(reference: str | os.PathLike[str] | bytes,
                     progress: ProgressFn = null_progress) -> tuple[bytes, str]:
    """The float reference as .tflite bytes (Keras/SavedModel converted to float32)."""
    if isinstance(reference, bytes):
        return reference, "float .tflite (in memory)"
    p = Path(reference)
    if p.suffix.lower() == ".tflite":
        from tinyq.model.tflite_reader import read_model

        model = read_model(p)
        from tinyq.convert.ptq import detect_mode

        mode = detect_mode(model)
        if mode != "float32":
            raise UserInputError(f"the reference {p} is a {mode} model, not float32",
                                 hint="pass the float model (.keras/.h5/SavedModel or a "
                                      "float32 .tflite) as --reference")
        return p.read_bytes(), str(p)
    from tinyq._convert_worker import convert_file
    from tinyq.convert.ptq import QuantizeOptions

    progress(ProgressEvent(STAGE, f"converting the reference {p} to float32 .tflite"))
    return convert_file(p, QuantizeOptions(mode="float32"), progress=progress), str(p)


def _check_reference(model, reference, ref_name: str) -> None:
    a, b = model.input_tensors[0], reference.input_tensors[0]
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        raise UserInputError(f"the reference {ref_name} takes input {b.shape}, the model "
                             f"{a.shape}", hint="pass the float model this one came from")
    a, b = model.output_tensors[0], reference.output_tensors[0]
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        raise UserInputError(f"the reference {ref_name} gives output {b.shape}, the model "
                             f"{a.shape}", hint="pass the float model this one came from")


def evaluate_bytes(model_bytes: bytes, data, reference_bytes: bytes | None = None,
                   runtime: str = "litert", *, name: str = "model", reference_name: str = "",
                   layers: bool = True, image_scale: str = "0-1",
                   progress: ProgressFn = null_progress) -> EvalReport:
    """:func:`evaluate` on bytes already in memory (``data``: path, Dataset or array)."""
    from tinyq.convert.ptq import detect_mode
    from tinyq.data import check_label_range, load_data
    from tinyq.model.tflite_reader import read_model_bytes

    if runtime not in RUNTIMES:
        raise UserInputError(f"unknown runtime {runtime!r}",
                             hint=f"use one of {', '.join(RUNTIMES)}")
    model = read_model_bytes(model_bytes)
    if len(model.inputs) != 1:
        raise UserInputError(f"{name} has {len(model.inputs)} inputs; tinyq evaluates "
                             "one-input models", hint="evaluate a one-input model")
    for kind, tensor in (("input", model.input_tensors[0]), ("output", model.output_tensors[0])):
        if not tensor.shape or tensor.shape[0] != 1:
            raise UserInputError(f"{name}'s first {kind} has shape {list(tensor.shape)}; tinyq "
                                 "evaluates one sample per inference (batch size 1 first)",
                                 hint="re-export the model with batch size 1")
    mode = detect_mode(model)
    if runtime == "tflm" and mode in TFLM_REJECTED_MODES:
        raise UnsupportedError(f"{TFLM_REJECTED_MODES[mode]} ({name} is {mode})",
                               hint="use --runtime litert, or quantize with --mode int8")
    dataset = load_data(data, input_shape=model.input_tensors[0].shape[1:],
                        image_scale=image_scale)
    x = dataset.x
    if x.dtype.kind in "iu" and x.dtype != model.input_tensors[0].np_dtype:
        x = x.astype(np.float32)
    labels = dataset.class_labels()
    classes = output_classes(model)
    if labels is not None and classes > 1:      # refuse labels top-1 can never match
        check_label_range(dataset.y, classes, dataset.source)
    outputs = run_model(model_bytes, x, runtime, progress, what=Path(name).name, name=name)
    accuracy = top1_accuracy(outputs, labels)
    metrics, ref_acc, layer_list, skipped, n_layer = None, None, (), (), 0
    if reference_bytes is not None:
        reference = read_model_bytes(reference_bytes)
        _check_reference(model, reference, reference_name)
        x_ref = x if x.dtype.kind == "f" else dequantize(
            x, model.input_tensors[0].quant.scale[0], model.input_tensors[0].quant.zero_point[0])
        ref_out = run_model(reference_bytes, x_ref, "litert", progress, what="reference",
                            name=reference_name or "the reference")
        metrics = compute_metrics(outputs, ref_out)
        ref_acc = top1_accuracy(ref_out, labels)
        if layers:
            n_layer = min(LAYER_SAMPLES, len(x))
            layer_list, skipped = layer_errors(model_bytes, reference_bytes, x[:n_layer],
                                               runtime, progress, name=name,
                                               reference_name=reference_name or "the reference")
    return EvalReport(
        model=name, mode=mode, size_bytes=len(model_bytes), runtime=runtime,
        samples=len(x), accuracy=accuracy, reference=reference_name or None,
        reference_accuracy=ref_acc, metrics=metrics, layers=layer_list,
        layers_skipped=skipped, layer_samples=n_layer, outputs=outputs)


def evaluate(tflite_path: str | os.PathLike[str], data: Any,
             reference: str | os.PathLike[str] | None = None, runtime: str = "litert",
             image_scale: str = "0-1", progress: ProgressFn = null_progress) -> EvalReport:
    """Run ``tflite_path`` on ``data``; compare with the float ``reference`` when given.

    ``data``: a path :func:`tinyq.data.load_data` reads, a Dataset or an array.
    ``reference``: a .keras/.h5/SavedModel or a float32 .tflite.

    Example::

        report = tinyq.evaluate("digits_int8.tflite", "test.npz", reference="digits.keras")
        print(f"int8 {report.accuracy:.2%}, float {report.reference_accuracy:.2%}")
    """
    from tinyq.model.tflite_reader import read_model

    p = Path(tflite_path)
    if p.is_dir() or p.suffix.lower() != ".tflite":
        raise ModelError(f"{p} is not a .tflite file",
                         hint="quantize the model first: tinyq quantize MODEL -o OUT.tflite")
    read_model(p)  # missing/truncated/not a TFLite file -> one ModelError line
    ref_bytes, ref_name = (None, "")
    if reference is not None:
        ref_bytes, ref_name = reference_tflite(reference, progress)
    return evaluate_bytes(p.read_bytes(), data, ref_bytes, runtime, name=str(p),
                          reference_name=ref_name, image_scale=image_scale, progress=progress)
