"""The protocol client against the scripted fake device: every command, every fault.

Each fault must end in one clear error naming the port, within its (short,
test-sized) timeout: nothing may hang.
"""

from __future__ import annotations

import os
import time

import pytest

from tinyq.device import StreamDevice
from tinyq.device.fake import FakeDevice, FakeFirmware, Fault
from tinyq.device.protocol import DB_CHUNK_BYTES, Client, Timeouts, parse_kv
from tinyq.errors import DeviceError, DeviceTimeoutError, ProtocolError

FAST = Timeouts(default=0.2, infer=0.3, infer_per_run=0.01, boot=0.5, probe_after=0.1,
                settle=0.05)


def client_for(*faults: Fault, firmware: FakeFirmware | None = None, **kw) -> Client:
    device = FakeDevice(firmware, faults=faults, **kw)
    device.open()
    return Client(device, timeouts=FAST)


def booted(*faults: Fault, firmware: FakeFirmware | None = None) -> Client:
    client = client_for(*faults, firmware=firmware)
    client.wait_ready()
    return client


# -- the happy path -----------------------------------------------------------

def test_boot_and_every_command():
    fw = FakeFirmware(input_sizes=(40,), compute=lambda ins: [ins[0][:3], ins[0][3:5]],
                      ticks_per_inference=2500, clock_hz=25_000_000)
    client = client_for(firmware=fw)
    boot = client.wait_ready()
    assert boot.mode == "performance" and not boot.probed
    assert client.name() == "tinyq"
    profile = client.profile()
    assert (profile.firmware, profile.model) == ("tinyq-fake", "ic01")

    data = bytes(range(200, 240))
    client.load_input(data)
    db = [c for c in client.device.commands if c.startswith("db ")]
    assert db[0] == "db load 40"
    assert db[1:] == ["db " + data[:DB_CHUNK_BYTES].hex(), "db " + data[DB_CHUNK_BYTES:].hex()]

    result = client.infer(3, 2)
    assert result.iterations == 3 and result.warmup == 2
    assert result.lap_us == (0, 300)             # 3 x 2500 ticks at 25 MHz = 300 us
    assert result.elapsed_us == 300
    # results: every output dequantized, in output order: (q - (-128)) / 256
    assert result.results == pytest.approx(
        [round((b - 256 + 128) / 256, 3) for b in data[:5]], abs=1e-3)
    assert client.results() == result.results
    assert client.raw_output() == (data[:3], data[3:5])

    cycles = client.cycles()
    assert cycles.ticks == (2500, 2500, 2500)
    assert (cycles.clock_hz, cycles.counter) == (25_000_000, "systick")
    mem = client.mem()
    assert (mem.arena, mem.stack_peak, mem.stack_size) == (1024, 600, 8192)
    layers = client.layers()
    assert [(x.index, x.name, x.ticks) for x in layers] == [(0, "CONV_2D", 700),
                                                          (1, "SOFTMAX", 300)]
    ident = client.check_identity("0123456789abcdef0123")
    assert (ident.model_id, ident.runtime, ident.board) == ("0123456789ab", "native", "fake")


def test_board_booted_before_the_port_opened_is_probed():
    client = client_for(banner_on_open=False)
    boot = client.wait_ready()
    assert boot.probed and boot.mode == ""
    assert client.device.commands == ["name"]
    assert client.name() == "tinyq"     # the probe's answer was drained, the link is in step


def test_infer_timeout_scales_with_iterations():
    client = booted()
    client.load_input(b"\1\2\3\4")
    client.device.timeouts_seen.clear()
    client.infer(10, 5)
    assert client.device.timeouts_seen[0] == pytest.approx(FAST.infer + 15 * FAST.infer_per_run,
                                                           abs=0.01)


def test_parse_kv():
    assert parse_kv("a=1, b=x,") == {"a": "1", "b": "x"}
    with pytest.raises(ValueError):
        parse_kv("a")


def test_command_rejects_what_the_firmware_cannot_buffer():
    client = booted()
    with pytest.raises(ValueError):
        client.command("x" * 81)
    with pytest.raises(ValueError):
        client.command("name%")


