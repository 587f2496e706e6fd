"""Render the TFLM runtime of a project for one model.

``render(model, options)`` checks that TFLM can run the model, measures (or takes)
the arena, and renders from ``firmware_templates/tflm/``::

    tflm/model_data.h      declaration of the model array
    tflm/model_data.cc     the .tflite as an alignas(16) const array in .rodata.tq_model
    tflm/tflm_runtime.cc   tq_runtime.h on top of tflite::MicroInterpreter
    tflm/tflm.mk           the project Makefile's TFLM part (TFLM_DIR, OPTIMIZED_KERNEL_DIR)

plus two project-level templates the project renderer fills in with the whole
file list (``project_templates``): ``CMakeLists.txt`` and ``README.md``.

The op resolver is a ``MicroMutableOpResolver<N>`` registering exactly the
model's distinct ops, ``N`` their count; the registration method of each op
comes from one table (:data:`RESOLVER_METHODS`). An op without a registration is
refused here, before anything is written.

The arena (DESIGN.md section 7): the smallest arena the host ``tflite-micro``
interpreter allocates with (a 64-bit build, so an upper bound for 32-bit
Cortex-M), plus :data:`ARENA_MARGIN_BYTES`, plus, when the project defaults to
CMSIS-NN kernels, the scratch buffers CMSIS-NN asks for and the reference
kernels measured on the host do not (:func:`cmsis_nn_scratch_bytes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tinyq
from tinyq.board_profile import Board
from tinyq.errors import ModelError, UnsupportedError, UserInputError
from tinyq.firmware.native import support as _native_support  # noqa: F401 (registers native)
from tinyq.firmware.templating import render as render_template
from tinyq.model import checks, ir
from tinyq.progress import ProgressFn, null_progress

#: TFLite builtin op -> the ``tflite::MicroMutableOpResolver`` method that registers it
#: (tensorflow/lite/micro/micro_mutable_op_resolver.h of tflite-micro; the key set is
#: kept equal to ``tinyq.model.checks.TFLM_BUILTIN_OPS`` by a test).
RESOLVER_METHODS: Mapping[str, str] = MappingProxyType({
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv", "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D",
    "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv", "TRANSPOSE": "AddTranspose",
    "UNPACK": "AddUnpack", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
})

#: TFLM's Signal custom ops (the audio front end of its micro_speech example) and the
#: MicroMutableOpResolver method that registers each under its "Signal..." name
#: (tensorflow/lite/micro/micro_mutable_op_resolver.h). Their kernels live in signal/
#: (signal/micro/kernels, signal/src and its kiss_fft wrappers, with kissfft from
#: TFLM's downloads), outside the library tinyq builds: a project whose model uses
#: one compiles them itself (tflm.mk's TQ_SIGNAL_SRCS, CMakeLists.txt's tflm_signal).
SIGNAL_RESOLVER_METHODS: Mapping[str, str] = MappingProxyType({
    "SignalDelay": "AddDelay", "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale", "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot", "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft", "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft", "SignalStacker": "AddStacker", "SignalWindow": "AddWindow",
})

#: Custom ops a generated project can register: the ones whose kernels are part of
#: the TFLM library tinyq builds (tensorflow/lite/micro/kernels/), and the Signal ops.
#: The Ethos-U custom op needs the Ethos-U driver, which tinyq does not compile.
CUSTOM_RESOLVER_METHODS: Mapping[str, str] = MappingProxyType({
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    **SIGNAL_RESOLVER_METHODS,
})

#: Kernel sets a project can default to (make's OPTIMIZED_KERNEL_DIR; "" = reference).
KERNELS = ("reference", "cmsis_nn")

#: Bytes added to the host-measured arena. The measurement comes from the pinned
#: ``tflite-micro`` wheel; TFLM_DIR may hold another TFLM commit whose allocator
#: differs by tens to hundreds of bytes (persistent buffers, alignment), and the
#: device build is 32-bit (smaller than the 64-bit host figure). 1 KB covers the
#: former with room to spare at a cost that every board with a TFLM-sized model has.
ARENA_MARGIN_BYTES = 1024
#: TFLM aligns arena allocations to 16 bytes; the arena size is kept a multiple of it.
ARENA_ALIGN = 16
#: CMSIS-NN aligns each scratch request the way TFLM's allocator does.
SCRATCH_ALIGN = 16

#: What to do when the host tflite-micro interpreter refuses a model the checks passed.
PREPARE_FAILED_HINT = checks.PREPARE_FAILED_HINT

#: pyOCD's built-in target types (``pyocd.target.builtin.BUILTIN_TARGETS`` of pyOCD 0.46).
#: A board's ``flashing.pyocd_target`` outside this set is a CMSIS-pack target, which
#: needs ``pyocd pack install TARGET`` once (docs/boards.md); the project README says so.
#: A test checks every bundled board against the installed pyOCD.
PYOCD_BUILTIN_TARGETS = frozenset("""
    air001 air32f103xb air32f103xc air32f103xe air32f103xg air32f103xp ama3b1kk_kbr cc3220sf
    cortex_m cy8c64_sysap cy8c64x5_cm0 cy8c64x5_cm0_full_flash cy8c64x5_cm4
    cy8c64x5_cm4_full_flash cy8c64xa_cm0 cy8c64xa_cm0_full_flash cy8c64xa_cm4
    cy8c64xa_cm4_full_flash cy8c64xx_cm0 cy8c64xx_cm0_full_flash cy8c64xx_cm0_nosmif
    cy8c64xx_cm0_s25hx512t cy8c64xx_cm4 cy8c64xx_cm4_full_flash cy8c64xx_cm4_nosmif
    cy8c64xx_cm4_s25hx512t cy8c6xx5 cy8c6xx7 cy8c6xx7_nosmif cy8c6xx7_s25fs512s cy8c6xxa
    hc32a448 hc32a448xa hc32a448xc hc32a460 hc32a460xe hc32a4a0 hc32a4a0xi hc32f003 hc32f005
    hc32f030 hc32f072 hc32f115 hc32f115x8 hc32f120 hc32f120x6 hc32f120x8 hc32f155 hc32f155xa
    hc32f155xc hc32f160 hc32f160xa hc32f160xc hc32f190 hc32f196 hc32f334 hc32f334x8 hc32f334xa
    hc32f448 hc32f448xa hc32f448xc hc32f451 hc32f451xc hc32f451xe hc32f452 hc32f452xc hc32f452xe
    hc32f460 hc32f460xc hc32f460xe hc32f467 hc32f467xg hc32f472 hc32f472xc hc32f472xe hc32f4a0
    hc32f4a0xg hc32f4a0xi hc32f4a2 hc32f4a2xi hc32l072 hc32l073 hc32l110 hc32l130 hc32l136
    hc32l190 hc32l196 hc32m120 hc32m120x6 hc32m423xa k20d50m k22f k22fa12 k28f15 k32l2b3
    k32w042s k64f k66f18 k82f25615 ke15z7 ke17z7 ke18f16 kinetis kl02z kl05z kl25z kl26z kl27z4
    kl28z kl43z4 kl46z kl82z7 kv10z7 kv11z7 kw01z4 kw24d5 kw36z4 kw40z4 kw41z4 lpc11u24
    lpc11xx_32 lpc1768 lpc4088 lpc4088dm lpc4088qsb lpc4330 lpc54114 lpc54608 lpc5526 lpc55s16
    lpc55s28 lpc55s36 lpc55s69 lpc800 lpc824 lpc845 m2354kjfae m252kg6ae m263kiaae m467hjhae
    m487jidae max32600 max32620 max32625 max32630 max32660 max32666 max32670 mimxrt1010
    mimxrt1015 mimxrt1020 mimxrt1024 mimxrt1050 mimxrt1050_hyperflash mimxrt1050_quadspi
    mimxrt1060 mimxrt1064 mimxrt1170_cm4 mimxrt1170_cm7 mps2_an521 mps3_an522 mps3_an540
    musca_a1 musca_b1 musca_s1 ncs36510 nrf51 nrf51822 nrf52 nrf52832 nrf52833 nrf52840 nrf54l
    nrf54lm20a nrf91 rp2040 rp2040_core0 rp2040_core1 rp2350 rtl8195am rtl8762c s32k344 s5js100
    stm32f051 stm32f103rc stm32f412xe stm32f412xg stm32f429xg stm32f429xi stm32f439xg
    stm32f439xi stm32f767zi stm32h723xx stm32h743xx stm32h750xx stm32h7b0xx stm32l031x6
    stm32l432kc stm32l475xc stm32l475xe stm32l475xg w7500 ytm32b1ld0 ytm32b1le0 ytm32b1md1
    ytm32b1me0
