"""Flashing backends: the exact commands and API calls each makes, and their errors."""

from __future__ import annotations

import struct
import sys
import types
from pathlib import Path

import pytest
from conftest import require_tools
from elf_helpers import write_elf

from tinyq import boards
from tinyq.board_profile import Board, Counter, Emulator, Flashing, MemoryRegion, Uart
from tinyq.cli import main
from tinyq.device import flashing as fl
from tinyq.errors import DeviceError, ToolNotFoundError, UserInputError


def make_board(method: str, **flashing) -> Board:
    return Board(
        name="testboard", vendor="t", description="t", core="cortex-m4", fpu="fpv4-sp-d16",
        clock_hz=100_000_000,
        flash=MemoryRegion("flash", 0x08000000, 0x100000),
        ram=MemoryRegion("ram", 0x20000000, 0x20000),
        uart=Uart("stm32-usart", 0x40011000), counter=Counter("dwt", 100_000_000),
        flashing=Flashing(method=method, **flashing), emulator=Emulator(),
    )


@pytest.fixture
def elf(tmp_path: Path) -> Path:
    """A tinyq-style image for make_board(): in its flash, naming it."""
    return write_elf(tmp_path / "app.elf", 0x08000000, board="testboard")


@pytest.fixture
def recorded(monkeypatch):
    calls: list[tuple[str, ...]] = []

    def fake_run_tool(argv, timeout=fl.FLASH_TOOL_TIMEOUT_S):
        calls.append(tuple(argv))
        if argv[0] == "arm-none-eabi-objcopy":
            Path(argv[-1]).write_bytes(b"\x01\x02\x03")
        return ""

    monkeypatch.setattr(fl, "run_tool", fake_run_tool)
    return calls


def test_openocd_exact_argv(elf, recorded):
    board = make_board("openocd", openocd_config="board/stm32f7discovery.cfg")
    fl.flash(elf, board, fl.FlashOptions(probe="0669FF48"))
    assert recorded == [("openocd", "-f", "board/stm32f7discovery.cfg",
                         "-c", "adapter serial 0669FF48",
                         "-c", f"program {elf} verify reset exit")]


def test_openocd_without_probe_or_verify(elf, recorded):
    board = make_board("openocd", openocd_config="board/st_nucleo_f4.cfg")
    fl.flash(elf, board, fl.FlashOptions(verify=False))
    assert recorded == [("openocd", "-f", "board/st_nucleo_f4.cfg",
                         "-c", f"program {elf} reset exit")]


def test_copy_converts_then_copies_to_labelled_drive(elf, recorded, tmp_path, monkeypatch):
    drive = tmp_path / "media" / "DIS_F746NG"
    drive.mkdir(parents=True)
    monkeypatch.setattr(fl, "drive_roots", lambda: [tmp_path / "media"])
    board = make_board("copy", drive_label="DIS_F746NG")
    fl.flash(elf, board)
    assert recorded[0][:3] == ("arm-none-eabi-objcopy", "-O", "binary")
    assert (drive / "app.bin").read_bytes() == b"\x01\x02\x03"


