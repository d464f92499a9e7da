"""CUDA kernel for 8-bit block-float state (see :mod:`fastopt.backends.blockfloat`):
one thread block per quantization block, one element per thread.

Each thread decodes its element's states with the block's old scales, runs
the rule and stores the params (EMA, mirror); then, per state, the block
finds its largest magnitude with a fixed shared-memory tree, thread 0 writes
the new scale and every thread encodes its own code. The arithmetic is the
CPU's element functions, so the codes are the same bits on both backends.
"""

from __future__ import annotations

import numpy as np
from numba import types

from ..bits import noise, stream_keys
from ..blockfloat import (
    BLOCK,
    TINY,
    block_exponent,
    decode_code,
    encode_code,
    magnitude_bits,
    scale_of,
    sqrt_for_storage,
)
from ..codecs import MAX_STATES, load_value, store_value, value_storer
from ..cpu_loops import HEAD, clip_value, ema_update
from .kernels import numba_dtype, storages_type, vector
from .runtime import SIMULATOR, cuda


def _device(function):
    return function.py_func if SIMULATOR and hasattr(function, "py_func") else function


def _tree_max(shared, t, threads):
    """Fold ``shared[:threads]`` into ``shared[0]`` by a fixed tree of maxima."""
    cuda.syncthreads()
    half = threads // 2
    while half > 0:
        if t < half and shared[t + half] > shared[t]:
            shared[t] = shared[t + half]
        cuda.syncthreads()
        half //= 2


tree_max = cuda.jit(device=True)(_tree_max)


def _state_encoder(fmt):
    """``encode(shared, t, value, valid, codes, scales, b, i, keys, slot)``:
    every thread of block ``b`` calls it with its element's new value; the
    block agrees on the scale, then each valid thread writes its code."""
    ebits, mbits, signed, zeroless, _, rounding = fmt
    magnitude, exponent, scale_for = _device(magnitude_bits), _device(block_exponent), _device(scale_of)
    code_of, noise_of = _device(encode_code), _device(noise)

    def encode(shared, t, value, valid, codes, scales, b, i, keys, slot):
        a, negative = magnitude(value)
        shared[t] = a if valid else 0
        tree_max(shared, t, BLOCK)
        amax = shared[0]
        cuda.syncthreads()
        if amax >= 0x7F800000 or amax == 0:
            if t == 0:
                scales[b] = np.float32(np.nan) if amax >= 0x7F800000 else np.float32(0.0)
            if valid:
                codes[i] = 0
            return
        tiny = amax < TINY
        pre = np.float32(2.0**64) if tiny else np.float32(1.0)
        if tiny:
            a, negative = magnitude(value * pre)
            shared[t] = a if valid else 0
            tree_max(shared, t, BLOCK)
            amax = shared[0]
            cuda.syncthreads()
            a, negative = magnitude(value * pre)
        k = exponent(amax, mbits)
        if t == 0:
            scales[b] = scale_for(k - 64 if tiny else k)
        if valid:
            codes[i] = code_of(a, negative, k, ebits, mbits, signed, zeroless, rounding, noise_of(keys, i, slot))

    return cuda.jit(device=True)(encode)


