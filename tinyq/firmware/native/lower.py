"""Lowering: one IR op -> one C kernel call with precomputed parameters.

``LOWERINGS`` is the one table the native runtime has: opcode -> ``Lowering``
(the function that builds the call, the kernel .c files it needs, the dtype
signatures it accepts, and op-specific constraints). Code generation, the
support checks (``tinyq inspect --runtime native``) and the docs all read it.

How to add an op (e.g. ``TANH``)
--------------------------------
1. Write the kernel in ``firmware_templates/native/tq_<name>.c`` and declare it
   (and its params struct, if any) in ``tq_kernels.h``. Portable C99, no heap,
   -Wall -Wextra -Werror clean, no unaligned word access (Cortex-M0).
2. Write a lowering function here::

       def _lower_tanh(ctx: LowerContext, op: ir.Operator) -> Call:
           x, y = ctx.input(op, 0), ctx.output(op, 0)
           mult, shift = quant.quantize_multiplier(...)     # TFLM's Prepare math
           return Call("tq_tanh_s8", "tq_tanh_params",
                       params=(("size", y.size), ("mult", mult), ("shift", shift),
                               ("lut", ctx.array("lut", "int8_t", table))),
                       args=(TensorArg(x.index), TensorArg(y.index)))

   ``params`` become a ``static const`` struct with designated initializers
   (ints, floats, ``ArrayRef`` from ``ctx.array`` for const tables, or raw C in
   ``CExpr``); ``args`` are passed after ``&params`` (``TensorArg`` is an arena
   pointer, or a const array for a constant tensor). The generated call is
   ``kernel(&opN_params, args...)``, or ``kernel(args...)`` when the struct type
   is None. Declare the params struct and the kernel in a header of your own
   (``tq_tanh.h``, including ``tq_kernels.h`` for the arithmetic helpers) and
   list it in ``Lowering.headers`` so model.c includes it.
3. Register it: ``LOWERINGS["TANH"] = Lowering(_lower_tanh, ("tq_tanh.c",),
   signatures=(Sig(("int8",), ("int8",)),))``, plus ``constraints`` for
   op-specific limits (a function ``(model, op) -> bool`` returning True when
   the op is NOT supported, whose docstring is the user message and which
   carries a ``fix`` attribute; see ``constraint``). Op families live in their
   own modules (``ops_layout``, ``ops_compare``, ``ops_arith``) whose ``rows()``
   ``_register_families`` adds to the table.
4. Add a parameter set to ``tests/test_native_ops.py`` (random models checked
   bit for bit against the tflite-micro interpreter).

The planner may run elementwise ops in place (``planner.INPLACE_INPUTS``): add
the opcode there only if the kernel reads element i of every input before
writing element i of the output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

import numpy as np

from tinyq.errors import UnsupportedError
from tinyq.firmware.native import fixedpoint, quant
from tinyq.model import ir
from tinyq.model.checks import TFLM_BUILTIN_OPS, instead_fix

# ----------------------------------------------------------------------------- call records


@dataclass(frozen=True)
class ArrayRef:
    """A const array in flash, by its C name."""

    name: str


@dataclass(frozen=True)
class CExpr:
    """A raw C expression used as a parameter value (an enum, NULL, a macro)."""

    text: str


@dataclass(frozen=True)
class TensorArg:
    """A tensor passed to the kernel: arena pointer, or its const array if constant."""

    index: int


@dataclass(frozen=True)
class TensorListArg:
    """Several tensors passed as one ``const uint8_t *const[]`` table (address constants)."""

    indices: tuple[int, ...]


Value = Union[int, float, ArrayRef, CExpr]                  # noqa: UP007 (readable alias)
Arg = Union[TensorArg, TensorListArg, ArrayRef, CExpr]      # noqa: UP007


@dataclass(frozen=True)
class ConstArray:
    """A const array the generated C defines (weights, folded biases, multipliers, tables)."""

    name: str
    ctype: str                                      # int8_t, uint8_t, int16_t, int32_t, float
    values: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """One kernel call of the generated ``tq_invoke``.

    ``kernel`` None means the op needs no code (an aliased RESHAPE).
    """

    kernel: str | None
    params_type: str | None = None
    params: tuple[tuple[str, Value], ...] = ()
    args: tuple[Arg, ...] = ()
    arrays: tuple[ConstArray, ...] = ()
    scratch_bytes: int = 0
    comment: str = ""


# ----------------------------------------------------------------------------- context

#: IR dtype name -> C element type
CTYPES: Mapping[str, str] = MappingProxyType({
    "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
    "float32": "float", "bool": "uint8_t", "int64": "int64_t",
})


class LowerContext:
    """What a lowering function may ask: tensors, the memory plan, and const arrays."""

    def __init__(self, model: ir.Model, op: ir.Operator, aliases: Mapping[int, int]) -> None:
        self.model = model
        self.op = op
        self.aliases = aliases
        self._arrays: list[ConstArray] = []

    @property
    def prefix(self) -> str:
        return f"op{self.op.index}"

    def tensor(self, index: int) -> ir.Tensor:
        return self.model.tensors[index]

    def input(self, op: ir.Operator, pos: int) -> ir.Tensor | None:
        if pos >= len(op.inputs) or op.inputs[pos] < 0:
            return None
        return self.model.tensors[op.inputs[pos]]

    def output(self, op: ir.Operator, pos: int = 0) -> ir.Tensor:
        return self.model.tensors[op.outputs[pos]]

    def array(self, suffix: str, ctype: str, values: Any) -> ArrayRef:
        """Define a const array ``op<N>_<suffix>`` and return a reference to it."""
        name = f"{self.prefix}_{suffix}"
        arr = np.asarray(values).reshape(-1)
        self._arrays.append(ConstArray(name, ctype, arr))
        return ArrayRef(name)

    def take_arrays(self) -> tuple[ConstArray, ...]:
        out = tuple(self._arrays)
        self._arrays.clear()
        return out


# ----------------------------------------------------------------------------- helpers


def scale_zp(t: ir.Tensor) -> tuple[float, int]:
    """Per-tensor (scale, zero point) of an activation tensor."""
    if t.quant is None or not t.quant.scale:
        return 0.0, 0
    return t.quant.scale[0], t.quant.zero_point[0]


def _act(op: ir.Operator) -> str:
    return str(op.options.get("fused_activation_function", "NONE") or "NONE")


def _padding(kind: str, in_size: int, filt: int, stride: int, dilation: int,
             out_size: int) -> int:
    """TFLM ``ComputePaddingHeightWidth`` for one dimension (the leading pad)."""
    eff = (filt - 1) * dilation + 1
    if kind == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - eff) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def _nhwc(shape: Sequence[int]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise UnsupportedError(f"expected a 4-D NHWC tensor, got shape {tuple(shape)}")
    return shape[0], shape[1], shape[2], shape[3]


def _folded_bias(ctx: LowerContext, bias: ir.Tensor | None, weight_sums: np.ndarray,
                 input_zp: int) -> np.ndarray:
    """bias - input_zp * sum(weights) per output channel, wrapped to int32.

    The kernels then multiply raw int8 inputs and pad out-of-image taps with the
    input zero point, which gives TFLM's ``sum(w * (x - zp)) + bias`` exactly.
    """
    b = (np.zeros(weight_sums.shape, dtype=np.int64) if bias is None
         else bias.array().astype(np.int64).reshape(-1))
    folded = b - np.int64(input_zp) * weight_sums.astype(np.int64)
    return ((folded + (1 << 31)) & 0xFFFFFFFF).astype(np.int64) - (1 << 31)


def _requant_arrays(ctx: LowerContext, mults: Sequence[int], shifts: Sequence[int]
                    ) -> tuple[ArrayRef, ArrayRef]:
    # the kernels keep shifts in int8_t: kernel_multiplier bounds them to [-31, 30]
    if any(not quant.MIN_SHIFT <= s <= quant.MAX_SHIFT for s in shifts):
        raise quant.MultiplierRangeError(f"requantization shift outside "
                                         f"[{quant.MIN_SHIFT}, {quant.MAX_SHIFT}]")
    return (ctx.array("mult", "int32_t", np.array(mults, dtype=np.int64)),
            ctx.array("shift", "int8_t", np.array(shifts, dtype=np.int64)))


# ----------------------------------------------------------------------------- lowerings


def _lower_conv2d(ctx: LowerContext, op: ir.Operator) -> Call:
    x, w, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.input(op, 2), ctx.output(op)
    assert x is not None and w is not None
    n, ih, iw, ic = _nhwc(x.shape)
    oc, kh, kw, kc = _nhwc(w.shape)
    _, oh, ow, _ = _nhwc(y.shape)
    o = op.options
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    dh, dw = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    pad = str(o.get("padding", "VALID"))
    x_scale, x_zp = scale_zp(x)
    y_scale, y_zp = scale_zp(y)
    assert w.quant is not None
    mults, shifts = quant.conv_multipliers(x_scale, w.quant.scale, y_scale, oc)
    lo, hi = quant.activation_range(_act(op), y_scale, y_zp)
    weights = w.array().astype(np.int64)
    kbias = _folded_bias(ctx, b, weights.reshape(oc, -1).sum(axis=1), x_zp)
    mult, shift = _requant_arrays(ctx, mults, shifts)
    return Call(
        "tq_conv2d_s8", "tq_conv_params",
        params=(
            ("batches", n), ("in_h", ih), ("in_w", iw), ("in_c", ic),
            ("out_h", oh), ("out_w", ow), ("out_c", oc), ("k_h", kh), ("k_w", kw),
            ("stride_h", sh), ("stride_w", sw), ("dil_h", dh), ("dil_w", dw),
            ("pad_h", _padding(pad, ih, kh, sh, dh, oh)),
            ("pad_w", _padding(pad, iw, kw, sw, dw, ow)),
            ("in_zp", x_zp), ("out_zp", y_zp), ("act_min", lo), ("act_max", hi),
            ("bias", ctx.array("bias", "int32_t", kbias)), ("mult", mult), ("shift", shift),
        ),
        args=(TensorArg(x.index), TensorArg(w.index), TensorArg(y.index)),
        comment=f"{kh}x{kw} conv {ic}->{oc} stride {sh}x{sw} {pad}",
    )


def _lower_depthwise(ctx: LowerContext, op: ir.Operator) -> Call:
    x, w, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.input(op, 2), ctx.output(op)
    assert x is not None and w is not None
    n, ih, iw, ic = _nhwc(x.shape)
    _, kh, kw, oc = _nhwc(w.shape)
    _, oh, ow, _ = _nhwc(y.shape)
    o = op.options
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    dh, dw = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    pad = str(o.get("padding", "VALID"))
    mult_ch = oc // ic
    x_scale, x_zp = scale_zp(x)
    y_scale, y_zp = scale_zp(y)
    assert w.quant is not None
    mults, shifts = quant.conv_multipliers(x_scale, w.quant.scale, y_scale, oc)
    lo, hi = quant.activation_range(_act(op), y_scale, y_zp)
    weights = w.array().astype(np.int64)
    kbias = _folded_bias(ctx, b, weights.reshape(-1, oc).sum(axis=0), x_zp)
    mult, shift = _requant_arrays(ctx, mults, shifts)
    return Call(
        "tq_depthwise_conv2d_s8", "tq_dwconv_params",
        params=(
            ("batches", n), ("in_h", ih), ("in_w", iw), ("in_c", ic),
            ("out_h", oh), ("out_w", ow), ("depth_mult", mult_ch), ("k_h", kh), ("k_w", kw),
            ("stride_h", sh), ("stride_w", sw), ("dil_h", dh), ("dil_w", dw),
            ("pad_h", _padding(pad, ih, kh, sh, dh, oh)),
            ("pad_w", _padding(pad, iw, kw, sw, dw, ow)),
            ("in_zp", x_zp), ("out_zp", y_zp), ("act_min", lo), ("act_max", hi),
            ("bias", ctx.array("bias", "int32_t", kbias)), ("mult", mult), ("shift", shift),
        ),
        # channel-major weights (out_c x k_h x k_w): each channel's taps contiguous
        args=(TensorArg(x.index),
              ctx.array("w", "int8_t", weights.reshape(kh * kw, oc).T.copy()),
              TensorArg(y.index)),
        comment=f"{kh}x{kw} depthwise x{mult_ch} {ic}->{oc} stride {sh}x{sw} {pad}",
    )


def _lower_fully_connected(ctx: LowerContext, op: ir.Operator) -> Call:
    x, w, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.input(op, 2), ctx.output(op)
    assert x is not None and w is not None and w.quant is not None
    units, depth = w.shape[-2], w.shape[-1]
    out_depth = y.shape[-1] if y.shape else 1
    batches = y.size // out_depth if out_depth else 0
    x_scale, x_zp = scale_zp(x)
    y_scale, y_zp = scale_zp(y)
    if w.quant.per_channel:
        mults, shifts = quant.conv_multipliers(x_scale, w.quant.scale, y_scale, out_depth)
    else:
        m, s = quant.fc_per_tensor_multiplier(x_scale, w.quant.scale[0], y_scale)
        mults, shifts = [m] * out_depth, [s] * out_depth
    lo, hi = quant.activation_range(_act(op), y_scale, y_zp)
    weights = w.array().astype(np.int64).reshape(units, depth)[:out_depth]
    kbias = _folded_bias(ctx, b, weights.sum(axis=1), x_zp)
    mult, shift = _requant_arrays(ctx, mults, shifts)
    return Call(
        "tq_fully_connected_s8", "tq_fc_params",
        params=(
            ("batches", batches), ("in_depth", depth), ("out_depth", out_depth),
            ("out_zp", y_zp), ("act_min", lo), ("act_max", hi),
            ("bias", ctx.array("bias", "int32_t", kbias)), ("mult", mult), ("shift", shift),
        ),
        args=(TensorArg(x.index), TensorArg(w.index), TensorArg(y.index)),
        comment=f"{depth}->{out_depth} x{batches}",
    )


def _lower_pool(kernel: str) -> Callable[[LowerContext, ir.Operator], Call]:
    def lower(ctx: LowerContext, op: ir.Operator) -> Call:
        x, y = ctx.input(op, 0), ctx.output(op)
        assert x is not None
        n, ih, iw, c = _nhwc(x.shape)
        _, oh, ow, _ = _nhwc(y.shape)
        o = op.options
        fh, fw = int(o.get("filter_height", 1)), int(o.get("filter_width", 1))
        sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
        pad = str(o.get("padding", "VALID"))
        y_scale, y_zp = scale_zp(y)
        lo, hi = quant.activation_range(_act(op), y_scale, y_zp)
        return Call(
            kernel, "tq_pool_params",
            params=(
                ("batches", n), ("in_h", ih), ("in_w", iw), ("channels", c),
                ("out_h", oh), ("out_w", ow), ("f_h", fh), ("f_w", fw),
                ("stride_h", sh), ("stride_w", sw),
                ("pad_h", _padding(pad, ih, fh, sh, 1, oh)),
                ("pad_w", _padding(pad, iw, fw, sw, 1, ow)),
                ("act_min", lo), ("act_max", hi),
            ),
            args=(TensorArg(x.index), TensorArg(y.index)),
            comment=f"{fh}x{fw} stride {sh}x{sw} {pad}",
        )
    return lower


#: most dims a broadcasting elementwise kernel handles (TFLM: 6)
MAX_BROADCAST_DIMS = 6


def _broadcast(ctx: LowerContext, a: ir.Tensor, b: ir.Tensor, y: ir.Tensor
               ) -> tuple[tuple[str, Value], ...]:
    """Output dims and per-input strides (0 on broadcast dims), padded to 6-D."""
    rank = MAX_BROADCAST_DIMS
    out = [1] * (rank - len(y.shape)) + list(y.shape)

    def strides(shape: Sequence[int]) -> list[int]:
        dims = [1] * (rank - len(shape)) + list(shape)
        st, acc = [0] * rank, 1
        for i in range(rank - 1, -1, -1):
            st[i] = 0 if dims[i] == 1 and out[i] != 1 else acc
            acc *= dims[i]
        return st

    if tuple(a.shape) == tuple(b.shape) == tuple(y.shape) or (a.size == b.size == y.size):
        return (("size", y.size), ("broadcast", 0), ("dims", CExpr("{0}")),
                ("stride1", CExpr("{0}")), ("stride2", CExpr("{0}")))

    def c_list(values: Sequence[int]) -> CExpr:
        return CExpr("{" + ", ".join(str(v) for v in values) + "}")

    return (("size", y.size), ("broadcast", 1), ("dims", c_list(out)),
            ("stride1", c_list(strides(a.shape))), ("stride2", c_list(strides(b.shape))))


def _lower_add(ctx: LowerContext, op: ir.Operator) -> Call:
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    (sa, za), (sb, zb), (sy, zy) = scale_zp(a), scale_zp(b), scale_zp(y)
    p = quant.add_params(sa, sb, sy)
    lo, hi = quant.activation_range(_act(op), sy, zy)
    return Call(
        "tq_add_s8", "tq_add_params",
        params=_broadcast(ctx, a, b, y) + (
            ("in1_zp", za), ("in2_zp", zb), ("out_zp", zy), ("left_shift", p["left_shift"]),
            ("in1_mult", p["in1_mult"]), ("in1_shift", p["in1_shift"]),
            ("in2_mult", p["in2_mult"]), ("in2_shift", p["in2_shift"]),
            ("out_mult", p["out_mult"]), ("out_shift", p["out_shift"]),
            ("act_min", lo), ("act_max", hi),
        ),
        args=(TensorArg(a.index), TensorArg(b.index), TensorArg(y.index)),
    )


def _lower_mul(ctx: LowerContext, op: ir.Operator) -> Call:
    a, b, y = ctx.input(op, 0), ctx.input(op, 1), ctx.output(op)
    assert a is not None and b is not None
    (sa, za), (sb, zb), (sy, zy) = scale_zp(a), scale_zp(b), scale_zp(y)
    m, s = quant.kernel_multiplier(float(quant.f32(sa)) * float(quant.f32(sb))
                                   / float(quant.f32(sy)))
    lo, hi = quant.activation_range(_act(op), sy, zy)
    return Call(
        "tq_mul_s8", "tq_mul_params",
        params=_broadcast(ctx, a, b, y) + (
            ("in1_zp", za), ("in2_zp", zb), ("out_zp", zy),
            ("out_mult", m), ("out_shift", s), ("act_min", lo), ("act_max", hi),
        ),
        args=(TensorArg(a.index), TensorArg(b.index), TensorArg(y.index)),
    )


def _lower_reshape(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    if ctx.aliases.get(y.index) == x.index:
        return Call(None, comment="aliased: output shares the input's memory, no copy")
    return Call("tq_copy", None, args=(TensorArg(y.index), TensorArg(x.index),
                                       CExpr(str(y.nbytes))), comment="copy")


def _pad_amounts(ctx: LowerContext, op: ir.Operator) -> np.ndarray:
    p = ctx.input(op, 1)
    assert p is not None
    return p.array().astype(np.int64).reshape(-1, 2)


def _lower_pad(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    rank = 6
    pads = _pad_amounts(ctx, op)
    lead = rank - len(x.shape)
    in_dims = [1] * lead + list(x.shape)
    before = [0] * lead + [int(v) for v in pads[:, 0]]
    cval = ctx.input(op, 2)
    if cval is not None:
        value = int(cval.array().reshape(-1)[0])
    else:
        value = scale_zp(y)[1]
    out_dims = [1] * lead + list(y.shape)

    def c_list(values: Sequence[int]) -> CExpr:
        return CExpr("{" + ", ".join(str(int(v)) for v in values) + "}")

    return Call(
        "tq_pad_s8", "tq_pad_params",
        params=(("in_dims", c_list(in_dims)), ("out_dims", c_list(out_dims)),
                ("before", c_list(before)), ("value", value)),
        args=(TensorArg(x.index), TensorArg(y.index)),
    )


def _lower_concat(ctx: LowerContext, op: ir.Operator) -> Call:
    y = ctx.output(op)
    axis = int(op.options.get("axis", 0))
    if axis < 0:
        axis += len(y.shape)
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64)) * y.np_dtype.itemsize
    inputs = [ctx.tensor(i) for i in op.inputs]
    sizes = [t.shape[axis] * inner for t in inputs]
    return Call(
        "tq_concat", "tq_concat_params",
        params=(("outer", outer), ("count", len(inputs)),
                ("sizes", ctx.array("sizes", "int32_t", np.array(sizes, dtype=np.int64)))),
        args=(TensorListArg(tuple(t.index for t in inputs)), TensorArg(y.index)),
        comment=f"{len(inputs)} inputs on axis {axis}",
    )


def _lower_quantize(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    sy, zy = scale_zp(y)
    if x.dtype == "float32":
        return Call("tq_quantize_f32_s8", "tq_quantize_params",
                    params=(("size", y.size), ("scale", CExpr(c_float(sy))),
                            ("zero_point", zy)),
                    args=(TensorArg(x.index), TensorArg(y.index)))
    sx, zx = scale_zp(x)
    m, s = quant.kernel_multiplier(float(quant.f32(sx)) / float(quant.f32(sy)))
    kernel = {("int8", "int8"): "tq_requantize_s8_s8", ("uint8", "int8"): "tq_requantize_u8_s8",
              ("int8", "uint8"): "tq_requantize_s8_u8"}[(x.dtype, y.dtype)]
    return Call(kernel, "tq_requantize_params",
                params=(("size", y.size), ("in_zp", zx), ("out_zp", zy),
                        ("mult", m), ("shift", s)),
                args=(TensorArg(x.index), TensorArg(y.index)))


def c_float(value: float) -> str:
    """A C float literal that reads back as exactly ``float32(value)``."""
    f = np.float32(value)
    if not np.isfinite(f):
        raise UnsupportedError(f"non-finite quantization parameter {value!r}",
                               hint="re-convert the model; its scales must be finite")
    if f == 0:
        return "0.0f"
    return np.format_float_scientific(f, unique=True, exp_digits=2) + "f"


def _lower_dequantize(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    sx, zx = scale_zp(x)
    kernel = "tq_dequantize_s8_f32" if x.dtype == "int8" else "tq_dequantize_u8_f32"
    return Call(kernel, "tq_dequantize_params",
                params=(("size", y.size), ("scale", CExpr(c_float(sx))), ("zero_point", zx)),
                args=(TensorArg(x.index), TensorArg(y.index)))


def _lower_relu(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    sx, zx = scale_zp(x)
    sy, zy = scale_zp(y)
    # ReluPrepare divides the scales in double (cvtss2sd, divsd in the tflite-micro build)
    m, s = quant.kernel_multiplier(float(quant.f32(sx)) / float(quant.f32(sy)))
    lo = max(-128, zy + quant.round_half_away(float(quant.f32(0.0) / quant.f32(sy))))
    return Call("tq_relu_s8", "tq_relu_params",
                params=(("size", y.size), ("in_zp", zx), ("out_zp", zy), ("mult", m),
                        ("shift", s), ("act_min", lo), ("act_max", 127)),
                args=(TensorArg(x.index), TensorArg(y.index)))


def _lower_relu6(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    sx, zx = scale_zp(x)
    six = zx + quant.round_half_away(float(quant.f32(6.0) / quant.f32(sx)))
    six = max(-128, min(127, six))
    return Call("tq_clamp_s8", "tq_clamp_params",
                params=(("size", y.size), ("lo", zx), ("hi", six)),
                args=(TensorArg(x.index), TensorArg(y.index)),
                comment="RELU6 clamps in the input's quantization, as TFLM does")


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Sig:
    """One accepted dtype signature: dtypes of the (non-omitted) inputs and the outputs.

    ``"*"`` matches any dtype (shape tensors of RESHAPE).
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    variadic: bool = False          # the last input dtype repeats (CONCATENATION)

    def matches(self, ins: Sequence[str], outs: Sequence[str]) -> bool:
        if len(outs) != len(self.outputs):
            return False
        wants = list(self.inputs)
        if self.variadic and len(ins) > len(wants):
            wants += [wants[-1]] * (len(ins) - len(wants))
        if len(ins) != len(wants):
            return False
        return all(w in ("*", g) for w, g in zip(wants + list(self.outputs),
                                                  list(ins) + list(outs), strict=True))

    def __str__(self) -> str:
        ins = ", ".join(self.inputs) + (", ..." if self.variadic else "")
        return f"({ins}) -> ({', '.join(self.outputs)})"


