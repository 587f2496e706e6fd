"""tinyq qat: quantization-aware fine-tuning, then full-integer int8 conversion."""

from __future__ import annotations

HELP = ("fine-tune a float Keras model with fake quantization (QAT) and convert it to int8; "
        "compares float, post-training int8 and QAT int8 accuracy")


def add_arguments(p) -> None:
    from tinyq.cli.options import add_force_argument, add_json_argument
    from tinyq.convert.ptq import DEFAULT_CALIB_SAMPLES
    from tinyq.convert.qat_training import QatOptions

    d = QatOptions()
    p.add_argument("model", help="float Keras model: .keras, .h5 (Sequential or Functional)")
    p.add_argument("--train", required=True,
                   help="training data: .npz with x and integer (or one-hot) labels y")
    p.add_argument("--val", help="held-out data (.npz with x, y): per-epoch validation "
                                 "accuracy and the float/PTQ/QAT comparison")
    p.add_argument("--calib", required=True,
                   help="calibration data for the int8 converter (.npz, .npy or image folder)")
    p.add_argument("--calib-samples", type=int, metavar="N",
                   help=f"calibration samples to use (default: all, at most "
                   f"{DEFAULT_CALIB_SAMPLES}); fewer in the file is an error")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"fine-tuning epochs (default {d.epochs})")
    p.add_argument("--lr", type=float, default=d.learning_rate,
                   help=f"Adam learning rate (default {d.learning_rate:g})")
    p.add_argument("--batch", type=int, default=d.batch_size,
                   help=f"batch size (default {d.batch_size})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    p.add_argument("--no-ptq", action="store_true",
                   help="skip the post-training int8 comparison row")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                   help="output .tflite (int8, int8 I/O)")
    add_json_argument(p)
    add_force_argument(p)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def run(args, ui) -> int:
    from tinyq.cli.options import write_json_output
    from tinyq.cli.paths import inputs_of
    from tinyq.convert.qat_training import QatOptions, import_qat_stack, qat
    from tinyq.errors import UsageError
    from tinyq.fileio import check_output, write_bytes

    inputs = inputs_of(args)
    if args.json and args.json == args.output:
        raise UsageError(f"-o and --json both name {args.json}",
                         hint="give each output its own path")
    check_output(args.output, args.force, inputs=inputs)
    if args.json:
        check_output(args.json, args.force, inputs=inputs)
    import_qat_stack()  # the missing-extra error before any data is read
    options = QatOptions(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch,
                         calib_samples=args.calib_samples, seed=args.seed,
                         compare_ptq=not args.no_ptq)
    result = qat(args.model, args.train, options, calib=args.calib, val=args.val,
                 progress=ui.progress)
    write_bytes(args.output, result.tflite, force=args.force, inputs=inputs)
    write_json_output(args, result.to_json(), ui)

    ui.print(f"wrote {args.output} ({result.size_bytes:,} bytes): int8 input "
             f"(scale {result.input_scale:.6g}, zero point {result.input_zero_point}), "
             f"int8 output (scale {result.output_scale:.6g}, "
             f"zero point {result.output_zero_point})")
    if result.carried_from_keras3:
        ui.print(f"Keras 3 model rebuilt in tf-keras for QAT (max output difference "
                 f"{result.carry_max_abs_diff:.3g})")
    for note in result.notes:
        ui.print(f"  note    {note}")
    ui.table(["epoch", "loss", "accuracy", "val accuracy"],
             [(h.epoch, f"{h.loss:.4f}", _pct(h.accuracy), _pct(h.val_accuracy))
              for h in result.history], align="rrrr")
    ui.print()
    where = ("held-out validation data" if result.eval_on == "validation"
             else "the TRAINING data (pass --val for a held-out figure)")
    ui.print(f"accuracy on {where}, {result.eval_samples} samples; int8 rows measured on the "
             f"tflite-micro interpreter:")
    rows = [("float", _pct(result.float_accuracy), "-"),
            ("PTQ int8", _pct(result.ptq_accuracy),
             "-" if result.ptq_accuracy is None
             else f"{100 * (result.ptq_accuracy - result.float_accuracy):+.2f}"),
            ("QAT int8", _pct(result.qat_accuracy),
             f"{100 * (result.qat_accuracy - result.float_accuracy):+.2f}")]
    ui.table(["model", "accuracy", "vs float (points)"], rows, align="lrr")
    if result.ptq_error:
        ui.warn(f"PTQ row missing: {result.ptq_error}")
    return 0
