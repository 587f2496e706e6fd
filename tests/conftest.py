"""Shared test fixtures.

``shared_models`` locates ../shared/models (the MLPerf Tiny and TFLM example
models that sit beside the checkout in CI); tests that need it skip with a
clear reason when it is missing. Override with TINYQ_SHARED_MODELS.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_models_dir() -> Path | None:
    env = os.environ.get("TINYQ_SHARED_MODELS")
    candidate = Path(env) if env else REPO.parent / "shared" / "models"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The folder of third-party test models, or skip."""
    found = shared_models_dir()
    if found is None:
        pytest.skip("../shared/models is missing (set TINYQ_SHARED_MODELS to its path)")
    return found


def mlperf_model(name: str) -> Path:
    """Path of one MLPerf Tiny model file, or skip the calling test."""
    base = shared_models_dir()
    if base is None or not (base / "mlperf-tiny" / name).exists():
        pytest.skip(f"MLPerf Tiny model {name} not found under ../shared/models/mlperf-tiny")
    return base / "mlperf-tiny" / name


MLPERF_INT8 = (
    "ad01_int8.tflite",
    "kws_ref_model.tflite",
    "vww_96_int8.tflite",
    "pretrainedResnet_quant.tflite",
)


def require_tools(*names: str) -> None:
    """Skip the calling test unless every named host tool is on PATH."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm)"
        )


def require_tensorflow() -> None:
    """Skip the calling test unless TensorFlow (the [convert] extra) is importable."""
    pytest.importorskip("tensorflow", reason="needs the [convert] extra (tensorflow-cpu)")


@pytest.fixture(scope="session")
def digits_artifacts(tmp_path_factory) -> dict[str, Path]:
    """The examples/digits model, trained once per session (about 15 s).

    Returns paths: ``model`` (digits.keras), ``train``, ``calib``, ``test`` (.npz with x, y).
    Skips without TensorFlow/scikit-learn.
    """
    require_tensorflow()
    pytest.importorskip("sklearn", reason="needs scikit-learn (the digits data set)")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tinyq_examples_digits_train", REPO / "examples" / "digits" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.train(tmp_path_factory.mktemp("digits"))