Constraint = Callable[[ir.Model, ir.Operator], bool]


def constraint(fix: str) -> Callable[[Constraint], Constraint]:
    """Mark a function ``(model, op) -> True when unsupported``; its docstring is the message."""
    def wrap(fn: Constraint) -> Constraint:
        fn.fix = fix  # type: ignore[attr-defined]
        return fn
    return wrap


@dataclass(frozen=True)
class Lowering:
    fn: Callable[[LowerContext, ir.Operator], Call]
    sources: tuple[str, ...]                 # kernel .c files under firmware_templates/native
    signatures: tuple[Sig, ...]
    constraints: tuple[Constraint, ...] = ()
    note: str = ""                           # one line for the docs' supported-ops table
    headers: tuple[str, ...] = ()            # extra headers model.c includes (besides tq_kernels.h)


def _t(model: ir.Model, op: ir.Operator, pos: int) -> ir.Tensor | None:
    if pos >= len(op.inputs) or op.inputs[pos] < 0:
        return None
    return model.tensors[op.inputs[pos]]


@constraint(fix="re-export the model without grouped convolutions")
def grouped_conv(model: ir.Model, op: ir.Operator) -> bool:
    """grouped convolution (filter depth smaller than input depth) is not supported"""
    x, w = _t(model, op, 0), _t(model, op, 1)
    return x is not None and w is not None and len(w.shape) == 4 and w.shape[3] != x.shape[-1]


