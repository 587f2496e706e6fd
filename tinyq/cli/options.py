"""Options several commands share, so each flag is spelled and explained in one place.

The vocabulary (one meaning per flag) is in docs/cli.md; ``python -m tinyq.cli.reference
--markdown`` regenerates its per-command table from these parsers. Command modules import
from here, never from each other.

An old spelling kept for one release is added with :func:`add_deprecated`: it stores into
the new option's destination and notes itself, and :func:`tinyq.cli.main` prints one
warning line per old spelling used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Namespace attribute collecting (old spelling, new spelling) pairs used on a command line.
DEPRECATED_DEST = "_deprecated"
#: TFLM kernel sets (--kernels).
KERNELS = ("reference", "cmsis_nn")


# -- old spellings ------------------------------------------------------------------------

class DeprecatedOption(argparse.Action):
    """An old spelling: stores like its replacement ``new`` and notes itself for a warning."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        used = list(getattr(namespace, DEPRECATED_DEST, None) or [])
        used.append((option_string, self.new))
        setattr(namespace, DEPRECATED_DEST, used)


def add_deprecated(p, old: str, new: str, dest: str, *, const=None, **kwargs) -> None:
    """Accept ``old`` (hidden from --help) as the spelling ``new`` stored in ``dest``.

    ``const``: for an old on/off flag (no value), the value it stands for
    (``--cmsis-nn`` = ``--kernels cmsis_nn``).
    """
    if const is not None:
        kwargs.update(nargs=0, const=const)
    p.add_argument(old, dest=dest, action=DeprecatedOption, new=new,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def deprecated_used(args) -> list[tuple[str, str]]:
    """(old, new) spellings the command line used, in order."""
    return list(getattr(args, DEPRECATED_DEST, None) or [])


# -- argument types ----------------------------------------------------------------------

def positive_int(text: str) -> int:
    """argparse type: an integer above zero (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above zero")
    return value


# -- data ----------------------------------------------------------------------------------

def add_data_arguments(p) -> None:
    """Options shared by every command that reads data."""
    from tinyq.data import DEFAULT_IMAGE_SCALE, IMAGE_SCALES

    p.add_argument("--image-scale", choices=tuple(IMAGE_SCALES), default=DEFAULT_IMAGE_SCALE,
                   help="pixel scaling for image folders: 0-1 (pixel/255), -1-1 "
                        "(pixel/127.5-1) or 0-255 (raw) (default %(default)s)")


def add_task_argument(p) -> None:
    """--task: what validate (and deploy with --data) measures."""
    from tinyq.measure.validation import TASKS

    p.add_argument("--task", choices=TASKS, default=None,
                   help="what to measure: classify (top-1, per-class precision/recall, "
                        "confusion), regress (MAE, RMSE, cosine, L2 relative error against "
                        "float targets), anomaly (reconstruction MSE or score per sample, AUC "
                        "with 0/1 labels); default: from the labels and the output shape")


def add_samples_argument(p, default: str = "all") -> None:
    """``--samples N``: how many samples to use: the first N of the data, or N random inputs
    when the command makes them up (``run`` without ``--input``)."""
    p.add_argument("--samples", type=positive_int, metavar="N",
                   help=f"use the first N samples of the data (random inputs: make N) "
                        f"(default {default})")


def load_inputs(path: str, model_path: str, image_scale: str):
    """The samples in ``path`` for the model at ``model_path`` (tinyq's one data loader:
    .npz x, .npy, or an image folder resized to the model input, as every command)."""
    from tinyq.data import load_data
    from tinyq.measure.runner import data_input_shape
    from tinyq.model.tflite_reader import read_model

    return load_data(path, input_shape=data_input_shape(read_model(model_path)),
                     image_scale=image_scale).x


# -- runtime, board, device ---------------------------------------------------------------

def add_runtime_arguments(p, runtime_help: str = "firmware runtime (default native)",
                          tflm_dir: bool = True) -> None:
    """--runtime, --kernels and (``tflm_dir``: for commands that compile) --tflm-dir."""
    from tinyq.firmware.codegen import RUNTIMES

    p.add_argument("--runtime", default="native", choices=RUNTIMES, help=runtime_help)
    if tflm_dir:
        p.add_argument("--tflm-dir", metavar="DIR",
                       help="TFLM source tree for --runtime tflm (default: $TINYQ_TFLM_DIR, "
                       "then `tinyq setup tflm`'s cache)")
    p.add_argument("--kernels", choices=KERNELS, default="reference",
                   help="TFLM kernels for --runtime tflm (default reference)")


def runtime_options(args):
    """The runtime's options for GenerateOptions (TflmOptions for tflm, else None)."""
    if args.runtime != "tflm":
        return None
    from tinyq.firmware.tflm.codegen import TflmOptions

    return TflmOptions(kernels=args.kernels)


def add_target_arguments(p, model_help: str = "the int8 .tflite model") -> None:
    """Model, board, runtime and device options every measuring command takes."""
    from tinyq.measure.runner import EMULATORS

    p.add_argument("model", help=model_help)
    p.add_argument("--board", required=True, help="board name (see `tinyq boards`) or TOML file")
    add_runtime_arguments(p)
    device = p.add_mutually_exclusive_group()
    device.add_argument("--emulator", choices=EMULATORS,
                        help="run in this emulator (default for emulator-only boards: qemu)")
    device.add_argument("--port", help="run on a board at this serial port (e.g. /dev/ttyACM0)")
    p.add_argument("--baud", type=positive_int, metavar="RATE",
                   help="serial baud rate (default: the board profile's)")
    add_flash_arguments(p)


def add_flash_arguments(p) -> None:
    """How a board on --port is flashed first (the options of `tinyq flash`)."""
    from tinyq.device.flashing import BACKENDS

    p.add_argument("--no-flash", action="store_true",
                   help="with --port: the board already runs this firmware; do not flash it")
    p.add_argument("--probe", metavar="ID",
                   help="with --port: the debug probe to flash through (when several)")
    p.add_argument("--method", choices=sorted(BACKENDS),
                   help="with --port: flash with this method instead of the profile's")
    p.add_argument("--mount-point", type=Path, metavar="DIR",
                   help="with --port: the board's USB drive (copy/uf2 methods)")


def flash_options(args):
    """tinyq.device.flashing.FlashOptions from add_flash_arguments' options."""
    from tinyq.device.flashing import FlashOptions

    return FlashOptions(probe=args.probe, method=args.method, mount_point=args.mount_point)


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


def build_options(args):
    """(GenerateOptions, BuildOptions) from the shared arguments."""
    from tinyq.firmware.codegen import GenerateOptions
    from tinyq.firmware.compiling import BuildOptions

    return (GenerateOptions(runtime_options=runtime_options(args)),
            BuildOptions(tflm_dir=args.tflm_dir))


# -- outputs ------------------------------------------------------------------------------

def add_json_argument(p, default: str | None = None) -> None:
    """``--json OUT``: the command's record (docs/cli.md lists each kind's schema)."""
    p.add_argument("--json", metavar="OUT.json",
                   help="write the result as a JSON record"
                        + (f" (default {default})" if default else ""))


def add_force_argument(p) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def add_output_arguments(p) -> None:
    """--json, --report and --force of the measuring commands."""
    add_json_argument(p)
    p.add_argument("--report", metavar="OUT.md",
                   help="write a Markdown report (PNG plots beside it)")
    add_force_argument(p)


def add_per_layer_argument(p, default: bool) -> None:
    p.add_argument("--per-layer", action=argparse.BooleanOptionalAction, default=default,
                   help="profile each op (table and bar chart in --report) "
                        f"(default: {'on' if default else 'off'})")


def check_outputs(args, images: tuple[str, ...] = ()) -> None:
    """Refuse existing output files before minutes of work.

    ``images``: the plots the --report will hold (``tinyq.measure.report.REPORT_IMAGES`` names),
    whose PNGs beside the Markdown are checked too.
    """
    from tinyq.cli.paths import inputs_of
    from tinyq.errors import UsageError
    from tinyq.fileio import check_output
    from tinyq.measure.report import report_paths

    json_out, report = getattr(args, "json", None), getattr(args, "report", None)
    paths = [json_out]
    if report:
        paths += report_paths(report, images)
    if json_out and report and json_out == report:
        raise UsageError(f"--json and --report both name {json_out}",
                         hint="give each output its own path")
    for path in paths:
        if path:
            check_output(path, args.force, inputs=inputs_of(args))


def write_json_output(args, record, ui) -> None:
    """Write ``record`` to ``--json`` (when given) and say so."""
    from tinyq.cli.paths import inputs_of
    from tinyq.measure.report import write_json

    if args.json:
        write_json(record, args.json, force=args.force, inputs=inputs_of(args))
        ui.print(f"wrote {args.json}")


def write_outputs(args, record, ui) -> None:
    """Write ``--json`` and ``--report`` for ``record``."""
    from tinyq.cli.paths import inputs_of
    from tinyq.measure.report import write_report

    write_json_output(args, record, ui)
    if getattr(args, "report", None):
        files = write_report(record, args.report, force=args.force, inputs=inputs_of(args))
        extra = f" and {', '.join(p.name for p in files.images)}" if files.images else ""
        ui.print(f"wrote {files.markdown}{extra}")


def add_mlperf_option(p) -> None:
    """``--mlperf-model``: the MLPerf Tiny benchmark whose data format the firmware speaks."""
    from tinyq.firmware.codegen.harness import MLPERF_AUTO, MLPERF_MODELS

    choices = MLPERF_MODELS + (MLPERF_AUTO,)
    p.add_argument("--mlperf-model", default="", choices=("",) + choices,
                   metavar="{" + ",".join(choices) + "}",
                   help="speak the official MLPerf Tiny runner's data format of this benchmark "
                        "(ad01: float32 input, one anomaly score; ic01/vww01: uint8 pixels) "
                        "and answer it in `profile`; auto recognises the reference models")
