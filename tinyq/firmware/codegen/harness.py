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
from tinyq.firmware.templating import c_comment, render
from tinyq.resources import templates_dir

#: The MLPerf Tiny benchmarks the runner knows (the `profile` command's m-model-[...]):
#: keyword spotting, visual wake words, image classification, anomaly detection,
#: streaming wake word.
MLPERF_MODELS = ("kws01", "vww01", "ic01", "ad01", "sww01")
#: ``--mlperf-model auto``: recognise the reference model from its input/output shapes.
MLPERF_AUTO = "auto"
#: (input shape, output shape) of each reference model (benchmark/training in mlcommons/tiny).
MLPERF_SHAPES = {
    ((1, 49, 10, 1), (1, 12)): "kws01",
    ((1, 96, 96, 3), (1, 2)): "vww01",
    ((1, 32, 32, 3), (1, 10)): "ic01",
    ((1, 640), (1, 640)): "ad01",
}
#: The anomaly-detection benchmark: the runner sends float32 features, the
#: firmware quantizes them and answers one score, the mean squared error between
#: the input and its reconstruction (the reference submission's th_results).
MLPERF_FLOAT_SCORE = "ad01"
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
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    input_dtype: str = "int8"         # of the first input
    input_scale: float = 1.0          # of the first input (int8)
    input_zero_point: int = 0


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
    score_elements: int = 0           # ad01: float32 inputs (and outputs) per inference
    score_input_float: bool = False   # ad01 on a float32-input model: no quantization
    input_scale: float = 1.0          # ad01 on an int8 model: how the firmware quantizes
    input_zero_point: int = 0


def guess_mlperf_model(model: ModelInfo) -> str:
    """The reference benchmark ``model`` is, from its shapes; UserInputError if none."""
    key = (model.input_shapes[:1] and model.input_shapes[0],
           model.output_shapes[:1] and model.output_shapes[0])
    if len(model.input_shapes) == 1 and len(model.output_shapes) == 1 and key in MLPERF_SHAPES:
        return MLPERF_SHAPES[key]
    raise UserInputError(
        f"{model.name} is not shaped like an MLPerf Tiny reference model (inputs "
        f"{list(model.input_shapes)}, outputs {list(model.output_shapes)})",
        hint="choose the data format with --mlperf-model " + "|".join(MLPERF_MODELS))


def _score_elements(model: ModelInfo) -> int:
    """ad01's input element count, after checking the model can give its score."""
    shapes_ok = (len(model.input_shapes) == 1 and len(model.output_shapes) == 1
                 and _count(model.input_shapes[0]) == _count(model.output_shapes[0]))
    if not shapes_ok or model.input_dtype not in ("int8", "float32"):
        raise UserInputError(
            f"--mlperf-model {MLPERF_FLOAT_SCORE} needs one int8 or float32 input and one "
            f"output of the same size (an autoencoder); {model.name} has inputs "
            f"{list(model.input_shapes)} ({model.input_dtype}), outputs "
            f"{list(model.output_shapes)}",
            hint="pick the benchmark whose data format fits the model, or leave the option out")
    return _count(model.input_shapes[0])


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def harness_config(board: Board, model: ModelInfo, runtime: str, *, mlperf_model: str = "",
                   device_name: str = "", db_offset: int | None = None,
                   max_runs: int | None = None, inputs_preserved: bool = False,
                   semihosting: bool = False, tinyq_version: str) -> HarnessConfig:
    """Check the harness options and derive the sizes."""
    if mlperf_model == MLPERF_AUTO:
        mlperf_model = guess_mlperf_model(model)
    if mlperf_model and mlperf_model not in MLPERF_MODELS:
        raise UserInputError(f"unknown MLPerf Tiny model {mlperf_model!r}",
                             hint=f"use one of {', '.join(MLPERF_MODELS)} or {MLPERF_AUTO}")
    score_elements = _score_elements(model) if mlperf_model == MLPERF_FLOAT_SCORE else 0
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
        db_bytes=4 * score_elements if score_elements else max(1, model.input_bytes),
        inputs_preserved=inputs_preserved,
        semihosting=semihosting,
        score_elements=score_elements,
        score_input_float=model.input_dtype == "float32",
        input_scale=model.input_scale,
        input_zero_point=model.input_zero_point,
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
        "score_elements": config.score_elements,
        "score_input_float": config.score_input_float,
        "input_scale": f"{float(config.input_scale):.9g}f",
        "input_zero_point": config.input_zero_point,
    }
    interface = (templates_dir() / "common" / "tq_runtime.h").read_text(encoding="utf-8")
    return {
        "tq_main.c": render("common/tq_main.c.j2", **ctx),
        "tq_config.h": render("common/tq_config.h.j2", **ctx),
        "tq_board.h": render("common/tq_board.h.j2", **ctx),
        "tq_runtime.h": f"/* {c_comment(generated)} */\n" + interface,
    }
