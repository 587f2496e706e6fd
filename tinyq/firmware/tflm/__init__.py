"""The TensorFlow Lite for Microcontrollers runtime of a generated project.

* :mod:`tinyq.firmware.tflm.codegen` renders the TFLM files of a project for one model:
  the model as an aligned C array, ``tflm_runtime.cc`` (``tq_runtime.h`` on top of
  ``MicroInterpreter`` with a ``MicroMutableOpResolver`` holding exactly the model's
  ops), the arena sized from a host measurement plus a stated margin, the make
  fragment, ``CMakeLists.txt`` and a README.
* :mod:`tinyq.firmware.tflm.source` finds a TFLM source tree (``--tflm-dir``, then
  ``$TINYQ_TFLM_DIR``, then the user cache) or downloads the pinned one
  (``tinyq setup tflm``).
* :mod:`tinyq.firmware.tflm.library` compiles TFLM once per (core, float ABI, kernels,
  tinyq version) into a static library in the user cache.
"""

from __future__ import annotations

__all__ = ["codegen", "library", "source"]
