"""The guard between tinyq and every process it starts (see :mod:`tinyq.subprocesses`).

Usage (only :func:`tinyq.subprocesses.spawn` runs it, as a script with
``python -I -S``, so it imports nothing but the standard library)::

    python -I -S _child_guard.py WATCH_FD PASS_FDS -- COMMAND [ARG...]

It starts COMMAND in a process group of its own, passes its own stdin, stdout
and stderr on (and the file descriptors listed in PASS_FDS, comma-separated, or
``-`` for none), and exits with COMMAND's exit status (dying by the same signal
if COMMAND did). It ends COMMAND's whole process group (SIGTERM, then SIGKILL
after :data:`GRACE_S`) when:

* tinyq goes away, however it ended (even SIGKILL): WATCH_FD is the read end of
  a pipe whose write end only tinyq holds, so it reads end-of-file once the
  tinyq process is gone. A pipe works on every POSIX system and follows the
  process, not the thread that started the guard (Linux's parent-death signal
  follows the thread);
* the guard receives SIGTERM, SIGHUP or SIGINT (tinyq stopping the command);
* COMMAND exits (whatever it left running in its group goes with it).

On Linux COMMAND also gets a parent-death signal (SIGKILL) tied to the guard,
so it dies with the guard even if the guard itself is killed with SIGKILL.
The guard is single-threaded, which is what makes setting that signal between
fork and exec safe.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

#: After SIGTERM to COMMAND's process group, how long before SIGKILL. make
#: deletes its half-written target and QEMU exits within milliseconds of SIGTERM;
#: two seconds covers a loaded machine without keeping a wedged tool around.
GRACE_S = 2.0
#: How often the guard looks at a process group it has asked to stop.
POLL_S = 0.02
#: Exit code when COMMAND cannot be started (as a shell says for "not found").
CANNOT_START = 127
#: prctl(2) options (Linux): the signal a process gets when its parent dies; and
#: "adopt my orphaned descendants" (so the guard reaps what COMMAND leaves behind
#: instead of leaving zombies to an init that may not reap them, as in containers).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _start(command: list[str], pass_fds: tuple[int, ...], prctl) -> int:
    """fork + exec ``command`` in a new process group, tied to the guard; its pid.

    The guard is single-threaded, so running code between fork and exec is safe here
    (it is not in tinyq, whose libraries start threads). Not ``subprocess``: importing
    it would add a third to the guard's start-up time.
    """
    guard = os.getpid()
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    pid = os.fork()
    if pid:
        try:
            os.setpgid(pid, pid)       # also here, so killpg works before the child runs
        except OSError:
            pass                       # it already has (or has exec'd)
        return pid
    try:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != guard:      # the guard died before the line above
                os._exit(CANNOT_START)
        for s in (*_STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(2, f"{command[0]}: {exc.strerror or exc}\n".encode())
    finally:
        os._exit(CANNOT_START)


class _Child:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(child: _Child) -> None:
    """Reap every ended child of the guard (COMMAND, and orphans it adopted)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == child.pid and child.returncode is None:
            child.returncode = os.waitstatus_to_exitcode(status)


def _end_group(child: _Child) -> None:
    """SIGTERM to the child's process group, SIGKILL after GRACE_S; reap them."""
    pgid = child.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(child)
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        _reap(child)
        if not _alive(pgid):
            break
        time.sleep(POLL_S)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while child.returncode is None:
        _reap(child)
        time.sleep(POLL_S)


def _exit_like(returncode: int) -> None:
    """Exit with ``returncode`` as Popen reports it (negative: die by that signal)."""
    if returncode >= 0:
        os._exit(returncode)
    sig = -returncode
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core file of the guard
    except (ImportError, ValueError, OSError):
        pass
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: _child_guard.py WATCH_FD PASS_FDS -- COMMAND [ARG...]\n")
        os._exit(2)
    watch_fd, command = int(argv[0]), argv[3:]
    pass_fds = () if argv[1] == "-" else tuple(int(fd) for fd in argv[1].split(","))

    stop_requested: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    for s in _STOP_SIGNALS:
        signal.signal(s, lambda signum, frame: stop_requested.append(signum))

    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.set_inheritable(watch_fd, False)
    child = _Child(_start(command, pass_fds, prctl))

    while True:
        if stop_requested:
            _end_group(child)
            break
        _reap(child)
        if child.returncode is not None:
            if _alive(child.pid):          # what it left running in its group
                _end_group(child)
            break
        ready, _, _ = select.select([watch_fd, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
        if watch_fd in ready and not os.read(watch_fd, 1):
            _end_group(child)          # end of file: tinyq is gone
            break
    _exit_like(child.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