# -- faults ---------------------------------------------------------------------

def _raises(cls, pattern, fn, limit):
    start = time.monotonic()
    with pytest.raises(cls, match=pattern) as info:
        fn()
    assert time.monotonic() - start < limit, "the client waited far beyond its timeout"
    assert "fake0" in str(info.value), "the error must name the port"
    return info.value


def test_silent_device_at_boot():
    client = client_for(Fault("silent"))
    err = _raises(DeviceTimeoutError,
                  r"^no m-ready from fake0 within 0.5 s of opening it — check that the board "
                  r"runs tinyq firmware", client.wait_ready, 2.0)
    assert err.port == "fake0"
    assert client.device.commands == ["name", "name"]        # BOOT_PROBES probes, no more


def test_silent_emulator_at_boot_hint():
    client = client_for(Fault("silent"), emulated=True)
    _raises(DeviceTimeoutError, "the firmware did not start on this machine",
            client.wait_ready, 2.0)


def test_garbage_at_boot_is_tolerated_noise():
    client = client_for(Fault("garbage"))
    assert client.wait_ready().mode == "performance"


def test_disconnected_at_boot():
    client = client_for(Fault("disconnect"))
    _raises(DeviceError, "^fake0 disconnected", client.wait_ready, 1.0)


def test_silent_after_a_command():
    client = booted(Fault("silent", "name"))
    _raises(DeviceTimeoutError,
            r"^no m-ready from fake0 within 0.2 s after 'name'; it sent nothing — the firmware "
            r"hung or crashed", client.name, 1.0)


def test_missing_m_ready():
    client = booted(Fault("no_ready", "name"))
    _raises(DeviceTimeoutError,
            r"^no m-ready from fake0 within 0.2 s after 'name'; last line 'm-name-dut-\[tinyq\]'",
            client.name, 1.0)


def test_truncated_line():
    client = booted(Fault("truncate", "profile"))
    _raises(DeviceTimeoutError,
            r"after 'profile'; got a truncated line 'm-model'", client.profile, 1.0)


def test_garbled_line_names_the_baud_rate_fix():
    client = booted(Fault("garbage", "name"))
    _raises(ProtocolError, r"^garbled data from fake0 in the answer to 'name'", client.name, 1.0)


def test_too_many_stray_lines():
    client = booted(Fault("stray", "name"))
    _raises(ProtocolError, r"^fake0 sent over 20 non-protocol lines in the answer to 'name'",
            client.name, 1.0)


def test_reset_mid_infer():
    client = booted(Fault("reset", "infer"))
    client.load_input(b"\1\2\3\4")
    err = _raises(ProtocolError, r"^fake0 reset while running 'infer 1 0' \(boot banner "
                  r"'m-timestamp-mode-performance' seen again\) — the firmware crashed",
                  lambda: client.infer(1, 0), 1.0)
    assert err.command == "infer 1 0"


def test_disconnect_mid_run():
    client = booted(Fault("disconnect", "infer"))
    client.load_input(b"\1\2\3\4")
    _raises(DeviceError, "^fake0 disconnected .* check the USB cable", lambda: client.infer(1, 0),
            1.0)


def test_device_error_line():
    client = booted(Fault("error", "name"))
    err = _raises(ProtocolError, r"^fake0 rejected 'name': fake failure", client.name, 1.0)
    assert err.device_error == "fake failure"


def test_wrong_firmware_identity():
    client = booted()
    _raises(ProtocolError,
            r"^wrong firmware on fake0: it was built for model 0123456789ab, expected "
            r"feedfacecafe — let `tinyq run MODEL --board B --port P` build and flash it",
            lambda: client.check_identity("feedfacecafe0000"), 1.0)


def test_wrong_board_identity():
    client = booted()
    _raises(ProtocolError, r"^wrong firmware on fake0: it was built for board fake, expected "
            r"nucleo-f446re — flash firmware built with --board nucleo-f446re",
            lambda: client.check_identity("0123456789ab", board="nucleo-f446re"), 1.0)
    assert client.check_identity("0123456789ab", board="fake").board == "fake"


