"""tinyq.fileio: atomic outputs, and one-line errors where they cannot be written."""

from __future__ import annotations

import errno
import os
import tempfile

import pytest

from tinyq.errors import OutputExistsError, UserInputError
from tinyq.fileio import (
    CACHE_NAME_CHARS,
    MARKER_NAME,
    atomic_path,
    cache_name,
    check_output,
    output_folder,
    write_bytes,
    write_text,
)


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


# -- what --force may replace --------------------------------------------------------------------

def _tinyq_folder(path, files=None):
    """A folder written the way tinyq writes one (marker included)."""
    with atomic_path(path, kind="folder", scratch=("build",)) as tmp:
        tmp.mkdir()
        for rel, text in (files or {"main.c": "int main;", "board/link.ld": "MEMORY"}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
    return path


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_force_replaces_a_folder_tinyq_generated(tmp_path):
    proj = _tinyq_folder(tmp_path / "proj")
    assert (proj / MARKER_NAME).is_file()
    (proj / "build").mkdir()
    (proj / "build" / "app.elf").write_bytes(b"ELF")      # what its Makefile builds
    with pytest.raises(OutputExistsError, match="pass --force"):
        check_output(proj, kind="folder")
    check_output(proj, force=True, kind="folder")
    _tinyq_folder(proj, {"new.c": "x"})
    assert sorted(p.name for p in proj.iterdir()) == [MARKER_NAME, "new.c"]
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]      # no temporary folder left


@pytest.mark.parametrize("change, reason", [
    (lambda p: (p / "notes.txt").write_text("mine"), "it holds notes.txt, which tinyq did not"),
    (lambda p: (p / "main.c").write_text("edited"), "main.c changed after tinyq wrote it"),
    (lambda p: (p / MARKER_NAME).write_text("{}"), "has no .tinyq-folder.json"),
    (lambda p: (p / MARKER_NAME).unlink(), "has no .tinyq-folder.json"),
    (lambda p: (p / "board" / "sub").mkdir() or (p / "board" / "sub" / "a").write_text(""),
     "it holds board/sub/a"),
    (lambda p: (p / "link").symlink_to("/etc"), "it holds link, which"),
])
def test_force_never_replaces_a_folder_holding_anything_else(tmp_path, change, reason):
    proj = _tinyq_folder(tmp_path / "proj")
    change(proj)
    before = _tree(proj)
    with pytest.raises(UserInputError, match=reason) as info:
        _tinyq_folder(proj, {"new.c": "x"})
    assert not isinstance(info.value, OutputExistsError)      # --force would not help
    assert "tinyq never deletes or replaces what it did not create" in str(info.value)
    assert _tree(proj) == before
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]


def test_a_desktop_file_does_not_make_a_folder_foreign(tmp_path):
    proj = _tinyq_folder(tmp_path / "proj")
    (proj / "board" / ".DS_Store").write_bytes(b"Bud1")
    _tinyq_folder(proj, {"new.c": "x"})
    assert sorted(p.name for p in proj.iterdir()) == [MARKER_NAME, "new.c"]


def test_an_empty_folder_holds_nothing_to_lose(tmp_path):
    (tmp_path / "empty").mkdir()
    _tinyq_folder(tmp_path / "empty")
    assert (tmp_path / "empty" / "main.c").is_file()


def test_force_replaces_a_file_with_a_file_only(tmp_path):
    (tmp_path / "r.json").write_text("old")
    write_text(tmp_path / "r.json", "new")
    assert (tmp_path / "r.json").read_text() == "new"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("keep")
    with pytest.raises(UserInputError, match="it is a folder and the output is a file"):
        write_text(tmp_path / "d", "{}")
    with pytest.raises(UserInputError, match="it is a file and the output is a folder"):
        _tinyq_folder(tmp_path / "r.json")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserInputError, match="not a regular file"):
        write_text(tmp_path / "fifo", "{}")
    assert (tmp_path / "d" / "keep").read_text() == "keep"
    assert (tmp_path / "r.json").read_text() == "new"


def test_an_output_never_lands_on_an_input(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"MODEL")
    (tmp_path / "link.tflite").symlink_to(model)
    os.link(model, tmp_path / "hard.tflite")
    with pytest.raises(UserInputError, match=r"model.tflite is an input of this command; "):
        write_bytes(model, b"NEW", force=True, inputs=[str(model)])
    for out in (tmp_path / "link.tflite", tmp_path / "hard.tflite", tmp_path / "x" / ".." /
                "model.tflite"):
        with pytest.raises(UserInputError, match=r"is an input of this command \(the same "):
            write_bytes(out, b"NEW", force=True, inputs=[str(model)])
    with pytest.raises(UserInputError, match="holds the input"):
        check_output(tmp_path, force=True, inputs=[model], kind="folder")
    with pytest.raises(UserInputError, match="holds the input"):
        check_output(tmp_path.parent, force=True, inputs=[model], kind="folder")
    assert model.read_bytes() == b"MODEL"


