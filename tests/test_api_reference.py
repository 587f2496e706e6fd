"""The Python API: names stay functions after any import, docs/api.md matches the
docstrings, and every example in it runs."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, require_tensorflow, require_tools, shared_models_dir

import tinyq
from tinyq import api_reference

#: seconds one example may take (qat trains one epoch; sweep runs two cells in QEMU)
EXAMPLE_TIMEOUT_S = 600


def test_every_public_name_stays_what_it_is_after_its_module_is_imported():
    """Importing the module behind a name (as tinyq itself and users do) never turns
    ``tinyq.<name>`` into that module: the bug that broke loops over boards."""
    for name, target in tinyq._API.items():
        module, _, attr = target.partition(":")
        for _ in range(2):
            importlib.import_module(module)
            obj = getattr(tinyq, name)
            assert not inspect.ismodule(obj), name
            assert obj is getattr(importlib.import_module(module), attr)


def test_no_module_is_named_like_a_public_name():
    names = set(tinyq._API)
    for path in (REPO / "tinyq").rglob("*.py"):
        stem = path.stem if path.stem != "__init__" else path.parent.name
        assert stem not in names, f"{path.relative_to(REPO)} is named like tinyq.{stem}"


def test_docs_api_md_is_generated_from_the_docstrings():
    assert api_reference.main(["--check", str(REPO / "docs" / "api.md")]) == 0


def test_every_public_function_has_a_runnable_example():
    for name in api_reference.public_names():
        if not inspect.isclass(getattr(tinyq, name)):
            assert api_reference.example_of(name), f"tinyq.{name} has no Example:: block"


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory, digits_artifacts):
    """A folder holding the files the examples name (the README quick start's)."""
    models = shared_models_dir()
    hello = models / "tflm-examples" / "hello_world_int8.tflite" if models else None
    if hello is None or not hello.is_file():
        pytest.skip("hello_world_int8.tflite not found under ../shared/models/tflm-examples")
    folder = tmp_path_factory.mktemp("api_examples")
    shutil.copy(hello, folder / "hello_world_int8.tflite")
    for key, name in (("model", "digits.keras"), ("train", "train.npz"),
                      ("calib", "calib.npz"), ("test", "test.npz")):
        shutil.copy(digits_artifacts[key], folder / name)
    tinyq.quantize(folder / "digits.keras", calib=folder / "calib.npz",
                   output=folder / "digits_int8.tflite")
    return folder


def _blocks() -> list[str]:
    return api_reference.code_blocks(api_reference.markdown())


@pytest.mark.qemu
@pytest.mark.tensorflow
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_docs_api_md_example_runs(index, example_folder, tmp_path):
    """Each ```python block of docs/api.md runs as a user would run it."""
    require_tensorflow()
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    code = _blocks()[index]
    folder = tmp_path / "work"
    shutil.copytree(example_folder, folder)          # each example starts from the same files
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S,
                          check=False)
    assert proc.returncode == 0, f"example:\n{code}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"example printed nothing:\n{code}"
