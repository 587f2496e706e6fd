"""TFLM's Prepare-time quantization arithmetic, reproduced exactly in Python.

The native runtime does at code-generation time what TFLM does in each
kernel's ``Prepare``: turn float scales into fixed-point multipliers and
shifts, and fused activations into clamp ranges. Bit-exactness depends on
doing it with the same precision in the same order, so each function names
the TFLM function it mirrors and the precision TFLM uses:

* ``QuantizeMultiplier`` (``quantization_util.cc``): ``frexp`` of a double,
  ``round`` half away from zero of ``q * 2^31``, 2^31 folded into the shift,
  shifts below -31 flushed to zero;
* scales are float32 in the flatbuffer; TFLM widens them to double before
  multiplying for conv/depthwise/per-channel FC, but multiplies them in float32
  for per-tensor FC (``GetQuantizedConvolutionMultipler``) and RELU;
* ``MultiplyByQuantizedMultiplier`` uses gemmlowp's double rounding (the
  PyPI tflite-micro build has ``TFLITE_SINGLE_ROUNDING`` off; the C kernels
  implement the same, ``tq_mul_by_quantized_mul`` in tq_kernels.h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tinyq.errors import ModelError

#: What to do about scales no kernel can divide by.
BAD_SCALES_HINT = ("the model's quantization scales are corrupt or absurd: re-quantize it "
                   "(`tinyq quantize MODEL --calib DATA --mode int8`) or re-export it")

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: dtype name -> (min, max) of its integer range
QRANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (INT32_MIN, INT32_MAX),
}


def round_half_away(x: float) -> int:
    """C/C++ ``round``: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def f32(x: float) -> np.float32:
    return np.float32(x)


#: shift range of the C kernels' ``tq_mul_by_quantized_mul`` (TQ_MIN_SHIFT/TQ_MAX_SHIFT in
#: tq_kernels.h). Below -31 TFLM flushes the multiplier to 0; at 31 and above TFLM computes
#: ``x * (1 << shift)`` with ``1 << 31`` (or more), undefined in C++, so no answer exists
#: to be bit-exact with: tinyq refuses such models (a real multiplier of 2^30 or more).
MIN_SHIFT, MAX_SHIFT = -31, 30


class MultiplierRangeError(ValueError):
    """A requantization multiplier the kernels cannot apply (see ``kernel_multiplier``)."""


def kernel_multiplier(real: float) -> tuple[int, int]:
    """``quantize_multiplier`` for a multiplier a C kernel applies at run time.

    Raises ``MultiplierRangeError`` when ``real`` is not finite and non-negative or needs
    a shift beyond ``MAX_SHIFT``; the support checks turn that into a refusal.
    """
    if not math.isfinite(real) or real < 0.0:
        raise MultiplierRangeError(f"requantization multiplier {real!r} is not finite and >= 0")
    m, shift = quantize_multiplier(real)
    if shift > MAX_SHIFT:
        raise MultiplierRangeError(
            f"requantization multiplier {real!r} is 2^{MAX_SHIFT} or more")
    return m, shift


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM ``QuantizeMultiplier(double)`` -> (multiplier Q31, shift; >0 is a left shift).

    Any finite ``real``; the shift is unbounded above (``kernel_multiplier`` bounds it
    for the C kernels). Raises ValueError for NaN and infinities."""
    if not math.isfinite(real):
        raise ValueError(f"QuantizeMultiplier of a non-finite value {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed > (1 << 31):
        raise ValueError(f"QuantizeMultiplier overflow for {real!r}")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def conv_multipliers(input_scale: float, filter_scales: Sequence[float], output_scale: float,
                     channels: int) -> tuple[list[int], list[int]]:
    """Per-channel (multiplier, shift) as ``PopulateConvolutionQuantizationParams``.

    Used by CONV_2D, DEPTHWISE_CONV_2D and per-channel FULLY_CONNECTED; a
    per-tensor filter scale is broadcast to every channel, as TFLM does.
    """
    mults, shifts = [], []
    for ch in range(channels):
        s = filter_scales[ch] if len(filter_scales) > 1 else filter_scales[0]
        eff = float(f32(input_scale)) * float(f32(s)) / divisor_scale(output_scale)
        m, sh = kernel_multiplier(eff)
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float,
                             output_scale: float) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED: GetQuantizedConvolutionMultipler widens the three float32
    scales to double before multiplying and dividing (read from the tflite-micro build's
    machine code: cvtss2sd x3, mulsd, divsd; a float32 product is 1 LSB off in rare cases)."""
    product = float(f32(input_scale)) * float(f32(filter_scale))
    return kernel_multiplier(product / divisor_scale(output_scale))


def divisor_scale(scale: float) -> float:
    """``scale`` as the float32 TFLM divides by; ``ModelError`` when that is not a finite
    positive number (a zero division in the multiplier arithmetic otherwise)."""
    value = float(f32(scale))
    if not (math.isfinite(value) and value > 0):
        raise ModelError(f"a quantization scale is {scale!r} as float32, which kernels "
                         "cannot divide by", hint=BAD_SCALES_HINT)
    return value


def _quantize_float(value: float, scale: float, zero_point: int) -> int:
    """``Quantize`` in kernel_util.cc: float32 division, round, add zero point."""
    with np.errstate(over="ignore"):
        q = float(f32(value) / f32(divisor_scale(scale)))
    if not math.isfinite(q):
        raise ModelError(f"the quantization scale {scale!r} is too small to represent "
                         f"{value} (a fused activation's bound)", hint=BAD_SCALES_HINT)
    return zero_point + round_half_away(q)


def activation_range(activation: str | None, scale: float, zero_point: int,
                     dtype: str = "int8") -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the clamp of a fused activation."""
    qmin, qmax = QRANGE[dtype]
    act = activation or "NONE"
    if act == "RELU":
        return max(qmin, _quantize_float(0.0, scale, zero_point)), qmax
    if act == "RELU6":
        return (max(qmin, _quantize_float(0.0, scale, zero_point)),
                min(qmax, _quantize_float(6.0, scale, zero_point)))
    if act == "RELU_N1_TO_1":
        return (max(qmin, _quantize_float(-1.0, scale, zero_point)),
                min(qmax, _quantize_float(1.0, scale, zero_point)))
    if act == "NONE":
        return qmin, qmax
    raise ValueError(f"unsupported fused activation {act}")


def add_params(scale1: float, scale2: float, scale_out: float, left_shift: int = 20
               ) -> dict[str, int]:
    """``CalculateOpDataAdd`` for int8: input/output multipliers around a 2^20 headroom."""
    twice_max = 2.0 * max(divisor_scale(scale1), divisor_scale(scale2))
    m1, s1 = kernel_multiplier(float(f32(scale1)) / twice_max)
    m2, s2 = kernel_multiplier(float(f32(scale2)) / twice_max)
    mo, so = kernel_multiplier(twice_max / ((1 << left_shift) * divisor_scale(scale_out)))
    return {"left_shift": left_shift, "in1_mult": m1, "in1_shift": s1,
            "in2_mult": m2, "in2_shift": s2, "out_mult": mo, "out_shift": so}


# --- integer reference arithmetic (used by tests and for folding constants) ---------------

def wrap_int32(x: int) -> int:
    """Two's-complement wrap to int32 (what C's int32 arithmetic does on real hardware)."""
    return ((int(x) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    q = abs(num) >> 31          # C division truncates toward zero
    return q if num >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """gemmlowp double rounding, as TFLM's ``MultiplyByQuantizedMultiplier(int32)``."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap_int32(x * (1 << left)), multiplier), right)
