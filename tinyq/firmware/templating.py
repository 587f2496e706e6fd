"""The one jinja2 environment every code generator uses (STYLE.md rule 11).

Generated C is rendered from ``firmware_templates/``, never patched. The
environment is strict (an undefined variable is an error, not an empty
string), keeps trailing newlines, and offers a few filters that generated C
needs everywhere: hex literals, C string literals, byte arrays wrapped at a
readable width, C identifiers.

    env = environment()
    text = env.get_template("board/startup.c.j2").render(board=board, header=header)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import jinja2

from tinyq.resources import templates_dir

#: values per line when a byte array is written as C (16 x "0x00, " = 96 columns)
BYTES_PER_LINE = 16


def c_hex(value: int, digits: int = 8) -> str:
    """``0x2000_0000`` style literal: ``c_hex(0x20000000) == '0x20000000'``."""
    return f"0x{value:0{digits}X}"


def c_string(text: str) -> str:
    """A C string literal with quotes, backslashes and non-printables escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 32 <= code < 127:
            out.append(ch)
        else:
            for byte in ch.encode("utf-8"):
                out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_identifier(text: str) -> str:
    """A valid C identifier from any name (``"conv2d/Relu;1" -> "conv2d_Relu_1"``)."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", text)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def c_bytes(data: bytes | Iterable[int], indent: int = 4, per_line: int = BYTES_PER_LINE,
            signed: bool = False) -> str:
    """Comma-separated byte values wrapped at ``per_line`` per line (no braces)."""
    values = list(data)
    pad = " " * indent
    lines = []
    for start in range(0, len(values), per_line):
        chunk = values[start:start + per_line]
        if signed:
            cells = ", ".join(f"{(v - 256 if v > 127 else v):4d}" for v in chunk)
        else:
            cells = ", ".join(f"0x{v:02x}" for v in chunk)
        lines.append(pad + cells + ",")
    return "\n".join(lines)


def c_comment(text: str) -> str:
    """Text safe inside a ``/* ... */`` comment."""
    return text.replace("*/", "* /")


@functools.lru_cache(maxsize=4)
def environment(root: str | Path | None = None) -> jinja2.Environment:
    """The jinja2 environment for firmware templates (``root`` defaults to templates_dir())."""
    loader_root = Path(root) if root is not None else templates_dir()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(loader_root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hex"] = c_hex
    env.filters["c_string"] = c_string
    env.filters["c_identifier"] = c_identifier
    env.filters["c_bytes"] = c_bytes
    env.filters["c_comment"] = c_comment
    return env


def render(template: str, **context: object) -> str:
    """Render one template (path relative to the templates root) with ``context``."""
    return environment().get_template(template).render(**context)


def render_string(source: str, **context: object) -> str:
    """Render a template given as text (tests, one-off snippets) in the same environment."""
    return environment().from_string(source).render(**context)