""".split())

#: What boards/*.toml descriptions say when the UART is on header pins and needs an
#: external USB-serial adapter (the convention of docs/boards.md, section [uart]).
USB_SERIAL_ADAPTER = "USB-serial adapter"
#: Example serial ports for the README: a USB-serial adapter (FTDI/CP210x/CH340) and the
#: CDC-ACM virtual COM port of an on-board debug probe, as Linux names them.
ADAPTER_PORT = "/dev/ttyUSB0"
PROBE_VCOM_PORT = "/dev/ttyACM0"

PREFIX = "tflm"
TEMPLATE_DIR = "tflm"
#: Project-level files the project renderer fills in (they need the whole file list).
PROJECT_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "CMakeLists.txt": f"{TEMPLATE_DIR}/CMakeLists.txt.j2",
    "README.md": f"{TEMPLATE_DIR}/README.md.j2",
})

_TQ_TYPES = {"int8": "TQ_INT8", "uint8": "TQ_UINT8", "int16": "TQ_INT16",
             "int32": "TQ_INT32", "float32": "TQ_FLOAT32"}


@dataclass(frozen=True)
class TflmOptions:
    """Options of the TFLM runtime (``GenerateOptions.runtime_options``)."""

    kernels: str = "reference"           # the project's default kernels: reference | cmsis_nn
    arena_bytes: int | None = None       # use this arena (bytes) instead of measuring it
    arena_margin_bytes: int = ARENA_MARGIN_BYTES
    use_arena_cache: bool = True         # reuse an earlier host measurement of the same model


@dataclass(frozen=True)
class ResolverOp:
    """One registration in the generated op resolver."""

    opcode: str          # "CONV_2D", or the custom op's name
    method: str          # "AddConv2D"
    custom: bool = False


@dataclass(frozen=True)
class ArenaPlan:
    """How the arena size was chosen (all bytes)."""

    bytes: int                    # the array in the firmware (multiple of 16)
    measured: int | None          # smallest host tflite-micro arena; None when given
    margin: int
    cmsis_nn_scratch: int         # extra for CMSIS-NN scratch buffers (0 for reference)
    given: bool = False           # TflmOptions.arena_bytes was used

    def comment(self) -> str:
        if self.given:
            return f"{self.bytes} bytes as given (TflmOptions.arena_bytes / --arena-bytes)"
        parts = [f"{self.measured} bytes (smallest arena the host tflite-micro interpreter "
                 "allocates with, a 64-bit upper bound)", f"{self.margin} bytes margin"]
        if self.cmsis_nn_scratch:
            parts.append(f"{self.cmsis_nn_scratch} bytes for CMSIS-NN scratch buffers")
        return " + ".join(parts) + f", rounded up to {ARENA_ALIGN}"


@dataclass(frozen=True)
class TflmSources:
    """The generated TFLM runtime for one model."""

    files: Mapping[str, str]               # relative path -> text
    arena: ArenaPlan
    ops: tuple[ResolverOp, ...]            # registration order
    layer_names: tuple[str, ...]           # opcode of every op of subgraph 0, in order
    kernels: str
    model_sources: tuple[str, ...]         # files holding the model's constants
    project_templates: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arena_bytes(self) -> int:
        return self.arena.bytes

    @property
    def resolver_size(self) -> int:
        """N of MicroMutableOpResolver<N>."""
        return len(self.ops)


def pyocd_pack_target(board: Board) -> str:
    """The board's pyOCD target if it comes from a CMSIS pack (not built into pyOCD), else ""."""
    target = board.flashing.pyocd_target
    return target if target and target not in PYOCD_BUILTIN_TARGETS else ""


