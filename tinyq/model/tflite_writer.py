"""Write tinyq's IR back to .tflite bytes, and build small models in code.

The inverse of ``tinyq.model.tflite_reader``: ``write_model(read_model(p))`` gives a
model that reads back field for field (tensors, quantization, constant data,
ops, options, versions, graph inputs/outputs). It uses the builder functions
of the ``tflite`` package (``ModelStart``/``OperatorStart``/...), and options
are written generically from the same snake_case dicts the reader produces.

Constant data is aligned to 16 bytes in the flatbuffer (as the TFLite
converter does), so the bytes can be embedded in firmware and used in place.

For tests, ``GraphBuilder`` and ``single_op_model`` build models in a few lines::

    g = GraphBuilder()
    x = g.add_tensor((1, 8), "int8", scale=0.1, zero_point=-3)
    w = g.add_constant(np.ones((4, 8), np.int8), scale=[0.01] * 4, zero_point=[0] * 4)
    b = g.add_constant(np.zeros(4, np.int32), scale=[0.001] * 4, zero_point=[0] * 4)
    y = g.add_tensor((1, 4), "int8", scale=0.2, zero_point=0)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y], {"fused_activation_function": "NONE"})
    data = g.build()                  # graph inputs/outputs default to the free tensors
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

import numpy as np

from tinyq.errors import ModelError
from tinyq.model import ir
from tinyq.model.tflite_reader import (
    ENUM_FIELDS,
    OPCODE_NUMBERS,
    TENSOR_TYPE_NUMBERS,
    TFLITE_IDENTIFIER,
    enum_value_names,
    option_fields,
)

#: Alignment of constant buffers in the flatbuffer (the TFLite converter uses 16).
BUFFER_ALIGNMENT = 16
#: Builder's initial capacity; it grows as needed.
_INITIAL_BUILDER_BYTES = 1024
#: builtin_code values above this are stored as PLACEHOLDER_FOR_GREATER_OP_CODES in
#: deprecated_builtin_code (schema v3a).
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127

#: Ops whose options class is not named after the op (all others: the op name without
#: underscores, case-insensitively, + "Options", e.g. CONV_2D -> Conv2DOptions).
OPTIONS_CLASS_OVERRIDES: Mapping[str, str] = MappingProxyType({
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions",
    "REDUCE_PROD": "ReducerOptions",
    "REDUCE_ANY": "ReducerOptions",
    "REDUCE_ALL": "ReducerOptions",
    "L2_NORMALIZATION": "L2NormOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
    "LSTM": "LSTMOptions",
    "RNN": "RNNOptions",
    "SVDF": "SVDFOptions",
    "TOPK_V2": "TopKV2Options",
})

#: Op versions the TFLite converter writes for int8 models (ops not listed: 1).
#: TFLM ignores versions; LiteRT accepts any version it registers.
INT8_OP_VERSIONS: Mapping[str, int] = MappingProxyType({
    "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4,
    "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "ADD": 2, "MUL": 2, "SUB": 2,
    "SOFTMAX": 2, "LOGISTIC": 2, "TANH": 2, "PAD": 2, "PADV2": 2,
    "CONCATENATION": 2, "MEAN": 2, "DEQUANTIZE": 2, "RELU": 2, "RELU6": 2,
    "LEAKY_RELU": 2, "QUANTIZE": 2, "MAXIMUM": 2, "MINIMUM": 2,
})


_SAME_CONV = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1,
              "dilation_h_factor": 1, "fused_activation_function": "NONE"}
_POOL = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}

#: Options ``GraphBuilder.add_op`` starts from (the caller's options override them), so a
#: test need only name what differs. The schema's own defaults (e.g. stride 0) are not
#: runnable, which is why these exist. Pools still need filter_width/filter_height.
BUILDER_DEFAULT_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "CONV_2D": _SAME_CONV,
    "DEPTHWISE_CONV_2D": {**_SAME_CONV, "depth_multiplier": 1},
    "AVERAGE_POOL_2D": _POOL,
    "MAX_POOL_2D": _POOL,
    "FULLY_CONNECTED": {"fused_activation_function": "NONE", "weights_format": "DEFAULT",
                        "keep_num_dims": False},
    "ADD": {"fused_activation_function": "NONE"},
    "MUL": {"fused_activation_function": "NONE"},
    "SUB": {"fused_activation_function": "NONE"},
    "SOFTMAX": {"beta": 1.0},
    "CONCATENATION": {"fused_activation_function": "NONE"},
    "MEAN": {"keep_dims": False},
})


def default_version(opcode: str, input_dtype: str | None) -> int:
    """The op version the converter would write for this op and input dtype."""
    if input_dtype == "int8":
        return INT8_OP_VERSIONS.get(opcode, 1)
    return 1


# ---------------------------------------------------------------------------- options


@cache
def _options_enum() -> dict[str, tuple[str, int]]:
    """Options class name -> (union enum name, union type number)."""
    out: dict[str, tuple[str, int]] = {}
    for union in ("BuiltinOptions2", "BuiltinOptions"):  # BuiltinOptions wins on clashes
        cls = getattr(importlib.import_module(f"tflite.{union}"), union)
        for name, value in vars(cls).items():
            if not name.startswith("_") and isinstance(value, int) and value:
                out[name] = (union, value)
    return out


@cache
def options_class_name(opcode: str) -> str | None:
    """The schema's options table for a builtin op, or None if it has none."""
    if opcode in OPTIONS_CLASS_OVERRIDES:
        return OPTIONS_CLASS_OVERRIDES[opcode]
    wanted = opcode.replace("_", "").lower() + "options"
    for name in _options_enum():
        if name.lower() == wanted:
            return name
    return None


