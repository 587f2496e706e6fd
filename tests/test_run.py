"""tinyq.measure.runner without firmware: comparison with TFLM, inputs, units (fake device)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tinyq.board_profile import Board, Counter, Emulator, Flashing, MemoryRegion, Uart
from tinyq.device.fake import FakeDevice, FakeFirmware
from tinyq.device.protocol import Client, Timeouts
from tinyq.errors import DataError, ProtocolError, UserInputError
from tinyq.measure.runner import (
    RunOptions,
    _specs,
    _units,
    lsb_diff,
    open_device,
    random_inputs,
    run_on_device,
    samples_from,
)
from tinyq.model.interpreters import TflmInterpreter
from tinyq.model.tflite_reader import read_model, read_model_bytes

FAST = Timeouts(default=0.5, infer=0.5, boot=0.5, probe_after=0.2, settle=0.05)

BOARD = Board(
    name="testboard", vendor="t", description="t", core="cortex-m4", fpu="fpv4-sp-d16",
    clock_hz=80_000_000, flash=MemoryRegion("flash", 0, 1 << 20),
    ram=MemoryRegion("ram", 0x20000000, 1 << 17), uart=Uart("cmsdk", 0x40004000),
    counter=Counter("dwt", 80_000_000), flashing=Flashing("pyocd", pyocd_target="x"),
    emulator=Emulator(qemu_machine="mps2-an386"))


@pytest.fixture(scope="module")
def hello(shared_models):
    path = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not path.exists():
        pytest.skip("hello_world_int8.tflite missing")
    return path


def _fake_for(model_bytes, corrupt=False, db_offset=0, model_id=None):
    oracle = TflmInterpreter(model_bytes)

    def compute(inputs):
        x = np.frombuffer(inputs[0], dtype=np.int8).reshape(1, 1)
        out = oracle.invoke([x])[0].tobytes()
        if corrupt:
            out = bytes([(out[0] + 1) & 0xFF]) + out[1:]
        return [out]

    fw = FakeFirmware(input_sizes=(1,), compute=compute, db_offset=db_offset, board=BOARD.name,
                      model_id=model_id or hashlib.sha256(model_bytes).hexdigest()[:12],
                      ticks_per_inference=1000, clock_hz=25_000_000)
    device = FakeDevice(fw, emulated=True)
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    return client


def test_device_output_equal_to_tflm(hello):
    data = hello.read_bytes()
    specs = _specs(read_model(hello).input_tensors)
    samples = random_inputs(specs, 3, seed=0)
    client = _fake_for(data)
    ident, results, ticks, tick_hz, counter, mem = run_on_device(
        client, data, BOARD, "native", samples, RunOptions(runs=3))
    assert all(r.outputs_match and r.max_lsb_diff == 0 for r in results)
    assert ticks == (1000, 1000, 1000) and tick_hz == 25_000_000 and counter == "systick"
    assert _units(ticks, tick_hz, True, BOARD) == ("instructions", 40_000)
    assert mem.arena == 1024


def test_runner_offset_is_undone_before_sending(hello):
    data = hello.read_bytes()
    samples = random_inputs(_specs(read_model(hello).input_tensors), 2, seed=1)
    client = _fake_for(data, db_offset=128)
    _, results, *_ = run_on_device(client, data, BOARD, "native", samples, RunOptions())
    assert all(r.outputs_match for r in results)


def test_one_lsb_off_is_reported(hello):
    data = hello.read_bytes()
    samples = random_inputs(_specs(read_model(hello).input_tensors), 1, seed=2)
    client = _fake_for(data, corrupt=True)
    _, results, *_ = run_on_device(client, data, BOARD, "native", samples, RunOptions())
    assert not results[0].outputs_match and results[0].max_lsb_diff == 1


def test_wrong_model_on_the_device(hello):
    data = hello.read_bytes()
    samples = random_inputs(_specs(read_model(hello).input_tensors), 1, seed=2)
    client = _fake_for(data, model_id="feedfacecafe")
    with pytest.raises(ProtocolError, match="wrong firmware on fake0: it was built for model "
                       "feedfacecafe"):
        run_on_device(client, data, BOARD, "native", samples, RunOptions())


def test_cycles_on_hardware_use_the_core_clock():
    assert _units((10, 12, 11), 80_000_000, False, BOARD) == ("cycles", 11)
    assert _units((10,), 10_000_000, False, BOARD) == ("cycles", 80)     # SysTick at clk/8


def test_lsb_diff():
    assert lsb_diff(bytes([0x7F, 0x80]), bytes([0x7E, 0x81]), np.dtype("int8")) == 1
    assert lsb_diff(np.array([1000], "<i2").tobytes(), np.array([-1000], "<i2").tobytes(),
                    np.dtype("int16")) == 2000
    assert lsb_diff(b"\0", b"\0\0", np.dtype("int8")) == -1


def test_inputs_are_normalised_and_quantized():
    from tinyq.measure.runner import _TensorSpec
    spec = _TensorSpec((1, 2), np.dtype("int8"), 0.5, -1)
    one = samples_from(np.array([[1.0, -1.0]], np.float32), [spec])
    assert len(one) == 1 and one[0][0].tolist() == [[1, -3]]
    batch = samples_from(np.zeros((5, 1, 2), np.int8), [spec])
    assert len(batch) == 5
    with pytest.raises(DataError, match="model input needs"):
        samples_from(np.zeros(3, np.int8), [spec])
    with pytest.raises(DataError, match="NaN"):
        samples_from(np.array([np.nan, 0.0]), [spec])
    with pytest.raises(DataError, match="outside int8's range"):
        samples_from(np.array([300, 0]), [spec])


def test_device_choice_errors(tmp_path):
    elf = tmp_path / "a.elf"
    with pytest.raises(UserInputError, match="choose --emulator or --port, not both"):
        open_device(BOARD, elf, "qemu", "/dev/ttyACM0", RunOptions())
    with pytest.raises(UserInputError, match="no device given for board testboard — pass "
                       "--emulator qemu"):
        open_device(BOARD, elf, None, None, RunOptions())
    with pytest.raises(UserInputError, match="has no Renode platform"):
        open_device(BOARD, elf, "renode", None, RunOptions())
    assert open_device(BOARD, elf, None, "/dev/ttyX", RunOptions()).baud == 115200


def test_json_on_hardware_reports_cycles_and_milliseconds():
    from types import SimpleNamespace

    from tinyq.measure.runner import RunResult

    fw = SimpleNamespace(elf="app.elf", flash_bytes=10, code_bytes=6, model_bytes=4)
    result = RunResult(
        board="b", runtime="native", device="/dev/ttyACM0", emulated=False, model="m.tflite",
        model_id="0123456789ab", unit="cycles", per_inference=80_000, ticks=(80_000,),
        tick_hz=80_000_000, counter="dwt", core_hz=80_000_000, arena_bytes=100, stack_peak=50,
        static_ram=20, outputs_match=True, max_lsb_diff=0, samples=(), input_source="random",
        firmware=fw)
    record = result.to_json()
    assert record["cycles"] == 80_000 and "instructions" not in record
    assert record["ms"] == 1.0
    assert result.cycles == 80_000 and result.instructions is None



CONFLICTS = [
    (["--emulator", "qemu", "--port", "/dev/ttyX"],
     "argument --port: not allowed with argument --emulator"),
    (["--emulator", "qemu", "--no-flash"], "error: --no-flash only applies to a board on --port"),
    (["--baud", "9600"], "error: --baud only applies to a board on --port"),
    (["--probe", "E661"], "error: --probe only applies to a board on --port"),
    (["--mount-point", "/media/x"], "error: --mount-point only applies to a board on --port"),
    (["--kernels", "cmsis_nn"], "error: --kernels cmsis_nn applies to --runtime tflm, not native"),
    (["--samples", "0"], "argument --samples: 0 is not above zero"),
]


def _exit_code(argv) -> object:
    """main()'s return code, or the code argparse exits with."""
    from tinyq.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# bench takes no --samples
