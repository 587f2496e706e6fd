"""``tinyq sweep``: models × quantization modes × boards × runtimes, measured and compared."""

from __future__ import annotations

HELP = ("run a grid of models × quantization modes × boards × runtimes from a sweep file: "
        "a table, and accuracy vs latency/RAM with the Pareto front")


def add_arguments(p) -> None:
    from tinyq.cli.options import positive_int
    from tinyq.measure.sweeping import EXECUTORS

    p.add_argument("sweep_file", metavar="SWEEP.toml",
                   help="the grid and the data (see docs/sweep.md and examples/sweep/)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for sweep.json, sweep.md and its plots; an earlier sweep's "
                        "folder is reused as the cache (only changed cells run again)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where cells run: local = a process pool on this machine (default); "
                        "ray = a Ray cluster (pip install 'tinyq[cluster]')")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="local: worker processes, one emulator each (default: one per CPU "
                        "core)")
    p.add_argument("--address", metavar="ADDR",
                   help="ray: the cluster's address, e.g. 10.0.0.5:6379 (default: "
                        "$RAY_ADDRESS, else a local cluster on this machine)")


def run(args, ui) -> int:
    from tinyq.measure.sweeping import SweepOptions, sweep

    result = sweep(args.sweep_file, args.output,
                   SweepOptions(executor=args.executor, jobs=args.jobs,
                                address=args.address),
                   progress=ui.progress)
    counts: dict[str, int] = {}
    for row in result.rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    ui.print(f"{len(result.rows)} cells ({result.cached} cached): "
             + ", ".join(f"{n} {status}" for status, n in counts.items())
             + f" in {result.seconds:.1f} s")
    ui.print(f"wrote {result.json} and {result.report}")
    return 0
