"""``tinyq bench``: latency, RAM, flash and per-layer profile of a model on a board or in QEMU."""

from __future__ import annotations

HELP = ("measure a model on a board or in an emulator: latency (median/min/max/p95), RAM, "
        "flash, per-layer profile, output check against the tflite-micro interpreter")


# -- shared by run, bench, validate and deploy ----------------------------------------------

def add_target_arguments(p, model_help: str = "the int8 .tflite model") -> None:
    """Model, board, runtime and device options every measuring command takes."""
    from tinyq.codegen import RUNTIMES
    from tinyq.run import EMULATORS

    p.add_argument("model", help=model_help)
    p.add_argument("--board", required=True, help="board name (see `tinyq boards`) or TOML file")
    p.add_argument("--runtime", default="native", choices=RUNTIMES,
                   help="runtime to build (default native)")
    device = p.add_mutually_exclusive_group()
    device.add_argument("--emulator", choices=EMULATORS,
                        help="run in this emulator (default for emulator-only boards: qemu)")
    device.add_argument("--port", help="run on a board at this serial port (e.g. /dev/ttyACM0)")
    p.add_argument("--baud", type=positive_int, metavar="RATE",
                   help="serial baud rate (default: the board profile's)")
    add_flash_arguments(p)
    p.add_argument("--tflm-dir", metavar="DIR",
                   help="TFLM source tree for --runtime tflm (default: $TINYQ_TFLM_DIR, "
                   "then `tinyq setup tflm`'s cache)")
    p.add_argument("--kernels", choices=("reference", "cmsis_nn"), default="reference",
                   help="TFLM kernels for --runtime tflm (default reference)")


def add_flash_arguments(p) -> None:
    """How a board on --port is flashed first (the options of `tinyq flash`)."""
    from pathlib import Path

    from tinyq.flash import BACKENDS

    p.add_argument("--no-flash", action="store_true",
                   help="with --port: the board already runs this firmware; do not flash it")
    p.add_argument("--probe", metavar="ID",
                   help="with --port: the debug probe to flash through (when several)")
    p.add_argument("--method", choices=sorted(BACKENDS),
                   help="with --port: flash with this method instead of the profile's")
    p.add_argument("--mount-point", type=Path, metavar="DIR",
                   help="with --port: the board's USB drive (copy/uf2 methods)")


def flash_options(args):
    """tinyq.flash.FlashOptions from add_flash_arguments' options."""
    from tinyq.flash import FlashOptions

    return FlashOptions(probe=args.probe, method=args.method, mount_point=args.mount_point)


