"""Seeded mutation fuzzing of the shared .tflite models through the real CLI.

The engine is ``benchmarks/fuzz_models.py`` (run it by hand with ``--long`` for thousands
of mutants); here it runs a small, fixed set of mutants through ``inspect``, ``generate``,
``evaluate --interpreter tflm`` and ``run`` (up to the device) and requires that every case
ends cleanly: no crash, no traceback, no hang, no error without its one clean line.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys

import pytest
from conftest import REPO, shared_models_dir

from tinyq.model.tflite_reader import read_model_bytes

_spec = importlib.util.spec_from_file_location("fuzz_models", REPO / "benchmarks" /
                                               "fuzz_models.py")
fuzz_models = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_models"] = fuzz_models
_spec.loader.exec_module(fuzz_models)

#: The seed of the suite's run: fixed, so a failure reproduces with
#: ``python benchmarks/fuzz_models.py --seed 11``.
SUITE_SEED = 11
#: Memory (resident, MB) one case may add to what it inherits from the test process (a
#: forked case starts with the parent's pages: TensorFlow, if an earlier test loaded it):
#: the models are at most 333 KB; a case above this allocated something from a corrupt
#: header instead of refusing it.
PEAK_MB_LIMIT = 1024


def _resident_kb() -> int:
    """This process's resident memory now (what a forked case starts with)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


@pytest.fixture(scope="module")
def models():
    base = shared_models_dir()
    found = fuzz_models.find_models(base) if base else []
    if not found:
        pytest.skip("../shared/models is missing (set TINYQ_SHARED_MODELS to its path)")
    return found


def test_mutants_end_cleanly_in_every_command(models, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    inherited_kb = _resident_kb()
    report = fuzz_models.fuzz(models, fuzz_models.QUICK_MUTANTS, SUITE_SEED, tmp_path)
    print(report.table())
    assert report.cases == fuzz_models.QUICK_MUTANTS * len(fuzz_models.COMMANDS)
    assert not report.failures, "\n".join(report.failures)
    assert all(report.counts[k] == 0 for k in fuzz_models.FAILURES)
    assert report.counts["clean_error"] > 0           # the mutants did hit the checks
    assert report.peak_rss_kb - inherited_kb < PEAK_MB_LIMIT * 1024


def test_every_mutation_kind_changes_the_file(models):
    seed = fuzz_models.load_seed(models[0])
    rng = random.Random(0)
    for kind in fuzz_models.MUTATIONS:
        for _ in range(5):
            data, what = fuzz_models.mutate(seed, rng, kind)
            assert data != seed.data and what


def test_field_rewrites_go_through_the_schema(models):
    """A rewrite lands on the field it names (read back through the reader)."""
    import struct

    seed = fuzz_models.load_seed(models[0])
    slot = next(s for s in seed.slots if s.where == "tensor 0 shape[0]")
    data = bytearray(seed.data)
    struct.pack_into(slot.fmt, data, slot.pos, 5)
    try:
        assert read_model_bytes(bytes(data)).tensors[0].shape[0] == 5
    except Exception as exc:  # a shape of 5 may be refused, but must name the tensor
        assert "tensor 0" in str(exc)
    assert {s.where.split()[0] for s in seed.slots} >= {"opcode", "tensor", "op", "subgraph"}
    assert any(s.where.endswith("offset") for s in seed.external_slots)


def test_the_classifier_counts_what_it_must(tmp_path):
    """A crash, a traceback, a hang and an unclear exit are each seen for what they are."""
    cases = {
        "crash": lambda: __import__("os").kill(__import__("os").getpid(), signal.SIGSEGV),
        "traceback": lambda: 1 / 0,
        "hang": lambda: __import__("time").sleep(60),
    }
    for kind, action in cases.items():
        outcome = _run_fn(action, tmp_path / kind, timeout=2.0)
        assert outcome.kind == kind, outcome
    assert fuzz_models.classify(1 << 8, "junk\n")[0] == "unclear"
    assert fuzz_models.classify(1 << 8, "error: bad model — re-export it\n") == (
        "clean_error", "bad model — re-export it")
    assert fuzz_models.classify(0, "[stage] working\n")[0] == "success"


def _run_fn(action, workdir, timeout):
    """fuzz_models.run_case with ``tinyq.cli.main`` replaced by ``action``."""
    import tinyq.cli

    saved = tinyq.cli.main
    tinyq.cli.main = lambda argv: action()
    try:
        return fuzz_models.run_case(["inspect", "x"], workdir, timeout=timeout)
    finally:
        tinyq.cli.main = saved
