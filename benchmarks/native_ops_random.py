"""Random bit-exactness sweep of every native kernel against the tflite-micro interpreter.

    python benchmarks/native_ops_random.py --cases 1000 [--seed 0] [--ops CONV_2D,ADD]

For each op in ``tinyq.native.opcases.CASES``: generate N random single-op cases
(50 per model), run them on the native host build and on tflite-micro, and print
one row: op, cases, identical, max diff (LSB; absolute for float outputs), seconds.
Exit status 1 if any case differs.
"""

from __future__ import annotations

import argparse
import sys
import time

from tinyq.native.opcases import CASES, run_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="random cases per op")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", default="", help="comma-separated opcodes (default: all)")
    args = parser.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] or sorted(CASES)
    unknown = [o for o in ops if o not in CASES]
    if unknown:
        print(f"unknown op(s): {', '.join(unknown)}; known: {', '.join(sorted(CASES))}",
              file=sys.stderr)
        return 2
    print(f"{'op':<20} {'cases':>6} {'identical':>9} {'max diff':>9} {'seconds':>8}")
    failed = False
    for op in ops:
        start = time.perf_counter()
        results = run_cases(op, args.cases, seed=args.seed)
        same = sum(r.identical for r in results)
        diff = max((r.max_diff for r in results), default=0.0)
        failed |= same != len(results)
        print(f"{op:<20} {len(results):>6} {same:>9} {diff:>9g} "
              f"{time.perf_counter() - start:>8.1f}", flush=True)
        for r in [r for r in results if not r.identical][:3]:
            print(f"    differs: {r.label} (max diff {r.max_diff:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
