"""Where tinyq's data lives: board profiles and firmware templates.

From a checkout they are the top-level ``boards/`` and ``firmware_templates/``;
from a wheel they are installed as ``tinyq/_data/...`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"tinyq's {name}/ folder is missing from the installation; reinstall tinyq"
    )


def boards_dir() -> Path:
    """The folder of bundled board profiles (one TOML file per board)."""
    return _find("boards")


def templates_dir() -> Path:
    """The folder of jinja2 firmware templates."""
    return _find("firmware_templates")
