"""Bit-level work on float32 values (numba has no bfloat16 type), written
once for the CPU and CUDA compilers as LLVM IR on 32-bit integers, so that
it vectorises (no branches, no 64-bit widening), each with the plain Python
twin that runs under the CUDA simulator and in host code. The twins give
the same bits."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_I16, _I32 = ir.IntType(16), ir.IntType(32)
_QUIET_NAN = 0x7FC0


def _c32(value: int):
    return ir.Constant(_I32, value)


def _to_float32(context, builder, value, from_type):
    return context.cast(builder, value, from_type, types.float32)


def _to_i32(context, builder, value, from_type):
    """An integer value's low 32 bits."""
    wide = context.cast(builder, value, from_type, types.uint64)
    return builder.trunc(wide, _I32)


# -- float32 <-> its bits -----------------------------------------------------------


def float_bits(x):
    """The IEEE bits of ``x`` (converted to float32), as uint32."""
    return np.float32(x).view(np.uint32)


def bits_float(b):
    """The float32 whose bits are the low 32 bits of ``b``."""
    return np.uint32(int(b) & 0xFFFFFFFF).view(np.float32)


@intrinsic
def _float_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(_to_float32(context, builder, args[0], signature.args[0]), _I32)

    return types.uint32(x), codegen


@intrinsic
def _bits_float(typingctx, b):
    def codegen(context, builder, signature, args):
        return builder.bitcast(_to_i32(context, builder, args[0], signature.args[0]), ir.FloatType())

    return types.float32(b), codegen


@overload(float_bits)
def _float_bits_impl(x):
    return lambda x: _float_bits(x)


@overload(bits_float)
def _bits_float_impl(b):
    return lambda b: _bits_float(b)


# -- bfloat16 <-> float32 ------------------------------------------------------------


def bfloat16_to_float(raw):
    """The float32 whose top 16 bits are the low 16 bits of ``raw``."""
    return np.uint32((int(raw) & 0xFFFF) << 16).view(np.float32)


def _nan_bits(b: int) -> np.uint16:
    return np.uint16(((b >> 16) & 0x8000) | _QUIET_NAN)


def float_to_bfloat16(x):
    """``x`` rounded to bfloat16, to nearest with ties to even (NaN: the quiet
    NaN with the input's sign; values past the largest bfloat16: inf): the
    16 bits, as uint16."""
    x = np.float32(x)
    b = int(x.view(np.uint32))
    if x != x:
        return _nan_bits(b)
    return np.uint16(((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFFFFFF) >> 16)


def float_to_bfloat16_stochastic(x, noise):
    """``x`` rounded to bfloat16 stochastically: the low 16 bits of ``noise``
    are added below the kept bits before truncating, so ``x`` rounds up with
    probability equal to its distance from the bfloat16 below (NaN: a quiet
    NaN; inf stays inf)."""
    x = np.float32(x)
    b = int(x.view(np.uint32))
    if x != x:
        return _nan_bits(b)
    if (b & 0x7F800000) == 0x7F800000:
        return np.uint16(b >> 16)
    return np.uint16(((b + (int(noise) & 0xFFFF)) & 0xFFFFFFFF) >> 16)


def float_to_bfloat16_up(x):
    """``x`` rounded to bfloat16 away from zero (up in magnitude) whenever any
    bit is discarded (NaN: the quiet NaN with its sign; inf stays inf; past
    the largest bfloat16: inf)."""
    x = np.float32(x)
    b = int(x.view(np.uint32))
    if x != x:
        return _nan_bits(b)
    if (b & 0x7F800000) == 0x7F800000:
        return np.uint16(b >> 16)
    return np.uint16(((b + 0xFFFF) & 0xFFFFFFFF) >> 16)


@intrinsic
def _bfloat16_to_float(typingctx, raw):
    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.and_(_to_i32(context, builder, args[0], signature.args[0]), _c32(0xFFFF)),
                           _c32(16))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(raw), codegen


def _is_nan(builder, x):
    return builder.fcmp_unordered("uno", x, x)


def _nan_pattern(builder, b):
    """The quiet NaN with the sign of float32 bits ``b``, in the top 16 bits."""
    return builder.or_(builder.and_(b, _c32(0x80000000)), _c32(_QUIET_NAN << 16))


