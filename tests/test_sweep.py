"""tinyq.measure.sweeping: the sweep file, the grid, the content-addressed cache, the Pareto front,
crashed workers, and (marked qemu) a real two-cell sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools
from test_validate import fc_classifier

from tinyq.errors import FitError, UserInputError
from tinyq.measure.sweeping import (
    SweepOptions,
    SweepSpec,
    load_sweep,
    pareto_front,
    pareto_labels,
    plan_cells,
    sweep,
)

REPO = Path(__file__).resolve().parents[1]


def test_pareto_front():
    # (cost, accuracy): cheaper is better, more accurate is better
    points = [(10, 0.90), (20, 0.95), (15, 0.80), (30, 0.95), (5, 0.70), (20, 0.95)]
    assert pareto_front(points) == [True, True, False, False, True, True]
    assert pareto_front([]) == []
    assert pareto_front([(1, 0.5)]) == [True]
    assert pareto_front([(30, 0.5), (10, 0.9), (10, 0.8)]) == [False, True, False]
    rows = [{"status": "ok", "model": "m.tflite", "mode": "int8", "board": b, "runtime": "native",
             "kernels": "-", "accuracy": a, "latency": c}
            for b, c, a in (("x", 10, 0.9), ("y", 12, 0.8), ("z", 20, 0.99))]
    rows.append({"status": "does not fit", "model": "m.tflite", "mode": "int8", "board": "w"})
    assert pareto_labels(rows, "latency") == ["m.tflite int8 x native", "m.tflite int8 z native"]


def tiny_board(folder: Path, flash: int = 0x4000) -> Path:
    """mps2-an386 with only ``flash`` bytes of flash: nothing but a tiny model fits it."""
    text = (REPO / "boards" / "mps2-an386.toml").read_text()
    text = text.replace('name = "mps2-an386"', 'name = "tiny-an386"')
    text = text.replace("size = 0x00400000               # 4 MB", f"size = {flash:#x}", 1)
    path = folder / "tiny-an386.toml"
    path.write_text(text)
    return path


@pytest.fixture
def grid(tmp_path):
    """Two .tflite models, 8 labelled samples and a sweep file over 2 boards."""
    for seed in (0, 1):
        (tmp_path / f"m{seed}.tflite").write_bytes(fc_classifier(seed=seed))
    x = np.random.default_rng(0).uniform(-2, 2, (8, 16)).astype(np.float32)
    np.savez(tmp_path / "test.npz", x=x, y=np.arange(8) % 4)
    board = tiny_board(tmp_path)
    (tmp_path / "sweep.toml").write_text(f"""
[grid]
models = ["m0.tflite", "m1.tflite"]
boards = ["mps2-an386", "{board.name}"]
runtimes = ["native"]

[data]
test = "test.npz"

