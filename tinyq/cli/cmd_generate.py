"""tinyq generate: write a self-contained firmware project for a model and a board."""

from __future__ import annotations

HELP = "generate a firmware project (runtime, board glue, harness, Makefile) for a .tflite model"


def add_arguments(p) -> None:
    from tinyq.cli.options import add_deprecated, add_mlperf_option, add_runtime_arguments
    from tinyq.firmware.codegen import OPTIMIZE_LEVELS

    p.add_argument("model", help="int8 .tflite model")
    p.add_argument("--board", required=True, help="board name or path to a board TOML file")
    add_runtime_arguments(p, tflm_dir=False)
    # Not required=True: the old spelling --out must satisfy it too (checked in run).
    p.add_argument("-o", "--output", metavar="DIR", help="project folder to create (required)")
    add_deprecated(p, "--out", "--output", dest="output", metavar="DIR")
    p.add_argument("--force", action="store_true",
                   help="replace a project folder tinyq generated (never any other folder)")
    add_mlperf_option(p)
    p.add_argument("--optimize", default="O2", choices=OPTIMIZE_LEVELS,
                   help="gcc optimisation level in the Makefile (default O2)")
    p.add_argument("--no-fit-check", action="store_true",
                   help="write the project even when the model's estimated flash/RAM need "
                        "(`tinyq inspect --board`'s estimate, with the arena this project "
                        "reserves: for TFLM the measured arena plus its margin) exceeds "
                        "the board's; "
                        "without it generate refuses with exit code 3 (the linker still "
                        "checks the real sizes in `tinyq build`)")


def run(args, ui) -> int:
    from tinyq.cli.options import check_target_arguments, runtime_options
    from tinyq.errors import UsageError
    from tinyq.firmware.codegen import GenerateOptions, generate

    check_target_arguments(args)      # --kernels cmsis_nn needs --runtime tflm (exit 2)
    if not args.output:
        raise UsageError("generate needs the project folder to create",
                         hint="add -o DIR (or --output DIR)")
    project = generate(args.model, args.board, runtime=args.runtime, out_dir=args.output,
                       options=GenerateOptions(mlperf_model=args.mlperf_model,
                                               optimize=args.optimize,
                                               runtime_options=runtime_options(args)),
                       force=args.force, progress=ui.progress,
                       fit_check=not args.no_fit_check)
    ui.print(f"generated {project.path} ({len(project.files)} files) for {project.board}, "
             f"runtime {project.runtime}, model {project.model_name} "
             f"(sha256 {project.model_sha256[:12]}), arena {project.arena_bytes:,} bytes")
    if project.runtime == "tflm":
        ui.print(f"build it with `tinyq build {project.path} --tflm-dir DIR` or "
                 f"`make -C {project.path} TFLM_DIR=DIR` (see its README.md)")
    else:
        ui.print(f"build it with `tinyq build {project.path}` or `make -C {project.path}`")
    return 0