@constraint(fix="weights must be constant tensors in the .tflite (re-convert the model)")
def non_constant_weights(model: ir.Model, op: ir.Operator) -> bool:
    """weights are not constant"""
    w, b = _t(model, op, 1), _t(model, op, 2)
    return (w is not None and not w.is_constant) or (b is not None and not b.is_constant)


@constraint(fix="quantize weights symmetrically (the TFLite converter's default)")
def weight_zero_point(model: ir.Model, op: ir.Operator) -> bool:
    """weights have a non-zero zero point"""
    w = _t(model, op, 1)
    return w is not None and w.quant is not None and any(z != 0 for z in w.quant.zero_point)


@constraint(fix="quantize the model to int8 with per-tensor activations")
def unquantized(model: ir.Model, op: ir.Operator) -> bool:
    """an int8/uint8 tensor has no quantization parameters, or per-channel activations"""
    ids = [i for i in op.inputs if i >= 0] + list(op.outputs)
    for i in ids:
        t = model.tensors[i]
        if t.dtype in ("int8", "uint8") and (t.quant is None or not t.quant.scale):
            return True
        if t.dtype in ("int8", "uint8") and not t.is_constant and t.quant is not None \
                and t.quant.per_channel:
            return True
    w = _t(model, op, 1)
    return op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and (
        w is None or w.quant is None)


