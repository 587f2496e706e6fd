"""Cache folders that tinyq processes running at the same time can share.

A cache entry (a firmware build, a compiled TFLM library, a host-compiled
model) is a folder that appears whole or not at all: :func:`cached_folder`
builds it in a private temporary folder beside it and publishes it with one
``rename(2)``. A build that fails, is stopped or is killed leaves at most its
temporary folder, whose name (``.tmp-HOST-PID-…``) no reader ever trusts; a
later build removes it once the process that made it is gone.

With ``lock_timeout`` a lock file beside the entry (``flock``, released by the
kernel when its holder dies) makes a second process wait for the first one's
result instead of compiling the same thing again on a busy machine. If the
wait outlasts the timeout the waiter builds privately anyway: publishing stays
atomic, and the loser of a race uses the winner's folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Prefix of private build folders (never a valid entry name: entries do not start with ".").
TMP_PREFIX = ".tmp-"
#: Characters of the host name kept in a private folder's name (it tells which
#: machine's process table says whether its builder is still running).
HOST_CHARS = 24
#: Age after which a private folder is removed even when its builder cannot be
#: checked (another machine sharing the cache): far longer than any build's timeout.
STALE_TMP_S = 24 * 3600
#: Pause between attempts to take a lock another process holds.
LOCK_POLL_S = 0.1


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:HOST_CHARS] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's process: alive
        return True
    return True


def sweep_stale(parent: Path) -> None:
    """Remove private folders in ``parent`` whose builder is gone (or that are very old)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    host = _host()
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        parts = entry.name[len(TMP_PREFIX):].split("-")
        stale = False
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit():
            stale = not _pid_alive(int(parts[1]))
        if not stale:
            with contextlib.suppress(OSError):
                stale = now - entry.lstat().st_mtime > STALE_TMP_S
        if stale:
            log.debug("removing %s, left by a build that did not finish", entry)
            shutil.rmtree(entry, ignore_errors=True)


def private_folder(parent: Path) -> Path:
    """A new empty folder in ``parent`` that only this process uses."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{_host()}-{os.getpid()}-", dir=parent))
    # mkdtemp makes it 0700; the published entry gets the cache folder's own permissions,
    # so other users sharing a cache (group-writable TINYQ_CACHE_DIR) can use it.
    with contextlib.suppress(OSError):
        os.chmod(folder, parent.stat().st_mode & 0o777)
    return folder


@contextlib.contextmanager
def entry_lock(final: Path, timeout: float,
               on_wait: Callable[[Path], None] | None = None) -> Iterator[bool]:
    """Hold the lock of the entry ``final`` (``<final>.lock`` beside it) for the ``with``
    block. Yields True when taken, False when another process held it for ``timeout``
    seconds (the caller then works without it). ``on_wait(lock_path)`` is called once if
    the lock is busy."""
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.with_name(final.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:      # another user's lock file: reading is enough for flock
        fd = os.open(lock_path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait(lock_path)
                waited = True
                if time.monotonic() >= deadline:
                    log.warning("%s was held for over %g s; building without it",
                                lock_path, timeout)
                    yield False
                    return
                time.sleep(LOCK_POLL_S)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(tmp: Path, final: Path, complete: Callable[[Path], bool],
            replace: bool = False) -> None:
    """Rename the finished folder ``tmp`` to ``final``.

    If ``final`` exists and is ``complete`` (another process won the race), it is kept
    and ``tmp`` deleted, unless ``replace``; an incomplete ``final`` (left by an older
    tinyq that built in place) is always replaced.
    """
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if not final.exists():
            raise
    if complete(final) and not replace:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{_host()}-{os.getpid()}-old-",
                                  dir=final.parent))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, trash / "entry")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final.exists() and complete(final)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)    # another process published meanwhile
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def keep_log(log_file: Path, final: Path) -> Path | None:
    """Copy the log of a failed build to ``<final>.log`` (the private folder it is in is
    about to be deleted); return the copy, or None if there is none."""
    from tinyq.errors import UserInputError
    from tinyq.fileio import write_bytes

    kept = final.with_name(final.name + ".log")
    try:
        write_bytes(kept, log_file.read_bytes())
    except (OSError, UserInputError):
        return None
    return kept


def cached_folder(final: Path, build: Callable[[Path], None], *,
                  complete: Callable[[Path], bool], rebuild: bool = False,
                  lock_timeout: float | None = None,
                  on_wait: Callable[[Path], None] | None = None) -> bool:
    """Make sure the entry ``final`` exists and is ``complete``; return True if it was
    already there (reused), False if this call built it.

    ``build(tmp)`` fills a private folder; it is published only when ``build``
    returns and ``complete(tmp)`` holds. ``rebuild`` replaces an existing entry.
    """
    if not rebuild and complete(final):
        return True
    lock = (entry_lock(final, lock_timeout, on_wait) if lock_timeout is not None
            else contextlib.nullcontext(False))
    with lock:
        if not rebuild and complete(final):
            return True              # built by the process we waited for
        tmp = private_folder(final.parent)
        try:
            build(tmp)
            if not complete(tmp):
                raise RuntimeError(f"the build in {tmp} did not produce a complete entry")
            publish(tmp, final, complete, replace=rebuild)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return False
