"""tinyq: from a trained Keras/TensorFlow model to measured int8 firmware on Cortex-M.

The library API mirrors the CLI; each function lives in the module of its stage
and is imported lazily here so ``import tinyq`` never pulls TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> "module:attribute"
_API = {
    "quantize": "tinyq.quantize:quantize",
    "evaluate": "tinyq.evaluate:evaluate",
    "compare": "tinyq.compare:compare",
    "qat": "tinyq.qat:qat",
    "load_data": "tinyq.data:load_data",
    "read_model": "tinyq.tflite_reader:read_model",
    "inspect": "tinyq.analyze:inspect",
    "generate": "tinyq.codegen:generate",
    "export": "tinyq.library_export:export",
    "build": "tinyq.build:build",
    "run": "tinyq.run:run",
    "bench": "tinyq.bench:bench",
    "validate": "tinyq.validate:validate",
    "deploy": "tinyq.pipeline:deploy",
    "sweep": "tinyq.sweeping:sweep",
}

__all__ = sorted(_API) + ["__version__", "boards", "errors"]


def __getattr__(name: str) -> Any:
    if name in ("boards", "errors"):
        return importlib.import_module(f"tinyq.{name}")
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'tinyq' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
