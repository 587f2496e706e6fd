"""tinyq build: compile a generated project (or a model for a board) with arm-none-eabi-gcc."""

from __future__ import annotations

HELP = "build firmware from a generated project folder, or from a .tflite model and --board"


def add_arguments(p) -> None:
    from tinyq.cli.options import add_force_argument, add_json_argument, add_runtime_arguments
    from tinyq.firmware.codegen import OPTIMIZE_LEVELS

    p.add_argument("target", help="project folder made by `tinyq generate`, or a .tflite model")
    p.add_argument("--board", help="board name or TOML file (needed when building a model)")
    add_runtime_arguments(p, "firmware runtime when building a model (default native)")
    p.add_argument("--optimize", default="O2", choices=OPTIMIZE_LEVELS,
                   help="gcc optimisation level when building a model (default O2)")
    p.add_argument("--rebuild", action="store_true", help="ignore a cached build of the model")
    add_json_argument(p)
    add_force_argument(p)


def _pct(used: int, available: int) -> str:
    return f"{100.0 * used / available:.1f}%" if available else "-"


def memory_rows(fw) -> list[tuple[str, str, str, str, str]]:
    """The build table's rows, byte counts with thousands separators (148,212, not 148212)."""
    def n(value: int | None) -> str:
        return "" if value is None else f"{value:,}"

    return [
        ("flash", "code (runtime, harness, glue, libc)", n(fw.code_bytes), "", ""),
        ("flash", "model constants", n(fw.model_bytes), "", ""),
        ("flash", "total", n(fw.flash_bytes), n(fw.flash_available),
         _pct(fw.flash_bytes, fw.flash_available)),
        ("RAM", "static (.data + .bss)", n(fw.static_ram_bytes), "", ""),
        ("RAM", f"tensor arena ({fw.arena_region})", n(fw.arena_bytes), "", ""),
        ("RAM", "stack (reserved)", n(fw.stack_bytes), "", ""),
        ("RAM", "total reserved in main RAM", n(fw.ram_bytes), n(fw.ram_available),
         _pct(fw.ram_bytes, fw.ram_available)),
    ]


def run(args, ui) -> int:
    from tinyq.cli.options import (
        check_outputs,
        check_target_arguments,
        runtime_options,
        write_json_output,
    )
    from tinyq.firmware.codegen import GenerateOptions
    from tinyq.firmware.compiling import BuildOptions, build

    check_target_arguments(args)      # --kernels cmsis_nn needs --runtime tflm (exit 2)
    check_outputs(args)               # before compiling
    fw = build(args.target, board=args.board, runtime=args.runtime,
               options=GenerateOptions(optimize=args.optimize,
                                       runtime_options=runtime_options(args)),
               build_options=BuildOptions(rebuild=args.rebuild, tflm_dir=args.tflm_dir),
               progress=ui.progress)
    ui.print(f"{'reused' if fw.cached else 'built'} {fw.elf} for {fw.board} ({fw.runtime})")
    ui.table(("memory", "what", "bytes", "of board", "used"), memory_rows(fw), align="llrrr")
    write_json_output(args, fw.to_json(), ui)
    return 0
