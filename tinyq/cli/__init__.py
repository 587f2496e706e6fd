"""tinyq's command line: a thin layer over the library API.

One module per subcommand (``tinyq/cli/cmd_<name>.py``), each exposing ``HELP``,
``add_arguments(parser)`` and ``run(args, ui) -> int``; what several share lives in
``options.py`` (flags, one meaning each: docs/cli.md) and ``render.py`` (result tables),
never in another command's module. ``reference.py`` generates docs/cli.md's flag table.
Errors derived from ``TinyqError`` become one line on stderr and their exit code (1, or 3 for a
board that does not fit); ``--verbose`` adds the traceback. Usage errors exit 2.

Ctrl-C, SIGTERM and SIGHUP stop a command cleanly: the signal becomes an
exception (KeyboardInterrupt, :class:`tinyq.errors.Interrupted`), so devices
close, emulators and build tools are stopped and no partial output is left;
tinyq prints one line and exits with 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator

from tinyq.cli.ui import Console
from tinyq.errors import Interrupted, TinyqError

#: Signals that stop a command like Ctrl-C does (SIGINT keeps Python's KeyboardInterrupt).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: subcommand -> module. Order is the order of ``tinyq --help``.
SUBCOMMANDS: tuple[str, ...] = (
    "quantize", "evaluate", "compare", "qat",
    "inspect", "boards",
    "generate", "export", "build", "run", "flash",
    "bench", "validate", "deploy", "sweep", "report", "setup", "emulate",
)


def command_module(name: str) -> str:
    """The module of subcommand ``name`` (``cmd_`` keeps it apart from the API's names)."""
    return f"tinyq.cli.cmd_{name.replace('-', '_')}"


def _modules():
    for name in SUBCOMMANDS:
        try:
            yield name, importlib.import_module(command_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != command_module(name):
                raise


def build_parser() -> argparse.ArgumentParser:
    from tinyq import __version__

    parser = argparse.ArgumentParser(
        prog="tinyq",
        description="Quantize a Keras/TensorFlow model, generate and build Cortex-M firmware, "
        "run it on a board or in QEMU, and measure it.",
    )
    parser.add_argument("--version", action="version", version=f"tinyq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _modules():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show debug logs and tracebacks")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[list[int]]:
    """While active, the first SIGTERM/SIGHUP raises :class:`Interrupted` in the main thread;
    later ones are only recorded, so cleanup is not cut short. Yields the signals received.
    Restores the previous handlers on exit (tests call :func:`main` in-process)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    ui = Console(verbose=verbose)
    from tinyq.cli.options import deprecated_used

    for old, new in deprecated_used(args):
        ui.warn(f"{old} is deprecated and goes away in the next release: use {new}")
    with stop_signals_raise() as received:
        try:
            code = int(args._run(args, ui) or 0)
        except TinyqError as exc:
            if verbose:
                traceback.print_exc()
            _last_words(ui, str(exc))
            code = exc.exit_code
        except BrokenPipeError:
            # stdout went to a reader that stopped reading (`tinyq report ... | head`): what
            # it wanted was printed; end quietly, as command-line tools do on SIGPIPE.
            _silence_stdout()
            return 128 + signal.SIGPIPE
        except OSError as exc:
            # A write tinyq did not route through tinyq.fileio (a log, a cache file) that met
            # a full disk, a read-only file system or a missing permission: still one line.
            from tinyq.fileio import WRITE_ERRNOS, os_error

            if exc.errno not in WRITE_ERRNOS:
                raise
            if verbose:
                traceback.print_exc()
            error = os_error(exc.filename or "a file", exc, doing="cannot use")
            _last_words(ui, str(error))
            code = error.exit_code
        except KeyboardInterrupt as exc:
            if verbose:
                traceback.print_exc()
            if isinstance(exc, Interrupted):
                _last_words(ui, str(exc))
                return exc.exit_code
            _last_words(ui, "interrupted")
            return 128 + signal.SIGINT
    if received:                  # the command caught the signal and kept its partial results
        return 128 + received[0]
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not hit the closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):    # not a real file (tests capture it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _last_words(ui: Console, text: str) -> None:
    """The one error line; after SIGHUP the terminal may be gone, which must not raise."""
    with contextlib.suppress(OSError):
        ui.error(text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
