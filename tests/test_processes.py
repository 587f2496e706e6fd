"""Nothing tinyq starts outlives it, and tinyq processes running at once share the cache.

* tinyq.subprocesses: every child runs under a guard that ends its whole process
  group when tinyq ends (exception, signal, SIGKILL), on a timeout, or when asked;
* the CLI stops cleanly on SIGTERM/SIGHUP (one line, exit 128+signum) and the
  emulator is gone even after SIGKILL;
* tinyq.cache: entries appear whole or not at all; parallel cold-cache runs
  agree; a build killed half-way is never trusted.

The process tests read /proc (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, require_tools

from tinyq import cache
from tinyq.firmware.compiling import BUILDS_FOLDER
from tinyq.subprocesses import run_process, spawn, stop

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="reads the process table from /proc (Linux)")

#: How long after tinyq ends (or is killed) its children may take to be gone.
#: Measured: 30-500 ms; the rest is room for a loaded 2-core CI machine.
GONE_WITHIN_S = 5.0
#: Timed runs that keep QEMU busy for many seconds with hello_world (~2,400
#: instructions each), so the test surely catches it running.
LONG_RUNS = 1_000_000
#: How long a test waits for tinyq to reach a state (QEMU started, compiler running).
REACH_WITHIN_S = 120.0
POLL_S = 0.01

HELLO = "tflm-examples/hello_world_int8.tflite"
BOARD = "mps2-an386"


# ---------------------------------------------------------------- the process table

def _stat(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent pid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return name, state, int(ppid)


def _running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _descendants(root: int) -> dict[int, str]:
    """pid -> name of every running process below ``root``."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[1] not in ("Z", "X"):
            children.setdefault(st[2], []).append(pid)
            names[pid] = st[0]
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found[child] = names[child]
            todo.append(child)
    return found


def _mentioning(text: str) -> list[int]:
    """Running processes whose command line contains ``text`` (e.g. a test's folder)."""
    pids = []
    for pid in _all_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid != os.getpid() and _running(pid):
            pids.append(pid)
    return pids


def _wait_for(predicate, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"{what} within {within:g} s")


def _gone_after(pids: list[int], within: float = GONE_WITHIN_S) -> float:
    """Seconds until every pid has stopped running (fails after ``within``)."""
    start = time.monotonic()
    _wait_for(lambda: not any(_running(p) for p in pids), within,
              f"processes {pids} still running")
    return time.monotonic() - start


def _kill_mentioning(text: str) -> None:
    for pid in _mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def sweeper(tmp_path):
    """Kill whatever a failing test left running that mentions its tmp_path."""
    yield tmp_path
    _kill_mentioning(str(tmp_path))


# ---------------------------------------------------------------- the guard, no QEMU

@pytest.mark.parametrize("guard", [True, False], ids=["guard", "light"])
def test_a_timeout_ends_the_whole_process_group(guard):
    """A timed-out command's background children go too (make's compilers)."""
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_process(["sh", "-c", "sleep 60 & echo $!; echo $$; sleep 61"],
                    capture_output=True, text=True, timeout=1.0, guard=guard)
    pids = [int(p) for p in info.value.stdout.split()]
    assert len(pids) == 2 and time.monotonic() - start < GONE_WITHIN_S
    _gone_after(pids)


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "light"])
def test_the_exit_status_is_the_commands(guard):
    assert run_process(["sh", "-c", "exit 3"], guard=guard).returncode == 3
    assert run_process(["sh", "-c", "kill -SEGV $$"], guard=guard).returncode == -signal.SIGSEGV
    done = run_process(["cat"], input=b"through the guard", capture_output=True, guard=guard)
    assert done.stdout == b"through the guard" and done.returncode == 0
    with pytest.raises(FileNotFoundError):
        run_process(["tinyq-no-such-program"], guard=guard)


