"""tinyq export: the model as a C library (no main, no harness) for your own firmware."""

from __future__ import annotations

HELP = "export a .tflite model as a C library with one documented header"


def add_arguments(p) -> None:
    from tinyq.board_profile import CORES
    from tinyq.firmware.library_export import FORMATS

    p.add_argument("model", help="int8 .tflite model")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--board", help="board name or board TOML file (its core's flags)")
    target.add_argument("--core", choices=tuple(CORES), metavar="CORE",
                        help=f"core: {', '.join(CORES)}")
    p.add_argument("--format", dest="fmt", default="c", choices=FORMATS,
                   help="c: sources, header and a Makefile fragment; cmake: a CMake library "
                        "target with an arm-none-eabi toolchain file; arduino: an Arduino "
                        "library with an example sketch (default c)")
    p.add_argument("--prefix", required=True,
                   help="prefix of every C name (e.g. kws: kws.h, kws_invoke(), KWS_OK), so "
                        "several models fit in one firmware")
    p.add_argument("-o", "--output", metavar="DIR", required=True,
                   help="library folder to create")
    p.add_argument("--force", action="store_true",
                   help="replace a library folder tinyq exported (never any other folder)")


def run(args, ui) -> int:
    from tinyq.firmware.library_export import export

    lib = export(args.model, args.output, prefix=args.prefix, core=args.core, board=args.board,
                 fmt=args.fmt, force=args.force, progress=ui.progress)
    ui.print(f"exported {lib.model_name} (sha256 {lib.model_sha256[:12]}) to {lib.path}: "
             f"{lib.header}, {len(lib.sources)} sources, arena {lib.arena_bytes:,} bytes, "
             f"format {lib.fmt} for {lib.core}")
    ui.print(f"see {lib.path / 'README.md'} for a complete example and the build commands")
    return 0
