"""The MLPerf Tiny runner's data formats, spoken to firmware in QEMU by a client
written from the protocol description: ``cmd%`` commands, answer lines up to
``m-ready``, ``db load N`` then hex in ``db HH..`` chunks, ``infer N W``,
``results``. Each benchmark's answer is checked against the host tflite-micro
interpreter fed what the reference firmware feeds its model.
Also ``tinyq emulate --pty`` opened with pyserial.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import mlperf_model, require_tools

from tinyq.device.virtual_board import PTY_RECONNECT_S
from tinyq.errors import UserInputError
from tinyq.firmware.codegen import GenerateOptions
from tinyq.firmware.codegen.harness import ModelInfo, guess_mlperf_model, harness_config
from tinyq.firmware.compiling import BuildOptions, build
from tinyq.model.interpreters import tflm_invoke

#: Seconds for one answer (the largest command here runs < 10^7 instructions).
ANSWER_TIMEOUT_S = 10.0
#: Bytes per `db` command, as the runner sends them (31 bytes = 62 hex digits).
DB_CHUNK = 31
#: Seconds beyond QEMU's pty poll before the boot lines are surely in (a loaded machine).
PTY_MARGIN_S = 0.5
#: Seconds for `tinyq emulate` to build (cached after the first test) and print its pty.
EMULATE_START_TIMEOUT_S = 120.0


class Client:
    """The DUT conversation over any object with ``write(bytes)`` and ``readline() -> str``."""

    def __init__(self, readline, write) -> None:
        self.readline = readline
        self.write = write

    def until_ready(self) -> list[str]:
        lines = []
        while (line := self.readline()) != "m-ready":
            lines.append(line)
        return lines

    def __call__(self, cmd: str) -> list[str]:
        self.write(cmd.encode("ascii") + b"%")
        return self.until_ready()

    def load(self, data: bytes) -> list[str]:
        """`db load N` and the hex chunks; every answer line, in order."""
        answers = self(f"db load {len(data)}")
        for i in range(0, len(data), DB_CHUNK):
            answers += self("db " + data[i:i + DB_CHUNK].hex())
        return answers


def _qemu_client(dev) -> Client:
    return Client(lambda: dev.readline(ANSWER_TIMEOUT_S), dev.write)


def _firmware(model: Path, mlperf: str, cache: Path):
    return build(model, board="mps2-an386", runtime="native",
                 options=GenerateOptions(mlperf_model=mlperf, semihosting=True),
                 build_options=BuildOptions(cache_dir=cache))


def _quantize(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """The reference's QuantizeFloatToInt8: round(x / scale) (halves away) + zero point."""
    v = (x.astype(np.float32) / np.float32(scale)).astype(np.float64)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zero, -128, 127).astype(np.int8)


def _scores(model: Path, x_int8: np.ndarray) -> tuple[np.ndarray, list[str]]:
    from tinyq.model.tflite_reader import read_model

    out = tflm_invoke(model.read_bytes(), [x_int8])[0].reshape(-1)
    q = read_model(model).output_tensors[0].quant
    real = np.float32(q.scale[0]) * (out.astype(np.float32) - np.float32(q.zero_point[0]))
    return out, real


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    return tmp_path_factory.mktemp("cache")


@pytest.mark.qemu
def test_ad01_takes_float32_and_answers_one_score(cache):
    from tinyq.device.qemu import QemuDevice
    from tinyq.model.tflite_reader import read_model

    model = mlperf_model("ad01_int8.tflite")
    fw = _firmware(model, "auto", cache)              # recognised as ad01 by its shapes
    q = read_model(model).input_tensors[0].quant
    rng = np.random.default_rng(3)
    # Synthetic log-mel-like features; a few land exactly on .5 of a step (rounding ties).
    x = rng.normal(-20.0, 8.0, 640).astype(np.float32)
    x[:4] = np.float32(q.scale[0]) * np.float32([2.5, -2.5, 0.5, -0.5])
    with QemuDevice(fw.elf, "mps2-an386") as dev:
        s = _qemu_client(dev)
        assert s.until_ready()[-1] == "m-init-done"
        assert s("profile")[1] == "m-model-[ad01]"
        answers = s.load(x.astype("<f4").tobytes())
        assert answers == ["m-[Expecting 2560 bytes]", "m-load-done"]
        answer = s("infer 1 0")
        assert answer[:3] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1"]
        result = answer[-1]
        # the runner's int8 size is refused in the reference's words (after a load of 640)
        s.load(bytes(640))
        assert s("infer 1 0") == ["e-[Input db has 640 bytes, expected 2560]"]
        tq_out = bytes.fromhex("".join(line.split("[")[1].rstrip("]")      # the last run's
                                       for line in s("tq-out")))
    x_int8 = _quantize(x, q.scale[0], q.zero_point[0]).reshape(1, 640)
    out, real = _scores(model, x_int8)
    assert tq_out == out.astype(np.int8).tobytes()    # same quantized input as the reference
    total = np.float32(0.0)
    for r, xi in zip(real, x, strict=True):           # the reference's float sum, in order
        d = np.float32(r - xi)
        total = np.float32(total + d * d)
    score = np.float32(total / np.float32(640))
    assert result == f"m-results-[{score:.3f}]"


