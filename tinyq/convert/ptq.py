"""Post-training quantization: a float Keras/TensorFlow model -> a .tflite file.

Modes (what each does to weights and activations; real = scale x (q - zero_point)):

============ ================================ ==================================== =========
mode         weights                          activations                          TFLM runs
============ ================================ ==================================== =========
``int8``     int8, per-channel (symmetric)    int8, per-tensor (asymmetric), ranges  yes
             (FC per-tensor with                from the calibration data; int8 I/O
             ``per_tensor_dense``)              unless ``io="float32"``
``int16x8``  int8, per-channel                int16 (symmetric, zero point 0), ranges  yes (ops
                                                from calibration; int16 I/O unless    with int16
                                                ``io="float32"``                       kernels)
``dynamic``  int8, per-channel                float32; weights dequantized or int8     no
                                                kernels quantize activations on the   (hybrid)
                                                fly (no calibration)
``float16``  float16                          float32 (weights dequantized at load)    no
``float32``  float32                          float32                                   yes
============ ================================ ==================================== =========

The calibration data (see :func:`tinyq.data.load_data`) is run through the float
model by the converter; each activation's observed min/max sets its scale and zero
point, so int8/int16x8 refuse fewer than :data:`MIN_CALIB_SAMPLES` samples. Weights
need no calibration: their own min/max set their scales.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyq.errors import ConversionError, DataError, TinyqError, UserInputError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress

log = logging.getLogger(__name__)

STAGE = "quantize"
MODES = ("int8", "int16x8", "dynamic", "float16", "float32")
#: Modes whose activations are quantized, so the converter needs calibration data.
CALIBRATED_MODES = ("int8", "int16x8")
#: Calibration samples used when the caller does not say (all of them if fewer).
DEFAULT_CALIB_SAMPLES = 500
#: Fewest calibration samples int8/int16x8 accept. Activation ranges are the min/max the
#: calibration samples reach, so a handful of samples gives ranges every other input
#: overflows (saturates). Measured on the digits example (int8, output RMSE vs the float
#: model on 360 test samples): 0.80 with 1 sample, 0.51 with 8, 0.27 with 16, 0.16 with
#: 32, 0.13 with 200. TensorFlow's guide asks for ~100-500 samples; the converter itself
#: takes even one, so this floor is tinyq's, and it only refuses clearly too few.
MIN_CALIB_SAMPLES = 32
#: Allowed ``io`` per mode; the first is the default.
IO_TYPES: dict[str, tuple[str, ...]] = {
    "int8": ("int8", "float32"),
    "int16x8": ("int16", "float32"),
    "dynamic": ("float32",),
    "float16": ("float32",),
    "float32": ("float32",),
}


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize. ``io=None`` means the mode's default (integer I/O for int8/int16x8)."""

    mode: str = "int8"
    io: str | None = None
    per_tensor_dense: bool = False      # FULLY_CONNECTED weights per-tensor (old TFLM builds)
    calib_samples: int | None = None    # None: all, at most DEFAULT_CALIB_SAMPLES
    image_scale: str = "0-1"            # for image-folder calibration data

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"unknown quantization mode {self.mode!r}",
                                 hint=f"use one of {', '.join(MODES)}")
        if self.io is not None and self.io not in IO_TYPES[self.mode]:
            raise UserInputError(f"--io {self.io} does not go with --mode {self.mode}",
                                 hint=f"use --io {' or '.join(IO_TYPES[self.mode])}")
        if self.calib_samples is not None:
            least = MIN_CALIB_SAMPLES if self.mode in CALIBRATED_MODES else 1
            if self.calib_samples < least:
                why = (f" to calibrate {self.mode} (activation ranges come from them)"
                       if least > 1 else "")
                raise DataError(f"--calib-samples must be at least {least}{why}, got "
                                f"{self.calib_samples}",
                                hint=f"pass --calib-samples {least} or more"
                                     + ("; 100-500 is typical" if least > 1 else ""))

    @property
    def io_type(self) -> str:
        return self.io or IO_TYPES[self.mode][0]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: dtype, shape and (for integer tensors) scale/zero point."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None = None
    zero_point: int | None = None

    def describe(self) -> str:
        text = f"{self.dtype}{list(self.shape)}"
        if self.scale is not None:
            text += f" scale {self.scale:.6g} zero point {self.zero_point}"
        return text


