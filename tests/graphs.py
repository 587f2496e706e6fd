"""Small models built in code that several test modules need (no TensorFlow required)."""

from __future__ import annotations

import numpy as np

from tinyq.model.tflite_writer import GraphBuilder


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


def kernel_paths_model(seed: int = 0) -> bytes:
    """int8 CONV_2D -> DEPTHWISE_CONV_2D -> ADD -> MAX_POOL -> AVERAGE_POOL -> RESHAPE ->
    FULLY_CONNECTED: every weighted kernel and its SIMD path (channels multiples of 4) in
    a model that runs in about 200,000 instructions."""
    rng = np.random.default_rng(seed)

    def weights(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-127, 128, size=shape).astype(np.int8)

    def bias(n: int) -> np.ndarray:
        return rng.integers(-2000, 2000, size=n).astype(np.int32)

    g = GraphBuilder(description="tinyq kernel-path test model")
    x = g.add_tensor((1, 8, 8, 4), "int8", scale=0.05, zero_point=-3)
    conv_w = g.add_constant(weights((8, 3, 3, 4)), scale=[0.004] * 8, zero_point=[0] * 8)
    conv_b = g.add_constant(bias(8), scale=[0.0002] * 8, zero_point=[0] * 8)
    y1 = g.add_tensor((1, 8, 8, 8), "int8", scale=0.3, zero_point=-128)
    g.add_op("CONV_2D", [x, conv_w, conv_b], [y1],
             {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1,
              "dilation_w_factor": 1, "fused_activation_function": "RELU"})
    dw_w = g.add_constant(weights((1, 3, 3, 8)), scale=[0.005] * 8, zero_point=[0] * 8, axis=3)
    dw_b = g.add_constant(bias(8), scale=[0.0015] * 8, zero_point=[0] * 8)
    y2 = g.add_tensor((1, 8, 8, 8), "int8", scale=0.4, zero_point=5)
    g.add_op("DEPTHWISE_CONV_2D", [y1, dw_w, dw_b], [y2],
             {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1,
              "dilation_w_factor": 1, "depth_multiplier": 1, "fused_activation_function": "NONE"})
    y3 = g.add_tensor((1, 8, 8, 8), "int8", scale=0.5, zero_point=-10)
    g.add_op("ADD", [y1, y2], [y3], {"fused_activation_function": "NONE"})
    pool = {"padding": "VALID", "stride_h": 2, "stride_w": 2, "filter_height": 2,
            "filter_width": 2, "fused_activation_function": "NONE"}
    y4 = g.add_tensor((1, 4, 4, 8), "int8", scale=0.5, zero_point=-10)
    g.add_op("MAX_POOL_2D", [y3], [y4], pool)
    y5 = g.add_tensor((1, 2, 2, 8), "int8", scale=0.5, zero_point=-10)
    g.add_op("AVERAGE_POOL_2D", [y4], [y5], pool)
    shape = g.add_constant(np.array([1, 32], np.int32))
    y6 = g.add_tensor((1, 32), "int8", scale=0.5, zero_point=-10)
    g.add_op("RESHAPE", [y5, shape], [y6], {"new_shape": [1, 32]})
    fc_w = g.add_constant(weights((10, 32)), scale=0.004, zero_point=0)
    fc_b = g.add_constant(bias(10), scale=0.002, zero_point=0)
    y = g.add_tensor((1, 10), "int8", scale=0.6, zero_point=2)
    g.add_op("FULLY_CONNECTED", [y6, fc_w, fc_b], [y], {"fused_activation_function": "NONE"})
    return g.build([x], [y])


#: ops of the native runtime's layout, comparison and arithmetic families that
#: ``long_tail_model`` runs on a target (inputs of these dtypes only: random inputs of
#: other dtypes would be invalid indices or conditions)
LONG_TAIL_OPS = ("TRANSPOSE", "STRIDED_SLICE", "SLICE", "SPLIT", "PACK", "UNPACK",
                 "SPACE_TO_DEPTH", "MIRROR_PAD", "RESIZE_NEAREST_NEIGHBOR", "SUB",
                 "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "PRELU", "ABS", "ARG_MAX",
                 "REDUCE_MAX", "EQUAL", "GREATER")
LONG_TAIL_INPUT_DTYPES = ("int8", "int16", "float32")


def long_tail_model(seed: int = 0, per_op: int = 2) -> bytes:
    """One model holding ``per_op`` random cases of each of ``LONG_TAIL_OPS`` (the op-case
    generators of tinyq.firmware.native.opcases), every graph input int8, int16 or float32."""
    from tinyq.firmware.native.opcases import CASES
    from tinyq.model.tflite_writer import GraphBuilder as Builder

    rng = np.random.default_rng(seed)
    g = Builder(description="tinyq long-tail kernels test model")
    cases = []
    for op in LONG_TAIL_OPS:
        for _ in range(per_op):
            for _ in range(100):              # redraw until the case's inputs are usable
                state = rng.bit_generator.state
                trial = CASES[op](Builder(), rng)
                if all(np.asarray(a).dtype.name in LONG_TAIL_INPUT_DTYPES
                       for _, a in trial.inputs):
                    rng.bit_generator.state = state      # the same draw, into the model
                    cases.append(CASES[op](g, rng))
                    break
            else:
                raise AssertionError(f"no {op} case with usable input dtypes in 100 draws")
    return g.build([t for c in cases for t, _ in c.inputs],
                   [t for c in cases for t in c.outputs])


def fc_int8(weights: np.ndarray, bias: np.ndarray | None = None, in_scale: float = 1 / 16,
            w_scale: float = 1 / 127, out_scale: float = 1 / 32, out_zero_point: int = 0,
            description: str = "tinyq int8 FULLY_CONNECTED test model") -> bytes:
    """One int8 FULLY_CONNECTED layer ``(1, n_in) -> (1, n_out)`` with the given int8
    ``weights`` ``(n_out, n_in)`` (a regressor, an autoencoder when square)."""
    n_out, n_in = weights.shape
    g = GraphBuilder(description)
    x = g.add_tensor((1, n_in), "int8", scale=in_scale, zero_point=0)
    w = g.add_constant(np.asarray(weights, np.int8), scale=w_scale, zero_point=0)
    b = g.add_constant(np.zeros(n_out, np.int32) if bias is None else np.asarray(bias, np.int32),
                       "int32", scale=in_scale * w_scale, zero_point=0)
    y = g.add_tensor((1, n_out), "int8", scale=out_scale, zero_point=out_zero_point)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.build()