def test_uf2_blocks(elf, recorded, tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    board = make_board("uf2", drive_label="RPI-RP2")
    fl.flash(elf, board, fl.FlashOptions(mount_point=drive))
    uf2 = (drive / "app.uf2").read_bytes()
    assert len(uf2) == 512
    magic0, magic1, flags, addr, size, n, total, family = struct.unpack("<8I", uf2[:32])
    assert (magic0, magic1, flags) == (fl.UF2_MAGIC_START0, fl.UF2_MAGIC_START1,
                                       fl.UF2_FLAG_FAMILY_ID)
    assert (addr, size, n, total, family) == (0x08000000, 256, 0, 1, fl.UF2_FAMILY_RP2040)
    assert uf2[32:35] == b"\x01\x02\x03"
    assert struct.unpack("<I", uf2[-4:])[0] == fl.UF2_MAGIC_END


def test_uf2_addresses_advance():
    data = bytes(range(256)) * 3
    uf2 = fl.bin_to_uf2(data, 0x10000000)
    addrs = [struct.unpack_from("<I", uf2, 512 * i + 12)[0] for i in range(3)]
    assert addrs == [0x10000000, 0x10000100, 0x10000200]


def test_missing_drive_is_clear(elf, recorded, tmp_path, monkeypatch):
    monkeypatch.setattr(fl, "drive_roots", lambda: [tmp_path])
    with pytest.raises(DeviceError, match="no USB drive named RPI-RP2 is mounted"):
        fl.flash(elf, make_board("uf2", drive_label="RPI-RP2"))


class FakeProbe:
    def __init__(self, uid):
        self.unique_id = uid


def install_fake_pyocd(monkeypatch, probes, calls):
    class Session:
        def __init__(self):
            self.target = types.SimpleNamespace(reset=lambda: calls.append(("reset",)))

        def __enter__(self):
            calls.append(("open",))
            return self

        def __exit__(self, *exc):
            calls.append(("close",))

    class ConnectHelper:
        @staticmethod
        def get_all_connected_probes(blocking, unique_id=None):
            calls.append(("list", blocking, unique_id))
            return [p for p in probes if unique_id is None or unique_id in p.unique_id]

        @staticmethod
        def session_with_chosen_probe(blocking, unique_id, options):
            calls.append(("session", blocking, unique_id, dict(options)))
            return Session()

    class FileProgrammer:
        def __init__(self, session, progress=None):
            self.progress = progress

        def program(self, path, file_format=None):
            calls.append(("program", path, file_format))
            self.progress(1.0)

    helpers = types.ModuleType("pyocd.core.helpers")
    helpers.ConnectHelper = ConnectHelper
    programmer = types.ModuleType("pyocd.flash.file_programmer")
    programmer.FileProgrammer = FileProgrammer
    for name, mod in {"pyocd": types.ModuleType("pyocd"),
                      "pyocd.core": types.ModuleType("pyocd.core"),
                      "pyocd.flash": types.ModuleType("pyocd.flash"),
                      "pyocd.core.helpers": helpers,
                      "pyocd.flash.file_programmer": programmer}.items():
        monkeypatch.setitem(sys.modules, name, mod)


def test_pyocd_api_calls(elf, monkeypatch):
    calls: list = []
    install_fake_pyocd(monkeypatch, [FakeProbe("066DFF485")], calls)
    fl.flash(elf, make_board("pyocd", pyocd_target="stm32f746ng"))
    assert calls == [
        ("list", False, None),
        ("session", False, "066DFF485", {"target_override": "stm32f746ng"}),
        ("open",), ("program", str(elf), "elf"), ("reset",), ("close",),
    ]


def test_pyocd_without_probe_is_clear(elf, monkeypatch):
    install_fake_pyocd(monkeypatch, [], [])
    with pytest.raises(DeviceError, match="no debug probe found for testboard"):
        fl.flash(elf, make_board("pyocd", pyocd_target="stm32f746ng"))


def test_pyocd_several_probes_needs_choice(elf, monkeypatch):
    install_fake_pyocd(monkeypatch, [FakeProbe("A1"), FakeProbe("B2")], [])
    with pytest.raises(UserInputError, match="--probe"):
        fl.flash(elf, make_board("pyocd", pyocd_target="stm32f746ng"))


def test_pyocd_not_installed(elf, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyocd", None)
    monkeypatch.setitem(sys.modules, "pyocd.core.helpers", None)
    with pytest.raises(ToolNotFoundError, match=r"tinyq\[flash\]"):
        fl.flash(elf, make_board("pyocd", pyocd_target="stm32f746ng"))


def test_real_openocd_missing_or_no_probe(elf):
    """Without a probe attached the real tool ends in one clear error (never a hang)."""
    board = make_board("openocd", openocd_config="board/stm32f7discovery.cfg")
    with pytest.raises((ToolNotFoundError, DeviceError)) as info:
        fl.flash(elf, board)
    assert "openocd" in str(info.value)


def test_emulated_board_says_use_run(elf):
    with pytest.raises(UserInputError, match="tinyq run"):
        fl.flash(elf, make_board("emulator"))


def test_not_an_elf(tmp_path):
    bad = tmp_path / "app.elf"
    bad.write_text("hello")
    with pytest.raises(UserInputError, match="not an ELF"):
        fl.flash(bad, make_board("openocd", openocd_config="x.cfg"))


def test_missing_mount_point_is_one_line(elf, recorded, tmp_path):
    with pytest.raises(DeviceError, match="mount point .* not found"):
        fl.flash(elf, make_board("copy", drive_label="X"),
                 fl.FlashOptions(mount_point=tmp_path / "nope"))


# ------------------------------------------------------------ is the image for this board?

def test_image_built_for_another_board_is_refused(tmp_path, recorded):
    other = write_elf(tmp_path / "app.elf", 0x08000000, board="stm32f746g-disco")
    with pytest.raises(UserInputError) as info:
        fl.flash(other, make_board("openocd", openocd_config="x.cfg"))
    assert str(info.value) == (
        f"{other} was built for stm32f746g-disco, not testboard — flash it with "
        "--board stm32f746g-disco, or rebuild it with `tinyq build MODEL --board testboard`")
    assert recorded == []   # nothing ran: the probe never touched the chip


def test_image_outside_the_boards_flash_is_refused(tmp_path, recorded):
    foreign = write_elf(tmp_path / "app.elf", 0x00000000)   # no board id: not tinyq's
    with pytest.raises(UserInputError, match=r"puts 64 bytes at 0x00000000, outside "
                       r"testboard's flash \(0x08000000-0x08100000\)"):
        fl.flash(foreign, make_board("openocd", openocd_config="x.cfg"))
    assert recorded == []


def test_image_running_past_the_end_of_flash_is_refused(tmp_path, recorded):
    big = write_elf(tmp_path / "app.elf", 0x08100000 - 16, b"\x00" * 64)
    with pytest.raises(UserInputError, match="outside testboard's flash"):
        fl.flash(big, make_board("openocd", openocd_config="x.cfg"))


def test_foreign_image_inside_flash_is_accepted(tmp_path, recorded):
    foreign = write_elf(tmp_path / "app.elf", 0x08004000)
    fl.flash(foreign, make_board("openocd", openocd_config="x.cfg"))
    assert len(recorded) == 1


def test_non_arm_elf_is_refused(tmp_path, recorded):
    x86 = write_elf(tmp_path / "app.elf", 0x08000000, machine=3)
    with pytest.raises(UserInputError, match="is not Arm code"):
        fl.flash(x86, make_board("openocd", openocd_config="x.cfg"))


def test_truncated_elf_is_one_line(tmp_path, recorded):
    cut = tmp_path / "app.elf"
    cut.write_bytes(write_elf(tmp_path / "full.elf", 0x08000000).read_bytes()[:80])
    with pytest.raises(UserInputError, match="damaged ELF"):
        fl.flash(cut, make_board("openocd", openocd_config="x.cfg"))


def test_no_board_check_programs_anyway(tmp_path, recorded):
    other = write_elf(tmp_path / "app.elf", 0x00000000, board="mps2-an386")
    fl.flash(other, make_board("openocd", openocd_config="x.cfg"),
             fl.FlashOptions(check_board=False))
    assert recorded[0][-1] == f"program {other} verify reset exit"


def test_cli_wrong_board_is_one_line(tmp_path, capsys, recorded):
    other = write_elf(tmp_path / "app.elf", 0x08000000, board="stm32f746g-disco")
    assert main(["flash", str(other), "--board", "nucleo-f446re"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {other} was built for stm32f746g-disco, not nucleo-f446re")
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.qemu
def test_built_firmware_names_its_board(tmp_path, recorded):
    """A real build carries its board name: a same-chip-family board is refused, its own is not."""
    require_tools("arm-none-eabi-gcc")
    from test_build import fixture_project

    from tinyq.firmware.compiling import build
    fw = build(fixture_project(tmp_path, "nucleo-f446re"))
    own = boards.load("nucleo-f446re")
    fl.flash(fw.elf, own, fl.FlashOptions(method="openocd"))
    assert recorded[0][-1] == f"program {fw.elf} verify reset exit"
    disco = boards.load("stm32f746g-disco")   # same flash origin, other pins and clocks
    with pytest.raises(UserInputError, match="was built for nucleo-f446re, not stm32f746g-disco"):
        fl.flash(fw.elf, disco, fl.FlashOptions(method="openocd"))
    # the project folder is accepted in place of the ELF, and checked the same way
    with pytest.raises(UserInputError, match="was built for nucleo-f446re"):
        fl.flash(fw.project, disco, fl.FlashOptions(method="openocd"))


# ------------------------------------------------------------ dry run and the docs table

def test_dry_run_prints_the_exact_command_and_touches_nothing(recorded, capsys, tmp_path):
    own = write_elf(tmp_path / "app.elf", 0x08000000, board="nucleo-f446re")
    assert main(["flash", str(own), "--board", "nucleo-f446re", "--method", "openocd",
                 "--probe", "066DFF", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == (f"openocd -f board/st_nucleo_f4.cfg -c 'adapter serial 066DFF' "
                   f"-c 'program {own} verify reset exit'\n")
    assert recorded == []


def test_dry_run_checks_the_image_like_flash(tmp_path, recorded):
    other = write_elf(tmp_path / "app.elf", 0x08000000, board="nucleo-f446re")
    with pytest.raises(UserInputError, match="built for nucleo-f446re, not rpi-pico"):
        fl.plan(other, boards.load("rpi-pico"))


def test_uf2_plan_names_base_and_family(tmp_path):
    own = write_elf(tmp_path / "app.elf", 0x10000000, board="rpi-pico")
    steps = fl.plan(own, boards.load("rpi-pico"))
    assert steps[1] == ("wrap $TMP/app.bin into UF2 blocks at 0x10000000 "
                        "(family 0xe48bff56)")
    assert steps[2] == "copy $TMP/app.uf2 to <the drive labelled RPI-RP2>"


def test_flashing_doc_table_is_generated():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "flashing.md").read_text()
    table = doc.split("<!-- flash-table -->\n")[1].split("<!-- /flash-table -->")[0]
    assert table == fl.markdown(), "regenerate: python -m tinyq.device.flashing --markdown"


@pytest.mark.qemu
def test_cli_builds_a_model_for_the_board_then_flashes_it(tmp_path, capsys, recorded,
                                                          monkeypatch):
    """`tinyq flash MODEL.tflite --board B` builds (cached) for B, then programs that ELF."""
    require_tools("arm-none-eabi-gcc")
    from tinyq.model.tflite_writer import TensorSpec, single_op_model

    monkeypatch.setenv("TINYQ_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "relu.tflite"
    model.write_bytes(single_op_model("RELU", [TensorSpec((1, 8), "int8", 0.1, -3)],
                                      [TensorSpec((1, 8), "int8", 0.1, -3)]))
    assert main(["flash", str(model), "--board", "nucleo-f446re", "--method", "openocd"]) == 0
    [argv] = recorded
    elf = Path(argv[-1].split()[1])
    assert elf.name == "app.elf" and (tmp_path / "cache") in elf.parents
    assert fl.elffile.read(elf).symbol_string(fl.BOARD_ID_SYMBOL) == "nucleo-f446re"
    assert "flashed" in capsys.readouterr().out


# ------------------------------------------------------------ methods a board can really take

@pytest.mark.parametrize("board, method, why", [
    ("nucleo-f446re", "uf2", "UF2 drag-and-drop is the RP2040 bootloader's"),
    ("nrf52840-dk", "uf2", "UF2 drag-and-drop is the RP2040 bootloader's"),
    ("rpi-pico", "copy", "takes UF2 images, not raw binaries"),
    ("nrf52840-dk", "emulator", "it is a real board"),
    ("rpi-pico", "openocd", "names no flashing.openocd_config"),
])
def test_a_method_that_would_leave_the_board_silent_is_refused(tmp_path, recorded, board,
                                                               method, why):
    profile = boards.load(board)
    image = write_elf(tmp_path / "app.elf", profile.flash.origin, board=board)
    with pytest.raises(UserInputError) as info:
        fl.flash(image, profile, fl.FlashOptions(method=method, mount_point=tmp_path))
    assert f"{board} cannot be flashed with --method {method} (" in str(info.value)
    assert why in str(info.value)
    assert "use --method " in str(info.value)
    assert recorded == []


def test_every_method_in_the_docs_table_is_accepted(tmp_path):
    for name in boards.names():
        profile = boards.load(name)
        for method in fl.methods_for(profile):
            assert fl.backend_for(profile, method).name == method


def test_unbuilt_project_folder_says_build_it(tmp_path):
    from tinyq.firmware.codegen import PROJECT_FILE

    project = tmp_path / "proj"
    project.mkdir()
    (project / PROJECT_FILE).write_text("{}")
    with pytest.raises(UserInputError, match=r"proj is a tinyq project that is not built yet "
                       r"— run `tinyq build .*proj` first"):
        fl.flash(project, make_board("openocd", openocd_config="x.cfg"))
