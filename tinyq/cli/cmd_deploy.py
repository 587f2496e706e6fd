"""``tinyq deploy``: quantize, check, generate, build, run, measure and report in one command."""

from __future__ import annotations

HELP = ("the whole pipeline in one command: quantize -> inspect/fit -> generate -> build -> "
        "flash or emulate -> bench (-> validate with --data) -> report")


def add_arguments(p) -> None:
    from tinyq.cli.options import (
        add_deprecated,
        add_force_argument,
        add_json_argument,
        add_per_layer_argument,
        add_samples_argument,
        add_target_arguments,
    )
    from tinyq.measure.benchmark import DEFAULT_RUNS, DEFAULT_WARMUP

    add_target_arguments(p, model_help="the float model (.keras/.h5/SavedModel, with --calib) "
                                       "or an int8 .tflite")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration samples for quantizing a float model (.npz/.npy/folder)")
    p.add_argument("--data", metavar="TEST.npz",
                   help="labelled test samples (x, y): adds on-device validation")
    add_samples_argument(p)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"timed inferences for the latency (default {DEFAULT_RUNS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"untimed inferences before them (default {DEFAULT_WARMUP})")
    add_per_layer_argument(p, default=True)
    p.add_argument("-o", "--output", default="tinyq_deploy", metavar="DIR",
                   help="folder for model.tflite, the firmware project, report.md and "
                        "result.json (default tinyq_deploy)")
    add_deprecated(p, "--out", "--output", dest="output", metavar="DIR")
    p.add_argument("--report", metavar="OUT.md",
                   help="write a Markdown report (default DIR/report.md)")
    add_json_argument(p, default="DIR/result.json")
    add_force_argument(p)


def run(args, ui) -> int:
    from tinyq.cli.options import build_options, check_target_arguments, flash_options
    from tinyq.cli.render import print_bench, print_validate
    from tinyq.pipeline import DeployOptions, deploy

    check_target_arguments(args)
    generate, build = build_options(args)
    options = DeployOptions(
        calib=args.calib, data=args.data, emulator=args.emulator, port=args.port,
        runtime=args.runtime, out_dir=args.output, report=args.report, json=args.json,
        force=args.force, samples=args.samples, runs=args.runs, warmup=args.warmup,
        per_layer=args.per_layer, flash=not args.no_flash, baud=args.baud,
        flashing=flash_options(args),
        generate=generate, build=build)
    result = deploy(args.model, args.board, options, progress=ui.progress)
    ui.print()
    print_bench(result.bench, ui)
    if result.validate is not None:
        ui.print()
        print_validate(result.validate, ui)
    ui.print()
    ui.table(("stage", "seconds"),
             [(s.name, f"{s.seconds:.1f}") for s in result.stages]
             + [("total", f"{result.wall_seconds:.1f}")], align="lr")
    ui.print(f"wrote {result.report} and {result.json}")
    if not result.bench.outputs_match:
        ui.error(f"the device's outputs differ from TFLM's by up to {result.bench.max_lsb_diff} "
                 "LSB — a runtime bug: please report it with this model")
        return 1
    v = result.validate
    if v is not None and not v.complete:
        ui.error(f"the device stopped after {v.samples} of {v.requested} samples; the other "
                 f"{v.missing} are missing ({v.error}) — finish with `tinyq validate "
                 f"{result.tflite} --board {result.board} --data {args.data} --resume "
                 f"{result.json} --json validate.json`")
        return 1
    if v is not None and not v.bit_exact:
        ui.error(f"{v.samples - v.bit_exact_count} of {v.samples} test outputs differ from "
                 f"TFLM's (max {v.max_lsb_diff} LSB) — a runtime bug: please report it")
        return 1
    return 0
