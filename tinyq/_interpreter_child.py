"""Child process that hosts one interpreter for ``tinyq.model.interpreters.IsolatedInterpreter``.

Usage: ``python -m tinyq._interpreter_child`` (the parent speaks to it on stdin/stdout).

The ``tflite-micro`` interpreter and LiteRT are C++ that trusts the flatbuffer: a
corrupt model that tinyq's reader accepts can still make them read out of bounds,
abort or segfault. Here that kills this child, not the user's ``tinyq`` process; the
parent turns the death into one error line naming the file.

Frames both ways are a 4-byte little-endian length and a pickle (parent and child are
the same tinyq; nothing else writes to this pipe). The first request is
``("open", kind, model_bytes, kwargs)``; then ``(method, *args)`` for the methods of
:class:`tinyq.model.interpreters.TflmInterpreter` / ``LiteRTInterpreter``. Each answer is
``("ok", value)`` or ``("error", class_name, message, hint)``. End of input ends the
child (so it also ends when the parent dies).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct("<I")


def read_frame(stream: BinaryIO) -> Any | None:
    """One pickled frame from ``stream``; None at end of input."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def encode_frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _open(kind: str, model_bytes: bytes, kwargs: dict[str, Any]) -> Any:
    from tinyq.model.interpreters import LiteRTInterpreter, TflmInterpreter

    cls = TflmInterpreter if kind == "tflm" else LiteRTInterpreter
    return cls(model_bytes, **kwargs)


def _call(it: Any, method: str, args: tuple[Any, ...]) -> Any:
    if method == "pid":                     # which process runs the interpreter (tests)
        return os.getpid()
    if method in ("num_inputs", "num_outputs", "arena_size", "has_state"):
        return getattr(it, method)
    if method == "invoke_many":             # many samples, one round trip
        samples, reset_state = args
        outputs = []
        for sample in samples:
            if reset_state:
                it.reset_state()
            outputs.append(it.invoke(sample))
        return outputs
    return getattr(it, method)(*args)


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    from tinyq.errors import TinyqError

    it = None
    while True:
        request = read_frame(requests)
        if request is None:
            return
        try:
            if request[0] == "open":
                it = _open(*request[1:])
                value: Any = None
            else:
                value = _call(it, request[0], tuple(request[1:]))
            answer: tuple[Any, ...] = ("ok", value)
        except TinyqError as exc:
            answer = ("error", type(exc).__name__, exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 - the interpreter's complaint, sent back
            answer = ("error", "", f"{type(exc).__name__}: {exc}", None)
        answers.write(encode_frame(answer))
        answers.flush()


def main() -> None:
    # The pipe to the parent is a private copy of stdout; fd 1 itself goes to stderr so
    # nothing the interpreters print can corrupt a frame.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)
    answers.flush()
    # Skip interpreter teardown: every answer is out, and a crash there would only
    # confuse the parent.
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