def _state_decoder(fmt):
    ebits, mbits, signed, _, squared, _ = fmt
    decode = _device(decode_code)

    def load(codes, scales, i):
        d = decode(codes[i], scales[i // BLOCK], ebits, mbits, signed)
        return d * d if squared else d

    return cuda.jit(device=True)(load)


def _state_preparer(fmt):
    squared, rounding = fmt[4], fmt[5]
    root = _device(sqrt_for_storage)

    def prepare(x):
        return root(x, rounding) if squared else np.float32(x)

    return cuda.jit(device=True)(prepare)


def blockwise_source(rule, record, formats: tuple, with_ema: bool, with_mirror: bool,
                     mirror_rounding: str = "nearest"):
    """``kernel(p, g, codes, scales, extras, c)`` with ``BLOCK`` threads per
    block: ``codes``/``scales`` the tuples of each state's code and scale
    arrays, ``extras`` the EMA and/or mirror storages (as flagged), ``c`` the
    per-step values in the params' dtype."""
    n_states = len(formats)
    if not 1 <= n_states <= MAX_STATES:
        raise ValueError(f"block-float state needs 1 to {MAX_STATES} states, got {n_states}")
    decoders = [_state_decoder(f) for f in formats]
    preparers = [_state_preparer(f) for f in formats]
    encoders = [_state_encoder(f) for f in formats]
    pad = MAX_STATES - n_states
    d0, d1, d2, d3 = decoders + decoders[:1] * pad
    p0, p1, p2, p3 = preparers + preparers[:1] * pad
    e0, e1, e2, e3 = encoders + encoders[:1] * pad
    rule, clip, ema_of = _device(rule), _device(clip_value), _device(ema_update)
    load_one, store_one, keys_of, noise_of = _device(load_value), _device(store_value), _device(stream_keys), \
        _device(noise)
    store_mirror = value_storer(mirror_rounding)

    def load(codes, scales, i):
        if n_states == 1:
            return (d0(codes[0], scales[0], i),)
        if n_states == 2:
            return (d0(codes[0], scales[0], i), d1(codes[1], scales[1], i))
        if n_states == 3:
            return (d0(codes[0], scales[0], i), d1(codes[1], scales[1], i), d2(codes[2], scales[2], i))
        return (d0(codes[0], scales[0], i), d1(codes[1], scales[1], i), d2(codes[2], scales[2], i),
                d3(codes[3], scales[3], i))

    def encode_all(shared, t, s, valid, codes, scales, b, i, keys):
        e0(shared, t, p0(s[0]), valid, codes[0], scales[0], b, i, keys, 0)
        if n_states > 1:
            e1(shared, t, p1(s[1]), valid, codes[1], scales[1], b, i, keys, 1)
        if n_states > 2:
            e2(shared, t, p2(s[2]), valid, codes[2], scales[2], b, i, keys, 2)
        if n_states > 3:
            e3(shared, t, p3(s[3]), valid, codes[3], scales[3], b, i, keys, 3)

    load, encode_all = cuda.jit(device=True)(load), cuda.jit(device=True)(encode_all)

    def update(p, g, codes, scales, extras, c):
        shared = cuda.shared.array(BLOCK, np.int64)
        rec = record(*c[HEAD:])
        keys = keys_of(c[4], c[5], c[6], c[7])
        n = p.size
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        blocks = (n + BLOCK - 1) // BLOCK
        while b < blocks:
            i = b * BLOCK + t
            valid = i < n
            # Past the end, a thread carries its block's zero state (never stored).
            old = load(codes, scales, min(i, n - 1))
            pi, s = rule(load_one(p, min(i, n - 1)), clip(c[0] * load_one(g, min(i, n - 1)), c[1]), old, rec)
            if valid:
                if with_ema:
                    store_one(extras[0], i, ema_of(load_one(extras[0], i), pi, c[2], c[3]))
                store_one(p, i, pi)
                if with_mirror:
                    store_mirror(extras[-1], i, pi, noise_of(keys, i, MAX_STATES))
            encode_all(shared, t, s, valid, codes, scales, b, i, keys)
            cuda.syncthreads()
            b += cuda.gridDim.x

    update.__name__ = f"{getattr(rule, '__name__', 'rule')}_blockwise_update"
    return update


def blockwise_signature(dtype, grad_dtype, n_states: int, extra_dtypes, n_values: int):
    """``void(p, g, codes, scales, extras, values)``."""
    codes = types.UniTuple(types.Array(types.uint8, 1, "C"), n_states)
    scales = types.UniTuple(types.Array(types.float32, 1, "C"), n_states)
    return types.void(vector(dtype), vector(grad_dtype), codes, scales, storages_type(extra_dtypes),
                      types.UniTuple(numba_dtype(dtype), n_values))
