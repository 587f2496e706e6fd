"""tinyq never deletes or replaces what it did not create, whatever path and --force say.

A folder holding a model, data, a record, unrelated files and sub-folders is the working
folder; every output option of every command that writes is pointed, with --force, at
the working folder itself, at the folder holding the inputs, at an input, and at an
unrelated folder. Each must be refused in one line before any work (so the commands that
need TensorFlow, a compiler or QEMU are checked here too), and the folder must come out
byte for byte as it went in. A folder tinyq generated, in contrast, is replaced.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyq.cli import main

MODEL = "in/model.tflite"
DATA = "in/data.npz"
RECORD = "in/record.json"
BOARD = ["--board", "mps2-an386"]

#: (command, output option) -> argv with OUT where the output goes. Every output path of
#: every command that writes files (flash and boards write none of the user's).
WRITERS = {
    ("quantize", "-o"): ["quantize", MODEL, "--calib", DATA, "-o", "OUT"],
    ("qat", "-o"): ["qat", MODEL, "--train", DATA, "--calib", DATA, "-o", "OUT"],
    ("qat", "--json"): ["qat", MODEL, "--train", DATA, "--calib", DATA, "-o", "new.tflite",
                        "--json", "OUT"],
    ("evaluate", "--json"): ["evaluate", MODEL, "--data", DATA, "--json", "OUT"],
    ("compare", "--json"): ["compare", MODEL, "--calib", DATA, "--data", DATA, "--json", "OUT"],
    ("compare", "--plot"): ["compare", MODEL, "--calib", DATA, "--data", DATA, "--plot", "OUT"],
    ("compare", "--report"): ["compare", MODEL, "--calib", DATA, "--data", DATA, "--report",
                              "OUT"],
    ("inspect", "--json"): ["inspect", MODEL, "--no-arena-search", "--json", "OUT"],
    ("generate", "-o"): ["generate", MODEL, *BOARD, "-o", "OUT"],
    ("export", "-o"): ["export", MODEL, "--core", "cortex-m4", "--prefix", "net", "-o", "OUT"],
    ("build", "--json"): ["build", MODEL, *BOARD, "--json", "OUT"],
    ("run", "--json"): ["run", MODEL, *BOARD, "--json", "OUT"],
    ("bench", "--json"): ["bench", MODEL, *BOARD, "--json", "OUT"],
    ("bench", "--report"): ["bench", MODEL, *BOARD, "--report", "OUT"],
    ("validate", "--json"): ["validate", MODEL, *BOARD, "--data", DATA, "--json", "OUT"],
    ("validate", "--report"): ["validate", MODEL, *BOARD, "--data", DATA, "--report", "OUT"],
    ("deploy", "-o"): ["deploy", MODEL, *BOARD, "-o", "OUT"],
    ("deploy", "--report"): ["deploy", MODEL, *BOARD, "-o", "new", "--report", "OUT"],
    ("deploy", "--json"): ["deploy", MODEL, *BOARD, "-o", "new", "--json", "OUT"],
    ("report", "-o"): ["report", RECORD, "-o", "OUT"],
    ("setup", "--dir"): ["setup", "tflm", "--dir", "OUT"],
}

#: Where OUT points: the working folder, the folder holding the inputs, an input itself,
#: an unrelated folder, and the working folder's parent.
TARGETS = {"cwd": ".", "parent of input": "in", "input": MODEL, "foreign folder": "sub",
           "cwd's parent": ".."}
#: The same input rule for the other kinds of input.
INPUT_TARGETS = {("evaluate", "--json"): DATA, ("validate", "--json"): DATA,
                 ("compare", "--plot"): DATA, ("quantize", "-o"): DATA,
                 ("report", "-o"): RECORD, ("qat", "--json"): DATA}


def _snapshot(root):
    """Every entry under ``root`` (hidden ones too) with its bytes: any change shows."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def work(tmp_path, shared_models, monkeypatch):
    """tmp/work (the current folder): in/{model.tflite, data.npz, record.json, readme.txt,
    nested/deep.txt}, notes.txt, sub/keep.txt; tmp/sibling.txt beside it."""
    hello = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not hello.is_file():
        pytest.skip("hello_world_int8.tflite missing from ../shared/models/tflm-examples")
    root = tmp_path / "work"
    (root / "in" / "nested").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / MODEL).write_bytes(hello.read_bytes())
    np.savez(root / DATA, x=np.linspace(0, 6, 8, dtype=np.float32).reshape(8, 1),
             y=np.zeros(8, dtype=np.int64))
    (root / RECORD).write_text('{"latency": {}}\n')
    (root / "in" / "readme.txt").write_text("the user's notes about the model\n")
    (root / "in" / "nested" / "deep.txt").write_text("deep\n")
    (root / "notes.txt").write_text("unrelated\n")
    (root / "sub" / "keep.txt").write_text("keep me\n")
    (tmp_path / "sibling.txt").write_text("beside the working folder\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


CASES = [(writer, target) for writer in WRITERS for target in TARGETS
         if not (writer[0] == "report" and target == "input")]     # report reads no model
CASES += [(writer, INPUT_TARGETS[writer]) for writer in INPUT_TARGETS]


@pytest.mark.parametrize("writer, target", CASES,
                         ids=[f"{c}{o}={TARGETS.get(t, t)}".replace(" ", "-")
                              if t not in TARGETS else f"{c}{o}={t}".replace(" ", "-")
                              for (c, o), t in CASES])
def test_force_never_loses_a_users_file(work, writer, target, capsys):
    out = TARGETS.get(target, target)
    argv = [out if a == "OUT" else a for a in WRITERS[writer]] + ["--force"]
    before = _snapshot(work)
    code = main(argv)
    err = capsys.readouterr().err
    assert _snapshot(work) == before, f"tinyq {' '.join(argv)} changed the user's files"
    assert code not in (0, 130), f"tinyq {' '.join(argv)} exited {code}"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and out.strip("./") in err, err


def test_a_folder_tinyq_generated_is_replaced_with_force(work, capsys):
    from tinyq.fileio import MARKER_NAME

    assert main(["generate", MODEL, *BOARD, "-o", "proj"]) == 0
    marker = (work / "work" / "proj" / MARKER_NAME).read_bytes()
    (work / "work" / "proj" / "build").mkdir()          # what `make` there writes
    (work / "work" / "proj" / "build" / "app.elf").write_bytes(b"\x7fELF")
    assert main(["generate", MODEL, *BOARD, "-o", "proj"]) == 1
    assert "already exists — pass --force" in capsys.readouterr().err
    assert main(["generate", MODEL, *BOARD, "--runtime", "tflm", "--no-fit-check",
                 "-o", "proj", "--force"]) == 0
    project = work / "work" / "proj"
    assert (project / MARKER_NAME).read_bytes() != marker and not (project / "build").exists()
    assert '"runtime": "tflm"' in (project / "tinyq_project.json").read_text()
    # a file the user added makes it theirs: refused, and kept
    (project / "my_main.c").write_text("int main(void) { return 0; }\n")
    before = _snapshot(work)
    assert main(["generate", MODEL, *BOARD, "-o", "proj", "--force"]) == 1
    assert "it holds my_main.c, which tinyq did not write" in capsys.readouterr().err
    assert _snapshot(work) == before


def test_a_file_is_replaced_with_a_file(work, capsys):
    (work / "work" / "report.json").write_text("old")
    assert main(["inspect", MODEL, "--no-arena-search", "--json", "report.json"]) == 1
    assert "already exists — pass --force" in capsys.readouterr().err
    assert main(["inspect", MODEL, "--no-arena-search", "--json", "report.json",
                 "--force"]) == 0
    assert '"kind": "inspect"' in (work / "work" / "report.json").read_text()


def test_a_deploy_folder_tinyq_made_is_written_into_again(work, capsys):
    """deploy stops at the device check here (no QEMU run), after its output checks."""
    deploy_dir = work / "work" / "dep"
    deploy_dir.mkdir()
    (deploy_dir / "report.md").write_text("an earlier report\n")
    argv = ["deploy", MODEL, *BOARD, "--port", str(work / "no-such-port"), "-o", "dep"]
    assert main(argv + ["--force"]) == 1
    assert "refusing to write into dep: tinyq did not generate" in capsys.readouterr().err
    from tinyq.fileio import write_marker

    write_marker(deploy_dir)        # as a finished deploy leaves it
    assert main(argv) == 1
    assert "dep/report.md already exists" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 1
    assert "no-such-port" in capsys.readouterr().err       # past the output checks
    assert (deploy_dir / "report.md").read_text() == "an earlier report\n"


@pytest.mark.qemu
def test_a_240_character_board_name_builds(work, capsys):
    """The board's name goes into the build cache's folder name: it stays short."""
    from conftest import REPO, require_tools

    require_tools("arm-none-eabi-gcc")
    name = "b" * 240
    text = (REPO / "boards" / "mps2-an386.toml").read_text()
    board = work / "work" / "long.toml"
    board.write_text(text.replace('name = "mps2-an386"', f'name = "{name}"'))
    assert name in board.read_text()
    assert main(["build", MODEL, "--board", str(board), "--json", "sizes.json"]) == 0, \
        capsys.readouterr().err
    assert f'"board": "{name}"' in (work / "work" / "sizes.json").read_text()


def test_a_read_only_cache_does_not_fail_inspect(work, monkeypatch, capsys):
    """The arena cache is a convenience: a disk that refuses it costs a warning, not a run."""
    import errno
    import os

    def read_only(*_args, **_kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    assert main(["inspect", MODEL]) == 0, capsys.readouterr().err
    assert "TFLM arena" in capsys.readouterr().out
    assert not list((work / "cache").rglob("*.json"))


def test_a_name_too_long_is_one_line_before_any_work(work, capsys):
    before = _snapshot(work)
    for argv in (["generate", MODEL, *BOARD, "-o", "p" * 300],
                 ["inspect", MODEL, "--no-arena-search", "--json", f"sub/{'j' * 300}.json"],
                 ["deploy", MODEL, *BOARD, "-o", "d" * 300]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "file name too long (at most 255 bytes per name" in err, err
        assert err.endswith("— choose a shorter file or folder name\n"), err
        assert err.count("\n") == 1 and len(err) < 300, err
    assert _snapshot(work) == before


def test_disk_full_while_generating_leaves_nothing(work, monkeypatch, capsys):
    import errno
    from pathlib import Path

    real, written = Path.write_text, []

    def fill_disk(self, *args, **kw):
        written.append(self)
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kw)

    before = _snapshot(work)
    monkeypatch.setattr(Path, "write_text", fill_disk)
    assert main(["generate", MODEL, *BOARD, "-o", "new/proj"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("error: cannot write new/proj: no space left on the device — free some "
                       "space or choose another folder")
    assert not [line for line in err[:-1] if not line.startswith("[generate]")]
    assert _snapshot(work) == before        # no project, no temporary folder, no new/


def test_deploy_marks_its_folder_and_a_failed_run_keeps_it_retryable(tmp_path, monkeypatch):
    import tinyq.pipeline as pipeline
    from tinyq.fileio import MARKER_NAME, foreign_content, write_marker

    def fake(fail):
        def run(_model, _board, options, _progress):
            out = tmp_path / options.out_dir
            (out / "project").mkdir(parents=True, exist_ok=True)
            (out / "project" / "main.c").write_text("int main;")
            if fail:
                raise RuntimeError("the device did not answer")
            return "result"
        return run

    options = pipeline.DeployOptions(out_dir=str(tmp_path / "new" / "dep"))
    monkeypatch.setattr(pipeline, "_deploy", fake(fail=True))
    with pytest.raises(RuntimeError):
        pipeline.deploy("m.tflite", "mps2-an386", options)
    assert not (tmp_path / "new").exists()          # it made new/ and new/dep: both gone
    monkeypatch.setattr(pipeline, "_deploy", fake(fail=False))
    assert pipeline.deploy("m.tflite", "mps2-an386", options) == "result"
    dep = tmp_path / "new" / "dep"
    assert (dep / MARKER_NAME).is_file() and foreign_content(dep) is None
    # a failed run in a folder that was tinyq's leaves it tinyq's (so --force can retry) ...
    (dep / "report.md").write_text("an earlier report")
    write_marker(dep)
    monkeypatch.setattr(pipeline, "_deploy", fake(fail=True))
    (dep / "project" / "main.c").unlink()
    with pytest.raises(RuntimeError):
        pipeline.deploy("m.tflite", "mps2-an386", options)
    assert foreign_content(dep) is None and (dep / "report.md").is_file()
    # ... and a user's file in it is never claimed as tinyq's
    (dep / "mine.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        pipeline.deploy("m.tflite", "mps2-an386", options)
    assert foreign_content(dep) == "it holds mine.txt, which tinyq did not write"


def test_validate_may_rewrite_only_the_record_it_resumes():
    from argparse import Namespace

    from tinyq.cli.paths import inputs_of

    args = Namespace(model=MODEL, data=DATA, resume="r.json", json="r.json", board="b.toml")
    assert inputs_of(args) == (MODEL, "b.toml", DATA)
    args.json = "other.json"
    assert inputs_of(args) == (MODEL, "b.toml", DATA, "r.json")
    assert inputs_of(Namespace(records=["a.json", "b.json"], md="x.md")) == ("a.json", "b.json")
