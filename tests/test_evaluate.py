"""tinyq.convert.evaluation: metrics and per-layer SQNR on models of exactly known error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tinyq.convert.evaluation import (
    LAYER_SAMPLES,
    compute_metrics,
    evaluate,
    evaluate_bytes,
    sqnr_db,
)
from tinyq.errors import DataError, ModelError, UserInputError
from tinyq.model.tflite_writer import GraphBuilder

SCALE, ZERO_POINT = float(np.float32(0.05)), -10   # as stored (float32); range [-5.9, 6.85]
N, WIDTH = 50, 8


def relu_reshape(dtype: str, names=("x", "h", "y")) -> bytes:
    """x -> RELU -> h -> RESHAPE -> y, all (1, 8); int8 tensors share one scale/zero point.

    With equal input/output quantization RELU is max(q, zero_point) and RESHAPE copies, so
    the int8 model computes relu(dequantize(quantize(x))) exactly.
    """
    g = GraphBuilder()
    q = {"scale": SCALE, "zero_point": ZERO_POINT} if dtype == "int8" else {}
    x = g.add_tensor((1, WIDTH), dtype, name=names[0], **q)
    h = g.add_tensor((1, WIDTH), dtype, name=names[1], **q)
    shape = g.add_constant(np.array([1, WIDTH], np.int32), name="shape")
    y = g.add_tensor((1, WIDTH), dtype, name=names[2], **q)
    g.add_op("RELU", [x], [h])
    g.add_op("RESHAPE", [h, shape], [y], {"new_shape": [1, WIDTH]})
    return g.build([x], [y])


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    x = rng.uniform(-8, 8, size=(N, WIDTH)).astype(np.float32)   # some beyond the int8 range
    labels = rng.integers(0, WIDTH, size=N)
    return x, labels


def expected(x: np.ndarray) -> np.ndarray:
    q = np.clip(np.round(x.astype(np.float64) / SCALE) + ZERO_POINT, -128, 127)
    deq = ((q - ZERO_POINT) * SCALE).astype(np.float32)
    return np.maximum(deq, 0)


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_known_answer(samples, runtime):
    x, labels = samples
    from tinyq.data import Dataset

    report = evaluate_bytes(relu_reshape("int8"), Dataset(x, labels, "test"),
                            relu_reshape("float32"), runtime, name="m.tflite",
                            reference_name="ref.tflite")
    got, want = expected(x).astype(np.float64), np.maximum(x, 0).astype(np.float64)
    np.testing.assert_array_equal(report.outputs, expected(x))
    diff = got - want
    m = report.metrics
    assert m.max_abs_error == pytest.approx(np.max(np.abs(diff)), rel=1e-9)
    assert m.rmse == pytest.approx(np.sqrt(np.mean(diff ** 2)), rel=1e-9)
    assert m.relative_l2 == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(want), rel=1e-9)
    cos = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert m.cosine_similarity == pytest.approx(np.mean(cos), rel=1e-9)
    assert m.top1_agreement == pytest.approx(np.mean(got.argmax(1) == want.argmax(1)))
    assert report.accuracy == pytest.approx(np.mean(got.argmax(1) == labels))
    assert report.reference_accuracy == pytest.approx(np.mean(want.argmax(1) == labels))
    assert m.max_abs_error > 1.0          # clipping beyond 6.85 really happened

    # both layers carry the same values: SQNR over the first LAYER_SAMPLES samples
    k = LAYER_SAMPLES
    sqnr = 10 * math.log10(np.sum(want[:k] ** 2) / np.sum((got[:k] - want[:k]) ** 2))
    assert [(e.op, e.name, e.matched_by) for e in report.layers] == [
        ("RELU", "h", "name"), ("RESHAPE", "y", "name")]
    for layer in report.layers:
        assert layer.sqnr_db == pytest.approx(sqnr, rel=1e-9)
        assert layer.max_abs_error == pytest.approx(np.max(np.abs(diff[:k])), rel=1e-6)
    assert report.layer_samples == k and report.mode == "int8"
    data = report.to_json()
    json.dumps(data)
    assert {"model", "mode", "size_bytes", "accuracy", "reference_accuracy", "metrics",
            "layers"} <= set(data)
    assert data["layers"][0]["sqnr_db"] == pytest.approx(sqnr, abs=1e-3)


def test_layers_matched_by_position_when_names_differ(samples):
    x, _ = samples
    report = evaluate_bytes(relu_reshape("int8"), x,
                            relu_reshape("float32", ("a", "b", "c")))
    assert [e.matched_by for e in report.layers] == ["position", "position"]
    assert report.accuracy is None and report.reference_accuracy is None


def test_unmatched_layers_are_listed_as_skipped(samples):
    x, _ = samples
    g = GraphBuilder()
    a = g.add_tensor((1, WIDTH), "float32", name="in")
    b = g.add_tensor((1, WIDTH), "float32", name="other")
    g.add_op("TANH", [a], [b])
    report = evaluate_bytes(relu_reshape("int8"), x, g.build([a], [b]))
    assert report.layers == ()
    assert report.layers_skipped == ("RELU #0 (h): no reference op with this output name",
                                     "RESHAPE #1 (y): no reference op with this output name")


def test_position_fallback_skips_an_op_only_one_graph_has(samples):
    x, _ = samples
    g = GraphBuilder()
    a = g.add_tensor((1, WIDTH), "float32", name="a")
    b = g.add_tensor((1, WIDTH), "float32", name="b")
    c = g.add_tensor((1, WIDTH), "float32", name="c")
    g.add_op("RELU", [a], [b])
    g.add_op("RELU", [b], [c])          # relu(relu(x)) == relu(x): an extra op, same values
    report = evaluate_bytes(relu_reshape("int8"), x, g.build([a], [c]))
    assert [(e.op, e.matched_by) for e in report.layers] == [("RELU", "position")]
    assert report.layers_skipped == ("RESHAPE #1 (y): no reference op with this output name",)


def test_float_model_against_itself_is_exact(samples):
    x, _ = samples
    model = relu_reshape("float32")
    report = evaluate_bytes(model, x, model)
    assert report.metrics.max_abs_error == 0 and report.metrics.cosine_similarity == 1.0
    assert all(e.sqnr_db == math.inf for e in report.layers)
    assert report.to_json()["layers"][0] == {
        "name": "h", "op": "RELU", "index": 0, "sqnr_db": None, "exact": True,
        "max_abs_error": 0.0, "matched_by": "name"}


def test_metric_helpers():
    m = compute_metrics(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert m.cosine_similarity == 0 and m.top1_agreement == 0 and m.max_abs_error == 1
    assert compute_metrics(np.ones((3, 1)), np.ones((3, 1))).top1_agreement is None
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert sqnr_db(1.0, 0.0) == math.inf


def test_files_and_errors(samples, tmp_path):
    x, labels = samples
    model, ref = tmp_path / "m.tflite", tmp_path / "ref.tflite"
    model.write_bytes(relu_reshape("int8"))
    ref.write_bytes(relu_reshape("float32"))
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=labels)
    report = evaluate(model, data, reference=ref)
    assert report.reference == str(ref) and report.samples == N
    with pytest.raises(UserInputError, match="is a int8 model, not float32"):
        evaluate(model, data, reference=model)
    truncated = tmp_path / "t.tflite"
    truncated.write_bytes(relu_reshape("int8")[:40])
    with pytest.raises(ModelError):
        evaluate(truncated, data)
    with pytest.raises(ModelError, match="not a .tflite"):
        evaluate(data, data)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match=r"\(5,\).*\(8,\)"):
        evaluate(model, wrong)
    with pytest.raises(UserInputError, match="unknown runtime"):
        evaluate(model, data, runtime="gpu")


# --------------------------------------------------------------------------- with TensorFlow

@pytest.mark.tensorflow
def test_keras_reference(tiny_float_model, tmp_path):
    from tinyq.convert.ptq import QuantizeOptions, quantize

    out = tmp_path / "tiny_int8.tflite"
    quantize(tiny_float_model["model"], tiny_float_model["calib"], QuantizeOptions(), output=out)
    report = evaluate(out, tiny_float_model["test"], reference=tiny_float_model["model"],
                      runtime="tflm")
    assert report.reference_accuracy == 0.5          # by construction of the test labels
    assert report.metrics.top1_agreement >= 0.9 and report.metrics.cosine_similarity > 0.99
    assert {e.op for e in report.layers} == {"CONV_2D", "RESHAPE", "FULLY_CONNECTED"}
    assert all(e.matched_by == "name" and e.sqnr_db > 10 for e in report.layers)


@pytest.mark.tensorflow
def test_digits_int8_within_one_point_and_under_30_percent(digits_artifacts):
    from tinyq.convert.ptq import QuantizeOptions, quantize

    int8 = quantize(digits_artifacts["model"], digits_artifacts["calib"], QuantizeOptions())
    f32 = quantize(digits_artifacts["model"], None, QuantizeOptions(mode="float32"))
    report = evaluate_bytes(int8.tflite, digits_artifacts["test"], f32.tflite, "tflm",
                            layers=False)
    assert report.reference_accuracy > 0.9
    assert abs(report.accuracy - report.reference_accuracy) <= 0.01
    assert int8.size_bytes <= 0.30 * f32.size_bytes


def test_tflm_runtime_refuses_hybrid_models(samples):
    x, _ = samples
    g = GraphBuilder()
    a = g.add_tensor((1, WIDTH), "float32", name="in")
    w = g.add_constant(np.ones((4, WIDTH), np.int8), scale=[0.1] * 4, zero_point=[0] * 4)
    y = g.add_tensor((1, 4), "float32", name="out")
    g.add_op("FULLY_CONNECTED", [a, w, -1], [y])
    from tinyq.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="hybrid"):
        evaluate_bytes(g.build([a], [y]), x, runtime="tflm")
    assert evaluate_bytes(g.build([a], [y]), x).mode == "dynamic"


@pytest.mark.parametrize("bad", [WIDTH, WIDTH + 4, -1])
def test_labels_outside_the_classes_are_refused(samples, tmp_path, bad, capsys):
    from tinyq.cli import main

    x, labels = samples
    model = tmp_path / "m.tflite"
    model.write_bytes(relu_reshape("int8"))
    y = labels.copy()
    y[[3, 5]] = bad
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    with pytest.raises(DataError, match=rf"2 of {N} labels in .*d\.npz are outside the valid "
                                        rf"range 0\.\.{WIDTH - 1}"):
        evaluate(model, data)
    out = tmp_path / "r.json"
    assert main(["evaluate", str(model), "--data", str(data), "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside the valid range" in err and "Traceback" not in err
    assert not out.exists()