def test_the_current_folder_and_its_parents_are_never_replaced(tmp_path, monkeypatch):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        with pytest.raises(UserInputError, match="current folder; tinyq never replaces it"):
            check_output(out, force=True, kind="folder")
    assert here.is_dir()


# -- OS errors: one line, nothing partial, nothing left -------------------------------------------

@pytest.mark.parametrize("code, what, fix", [
    (errno.ENOSPC, "no space left on the device", "free some space or choose another folder"),
    (errno.EROFS, "read-only file system", "choose a folder on a writable disk"),
    (errno.ENAMETOOLONG, "file name too long", "choose a shorter file or folder name"),
    (errno.EACCES, "permission denied", "choose a folder you can write to"),
])
def test_write_errors_are_one_line_and_leave_the_old_file(tmp_path, monkeypatch, code, what,
                                                          fix):
    old = tmp_path / "out" / "r.json"
    old.parent.mkdir()
    old.write_text("old")

    def fail(*_args, **_kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserInputError) as info:
        write_text(old, "new")
    assert str(info.value) == f"cannot write {old}: {what} — {fix}"
    assert "\n" not in str(info.value)
    assert old.read_text() == "old" and [p.name for p in old.parent.iterdir()] == ["r.json"]


def test_disk_full_halfway_through_a_folder_leaves_nothing(tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.write_text
    calls = []

    def fill_disk(self, *args, **kw):
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", fill_disk)
    with pytest.raises(UserInputError, match="cannot write .*proj: no space left on the device"):
        _tinyq_folder(tmp_path / "deep" / "er" / "proj")
    assert list(tmp_path.iterdir()) == []       # not even the parents it made


def test_disk_full_in_the_middle_of_a_write_is_one_line(tmp_path, monkeypatch):
    """write() on a full disk raises an OSError that names no file."""
    from pathlib import Path

    def full(self, data):
        with open(self, "wb") as fh:
            fh.write(data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(UserInputError, match="m.tflite: no space left on the device"):
        write_bytes(tmp_path / "m.tflite", b"TFL3 model")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_parent_is_one_line(tmp_path, monkeypatch):
    def read_only(*_args, **_kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(UserInputError, match="read-only file system — choose a folder on a"):
        write_bytes(tmp_path / "new" / "m.tflite", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_name_too_long_is_refused_before_any_work(tmp_path):
    long = tmp_path / ("n" * 300 + ".json")
    with pytest.raises(UserInputError, match="file name too long") as info:
        check_output(long)
    assert len(str(info.value)) < 300 and "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="file name too long"):
        write_text(tmp_path / ("d" * 300) / "r.json", "{}")
    # the longest name the file system takes still works: temporary names stay short
    ok = write_text(tmp_path / ("n" * 250 + ".json"), "{}")
    assert ok.read_text() == "{}" and list(tmp_path.iterdir()) == [ok]


def test_a_real_name_too_long_met_while_writing_is_one_line(tmp_path, monkeypatch):
    """Past the up-front check (here bypassed), the OS error itself becomes the line."""
    import tinyq.fileio as fileio

    monkeypatch.setattr(fileio, "_check_name_length", lambda _out: None)
    with pytest.raises(UserInputError, match="file name too long — choose a shorter"):
        write_text(tmp_path / ("n" * 300), "{}")
    assert list(tmp_path.iterdir()) == []


def test_cache_names_stay_short():
    board = "b" * 240
    name = cache_name(board, "0123456789abcdef0123")
    assert len(name) <= 2 * CACHE_NAME_CHARS
    assert name != cache_name("b" * 239 + "c", "0123456789abcdef0123")   # still distinct
    assert cache_name("mps2-an386", "k") == "mps2-an386-k"


def test_output_folder_removes_only_what_the_run_created(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep").write_text("keep")
    with pytest.raises(RuntimeError), output_folder(tmp_path / "a" / "b" / "out") as created:
        assert created
        (tmp_path / "a" / "b" / "out").mkdir(parents=True)
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), output_folder(tmp_path / "old") as created:
        assert not created
        (tmp_path / "old" / "new").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (tmp_path / "old" / "keep").read_text() == "keep"


def test_cli_turns_an_escaped_disk_full_into_one_line(monkeypatch, capsys, tmp_path):
    """A write outside tinyq.fileio (a log, a cache file) meeting ENOSPC: still one line."""
    import tinyq.analyze
    from tinyq.cli import main

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache.json"))

    monkeypatch.setattr(tinyq.analyze, "inspect", full)
    assert main(["inspect", "whatever.tflite"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'cache.json'}: no space left on the device — free some space" in err
