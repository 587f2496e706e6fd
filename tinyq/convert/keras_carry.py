"""Carry a Keras 3 model over to tf-keras (Keras 2): rebuild the architecture, copy the weights.

Why: ``tensorflow-model-optimization`` (QAT) only works on tf-keras models, while
TensorFlow 2.21 builds and saves Keras 3 models, and a Keras 3 ``.keras`` file does
not load in tf-keras (DESIGN.md section 3). So tinyq rebuilds the model layer by
layer in tf-keras from each layer's forward-pass settings, copies the weights,
and checks that both models give the same outputs on sample data.

What is carried: Sequential and Functional models (nested ones are inlined),
built from the layers in :data:`CARRIERS` (the docs list is generated from it).
Initializers are irrelevant (weights are copied); L1/L2 regularizers are carried;
other regularizers and constraints are dropped and listed in
:attr:`CarryResult.dropped`. Anything else (custom layers, ``Lambda``, raw
``keras.ops`` calls in a functional graph, mixed precision) is named in one
:class:`~tinyq.errors.UnsupportedError` before anything is built.

Only ``tf_keras`` is imported here (lazily), never ``tensorflow_model_optimization``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyq.errors import ModelError, ToolNotFoundError, UnsupportedError

log = logging.getLogger(__name__)

#: Outputs of the rebuilt model must match the original within
#: ``CARRY_ATOL + CARRY_RTOL * max|original output|`` (both run the same
#: TensorFlow float32 kernels, so measured differences are 0 or a few ulp).
CARRY_RTOL = 1e-4
CARRY_ATOL = 1e-5
#: Samples used for the output check when the caller gives none (random normal).
CARRY_CHECK_SAMPLES = 8
#: Length given to an input dimension the model leaves open (e.g. a recurrent model's time
#: steps) in that random check data: long enough for state to flow through a few steps.
CARRY_CHECK_OPEN_DIM = 8

QAT_INSTALL_HINT = "install the QAT extra: pip install 'tinyq[qat]'"


@dataclass(frozen=True)
class Carrier:
    """How one Keras 3 layer class maps to tf-keras: the target class and the settings to copy."""

    target: str                          # tf_keras.layers class name
    keys: tuple[str, ...]                # get_config() keys that shape the forward pass
    renames: tuple[tuple[str, str], ...] = ()   # (keras 3 key, tf-keras key)


_CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
         "groups", "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")
_GPOOL = ("data_format", "keepdims")

#: Keras 3 layer class name -> how to rebuild it in tf-keras.
CARRIERS: dict[str, Carrier] = {
    "Conv1D": Carrier("Conv1D", _CONV),
    "Conv2D": Carrier("Conv2D", _CONV),
    "DepthwiseConv2D": Carrier("DepthwiseConv2D", (
        "kernel_size", "strides", "padding", "depth_multiplier", "data_format",
        "dilation_rate", "activation", "use_bias")),
    "SeparableConv2D": Carrier("SeparableConv2D", (
        "filters", "kernel_size", "strides", "padding", "depth_multiplier", "data_format",
        "dilation_rate", "activation", "use_bias")),
    "Dense": Carrier("Dense", ("units", "activation", "use_bias")),
    "BatchNormalization": Carrier("BatchNormalization", (
        "axis", "momentum", "epsilon", "center", "scale")),
    "Activation": Carrier("Activation", ("activation",)),
    "ReLU": Carrier("ReLU", ("max_value", "negative_slope", "threshold")),
    "LeakyReLU": Carrier("LeakyReLU", ("negative_slope",), (("negative_slope", "alpha"),)),
    "Softmax": Carrier("Softmax", ("axis",)),
    "MaxPooling1D": Carrier("MaxPooling1D", _POOL),
    "MaxPooling2D": Carrier("MaxPooling2D", _POOL),
    "AveragePooling1D": Carrier("AveragePooling1D", _POOL),
    "AveragePooling2D": Carrier("AveragePooling2D", _POOL),
    "GlobalAveragePooling1D": Carrier("GlobalAveragePooling1D", _GPOOL),
    "GlobalAveragePooling2D": Carrier("GlobalAveragePooling2D", _GPOOL),
    "GlobalMaxPooling1D": Carrier("GlobalMaxPooling1D", _GPOOL),
    "GlobalMaxPooling2D": Carrier("GlobalMaxPooling2D", _GPOOL),
    "Flatten": Carrier("Flatten", ("data_format",)),
    "Reshape": Carrier("Reshape", ("target_shape",)),
    "Permute": Carrier("Permute", ("dims",)),
    "ZeroPadding2D": Carrier("ZeroPadding2D", ("padding", "data_format")),
    "UpSampling2D": Carrier("UpSampling2D", ("size", "data_format", "interpolation")),
    "Dropout": Carrier("Dropout", ("rate", "noise_shape", "seed")),
    "Rescaling": Carrier("Rescaling", ("scale", "offset")),
    "Add": Carrier("Add", ()),
    "Subtract": Carrier("Subtract", ()),
    "Multiply": Carrier("Multiply", ()),
    "Average": Carrier("Average", ()),
    "Maximum": Carrier("Maximum", ()),
    "Minimum": Carrier("Minimum", ()),
    "Concatenate": Carrier("Concatenate", ("axis",)),
}

_RNN = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences",
        "return_state", "go_backwards", "unroll")

#: What conversion carries (not QAT): CARRIERS plus LSTM, which tf-keras converts to the
#: fused UNIDIRECTIONAL_SEQUENCE_LSTM op where Keras 3 gives a WHILE loop. Dropout
#: settings are left out on purpose: they do nothing at inference.
CONVERT_CARRIERS: dict[str, Carrier] = {**CARRIERS, "LSTM": Carrier("LSTM", _RNN)}

#: Keras 3 activation names tf-keras knows by the same name.
_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softmax", "softplus",
    "softsign", "elu", "selu", "swish", "silu", "gelu", "exponential", "mish",
})
#: Activations tfmot's fake quantization takes inside a Conv/Dense layer
#: (``QuantizeAwareActivation`` of tensorflow-model-optimization 0.8: pre- and post-quant sets).
QAT_LAYER_ACTIVATIONS = frozenset({"linear", "relu", "softmax", "sigmoid", "tanh", "swish",
                                   "gelu"})
#: Activations tfmot refuses inside a layer but takes as a layer of their own: activation
#: name -> (tf-keras layer class, its settings, how the note writes it). The rewrite
#: computes the same function, so the carried model's outputs still match the original.
SPLIT_ACTIVATIONS: Mapping[str, tuple[str, Mapping[str, Any], str]] = {
    "relu6": ("ReLU", {"max_value": 6.0}, "ReLU(max_value=6)"),
}
#: Regularizer classes carried over (others are dropped and reported).
_REGULARIZERS = {"L1": "L1", "L2": "L2", "L1L2": "L1L2"}


@dataclass(frozen=True)
class CarryResult:
    """A tf-keras twin of a Keras 3 model and the evidence that it computes the same thing."""

    model: Any                       # tf_keras.Model
    layers: tuple[str, ...]          # names of the layers carried over, in build order
    dropped: tuple[str, ...]         # settings not carried (e.g. "conv1.kernel_constraint")
    max_abs_diff: float              # largest |original - rebuilt| output on the check samples
    check_samples: int
    split: tuple[str, ...] = ()      # layers whose activation became a layer of its own


def import_tf_keras():
    """``tf_keras``, or :class:`ToolNotFoundError` saying how to install it."""
    try:
        import tf_keras
    except ImportError as exc:
        raise ToolNotFoundError("tf-keras is not installed", hint=QAT_INSTALL_HINT,
                                tool="tf-keras") from exc
    return tf_keras


def is_tf_keras_model(model: object) -> bool:
    """True for a tf-keras (Keras 2) model, without importing tf_keras if it is not loaded."""
    return any(c.__module__.startswith("tf_keras.") for c in type(model).__mro__)


def is_keras3_model(model: object) -> bool:
    """True for a Keras 3 model."""
    return any(c.__module__.startswith("keras.") and c.__name__ == "Model"
               for c in type(model).__mro__)


def _kind(layer: object) -> str:
    return type(layer).__name__


def _is_model(layer: object) -> bool:
    """A Sequential or Functional model (a graph of layers tinyq can walk)."""
    return any(c.__name__ in ("Sequential", "Functional") for c in type(layer).__mro__)


def _is_layer(op: object) -> bool:
    """A ``keras.layers.Layer`` (as opposed to a raw ``keras.ops`` operation)."""
    return any(c.__name__ == "Layer" and c.__module__.startswith("keras.")
               for c in type(op).__mro__)


def _is_input_layer(op: object) -> bool:
    return _kind(op) == "InputLayer"


def walk_layers(model) -> list:
    """Every operation in ``model`` (nested models expanded), InputLayers excluded."""
    found: list = []
    ops = model.layers if _kind(model) == "Sequential" else getattr(
        model, "operations", model.layers)
    for op in ops:
        if _is_input_layer(op):
            continue
        if _is_model(op):
            found.extend(walk_layers(op))
        else:
            found.append(op)
    return found


def _problems(layer, carriers: Mapping[str, Carrier] = CARRIERS) -> list[str]:
    """Why ``layer`` cannot be carried (empty list when it can)."""
    kind = _kind(layer)
    name = getattr(layer, "name", kind)
    if not _is_layer(layer):
        return [f"'{name}' (keras.ops.{kind} call; use the matching keras.layers layer)"]
    if kind not in carriers:
        if kind == "Lambda":
            return [f"'{name}' (Lambda: arbitrary Python code)"]
        if is_keras3_model(layer):
            return [f"'{name}' (subclassed Model {kind}: no layer graph to rebuild)"]
        return [f"'{name}' ({kind}, not in tinyq's carry table)"]
    issues = []
    policy = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
    if policy != "float32":
        issues.append(f"'{name}' ({kind}, dtype policy {policy}; only float32 is carried)")
    config = layer.get_config()
    act = config.get("activation")
    if act is not None and not (isinstance(act, str) and act in _ACTIVATIONS):
        label = act if isinstance(act, str) else act.get("class_name", "custom")
        issues.append(f"'{name}' ({kind}, activation {label!r})")
    if config.get("lora_rank"):
        issues.append(f"'{name}' ({kind}, LoRA-enabled)")
    if getattr(layer, "quantization_mode", None):
        issues.append(f"'{name}' ({kind}, already quantized by Keras)")
    return issues


def check_carryable(model, carriers: Mapping[str, Carrier] = CARRIERS) -> None:
    """Every layer of the model can be rebuilt in tf-keras; otherwise one line names them all."""
    if not _is_model(model):
        if is_keras3_model(model):
            raise UnsupportedError(
                f"model '{model.name}' is a subclassed {type(model).__name__}: it has no layer "
                "graph tinyq can rebuild in tf-keras",
                hint="build it with the Sequential or Functional API for QAT")
        raise ModelError(f"expected a Keras model, got {type(model).__name__}",
                         hint="pass a .keras or .h5 model file")
    problems = [p for layer in walk_layers(model) for p in _problems(layer, carriers)]
    if problems:
        raise UnsupportedError(
            f"cannot rebuild {len(problems)} layer(s) in tf-keras for QAT: "
            + "; ".join(problems),
            hint="replace them with standard keras.layers (supported: "
            + ", ".join(sorted(carriers)) + ") or quantize without QAT (`tinyq quantize`)",
            layers=tuple(problems),
        )


def _regularizer(tfk, spec, where: str, dropped: list[str]):
    if spec is None:
        return None
    name = spec.get("class_name") if isinstance(spec, dict) else None
    if name in _REGULARIZERS:
        return getattr(tfk.regularizers, _REGULARIZERS[name])(**spec.get("config", {}))
    dropped.append(where)
    return None


def _make_layer(tfk, layer, name: str, dropped: list[str],
                carriers: Mapping[str, Carrier] = CARRIERS, activation: str | None = None):
    """The tf-keras twin of ``layer`` (``activation``: replaces the layer's own)."""
    carrier = carriers[_kind(layer)]
    config = layer.get_config()
    renames = dict(carrier.renames)
    kwargs: dict[str, Any] = {}
    for key in carrier.keys:
        if key in config:
            value = config[key]
            kwargs[renames.get(key, key)] = list(value) if isinstance(value, tuple) else value
    for key, value in config.items():
        if value is None:
            continue
        if key.endswith("_regularizer"):
            reg = _regularizer(tfk, value, f"{layer.name}.{key}", dropped)
            if reg is not None:
                kwargs[key] = reg
        elif key.endswith("_constraint"):
            dropped.append(f"{layer.name}.{key}")
    if activation is not None:
        kwargs["activation"] = activation
    if "target_shape" in kwargs:
        kwargs["target_shape"] = tuple(kwargs["target_shape"])
    if "dims" in kwargs:
        kwargs["dims"] = tuple(kwargs["dims"])
    return getattr(tfk.layers, carrier.target)(name=name, trainable=layer.trainable, **kwargs)


class _Builder:
    """Rebuilds the graph in tf-keras: one new layer per original (shared layers stay shared)."""

    def __init__(self, tfk, carriers: Mapping[str, Carrier] = CARRIERS,
                 split_activations: bool = False) -> None:
        self.tfk = tfk
        self.carriers = carriers
        self.split_activations = split_activations
        self.split: list[str] = []
        self.after: dict[int, Any] = {}       # id(original layer) -> its split-off activation
        self.new_layers: dict[int, Any] = {}
        self.pairs: list[tuple[Any, Any]] = []
        self.names: set[str] = set()
        self.dropped: list[str] = []

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}_{n}"
        self.names.add(candidate)
        return candidate

    def call_layer(self, layer, args: Sequence[Any], kwargs: dict[str, Any]):
        if _is_model(layer):
            flat = [a for a in _flatten(list(args))]
            return self.apply(layer, flat)
        new = self.new_layers.get(id(layer))
        if new is None:
            new = self._make(layer)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
        out = new(*args, **kwargs)
        after = self.after.get(id(layer))
        return out if after is None else after(out)

    def _make(self, layer):
        """The tf-keras twin of ``layer``; with ``split_activations``, an activation tfmot
        takes only as a layer of its own (relu6) becomes one, applied after the twin."""
        act = layer.get_config().get("activation")
        split = (SPLIT_ACTIVATIONS.get(act) if self.split_activations and isinstance(act, str)
                 and _kind(layer) != "Activation" else None)
        new = _make_layer(self.tfk, layer, self._unique(layer.name), self.dropped,
                          self.carriers, activation="linear" if split else None)
        self.new_layers[id(layer)] = new
        self.pairs.append((layer, new))
        if split:
            target, settings, text = split
            self.after[id(layer)] = getattr(self.tfk.layers, target)(
                name=self._unique(f"{layer.name}_{act}"), **settings)
            self.split.append(f"'{layer.name}' ({_kind(layer)}, activation={act!r}) -> "
                              f"{_kind(layer)} + {text}")
        return new

    def apply(self, model, inputs: Sequence[Any]):
        """Apply ``model``'s layers to tf-keras tensors ``inputs``; return its outputs."""
        if _kind(model) == "Sequential":
            (x,) = inputs
            for layer in model.layers:
                if not _is_input_layer(layer):
                    x = self.call_layer(layer, [x], {})
            return x
        memo: dict[int, Any] = {id(kt): t for kt, t in zip(model.inputs, inputs, strict=True)}

        def resolve(kt):
            if id(kt) in memo:
                return memo[id(kt)]
            op, node_index, tensor_index = kt._keras_history
            if _is_input_layer(op):
                raise ModelError(f"model input '{op.name}' is not among the model's inputs",
                                 hint="save the model as a plain Functional model")
            node = op._inbound_nodes[node_index]
            args, kwargs = node.arguments.convert(
                lambda v: resolve(v) if _is_keras_tensor(v) else v)
            out = self.call_layer(op, args, kwargs)
            outs = _flatten(out if isinstance(out, (list, tuple)) else [out])
            for original, new in zip(node.outputs, outs, strict=True):
                memo[id(original)] = new
            return memo[id(kt)]

        outputs = [resolve(kt) for kt in model.outputs]
        return outputs[0] if len(outputs) == 1 else outputs


