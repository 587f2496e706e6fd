"""Every output path passes here: tinyq never deletes or replaces what it did not create.

:func:`check_output` is the one gate. Each command calls it with its inputs before any
work, and :func:`atomic_path` (and :func:`write_bytes` / :func:`write_text` on top of it)
checks again when it puts the result in place. The rules:

- an output never lands on one of the command's inputs (compared after resolving
  symlinks, and with ``os.path.samefile`` for hard links), with or without ``--force``;
- a folder holding an input, the current folder and its parents are never replaced;
- ``--force`` replaces a file with a file, and a folder only when tinyq generated it:
  it holds tinyq's marker (:data:`MARKER_NAME`, written into every folder tinyq makes)
  and nothing but the files that marker lists, unchanged (sha256), plus the scratch
  folders it names (a project's ``build/``); an empty folder holds nothing to lose;
- everything is written in a temporary folder beside the final path and renamed into
  place, so a failure (disk full, read-only file system, Ctrl-C) leaves no partial file
  and no temporary folder; OS errors become one line naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tinyq.errors import OutputExistsError, UserInputError

#: The marker tinyq writes into every folder it generates (JSON: the files and their sha256).
MARKER_NAME = ".tinyq-folder.json"
#: Written into ``MARKER_NAME`` so a stray file of the same name is not mistaken for ours.
MARKER_MAGIC = "tinyq generated folder"
#: Files a desktop drops into any folder it shows (they hold nothing of the user's): they
#: do not make a folder tinyq generated someone else's.
DESKTOP_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: Longest file name when the file system cannot say (Linux, macOS and Windows: 255).
DEFAULT_NAME_MAX = 255
#: Longest path when the file system cannot say (Linux PATH_MAX).
DEFAULT_PATH_MAX = 4096
#: Longest board/model name kept in a cache folder name (the rest becomes a hash):
#: a cache path must stay far below DEFAULT_NAME_MAX whatever the user named things.
CACHE_NAME_CHARS = 64

Inputs = Iterable["str | os.PathLike[str] | None"]

#: errno -> (what went wrong, how to fix it): the OS errors a write can meet.
_WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space or choose another folder"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another folder"),
    errno.EROFS: ("read-only file system", "choose a folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder you can write to"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter file or folder name"),
}


#: OS errors only a write (or a too long name) meets, so the CLI can turn one that escaped
#: tinyq's own handling into one line without knowing where it came from.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG})


# -- the gate ------------------------------------------------------------------------------------

def check_output(path: str | os.PathLike[str], force: bool = False, *, inputs: Inputs = (),
                 kind: str = "file", into: bool = False) -> Path:
    """Refuse ``path`` as an output unless writing it loses nothing; return it as a Path.

    ``inputs``: every file or folder the command reads (None entries are skipped).
    ``kind``: ``"file"`` or ``"folder"``, what the command will put at ``path``.
    ``into``: the folder ``path`` is not replaced but written into (each output in it
    passes this check too): it may exist if it is empty or a folder tinyq generated.
    Raises OutputExistsError when ``path`` exists and could be replaced with ``force``,
    and UserInputError when nothing may replace it.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', not {kind!r}")
    out = Path(path)
    _check_name_length(out)
    _refuse_inputs(out, inputs, replaced=not into)
    if not os.path.lexists(out):
        return out
    if into:
        reason = ("it is a file, not a folder" if not out.is_dir()
                  else foreign_content(out))
        if reason:
            raise UserInputError(f"refusing to write into {out}: {reason}; tinyq writes "
                                 "these outputs only into a new or empty folder, or one it "
                                 "generated", hint="choose a new folder for the output",
                                 path=str(out))
        return out
    _refuse_current_folder(out)
    reason = _why_not_replaceable(out, kind)
    if reason:
        raise UserInputError(f"refusing to replace {out}: {reason}; tinyq never deletes or "
                             "replaces what it did not create",
                             hint="choose a new path for the output", path=str(out))
    if not force:
        raise OutputExistsError(
            f"{out} already exists", hint="pass --force to overwrite it or choose another path",
            path=str(out),
        )
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _refuse_inputs(out: Path, inputs: Inputs, replaced: bool = True) -> None:
    target = out.resolve()
    for given in inputs:
        if given is None or str(given) == "":
            continue
        inp = Path(given)
        if not os.path.lexists(inp):
            continue
        if _same(out, inp) or target == inp.resolve():
            same = "" if str(out) == str(inp) else f" (the same file as {inp})"
            raise UserInputError(f"{out} is an input of this command{same}; tinyq never "
                                 "writes over its own input",
                                 hint="choose another output path", path=str(out))
        if replaced and os.path.lexists(out) and target in inp.resolve().parents:
            here = " (the current folder)" if target == Path.cwd().resolve() else ""
            raise UserInputError(f"{out}{here} holds the input {inp}; tinyq never replaces "
                                 "a folder that holds its input",
                                 hint="choose a new folder for the output", path=str(out))