def test_wrong_runtime_identity():
    client = booted()
    _raises(ProtocolError, "it runs the native runtime, expected tflm",
            lambda: client.check_identity("0123456789ab", runtime="tflm"), 1.0)


def test_firmware_that_is_not_tinyq():
    client = booted(firmware=FakeFirmware(tinyq_commands=False))
    assert client.name() == "tinyq"       # plain MLPerf commands still work
    _raises(ProtocolError, r"^the firmware on fake0 is not tinyq firmware \(it does not know "
            r"tq-id\)", client.identity, 1.0)


def test_input_larger_than_the_firmware_buffer():
    client = booted(firmware=FakeFirmware(max_db_bytes=16))
    _raises(ProtocolError, r"^fake0 rejected 'db load 17': Supplied buffer size 17 exceeds",
            lambda: client.load_input(bytes(17)), 1.0)


def test_lost_bytes_while_loading():
    """A chunk that loses bytes shows up as m-load-done missing at the end."""
    class Lossy(FakeDevice):
        def write(self, data):
            if data.startswith(b"db ") and b"load" not in data:
                data = data[:5] + data[7:]       # one byte lost on the wire
            super().write(data)

    device = Lossy()
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    _raises(ProtocolError, "reported m-load-done not at the end", lambda: client.load_input(
        bytes(40)), 1.0)


def test_malformed_infer_answer():
    class NoLaps(FakeDevice):
        def _infer(self, args):
            return [x for x in super()._infer(args) if not x.startswith("m-lap-us-")]

    device = NoLaps()
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    client.load_input(b"\1\2\3\4")
    _raises(ProtocolError, r"^unexpected answer to 'infer 1 0' from fake0: expected .*two "
            r"m-lap-us- stamps", lambda: client.infer(1, 0), 1.0)


def test_malformed_tq_answers():
    class Broken(FakeDevice):
        def _answer(self, words):
            if words and words[0] == "tq-out":
                return ["m-tq-out-1-[00]"]       # output 0 missing
            if words and words[0] == "tq-mem":
                return ["m-tq-mem-[arena=x]"]
            return super()._answer(words)

    device = Broken()
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    _raises(ProtocolError, "unexpected answer to 'tq-out'", client.raw_output, 1.0)
    _raises(ProtocolError, "unexpected answer to 'tq-mem'", client.mem, 1.0)


def test_cycles_before_any_inference():
    client = booted()
    _raises(ProtocolError, r"run infer first", client.cycles, 1.0)


def test_firmware_whose_runtime_failed_to_initialise():
    client = client_for(firmware=FakeFirmware(init_error="arena too small"))
    _raises(ProtocolError, r"^firmware on fake0 failed to start: tq_init failed: arena too small",
            client.wait_ready, 1.0)


def test_raw_output_before_any_inference():
    client = booted()
    _raises(ProtocolError, r"^fake0 rejected 'tq-out': No results: run infer first",
            client.raw_output, 1.0)


def test_input_of_the_wrong_size_is_refused_by_the_firmware():
    client = booted()
    client.load_input(b"\1\2\3")
    _raises(ProtocolError, r"^fake0 rejected 'infer 1 0': Input db has 3 bytes, expected 4",
            lambda: client.infer(1, 0), 1.0)


def test_exit_emulator_then_the_link_is_gone():
    client = booted()
    client.exit_emulator(0)
    _raises(DeviceError, "disconnected", client.name, 1.0)


def test_crash_report_then_disconnect_leads_with_the_firmware_words():
    client = booted(Fault("crash", "infer"))
    client.load_input(b"\1\2\3\4")
    err = _raises(DeviceError, r"^fake0 failed during 'infer 1 0': HardFault pc=0x00000456 "
                  r"lr=0x00000123; then fake0 disconnected .* — the firmware crashed: usually "
                  r"a stack overflow", lambda: client.infer(1, 0), 1.0)
    assert err.device_error.startswith("HardFault")


# -- hostile answers: bounded numbers, whole ids, long lines ----------------------------

