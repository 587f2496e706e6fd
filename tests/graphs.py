"""Small models built in code that several test modules need (no TensorFlow required)."""

from __future__ import annotations

import numpy as np

from tinyq.tflite_writer import GraphBuilder


def hybrid_fc() -> bytes:
    """FULLY_CONNECTED with float32 activations and int8 weights (dynamic-range)."""
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w = g.add_constant(np.ones((4, 8), np.int8), scale=0.1)
    b = g.add_constant(np.zeros(4, np.float32))
    y = g.add_tensor((1, 4), "float32")
    g.add_op("FULLY_CONNECTED", [x, w, b], [y], {"asymmetric_quantize_inputs": True})
    return g.build()


def float16_fc() -> bytes:
    """float16 weights DEQUANTIZEd to float32 at run time, then FULLY_CONNECTED."""
    g = GraphBuilder()
    x = g.add_tensor((1, 8), "float32")
    w16 = g.add_constant(np.ones((4, 8), np.float16))
    w = g.add_tensor((4, 8), "float32")
    y = g.add_tensor((1, 4), "float32")
    g.add_op("DEQUANTIZE", [w16], [w])
    g.add_op("FULLY_CONNECTED", [x, w, -1], [y])
    return g.build(inputs=[x], outputs=[y])
