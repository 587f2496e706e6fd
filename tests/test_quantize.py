"""tinyq.convert.ptq and .model_loader: every mode converts and runs; bad input is one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import mlperf_model

from tinyq.convert.model_loader import check_model_path
from tinyq.convert.ptq import MODES, QuantizeOptions, detect_mode
from tinyq.errors import (
    ConversionError,
    DataError,
    ModelError,
    OutputExistsError,
    ToolNotFoundError,
    UserInputError,
)

# --------------------------------------------------------------------------- no TensorFlow needed


@pytest.mark.parametrize("name, setup, message", [
    ("missing.keras", None, "not found"),
    ("model.tflite", b"TFL3", "already a .tflite"),
    ("model.onnx", b"x", "unknown model format"),
    ("folder", "dir", "without saved_model.pb"),
])
def test_model_path_errors(tmp_path, name, setup, message):
    path = tmp_path / name
    if setup == "dir":
        path.mkdir()
    elif setup is not None:
        path.write_bytes(setup)
    with pytest.raises(ModelError, match=message):
        check_model_path(path)


def test_without_tensorflow_names_the_extra(monkeypatch, tmp_path):
    from tinyq.convert.model_loader import load_model

    path = tmp_path / "m.keras"
    path.write_bytes(b"zip")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ToolNotFoundError, match=r"tinyq\[convert\]"):
        load_model(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "int4"}, "unknown quantization mode"),
    ({"mode": "dynamic", "io": "int8"}, "does not go with"),
    ({"mode": "int8", "io": "int16"}, "does not go with"),
    ({"calib_samples": 0}, "at least 32"),
    ({"calib_samples": 31}, "--calib-samples must be at least 32 to calibrate int8"),
    ({"mode": "int16x8", "calib_samples": 8}, "at least 32 to calibrate int16x8"),
    ({"mode": "dynamic", "calib_samples": 0}, "at least 1, got 0"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        QuantizeOptions(**kwargs)


def test_too_few_calibration_samples_are_refused():
    from tinyq.convert.ptq import MIN_CALIB_SAMPLES, calibration_samples

    few = np.zeros((MIN_CALIB_SAMPLES - 1, 4), np.float32)
    with pytest.raises(DataError, match=rf"array holds {MIN_CALIB_SAMPLES - 1} calibration "
                                        rf"sample\(s\); int8 needs at least {MIN_CALIB_SAMPLES}"):
        calibration_samples(few, (4,), QuantizeOptions())
    with pytest.raises(DataError, match="holds 1 calibration sample"):
        calibration_samples(np.zeros((1, 4), np.float32), (4,), QuantizeOptions(mode="int16x8"))
    enough = calibration_samples(np.zeros((MIN_CALIB_SAMPLES, 4)), (4,), QuantizeOptions())
    assert enough.shape == (MIN_CALIB_SAMPLES, 4)
    # modes without calibration only check the shape
    assert len(calibration_samples(few[:1], (4,), QuantizeOptions(mode="dynamic"))) == 1


def test_default_io_per_mode():
    assert QuantizeOptions().io_type == "int8"
    assert QuantizeOptions(mode="int16x8").io_type == "int16"
    assert QuantizeOptions(mode="int8", io="float32").io_type == "float32"
    assert QuantizeOptions(mode="float16").io_type == "float32"


def _island_model(float_io: bool = False):
    """int8 -> DEQUANTIZE -> ELU -> TANH -> QUANTIZE -> DEQUANTIZE -> GELU -> QUANTIZE -> int8
    (two float islands), or with float_io a float32 model edge around an int8 RELU (none)."""
    from tinyq.model.tflite_writer import GraphBuilder

    g = GraphBuilder()

    def q8(name):
        return g.add_tensor((1, 8), "int8", scale=0.05, zero_point=0, name=name)

    def f32(name):
        return g.add_tensor((1, 8), "float32", name=name)

    if float_io:
        x, a, b, y = f32("in"), q8("q"), q8("model/relu_1/Relu"), f32("out")
        g.add_op("QUANTIZE", [x], [a])
        g.add_op("RELU", [a], [b])
        g.add_op("DEQUANTIZE", [b], [y])
        return g.model()
    x, d1 = q8("in"), f32("tfl.dequantize")
    e, t = f32("model/model/act_elu_1/Elu"), f32("model/model/act_tanh_1/Tanh")
    q1, d2 = q8("tfl.quantize"), f32("tfl.dequantize1")
    gl, y = f32("tf_model/gelu_2/Gelu"), q8("o")
    g.add_op("DEQUANTIZE", [x], [d1])
    g.add_op("ELU", [d1], [e])
    g.add_op("TANH", [e], [t])
    g.add_op("QUANTIZE", [t], [q1])
    g.add_op("DEQUANTIZE", [q1], [d2])
    g.add_op("GELU", [d2], [gl])
    g.add_op("QUANTIZE", [gl], [y])
    return g.model()


def test_float_islands_are_named_with_what_each_runtime_does():
    from tinyq.convert.ptq import float_islands, island_notes

    model = _island_model()
    assert [[op.opcode for op in ops] for ops in float_islands(model)] == [
        ["ELU", "TANH"], ["GELU"]]
    first, second = island_notes(model)
    assert first.startswith("ELU 'act_elu', TANH 'act_tanh' stayed float"), first
    assert ("TFLM runs its float32 ELU kernel; TFLM runs its float32 TANH kernel" in first
            and "native: the native runtime has no kernel for ELU" in first), first
    assert second.startswith("GELU 'gelu_2' stayed float"), second
    assert ("TFLM has no GELU op" in second
            and "native: the native runtime has no kernel for GELU" in second), second
    # float32 I/O puts QUANTIZE/DEQUANTIZE at the model's edge: no island there
    assert float_islands(_island_model(float_io=True)) == []
    assert island_notes(_island_model(float_io=True)) == ()


# --------------------------------------------------------------------------- conversions

@pytest.fixture(scope="module")
def converted(tiny_float_model):
    """mode -> QuantizeResult for every mode, converted once for this module."""
    from tinyq.convert.ptq import quantize

    return {mode: quantize(tiny_float_model["model"], tiny_float_model["calib"],
                           QuantizeOptions(mode=mode)) for mode in MODES}


@pytest.fixture(scope="module")
def float_outputs(tiny_float_model):
    import keras

    model = keras.models.load_model(tiny_float_model["model"])
    x = np.load(tiny_float_model["test"])["x"]
    return x, model.predict(x, verbose=0)


#: max abs output error vs Keras, per mode (outputs are O(1) here; int8/int16x8 clip test
#: samples beyond the calibrated ranges, measured up to 0.05)
TOLERANCE = {"int8": 0.1, "int16x8": 0.1, "dynamic": 0.05, "float16": 0.01, "float32": 1e-5}


@pytest.mark.tensorflow
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_converts_and_runs(converted, float_outputs, mode):
    from tinyq.convert.evaluation import run_model
    from tinyq.model.tflite_reader import read_model_bytes

    result = converted[mode]
    assert result.mode == mode
    assert detect_mode(read_model_bytes(result.tflite)) == mode
    x, want = float_outputs
    got = run_model(result.tflite, x, "litert")
    assert np.max(np.abs(got - want)) < TOLERANCE[mode]
    if mode in ("int8", "int16x8", "float32"):
        tflm = run_model(result.tflite, x, "tflm")
        assert np.max(np.abs(tflm - got)) <= 2 * (result.outputs[0].scale or 1e-6)


@pytest.mark.tensorflow
def test_sizes_and_io(converted):
    r = converted["int8"]
    (inp,), (out,) = r.inputs, r.outputs
    assert inp.dtype == "int8" and inp.shape == (1, 6, 6, 1) and inp.scale > 0
    assert -128 <= inp.zero_point <= 127 and out.dtype == "int8"
    assert dict(r.ops) == {"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}
    assert r.calib_samples == 64 and r.param_count == 4 * 9 + 4 + 64 * 16 + 16 + 16 * 3 + 3
    i16 = converted["int16x8"]
    assert i16.inputs[0].dtype == "int16" and i16.inputs[0].zero_point == 0
    for mode in ("dynamic", "float16", "float32"):
        assert converted[mode].inputs[0].dtype == "float32"
        assert converted[mode].inputs[0].scale is None and converted[mode].calib_samples == 0
    assert converted["int8"].size_bytes < converted["float16"].size_bytes \
        < converted["float32"].size_bytes
    json.dumps(r.to_json())


@pytest.mark.tensorflow
def test_float_io_and_per_tensor_dense(tiny_float_model):
    from tinyq.convert.ptq import quantize
    from tinyq.model.tflite_reader import read_model_bytes

    def fc_weight_scales(data):
        m = read_model_bytes(data)
        return [len(m.tensors[op.inputs[1]].quant.scale) for op in m.operators
                if op.opcode == "FULLY_CONNECTED"]

    default = quantize(tiny_float_model["model"], tiny_float_model["calib"],
                       QuantizeOptions(io="float32"))
    assert default.inputs[0].dtype == "float32" and default.outputs[0].dtype == "float32"
    assert ("QUANTIZE", 1) in default.ops and ("DEQUANTIZE", 1) in default.ops
    assert fc_weight_scales(default.tflite) == [16, 3]          # per-channel
    per_tensor = quantize(tiny_float_model["model"], tiny_float_model["calib"],
                          QuantizeOptions(per_tensor_dense=True, calib_samples=40))
    assert fc_weight_scales(per_tensor.tflite) == [1, 1]
    assert per_tensor.calib_samples == 40


@pytest.mark.tensorflow
def test_output_written_atomically_and_not_overwritten(tiny_float_model, tmp_path):
    from tinyq.convert.ptq import quantize

    out = tmp_path / "m.tflite"
    r = quantize(tiny_float_model["model"], None, QuantizeOptions(mode="float32"), output=out)
    assert out.read_bytes() == r.tflite and r.output == str(out)
    with pytest.raises(OutputExistsError, match="--force"):
        quantize(tiny_float_model["model"], None, QuantizeOptions(mode="float32"), output=out)
    quantize(tiny_float_model["model"], tiny_float_model["calib"], QuantizeOptions(),
             output=out, force=True)
    assert detect_mode(__import__("tinyq").read_model(out)) == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


@pytest.mark.tensorflow
def test_calibration_errors(tiny_float_model, tmp_path):
    from tinyq.convert.ptq import quantize

    model = tiny_float_model["model"]
    with pytest.raises(DataError, match="needs calibration data"):
        quantize(model, None, QuantizeOptions(mode="int16x8"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match=r"\(8, 8, 1\).*\(6, 6, 1\)"):
        quantize(model, bad, QuantizeOptions())
    with pytest.raises(DataError, match="64 samples, 100 were asked"):
        quantize(model, tiny_float_model["calib"], QuantizeOptions(calib_samples=100))
    nan = np.zeros((4, 6, 6, 1), np.float32)
    nan[1, 2, 3, 0] = np.nan
    with pytest.raises(DataError, match="1 NaN"):
        quantize(model, nan, QuantizeOptions())


@pytest.mark.tensorflow
def test_converter_failure_names_the_op():
    import keras

    import tinyq.convert.model_loader as loader
    from tinyq.convert.ptq import convert_here

    inp = keras.Input((6,), batch_size=1)
    model = keras.Model(inp, keras.layers.Lambda(keras.ops.erf, name="erf")(inp))
    fake = loader.FloatModel(path="erf.keras", kind="keras", input_shape=(6,),
                             input_dtype="float32", output_shapes=((6,),), loader="keras",
                             keras_model=model)
    with pytest.raises(ConversionError) as err:
        convert_here(fake, QuantizeOptions(), np.zeros((32, 6), np.float32))
    assert "'tf.Erf' op" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- recurrent layers

STEPS = 12       # time steps of the recurrent test models: short, so conversion stays ~2 s


@pytest.fixture(scope="module")
def recurrent_models(tmp_path_factory):
    """Small recurrent Keras 3 models saved as .keras, calibration data, float outputs."""
    from conftest import require_tensorflow

    require_tensorflow()
    import keras

    keras.utils.set_random_seed(3)
    folder = tmp_path_factory.mktemp("recurrent")
    rng = np.random.default_rng(3)
    x = np.sin(np.linspace(0, 6, STEPS)[None, :, None] * rng.uniform(0.5, 2, (64, 1, 2))
               + rng.uniform(0, 3, (64, 1, 2))).astype(np.float32)
    paths = {"calib": folder / "calib.npy"}
    np.save(paths["calib"], x)
    layers = {"lstm": lambda: keras.layers.LSTM(8, name="lstm"),
              "gru": lambda: keras.layers.GRU(8, name="gru"),
              "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi"),
              "rnncell": lambda: keras.layers.RNN(keras.layers.LSTMCell(4), name="rnn"),
              "open_lstm": lambda: keras.layers.LSTM(4, name="open")}
    floats = {}
    for name, make in layers.items():
        steps = None if name == "open_lstm" else STEPS
        model = keras.Sequential([keras.Input((steps, 2)), make(), keras.layers.Dense(2)])
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
        floats[name] = np.asarray(model(x, training=False))
    return paths, x, floats


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """int8 outputs on the tflite-micro interpreter (state reset before each sequence)
    follow the float model: RMSE under a tenth of the outputs' spread."""
    rmse = float(np.sqrt(np.mean((got - want) ** 2)))
    print(f"rmse {rmse:.4f} = {rmse / float(np.std(want)):.3f} x std")
    assert rmse < 0.1 * float(np.std(want))


