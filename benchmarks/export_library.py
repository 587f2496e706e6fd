"""Size and speed of libraries written by `tinyq export`.

    python benchmarks/export_library.py [--models A.tflite ...] [--runs 100] [--check] [--long]

For each model (default: the four MLPerf Tiny int8 models under ../shared/models):

* flash and RAM of the exported library alone (no harness, no board glue, no libc):
  each source compiled with ``arm-none-eabi-gcc <cortex-m4 flags> -std=c99 -Os
  -ffunction-sections -fdata-sections -c``, sections summed from ``arm-none-eabi-size -A``:
  code = .text*, const = .rodata* (weights, parameters), flash = code + const + .data,
  RAM = .data + .bss (the arena is in .bss);
* seconds per inference of the host build through ``tinyq.firmware.library_host`` and, with
  ``--long``, of a bare-metal program running the same library in QEMU (mps2-an386, with
  and without ``-icount``), from the difference of a 1-input and a ``--runs``-input run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))     # the bare-metal program builder of the tests

from tinyq import boards  # noqa: E402
from tinyq.cli.ui import format_table  # noqa: E402
from tinyq.firmware.library_export import export  # noqa: E402
from tinyq.firmware.library_host import load  # noqa: E402
from tinyq.model.tflite_reader import read_model  # noqa: E402
from tinyq.subprocesses import run_process  # noqa: E402

MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny"
DEFAULT_MODELS = [MLPERF / n for n in ("ad01_int8.tflite", "kws_ref_model.tflite",
                                       "vww_96_int8.tflite", "pretrainedResnet_quant.tflite")]
CFLAGS = ("-std=c99", "-Os", "-ffunction-sections", "-fdata-sections")
#: seconds one compile or one QEMU run may take (vww at 100 inputs under -icount is slow)
STEP_TIMEOUT_S = 1800


def _run(argv, cwd=None) -> str:
    proc = run_process([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                       timeout=STEP_TIMEOUT_S, guard=False)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{proc.stderr}")
    return proc.stdout


def sizes(lib, tmp: Path) -> dict[str, int]:
    """Bytes of the library's objects by section kind: code (.text*), const (.rodata*),
    data (.data*), bss (.bss*, the arena included)."""
    totals = dict.fromkeys(("code", "const", "data", "bss"), 0)
    kinds = {".text": "code", ".rodata": "const", ".data": "data", ".bss": "bss"}
    for src in lib.sources:
        obj = tmp / (Path(src).stem + ".o")
        _run(["arm-none-eabi-gcc", *lib.cflags, *CFLAGS, "-I", lib.path / "include", "-c",
              lib.path / src, "-o", obj])
        for line in _run(["arm-none-eabi-size", "-A", obj]).splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                kind = next((k for pre, k in kinds.items()
                             if parts[0] == pre or parts[0].startswith(pre + ".")), None)
                if kind:
                    totals[kind] += int(parts[1])
    return totals


def _inputs(path: Path, n: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.integers(-128, 128, size=t.shape).astype(t.np_dtype)
             for t in read_model(path).input_tensors] for _ in range(n)]


def host_seconds(lib, path: Path, runs: int, check: bool) -> tuple[float, int | None]:
    """Seconds per inference of the host build, and (with ``check``) how many of the
    ``runs`` random inputs gave outputs that differ from the tflite-micro interpreter."""
    host = load(lib.path)
    xs = _inputs(path, runs)
    start = time.perf_counter()
    outs = [host.run(x) for x in xs]
    seconds = (time.perf_counter() - start) / runs
    if not check:
        return seconds, None
    from tinyq.model.interpreters import TflmInterpreter

    tflm = TflmInterpreter(path.read_bytes())
    differ = sum(any(a.tobytes() != np.asarray(b).tobytes()
                     for a, b in zip(ours, tflm.invoke(x), strict=True))
                 for x, ours in zip(xs, outs, strict=True))
    return seconds, differ


def qemu_seconds(lib, path: Path, runs: int, tmp: Path, icount: bool) -> float:
    from test_library_export_qemu import build_bare_metal, qemu_command

    board = boards.load("mps2-an386")
    xs = [x[0].tobytes() for x in _inputs(path, runs)]
    walls = []
    for n in (1, runs):
        elf = build_bare_metal(lib, board, xs[:n], tmp / f"fw{n}")
        start = time.perf_counter()
        _run(qemu_command(board, elf, icount=icount))
        walls.append(time.perf_counter() - start)
    return (walls[1] - walls[0]) / (runs - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=100, help="inferences timed per model")
    parser.add_argument("--long", action="store_true", help="also time QEMU")
    parser.add_argument("--check", action="store_true",
                        help="also count host outputs that differ from tflite-micro")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for path in args.models:
            # the prefix `net` is what the tests' bare-metal program calls
            lib = export(path, tmp / path.stem / "lib", prefix="net", core="cortex-m4")
            size = sizes(lib, tmp / path.stem)
            flash = size["code"] + size["const"] + size["data"]
            row = [path.name, f"{size['code']:,}", f"{size['const']:,}", f"{flash:,}",
                   f"{size['data'] + size['bss']:,}", f"{lib.arena_bytes:,}"]
            seconds, differ = host_seconds(lib, path, args.runs, args.check)
            row.append(f"{seconds * 1e3:.3f}")
            if args.check:
                row.append(f"{differ}/{args.runs}")
            if args.long:
                for icount in (False, True):
                    sec = qemu_seconds(lib, path, args.runs, tmp / path.stem, icount)
                    row.append(f"{sec * 1e3:.2f}")
            rows.append(row)
    head = ["model", "code B", "const B", "flash B", "RAM B", "arena B", "host ms/inf"]
    if args.check:
        head.append("differ from TFLM")
    if args.long:
        head += ["qemu ms/inf", "qemu -icount ms/inf"]
    print(format_table(head, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
