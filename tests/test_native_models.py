"""Whole models on the native host build: byte-identical to the tflite-micro interpreter."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import MLPERF_INT8, mlperf_model, shared_models_dir

from tinyq.firmware.native.host import HostModel
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model

#: random inputs per model (at least 20, as the README tables use)
INPUTS_PER_MODEL = 20


def _random_input(rng: np.random.Generator, t) -> np.ndarray:
    if t.dtype == "float32":
        return rng.standard_normal(t.shape).astype(np.float32)
    info = np.iinfo(t.np_dtype)
    return rng.integers(info.min, info.max + 1, size=t.shape).astype(t.np_dtype)


def _check(path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    model = read_model(path)
    native = HostModel(model)
    tflm = TflmInterpreter(path.read_bytes())
    rng = np.random.default_rng(7)
    for k in range(INPUTS_PER_MODEL):
        xs = [_random_input(rng, t) for t in model.input_tensors]
        ours, theirs = native.invoke(xs), tflm.invoke(xs)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert a.tobytes() == np.asarray(b).tobytes(), f"{path.name}: input {k} differs"


@pytest.mark.parametrize("name", MLPERF_INT8)
def test_mlperf_model_is_byte_identical_to_tflm(name):
    _check(mlperf_model(name))


def test_hello_world_int8_is_byte_identical_to_tflm():
    base = shared_models_dir()
    path = None if base is None else base / "tflm-examples" / "hello_world_int8.tflite"
    if path is None or not path.exists():
        pytest.skip("hello_world_int8.tflite not found under ../shared/models/tflm-examples")
    _check(path)
