"""Write small but well-formed ELF32 files for tests that must not need a compiler."""

from __future__ import annotations

import struct
from pathlib import Path

EM_ARM = 40


def write_elf(path: Path, base: int, payload: bytes = b"\x00" * 64, *,
              board: str | None = None, machine: int = EM_ARM) -> Path:
    """An executable ELF with one loadable ``.text`` segment of ``payload`` at ``base``.

    With ``board``, the board name follows the payload and the symbol
    ``tq_board_id`` points at it, as in a tinyq harness.
    """
    text = payload
    symbols: list[tuple[str, int]] = []
    if board is not None:
        symbols.append(("tq_board_id", base + len(text)))
        text += board.encode() + b"\0"
    text += b"\0" * (-len(text) % 4)

    strtab = b"\0"
    symtab = b"\0" * 16
    for name, value in symbols:
        symtab += struct.pack("<IIIBBH", len(strtab), value, 0, 0x11, 0, 1)
        strtab += name.encode() + b"\0"
    names = [b"", b".text", b".symtab", b".strtab", b".shstrtab"]
    shstrtab = b"\0".join(names) + b"\0"
    name_off = [shstrtab.index(n + b"\0") if n else 0 for n in names]

    text_off = 52 + 32
    symtab_off = text_off + len(text)
    strtab_off = symtab_off + len(symtab)
    shstr_off = strtab_off + len(strtab)
    sh_off = (shstr_off + len(shstrtab) + 3) & ~3

    header = b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, base | 1, 52, sh_off, 0x05000200,
                          52, 32, 1, 40, 5, 4)
    phdr = struct.pack("<IIIIIIII", 1, text_off, base, base, len(text), len(text), 5, 4)
    sections = [
        struct.pack("<10I", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack("<10I", name_off[1], 1, 0x6, base, text_off, len(text), 0, 0, 4, 0),
        struct.pack("<10I", name_off[2], 2, 0, 0, symtab_off, len(symtab), 3, 1, 4, 16),
        struct.pack("<10I", name_off[3], 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0),
        struct.pack("<10I", name_off[4], 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0),
    ]
    body = header + phdr + text + symtab + strtab + shstrtab
    body += b"\0" * (sh_off - len(body))
    path.write_bytes(body + b"".join(sections))
    return path