def example_serial_port(board: Board) -> str:
    """A likely serial port of ``board`` on Linux: a USB-serial adapter's when the board
    profile says its UART needs one, the debug probe's virtual COM port otherwise."""
    return ADAPTER_PORT if USB_SERIAL_ADAPTER in board.description else PROBE_VCOM_PORT


def round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def uses_signal_ops(ops: tuple[ResolverOp, ...]) -> bool:
    """True when the resolver registers a Signal op (the project then builds signal/)."""
    return any(op.opcode in SIGNAL_RESOLVER_METHODS for op in ops)


def resolver_ops(model: ir.Model) -> tuple[ResolverOp, ...]:
    """The model's distinct ops with their registration method (first-use order).

    Raises UnsupportedError naming the first op TFLM (or tinyq's table) cannot register.
    """
    ops: dict[str, ResolverOp] = {}
    for op in model.operators:
        if op.opcode == "CUSTOM":
            name = op.custom_code or ""
            method = CUSTOM_RESOLVER_METHODS.get(name)
            if method is None:
                raise UnsupportedError(
                    f"op {op.index} is the custom op {name!r}, which tinyq's TFLM project "
                    "cannot register (it builds TFLM's builtin kernels and Signal ops only)",
                    hint="replace the layer with builtin ops, or register it yourself in "
                    "tflm/tflm_runtime.cc", op=name, op_index=op.index)
            ops.setdefault(name, ResolverOp(name, method, custom=True))
            continue
        method = RESOLVER_METHODS.get(op.opcode)
        if method is None:
            raise UnsupportedError(
                f"op {op.index} {op.opcode} has no MicroMutableOpResolver registration, so "
                "TFLM cannot run it",
                hint="replace the layer with ops listed in docs/supported_ops.md "
                "(or try --runtime native) and convert again", op=op.opcode, op_index=op.index)
        ops.setdefault(op.opcode, ResolverOp(op.opcode, method))
    return tuple(ops.values())