def test_passed_file_descriptors_reach_the_command():
    r, w = os.pipe()
    try:
        proc = spawn([sys.executable, "-c", f"import os; os.write({w}, b'through fd {w}\\n')"],
                     pass_fds=(w,))
        assert proc.wait(10) == 0
        assert os.read(r, 100) == f"through fd {w}\n".encode()
    finally:
        os.close(r)
        os.close(w)


def test_a_venv_python_stays_the_venv_python():
    """sys.executable is often a symlink: resolving it would lose the venv's packages."""
    done = run_process([sys.executable, "-c", "import sys; print(sys.prefix)"],
                       capture_output=True, text=True)
    assert done.stdout.strip() == sys.prefix


def _spawning_script(command: str) -> str:
    return textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tinyq.subprocesses import spawn
        proc = spawn(["sh", "-c", {command!r}])
        print(proc.pid, flush=True)
        time.sleep(120)
    """)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setpriv: Linux")
def test_a_light_command_dies_with_its_parent_even_on_sigkill():
    from tinyq.subprocesses import _setpriv

    if _setpriv() is None:
        pytest.skip("setpriv --pdeathsig is not available (run_process uses the guard)")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tinyq.subprocesses import run_process
        run_process(["sh", "-c", "echo $$; exec sleep 90"], guard=False)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True)
    try:
        command = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        _gone_after([command])
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_child_dies_with_its_parent_even_on_sigkill(sig):
    """The guard watches a pipe only the parent process holds: end of file = parent gone."""
    parent = subprocess.Popen([sys.executable, "-c", _spawning_script(
        "sleep 90 & sleep 91")], stdout=subprocess.PIPE, text=True)
    try:
        guard = int(parent.stdout.readline())
        below = _wait_for(lambda: [p for p, n in _descendants(guard).items() if n == "sleep"]
                          if len(_descendants(guard)) >= 3 else None, 10, "no sleeps")
        os.kill(parent.pid, sig)
        parent.wait(10)
        took = _gone_after([guard, *below])
        assert took < GONE_WITHIN_S
    finally:
        parent.kill()
        parent.wait()


def test_a_child_outlives_the_thread_that_started_it():
    """Linux's parent-death signal follows the thread; the guard's pipe follows the process."""
    box = []
    thread = threading.Thread(target=lambda: box.append(spawn(["sleep", "30"])))
    thread.start()
    thread.join()
    proc = box[0]
    try:
        time.sleep(0.5)
        assert proc.poll() is None and "sleep" in _descendants(proc.pid).values()
    finally:
        assert stop(proc) == -signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_the_command_dies_if_its_guard_is_killed():
    proc = spawn(["sleep", "30"])
    try:
        child = _wait_for(lambda: list(_descendants(proc.pid)), 10, "no command")[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _gone_after([child])
    finally:
        stop(proc)


def test_every_process_is_started_through_tinyq_subprocesses():
    """The guard only protects what goes through spawn()/run_process(): no other seam."""
    import re

    starts = re.compile(r"\bPopen\(|\bsubprocess\.(run|call|check_call|check_output)\(|"
                        r"\bos\.(system|popen|fork|forkpty|posix_spawnp?|exec\w*)\(|"
                        r"\bmultiprocessing\.(Process|Pool)\(")
    offenders = []
    for path in sorted((REPO / "tinyq").rglob("*.py")):
        if path.name in ("subprocesses.py", "_child_guard.py"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if starts.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == [], ("start processes with tinyq.subprocesses.spawn/run_process "
                             "(same arguments as subprocess.Popen/run), stop them with "
                             "stop():\n" + "\n".join(offenders))


# ---------------------------------------------------------------- the cache, no toolchain

def _complete(folder: Path) -> bool:
    return (folder / "done").is_file()


def _fill(text: str):
    def build(folder: Path) -> None:
        (folder / "part").write_text(text)
        (folder / "done").write_text(text)
    return build


def test_an_entry_appears_whole_and_a_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "entry"

    def failing(folder: Path) -> None:
        (folder / "part").write_text("half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.cached_folder(final, failing, complete=_complete)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert cache.cached_folder(final, _fill("a"), complete=_complete) is False
    assert (final / "done").read_text() == "a"
    assert cache.cached_folder(final, _fill("b"), complete=_complete) is True
    assert (final / "done").read_text() == "a"
    assert cache.cached_folder(final, _fill("c"), complete=_complete, rebuild=True) is False
    assert (final / "done").read_text() == "c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_an_entry_has_the_permissions_of_its_cache_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)                  # a cache several users' CI jobs share
    cache.cached_folder(shared / "entry", _fill("a"), complete=_complete)
    assert (shared / "entry").stat().st_mode & 0o777 == 0o775


def test_the_loser_of_a_race_uses_the_winners_entry(tmp_path):
    final = tmp_path / "entry"

    def slow_loser(folder: Path) -> None:
        _fill("winner")(final.mkdir() or final)    # another process publishes meanwhile
        _fill("loser")(folder)

    assert cache.cached_folder(final, slow_loser, complete=_complete) is False
    assert (final / "done").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_an_incomplete_entry_is_replaced(tmp_path):
    """A folder under the entry's name without its completion mark (an older tinyq that
    built in place and was killed) is not trusted."""
    final = tmp_path / "entry"
    final.mkdir()
    (final / "part").write_text("half")
    assert cache.cached_folder(final, _fill("new"), complete=_complete) is False
    assert (final / "part").read_text() == "new"


def test_private_folders_of_dead_builders_are_swept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = cache._host()
    left = tmp_path / f"{cache.TMP_PREFIX}{host}-{dead.pid}-abc"
    mine = tmp_path / f"{cache.TMP_PREFIX}{host}-{os.getpid()}-def"
    other_host = tmp_path / f"{cache.TMP_PREFIX}elsewhere-{dead.pid}-ghi"
    for folder in (left, mine, other_host):
        folder.mkdir()
    cache.sweep_stale(tmp_path)
    assert not left.exists() and mine.exists() and other_host.exists()
    old = time.time() - cache.STALE_TMP_S - 60
    os.utime(other_host, (old, old))
    cache.sweep_stale(tmp_path)
    assert not other_host.exists() and mine.exists()


def test_a_held_lock_is_waited_for_then_given_up(tmp_path):
    import fcntl

    final = tmp_path / "entry"
    waits = []
    with open(tmp_path / "entry.lock", "a") as other:      # another process's lock
        fcntl.flock(other, fcntl.LOCK_EX)
        start = time.monotonic()
        with cache.entry_lock(final, 0.3, on_wait=waits.append) as taken:
            assert taken is False
        assert time.monotonic() - start >= 0.3 and waits == [tmp_path / "entry.lock"]
    with cache.entry_lock(final, 0.3) as taken:
        assert taken is True


# ---------------------------------------------------------------- the real CLI

def _cli(*args: str, cache_dir: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "TINYQ_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from tinyq.cli import main; sys.exit(main())",
         *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory, shared_models):
    """A cache holding the hello_world build, so the signal tests only run QEMU."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    folder = tmp_path_factory.mktemp("warm-cache")
    proc = _cli("build", str(shared_models / HELLO), "--board", BOARD, cache_dir=folder)
    out, err = proc.communicate(timeout=REACH_WITHIN_S)
    assert proc.returncode == 0, err
    yield folder
    _kill_mentioning(str(folder))         # the emulators a failing test left behind


