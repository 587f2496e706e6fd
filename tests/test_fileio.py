"""tinyq.fileio: atomic outputs, and one-line errors where they cannot be written."""

from __future__ import annotations

import pytest

from tinyq.errors import OutputExistsError, UserInputError
from tinyq.fileio import atomic_path, write_text


def test_write_is_atomic_and_refuses_existing(tmp_path):
    out = write_text(tmp_path / "a" / "r.json", "{}")
    assert out.read_text() == "{}" and [p.name for p in out.parent.iterdir()] == ["r.json"]
    with pytest.raises(OutputExistsError, match="already exists"):
        write_text(out, "new", force=False)


def test_failed_body_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "proj") as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_location_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserInputError) as info:
        write_text(blocker / "out.json", "{}")
    assert str(info.value).startswith(f"cannot write {blocker / 'out.json'}: ")
    assert str(info.value).endswith("— choose a folder you can write to")
