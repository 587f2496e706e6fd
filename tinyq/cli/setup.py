"""tinyq setup tflm: download the pinned TensorFlow Lite Micro tree into the user cache."""

from __future__ import annotations

HELP = "download pinned third-party sources (tflm: TensorFlow Lite Micro + its dependencies)"


def add_arguments(p) -> None:
    p.add_argument("what", choices=("tflm",), help="what to set up")
    p.add_argument("--dir", metavar="DIR",
                   help="install here instead of the user cache (then pass it as --tflm-dir "
                   "or TINYQ_TFLM_DIR)")
    p.add_argument("--no-cmsis-nn", action="store_true",
                   help="skip CMSIS and CMSIS-NN (reference kernels only)")
    p.add_argument("--force", action="store_true",
                   help="download again over a tree tinyq installed")


def run(args, ui) -> int:
    from tinyq.tflm import source

    tree = source.setup(args.dir, cmsis_nn=not args.no_cmsis_nn, force=args.force,
                        progress=ui.progress)
    ui.print(f"TFLM {tree.commit or 'tree'} is in {tree.path}")
    if args.dir:
        ui.print(f"use it with --tflm-dir {tree.path} or TINYQ_TFLM_DIR={tree.path}")
    return 0