@pytest.mark.qemu
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stopped_run_leaves_no_emulator(sig, warm_cache, shared_models, sweeper):
    proc = _cli("run", str(shared_models / HELLO), "--board", BOARD,
                "--runs", str(LONG_RUNS), "--json", str(sweeper / "run.json"),
                cache_dir=warm_cache)
    try:
        qemu = _wait_for(lambda: [p for p, n in _descendants(proc.pid).items()
                                  if n == "qemu-system-arm"], REACH_WITHIN_S,
                         "QEMU did not start")
        guards = [p for p in _descendants(proc.pid) if p not in qemu]
        assert proc.poll() is None, "tinyq ended before it could be stopped"
        os.kill(proc.pid, sig)
        start = time.monotonic()
        out, err = proc.communicate(timeout=30)
        _gone_after(qemu + guards, GONE_WITHIN_S - (time.monotonic() - start))
        took = time.monotonic() - start
    finally:
        proc.kill()
        proc.communicate()
    print(f"{signal.Signals(sig).name}: QEMU gone {took:.3f} s after the signal")
    assert took < GONE_WITHIN_S
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, err
        assert _errors(err) == [f"error: stopped by {signal.Signals(sig).name}"], err
        assert "Traceback" not in err
    assert not (sweeper / "run.json").exists()
    assert [p.name for p in sweeper.iterdir()] == []      # no partial output either


