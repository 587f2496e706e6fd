"""TFLM's integer nonlinear ops, reproduced exactly in numpy.

The native runtime runs int8 -> int8 elementwise ops (LOGISTIC, TANH, HARD_SWISH,
LEAKY_RELU) as a 256-entry lookup table: each output byte depends only on the
input byte, so the table is computed here, at code-generation time, by running
the same integer arithmetic TFLM's reference kernels run (gemmlowp fixed point,
``MultiplyByQuantizedMultiplier`` with double rounding) on all 256 inputs.

Each function names the TFLM/gemmlowp function it mirrors. Arrays are int64
holding int32 (or int16) values; every step that wraps, saturates or
truncates in C does so here the same way. Prepare-time parameter math is
done in the precision the tflite-micro PyPI build uses, read from its binary
(``objdump -d`` of ``_runtime.so``): scale ratios and products are computed in
double from the float32 scales (cvtss2sd, then mulsd/divsd), including where
the TFLM sources of mid-2026 still divide in float32 (HARD_SWISH, LEAKY_RELU).
The ``*_params`` functions return what TFLM's ``Prepare`` stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyq.firmware.native.quant import kernel_multiplier, quantize_multiplier, round_half_away

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1

#: every int8 value, in table order (index = value + 128)
INT8_VALUES = np.arange(-128, 128, dtype=np.int64)

# ----------------------------------------------------------------------------- int32 primitives


def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (C int32 + - on the targets)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def wrap16(x: np.ndarray) -> np.ndarray:
    """Conversion to int16_t (modulo 2^16, as gcc does)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _cdiv_pot(num: np.ndarray, bits: int) -> np.ndarray:
    """C integer division by 2^bits (truncates toward zero)."""
    return np.where(num >= 0, num >> bits, -((-num) >> bits))


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` (int32)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _cdiv_pot(ab + nudge, 31)
    return np.where((a == b) & (a == INT32_MIN), INT32_MAX, out)


def rdbpot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT`` (int32): rounding arithmetic right shift."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def sat_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` for exponent >= 0 (int32)."""
    if exponent == 0:
        return np.asarray(x, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX,
                    np.where(x < -threshold, INT32_MIN, x << exponent))


def rescale(x: np.ndarray, src_bits: int, dst_bits: int) -> np.ndarray:
    """gemmlowp ``Rescale<dst>`` of a FixedPoint<int32, src>."""
    e = src_bits - dst_bits
    return sat_shift_left(x, e) if e >= 0 else rdbpot(x, -e)


def rounding_half_sum(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp ``RoundingHalfSum`` (int32): (a + b + sign) / 2, truncating."""
    s = np.asarray(a, dtype=np.int64) + b
    s = s + np.where(s >= 0, 1, -1)
    return np.where(s >= 0, s // 2, -((-s) // 2))


def mul_by_quantized_mul(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLM ``MultiplyByQuantizedMultiplier(int32)``, double rounding."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rdbpot(srdhm(wrap32(np.asarray(x, dtype=np.int64) * (1 << left)), multiplier), right)


# ----------------------------------------------------------------------------- gemmlowp functions

_ONE_Q0 = INT32_MAX                   # FixedPoint<int32, 0>::One()
_ONE_Q2 = 1 << 29                     # FixedPoint<int32, 2>::One()
_C48_17 = 1515870810                  # 48/17 in Q2.29
_CNEG32_17 = -1010580540              # -32/17 in Q2.29
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    constant_term = 1895147668        # exp(-1/8)
    one_third = 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values`` of FixedPoint<int32, integer_bits> -> Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    a_mod = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod, integer_bits, 0))
    remainder = wrap32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac + exponent)
            result = np.where(remainder & bit, srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, _ONE_Q0, result)


def _newton_reciprocal(a: np.ndarray) -> np.ndarray:
    """The Newton-Raphson loop shared by one_over_one_plus_x / one_minus_x_over_one_plus_x."""
    half_den = rounding_half_sum(a, _ONE_Q0)
    x = wrap32(_C48_17 + srdhm(half_den, _CNEG32_17))
    for _ in range(3):
        one_minus = wrap32(_ONE_Q2 - srdhm(half_den, x))
        x = wrap32(x + rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    return rescale(_newton_reciprocal(a), 1, 0)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    return rescale(wrap32(_newton_reciprocal(a) - _ONE_Q2), 2, 0)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``logistic`` of FixedPoint<int32, integer_bits> -> Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_in = np.where(positive, a, wrap32(-a))
    if_pos = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap32(-abs_in), integer_bits))
    if_neg = wrap32(_ONE_Q0 - if_pos)
    return np.where(a == 0, 1 << 30, np.where(positive, if_pos, if_neg))


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``tanh`` of FixedPoint<int32, integer_bits> -> Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap32(-a))
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap32(-t), t))


# ----------------------------------------------------------------------------- int16 primitives


