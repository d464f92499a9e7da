"""8-bit block-float optimizer state: the element-level arithmetic.

A state buffer is cut into blocks of :data:`BLOCK` consecutive elements from
index 0 (the last block padded with zeros); each block has one power-of-two
float32 scale ``2**k`` and one byte per element: an 8-bit minifloat of the
element divided by the scale (exact: a power of two). The formats:

- **signed 1-4-3** (:data:`SIGNED`) for moments (Adam's ``exp_avg``,
  momentum buffers): a sign bit, 4 exponent bits, 3 fraction bits;
- **unsigned zero-less 4-4** (:data:`UNSIGNED`) for non-negative states:
  ``sqrt(v)`` of second moments (stored as the square root: it lives on the
  gradient's scale, and halves the range the codes must span), and Adamax's
  infinity norm as it is. Zero-less: a non-zero value never encodes to code 0
  (an ``m`` over a ``v`` decoded as 0 would step by ``m / eps``).

Values round stochastically (unbiased: an EMA's per-step change, smaller than
half a code, survives on average) or, for running maxima, up (the stored
maximum never decodes below a value it dominated). Measured on a noisy
quadratic: Adam's final loss 1.0105x that of float32 states at 2.031 bytes of
state per parameter (``bench/results/codec-accuracy.md``).

The arithmetic is integer work on float32 bit patterns, bit-exact with the
value-based reference (``tests/reference_codecs.py``); every function is
plain Python too (its body), which is what the CUDA simulator runs.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import element_jit
from .bits import bits_float, float_bits

BLOCK = 256
"""Elements per block (one float32 scale each: 1/64 byte per element)."""

MIN_ELEMENTS = 4096
"""Buffers with fewer elements keep float32 state (the scales and the block
loop would cost more than they save)."""

NEAREST, STOCHASTIC, UP = 0, 1, 2
"""Roundings, as the integers the element functions take."""

SIGNED = (4, 3, True, False)
"""``(exponent bits, fraction bits, signed, zero-less)`` of moments."""

UNSIGNED = (4, 4, False, True)
"""``(exponent bits, fraction bits, signed, zero-less)`` of non-negative states."""

TINY = (127 - 64) << 23
"""Blocks whose largest magnitude is below ``2**-64`` are encoded after an
exact multiplication by ``2**64`` (no float32 subnormal meets a normal code)."""


@element_jit
def block_exponent(amax, mbits):
    """``k`` of a block whose largest magnitude has float32 bits ``amax``
    (normal, > 0): ``2**k`` is the power of two at or below it, one more when
    the magnitude needs more than the format's largest fraction."""
    amax = np.int64(amax)
    k = (amax >> 23) - 127
    limit = ((np.int64(1) << mbits) - 1) << (23 - mbits)
    if (amax & 0x7FFFFF) > limit:
        k += 1
    return min(k, np.int64(127))


@element_jit
def scale_of(k):
    """The float32 ``2**k`` (float32 subnormals below ``2**-126``)."""
    k = np.int64(k)
    if k >= -126:
        return bits_float((k + 127) << 23)
    shift = min(max(k + 149, np.int64(0)), np.int64(62))
    return bits_float(np.int64(1) << shift)


@element_jit
def encode_code(a, negative, k, ebits, mbits, signed, zeroless, rounding, random16):
    """The 8-bit code of a value whose magnitude has float32 bits ``a``, in a
    block of exponent ``k``."""
    # Every intermediate fits in 32 bits; narrowing each one (numba widens
    # integer arithmetic to 64 bits) lets the loops vectorise twice as wide.
    a = np.int32(a)
    emax = np.int32((1 << ebits) - 1)
    ex = np.int32(a >> 23)
    s = np.int32((a & 0x7FFFFF) | (np.int32(1 << 23) if ex != 0 else np.int32(0)))
    e = np.int32(max(ex, np.int32(1)) - 127 - np.int32(k) + emax)
    shift = np.int32(23 - mbits + max(np.int32(0), np.int32(1 - e)))
    base = np.int32((max(e, np.int32(1)) - 1) << mbits)
    if rounding == STOCHASTIC:
        t = np.int32(s >> min(np.int32(shift - 16), np.int32(31)))
        q = np.int32(t >> 16)
        up = np.int32(((t & 0xFFFF) + np.int32(random16)) >> 16)
    else:
        cut = min(shift, np.int32(31))
        q = np.int32(s >> cut)
        rem = np.int32(s & np.int32((np.int64(1) << cut) - 1))
        if rounding == UP:
            up = np.int32(1) if rem != 0 else np.int32(0)
        else:
            half = np.int32(np.int64(1) << (cut - 1))
            up = np.int32(1) if rem > half or (rem == half and (q & 1) == 1) else np.int32(0)
    mag = np.int32(min(np.int32(base + q + up), np.int32((1 << (ebits + mbits)) - 1)))
    if zeroless and a != 0 and mag == 0:
        mag = np.int32(1)
    if signed and negative:
        mag = np.int32(mag | 0x80)
    return np.uint8(mag)