@cache
def _options_module(class_name: str) -> Any:
    return importlib.import_module(f"tflite.{class_name}")


_FLAGS_RE = re.compile(r"number_types\.(\w+Flags)")


@cache
def _vector_dtype(class_name: str, method: str) -> np.dtype:
    """Element dtype of a numeric vector field, from the generated ``XAsNumpy`` accessor."""
    import flatbuffers.number_types as nt

    cls = getattr(_options_module(class_name), class_name)
    source = inspect.getsource(getattr(cls, f"{method}AsNumpy"))
    flags = _FLAGS_RE.findall(source)
    if not flags:
        return np.dtype("int32")
    return np.dtype(nt.to_numpy_type(getattr(nt, flags[-1])))


def _enum_number(key: str, value: Any, opcode: str) -> int:
    if not isinstance(value, str):
        return int(value)
    names = enum_value_names(ENUM_FIELDS[key])
    for number, name in names.items():
        if name == value:
            return number
    raise ModelError(f"{opcode}: option {key}={value!r} is not one of {sorted(names.values())}",
                     hint="fix the option value", op=opcode)


def _write_options(builder: Any, opcode: str, options: Mapping[str, Any]) -> tuple[int, int, int]:
    """Write the options table; return (union kind 1|2, union type, table offset) or zeros.

    An empty dict writes no table (as the reader reports a missing one), so a model
    read from a file writes back the same way.
    """
    if not options:
        return 0, 0, 0
    class_name = options_class_name(opcode)
    if class_name is None:
        raise ModelError(f"{opcode} takes no builtin options but got {sorted(options)}",
                         hint="drop the options", op=opcode)
    module = _options_module(class_name)
    cls = getattr(module, class_name)
    fields = {key: (method, kind) for method, key, kind in option_fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ModelError(f"{opcode}: unknown option(s) {unknown} for {class_name}",
                         hint=f"valid options: {sorted(fields)}", op=opcode)
    vectors: dict[str, int] = {}
    for key, value in options.items():
        method, kind = fields[key]
        if kind == "numeric_vector":
            arr = np.asarray(list(value), dtype=_vector_dtype(class_name, method))
            vectors[key] = builder.CreateNumpyVector(arr)
        elif kind == "vector":
            raise ModelError(f"{opcode}: writing the table-vector option {key!r} is not supported",
                             hint="build this op with the TFLite converter", op=opcode)
    getattr(module, f"{class_name}Start")(builder)
    for key, value in options.items():
        method, kind = fields[key]
        add = getattr(module, f"{class_name}Add{method}")
        if key in vectors:
            add(builder, vectors[key])
        elif key in ENUM_FIELDS:
            add(builder, _enum_number(key, value, opcode))
        elif isinstance(value, (dict, list, tuple)):
            raise ModelError(f"{opcode}: option {key!r} must be a scalar, got {value!r}",
                             hint="fix the option value", op=opcode)
        else:
            add(builder, value)
    table = getattr(module, f"{class_name}End")(builder)
    union, number = _options_enum()[class_name]
    return (2 if union == "BuiltinOptions2" else 1), number, table


# ---------------------------------------------------------------------------- model


def _aligned_bytes(builder: Any, payload: bytes) -> int:
    builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
    builder.head = builder.head - len(payload)
    builder.Bytes[builder.head:builder.head + len(payload)] = payload
    builder.vectorNumElems = len(payload)
    return builder.EndVector()


def _pack_int4(raw: bytes) -> bytes:
    vals = np.frombuffer(raw, dtype=np.int8).astype(np.uint8) & 0x0F
    if vals.size % 2:
        vals = np.append(vals, np.uint8(0))
    return (vals[0::2] | (vals[1::2] << 4)).astype(np.uint8).tobytes()


def _vector(builder: Any, values: Sequence[Any], dtype: str) -> int:
    return builder.CreateNumpyVector(np.asarray(values, dtype=dtype).reshape(-1))


def _offset_vector(builder: Any, start: Any, offsets: Sequence[int]) -> int:
    start(builder, len(offsets))
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def write_model(model: ir.Model, external_buffers: bool = False) -> bytes:
    """Serialize an ``ir.Model`` (one subgraph) to .tflite bytes with identifier TFL3.

    ``external_buffers`` stores constant data after the flatbuffer (``Buffer.offset``/
    ``size``, 16-byte aligned), the layout the converter uses for models over 2 GB.
    LiteRT reads it; TFLM does not, so firmware needs the default inline layout.
    """
    if not external_buffers:
        return _write(model, None)
    # Pass 1 with placeholder offsets sizes the flatbuffer (uint64 slots have a fixed
    # width, so real offsets in pass 2 do not change its size).
    payloads = _payloads(model)[0]
    probe = _write(model, [2] * len(payloads))
    offsets, end = [], _align(len(probe))
    for payload in payloads:
        offsets.append(end)
        end = _align(end + len(payload))
    head = _write(model, offsets)
    if len(head) != len(probe):
        raise AssertionError("flatbuffer size changed between passes")
    out = bytearray(end)
    out[:len(head)] = head
    for offset, payload in zip(offsets, payloads, strict=True):
        out[offset:offset + len(payload)] = payload
    return bytes(out)


def _align(n: int) -> int:
    return (n + BUFFER_ALIGNMENT - 1) // BUFFER_ALIGNMENT * BUFFER_ALIGNMENT


def _payloads(model: ir.Model) -> tuple[list[bytes], list[int]]:
    """Constant payloads (buffer i+1) and each tensor's buffer index (0: none)."""
    payloads: list[bytes] = []
    tensor_buffer: list[int] = []
    for t in model.tensors:
        if t.data is None:
            tensor_buffer.append(0)
            continue
        payloads.append(_pack_int4(t.data) if t.dtype == "int4" else t.data)
        tensor_buffer.append(len(payloads))
    return payloads, tensor_buffer


def _write(model: ir.Model, external_offsets: list[int] | None) -> bytes:
    import flatbuffers

    # The package re-exports each class under its module's name, so fetch the modules
    # (which hold the builder functions) from importlib.
    Buffer, Model, Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor = (
        importlib.import_module(f"tflite.{name}") for name in (
            "Buffer", "Model", "Operator", "OperatorCode", "QuantizationParameters",
            "SubGraph", "Tensor"))

    b = flatbuffers.Builder(_INITIAL_BUILDER_BYTES)

    # Buffers: 0 is the empty sentinel; one per constant tensor.
    payloads, tensor_buffer = _payloads(model)
    buffer_offsets = []
    for i, payload in enumerate([b"", *payloads]):
        data_off = _aligned_bytes(b, payload) if payload and external_offsets is None else 0
        Buffer.BufferStart(b)
        if data_off:
            Buffer.BufferAddData(b, data_off)
        if payload and external_offsets is not None:
            Buffer.BufferAddOffset(b, external_offsets[i - 1])
            Buffer.BufferAddSize(b, len(payload))
        buffer_offsets.append(Buffer.BufferEnd(b))

    # Tensors.
    tensor_offsets = []
    for t, buf in zip(model.tensors, tensor_buffer, strict=True):
        if t.dtype not in TENSOR_TYPE_NUMBERS:
            raise ModelError(f"tensor {t.index} {t.name!r} has unknown dtype {t.dtype!r}",
                             hint=f"use one of {sorted(TENSOR_TYPE_NUMBERS)}")
        name = b.CreateString(t.name)
        shape = _vector(b, t.shape, "int32")
        quant = 0
        if t.quant is not None:
            scale = _vector(b, t.quant.scale, "float32")
            zp = _vector(b, t.quant.zero_point, "int64")
            QuantizationParameters.QuantizationParametersStart(b)
            QuantizationParameters.QuantizationParametersAddScale(b, scale)
            QuantizationParameters.QuantizationParametersAddZeroPoint(b, zp)
            QuantizationParameters.QuantizationParametersAddQuantizedDimension(b, t.quant.axis)
            quant = QuantizationParameters.QuantizationParametersEnd(b)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, TENSOR_TYPE_NUMBERS[t.dtype])
        Tensor.TensorAddBuffer(b, buf)
        Tensor.TensorAddName(b, name)
        if quant:
            Tensor.TensorAddQuantization(b, quant)
        if t.is_variable:
            Tensor.TensorAddIsVariable(b, True)
        tensor_offsets.append(Tensor.TensorEnd(b))

    # Operator codes: one per distinct (opcode, version, custom_code).
    codes: dict[tuple[str, int, str | None], int] = {}
    for op in model.operators:
        codes.setdefault((op.opcode, op.version, op.custom_code), len(codes))
    code_offsets = []
    for opcode, version, custom in codes:
        if opcode not in OPCODE_NUMBERS:
            raise ModelError(f"unknown builtin op {opcode!r}",
                             hint="use a TFLite builtin op name such as CONV_2D")
        number = OPCODE_NUMBERS[opcode]
        custom_off = b.CreateString(custom) if custom else 0
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(
            b, min(number, _PLACEHOLDER_FOR_GREATER_OP_CODES))
        OperatorCode.OperatorCodeAddBuiltinCode(b, number)
        OperatorCode.OperatorCodeAddVersion(b, version)
        if custom_off:
            OperatorCode.OperatorCodeAddCustomCode(b, custom_off)
        code_offsets.append(OperatorCode.OperatorCodeEnd(b))

    # Operators.
    op_offsets = []
    for op in model.operators:
        inputs = _vector(b, op.inputs, "int32")
        outputs = _vector(b, op.outputs, "int32")
        custom_opts = 0
        options = dict(op.options)
        if op.opcode == "CUSTOM":
            raw = options.pop("custom_options", b"")
            custom_opts = b.CreateByteVector(bytes(raw)) if raw else 0
            kind, union_type, table = 0, 0, 0
        else:
            kind, union_type, table = _write_options(b, op.opcode, options)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, codes[(op.opcode, op.version, op.custom_code)])
        Operator.OperatorAddInputs(b, inputs)
        Operator.OperatorAddOutputs(b, outputs)
        if kind == 1:
            Operator.OperatorAddBuiltinOptionsType(b, union_type)
            Operator.OperatorAddBuiltinOptions(b, table)
        elif kind == 2:
            Operator.OperatorAddBuiltinOptions2Type(b, union_type)
            Operator.OperatorAddBuiltinOptions2(b, table)
        if custom_opts:
            Operator.OperatorAddCustomOptions(b, custom_opts)
        op_offsets.append(Operator.OperatorEnd(b))

    # Subgraph 0.
    tensors_vec = _offset_vector(b, SubGraph.SubGraphStartTensorsVector, tensor_offsets)
    ops_vec = _offset_vector(b, SubGraph.SubGraphStartOperatorsVector, op_offsets)
    sg_inputs = _vector(b, model.inputs, "int32")
    sg_outputs = _vector(b, model.outputs, "int32")
    sg_name = b.CreateString("main")
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tensors_vec)
    SubGraph.SubGraphAddInputs(b, sg_inputs)
    SubGraph.SubGraphAddOutputs(b, sg_outputs)
    SubGraph.SubGraphAddOperators(b, ops_vec)
    SubGraph.SubGraphAddName(b, sg_name)
    subgraph = SubGraph.SubGraphEnd(b)

    codes_vec = _offset_vector(b, Model.ModelStartOperatorCodesVector, code_offsets)
    subgraphs_vec = _offset_vector(b, Model.ModelStartSubgraphsVector, [subgraph])
    buffers_vec = _offset_vector(b, Model.ModelStartBuffersVector, buffer_offsets)
    description = b.CreateString(model.description or "tinyq")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, model.schema_version or 3)
    Model.ModelAddOperatorCodes(b, codes_vec)
    Model.ModelAddSubgraphs(b, subgraphs_vec)
    Model.ModelAddDescription(b, description)
    Model.ModelAddBuffers(b, buffers_vec)
    root = Model.ModelEnd(b)
    b.Finish(root, file_identifier=TFLITE_IDENTIFIER)
    return bytes(b.Output())