@intrinsic
def _float_to_bfloat16(typingctx, x):
    def codegen(context, builder, signature, args):
        value = _to_float32(context, builder, args[0], signature.args[0])
        b = builder.bitcast(value, _I32)
        odd = builder.and_(builder.lshr(b, _c32(16)), _c32(1))
        rounded = builder.add(b, builder.add(_c32(0x7FFF), odd))
        out = builder.select(_is_nan(builder, value), _nan_pattern(builder, b), rounded)
        return builder.trunc(builder.lshr(out, _c32(16)), _I16)

    return types.uint16(x), codegen


@intrinsic
def _float_to_bfloat16_stochastic(typingctx, x, noise):
    def codegen(context, builder, signature, args):
        value = _to_float32(context, builder, args[0], signature.args[0])
        b = builder.bitcast(value, _I32)
        bias = builder.and_(_to_i32(context, builder, args[1], signature.args[1]), _c32(0xFFFF))
        special = builder.icmp_unsigned("==", builder.and_(b, _c32(0x7F800000)), _c32(0x7F800000))
        added = builder.select(special, b, builder.add(b, bias))
        out = builder.select(_is_nan(builder, value), _nan_pattern(builder, b), added)
        return builder.trunc(builder.lshr(out, _c32(16)), _I16)

    return types.uint16(x, noise), codegen


@intrinsic
def _float_to_bfloat16_up(typingctx, x):
    def codegen(context, builder, signature, args):
        value = _to_float32(context, builder, args[0], signature.args[0])
        b = builder.bitcast(value, _I32)
        special = builder.icmp_unsigned("==", builder.and_(b, _c32(0x7F800000)), _c32(0x7F800000))
        added = builder.select(special, b, builder.add(b, _c32(0xFFFF)))
        out = builder.select(_is_nan(builder, value), _nan_pattern(builder, b), added)
        return builder.trunc(builder.lshr(out, _c32(16)), _I16)

    return types.uint16(x), codegen


@overload(float_to_bfloat16_up)
def _float_to_bfloat16_up_impl(x):
    return lambda x: _float_to_bfloat16_up(x)


@overload(bfloat16_to_float)
def _bfloat16_to_float_impl(raw):
    return lambda raw: _bfloat16_to_float(raw)


@overload(float_to_bfloat16)
def _float_to_bfloat16_impl(x):
    return lambda x: _float_to_bfloat16(x)


@overload(float_to_bfloat16_stochastic)
def _float_to_bfloat16_stochastic_impl(x, noise):
    return lambda x, noise: _float_to_bfloat16_stochastic(x, noise)


# -- random bits ---------------------------------------------------------------------
#
# Stochastic rounding draws its bits from a counter-based stream, a pure
# function of (seed, step, element index, slot): no generator state, the same
# bits on the CPU and the GPU, reproducible from the seed. Per launch three
# 32-bit keys are made from the seed and the step (one per "word"); element i
# then draws word w = mix32(key_w ^ i), and the state in slot s takes the low
# (s even) or high (s odd) 16 bits of word s // 2: one hash per element serves
# two states. The mirror of bfloat16 params uses slot 4.

GOLDEN = 0x9E3779B9
WORDS = 3
"""Random words per element and step: slots 0-5 (four states, the mirror)."""


def mix32(x):
    """The 32-bit finalizer of MurmurHash3 (a bijection with full avalanche) of
    the low 32 bits of ``x``."""
    h = int(x) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return np.uint32(h)


@intrinsic
def _mix32(typingctx, x):
    def codegen(context, builder, signature, args):
        v = _to_i32(context, builder, args[0], signature.args[0])
        v = builder.xor(v, builder.lshr(v, _c32(16)))
        v = builder.mul(v, _c32(0x85EBCA6B))
        v = builder.xor(v, builder.lshr(v, _c32(13)))
        v = builder.mul(v, _c32(0xC2B2AE35))
        return builder.xor(v, builder.lshr(v, _c32(16)))

    return types.uint32(x), codegen


@overload(mix32)
def _mix32_impl(x):
    return lambda x: _mix32(x)


