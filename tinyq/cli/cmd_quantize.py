"""tinyq quantize: a float Keras/TensorFlow model -> .tflite (int8 by default)."""

from __future__ import annotations

HELP = "quantize a float Keras/TensorFlow model (.keras, .h5, SavedModel) to .tflite"

MODE_HELP = ("int8: int8 weights and activations, int8 I/O (default); int16x8: int16 "
             "activations, int8 weights; dynamic: int8 weights, float activations; "
             "float16: float16 weights; float32: no quantization")


def add_arguments(p) -> None:
    from tinyq.cli.options import add_data_arguments, add_force_argument
    from tinyq.convert.ptq import MODES

    p.add_argument("model", help="float model: .keras, .h5 or a SavedModel folder")
    p.add_argument("--calib", help="calibration data: .npz (x[, y]), .npy or an image folder "
                                   "(required for int8 and int16x8)")
    p.add_argument("--mode", choices=MODES, default="int8", help=MODE_HELP)
    p.add_argument("--io", choices=("int8", "int16", "float32"),
                   help="input/output type: int8 (int8 mode default), int16 (int16x8 "
                        "default) or float32 (quantize/dequantize inside the model)")
    p.add_argument("--per-tensor-dense", action="store_true",
                   help="per-tensor weights for FULLY_CONNECTED (older TFLM builds)")
    p.add_argument("--calib-samples", type=int, metavar="N",
                   help="use the first N calibration samples (default: all, at most 500)")
    add_data_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.tflite", help="output .tflite")
    add_force_argument(p)


def run(args, ui) -> int:
    from tinyq.convert.ptq import QuantizeOptions, quantize

    options = QuantizeOptions(mode=args.mode, io=args.io, per_tensor_dense=args.per_tensor_dense,
                              calib_samples=args.calib_samples, image_scale=args.image_scale)
    r = quantize(args.model, args.calib, options, output=args.output, force=args.force,
                 progress=ui.progress)
    ui.print(f"wrote {args.output}: {r.mode}" + (f", {r.calib_samples} calibration samples"
                                                 if r.calib_samples else ""))
    params = ("" if r.param_count is None else
              f", {r.param_count:,} parameters = {4 * r.param_count:,} B as float32")
    ui.print(f"  size    {r.source_size_bytes:,} B model file{params} -> {r.size_bytes:,} B")
    for spec in r.inputs:
        ui.print(f"  input   {spec.describe()}")
    for spec in r.outputs:
        ui.print(f"  output  {spec.describe()}")
    ui.print("  ops     " + ", ".join(f"{op} x{n}" for op, n in r.ops))
    for note in r.notes:
        ui.print(f"  note    {note}")
    if r.repairs:
        ui.print(f"  loaded  {r.loader}")
    elif r.loader not in ("keras", "tf.saved_model"):
        ui.print(f"  loaded  via {r.loader}")
    return 0
