"""tinyq's native int8 runtime: the model compiled ahead of time to C.

* ``planner``  tensor lifetimes -> offsets in one static arena (``plan``)
* ``support``  can the native runtime run a model (``problems``)
* ``lower``    the one table opcode -> kernel call with precomputed parameters
* ``ops_*``    op families' lowerings (``ops_layout``: data movement), added to that table
* ``quant``    TFLM's Prepare-time quantization arithmetic, exactly
* ``codegen``  ``render(model)`` -> model.c + the kernel sources it needs
* ``host``     the same C built for this machine (``HostModel``), for tests
* ``opcases``  random single-op cases checked bit for bit against tflite-micro
  (``opcases_<family>``: each family's generators)

Kernels live in ``firmware_templates/native/``.
"""

# the op-family modules register into lower.LOWERINGS when lower finishes loading;
# loading lower first means importing a family module directly finds the table whole
from tinyq.firmware.native import lower as _lower  # noqa: E402, F401