# ---------------------------------------------------------------------------- builders


def _as_tuple(value: float | int | Sequence[Any] | None) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return tuple(value.reshape(-1).tolist())
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _quant(scale: Any, zero_point: Any, axis: int) -> ir.Quantization | None:
    scales = _as_tuple(scale)
    if not scales:
        return None
    zps = _as_tuple(zero_point) or (0,)
    if len(zps) == 1 and len(scales) > 1:
        zps = zps * len(scales)
    if len(zps) != len(scales):
        raise ValueError(f"{len(scales)} scales but {len(zps)} zero points")
    # Scales are float32 in the file: round them now so the built IR equals the IR read back.
    return ir.Quantization(scale=tuple(float(np.float32(s)) for s in scales),
                           zero_point=tuple(int(z) for z in zps), axis=int(axis))


@dataclass(frozen=True)
class TensorSpec:
    """A tensor for ``single_op_model``: a graph input/output, or a constant when ``data`` is set.

    ``scale``/``zero_point`` are a number (per-tensor) or a sequence (per-channel along
    ``axis``); leave ``scale`` None for an unquantized tensor.
    """

    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: float | Sequence[float] | None = None
    zero_point: int | Sequence[int] | None = 0
    axis: int = 0
    data: np.ndarray | bytes | None = None
    name: str | None = None