def stream_key(seed, step, word):
    """The key of random word ``word`` at step ``step``:
    ``mix32(mix32(seed ^ GOLDEN * (word + 1)) ^ step)`` (32-bit arithmetic)."""
    salt = (GOLDEN * (int(word) + 1)) & 0xFFFFFFFF
    return mix32(int(mix32((int(seed) & 0xFFFFFFFF) ^ salt)) ^ (int(step) & 0xFFFFFFFF))


@overload(stream_key)
def _stream_key_impl(seed, step, word):
    def impl(seed, step, word):
        salt = (np.uint64(GOLDEN) * (np.uint64(word) + np.uint64(1))) & np.uint64(0xFFFFFFFF)
        return _mix32(np.uint64(_mix32(np.uint64(seed) ^ salt)) ^ np.uint64(step))

    return impl


def halves(low, high):
    """The 32-bit integer whose 16-bit halves are ``low`` and ``high`` (carried
    as exact floats in the kernels' per-step values)."""
    return np.uint32(int(low) | (int(high) << 16))


@overload(halves)
def _halves_impl(low, high):
    return lambda low, high: np.uint32(np.uint64(low) | (np.uint64(high) << np.uint64(16)))


def stream_keys(seed_low, seed_high, step_low, step_high):
    """The ``WORDS`` keys of one launch, from the seed and step halves."""
    seed, step = halves(seed_low, seed_high), halves(step_low, step_high)
    return (stream_key(seed, step, 0), stream_key(seed, step, 1), stream_key(seed, step, 2))


@overload(stream_keys)
def _stream_keys_impl(seed_low, seed_high, step_low, step_high):
    def impl(seed_low, seed_high, step_low, step_high):
        seed, step = halves(seed_low, seed_high), halves(step_low, step_high)
        return (stream_key(seed, step, 0), stream_key(seed, step, 1), stream_key(seed, step, 2))

    return impl


def noise(keys, i, slot):
    """The 16 random bits of element ``i`` for slot ``slot`` (see above)."""
    word = int(mix32(int(keys[slot // 2]) ^ (int(i) & 0xFFFFFFFF)))
    return np.uint32((word >> (16 * (slot % 2))) & 0xFFFF)


@overload(noise)
def _noise_impl(keys, i, slot):
    def impl(keys, i, slot):
        word = _mix32(np.uint64(keys[slot // 2]) ^ (np.uint64(i) & np.uint64(0xFFFFFFFF)))
        return np.uint32((np.uint64(word) >> np.uint64(16 * (slot % 2))) & np.uint64(0xFFFF))

    return impl


BUFFERS_PER_GROUP = 1 << 20
"""Buffer keys per param group that get distinct stream seeds (the optimizer
keys tensor ``i`` of chain ``c`` as ``c * 4096 + i``)."""


def buffer_seed(seed: int, group: int, buffer: int) -> int:
    """The stream seed of buffer ``buffer`` of param group ``group``: ``seed``
    itself for the first buffer of the first group, distinct for the others
    (for ``group < 4096`` and ``buffer < BUFFERS_PER_GROUP``: GOLDEN is odd,
    so the multiplication is a bijection modulo 2**32)."""
    return (int(seed) + GOLDEN * (group * BUFFERS_PER_GROUP + buffer)) & 0xFFFFFFFF


def split(value: int) -> tuple[float, float]:
    """A 32-bit integer as its two 16-bit halves, as exact floats."""
    value = int(value) & 0xFFFFFFFF
    return float(value & 0xFFFF), float(value >> 16)


def stream_values(seed: int, group: int, buffer: int, step: int) -> tuple[float, float, float, float]:
    """The launch values ``(seed_low, seed_high, step_low, step_high)`` that key
    the random bits of stochastic rounding for buffer ``buffer`` of param group
    ``group`` at step ``step`` (see :func:`buffer_seed`). Buffer 0 of group 0
    is what :mod:`fastopt.functional` uses: the same bits as an optimizer over
    that one buffer."""
    return (*split(buffer_seed(seed, group, buffer)), *split(step))


__all__ = ["bfloat16_to_float", "bits_float", "buffer_seed", "float_bits", "float_to_bfloat16",
           "float_to_bfloat16_stochastic", "float_to_bfloat16_up", "halves", "mix32", "noise", "split", "stream_key",
           "stream_keys", "stream_values"]
