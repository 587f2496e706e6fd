"""A small reader for the little-endian ELF32 files arm-none-eabi-gcc writes.

Enough for what tinyq asks of a built firmware, without pyelftools: the header
(machine, entry), the sections (for sizes), the loadable segments (where the
image goes in the target's memory) and the symbol table (named addresses, and a
string constant read by name, such as the board a firmware was built for).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from tinyq.errors import UserInputError

#: ``e_machine`` of 32-bit Arm.
EM_ARM = 40
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHF_ALLOC = 0x2
PT_LOAD = 1


@dataclass(frozen=True)
class ElfSection:
    name: str
    type: int
    flags: int
    addr: int
    size: int
    offset: int = 0     # where its bytes are in the file (meaningless for NOBITS)


@dataclass(frozen=True)
class ElfSegment:
    """A loadable segment: ``filesz`` bytes programmed at physical address ``paddr``."""

    vaddr: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class ElfFile:
    path: Path
    machine: int
    entry: int
    sections: tuple[ElfSection, ...]
    segments: tuple[ElfSegment, ...]
    symbols: dict[str, int]
    data: bytes

    def string_at(self, address: int, limit: int = 256) -> str | None:
        """The NUL-terminated string stored at ``address`` in a section with file contents."""
        for s in self.sections:
            if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.addr <= address < s.addr + s.size:
                start = s.offset + (address - s.addr)
                end = self.data.find(b"\0", start, min(start + limit, s.offset + s.size))
                if end < 0:
                    return None
                return self.data[start:end].decode("ascii", "replace")
        return None

    def symbol_string(self, name: str) -> str | None:
        """The string constant a symbol names (None if there is no such symbol)."""
        address = self.symbols.get(name)
        return None if address is None else self.string_at(address)


def read(path: str | os.PathLike[str]) -> ElfFile:
    """Parse ``path``; raises UserInputError if it is not a little-endian ELF32 file."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise UserInputError(f"{path} is not a little-endian 32-bit ELF file",
                             hint="pass the app.elf that `tinyq build` made")
    try:
        return _parse(path, data)
    except (struct.error, IndexError, ValueError) as exc:
        raise UserInputError(f"{path} is a damaged ELF file ({exc})",
                             hint="rebuild it with `tinyq build`") from exc


def _parse(path: Path, data: bytes) -> ElfFile:
    machine, _version, entry, phoff, shoff = struct.unpack_from("<HIIII", data, 0x12)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x2A)
    segments = []
    for i in range(phnum):
        p_type, _off, vaddr, paddr, filesz, memsz = struct.unpack_from(
            "<IIIIII", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            segments.append(ElfSegment(vaddr, paddr, filesz, memsz))
    raw = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = raw[shstrndx][4] if raw else 0

    def cstr(offset: int) -> str:
        end = data.index(b"\0", offset)
        return data[offset:end].decode("ascii", "replace")

    sections = tuple(ElfSection(cstr(strtab_off + s[0]), s[1], s[2], s[3], s[5], s[4])
                     for s in raw)
    symbols: dict[str, int] = {}
    for s in raw:
        if s[1] != SHT_SYMTAB:
            continue
        sym_off, sym_size, link, entsize = s[4], s[5], s[6], s[9] or 16
        names_off = raw[link][4]
        for k in range(sym_size // entsize):
            name_idx, value, _size, _info, _other, _shndx = struct.unpack_from(
                "<IIIBBH", data, sym_off + k * entsize)
            if name_idx:
                symbols[cstr(names_off + name_idx)] = value
    return ElfFile(path, machine, entry, sections, tuple(segments), symbols, data)
