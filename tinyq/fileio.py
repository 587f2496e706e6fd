"""Atomic output files: a reader never sees a half-written file, a failure leaves none."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tinyq.errors import OutputExistsError, UserInputError


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse an existing output path unless ``force``; return it as a Path."""
    out = Path(path)
    if out.exists() and not force:
        raise OutputExistsError(
            f"{out} already exists", hint="pass --force to overwrite it or choose another path",
            path=str(out),
        )
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    Works for files and directories: whatever the body writes at the yielded
    path replaces ``path`` when the body returns, and is deleted if it raises.
    """
    final = check_output(path, force)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise _unwritable(final, exc) from None
    tmp = tmpdir / final.name
    try:
        yield tmp
        if not tmp.exists():
            return
        try:
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as exc:
            raise _unwritable(final, exc) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _unwritable(path: Path, exc: OSError) -> UserInputError:
    return UserInputError(f"cannot write {path}: {exc.strerror or exc}",
                          hint="choose a folder you can write to", path=str(path))


def write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, force: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), force)
