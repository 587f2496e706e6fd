"""Small user-facing details: quiet exit on a closed pipe, exact sizes, ETAs, plots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_closed_stdout_pipe_ends_quietly_without_a_traceback():
    # `tinyq boards | head -0`: the reader is gone before tinyq writes a line.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c",
                           "import sys; from tinyq.cli import main; sys.exit(main())",
                           "boards"], stdout=write_end, stderr=subprocess.PIPE, env=env,
                          timeout=60, check=False)
    os.close(write_end)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 128 + signal.SIGPIPE


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_progress_bar_shows_an_eta_from_its_pace():
    import io

    from tinyq.cli.ui import Console
    from tinyq.progress import ProgressEvent

    err, clock = io.StringIO(), _Clock()
    ui = Console(err=err, clock=clock)
    seen = []
    for done in range(0, 11):
        err.seek(0)
        err.truncate()
        ui.progress(ProgressEvent("validate", "samples", done=done, total=10))
        seen.append(err.getvalue())
        clock.t += 30.0          # 30 s a sample
    # Not a tty: only the final line is printed, with the time it took.
    assert seen[-1].strip() == "[validate] [" + "#" * 30 + "] 10/10 (5m00s) samples"
    assert ui._eta("validate", 0, 10) == ""
    clock.t += 30
    assert ui._eta("validate", 1, 10) == " ETA 4m30s"     # 9 left at 30 s each
    clock.t += 3600
    assert ui._eta("validate", 2, 10) == " ETA 4h02m"     # 3,630 s for 2: 8 left


def test_board_sizes_are_exact_not_rounded():
    from tinyq.cli.cmd_boards import format_size

    assert format_size(4 << 20) == "4 MB"
    assert format_size(270336) == "264 KB"
    assert format_size((16 << 20) + (16 << 10)) == "16 MB + 16 KB"
    assert format_size(100) == "100 B"
    assert format_size(0) == "0 B"
    assert format_size((1 << 20) + 5) == "1 MB + 5 B"


def test_user_docs_do_not_speak_of_the_projects_internal_papers():
    """README, docs and user-visible text speak to users: no issue numbers, no 'product
    card' (a term only this project's authors know)."""
    import re

    paths = [REPO / "README.md", REPO / "pyproject.toml", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "tinyq").rglob("*.py")), *sorted((REPO / "benchmarks").glob("*.py")),
             *sorted((REPO / "firmware_templates").rglob("*.j2"))]
    pattern = re.compile(r"\bissue \d+|\bissue's\b|product card", re.IGNORECASE)
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in paths
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert not found, "\n".join(found)


def test_readme_says_where_the_example_models_come_from():
    readme = (REPO / "README.md").read_text()
    import re

    first_example = re.search(r"^\$ tinyq .*kws_ref_model", readme, re.MULTILINE)
    assert first_example is not None
    origin = readme.find("keyword_spotting/trained_models/kws_ref_model.tflite")
    assert 0 <= origin < first_example.start()
    assert "github.com/mlcommons/tiny" in readme[:first_example.start()]


def test_project_records_the_board_by_name_or_relative_path(tmp_path):
    import json
    import shutil

    from tflm_helpers import tiny_model_bytes

    from tinyq import boards
    from tinyq.firmware.codegen import (
        BUNDLED_SOURCE,
        PROJECT_FILE,
        board_file,
        generate,
        load_project,
    )
    from tinyq.resources import boards_dir

    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_model_bytes())
    bundled = generate(model, "mps2-an386", out_dir=tmp_path / "p1").path
    record = load_project(bundled)
    assert record["board"]["source"] == BUNDLED_SOURCE
    assert board_file(bundled, record) == "mps2-an386"

    mine = tmp_path / "boards" / "mps2-an386.toml"
    mine.parent.mkdir()
    shutil.copy(boards_dir() / "mps2-an386.toml", mine)
    project = generate(model, str(mine), out_dir=tmp_path / "work" / "p2").path
    record = load_project(project)
    assert record["board"]["source"] == "../../boards/mps2-an386.toml"
    # the project and its board file move together: still found
    shutil.move(tmp_path / "work", tmp_path / "moved" / "work")
    shutil.move(tmp_path / "boards", tmp_path / "moved" / "boards")
    moved = tmp_path / "moved" / "work" / "p2"
    assert boards.load(board_file(moved, load_project(moved))).name == "mps2-an386"

    # a project written before: the absolute path is read as it is
    old = json.loads((moved / PROJECT_FILE).read_text())
    old["board"]["source"] = str(tmp_path / "moved" / "boards" / "mps2-an386.toml")
    assert board_file(moved, old) == old["board"]["source"]


def _mode(mode: str, kib: float, acc: float, tflm: bool = True):
    from tinyq.convert.comparison import ModeResult

    return ModeResult(mode=mode, size_bytes=int(kib * 1024), accuracy=acc, max_abs_error=0.0,
                      rmse=0.0, top1_agreement=1.0, latency_us=1.0, tflm_runs=tflm,
                      tflm_note="")


def test_compare_plot_keeps_coinciding_modes_visible_and_ends_at_100_percent(tmp_path):
    import matplotlib.pyplot as plt

    from tinyq.convert.comparison import CompareReport, figure, plot

    rows = (_mode("int8", 20, 0.97), _mode("dynamic", 20, 0.97, tflm=False),
            _mode("float32", 80, 1.0))
    report = CompareReport(model="m.keras", data="d.npz", samples=10, source_size_bytes=1,
                           reference_accuracy=None, latency_interpreter="x", rows=rows)
    fig = figure(report)
    try:
        ax = fig.axes[0]
        assert ax.get_ylim()[1] == 100.0
        sizes = {c.get_label(): float(c.get_sizes()[0]) for c in ax.collections}
        # int8 and dynamic sit on one spot: the later one is drawn smaller, inside
        assert sizes["int8"] > sizes["dynamic"] > sizes["float32"]
        points = {c.get_label(): tuple(c.get_offsets()[0]) for c in ax.collections}
        assert points["int8"] == points["dynamic"]
    finally:
        plt.close(fig)
    plot(report, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_layer_plot_ticks_are_plain_thousands_without_an_offset(monkeypatch):
    from test_report import bench_record

    from tinyq.measure import report

    figures = []
    real_png = report._png

    def keep(fig):
        figures.append(fig)
        return real_png(fig)

    monkeypatch.setattr(report, "_png", keep)
    # millions of instructions per layer: matplotlib's default shows "1e7" in a corner
    assert report.layers_png(bench_record(ticks=400_000)) is not None
    ax = figures[0].axes[0]
    fmt = ax.xaxis.get_major_formatter()
    assert fmt(12_000_000, 0) == "12,000,000"
    assert ax.xaxis.get_offset_text().get_text() == ""


def test_build_table_has_thousands_separators():
    from types import SimpleNamespace

    from tinyq.cli.cmd_build import memory_rows
    from tinyq.cli.ui import format_table

    fw = SimpleNamespace(code_bytes=16384, model_bytes=52_000, flash_bytes=68_384,
                         flash_available=4_194_304, static_ram_bytes=1200, arena_bytes=16_000,
                         arena_region="RAM", stack_bytes=4096, ram_bytes=21_296,
                         ram_available=4_194_304)
    text = format_table(("memory", "what", "bytes", "of board", "used"), memory_rows(fw),
                        "llrrr")
    assert "16,384" in text and "4,194,304" in text and "68,384" in text
    assert "16384" not in text


def test_deploy_report_labels_estimate_and_measurement():
    from test_report import bench_record

    from tinyq.measure.report import markdown

    rec = bench_record()
    rec["fit"] = {"board": "mps2-an386", "runtime": "native", "flash_needed": 52_000,
                  "flash_available": 4_194_304, "ram_needed": 6_144,
                  "ram_available": 4_194_304, "fits": True}
    text = markdown(rec, {})
    assert "## RAM (measured on the device)" in text
    assert "## Flash (measured from the ELF)" in text
    assert "**estimated** 52,000 B of flash and 6,144 B of RAM" in text
    del rec["fit"]
    assert "estimated" not in markdown(rec, {})
