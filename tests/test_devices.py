"""Device implementations: serial-port errors, line assembly over a real socket,
the exact QEMU argv, and QEMU always being killed and its port freed."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import require_tools

from tinyq import boards
from tinyq.device import StreamDevice
from tinyq.device.fake import FakeDevice, Fault
from tinyq.device.protocol import Client, Timeouts
from tinyq.device.qemu import QemuDevice, qemu_argv
from tinyq.device.renode import (
    RenodeDevice,
    project_script,
    renode_argv,
    renode_script,
    renode_uart,
)
from tinyq.device.serial_port import SerialDevice, open_error
from tinyq.errors import DeviceError, DeviceTimeoutError, ProtocolError, ToolNotFoundError

# -- serial ports -------------------------------------------------------------------


def test_port_not_found():
    with pytest.raises(DeviceError, match=r"^serial port /dev/ttyTINYQ404 not found — plug the "
                       r"board in and pass the right --port") as info:
        SerialDevice("/dev/ttyTINYQ404").open()
    assert info.value.port == "/dev/ttyTINYQ404"


def test_permission_denied_says_dialout(monkeypatch):
    import serial

    def refuse(*args, **kwargs):
        raise serial.SerialException(
            errno.EACCES, "could not open port /dev/ttyACM0: [Errno 13] Permission denied: "
            "'/dev/ttyACM0'")

    monkeypatch.setattr(serial, "serial_for_url", refuse)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(DeviceError, match=r"^permission denied opening serial port /dev/ttyACM0 "
                       r"— add yourself to the dialout group"):
        SerialDevice("/dev/ttyACM0").open()


def test_busy_port_message():
    err = open_error("COM3", OSError(errno.EBUSY, "Device or resource busy"))
    assert str(err).startswith("serial port COM3 is busy — close the other program")


class Server:
    """A one-connection TCP 'board' that plays a script of (bytes, pause) steps."""

    def __init__(self, script, close_after=True):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.close_after = close_after
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            for data, pause in self.script:
                conn.sendall(data)
                time.sleep(pause)
            if not self.close_after:
                time.sleep(3)
        self.sock.close()

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"


def test_lines_over_a_real_socket_split_across_packets():
    server = Server([(b"m-timestamp-mode-perf", 0.05), (b"ormance\r\nm-init-done\r", 0.05),
                     (b"\nm-ready\r\n", 0.2)])
    with SerialDevice(server.url) as dev:
        assert Client(dev).wait_ready(timeout=2).mode == "performance"


def test_truncated_line_then_silence_over_a_socket():
    server = Server([(b"m-ready\r\nm-resu", 0.0)], close_after=False)
    with SerialDevice(server.url) as dev:
        assert dev.readline(1) == "m-ready"
        start = time.monotonic()
        with pytest.raises(DeviceTimeoutError, match="got a truncated line 'm-resu'") as info:
            dev.readline(0.3)
        assert 0.25 < time.monotonic() - start < 1.0
        assert info.value.partial == "m-resu"


def test_disconnect_over_a_socket():
    server = Server([(b"m-ready\r\n", 0.0)])
    with SerialDevice(server.url) as dev:
        assert dev.readline(1) == "m-ready"
        with pytest.raises(DeviceError, match=r"disconnected .*— check the USB cable"):
            dev.readline(2)


def test_endless_line_is_not_protocol():
    server = Server([(b"\x55" * 20000, 0.5)])
    with SerialDevice(server.url) as dev:
        with pytest.raises(ProtocolError, match="without a line end .* check the baud rate"):
            dev.readline(2)


def test_stream_device_decodes_junk_as_replacement_characters():
    class Canned(StreamDevice):
        def __init__(self):
            super().__init__()
            self.data = [b"\xff\xfem-x\r\n"]

        def open(self):
            pass

        def close(self):
            pass

        def _read_some(self, timeout):
            return self.data.pop(0) if self.data else b""

        def _write_all(self, data):
            pass

    assert Canned().readline(0.1) == "\ufffd\ufffdm-x"


def test_fake_device_is_a_context_manager():
    with FakeDevice(faults=[Fault("silent", "name")]) as dev:
        assert dev.is_open
    assert not dev.is_open and dev.closed_count == 1
    with pytest.raises(ValueError):
        Fault("explode")


# -- QEMU ---------------------------------------------------------------------------

def test_qemu_argv_is_exact():
    assert qemu_argv("mps2-an386", "/tmp/app.elf", 4321) == [
        "qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none",
        "-serial", "tcp:127.0.0.1:4321,server=on,wait=on,nodelay=on",
        "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0,align=off,sleep=off",
        "-kernel", "/tmp/app.elf",
    ]
    assert qemu_argv("microbit", Path("a.elf"), 1, qemu="/opt/q", icount=False,
                     extra=("-d", "guest_errors")) == [
        "/opt/q", "-machine", "microbit", "-nographic", "-monitor", "none",
        "-serial", "tcp:127.0.0.1:1,server=on,wait=on,nodelay=on",
        "-semihosting-config", "enable=on,target=native",
        "-d", "guest_errors", "-kernel", "a.elf",
    ]


def test_missing_qemu_says_how_to_install(tmp_path):
    elf = tmp_path / "app.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(ToolNotFoundError, match=r"^qemu-system-tinyq-nope not found on PATH — "
                       r"install it with `sudo apt-get install qemu-system-arm`"):
        QemuDevice(elf, "mps2-an385", qemu="qemu-system-tinyq-nope").open()


def test_missing_elf(tmp_path):
    require_tools("qemu-system-arm")
    with pytest.raises(DeviceError, match=r"firmware .*nope.elf does not exist — build it first"):
        QemuDevice(tmp_path / "nope.elf", "mps2-an385").open()


# Tiny bare-metal programs for mps2-an385 (CMSDK UART0), built by the test itself:
# MODE 0 boots silently, MODE 1 prints a banner but never m-ready, MODE 2 prints
# a line and ends QEMU with exit code 3 (semihosting SYS_EXIT_EXTENDED).
_PROGRAM = r"""
#include <stdint.h>
#define UART_DATA (*(volatile uint32_t *)0x40004000u)
#define UART_STATE (*(volatile uint32_t *)0x40004004u)
#define UART_CTRL (*(volatile uint32_t *)0x40004008u)
extern uint32_t _stack_top;
static void put(const char *s) {
  while (*s) { while (UART_STATE & 1u) {} UART_DATA = (uint32_t)*s++; }
}
void reset(void) {
  UART_CTRL = 3u;
#if MODE == 1
  put("m-timestamp-mode-performance\r\n");
#elif MODE == 2
  put("bye\r\n");
  static const uint32_t block[2] = {0x20026u, 3u};
  register uint32_t r0 __asm__("r0") = 0x20u;
  register const uint32_t *r1 __asm__("r1") = block;
  __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
#endif
  for (;;) {}
}
__attribute__((section(".vectors"), used)) const void *vectors[2] = {&_stack_top, (void *)reset};
"""
_LINKER = """
MEMORY { FLASH (rx) : ORIGIN = 0x0, LENGTH = 64K  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 64K }
SECTIONS { .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH
  .bss : { *(.bss*) *(COMMON) } > RAM
  _stack_top = ORIGIN(RAM) + LENGTH(RAM); }
