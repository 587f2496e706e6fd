"""The TFLite converter in a child process, so that its crash becomes a message.

The converter is C++ (MLIR) under a thin Python layer; on some models it kills the
process instead of raising (measured with TensorFlow 2.21: a Keras 3 ``LSTM(16) ->
Dense(2)`` model segfaults during int8 calibration). tinyq therefore never runs it in
the caller's process: :class:`ConverterProcess` starts ``python -m
tinyq._convert_worker``, which loads the float model and converts it on request. If
the child dies, the caller gets one :class:`~tinyq.errors.ConversionError` naming the
model, the mode and the signal, and the next request starts a fresh child.

The parent never imports TensorFlow: the child does (once) and reports the model's
input shape, so the caller can check its calibration data, which it hands over as a
temporary ``.npy`` file. Messages travel over a socket pair as pickled tuples::

    parent -> child   ("load", path)
                      ("convert", QuantizeOptions, calib .npy path or None)
    child -> parent   ("log", logger name, level, text)      any number, any time
                      ("progress", text)
                      ("notes", lines)              layers converted in another form (sent
                                                    before converting, so a crash can name them)
                      ("ok", value)                 FloatModel / (tflite bytes, notes)
                      ("error", class name, message, hint)    a TinyqError (or another error)

What the child (and TensorFlow's C++ code) writes to stdout/stderr goes to a
temporary file; its tail is logged at debug level when the child dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from tinyq import errors
from tinyq.errors import ConversionError, TinyqError
from tinyq.progress import ProgressEvent, ProgressFn, null_progress
from tinyq.subprocesses import spawn, stop

log = logging.getLogger(__name__)

STAGE = "quantize"
#: How often the parent checks that a busy child is still alive while it waits (seconds).
#: Short enough that a crash is reported at once; a poll costs nothing measurable.
POLL_SECONDS = 0.2
#: How long the parent waits for a child to exit after it was asked to (seconds); a child
#: that does not is killed. TensorFlow's shutdown takes well under a second here.
EXIT_WAIT_SECONDS = 10
#: Longest a single request (loading or one conversion) may take before the child is
#: called hung and killed (seconds). The MLPerf Tiny models convert in 2-15 s here and
#: the digits model in about 5 s; half an hour leaves room for large models on slow
#: machines while still ending a converter that loops.
REQUEST_TIMEOUT_SECONDS = 1800
#: Characters of the child's stderr kept for the debug log after a crash.
STDERR_TAIL_CHARS = 2000

CRASH_HINT = ("convert with --mode float32 to see whether the model converts at all, and "
              "replace the layer it cannot take; run with --verbose for the converter's log")


@dataclass(frozen=True)
class Converted:
    """What one conversion produced."""

    tflite: bytes
    notes: tuple[str, ...] = ()      # one line per layer converted in another form


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def child_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` running ``python -m tinyq.<module> ARGS`` on this very tinyq.

    The folder holding this package goes first on PYTHONPATH, and ``-P`` keeps the
    working directory off sys.path: otherwise a folder holding another tinyq checkout
    (or anything named tinyq) shadows this one (measured: "No module named
    tinyq._convert_worker" when run from an older checkout).
    """
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]]
                                                  if env.get("PYTHONPATH") else []))
    return [sys.executable, "-P", "-m", f"tinyq.{module}", *args], env


