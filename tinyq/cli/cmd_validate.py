"""``tinyq validate``: on-device accuracy over a labelled test set, checked against the host."""

from __future__ import annotations

HELP = ("stream test samples to a board or emulator: on-device top-1 accuracy and confusion "
        "(or regression errors, or anomaly scores) vs the tflite-micro interpreter, bit-exact "
        "count, max LSB difference")


def add_arguments(p) -> None:
    from tinyq.cli.options import (
        add_data_arguments,
        add_output_arguments,
        add_samples_argument,
        add_target_arguments,
        add_task_argument,
        positive_int,
    )

    add_target_arguments(p)
    p.add_argument("--data", required=True, metavar="TEST.npz",
                   help="labelled test samples: .npz (x, y) or an image folder with one "
                        "sub-folder per class, e.g. examples/digits/out/test.npz")
    add_data_arguments(p)
    add_samples_argument(p)
    add_task_argument(p)
    p.add_argument("--reference", metavar="FLOAT_MODEL",
                   help="also report this float model's accuracy (.keras/.h5/SavedModel or a "
                        "float .tflite)")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="run N emulators in parallel, each on a share of the samples "
                        "(default: one per CPU core for an emulator, 1 for a board on --port)")
    p.add_argument("--resume", metavar="PARTIAL.json",
                   help="continue an interrupted run from the JSON it wrote")
    add_output_arguments(p)


def run(args, ui) -> int:
    from tinyq.cli.options import (
        build_options,
        check_outputs,
        check_target_arguments,
        flash_options,
        write_outputs,
    )
    from tinyq.cli.render import print_validate
    from tinyq.measure.report import load_record
    from tinyq.measure.validation import ValidateOptions, validate

    if args.resume and args.json and args.resume == args.json:
        args.force = True       # resuming into the same file replaces it by design
    check_target_arguments(args)
    check_outputs(args, images=("accuracy", "confusion"))
    resume = load_record(args.resume) if args.resume else None
    generate, build = build_options(args)
    options = ValidateOptions(samples=args.samples, reference=args.reference,
                              flash=not args.no_flash, baud=args.baud,
                              flashing=flash_options(args), build=build,
                              generate=generate, image_scale=args.image_scale,
                              jobs=args.jobs, task=args.task)
    result = validate(args.model, args.board, args.data, emulator=args.emulator, port=args.port,
                      runtime=args.runtime, options=options, resume=resume,
                      progress=ui.progress)
    print_validate(result, ui)
    write_outputs(args, result.to_json(), ui)
    if not result.complete:
        how = (f"resume with --resume {args.json}" if args.json
               else "rerun with --json OUT to be able to resume")
        ui.error(f"the device stopped after {result.samples} of {result.requested} samples; "
                 f"the other {result.missing} are missing ({result.error}) — {how}")
        return 1
    if not result.bit_exact:
        ui.error(f"{result.samples - result.bit_exact_count} of {result.samples} outputs differ "
                 f"from TFLM's (max {result.max_lsb_diff} LSB) — a runtime bug: please report it")
        return 1
    return 0
