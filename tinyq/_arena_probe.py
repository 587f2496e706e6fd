"""Child process of the smallest-arena search (``tinyq.analyze.measure_tflm_arena``).

Usage: ``python -m tinyq._arena_probe LO HI LIMIT < model.tflite``

Sizes are in bytes and multiples of 16. ``LO`` is known (or assumed) not to
allocate, ``HI`` is the first guess that does; the child first grows ``HI``
(doubling, up to ``LIMIT``) until it allocates, then bisects ``(LO, HI]``. It
prints one line per step on stdout, flushed, so the parent knows how far it got
even if the ``tflite-micro`` interpreter kills this process (a too-small arena
can SIGSEGV):

    try N        about to allocate with an N-byte arena
    ok N         N allocates
    fail N       N does not (clean RuntimeError)
    error TEXT   the model cannot be prepared at any size (unsupported op, hybrid...;
                 ``error corrupt TEXT``: the interpreter cannot even read the file)
    result N     the smallest size that allocates

What the interpreter writes to C-level stderr goes to this process's stderr.
"""

from __future__ import annotations

import os
import sys

#: Sizes are searched in steps of this many bytes (TFLM aligns arena use to 16).
STEP = 16

#: Words in the interpreter's stderr that mean "the arena is too small", as opposed
#: to a model TFLM cannot prepare at any size.
_MEMORY_WORDS = ("Failed to allocate", "available", "missing", "arena", "Arena")


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _allocates(model: bytes, size: int) -> tuple[bool, str]:
    import tflite_micro

    from tinyq.model.interpreters import capture_fd2

    _emit(f"try {size}")
    with capture_fd2() as log:
        try:
            it = tflite_micro.runtime.Interpreter.from_bytes(model, arena_size=size)
        except (RuntimeError, ValueError) as exc:
            ok, why = False, str(exc)
        except MemoryError as exc:          # the model's tensors exceed the host's memory
            _emit(f"error MemoryError: {exc}")
            sys.stdout.flush()
            os._exit(2)
        except Exception as exc:  # noqa: BLE001 - its Python wrapper choking on the file
            kind = f"{type(exc).__module__}.{type(exc).__name__}".removeprefix("builtins.")
            _emit(f"error corrupt {kind}: {' '.join(str(exc).split())[:300]}")
            sys.stdout.flush()
            os._exit(2)
        else:
            del it
            ok, why = True, ""
    text = " ".join(" ".join(log).split())
    _emit(f"{'ok' if ok else 'fail'} {size}")
    return ok, f"{why} {text}".strip()


def search(model: bytes, lo: int, hi: int, limit: int) -> int | None:
    """Smallest multiple of ``STEP`` in (lo, limit] that allocates, assuming monotony."""
    while True:
        ok, why = _allocates(model, hi)
        if ok:
            break
        if not any(word in why for word in _MEMORY_WORDS) or hi >= limit:
            _emit(f"error {why[:500]}")
            return None
        lo, hi = hi, min(limit, hi * 2)
    while hi - lo > STEP:
        mid = (lo + hi) // 2 // STEP * STEP
        if mid <= lo:
            mid = lo + STEP
        if _allocates(model, mid)[0]:
            hi = mid
        else:
            lo = mid
    _emit(f"result {hi}")
    return hi


def main(argv: list[str]) -> int:
    lo, hi, limit = (int(a) for a in argv[:3])
    model = sys.stdin.buffer.read()
    found = search(model, lo, hi, limit)
    sys.stdout.flush()
    # Skip interpreter teardown: the answer is out, and a crash there would hide it.
    os._exit(0 if found is not None else 2)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
