"""Load float Keras/TensorFlow models (.keras, .h5, SavedModel) for conversion.

TensorFlow is imported lazily; without it every entry point raises
:class:`~tinyq.errors.ToolNotFoundError` naming the ``[convert]`` extra.

Old files and how they load with TensorFlow 2.21 / Keras 3 (measured on the
MLPerf Tiny float models):

* ``.h5`` from TF 2.3-2.12 stores ``groups: 1`` in every ``DepthwiseConv2D`` config;
  Keras 3 rejects the key ("Unrecognized keyword arguments ... {'groups': 1}").
  :data:`LEGACY_LAYER_REPAIRS` lists such keys with the only value that is safe to
  drop (the layer's implicit behaviour); a file with any other value still fails.
* A SavedModel whose object graph holds an old optimizer fails in
  ``tf.saved_model.load`` and ``TFLiteConverter.from_saved_model`` with
  "'_UserObject' object has no attribute 'add_slot'". Its serving signature still
  loads through the TF1 graph loader, so conversion falls back to
  ``tf.compat.v1.lite.TFLiteConverter.from_saved_model`` (same MLIR converter and
  quantizer; only the graph import differs). :attr:`FloatModel.loader` says which
  path was used.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tinyq.errors import ModelError, ToolNotFoundError, UnsupportedError

log = logging.getLogger(__name__)

CONVERT_HINT = "install the conversion extra: pip install 'tinyq[convert]'"

#: Keras layer class -> {config key: the only value that may be dropped}. These keys
#: were written by older Keras versions and are rejected by Keras 3.
LEGACY_LAYER_REPAIRS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "DepthwiseConv2D": MappingProxyType({"groups": 1}),
})

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class FloatModel:
    """A loaded float model, ready to hand to the TFLite converter."""

    path: str
    kind: str                                   # "keras", "h5" or "savedmodel"
    input_shape: tuple[int | None, ...]         # one sample (no batch dim)
    input_dtype: str
    output_shapes: tuple[tuple[int | None, ...], ...]
    loader: str                                 # how it was loaded (see module doc)
    repairs: tuple[str, ...] = ()               # legacy config keys dropped, per layer
    size_bytes: int = 0                         # on disk (a SavedModel: all its files)
    param_count: int | None = None              # weights (Keras models; None: unknown)
    keras_model: Any = field(default=None, repr=False, compare=False)


def import_tensorflow():
    """``tensorflow`` (quietly), or ToolNotFoundError naming the extra."""
    from tinyq.model.interpreters import capture_fd2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with capture_fd2() as noise:  # C++ start-up lines (oneDNN notices) stay off the terminal
        try:
            import keras  # noqa: F401 - imported here so its start-up output is captured too
            import tensorflow as tf
        except ImportError as exc:
            raise ToolNotFoundError(f"TensorFlow is not installed ({exc})",
                                    hint=CONVERT_HINT) from exc
        # The full (GPU-capable) wheel probes CUDA on first use and logs "failed call to
        # cuInit" on machines without a GPU: do that probe now, while stderr is captured.
        tf.config.list_physical_devices()
    log.debug("TensorFlow import: %s", " ".join(noise).strip())
    return tf


@contextlib.contextmanager
def quiet_tensorflow_logs() -> Iterator[None]:
    """Hold TensorFlow's Python warnings back (the TF1 fallback's deprecation notices are
    expected, not the user's concern); errors still pass."""
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf_log.setLevel(level)


def _disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def check_model_path(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The path and its kind, or ModelError for a missing or unknown model file."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model {p} not found",
                         hint="pass a .keras or .h5 file or a SavedModel folder", path=str(p))
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ModelError(f"{p} is a folder without saved_model.pb, not a SavedModel",
                             hint="pass a SavedModel folder, or a .keras/.h5 file", path=str(p))
        return p, "savedmodel"
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        raise ModelError(f"{p} is already a .tflite model",
                         hint="quantize the float Keras/SavedModel it came from", path=str(p))
    if suffix not in KERAS_SUFFIXES:
        raise ModelError(f"{p}: unknown model format {suffix or '(no suffix)'}",
                         hint="pass a .keras or .h5 file or a SavedModel folder", path=str(p))
    return p, "keras" if suffix == ".keras" else "h5"


def _repairing_objects(keras, repairs: list[str]) -> dict[str, type]:
    """custom_objects that drop known legacy config keys, then build the stock layer."""
    objects: dict[str, type] = {}
    for name, drops in LEGACY_LAYER_REPAIRS.items():
        base = getattr(keras.layers, name)

        def from_config(cls, config, _base=base, _drops=drops, _name=name):
            config = dict(config)
            for key, safe in _drops.items():
                if key in config and config[key] == safe:
                    del config[key]
                    repairs.append(f"{_name} '{config.get('name', '?')}': dropped legacy "
                                   f"{key}={safe!r}")
            return _base.from_config(config)

        objects[name] = type(name, (base,), {"from_config": classmethod(from_config)})
    return objects


def _shape(tensor_shape) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor_shape)


