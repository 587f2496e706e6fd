"""Random bit-exactness sweep of every native kernel against the tflite-micro interpreter.

    python benchmarks/native_ops_random.py --cases 1000 [--seed 0] [--ops CONV_2D,ADD]
        [--sanitize] [--extreme] [--simd]
    python benchmarks/native_ops_random.py --long     # the by-hand run of everything

For each op in ``tinyq.firmware.native.opcases.CASES`` (``--extreme``: the extreme-parameter
cases of ``tinyq.firmware.native.extremecases``): generate N single-op cases (50 per model), run
them on the native host build and on tflite-micro, and print one row: op, cases,
identical, findings (sanitizer/arena poisoning), max diff (LSB; absolute for float
outputs), seconds. ``--sanitize`` adds the UBSan+ASan build and the arena-poisoning
check; ``--long`` = 1000 random and 1000 extreme cases per op, portable and SIMD
paths, all sanitized. Exit status 1 if any case differs or has a finding.
"""

from __future__ import annotations

import argparse
import sys
import time

from tinyq.firmware.native.extremecases import EXTREME_CASES
from tinyq.firmware.native.opcases import CASES, run_cases

#: cases per op and kind in --long (about 20 minutes on one core)
LONG_CASES = 1000
#: ops with a SIMD (DSP) path
SIMD_OPS = ("CONV_2D", "FULLY_CONNECTED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="random cases per op")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", default="", help="comma-separated opcodes (default: all)")
    parser.add_argument("--sanitize", action="store_true",
                        help="also run the UBSan+ASan build and the arena-poisoning check")
    parser.add_argument("--extreme", action="store_true", help="extreme-parameter cases")
    parser.add_argument("--simd", action="store_true", help="the SIMD paths (emulated)")
    parser.add_argument("--long", action="store_true",
                        help="1000 random + 1000 extreme cases per op, portable and SIMD, "
                             "sanitized")
    args = parser.parse_args(argv)
    runs = ([(CASES, False), (EXTREME_CASES, False), (CASES, True), (EXTREME_CASES, True)]
            if args.long else [(EXTREME_CASES if args.extreme else CASES, args.simd)])
    cases = LONG_CASES if args.long else args.cases
    sanitize = args.sanitize or args.long
    wanted = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in wanted if o not in CASES]
    if unknown:
        print(f"unknown op(s): {', '.join(unknown)}; known: {', '.join(sorted(CASES))}",
              file=sys.stderr)
        return 2
    print(f"{'op':<28} {'cases':>6} {'identical':>9} {'findings':>8} {'max diff':>9} "
          f"{'seconds':>8}")
    failed = False
    for gens, simd in runs:
        kind = ("extreme " if gens is EXTREME_CASES else "") + ("SIMD " if simd else "")
        ops = [o for o in (wanted or sorted(gens)) if o in gens]
        if simd:
            ops = [o for o in ops if o in SIMD_OPS]
        for op in ops:
            start = time.perf_counter()
            results = run_cases(op, cases, seed=args.seed, generators=gens,
                                defines=("TQ_SIMD_EMULATE",) if simd else (),
                                sanitize=sanitize, poison=sanitize)
            same = sum(r.identical for r in results)
            found = sum(bool(r.finding) for r in results)
            diff = max((r.max_diff for r in results), default=0.0)
            failed |= same != len(results)
            print(f"{kind + op:<28} {len(results):>6} {same:>9} {found:>8} {diff:>9g} "
                  f"{time.perf_counter() - start:>8.1f}", flush=True)
            for r in [r for r in results if not r.identical][:3]:
                print(f"    differs: {r.label} ({r.finding or f'max diff {r.max_diff:g}'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
