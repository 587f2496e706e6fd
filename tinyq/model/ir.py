"""tinyq's own small model representation.

A .tflite file is read once (``tinyq.model.tflite_reader``) into these frozen records;
everything after the reader (analysis, planning, code generation, checks) uses
only this IR. Op names are the TFLite builtin names (``"CONV_2D"``); options are
plain Python values keyed by the schema's snake_case field names, with enums
as strings (``padding="SAME"``, ``fused_activation_function="RELU6"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

#: TFLite tensor type name -> numpy dtype. The one table for dtype mapping.
DTYPES: Mapping[str, np.dtype] = MappingProxyType({
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "int32": np.dtype("int32"),
    "uint8": np.dtype("uint8"),
    "int64": np.dtype("int64"),
    "bool": np.dtype("bool"),
    "int16": np.dtype("int16"),
    "int8": np.dtype("int8"),
    "float64": np.dtype("float64"),
    "uint32": np.dtype("uint32"),
    "uint16": np.dtype("uint16"),
    "int4": np.dtype("int8"),  # packed on disk; unpacked by the reader
})


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point).

    Per-tensor when ``len(scale) == 1``; per-channel along ``axis`` otherwise.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph. ``data`` is set for constants (weights, biases, shapes)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quantization | None = None
    data: bytes | None = None
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.np_dtype.itemsize

    def array(self) -> np.ndarray:
        """The constant data as a numpy array of ``shape`` (raises if not constant)."""
        if self.data is None:
            raise ValueError(f"tensor {self.name!r} has no constant data")
        return np.frombuffer(self.data, dtype=self.np_dtype).reshape(self.shape)


@dataclass(frozen=True)
class Operator:
    """One op. ``inputs``/``outputs`` are tensor indices; -1 marks an omitted optional input."""

    index: int
    opcode: str
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    custom_code: str | None = None


@dataclass(frozen=True)
class Model:
    """A single-subgraph TFLite model (TFLM runs subgraph 0)."""

    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""
    schema_version: int = 3
    size_bytes: int = 0
    sha256: str = ""
    num_subgraphs: int = 1
    path: str | None = None

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    @property
    def input_tensors(self) -> tuple[Tensor, ...]:
        return tuple(self.tensors[i] for i in self.inputs)

    @property
    def output_tensors(self) -> tuple[Tensor, ...]:
        return tuple(self.tensors[i] for i in self.outputs)

    @cached_property
    def op_set(self) -> tuple[tuple[str, int], ...]:
        """Distinct (opcode, version) pairs, sorted."""
        return tuple(sorted({(op.opcode, op.version) for op in self.operators}))

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]
