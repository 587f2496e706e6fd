"""Run an exported library (``tinyq export``) on this computer, from Python.

``load(folder)`` compiles the folder's C sources, exactly as exported, with the host C
compiler into a shared library and opens it with ctypes; ``HostLibrary.run(inputs)``
returns the outputs as numpy arrays. Everything it knows about the model it asks the
library's own API (``<prefix>_num_inputs``, ``_input_type``, ``_input_dims``, ...), so
a test through it checks the header's promises as well as the numbers.

Builds are cached by the hash of the sources: ``$TINYQ_CACHE_DIR/native-host/libraries``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinyq.errors import BuildError, DataError, UserInputError
from tinyq.firmware.native import host

__all__ = ["HostLibrary", "load"]

#: the header's tensor types (enum <prefix>_type) as numpy types
TYPES = {**host._TYPES, 5: np.dtype("bool"), 6: np.dtype("int64")}
#: the flags the host build adds to the native runtime's own (a shared object)
SHARED_FLAGS = ("-shared",)


def _header(folder: Path) -> Path:
    """The public header: ``include/<prefix>.h``, or ``src/<prefix>.h`` (Arduino layout)."""
    headers = sorted((folder / "include").glob("*.h"))
    props = folder / "library.properties"
    if not headers and props.is_file():
        names = [ln[5:].strip() for ln in props.read_text().splitlines()
                 if ln.startswith("name=")]
        headers = [folder / "src" / f"{n}.h" for n in names if (folder / "src" / f"{n}.h").exists()]
    if len(headers) != 1 or not (folder / "src").is_dir():
        raise UserInputError(f"{folder} is not a library tinyq exported (no include/<prefix>.h "
                             "and src/)", hint="pass the folder `tinyq export -o` wrote")
    return headers[0]


def _prefix(folder: Path) -> str:
    return _header(folder).stem


def build(folder: str | os.PathLike[str]) -> Path:
    """Compile an exported library for this computer; the shared object's path."""
    folder = Path(folder)
    prefix = _prefix(folder)
    cc = host._cc()
    sources = sorted((folder / "src").glob("*.c"))
    h = hashlib.sha256(" ".join((cc, *host.CFLAGS)).encode())
    header = _header(folder)
    for path in sorted({*(folder / "src").glob("*.h"), header, *sources}):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    final = host.cache_dir() / "libraries" / h.hexdigest()[:20]

    def compile_into(tmp: Path) -> None:
        host._run([cc, *host.CFLAGS, *SHARED_FLAGS, "-I", str(header.parent),
                   *map(str, sources), "-lm", "-o", str(tmp / f"lib{prefix}.so")])

    return host._atomic_dir(final, compile_into) / f"lib{prefix}.so"


class HostLibrary:
    """An exported library compiled for this computer (``load(folder)``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.prefix = _prefix(self.folder)
        self.path = build(self.folder)
        self._lib = ctypes.CDLL(str(self.path))
        int_fn = (ctypes.c_int, [ctypes.c_int])
        for name, (restype, argtypes) in {
            "init": (ctypes.c_int, []), "invoke": (ctypes.c_int, []),
            "reset": (ctypes.c_int, []),
            "num_inputs": (ctypes.c_int, []), "num_outputs": (ctypes.c_int, []),
            "input": (ctypes.c_void_p, [ctypes.c_int]),
            "output": (ctypes.c_void_p, [ctypes.c_int]),
            "input_bytes": (ctypes.c_size_t, [ctypes.c_int]),
            "output_bytes": (ctypes.c_size_t, [ctypes.c_int]),
            "input_type": int_fn, "output_type": int_fn,
            "input_rank": int_fn, "output_rank": int_fn,
            "input_dims": (ctypes.POINTER(ctypes.c_int32), [ctypes.c_int]),
            "output_dims": (ctypes.POINTER(ctypes.c_int32), [ctypes.c_int]),
            "arena_bytes": (ctypes.c_size_t, []),
            "quantize_input": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                              ctypes.c_size_t]),
            "dequantize_output": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                                 ctypes.c_size_t]),
        }.items():
            fn = getattr(self._lib, f"{self.prefix}_{name}")
            fn.restype, fn.argtypes = restype, argtypes
        self._fn = lambda name: getattr(self._lib, f"{self.prefix}_{name}")
        if self._fn("init")() != 0:
            raise BuildError(f"{self.prefix}_init() failed on the host build")
        self.input_specs = [self._spec("input", i) for i in range(self._fn("num_inputs")())]
        self.output_specs = [self._spec("output", i) for i in range(self._fn("num_outputs")())]

    def _spec(self, kind: str, i: int) -> tuple[tuple[int, ...], np.dtype]:
        rank = self._fn(f"{kind}_rank")(i)
        dims = self._fn(f"{kind}_dims")(i)
        return tuple(int(dims[k]) for k in range(rank)), TYPES[self._fn(f"{kind}_type")(i)]

    @property
    def arena_bytes(self) -> int:
        return int(self._fn("arena_bytes")())

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One inference: ``inputs`` (one array per model input) -> the outputs."""
        if len(inputs) != len(self.input_specs):
            raise DataError(f"the model takes {len(self.input_specs)} input(s), "
                            f"got {len(inputs)}", hint="pass one array per model input")
        for i, (x, (shape, dtype)) in enumerate(zip(inputs, self.input_specs, strict=True)):
            arr = np.ascontiguousarray(x, dtype=dtype)
            size = self._fn("input_bytes")(i)
            if arr.nbytes != size:
                raise DataError(f"input {i} has {arr.nbytes} bytes, the model expects {size}",
                                hint=f"pass shape {list(shape)} {dtype}")
            ctypes.memmove(self._fn("input")(i), arr.ctypes.data, size)
        if self._fn("invoke")() != 0:
            raise BuildError(f"{self.prefix}_invoke() failed on the host build")
        outs = []
        for i, (shape, dtype) in enumerate(self.output_specs):
            raw = ctypes.string_at(self._fn("output")(i), self._fn("output_bytes")(i))
            outs.append(np.frombuffer(raw, dtype=dtype).reshape(shape).copy())
        return outs


    def quantize_input(self, i: int, values: np.ndarray) -> np.ndarray:
        """Input ``i`` as the library's ``<prefix>_quantize_input`` leaves it for ``values``."""
        shape, dtype = self.input_specs[i]
        arr = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        code = self._fn("quantize_input")(
            i, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), arr.size)
        if code != 0:
            raise DataError(f"{self.prefix}_quantize_input({i}) returned {code}",
                            hint=f"pass {int(np.prod(shape))} values")
        raw = ctypes.string_at(self._fn("input")(i), self._fn("input_bytes")(i))
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def dequantize_output(self, i: int) -> np.ndarray:
        """Output ``i`` (of the last run) in real units, by ``<prefix>_dequantize_output``."""
        shape, _ = self.output_specs[i]
        out = np.zeros(int(np.prod(shape)), dtype=np.float32)
        code = self._fn("dequantize_output")(
            i, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size)
        if code != 0:
            raise DataError(f"{self.prefix}_dequantize_output({i}) returned {code}")
        return out.reshape(shape)


def load(folder: str | os.PathLike[str]) -> HostLibrary:
    """Compile and open the library ``tinyq export`` wrote into ``folder``."""
    return HostLibrary(folder)
