"""Rendering for the CLI: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from tinyq.progress import ProgressEvent

#: Seconds of progress before an ETA is shown: earlier paces are mostly start-up noise.
ETA_AFTER_S = 2.0


def _duration(seconds: float) -> str:
    """42 -> '42s', 125 -> '2m05s', 3725 -> '1h02m'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Console:
    def __init__(self, verbose: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.verbose = verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._bar_open = False
        self._clock = clock
        self._bar_start: dict[tuple[str, int], tuple[float, int]] = {}  # (t, done) at start

    def print(self, text: str = "") -> None:
        self._close_bar()
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        self._close_bar()
        print(f"error: {text}", file=self.err, flush=True)

    def warn(self, text: str) -> None:
        self._close_bar()
        print(f"warning: {text}", file=self.err, flush=True)

    def progress(self, event: ProgressEvent) -> None:
        """Render a progress event: a bar when countable, a line otherwise."""
        if event.total:
            done = event.done or 0
            width = 30
            filled = int(width * done / event.total)
            bar = "#" * filled + "." * (width - filled)
            line = (f"\r[{event.stage}] [{bar}] {done}/{event.total}"
                    f"{self._eta(event.stage, done, event.total)} {event.message}")
            if self.err.isatty():
                print(line, end="", file=self.err, flush=True)
                self._bar_open = done < event.total
                if not self._bar_open:
                    print(file=self.err, flush=True)
            elif done == event.total:
                print(line.lstrip("\r"), file=self.err, flush=True)
            return
        self._close_bar()
        print(f"[{event.stage}] {event.message}", file=self.err, flush=True)

    def _eta(self, stage: str, done: int, total: int) -> str:
        """' ETA 2m05s' from the pace since this bar started; '' until a pace is known."""
        now = self._clock()
        key = (stage, total)
        start = self._bar_start.get(key)
        if start is None or done < start[1]:
            self._bar_start[key] = (now, done)
            return ""
        if done >= total:
            self._bar_start.pop(key, None)
            return f" ({_duration(now - start[0])})"
        elapsed, advanced = now - start[0], done - start[1]
        if advanced <= 0 or elapsed < ETA_AFTER_S:
            return ""
        return f" ETA {_duration(elapsed / advanced * (total - done))}"

    def _close_bar(self) -> None:
        if self._bar_open:
            print(file=self.err, flush=True)
            self._bar_open = False

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]],
              align: str | None = None) -> None:
        self.print(format_table(headers, rows, align))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 align: str | None = None) -> str:
    """A plain-text table. ``align`` is one char per column: 'l' or 'r' (default: r for numbers)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if align is None:
        align = "".join(
            "r" if rows and all(isinstance(r[i], (int, float)) for r in rows) else "l"
            for i in range(len(headers))
        )
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if a == "r" else c.ljust(w)
                 for c, w, a in zip(row, widths, align, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
