"""validate beyond top-1: per-class precision/recall and confusion (classify), MAE/RMSE/
cosine/L2r (regress), reconstruction MSE and AUC (anomaly) — on the scripted fake device,
every figure checked against numpy computed here, independently of tinyq's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools
from graphs import fc_int8
from test_validate import FAST, fc_classifier

from tinyq.device.fake import FakeDevice, FakeFirmware
from tinyq.device.protocol import Client
from tinyq.errors import DataError, ModelError, UserInputError
from tinyq.measure.validation import (
    ValidateOptions,
    choose_task,
    load_task_data,
    resume_records,
    roc_auc,
    validate,
    validate_on_device,
)
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes

IN_SCALE, OUT_SCALE = 1 / 16, 1 / 32        # fc_int8's defaults
N = 24


def _oracle_outputs(model: bytes, xq: np.ndarray) -> np.ndarray:
    oracle = TflmInterpreter(model)
    return np.stack([oracle.invoke([row.reshape(1, -1)])[0].reshape(-1) for row in xq])


def _fake_device(model: bytes, n_in: int, corrupt: dict[int, int] | None = None,
                 board: str = "fake") -> FakeDevice:
    """A fake device computing the host's output, except sample k (0-based) of ``corrupt``
    gets ``corrupt[k]`` added to its first output value (in quanta, clipped)."""
    oracle = TflmInterpreter(model)
    count = {"n": 0}

    def compute(inputs):
        out = oracle.invoke([np.frombuffer(inputs[0], np.int8).reshape(1, n_in)])[0].copy()
        k = count["n"]
        count["n"] += 1
        if corrupt and k in corrupt:
            out.reshape(-1)[0] = np.clip(int(out.reshape(-1)[0]) + corrupt[k], -128, 127)
        return [out.tobytes()]

    fw = FakeFirmware(input_sizes=(n_in,), compute=compute, board=board,
                      model_id=read_model_bytes(model).sha256[:12])
    return FakeDevice(fw, emulated=True)


def _client(model: bytes, n_in: int, corrupt: dict[int, int] | None = None) -> Client:
    device = _fake_device(model, n_in, corrupt)
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    return client


def _on_fake(path: Path, data: Path, corrupt=None, task=None):
    model = read_model_bytes(path.read_bytes())
    x, labels, task = load_task_data(data, model, task)
    client = _client(path.read_bytes(), int(np.prod(model.input_tensors[0].shape)), corrupt)
    return validate_on_device(client, path, "native", x, labels, data_name=str(data),
                              data_sha256="d" * 64, board_name="fake", task=task)


def _schema_valid(record):
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra's jsonschema")
    from tinyq.records import schema

    jsonschema.Draft202012Validator(schema("validate")).validate(
        json.loads(json.dumps(record)))


# -- models and data --------------------------------------------------------------------

@pytest.fixture(scope="module")
def regress_case(tmp_path_factory):
    """8 -> 3 regressor; targets are the host's real outputs plus noise (errors not 0)."""
    folder = tmp_path_factory.mktemp("regress")
    rng = np.random.default_rng(1)
    model = fc_int8(rng.integers(-60, 61, (3, 8)).astype(np.int8), description="regressor")
    path = folder / "reg.tflite"
    path.write_bytes(model)
    xq = rng.integers(-20, 21, (N, 8)).astype(np.int8)
    host = _oracle_outputs(model, xq).astype(np.float64) * OUT_SCALE
    y = host + rng.normal(0, 0.2, host.shape)
    data = folder / "reg.npz"
    np.savez(data, x=(xq * IN_SCALE).astype(np.float32), y=y.astype(np.float32))
    return path, data, xq, y.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def anomaly_case(tmp_path_factory):
    """8 -> 8 autoencoder (identity, output range +-4): normal inputs within +-1 come back,
    anomalies of +-6 saturate, so their reconstruction error is large."""
    folder = tmp_path_factory.mktemp("anomaly")
    rng = np.random.default_rng(2)
    model = fc_int8(np.eye(8, dtype=np.int8) * 127, description="autoencoder")
    path = folder / "ae.tflite"
    path.write_bytes(model)
    labels = np.array([0, 1] * (N // 2))
    rng.shuffle(labels)
    xq = rng.integers(-16, 17, (N, 8))
    xq[labels == 1, :3] = rng.choice([-96, 96], (int(labels.sum()), 3))   # +-6.0
    xq[np.flatnonzero(labels == 0)[0]] = 96   # a normal sample scoring above every anomaly
    data = folder / "ae.npz"
    np.savez(data, x=(xq * IN_SCALE).astype(np.float32), y=labels)
    unlabelled = folder / "ae_x.npz"
    np.savez(unlabelled, x=(xq * IN_SCALE).astype(np.float32))
    return path, data, unlabelled, xq.astype(np.int8), labels


# -- regress ----------------------------------------------------------------------------

def _regress_expected(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    d, t = pred.reshape(-1), y.reshape(-1)
    return {"mae": np.mean(np.abs(d - t)), "rmse": np.sqrt(np.mean((d - t) ** 2)),
            "cosine": d @ t / (np.linalg.norm(d) * np.linalg.norm(t)),
            "l2r": np.linalg.norm(d - t) / np.linalg.norm(t)}


def test_regression_metrics_on_device_and_host_match_numpy(regress_case):
    path, data, xq, y = regress_case
    result = _on_fake(path, data, corrupt={3: 5, 10: -7})
    assert result.task == "regress" and result.complete and result.samples == N
    host_q = _oracle_outputs(path.read_bytes(), xq).astype(np.int64)
    dev_q = host_q.copy()
    dev_q[3, 0] += 5
    dev_q[10, 0] -= 7
    reg = result.regression
    for side, q in (("host", host_q), ("device", dev_q)):
        for key, value in _regress_expected(q * OUT_SCALE, y).items():
            assert reg[side][key] == pytest.approx(value, rel=1e-9), (side, key)
    assert reg["device"]["rmse"] != reg["host"]["rmse"]
    diff = (dev_q - host_q).reshape(-1) * OUT_SCALE
    assert reg["device_vs_host"]["rmse"] == pytest.approx(np.sqrt(np.mean(diff ** 2)))
    assert reg["device_vs_host"]["mae"] == pytest.approx(np.mean(np.abs(diff)))
    # bit-exactness stays: two samples differ, by up to 7 quanta
    assert result.bit_exact_count == N - 2 and result.max_lsb_diff == 7
    assert result.device_accuracy is None and result.agreement is None
    record = result.to_json()
    _schema_valid(record)
    assert record["per_sample_columns"][:3] == ["index", "label", "lsb_diff"]


def test_a_regression_record_resumes_to_the_same_metrics(regress_case):
    from tinyq.device.fake import Fault

    path, data, _xq, _y = regress_case
    full = _on_fake(path, data)
    model = read_model_bytes(path.read_bytes())
    x, labels, task = load_task_data(data, model)
    client = _client(path.read_bytes(), 8)
    client.device.faults = [Fault("disconnect", command="infer", after=9)]
    partial = validate_on_device(client, path, "native", x, labels, data_sha256="d" * 64,
                                 task=task)
    assert not partial.complete and partial.samples == 9
    record = json.loads(json.dumps(partial.to_json()))
    done = resume_records(record, model.sha256, "d" * 64, N, task="regress")
    assert done == partial.records          # float sums survive JSON exactly
    rest = validate_on_device(_client(path.read_bytes(), 8), path, "native", x, labels,
                              data_sha256="d" * 64, done=done, task=task)
    assert rest.complete and rest.regression == full.regression
    with pytest.raises(UserInputError, match="task regress, not classify"):
        resume_records(record, model.sha256, "d" * 64, N, task="classify")


# -- anomaly ----------------------------------------------------------------------------

def _auc_by_pairs(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_anomaly_reconstruction_error_and_auc_match_numpy(anomaly_case):
    path, data, _unlabelled, xq, labels = anomaly_case
    result = _on_fake(path, data, corrupt={0: 3})
    assert result.task == "anomaly" and result.complete
    seen = xq.astype(np.float64) * IN_SCALE
    host_q = _oracle_outputs(path.read_bytes(), xq).astype(np.int64)
    dev_q = host_q.copy()
    dev_q[0, 0] = np.clip(dev_q[0, 0] + 3, -128, 127)
    host_mse = np.mean((host_q * OUT_SCALE - seen) ** 2, axis=1)
    dev_mse = np.mean((dev_q * OUT_SCALE - seen) ** 2, axis=1)
    an = result.anomaly
    assert an["score"] == "reconstruction_mse"
    assert an["host_mean_score"] == pytest.approx(host_mse.mean(), rel=1e-12)
    assert an["device_mean_score"] == pytest.approx(dev_mse.mean(), rel=1e-12)
    assert an["max_score_diff"] == pytest.approx(np.max(np.abs(dev_mse - host_mse)))
    assert an["host_auc"] == pytest.approx(_auc_by_pairs(host_mse, labels))
    assert an["device_auc"] == pytest.approx(_auc_by_pairs(dev_mse, labels))
    assert an["host_auc"] == pytest.approx(1 - 1 / 12)   # the far normal sample outranks 12
    assert [row[1] for row in result.to_json()["per_sample"]] == labels.tolist()
    _schema_valid(result.to_json())


def test_anomaly_without_labels_reports_scores_but_no_auc(anomaly_case):
    path, _data, unlabelled, _xq, _labels = anomaly_case
    result = _on_fake(path, unlabelled)
    assert result.task == "anomaly"
    assert result.anomaly["host_auc"] is None and result.anomaly["host_mean_score"] > 0
    _schema_valid(result.to_json())


def test_roc_auc_counts_ties_half_and_needs_both_kinds():
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    scores = np.random.default_rng(0).integers(0, 5, 40).astype(float)    # many ties
    labels = np.arange(40) % 2
    assert roc_auc(scores, labels) == pytest.approx(_auc_by_pairs(scores, labels))
    assert roc_auc([1, 2], [0, 0]) is None


# -- classify ---------------------------------------------------------------------------

def test_confusion_matrix_and_per_class_of_a_tiny_classifier(tmp_path):
    model = fc_classifier()
    path = tmp_path / "cls.tflite"
    path.write_bytes(model)
    rng = np.random.default_rng(4)
    xq = rng.integers(-100, 101, (N, 16)).astype(np.int8)
    host_pred = np.argmax(_oracle_outputs(model, xq), axis=1)
    labels = host_pred.copy()
    labels[::5] = (labels[::5] + 1) % 4
    data = tmp_path / "cls.npz"
    np.savez(data, x=(xq / 64).astype(np.float32), y=labels)
    # the device's output 0 is pushed to the top on samples 2 and 7: class 0 predicted
    result = _on_fake(path, data, corrupt={2: 255, 7: 255})
    dev_pred = host_pred.copy()
    dev_pred[[2, 7]] = 0
    assert result.task == "classify"
    for side, pred in (("host", host_pred), ("device", dev_pred)):
        expected = np.zeros((4, 4), int)
        np.add.at(expected, (labels, pred), 1)
        assert result.confusion(side) == expected.tolist(), side
        for row in result.per_class:
            k = row["class"]
            tp = np.sum((pred == k) & (labels == k))
            assert row["support"] == np.sum(labels == k)
            want_p = tp / np.sum(pred == k) if np.sum(pred == k) else None
            assert row[f"{side}_precision"] == pytest.approx(want_p)
            assert row[f"{side}_recall"] == pytest.approx(tp / np.sum(labels == k))
    assert result.confusion("device") != result.confusion("host")
    _schema_valid(result.to_json())

    from tinyq.measure.report import confusion_png, markdown

    record = result.to_json()
    assert confusion_png(record)[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown(record, {"confusion": "r-confusion.png"})
    assert "### Per class" in text and "![confusion matrices](r-confusion.png)" in text
    assert "the host's differs" in text


# -- choosing the task ------------------------------------------------------------------

def test_the_task_follows_the_labels_and_the_output_shape(regress_case, anomaly_case):
    reg = read_model_bytes(regress_case[0].read_bytes())
    ae = read_model_bytes(anomaly_case[0].read_bytes())
    cls = read_model_bytes(fc_classifier())
    assert choose_task(reg, np.full((4, 3), 0.5)) == "regress"
    assert choose_task(reg, np.array([0, 1, 2, 1])) == "classify"
    assert choose_task(cls, np.array([0, 3, 2, 1])) == "classify"
    soft = np.array([[0.9, 0.05, 0.05, 0.0], [0.1, 0.7, 0.1, 0.1]], np.float32)
    assert choose_task(cls, soft) == "classify"             # smoothed labels, as before
    assert choose_task(cls, soft * 2) == "regress"
    assert choose_task(ae, np.array([0, 1, 1, 0])) == "anomaly"
    assert choose_task(ae, None) == "anomaly"
    assert choose_task(reg, np.array([0, 1, 2, 1]), "regress") == "regress"
    with pytest.raises(UserInputError, match="unknown task"):
        choose_task(reg, None, "segment")


def test_data_that_does_not_fit_the_task_is_one_clear_error(regress_case, anomaly_case,
                                                            tmp_path):
    reg = read_model_bytes(regress_case[0].read_bytes())
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 8), np.float32), y=np.full((4, 2), 0.5, np.float32))
    with pytest.raises(DataError, match=r"shape \(4, 2\); the model's output holds 3"):
        load_task_data(wrong, reg, "regress")
    with pytest.raises(ModelError, match="anomaly validation needs a reconstruction"):
        load_task_data(regress_case[1], reg, "anomaly")
    ae = read_model_bytes(anomaly_case[0].read_bytes())
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=np.zeros((4, 8), np.float32), y=np.array([0, 2, 1, 0]))
    with pytest.raises(DataError, match="not 0 .normal. / 1 .anomaly."):
        load_task_data(odd, ae, "anomaly")


# -- through the command line (fake devices in place of QEMU) ----------------------------

@pytest.fixture
def fake_emulator(monkeypatch):
    """validate's emulator becomes a fake device running the host interpreter, its
    build a no-op (the one device session validate opens)."""
    import tinyq.measure.runner

    def use(model: bytes, n_in: int):
        def open_device(board, elf, emulator, port, options):
            return _fake_device(model, n_in, board=board.name)

        monkeypatch.setattr(tinyq.measure.runner, "open_device", open_device)
        monkeypatch.setattr(tinyq.measure.runner, "build_firmware",
                            lambda *a, **k: type("Fw", (), {"elf": Path("app.elf")})())
    return use


def test_cli_validate_of_a_regression_model(regress_case, fake_emulator, tmp_path, capsys):
    from tinyq.cli import main

    path, data, _xq, _y = regress_case
    fake_emulator(path.read_bytes(), 8)
    out, report = tmp_path / "v.json", tmp_path / "v.md"
    assert main(["validate", str(path), "--board", "mps2-an386", "--emulator", "qemu",
                 "--data", str(data), "--jobs", "1", "--json", str(out),
                 "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "task regress" in printed and "on-device RMSE" in printed
    record = json.loads(out.read_text())
    assert record["task"] == "regress" and record["schema_version"] == 2
    assert "## Regression" in report.read_text() and "on-device L2 relative error" in \
        report.read_text()
    assert not list(tmp_path.glob("v-*.png"))        # no top-1 plot, no confusion matrix


def test_cli_task_flag_and_reference_only_for_classify(regress_case, fake_emulator, tmp_path,
                                                      capsys):
    from tinyq.cli import main

    path, data, _xq, _y = regress_case
    fake_emulator(path.read_bytes(), 8)
    assert main(["validate", str(path), "--board", "mps2-an386", "--emulator", "qemu",
                 "--data", str(data), "--reference", str(path)]) == 1
    err = capsys.readouterr().err
    assert "--reference reports a float model's top-1 accuracy" in err
    assert "Traceback" not in err


@pytest.mark.qemu
def test_validate_a_regression_model_on_qemu(regress_case, tmp_path, monkeypatch):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    path, data, xq, y = regress_case
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    result = validate(path, "mps2-an386", data, emulator="qemu",
                      options=ValidateOptions(samples=8, jobs=1))
    assert result.task == "regress" and result.complete and result.bit_exact
    host = _oracle_outputs(path.read_bytes(), xq[:8]) * OUT_SCALE
    for key, value in _regress_expected(host, y[:8]).items():
        assert result.regression["device"][key] == pytest.approx(value, rel=1e-9)
    assert result.regression["device_vs_host"]["rmse"] == 0


def test_a_version_1_record_reads_as_classify(tmp_path):
    """Records an older tinyq wrote (schema 1, top-1 only) render and resume as classify."""
    from tinyq.measure.report import load_record, markdown

    old = {"kind": "validate", "schema_version": 1, "tinyq": "0.1.0", "model": "m.tflite",
           "model_id": "0123456789ab", "data": "t.npz", "data_sha256": "d",
           "samples": 2, "samples_requested": 3, "complete": False, "missing": 1,
           "device_accuracy": 0.5, "host_accuracy": 0.5, "bit_exact": True,
           "bit_exact_count": 2, "max_lsb_diff": 0, "per_sample": [[0, 1, 1, 1, 0],
                                                                    [1, 2, 0, 0, 0]]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    record = load_record(path)
    assert record["task"] == "classify" and record["schema_version"] == 2
    text = markdown(record)
    assert "## Accuracy" in text and "on-device top-1 | 50.00 % |" in text
    assert "### Per class" not in text        # the old record has no confusion matrix
    done = resume_records(record, "0123456789ab" + "0" * 52, "d", 3)
    assert [(r.label, r.device_pred) for r in done] == [(1, 1), (2, 0)]


def test_report_command_writes_the_confusion_png_of_a_record(tmp_path):
    from tinyq.cli import main

    record = {"kind": "validate", "schema_version": 2, "tinyq": "0.1.0", "model": "m.tflite",
              "task": "classify", "samples": 3, "samples_requested": 3, "complete": True,
              "device_accuracy": 2 / 3, "host_accuracy": 2 / 3, "bit_exact": True,
              "bit_exact_count": 3, "max_lsb_diff": 0,
              "per_class": [{"class": 0, "support": 2, "device_precision": 1.0,
                             "device_recall": 0.5, "host_precision": 1.0, "host_recall": 0.5},
                            {"class": 1, "support": 1, "device_precision": 0.5,
                             "device_recall": 1.0, "host_precision": 0.5, "host_recall": 1.0}],
              "confusion_device": [[1, 1], [0, 1]], "confusion_host": [[1, 1], [0, 1]]}
    path = tmp_path / "v.json"
    path.write_text(json.dumps(record))
    assert main(["report", str(path), "-o", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r-confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 0 | 1 | 1 |" in (tmp_path / "r.md").read_text()


def test_two_regression_records_compare_side_by_side(regress_case):
    from tinyq.measure.report import compare_markdown

    path, data, _xq, _y = regress_case
    exact = _on_fake(path, data).to_json()
    off = _on_fake(path, data, corrupt={k: 9 for k in range(N)}).to_json()
    text = compare_markdown([exact, off], ["exact", "off"])
    row = next(line for line in text.splitlines() if line.startswith("| on-device RMSE"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(exact["regression"]["device"]["rmse"], rel=1e-3)
    assert float(cells[2]) == pytest.approx(off["regression"]["device"]["rmse"], rel=1e-3)
    assert "on-device top-1" not in text and "on-device AUC" not in text
