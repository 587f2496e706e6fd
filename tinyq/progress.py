"""Progress reporting: library code calls a callback; the CLI renders it.

Library code never prints (STYLE.md rule 9). Long work takes a
``progress: ProgressFn`` argument and calls it with events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    stage: str                 # e.g. "quantize", "build", "validate"
    message: str               # one human line
    done: int | None = None    # items done (for a bar), if countable
    total: int | None = None


ProgressFn = Callable[[ProgressEvent], None]


def null_progress(event: ProgressEvent) -> None:
    """A progress callback that ignores everything."""
