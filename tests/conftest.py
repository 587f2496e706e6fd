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


@pytest.fixture(scope="session")
def tiny_float_model(tmp_path_factory) -> dict[str, Path]:
    """A 1.1k-parameter float Keras model (6x6x1 -> conv -> dense 16 -> 3) and data for it.

    The dense layer has 1024 weights, the converter's threshold for quantizing a weight
    in dynamic-range mode, so every mode changes something. Returns paths: ``model``
    (.keras), ``calib`` (.npz x), ``test`` (.npz x, y with y = the float model's top-1
    on half the samples, a wrong class on the other half).
    """
    require_tensorflow()
    import keras
    import numpy as np

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="out"),
    ])
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("tiny_model")
    paths = {"model": folder / "tiny.keras", "calib": folder / "calib.npz",
             "test": folder / "test.npz"}
    model.save(paths["model"])
    np.savez(paths["calib"], x=rng.random((64, 6, 6, 1), dtype=np.float32))
    x_test = rng.random((40, 6, 6, 1), dtype=np.float32)
    top1 = np.argmax(model.predict(x_test, verbose=0), axis=1)
    y = np.where(np.arange(40) < 20, top1, (top1 + 1) % 3)
    np.savez(paths["test"], x=x_test, y=y)
    return paths


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tinyq hardware", "real-board tests (marker: hardware)")
    group.addoption("--board", default=None, help="board profile (name or TOML) of the board")
    group.addoption("--port", default=None, help="serial port of the attached board")
    group.addoption("--probe", default=None, help="debug probe id (when several are attached)")


@pytest.fixture
def hardware(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """The attached board (--board, --port, --probe), or skip: hardware tests never fake one."""
    board, port = request.config.getoption("--board"), request.config.getoption("--port")
    if not board or not port:
        pytest.skip("needs a real board: pytest -m hardware --board NAME --port /dev/ttyACM0")
    return {"board": board, "port": port, "probe": request.config.getoption("--probe")}