CONFLICT_CASES = [(command, extra, message) for command in ("run", "bench", "validate")
                  for extra, message in CONFLICTS
                  if command != "bench" or "--samples" not in extra]


@pytest.mark.parametrize("command, extra, message", CONFLICT_CASES,
                         ids=[f"{c}{e[-2]}" for c, e, _ in CONFLICT_CASES])
def test_conflicting_options_are_usage_errors_before_any_work(command, extra, message, capsys,
                                                              monkeypatch, tmp_path):
    import tinyq.firmware.compiling

    def no_work(*_a, **_k):
        raise AssertionError("must not build before checking the options")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_work)
    argv = [command, str(tmp_path / "m.tflite"), "--board", "mps2-an386", *extra]
    if command == "validate":
        argv += ["--data", str(tmp_path / "t.npz")]
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("error:") == 1


@pytest.mark.parametrize("command", ["run", "bench", "validate", "deploy"])
@pytest.mark.parametrize("baud", ["0", "-5", "fast"])
def test_baud_must_be_a_positive_whole_number(command, baud, capsys, tmp_path):
    argv = [command, str(tmp_path / "m.tflite"), "--board", "mps2-an386",
            "--port", "/dev/null", "--baud", baud]
    if command == "validate":
        argv += ["--data", str(tmp_path / "t.npz")]
    assert _exit_code(argv) == 2
    assert "argument --baud:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "bench", "validate"])