@constraint(fix="use padding SAME/VALID (TFLite's only modes)")
def bad_padding(model: ir.Model, op: ir.Operator) -> bool:
    """padding mode is not SAME or VALID"""
    return str(op.options.get("padding", "VALID")) not in ("SAME", "VALID")


@constraint(fix="use NONE, RELU, RELU6 or RELU_N1_TO_1 as the fused activation")
def bad_activation(model: ir.Model, op: ir.Operator) -> bool:
    """fused activation is not one of NONE/RELU/RELU6/RELU_N1_TO_1"""
    return _act(op) not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


@constraint(fix="the paddings input must be a constant tensor")
def non_constant_paddings(model: ir.Model, op: ir.Operator) -> bool:
    """PAD paddings are not constant"""
    p, c = _t(model, op, 1), _t(model, op, 2)
    return (p is None or not p.is_constant) or (c is not None and not c.is_constant)


@constraint(fix="tensors of more than 6 dimensions are not supported")
def too_many_dims(model: ir.Model, op: ir.Operator) -> bool:
    """a tensor has more than 6 dimensions"""
    return any(len(model.tensors[i].shape) > MAX_BROADCAST_DIMS
               for i in list(op.inputs) + list(op.outputs) if i >= 0)


@constraint(fix="CONCATENATION inputs must share the output's scale and zero point "
                "(TFLM requires the same)")
