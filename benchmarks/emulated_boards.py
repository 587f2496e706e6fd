"""Run one int8 model on every emulated board profile under QEMU and compare with TFLM.

    python benchmarks/emulated_boards.py MODEL.tflite [--data TEST.npz] [--samples N]

Prints one row per board: core, instructions per inference (QEMU icount, not cycles),
arena, flash, static RAM, and whether every output was byte-identical to the
tflite-micro interpreter. Default model: the digits int8 model of the demo.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tinyq import boards
from tinyq.cli.ui import format_table
from tinyq.measure.runner import RunOptions, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an int8 .tflite model")
    parser.add_argument("--data", help=".npz with x (default: random inputs, seed 0)")
    parser.add_argument("--samples", type=int, default=20, help="inputs per board (default 20)")
    args = parser.parse_args(argv)

    inputs = None
    if args.data:
        inputs = np.load(args.data)["x"][: args.samples]
    rows, all_match = [], True
    for board in boards.available():
        if not board.emulator.qemu_machine:
            continue
        result = run(args.model, board, emulator="qemu", inputs=inputs,
                     options=RunOptions(samples=args.samples))
        all_match &= result.outputs_match
        rows.append((board.name, board.core, f"{result.per_inference:,}",
                     f"{result.arena_bytes:,}", f"{result.firmware.flash_bytes:,}",
                     f"{result.static_ram:,}",
                     f"{sum(s.outputs_match for s in result.samples)}/{len(result.samples)}"))
        print(f"{board.name}: done", file=sys.stderr, flush=True)
    print(f"{args.model} on every emulated board (QEMU -icount shift=0: instructions, not cycles)")
    print(format_table(("board", "core", "instructions", "arena B", "flash B", "static RAM B",
                        "identical to TFLM"), rows, align="llrrrrr"))
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
