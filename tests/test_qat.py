"""QAT: Keras 3 -> tf-keras carry-over, fake-quant fine-tuning, int8 conversion, missing extra."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
from conftest import mlperf_model

from tinyq.cli import main
from tinyq.errors import ToolNotFoundError, UnsupportedError


def require_qat() -> None:
    """Skip unless the [qat] extra is importable (checked without importing tfmot)."""
    for module, package in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras"),
                            ("tensorflow_model_optimization", "tensorflow-model-optimization")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs the [qat] extra: {package} is not installed "
                        "(pip install 'tinyq[qat]')")


@pytest.fixture(scope="module")
def keras():
    require_qat()
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _randomize_bn(layer, rng) -> None:
    """Give a BatchNormalization layer non-trivial statistics, so a lost setting shows."""
    gamma, beta, mean, var = layer.get_weights()
    layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                       rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


# --------------------------------------------------------------------------- missing extra

@pytest.mark.parametrize("absent", ["tensorflow_model_optimization", "tf_keras"])
def test_missing_extra_says_how_to_install(absent, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, absent, None)  # `import absent` now raises ImportError
    out = tmp_path / "out.tflite"
    code = main(["qat", str(tmp_path / "model.keras"), "--train", str(tmp_path / "t.npz"),
                 "--calib", str(tmp_path / "t.npz"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "pip install 'tinyq[qat]'" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_import_qat_stack_raises_tool_not_found(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf_keras", None)
    from tinyq.convert.qat_training import import_qat_stack

    with pytest.raises(ToolNotFoundError, match=r"tinyq\[qat\]"):
        import_qat_stack()


# --------------------------------------------------------------------------- carry-over

@pytest.mark.tensorflow
def test_carry_sequential_outputs_equal(keras):
    from tinyq.convert.keras_carry import carry_to_tf_keras, is_tf_keras_model

    rng = np.random.default_rng(1)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(6, 3, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(max_value=6.0),
        L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
        L.MaxPooling2D(),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(10, kernel_regularizer=keras.regularizers.L2(1e-3)),
        L.Softmax(),
    ])
    _randomize_bn(model.layers[1], rng)
    x = rng.random((16, 8, 8, 1), dtype=np.float32)
    result = carry_to_tf_keras(model, x)

    assert is_tf_keras_model(result.model)
    assert [type(layer).__name__ for layer in result.model.layers[1:]] == [
        type(layer).__name__ for layer in model.layers]
    want = np.asarray(model(x, training=False))
    got = np.asarray(result.model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert result.max_abs_diff <= 1e-5
    assert result.dropped == ()
    assert result.model.layers[-2].kernel_regularizer is not None


@pytest.mark.tensorflow
def test_relu6_activations_are_split_off_for_qat_with_the_same_outputs(keras):
    from tinyq.convert.keras_carry import carry_to_tf_keras
    from tinyq.convert.qat_training import check_quantizable

    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2D(4, 3, activation="relu6", name="c"),
                              L.Flatten(), L.Dense(6, activation="relu6", name="d"),
                              L.Dense(3)])
    # weights large enough that the 6 cap is hit, so a missing clamp shows
    model.set_weights([w * 8 for w in model.get_weights()])
    x = np.random.default_rng(4).random((16, 8, 8, 1), dtype=np.float32)
    result = carry_to_tf_keras(model, x, split_activations=True)
    assert [type(layer).__name__ for layer in result.model.layers[1:]] == [
        "Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dense"]
    assert result.split == ("'c' (Conv2D, activation='relu6') -> Conv2D + ReLU(max_value=6)",
                            "'d' (Dense, activation='relu6') -> Dense + ReLU(max_value=6)")
    want = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(result.model(x, training=False)), want,
                               rtol=1e-5, atol=1e-5)
    assert np.max(np.asarray(model.layers[0](x))) == 6.0      # the cap is really hit
    check_quantizable(result.model)           # tfmot takes the split model
    # without the split (what conversion uses), relu6 stays inside the layer: tfmot refuses it
    kept = carry_to_tf_keras(model, x)
    assert kept.split == ()
    with pytest.raises(UnsupportedError, match=r"'c' \(Conv2D, activation 'relu6'\)"):
        check_quantizable(kept.model)


@pytest.mark.tensorflow
def test_carry_functional_outputs_equal(keras):
    from tinyq.convert.keras_carry import carry_to_tf_keras

    rng = np.random.default_rng(2)
    L = keras.layers
    inp = keras.Input((8, 8, 2), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    bn = L.BatchNormalization()
    y = bn(L.Conv2D(8, 1)(x))
    x = L.Add()([x, y])
    head = keras.Sequential([keras.Input((8, 8, 8)), L.Conv2D(5, 3), L.GlobalAveragePooling2D()])
    shared = L.Dense(5, activation="tanh")
    a = shared(head(x))
    b = shared(L.Dense(5)(L.GlobalMaxPooling2D()(x)))
    out = L.Dense(3)(L.Concatenate()([a, b, L.Multiply()([a, b])]))
    model = keras.Model(inp, out)
    _randomize_bn(bn, rng)

    x = rng.normal(size=(8, 8, 8, 2)).astype(np.float32)
    result = carry_to_tf_keras(model, x)
    np.testing.assert_allclose(np.asarray(result.model(x)), np.asarray(model(x)),
                               rtol=1e-5, atol=1e-6)
    # the shared Dense is one layer in the rebuild too
    assert sum(type(layer).__name__ == "Dense" for layer in result.model.layers) == 3

    from tinyq.convert.qat_training import check_quantizable

    # carried over, but tfmot's 8-bit scheme has no recipe for Multiply: named before training
    with pytest.raises(UnsupportedError, match=r"'multiply(_\d+)?' \(Multiply\)"):
        check_quantizable(result.model)


@pytest.mark.tensorflow
def test_carry_real_mlperf_resnet(keras):
    """A real trained model (MLPerf Tiny ResNet, .h5 from an older TF) carries over exactly."""
    from tinyq.convert.keras_carry import carry_to_tf_keras
    from tinyq.convert.model_loader import load_keras_model
    from tinyq.convert.qat_training import check_quantizable

    model = load_keras_model(mlperf_model("pretrainedResnet.h5"))
    x = np.random.default_rng(4).random((4, 32, 32, 3), dtype=np.float32)
    result = carry_to_tf_keras(model, x)
    np.testing.assert_allclose(np.asarray(result.model(x)), np.asarray(model([x])),
                               rtol=1e-4, atol=1e-6)
    check_quantizable(result.model)  # Conv+BN pairs fold, the rest has recipes


@pytest.mark.tensorflow
def test_carry_names_every_unsupported_layer(keras):
    from tinyq.convert.keras_carry import carry_to_tf_keras

    L = keras.layers
    inp = keras.Input((4,))
    x = L.Lambda(lambda t: t * 2.0, name="times_two")(L.Dense(3, name="fc")(inp))
    model = keras.Model(inp, x + 1.0)
    with pytest.raises(UnsupportedError) as info:
        carry_to_tf_keras(model)
    message = str(info.value)
    assert "'times_two' (Lambda" in message and "keras.ops" in message
    assert "\n" not in message
    assert "'fc'" not in message

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = L.Dense(2)

        def call(self, t):
            return self.fc(t)

    sub = Sub()
    sub(np.zeros((1, 4), np.float32))
    with pytest.raises(UnsupportedError, match="subclassed"):
        carry_to_tf_keras(sub)


# --------------------------------------------------------------------------- QAT + conversion

@pytest.fixture(scope="module")
def qat_case(keras):
    """A tiny Keras 3 conv net, carried to tf-keras, fine-tuned 1 epoch with QAT, converted."""
    from tinyq.convert.qat_training import QatOptions, convert_int8, fine_tune, to_tf_keras

    rng = np.random.default_rng(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3), L.BatchNormalization(),
                              L.ReLU(), L.Flatten(), L.Dense(3)])
    _randomize_bn(model.layers[1], rng)  # tfmot folds Conv2D+BatchNormalization
    x = rng.random((96, 6, 6, 1), dtype=np.float32)
    y = (x[:, :3, :, 0].mean(axis=(1, 2)) > x[:, 3:, :, 0].mean(axis=(1, 2))).astype(np.int64)
    y[::7] = 2
    events: list = []
    tfk_model, diff, notes = to_tf_keras(model, x[:4])
    assert notes == ()          # nothing to split off
    q_model, history = fine_tune(tfk_model, x, y, QatOptions(epochs=1, batch_size=32),
                                 val=(x[:32], y[:32]), progress=events.append)
    env_before = os.environ.get("TF_USE_LEGACY_KERAS")
    tflite = convert_int8(q_model, x[:32])
    return {"x": x, "diff": diff, "q_model": q_model, "history": history, "events": events,
            "tflite": tflite, "env_unchanged": os.environ.get("TF_USE_LEGACY_KERAS") == env_before}


@pytest.mark.tensorflow
def test_qat_fine_tune_reports_epochs(qat_case):
    assert qat_case["diff"] is not None and qat_case["diff"] <= 1e-5
    assert [h.epoch for h in qat_case["history"]] == [1]
    assert qat_case["history"][0].val_accuracy is not None
    assert any(e.done == 1 and e.total == 1 for e in qat_case["events"])
    # fake-quant wrappers were inserted
    assert any("Quantize" in type(layer).__name__ for layer in qat_case["q_model"].layers)


@pytest.mark.tensorflow
def test_qat_converts_to_int8_that_tflm_runs(qat_case):
    from tinyq.convert.qat_training import int8_predict
    from tinyq.model.interpreters import TflmInterpreter
    from tinyq.model.tflite_reader import read_model_bytes

    tflite, x = qat_case["tflite"], qat_case["x"]
    assert qat_case["env_unchanged"]
    interp = TflmInterpreter(tflite)
    assert interp.input_details(0).dtype == np.int8
    assert interp.output_details(0).dtype == np.int8
    ir = read_model_bytes(tflite)
    assert {t.dtype for t in ir.tensors if not t.is_constant} <= {"int8", "int32"}, \
        "full-integer model has float activations"
    scores = int8_predict(tflite, x[:16])
    float_scores = np.asarray(qat_case["q_model"](x[:16], training=False))
    out = interp.output_details(0)
    # the int8 model reproduces the fake-quant model within a few output steps
    assert np.max(np.abs(scores - float_scores)) <= 4 * out.scale


@pytest.mark.tensorflow
def test_qat_model_native_runtime_equals_tflm(qat_case):
    """tinyq's native runtime (host build) gives the TFLM interpreter's outputs bit for bit."""
    import shutil

    from tinyq.firmware.native.host import HostModel
    from tinyq.model.interpreters import TflmInterpreter
    from tinyq.model.tflite_reader import read_model_bytes

    if shutil.which(os.environ.get("CC", "gcc")) is None:
        pytest.skip("no host C compiler (gcc) for the native runtime's host build")
    tflite = qat_case["tflite"]
    tflm = TflmInterpreter(tflite)
    native = HostModel(read_model_bytes(tflite))
    inp = tflm.input_details(0)
    x = qat_case["x"][:24]
    q = np.clip(np.round(x / inp.scale) + inp.zero_point, -128, 127).astype(np.int8)
    for row in q:
        want = tflm.invoke([row.reshape(inp.shape)])[0]
        got = native.invoke([row.reshape(inp.shape)])[0]
        np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1))


@pytest.mark.tensorflow
def test_tfmot_import_leaves_keras3_in_place(keras):
    """tfmot sets TF_USE_LEGACY_KERAS=1 on import; tinyq must undo it."""
    from tinyq.convert.qat_training import import_qat_stack

    before = os.environ.get("TF_USE_LEGACY_KERAS")
    tf, tfk, tfmot = import_qat_stack()
    assert os.environ.get("TF_USE_LEGACY_KERAS") == before
    assert tfk.__name__ == "tf_keras"
    assert tf.keras.version().startswith("3.")


def test_docs_list_every_carried_layer():
    """docs/qat.md names exactly the layers in the carry table."""
    import re
    from pathlib import Path

    from tinyq.convert.keras_carry import CARRIERS

    text = (Path(__file__).resolve().parent.parent / "docs" / "qat.md").read_text()
    section = text.split("### Layers carried from Keras 3 to tf-keras", 1)[1]
    section = section.split("(the table", 1)[0]
    assert set(re.findall(r"`(\w+)`", section)) == set(CARRIERS)


# --------------------------------------------------------------------------- API and CLI

@pytest.fixture(scope="module")
def digits_files(keras, tmp_path_factory):
    """A small float Keras 3 model on 8x8 digits, saved, with train/val .npz files."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    L = keras.layers
    folder = tmp_path_factory.mktemp("qat_digits")
    np.savez(folder / "train.npz", x=x[:600], y=y[:600])
    np.savez(folder / "val.npz", x=x[1500:], y=y[1500:])
    np.savez(folder / "nolabels.npz", x=x[:50])
    for name, activation in (("model", "relu"), ("relu6", "relu6")):
        model = keras.Sequential([keras.Input((8, 8, 1)),
                                  L.Conv2D(4, 3, activation=activation),
                                  L.Flatten(), L.Dense(10)])
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x[:600], y[:600], epochs=3, verbose=0)
        model.save(folder / f"{name}.keras")
    return folder


