"""``tinyq bench``: latency, RAM, flash and per-layer profile of a model on a board or in QEMU."""

from __future__ import annotations

HELP = ("measure a model on a board or in an emulator: latency (median/min/max/p95), RAM, "
        "flash, per-layer profile, output check against the tflite-micro interpreter")

def add_arguments(p) -> None:
    from tinyq.cli.options import (
        add_data_arguments,
        add_output_arguments,
        add_per_layer_argument,
        add_target_arguments,
    )
    from tinyq.measure.benchmark import DEFAULT_RUNS, DEFAULT_SEED, DEFAULT_WARMUP
    from tinyq.measure.runner import MAX_RUNS

    add_target_arguments(p)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"timed inferences (default {DEFAULT_RUNS}, at most {MAX_RUNS:,})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"untimed inferences before them (default {DEFAULT_WARMUP})")
    add_per_layer_argument(p, default=False)
    p.add_argument("--input", metavar="DATA",
                   help="benchmark input (.npz x, .npy or an image folder; first sample); "
                        "default: random from --seed")
    add_data_arguments(p)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the random input (default {DEFAULT_SEED})")
    add_output_arguments(p)


def run(args, ui) -> int:
    from tinyq.cli.options import (
        build_options,
        check_outputs,
        check_target_arguments,
        flash_options,
        load_inputs,
        write_outputs,
    )
    from tinyq.cli.render import print_bench
    from tinyq.measure.benchmark import BenchOptions, bench

    check_target_arguments(args)
    check_outputs(args, images=("layers",) if args.per_layer else ())
    generate, build = build_options(args)
    options = BenchOptions(runs=args.runs, warmup=args.warmup, per_layer=args.per_layer,
                           seed=args.seed, flash=not args.no_flash, baud=args.baud,
                           flashing=flash_options(args),
                           build=build, generate=generate)
    options.check()                 # counts before reading any data
    inputs = load_inputs(args.input, args.model, args.image_scale) if args.input else None
    result = bench(args.model, args.board, emulator=args.emulator, port=args.port,
                   runtime=args.runtime, inputs=inputs, options=options, progress=ui.progress)
    print_bench(result, ui)
    write_outputs(args, result.to_json(), ui)
    if not result.outputs_match:
        ui.error(f"the device's outputs differ from TFLM's by up to {result.max_lsb_diff} LSB "
                 "— a runtime bug: please report it with this model")
        return 1
    return 0
