"""tinyq generate: write a self-contained firmware project for a model and a board."""

from __future__ import annotations

HELP = "generate a firmware project (runtime, board glue, harness, Makefile) for a .tflite model"


def add_arguments(p) -> None:
    from tinyq.codegen import OPTIMIZE_LEVELS, RUNTIMES

    p.add_argument("model", help="int8 .tflite model")
    p.add_argument("--board", required=True, help="board name or path to a board TOML file")
    p.add_argument("--runtime", default="native", choices=RUNTIMES, help="runtime (default native)")
    p.add_argument("-o", "--out", required=True, help="project folder to create")
    p.add_argument("--force", action="store_true",
                   help="replace a project folder tinyq generated (never any other folder)")
    add_mlperf_option(p)
    p.add_argument("--kernels", choices=("reference", "cmsis_nn"), default="reference",
                   help="default TFLM kernels of a --runtime tflm project (default reference)")
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
    from tinyq.codegen import GenerateOptions, generate

    runtime_options = None
    if args.runtime == "tflm":
        from tinyq.tflm.codegen import TflmOptions

        runtime_options = TflmOptions(kernels=args.kernels)
    project = generate(args.model, args.board, runtime=args.runtime, out_dir=args.out,
                       options=GenerateOptions(mlperf_model=args.mlperf_model,
                                               optimize=args.optimize,
                                               runtime_options=runtime_options),
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


def add_mlperf_option(p) -> None:
    """``--mlperf-model``: the MLPerf Tiny benchmark whose data format the firmware speaks."""
    from tinyq.codegen.harness import MLPERF_AUTO, MLPERF_MODELS

    choices = MLPERF_MODELS + (MLPERF_AUTO,)
    p.add_argument("--mlperf-model", default="", choices=("",) + choices,
                   metavar="{" + ",".join(choices) + "}",
                   help="speak the official MLPerf Tiny runner's data format of this benchmark "
                        "(ad01: float32 input, one anomaly score; ic01/vww01: uint8 pixels) "
                        "and answer it in `profile`; auto recognises the reference models")