def check_model(model: ir.Model) -> tuple[ResolverOp, ...]:
    """Refuse a model TFLM cannot run (tinyq.model.checks errors, then the resolver table)."""
    if not model.operators:
        raise UnsupportedError("the model has no operators", hint="export a model with layers")
    ops = resolver_ops(model)
    errors = [p for p in checks.problems(model, "tflm") if p.severity == "error"]
    if errors:
        first = errors[0]
        where = f"op {first.op_index} {first.opcode}: " if first.op_index is not None else ""
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise UnsupportedError(f"TFLM cannot run this model: {where}{first.message}{more}",
                               hint=first.fix, op=first.opcode, op_index=first.op_index,
                               problems=tuple(errors))
    for t in (*model.input_tensors, *model.output_tensors):
        if t.dtype not in _TQ_TYPES:
            raise UnsupportedError(
                f"tensor {t.name!r} is {t.dtype}; the harness exchanges int8, uint8, int16, "
                "int32 or float32 inputs and outputs", hint="quantize with int8 inputs/outputs")
    return ops


def _filter_size(model: ir.Model, op: ir.Operator) -> tuple[int, int, int]:
    """(kernel h, kernel w, input channels) of a conv/depthwise op."""
    weights = model.tensors[op.inputs[1]]
    act = model.tensors[op.inputs[0]]
    channels = act.shape[-1] if act.shape else 1
    if len(weights.shape) == 4:
        return weights.shape[1], weights.shape[2], channels
    return 1, 1, channels