@pytest.mark.parametrize("device, message", [
    (["--emulator", "renode"], "renode"),                              # not installed here
    (["--board", "nucleo-f446re", "--emulator", "qemu"], "has no QEMU machine"),
    (["--board", "nucleo-f446re"], "no device given for board nucleo-f446re"),
    (["--port", "/dev/ttyNOPE", "--board", "nucleo-f446re"], "/dev/ttyNOPE"),
], ids=["renode-missing", "no-qemu-machine", "no-device", "no-port"])
def test_unreachable_device_is_refused_before_building(command, device, message, capsys,
                                                       monkeypatch, tmp_path):
    """Refused in one line before any build: a TFLM build can take minutes."""
    import shutil as sh

    import tinyq.firmware.compiling
    import tinyq.measure.runner
    from tinyq.cli import main
    from tinyq.model.tflite_writer import TensorSpec, single_op_model

    if device[:2] == ["--emulator", "renode"] and sh.which("renode"):
        pytest.skip("renode is installed here")

    def no_build(*_a, **_k):
        raise AssertionError("must not build before checking the device")

    monkeypatch.setattr(tinyq.firmware.compiling, "build", no_build)
    monkeypatch.setattr(tinyq.measure.runner, "build_firmware", no_build)
    model = tmp_path / "m.tflite"
    model.write_bytes(single_op_model("RELU", [TensorSpec((1, 4), "int8", 0.1, 0)],
                                      [TensorSpec((1, 4), "int8", 0.1, 0)]))
    argv = [command, str(model), "--board", "netduinoplus2", *device]
    if command == "validate":
        data = tmp_path / "t.npz"
        np.savez(data, x=np.zeros((2, 1, 4), np.float32), y=np.zeros(2, np.int64))
        argv += ["--data", str(data)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_flash_options_reach_the_flash_step(monkeypatch, tmp_path):
    """--probe/--method/--mount-point of run (and bench, validate, deploy) are the ones
    `tinyq flash` takes, and they reach the flash step."""
    import os
    import types

    import tinyq.device.flashing
    import tinyq.measure.runner
    from tinyq.cli import main
    from tinyq.device.flashing import FlashOptions
    from tinyq.errors import DeviceError
    from tinyq.model.tflite_writer import TensorSpec, single_op_model

    master, slave = os.openpty()          # a real character device for the port check
    try:
        seen = {}

        def fake_flash(elf, board, options=None, progress=None):
            seen["options"] = options
            raise DeviceError("stopped after flashing")

        monkeypatch.setattr(tinyq.device.flashing, "flash", fake_flash)
        monkeypatch.setattr(tinyq.measure.runner, "build_firmware",
                            lambda *a, **k: types.SimpleNamespace(elf=tmp_path / "app.elf"))
        model = tmp_path / "m.tflite"
        model.write_bytes(single_op_model("RELU", [TensorSpec((1, 4), "int8", 0.1, 0)],
                                          [TensorSpec((1, 4), "int8", 0.1, 0)]))
        assert main(["run", str(model), "--board", "rpi-pico", "--port", os.ttyname(slave),
                     "--method", "uf2", "--probe", "E661", "--mount-point", str(tmp_path)]) == 1
        assert seen["options"] == FlashOptions(probe="E661", method="uf2", mount_point=tmp_path)
    finally:
        os.close(master)
        os.close(slave)


def test_a_model_with_3000_outputs_runs_through_a_real_line_reader():
    """Its results line (~22 KB) is longer than the 16 KB default line cap: run raises the
    cap from the model's outputs, so it is not mistaken for a garbled link."""
    from test_protocol import StreamOverFake

    from tinyq.model.tflite_writer import TensorSpec, single_op_model

    spec = TensorSpec((1, 3000), "int8", 0.05, -3)
    data = single_op_model("RELU", [spec], [spec])
    oracle = TflmInterpreter(data)
    fw = FakeFirmware(input_sizes=(3000,), max_db_bytes=3000, board=BOARD.name,
                      model_id=hashlib.sha256(data).hexdigest()[:12],
                      compute=lambda ins: [oracle.invoke(
                          [np.frombuffer(ins[0], np.int8).reshape(1, 3000)])[0].tobytes()])
    device = StreamOverFake(FakeDevice(fw, emulated=True))
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    samples = random_inputs(_specs(read_model_bytes(data).input_tensors), 1, seed=0)
    _ident, results, *_ = run_on_device(client, data, BOARD, "native", samples, RunOptions())
    assert results[0].outputs_match and len(results[0].device_output[0]) == 3000