def srdhm16(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` (int16)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    out = wrap16(_cdiv_pot(ab + nudge, 15))
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, out)


def sdhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLM ``SaturatingDoublingHighMul`` (int16, truncating; hard_swish.h)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    out = wrap16(_cdiv_pot(a * b, 15))
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, out)


def rdbpot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT`` on int16 (mask and sums truncated to int16)."""
    x = np.asarray(x, dtype=np.int64)
    mask = int(wrap16(np.int64((1 << exponent) - 1)))
    remainder = wrap16(x & mask)
    threshold = wrap16((mask >> 1) + (x < 0))
    return wrap16((x >> exponent) + (remainder > threshold))


def sat_left_shift16(x: np.ndarray, amount: int) -> np.ndarray:
    """TFLM ``SaturatingLeftShift`` (hard_swish.h)."""
    return np.clip(np.asarray(x, dtype=np.int64) * (1 << amount), INT16_MIN, INT16_MAX)


# ----------------------------------------------------------------------------- TFLM ops


@dataclass(frozen=True)
class SigmoidParams:
    """What TFLM's LOGISTIC/TANH Prepare stores for int8 (kInputIntegerBits = 4)."""

    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


#: LOGISTIC/TANH int8 keep 4 integer bits in the fixed-point input (Q4.27)
SIGMOID_INPUT_INTEGER_BITS = 4


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """TFLM ``CalculateInputRadius`` (double arithmetic, floor)."""
    value = (1.0 * ((1 << input_integer_bits) - 1)
             * float(1 << (total_signed_bits - input_integer_bits))
             / float(1 << input_left_shift))
    return int(math.floor(value))


def sigmoid_params(input_scale: float, input_zero_point: int) -> SigmoidParams:
    """LOGISTIC/TANH int8 Prepare: frexp of scale * 2^27 in double, radius from the shift."""
    real = float(np.float32(input_scale)) * float(1 << (31 - SIGMOID_INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    if shift < 0:
        raise ValueError(f"input scale {input_scale!r} too small for TFLM's LOGISTIC/TANH")
    multiplier = round_half_away(q * (1 << 31))
    return SigmoidParams(int(input_zero_point),
                         calculate_input_radius(SIGMOID_INPUT_INTEGER_BITS, shift, 31),
                         multiplier, shift)


def _sigmoid_like(p: SigmoidParams, x: np.ndarray, fn, out_shift: int, out_zp: int
                  ) -> np.ndarray:
    inp = np.asarray(x, dtype=np.int64) - p.input_zero_point
    q4 = mul_by_quantized_mul(inp, p.input_multiplier, p.input_left_shift)
    mid = np.clip(rdbpot(fn(q4, SIGMOID_INPUT_INTEGER_BITS), out_shift) + out_zp, -128, 127)
    return np.where(inp <= -p.input_range_radius, -128,
                    np.where(inp >= p.input_range_radius, 127, mid))


def logistic_s8(p: SigmoidParams, x: np.ndarray) -> np.ndarray:
    """``reference_integer_ops::Logistic`` (int8): output is Q0.8 with zero point -128."""
    return _sigmoid_like(p, x, logistic, 31 - 8, -128)


def tanh_s8(p: SigmoidParams, x: np.ndarray) -> np.ndarray:
    """``reference_integer_ops::Tanh`` (int8): output is Q0.7 with zero point 0."""
    return _sigmoid_like(p, x, tanh, 31 - 7, 0)


@dataclass(frozen=True)
class HardSwishParams:
    input_zero_point: int
    output_zero_point: int
    reluish_multiplier_fixedpoint_int16: int
    reluish_multiplier_exponent: int
    output_multiplier_fixedpoint_int16: int
    output_multiplier_exponent: int


def downscale_int32_to_int16_multiplier(m: int) -> int:
    """TFLM ``DownScaleInt32ToInt16Multiplier``."""
    if m >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (m + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, input_zp: int, output_scale: float,
                      output_zp: int) -> HardSwishParams:
    """HARD_SWISH int8 Prepare. ``hires_input_scale = input_scale / 128`` is a float32
    product (exact); the two ratios are divided in double, as the tflite-micro build
    does (its binary converts both operands with cvtss2sd before divsd: the float32
    quotient differs in ~1 case in 1000)."""
    f = np.float32
    hires_input_scale = float(f(1.0 / 128.0) * f(input_scale))
    reluish_scale = float(f(3.0) / f(32768.0))
    out_m, out_e = quantize_multiplier(hires_input_scale / float(f(output_scale)))
    rel_m, rel_e = quantize_multiplier(hires_input_scale / reluish_scale)
    if out_e > 0:
        raise ValueError("HARD_SWISH output scale is below input_scale/128 (TFLM rejects it)")
    return HardSwishParams(int(input_zp), int(output_zp),
                           downscale_int32_to_int16_multiplier(rel_m), rel_e,
                           downscale_int32_to_int16_multiplier(out_m), out_e)


def hard_swish_s8(p: HardSwishParams, x: np.ndarray) -> np.ndarray:
    """``reference_ops::HardSwish<int8_t>`` (quantized)."""
    value = wrap16(np.asarray(x, dtype=np.int64) - p.input_zero_point)
    hires = wrap16(value * (1 << 7))
    preshift_out = srdhm16(hires, p.output_multiplier_fixedpoint_int16)
    reluish = hires
    if p.reluish_multiplier_exponent > 0:
        reluish = sat_left_shift16(reluish, p.reluish_multiplier_exponent - 1)
    reluish = srdhm16(reluish, p.reluish_multiplier_fixedpoint_int16)
    if p.reluish_multiplier_exponent > 0:
        reluish = sat_left_shift16(reluish, 1)
    if p.reluish_multiplier_exponent < 0:
        reluish = rdbpot16(reluish, -p.reluish_multiplier_exponent)
    reluish = wrap16((reluish + (1 << 15)) >> 1)
    pre = sdhm16(reluish, preshift_out)
    out = wrap16(rdbpot16(pre, -p.output_multiplier_exponent) + p.output_zero_point)
    return np.clip(out, -128, 127)


@dataclass(frozen=True)
class LeakyReluParams:
    input_zero_point: int
    output_zero_point: int
    multiplier_alpha: int
    shift_alpha: int
    multiplier_identity: int
    shift_identity: int


def leaky_relu_params(input_scale: float, input_zp: int, output_scale: float,
                      output_zp: int, alpha: float) -> LeakyReluParams:
    """LEAKY_RELU int8 Prepare: ``alpha * input_scale / output_scale`` and
    ``input_scale / output_scale`` in double (float32 operands widened first, as in
    the tflite-micro build's binary)."""
    f = np.float32
    alpha_real = float(f(alpha)) * float(f(input_scale)) / float(f(output_scale))
    identity_real = float(f(input_scale)) / float(f(output_scale))
    ma, sa = quantize_multiplier(alpha_real)
    mi, si = quantize_multiplier(identity_real)
    return LeakyReluParams(int(input_zp), int(output_zp), ma, sa, mi, si)


def leaky_relu_s8(p: LeakyReluParams, x: np.ndarray) -> np.ndarray:
    """``reference_ops::QuantizeLeakyRelu<int8_t>`` (negative alpha supported)."""
    v = np.asarray(x, dtype=np.int64) - p.input_zero_point
    negative_alpha = p.multiplier_alpha < 0
    safe = int(wrap32(np.int64(-p.multiplier_alpha))) if negative_alpha else p.multiplier_alpha
    ident = mul_by_quantized_mul(v, p.multiplier_identity, p.shift_identity)
    scaled = mul_by_quantized_mul(v, safe, p.shift_alpha)
    if negative_alpha:
        scaled = wrap32(-scaled)
    out = wrap32(p.output_zero_point + np.where(v >= 0, ident, scaled))
    return np.clip(out, -128, 127)


def lut_s8(fn, params) -> np.ndarray:
    """The 256-entry int8 table of ``fn(params, x)``, indexed by ``x + 128``."""
    table = fn(params, INT8_VALUES)
    return np.asarray(table, dtype=np.int64).astype(np.int8)


@dataclass(frozen=True)
class SoftmaxParams:
    """What TFLM's SOFTMAX Prepare stores for int8 input (``PreprocessSoftmaxScaling``)."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


#: SOFTMAX int8: the rescaled input difference is Q5.26 (kScaledDiffIntegerBits)
SOFTMAX_DIFF_INTEGER_BITS = 5


def softmax_params(beta: float, input_scale: float) -> SoftmaxParams:
    """``PreprocessSoftmaxScaling``: beta * scale * 2^26 in double (both are float32
    in the model), capped at 2^31 - 1, then ``QuantizeMultiplierGreaterThanOne``."""
    real = (float(np.float32(beta)) * float(np.float32(input_scale))
            * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)))
    real = min(real, float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"SOFTMAX beta * input scale = {real / (1 << 26)!r} is too small "
                         "(TFLM requires beta * scale > 2^-26)")
    multiplier, shift = quantize_multiplier(real)
    radius = calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, shift, 31)
    return SoftmaxParams(multiplier, shift, -radius)


@dataclass(frozen=True)
class MeanParams:
    """``QuantizedMeanOrSum`` (mean) for int8 with TFLM's 1/count folded into mult/shift."""

    count: int          # elements summed per output
    bias: int           # -input_zp * count, wrapped to int32
    multiplier: int
    shift: int
    output_zero_point: int


def mean_params(input_scale: float, input_zp: int, output_scale: float, output_zp: int,
                count: int) -> MeanParams:
    """Prepare (``QuantizeMultiplier(in_scale / out_scale)`` in double) plus the
    Eval-time folding of 1/count: shift = min(floor(log2 count), 32, 31 + shift)."""
    multiplier, shift = kernel_multiplier(float(np.float32(input_scale))
                                          / float(np.float32(output_scale)))
    if count < 1:
        raise ValueError("MEAN over an empty set of elements")
    n = min(count.bit_length() - 1, 32, 31 + shift)
    multiplier = (multiplier << n) // count
    return MeanParams(count, int(wrap32(np.int64(-input_zp * count))), int(multiplier),
                      shift - n, int(output_zp))
