"""Checks run on the laptop before any firmware is built.

A check is a small function whose docstring is the user message (STYLE.md rule 3):
the same text is shown by ``tinyq inspect``/``generate`` and rendered into the
supported-ops table of the docs. A failed check yields a ``Problem``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """Something a runtime cannot do with this model, and how to fix it."""

    runtime: str              # "tflm" | "native"
    message: str              # one line: what is wrong
    fix: str                  # one line: what to do
    op_index: int | None = None
    opcode: str | None = None

    def __str__(self) -> str:
        where = f"op {self.op_index} {self.opcode}: " if self.op_index is not None else ""
        return f"{where}{self.message} — {self.fix}"