@pytest.mark.qemu
def test_parallel_runs_on_a_cold_cache_all_succeed_and_agree(shared_models, sweeper):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    cold = sweeper / "cache"
    start = time.monotonic()
    procs = [_cli("run", str(shared_models / HELLO), "--board", BOARD,
                  "--json", str(sweeper / f"run{i}.json"), cache_dir=cold) for i in range(3)]
    done = [p.communicate(timeout=REACH_WITHIN_S) for p in procs]
    print(f"3 parallel cold-cache runs: {time.monotonic() - start:.1f} s")
    for proc, (_out, err) in zip(procs, done, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads((sweeper / f"run{i}.json").read_text()) for i in range(3)]
    # One firmware, built once (the others waited for it and reused it).
    assert len({r["firmware"] for r in results}) == 1
    assert sum("compiling hello_world" in err for _out, err in done) == 1
    for r in results:
        assert r["outputs_match"] and r["samples_matching"] == r["samples"] == 1
    same = ("arena_bytes", "stack_peak_bytes", "static_ram_bytes", "flash_bytes", "model_id")
    assert len({tuple(r[k] for k in same) for r in results}) == 1
    builds = cold / BUILDS_FOLDER
    entries = [p for p in builds.iterdir() if p.is_dir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")


@pytest.mark.qemu
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM],
                         ids=lambda s: signal.Signals(s).name)
def test_a_build_killed_half_way_is_never_trusted(sig, shared_models, sweeper):
    require_tools("arm-none-eabi-gcc", "make")
    cold = sweeper / "cache"
    model = str(shared_models / HELLO)
    proc = _cli("build", model, "--board", BOARD, cache_dir=cold)
    try:
        _wait_for(lambda: any(n in ("cc1", "as", "collect2", "ld")
                              for n in _descendants(proc.pid).values()),
                  REACH_WITHIN_S, "the compiler did not start")
        tools = list(_descendants(proc.pid))
        os.kill(proc.pid, sig)
        _out, err = proc.communicate(timeout=30)
        _gone_after(tools)                 # make and the compilers stop with tinyq
    finally:
        proc.kill()
        proc.communicate()
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig and _errors(err) == [
            f"error: stopped by {signal.Signals(sig).name}"], err
    builds = cold / BUILDS_FOLDER
    assert not [p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")]
    again = _cli("build", model, "--board", BOARD, cache_dir=cold)
    out, err = again.communicate(timeout=REACH_WITHIN_S)
    assert again.returncode == 0, err
    assert out.startswith("built ") and "reusing" not in err
    # the dead build's private folder is swept; one entry, its lock, nothing else
    assert sorted(p.suffix or "dir" for p in builds.iterdir()) == [".lock", "dir"]


def test_main_restores_the_signal_handlers_it_installs(capsys):
    """Tests and library users call main() in-process: SIGTERM must behave as before after."""
    from tinyq.cli import STOP_SIGNALS, main

    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    assert main(["boards"]) == 0
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before
