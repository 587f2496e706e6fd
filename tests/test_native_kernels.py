"""Kernel-level checks that need a C compiler: requantization arithmetic (the firmware
builds with strict warnings are tests/test_native_firmware_flags.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyq.firmware.native.codegen import kernels_dir

HERE = Path(__file__).parent


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def test_requantization_matches_gemmlowp_double_rounding(tmp_path):
    _need("gcc")
    exe = tmp_path / "requant_check"
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    "-I", str(kernels_dir()), str(HERE / "native_c" / "requant_check.c"),
                    "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout
    assert "mismatches: 0" in out.stdout