def cmsis_nn_scratch_bytes(model: ir.Model) -> int:
    """An upper bound of the scratch CMSIS-NN kernels request beyond the reference ones.

    TFLM plans scratch buffers like tensors, live for one op, so the arena grows at
    most by the largest single request. Bounds per op (CMSIS-NN
    ``arm_*_get_buffer_size`` for Cortex-M with and without DSP):

    * CONV_2D: im2col of two output pixels as int16, ``2 * align4(kh*kw*cin) * 2``;
    * DEPTHWISE_CONV_2D: ``cin * kh * kw * 2`` (int16 column); counted like CONV_2D;
    * AVERAGE_POOL_2D: ``cin * 4`` (int32 sums);
    * FULLY_CONNECTED / BATCH_MATMUL: ``4 * output channels`` (per-channel sums).

    MVE (Cortex-M55) kernels ask for other sizes; there the allocation error on the
    UART says by how much the arena is short.
    """
    largest = 0
    for op in model.operators:
        need = 0
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
            kh, kw, cin = _filter_size(model, op)
            need = 2 * round_up(kh * kw * cin, 4) * 2
        elif op.opcode == "AVERAGE_POOL_2D":
            act = model.tensors[op.inputs[0]]
            need = 4 * (act.shape[-1] if act.shape else 1)
        elif op.opcode in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            out = model.tensors[op.outputs[0]]
            need = 4 * (out.shape[-1] if out.shape else 1)
        largest = max(largest, round_up(need, SCRATCH_ALIGN) if need else 0)
    return largest


def plan_arena(model: ir.Model, model_bytes: bytes, options: TflmOptions,
               progress: ProgressFn = null_progress) -> ArenaPlan:
    """The arena size: given, or host-measured + margin (+ CMSIS-NN scratch)."""
    scratch = cmsis_nn_scratch_bytes(model) if options.kernels == "cmsis_nn" else 0
    if options.arena_bytes is not None:
        if options.arena_bytes <= 0:
            raise UserInputError(f"arena of {options.arena_bytes} bytes",
                                 hint="give a positive number of bytes, or leave it unset "
                                 "to measure")
        return ArenaPlan(bytes=round_up(options.arena_bytes, ARENA_ALIGN), measured=None,
                         margin=0, cmsis_nn_scratch=0, given=True)
    if options.arena_margin_bytes < 0:
        raise UserInputError(f"negative arena margin {options.arena_margin_bytes}",
                             hint="use 0 or more bytes")
    from tinyq.analyze import measure_tflm_arena

    try:
        measured = measure_tflm_arena(model, model_bytes, use_cache=options.use_arena_cache,
                                      progress=progress).arena_bytes
    except (ModelError, UnsupportedError) as exc:
        # The checks passed, yet the host interpreter refuses the model in Prepare: a
        # kernel constraint tinyq's tables do not know. Its message names the op and
        # the kernel's reason; pointing back at `tinyq inspect` would be circular.
        raise UnsupportedError(
            f"TFLM cannot run this model: {exc.message}",
            hint=PREPARE_FAILED_HINT, op=getattr(exc, "op", None)) from exc
    total = round_up(measured + options.arena_margin_bytes + scratch, ARENA_ALIGN)
    return ArenaPlan(bytes=total, measured=measured, margin=options.arena_margin_bytes,
                     cmsis_nn_scratch=scratch)


def _model_bytes(model: ir.Model, model_bytes: bytes | None) -> bytes:
    if model_bytes is None:
        if not model.path:
            raise ModelError("the TFLM runtime embeds the .tflite file itself, but this model "
                             "was built in memory", hint="pass model_bytes= (or save it and "
                             "read it with tinyq.read_model)")
        try:
            model_bytes = Path(model.path).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {model.path}: {exc.strerror}",
                             hint="check that the model file still exists",
                             path=model.path) from exc
    if model.sha256 and hashlib.sha256(model_bytes).hexdigest() != model.sha256:
        raise ModelError(f"{model.path or 'the model bytes'} changed since it was read "
                         "(sha256 differs)", hint="read the model again and regenerate",
                         path=model.path)
    return model_bytes


