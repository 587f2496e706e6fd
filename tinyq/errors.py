"""One error root for tinyq, split by who must act.

::

    TinyqError                       every error tinyq raises on purpose (CLI: exit 1)
    ├── UserInputError               the user must change an input or an option
    │   ├── ModelError               missing/corrupt/unloadable model file
    │   ├── DataError                bad data: missing, corrupt, mis-shaped, NaN/inf, too small
    │   ├── BoardError               unknown board, invalid board profile file
    │   ├── UnsupportedError         op / dtype / mode a runtime cannot run
    │   ├── FitError                 model does not fit the board (CLI: exit 3)
    │   ├── OutputExistsError        refusing to overwrite without --force
    │   └── UsageError               command-line options that contradict each other (CLI: exit 2)
    ├── ToolError                    a host tool (compiler, QEMU, TensorFlow, probe) failed
    │   ├── ToolNotFoundError        the tool is not installed (message says how to install it)
    │   ├── ConversionError          the TFLite converter failed
    │   └── BuildError               compiling/linking firmware failed
    └── DeviceError                  the target (board or emulator) misbehaved
        ├── DeviceTimeoutError       no answer in time
        └── ProtocolError            garbage, a missing m-ready, wrong firmware, reset mid-run

Apart from the tree, :class:`Interrupted` is a KeyboardInterrupt: the CLI raises
it on SIGTERM or SIGHUP so that code unwinds as on Ctrl-C.

Every message is one line that names the problem and the fix. Errors carry the
fields a caller may want to act on (path, op, board, bytes over, port).
"""

from __future__ import annotations

import signal


class TinyqError(Exception):
    """Root of every error tinyq raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, **fields: object) -> None:
        self.message = message
        self.hint = hint
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class UserInputError(TinyqError):
    """The user must change an input file or an option."""


class ModelError(UserInputError):
    """A model file is missing, corrupt, or cannot be loaded."""


class DataError(UserInputError):
    """Data is missing, corrupt, mis-shaped, non-finite, or too small."""


class BoardError(UserInputError):
    """An unknown board name or an invalid board profile."""


class UnsupportedError(UserInputError):
    """An op, dtype or mode the chosen runtime cannot run."""


class FitError(UserInputError):
    """The model does not fit the board's flash or RAM."""

    exit_code = 3


class OutputExistsError(UserInputError):
    """The output path exists and --force was not given."""


class UsageError(UserInputError):
    """Command-line options that contradict each other (exit 2, like argparse's errors)."""

    exit_code = 2


class ToolError(TinyqError):
    """A host tool is missing or failed."""


class ToolNotFoundError(ToolError):
    """A required tool or Python extra is not installed."""


class ConversionError(ToolError):
    """The TensorFlow Lite converter failed."""


class BuildError(ToolError):
    """Compiling or linking the firmware failed."""


class DeviceError(TinyqError):
    """The board or emulator misbehaved."""


class DeviceTimeoutError(DeviceError):
    """The device did not answer in time."""


class ProtocolError(DeviceError):
    """The device answered something the protocol does not allow."""


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) turned into an exception, handled like Ctrl-C:
    ``with`` blocks unwind (devices close, temporary files go), and the CLI exits
    with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