def _qat_one_epoch(f, model, out, report, capsys, *extra):
    """`tinyq qat` on digits_files' ``model``.keras for one epoch; its captured output."""
    code = main(["qat", str(f / f"{model}.keras"), "--train", str(f / "train.npz"),
                 "--val", str(f / "val.npz"), "--calib", str(f / "train.npz"),
                 "--calib-samples", "50", "--epochs", "1", "-o", str(out), "--json", str(report),
                 *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured


@pytest.mark.tensorflow
def test_cli_qat_writes_int8_model_and_json(digits_files, capsys):
    import json

    from tinyq.model.interpreters import TflmInterpreter

    f = digits_files
    out, report = f / "qat.tflite", f / "qat.json"
    captured = _qat_one_epoch(f, "model", out, report, capsys)
    interp = TflmInterpreter(out.read_bytes())
    assert interp.input_details(0).dtype == np.int8
    data = json.loads(report.read_text())
    assert data["eval_on"] == "validation" and data["eval_samples"] == 297
    assert len(data["history"]) == 1 and data["history"][0]["val_accuracy"] is not None
    assert data["carried_from_keras3"] is True
    for key in ("float_accuracy", "ptq_accuracy", "qat_accuracy"):
        assert 0.0 <= data[key] <= 1.0
    for row in ("float", "PTQ int8", "QAT int8"):
        assert row in captured.out

    # an existing output is refused without --force, and left untouched
    before = out.read_bytes()
    code = main(["qat", str(f / "model.keras"), "--train", str(f / "train.npz"),
                 "--calib", str(f / "train.npz"), "-o", str(out)])
    assert code == 1 and "--force" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.mark.tensorflow
def test_cli_qat_on_relu6_layers_completes_and_notes_the_rewrite(digits_files, capsys):
    import json

    from tinyq.model.tflite_reader import read_model

    f = digits_files
    out, report = f / "relu6_qat.tflite", f / "relu6_qat.json"
    captured = _qat_one_epoch(f, "relu6", out, report, capsys, "--no-ptq")
    (note,) = json.loads(report.read_text())["notes"]
    assert "(Conv2D, activation='relu6') -> Conv2D + ReLU(max_value=6)" in note, note
    assert f"note    {note}" in captured.out
    # the converter fuses the split-off ReLU(max_value=6) back into the convolution
    conv = read_model(out).operators[0]
    assert (conv.opcode, conv.options["fused_activation_function"]) == ("CONV_2D", "RELU6")


@pytest.mark.tensorflow
@pytest.mark.parametrize("args, message", [
    (["--train", "{f}/nolabels.npz"], "no labels"),
    (["--train", "{f}/train.npz", "--epochs", "0"], "epochs must be at least 1"),
])
def test_cli_qat_bad_input_is_one_line(digits_files, capsys, args, message):
    f = digits_files
    out = f / "bad.tflite"
    argv = ["qat", str(f / "model.keras"), "--calib", str(f / "train.npz"), "-o", str(out)]
    code = main(argv + [a.format(f=f) for a in args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.tensorflow
def test_compare_train_adds_qat_row(digits_files, capsys):
    import json

    f = digits_files
    report = f / "compare.json"
    code = main(["compare", str(f / "model.keras"), "--calib", str(f / "train.npz"),
                 "--data", str(f / "val.npz"), "--modes", "int8", "--train",
                 str(f / "train.npz"), "--qat-epochs", "1", "--calib-samples", "50",
                 "--json", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = {row["mode"]: row for row in json.loads(report.read_text())["rows"]}
    assert set(rows) == {"int8", "qat"}
    assert rows["qat"]["tflm_runs"] is True
    assert 0.0 <= rows["qat"]["accuracy"] <= 1.0
    assert any(line.startswith("qat ") for line in captured.out.splitlines())


def test_compare_train_without_extra_fails_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)
    code = main(["compare", str(tmp_path / "model.keras"), "--calib", str(tmp_path / "c.npz"),
                 "--data", str(tmp_path / "d.npz"), "--train", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert code == 1
    assert "pip install 'tinyq[qat]'" in err and "Traceback" not in err