def _tensor_dims(t: ir.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def render(model: ir.Model, options: TflmOptions | None = None, *, board: Board | None = None,
           model_bytes: bytes | None = None, header: str | None = None,
           progress: ProgressFn = null_progress) -> TflmSources:
    """Render the TFLM runtime files for ``model`` (nothing is written).

    ``board`` adds the board facts (name, arena region) to comments and to the
    project templates' context; ``header`` replaces the "Generated by" line.
    """
    options = options or TflmOptions()
    if options.kernels not in KERNELS:
        raise UserInputError(f"unknown TFLM kernels {options.kernels!r}",
                             hint=f"use one of {', '.join(KERNELS)}")
    ops = check_model(model)
    data = _model_bytes(model, model_bytes)
    arena = plan_arena(model, data, options, progress)
    source = Path(model.path).name if model.path else "<in-memory model>"
    sha = hashlib.sha256(data).hexdigest()
    if header is None:
        where = f" for board {board.name}" if board is not None else ""
        header = (f"Generated by tinyq {tinyq.__version__} (tinyq generate --runtime tflm)"
                  f"{where} from {source} sha256 {sha}. Do not edit: regenerate.")
    layer_names = tuple(op.opcode if op.opcode != "CUSTOM" else (op.custom_code or "CUSTOM")
                        for op in model.operators)
    ctx: dict[str, Any] = {
        "generated": header,
        "model_name": source,
        "model_sha256": sha,
        "model_id": sha[:12],
        "model_bytes": data,
        "model_len": len(data),
        "ops": ops,
        "resolver_size": len(ops),
        "layer_names": layer_names,
        "arena": arena,
        "arena_comment": arena.comment(),
        "arena_region": board.arena_region if board is not None else "ram",
        "board_name": board.name if board is not None else "",
        "kernels": options.kernels,
        "inputs": [{"name": t.name, "dtype": t.dtype, "dims": _tensor_dims(t)}
                   for t in model.input_tensors],
        "outputs": [{"name": t.name, "dtype": t.dtype, "dims": _tensor_dims(t)}
                    for t in model.output_tensors],
        "prefix": PREFIX,
        "tq_types": _TQ_TYPES,
        "signal": uses_signal_ops(ops),
    }
    files = {
        f"{PREFIX}/model_data.h": render_template(f"{TEMPLATE_DIR}/model_data.h.j2", **ctx),
        f"{PREFIX}/model_data.cc": render_template(f"{TEMPLATE_DIR}/model_data.cc.j2", **ctx),
        f"{PREFIX}/tflm_runtime.cc": render_template(f"{TEMPLATE_DIR}/tflm_runtime.cc.j2",
                                                     **ctx),
        f"{PREFIX}/tflm.mk": render_template(f"{TEMPLATE_DIR}/tflm.mk.j2", **ctx),
    }
    # What the project templates (CMakeLists.txt, README.md) and the library builder need.
    context = {
        "kernels": options.kernels,
        "arena_bytes": arena.bytes,
        "arena_measured_bytes": arena.measured,
        "arena_margin_bytes": arena.margin,
        "arena_cmsis_nn_scratch_bytes": arena.cmsis_nn_scratch,
        "arena_comment": arena.comment(),
        "resolver": [op.opcode for op in ops],
        "signal": uses_signal_ops(ops),      # the project compiles TFLM's signal/ kernels
        "prefix": PREFIX,
        "cxx_sources": [f"{PREFIX}/model_data.cc", f"{PREFIX}/tflm_runtime.cc"],
        "model_len": len(data),
        "arch_flags": list(board.cflags) if board is not None else [],
        # For the README: `pyocd pack install` and the example serial port.
        "pyocd_pack_target": pyocd_pack_target(board) if board is not None else "",
        "serial_port": example_serial_port(board) if board is not None else PROBE_VCOM_PORT,
        "uart_adapter": board is not None and USB_SERIAL_ADAPTER in board.description,
    }
    return TflmSources(files=files, arena=arena, ops=ops, layer_names=layer_names,
                       kernels=options.kernels, model_sources=(f"{PREFIX}/model_data.cc",),
                       project_templates=dict(PROJECT_TEMPLATES),
                       context=MappingProxyType(context))

