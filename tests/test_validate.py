"""tinyq.measure.validation: accuracy, bit-exactness, truncation, resume (fake device); QEMU e2e."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools

from tinyq.device.fake import FakeDevice, FakeFirmware, Fault
from tinyq.device.protocol import Client, Timeouts
from tinyq.errors import DataError, ProtocolError, UserInputError
from tinyq.measure.validation import (
    ValidateOptions,
    labels_of,
    load_labelled,
    resume_records,
    top1,
    validate,
    validate_on_device,
)
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model_bytes
from tinyq.model.tflite_writer import GraphBuilder

FAST = Timeouts(default=0.3, infer=0.3, infer_per_run=0.1, boot=0.5, probe_after=0.2,
                settle=0.05)
N_SAMPLES = 40


def fc_classifier(n_in: int = 16, n_out: int = 4, seed: int = 0) -> bytes:
    """int8 FULLY_CONNECTED classifier (n_in -> n_out) that TFLM and the native runtime run."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("tinyq validate test classifier")
    x = g.add_tensor((1, n_in), "int8", scale=1 / 64, zero_point=0)
    w = g.add_constant(rng.integers(-127, 128, (n_out, n_in), dtype=np.int8), scale=1 / 128,
                       zero_point=0)
    b = g.add_constant(rng.integers(-500, 500, n_out).astype(np.int32), "int32",
                       scale=1 / 64 / 128, zero_point=0)
    y = g.add_tensor((1, n_out), "int8", scale=1 / 16, zero_point=-3)
    g.add_op("FULLY_CONNECTED", [x, w, b], [y])
    return g.build()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The model file and a labelled test set: labels are the host's predictions, except
    every 8th, which is wrong on purpose (so accuracy is 35/40, not a trivial 1.0)."""
    folder = tmp_path_factory.mktemp("validate")
    model = folder / "fc.tflite"
    data = fc_classifier()
    model.write_bytes(data)
    x = np.random.default_rng(3).uniform(-2, 2, (N_SAMPLES, 16)).astype(np.float32)
    oracle = TflmInterpreter(data)
    xq = np.clip(np.round(x * 64), -128, 127).astype(np.int8)
    y = np.array([int(np.argmax(oracle.invoke([r.reshape(1, 16)])[0])) for r in xq])
    y[::8] = (y[::8] + 1) % 4
    test = folder / "test.npz"
    np.savez(test, x=x, y=y)
    return model, test, x, y


def _client(model_bytes: bytes, corrupt_every: int = 0, faults=()) -> Client:
    oracle = TflmInterpreter(model_bytes)
    count = {"n": 0}

    def compute(inputs):
        x = np.frombuffer(inputs[0], dtype=np.int8).reshape(1, 16)
        out = oracle.invoke([x])[0].tobytes()
        count["n"] += 1
        if corrupt_every and count["n"] % corrupt_every == 0:
            out = bytes([out[0] ^ 1]) + out[1:]          # one LSB off, no wrap
        return [out]

    fw = FakeFirmware(input_sizes=(16,), compute=compute,
                      model_id=read_model_bytes(model_bytes).sha256[:12])
    device = FakeDevice(fw, faults=faults, emulated=True)
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    return client


def _run(case, client, **kw):
    model, test, x, y = case
    return validate_on_device(client, model, "native", x, y, data_name=str(test),
                              data_sha256="d" * 64, board_name="fake", **kw)


def test_device_equal_to_host(case):
    model, _test, _x, y = case
    client = _client(model.read_bytes())
    result = _run(case, client)
    assert result.complete and result.samples == N_SAMPLES and result.missing == 0
    assert result.device_accuracy == result.host_accuracy == 35 / 40
    assert result.bit_exact and result.bit_exact_count == N_SAMPLES and result.max_lsb_diff == 0
    assert result.agreement == N_SAMPLES
    # One session: every sample is db load + db + infer 1 0 + tq-out, nothing else.
    verbs = [c.split()[0] for c in client.device.commands]
    assert verbs.count("infer") == N_SAMPLES and verbs.count("tq-id") == 1
    assert "infer 1 0" in client.device.commands
    rec = json.loads(json.dumps(result.to_json()))
    for key in ("samples", "device_accuracy", "host_accuracy", "bit_exact", "max_lsb_diff"):
        assert key in rec
    assert rec["bit_exact"] is True and rec["complete"] is True
    assert [row[1] for row in rec["per_sample"]] == [int(v) for v in y]


def test_output_differences_are_counted(case):
    model = case[0]
    result = _run(case, _client(model.read_bytes(), corrupt_every=10))
    assert result.complete and not result.bit_exact
    assert result.bit_exact_count == N_SAMPLES - 4 and result.max_lsb_diff == 1


def test_first_samples_only(case):
    result = _run(case, _client(case[0].read_bytes()), samples=5)
    assert result.samples == result.requested == 5 and result.complete


@pytest.mark.parametrize("samples", [0, N_SAMPLES + 1])
def test_sample_count_out_of_range(case, samples):
    with pytest.raises(DataError, match="--samples"):
        _run(case, _client(case[0].read_bytes()), samples=samples)


def test_device_failure_mid_way_is_never_silent(case):
    client = _client(case[0].read_bytes(), faults=[Fault("disconnect", command="infer",
                                                         after=12)])
    result = _run(case, client)
    assert not result.complete
    assert result.samples == 12 and result.requested == N_SAMPLES and result.missing == 28
    assert result.error.startswith("sample 12:") and "disconnected" in result.error
    rec = result.to_json()
    assert rec["complete"] is False and rec["missing"] == 28 and rec["samples"] == 12


def test_timeout_mid_way_keeps_the_samples_done(case):
    client = _client(case[0].read_bytes(), faults=[Fault("silent", command="infer", after=3)])
    result = _run(case, client)
    assert result.samples == 3 and not result.complete and "no m-ready" in result.error


def test_resume_continues_from_the_first_missing_sample(case):
    model = case[0]
    full = _run(case, _client(model.read_bytes()))
    partial = _run(case, _client(model.read_bytes(),
                                 faults=[Fault("disconnect", command="db", after=30)]))
    assert 0 < partial.samples < N_SAMPLES
    done = resume_records(json.loads(json.dumps(partial.to_json())),
                          read_model_bytes(model.read_bytes()).sha256, "d" * 64, N_SAMPLES)
    client = _client(model.read_bytes())
    resumed = _run(case, client, done=done)
    assert resumed.complete and resumed.resumed == partial.samples
    assert resumed.records == full.records
    assert [c.split()[0] for c in client.device.commands].count("infer") == \
        N_SAMPLES - partial.samples


def test_resume_refuses_other_model_or_data(case):
    model = case[0]
    partial = _run(case, _client(model.read_bytes(), faults=[Fault("disconnect",
                                                                   command="infer", after=2)]))
    rec = partial.to_json()
    sha = read_model_bytes(model.read_bytes()).sha256
    with pytest.raises(UserInputError, match="other test data"):
        resume_records(rec, sha, "e" * 64, N_SAMPLES)
    with pytest.raises(UserInputError, match="for model"):
        resume_records(rec, "f" * 64, "d" * 64, N_SAMPLES)
    with pytest.raises(UserInputError, match="not a tinyq validate record"):
        resume_records({"kind": "bench"}, sha, "d" * 64, N_SAMPLES)
    with pytest.raises(UserInputError, match="more than"):
        resume_records(rec, sha, "d" * 64, 1)


def test_wrong_firmware_is_refused_before_any_sample(case):
    client = _client(fc_classifier(seed=1))          # the device runs another model
    with pytest.raises(ProtocolError, match="wrong firmware"):
        _run(case, client)


def test_labels_and_top1():
    assert labels_of(np.array([[0, 1, 0], [1, 0, 0]])).tolist() == [1, 0]
    assert labels_of(np.array([2.0, 1.0])).tolist() == [2, 1]
    with pytest.raises(DataError, match="class indices"):
        labels_of(np.array([0.5, 1.0]))
    assert top1(np.array([[1, 9, 3]], np.int8), 0.1, 0) == 1
    # A single score: positive class when the dequantized value exceeds 0.5.
    assert top1(np.array([[10]], np.int8), 0.1, 0) == 1
    assert top1(np.array([[4]], np.int8), 0.1, 0) == 0


def test_test_data_needs_labels(tmp_path):
    unlabelled = tmp_path / "x.npz"
    np.savez(unlabelled, x=np.zeros((3, 16), np.float32))
    with pytest.raises(DataError, match="labels"):
        load_labelled(unlabelled)
    with pytest.raises(DataError, match="not found"):
        load_labelled(tmp_path / "missing.npz")


@pytest.mark.qemu
def test_validate_on_qemu_mps2_an386(case, tmp_path, monkeypatch, capsys):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    model, test, _x, _y = case
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    result = validate(model, "mps2-an386", test, emulator="qemu",
                      options=ValidateOptions(samples=20))
    assert result.complete and result.samples == 20
    assert result.device_accuracy == result.host_accuracy
    assert result.bit_exact and result.max_lsb_diff == 0

    from tinyq.cli import main

    out = tmp_path / "v.json"
    assert main(["validate", str(model), "--board", "mps2-an386", "--emulator", "qemu",
                 "--data", str(test), "--samples", "8", "--json", str(out)]) == 0
    rec = json.loads(Path(out).read_text())
    assert rec["samples"] == 8 and rec["bit_exact"] is True and rec["complete"] is True
    assert "on-device top-1" in capsys.readouterr().out


def test_ctrl_c_keeps_the_samples_done(case, monkeypatch):
    client = _client(case[0].read_bytes())
    calls = {"n": 0}
    real_infer = client.infer

    def infer(n=1, warmup=0):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_infer(n, warmup)

    monkeypatch.setattr(client, "infer", infer)
    result = _run(case, client)
    assert result.samples == 6 and result.missing == N_SAMPLES - 6
    assert result.error == "sample 6: interrupted (Ctrl-C)"


def test_a_deploy_record_can_be_resumed(case):
    model = case[0]
    partial = _run(case, _client(model.read_bytes(), faults=[Fault("disconnect",
                                                                   command="infer", after=3)]))
    from tinyq.records import SCHEMA_VERSIONS

    record = {**partial.to_json(), "kind": "deploy", "latency": {},
              "schema_version": SCHEMA_VERSIONS["deploy"]}
    done = resume_records(record, read_model_bytes(model.read_bytes()).sha256, "d" * 64,
                          N_SAMPLES)
    assert len(done) == 3


def test_resuming_a_complete_record_is_refused_before_building(case, monkeypatch):
    import tinyq.firmware.compiling

    model, test, _x, _y = case
    full = _run(case, _client(model.read_bytes())).to_json()
    from tinyq.measure.validation import file_sha256
    full["data_sha256"] = file_sha256(test)

    def no_build(*_a, **_k):
        raise AssertionError("must not build")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_build)
    with pytest.raises(UserInputError, match="already holds all"):
        validate(model, "mps2-an386", test, emulator="qemu", resume=full)


def test_labels_outside_the_classes_are_refused_before_building(case, tmp_path, monkeypatch,
                                                                 capsys):
    import tinyq.firmware.compiling
    from tinyq.cli import main

    model, _test, x, y = case
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=np.where(np.arange(len(y)) < 3, 7, y))     # 4 classes; 3 labels are 7

    def no_build(*_a, **_k):
        raise AssertionError("must not build")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_build)
    assert main(["validate", str(model), "--board", "mps2-an386", "--emulator", "qemu",
                 "--data", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"3 of {N_SAMPLES} labels in {bad} are outside the valid range 0..3" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_library_validate_refuses_labels_outside_the_classes(case, tmp_path):
    model, _test, x, y = case
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=np.where(np.arange(len(y)) < 2, -1, y))
    with pytest.raises(DataError, match=r"2 of \d+ labels in .*bad.npz are outside"):
        validate(model, "mps2-an386", bad, emulator="qemu")


# -- validate --jobs: parallel devices, sharded samples, merged in order ----------------

def _fake_devices(monkeypatch, case, fail_at: int | None = None, crash_at: int | None = None):
    """validate's devices become scripted fakes (one per session, like one QEMU each) and
    its build a no-op; returns the list of devices made. The device given sample
    ``fail_at`` disconnects after it; the worker given ``crash_at`` raises."""
    import tinyq.measure.runner
    from tinyq.measure.runner import _specs, samples_from

    model, _test, x, _y = case
    model_bytes = model.read_bytes()
    oracle = TflmInterpreter(model_bytes)
    lock = threading.Lock()         # one interpreter, several device threads
    opened: list[FakeDevice] = []
    spec = _specs(read_model_bytes(model_bytes).input_tensors)
    payloads = [b"".join(a.tobytes() for a in s) for s in samples_from(x, spec)]

    def open_device(board, elf, emulator, port, options):
        def compute(inputs):
            if inputs[0] == payloads[fail_at] if fail_at is not None else False:
                device._dead = True             # the emulator died: the link drops
            if inputs[0] == payloads[crash_at] if crash_at is not None else False:
                raise RuntimeError("worker crashed")
            with lock:
                return [oracle.invoke([np.frombuffer(inputs[0], np.int8).reshape(1, 16)])[0]
                        .tobytes()]

        fw = FakeFirmware(input_sizes=(16,), compute=compute, board=board.name,
                          model_id=read_model_bytes(model_bytes).sha256[:12])
        device = FakeDevice(fw, port=f"fake{len(opened)}", emulated=True)
        opened.append(device)
        return device

    monkeypatch.setattr(tinyq.measure.runner, "open_device", open_device)
    monkeypatch.setattr(tinyq.measure.runner, "build_firmware",
                        lambda *a, **k: type("Fw", (), {"elf": Path("app.elf")})())
    return opened


@pytest.fixture
def fakes(case, monkeypatch):
    return lambda **kw: _fake_devices(monkeypatch, case, **kw)


def _jobs(case, jobs, **kw):
    model, test, _x, _y = case
    return validate(model, "mps2-an386", test, emulator="qemu",
                    options=ValidateOptions(jobs=jobs, timeouts=FAST, **kw.pop("options", {})),
                    **kw)


def _view(a):
    """What must not depend on --jobs (not the device names or the time taken)."""
    keys = ("samples", "per_sample", "device_accuracy", "host_accuracy", "bit_exact",
            "max_lsb_diff", "complete", "model_id", "data_sha256")
    return {k: a.to_json()[k] for k in keys}


def test_jobs_give_the_same_record_as_one_device(case, fakes):
    made = fakes()

    def used():         # devices that ran a session (the pre-build check only makes one)
        return [d for d in made if d.commands]

    one = _jobs(case, 1)
    assert len(used()) == 1
    events = []
    three = validate(case[0], "mps2-an386", case[1], emulator="qemu",
                     options=ValidateOptions(jobs=3, timeouts=FAST), progress=events.append)
    assert len(used()) == 4                         # three more devices, one per shard
    assert _view(one) == _view(three)
    assert three.complete and three.samples == N_SAMPLES
    # each device ran its own contiguous share: 14 + 13 + 13 samples
    assert sorted(d.commands.count("infer 1 0") for d in used()[1:]) == [13, 13, 14]
    merged = [e for e in events if e.stage == "validate" and e.done is not None]
    assert merged[-1].done == merged[-1].total == N_SAMPLES       # one merged bar
    assert [e.done for e in merged] == sorted(e.done for e in merged)


def test_a_failed_shard_keeps_only_the_samples_before_it_and_resumes_exactly(case, fakes):
    fakes(fail_at=25)                         # in the second of 2 shards (20..39)
    partial = _jobs(case, 2)
    assert not partial.complete and partial.samples == 25
    assert [r.index for r in partial.records] == list(range(25))
    assert "sample 25" in partial.error
    fakes()                                         # the device works again
    resumed = _jobs(case, 2, resume=partial.to_json() | {"data_sha256": partial.data_sha256})
    assert resumed.complete and resumed.resumed == 25
    assert _view(resumed) == _view(_jobs(case, 1))


def test_an_early_failed_shard_drops_later_shards_samples(case, fakes):
    fakes(fail_at=3)                          # first shard of 2 stops at sample 3
    partial = _jobs(case, 2)
    assert partial.samples == 3 and partial.missing == N_SAMPLES - 3
    assert [r.index for r in partial.records] == [0, 1, 2]


def test_a_crashed_worker_is_recorded_not_fatal(case, fakes):
    fakes(crash_at=30)                              # the second worker's thread raises
    partial = _jobs(case, 2)
    assert partial.samples == 20 and "worker crashed" in partial.error
    assert [r.index for r in partial.records] == list(range(20))


def test_jobs_over_one_are_refused_on_a_real_board(case):

    with pytest.raises(UserInputError, match="--jobs 2 needs emulators"):
        validate(case[0], "mps2-an386", case[1], port="/dev/null",
                 options=ValidateOptions(jobs=2))


def test_jobs_over_one_on_a_port_is_one_line(case, capsys):
    from tinyq.cli import main

    assert main(["validate", str(case[0]), "--board", "mps2-an386", "--port", "/dev/ttyX",
                 "--data", str(case[1]), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "--jobs 2 needs emulators" in err and err.count("\n") == 1


def test_default_jobs_and_shards():
    from tinyq import boards
    from tinyq.measure.validation import MIN_SAMPLES_PER_JOB, resolve_jobs, shard_ranges

    board = boards.load("mps2-an386")
    assert resolve_jobs(None, board, None, "/dev/ttyACM0", 1000) == 1
    assert resolve_jobs(None, board, "qemu", None, MIN_SAMPLES_PER_JOB) == 1
    assert resolve_jobs(5, board, "qemu", None, 3) == 3       # never an idle emulator
    assert shard_ranges(5, 12, 3) == [range(5, 8), range(8, 10), range(10, 12)]
    assert shard_ranges(0, 2, 4) == [range(0, 1), range(1, 2)]


@pytest.mark.qemu
def test_jobs_on_qemu_give_the_same_record(case, tmp_path, monkeypatch):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    model, test, _x, _y = case
    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    one = validate(model, "mps2-an386", test, emulator="qemu",
                   options=ValidateOptions(samples=12, jobs=1))
    two = validate(model, "mps2-an386", test, emulator="qemu",
                   options=ValidateOptions(samples=12, jobs=2))
    assert two.complete and two.bit_exact and two.device.endswith("and 1 more")
    assert _view(one) == _view(two)
