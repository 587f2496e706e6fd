"""The device harness and board glue on QEMU: boot, every protocol command, exit.

Built with the test runtime (tests/fixtures/test_runtime.c: out = in + 1, then a
busy loop of exactly 2 x TQ_TEST_SPIN instructions), so the counts can be
checked against a known instruction count: under ``-icount shift=0`` one
instruction is 1 ns, so ticks x (1e9 / counter clock) must equal the loop's
instructions. This checks each board profile's counter clock.
mps2-an386 (M4F) and microbit (M0, 16 KB RAM) run by default; all eight QEMU
boards run with ``-m slow``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require_tools

from tinyq import boards
from tinyq.firmware.codegen import (
    GenerateOptions,
    ModelInfo,
    RuntimeSources,
    render_project,
    write_project,
)
from tinyq.firmware.compiling import build

pytestmark = pytest.mark.qemu

FIXTURE_RUNTIME = Path(__file__).parent / "fixtures" / "test_runtime.c"
MODEL_ID = "7e5700000001"
INPUT_BYTES = 16
#: The fixture's SPIN layer: 2 instructions per iteration (subs + bne).
SPIN_INSTRUCTIONS = 2 * 100_000
#: Instructions the timing itself adds around a measured span (counter reads,
#: the layer hook's call and return), plus one tick of phase.
OVERHEAD_INSTRUCTIONS = 200
#: Seconds for one answer (QEMU runs ~10^9 instructions/s; these commands need < 10^6).
ANSWER_TIMEOUT_S = 10.0
FAST_BOARDS = ("mps2-an386", "microbit")
SLOW_BOARDS = ("mps2-an385", "mps2-an500", "mps2-an505", "mps3-an547", "netduinoplus2",
               "lm3s6965evb")


def _build(tmp_path: Path, board_name: str):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    board = boards.load(board_name)
    files = render_project(
        board,
        RuntimeSources("test", {"test_runtime.c": FIXTURE_RUNTIME.read_text()},
                       arena_bytes=2 * INPUT_BYTES),
        ModelInfo("test.tflite", MODEL_ID + "0" * 52, input_bytes=INPUT_BYTES, num_layers=2),
        GenerateOptions(semihosting=True, mlperf_model="kws01"))
    return board, build(write_project(files, tmp_path / board_name, force=True))


class Session:
    """The MLPerf/tinyq conversation: send `cmd%`, collect lines up to m-ready."""

    def __init__(self, device) -> None:
        self.device = device

    def until_ready(self) -> list[str]:
        lines = []
        while True:
            line = self.device.readline(ANSWER_TIMEOUT_S)
            if line == "m-ready":
                return lines
            lines.append(line)

    def __call__(self, cmd: str) -> list[str]:
        self.device.write(cmd.encode("ascii") + b"%")
        return self.until_ready()


def _kv(line: str, prefix: str) -> dict[str, str]:
    assert line.startswith(prefix + "[") and line.endswith("]"), line
    return dict(item.split("=", 1) for item in line[len(prefix) + 1:-1].split(","))


def check_board(tmp_path: Path, board_name: str) -> None:
    from tinyq.device.qemu import QemuDevice

    board, fw = _build(tmp_path, board_name)
    ipt = 1e9 / board.counter.clock_hz          # instructions per tick under icount
    data = bytes(range(0x70, 0x70 + INPUT_BYTES))
    expected_out = bytes((b + 1) & 0xFF for b in data)

    with QemuDevice(fw.elf, board.emulator.qemu_machine) as dev:
        s = Session(dev)
        boot = s.until_ready()
        assert boot[0] == "m-timestamp-mode-performance"
        assert re.fullmatch(r"m-lap-us-\d+", boot[1])
        assert boot[-1] == "m-init-done"

        assert s("name") == [f"m-name-dut-[tinyq-{board_name}]"]
        assert s("profile") == [f"m-profile-[tinyq 0.1.0 test {MODEL_ID}]", "m-model-[kws01]"]
        assert re.fullmatch(r"m-lap-us-\d+", s("timestamp")[0])
        assert any(line.startswith("tq-cycles") for line in s("help"))
        assert s("") == []
        assert s("bogus 1 2") == ["e-[Unknown command: bogus]"]

        # db: errors first, byte-for-byte as the MLPerf reference
        assert s("db") == ["e-[Command 'db' requires a subcommand]"]
        assert s("db load") == ["e-[Command 'db load' requires the # of bytes]"]
        assert s("db load 0") == ["e-[Command 'db load' must be >0 bytes]"]
        assert s("db load 99999") == [
            f"e-[Supplied buffer size 99999 exceeds maximum of {INPUT_BYTES}]"]
        assert s("infer 1 0") == [f"e-[Input db has 0 bytes, expected {INPUT_BYTES}]"]
        assert s("results") == ["e-[No results: run infer first]"]
        assert s(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
        assert s("db 123") == ["e-[Insufficent number of hex digits]"]
        assert s("db 12zz") == ["e-[Invalid hex digit 'zz']"]     # 0x12 was stored
        assert s("db " + data[1:8].hex()) == []
        assert s("db " + data[8:].hex() + "ffff") == ["m-load-done"]   # extra digits ignored
        assert s("db print") == [
            "m-buffer-" + "-".join(f"{b:02x}" for b in bytes([0x12]) + data[1:8]),
            "m-buffer-" + "-".join(f"{b:02x}" for b in data[8:])]
        assert s(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
        assert s("db " + data.hex()) == ["m-load-done"]

        # infer N W, MLPerf framing; dequantized scores are (q + 128) / 256 with 3 decimals
        assert s("infer 0") == ["e-[Inference iterations must be >0]"]
        assert s("infer 2 -1") == ["e-[Inference warmup must be >=0]"]
        answer = s("infer 3 2")
        assert answer[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"]
        t0, t1 = (int(re.fullmatch(r"m-lap-us-(\d+)", a).group(1)) for a in answer[3:5])
        assert answer[5] == "m-infer-done"
        scores = [f"{(int.from_bytes(bytes([b]), 'little', signed=True) + 128) / 256:.3f}"
                  for b in expected_out]
        assert answer[6] == "m-results-[" + ",".join(scores) + "]"
        assert s("results") == [answer[6]]
        # three runs of SPIN in emulated microseconds (1 instruction = 1 ns)
        assert 3 * SPIN_INSTRUCTIONS / 1000 <= t1 - t0 <= 3 * SPIN_INSTRUCTIONS / 1000 * 1.1

        # tinyq's own commands
        ident = _kv(s("tq-id")[0], "m-tq-id-")
        assert ident["model"] == MODEL_ID and ident["runtime"] == "test"
        assert ident["board"] == board_name and ident["counter"] == board.counter.kind
        assert int(ident["clock_hz"]) == board.counter.clock_hz
        assert s("tq-out") == [f"m-tq-out-0-[{expected_out.hex()}]"]

        cycles = s("tq-cycles")
        head = _kv(cycles[0], "m-tq-cycles-")
        assert head["runs"] == "3" and head["recorded"] == "3"
        ticks = [int(t) for t in cycles[1].removeprefix("m-tq-ticks-[")[:-1].split(",")]
        assert len(ticks) == 3 and max(ticks) - min(ticks) <= 1   # equal up to tick phase
        assert sum(ticks) == int(head["total"])
        # the instructions-per-tick factor of the profile, checked against the known loop
        assert abs(ticks[0] * ipt - SPIN_INSTRUCTIONS) <= OVERHEAD_INSTRUCTIONS + ipt

        layers = s("tq-layers")
        assert _kv(layers[0], "m-tq-layers-")["layers"] == "2"
        name0, _ = layers[1].removeprefix("m-tq-layer-0-[")[:-1].split(",")
        name1, spin = layers[2].removeprefix("m-tq-layer-1-[")[:-1].split(",")
        assert (name0, name1) == ("ADD_ONE", "SPIN")
        assert abs(int(spin) * ipt - SPIN_INSTRUCTIONS) <= OVERHEAD_INSTRUCTIONS + ipt
        assert s("tq-out") == [f"m-tq-out-0-[{expected_out.hex()}]"]  # layers reran the input

        mem = {k: int(v) for k, v in _kv(s("tq-mem")[0], "m-tq-mem-").items()}
        assert mem["arena"] == 2 * INPUT_BYTES and mem["arena_section"] == 2 * INPUT_BYTES
        assert mem["stack_size"] == board.stack_bytes
        assert 64 < mem["stack_peak"] < board.stack_bytes
        assert mem["static"] == fw.static_ram_bytes == mem["data"] + mem["bss"]

        dev.write(b"tq-exit 7%")
        assert s.until_ready() == []
        assert dev.wait_exit(ANSWER_TIMEOUT_S) == 7


@pytest.mark.parametrize("board_name", FAST_BOARDS)
def test_harness_on_qemu(tmp_path, board_name):
    check_board(tmp_path, board_name)


@pytest.mark.slow
@pytest.mark.parametrize("board_name", SLOW_BOARDS)
def test_harness_on_every_qemu_board(tmp_path, board_name):
    check_board(tmp_path, board_name)


def test_fault_is_reported_and_ends_qemu(tmp_path):
    """A bus fault inside the runtime prints e-[HardFault ...] and exits QEMU with code 2."""
    from tinyq.device.qemu import QemuDevice

    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    board = boards.load("mps2-an386")
    faulty = FIXTURE_RUNTIME.read_text().replace(
        "int tq_invoke(void)\n{",
        "int tq_invoke(void)\n{\n    (void)*(volatile uint32_t *)0xFFFFFFF0u;")
    files = render_project(
        board, RuntimeSources("test", {"test_runtime.c": faulty}, arena_bytes=2 * INPUT_BYTES),
        ModelInfo("test.tflite", MODEL_ID + "0" * 52, input_bytes=INPUT_BYTES, num_layers=2),
        GenerateOptions(semihosting=True))
    fw = build(write_project(files, tmp_path / "faulty", force=True))
    with QemuDevice(fw.elf, board.emulator.qemu_machine) as dev:
        s = Session(dev)
        s.until_ready()
        assert s(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
        assert s("db " + "00" * INPUT_BYTES) == ["m-load-done"]
        dev.write(b"infer 1 0%")
        lines = [dev.readline(ANSWER_TIMEOUT_S) for _ in range(6)]
        fault = lines[-1]
        assert re.fullmatch(r"e-\[HardFault pc=0x[0-9a-f]{8} lr=0x[0-9a-f]{8} cfsr=0x[0-9a-f]{8} "
                            r"hfsr=0x[0-9a-f]{8} bfar=0xfffffff0\]", fault), lines
        assert dev.wait_exit(ANSWER_TIMEOUT_S) == 2
