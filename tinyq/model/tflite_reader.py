"""Read a .tflite file into tinyq's IR without TensorFlow.

The one boundary between the TFLite flatbuffer and the rest of tinyq (STYLE.md
rule 2). It uses the flatc-generated bindings of the ``tflite`` package
(``tflite.Model.GetRootAs`` ...), never hand-parsed offsets, and translates
through the tables below:

* builtin opcodes -> names (``max(deprecated_builtin_code, builtin_code)``,
  as TFLite itself does, since codes above 127 live only in ``builtin_code``);
* builtin options -> plain dicts keyed by the schema's snake_case field names,
  read generically from the options class; enum fields become strings
  (``padding="SAME"``, ``fused_activation_function="RELU6"``; tensor-type
  fields use the IR dtype names, e.g. ``quantized_bias_type="float32"``);
* tensor types -> IR dtype names (``"int8"``); int4 constants are unpacked to
  one int8 per element;
* constant data from buffers stored inside the flatbuffer. Buffers stored after
  it (``Buffer.offset``/``size``, the layout converters use for models over 2 GB)
  are refused: the ``tflite-micro`` interpreter (tinyq's oracle) and TFLM on a
  board read such weights as zeros, so every result would be silently wrong, and no
  model that needs that layout fits a microcontroller anyway.

TFLM runs subgraph 0 only, so only subgraph 0 is read; ``Model.num_subgraphs``
records how many the file has.

Validation happens here, once: every index, shape, quantization parameter and
buffer length that later stages (analysis, planning, code generation, the
interpreters) rely on is checked while reading, and each problem is one
``ModelError`` line naming the file, the tensor or op, and the fix. What a
*runtime* cannot run (ops, dtypes) is not a structural problem: ``tinyq.model.checks``
and ``tinyq.firmware.native.support`` report that.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from tinyq.errors import ModelError
from tinyq.model import ir

logger = logging.getLogger(__name__)

#: The flatbuffer file identifier of the TFLite schema (bytes 4..8 of the file).
TFLITE_IDENTIFIER = b"TFL3"
#: Largest model file tinyq reads. A flatbuffer cannot address more than 2 GiB, and the
#: largest microcontroller flash tinyq targets is a few MB; a bigger file is not a model
#: for a microcontroller, and reading it whole would only exhaust memory.
MAX_MODEL_BYTES = 2 << 30
#: Largest tensor (bytes) a model may declare: 256 TiB, far beyond any real model, yet
#: every size below it stays exact in the int64 arithmetic later stages use (numpy
#: products). A larger claim is a corrupt or overflowing shape; a real but merely huge
#: tensor passes here and is refused by the board fit check ("does not fit").
MAX_TENSOR_BYTES = 1 << 48
#: Dtypes whose quantization parameters (scale, zero point) later stages compute with.
QUANTIZED_DTYPES = ("int4", "int8", "uint8", "int16", "int32", "int64")
#: Integer range of the dtypes whose zero point must lie inside it.
ZERO_POINT_RANGE: Mapping[str, tuple[int, int]] = MappingProxyType({
    "int4": (-8, 7), "int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)})
#: How each problem's message ends: what the user can do about a corrupt file.
REEXPORT_HINT = "the file is corrupt: re-export the model (or copy it again)"


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _load_tables() -> tuple[dict[int, str], dict[int, str]]:
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    opcodes = _enum_names(BuiltinOperator)
    tensor_types = {code: name.lower() for code, name in _enum_names(TensorType).items()}
    return opcodes, tensor_types


#: builtin opcode number -> name ("CONV_2D") and TensorType number -> IR dtype name
#: ("int8"), both from the schema bindings.
OPCODE_NAMES, TENSOR_TYPE_NAMES = _load_tables()
OPCODE_NUMBERS: Mapping[str, int] = MappingProxyType({v: k for k, v in OPCODE_NAMES.items()})
TENSOR_TYPE_NUMBERS: Mapping[str, int] = MappingProxyType(
    {v: k for k, v in TENSOR_TYPE_NAMES.items()})

#: Options fields whose value is an enum: snake_case field name -> enum class name in
#: the ``tflite`` package. ``TensorType`` fields use the IR dtype names instead.
ENUM_FIELDS: Mapping[str, str] = MappingProxyType({
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "kernel_type": "LSTMKernelType",
    "mode": "MirrorPadMode",
    "combiner": "CombinerType",
    "type": "LSHProjectionType",
    "algorithm": "RngAlgorithm",
    "composite_attributes_format": "CustomOptionsFormat",
    "quantized_bias_type": "TensorType",
    "output_type": "TensorType",
    "out_type": "TensorType",
    "in_data_type": "TensorType",
    "out_data_type": "TensorType",
    "idx_out_type": "TensorType",
    "key_dtype": "TensorType",
    "value_dtype": "TensorType",
})

_CAMEL_1 = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_2 = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(camel: str) -> str:
    """``DilationWFactor`` -> ``dilation_w_factor`` (the schema's field spelling)."""
    return _CAMEL_2.sub("_", _CAMEL_1.sub("_", camel)).lower()


def camel_case(snake: str) -> str:
    """``dilation_w_factor`` -> ``DilationWFactor`` (the bindings' method spelling)."""
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


_ENUM_CACHE: dict[str, dict[int, str]] = {}


def enum_value_names(enum_class: str) -> dict[int, str]:
    """Enum number -> string for an ``ENUM_FIELDS`` class (TensorType -> IR dtype names)."""
    if enum_class not in _ENUM_CACHE:
        if enum_class == "TensorType":
            _ENUM_CACHE[enum_class] = dict(TENSOR_TYPE_NAMES)
        else:
            import importlib

            module = importlib.import_module(f"tflite.{enum_class}")
            _ENUM_CACHE[enum_class] = _enum_names(getattr(module, enum_class))
    return _ENUM_CACHE[enum_class]


_FIELD_CACHE: dict[type, tuple[tuple[str, str, str], ...]] = {}
_SKIP_METHODS = ("GetRootAs", "Init")


def option_fields(cls: type) -> tuple[tuple[str, str, str], ...]:
    """The fields of a generated options class: (method, snake_name, kind) in schema order.

    ``kind`` is "scalar", "numeric_vector" (has ``XAsNumpy``) or "vector" (tables/strings).
    """
    if cls not in _FIELD_CACHE:
        names = [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]
        fields = []
        for name in names:
            if (name.startswith(_SKIP_METHODS) or name.endswith(("Length", "AsNumpy", "IsNone"))
                    or "BufferHasIdentifier" in name):
                continue
            if f"{name}AsNumpy" in names:
                kind = "numeric_vector"
            elif f"{name}Length" in names:
                kind = "vector"
            else:
                kind = "scalar"
            fields.append((name, snake_case(name), kind))
        _FIELD_CACHE[cls] = tuple(fields)
    return _FIELD_CACHE[cls]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "_tab"):
        return table_to_dict(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def table_to_dict(table: Any) -> dict[str, Any]:
    """Any generated options table -> a plain dict (snake_case keys, enums as strings)."""
    out: dict[str, Any] = {}
    for method, key, kind in option_fields(type(table)):
        if kind == "numeric_vector":
            arr = getattr(table, f"{method}AsNumpy")()
            value: Any = [] if isinstance(arr, int) else [_plain(x) for x in arr.tolist()]
        elif kind == "vector":
            n = getattr(table, f"{method}Length")()
            value = [_plain(getattr(table, method)(j)) for j in range(n)]
        else:
            value = _plain(getattr(table, method)())
            if key in ENUM_FIELDS and isinstance(value, int) and not isinstance(value, bool):
                value = enum_value_names(ENUM_FIELDS[key]).get(value, value)
        out[key] = value
    return out


def _union_to_dict(union_type: int, table: Any, enum_module: str) -> dict[str, Any]:
    import importlib

    if not union_type or table is None:
        return {}
    enum_cls = getattr(importlib.import_module(f"tflite.{enum_module}"), enum_module)
    class_name = _enum_names(enum_cls).get(union_type)
    if class_name is None:
        return {}
    module = importlib.import_module(f"tflite.{class_name}")
    cls = getattr(module, class_name)
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return table_to_dict(obj)


def _ints(arr: Any) -> tuple[int, ...]:
    return () if isinstance(arr, int) else tuple(int(x) for x in arr.tolist())


def _floats(arr: Any) -> tuple[float, ...]:
    return () if isinstance(arr, int) else tuple(float(x) for x in arr.tolist())


def _unpack_int4(raw: bytes, count: int) -> bytes:
    packed = np.frombuffer(raw, dtype=np.uint8)
    low = (packed & 0x0F).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    both = np.empty(packed.size * 2, dtype=np.int8)
    both[0::2], both[1::2] = low, high
    both = np.where(both > 7, both - 16, both).astype(np.int8)
    return both[:count].tobytes()


def _fail(path: str, what: str, hint: str = REEXPORT_HINT) -> ModelError:
    return ModelError(f"{path}: {what}", hint=hint, path=path)


def _buffer_data(fb_model: Any, index: int, path: str, label: str) -> bytes | None:
    """A tensor's constant bytes (None: no data, an activation). Refuses a buffer index
    past the buffer table and buffers stored after the flatbuffer."""
    if index == 0:
        return None
    if index >= fb_model.BuffersLength():
        raise _fail(path, f"{label} refers to buffer {index} but the model has "
                          f"{fb_model.BuffersLength()} buffers")
    buf = fb_model.Buffers(index)
    if buf.Offset() > 1:  # stored after the flatbuffer; offset 1 is a placeholder
        raise _fail(path, f"{label} keeps its data after the flatbuffer (buffer {index} at "
                          f"offset {buf.Offset()}), which TFLM reads as zeros",
                    hint="re-export the model without external buffers (the TFLite "
                         "converter stores weights inline for models under 2 GB)")
    arr = buf.DataAsNumpy()
    if isinstance(arr, int) or arr.size == 0:
        return None
    return arr.tobytes()


def _shape(fb_tensor: Any, path: str, label: str) -> tuple[int, ...]:
    shape = _ints(fb_tensor.ShapeAsNumpy())
    for d in shape:
        if d == -1:
            raise _fail(path, f"{label} has an unknown (dynamic) dimension {list(shape)}",
                        hint="re-export the model with fixed input shapes (e.g. batch size 1)")
        if d < 0:
            raise _fail(path, f"{label} has a negative dimension {list(shape)}")
    return shape


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d          # Python ints: no overflow, however large the claim
    return n


def _quantization(fb_tensor: Any, dtype: str, shape: tuple[int, ...], path: str,
                  label: str) -> ir.Quantization | None:
    q = fb_tensor.Quantization()
    if q is None:
        return None
    scale = _floats(q.ScaleAsNumpy())
    if not scale or dtype not in QUANTIZED_DTYPES:
        return None
    zero_point = _ints(q.ZeroPointAsNumpy())
    axis = int(q.QuantizedDimension())
    if dtype in ("int32", "int64") and not any(scale) and not any(zero_point):
        return None             # integer index/shape tensors: scale 0 means "not quantized"
    bad = [s for s in scale if not (math.isfinite(s) and s > 0)]
    if bad:
        raise _fail(path, f"{label} has quantization scale {bad[0]} (scales must be finite "
                          "and positive)")
    if zero_point and len(zero_point) != len(scale):
        raise _fail(path, f"{label} has {len(scale)} scales but {len(zero_point)} zero points")
    zero_point = zero_point or (0,) * len(scale)
    if len(scale) > 1:
        if not 0 <= axis < len(shape):
            raise _fail(path, f"{label} is quantized per channel along dimension {axis} but "
                              f"has shape {list(shape)}")
        if shape[axis] != len(scale):
            raise _fail(path, f"{label} has {len(scale)} per-channel scales but dimension "
                              f"{axis} of its shape {list(shape)} has {shape[axis]} channels")
    if dtype in ZERO_POINT_RANGE:
        lo, hi = ZERO_POINT_RANGE[dtype]
        outside = [z for z in zero_point if not lo <= z <= hi]
        if outside:
            raise _fail(path, f"{label} has zero point {outside[0]}, outside {dtype}'s "
                              f"range [{lo}, {hi}]")
    return ir.Quantization(scale=scale, zero_point=zero_point, axis=axis)


def _tensor(fb_model: Any, fb_tensor: Any, index: int, path: str) -> ir.Tensor:
    name = fb_tensor.Name()
    name = name.decode("utf-8", "replace") if name else f"tensor_{index}"
    label = f"tensor {index} ({name!r})"
    type_code = fb_tensor.Type()
    dtype = TENSOR_TYPE_NAMES.get(type_code)
    if dtype is None:
        raise ModelError(f"{path}: {label} has unknown type code {type_code}",
                         hint="the file needs a newer TFLite schema than tinyq knows", path=path)
    shape = _shape(fb_tensor, path, label)
    count = _elements(shape)
    np_dtype = ir.DTYPES.get(dtype)
    if np_dtype is not None and count * np_dtype.itemsize > MAX_TENSOR_BYTES:
        raise _fail(path, f"{label} claims shape {list(shape)} ({count:,} elements of "
                          f"{dtype}), more than {MAX_TENSOR_BYTES:,} bytes")
    raw = _buffer_data(fb_model, fb_tensor.Buffer(), path, label)
    if raw is not None and np_dtype is not None:
        want = (count + 1) // 2 if dtype == "int4" else count * np_dtype.itemsize
        if len(raw) != want:
            raise _fail(path, f"{label} has {len(raw)} bytes of data but its shape "
                              f"{list(shape)} of {dtype} needs {want}")
        if dtype == "int4":
            raw = _unpack_int4(raw, count)
    return ir.Tensor(
        index=index,
        name=name,
        shape=shape,
        dtype=dtype,
        quant=_quantization(fb_tensor, dtype, shape, path, label),
        data=raw,
        is_variable=bool(fb_tensor.IsVariable()),
    )


def _opcode(fb_code: Any) -> tuple[str, int]:
    code = max(int(fb_code.DeprecatedBuiltinCode()), int(fb_code.BuiltinCode()))
    return OPCODE_NAMES.get(code, f"BUILTIN_{code}"), code


def _operator(fb_op: Any, index: int, codes: list[tuple[str, int, str | None, int]],
              path: str, num_subgraphs: int) -> ir.Operator:
    code_index = fb_op.OpcodeIndex()
    if code_index >= len(codes):
        raise _fail(path, f"op {index} uses opcode index {code_index} "
                          f"but the model has {len(codes)} operator codes")
    name, version, custom, number = codes[code_index]
    if number not in OPCODE_NAMES:
        raise _fail(path, f"op {index} has builtin operator code {number}, which the TFLite "
                          "schema tinyq knows does not define",
                    hint="the file is corrupt or needs a newer tinyq: re-export the model")
    options = _union_to_dict(fb_op.BuiltinOptionsType(), fb_op.BuiltinOptions(), "BuiltinOptions")
    if not options and fb_op.BuiltinOptions2Type():
        options = _union_to_dict(fb_op.BuiltinOptions2Type(), fb_op.BuiltinOptions2(),
                                 "BuiltinOptions2")
    for key, value in options.items():
        if key.endswith("subgraph_index") and isinstance(value, int) \
                and not 0 <= value < num_subgraphs:
            raise _fail(path, f"op {index} {name} has {key} {value} but the model has "
                              f"{num_subgraphs} subgraphs")
    if name == "CUSTOM":
        raw = fb_op.CustomOptionsAsNumpy()
        if not isinstance(raw, int) and raw.size:
            options = {"custom_options": raw.tobytes()}
    return ir.Operator(
        index=index,
        opcode=name,
        version=version,
        inputs=_ints(fb_op.InputsAsNumpy()),
        outputs=_ints(fb_op.OutputsAsNumpy()),
        options=MappingProxyType(options),
        custom_code=custom,
    )


def _check_graph(tensors: tuple[ir.Tensor, ...], operators: tuple[ir.Operator, ...],
                 inputs: tuple[int, ...], outputs: tuple[int, ...], path: str) -> None:
    """Graph-level structure: every index in range, inputs and outputs present, no op
    writing a constant, no constant fed as a model input."""
    n = len(tensors)
    for op in operators:
        for t in op.inputs:
            if not -1 <= t < n:
                raise _fail(path, f"op {op.index} {op.opcode} reads tensor {t} but subgraph 0 "
                                  f"has {n} tensors")
        for t in op.outputs:
            if not 0 <= t < n:
                raise _fail(path, f"op {op.index} {op.opcode} writes tensor {t} but subgraph 0 "
                                  f"has {n} tensors")
            if tensors[t].is_constant:
                raise _fail(path, f"op {op.index} {op.opcode} writes tensor {t} "
                                  f"({tensors[t].name!r}), which is a constant")
    for kind, ids in (("input", inputs), ("output", outputs)):
        if not ids:
            raise _fail(path, f"the model has no {kind}s")
        for t in ids:
            if not 0 <= t < n:
                raise _fail(path, f"model {kind} {t} is not a tensor (subgraph 0 has {n} "
                                  "tensors)")
    for t in inputs:
        if tensors[t].is_constant:
            raise _fail(path, f"model input {t} ({tensors[t].name!r}) is a constant tensor")
    for kind, ids in (("input", inputs), ("output", outputs)):
        for t in ids:
            if tensors[t].dtype not in ir.DTYPES:
                raise _fail(path, f"model {kind} {t} ({tensors[t].name!r}) has type "
                                  f"{tensors[t].dtype}; tinyq feeds and reads numeric tensors "
                                  f"({', '.join(ir.DTYPES)})",
                            hint="re-export the model with numeric inputs and outputs")


def _parse(data: bytes, path: str) -> ir.Model:
    import tflite

    fb_model = tflite.Model.GetRootAs(data, 0)
    num_subgraphs = fb_model.SubgraphsLength()
    if num_subgraphs == 0:
        raise ModelError(f"{path}: the model has no subgraph",
                         hint="re-export it with the TFLite converter", path=path)
    codes = []
    for i in range(fb_model.OperatorCodesLength()):
        fb_code = fb_model.OperatorCodes(i)
        custom = fb_code.CustomCode()
        name, number = _opcode(fb_code)
        codes.append((name, max(1, int(fb_code.Version())),
                      custom.decode("utf-8", "replace") if custom else None, number))
    for i in range(fb_model.BuffersLength()):
        fb_model.Buffers(i).DataAsNumpy()   # every buffer inside the file, used or not:
        #                                     the tflite-micro interpreter reads them all
    sub = fb_model.Subgraphs(0)
    tensors = tuple(_tensor(fb_model, sub.Tensors(i), i, path)
                    for i in range(sub.TensorsLength()))
    operators = tuple(_operator(sub.Operators(i), i, codes, path, num_subgraphs)
                      for i in range(sub.OperatorsLength()))
    inputs, outputs = _ints(sub.InputsAsNumpy()), _ints(sub.OutputsAsNumpy())
    _check_graph(tensors, operators, inputs, outputs, path)
    description = fb_model.Description()
    return ir.Model(
        tensors=tensors,
        operators=operators,
        inputs=inputs,
        outputs=outputs,
        description=description.decode("utf-8", "replace") if description else "",
        schema_version=int(fb_model.Version()),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        num_subgraphs=num_subgraphs,
        path=path if path != "<bytes>" else None,
    )


def read_model_bytes(data: bytes, path: str | None = None) -> ir.Model:
    """Parse .tflite bytes into an ``ir.Model`` (subgraph 0). Raises ``ModelError``."""
    where = path or "<bytes>"
    data = bytes(data)
    if not data:
        raise ModelError(f"{where} is empty (0 bytes)",
                         hint="the export or copy did not finish: re-export the model or copy "
                              "the .tflite file again", path=path)
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        found = data[4:8] if len(data) >= 8 else b""
        raise ModelError(
            f"{where} is not a TFLite flatbuffer (identifier {found!r}, expected b'TFL3')",
            hint="pass a .tflite file (convert Keras models with `tinyq quantize`)",
            path=path)
    try:
        return _parse(data, where)
    except ModelError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError,
            UnicodeDecodeError, AttributeError) as exc:
        logger.debug("parsing %s failed", where, exc_info=True)
        raise ModelError(f"{where} is truncated or corrupt (its {len(data)} bytes end before "
                         "the flatbuffer does, or an offset is invalid)",
                         hint="re-export the model or copy the file again", path=path) from exc


