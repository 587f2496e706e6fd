"""Host interpreters: LiteRT (``ai-edge-litert``) and TFLM (``tflite-micro``).

The ``tflite-micro`` interpreter is real TFLM compiled for the host: it is the
oracle for what a microcontroller computes (DESIGN.md section 3). LiteRT is the
general host interpreter (float models, hybrid models TFLM rejects).

Facts this module works around (measured):

* the tflite-micro interpreter can crash the process (SIGSEGV) when an
  allocation fails, so in-process use always gets a generous arena and the
  smallest-arena search (``tinyq.analyze``) runs in child processes;
* it reports allocation problems on C-level stderr, which ``capture_fd2``
  collects so library code never prints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tinyq.errors import DataError, ModelError, UnsupportedError

log = logging.getLogger(__name__)

#: Arena for in-process TFLM runs: far above any model a Cortex-M can hold,
#: so allocation never fails (a failed allocation may crash the process).
TFLM_HOST_ARENA_FLOOR = 4 << 20
#: ... and at least this many times the model's activation bytes.
TFLM_HOST_ARENA_FACTOR = 8


@contextlib.contextmanager
def capture_fd(fd: int) -> Iterator[list[str]]:
    """Capture what C code writes to file descriptor ``fd``; the text lands in the yielded list."""
    import sys

    sink: list[str] = []
    for stream in (sys.stdout, sys.stderr):   # Python's buffered text goes out first
        stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(fd)
        try:
            os.dup2(tmp.fileno(), fd)
            yield sink
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


def capture_fd2() -> contextlib.AbstractContextManager[list[str]]:
    """Capture C-level stderr (file descriptor 2)."""
    return capture_fd(2)


def _activation_bytes(model_bytes: bytes) -> int:
    from tinyq.tflite_reader import read_model_bytes

    model = read_model_bytes(model_bytes)
    return sum(t.nbytes for t in model.tensors if not t.is_constant)


def has_state(model) -> bool:
    """True when ``model`` (an ir.Model) keeps state in variable tensors between
    invocations: both interpreters carry an LSTM's or SVDF's state from one invoke to
    the next until ``reset_state()``, so a caller feeding independent samples (whole
    sequences, as the Keras model saw them) resets before each one."""
    return any(t.is_variable for t in model.tensors)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


class TflmInterpreter:
    """The ``tflite-micro`` interpreter with a safe arena and stderr captured."""

    def __init__(self, model_bytes: bytes, arena_size: int | None = None,
                 preserve_all_tensors: bool = False) -> None:
        import tflite_micro

        rt = tflite_micro.runtime
        if arena_size is None:
            arena_size = max(TFLM_HOST_ARENA_FLOOR,
                             TFLM_HOST_ARENA_FACTOR * _activation_bytes(model_bytes))
        config = (rt.InterpreterConfig.kPreserveAllTensors if preserve_all_tensors
                  else rt.InterpreterConfig.kAllocationRecording)
        from tinyq.tflite_reader import read_model_bytes

        parsed = read_model_bytes(model_bytes)
        self.num_outputs = len(parsed.outputs)
        self.has_state = has_state(parsed)
        with capture_fd2() as log:
            try:
                self._it = rt.Interpreter.from_bytes(
                    bytes(model_bytes), arena_size=arena_size, intrepreter_config=config)
            except (RuntimeError, ValueError) as exc:
                self._fail(exc, log)
        self.arena_size = arena_size

    @staticmethod
    def _fail(exc: Exception, log: list[str]) -> None:
        text = " ".join(" ".join(log).split())
        if "Hybrid" in text or "hybrid" in text:
            raise UnsupportedError(
                "TFLM cannot run hybrid (dynamic-range) models",
                hint="re-quantize with --mode int8") from exc
        if "Didn't find op" in text:
            raise UnsupportedError(f"TFLM lacks an op this model uses: {text[:200]}",
                                   hint="run `tinyq inspect` for the op list") from exc
        raise ModelError(f"TFLM could not prepare the model: {exc} {text[:300]}".strip()) from exc

    def _details(self, detail: dict) -> TensorInfo:
        q = detail.get("quantization_parameters") or {}
        scales = q.get("scales", [])
        zps = q.get("zero_points", [])
        return TensorInfo(
            name=str(detail.get("name", "")),
            shape=tuple(int(s) for s in detail["shape"]),
            dtype=np.dtype(detail["dtype"]),
            scale=float(scales[0]) if len(scales) else 0.0,
            zero_point=int(zps[0]) if len(zps) else 0,
        )

    def input_details(self, i: int = 0) -> TensorInfo:
        return self._details(self._it.get_input_details(i))

    def output_details(self, i: int = 0) -> TensorInfo:
        return self._details(self._it.get_output_details(i))

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Set every input, invoke once, return copies of every output."""
        for i, x in enumerate(inputs):
            self._it.set_input(np.ascontiguousarray(x), i)
        with capture_fd2() as log:
            try:
                self._it.invoke()
            except RuntimeError as exc:
                self._fail(exc, log)
        return [np.array(self._it.get_output(i), copy=True) for i in range(self.num_outputs)]

    def reset_state(self) -> None:
        """Zero the variable tensors (an LSTM's or SVDF's state), as after loading."""
        self._it.reset()

    def tensor(self, index: int) -> np.ndarray:
        """A tensor's value after ``invoke`` (needs ``preserve_all_tensors=True``)."""
        return np.array(self._it.GetTensor(index, 0)["tensor_data"], copy=True)


