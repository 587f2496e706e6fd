"""``tinyq report``: render one --json record as Markdown, or compare several side by side."""

from __future__ import annotations

HELP = ("render any tinyq --json record as Markdown (with plots for bench/validate/deploy), "
        "or put several of one kind side by side (two runtimes, two boards, before/after)")


def add_arguments(p) -> None:
    p.add_argument("records", nargs="+", metavar="JSON",
                   help="records written by any tinyq command's --json")
    from tinyq.cli.options import add_deprecated, add_force_argument

    p.add_argument("-o", "--output", metavar="OUT.md",
                   help="write the Markdown here (PNGs beside it); default: print it")
    add_deprecated(p, "--md", "--output", dest="output", metavar="OUT.md")
    add_force_argument(p)


def run(args, ui) -> int:
    from tinyq.cli.paths import inputs_of
    from tinyq.fileio import check_output, write_text
    from tinyq.measure.report import (
        compare_markdown,
        labels_for,
        load_record,
        markdown,
        write_report,
    )

    inputs = inputs_of(args)
    if args.output:
        check_output(args.output, args.force, inputs=inputs)     # before reading the records
    records = [load_record(path) for path in args.records]
    if len(records) == 1:
        if args.output:
            files = write_report(records[0], args.output, force=args.force, inputs=inputs)
            extra = f" and {', '.join(p.name for p in files.images)}" if files.images else ""
            ui.print(f"wrote {files.markdown}{extra}")
        else:
            ui.print(markdown(records[0]).rstrip())
        return 0
    text = compare_markdown(records, labels_for(args.records))
    if args.output:
        write_text(args.output, text, args.force, inputs=inputs)
        ui.print(f"wrote {args.output}")
    else:
        ui.print(text.rstrip())
    return 0
