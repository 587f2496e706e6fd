"""Atomic output files: a reader never sees a half-written file, a failure leaves none."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

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


# -- reading the user's input files -----------------------------------------------------

#: Largest text file tinyq reads whole (a board TOML, a project's tinyq_project.json, a
#: --json record given to `tinyq report` or --resume): tinyq writes these at a few KB (a
#: validate record of 10,000 samples is ~0.3 MB); 64 MiB leaves room for any real one
#: while a wrong file (a log, a dataset, /dev/zero's endless zeros) cannot eat the memory.
MAX_TEXT_FILE_BYTES = 64 << 20

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


@contextlib.contextmanager
def open_input_file(path: str | os.PathLike[str], what: str,
                    error: type[UserInputError] = UserInputError,
                    max_bytes: int | None = None) -> Iterator[tuple[BinaryIO, int]]:
    """Open a file the user gave tinyq to read, safely; yield ``(binary file, size)``.

    Refused with one ``error`` line naming ``what`` and the path: a missing or unreadable
    path, anything but a regular file (a FIFO would block forever, ``/dev/zero`` never
    ends), and a file over ``max_bytes``. The file is opened without blocking and checked
    on the open descriptor, so it cannot be swapped for a pipe between check and read.
    """
    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{what} {shown} not found", hint="check the path", path=shown) from None
    except OSError as exc:
        raise error(f"cannot read {what} {shown}: {exc.strerror or exc}",
                    hint="check the path and its permissions", path=shown) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)),
                        "not a regular file")
            raise error(f"{what} {shown} is {kind}, not a regular file",
                        hint="pass a regular file (tinyq does not read pipes, devices or "
                             "sockets)", path=shown)
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(f"{what} {shown} is {info.st_size:,} bytes, over the {max_bytes:,} "
                        "tinyq reads from such a file", hint="check that it is the right file",
                        path=shown)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle, info.st_size


def read_input_bytes(path: str | os.PathLike[str], what: str,
                     error: type[UserInputError] = UserInputError,
                     max_bytes: int = MAX_TEXT_FILE_BYTES) -> bytes:
    """The bytes of a user's input file (checked by :func:`open_input_file`)."""
    data = bytearray()
    with open_input_file(path, what, error, max_bytes) as (handle, _size):
        try:
            # in slices up to max_bytes + 1 (a file that grew since it was checked)
            while len(data) <= max_bytes:
                chunk = handle.read(min(1 << 20, max_bytes + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}",
                        hint="check the file", path=str(path)) from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} is over the {max_bytes:,} bytes tinyq reads from such "
                    "a file", hint="check that it is the right file", path=str(path))
    return bytes(data)


def read_input_text(path: str | os.PathLike[str], what: str,
                    error: type[UserInputError] = UserInputError,
                    max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A user's UTF-8 text input file (checked by :func:`open_input_file`)."""
    data = read_input_bytes(path, what, error, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start:,} is "
                    f"0x{data[exc.start]:02x})", hint="pass the text file tinyq expects",
                    path=str(path)) from None


# -- checking the JSON the user gives back ------------------------------------------------

#: What a JSON field may be required to hold (the words the messages use).
JSON_NUMBER, JSON_INT, JSON_STR, JSON_BOOL = "a number", "an integer", "a string", "true or false"
JSON_LIST, JSON_OBJECT = "a list", "an object"


#: Magnitude a number in a record may reach: counts and sizes are 64-bit at most, and a
#: larger one (or Infinity/NaN, which Python's json accepts) cannot be formatted or plotted.
JSON_NUMBER_LIMIT = 1 << 63


def _json_holds(value: object, kind: str) -> bool:
    if kind in (JSON_NUMBER, JSON_INT):
        number = (int,) if kind == JSON_INT else (int, float)
        return isinstance(value, number) and not isinstance(value, bool) \
            and abs(value) < JSON_NUMBER_LIMIT   # False for NaN too
    return isinstance(value, {JSON_STR: str, JSON_BOOL: bool, JSON_LIST: list,
                              JSON_OBJECT: dict}[kind])


def json_shown(value: object) -> str:
    """A JSON value as an error message names it (a string shortened to 40 characters)."""
    if isinstance(value, str):
        return f'the string "{value[:40]}"' + ("..." if len(value) > 40 else "")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else f"a {len(text)}-digit number"


def json_values(record: Mapping[str, Any], key: str) -> list[tuple[str, Any]]:
    """(shown path, value) for every present, non-null value ``key`` names in ``record``;
    ``a.b`` is a nested field, ``a[]`` every entry of the list ``a``."""
    found: list[tuple[str, Any]] = [("", record)]
    for part in key.split(".") if key else ():
        name, each = (part[:-2], True) if part.endswith("[]") else (part, False)
        step = []
        for where, obj in found:
            if not isinstance(obj, Mapping) or obj.get(name) is None:
                continue
            shown = f"{where}.{name}" if where else name
            if each:
                if isinstance(obj[name], list):
                    step += [(f"{shown}[{i}]", v) for i, v in enumerate(obj[name])]
            else:
                step.append((shown, obj[name]))
        found = step
    return found


def check_json_fields(record: Mapping[str, Any], fields: Mapping[str, str],
                      required: Collection[str],
                      fail: Callable[[str, str], Exception]) -> None:
    """Refuse (``raise fail(field, problem)``) a JSON record whose fields do not hold the
    kinds ``fields`` names (dotted key -> a JSON_* kind; parents before their fields).

    A field in ``required`` must be there when its parent is; fields not listed are not
    checked. One line naming the field, instead of a KeyError or TypeError later.
    """
    for key, kind in fields.items():
        parent, _, last = key.rpartition(".")
        name = last[:-2] if last.endswith("[]") else last
        for where, obj in json_values(record, parent):
            if not isinstance(obj, Mapping):
                continue
            field = f"{where}.{name}" if where else name
            value = obj.get(name)
            if value is None:
                if key in required:
                    raise fail(field, "is missing")
                continue
            entries = list(enumerate(value)) if last.endswith("[]") and isinstance(value, list) \
                else [(None, value)]
            for i, entry in entries:
                if not _json_holds(entry, kind):
                    shown = field if i is None else f"{field}[{i}]"
                    raise fail(shown, f"must be {kind}, not {json_shown(entry)}")