@dataclass(frozen=True)
class QuantizeResult:
    tflite: bytes = field(repr=False)
    model: str                               # the float model it came from
    mode: str
    io: str
    per_tensor_dense: bool
    source_size_bytes: int                   # the float model on disk
    param_count: int | None                  # float weights (Keras models; None: unknown)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: tuple[tuple[str, int], ...]         # (op name, count) in first-use order
    calib_samples: int                       # 0 for modes without calibration
    loader: str                              # how the float model was loaded
    repairs: tuple[str, ...]
    seconds: float
    output: str | None = None                # where it was written, if it was
    notes: tuple[str, ...] = ()              # layers converted in another form (one line each)

    @property
    def size_bytes(self) -> int:
        return len(self.tflite)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data.pop("tflite")
        data["size_bytes"] = self.size_bytes
        data["ops"] = [{"op": op, "count": n} for op, n in self.ops]
        from tinyq.records import stamp

        return stamp("quantize", data)


# --------------------------------------------------------------------------- describing

def tensor_specs(model, indices) -> tuple[TensorSpec, ...]:
    """TensorSpecs of ``model``'s tensors at ``indices`` (an ir.Model)."""
    specs = []
    for i in indices:
        t = model.tensors[i]
        q = t.quant if t.dtype not in ("float32", "float16") else None
        specs.append(TensorSpec(t.name, t.dtype, tuple(t.shape),
                                float(q.scale[0]) if q and q.scale else None,
                                int(q.zero_point[0]) if q and q.zero_point else None))
    return tuple(specs)


def op_counts(model) -> tuple[tuple[str, int], ...]:
    counts = Counter(op.opcode for op in model.operators)
    seen = dict.fromkeys(op.opcode for op in model.operators)
    return tuple((name, counts[name]) for name in seen)


#: Ops whose weights (input 1) decide hybrid vs integer vs float16.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D",
              "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "EMBEDDING_LOOKUP")


def detect_mode(model) -> str:
    """The quantization mode a .tflite (an ir.Model) was made with, from its tensor types."""
    activation_types = {model.tensors[o].dtype for op in model.operators
                        if op.opcode not in ("QUANTIZE", "DEQUANTIZE") for o in op.outputs}
    if "int16" in activation_types:
        return "int16x8"
    if "int8" in activation_types or "uint8" in activation_types:
        return "int8"
    weight_types = {model.tensors[op.inputs[1]].dtype for op in model.operators
                    if op.opcode in WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0}
    if any(t.dtype == "float16" and t.is_constant for t in model.tensors):
        return "float16"
    if weight_types & {"int8", "int4"}:
        return "dynamic"
    return "float32"


#: Ops that move values between an integer graph and float32: the edges of a float island.
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
_FLOAT_TYPES = ("float32", "float16")


def float_islands(model) -> list[tuple[Any, ...]]:
    """Groups of ops (ir.Operators) that compute in float inside an integer model: ops other
    than QUANTIZE/DEQUANTIZE with a float output, grouped when one feeds another in float.
    A float32 model is all island: call this only for int8/int16x8 models."""
    float_ops = [op for op in model.operators if op.opcode not in BOUNDARY_OPS and any(
        o >= 0 and model.tensors[o].dtype in _FLOAT_TYPES for o in op.outputs)]
    group = {op.index: op.index for op in float_ops}

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    producer = {o: op.index for op in float_ops for o in op.outputs if o >= 0}
    for op in float_ops:
        for i in op.inputs:
            if i in producer:
                group[root(op.index)] = root(producer[i])
    islands: dict[int, list[Any]] = {}
    for op in float_ops:
        islands.setdefault(root(op.index), []).append(op)
    return [tuple(ops) for ops in islands.values()]


