"""The firmware harness against the MLPerf Tiny protocol, command by command, under QEMU.

The client here is deliberately NOT tinyq.device.protocol: it is a few lines written
from the protocol's description (shared PROTOCOL.md: commands end with ``%``,
answers are ``\\r\\n`` lines, ``m-`` information, ``e-[...]`` errors, every
command ends with ``m-ready``) and checks each answer line by line, so a bug
shared by tinyq's host client and its firmware cannot hide.

The firmware is the real harness (tq_main.c) and board glue for mps2-an385
(Cortex-M3), linked with the test runtime of tests/fixtures/test_runtime.c:
out[i] = in[i] + 1, scale 1/256, zero point -128, and a "SPIN" layer of
exactly 2 x TQ_TEST_SPIN instructions.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import require_tools

from tinyq.errors import DeviceError

pytestmark = pytest.mark.qemu

FIXTURE = Path(__file__).parent / "fixtures" / "test_runtime.c"
BOARD = "mps2-an385"
INPUT_BYTES = 40                 # two runner chunks (31 + 9 bytes)
SPIN = 100_000                   # the SPIN layer: 2 * SPIN instructions
MODEL_ID = "7e5700000001"
#: Per-answer timeout of the runner (PROTOCOL.md).
ANSWER_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Path:
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    from tinyq import boards
    from tinyq.firmware.codegen import (
        GenerateOptions,
        ModelInfo,
        RuntimeSources,
        render_project,
        write_project,
    )

    runtime = FIXTURE.read_text()
    runtime = (f"#define TQ_TEST_INPUT_BYTES {INPUT_BYTES}\n#define TQ_TEST_SPIN {SPIN}\n"
               + runtime)
    files = render_project(
        boards.load(BOARD),
        RuntimeSources(name="test", files={"test_runtime.c": runtime},
                       arena_bytes=2 * INPUT_BYTES),
        ModelInfo(name="test-model", sha256=MODEL_ID + "0" * 52, input_bytes=INPUT_BYTES,
                  num_layers=2),
        GenerateOptions(mlperf_model="kws01", semihosting=True))
    project = write_project(files, tmp_path_factory.mktemp("fw") / "project")
    done = subprocess.run(["make", "-C", str(project), "-j2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return project / "build" / "app.elf"


class RunnerClient:
    """Send ``cmd%``; collect lines until ``m-ready`` (written from the protocol text)."""

    def __init__(self, device):
        self.device = device

    def lines_until_ready(self) -> list[str]:
        lines = []
        while True:
            line = self.device.readline(ANSWER_TIMEOUT_S)
            if line == "m-ready":
                return lines
            lines.append(line)

    def send(self, cmd: str) -> list[str]:
        self.device.write(cmd.encode("ascii") + b"%")
        return self.lines_until_ready()


@pytest.fixture(scope="module")
def dut(firmware):
    from tinyq.device.qemu import QemuDevice

    with QemuDevice(firmware, "mps2-an385") as device:
        client = RunnerClient(device)
        boot = client.lines_until_ready()
        yield client, boot


def _hex(data: bytes) -> str:
    return data.hex()


def _score(q: int) -> str:
    signed = q - 256 if q > 127 else q
    return f"{(signed + 128) / 256:0.3f}"


INPUT = bytes((7 * i + 200) & 0xFF for i in range(INPUT_BYTES))
OUTPUT = bytes((b + 1) & 0xFF for b in INPUT)


def test_boot_banner(dut):
    _, boot = dut
    assert boot[0] == "m-timestamp-mode-performance"
    assert re.fullmatch(r"m-lap-us-\d+", boot[1])
    assert boot[2:] == ["m-init-done"]


def test_name_profile_timestamp_help_unknown(dut):
    client, _ = dut
    (name,) = client.send("name")
    assert re.fullmatch(r"^m-(name)-dut-\[([^]]+)]$", name)      # the runner's regex
    assert name == f"m-name-dut-[tinyq-{BOARD}]"
    assert client.send("profile") == [f"m-profile-[tinyq 0.1.0 test {MODEL_ID}]",
                                      "m-model-[kws01]"]
    (stamp,) = client.send("timestamp")
    assert re.fullmatch(r"m-lap-us-\d+", stamp)
    help_text = client.send("help")
    assert help_text and any(line.startswith("infer N") for line in help_text)
    assert client.send("bogus") == ["e-[Unknown command: bogus]"]


def test_db_errors(dut):
    client, _ = dut
    assert client.send("db") == ["e-[Command 'db' requires a subcommand]"]
    assert client.send("db load") == ["e-[Command 'db load' requires the # of bytes]"]
    assert client.send("db load 0") == ["e-[Command 'db load' must be >0 bytes]"]
    (too_big,) = client.send("db load 999999")
    assert too_big.startswith("e-[Supplied buffer size 999999 exceeds maximum of ")
    assert client.send(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
    assert client.send("db 123") == ["e-[Insufficent number of hex digits]"]
    assert client.send("db zz") == ["e-[Invalid hex digit 'zz']"]


def test_db_load_in_runner_chunks_and_print(dut):
    client, _ = dut
    assert client.send(f"db load {INPUT_BYTES}") == [f"m-[Expecting {INPUT_BYTES} bytes]"]
    assert client.send("db " + _hex(INPUT[:31])) == []
    assert client.send("db " + _hex(INPUT[31:])) == ["m-load-done"]
    printed = client.send("db print")
    assert printed == ["m-buffer-" + "-".join(f"{b:02x}" for b in INPUT[k:k + 8])
                       for k in range(0, INPUT_BYTES, 8)]


def _load(client):
    client.send(f"db load {INPUT_BYTES}")
    for k in range(0, INPUT_BYTES, 31):
        client.send("db " + _hex(INPUT[k:k + 31]))


def test_infer_sequence_and_results(dut):
    client, _ = dut
    _load(client)
    assert client.send("infer 0") == ["e-[Inference iterations must be >0]"]
    assert client.send("infer 1 -1") == ["e-[Inference warmup must be >=0]"]
    answer = client.send("infer 3 2")
    assert answer[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"]
    t0, t1 = (int(re.fullmatch(r"m-lap-us-(\d+)", x).group(1)) for x in answer[3:5])
    assert answer[5] == "m-infer-done"
    results = "m-results-[" + ",".join(_score(b) for b in OUTPUT) + "]"
    assert answer[6:] == [results]
    # Under -icount shift=0 one instruction is 1 ns: 3 runs of >= 2*SPIN instructions.
    us = t1 - t0
    assert 3 * 2 * SPIN / 1000 <= us <= 3 * 2 * SPIN / 1000 * 1.1
    assert client.send("results") == [results]
    defaults = client.send("infer")          # N=1, W=10 by default
    assert defaults[:3] == ["m-warmup-start-10", "m-warmup-done", "m-infer-start-1"]
    assert defaults[-1] == results           # the input is re-loaded for every run


def test_tinyq_commands(dut):
    client, _ = dut
    _load(client)
    client.send("infer 2 0")
    (ident,) = client.send("tq-id")
    fields = dict(kv.split("=", 1) for kv in re.fullmatch(r"m-tq-id-\[(.*)\]", ident)
                  .group(1).split(","))
    assert fields["model"] == MODEL_ID and fields["runtime"] == "test"
    assert fields["board"] == BOARD and fields["counter"] == "systick"
    assert fields["clock_hz"] == "25000000" and fields["db_offset"] == "0"
    assert client.send("tq-out") == [f"m-tq-out-0-[{_hex(OUTPUT)}]"]
    info, ticks = client.send("tq-cycles")
    assert info.startswith("m-tq-cycles-[counter=systick,clock_hz=25000000,runs=2,recorded=2,")
    counts = [int(t) for t in re.fullmatch(r"m-tq-ticks-\[(.*)\]", ticks).group(1).split(",")]
    # 40 instructions per SysTick tick at 25 MHz; SPIN alone is 2*SPIN instructions.
    assert all(2 * SPIN / 40 <= c <= 2 * SPIN / 40 * 1.05 for c in counts)
    assert abs(counts[0] - counts[1]) <= 1      # deterministic up to where a tick boundary falls
    (mem,) = client.send("tq-mem")
    mem_fields = dict(kv.split("=") for kv in re.fullmatch(r"m-tq-mem-\[(.*)\]", mem)
                      .group(1).split(","))
    assert int(mem_fields["arena"]) == 2 * INPUT_BYTES
    assert 0 < int(mem_fields["stack_peak"]) < int(mem_fields["stack_size"])
    _load(client)
    layers = client.send("tq-layers")
    assert layers[0] == "m-tq-layers-[layers=2,counter=systick,clock_hz=25000000]"
    assert re.fullmatch(r"m-tq-layer-0-\[ADD_ONE,\d+\]", layers[1])
    spin = int(re.fullmatch(r"m-tq-layer-1-\[SPIN,(\d+)\]", layers[2]).group(1))
    assert abs(spin - 2 * SPIN / 40) <= 2


def test_commands_before_data_are_refused_cleanly(firmware):
    """A fresh device: infer and tq-out without data say why, and the link stays usable."""
    from tinyq.device.qemu import QemuDevice

    with QemuDevice(firmware, "mps2-an385") as device:
        client = RunnerClient(device)
        client.lines_until_ready()
        assert client.send("infer 1 0") == [f"e-[Input db has 0 bytes, expected {INPUT_BYTES}]"]
        assert client.send("tq-out") == ["e-[No results: run infer first]"]
        assert client.send("results") == ["e-[No results: run infer first]"]
        assert client.send("name") == [f"m-name-dut-[tinyq-{BOARD}]"]
        device.write(b"tq-exit 5%")
        assert client.lines_until_ready() == []
        assert device.wait_exit(5) == 5
        with pytest.raises(DeviceError, match="exited with code 5"):
            device.readline(0.5)


def test_tinyq_host_client_reads_the_real_firmware(firmware):
    """tinyq.device.protocol.Client parses every answer of the real harness."""
    from tinyq.device.protocol import Client
    from tinyq.device.qemu import QemuDevice

    with QemuDevice(firmware, "mps2-an385") as device:
        client = Client(device)
        assert client.wait_ready().mode == "performance"
        assert client.name() == f"tinyq-{BOARD}"
        assert client.profile().model == "kws01"
        ident = client.check_identity(MODEL_ID + "ab", runtime="test")
        assert ident.board == BOARD and ident.extra["clock_hz"] == "25000000"
        client.load_input(INPUT)
        result = client.infer(4, 1)
        assert result.emulated and result.results == tuple(float(_score(b)) for b in OUTPUT)
        assert 4 * 2 * SPIN / 1000 <= result.elapsed_us <= 4 * 2 * SPIN / 1000 * 1.1
        assert client.raw_output() == (OUTPUT,)
        cycles = client.cycles()
        assert cycles.runs == 4 and len(cycles.ticks) == 4 and cycles.clock_hz == 25_000_000
        assert client.mem().arena == 2 * INPUT_BYTES
        client.load_input(INPUT)
        assert [layer.name for layer in client.layers()] == ["ADD_ONE", "SPIN"]
        assert client.timestamp() > 0
