"""tinyq: from a trained Keras/TensorFlow model to measured int8 firmware on Cortex-M.

The library API mirrors the CLI; each function lives in the module of its stage
and is imported lazily here so ``import tinyq`` never pulls TensorFlow. The package is
laid out as the pipeline runs, each arrow pointing down::

    convert/    Keras/TF -> .tflite (quantize, qat) and its host measurement (evaluate, compare)
    model/      the IR, .tflite reader/writer, host interpreters, the checks (read_model)
    analyze     a .tflite against each runtime and a board (inspect)
    firmware/   projects, the native and TFLM runtimes, compiling, library export
                (generate, build, export)
    device/     serial ports, emulators, the protocol client, flashing
    measure/    run, bench, validate, sweep and their reports
    pipeline    deploy: the one sequencer

No module is named like a public function, so ``tinyq.run`` is always the function.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> "module:attribute"
_API = {
    "quantize": "tinyq.convert.ptq:quantize",
    "evaluate": "tinyq.convert.evaluation:evaluate",
    "compare": "tinyq.convert.comparison:compare",
    "qat": "tinyq.convert.qat_training:qat",
    "load_data": "tinyq.data:load_data",
    "read_model": "tinyq.model.tflite_reader:read_model",
    "inspect": "tinyq.analyze:inspect",
    "generate": "tinyq.firmware.codegen:generate",
    "export": "tinyq.firmware.library_export:export",
    "build": "tinyq.firmware.compiling:build",
    "run": "tinyq.measure.runner:run",
    "bench": "tinyq.measure.benchmark:bench",
    "validate": "tinyq.measure.validation:validate",
    "deploy": "tinyq.pipeline:deploy",
    "sweep": "tinyq.measure.sweeping:sweep",
    # each function's options, one frozen dataclass
    "QuantizeOptions": "tinyq.convert.ptq:QuantizeOptions",
    "CompareOptions": "tinyq.convert.comparison:CompareOptions",
    "QatOptions": "tinyq.convert.qat_training:QatOptions",
    "GenerateOptions": "tinyq.firmware.codegen:GenerateOptions",
    "NativeOptions": "tinyq.firmware.native.codegen:NativeOptions",
    "TflmOptions": "tinyq.firmware.tflm.codegen:TflmOptions",
    "BuildOptions": "tinyq.firmware.compiling:BuildOptions",
    "FlashOptions": "tinyq.device.flashing:FlashOptions",
    "RunOptions": "tinyq.measure.runner:RunOptions",
    "BenchOptions": "tinyq.measure.benchmark:BenchOptions",
    "ValidateOptions": "tinyq.measure.validation:ValidateOptions",
    "DeployOptions": "tinyq.pipeline:DeployOptions",
    "SweepOptions": "tinyq.measure.sweeping:SweepOptions",
}

__all__ = sorted(_API) + ["__version__", "boards", "errors"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name in ("boards", "errors"):
        return importlib.import_module(f"tinyq.{name}")
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'tinyq' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