def test_a_one_digit_model_id_is_not_a_match():
    """The firmware reports 12 hex digits: a shorter (or longer) id never matches, even
    when it is a prefix of the model's hash."""
    for reported in ("0", "0123456789a", "0123456789abc"):
        client = booted(firmware=FakeFirmware(model_id=reported))
        _raises(ProtocolError, f"^wrong firmware on fake0: it was built for model {reported}, "
                "expected 0123456789ab", lambda c=client: c.check_identity("0123456789ab" * 5),
                1.0)
    client = booted()
    assert client.check_identity("0123456789AB" + "f" * 52).model_id == "0123456789ab"


class Overflowing(FakeDevice):
    """Firmware answers with numbers no 32/64-bit counter can hold."""

    huge = "9" * 400

    def _answer(self, words):
        answer = super()._answer(words)
        verb = words[0] if words else ""
        if verb == "tq-cycles":
            return [answer[0], f"m-tq-ticks-[{self.huge}]"]
        if verb == "tq-mem":
            return [f"m-tq-mem-[arena={self.huge},stack_peak=1,stack_size=1]"]
        if verb == "tq-id":
            return [answer[0].replace("db_offset=0", "db_offset=x")]
        if verb == "tq-layers" and not answer[0].startswith("e-"):
            return [answer[0], f"m-tq-layer-0-[CONV_2D,{self.huge}]"]
        return answer

    def _infer(self, args):
        return [f"m-lap-us-{self.huge}" if x.startswith("m-lap-us-") and x != "m-lap-us-0"
                else x for x in super()._infer(args)]


@pytest.mark.parametrize("call, expected", [
    (lambda c: c.infer(1, 0), "m-lap-us-<uint32>"),
    (lambda c: c.cycles(), "ticks as 64-bit counts"),
    (lambda c: c.mem(), "32-bit sizes"),
    (lambda c: c.layers(), "ticks as 64-bit counts"),
    (lambda c: c.identity(), "db_offset=0..255"),
])
def test_a_400_digit_count_is_a_protocol_error(call, expected):
    device = Overflowing(emulated=True)
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    client.load_input(b"\1\2\3\4")
    if expected != "m-lap-us-<uint32>":
        device._infer = FakeDevice._infer.__get__(device)      # a sane infer first
        client.infer(1, 0)
    err = _raises(ProtocolError, "unexpected answer to", lambda: call(client), 1.0)
    assert expected in str(err) and "\n" not in str(err)


class StreamOverFake(StreamDevice):
    """The fake firmware's lines sent as bytes with \\r\\n, so the host's real line assembly
    (and its line cap) reads them, as it reads a serial port or QEMU's socket."""

    def __init__(self, fake: FakeDevice) -> None:
        super().__init__()
        self.fake = fake
        self.fake.max_line_bytes = 1 << 30         # the stream device enforces the cap
        self.port, self.is_emulated = fake.port, fake.is_emulated

    def open(self) -> None:
        self.fake.open()

    def close(self) -> None:
        self.fake.close()

    def _read_some(self, timeout: float) -> bytes:
        try:
            return self.fake.readline(timeout).encode() + b"\r\n"
        except DeviceTimeoutError:
            return b""

    def _write_all(self, data: bytes) -> None:
        self.fake.write(data)


def _streamed(firmware: FakeFirmware, **faults) -> Client:
    device = StreamOverFake(FakeDevice(firmware, **faults))
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    return client


def test_a_model_with_3000_outputs_gets_its_whole_results_line():
    """The results line of 3,000 values is ~22 KB, over the 16 KB default line cap: the
    cap grows with the model's outputs instead of calling the line garbage."""
    client = _streamed(FakeFirmware(input_sizes=(3000,), max_db_bytes=3000))
    client.expect_outputs(3000)
    client.load_input(bytes(range(256)) * 11 + bytes(184))
    result = client.infer(1, 0)
    assert len(result.results) == 3000
    assert len(client.raw_output()[0]) == 3000


