"""tinyq setup tflm: install the pinned TensorFlow Lite Micro tree into the user cache,
downloaded or from a local checkout and archives."""

from __future__ import annotations

HELP = ("install pinned third-party sources (tflm: TensorFlow Lite Micro + its dependencies), "
        "downloaded or from local files")


def add_arguments(p) -> None:
    p.add_argument("what", choices=("tflm",), help="what to set up")
    p.add_argument("--dir", metavar="DIR",
                   help="install here instead of the user cache (then pass it as --tflm-dir "
                   "or TINYQ_TFLM_DIR)")
    p.add_argument("--tflm-dir", metavar="DIR",
                   help="install from this tflite-micro checkout instead of downloading it "
                   "(checked against the pinned commit; docs/tflm_offline.md)")
    p.add_argument("--archives", metavar="DIR",
                   help="a folder of dependency archives (original file names) or extracted "
                   "folders to use instead of downloading (docs/tflm_offline.md)")
    p.add_argument("--no-cmsis-nn", action="store_true",
                   help="skip CMSIS and CMSIS-NN (reference kernels only)")
    p.add_argument("--force", action="store_true",
                   help="install again over a tree tinyq installed")


def run(args, ui) -> int:
    from tinyq.firmware.tflm import source

    tree = source.setup(args.dir, cmsis_nn=not args.no_cmsis_nn, force=args.force,
                        progress=ui.progress, tflm_dir=args.tflm_dir, archives=args.archives)
    ui.print(f"TFLM {tree.commit or 'tree'} is in {tree.path}")
    if args.dir:
        ui.print(f"use it with --tflm-dir {tree.path} or TINYQ_TFLM_DIR={tree.path}")
    return 0