def _is_keras_tensor(value: object) -> bool:
    return type(value).__name__ == "KerasTensor"


def _flatten(items) -> list:
    out = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _model_inputs(model) -> list:
    try:
        return list(model.inputs)
    except (AttributeError, ValueError) as exc:
        raise ModelError(f"model '{model.name}' has no defined inputs (it was never built)",
                         hint="build it with keras.Input(shape=...) before saving") from exc


def call_model(model, xs: Sequence[np.ndarray]):
    """``model(inputs, training=False)`` with the inputs in the structure the model was built
    with (a Keras 3 model saved with ``inputs=[x]`` warns when given a bare tensor)."""
    struct = getattr(model, "_inputs_struct", None)
    arg = list(xs) if len(xs) > 1 or isinstance(struct, (list, tuple)) else xs[0]
    return model(arg, training=False)


def _predict(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    out = call_model(model, xs)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o, dtype=np.float64) for o in outs]


def _check_samples(model, sample) -> list[np.ndarray]:
    if sample is not None:
        samples = sample if isinstance(sample, (list, tuple)) else [sample]
        return [np.asarray(s, dtype=np.float32)[:CARRY_CHECK_SAMPLES] for s in samples]
    rng = np.random.default_rng(0)
    shapes = [tuple(CARRY_CHECK_OPEN_DIM if d is None else d for d in kt.shape[1:])
              for kt in _model_inputs(model)]
    return [rng.standard_normal((CARRY_CHECK_SAMPLES, *shape)).astype(np.float32)
            for shape in shapes]


