"""Small user-facing details: quiet exit on a closed pipe, exact sizes, ETAs, plots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_closed_stdout_pipe_ends_quietly_without_a_traceback():
    # `tinyq boards | head -0`: the reader is gone before tinyq writes a line.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c",
                           "import sys; from tinyq.cli import main; sys.exit(main())",
                           "boards"], stdout=write_end, stderr=subprocess.PIPE, env=env,
                          timeout=60, check=False)
    os.close(write_end)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 128 + signal.SIGPIPE
