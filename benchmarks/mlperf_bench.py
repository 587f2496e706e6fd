"""`tinyq bench` on the four MLPerf Tiny int8 models: mps2-an386 under QEMU, native runtime.

    python benchmarks/mlperf_bench.py [--models DIR] [--runs 5] [--per-layer vww_96_int8.tflite]
                                      [--json OUT]

Prints, per model: instructions per inference (median of --runs under QEMU
``-icount shift=0``; deterministic), instructions per MAC, the native arena vs
TFLM's activation bytes, flash code and model bytes, and the ratio to TFLM's
reference-kernel instructions. Then the RAM and flash breakdown of each model and
the per-layer profile of the models named by --per-layer.

The TFLM figures are **given constants from a separate TFLM measurement** (TFLM built
from source and run on the same emulated board with arm-none-eabi-gcc 12.2, hard
float); they are not measured by this script. Everything else is measured now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tinyq.cli.ui import format_table
from tinyq.measure.benchmark import BenchOptions, bench

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = REPO.parent / "shared" / "models" / "mlperf-tiny"
BOARD = "mps2-an386"

#: A separate TFLM measurement (GIVEN, not measured here): model -> (MACs, TFLM reference-kernel
#: instructions, TFLM + CMSIS-NN instructions, TFLM activation bytes, TFLM arena_used_bytes).
TFLM_GIVEN: dict[str, tuple[int, int, int, int, int]] = {
    "ad01_int8.tflite": (264_192, 1_952_631, 583_261, 768, 2_260),
    "kws_ref_model.tflite": (2_656_768, 43_040_204, 7_698_250, 16_000, 22_772),
    "vww_96_int8.tflite": (7_489_664, 100_241_892, 24_102_722, 73_728, 100_660),
    "pretrainedResnet_quant.tflite": (12_501_632, 107_406_464, 29_862_080, 49_152, 54_340),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help=f"folder with the MLPerf Tiny .tflite files "
                             f"(default {DEFAULT_MODELS})")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model (default 5)")
    parser.add_argument("--per-layer", action="append", default=[], metavar="MODEL",
                        help="print the per-layer profile of this model file name (repeatable)")
    parser.add_argument("--json", type=Path, help="also write every bench record to this file")
    args = parser.parse_args(argv)

    missing = [n for n in TFLM_GIVEN if not (args.models / n).is_file()]
    if missing:
        print(f"missing under {args.models}: {', '.join(missing)}", file=sys.stderr)
        return 1
    records = {}
    results = {}
    for name in TFLM_GIVEN:
        start = time.perf_counter()
        result = bench(args.models / name, BOARD, emulator="qemu", runtime="native",
                       options=BenchOptions(runs=args.runs, warmup=1,
                                            per_layer=name in args.per_layer))
        results[name] = result
        records[name] = result.to_json()
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)

    rows = []
    for name, r in results.items():
        macs, tflm_ref, tflm_cmsis, tflm_act, _tflm_arena = TFLM_GIVEN[name]
        lat = r.latency
        assert lat.unit == "instructions"
        rows.append((name, f"{r.macs:,}", f"{lat.median:,}", f"{lat.max - lat.min:,}",
                     f"{lat.median / r.macs:.2f}", f"{r.ram.arena:,}", f"{tflm_act:,}",
                     f"{r.flash.code:,}", f"{tflm_ref:,}", f"{lat.median / tflm_ref:.3f}",
                     f"{lat.median / tflm_cmsis:.3f}",
                     "yes" if r.outputs_match else "NO"))
    print(f"tinyq bench, {BOARD} under QEMU -icount shift=0 (instructions, not cycles), "
          f"native runtime, median of {args.runs} runs after 1 warm-up")
    print(format_table(
        ("model", "MACs", "instr/inference", "max-min", "instr/MAC", "arena B",
         "TFLM act. B*", "code B", "TFLM ref instr*", "vs TFLM ref", "vs TFLM+CMSIS-NN*",
         "= TFLM"), rows, align="lrrrrrrrrrrl"))
    print("* given figures of a separate TFLM measurement (TFLM built from source on the same "
          "emulated board), not measured here")
    print()
    ram_rows = [(n, f"{r.ram.static:,}", f"{r.ram.stack_peak:,}", f"{r.ram.arena:,}",
                 f"{r.ram.total:,}", f"{r.ram.available:,}") for n, r in results.items()]
    print(format_table(("RAM (bytes)", "static", "stack peak", "arena", "total", "board"),
                       ram_rows, align="lrrrrr"))
    print()
    flash_rows = [(n, f"{r.flash.code:,}", f"{r.flash.model:,}", f"{r.flash.total:,}",
                   f"{r.flash.available:,}") for n, r in results.items()]
    print(format_table(("flash (bytes)", "code", "model", "total", "board"), flash_rows,
                       align="lrrrr"))
    for name in args.per_layer:
        r = results.get(name)
        if r is None or not r.layers:
            print(f"\nno per-layer profile for {name} (not one of the four models)")
            continue
        print(f"\nper-layer profile: {name} ({r.latency.median:,} instructions per inference)")
        print(format_table(
            ("#", "op", "instructions", "share", "MACs", "MACs/instr"),
            [(x.index, x.op, f"{x.count:,}", f"{100 * x.share:.1f}%", f"{x.macs:,}",
              "" if x.macs_per_count is None else f"{x.macs_per_count:.3f}")
             for x in r.layers], align="rlrrrr"))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
