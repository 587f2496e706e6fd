"""Quantization-aware training: fine-tune with fake quantization, convert to full-integer int8.

``qat(model_path, train, options)`` loads a float Keras model, rebuilds it in
tf-keras when it is a Keras 3 model (:mod:`tinyq.convert.keras_carry`), wraps it with
fake-quant nodes (``tensorflow_model_optimization.quantization.keras.quantize_model``:
int8 in the forward pass, straight-through gradients), fine-tunes it, converts it
to an int8 .tflite with int8 input and output, checks that the ``tflite-micro``
interpreter runs it, and measures float / post-training int8 / QAT int8 accuracy
on the same held-out data (int8 accuracies on the ``tflite-micro`` interpreter,
the oracle for what a microcontroller computes).

The ``[qat]`` extra (full ``tensorflow``, ``tf-keras``, ``tensorflow-model-optimization``)
is imported lazily; without it :func:`import_qat_stack` raises ``ToolNotFoundError``.

Keras 2 and Keras 3 in one process (measured with TF 2.21, tf-keras 2.21,
tfmot 0.8.1): ``tensorflow_model_optimization`` picks tf-keras itself when
``tf.keras`` already resolved to Keras 3, so QAT works whatever was imported
before, and needs no subprocess. What it does wrong is set
``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` on import, which silently turns
``tf.keras`` into tf-keras for any code that touches ``tf.keras`` later (and for
child processes). :func:`import_qat_stack` resolves ``tf.keras`` first and
restores the variable afterwards, so the rest of tinyq keeps Keras 3.

Only classification models (integer or one-hot labels ``y``) are supported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinyq.convert.keras_carry import QAT_INSTALL_HINT, import_tf_keras, is_tf_keras_model
from tinyq.errors import (
    ConversionError,
    DataError,
    ModelError,
    TinyqError,
    ToolNotFoundError,
    UnsupportedError,
)
from tinyq.model.interpreters import capture_fd
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

STAGE = "qat"
_LEGACY_ENV = "TF_USE_LEGACY_KERAS"


@dataclass(frozen=True)
class QatOptions:
    """How to fine-tune and convert."""

    epochs: int = 3
    learning_rate: float = 1e-4      # fine-tuning: small, the float weights are already good
    batch_size: int = 32
    calib_samples: int | None = None  # None: all, at most tinyq.convert.ptq.DEFAULT_CALIB_SAMPLES
    seed: int = 0                    # weight shuffling and dropout, for reproducible runs
    compare_ptq: bool = True         # also quantize without QAT and measure it (the PTQ row)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "calib_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1, got {getattr(self, name)}",
                                hint=f"pass a positive --{name.replace('_', '-')}")
        if not self.learning_rate > 0:
            raise DataError(f"learning rate must be positive, got {self.learning_rate}",
                            hint="pass e.g. --lr 1e-4")


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    val_accuracy: float | None


@dataclass(frozen=True)
class QatResult:
    """The QAT int8 model and what it (and the alternatives) measured."""

    tflite: bytes = field(repr=False)
    model: str                        # the float model it came from
    eval_on: str                      # "validation" or "training" (when no --val was given)
    eval_samples: int
    float_accuracy: float
    ptq_accuracy: float | None        # post-training int8, same calibration data (None: skipped)
    qat_accuracy: float               # QAT int8 on the tflite-micro interpreter
    history: tuple[EpochStats, ...]
    carried_from_keras3: bool
    carry_max_abs_diff: float | None  # rebuilt tf-keras vs original Keras 3 outputs
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    train_seconds: float
    ptq_error: str | None = None      # why the PTQ row is missing, if it failed
    notes: tuple[str, ...] = ()       # how the model was rewritten for QAT (one line each)

    @property
    def size_bytes(self) -> int:
        return len(self.tflite)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tflite")
        data["size_bytes"] = self.size_bytes
        data["history"] = [asdict(h) for h in self.history]
        from tinyq.records import stamp

        return stamp("qat", data)


# --------------------------------------------------------------------------- imports

#: (module, pip package) of the [qat] extra.
_QAT_MODULES = (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras"),
                ("tensorflow_model_optimization", "tensorflow-model-optimization"))


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_qat_extra() -> None:
    """:class:`ToolNotFoundError` naming every missing ``[qat]`` package; imports nothing."""
    missing = [package for module, package in _QAT_MODULES if not _importable(module)]
    if missing:
        raise ToolNotFoundError(f"{', '.join(missing)} not installed", hint=QAT_INSTALL_HINT,
                                tool=missing[0])


def import_qat_stack():
    """``(tensorflow, tf_keras, tensorflow_model_optimization)``, leaving ``tf.keras`` alone.

    Raises :class:`ToolNotFoundError` naming the ``[qat]`` extra when any is missing.
    """
    require_qat_extra()  # say it before the slow TensorFlow import
    from tinyq.convert.model_loader import import_tensorflow

    tf = import_tensorflow()  # quiet C++ logging, same as the rest of tinyq
    tfk = import_tf_keras()
    saved = os.environ.get(_LEGACY_ENV)
    # Resolve tf.keras under the caller's setting before tfmot flips the variable.
    getattr(tf.keras, "version", None)
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:
        raise ToolNotFoundError("tensorflow-model-optimization is not installed",
                                hint=QAT_INSTALL_HINT,
                                tool="tensorflow-model-optimization") from exc
    finally:
        if saved is None:
            os.environ.pop(_LEGACY_ENV, None)
        else:
            os.environ[_LEGACY_ENV] = saved
    from tensorflow_model_optimization.python.core.keras import compat

    if not compat.keras.__name__.startswith("tf_keras"):
        raise ToolNotFoundError(
            f"tensorflow-model-optimization is using {compat.keras.__name__}, not tf-keras",
            hint=QAT_INSTALL_HINT)
    return tf, tfk, tfmot


@contextlib.contextmanager
def _quiet() -> Any:
    """Send what TensorFlow prints (Python and C-level stdout/stderr, warnings) to the debug log."""
    import warnings

    buffer = io.StringIO()
    with capture_fd(1) as out, capture_fd(2) as err, contextlib.redirect_stdout(buffer), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    text = "\n".join(t.strip() for t in [buffer.getvalue(), *out, *err] if t.strip())
    text += "".join(f"\nwarning: {w.message}" for w in caught)
    if text.strip():
        log.debug("TensorFlow said:\n%s", text.strip())


# --------------------------------------------------------------------------- data

def class_labels(y: np.ndarray | None, what: str) -> np.ndarray:
    """Integer class labels from integer or one-hot ``y`` (QAT supports classification)."""
    from tinyq.data import require_class_labels

    return require_class_labels(y, what)


def _check_labels(y: np.ndarray, classes: int, what: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise DataError(f"{what}: labels range {int(y.min())}..{int(y.max())} but the model "
                        f"has {classes} outputs", hint="check that the labels match the model")


# --------------------------------------------------------------------------- stages

def to_tf_keras(model, sample: np.ndarray | None = None, progress: ProgressFn = null_progress):
    """A tf-keras model to fine-tune: ``model`` itself if it is tf-keras, else a checked rebuild
    (activations tfmot takes only as separate layers, such as relu6, split off).

    Returns ``(tf_keras_model, carry_max_abs_diff or None, notes)``: one note line saying
    which activations were split off, if any.
    """
    if is_tf_keras_model(model):
        return model, None, ()
    from tinyq.convert.keras_carry import carry_to_tf_keras

    result = carry_to_tf_keras(
        model, sample, progress=lambda m: progress(ProgressEvent(STAGE, m)),
        split_activations=True)
    notes = ()
    if result.split:
        notes = (f"rewrote {len(result.split)} layer(s) for QAT (tfmot takes these "
                 "activations only as separate layers; same outputs): "
                 + "; ".join(result.split),)
    return result.model, result.max_abs_diff, notes


def _output_is_probability(tfk_model) -> bool:
    last = tfk_model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    return getattr(last, "get_config", dict)().get("activation") == "softmax"


#: tfmot folds a BatchNormalization into the convolution right before it (its transforms).
_BN_FOLD_INTO = ("Conv2D", "DepthwiseConv2D")


def _folded_batch_norm(layer) -> bool:
    """A BatchNormalization fed only by a Conv2D/DepthwiseConv2D: tfmot handles the pair."""
    if type(layer).__name__ != "BatchNormalization":
        return False
    nodes = getattr(layer, "_inbound_nodes", [])
    inbound = [getattr(n, "inbound_layers", None) for n in nodes]
    return len(inbound) == 1 and type(inbound[0]).__name__ in _BN_FOLD_INTO


def check_quantizable(tfk_model) -> None:
    """Every layer has a fake-quant recipe in tfmot's default 8-bit scheme; else name them all."""
    import_qat_stack()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    from tinyq.convert.keras_carry import QAT_LAYER_ACTIVATIONS

    registry = registry_module.Default8BitQuantizeRegistry()
    missing = [f"'{layer.name}' ({type(layer).__name__})" for layer in tfk_model.layers
               if type(layer).__name__ != "InputLayer" and not registry.supports(layer)
               and not _folded_batch_norm(layer)]
    for layer in tfk_model.layers:
        act = getattr(layer, "get_config", dict)().get("activation")
        if (type(layer).__name__ != "Activation" and isinstance(act, str)
                and act not in QAT_LAYER_ACTIVATIONS):
            missing.append(f"'{layer.name}' ({type(layer).__name__}, activation {act!r})")
    if missing:
        raise UnsupportedError(
            f"QAT (tfmot default 8-bit scheme) has no fake-quant recipe for: {', '.join(missing)}",
            hint="replace them (e.g. Multiply/Subtract/Rescaling are not covered; inside a "
            f"Conv/Dense tfmot takes only {', '.join(sorted(QAT_LAYER_ACTIVATIONS))}, and "
            "tinyq splits relu6 off) or quantize without QAT (`tinyq quantize`)",
            layers=tuple(missing))


