"""tinyq compare: quantize in several modes, one table of size, accuracy, error, latency."""

from __future__ import annotations

HELP = ("quantize a float model in every mode and compare size, accuracy, error vs float, "
        "host latency and whether TFLM runs it")


def add_arguments(p) -> None:
    from tinyq.cli.options import add_data_arguments, add_output_arguments
    from tinyq.convert.ptq import MODES

    p.add_argument("model", help="float model: .keras, .h5 or a SavedModel folder")
    p.add_argument("--calib", required=True, help="calibration data (.npz, .npy, image folder)")
    p.add_argument("--data", required=True, help="test data (.npz with x and labels y, ...)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="modes to compare (default: all)")
    p.add_argument("--per-tensor-dense", action="store_true",
                   help="per-tensor weights for FULLY_CONNECTED")
    p.add_argument("--calib-samples", type=int, metavar="N",
                   help="use the first N calibration samples (default: all, at most 500)")
    add_data_arguments(p)
    p.add_argument("--train", metavar="TRAIN.npz",
                   help="training data (x, y): adds a qat row, the model fine-tuned with fake "
                   "quantization (needs pip install 'tinyq[qat]')")
    p.add_argument("--qat-epochs", type=int, default=3, metavar="N",
                   help="QAT fine-tuning epochs for the qat row (default 3)")
    p.add_argument("--plot", metavar="OUT.png", help="plot accuracy against size (PNG)")
    add_output_arguments(p)


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def run(args, ui) -> int:
    from tinyq.cli.options import check_outputs, write_outputs
    from tinyq.cli.paths import inputs_of
    from tinyq.convert.comparison import CompareOptions, compare, plot
    from tinyq.errors import UsageError
    from tinyq.fileio import check_output

    inputs = inputs_of(args)
    if args.plot and args.plot in (args.json, args.report):
        raise UsageError(f"--plot and {'--json' if args.plot == args.json else '--report'} "
                         f"both name {args.plot}", hint="give each output its own path")
    check_outputs(args, images=("accuracy",))
    if args.plot:
        check_output(args.plot, args.force, inputs=inputs)
    options = CompareOptions(modes=tuple(dict.fromkeys(args.modes)),
                             per_tensor_dense=args.per_tensor_dense,
                             calib_samples=args.calib_samples, image_scale=args.image_scale,
                             train=args.train, qat_epochs=args.qat_epochs)
    r = compare(args.model, args.calib, args.data, options, progress=ui.progress)
    float_size = next((row.size_bytes for row in r.rows if row.mode == "float32"), None)
    rows = []
    for row in r.rows:
        rel = (f"{100 * row.size_bytes / float_size:.0f}%"
               if row.size_bytes and float_size else "")
        rows.append((row.mode, _num(row.size_bytes, ","), rel,
                     _num(None if row.accuracy is None else 100 * row.accuracy, ".2f"),
                     _num(row.max_abs_error, ".4g"), _num(row.rmse, ".4g"),
                     _num(row.latency_us, ".1f"),
                     "yes" if row.tflm_runs else f"no: {row.error or row.tflm_note}"))
    ref = ("" if r.reference_accuracy is None
           else f", float accuracy {100 * r.reference_accuracy:.2f}%")
    ui.print(f"{r.model} on {r.samples} samples of {r.data}{ref}")
    ui.table(("mode", "size B", "vs f32", "top-1 %", "max abs err", "RMSE", "host us",
              "TFLM runs"), rows, align="lrrrrrrl")
    ui.print(f"host us: {r.latency_interpreter}; errors are against the float32 model")
    for row in r.rows:
        for note in row.notes:
            ui.print(f"note ({row.mode}): {note}")
    write_outputs(args, r.to_json(), ui)
    if args.plot:
        plot(r, args.plot, force=args.force, inputs=inputs)
        ui.print(f"wrote {args.plot}")
    return 0