class GraphBuilder:
    """Build a one-subgraph model in code: ``add_tensor``/``add_constant``/``add_op``, then
    ``build()`` (bytes) or ``model()`` (``ir.Model``).

    Graph inputs/outputs default to the non-constant tensors no op produces / no op
    consumes; set them explicitly with ``inputs=``/``outputs=`` of ``build``.
    """

    def __init__(self, description: str = "tinyq.model.tflite_writer") -> None:
        self.description = description
        self._tensors: list[ir.Tensor] = []
        self._ops: list[ir.Operator] = []

    def add_tensor(self, shape: Sequence[int], dtype: str = "int8", *,
                   scale: Any = None, zero_point: Any = 0, axis: int = 0,
                   data: np.ndarray | bytes | None = None, name: str | None = None,
                   is_variable: bool = False) -> int:
        """Add a tensor; return its index. ``data`` (array or raw bytes) makes it a constant."""
        if dtype not in TENSOR_TYPE_NUMBERS:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(TENSOR_TYPE_NUMBERS)}")
        shape = tuple(int(s) for s in shape)
        raw = None
        if data is not None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                raw = bytes(data)
            else:
                arr = np.asarray(data)
                if dtype in ir.DTYPES:
                    arr = arr.astype(ir.DTYPES[dtype], copy=False)
                if arr.size != (int(np.prod(shape)) if shape else 1):
                    raise ValueError(f"data has {arr.size} elements but shape {shape} "
                                     f"needs {int(np.prod(shape)) if shape else 1}")
                raw = np.ascontiguousarray(arr).tobytes()
        index = len(self._tensors)
        self._tensors.append(ir.Tensor(
            index=index, name=name or f"t{index}", shape=shape, dtype=dtype,
            quant=_quant(scale, zero_point, axis), data=raw, is_variable=is_variable))
        return index

    def add_constant(self, array: np.ndarray, dtype: str | None = None, **kwargs: Any) -> int:
        """Add a constant tensor with ``array``'s shape (dtype from the array unless given)."""
        arr = np.asarray(array)
        return self.add_tensor(arr.shape, dtype or arr.dtype.name, data=arr, **kwargs)

    def add_spec(self, spec: TensorSpec) -> int:
        return self.add_tensor(spec.shape, spec.dtype, scale=spec.scale,
                               zero_point=spec.zero_point, axis=spec.axis, data=spec.data,
                               name=spec.name)

    def add_op(self, opcode: str, inputs: Sequence[int], outputs: Sequence[int],
               options: Mapping[str, Any] | None = None, version: int | None = None,
               custom_code: str | None = None) -> int:
        """Add an op (-1 in ``inputs`` omits an optional input); return its index.

        ``options`` are merged over ``BUILDER_DEFAULT_OPTIONS[opcode]``; ``version``
        defaults to what the converter writes (``default_version``).
        """
        if opcode not in OPCODE_NUMBERS:
            raise ValueError(f"unknown builtin op {opcode!r}")
        n = len(self._tensors)
        for t in (*inputs, *outputs):
            if not -1 <= t < n:
                raise ValueError(f"{opcode}: tensor index {t} out of range (0..{n - 1})")
        if version is None:
            first = next((self._tensors[i].dtype for i in inputs if i >= 0), None)
            version = default_version(opcode, first)
        merged = {**BUILDER_DEFAULT_OPTIONS.get(opcode, {}), **(options or {})}
        index = len(self._ops)
        self._ops.append(ir.Operator(
            index=index, opcode=opcode, version=version, inputs=tuple(int(i) for i in inputs),
            outputs=tuple(int(o) for o in outputs),
            options=MappingProxyType(merged), custom_code=custom_code))
        return index

    def model(self, inputs: Sequence[int] | None = None,
              outputs: Sequence[int] | None = None) -> ir.Model:
        produced = {o for op in self._ops for o in op.outputs}
        consumed = {i for op in self._ops for i in op.inputs}
        if inputs is None:
            inputs = [t.index for t in self._tensors
                      if t.data is None and not t.is_variable and t.index not in produced]
        if outputs is None:
            outputs = [t.index for t in self._tensors
                       if t.index in produced and t.index not in consumed]
        return ir.Model(tensors=tuple(self._tensors), operators=tuple(self._ops),
                        inputs=tuple(inputs), outputs=tuple(outputs),
                        description=self.description)

    def build(self, inputs: Sequence[int] | None = None,
              outputs: Sequence[int] | None = None) -> bytes:
        return write_model(self.model(inputs, outputs))


def single_op_model(opcode: str, inputs: Sequence[TensorSpec | None],
                    outputs: Sequence[TensorSpec], options: Mapping[str, Any] | None = None,
                    version: int | None = None) -> bytes:
    """A one-op model: non-constant ``inputs`` become graph inputs, ``outputs`` graph outputs.

    A ``None`` in ``inputs`` is an omitted optional input (index -1).
    """
    g = GraphBuilder()
    in_idx = [-1 if spec is None else g.add_spec(spec) for spec in inputs]
    out_idx = [g.add_spec(spec) for spec in outputs]
    g.add_op(opcode, in_idx, out_idx, options, version)
    graph_inputs = [i for i, spec in zip(in_idx, inputs, strict=True)
                    if spec is not None and spec.data is None]
    return g.build(graph_inputs, out_idx)


__all__ = ["GraphBuilder", "TensorSpec", "default_version", "options_class_name",
           "single_op_model", "write_model"]
