"""tinyq emulate: a virtual board any serial tool can open, running until Ctrl-C."""

from __future__ import annotations

HELP = ("build a model's firmware and run it in QEMU with its serial port on a pseudo-terminal "
        "(or a TCP port) until Ctrl-C: a virtual board for any serial tool")


def add_arguments(p) -> None:
    from tinyq.cli.options import add_mlperf_option, add_runtime_arguments

    p.add_argument("model", help="int8 .tflite model")
    p.add_argument("--board", required=True, help="a board QEMU emulates (`tinyq boards`)")
    add_runtime_arguments(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true",
                       help="serial port on a pseudo-terminal /dev/pts/N (the default)")
    where.add_argument("--tcp", type=int, metavar="PORT",
                       help="serial port on 127.0.0.1:PORT instead (one client at a time)")
    add_mlperf_option(p)


def run(args, ui) -> int:
    from tinyq import boards
    from tinyq.cli.options import check_target_arguments, runtime_options
    from tinyq.device.virtual_board import PTY_RECONNECT_S, start_virtual_board
    from tinyq.errors import UserInputError
    from tinyq.firmware.codegen import GenerateOptions
    from tinyq.firmware.compiling import BuildOptions, build

    check_target_arguments(args)      # --kernels cmsis_nn needs --runtime tflm
    board = boards.load(args.board)
    if not board.emulator.qemu_machine:
        raise UserInputError(f"board {board.name} has no QEMU machine",
                             hint="pick a board `tinyq boards` lists as emulated")
    fw = build(args.model, board=args.board, runtime=args.runtime,
               options=GenerateOptions(mlperf_model=args.mlperf_model,
                                       runtime_options=runtime_options(args)),
               build_options=BuildOptions(tflm_dir=args.tflm_dir), progress=ui.progress)
    with start_virtual_board(fw.elf, board.emulator.qemu_machine, tcp_port=args.tcp) as vb:
        kind = "pseudo-terminal" if args.tcp is None else "TCP port"
        ui.print(f"{board.name} (QEMU {board.emulator.qemu_machine}) serial {kind}: {vb.serial}")
        if args.tcp is None:
            ui.print(f"after opening it, wait {PTY_RECONNECT_S:g} s (QEMU then delivers the "
                     "boot lines) before the first command; time stamps are emulated "
                     "instruction counts; Ctrl-C stops QEMU")
        else:
            ui.print("time stamps are emulated instruction counts; Ctrl-C stops QEMU")
        code = vb.wait()
    ui.print(f"QEMU ended with exit code {code}")
    return 0 if code == 0 else 1