@element_jit
def decode_code(code, scale, ebits, mbits, signed):
    """The float32 value of an 8-bit code in a block of scale ``scale``."""
    c = np.int32(code)
    emax = np.int32((1 << ebits) - 1)
    mag = np.int32(c & 0x7F) if signed else c
    e = np.int32(mag >> mbits)
    f = np.int32(mag & ((1 << mbits) - 1))
    n = np.int32(f + (np.int32(1 << mbits) if e != 0 else np.int32(0)))
    power = bits_float(np.int32((max(e, np.int32(1)) - emax - mbits + 127) << 23))
    value = (np.float32(n) * power) * np.float32(scale)
    if signed and (c >> 7) == 1:
        return -value
    return value


@element_jit
def sqrt_for_storage(v, rounding):
    """``sqrt(v)`` as stored for a second moment: correctly rounded float32;
    for rounding up (running maxima), the next float32 up when its square
    falls short of ``v``, so the decoded square never does."""
    v32 = np.float32(v)
    s = np.float32(math.sqrt(v32))
    if rounding == UP and np.float64(s) * np.float64(s) < np.float64(v32):
        s = bits_float(np.int64(float_bits(s)) + 1)
    return s


@element_jit
def magnitude_bits(x):
    """``(|x| bits, sign)`` of float32 ``x``."""
    b = float_bits(x)
    return np.int32(b & 0x7FFFFFFF), (b >> 31) == 1


# -- formats per state role, and whole-array conversions on the host -----------------

def state_format(role: str) -> tuple:
    """``(ebits, mbits, signed, zeroless, squared, rounding)`` of a state of
    this role (see :attr:`fastopt.rules.Spec.state_roles`)."""
    if role == "moment":
        return (*SIGNED, False, STOCHASTIC)
    if role in ("square", "sum"):
        return (*UNSIGNED, True, STOCHASTIC)
    if role == "max_square":
        return (*UNSIGNED, True, UP)
    if role == "decaying_max":
        return (*UNSIGNED, False, STOCHASTIC)
    raise ValueError(f"no 8-bit format for state role {role!r}")


def blocks(n: int) -> int:
    """Blocks covering ``n`` elements (the last one padded)."""
    return -(-int(n) // BLOCK)


@element_jit
def _quantize(x, ebits, mbits, signed, zeroless, squared, rounding, codes, scales):
    n = x.size
    for b in range(scales.size):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        row = np.empty(BLOCK, np.float32)
        amax = np.int64(0)
        for j in range(hi - lo):
            value = sqrt_for_storage(x[lo + j], rounding) if squared else np.float32(x[lo + j])
            row[j] = value
            a, _ = magnitude_bits(value)
            amax = max(amax, a)
        if amax >= 0x7F800000 or amax == 0:
            scales[b] = np.float32(np.nan) if amax >= 0x7F800000 else np.float32(0.0)
            continue
        tiny = amax < TINY
        pre = np.float32(2.0**64) if tiny else np.float32(1.0)
        if tiny:
            amax = np.int64(0)
            for j in range(hi - lo):
                a, _ = magnitude_bits(row[j] * pre)
                amax = max(amax, a)
        k = block_exponent(amax, mbits)
        scales[b] = scale_of(k - 64 if tiny else k)
        # Conversions round to nearest (up for running maxima): no random bits on the host.
        for j in range(hi - lo):
            a, negative = magnitude_bits(row[j] * pre)
            codes[lo + j] = encode_code(a, negative, k, ebits, mbits, signed, zeroless,
                                        UP if rounding == UP else NEAREST, 0)


@element_jit
def _dequantize(codes, scales, ebits, mbits, signed, squared, out):
    for i in range(out.size):
        d = decode_code(codes[i], scales[i // BLOCK], ebits, mbits, signed)
        out[i] = d * d if squared else d


def quantize(values, fmt) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, scales)`` of host ``values`` in format ``fmt`` (see
    :func:`state_format`), rounded to nearest (up for running maxima)."""
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    nb = blocks(x.size)
    codes, scales = np.zeros(nb * BLOCK, np.uint8), np.zeros(nb, np.float32)
    ebits, mbits, signed, zeroless, squared, rounding = fmt
    _quantize(x, ebits, mbits, signed, zeroless, squared, rounding, codes, scales)
    return codes, scales


def dequantize(codes, scales, n: int, fmt) -> np.ndarray:
    """The first ``n`` float32 values of ``(codes, scales)`` in format ``fmt``."""
    ebits, mbits, signed, _, squared, _ = fmt
    out = np.empty(int(n), np.float32)
    _dequantize(np.ascontiguousarray(codes, np.uint8), np.ascontiguousarray(scales, np.float32), ebits, mbits,
                signed, squared, out)
    return out