@pytest.mark.parametrize("line, says, never", [
    ("m-results-[" + "0.500," * 10_000 + "]", "the longest this model's answers can be",
     "baud"),
    ("\ufffd\x13" * 20_000, "unreadable data", "longest this model"),
], ids=["protocol-text", "garbage"])
def test_a_line_over_the_cap_says_what_it_was(line, says, never):
    class Chatty(FakeDevice):
        def _answer(self, words):
            return [line] if words and words[0] == "results" else super()._answer(words)

    device = StreamOverFake(Chatty(FakeFirmware(input_sizes=(3000,), max_db_bytes=3000)))
    device.open()
    client = Client(device, timeouts=FAST)
    client.wait_ready()
    client.expect_outputs(3000)
    err = _raises(ProtocolError, "fake0 sent", client.results, 1.0)
    assert says in str(err) and never not in str(err) and "39,014 bytes" in str(err)


#: Sessions of the protocol fuzzer per CI run (well under a second); by hand:
#: TINYQ_PROTOCOL_FUZZ=100000.
PROTOCOL_SESSIONS = int(os.environ.get("TINYQ_PROTOCOL_FUZZ", "2000"))


def test_mutated_answers_end_in_device_errors():
    """A seeded fuzzer: the fake firmware's answers with digits, brackets and separators
    replaced, lines cut or extended; a whole session (identity, load, infer, tq-out, cycles,
    latency, mem, layers, results, timestamp, profile, name) either works or ends in one
    TinyqError line, never another exception."""
    import random
    import re

    from tinyq.errors import TinyqError
    from tinyq.measure.benchmark import latency_from_ticks, layer_profile

    rng = random.Random(5)
    junk = ["9" * 400, "-1", "", "x", "[", "]", ",", "=", "0x", "1e9", "nan", "\ufffd",
            "m-ready", "9" * 20]

    def mutate(line: str) -> str:
        if rng.random() >= 0.04:
            return line
        kind = rng.random()
        if kind < 0.3 and line:
            at = rng.randrange(len(line))
            return line[:at] + rng.choice(junk) + line[at + 1:]
        if kind < 0.5 and line:
            return line[:rng.randrange(len(line))]
        if kind < 0.7:
            return line + rng.choice(junk)
        return re.sub(r"\d+", lambda _m: rng.choice(junk), line, count=1)

    class Mutating(FakeDevice):
        def _answer(self, words):
            return [mutate(line) for line in super()._answer(words)]

        def _infer(self, args):
            return [mutate(line) for line in super()._infer(args)]

    fast = Timeouts(default=0.01, infer=0.01, infer_per_run=0.0, boot=0.05, probe_after=0.01,
                    settle=0.0)
    crashes, worked = [], 0
    for _ in range(PROTOCOL_SESSIONS):
        device = Mutating(emulated=True)
        device.open()
        client = Client(device, timeouts=fast)
        try:
            client.wait_ready()
            client.check_identity("0123456789ab" + "0" * 52)
            client.expect_outputs(4)
            client.load_input(b"\1\2\3\4")
            assert client.infer(3, 1).elapsed_us >= 0
            client.raw_output()
            cycles = client.cycles()
            latency_from_ticks(cycles.ticks, cycles.clock_hz, cycles.counter, True,
                               25_000_000, 3, 1)
            client.mem()
            layer_profile(client.layers(), [1, 2], cycles.clock_hz, True, 25_000_000)
            client.results(), client.timestamp(), client.profile(), client.name()
            worked += 1
        except TinyqError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:        # noqa: BLE001 - any other exception is the finding
            crashes.append(repr(exc)[:200])
    assert not crashes, crashes[:5]
    assert 0.2 * PROTOCOL_SESSIONS < worked < PROTOCOL_SESSIONS     # both paths exercised


def test_identity_refuses_firmware_built_for_the_runners_ad01_format():
    fw = FakeFirmware(mlperf_model="ad01")
    with pytest.raises(ProtocolError, match="built with --mlperf-model ad01 for the MLPerf "
                                            "runner") as exc:
        booted(firmware=fw).check_identity(fw.model_id + "0" * 52)
    assert exc.value.hint == "flash firmware built without --mlperf-model"
    assert booted().check_identity(fw.model_id + "0" * 52).extra["mlperf"] == "ic01"
