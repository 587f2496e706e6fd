"""``tinyq run``: build, run on QEMU or a board, and check the outputs against TFLM."""

from __future__ import annotations

HELP = ("build a model for a board, run it in QEMU or on the board, and compare its raw "
        "outputs with the tflite-micro interpreter")


def add_arguments(p) -> None:
    from tinyq.cli.options import (
        add_data_arguments,
        add_force_argument,
        add_json_argument,
        add_samples_argument,
        add_target_arguments,
    )
    from tinyq.measure.runner import MAX_RANDOM_SAMPLES, RANDOM_INPUT_SEED

    add_target_arguments(p)     # model, board, device, flashing, runtime, TFLM
    p.add_argument("--input", metavar="DATA",
                   help="input samples (.npz x, .npy or an image folder, like every command); "
                        f"default: random inputs from seed {RANDOM_INPUT_SEED}")
    add_data_arguments(p)
    add_samples_argument(p, default=f"all of --input, or 1 random input; at most "
                                    f"{MAX_RANDOM_SAMPLES:,} random ones")
    p.add_argument("--seed", type=int, default=RANDOM_INPUT_SEED,
                   help=f"seed of the random inputs (default {RANDOM_INPUT_SEED})")
    p.add_argument("--runs", type=int, default=1,
                   help="timed inferences on the first input; the median is reported (default 1)")
    p.add_argument("--warmup", type=int, default=0, help="untimed inferences before them")
    add_json_argument(p)
    add_force_argument(p)


def run(args, ui) -> int:
    from pathlib import Path

    from tinyq.cli.options import (
        build_options,
        check_outputs,
        check_target_arguments,
        flash_options,
        load_inputs,
        write_json_output,
    )
    from tinyq.measure.runner import RunOptions, check_counts
    from tinyq.measure.runner import run as run_model

    check_target_arguments(args)
    check_counts(args.runs, args.warmup,       # --samples of --input only slices the file
                 1 if args.samples is None or args.input else args.samples)
    check_outputs(args)       # before minutes of work
    inputs = load_inputs(args.input, args.model, args.image_scale) if args.input else None
    if inputs is not None and args.samples is not None:
        inputs = inputs[:args.samples]      # the first N, as everywhere else
    generate, build = build_options(args)
    options = RunOptions(runs=args.runs, warmup=args.warmup, seed=args.seed,
                         samples=1 if args.samples is None else args.samples,
                         flash=not args.no_flash, baud=args.baud,
                         flashing=flash_options(args), generate=generate, build=build)
    result = run_model(args.model, args.board, emulator=args.emulator, port=args.port,
                       inputs=inputs, runtime=args.runtime, options=options,
                       progress=ui.progress)
    unit = result.unit
    note = " (QEMU icount: 1 instruction = 1 ns of virtual time)" if result.emulated else ""
    ui.print(f"{Path(result.model).name} on {result.board} ({result.runtime}) via {result.device}")
    matched = sum(s.outputs_match for s in result.samples)
    ui.table(("measure", "value"), [
        (f"{unit} per inference", f"{result.per_inference:,}{note}"),
        ("timed runs", f"{len(result.ticks)} (median; ticks at {result.tick_hz:,} Hz "
                       f"{result.counter})"),
        ("arena", f"{result.arena_bytes:,} bytes"),
        ("stack high-water mark", f"{result.stack_peak:,} bytes (since boot: harness "
                                  "commands included, see docs/protocol.md)"),
        ("static RAM", f"{result.static_ram:,} bytes"),
        ("flash", f"{result.firmware.flash_bytes:,} bytes"),
        ("inputs", result.input_source),
        ("outputs vs TFLM", f"{'identical' if result.outputs_match else 'DIFFERENT'} "
                            f"({matched}/{len(result.samples)} samples byte-identical, "
                            f"max {result.max_lsb_diff} LSB)"),
    ], align="ll")
    write_json_output(args, result.to_json(), ui)
    if not result.outputs_match:
        ui.error(f"the device's outputs differ from TFLM's by up to {result.max_lsb_diff} LSB "
                 "— a runtime bug: please report it with this model")
        return 1
    return 0
