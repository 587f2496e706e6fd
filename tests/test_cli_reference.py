"""One flag vocabulary: docs/cli.md matches the parsers, every flag has one documented
meaning, old spellings still work with one warning line, command modules stand alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from tinyq.cli import SUBCOMMANDS, build_parser, main
from tinyq.cli.options import deprecated_used
from tinyq.cli.reference import BEGIN, END, commands, deprecated, generated_part, markdown
from tinyq.cli.reference import main as reference_main

REPO = Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
#: The old spellings kept for one release, and what each stands for.
OLD_SPELLINGS = {("evaluate", "--runtime"): "--interpreter",
                 ("inspect", "--cmsis-nn"): "--kernels cmsis_nn",
                 ("generate", "--out"): "--output", ("deploy", "--out"): "--output",
                 ("report", "--md"): "--output"}


def test_docs_cli_md_lists_every_commands_flags_as_the_parsers_have_them():
    text = CLI_DOC.read_text(encoding="utf-8")
    assert generated_part(text) == markdown(), (
        "docs/cli.md is out of date: run `python -m tinyq.cli.reference --update docs/cli.md`")
    assert reference_main(["--check", str(CLI_DOC)]) == 0


def test_check_fails_when_a_flag_drifts_from_the_document(tmp_path, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(CLI_DOC.read_text().replace("| `evaluate` | `--interpreter` |",
                                                 "| `evaluate` | `--host` |"))
    assert reference_main(["--check", str(stale)]) == 1
    assert "--update" in capsys.readouterr().err
    assert reference_main(["--update", str(stale)]) == 0
    assert reference_main(["--check", str(stale)]) == 0
    assert stale.read_text() == CLI_DOC.read_text()


def test_every_flag_of_every_command_has_a_line_in_the_vocabulary():
    text = CLI_DOC.read_text(encoding="utf-8")
    vocabulary = text.split("## Vocabulary", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--?[a-z][a-z0-9-]*)`", vocabulary))
    missing = {}
    for name, parser in commands():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help") and action.help != "==SUPPRESS==" \
                        and flag not in documented:
                    missing.setdefault(flag, []).append(name)
    assert not missing, f"flags without a vocabulary line in docs/cli.md: {missing}"


def test_the_generated_table_covers_every_command():
    table = markdown()
    for name in SUBCOMMANDS:
        if name != "boards":            # `boards list` has no flags; its actions are listed
            assert f"| `{name}` |" in table, name
    assert BEGIN in CLI_DOC.read_text() and END in CLI_DOC.read_text()


def test_old_spellings_are_the_documented_ones_and_parse_as_the_new():
    assert {(c, old): new for c, old, new in deprecated()} == OLD_SPELLINGS
    parser = build_parser()
    for argv, dest, value in (
            (["evaluate", "m.tflite", "--data", "d.npz", "--runtime", "tflm"], "interpreter",
             "tflm"),
            (["inspect", "m.tflite", "--cmsis-nn"], "kernels", "cmsis_nn"),
            (["generate", "m.tflite", "--board", "b", "--out", "p"], "output", "p"),
            (["deploy", "m.tflite", "--board", "b", "--out", "p"], "output", "p"),
            (["report", "r.json", "--md", "r.md"], "output", "r.md")):
        args = parser.parse_args(argv)
        assert getattr(args, dest) == value, argv
        assert len(deprecated_used(args)) == 1
    assert deprecated_used(parser.parse_args(["report", "r.json", "-o", "r.md"])) == []


def test_an_old_spelling_prints_one_warning_line_and_still_works(tmp_path, capsys):
    model = tmp_path / "m.tflite"           # missing: the command fails after the warning
    assert main(["evaluate", str(model), "--data", "d.npz", "--runtime", "tflm"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("warning: --runtime is deprecated and goes away in the next release: "
                      "use --interpreter")
    assert len([line for line in err if line.startswith("warning:")]) == 1


def test_defaults_agree_across_commands():
    parser = build_parser()
    for argv in (["inspect", "m"], ["generate", "m", "--board", "b", "-o", "p"],
                 ["build", "m"], ["run", "m", "--board", "b"], ["bench", "m", "--board", "b"],
                 ["validate", "m", "--board", "b", "--data", "d"],
                 ["deploy", "m", "--board", "b"]):
        args = parser.parse_args(argv)
        assert args.runtime == "native" and args.kernels == "reference", argv
    assert parser.parse_args(["bench", "m", "--board", "b"]).per_layer is False
    assert parser.parse_args(["deploy", "m", "--board", "b"]).per_layer is True
    assert parser.parse_args(["deploy", "m", "--board", "b", "--no-per-layer"]).per_layer is False
    assert parser.parse_args(["bench", "m", "--board", "b", "--per-layer"]).per_layer is True


def test_no_command_module_imports_another():
    from tinyq.cli import command_module

    modules = {command_module(name).rpartition(".")[2] for name in SUBCOMMANDS}
    for name in modules:
        tree = ast.parse((REPO / "tinyq" / "cli" / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                assert not (parts[:2] == ["tinyq", "cli"] and len(parts) > 2
                            and parts[2] in modules), f"cli/{name}.py imports {node.module}"


def test_run_samples_takes_the_first_n_inputs_of_input(tmp_path, monkeypatch, shared_models):
    """--samples means the first N samples of the data in run as in validate and deploy."""
    import tinyq.measure.runner

    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not model.is_file():
        pytest.skip("tflm-examples/hello_world_int8.tflite missing from ../shared/models")

    seen = {}

    class Stop(Exception):
        pass

    def fake_run(model, board, inputs=None, options=None, **kwargs):
        seen["inputs"], seen["samples"] = inputs, options.samples
        raise Stop

    monkeypatch.setattr(tinyq.measure.runner, "run", fake_run)
    data = tmp_path / "x.npy"
    np.save(data, np.arange(5, dtype=np.float32).reshape(5, 1))
    with pytest.raises(Stop):
        main(["run", str(model), "--board", "mps2-an386", "--input", str(data),
              "--samples", "3"])
    assert seen["inputs"].tolist() == [[0], [1], [2]]
    with pytest.raises(Stop):
        main(["run", str(model), "--board", "mps2-an386", "--samples", "4"])
    assert seen["inputs"] is None and seen["samples"] == 4          # 4 random inputs
