"""Board profiles: every bundled file loads, every invalid fixture fails naming file and field."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tinyq import boards
from tinyq.board_profile import Board
from tinyq.cli import main
from tinyq.errors import BoardError
from tinyq.resources import boards_dir

FIXTURES = Path(__file__).parent / "fixtures" / "boards"
INVALID = sorted(FIXTURES.glob("invalid_*.toml"))

QEMU_BOARDS = ("mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547",
               "netduinoplus2", "lm3s6965evb", "microbit")
REAL_BOARDS = ("stm32f746g-disco", "nucleo-l4r5zi", "nucleo-f446re", "nrf52840-dk",
               "arduino-nano-33-ble-sense", "rpi-pico")

#: QEMU 7.2 SysTick clocks with CLKSOURCE=1, as measured (QEMU_BOARDS.md): under
#: -icount shift=0 one tick is 1e9 / clock instructions.
QEMU_SYSTICK_HZ = {
    "mps2-an385": 25_000_000, "mps2-an386": 25_000_000, "mps2-an500": 25_000_000,
    "mps2-an505": 20_000_000, "mps3-an547": 32_000_000, "netduinoplus2": 168_000_000,
    "lm3s6965evb": 12_500_000, "microbit": 16_000_000,
}

#: (core, fpu, flash origin, flash size, ram origin, ram size, uart base) from QEMU_BOARDS.md
#: and the boards' reference manuals / Zephyr DTS.
KEY_NUMBERS = {
    "mps2-an385": ("cortex-m3", "none", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40004000),
    "mps2-an386": ("cortex-m4", "fpv4-sp-d16", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40004000),
    "mps2-an500": ("cortex-m7", "fpv5-d16", 0x0, 4 << 20, 0x20000000, 4 << 20, 0x40004000),
    "mps2-an505": ("cortex-m33", "fpv5-sp-d16", 0x10000000, 4 << 20, 0x38000000, 4 << 20,
                   0x50200000),
    "mps3-an547": ("cortex-m55", "auto", 0x0, 512 << 10, 0x20000000, 512 << 10, 0x59303000),
    "netduinoplus2": ("cortex-m4", "fpv4-sp-d16", 0x08000000, 1 << 20, 0x20000000, 128 << 10,
                      0x40011000),
    "lm3s6965evb": ("cortex-m3", "none", 0x0, 256 << 10, 0x20000000, 64 << 10, 0x4000C000),
    "microbit": ("cortex-m0", "none", 0x0, 256 << 10, 0x20000000, 16 << 10, 0x40002000),
    "stm32f746g-disco": ("cortex-m7", "fpv5-sp-d16", 0x08000000, 1 << 20, 0x20010000,
                         256 << 10, 0x40011000),
    "nucleo-l4r5zi": ("cortex-m4", "fpv4-sp-d16", 0x08000000, 2 << 20, 0x20000000, 640 << 10,
                      0x40008000),
    "nucleo-f446re": ("cortex-m4", "fpv4-sp-d16", 0x08000000, 512 << 10, 0x20000000,
                      128 << 10, 0x40004400),
    "nrf52840-dk": ("cortex-m4", "fpv4-sp-d16", 0x0, 1 << 20, 0x20000000, 256 << 10,
                    0x40002000),
    "arduino-nano-33-ble-sense": ("cortex-m4", "fpv4-sp-d16", 0x10000, 960 << 10, 0x20000000,
                                  256 << 10, 0x40002000),
    "rpi-pico": ("cortex-m0plus", "none", 0x10000000, 2 << 20, 0x20000000, 264 << 10,
                 0x40034000),
}

VALID = '''\
name = "my-board"
vendor = "Me"
description = "a user board"
soc = "stm32f4"
core = "cortex-m4"
fpu = "fpv4-sp-d16"
clock_hz = 0x5F5E100          # 100 MHz, hex is fine

[memory.flash]
origin = 0x08000000
size = 0x80000

[memory.ram]
origin = 0x20000000
size = 128_000

[uart]
kind = "stm32-usart"
base = 0x40004400
tx_pin = "PA2"
rx_pin = "PA3"

[counter]
kind = "dwt"
clock_hz = 100_000_000

[flashing]
method = "openocd"
openocd_config = "board/st_nucleo_f4.cfg"
'''


def _expected(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# expect: FIELD' comment line")


# ----------------------------------------------------------------------------- bundled


def test_bundled_set_is_complete():
    assert set(boards.names()) == set(QEMU_BOARDS) | set(REAL_BOARDS)


@pytest.mark.parametrize("name", boards.names())
def test_every_bundled_board_loads(name):
    board = boards.load(name)
    assert isinstance(board, Board)
    assert board.name == name == Path(board.source).stem
    assert board.region(board.arena_region).size > board.stack_bytes


@pytest.mark.parametrize("name", sorted(KEY_NUMBERS))
def test_key_numbers(name):
    b = boards.load(name)
    assert (b.core, b.fpu, b.flash.origin, b.flash.size, b.ram.origin, b.ram.size,
            b.uart.base) == KEY_NUMBERS[name]


@pytest.mark.parametrize("name", QEMU_BOARDS)
def test_qemu_boards_count_with_the_measured_systick(name):
    b = boards.load(name)
    assert b.emulated_only and b.emulator.qemu_machine == name
    assert b.flashing.method == "emulator"
    assert b.counter.kind == "systick"
    assert b.counter.clock_hz == QEMU_SYSTICK_HZ[name]


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_real_boards_use_dwt_where_the_core_has_it(name):
    b = boards.load(name)
    assert not b.emulated_only
    assert b.counter.kind == ("dwt" if b.has_dwt else "systick")
    assert b.flashing.method in ("pyocd", "uf2")
    assert b.uart.tx_pin and b.uart.rx_pin


def test_mps2_an386_instructions_per_tick():
    # QEMU_BOARDS.md: SysTick at 25 MHz is 40 instructions per tick under -icount shift=0.
    assert boards.load("mps2-an386").counter.instructions_per_tick_under_icount == 40


def test_netduinoplus2_keeps_the_arena_out_of_unmodelled_ccm():
    b = boards.load("netduinoplus2")
    assert b.region("ccm").origin == 0x10000000 and b.region("ccm").size == 64 << 10
    assert b.arena_region == "ram"
    assert b.ram.size + b.region("ccm").size == 192 << 10


def test_microbit_is_soft_float_thumb1_with_small_stack():
    b = boards.load("microbit")
    assert b.thumb1_only and not b.hard_float
    assert "-mfloat-abi=soft" in b.cflags
    assert b.stack_bytes <= 4096


def test_available_is_sorted_and_frozen():
    all_boards = boards.available()
    assert [b.name for b in all_boards] == sorted(b.name for b in all_boards)
    with pytest.raises(dataclasses.FrozenInstanceError):
        all_boards[0].clock_hz = 1  # type: ignore[misc]


def test_every_supported_qemu_machine_has_a_bundled_board():
    machines = {b.emulator.qemu_machine for b in boards.available() if b.emulator.qemu_machine}
    assert machines == set(boards.QEMU_MACHINES)


def test_bundled_dir_is_the_package_data():
    assert (boards_dir() / "mps2-an386.toml").is_file()


# ----------------------------------------------------------------------------- invalid


def test_there_is_a_fixture_per_rule():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_names_file_and_field(path):
    with pytest.raises(BoardError) as info:
        boards.load(path)
    message = str(info.value)
    assert path.name in message
    assert _expected(path) in message
    assert " — " in message, "every message carries a fix"
    assert "\n" not in message


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_fails_validate_cli(path, capsys):
    assert main(["boards", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert path.name in err and "Traceback" not in err


def test_typo_suggests_the_right_key(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text(VALID.replace("[memory.", "[memroy."))
    with pytest.raises(BoardError, match=r"x\.toml: unknown field 'memroy' — did you mean "
                                         r"'memory'\?"):
        boards.load(f)


# ----------------------------------------------------------------------------- user files


def test_user_file_by_path(tmp_path):
    f = tmp_path / "my-board.toml"
    f.write_text(VALID)
    b = boards.load(str(f))
    assert b.name == "my-board" and b.clock_hz == 100_000_000
    assert b.ram.size == 128_000
    assert b.fpu == "fpv4-sp-d16" and b.stack_bytes == 8192 and b.arena_region == "ram"
    assert b.emulator.qemu_machine == "" and not b.can_emulate
    assert boards.load(f) == b  # a Path works too
    assert boards.validate_file(f) == b


def test_loads_from_text_names_the_source():
    with pytest.raises(BoardError, match=r"^inline\.toml: core is missing"):
        boards.loads(VALID.replace('core = "cortex-m4"\n', ""), source="inline.toml")


def test_missing_user_file():
    with pytest.raises(BoardError, match="board file nowhere/none.toml not found"):
        boards.load("nowhere/none.toml")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(BoardError) as info:
        boards.load("mps2-an368")
    message = str(info.value)
    assert "unknown board 'mps2-an368'" in message
    assert "mps2-an386" in message and "tinyq boards" in message


def test_unknown_name_without_matches_still_says_how_to_list():
    with pytest.raises(BoardError, match="`tinyq boards` lists"):
        boards.load("zzzzzz")


def test_board_passes_through():
    b = boards.load("microbit")
    assert boards.load(b) is b


# ----------------------------------------------------------------------------- CLI


def test_cli_lists_every_board(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in boards.names():
        assert re.search(rf"^{re.escape(name)}\s", out, re.MULTILINE)
    row = next(line for line in out.splitlines() if line.startswith("nucleo-l4r5zi "))
    assert row.split()[1:6] == ["cortex-m4", "120", "2", "MB", "640"]
    assert "real" in row
    row = next(line for line in out.splitlines() if line.startswith("microbit "))
    assert "emulated" in row and "qemu" in row


def test_cli_show_prints_hex_addresses(capsys):
    assert main(["boards", "show", "mps2-an505"]) == 0
    out = capsys.readouterr().out
    assert "0x10000000" in out and "0x38000000" in out and "0x50200000" in out
    assert "-mcpu=cortex-m33" in out and "qemu machine" in out
    assert "50 instructions/tick" in out


def test_cli_show_user_file(tmp_path, capsys):
    f = tmp_path / "my-board.toml"
    f.write_text(VALID)
    assert main(["boards", "show", str(f)]) == 0
    assert "my-board" in capsys.readouterr().out


def test_cli_show_unknown_exits_1(capsys):
    assert main(["boards", "show", "nucleo-l4r6"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown board 'nucleo-l4r6'") and "nucleo-l4r5zi" in err


def test_cli_validate_ok_and_mixed(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(VALID)
    assert main(["boards", "validate", str(good)]) == 0
    assert "ok: " in capsys.readouterr().out
    bad = INVALID[0]
    assert main(["boards", "validate", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ok: " in captured.out and bad.name in captured.err


# ----------------------------------------------------------------------------- soc and glue


def test_docs_list_exactly_the_socs():
    doc = (Path(__file__).parents[1] / "docs" / "boards.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `soc` |"))
    meaning = row.split("|")[4].split("(`tinyq.boards.SOCS`)")[0]
    assert re.findall(r"`([a-z0-9-]+)`", meaning) == list(boards.SOCS)


def test_soc_tables_agree_with_the_glue():
    from tinyq.firmware.codegen import board as glue

    assert set(glue.SOCS) <= set(boards.SOCS)
    assert set(glue.STM32_FAMILIES) == {n for n in boards.SOCS if n.startswith("stm32")}
    for soc in boards.SOCS.values():
        assert set(soc.uart_kinds) <= set(boards.UART_KINDS)
    assert set(glue.available("uart")) == set(boards.UART_KINDS)
    assert set(glue.available("counter")) == set(boards.COUNTER_KINDS)


def test_what_validates_also_renders_board_glue(tmp_path):
    # a profile that `boards validate` accepts must not be refused later by `generate`
    from tinyq.firmware.codegen.board import board_glue

    board = boards.loads(VALID, source="valid.toml")
    assert board_glue(board).soc["uart_name"] == "USART2"
    for name in boards.names():
        board_glue(boards.load(name))


def test_a_custom_board_without_soc_still_works():
    text = (VALID.replace('soc = "stm32f4"\n', "")
            .replace('kind = "stm32-usart"', 'kind = "cmsdk"')
            .replace('tx_pin = "PA2"\nrx_pin = "PA3"\n', ""))
    from tinyq.firmware.codegen.board import board_glue

    board = boards.loads(text, source="nosoc.toml")
    assert board.soc == "" and board_glue(board).soc_template == "none"
    # nRF UARTs without a soc: pins stay optional, but must be nRF names when given
    nrf = text.replace('kind = "cmsdk"', 'kind = "nrf-uart"')
    assert boards.loads(nrf).uart.tx_pin == ""
    with pytest.raises(BoardError, match=r'^x\.toml: uart\.tx_pin "PA2" is not a nrf-uart pin '
                                         r'name — write it as "P0\.24"$'):
        boards.loads(nrf.replace("[counter]", 'tx_pin = "PA2"\n\n[counter]'), source="x.toml")


def test_unknown_soc_is_reported_as_such_with_a_close_match():
    with pytest.raises(BoardError) as info:
        boards.loads(VALID.replace('"stm32f4"', '"stm32f9"'), source="b12.toml")
    message = str(info.value)
    assert message.startswith('b12.toml: soc "stm32f9" is not a known soc')
    assert "did you mean 'stm32f" in message and "uart.kind" not in message


def test_cli_validate_needs_a_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["boards", "validate"])
    assert info.value.code == 2


def test_the_example_in_the_docs_is_valid():
    doc = (Path(__file__).parents[1] / "docs" / "boards.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert blocks, "docs/boards.md lost its TOML example"
    for block in blocks:
        board = boards.loads(block, source="docs/boards.md")
        assert board.name == "my-f446"
