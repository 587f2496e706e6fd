"""Host interpreters: LiteRT (``ai-edge-litert``) and TFLM (``tflite-micro``).

The ``tflite-micro`` interpreter is real TFLM compiled for the host: it is the
oracle for what a microcontroller computes (DESIGN.md section 3). LiteRT is the
general host interpreter (float models, hybrid models TFLM rejects).

Facts this module works around (measured):

* the tflite-micro interpreter can crash the process (SIGSEGV) when an
  allocation fails, so in-process use always gets a generous arena and the
  smallest-arena search (``tinyq.analyze``) runs in child processes;
* both interpreters trust the flatbuffer: a corrupt model that tinyq's reader
  accepts can still crash them. Users' model files therefore run in a child
  process (:class:`IsolatedInterpreter`, via :func:`open_interpreter`: evaluate,
  and the TFLM oracle of run, bench and validate), where a crash is one error
  line; models tinyq made itself (tests, the op probes, QAT) run in-process;
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
    from tinyq.model.tflite_reader import read_model_bytes

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
        from tinyq.model.tflite_reader import read_model_bytes

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
        from tinyq.model.tflite_reader import read_model_bytes

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


# --------------------------------------------------------------------------- isolation

#: Wall-clock limit for one call to an isolated interpreter (loading the model, or one
#: inference). The largest MLPerf Tiny model runs one inference in well under a second
#: on the host's reference kernels; a call this long means the interpreter hangs (a
#: corrupt model can make it loop), and the child is killed.
ISOLATED_CALL_TIMEOUT_S = 120.0
#: How much of the child's stderr a crash message quotes (the interpreter's last words).
CRASH_STDERR_CHARS = 200
#: How long a child gets to exit after its input closes before it is killed (it exits
#: at once unless it is stuck in the interpreter).
CHILD_EXIT_TIMEOUT_S = 2.0
INTERPRETER_NAMES = {"tflm": "the tflite-micro interpreter", "litert": "the LiteRT interpreter"}


class IsolatedInterpreter:
    """A :class:`TflmInterpreter` or :class:`LiteRTInterpreter` in a child process.

    For models from users' files: the interpreters are C++ that trusts the flatbuffer,
    and a corrupt model tinyq's reader accepts can still segfault or abort them. Here
    that ends the child, and the call raises one ``ModelError`` naming the file. One
    child serves the whole life of the object (every ``invoke``), so running thousands
    of samples costs one process start plus a pipe round trip per call.

    Same methods as the in-process classes; ``close()`` (or garbage collection, or the
    end of a ``with`` block) ends the child.
    """

    def __init__(self, model_bytes: bytes, runtime: str = "tflm", *, name: str = "the model",
                 timeout: float = ISOLATED_CALL_TIMEOUT_S, **kwargs: object) -> None:
        import subprocess
        import sys
        import weakref

        from tinyq.subprocesses import spawn

        self.runtime, self.name, self.timeout = runtime, name, timeout
        self._what = INTERPRETER_NAMES.get(runtime, runtime)
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        self._proc = spawn([sys.executable, "-m", "tinyq._interpreter_child"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._finalizer = weakref.finalize(self, _end_child, self._proc, self._stderr)
        self._call("open", runtime, bytes(model_bytes), dict(kwargs))
        self.has_state = bool(self._call("has_state"))    # asked once: it never changes
        if runtime == "tflm":
            self.num_outputs = int(self._call("num_outputs"))
            self.arena_size = int(self._call("arena_size"))

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> IsolatedInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, *args: object):
        from tinyq import errors
        from tinyq._interpreter_child import encode_frame

        if not self._finalizer.alive:
            raise ModelError(f"{self._what} for {self.name} was closed")
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(encode_frame((method, *args)))
            self._proc.stdin.flush()
            answer = self._read_answer()
        except (BrokenPipeError, EOFError) as exc:
            raise self._died() from exc
        if answer[0] == "ok":
            return answer[1]
        _, class_name, message, hint = answer
        cls = getattr(errors, class_name, None)
        if isinstance(cls, type) and issubclass(cls, errors.TinyqError):
            if issubclass(cls, ModelError) and self.name not in message:
                message = f"{self.name}: {message}"       # say which file
            raise cls(message, hint=hint)
        raise ModelError(f"{self._what} failed on {self.name}: {message}",
                         hint="the model file is corrupt or uses something the interpreter "
                              "cannot run: re-export it", path=self.name)

    def _read_answer(self):
        import pickle
        import select
        import time

        from tinyq._interpreter_child import _HEADER

        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        need = _HEADER.size
        header_done = False
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    self.close()
                    raise ModelError(f"{self._what} hung on {self.name} (no answer in "
                                     f"{self.timeout:g} s)", hint="the model file is corrupt "
                                     "or loops forever: re-export it", path=self.name)
                chunk = os.read(fd, max(need - len(buf), 1 << 16))
                if not chunk:
                    raise EOFError
                buf += chunk
            if header_done:
                return pickle.loads(bytes(buf[_HEADER.size:need]))
            (size,) = _HEADER.unpack(bytes(buf[:_HEADER.size]))
            need = _HEADER.size + size
            header_done = True

    def _died(self) -> ModelError:
        import signal

        from tinyq.subprocesses import stop

        try:
            code = self._proc.wait(timeout=self.timeout)
        except Exception:  # noqa: BLE001 - still alive after closing its pipes: stop it
            stop(self._proc)
            code = self._proc.returncode
        self._stderr.seek(0)
        text = " ".join(self._stderr.read().decode("utf-8", "replace").split())
        self.close()
        if code < 0:
            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        said = f": {text[-CRASH_STDERR_CHARS:]}" if text else ""
        return ModelError(f"{self._what} crashed ({how}) on {self.name}{said}",
                          hint="the model file is corrupt or trips a bug in the interpreter: "
                               "re-export the model (`tinyq inspect` shows what it holds)",
                          path=self.name)

    def input_details(self, i: int = 0) -> TensorInfo:
        return self._call("input_details", i)

    def output_details(self, i: int = 0) -> TensorInfo:
        return self._call("output_details", i)

    @property
    def num_inputs(self) -> int:
        return int(self._call("num_inputs"))

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._call("invoke", [np.ascontiguousarray(x) for x in inputs])

    def invoke_many(self, samples: Sequence[Sequence[np.ndarray]],
                    reset_state: bool = False) -> list[list[np.ndarray]]:
        """``invoke`` on each sample (a list of input arrays), in one round trip; with
        ``reset_state``, ``reset_state()`` before each sample."""
        return self._call("invoke_many",
                          [[np.ascontiguousarray(x) for x in sample] for sample in samples],
                          reset_state)

    def reset_state(self) -> None:
        self._call("reset_state")

    def tensor(self, index: int) -> np.ndarray:
        return self._call("tensor", index)


def _end_child(proc, stderr) -> None:
    """Close the child's stdin (it exits at end of input); stop it if it does not."""
    import subprocess

    from tinyq.subprocesses import stop

    with contextlib.suppress(OSError):
        if proc.stdin:
            proc.stdin.close()
    try:
        proc.wait(timeout=CHILD_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(proc)
    with contextlib.suppress(OSError):
        if proc.stdout:
            proc.stdout.close()
    stderr.close()



def open_interpreter(model_bytes: bytes, runtime: str, *, name: str = "the model",
                     preserve_all_tensors: bool = False) -> IsolatedInterpreter:
    """The interpreter for a user's model file, in a child process (see
    :class:`IsolatedInterpreter`): ``runtime`` "tflm" or "litert"."""
    return IsolatedInterpreter(model_bytes, runtime, name=name,
                               preserve_all_tensors=preserve_all_tensors)
