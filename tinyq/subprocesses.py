"""Every process tinyq starts is started here, so that none outlives tinyq.

Emulators (QEMU, Renode), make and the compilers, the arena probe, flashing
tools: :func:`spawn` starts each through a small guard process
(``tinyq/_child_guard.py``, standard library only) that ends the command's
whole process group when tinyq goes away, however it ends: an exception, a
signal the CLI turns into a clean exit, or SIGKILL, which no Python code sees.
The guard learns that tinyq is gone from a pipe whose write end only the tinyq
process holds (end-of-file when the process dies; unlike Linux's parent-death
signal it does not fire when merely the *thread* that started the command
ends). On Linux the command is also tied to the guard with a parent-death
signal, so it dies if the guard is killed.

:func:`run_process` is ``subprocess.run`` on top of :func:`spawn`: on a
timeout, Ctrl-C or any other exception it stops the whole process group
(make's compiler children included) before the exception goes on.
:func:`stop` ends one spawned process: SIGTERM (the guard passes it on to the
group), SIGKILL after a grace period.

Starting the guard costs a Python start-up (20-50 ms). For a short command that
starts no long-lived children of its own (one host compile),
``run_process(..., guard=False)`` ties the command to tinyq directly on Linux:
util-linux's ``setpriv --pdeathsig KILL`` execs it with a parent-death signal
(about 2 ms). That signal follows the thread that started the command, which
``run_process`` keeps waiting until it ends; and what the command itself started
is not covered (a compiler driver's cc1 finishes its file). Without ``setpriv``
(macOS, busybox) the guard is used.

What this does not cover: a program started with ``os.fork()`` (without exec)
by other code in the tinyq process inherits the pipe's write end, so a guard
notices tinyq's death only once that forked copy has ended too.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The guard script, run with ``python -I -S`` (no site, no PYTHON* variables: it
#: imports only the standard library and starts in about 20 ms).
GUARD = Path(__file__).resolve().with_name("_child_guard.py")
#: After SIGTERM to a spawned process (its guard), how long before SIGKILL. Longer
#: than the guard's own grace (``_child_guard.GRACE_S``, 2 s) so the guard can end
#: the command's group itself; SIGKILL is for a guard that is wedged.
STOP_GRACE_S = 5.0
#: Seconds the one-time check that setpriv supports --pdeathsig may take.
SETPRIV_PROBE_TIMEOUT_S = 10

_pipe_lock = threading.Lock()
_pipe: tuple[int, int] | None = None      # (read end passed to guards, write end we hold)


def _watch_fd() -> int:
    """The read end of the pipe every guard watches (created once per process)."""
    global _pipe
    with _pipe_lock:
        if _pipe is None:
            _pipe = os.pipe()          # both ends close-on-exec: no other child inherits them
        return _pipe[0]


def _forget_pipe_in_fork() -> None:
    """In a forked copy of tinyq, drop the parent's pipe: the copy must not keep the
    parent's guards waiting after the parent is gone."""
    global _pipe
    if _pipe is not None:
        for fd in _pipe:
            try:
                os.close(fd)
            except OSError:
                pass
    _pipe = None


os.register_at_fork(after_in_child=_forget_pipe_in_fork)


def _resolve(program: str, env: Mapping[str, str] | None, cwd: Any) -> str:
    """``program`` as a path, or FileNotFoundError like ``subprocess`` raises it."""
    if os.sep in program:
        # absolute, but symlinks kept: a venv's python must stay the venv's python
        candidate = os.path.abspath(os.path.join(cwd or ".", program))
        if os.access(candidate, os.X_OK):
            return candidate
    else:
        path = (env or os.environ).get("PATH", os.defpath)
        found = shutil.which(program, path=path)
        if found:
            return found
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def guarded_argv(argv: Sequence[str], watch_fd: int, pass_fds: Sequence[int] = ()) -> list[str]:
    """The command line that runs ``argv`` under the guard watching ``watch_fd``."""
    fds = ",".join(str(fd) for fd in pass_fds) or "-"
    return [sys.executable, "-I", "-S", str(GUARD), str(watch_fd), fds, "--", *argv]


def spawn(argv: Sequence[str], *, stdin: Any = None, stdout: Any = None, stderr: Any = None,
          cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
          text: bool = False, pass_fds: Sequence[int] = ()) -> subprocess.Popen:
    """Start ``argv`` under a guard; the Popen is the guard's, which mirrors the command's
    stdin/stdout/stderr and exit status (a negative returncode: killed by that signal).
    ``pass_fds`` reach the command under the same numbers, as with ``subprocess.Popen``.

    The command runs in a session of its own, so Ctrl-C in a terminal reaches tinyq,
    which stops it (:func:`stop`), and not the command directly. Raises
    FileNotFoundError when the program is not found, as ``subprocess.Popen`` does.
    """
    argv = [str(a) for a in argv]
    argv[0] = _resolve(argv[0], env, cwd)
    fd = _watch_fd()
    log.debug("running %s", " ".join(argv))
    return subprocess.Popen(guarded_argv(argv, fd, pass_fds), stdin=stdin, stdout=stdout,
                            stderr=stderr, cwd=cwd, env=None if env is None else dict(env),
                            text=text, pass_fds=(fd, *pass_fds), start_new_session=True)


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv if it can set a parent-death signal here (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    found = shutil.which("setpriv")
    if found is None:
        return None
    try:
        ok = subprocess.run([found, "--pdeathsig", "KILL", "--", "true"], capture_output=True,
                            timeout=SETPRIV_PROBE_TIMEOUT_S, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return found if ok else None


def _spawn_light(argv: Sequence[str], **popen: Any) -> subprocess.Popen | None:
    """Start ``argv`` with a parent-death signal through setpriv, or None without it."""
    setpriv = _setpriv()
    if setpriv is None:
        return None
    argv = [str(a) for a in argv]
    argv[0] = _resolve(argv[0], popen.get("env"), popen.get("cwd"))
    log.debug("running %s", " ".join(argv))
    return subprocess.Popen([setpriv, "--pdeathsig", "KILL", "--", *argv],
                            start_new_session=True, **popen)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    # Every process started here leads a session, hence a process group of its own
    # (the guard's group holds only the guard: it ends the command's group itself).
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> int | None:
    """End a started process and its group (SIGTERM, SIGKILL after ``grace``); reap it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def run_process(argv: Sequence[str], *, input: bytes | str | None = None,
                timeout: float | None = None, capture_output: bool = False,
                stdout: Any = None, stderr: Any = None,
                cwd: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None,
                text: bool = False, guard: bool = True) -> subprocess.CompletedProcess:
    """``subprocess.run`` (without ``check``) for a spawned command.

    On a timeout it stops the command's process group and raises
    ``subprocess.TimeoutExpired`` carrying the output read so far; on any other
    exception (KeyboardInterrupt, a signal turned into an exception) it stops the
    group and re-raises. ``guard=False``: the light way for a short command that
    starts nothing long-lived (see the module's docstring).
    """
    if capture_output:
        stdout = stderr = subprocess.PIPE
    popen: dict[str, Any] = {"stdin": subprocess.PIPE if input is not None else None,
                             "stdout": stdout, "stderr": stderr, "cwd": cwd,
                             "env": None if env is None else dict(env), "text": text}
    proc = None if guard else _spawn_light(argv, **popen)
    if proc is None:
        proc = spawn(argv, **popen)
    with proc:                   # closes the pipes and reaps the guard, whatever happens
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stop(proc)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(exc.cmd, exc.timeout, output=out,
                                            stderr=err) from None
        except BaseException:
            stop(proc)
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