def tflm_invoke(model_bytes: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run one inference on the ``tflite-micro`` interpreter; return all outputs."""
    return TflmInterpreter(model_bytes).invoke(inputs)


#: Environment variable choosing the general host interpreter package.
HOST_INTERPRETER_ENV = "TINYQ_HOST_INTERPRETER"
HOST_INTERPRETERS = ("ai-edge-litert", "tflite-runtime")


def _host_interpreter_module():
    """The Interpreter module: ai-edge-litert (default) or, on request, tflite-runtime.

    tflite-runtime (last release 2.14, 2023) is the long-standing host package; its
    wheels were built against NumPy 1.x and crash with NumPy 2, so it is accepted only
    where NumPy is older than 2. ai-edge-litert is its maintained successor.
    """
    choice = os.environ.get(HOST_INTERPRETER_ENV, "ai-edge-litert")
    if choice not in HOST_INTERPRETERS:
        raise UnsupportedError(f"{HOST_INTERPRETER_ENV}={choice} is not a host interpreter",
                               hint=f"use one of {', '.join(HOST_INTERPRETERS)}")
    if choice == "ai-edge-litert":
        from ai_edge_litert import interpreter
        return interpreter
    if int(np.__version__.split(".")[0]) >= 2:
        raise UnsupportedError(
            f"tflite-runtime crashes with NumPy {np.__version__} (its wheels need NumPy 1.x)",
            hint=f"unset {HOST_INTERPRETER_ENV} to use ai-edge-litert, or use a venv with "
                 "'numpy<2' and tflite-runtime")
    try:
        from tflite_runtime import interpreter
    except ImportError as exc:
        raise UnsupportedError("tflite-runtime is not installed",
                               hint="pip install tflite-runtime 'numpy<2', or unset "
                                    f"{HOST_INTERPRETER_ENV}") from exc
    return interpreter


class LiteRTInterpreter:
    """The general host interpreter: ``ai-edge-litert`` by default (``tflite-runtime`` when
    TINYQ_HOST_INTERPRETER=tflite-runtime and NumPy < 2); reference kernels by default,
    for determinism."""

    def __init__(self, model_bytes: bytes, reference_kernels: bool = True,
                 preserve_all_tensors: bool = False) -> None:
        module = _host_interpreter_module()
        Interpreter, OpResolverType = module.Interpreter, module.OpResolverType

        resolver = (OpResolverType.BUILTIN_REF if reference_kernels
                    else OpResolverType.AUTO)
        # The default resolver announces its XNNPACK delegate on C-level stderr: keep the
        # terminal clean and the line in the debug log.
        with capture_fd2() as noise:
            try:
                self._it = Interpreter(
                    model_content=bytes(model_bytes),
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve_all_tensors,
                )
                self._it.allocate_tensors()
            except (RuntimeError, ValueError) as exc:
                error: Exception | None = exc
            else:
                error = None
        log.debug("host interpreter: %s", " ".join(noise).strip())
        if error is not None:
            raise ModelError(f"the host interpreter could not load the model: {error}") \
                from error
        self._inputs = self._it.get_input_details()
        self._outputs = self._it.get_output_details()
        from tinyq.tflite_reader import read_model_bytes

        self.has_state = has_state(read_model_bytes(model_bytes))

    def _info(self, d: dict) -> TensorInfo:
        scale, zp = d.get("quantization", (0.0, 0))
        return TensorInfo(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]),
                          float(scale), int(zp))

    def input_details(self, i: int = 0) -> TensorInfo:
        return self._info(self._inputs[i])

    def output_details(self, i: int = 0) -> TensorInfo:
        return self._info(self._outputs[i])

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._inputs):
            raise DataError(f"the model takes {len(self._inputs)} input(s), got {len(inputs)}")
        for d, x in zip(self._inputs, inputs, strict=True):
            self._it.set_tensor(d["index"], np.ascontiguousarray(x))
        self._it.invoke()
        return [np.array(self._it.get_tensor(d["index"]), copy=True) for d in self._outputs]

    def reset_state(self) -> None:
        """Zero the variable tensors (an LSTM's or SVDF's state), as after loading."""
        self._it.reset_all_variables()

    def tensor(self, index: int) -> np.ndarray:
        return np.array(self._it.get_tensor(index), copy=True)

    @property
    def raw(self):
        """The underlying ai_edge_litert Interpreter (for tensor details)."""
        return self._it
