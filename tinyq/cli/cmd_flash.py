"""tinyq flash: put built firmware onto a board."""

from __future__ import annotations

from pathlib import Path

HELP = "flash firmware (an ELF, a built project folder, or a .tflite to build first) onto a board"


def add_arguments(p) -> None:
    from tinyq.device.flashing import BACKENDS
    from tinyq.firmware.codegen import RUNTIMES

    p.add_argument("firmware", help="app.elf, a project folder built by `tinyq build`, or a "
                                    ".tflite model (built for --board first, cached)")
    p.add_argument("--runtime", default="native", choices=RUNTIMES,
                   help="runtime when building a .tflite (default native)")
    p.add_argument("--tflm-dir", metavar="DIR", help="TFLM source tree for --runtime tflm")
    p.add_argument("--board", required=True, help="board name or path to a board TOML file")
    p.add_argument("--probe", help="debug probe unique id / serial (when several are attached)")
    p.add_argument("--method", choices=sorted(BACKENDS),
                   help="override the board profile's flashing method")
    p.add_argument("--mount-point", type=Path,
                   help="USB drive to copy to (copy/uf2 methods); found by label otherwise")
    p.add_argument("--no-verify", action="store_true", help="skip verification (openocd)")
    p.add_argument("--no-board-check", action="store_true",
                   help="program the image even if it names another board or lies outside "
                        "this board's flash (you know better)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the commands (or pyOCD calls) it would run; touch no hardware")


def run(args, ui) -> int:
    from tinyq import boards
    from tinyq.device.flashing import FlashOptions, flash, plan

    board = boards.load(args.board)
    firmware = args.firmware
    if Path(firmware).suffix.lower() == ".tflite":
        from tinyq.firmware.compiling import BuildOptions, build

        firmware = build(firmware, board, runtime=args.runtime,
                         build_options=BuildOptions(tflm_dir=args.tflm_dir),
                         progress=ui.progress).elf
    options = FlashOptions(probe=args.probe, method=args.method, mount_point=args.mount_point,
                           verify=not args.no_verify, check_board=not args.no_board_check)
    if args.dry_run:
        for step in plan(firmware, board, options):
            ui.print(step)
        return 0
    result = flash(firmware, board, options, progress=ui.progress)
    ui.print(f"flashed {result.firmware} to {result.board} with {result.method}")
    return 0