@pytest.mark.tensorflow
def test_keras3_lstm_becomes_the_fused_op_tflm_runs(recurrent_models):
    from tinyq.convert.evaluation import run_model
    from tinyq.convert.ptq import quantize

    paths, x, floats = recurrent_models
    r = quantize(paths["lstm"], paths["calib"], QuantizeOptions(mode="int8"))
    ops = dict(r.ops)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops and r.notes == ()
    _assert_close(run_model(r.tflite, x, runtime="tflm"), floats["lstm"])


@pytest.mark.tensorflow
@pytest.mark.parametrize("name, note", [
    ("gru", "GRU 'gru' has no fused TFLite op: unrolled over"),
    ("bilstm", "Bidirectional(LSTM) 'bi' has no TFLM kernel (no bidirectional sequence op): "
               "unrolled over"),
])
def test_gru_and_bidirectional_are_unrolled_with_a_note(recurrent_models, name, note):
    from tinyq.convert.evaluation import run_model
    from tinyq.convert.ptq import quantize

    paths, x, floats = recurrent_models
    r = quantize(paths[name], paths["calib"], QuantizeOptions(mode="int8"))
    ops = dict(r.ops)
    assert "WHILE" not in ops and ops["FULLY_CONNECTED"] >= STEPS
    unrolled = [n for n in r.notes if n.startswith(note)]
    assert len(unrolled) == 1 and unrolled[0].startswith(f"{note} {STEPS} time steps"), r.notes
    # any other note names a layer that stayed float in the unrolled graph
    assert all("stayed float" in n for n in r.notes if n not in unrolled), r.notes
    _assert_close(run_model(r.tflite, x, runtime="tflm"), floats[name])