def fine_tune(tfk_model, x: np.ndarray, y: np.ndarray, options: QatOptions,
              val: tuple[np.ndarray, np.ndarray] | None = None,
              progress: ProgressFn = null_progress):
    """Wrap ``tfk_model`` with fake quantization and train it; return ``(model, history)``."""
    tf, tfk, tfmot = import_qat_stack()
    check_quantizable(tfk_model)
    tfk.utils.set_random_seed(options.seed)
    try:
        with _quiet():
            q_model = tfmot.quantization.keras.quantize_model(tfk_model)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UnsupportedError(
            f"tensorflow-model-optimization cannot add fake quantization: "
            f"{' '.join(str(exc).split())[:300]}",
            hint="use standard Conv/Dense/pooling layers or `tinyq quantize` (no QAT)") from exc
    from_logits = not _output_is_probability(tfk_model)
    q_model.compile(
        optimizer=tfk.optimizers.Adam(learning_rate=options.learning_rate),
        loss=tfk.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    history: list[EpochStats] = []

    class _Progress(tfk.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            stats = EpochStats(epoch + 1, float(logs.get("loss", float("nan"))),
                               float(logs.get("accuracy", float("nan"))),
                               float(logs["val_accuracy"]) if "val_accuracy" in logs else None)
            history.append(stats)
            val_text = ("" if stats.val_accuracy is None
                        else f", val accuracy {stats.val_accuracy:.4f}")
            progress(ProgressEvent(
                STAGE, f"epoch {stats.epoch}/{options.epochs}: loss {stats.loss:.4f}, "
                f"accuracy {stats.accuracy:.4f}{val_text}",
                done=stats.epoch, total=options.epochs))

    # not inside _quiet(): the progress callback may write to the terminal
    q_model.fit(x, y, epochs=options.epochs, batch_size=options.batch_size,
                validation_data=val, shuffle=True, verbose=0, callbacks=[_Progress()])
    return q_model, tuple(history)


def convert_int8(q_model, calib_x: np.ndarray) -> bytes:
    """Full-integer int8 .tflite (int8 input and output) from a fake-quantized tf-keras model.

    The model is saved as a SavedModel (the form ``from_keras_model`` converts through
    anyway) and converted in a child process, so a converter crash becomes one line.
    """
    import tempfile

    from tinyq._convert_worker import ConverterProcess
    from tinyq.convert.ptq import QuantizeOptions

    tf, _, _ = import_qat_stack()
    with tempfile.TemporaryDirectory(prefix="tinyq-qat-") as tmp:
        saved = os.path.join(tmp, "qat_model")
        try:
            with _quiet():
                tf.saved_model.save(q_model, saved)
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many unrelated types
            raise ConversionError(
                f"cannot save the QAT model for conversion: {' '.join(str(exc).split())[:300]}",
                hint="run with --verbose for TensorFlow's log") from exc
        with ConverterProcess(saved, label="the fake-quantized QAT model") as converter:
            return converter.convert(QuantizeOptions(mode="int8"),
                                     np.asarray(calib_x, dtype=np.float32)).tflite


def int8_predict(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs of an int8-I/O model on the ``tflite-micro`` interpreter, per sample."""
    from tinyq.model.interpreters import TflmInterpreter

    interp = TflmInterpreter(tflite)
    inp, out = interp.input_details(0), interp.output_details(0)
    if inp.dtype != np.int8 or out.dtype != np.int8:
        raise ModelError(f"expected int8 input and output, got {inp.dtype} / {out.dtype}",
                         hint="convert with int8 I/O")
    info = np.iinfo(np.int8)
    rows = []
    for sample in np.asarray(x, dtype=np.float32):
        q = np.clip(np.round(sample / inp.scale) + inp.zero_point, info.min, info.max)
        (raw,) = interp.invoke([q.astype(np.int8).reshape(inp.shape)])[:1]
        rows.append((raw.astype(np.float32).reshape(-1) - out.zero_point) * out.scale)
    return np.stack(rows)


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores.reshape(len(y), -1), axis=1) == y)) if len(y) else 0.0


def float_predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Float model outputs (Keras 3 or tf-keras), in batches, without training behaviour."""
    from tinyq.convert.keras_carry import call_model

    outs = [np.asarray(call_model(model, [x[i:i + batch]])) for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,))


# --------------------------------------------------------------------------- the whole job

@dataclass(frozen=True)
class _Arrays:
    x: np.ndarray
    y: np.ndarray | None


def _as_data(data: Any, what: str) -> Any:
    """An ``(x, y)`` tuple becomes a :class:`tinyq.data.Dataset`; anything else is kept."""
    from tinyq.data import Dataset

    if isinstance(data, tuple):
        x, y = data
        return Dataset(x=np.asarray(x), y=None if y is None else np.asarray(y), source=what)
    return data


def _arrays(data: Any, what: str, input_shape: tuple[int | None, ...]) -> _Arrays:
    """Load and check ``data`` with :func:`tinyq.data.load_data` for the model's input.

    ``data``: a path, a loaded :class:`tinyq.data.Dataset`, or an ``(x, y)`` tuple.
    """
    from tinyq.data import load_data

    loaded = load_data(_as_data(data, what), input_shape=input_shape, dtype="float32")
    return _Arrays(np.asarray(loaded.x, dtype=np.float32), loaded.y)


@dataclass(frozen=True)
class _Prepared:
    model: Any                        # the float model as loaded (Keras 3 or tf-keras)
    tfk_model: Any                    # its tf-keras twin
    carry_diff: float | None
    train: _Arrays
    y_train: np.ndarray
    val: _Arrays | None
    y_val: np.ndarray | None
    calib: np.ndarray
    notes: tuple[str, ...] = ()       # how the model was rewritten for QAT


def _input_shape(model) -> tuple[int | None, ...]:
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise UnsupportedError(f"tinyq qat handles models with one input; this one has "
                               f"{len(inputs)}", hint="quantize it with `tinyq quantize`")
    return tuple(None if d is None else int(d) for d in inputs[0].shape[1:])


def _prepare(model_path, train, options: QatOptions, calib, val,
             progress: ProgressFn) -> _Prepared:
    import_qat_stack()  # fail early, before any work, when the extra is missing
    from tinyq.convert.model_loader import load_keras_model

    progress(ProgressEvent(STAGE, f"loading {model_path}"))
    model = load_keras_model(model_path)
    want = _input_shape(model)
    tr = _arrays(train, "training data", want)
    y_train = class_labels(tr.y, "training data")
    va = _arrays(val, "validation data", want) if val is not None else None
    y_val = class_labels(va.y, "validation data") if va is not None else None
    from tinyq.convert.ptq import QuantizeOptions, calibration_samples

    cal = calibration_samples(_as_data(calib, "calibration data") if calib is not None else tr.x,
                              want, QuantizeOptions(calib_samples=options.calib_samples))
    tfk_model, carry_diff, notes = to_tf_keras(model, tr.x[:8], progress)
    classes = int(np.prod(tfk_model.outputs[0].shape[1:]))
    _check_labels(y_train, classes, "training data")
    if y_val is not None:
        _check_labels(y_val, classes, "validation data")
    return _Prepared(model, tfk_model, carry_diff, tr, y_train, va, y_val, cal, notes)


def _train_convert(prep: _Prepared, options: QatOptions, progress: ProgressFn):
    progress(ProgressEvent(STAGE, f"fine-tuning with fake quantization for "
                                  f"{options.epochs} epoch(s)", done=0, total=options.epochs))
    start = time.perf_counter()
    val = (prep.val.x, prep.y_val) if prep.val is not None else None
    q_model, history = fine_tune(prep.tfk_model, prep.train.x, prep.y_train, options,
                                 val=val, progress=progress)
    seconds = time.perf_counter() - start
    progress(ProgressEvent(STAGE, "converting to full-integer int8"))
    return convert_int8(q_model, prep.calib), history, seconds


def qat_tflite(model_path: str | os.PathLike[str], train: Any,
               options: QatOptions = QatOptions(), *, calib: Any = None, val: Any = None,
               progress: ProgressFn = null_progress) -> bytes:
    """Only the QAT int8 model (int8 I/O): the hook ``tinyq compare --train`` uses."""
    prep = _prepare(model_path, train, options, calib, val, progress)
    tflite, _, _ = _train_convert(prep, options, progress)
    return tflite


def qat(model_path: str | os.PathLike[str], train: Any, options: QatOptions = QatOptions(),
        *, calib: Any = None, val: Any = None,
        progress: ProgressFn = null_progress) -> QatResult:
    """Fine-tune ``model_path`` with fake quantization, convert it to int8, measure it.

    ``train``/``val``/``calib``: a data path (see :func:`tinyq.data.load_data`), a loaded
    dataset, or an ``(x, y)`` tuple. ``calib`` defaults to the training inputs.
    Accuracies are measured on ``val`` (held-out) when given, else on ``train``; the
    int8 ones on the ``tflite-micro`` interpreter.

    Example::

        result = tinyq.qat("digits.keras", train="train.npz", val="test.npz",
                           options=tinyq.QatOptions(epochs=1))
        print(f"PTQ {result.ptq_accuracy:.2%} -> QAT {result.qat_accuracy:.2%}")
    """
    prep = _prepare(model_path, train, options, calib, val, progress)
    eval_x, eval_y = ((prep.val.x, prep.y_val) if prep.val is not None
                      else (prep.train.x, prep.y_train))
    float_acc = accuracy(float_predict(prep.model, eval_x), eval_y)
    tflite, history, train_seconds = _train_convert(prep, options, progress)
    progress(ProgressEvent(STAGE, "measuring QAT int8 on the tflite-micro interpreter"))
    qat_acc = accuracy(int8_predict(tflite, eval_x), eval_y)

    ptq_acc, ptq_error = None, None
    if options.compare_ptq:
        progress(ProgressEvent(STAGE, "post-training int8 for comparison"))
        try:
            ptq_acc = accuracy(int8_predict(ptq_int8(model_path, prep.calib), eval_x), eval_y)
        except TinyqError as exc:
            ptq_error = str(exc)
            log.warning("post-training int8 for comparison failed: %s", exc)

    from tinyq.model.interpreters import TflmInterpreter

    interp = TflmInterpreter(tflite)
    inp, out = interp.input_details(0), interp.output_details(0)
    return QatResult(
        tflite=tflite, model=str(model_path),
        eval_on="validation" if prep.val is not None else "training",
        eval_samples=int(len(eval_y)), float_accuracy=float_acc, ptq_accuracy=ptq_acc,
        qat_accuracy=qat_acc, history=history,
        carried_from_keras3=prep.carry_diff is not None, carry_max_abs_diff=prep.carry_diff,
        input_scale=inp.scale, input_zero_point=inp.zero_point,
        output_scale=out.scale, output_zero_point=out.zero_point,
        train_seconds=train_seconds, ptq_error=ptq_error, notes=prep.notes,
    )


def ptq_int8(model_path: str | os.PathLike[str], calib_x: np.ndarray) -> bytes:
    """Post-training full-integer int8 (int8 I/O) of the same float model, via tinyq.convert.ptq,
    calibrated with the same samples as the QAT conversion."""
    from tinyq.convert.ptq import QuantizeOptions, quantize

    samples = np.asarray(calib_x, dtype=np.float32)
    result = quantize(model_path, samples,
                      QuantizeOptions(mode="int8", io="int8", calib_samples=len(samples)))
    return result.tflite

