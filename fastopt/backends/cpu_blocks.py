"""CPU loop factory for 8-bit block-float state (see :mod:`.blockfloat`).

One parallel trip per block of ``BLOCK`` elements: decode the block's states
with their old scales and run the rule on each element, storing the params
(and EMA, mirror) at once and keeping the block's new state values in a
small scratch array; then, per state, take the block's largest magnitude,
set its new scale and encode its codes. Blocks are independent and the
random bits are counter-based, so the result does not depend on the thread
count or on the serial/parallel branch.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from ..config import element_jit, loop_jit
from .bits import noise, stream_keys
from .blockfloat import (
    BLOCK,
    TINY,
    block_exponent,
    decode_code,
    encode_code,
    magnitude_bits,
    scale_of,
    sqrt_for_storage,
)
from .cache import enable_cache, function_key
from .codecs import MAX_STATES, load_value, store_value, value_storer
from .cpu_loops import HEAD, _cached, clip_value, ema_update

TRIP = 16
"""Blocks per parallel trip (4096 elements)."""


def state_decoder(fmt):
    """``decode(codes, scale, i)`` of one state of format
    ``fmt = (ebits, mbits, signed, zeroless, squared, rounding)``, in a block
    of scale ``scale``."""
    ebits, mbits, signed, _, squared, _ = fmt

    @element_jit
    def decode(codes, scale, i):
        d = decode_code(codes[i], scale, ebits, mbits, signed)
        return d * d if squared else d

    return decode


def state_encoder(fmt):
    """``encode(codes, scales, row, b, lo, count, keys, slot)``: block ``b``'s
    new values (``row[:count]``, already square-rooted for squared states)
    into its codes (from element ``lo``, unsigned) and scale."""
    ebits, mbits, signed, zeroless, _, rounding = fmt

    @element_jit
    def encode(codes, scales, row, b, lo, count, keys, slot):
        amax = np.int64(0)
        for j in range(count):
            a, _ = magnitude_bits(row[j])
            amax = max(amax, a)
        if amax >= 0x7F800000 or amax == 0:
            # NaN or inf: the whole block decodes to NaN, loudly; all zero: 0.
            scales[b] = np.float32(np.nan) if amax >= 0x7F800000 else np.float32(0.0)
            for j in range(count):
                codes[lo + j] = 0
            return
        tiny = amax < TINY
        pre = np.float32(2.0**64) if tiny else np.float32(1.0)
        if tiny:
            amax = np.int64(0)
            for j in range(count):
                a, _ = magnitude_bits(row[j] * pre)
                amax = max(amax, a)
        k = block_exponent(amax, mbits)
        scales[b] = scale_of(k - 64 if tiny else k)
        for j in range(count):
            a, negative = magnitude_bits(row[j] * pre)
            codes[lo + j] = encode_code(a, negative, k, ebits, mbits, signed, zeroless, rounding,
                                        noise(keys, lo + j, slot))

    return encode


def state_preparer(fmt):
    """``prepare(x)``: what a state value is encoded as (``sqrt(v)`` for squared states)."""
    squared, rounding = fmt[4], fmt[5]

    @element_jit
    def prepare(x):
        return sqrt_for_storage(x, rounding) if squared else np.float32(x)

    return prepare


def _per_state(formats):
    """``(scales_of, load, collect, encode_all)`` for this tuple of state formats."""
    n = len(formats)
    if not 1 <= n <= MAX_STATES:
        raise ValueError(f"block-float state needs 1 to {MAX_STATES} states, got {n}")
    d = [state_decoder(f) for f in formats] * 1
    p = [state_preparer(f) for f in formats]
    e = [state_encoder(f) for f in formats]
    d += [d[0]] * (MAX_STATES - n)
    p += [p[0]] * (MAX_STATES - n)
    e += [e[0]] * (MAX_STATES - n)
    d0, d1, d2, d3 = d
    p0, p1, p2, p3 = p
    e0, e1, e2, e3 = e

    if n == 1:
        def scales_of(scales, b):
            return (scales[0][b],)

        def load(codes, s, i):
            return (d0(codes[0], s[0], i),)

        def collect(scratch, j, s):
            scratch[0, j] = p0(s[0])

        def encode_all(codes, scales, scratch, b, lo, count, keys):
            e0(codes[0], scales[0], scratch[0], b, lo, count, keys, 0)
    elif n == 2:
        def scales_of(scales, b):
            return (scales[0][b], scales[1][b])

        def load(codes, s, i):
            return (d0(codes[0], s[0], i), d1(codes[1], s[1], i))

        def collect(scratch, j, s):
            scratch[0, j] = p0(s[0])
            scratch[1, j] = p1(s[1])

        def encode_all(codes, scales, scratch, b, lo, count, keys):
            e0(codes[0], scales[0], scratch[0], b, lo, count, keys, 0)
            e1(codes[1], scales[1], scratch[1], b, lo, count, keys, 1)
    elif n == 3:
        def scales_of(scales, b):
            return (scales[0][b], scales[1][b], scales[2][b])

        def load(codes, s, i):
            return (d0(codes[0], s[0], i), d1(codes[1], s[1], i), d2(codes[2], s[2], i))

        def collect(scratch, j, s):
            scratch[0, j] = p0(s[0])
            scratch[1, j] = p1(s[1])
            scratch[2, j] = p2(s[2])

        def encode_all(codes, scales, scratch, b, lo, count, keys):
            e0(codes[0], scales[0], scratch[0], b, lo, count, keys, 0)
            e1(codes[1], scales[1], scratch[1], b, lo, count, keys, 1)
            e2(codes[2], scales[2], scratch[2], b, lo, count, keys, 2)
    else:
        def scales_of(scales, b):
            return (scales[0][b], scales[1][b], scales[2][b], scales[3][b])

        def load(codes, s, i):
            return (d0(codes[0], s[0], i), d1(codes[1], s[1], i), d2(codes[2], s[2], i), d3(codes[3], s[3], i))

        def collect(scratch, j, s):
            scratch[0, j] = p0(s[0])
            scratch[1, j] = p1(s[1])
            scratch[2, j] = p2(s[2])
            scratch[3, j] = p3(s[3])

        def encode_all(codes, scales, scratch, b, lo, count, keys):
            e0(codes[0], scales[0], scratch[0], b, lo, count, keys, 0)
            e1(codes[1], scales[1], scratch[1], b, lo, count, keys, 1)
            e2(codes[2], scales[2], scratch[2], b, lo, count, keys, 2)
            e3(codes[3], scales[3], scratch[3], b, lo, count, keys, 3)

    return element_jit(scales_of), element_jit(load), element_jit(collect), element_jit(encode_all)


def blockwise_kernel(rule, record, formats: tuple, mirror_rounding: str = "nearest"):
    """``kernel(p, g, codes, scales, ema, mirror, values, serial_below)``: one
    fused pass of ``rule`` over flat buffers whose states are 8-bit block
    floats: ``codes`` and ``scales`` are tuples with one uint8 code array
    (``nblocks * BLOCK`` long) and one float32 scale array per state; state
    ``k`` has format ``formats[k] = (ebits, mbits, signed, zeroless, squared,
    rounding)``. ``ema``, ``mirror`` and ``values`` as for
    :func:`fastopt.backends.cpu_loops.elementwise_kernel`."""
    formats = tuple(tuple(f) for f in formats)
    key = ("blockwise", rule, record, formats, mirror_rounding)
    return _cached(key, lambda: _build_blockwise(rule, record, formats, mirror_rounding))


def _build_blockwise(rule, record, formats, mirror_rounding):
    n_values = HEAD + len(record._fields)
    n_states = len(formats)
    scales_of, load, collect, encode_all = _per_state(formats)
    store_mirror = value_storer(mirror_rounding)

    # One parallel trip runs TRIP blocks with one scratch array (no allocation
    # per block). Element indices are unsigned: no negative-index wrap-around
    # code in the loops, which keeps them vectorizable.
    @element_jit
    def trip(r, blocks, p, g, codes, scales, ema, mirror, t, keys):
        scratch = np.empty((n_states, BLOCK), np.float32)
        c = record(*t[HEAD:])
        for b in range(r * TRIP, min(blocks, (r + 1) * TRIP)):
            lo = np.uint64(b) * np.uint64(BLOCK)
            count = min(np.uint64(BLOCK), np.uint64(p.size) - lo)
            s = scales_of(scales, b)
            for j in range(count):
                i = lo + j
                pi, si = rule(load_value(p, i), clip_value(t[0] * load_value(g, i), t[1]), load(codes, s, i), c)
                collect(scratch, j, si)
                if ema is not None:
                    store_value(ema, i, ema_update(load_value(ema, i), pi, t[2], t[3]))
                store_value(p, i, pi)
                if mirror is not None:
                    store_mirror(mirror, i, pi, noise(keys, i, MAX_STATES))
            encode_all(codes, scales, scratch, b, lo, count, keys)

    def update(p, g, codes, scales, ema, mirror, values, serial_below):
        buffer = np.empty(n_values, p.dtype)
        for k in range(n_values):
            buffer[k] = values[k]
        t = to_fixed_tuple(buffer, n_values)
        keys = stream_keys(values[4], values[5], values[6], values[7])
        blocks = (p.size + BLOCK - 1) // BLOCK
        trips = (blocks + TRIP - 1) // TRIP
        if p.size < serial_below:
            for r in range(trips):
                trip(r, blocks, p, g, codes, scales, ema, mirror, t, keys)
        else:
            for r in prange(trips):
                trip(r, blocks, p, g, codes, scales, ema, mirror, t, keys)

    kernel = loop_jit()(update)
    enable_cache(kernel, f"blockwise|{function_key(rule)}|{record.__name__}|{formats}|{mirror_rounding}")
    return kernel
