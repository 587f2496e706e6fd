"""tinyq boards: list the bundled board profiles, show one, validate a user's file."""

from __future__ import annotations

HELP = "list board profiles; `boards show NAME|FILE`; `boards validate FILE...`"

_KB = 1024
_MB = 1024 * 1024


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the bundled boards (the default)")
    show = sub.add_parser("show", help="print every field of one board")
    show.add_argument("board", help="bundled board name or path to a board TOML file")
    validate = sub.add_parser("validate", help="check board TOML files against the schema")
    validate.add_argument("files", nargs="+", metavar="FILE", help="board TOML file(s)")


def run(args, ui) -> int:
    action = getattr(args, "action", None) or "list"
    if action == "show":
        return _show(args.board, ui)
    if action == "validate":
        return _validate(args.files, ui)
    return _list(ui)


def format_size(size: int) -> str:
    """Exact: 4194304 -> '4 MB', 270336 -> '264 KB', 16793600 -> '16 MB + 16 KB',
    100 -> '100 B' (a rounded '16.02 MB' reads as neither 16 MB nor 16 KB more)."""
    parts = []
    for unit, name in ((_MB, "MB"), (_KB, "KB"), (1, "B")):
        if size >= unit:
            parts.append(f"{size // unit:,} {name}")
            size %= unit
    return " + ".join(parts) or "0 B"


def _mhz(hz: int) -> str:
    return f"{hz / 1e6:g}"


def _list(ui) -> int:
    from tinyq import boards

    rows = []
    for b in boards.available():
        ram = format_size(b.ram.size)
        if b.extra_ram:
            ram += f" (+{', '.join(format_size(r.size) for r in b.extra_ram)})"
        emulators = [e for e in (b.emulator.qemu_machine and "qemu",
                                 b.emulator.renode_platform and "renode") if e]
        rows.append((b.name, b.core, _mhz(b.clock_hz), format_size(b.flash.size), ram,
                     "emulated" if b.emulated_only else "real",
                     ", ".join(emulators) or "-"))
    ui.table(("board", "core", "MHz", "flash", "RAM", "kind", "emulator"), rows,
             align="llrrrll")
    ui.print()
    ui.print("RAM (+...): further RAM regions of the board, one size each "
             "(`tinyq boards show NAME` names them)")
    ui.print("`tinyq boards show NAME` prints one; --board also accepts a path to your own "
             ".toml (docs/boards.md)")
    return 0


def _show(name_or_path: str, ui) -> int:
    from tinyq import boards

    b = boards.load(name_or_path)
    features = [f for f, on in (("DSP", b.dsp), ("MVE", b.mve)) if on]
    fields = [
        ("name", b.name),
        ("vendor", b.vendor),
        ("description", b.description),
        ("soc", b.soc or "-"),
        ("core", f"{b.core}" + (f" ({', '.join(features)})" if features else "")),
        ("fpu", b.fpu),
        ("cflags", " ".join(b.cflags)),
        ("clock", f"{_mhz(b.clock_hz)} MHz ({b.clock_hz} Hz)"),
        ("uart", f"{b.uart.kind} at {b.uart.base:#010x}, {b.uart.baud} baud"
                 + (f", clock {_mhz(b.uart.clock_hz)} MHz" if b.uart.clock_hz else "")
                 + (f", TX {b.uart.tx_pin}" if b.uart.tx_pin else "")
                 + (f", RX {b.uart.rx_pin}" if b.uart.rx_pin else "")),
        ("counter", f"{b.counter.kind} at {_mhz(b.counter.clock_hz)} MHz"
                    + (f" ({b.counter.instructions_per_tick_under_icount:g} instructions/tick "
                       "under QEMU -icount shift=0)" if b.emulator.qemu_machine else "")),
        ("flashing", b.flashing.method),
    ]
    for label, value in (("pyocd target", b.flashing.pyocd_target),
                         ("openocd config", b.flashing.openocd_config),
                         ("drive label", b.flashing.drive_label),
                         ("qemu machine", b.emulator.qemu_machine),
                         ("renode platform", b.emulator.renode_platform)):
        if value:
            fields.append((label, value))
    fields += [
        ("emulated only", "yes" if b.emulated_only else "no"),
        ("stack", f"{b.stack_bytes} bytes"),
        ("arena region", b.arena_region),
        ("source", b.source),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        ui.print(f"{key.ljust(width)}  {value}")
    ui.print()
    regions = [("flash", b.flash), ("ram", b.ram), *(("extra ram", r) for r in b.extra_ram)]
    ui.table(("region", "kind", "origin", "end", "size"),
             [(r.name, kind, f"{r.origin:#010x}", f"{r.end:#010x}", format_size(r.size))
              for kind, r in regions], align="llllr")
    return 0


def _validate(files: list[str], ui) -> int:
    from tinyq import boards
    from tinyq.errors import BoardError

    failed = 0
    for path in files:
        try:
            b = boards.validate_file(path)
        except BoardError as exc:
            failed += 1
            ui.error(str(exc))
            continue
        ui.print(f"ok: {b.source} ({b.name}: {b.core}, {_mhz(b.clock_hz)} MHz, "
                 f"flash {format_size(b.flash.size)}, RAM {format_size(b.ram.size)})")
    return 1 if failed else 0