@pytest.mark.qemu
@pytest.mark.parametrize("name,bench,to_wire", [
    ("kws_ref_model.tflite", "kws01", lambda x: x.astype(np.int8).tobytes()),
    # uint8 pixels; the reference subtracts 128 to make the int8 input
    ("pretrainedResnet_quant.tflite", "ic01", lambda x: (x.astype(np.int16) + 128)
     .astype(np.uint8).tobytes()),
])
def test_int8_benchmarks_answer_every_score(cache, name, bench, to_wire):
    from tinyq.device.qemu import QemuDevice

    model = mlperf_model(name)
    fw = _firmware(model, bench, cache)
    x = np.random.default_rng(5).integers(-128, 128, fw_input_shape(model), dtype=np.int8)
    with QemuDevice(fw.elf, "mps2-an386") as dev:
        s = _qemu_client(dev)
        s.until_ready()
        assert s("profile")[1] == f"m-model-[{bench}]"
        assert s.load(to_wire(x))[-1] == "m-load-done"
        result = s("infer 1 0")[-1]
        assert s("results") == [result]
    _, real = _scores(model, x)
    assert result == "m-results-[" + ",".join(f"{v:.3f}" for v in real) + "]"


def fw_input_shape(model: Path) -> tuple[int, ...]:
    from tinyq.model.tflite_reader import read_model

    return read_model(model).input_tensors[0].shape


@pytest.mark.qemu
def test_emulate_pty_answers_a_serial_client(cache, monkeypatch):
    serial = pytest.importorskip("serial")
    model = mlperf_model("ad01_int8.tflite")
    env_cache = str(cache)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tinyq.cli import main; sys.exit(main())",
         "emulate", str(model), "--board", "mps2-an386", "--pty"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "TINYQ_CACHE_DIR": env_cache,
             "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        deadline = time.monotonic() + EMULATE_START_TIMEOUT_S
        path = None
        while path is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if m := re.search(r"serial pseudo-terminal: (/dev/pts/\d+)", line):
                path = m.group(1)
        assert path
        with serial.Serial(path, 115200, timeout=ANSWER_TIMEOUT_S) as port:
            def readline() -> str:
                line = port.readline()
                assert line.endswith(b"\n"), "no answer"
                return line.decode("ascii").strip()

            s = Client(readline, port.write)
            # QEMU delivers the boot lines once it notices the client (its 1 s poll)
            time.sleep(PTY_RECONNECT_S + PTY_MARGIN_S)
            port.reset_input_buffer()
            assert s("name") == ["m-name-dut-[tinyq-mps2-an386]"]
            assert s("profile")[1] == "m-model-[none]"
            assert s.load(bytes(range(256)) * 2 + bytes(128))[-1] == "m-load-done"
            answer = s("infer 2 1")
            assert answer[-2] == "m-infer-done"
            assert answer[-1].startswith("m-results-[") and answer[-1].count(",") == 639
            assert s("results") == [answer[-1]]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "SIGTERM" in err
    assert "QEMU ended" not in out          # stopped by us, not by QEMU dying
    assert not _qemus_running(env_cache), "QEMU outlived tinyq emulate"


def _qemus_running(marker: str) -> list[str]:
    """Command lines of live qemu-system-arm processes that mention ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-arm") and marker.encode() in b" ".join(args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def _info(inputs, outputs, dtype="int8") -> ModelInfo:
    return ModelInfo("m.tflite", "0" * 64, input_bytes=4, num_layers=1,
                     input_shapes=inputs, output_shapes=outputs, input_dtype=dtype)


def test_guess_and_refusals():
    assert guess_mlperf_model(_info(((1, 49, 10, 1),), ((1, 12),))) == "kws01"
    assert guess_mlperf_model(_info(((1, 640),), ((1, 640),))) == "ad01"
    with pytest.raises(UserInputError, match="not shaped like an MLPerf Tiny") as e:
        guess_mlperf_model(_info(((1, 7),), ((1, 3),)))
    assert "--mlperf-model kws01|vww01|ic01|ad01|sww01" in e.value.hint
    from tinyq import boards

    board = boards.load("mps2-an386")
    with pytest.raises(UserInputError, match="needs one int8 or float32 input and one output "
                                             "of the same size"):
        harness_config(board, _info(((1, 7),), ((1, 3),)), "t", mlperf_model="ad01",
                       tinyq_version="0")
    cfg = harness_config(board, _info(((1, 640),), ((1, 640),)), "t", mlperf_model="ad01",
                         tinyq_version="0")
    assert cfg.db_bytes == 2560 and cfg.score_elements == 640
    with pytest.raises(UserInputError, match="unknown MLPerf Tiny model 'strww01'"):
        harness_config(board, _info(((1, 7),), ((1, 3),)), "t", mlperf_model="strww01",
                       tinyq_version="0")


def test_virtual_board_argv_puts_the_uart_on_a_pty():
    from tinyq.device.qemu import qemu_argv

    argv = qemu_argv("mps2-an386", "a.elf", 0, serial="pty")
    assert argv[argv.index("-serial") + 1] == "pty" and argv[-2:] == ["-kernel", "a.elf"]
