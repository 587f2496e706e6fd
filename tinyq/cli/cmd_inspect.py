"""``tinyq inspect``: ops, MACs, weights, arena, problems and board fit of a .tflite."""

from __future__ import annotations

import argparse

from tinyq.cli.ui import Console
from tinyq.errors import UnsupportedError

HELP = "analyse a .tflite: ops, MACs, weights, TFLM arena, problems, and fit on a board"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tinyq.cli.options import (
        add_deprecated,
        add_force_argument,
        add_json_argument,
        add_runtime_arguments,
    )

    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("--board", help="board name (see `tinyq boards`) or a board TOML file")
    add_runtime_arguments(parser, "runtime to check against (default native, as in generate, "
                                  "build, run and deploy)", tflm_dir=False)
    add_deprecated(parser, "--cmsis-nn", "--kernels cmsis_nn", dest="kernels", const="cmsis_nn")
    add_json_argument(parser)
    add_force_argument(parser)
    parser.add_argument("--no-arena-search", action="store_true",
                        help="skip measuring the smallest TFLM arena (child processes)")


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def render(report, ui: Console) -> None:
    """Print an ``InspectReport`` as tables."""
    ui.print(f"model   {report.path or '<in memory>'}  ({report.size_bytes:,} bytes, "
             f"sha256 {report.sha256[:12]}, {report.num_subgraphs} subgraph(s))")
    ui.print("inputs  " + "; ".join(t.text() for t in report.inputs))
    ui.print("outputs " + "; ".join(t.text() for t in report.outputs))
    ui.print()
    rows = []
    for op in report.ops:
        ins = ", ".join(t.text() for t in op.inputs if t and not t.constant)
        outs = ", ".join(t.text() for t in op.outputs)
        rows.append((op.index, f"{op.type} v{op.version}", ins, outs, op.weights_bytes, op.macs))
    ui.table(("#", "op", "inputs", "outputs", "weights B", "MACs"), rows, align="rllrrr")
    ui.print()
    ui.print(f"MACs          {report.macs:,}")
    ui.print(f"weights       {report.weights_bytes:,} bytes")
    ui.print("op set        " + ", ".join(f"{n} v{v}" for n, v in report.op_set))
    a = report.arena_tflm
    if a is not None:
        how = "cached" if a.cached else f"{a.probes} probes, {a.seconds:.2f} s"
        ui.print(f"TFLM arena    {a.arena_bytes:,} bytes (smallest that allocates in "
                 f"tflite-micro {a.tflite_micro}, {how})")
    else:
        ui.print("TFLM arena    not measured")
    if report.arena_native is not None:
        ui.print(f"native plan   {_kb(report.arena_native)} bytes")
    elif report.runtime != "native":
        ui.print("native plan   none: the native runtime cannot run this model "
                 "(`--runtime native` says why)")
    if report.problems:
        ui.print()
        ui.print(f"problems ({report.runtime}):")
        for line in problem_lines(report.problems):
            ui.print(f"  {line}")
    if report.fit is not None:
        f = report.fit
        ui.print()
        rows = [("flash", f"{f.flash_needed:,}", f"{f.flash_available:,}", f"{f.flash_over:,}",
                 ", ".join(f"{k} {v:,}" for k, v in f.flash_parts.items())),
                ("RAM", f"{f.ram_needed:,}", f"{f.ram_available:,}", f"{f.ram_over:,}",
                 ", ".join(f"{k} {v:,}" for k, v in f.ram_parts.items()))]
        ui.table((f"{f.board} ({f.runtime})", "needed", "available", "over", "made of"),
                 rows, align="lrrrl")
        ui.print(f.summary())


#: Op indices named in a grouped problem line before "and N more".
GROUP_NAMED_OPS = 4


def problem_lines(problems) -> list[str]:
    """One line per distinct problem: ops with the same opcode, message and fix share a line
    (an unrolled recurrent layer repeats the same refusal hundreds of times)."""
    groups: dict[tuple, list] = {}
    for p in problems:
        groups.setdefault((p.severity, p.opcode, p.message, p.fix), []).append(p)
    lines = []
    for (severity, opcode, message, fix), members in groups.items():
        indices = [p.op_index for p in members if p.op_index is not None]
        if len(indices) <= 1:
            lines.append(f"{severity}: {members[0]}")
            continue
        named = ", ".join(str(i) for i in indices[:GROUP_NAMED_OPS])
        more = (f" and {len(indices) - GROUP_NAMED_OPS} more"
                if len(indices) > GROUP_NAMED_OPS else "")
        lines.append(f"{severity}: ops {named}{more} {opcode}: {message} — {fix}")
    return lines


def run(args: argparse.Namespace, ui: Console) -> int:
    from tinyq.analyze import inspect
    from tinyq.cli.options import check_outputs, check_target_arguments, write_json_output

    check_target_arguments(args)      # --kernels cmsis_nn needs --runtime tflm (exit 2)
    check_outputs(args)
    report = inspect(args.model, board=args.board, runtime=args.runtime,
                     measure_arena=not args.no_arena_search, progress=ui.progress,
                     cmsis_nn=args.kernels == "cmsis_nn")
    render(report, ui)
    write_json_output(args, report.to_json(), ui)
    if report.fit is not None and not report.fit.fits:
        from tinyq import boards
        from tinyq.analyze import fit_error
        from tinyq.model.tflite_reader import read_model

        raise fit_error(read_model(args.model), boards.load(args.board), report.fit,
                        native_arena=report.arena_native)
    if report.unsupported:
        first = report.unsupported[0]
        raise UnsupportedError(
            f"{report.runtime} cannot run this model: {len(report.unsupported)} problem(s), "
            f"first: {first}", hint=None, problems=report.unsupported)
    return 0