def layer_of(tensor_name: str) -> str:
    """The Keras layer a converter tensor name comes from: 'model/dense/MatMul' -> 'dense'
    (the name itself when it has no '/'). Keras 3 names repeat the model scope and add
    '_1' to each layer's ('functional_1/functional_1/dense_1_2/MatMul' is layer
    'dense_1'): that suffix is dropped."""
    parts = tensor_name.split(";")[0].split("/")
    if len(parts) < 2:
        return parts[0]
    if len(parts) > 3 and parts[0] == parts[1]:
        return re.sub(r"_\d+$", "", parts[-2])
    return parts[-2]


def _tflm_float_kernel(model, op) -> str:
    """What TFLM does with ``op`` in its dtypes: runs it, or why not."""
    from tinyq.model.checks import TFLM_BUILTIN_OPS
    from tinyq.model.tflm_dtypes import TFLM_OP_DTYPES, op_signature

    if op.opcode not in TFLM_BUILTIN_OPS:
        return f"TFLM has no {op.opcode} op"
    sig = op_signature(model, op)
    if sig is None:
        return f"TFLM registers {op.opcode} (tinyq's dtype table does not list its kernels)"
    if TFLM_OP_DTYPES[op.opcode].accepts(sig):
        return f"TFLM runs its {sig[-1]} {op.opcode} kernel"
    return f"TFLM has no {sig[-1]} {op.opcode} kernel"


def island_notes(model) -> tuple[str, ...]:
    """One line per float island of an int8/int16x8 model (an ir.Model): the layers that
    stayed float and what TFLM and the native runtime do with them."""
    islands = float_islands(model)
    if not islands:
        return ()
    from tinyq.firmware.native.support import problems as native_problems

    refused = {}
    for p in native_problems(model):
        if p.op_index is not None:
            refused.setdefault(p.op_index, p.message)
    notes = []
    for ops in islands:
        names = ", ".join(f"{op.opcode} '{layer_of(model.tensors[op.outputs[0]].name)}'"
                          for op in ops)
        tflm = "; ".join(dict.fromkeys(_tflm_float_kernel(model, op) for op in ops))
        native = "; ".join(dict.fromkeys(refused[op.index] for op in ops
                                         if op.index in refused))
        native = f"native: {native}" if native else "native runs it"
        notes.append(f"{names} stayed float (DEQUANTIZE -> float -> QUANTIZE inside the "
                     f"integer model): {tflm} (float code on the board, slower); {native}; "
                     "to keep it integer, replace it with a layer the converter quantizes "
                     "(ReLU, LeakyReLU, tanh, sigmoid)")
    return tuple(notes)


# --------------------------------------------------------------------------- converting

