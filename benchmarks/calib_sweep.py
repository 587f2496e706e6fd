"""int8 output error against the float model, by calibration-set size.

    python benchmarks/calib_sweep.py [--dir examples/digits/out] [--sizes 1 8 16 32 200]

Converts the digits float model (``examples/digits/train.py`` writes it) to int8 with
the first N calibration samples and prints, over the test set, the output RMSE
against the float model and the top-1 accuracy on the tflite-micro interpreter. It
calls tinyq's converter process directly, below tinyq's ``MIN_CALIB_SAMPLES`` too:
these are the figures that floor is chosen from (docs/quantization.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tinyq._convert_worker import ConverterProcess
from tinyq.cli.ui import format_table
from tinyq.convert.evaluation import evaluate_bytes
from tinyq.convert.ptq import MIN_CALIB_SAMPLES, QuantizeOptions

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "examples" / "digits" / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="folder with digits.keras, calib.npz and test.npz "
                             f"(default {DEFAULT_DIR})")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32, 200],
                        help="calibration set sizes to try")
    args = parser.parse_args(argv)
    files = {name: args.dir / name for name in ("digits.keras", "calib.npz", "test.npz")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        print(f"error: {', '.join(missing)} not found — run "
              f"`python examples/digits/train.py --out {args.dir}` first", file=sys.stderr)
        return 1

    with np.load(files["calib.npz"]) as data:
        calib = data["x"].astype(np.float32)
    with ConverterProcess(files["digits.keras"]) as converter:
        reference = converter.convert(QuantizeOptions(mode="float32")).tflite
        quantized = {n: converter.convert(QuantizeOptions(mode="int8"), calib[:n]).tflite
                     for n in args.sizes}
    rows = []
    for n, q in quantized.items():
        report = evaluate_bytes(q, files["test.npz"], reference_bytes=reference,
                                runtime="tflm", layers=False)
        rows.append((f"{n}{' (refused by tinyq)' if n < MIN_CALIB_SAMPLES else ''}",
                     f"{report.metrics.rmse:.3f}", f"{100 * report.accuracy:.2f}%",
                     f"{100 * report.metrics.top1_agreement:.1f}%"))
    print(f"digits int8 vs float32 on {report.samples} test samples (tflite-micro interpreter)")
    print(format_table(("calibration samples", "output RMSE", "top-1", "top-1 agreement"),
                       rows, "lrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
