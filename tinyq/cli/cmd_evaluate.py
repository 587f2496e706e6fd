"""tinyq evaluate: accuracy, error vs the float model and per-layer SQNR of a .tflite."""

from __future__ import annotations

HELP = ("measure a .tflite on host interpreters: accuracy, error vs the float model, "
        "per-layer quantization error (SQNR)")

#: Worst layers printed (all of them go to --json).
SHOWN_LAYERS = 10


def add_arguments(p) -> None:
    from tinyq.cli.options import (
        add_data_arguments,
        add_deprecated,
        add_force_argument,
        add_json_argument,
    )
    from tinyq.convert.evaluation import RUNTIMES

    p.add_argument("model", help="the .tflite to measure")
    p.add_argument("--data", required=True,
                   help="test data: .npz (x[, y labels]), .npy or an image folder")
    p.add_argument("--reference", help="float model to compare with: .keras, .h5, SavedModel "
                                       "or a float32 .tflite")
    p.add_argument("--interpreter", choices=RUNTIMES, default="litert",
                   help="host interpreter: litert, ai-edge-litert reference kernels (default); "
                        "tflm, the tflite-micro interpreter (what a microcontroller computes)")
    add_deprecated(p, "--runtime", "--interpreter", dest="interpreter", choices=RUNTIMES)
    add_data_arguments(p)
    add_json_argument(p)
    add_force_argument(p)


def _pct(v: float | None) -> str:
    return "n/a (no labels)" if v is None else f"{100 * v:.2f}%"


def run(args, ui) -> int:
    from tinyq.cli.options import check_outputs, write_json_output
    from tinyq.convert.evaluation import evaluate

    check_outputs(args)
    r = evaluate(args.model, args.data, reference=args.reference, runtime=args.interpreter,
                 image_scale=args.image_scale, progress=ui.progress)
    ui.print(f"{r.model}: {r.mode}, {r.size_bytes:,} B, {r.samples} samples on {r.runtime}")
    ui.print(f"  top-1 accuracy        {_pct(r.accuracy)}")
    if r.metrics is not None:
        m = r.metrics
        ui.print(f"  reference accuracy    {_pct(r.reference_accuracy)} ({r.reference})")
        ui.print(f"  max abs error         {m.max_abs_error:.6g}")
        ui.print(f"  RMSE                  {m.rmse:.6g}")
        ui.print(f"  relative L2           {m.relative_l2:.6g}")
        ui.print(f"  cosine similarity     {m.cosine_similarity:.6f}")
        if m.top1_agreement is not None:
            ui.print(f"  top-1 agreement       {100 * m.top1_agreement:.2f}%")
    if r.layers:
        ui.print(f"per-layer SQNR on {r.layer_samples} samples, worst first "
                 f"({len(r.layers)} layers):")
        rows = [(layer.index, layer.op,
                 "exact" if layer.sqnr_db == float("inf") else f"{layer.sqnr_db:.1f}",
                 f"{layer.max_abs_error:.4g}", layer.name[:60])
                for layer in r.layers[:SHOWN_LAYERS]]
        ui.table(("#", "op", "SQNR dB", "max abs err", "output tensor"), rows, align="rlrrl")
        if len(r.layers) > SHOWN_LAYERS:
            ui.print(f"  ... {len(r.layers) - SHOWN_LAYERS} more in --json")
    for reason in r.layers_skipped:
        ui.print(f"  skipped {reason}")
    write_json_output(args, r.to_json(), ui)
    return 0