def carry_to_tf_keras(model, sample: np.ndarray | Sequence[np.ndarray] | None = None,
                      *, progress: Callable[[str], None] | None = None,
                      carriers: Mapping[str, Carrier] = CARRIERS,
                      split_activations: bool = False) -> CarryResult:
    """Rebuild a Keras 3 ``model`` in tf-keras, copy its weights, check the outputs match.

    ``sample``: inputs for the check (the first :data:`CARRY_CHECK_SAMPLES` rows are
    used); random normal data of the input shape when ``None``. ``split_activations``
    (for QAT): a Conv/Dense activation tfmot does not take inside the layer
    (:data:`SPLIT_ACTIVATIONS`, e.g. relu6) becomes a separate layer computing the same
    (listed in :attr:`CarryResult.split`).
    Raises :class:`UnsupportedError` naming every layer it cannot carry, and
    :class:`ModelError` if the rebuilt model's outputs differ.
    """
    check_carryable(model, carriers)
    tfk = import_tf_keras()
    originals = _model_inputs(model)
    builder = _Builder(tfk, carriers, split_activations)
    new_inputs = [tfk.Input(shape=tuple(kt.shape[1:]), dtype=str(kt.dtype),
                            name=builder._unique(_input_name(kt, i)))
                  for i, kt in enumerate(originals)]
    outputs = builder.apply(model, new_inputs)
    new_model = tfk.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0], outputs,
                          name=builder._unique(model.name))
    for original, new in builder.pairs:
        weights = original.get_weights()
        expected = [tuple(w.shape) for w in new.get_weights()]
        if [tuple(w.shape) for w in weights] != expected:  # weight order differs
            raise UnsupportedError(
                f"layer '{original.name}' ({_kind(original)}): weight shapes "
                f"{[tuple(w.shape) for w in weights]} do not match the tf-keras rebuild {expected}",
                hint="report this model to tinyq; quantize without QAT meanwhile")
        new.set_weights(weights)
    if progress:
        progress(f"rebuilt {len(builder.pairs)} layers in tf-keras; checking outputs")
    xs = _check_samples(model, sample)
    want, got = _predict(model, xs), _predict(new_model, xs)
    diff = max(float(np.max(np.abs(a - b))) if a.size else 0.0
               for a, b in zip(want, got, strict=True))
    bound = CARRY_ATOL + CARRY_RTOL * max(float(np.max(np.abs(a))) if a.size else 0.0
                                          for a in want)
    if not np.isfinite(diff) or diff > bound:
        raise ModelError(
            f"the tf-keras rebuild of '{model.name}' differs from the original by {diff:.3g} "
            f"(allowed {bound:.3g})",
            hint="a layer setting was not carried over; report this model to tinyq",
            max_abs_diff=diff)
    if builder.dropped:
        log.warning("not carried to tf-keras (no effect on inference): %s",
                    ", ".join(builder.dropped))
    return CarryResult(model=new_model, layers=tuple(new.name for _, new in builder.pairs),
                       dropped=tuple(builder.dropped), max_abs_diff=diff,
                       check_samples=int(xs[0].shape[0]), split=tuple(builder.split))


def _input_name(kt, index: int) -> str:
    op = kt._keras_history[0] if getattr(kt, "_keras_history", None) else None
    return getattr(op, "name", None) or f"input_{index}"