[bench]
runs = 2
""")
    return tmp_path


class FakeDeployed:
    """What run_cell needs of a DeployResult: figures that depend on the model bytes."""

    def __init__(self, tflite, board):
        size = Path(tflite).stat().st_size
        self.record = {"device_accuracy": 0.5 + (size % 7) / 20, "host_accuracy": 0.5,
                       "latency": {"median": size * 10, "unit": "instructions"},
                       "ram": {"total": size + 100}, "flash": {"total": size + 5000},
                       "tflite_bytes": size, "bit_exact": True, "samples": 8, "ok": True}

    def to_json(self):
        return self.record


def fake_deploy(tflite, board, options=None, progress=None):
    with open(os.environ["FAKE_DEPLOY_LOG"], "a") as log:      # workers are processes
        log.write(json.dumps([Path(tflite).name, Path(str(board)).name]) + "\n")
    # deploy removes the folders a failed run created: the folder shared by all cells must
    # exist before any cell starts, or one cell's failure deletes its neighbours' files
    assert Path(options.out_dir).parent.is_dir()
    # and the cell's own folder is gone (what a killed attempt left would be refused)
    assert not Path(options.out_dir).exists()
    if str(board).endswith("tiny-an386.toml") and Path(tflite).name == "m1.tflite":
        raise FitError("m1.tflite needs 20,000 B of flash, tiny-an386 has 16,384 B",
                       hint="choose a bigger board")
    if Path(tflite).name == "crash.tflite":
        os._exit(3)                     # a worker that dies without a word
    return FakeDeployed(tflite, board)


@pytest.fixture
def fake_cells(monkeypatch, tmp_path):
    """Cells deploy through fake_deploy (workers fork, so they inherit it); returns a
    function listing the (model, board) cells deployed since the last call."""
    import tinyq.measure.sweeping

    log = tmp_path / "deployed.jsonl"
    log.write_text("")
    monkeypatch.setenv("FAKE_DEPLOY_LOG", str(log))
    monkeypatch.setattr("tinyq.pipeline.deploy", fake_deploy)
    monkeypatch.setattr(tinyq.measure.sweeping, "START_METHOD", "fork")

    def deployed():
        lines = log.read_text().splitlines()
        log.write_text("")
        return sorted(tuple(json.loads(line)) for line in lines)

    return deployed


def test_sweep_file_and_grid(grid):
    spec = load_sweep(grid / "sweep.toml")
    assert spec.models == (str(grid / "m0.tflite"), str(grid / "m1.tflite"))
    assert spec.test == str(grid / "test.npz") and spec.runs == 2
    cells = plan_cells(spec, grid / "out")
    assert [(Path(c.model).name, c.mode, Path(c.board).name) for c in cells] == [
        ("m0.tflite", "as-is", "mps2-an386"), ("m0.tflite", "as-is", "tiny-an386.toml"),
        ("m1.tflite", "as-is", "mps2-an386"), ("m1.tflite", "as-is", "tiny-an386.toml")]
    assert len({c.key for c in cells}) == 4


@pytest.mark.parametrize("text, message", [
    ("[grid]\nmodels = ['m0.tflite']\nboard = ['x']\n", "unknown key 'board' in \\[grid\\]"),
    ("[grids]\n", "unknown section \\[grids\\]"),
    ("[grid]\nmodels = ['m0.tflite']\nboards = ['mps2-an386']\nmodes = ['int4']\n",
     "unknown mode 'int4'"),
    ("[grid]\nmodels = ['m0.tflite']\nboards = ['mps2-an386']\nmodes = ['qat']\n",
     "the qat mode needs training data"),
    ("[grid]\nmodels = ['m0.tflite']\n", "at least one model and one board"),
    ("[grid\n", "cannot read sweep file"),
])
def test_bad_sweep_files_are_one_clear_error(tmp_path, text, message):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(UserInputError, match=message):
        load_sweep(f)


def test_sweep_records_cells_caches_them_and_redoes_only_a_changed_model(grid, fake_cells):
    out = grid / "out"
    lines = []
    first = sweep(grid / "sweep.toml", out, SweepOptions(jobs=1),
                  progress=lambda e: lines.append(e.message))
    statuses = [(Path(r["model"]).name, Path(r["board"]).name, r["status"]) for r in first.rows]
    assert statuses == [("m0.tflite", "mps2-an386", "ok"), ("m0.tflite", "tiny-an386.toml", "ok"),
                        ("m1.tflite", "mps2-an386", "ok"),
                        ("m1.tflite", "tiny-an386.toml", "does not fit")]
    assert "needs 20,000 B of flash" in first.rows[3]["reason"]
    assert len(fake_cells()) == 4 and first.ran == 4 and first.cached == 0
    assert sum(line.startswith("[") and "/4]" in line for line in lines) == 4   # one per cell
    record = json.loads((out / "sweep.json").read_text())
    assert record["kind"] == "sweep" and record["schema_version"] == 1
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra's jsonschema")
    from tinyq.records import schema

    jsonschema.Draft202012Validator(schema("sweep")).validate(record)
    assert [r["status"] for r in record["rows"]] == [s for *_x, s in statuses]
    assert record["pareto"]["latency"]                  # the front is named in the record
    md = (out / "sweep.md").read_text()
    assert "does not fit" in md and "sweep-latency.png" in md and "sweep-ram.png" in md
    assert (out / "sweep-latency.png").read_bytes()[:4] == b"\x89PNG"

    again = sweep(grid / "sweep.toml", out, SweepOptions(jobs=1))
    assert fake_cells() == [] and again.cached == 4 and again.ran == 0      # nothing rerun
    assert [r["status"] for r in again.rows] == [r["status"] for r in first.rows]
    assert all(r["cached"] for r in again.rows)

    (grid / "m0.tflite").write_bytes(fc_classifier(seed=7))              # change one model
    third = sweep(grid / "sweep.toml", out, SweepOptions(jobs=1))
    assert fake_cells() == [("m0.tflite", "mps2-an386"), ("m0.tflite", "tiny-an386.toml")]
    assert third.ran == 2 and third.cached == 2


def test_a_crashed_worker_is_recorded_not_fatal(grid, fake_cells):
    (grid / "crash.tflite").write_bytes(fc_classifier(seed=2))
    spec = SweepSpec(models=(str(grid / "m0.tflite"), str(grid / "crash.tflite")),
                     boards=("mps2-an386",), test=str(grid / "test.npz"))
    result = sweep(spec, grid / "out", SweepOptions(jobs=2))
    assert [r["status"] for r in result.rows] == ["ok", "error"]
    assert "worker process died" in result.rows[1]["reason"]
    # tried in the shared pool, then alone; the good cell ran once
    assert fake_cells() == [("crash.tflite", "mps2-an386")] * 2 + [("m0.tflite", "mps2-an386")]
    # an error is not cached: the next run tries that cell again, and only that one
    again = sweep(spec, grid / "out", SweepOptions(jobs=2))
    assert again.cached == 1 and again.ran == 1 and again.rows[1]["status"] == "error"


def test_a_killed_attempts_leftovers_do_not_block_the_cell(grid, fake_cells):
    spec = load_sweep(grid / "sweep.toml")
    first = plan_cells(spec, grid / "out")[0]
    leftover = grid / "out" / "cells" / first.key[:16] / "project"
    leftover.mkdir(parents=True)
    (leftover / "half.c").write_text("int x")           # no tinyq marker: deploy refuses
    result = sweep(spec, grid / "out", SweepOptions(jobs=1))
    assert result.rows[0]["status"] == "ok"


def test_the_output_folder_must_be_a_sweeps(grid, fake_cells):
    (grid / "other").mkdir()
    (grid / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="holds other files"):
        sweep(grid / "sweep.toml", grid / "other")
    assert fake_cells() == []


@pytest.mark.qemu
def test_a_real_sweep_on_qemu(grid, monkeypatch):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(grid / "cache"))
    spec = SweepSpec(models=(str(grid / "m0.tflite"),),
                     boards=("mps2-an386", str(tiny_board(grid, flash=0x400))),
                     test=str(grid / "test.npz"), runs=1)
    result = sweep(spec, grid / "out", SweepOptions(jobs=2))
    ok, small = result.rows
    assert ok["status"] == "ok", ok.get("reason")
    assert ok["bit_exact"] is True and ok["samples"] == 8
    assert ok["latency_unit"] == "instructions" and ok["latency"] > 0 and ok["ram_bytes"] > 0
    assert small["status"] == "does not fit" and "flash" in small["reason"]
    again = sweep(spec, grid / "out", SweepOptions(jobs=2))
    assert again.ran == 0 and [r["status"] for r in again.rows] == ["ok", "does not fit"]


def test_the_command_line(grid, fake_cells, capsys):
    from tinyq.cli import main

    assert main(["sweep", str(grid / "sweep.toml"), "-o", str(grid / "out"), "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("[sweep] [") == 4                    # a line per cell
    assert "4 cells (0 cached): 3 ok, 1 does not fit" in captured.out
    assert (grid / "out" / "sweep.json").is_file()
    (grid / "bad.toml").write_text("[grid]\nmodels = ['m0.tflite']\nboards = ['x']\nmode = 1\n")
    assert main(["sweep", str(grid / "bad.toml"), "-o", str(grid / "out2")]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'mode' in [grid]" in err and err.count("\n") == 1
    assert not (grid / "out2").exists()                             # nothing half-written


def test_the_python_api_mirrors_the_file(grid, fake_cells):
    import tinyq

    from_file = tinyq.sweep(grid / "sweep.toml", grid / "a", SweepOptions(jobs=1))
    fake_cells()
    from_keywords = tinyq.sweep(None, grid / "b", SweepOptions(jobs=1),
                                models=[grid / "m0.tflite", grid / "m1.tflite"],
                                boards=["mps2-an386", str(grid / "tiny-an386.toml")],
                                test=grid / "test.npz", runs=2)
    assert [r["key"] for r in from_keywords.rows] == [r["key"] for r in from_file.rows]
    with pytest.raises(UserInputError, match="not both"):
        tinyq.sweep(grid / "sweep.toml", grid / "c", models=["x.tflite"])


# -- the Ray executor (runs when the [cluster] extra is installed) --------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster (2 CPUs) for this module's Ray tests; about 10 s to start."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'tinyq[cluster]'")
    import sys

    # the test's task functions travel by value (Ray workers cannot import test modules)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


def die_once(marker: str, index: int) -> dict:
    """A cell whose worker process dies the first time it runs (a lost node mid-sweep)."""
    attempts = Path(marker)
    with attempts.open("a") as f:
        f.write(f"{index}\n")
    if attempts.read_text().split().count(str(index)) == 1 and index == 2:
        os._exit(9)
    return {"status": "ok", "index": index}


def test_ray_reruns_a_killed_workers_cell_and_counts_every_cell_once(ray_cluster, tmp_path):
    from tinyq.measure.sweeping import execute_ray

    marker = tmp_path / "attempts"
    rows: list[tuple[int, dict]] = []
    execute_ray([(die_once, (str(marker), i)) for i in range(4)],
                lambda i, row: rows.append((i, row)))
    assert sorted(i for i, _ in rows) == [0, 1, 2, 3]                   # each once
    assert all(row == {"status": "ok", "index": i} for i, row in rows)
    assert marker.read_text().split().count("2") == 2                   # killed, then rerun


def test_a_sweep_on_ray_gives_the_local_record(ray_cluster, grid):
    spec = SweepSpec(models=(str(grid / "m0.tflite"), str(grid / "m1.tflite")),
                     boards=(str(tiny_board(grid, flash=0x400)),), test=str(grid / "test.npz"))
    local = sweep(spec, grid / "local", SweepOptions(jobs=2))
    on_ray = sweep(spec, grid / "ray", SweepOptions(executor="ray"))

    def same(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert [r["status"] for r in on_ray.rows] == ["does not fit", "does not fit"]
    assert same(on_ray.rows) == same(local.rows)


def test_ray_missing_is_one_line(monkeypatch, grid):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from tinyq.errors import ToolNotFoundError

    with pytest.raises(ToolNotFoundError, match=r"pip install 'tinyq\[cluster\]'"):
        sweep(grid / "sweep.toml", grid / "out", SweepOptions(executor="ray"))
    assert not (grid / "out").exists()


def test_tinyq_report_renders_a_sweep_record(grid, fake_cells, capsys):
    from tinyq.cli import main

    sweep(grid / "sweep.toml", grid / "out", SweepOptions(jobs=1))
    assert main(["report", str(grid / "out" / "sweep.json")]) == 0
    out = capsys.readouterr().out
    assert "# tinyq sweep: 4 cells" in out and "does not fit" in out
