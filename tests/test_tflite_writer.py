"""The writer: IR -> .tflite bytes that read back field for field and run in TFLM and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MLPERF_INT8, mlperf_model

from tinyq.errors import ModelError
from tinyq.model.interpreters import LiteRTInterpreter, TflmInterpreter
from tinyq.model.tflite_reader import read_model, read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder, TensorSpec, single_op_model, write_model


def q(shape, scale=0.05, zp=-3, dtype="int8"):
    return TensorSpec(tuple(shape), dtype, scale=scale, zero_point=zp)


def const(arr, scale=None, zp=0, axis=0):
    arr = np.asarray(arr)
    return TensorSpec(arr.shape, arr.dtype.name, scale=scale, zero_point=zp, axis=axis, data=arr)


RNG = np.random.default_rng(7)
W_CONV = RNG.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
W_DW = RNG.integers(-127, 128, (1, 3, 3, 3), dtype=np.int8)
W_FC = RNG.integers(-127, 128, (4, 8), dtype=np.int8)
S4 = [0.01, 0.02, 0.015, 0.03]
S3 = [0.01, 0.02, 0.015]

#: One case per op of the first native op set: (opcode, inputs, outputs, options).
OP_CASES = {
    "CONV_2D": ([q((1, 5, 5, 3), 0.5, -1), const(W_CONV, S4, [0] * 4),
                 const(np.arange(4, dtype=np.int32), [0.5 * s for s in S4], [0] * 4)],
                [q((1, 3, 3, 4), 0.8, 2)], {"fused_activation_function": "RELU6"}),
    "DEPTHWISE_CONV_2D": ([q((1, 5, 5, 3), 0.5, -1), const(W_DW, S3, [0] * 3, axis=3),
                           const(np.zeros(3, np.int32), [0.5 * s for s in S3], [0] * 3)],
                          [q((1, 5, 5, 3), 0.7, 1)], {"padding": "SAME"}),
    "FULLY_CONNECTED": ([q((1, 8), 0.1, 3), const(W_FC, 0.02), const(np.ones(4, np.int32), 0.002)],
                        [q((1, 4), 0.3, -2)], {}),
    "AVERAGE_POOL_2D": ([q((1, 4, 4, 2))], [q((1, 2, 2, 2))],
                        {"filter_width": 2, "filter_height": 2, "stride_w": 2, "stride_h": 2}),
    "MAX_POOL_2D": ([q((1, 4, 4, 2))], [q((1, 2, 2, 2))],
                    {"filter_width": 2, "filter_height": 2, "stride_w": 2, "stride_h": 2}),
    "ADD": ([q((1, 4, 4, 2), 0.1, 1), q((1, 4, 4, 2), 0.2, -1)], [q((1, 4, 4, 2), 0.25, 0)],
            {"fused_activation_function": "RELU"}),
    "MUL": ([q((1, 4, 4, 2), 0.1, 1), q((1, 4, 4, 2), 0.2, -1)], [q((1, 4, 4, 2), 0.5, 0)], {}),
    "SOFTMAX": ([q((1, 10), 0.1, 0)], [q((1, 10), 1 / 256, -128)], {"beta": 1.0}),
    "LOGISTIC": ([q((1, 10), 0.1, 0)], [q((1, 10), 1 / 256, -128)], {}),
    "TANH": ([q((1, 10), 0.1, 0)], [q((1, 10), 1 / 128, 0)], {}),
    "RESHAPE": ([q((1, 2, 3)), const(np.array([1, 6], np.int32))], [q((1, 6))],
                {"new_shape": [1, 6]}),
    "SQUEEZE": ([q((1, 1, 6))], [q((1, 6))], {"squeeze_dims": [1]}),
    "PAD": ([q((1, 3, 3, 1)), const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))],
            [q((1, 5, 5, 1))], {}),
    "CONCATENATION": ([q((1, 2, 3)), q((1, 2, 3))], [q((1, 2, 6))], {"axis": 2}),
    "MEAN": ([q((1, 4, 4, 2)), const(np.array([1, 2], np.int32))], [q((1, 1, 1, 2))],
             {"keep_dims": True}),
    "QUANTIZE": ([TensorSpec((1, 8), "float32")], [q((1, 8), 0.05, 3)], {}),
    "DEQUANTIZE": ([q((1, 8), 0.05, 3)], [TensorSpec((1, 8), "float32")], {}),
    "RELU": ([q((1, 8), 0.05, -10)], [q((1, 8), 0.05, -128)], {}),
    "RELU6": ([q((1, 8), 0.05, -10)], [q((1, 8), 6 / 255, -128)], {}),
    "LEAKY_RELU": ([q((1, 8), 0.05, -10)], [q((1, 8), 0.05, 0)], {"alpha": 0.2}),
    "HARD_SWISH": ([q((1, 8), 0.05, -10)], [q((1, 8), 0.04, -20)], {}),
}


def _random_inputs(model):
    rng = np.random.default_rng(0)
    out = []
    for t in model.input_tensors:
        if t.dtype == "int8":
            out.append(rng.integers(-128, 128, t.shape, dtype=np.int8))
        else:
            out.append(rng.standard_normal(t.shape).astype(t.np_dtype))
    return out


@pytest.mark.parametrize("opcode", sorted(OP_CASES))
def test_single_op_models_run_in_tflm_and_litert(opcode):
    inputs, outputs, options = OP_CASES[opcode]
    data = single_op_model(opcode, inputs, outputs, options)
    model = read_model_bytes(data)
    assert [op.opcode for op in model.operators] == [opcode]
    for key, value in options.items():
        expected = np.float32(value) if isinstance(value, float) else value
        assert model.operators[0].options[key] == expected
    x = _random_inputs(model)
    tflm = TflmInterpreter(data).invoke(x)
    litert = LiteRTInterpreter(data).invoke(x)
    assert tflm[0].shape == litert[0].shape == outputs[0].shape
    if opcode in ("RELU", "MAX_POOL_2D", "CONCATENATION", "RESHAPE", "SQUEEZE", "PAD"):
        np.testing.assert_array_equal(tflm[0], litert[0])


def test_relu_values_follow_the_quantization():
    data = single_op_model("RELU", [q((1, 8), 0.05, -10)], [q((1, 8), 0.05, -10)])
    x = np.arange(-40, 40, 10, dtype=np.int8).reshape(1, 8)
    out = TflmInterpreter(data).invoke([x])[0]
    np.testing.assert_array_equal(out, np.maximum(x, -10))


def test_round_trip_every_field():
    g = GraphBuilder(description="round trip")
    x = g.add_tensor((1, 4, 4, 3), "int8", scale=0.5, zero_point=-7, name="input")
    w = g.add_constant(W_CONV, scale=S4, zero_point=[0, 0, 0, 0], axis=0, name="weights")
    b = g.add_constant(np.array([1, -2, 3, -4], np.int32), scale=[0.5 * s for s in S4],
                       zero_point=[0] * 4)
    y = g.add_tensor((1, 4, 4, 4), "int8", scale=0.25, zero_point=5)
    z = g.add_tensor((1, 64), "int8", scale=0.25, zero_point=5)
    h = g.add_constant(np.arange(-8, 8, dtype=np.int8).reshape(4, 4), "int4", scale=0.1)
    g.add_op("CONV_2D", [x, w, b], [y], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                         "fused_activation_function": "RELU6"})
    g.add_op("RESHAPE", [y], [z], {"new_shape": [1, 64]})
    built = g.model()
    back = read_model_bytes(write_model(built))
    assert back.inputs == (x,) and back.outputs == (z,)
    assert back.description == "round trip"
    assert back.num_subgraphs == 1
    for a, r in zip(built.tensors, back.tensors, strict=True):
        assert (a.index, a.name, a.shape, a.dtype, a.quant, a.data, a.is_variable) == \
            (r.index, r.name, r.shape, r.dtype, r.quant, r.data, r.is_variable)
    assert back.tensor(h).array().tolist() == np.arange(-8, 8).reshape(4, 4).tolist()
    assert back.tensor(w).quant.per_channel and back.tensor(w).quant.axis == 0
    conv = back.operators[0]
    assert conv.opcode == "CONV_2D" and conv.version == 3 and conv.inputs == (x, w, b)
    assert dict(conv.options) == {
        "padding": "SAME", "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1,
        "dilation_h_factor": 1, "fused_activation_function": "RELU6",
        "quantized_bias_type": "float32"}
    assert dict(back.operators[1].options) == {"new_shape": [1, 64]}


def test_constant_data_is_16_byte_aligned():
    g = GraphBuilder()
    x = g.add_tensor((1, 3), "int8", scale=0.1)
    c = g.add_constant(np.array([[1, 2, 3]], np.int8), scale=0.1)
    y = g.add_tensor((1, 3), "int8", scale=0.1)
    g.add_op("ADD", [x, c], [y])
    data = g.build()
    offset = data.find(bytes([1, 2, 3]))
    assert offset > 0 and offset % 16 == 0


@pytest.mark.parametrize("name", MLPERF_INT8)
def test_mlperf_models_round_trip_and_run_identically(name):
    path = mlperf_model(name)
    model = read_model(path)
    data = write_model(model)
    back = read_model_bytes(data)
    assert back.tensors == model.tensors
    assert back.operators == model.operators
    assert (back.inputs, back.outputs) == (model.inputs, model.outputs)
    x = _random_inputs(model)
    original = TflmInterpreter(path.read_bytes()).invoke(x)
    rewritten = TflmInterpreter(data).invoke(x)
    for a, b in zip(original, rewritten, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_options_are_named():
    with pytest.raises(ModelError, match="unknown option"):
        single_op_model("SOFTMAX", [q((1, 4))], [q((1, 4), 1 / 256, -128)], {"betta": 1.0})
    with pytest.raises(ModelError, match="padding='SAMEISH'"):
        single_op_model("CONV_2D", [q((1, 3, 3, 1)), const(np.ones((1, 1, 1, 1), np.int8), 0.1)],
                        [q((1, 3, 3, 1))], {"padding": "SAMEISH"})
    with pytest.raises(ModelError, match="takes no builtin options"):
        single_op_model("RELU", [q((1, 4))], [q((1, 4))], {"alpha": 1.0})