def concat_requant(model: ir.Model, op: ir.Operator) -> bool:
    """CONCATENATION would need requantization"""
    y = model.tensors[op.outputs[0]]
    return any(model.tensors[i].quant != y.quant and y.dtype in ("int8", "uint8")
               and (model.tensors[i].quant is None or y.quant is None
                    or model.tensors[i].quant.scale != y.quant.scale
                    or model.tensors[i].quant.zero_point != y.quant.zero_point)
               for i in op.inputs if i >= 0)


@constraint(fix="re-quantize with a larger output scale (TFLM's int32 shift overflows there)")
def requant_range(model: ir.Model, op: ir.Operator) -> bool:
    """output scale too small: a requantization multiplier (input x weight scale / output
    scale) is 2^30 or more"""
    low = LOWERINGS.get(op.opcode)
    if low is None:
        return False
    try:
        low.fn(LowerContext(model, op, {}), op)
    except quant.MultiplierRangeError:
        return True
    except Exception:       # a malformed op is reported by the other checks
        return False
    return False


#: |partial sum| bound per weighted term: |x| <= 128 for the product, and the folded
#: input zero point (|zp| <= 128) or the padding correction adds at most as much again
_ACC_PER_WEIGHT = 256


def accumulator_bound(model: ir.Model, op: ir.Operator) -> int:
    """Largest |int32 partial sum| a CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED kernel can
    reach over all inputs: max(|bias|, |bias - zp * sum(w)|) + 256 * sum(|w|), per channel.

    At or below INT32_MAX the kernels' int32 accumulation and TFLM's are both exact.
    """
    x, w, b = _t(model, op, 0), _t(model, op, 1), _t(model, op, 2)
    if x is None or w is None or not w.is_constant or not w.shape:
        return 0
    weights = w.array().astype(np.int64)
    per_ch = (weights.reshape(-1, weights.shape[-1]).T if op.opcode == "DEPTHWISE_CONV_2D"
              else weights.reshape(weights.shape[0], -1))
    sums, abs_sums = per_ch.sum(axis=1), np.abs(per_ch).sum(axis=1)
    bias = np.zeros_like(sums)
    if b is not None and b.is_constant:
        raw = b.array().astype(np.int64).reshape(-1)
        if raw.shape == bias.shape:
            bias = raw
    folded = bias - np.int64(scale_zp(x)[1]) * sums
    bound = np.maximum(np.abs(bias), np.abs(folded)) + _ACC_PER_WEIGHT * abs_sums
    return int(bound.max()) if bound.size else 0


