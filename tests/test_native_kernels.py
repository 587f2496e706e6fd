"""Kernel-level checks that need a C compiler: requantization arithmetic, warning-clean
builds for the host and for Cortex-M0 (Thumb-1, no unaligned word access)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyq.native.codegen import kernels_dir

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


@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m4", "cortex-m7"])
def test_kernels_compile_warning_free_for_cortex_m(tmp_path, cpu):
    _need("arm-none-eabi-gcc")
    flags = ["-mthumb", f"-mcpu={cpu}", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
             "-Wcast-align", "-I", str(kernels_dir())]
    for src in sorted(kernels_dir().glob("*.c")):
        subprocess.run(["arm-none-eabi-gcc", *flags, "-c", str(src), "-o",
                        str(tmp_path / (src.stem + ".o"))], check=True)
