"""Helpers for the TFLM tests: a tiny model built in code and a fake TFLM tree.

The fake tree has the layout of a tflite-micro checkout with its third-party
downloads (the paths tflm/tflm.mk and CMakeLists.txt look at) but only empty
files: no TFLM code is ever used by the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyq.model.tflite_writer import GraphBuilder

DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"

#: Files of the fake tree (all empty). Comments: what the make fragment must do with them.
FAKE_TFLM_FILES = (
    "tensorflow/lite/micro/micro_interpreter.h",             # the marker
    "tensorflow/lite/micro/micro_interpreter.cc",            # framework: built (-Os)
    "tensorflow/lite/micro/debug_log.cc",                    # replaced by tflm_runtime.cc
    "tensorflow/lite/micro/micro_interpreter_test.cc",       # test: skipped
    "tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc",
    "tensorflow/lite/micro/kernels/conv.cc",                 # kernel: built, or the cmsis_nn one
    "tensorflow/lite/micro/kernels/softmax.cc",              # kernel without a cmsis_nn twin
    "tensorflow/lite/micro/kernels/conv_test.cc",            # test: skipped
    "tensorflow/lite/micro/kernels/conv_test_common.cc",     # test helper: skipped
    "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc",        # CMSIS-NN conv
    "tensorflow/lite/core/c/common.cc",                      # shared TFLite file
    "tensorflow/lite/kernels/internal/common.cc",            # same basename as the one above
    "tensorflow/lite/array.cc",                              # excluded by TFLM too
    "tensorflow/lite/experimental/thing.cc",                 # excluded by TFLM too
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",  # shared TFLite file
    f"{DOWNLOADS}/flatbuffers/include/flatbuffers/flatbuffers.h",
    f"{DOWNLOADS}/gemmlowp/fixedpoint/fixedpoint.h",
    f"{DOWNLOADS}/ruy/ruy/profiler/instrumentation.h",
    f"{DOWNLOADS}/cmsis/CMSIS/Core/Include/cmsis_compiler.h",
    f"{DOWNLOADS}/cmsis_nn/Include/arm_nnfunctions.h",
    f"{DOWNLOADS}/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_s8.c",
    f"{DOWNLOADS}/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_f32.c",   # float: skipped
)


def make_fake_tflm(root: Path, files: tuple[str, ...] = FAKE_TFLM_FILES) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return root


def tiny_model_bytes(second_fc: bool = False) -> bytes:
    """FULLY_CONNECTED (per-channel int8) -> SOFTMAX, 4 -> 3 values (928 bytes)."""
    g = GraphBuilder(description="tinyq tflm test model")
    x = g.add_tensor((1, 4), "int8", scale=0.05, zero_point=-3, name="input")
    w = g.add_constant(np.array([[1, -2, 3, -4], [5, 6, -7, 8], [-9, 10, 11, -12]], np.int8),
                       scale=[0.02, 0.03, 0.01], zero_point=[0, 0, 0], name="weights")
    b = g.add_constant(np.array([10, -20, 30], np.int32), scale=[0.001, 0.0015, 0.0005],
                       zero_point=[0, 0, 0], name="bias")
    h = g.add_tensor((1, 3), "int8", scale=0.04, zero_point=1, name="logits")
    g.add_op("FULLY_CONNECTED", [x, w, b], [h])
    if second_fc:
        w2 = g.add_constant(np.eye(3, dtype=np.int8) * 50, scale=0.02, name="weights2")
        h2 = g.add_tensor((1, 3), "int8", scale=0.04, zero_point=1, name="logits2")
        g.add_op("FULLY_CONNECTED", [h, w2, -1], [h2])
        h = h2
    y = g.add_tensor((1, 3), "int8", scale=1 / 256, zero_point=-128, name="probs")
    g.add_op("SOFTMAX", [h], [y], {"beta": 1.0})
    return g.build([x], [y])