def read_model_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a model file, refusing what is not one: a missing path, a directory,
    a FIFO, a device (``/dev/zero``) or a socket (checked with ``stat`` before opening,
    so nothing blocks or streams forever), and files over :data:`MAX_MODEL_BYTES`."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise ModelError(f"model file {p} does not exist",
                         hint="check the path", path=str(p)) from exc
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror}",
                         hint="check the path and its permissions", path=str(p)) from exc
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"{p} is a directory, not a .tflite file",
                         hint="pass the .tflite file itself (convert SavedModels with "
                         "`tinyq quantize`)", path=str(p))
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{p} is not a regular file (a pipe, device or socket)",
                         hint="pass a .tflite file saved on disk", path=str(p))
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelError(f"{p} is {st.st_size:,} bytes, more than the {MAX_MODEL_BYTES:,} a "
                         "TFLite flatbuffer can hold", hint="pass a microcontroller-sized "
                         ".tflite model", path=str(p))
    try:
        with p.open("rb") as f:
            data = f.read(st.st_size)      # read(n) reserves n bytes: never more than this
            grew = bool(f.read(1))
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror}",
                         hint="check the path and its permissions", path=str(p)) from exc
    if grew:
        raise ModelError(f"{p} grew while tinyq read it",
                         hint="wait until the export or copy has finished", path=str(p))
    return data


def read_model(path: str | os.PathLike[str]) -> ir.Model:
    """Read a .tflite file into an ``ir.Model`` (subgraph 0). Raises ``ModelError``.

    Example::

        model = tinyq.read_model("hello_world_int8.tflite")
        print([op.opcode for op in model.operators])
    """
    return read_model_bytes(read_model_file(path), str(Path(path)))