@pytest.mark.tensorflow
def test_converter_crash_is_one_line_and_the_next_conversion_works(recurrent_models, tmp_path):
    """RNN(LSTMCell) (a WHILE loop) segfaults TensorFlow 2.21's int8 converter (measured)."""
    from tinyq._convert_worker import ConverterProcess
    from tinyq.convert.ptq import quantize

    paths, x, _ = recurrent_models
    out = tmp_path / "rnn.tflite"
    with pytest.raises(ConversionError) as err:
        quantize(paths["rnncell"], paths["calib"], QuantizeOptions(), output=out)
    text = str(err.value)
    assert f"crashed (SIGSEGV) converting {paths['rnncell']} to int8" in text
    assert "RNN 'rnn' converts to a WHILE loop" in text and "\n" not in text
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with ConverterProcess(paths["rnncell"]) as converter:
        with pytest.raises(ConversionError, match="crashed"):
            converter.convert(QuantizeOptions(), x)
        assert converter.convert(QuantizeOptions(mode="float32")).tflite[4:8] == b"TFL3"


# --------------------------------------------------------------------------- model files

@pytest.mark.tensorflow
def test_not_a_keras_file(tmp_path):
    from tinyq.convert.model_loader import load_model

    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="cannot load") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def _legacy_h5(tmp_path, groups: int):
    """A .h5 with DepthwiseConv2D whose config carries ``groups`` as TF <= 2.12 wrote it."""
    import h5py
    import keras

    model = keras.Sequential([keras.Input((5, 5, 2)),
                              keras.layers.DepthwiseConv2D(3, name="dw"),
                              keras.layers.GlobalAveragePooling2D()])
    path = tmp_path / f"legacy_groups{groups}.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "DepthwiseConv2D":
                layer["config"]["groups"] = groups
        f.attrs["model_config"] = json.dumps(config)
    return path, model


