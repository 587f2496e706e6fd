"""PTQ int8 of the four MLPerf Tiny float models vs the reference int8 models beside them.

    python benchmarks/mlperf_ptq.py [--models DIR] [--calib-samples 100] [--samples 50]

For each of vww_96.h5, pretrainedResnet.h5, ad01.h5 and kws_ref_model_savedmodel/:
quantize to full-integer int8 (int8 I/O) with ``tinyq.quantize``, run it and the
reference int8 model (vww_96_int8.tflite, pretrainedResnet_quant.tflite,
ad01_int8.tflite, kws_ref_model.tflite) on the ``tflite-micro`` interpreter with the
same inputs, and print size, top-1 agreement and the mean/max absolute difference of
the dequantized outputs; also each int8 model's RMSE against the float model (its
float32 conversion on LiteRT), to show which is closer to float.

The MLPerf datasets are not available offline, so calibration and test inputs are
random: int8 codes drawn uniformly and dequantized with the reference model's input
scale/zero point (so the reference sees them without rounding). Agreement on random
inputs is a weaker test than on real data; the figures say how close the two
quantizations are, not the models' accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: (float model, reference int8 model)
MODELS = (
    ("vww_96.h5", "vww_96_int8.tflite"),
    ("pretrainedResnet.h5", "pretrainedResnet_quant.tflite"),
    ("ad01.h5", "ad01_int8.tflite"),
    ("kws_ref_model_savedmodel", "kws_ref_model.tflite"),
)


def models_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("TINYQ_SHARED_MODELS")
    return (Path(env) if env else REPO.parent / "shared" / "models") / "mlperf-tiny"


def random_inputs(reference: bytes, n: int, rng: np.random.Generator) -> np.ndarray:
    from tinyq.model.tflite_reader import read_model_bytes

    t = read_model_bytes(reference).input_tensors[0]
    codes = rng.integers(-128, 128, size=(n, *t.shape[1:]))
    return ((codes - t.quant.zero_point[0]) * t.quant.scale[0]).astype(np.float32)


def tflm_outputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from tinyq.convert.evaluation import run_model

    return run_model(model_bytes, x, runtime="tflm")


def measure(folder: Path, float_name: str, ref_name: str, calib_n: int, test_n: int,
            seed: int) -> dict:
    from tinyq._convert_worker import ConverterProcess
    from tinyq.convert.evaluation import compute_metrics, run_model
    from tinyq.convert.ptq import QuantizeOptions, detect_mode
    from tinyq.errors import TinyqError
    from tinyq.model.tflite_reader import read_model_bytes

    rng = np.random.default_rng(seed)
    reference = (folder / ref_name).read_bytes()
    x_cal = random_inputs(reference, calib_n, rng)
    x_test = random_inputs(reference, test_n, rng)
    row = {"model": float_name, "reference": ref_name, "ref_size": len(reference)}
    t0 = time.perf_counter()
    try:
        with ConverterProcess(folder / float_name) as converter:
            fm = converter.load()
            ours = converter.convert(QuantizeOptions(mode="int8", io="int8"), x_cal).tflite
            f32 = converter.convert(QuantizeOptions(mode="float32")).tflite
    except TinyqError as exc:
        row["error"] = str(exc)
        return row
    row.update(loader=fm.loader, seconds=time.perf_counter() - t0, size=len(ours),
               mode=detect_mode(read_model_bytes(ours)))
    a, b = tflm_outputs(ours, x_test), tflm_outputs(reference, x_test)
    f = run_model(f32, x_test, "litert")
    diff = np.abs(a.reshape(len(a), -1) - b.reshape(len(b), -1))
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    row.update(
        top1=float(np.mean(flat_a.argmax(1) == flat_b.argmax(1))) if flat_a.shape[1] > 1
        else None,
        mean_abs=float(diff.mean()), max_abs=float(diff.max()),
        out_range=float(np.abs(flat_b).max()),
        rmse_ours=compute_metrics(a, f).rmse, rmse_ref=compute_metrics(b, f).rmse)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", help="folder with the MLPerf Tiny models "
                                    "(default ../shared/models/mlperf-tiny)")
    p.add_argument("--calib-samples", type=int, default=100)
    p.add_argument("--samples", type=int, default=50, help="test inputs per model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    folder = models_dir(args.models)
    if not folder.is_dir():
        print(f"error: {folder} not found (pass --models or set TINYQ_SHARED_MODELS)",
              file=sys.stderr)
        return 1
    from tinyq.cli.ui import format_table

    rows = [measure(folder, f, r, args.calib_samples, args.samples, args.seed)
            for f, r in MODELS]
    table = []
    for r in rows:
        if "error" in r:
            table.append((r["model"], "-", f"{r['ref_size']:,}", "-", "-", "-", "-", "-",
                          f"FAILED: {r['error']}"))
            continue
        table.append((r["model"], f"{r['size']:,}", f"{r['ref_size']:,}",
                      "-" if r["top1"] is None else f"{100 * r['top1']:.0f}%",
                      f"{r['mean_abs']:.4g}", f"{r['max_abs']:.4g}",
                      f"{r['rmse_ours']:.4g}", f"{r['rmse_ref']:.4g}", r["loader"]))
    print(f"PTQ int8 (tinyq) vs MLPerf Tiny reference int8, both on the tflite-micro "
          f"interpreter; {args.calib_samples} random calibration inputs, {args.samples} random "
          f"test inputs (seed {args.seed})")
    print(format_table(("float model", "tinyq int8 B", "ref int8 B", "top-1 agree",
                        "mean |diff|", "max |diff|", "RMSE tinyq vs f32", "RMSE ref vs f32",
                        "loaded via"), table, align="lrrrrrrrl"))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