class ConverterProcess:
    """A child process that loads one float model and converts it on request.

    Use as a context manager; :meth:`load` first, then :meth:`convert` as often as
    needed. A crash raises :class:`ConversionError`; the next call starts over.
    """

    def __init__(self, model_path: str | os.PathLike[str],
                 progress: ProgressFn = null_progress, label: str | None = None) -> None:
        self.model_path = str(model_path)
        self.label = label or self.model_path       # how messages name the model
        self.progress = progress
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._stderr = None
        self._loaded = None
        self._tmp = tempfile.TemporaryDirectory(prefix="tinyq-convert-")

    def __enter__(self) -> ConverterProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ child lifecycle

    def _start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        if child_sock.fileno() <= 2:   # stdin/out/err were closed: keep clear of them
            child_sock = socket.socket(fileno=fcntl.fcntl(child_sock.detach(),
                                                          fcntl.F_DUPFD_CLOEXEC, 3))
        level = logging.getLogger("tinyq").getEffectiveLevel()
        cmd, env = child_command("_convert_worker", str(child_sock.fileno()), str(level))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._stderr = tempfile.TemporaryFile(dir=self._tmp.name)
        try:
            self._proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                               stderr=self._stderr, env=env, pass_fds=(child_sock.fileno(),))
        finally:
            child_sock.close()
        self._conn = Connection(parent_sock.detach())

    def close(self) -> None:
        """Stop the child (politely, then by force) and delete the temporary files."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(("exit",))
            except OSError:
                pass
            conn.close()
        if proc is not None:
            try:
                proc.wait(timeout=EXIT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                stop(proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._tmp.cleanup()

    def _child_output(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-STDERR_TAIL_CHARS:]

    def _request(self, message: tuple, doing: str):
        """Send ``message``; relay log and progress lines until the answer comes."""
        notes: tuple[str, ...] = ()
        if self._proc is None:
            self._start()
        assert self._conn is not None and self._proc is not None
        deadline = time.monotonic() + REQUEST_TIMEOUT_SECONDS
        try:
            self._conn.send(message)
            while True:
                if not self._conn.poll(POLL_SECONDS):
                    if self._proc.poll() is not None:
                        raise EOFError
                    if time.monotonic() > deadline:
                        stop(self._proc)
                        self._forget_child()
                        raise ConversionError(
                            f"the TFLite converter did not finish in "
                            f"{REQUEST_TIMEOUT_SECONDS} s {doing}",
                            hint="run with --verbose to see where it stops, and report the "
                                 "model", model=self.model_path)
                    continue
                reply = self._conn.recv()
                kind = reply[0]
                if kind == "log":
                    logging.getLogger(reply[1]).log(reply[2], "%s", reply[3])
                elif kind == "progress":
                    self.progress(ProgressEvent(STAGE, reply[1]))
                elif kind == "notes":
                    notes = reply[1]
                elif kind == "ok":
                    return reply[1]
                else:
                    raise _rebuild_error(reply[1], reply[2], reply[3])
        except (EOFError, OSError, ConnectionError):
            pass
        except (KeyboardInterrupt, SystemExit):
            stop(self._proc)          # a conversion in progress is not waited for
            self._forget_child()
            raise
        # the child died: say how, and start over on the next request
        code = self._proc.wait()
        tail = self._child_output()
        self._forget_child()
        log.debug("converter child output:\n%s", tail)
        how = _signal_name(code) if code < 0 else f"exit code {code}"
        raise ConversionError(f"the TFLite converter crashed ({how}) {doing}"
                              + "".join(f"; {note}" for note in notes),
                              hint=CRASH_HINT, model=self.model_path, exit_code_child=code)

    def _forget_child(self) -> None:
        """After the child died or was killed: the next request starts a new one."""
        self._proc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._loaded = None

    # ------------------------------------------------------------------ requests

    def load(self):
        """Load the model in the child; its :class:`~tinyq.convert.model_loader.FloatModel`
        (without the in-memory Keras model)."""
        if self._loaded is None:
            from tinyq.convert.model_loader import check_model_path

            check_model_path(self.model_path)   # a missing file fails before any child starts
            self._loaded = self._request(("load", self.model_path),
                                         f"loading {self.label}")
        return self._loaded

    def convert(self, options, calib: np.ndarray | None = None) -> Converted:
        """Convert the loaded model with ``options`` (a QuantizeOptions)."""
        self.load()
        calib_path = None
        if calib is not None:
            calib_path = os.path.join(self._tmp.name, "calib.npy")
            np.save(calib_path, np.ascontiguousarray(calib, dtype=np.float32))
        try:
            tflite, notes = self._request(("convert", options, calib_path),
                                          f"converting {self.label} to {options.mode}")
            return Converted(tflite, tuple(notes))
        finally:
            if calib_path is not None and os.path.exists(calib_path):
                os.unlink(calib_path)


def _rebuild_error(name: str, message: str, hint: str | None) -> TinyqError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, TinyqError)):
        cls = ConversionError
    return cls(message, hint=hint)


def convert_file(model_path: str | os.PathLike[str], options, calib: np.ndarray | None = None,
                 progress: ProgressFn = null_progress) -> bytes:
    """Convert one model file in a child process (e.g. a float32 reference)."""
    with ConverterProcess(model_path, progress) as conv:
        return conv.convert(options, calib).tflite


# --------------------------------------------------------------------------- the child

class _Forward(logging.Handler):
    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.conn.send(("log", record.name, record.levelno, record.getMessage()))
        except OSError:
            pass


def _serve(conn: Connection) -> None:
    from tinyq.convert.model_loader import load_model
    from tinyq.convert.ptq import convert_here

    float_model = None
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "exit":
            return
        try:
            if message[0] == "load":
                float_model = load_model(message[1])
                conn.send(("ok", replace(float_model, keras_model=None)))
            elif message[0] == "convert":
                options, calib_path = message[1], message[2]
                calib = None if calib_path is None else np.load(calib_path)
                tflite, notes = convert_here(float_model, options, calib,
                                             lambda notes: conn.send(("notes", notes)))
                conn.send(("ok", (tflite, notes)))   # not Converted: this module is __main__
        except TinyqError as exc:
            conn.send(("error", type(exc).__name__, exc.message, exc.hint))
        except Exception as exc:  # noqa: BLE001 - anything else still becomes one line
            text = str(exc).strip().splitlines()
            conn.send(("error", "ConversionError",
                       f"{type(exc).__name__}: {text[0] if text else ''}"[:300], None))


def main(argv: list[str]) -> int:
    import faulthandler

    conn = Connection(int(argv[0]))
    faulthandler.enable()       # a crash leaves a Python traceback in the captured stderr
    root = logging.getLogger("tinyq")
    root.setLevel(int(argv[1]))
    root.addHandler(_Forward(conn))
    root.propagate = False
    _serve(conn)
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip TensorFlow's teardown: the answers are out, and a crash there would be noise.
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