def _key_line(exc: BaseException, log_text: str) -> str:
    """The converter's most telling line: the op it rejects and where, else its last line."""
    lines = [ln.strip() for ln in (str(exc) + "\n" + log_text).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" not in ln:
            continue
        op = re.search(r"'[\w.]+' op .*", ln)
        where = re.search(r'fused\["[^"]*", "([^"@]+)', ln)
        text = op.group(0) if op else ln[ln.index("error:") + 6:].strip()
        return (text + (f" (at {where.group(1)})" if where else ""))[:300]
    first = str(exc).strip().splitlines()
    return (first[-1] if first else type(exc).__name__)[:300]


def _configure(converter, tf, options: QuantizeOptions, calib: np.ndarray | None) -> None:
    mode = options.mode
    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if options.per_tensor_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if mode == "dynamic":
        return

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter.representative_dataset = representative
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = tf.int8
    else:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io = tf.int16
    if options.io_type != "float32":
        converter.inference_input_type = io
        converter.inference_output_type = io


def calibration_samples(calib: Any, input_shape, options: QuantizeOptions) -> np.ndarray:
    """The calibration inputs (float32, batch first), checked against the model input."""
    from tinyq.data import load_data

    data = load_data(calib, input_shape=input_shape, dtype="float32",
                     image_scale=options.image_scale, limit=options.calib_samples)
    x = data.x
    if options.calib_samples is None:
        x = x[:DEFAULT_CALIB_SAMPLES]
    if options.mode in CALIBRATED_MODES and len(x) < MIN_CALIB_SAMPLES:
        raise DataError(f"{data.source} holds {len(x)} calibration sample(s); {options.mode} "
                        f"needs at least {MIN_CALIB_SAMPLES} (activation ranges come from them)",
                        hint=f"pass {MIN_CALIB_SAMPLES} or more samples like the model's "
                             "inputs; 100-500 is typical")
    return np.ascontiguousarray(x, dtype=np.float32)


#: Keras recurrent layers the converter turns into a WHILE loop when they are left as they are
#: (TensorFlow 2.21 with Keras 3), which TFLM boards are reported to hang on.
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN")
#: Modes in which tf-keras LSTMs convert to the fused UNIDIRECTIONAL_SEQUENCE_LSTM op
#: (measured, TensorFlow 2.21: int16x8 stops with "Quantization to 16x8-bit not yet
#: supported for op: 'UNIDIRECTIONAL_SEQUENCE_LSTM'").
FUSED_LSTM_MODES = ("int8", "float32", "dynamic", "float16")
#: What an unrolled recurrent layer becomes, per time step.
UNROLLED_OPS = "FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD ops"


def _time_steps(layer) -> int | None:
    shape = getattr(layer, "input", None)
    shape = getattr(shape, "shape", None)
    return None if shape is None or len(shape) < 3 else shape[1]


def _recurrent_kind(layer) -> str | None:
    """'LSTM', 'GRU', 'SimpleRNN' or e.g. 'Bidirectional(LSTM)' (layers tinyq can unroll),
    else None."""
    kind = type(layer).__name__
    if kind in RECURRENT_LAYERS:
        return kind
    inner = type(getattr(layer, "forward_layer", None)).__name__
    if kind == "Bidirectional" and inner in RECURRENT_LAYERS:
        return f"Bidirectional({inner})"
    return None


def recurrent_form(keras_model, mode: str, sample: np.ndarray | None = None):
    """The model to hand the converter so recurrent layers become what TFLM runs.

    Returns ``(model, notes)``: ``model`` is a tf-keras twin when every recurrent layer is
    an LSTM the converter fuses in ``mode`` (Keras 3 LSTMs become WHILE loops, tf-keras
    LSTMs the fused UNIDIRECTIONAL_SEQUENCE_LSTM), otherwise a Keras 3 copy whose
    recurrent layers are unrolled over their fixed time steps (GRU and SimpleRNN have no
    fused TFLite op; TFLM has no bidirectional kernel); ``notes`` has one line per layer
    not fused, saying what the graph holds instead. Models without recurrent layers come
    back unchanged. ``sample``: inputs for the check that a tf-keras twin computes the
    same (random data when ``None``).
    """
    from tinyq.convert.keras_carry import CONVERT_CARRIERS, walk_layers

    layers = walk_layers(keras_model)
    recurrent = [lay for lay in layers if _recurrent_kind(lay)]
    others = [lay for lay in layers if not _recurrent_kind(lay) and type(lay).__name__ in (
        "Bidirectional", "RNN", "ConvLSTM1D", "ConvLSTM2D")]
    notes = [f"{type(lay).__name__} '{lay.name}' converts to a WHILE loop (tinyq unrolls "
             "LSTM, GRU and SimpleRNN layers, bidirectional or not); TFLM may not run it on "
             "a board" for lay in others]
    if not recurrent:
        return keras_model, tuple(notes)
    # the fused op needs fixed time steps ('tf.TensorListReserve' ... requires element_shape
    # to be static): layers without them get a note from _unrolled
    lstm_only = all(_recurrent_kind(lay) == "LSTM" and _time_steps(lay) is not None
                    for lay in recurrent)
    why_lstm = (f"cannot be fused in {mode} (the converter has no {mode} "
                "UNIDIRECTIONAL_SEQUENCE_LSTM; --mode int8 fuses it)")
    if mode in FUSED_LSTM_MODES:
        why_lstm = ("is not fused (tinyq fuses LSTMs when every recurrent layer of the model "
                    "is a plain LSTM with fixed time steps)")
    if lstm_only and mode in FUSED_LSTM_MODES:
        from tinyq.convert.keras_carry import carry_to_tf_keras

        try:
            carried = carry_to_tf_keras(keras_model, sample, carriers=CONVERT_CARRIERS)
        except TinyqError as exc:
            why_lstm = ("is not fused: the tf-keras rebuild the fused op needs failed ("
                        + ("; ".join(getattr(exc, "layers", ())) or exc.message) + ")")
        else:
            log.info("LSTM layers %s convert to UNIDIRECTIONAL_SEQUENCE_LSTM (through tf-keras)",
                     ", ".join(lay.name for lay in recurrent))
            return carried.model, tuple(notes)
    return _unrolled(keras_model, recurrent, why_lstm, notes)


def _unrolled(keras_model, recurrent, why_lstm: str, notes: list[str]):
    import keras

    names = set()
    for lay in recurrent:
        steps = _time_steps(lay)
        kind = _recurrent_kind(lay)
        why = (why_lstm if kind == "LSTM" else "has no fused TFLite op" if kind in
               RECURRENT_LAYERS else "has no TFLM kernel (no bidirectional sequence op)")
        if steps is None:
            notes.append(f"{kind} '{lay.name}' {why}, and its time steps are not fixed: it "
                         "converts to a WHILE loop, which TFLM may not run on a board; give "
                         "the model input a fixed length")
            continue
        names.add(lay.name)
        notes.append(f"{kind} '{lay.name}' {why}: unrolled over {steps} time steps into "
                     f"{UNROLLED_OPS} (no WHILE loop)")
    if not names:
        return keras_model, tuple(notes)

    def clone(layer):
        config = layer.get_config()
        if layer.name in names:
            # a Bidirectional wrapper holds its two layers' configs
            for inner in (config.get("layer"), config.get("backward_layer")):
                if isinstance(inner, dict):
                    inner["config"]["unroll"] = True
            if "layer" not in config:
                config["unroll"] = True
        return type(layer).from_config(config)

    copy = keras.models.clone_model(keras_model, clone_function=clone)
    copy.set_weights(keras_model.get_weights())
    return copy, tuple(notes)


def _converter_for(float_model, mode: str, sample: np.ndarray | None):
    """A converter for ``float_model`` (recurrent layers in their TFLM form) and the notes."""
    from dataclasses import replace

    from tinyq.convert.model_loader import make_converter

    if float_model.keras_model is None:
        return make_converter(float_model), ()
    model, notes = recurrent_form(float_model.keras_model, mode, sample)
    return make_converter(replace(float_model, keras_model=model)), notes


def convert_here(float_model, options: QuantizeOptions, calib: np.ndarray | None,
                 notify=lambda notes: None) -> tuple[bytes, tuple[str, ...]]:
    """Run the TFLite converter in this process on a loaded
    :class:`~tinyq.convert.model_loader.FloatModel`: ``(tflite bytes, notes)``. ``notify(notes)``
    is called before the converter runs, so the notes survive a crash.

    The converter can crash the process: callers use
    :class:`tinyq._convert_worker.ConverterProcess` (a child process), which calls this.
    """
    from tinyq.convert.model_loader import import_tensorflow, quiet_tensorflow_logs
    from tinyq.model.interpreters import capture_fd2

    tf = import_tensorflow()
    from tinyq.convert.keras_carry import CARRY_CHECK_SAMPLES

    sample = None if calib is None else calib[:CARRY_CHECK_SAMPLES]
    converter, notes = _converter_for(float_model, options.mode, sample)
    if notes:
        notify(notes)
    _configure(converter, tf, options, calib)
    with capture_fd2() as captured, contextlib.redirect_stdout(io.StringIO()), \
            quiet_tensorflow_logs():
        try:
            return bytes(converter.convert()), notes
        except Exception as exc:  # noqa: BLE001 - converter raises many types; one line out
            error = exc
    text = " ".join(captured)
    raise ConversionError(
        f"the TFLite converter failed ({options.mode}): {_key_line(error, text)}",
        hint="try another --mode (float32 shows whether the model converts at all), or "
             "replace the layer it names", mode=options.mode) from error


def quantize(model_path: str | os.PathLike[str], calib: Any = None,
             options: QuantizeOptions = QuantizeOptions(),
             output: str | os.PathLike[str] | None = None, force: bool = False,
             progress: ProgressFn = null_progress) -> QuantizeResult:
    """Convert ``model_path`` to .tflite in ``options.mode``; write ``output`` atomically if given.

    ``calib``: calibration data (a path, a :class:`tinyq.data.Dataset` or an array),
    required for int8 and int16x8, checked against the model input for every mode.

    Example::

        result = tinyq.quantize("digits.keras", calib="calib.npz",
                                options=tinyq.QuantizeOptions(mode="int8"),
                                output="digits_int8_api.tflite")
        print(result.mode, len(result.tflite), "bytes")
    """
    from tinyq._convert_worker import ConverterProcess
    from tinyq.convert.model_loader import check_model_path
    from tinyq.fileio import check_output, write_bytes
    from tinyq.model.tflite_reader import read_model_bytes

    # calib may be data in memory rather than a path: only paths can be overwritten
    inputs = [model_path] + ([calib] if isinstance(calib, str | os.PathLike) else [])
    if output is not None:
        check_output(output, force, inputs=inputs)
    check_model_path(model_path)
    start = time.perf_counter()
    progress(ProgressEvent(STAGE, f"loading {model_path}"))
    with ConverterProcess(model_path, progress) as converter:
        float_model = converter.load()
        samples = None
        if calib is not None:
            samples = calibration_samples(calib, float_model.input_shape, options)
        elif options.mode in CALIBRATED_MODES:
            raise DataError(f"--mode {options.mode} needs calibration data",
                            hint="pass --calib with samples like the model's inputs")
        used = len(samples) if samples is not None and options.mode in CALIBRATED_MODES else 0
        progress(ProgressEvent(STAGE, f"converting to {options.mode}"
                               + (f" with {used} calibration samples" if used else "")))
        converted = converter.convert(options, samples if used else None)
    tflite = converted.tflite
    model = read_model_bytes(tflite)
    notes = converted.notes
    if options.mode in CALIBRATED_MODES:
        notes += island_notes(model)
    if output is not None:
        write_bytes(output, tflite, force=force, inputs=inputs)
        progress(ProgressEvent(STAGE, f"wrote {output}"))
    return QuantizeResult(
        tflite=tflite, model=str(model_path), mode=options.mode, io=options.io_type,
        per_tensor_dense=options.per_tensor_dense, source_size_bytes=float_model.size_bytes,
        param_count=float_model.param_count,
        inputs=tensor_specs(model, model.inputs), outputs=tensor_specs(model, model.outputs),
        ops=op_counts(model), calib_samples=used, loader=float_model.loader,
        repairs=float_model.repairs, seconds=time.perf_counter() - start,
        output=None if output is None else str(output), notes=notes)