def positive_int(text: str) -> int:
    """argparse type: an integer above zero (a usage error, exit 2, otherwise)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above zero")
    return value


def check_target_arguments(args) -> None:
    """Refuse options that contradict each other (exit 2) before any work.

    (``--emulator`` with ``--port`` is refused by argparse: they are one exclusive group.)
    """
    from tinyq.errors import UsageError

    if not getattr(args, "port", None):
        given = [flag for flag, on in (("--no-flash", getattr(args, "no_flash", False)),
                                       ("--baud", getattr(args, "baud", None) is not None),
                                       ("--probe", getattr(args, "probe", None) is not None),
                                       ("--method", getattr(args, "method", None) is not None),
                                       ("--mount-point",
                                        getattr(args, "mount_point", None) is not None))
                 if on]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise UsageError(f"{' and '.join(given)} only {verb} to a board on --port",
                             hint=f"drop {' and '.join(given)} (an emulator loads the ELF "
                                  "itself and has no baud rate), or pass --port")
    if getattr(args, "kernels", "reference") != "reference" and args.runtime != "tflm":
        raise UsageError(f"--kernels {args.kernels} applies to --runtime tflm, not "
                         f"{args.runtime}", hint="add --runtime tflm, or drop --kernels")


def add_output_arguments(p) -> None:
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")
    p.add_argument("--report", metavar="OUT.md",
                   help="write a Markdown report (PNG plots beside it)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def build_options(args):
    """(GenerateOptions, BuildOptions) from the shared arguments."""
    from tinyq.build import BuildOptions
    from tinyq.codegen import GenerateOptions

    runtime_options = None
    if args.runtime == "tflm":
        from tinyq.tflm.codegen import TflmOptions

        runtime_options = TflmOptions(kernels=args.kernels)
    return (GenerateOptions(runtime_options=runtime_options),
            BuildOptions(tflm_dir=args.tflm_dir))


def check_outputs(args, images: tuple[str, ...] = ()) -> None:
    """Refuse existing output files before minutes of work.

    ``images``: the plots the --report will hold (``tinyq.report.REPORT_IMAGES`` names),
    whose PNGs beside the Markdown are checked too.
    """
    from tinyq.cli.paths import inputs_of
    from tinyq.errors import UsageError
    from tinyq.fileio import check_output
    from tinyq.report import report_paths

    paths = [getattr(args, "json", None)]
    if getattr(args, "report", None):
        paths += report_paths(args.report, images)
    if args.json and args.report and args.json == args.report:
        raise UsageError(f"--json and --report both name {args.json}",
                         hint="give each output its own path")
    for path in paths:
        if path:
            check_output(path, args.force, inputs=inputs_of(args))


def write_outputs(args, record, ui) -> None:
    from tinyq.cli.paths import inputs_of
    from tinyq.report import write_json, write_report

    if args.json:
        write_json(record, args.json, force=args.force, inputs=inputs_of(args))
        ui.print(f"wrote {args.json}")
    if args.report:
        files = write_report(record, args.report, force=args.force, inputs=inputs_of(args))
        extra = f" and {', '.join(p.name for p in files.images)}" if files.images else ""
        ui.print(f"wrote {files.markdown}{extra}")


# -- bench --------------------------------------------------------------------------------------

def add_arguments(p) -> None:
    from tinyq.bench import DEFAULT_RUNS, DEFAULT_SEED, DEFAULT_WARMUP
    from tinyq.cli.quantize import add_data_arguments
    from tinyq.run import MAX_RUNS

    add_target_arguments(p)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"timed inferences (default {DEFAULT_RUNS}, at most {MAX_RUNS:,})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"untimed inferences before them (default {DEFAULT_WARMUP})")
    p.add_argument("--per-layer", action="store_true",
                   help="also profile each op (table and bar chart in --report)")
    p.add_argument("--input", metavar="DATA",
                   help="benchmark input (.npz x, .npy or an image folder; first sample); "
                        "default: random from --seed")
    add_data_arguments(p)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the random input (default {DEFAULT_SEED})")
    add_output_arguments(p)


def print_bench(result, ui) -> None:
    """The bench tables on stdout."""
    from pathlib import Path

    lat = result.latency
    unit = lat.unit
    ui.print(f"{Path(result.model).name} on {result.board} ({result.runtime}) via {result.device}")
    if result.emulated:
        ui.print("latency in emulator instructions (QEMU icount: 1 instruction = 1 ns of "
                 "virtual time), not cycles or milliseconds")
    rows = []
    for key in ("median", "min", "max", "p95"):
        value = getattr(lat, key)
        ms = lat.ms(value)
        rows.append((key, f"{value:,}") + (() if ms is None else (f"{ms:.3f} ms",)))
    if result.emulated:
        ui.table(("latency", unit), rows, align="lr")
    else:
        ui.table(("latency", unit, f"at {lat.core_hz / 1e6:g} MHz"), rows, align="lrr")
    ui.print(f"{len(lat.values)} timed run(s) after {lat.warmup} warm-up(s); "
             f"{result.macs:,} MACs = {result.macs / lat.median:.3f} MACs per {unit[:-1]}"
             if lat.median else "")
    ui.print()
    ram, flash = result.ram, result.flash

    def share(n: int, total: int) -> str:
        return f"{100 * n / total:.2f}%" if total else "-"

    ui.table(("memory", "what", "bytes", "of board"), [
        ("RAM", "static (.data + .bss)", f"{ram.static:,}", share(ram.static, ram.available)),
        ("RAM", "stack high-water mark", f"{ram.stack_peak:,}",
         share(ram.stack_peak, ram.available)),
        ("RAM", "arena used", f"{ram.arena:,}", share(ram.arena, ram.available)),
        ("RAM", "total peak", f"{ram.total:,}", share(ram.total, ram.available)),
        ("RAM", "board", f"{ram.available:,}", ""),
        ("flash", "code", f"{flash.code:,}", share(flash.code, flash.available)),
        ("flash", "model", f"{flash.model:,}", share(flash.model, flash.available)),
        ("flash", "total", f"{flash.total:,}", share(flash.total, flash.available)),
        ("flash", "board", f"{flash.available:,}", ""),
    ], align="llrr")
    if result.layers:
        ui.print()
        ui.table(("#", "op", unit, "share", "MACs", f"MACs/{unit[:-1]}"), [
            (layer.index, layer.op, f"{layer.count:,}", f"{100 * layer.share:.1f}%",
             f"{layer.macs:,}",
             "" if layer.macs_per_count is None else f"{layer.macs_per_count:.3f}")
            for layer in result.layers], align="rlrrrr")
    ui.print()
    ui.print("outputs vs TFLM: " + ("identical" if result.outputs_match else
                                    f"DIFFERENT (max {result.max_lsb_diff} LSB)")
             + f" (input: {result.input_source})")


def run(args, ui) -> int:
    from tinyq.bench import BenchOptions, bench
    from tinyq.cli.run import load_inputs

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