"""


@pytest.fixture(scope="module")
def tiny_elfs(tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    d = tmp_path_factory.mktemp("tiny")
    (d / "t.c").write_text(_PROGRAM)
    (d / "t.ld").write_text(_LINKER)
    elfs = {}
    for mode, name in enumerate(("silent", "no_ready", "exit3")):
        elfs[name] = d / f"{name}.elf"
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-O1", "-nostdlib",
                        "-ffreestanding", f"-DMODE={mode}", "-T", str(d / "t.ld"),
                        str(d / "t.c"), "-o", str(elfs[name])], check=True)
    return elfs


def _assert_reaped(pid: int, tcp_port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)           # not even a zombie: waited for
    with socket.socket() as s:    # nobody listens on the port any more
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", tcp_port))
    with socket.socket() as s:    # and it can be listened on again (TIME_WAIT allows that)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", tcp_port))


FAST = Timeouts(default=0.5, boot=1.0, probe_after=0.3, settle=0.05)


@pytest.mark.qemu
@pytest.mark.parametrize("program", ["silent", "no_ready"])
def test_qemu_firmware_that_never_gets_ready_is_killed(tiny_elfs, program):
    dev = QemuDevice(tiny_elfs[program], "mps2-an385")
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match=r"^no m-ready from QEMU mps2-an385 \(tcp:127"
                       r".*within 1 s of opening it.* — the firmware did not start"):
        with dev:
            assert dev.argv[-1] == str(tiny_elfs[program])
            pid, port = dev.pid, dev.tcp_port
            Client(dev, timeouts=FAST).wait_ready()
    assert time.monotonic() - start < 10
    _assert_reaped(pid, port)


@pytest.mark.qemu
def test_qemu_exit_is_reported_with_its_code(tiny_elfs):
    with QemuDevice(tiny_elfs["exit3"], "mps2-an385") as dev:
        pid, port = dev.pid, dev.tcp_port
        assert dev.readline(5) == "bye"
        with pytest.raises(DeviceError, match=r"^QEMU mps2-an385 .* exited with code 3 during "
                           r"the run") as info:
            dev.readline(5)
        assert info.value.returncode == 3
    _assert_reaped(pid, port)


@pytest.mark.qemu
def test_qemu_killed_on_keyboard_interrupt(tiny_elfs):
    dev = QemuDevice(tiny_elfs["silent"], "mps2-an385")
    with pytest.raises(KeyboardInterrupt):
        with dev:
            pid, port = dev.pid, dev.tcp_port
            raise KeyboardInterrupt
    _assert_reaped(pid, port)


@pytest.mark.qemu
def test_qemu_that_cannot_start_quotes_its_stderr(tiny_elfs):
    dev = QemuDevice(tiny_elfs["silent"], "no-such-machine")
    with pytest.raises(DeviceError, match=r"exited with code 1 while starting: qemu-system-arm: "
                       r"unsupported machine type.* — QEMU could not run silent.elf on machine "
                       r"no-such-machine"):
        dev.open()
    assert dev.pid is None


# -- Renode ---------------------------------------------------------------------------

def test_renode_script_and_argv_are_exact(tmp_path):
    assert renode_script("/fw/app.elf", "platforms/cpus/stm32f4.repl", "sysbus.usart1", 4321) \
        == "\n".join([
            "# generated by tinyq for app.elf",
            'mach create "tinyq"',
            "machine LoadPlatformDescription @platforms/cpus/stm32f4.repl",
            "sysbus LoadELF @/fw/app.elf",
            'emulation CreateServerSocketTerminal 4321 "tinyq_uart" false',
            "connector Connect sysbus.usart1 tinyq_uart",
            "",
        ])
    assert renode_argv("/tmp/x.resc") == [
        "renode", "--disable-gui", "--console", "--plain", "-e", "include @/tmp/x.resc"]


def test_project_script_is_the_run_time_script_with_variables():
    """One writer: the project's renode/tinyq.resc has the lines `tinyq run --emulator
    renode` writes, with $elf/$port (defaulting to build/app.elf and 5555) in their place."""
    board = boards.load("stm32f746g-disco")
    text = project_script(board, "Generated by tinyq (test)")
    assert text.startswith("# Generated by tinyq (test)\n")
    assert "$elf ?= @build/app.elf\n$port ?= 5555\n" in text
    run_time = renode_script("/fw/app.elf", board.emulator.renode_platform, renode_uart(board),
                             4321)
    as_project = (run_time.replace("@/fw/app.elf", "$elf").replace("4321", "$port")
                  .splitlines()[1:])
    assert text.splitlines()[-len(as_project):] == as_project
    assert "connector Connect sysbus.usart1 tinyq_uart" in text
    assert "start" not in [line.strip() for line in text.splitlines()]
    with pytest.raises(ValueError, match="no Renode platform"):
        project_script(boards.load("mps2-an385"), "x")


@pytest.mark.parametrize("board_name, uart", [
    ("nrf52840-dk", "sysbus.uart0"),                 # nrf52840.repl: uart0 @ 0x40002000
    ("arduino-nano-33-ble-sense", "sysbus.uart0"),
    ("netduinoplus2", "sysbus.usart1"),              # stm32f4.repl: usart1 @ 0x40011000
    ("stm32f746g-disco", "sysbus.usart1"),
])
def test_renode_uart_names_the_platform_peripheral(board_name, uart):
    assert renode_uart(boards.load(board_name)) == uart


def test_missing_renode_says_how_to_install(tmp_path):
    elf = tmp_path / "app.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(ToolNotFoundError, match=r"^renode-tinyq-nope not found on PATH — "
                       r"install Renode"):
        RenodeDevice(elf, "platforms/cpus/stm32f4.repl", "sysbus.usart1",
                     renode="renode-tinyq-nope").open()


@pytest.mark.qemu
def test_renode_launches_and_is_reaped(tiny_elfs):
    if shutil.which("renode") is None:
        pytest.skip("renode is not installed (optional emulator; see renode.io)")
    dev = RenodeDevice(tiny_elfs["silent"], "platforms/cpus/stm32f4.repl", "sysbus.usart1")
    with dev:
        pid, port = dev.pid, dev.tcp_port
        with pytest.raises(DeviceTimeoutError):
            dev.readline(0.5)
    _assert_reaped(pid, port)


# -- faults through the real harness (tq_main.c + D1's test runtime) -------------------

FIXTURE = Path(__file__).parent / "fixtures" / "test_runtime.c"


def _harness_elf(out: Path, runtime_text: str) -> Path:
    from tinyq import boards
    from tinyq.firmware.codegen import (
        GenerateOptions,
        ModelInfo,
        RuntimeSources,
        render_project,
        write_project,
    )

    files = render_project(
        boards.load("mps2-an385"),
        RuntimeSources(name="test", files={"test_runtime.c": runtime_text}, arena_bytes=32),
        ModelInfo(name="t", sha256="7e5700000001" + "0" * 52, input_bytes=16, num_layers=2),
        GenerateOptions(semihosting=True))
    project = write_project(files, out)
    done = subprocess.run(["make", "-C", str(project), "-j2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return project / "build" / "app.elf"


@pytest.fixture(scope="module")
def faulty_elfs(tmp_path_factory):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    base = FIXTURE.read_text()
    marker = "int tq_invoke(void)\n{\n"
    assert marker in base, "tests/fixtures/test_runtime.c changed: update this test"
    d = tmp_path_factory.mktemp("harness")
    return {
        # ~4e9 instructions per inference: QEMU runs it for seconds, the host gives up first
        "hang": _harness_elf(d / "hang", "#define TQ_TEST_SPIN 0x7FFFFFFFu\n" + base),
        # an undefined instruction in the runtime: HardFault report, then QEMU exits
        "fault": _harness_elf(d / "fault", base.replace(
            marker, marker + '    __asm volatile(".syntax unified\\n udf #0");\n')),
    }


@pytest.mark.qemu
def test_firmware_that_hangs_mid_command_times_out_and_qemu_is_reaped(faulty_elfs):
    dev = QemuDevice(faulty_elfs["hang"], "mps2-an385")
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match=r"^no m-ready from QEMU mps2-an385 .* within "
                       r"1\.01 s after 'infer 1 0'; last line 'm-lap-us-\d+' — the firmware hung"):
        with dev:
            pid, port = dev.pid, dev.tcp_port
            client = Client(dev, timeouts=Timeouts(infer=1.0, infer_per_run=0.01))
            client.wait_ready()
            client.load_input(bytes(16))
            client.infer(1, 0)
    assert time.monotonic() - start < 10
    _assert_reaped(pid, port)


@pytest.mark.qemu
def test_hardfault_is_reported_with_the_firmware_words(faulty_elfs):
    with QemuDevice(faulty_elfs["fault"], "mps2-an385") as dev:
        pid, port = dev.pid, dev.tcp_port
        client = Client(dev)
        client.wait_ready()
        client.load_input(bytes(16))
        with pytest.raises(DeviceError, match=r"^QEMU mps2-an385 .* failed during 'infer 1 0': "
                           r"HardFault pc=0x[0-9a-f]+.*; then QEMU mps2-an385 .* exited with "
                           r"code 2 during the run — the firmware crashed"):
            client.infer(1, 0)
    _assert_reaped(pid, port)


@pytest.mark.qemu
def test_qemu_left_open_is_reaped_at_interpreter_exit(tiny_elfs):
    import sys

    script = ("import sys\nfrom tinyq.device.qemu import QemuDevice\n"
              f"dev = QemuDevice({str(tiny_elfs['silent'])!r}, 'mps2-an385')\n"
              "dev.open()\nprint(dev.pid, dev.tcp_port, flush=True)\nsys.exit(0)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    pid, port = (int(x) for x in done.stdout.split())
    _assert_reaped(pid, port)


def test_quoted_device_lines_are_short_and_garbage_is_named():
    from tinyq.device import QUOTED_CHARS, quote_line

    long = "m-results-[" + "1," * 500
    text = quote_line(long)
    assert text.startswith("a truncated line 'm-results-[1,") and "(1,011 characters)" in text
    assert len(text) < QUOTED_CHARS + 40
    from tinyq.device import decode_line

    garbage = decode_line(bytes(range(0x80, 0x80 + 100)) + bytes(range(0x00, 0x20)) * 3 + b"ab")
    assert quote_line(garbage) == ("198 bytes of unreadable data (a wrong baud rate, or "
                                   "another program on the port?)")
    assert quote_line("m-resu") == "a truncated line 'm-resu'"


def test_run_wires_renode_to_the_uart_the_project_script_names(monkeypatch):
    """tinyq run --emulator renode and the project's renode/tinyq.resc use one UART rule."""
    import tinyq.device.renode as rn
    from tinyq.measure.runner import RunOptions, open_device

    board = boards.load("nrf52840-dk")
    device = open_device(board, Path("/fw/app.elf"), "renode", None, RunOptions())
    try:
        assert device.uart == rn.renode_uart(board) == "sysbus.uart0"
    finally:
        device.close()