@constraint(fix="re-quantize the model: a bias this close to the int32 limits comes from a "
                "near-zero weight or input scale")
def accumulator_range(model: ir.Model, op: ir.Operator) -> bool:
    """a bias is so close to the int32 limits that the int32 accumulator could overflow"""
    return accumulator_bound(model, op) > quant.INT32_MAX


@constraint(fix="re-convert the model: a bias holds one int32 constant per output channel, "
                "and conv weights one filter per output channel")
def channel_shapes(model: ir.Model, op: ir.Operator) -> bool:
    """the bias or the weights do not match the output's channels"""
    w, b = _t(model, op, 1), _t(model, op, 2)
    y = model.tensors[op.outputs[0]] if op.outputs else None
    if y is None or not y.shape or w is None or not w.shape:
        return True
    channels = y.shape[-1]
    if b is not None and (not b.is_constant or b.size != channels):
        return True
    if op.opcode == "CONV_2D":
        return w.shape[0] != channels
    if op.opcode == "DEPTHWISE_CONV_2D":
        return w.shape[-1] != channels
    return False


@constraint(fix="FULLY_CONNECTED output depth must not exceed the weights' rows")
def fc_shape(model: ir.Model, op: ir.Operator) -> bool:
    """FULLY_CONNECTED weights and output disagree"""
    x, w = _t(model, op, 0), _t(model, op, 1)
    y = model.tensors[op.outputs[0]]
    if x is None or w is None or len(w.shape) != 2 or not y.shape:
        return True
    batches = y.size // y.shape[-1] if y.shape[-1] else 0
    return y.shape[-1] > w.shape[0] or x.size != batches * w.shape[1]


# ----------------------------------------------------------------------------- nonlinear, MEAN
# LOGISTIC, TANH, HARD_SWISH and LEAKY_RELU (int8 -> int8) are functions of one input
# byte: they run as a 256-entry table that tinyq.firmware.native.fixedpoint fills by running
# TFLM's integer reference computation on every input. SOFTMAX and MEAN are C kernels.


def _lut_call(ctx: LowerContext, op: ir.Operator, table: np.ndarray, what: str) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    return Call("tq_lut_s8", "tq_lut_params",
                params=(("size", y.size), ("table", ctx.array("table", "int8_t", table))),
                args=(TensorArg(x.index), TensorArg(y.index)),
                comment=f"{what} as a 256-entry table of TFLM's integer result")


def _lower_logistic(ctx: LowerContext, op: ir.Operator) -> Call:
    x = ctx.input(op, 0)
    assert x is not None
    p = fixedpoint.sigmoid_params(*scale_zp(x))
    return _lut_call(ctx, op, fixedpoint.lut_s8(fixedpoint.logistic_s8, p), "LOGISTIC")


def _lower_tanh(ctx: LowerContext, op: ir.Operator) -> Call:
    x = ctx.input(op, 0)
    assert x is not None
    p = fixedpoint.sigmoid_params(*scale_zp(x))
    return _lut_call(ctx, op, fixedpoint.lut_s8(fixedpoint.tanh_s8, p), "TANH")


