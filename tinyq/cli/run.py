"""``tinyq run``: build, run on QEMU or a board, and check the outputs against TFLM."""

from __future__ import annotations

HELP = ("build a model for a board, run it in QEMU or on the board, and compare its raw "
        "outputs with the tflite-micro interpreter")


def add_arguments(p) -> None:
    from tinyq.cli.bench import add_target_arguments
    from tinyq.cli.quantize import add_data_arguments
    from tinyq.run import MAX_RANDOM_SAMPLES, RANDOM_INPUT_SEED

    add_target_arguments(p)     # model, board, device, flashing, runtime, TFLM
    p.add_argument("--input", metavar="DATA",
                   help="input samples (.npz x, .npy or an image folder, like every command); "
                        f"default: random inputs from seed {RANDOM_INPUT_SEED}")
    add_data_arguments(p)
    p.add_argument("--samples", type=int,
                   help="random inputs to try when --input is not given (default 1, at most "
                        f"{MAX_RANDOM_SAMPLES:,})")
    p.add_argument("--seed", type=int, default=RANDOM_INPUT_SEED,
                   help=f"seed of the random inputs (default {RANDOM_INPUT_SEED})")
    p.add_argument("--runs", type=int, default=1,
                   help="timed inferences on the first input; the median is reported (default 1)")
    p.add_argument("--warmup", type=int, default=0, help="untimed inferences before them")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")
    p.add_argument("--force", action="store_true", help="overwrite the --json file")


def load_inputs(path: str, model_path: str, image_scale: str):
    """The samples in ``path`` for the model at ``model_path`` (tinyq's one data loader:
    .npz x, .npy, or an image folder resized to the model input, as every command)."""
    from tinyq.data import load_data
    from tinyq.run import data_input_shape
    from tinyq.tflite_reader import read_model

    return load_data(path, input_shape=data_input_shape(read_model(model_path)),
                     image_scale=image_scale).x


def run(args, ui) -> int:
    import json
    from pathlib import Path

    from tinyq.cli.bench import check_target_arguments, flash_options
    from tinyq.cli.paths import inputs_of
    from tinyq.codegen import GenerateOptions
    from tinyq.errors import UsageError
    from tinyq.fileio import check_output, write_text
    from tinyq.run import RunOptions, check_counts
    from tinyq.run import run as run_model

    check_target_arguments(args)
    if args.input and args.samples is not None:
        raise UsageError("--samples sets how many random inputs to make; with --input every "
                         "sample in the file runs", hint="drop --samples, or drop --input")
    check_counts(args.runs, args.warmup, 1 if args.samples is None else args.samples)
    if args.json:
        check_output(args.json, args.force, inputs=inputs_of(args))   # before minutes of work
    inputs = load_inputs(args.input, args.model, args.image_scale) if args.input else None
    from tinyq.build import BuildOptions

    runtime_options = None
    if args.runtime == "tflm":
        from tinyq.tflm.codegen import TflmOptions

        runtime_options = TflmOptions(kernels=args.kernels)
    options = RunOptions(runs=args.runs, warmup=args.warmup, seed=args.seed,
                         samples=1 if args.samples is None else args.samples,
                         flash=not args.no_flash, baud=args.baud,
                         flashing=flash_options(args),
                         generate=GenerateOptions(runtime_options=runtime_options),
                         build=BuildOptions(tflm_dir=args.tflm_dir))
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
        ("stack peak", f"{result.stack_peak:,} bytes"),
        ("static RAM", f"{result.static_ram:,} bytes"),
        ("flash", f"{result.firmware.flash_bytes:,} bytes"),
        ("inputs", result.input_source),
        ("outputs vs TFLM", f"{'identical' if result.outputs_match else 'DIFFERENT'} "
                            f"({matched}/{len(result.samples)} samples byte-identical, "
                            f"max {result.max_lsb_diff} LSB)"),
    ], align="ll")
    if args.json:
        write_text(args.json, json.dumps(result.to_json(), indent=2) + "\n", args.force,
                   inputs=inputs_of(args))
        ui.print(f"wrote {args.json}")
    if not result.outputs_match:
        ui.error(f"the device's outputs differ from TFLM's by up to {result.max_lsb_diff} LSB "
                 "— a runtime bug: please report it with this model")
        return 1
    return 0
