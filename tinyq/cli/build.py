"""tinyq build: compile a generated project (or a model for a board) with arm-none-eabi-gcc."""

from __future__ import annotations

import json

HELP = "build firmware from a generated project folder, or from a .tflite model and --board"


def add_arguments(p) -> None:
    from tinyq.codegen import OPTIMIZE_LEVELS, RUNTIMES

    p.add_argument("target", help="project folder made by `tinyq generate`, or a .tflite model")
    p.add_argument("--board", help="board name or TOML file (needed when building a model)")
    p.add_argument("--runtime", default="native", choices=RUNTIMES,
                   help="runtime when building a model (default native)")
    p.add_argument("--optimize", default="O2", choices=OPTIMIZE_LEVELS,
                   help="gcc optimisation level when building a model (default O2)")
    p.add_argument("--rebuild", action="store_true", help="ignore a cached build of the model")
    p.add_argument("--tflm-dir", metavar="DIR",
                   help="TFLM source tree for --runtime tflm (default: $TINYQ_TFLM_DIR, "
                   "then `tinyq setup tflm`'s cache)")
    p.add_argument("--kernels", choices=("reference", "cmsis_nn"), default="reference",
                   help="TFLM kernels for --runtime tflm (default reference)")
    p.add_argument("--json", metavar="OUT", help="also write the sizes as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def _pct(used: int, available: int) -> str:
    return f"{100.0 * used / available:.1f}%" if available else "-"


def run(args, ui) -> int:
    from tinyq.build import BuildOptions, build
    from tinyq.cli.bench import check_target_arguments
    from tinyq.cli.paths import inputs_of
    from tinyq.codegen import GenerateOptions
    from tinyq.fileio import check_output, write_text

    check_target_arguments(args)      # --kernels cmsis_nn needs --runtime tflm (exit 2)
    if args.json:
        check_output(args.json, args.force, inputs=inputs_of(args))   # before compiling
    runtime_options = None
    if args.runtime == "tflm":
        from tinyq.tflm.codegen import TflmOptions

        runtime_options = TflmOptions(kernels=args.kernels)
    fw = build(args.target, board=args.board, runtime=args.runtime,
               options=GenerateOptions(optimize=args.optimize, runtime_options=runtime_options),
               build_options=BuildOptions(rebuild=args.rebuild, tflm_dir=args.tflm_dir),
               progress=ui.progress)
    ui.print(f"{'reused' if fw.cached else 'built'} {fw.elf} for {fw.board} ({fw.runtime})")
    ui.table(
        ("memory", "what", "bytes", "of board", "used"),
        [
            ("flash", "code (runtime, harness, glue, libc)", fw.code_bytes, "", ""),
            ("flash", "model constants", fw.model_bytes, "", ""),
            ("flash", "total", fw.flash_bytes, fw.flash_available,
             _pct(fw.flash_bytes, fw.flash_available)),
            ("RAM", "static (.data + .bss)", fw.static_ram_bytes, "", ""),
            ("RAM", f"tensor arena ({fw.arena_region})", fw.arena_bytes, "", ""),
            ("RAM", "stack (reserved)", fw.stack_bytes, "", ""),
            ("RAM", "total reserved in main RAM", fw.ram_bytes, fw.ram_available,
             _pct(fw.ram_bytes, fw.ram_available)),
        ],
        align="llrrr",
    )
    if args.json:
        write_text(args.json, json.dumps(fw.as_dict(), indent=2) + "\n", args.force,
                   inputs=inputs_of(args))
    return 0