def _lower_hard_swish(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    p = fixedpoint.hard_swish_params(*scale_zp(x), *scale_zp(y))
    return _lut_call(ctx, op, fixedpoint.lut_s8(fixedpoint.hard_swish_s8, p), "HARD_SWISH")


def _lower_leaky_relu(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    alpha = float(op.options.get("alpha", 0.0) or 0.0)
    p = fixedpoint.leaky_relu_params(*scale_zp(x), *scale_zp(y), alpha)
    return _lut_call(ctx, op, fixedpoint.lut_s8(fixedpoint.leaky_relu_s8, p),
                     f"LEAKY_RELU alpha={alpha:g}")


def _lower_softmax(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    beta = float(op.options.get("beta", 1.0))
    p = fixedpoint.softmax_params(beta, scale_zp(x)[0])
    depth = x.shape[-1] if x.shape else 1
    kernel = "tq_softmax_s8_s16" if y.dtype == "int16" else "tq_softmax_s8"
    return Call(kernel, "tq_softmax_params",
                params=(("outer", x.size // depth if depth else 0), ("depth", depth),
                        ("input_multiplier", p.input_multiplier),
                        ("input_left_shift", p.input_left_shift), ("diff_min", p.diff_min)),
                args=(TensorArg(x.index), TensorArg(y.index)),
                comment=f"beta={beta:g} over {depth}")


def _mean_axes(model: ir.Model, op: ir.Operator) -> list[int] | None:
    """TFLM ``ResolveAxis``: negative axes wrapped, duplicates dropped; None if invalid."""
    x, a = _t(model, op, 0), _t(model, op, 1)
    if x is None or a is None or not a.is_constant:
        return None
    rank = len(x.shape)
    axes: list[int] = []
    for v in a.array().reshape(-1).tolist():
        v = int(v) + rank if int(v) < 0 else int(v)
        if not 0 <= v < rank:
            return None
        if v not in axes:
            axes.append(v)
    return axes


def reduce_layout(shape: Sequence[int], axes: Sequence[int]
                  ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(kept dims, reduced dims, count) for ``tq_mean_s8``: (size, stride) runs in row-major
    order, size-1 dims dropped and neighbours of the same kind merged."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    kept: list[tuple[int, int]] = []
    red: list[tuple[int, int]] = []
    last: list[tuple[int, int]] | None = None
    for i, d in enumerate(shape):
        if d == 1:
            continue
        group = red if i in axes else kept
        if group is last and group[-1][1] == strides[i] * d:
            group[-1] = (group[-1][0] * d, strides[i])
        else:
            group.append((d, strides[i]))
        last = group
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if axes else 1
    return kept, red, count


def _lower_mean(ctx: LowerContext, op: ir.Operator) -> Call:
    x, y = ctx.input(op, 0), ctx.output(op)
    assert x is not None
    axes = _mean_axes(ctx.model, op)
    assert axes is not None
    kept, red, count = reduce_layout(x.shape, axes)
    p = fixedpoint.mean_params(*scale_zp(x), *scale_zp(y), count)

    def c_list(values: Sequence[int]) -> CExpr:
        padded = list(values) + [0] * (TQ_REDUCE_MAX_DIMS - len(values))
        return CExpr("{" + ", ".join(str(int(v)) for v in padded) + "}")

    return Call(
        "tq_mean_s8", "tq_mean_params",
        params=(("n_kept", len(kept)), ("n_red", len(red)),
                ("kept_dims", c_list([d for d, _ in kept])),
                ("kept_strides", c_list([s for _, s in kept])),
                ("red_dims", c_list([d for d, _ in red])),
                ("red_strides", c_list([s for _, s in red])),
                ("bias", p.bias), ("mult", p.multiplier), ("shift", p.shift),
                ("out_zp", p.output_zero_point)),
        args=(TensorArg(x.index), TensorArg(y.index)),
        comment=f"mean over axes {axes} ({count} values each)")


#: most dims tq_mean_s8 takes (TQ_REDUCE_MAX_DIMS in tq_nonlinear.h)
TQ_REDUCE_MAX_DIMS = 6


@constraint(fix="quantize LOGISTIC's output with zero point -128 (TFLM requires it)")
def logistic_output_zp(model: ir.Model, op: ir.Operator) -> bool:
    """LOGISTIC int8 output zero point is not -128"""
    return scale_zp(model.tensors[op.outputs[0]])[1] != -128


@constraint(fix="use an input scale of at least 2^-28 (TFLM's LOGISTIC/TANH limit)")
def sigmoid_scale_too_small(model: ir.Model, op: ir.Operator) -> bool:
    """LOGISTIC/TANH input scale is too small for TFLM's fixed-point path"""
    x = _t(model, op, 0)
    return x is not None and float(np.float32(scale_zp(x)[0])) * (1 << 27) < 0.5


@constraint(fix="use a HARD_SWISH output scale of at least input_scale/128 (TFLM requires it)")
def hard_swish_output_scale(model: ir.Model, op: ir.Operator) -> bool:
    """HARD_SWISH output scale is below input_scale/128"""
    x = _t(model, op, 0)
    if x is None:
        return True
    try:
        fixedpoint.hard_swish_params(*scale_zp(x), *scale_zp(model.tensors[op.outputs[0]]))
    except ValueError:
        return True
    return False


@constraint(fix="quantize the SOFTMAX output as the converter does: int8 scale 1/256 zero point "
                "-128, or int16 scale 1/65536 zero point -32768 (TFLM requires it)")
def softmax_output_quant(model: ir.Model, op: ir.Operator) -> bool:
    """SOFTMAX output quantization is not what TFLM requires"""
    y = model.tensors[op.outputs[0]]
    scale, zp = scale_zp(y)
    f = np.float32
    if y.dtype == "int16":
        return zp != -32768 or abs(f(scale) - f(1.0) / f(65536)) > f(0.001) * f(1.0) / f(65536)
    return zp != -128 or f(scale) != f(1.0) / f(256)


@constraint(fix="use a larger SOFTMAX beta or input scale (beta * scale must exceed 2^-26)")
def softmax_beta_too_small(model: ir.Model, op: ir.Operator) -> bool:
    """SOFTMAX beta * input scale is too small (TFLM aborts on it)"""
    x = _t(model, op, 0)
    if x is None:
        return True
    try:
        fixedpoint.softmax_params(float(op.options.get("beta", 1.0)), scale_zp(x)[0])
    except ValueError:
        return True
    return False


@constraint(fix="give MEAN a constant int32 axis tensor with axes inside the input's rank")
def mean_axes(model: ir.Model, op: ir.Operator) -> bool:
    """MEAN axes are not constant or out of range"""
    return _mean_axes(model, op) is None


#: MEAN sums int8 values in int32: below 2^24 of them the sum cannot overflow
MEAN_MAX_COUNT = (1 << 24) - 1


@constraint(fix=f"reduce at most {MEAN_MAX_COUNT} values per MEAN output (split the reduction)")
def mean_count(model: ir.Model, op: ir.Operator) -> bool:
    """MEAN reduces 2^24 or more values per output (the int32 sum could overflow)"""
    x, axes = _t(model, op, 0), _mean_axes(model, op)
    if x is None or axes is None:
        return False
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) > MEAN_MAX_COUNT


@constraint(fix="use MEAN on tensors of at most 6 dimensions, none of size 0")
def mean_shape(model: ir.Model, op: ir.Operator) -> bool:
    """MEAN input has more than 6 dimensions or an empty dimension"""
    x = _t(model, op, 0)
    return x is None or len(x.shape) > TQ_REDUCE_MAX_DIMS or any(d <= 0 for d in x.shape)


_S8 = ("int8",)
_NONLINEAR_HEADERS = ("tq_nonlinear.h", "tq_fixedpoint.h")
_CONV_SIGS = (Sig(("int8", "int8", "int32"), _S8), Sig(("int8", "int8"), _S8))
_WEIGHTED = (non_constant_weights, weight_zero_point, unquantized, bad_activation,
             channel_shapes, requant_range, accumulator_range)

#: opcode -> how to lower it. The one table of the native runtime.
LOWERINGS: Mapping[str, Lowering] = {
    "CONV_2D": Lowering(_lower_conv2d, ("tq_conv.c",), _CONV_SIGS,
                        _WEIGHTED + (grouped_conv, bad_padding),
                        "per-channel/per-tensor, any stride/dilation/padding"),
    "DEPTHWISE_CONV_2D": Lowering(_lower_depthwise, ("tq_depthwise.c",), _CONV_SIGS,
                                  _WEIGHTED + (bad_padding,),
                                  "any depth multiplier, stride, dilation, padding"),
    "FULLY_CONNECTED": Lowering(_lower_fully_connected, ("tq_fully_connected.c",),
                                _CONV_SIGS, _WEIGHTED + (fc_shape,),
                                "per-channel/per-tensor, batches, keep_num_dims"),
    "AVERAGE_POOL_2D": Lowering(_lower_pool("tq_avg_pool_s8"), ("tq_pool.c",),
                                (Sig(_S8, _S8),), (unquantized, bad_padding, bad_activation)),
    "MAX_POOL_2D": Lowering(_lower_pool("tq_max_pool_s8"), ("tq_pool.c",),
                            (Sig(_S8, _S8),), (unquantized, bad_padding, bad_activation)),
    "ADD": Lowering(_lower_add, ("tq_elementwise.c",), (Sig(("int8", "int8"), _S8),),
                    (unquantized, bad_activation, too_many_dims, requant_range),
                    "with broadcasting"),
    "MUL": Lowering(_lower_mul, ("tq_elementwise.c",), (Sig(("int8", "int8"), _S8),),
                    (unquantized, bad_activation, too_many_dims, requant_range),
                    "with broadcasting"),
    "RESHAPE": Lowering(_lower_reshape, ("tq_common.c",),
                        (Sig(("*",), ("*",)), Sig(("*", "*"), ("*",))), (),
                        "no copy when the planner aliases it"),
    "SQUEEZE": Lowering(_lower_reshape, ("tq_common.c",), (Sig(("*",), ("*",)),), (),
                        "no copy when the planner aliases it"),
    "EXPAND_DIMS": Lowering(_lower_reshape, ("tq_common.c",), (Sig(("*", "*"), ("*",)),), (),
                            "no copy when the planner aliases it"),
    "PAD": Lowering(_lower_pad, ("tq_pad.c",),
                    (Sig(("int8", "int32"), _S8), Sig(("int8", "int64"), _S8)),
                    (unquantized, non_constant_paddings, too_many_dims)),
    "PADV2": Lowering(_lower_pad, ("tq_pad.c",),
                      (Sig(("int8", "int32", "int8"), _S8), Sig(("int8", "int64", "int8"), _S8)),
                      (unquantized, non_constant_paddings, too_many_dims)),
    "CONCATENATION": Lowering(_lower_concat, ("tq_common.c",), (Sig(_S8, _S8, variadic=True),),
                              (unquantized, concat_requant)),
    "QUANTIZE": Lowering(_lower_quantize, ("tq_quantize.c",),
                         (Sig(("float32",), _S8), Sig(_S8, _S8), Sig(("uint8",), _S8),
                          Sig(_S8, ("uint8",))), (unquantized, requant_range),
                         "float32->int8, int8/uint8 requantize"),
    "DEQUANTIZE": Lowering(_lower_dequantize, ("tq_quantize.c",),
                           (Sig(_S8, ("float32",)), Sig(("uint8",), ("float32",))),
                           (unquantized,)),
    "RELU": Lowering(_lower_relu, ("tq_activations.c",), (Sig(_S8, _S8),),
                     (unquantized, requant_range)),
    "RELU6": Lowering(_lower_relu6, ("tq_activations.c",), (Sig(_S8, _S8),), (unquantized,)),
    "LOGISTIC": Lowering(_lower_logistic, ("tq_lut.c",), (Sig(_S8, _S8),),
                         (unquantized, logistic_output_zp, sigmoid_scale_too_small),
                         "256-entry table", _NONLINEAR_HEADERS),
    "TANH": Lowering(_lower_tanh, ("tq_lut.c",), (Sig(_S8, _S8),),
                     (unquantized, sigmoid_scale_too_small), "256-entry table",
                     _NONLINEAR_HEADERS),
    "HARD_SWISH": Lowering(_lower_hard_swish, ("tq_lut.c",), (Sig(_S8, _S8),),
                           (unquantized, hard_swish_output_scale), "256-entry table",
                           _NONLINEAR_HEADERS),
    "LEAKY_RELU": Lowering(_lower_leaky_relu, ("tq_lut.c",), (Sig(_S8, _S8),), (unquantized,),
                           "256-entry table, any alpha", _NONLINEAR_HEADERS),
    "SOFTMAX": Lowering(_lower_softmax, ("tq_softmax.c",),
                        (Sig(_S8, _S8), Sig(_S8, ("int16",))),
                        (unquantized, softmax_output_quant, softmax_beta_too_small),
                        "int8 or int16 output, any beta", _NONLINEAR_HEADERS),
    "MEAN": Lowering(_lower_mean, ("tq_mean.c",), (Sig(("int8", "int32"), _S8),),
                     (unquantized, mean_axes, mean_shape, mean_count, requant_range),
                     "any axes, keep_dims or not",
                     _NONLINEAR_HEADERS),
}

#: kernel sources every generated project gets (helpers, copies, concat)
COMMON_SOURCES = ("tq_common.c",)


def lowering_for(op: ir.Operator, model: ir.Model | None = None) -> Lowering:
    try:
        return LOWERINGS[op.opcode]
    except KeyError:
        # without the model, TFLM's dtypes are unknown: the op is all there is to go on
        hint = ("use --runtime tflm (`tinyq inspect MODEL --runtime tflm` checks that it runs "
                "the model)" if op.opcode in TFLM_BUILTIN_OPS else instead_fix(op.opcode))
        if model is not None:
            from tinyq.firmware.native.support import other_runtime_fix, requantize_fix

            # dynamic-range/float16: not TFLM either; an op TFLM lacks too: what both run
            hint = requantize_fix(model) or other_runtime_fix(model, op)
        raise UnsupportedError(
            f"op {op.index} {op.opcode}: the native runtime has no kernel for it",
            hint=hint, op=op.opcode) from None


def lower_op(model: ir.Model, op: ir.Operator, aliases: Mapping[int, int]) -> Call:
    """Lower one op (the caller has already checked support)."""
    ctx = LowerContext(model, op, aliases)
    call = lowering_for(op, model).fn(ctx, op)
    arrays = ctx.take_arrays()
    if arrays:
        call = Call(call.kernel, call.params_type, call.params, call.args,
                    call.arrays + arrays, call.scratch_bytes, call.comment)
    return call


def _register_families() -> None:
    """Add the op families kept in their own modules (native/ops_*.py) to LOWERINGS."""
    from tinyq.firmware.native import ops_arith, ops_compare, ops_layout

    table: dict[str, Lowering] = LOWERINGS  # type: ignore[assignment]
    for family in (ops_layout, ops_compare, ops_arith):
        for name, row in family.rows().items():
            assert name not in table, f"{name} is lowered twice"
            table[name] = row


_register_families()