def load_keras_model(path: str | os.PathLike[str]):
    """A Keras 3 model from a ``.keras`` or ``.h5`` file (legacy configs repaired)."""
    model = load_model(path)
    if model.keras_model is None:
        raise UnsupportedError(f"{path} is a SavedModel, not a Keras model file",
                               hint="pass the .keras or .h5 file the model was saved as")
    return model.keras_model


def load_model(path: str | os.PathLike[str]) -> FloatModel:
    """Load a float model for conversion; ModelError in one line when it cannot load."""
    p, kind = check_model_path(path)
    tf = import_tensorflow()
    if kind == "savedmodel":
        return _load_saved_model(p, tf)
    import keras

    repairs: list[str] = []
    objects = _repairing_objects(keras, repairs) if kind == "h5" else {}
    try:
        model = keras.models.load_model(p, compile=False, custom_objects=objects)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one ModelError line
        raise ModelError(f"cannot load {p} as a Keras model: {_first_line(exc)}",
                         hint="check that the file is a Keras model saved by Keras 2.x/3.x "
                              "(re-save it with model.save('m.keras') if needed)",
                         path=str(p)) from exc
    for r in repairs:
        log.info("%s: %s", p, r)
    inputs = list(model.inputs or [])
    if len(inputs) != 1:
        raise UnsupportedError(f"{p} has {len(inputs)} inputs; tinyq handles one-input models",
                               hint="export a one-input model", path=str(p))
    loader = "keras" + (f" (repaired {len(repairs)} legacy layer configs)" if repairs else "")
    return FloatModel(
        path=str(p), kind=kind, input_shape=_shape(inputs[0].shape[1:]),
        input_dtype=str(getattr(inputs[0].dtype, "name", inputs[0].dtype)),
        output_shapes=tuple(_shape(o.shape[1:]) for o in model.outputs),
        loader=loader, repairs=tuple(repairs), size_bytes=_disk_size(p),
        param_count=int(model.count_params()), keras_model=model)


def _signature(p: Path, tf):
    """The serving signature's (input shape, dtype, output shapes), from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((p / "saved_model.pb").read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelError(f"{p}/saved_model.pb is corrupt: {_first_line(exc)}",
                         hint="re-export the SavedModel", path=str(p)) from exc
    for graph in proto.meta_graphs:
        sig = graph.signature_def.get("serving_default")
        if sig is None:
            continue
        if len(sig.inputs) != 1:
            raise UnsupportedError(f"{p} has {len(sig.inputs)} inputs; tinyq handles one-input "
                                   "models", hint="export a one-input model", path=str(p))
        (info,) = sig.inputs.values()

        def dims(ts):
            return tuple(None if d.size < 0 else int(d.size) for d in ts.dim)[1:]

        dtype = tf.dtypes.as_dtype(info.dtype).name
        outs = tuple(dims(o.tensor_shape) for o in sig.outputs.values())
        return dims(info.tensor_shape), dtype, outs
    raise ModelError(f"{p} has no 'serving_default' signature",
                     hint="export the model with a serving signature", path=str(p))


def _load_saved_model(p: Path, tf) -> FloatModel:
    shape, dtype, outs = _signature(p, tf)
    loader = "tf.saved_model"
    try:
        with quiet_tensorflow_logs():
            tf.saved_model.load(str(p))
    except Exception as exc:  # noqa: BLE001 - fall back to the TF1 graph loader below
        log.info("%s: tf.saved_model.load failed (%s); using the TF1 graph loader",
                 p, _first_line(exc))
        loader = f"tf.compat.v1 graph loader (tf.saved_model.load: {_first_line(exc)})"
    return FloatModel(path=str(p), kind="savedmodel", input_shape=shape, input_dtype=dtype,
                      output_shapes=outs, loader=loader, size_bytes=_disk_size(p))


def make_converter(model: FloatModel):
    """A fresh ``TFLiteConverter`` for ``model`` (the TF1 one for legacy SavedModels)."""
    tf = import_tensorflow()
    try:
        if model.keras_model is not None:
            return _keras_converter(tf, model)
        if model.loader == "tf.saved_model":
            return tf.lite.TFLiteConverter.from_saved_model(model.path)
        with quiet_tensorflow_logs():
            return tf.compat.v1.lite.TFLiteConverter.from_saved_model(
                model.path, signature_key="serving_default")
    except Exception as exc:  # noqa: BLE001 - the graph loader's own failure, one line
        raise ModelError(f"cannot load {model.path} for conversion: {_first_line(exc)}",
                         hint="re-export the model with TensorFlow 2.x (model.export(dir))",
                         path=model.path) from exc


def _keras_converter(tf, model: FloatModel):
    """Convert at batch size 1, so shapes are static (no SHAPE/PACK ops for Flatten)."""
    from tinyq.convert.keras_carry import is_tf_keras_model

    keras_model = model.keras_model
    if any(d is None for d in model.input_shape):
        return tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if is_tf_keras_model(keras_model):   # a tf-keras twin (see tinyq.convert.ptq.recurrent_form)
        import tf_keras as keras
    else:
        import keras
    inp = keras.Input(model.input_shape, batch_size=1, dtype=model.input_dtype)
    fixed = keras.Model(inp, keras_model(inp, training=False), name=keras_model.name)
    return tf.lite.TFLiteConverter.from_keras_model(fixed)