def _refuse_current_folder(out: Path) -> None:
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        what = "the current folder" if target == here else "a parent of the current folder"
        raise UserInputError(f"{out} is {what}; tinyq never replaces it",
                             hint="choose a new folder for the output (e.g. -o project)",
                             path=str(out))


def _why_not_replaceable(out: Path, kind: str) -> str | None:
    """Why ``out`` (which exists) may not be replaced by a ``kind``, or None."""
    try:
        mode = out.stat().st_mode
    except OSError:     # a dangling symlink: replacing the link loses no data
        return None if kind == "file" and out.is_symlink() else "it cannot be read"
    if kind == "file":
        if stat.S_ISDIR(mode):
            return "it is a folder and the output is a file"
        if not stat.S_ISREG(mode):
            return "it is not a regular file"
        return None
    if not stat.S_ISDIR(mode):
        return "it is a file and the output is a folder"
    if out.is_symlink():
        return "it is a symbolic link to a folder"
    return foreign_content(out)


# -- tinyq's folders ------------------------------------------------------------------------------

def _entry_digest(path: Path) -> str:
    if path.is_symlink():
        return "symlink:" + os.readlink(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _walk(folder: Path, scratch: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file and symlink under ``folder``, skipping
    the marker and the ``scratch`` folders (relative paths)."""
    skip = set(scratch)
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        rel_root = here.relative_to(folder)
        keep = []
        for d in dirs:
            rel = (rel_root / d).as_posix()
            if rel in skip:
                continue
            if (here / d).is_symlink():
                files.append(d)
            else:
                keep.append(d)
        dirs[:] = keep
        for f in files:
            rel = (rel_root / f).as_posix()
            if rel != MARKER_NAME:
                yield rel, here / f


def write_marker(folder: Path, scratch: Iterable[str] = ()) -> None:
    """Record every file now under ``folder`` (and its sha256) in its marker."""
    scratch = sorted(set(scratch))
    files = {rel: _entry_digest(p) for rel, p in _walk(folder, scratch)}
    from tinyq import __version__

    record = {"marker": MARKER_MAGIC, "tinyq_version": __version__, "scratch": scratch,
              "files": dict(sorted(files.items()))}
    (folder / MARKER_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def read_marker(folder: Path) -> dict | None:
    """The marker of a folder tinyq generated, or None."""
    try:
        record = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    ok = (isinstance(record, dict) and record.get("marker") == MARKER_MAGIC
          and isinstance(record.get("files"), dict) and isinstance(record.get("scratch"), list)
          and all(isinstance(s, str) for s in record["scratch"]))
    return record if ok else None


def foreign_content(folder: Path) -> str | None:
    """Why ``folder`` is not wholly tinyq's (to replace), or None when it is.

    An empty folder holds nothing to lose. Otherwise it needs tinyq's marker, and every
    file outside the marker's scratch folders must be listed there, unchanged.
    """
    try:
        if not any(folder.iterdir()):
            return None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    record = read_marker(folder)
    if record is None:
        return f"tinyq did not generate this folder (it has no {MARKER_NAME})"
    listed = record["files"]
    try:
        for rel, path in _walk(folder, record["scratch"]):
            if rel not in listed and path.name in DESKTOP_FILES:
                continue
            if rel not in listed:
                return f"it holds {rel}, which tinyq did not write"
            if _entry_digest(path) != listed[rel]:
                return f"{rel} changed after tinyq wrote it"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    return None


# -- atomic writes -------------------------------------------------------------------------------

def _check_name_length(out: Path) -> None:
    """ENAMETOOLONG before any work, not after it."""
    probe = out.absolute()
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = DEFAULT_NAME_MAX, DEFAULT_PATH_MAX
    longest = max(out.parts, key=lambda p: len(os.fsencode(p)), default="")
    if len(os.fsencode(longest)) > name_max or len(os.fsencode(str(out.absolute()))) >= path_max:
        what, fix = _WRITE_ERRORS[errno.ENAMETOOLONG]
        raise UserInputError(f"cannot write {_short(out)}: {what} (at most {name_max} bytes "
                             f"per name, {path_max} per path)", hint=fix, path=str(out))


def _short(path: Path) -> str:
    """``path`` for a one-line message (a 300-character name is cut in the middle)."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]}"


def os_error(path: str | os.PathLike[str], exc: OSError,
             doing: str = "cannot write") -> UserInputError:
    """A one-line error for an OS error met writing ``path`` (``doing`` starts it)."""
    what, fix = _WRITE_ERRORS.get(exc.errno, (exc.strerror or str(exc),
                                              "choose a folder you can write to"))
    return UserInputError(f"{doing} {_short(Path(path))}: {what}", hint=fix,
                          path=str(path), errno=exc.errno)


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[bool]:
    """Around a run that fills the folder ``path`` (the body creates it): yield whether it
    is new; if the body raises, remove it again together with any parent this run created.
    A folder that was there before is never removed (its new files stay: each was written
    whole)."""
    made = _made_parents(Path(path))
    try:
        yield bool(made)
    except BaseException:
        if made and os.path.isdir(made[0]) and not os.path.islink(made[0]):
            shutil.rmtree(made[0], ignore_errors=True)   # created by this run: all ours
        raise


def _made_parents(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` of ``folder`` would create, outermost first."""
    missing = []
    probe = folder.absolute()
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    return missing[::-1]


def _remove_made(folders: list[Path]) -> None:
    """Remove folders this run created, innermost first, only while they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = True, *, inputs: Inputs = (),
                kind: str = "file", scratch: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; put it in place only on success.

    The body writes a file (``kind="file"``) or a folder (``kind="folder"``, which gets
    tinyq's marker listing its files; ``scratch``: sub-folders its own tools fill later,
    e.g. a project's ``build``) at the yielded path. It replaces ``path`` when the body
    returns, if :func:`check_output` allows that; if the body raises, nothing is left:
    no partial output, no temporary folder, no parent folder this call created.
    """
    inputs = tuple(inputs)      # checked twice: now, and again when put in place
    final = check_output(path, force, inputs=inputs, kind=kind)
    made = _made_parents(final.parent)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".tinyq-", dir=final.parent))
    except OSError as exc:
        _remove_made(made)
        raise os_error(final, exc) from None
    tmp = tmpdir / final.name
    done = False
    try:
        try:
            yield tmp
        except OSError as exc:
            # ours: a file in the temporary folder, or a full disk (a write() error names
            # no file)
            if (str(exc.filename).startswith(str(tmpdir)) if exc.filename is not None
                    else exc.errno in WRITE_ERRNOS):
                raise os_error(final, exc) from None
            raise
        if not os.path.lexists(tmp):
            return          # the body wrote nothing: nothing to put in place
        try:
            if kind == "folder":
                write_marker(tmp, scratch)
            _put_in_place(tmp, final, tmpdir, force, inputs, kind)
        except OSError as exc:
            raise os_error(final, exc) from None
        done = True
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if not done:
            _remove_made(made)


def _put_in_place(tmp: Path, final: Path, tmpdir: Path, force: bool, inputs: Inputs,
                  kind: str) -> None:
    """Rename ``tmp`` to ``final``; an existing folder is checked again and moved aside
    first (into ``tmpdir``, deleted with it), and moved back if the rename fails."""
    check_output(final, force, inputs=inputs, kind=kind)   # it may have changed meanwhile
    if kind == "folder" and final.is_dir() and not final.is_symlink():
        old = tmpdir / ".replaced"
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            os.rename(old, final)
            raise
        return
    os.replace(tmp, final)


def write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = True, *,
                inputs: Inputs = ()) -> Path:
    """Write ``data`` to the file ``path`` atomically."""
    with atomic_path(path, force, inputs=inputs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, force: bool = True, *,
               inputs: Inputs = ()) -> Path:
    """Write ``text`` (UTF-8) to the file ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), force, inputs=inputs)


def cache_name(*parts: str) -> str:
    """A folder name for the cache from ``parts`` joined by ``-``, each part cut to
    :data:`CACHE_NAME_CHARS` (with a hash of what was cut), so a long board name in a
    user's profile cannot make a cache path too long."""
    short = []
    for part in parts:
        if len(part) > CACHE_NAME_CHARS:
            digest = hashlib.sha256(part.encode()).hexdigest()[:8]
            part = f"{part[:CACHE_NAME_CHARS - 9]}~{digest}"
        short.append(part)
    return "-".join(short)



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

def parse_json(text: str) -> Any:
    """``json.loads`` for a file the user gives back, raising ValueError (one line) also for
    what Python's json would accept or crash on: NaN/Infinity, a number too large for a
    float (``1e400``), and nesting too deep for the parser (RecursionError)."""
    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"the number {literal[:24]} is too large")
        return value

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_float=finite, parse_constant=constant)
    except RecursionError:
        raise ValueError("arrays or objects nested too deeply") from None


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