@pytest.mark.tensorflow
def test_legacy_depthwise_groups_is_repaired(tmp_path):
    from tinyq.convert.model_loader import load_model

    path, original = _legacy_h5(tmp_path, groups=1)
    loaded = load_model(path)
    assert loaded.repairs == ("DepthwiseConv2D 'dw': dropped legacy groups=1",)
    assert "repaired 1" in loaded.loader
    x = np.random.default_rng(0).random((2, 5, 5, 2), dtype=np.float32)
    np.testing.assert_allclose(loaded.keras_model.predict(x, verbose=0),
                               original.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.tensorflow
def test_unrepairable_legacy_config_fails_in_one_line(tmp_path):
    from tinyq.convert.model_loader import load_model

    path, _ = _legacy_h5(tmp_path, groups=2)
    with pytest.raises(ModelError, match="groups") as err:
        load_model(path)
    assert "\n" not in str(err.value)


@pytest.mark.tensorflow
def test_legacy_saved_model_loads_through_a_maintained_path():
    """With Keras 3 alone, tf.saved_model.load fails ('add_slot') and tinyq falls back to the
    TF1 graph loader; with tf-keras installed (the [qat] extra) TF loads it directly."""
    import importlib.util

    from tinyq.convert.model_loader import load_model

    model = load_model(mlperf_model("kws_ref_model_savedmodel"))
    if importlib.util.find_spec("tf_keras") is None:
        assert model.loader.startswith("tf.compat.v1 graph loader")
        assert "add_slot" in model.loader
    else:
        assert model.loader in ("tf.saved_model",) or model.loader.startswith("tf.compat.v1")
    assert model.input_shape == (49, 10, 1) and model.output_shapes == ((12,),)


@pytest.mark.tensorflow
def test_a_tinyq_folder_in_the_working_directory_does_not_shadow_the_child(
        tiny_float_model, tmp_path, monkeypatch):
    """The converter child imports this tinyq, not ./tinyq (python -m puts the working
    directory first on sys.path; measured with an older checkout as the cwd)."""
    from tinyq.convert.ptq import quantize

    decoy = tmp_path / "tinyq"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy tinyq was imported')\n")
    monkeypatch.chdir(tmp_path)
    r = quantize(tiny_float_model["model"], None, QuantizeOptions(mode="float32"))
    assert r.tflite[4:8] == b"TFL3"


@pytest.mark.tensorflow
def test_a_converter_error_in_the_child_is_one_line_naming_the_op(recurrent_models):
    """An LSTM without fixed time steps cannot be fused or unrolled: the int8 converter
    refuses its WHILE loop's tensor list (measured), and says so through the child."""
    from tinyq.convert.ptq import quantize

    paths, _, _ = recurrent_models
    with pytest.raises(ConversionError) as err:
        quantize(paths["open_lstm"], paths["calib"], QuantizeOptions())
    text = str(err.value)
    assert "the TFLite converter failed (int8): 'tf.TensorListReserve' op" in text
    assert "\n" not in text


def _dense_activation_int8(folder, activation: str):
    """Dense -> Activation(activation) named 'act_<activation>' -> Dense, quantized to int8."""
    from conftest import require_tensorflow

    require_tensorflow()
    import keras

    from tinyq.convert.ptq import quantize

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                              keras.layers.Activation(activation, name=f"act_{activation}"),
                              keras.layers.Dense(4)])
    model.save(folder / f"{activation}.keras")
    np.save(folder / "calib.npy", np.random.default_rng(5).normal(size=(64, 8)))
    return quantize(folder / f"{activation}.keras", folder / "calib.npy",
                    QuantizeOptions(mode="int8"))


