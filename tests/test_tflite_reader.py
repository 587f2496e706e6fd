"""The TensorFlow-free reader: fields, options, quantization, buffers, and its errors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import flatbuffers
import numpy as np
import pytest
from conftest import MLPERF_INT8, mlperf_model

from tinyq.errors import ModelError
from tinyq.model.tflite_reader import camel_case, read_model, read_model_bytes, snake_case
from tinyq.model.tflite_writer import GraphBuilder, write_model


def _small_model() -> bytes:
    g = GraphBuilder(description="small")
    x = g.add_tensor((1, 6, 6, 2), "int8", scale=0.25, zero_point=-4, name="x")
    w = g.add_constant(np.arange(18, dtype=np.int8).reshape(1, 3, 3, 2),
                       scale=[0.5, 0.25], zero_point=[0, 0], axis=3, name="dw_w")
    b = g.add_constant(np.array([7, -7], np.int32), scale=[0.125, 0.0625], zero_point=[0, 0])
    y = g.add_tensor((1, 3, 3, 2), "int8", scale=0.5, zero_point=1, name="y")
    p = g.add_tensor((1, 1, 1, 2), "int8", scale=0.5, zero_point=1, name="pooled")
    g.add_op("DEPTHWISE_CONV_2D", [x, w, b], [y],
             {"padding": "SAME", "stride_w": 2, "stride_h": 2,
              "fused_activation_function": "RELU6"})
    g.add_op("MAX_POOL_2D", [y], [p], {"filter_width": 3, "filter_height": 3, "stride_w": 1,
                                       "stride_h": 1})
    return g.build()


def test_reads_every_field_of_a_model_built_in_code(tmp_path):
    path = tmp_path / "small.tflite"
    data = _small_model()
    path.write_bytes(data)
    m = read_model(path)
    assert m.path == str(path) and m.size_bytes == len(data) and len(m.sha256) == 64
    assert m.description == "small" and m.schema_version == 3 and m.num_subgraphs == 1
    assert [t.name for t in m.input_tensors] == ["x"]
    assert [t.name for t in m.output_tensors] == ["pooled"]
    w = m.tensors[1]
    assert w.shape == (1, 3, 3, 2) and w.dtype == "int8" and w.is_constant
    assert w.quant.scale == (0.5, 0.25) and w.quant.axis == 3 and w.quant.per_channel
    assert w.array().ravel().tolist() == list(range(18))
    assert m.tensors[2].array().tolist() == [7, -7]
    assert m.tensors[0].quant.zero_point == (-4,) and not m.tensors[0].is_constant
    dw, pool = m.operators
    assert (dw.opcode, dw.version) == ("DEPTHWISE_CONV_2D", 3)
    assert (dw.inputs, dw.outputs) == ((0, 1, 2), (3,))
    assert dict(dw.options) == {"padding": "SAME", "stride_w": 2, "stride_h": 2,
                                "depth_multiplier": 1, "fused_activation_function": "RELU6",
                                "dilation_w_factor": 1, "dilation_h_factor": 1}
    assert pool.options["filter_width"] == 3 and pool.options["padding"] == "VALID"
    assert m.op_set == (("DEPTHWISE_CONV_2D", 3), ("MAX_POOL_2D", 2))


def test_buffers_stored_after_the_flatbuffer_are_refused():
    # TFLM (the oracle and the firmware) reads such buffers as zeros: refuse, never guess
    model = read_model_bytes(_small_model())
    external = write_model(model, external_buffers=True)
    with pytest.raises(ModelError, match=r"tensor 1 \('dw_w'\) keeps its data after the "
                                         r"flatbuffer .*re-export the model without external"):
        read_model_bytes(external, "m.tflite")


def _two_subgraph_model() -> bytes:
    mods = {n: importlib.import_module(f"tflite.{n}")
            for n in ("Model", "SubGraph", "Buffer", "Tensor")}
    b = flatbuffers.Builder(256)
    subgraphs = []
    for _ in range(2):      # each: one tensor, both the input and the output, no ops
        mods["Tensor"].TensorStart(b)
        tensor = mods["Tensor"].TensorEnd(b)
        mods["SubGraph"].SubGraphStartTensorsVector(b, 1)
        b.PrependUOffsetTRelative(tensor)
        tensors = b.EndVector()
        io = [b.CreateNumpyVector(np.array([0], np.int32)) for _ in range(2)]
        mods["SubGraph"].SubGraphStart(b)
        mods["SubGraph"].SubGraphAddTensors(b, tensors)
        mods["SubGraph"].SubGraphAddInputs(b, io[0])
        mods["SubGraph"].SubGraphAddOutputs(b, io[1])
        subgraphs.append(mods["SubGraph"].SubGraphEnd(b))
    mods["Buffer"].BufferStart(b)
    buf = mods["Buffer"].BufferEnd(b)
    mods["Model"].ModelStartSubgraphsVector(b, 2)
    for s in reversed(subgraphs):
        b.PrependUOffsetTRelative(s)
    sg_vec = b.EndVector()
    mods["Model"].ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(buf)
    buf_vec = b.EndVector()
    mods["Model"].ModelStart(b)
    mods["Model"].ModelAddVersion(b, 3)
    mods["Model"].ModelAddSubgraphs(b, sg_vec)
    mods["Model"].ModelAddBuffers(b, buf_vec)
    b.Finish(mods["Model"].ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_more_than_one_subgraph_reads_subgraph_0_and_counts_them():
    m = read_model_bytes(_two_subgraph_model())
    assert m.num_subgraphs == 2 and m.operators == ()


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_model(tmp_path / "nope.tflite")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        read_model(tmp_path)


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        read_model(path)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        read_model_bytes(b"TFL")          # too short for the identifier, but not empty


def test_empty_file_says_empty(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelError) as info:
        read_model(path)
    message = str(info.value)
    assert message.startswith(f"{path} is empty (0 bytes) — ")
    assert "identifier" not in message and "\n" not in message
    with pytest.raises(ModelError, match=r"^<bytes> is empty \(0 bytes\)"):
        read_model_bytes(b"")


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_file(keep):
    data = _small_model()
    with pytest.raises(ModelError, match="truncated or corrupt"):
        read_model_bytes(data[:int(len(data) * keep)])


def test_truncated_errors_are_model_errors_at_every_length():
    """Each cut either raises ModelError or (cutting only trailing padding) reads the same
    model; any other exception, or a different model, fails."""
    data = _small_model()
    full = read_model_bytes(data)
    errors = 0
    for n in range(8, len(data), 7):
        try:
            cut = read_model_bytes(data[:n])
        except ModelError:
            errors += 1
            continue
        assert (cut.tensors, cut.operators) == (full.tensors, full.operators), n
    assert errors >= len(range(8, len(data) - 32, 7))     # all but the padded tail


def test_case_conversion_matches_the_schema_spelling():
    assert snake_case("DilationWFactor") == "dilation_w_factor"
    assert snake_case("PotScaleInt16") == "pot_scale_int16"
    assert camel_case("dilation_w_factor") == "DilationWFactor"


def test_reader_does_not_import_tensorflow(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(_small_model())
    code = ("import sys; from tinyq.model.tflite_reader import read_model; "
            f"read_model({str(path)!r}); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", MLPERF_INT8)
def test_mlperf_models(name):
    m = read_model(mlperf_model(name))
    assert m.num_subgraphs == 1 and m.operators
    assert all(t.dtype == "int8" for t in m.input_tensors)
    ops = {op.opcode for op in m.operators}
    assert "FULLY_CONNECTED" in ops
    for op in m.operators:
        if op.opcode == "CONV_2D":
            assert op.options["padding"] in ("SAME", "VALID")
            assert m.tensors[op.inputs[1]].quant.per_channel
