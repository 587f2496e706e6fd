"""The device harness: ``tq_main.c`` (the protocol), ``tq_config.h``, ``tq_board.h``.

The harness is the same C for every board and runtime; what differs is in
``tq_config.h``: identity strings, the counter, and buffer sizes computed here
from the model (the ``db`` buffer holds exactly the model's input bytes, so a
16 KB Cortex-M0 is not asked for more).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyq.board_profile import Board
from tinyq.errors import UserInputError
from tinyq.resources import templates_dir
from tinyq.templating import c_comment, render

#: The MLPerf Tiny models the runner knows (the `profile` command's m-model-[...]).
MLPERF_MODELS = ("kws01", "vww01", "ic01", "ad01", "strww01")
#: Models whose runner input is uint8 image bytes that the reference firmware
#: shifts to int8 by subtracting 128 (benchmark/reference_submissions/*).
MLPERF_UINT8_IMAGES = ("ic01", "vww01")

#: Per-inference tick counts kept for `tq-cycles` on boards with little RAM
#: (4 bytes each) and on the rest. More runs are still timed and summed.
MAX_RUNS_SMALL = 32
MAX_RUNS = 256
#: Boards with less RAM than this get MAX_RUNS_SMALL.
SMALL_RAM_BYTES = 64 * 1024


@dataclass(frozen=True)
class ModelInfo:
    """What the harness needs to know about the model."""

    name: str             # file name, for headers
    sha256: str
    input_bytes: int      # all inputs, concatenated in input order
    num_layers: int       # upper bound of tq_num_layers()
    input_int8: bool = True


@dataclass(frozen=True)
class HarnessConfig:
    device_name: str
    firmware_id: str
    mlperf_model: str
    db_offset: int
    max_runs: int
    max_layers: int
    db_bytes: int
    inputs_preserved: bool
    semihosting: bool


def harness_config(board: Board, model: ModelInfo, runtime: str, *, mlperf_model: str = "",
                   device_name: str = "", db_offset: int | None = None,
                   max_runs: int | None = None, inputs_preserved: bool = False,
                   semihosting: bool = False, tinyq_version: str) -> HarnessConfig:
    """Check the harness options and derive the sizes."""
    if mlperf_model and mlperf_model not in MLPERF_MODELS:
        raise UserInputError(f"unknown MLPerf Tiny model {mlperf_model!r}",
                             hint=f"use one of {', '.join(MLPERF_MODELS)}")
    if db_offset is None:
        db_offset = 128 if mlperf_model in MLPERF_UINT8_IMAGES and model.input_int8 else 0
    if not 0 <= db_offset <= 255:
        raise UserInputError(f"db_offset {db_offset} is not a byte value",
                             hint="use 0..255 (128 turns uint8 into int8)")
    if max_runs is None:
        max_runs = MAX_RUNS_SMALL if board.ram.size < SMALL_RAM_BYTES else MAX_RUNS
    if max_runs < 1:
        raise UserInputError(f"max_timed_runs must be >= 1, not {max_runs}",
                             hint="leave it unset for the default")
    name = device_name or f"tinyq-{board.name}"
    if any(c in name for c in "[]%\r\n"):
        raise UserInputError(f"device name {name!r} contains one of [ ] % or a newline",
                             hint="choose a plain name")
    return HarnessConfig(
        device_name=name,
        firmware_id=f"tinyq {tinyq_version} {runtime} {model.sha256[:12]}",
        mlperf_model=mlperf_model or "none",
        db_offset=db_offset,
        max_runs=max_runs,
        max_layers=max(1, model.num_layers),
        db_bytes=max(1, model.input_bytes),
        inputs_preserved=inputs_preserved,
        semihosting=semihosting,
    )


def render_harness(board: Board, config: HarnessConfig, generated: str,
                   tinyq_version: str) -> dict[str, str]:
    """The harness files of a project: ``{relative path: text}``."""
    ctx = {
        "board": board,
        "generated": generated,
        "tinyq_version": tinyq_version,
        "device_name": config.device_name,
        "firmware_id": config.firmware_id,
        "mlperf_model": config.mlperf_model,
        "db_bytes": config.db_bytes,
        "db_offset": config.db_offset,
        "inputs_preserved": config.inputs_preserved,
        "max_runs": config.max_runs,
        "max_layers": config.max_layers,
        "semihosting": config.semihosting,
    }
    interface = (templates_dir() / "common" / "tq_runtime.h").read_text(encoding="utf-8")
    return {
        "tq_main.c": render("common/tq_main.c.j2", **ctx),
        "tq_config.h": render("common/tq_config.h.j2", **ctx),
        "tq_board.h": render("common/tq_board.h.j2", **ctx),
        "tq_runtime.h": f"/* {c_comment(generated)} */\n" + interface,
    }