@pytest.mark.tensorflow
def test_int8_quantize_names_the_layer_the_converter_left_float(tmp_path):
    r = _dense_activation_int8(tmp_path, "elu")
    assert "DEQUANTIZE" in dict(r.ops)      # the converter still leaves ELU in float32
    (note,) = r.notes
    assert note.startswith("ELU 'act_elu' stayed float"), note
    assert "TFLM runs its float32 ELU kernel" in note and "no kernel for ELU" in note, note


@pytest.mark.tensorflow
@pytest.mark.parametrize("activation, ops", [("silu", {"LOGISTIC", "MUL"}),
                                             ("hard_silu", {"HARD_SWISH"})])
def test_the_gelu_replacements_the_fix_names_run_on_both_runtimes(tmp_path, activation, ops):
    import tinyq.firmware.native.support  # noqa: F401 - registers the native runtime
    from tinyq.model import checks
    from tinyq.model.tflite_reader import read_model_bytes

    r = _dense_activation_int8(tmp_path, activation)
    assert set(dict(r.ops)) == {"FULLY_CONNECTED"} | ops and r.notes == ()
    assert activation in checks.BOTH_RUNTIMES_INSTEAD["GELU"]
    model = read_model_bytes(r.tflite)
    assert checks.problems(model, "tflm") == () and checks.problems(model, "native") == ()
