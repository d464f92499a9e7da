"""The state codec seam: how a stored value becomes a number and back.

Every load and store of a parameter, gradient or state value in a loop goes
through the functions here. The codec is chosen at compile time by the
storage's dtype (the kernel's signature is the layout), and, for storages
that round, the rounding by the loop factory (each store site is built for
one rounding):

- a float32 or float64 array is read and written as it is;
- a uint16 array holds **bfloat16** bits: decoding shifts them into the top
  of a float32; encoding rounds ``"nearest"`` (ties to even), or
  ``"stochastic"`` (16 random bits are added below the kept ones before
  truncating: unbiased, so small decays and increments survive on average),
  or ``"up"`` (away from zero: a stored running maximum never falls below a
  value it dominated). NaN stays NaN; past the largest bfloat16 is inf.

No rule knows any of this. Stores take 32 random bits for stochastic
rounding; storages that do not round stochastically ignore them (and the
compiler drops their computation). Each function is plain Python too (its
body), which is what runs under the CUDA simulator; the ``@overload`` is
what the CPU and CUDA compilers inline.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .bits import bfloat16_to_float, float_to_bfloat16, float_to_bfloat16_stochastic, float_to_bfloat16_up, noise

BFLOAT16 = np.dtype(np.uint16)
"""How bfloat16 values are stored (NumPy has no bfloat16 dtype)."""

ROUNDINGS = ("nearest", "stochastic", "up")
"""How a rounding storage stores a value (ignored by float storages)."""

_QUIET_NAN = 0x7FC0


def decode(storage, raw):
    """The number a raw element of ``storage`` stands for."""
    if storage.dtype == BFLOAT16:
        return bfloat16_to_float(raw)
    return raw


def encode_nearest(storage, x, random_bits):
    """The raw element of ``storage`` for ``x``, rounded to nearest even."""
    return float_to_bfloat16(x) if storage.dtype == BFLOAT16 else x


def encode_stochastic(storage, x, random_bits):
    """The raw element of ``storage`` for ``x``, rounded stochastically with
    (the low 16 of) ``random_bits``."""
    return float_to_bfloat16_stochastic(x, random_bits) if storage.dtype == BFLOAT16 else x


def encode_up(storage, x, random_bits):
    """The raw element of ``storage`` for ``x``, rounded away from zero."""
    return float_to_bfloat16_up(x) if storage.dtype == BFLOAT16 else x


ENCODERS = {"nearest": encode_nearest, "stochastic": encode_stochastic, "up": encode_up}


def load_value(storage, i):
    """Element ``i`` of ``storage``, as a number."""
    return decode(storage, storage[i])


def store_value(storage, i, x):
    """Store number ``x`` as element ``i`` of ``storage`` (rounded to nearest)."""
    storage[i] = encode_nearest(storage, x, 0)


def load_states(states, i):
    """The tuple of element ``i`` of every storage in ``states``."""
    return tuple(load_value(s, i) for s in states)


def _is_float_array(storage) -> bool:
    return isinstance(storage, types.Array) and isinstance(storage.dtype, types.Float)


def _is_bfloat16(storage) -> bool:
    return isinstance(storage, types.Array) and storage.dtype == types.uint16


@overload(decode)
def _decode(storage, raw):
    if _is_float_array(storage):
        return lambda storage, raw: raw
    if _is_bfloat16(storage):
        return lambda storage, raw: bfloat16_to_float(raw)
    return None


def _encoder_overload(function, bf16):
    @overload(function)
    def _impl(storage, x, random_bits):
        if _is_float_array(storage):
            return lambda storage, x, random_bits: x
        if _is_bfloat16(storage):
            return bf16
        return None


_encoder_overload(encode_nearest, lambda storage, x, random_bits: float_to_bfloat16(x))
_encoder_overload(encode_stochastic, lambda storage, x, random_bits: float_to_bfloat16_stochastic(x, random_bits))
_encoder_overload(encode_up, lambda storage, x, random_bits: float_to_bfloat16_up(x))


@overload(load_value)
def _load_value(storage, i):
    return lambda storage, i: decode(storage, storage[i])


@overload(store_value)
def _store_value(storage, i, x):
    def store(storage, i, x):
        storage[i] = encode_nearest(storage, x, 0)

    return store


def rounds(states) -> bool:
    """Whether any storage of ``states`` rounds what it stores (bfloat16)."""
    return any(s.dtype == BFLOAT16 for s in states)


@overload(rounds)
def _rounds(states):
    value = any(_is_bfloat16(s) for s in states)
    return lambda states: value


MAX_STATES = 4
"""Most state arrays any rule keeps (RMSprop centered with momentum: 3)."""


@overload(load_states)
def _load_states(states, i):
    n = len(states)
    if n == 0:
        return lambda states, i: ()
    if n == 1:
        return lambda states, i: (load_value(states[0], i),)
    if n == 2:
        return lambda states, i: (load_value(states[0], i), load_value(states[1], i))
    if n == 3:
        return lambda states, i: (load_value(states[0], i), load_value(states[1], i), load_value(states[2], i))
    if n == 4:
        return lambda states, i: (load_value(states[0], i), load_value(states[1], i), load_value(states[2], i),
                                  load_value(states[3], i))
    return None


_storers: dict = {}


def value_storer(rounding: str):
    """``store(storage, i, x, random_bits)`` rounding as ``rounding`` says."""
    key = ("one", rounding)
    if key not in _storers:
        encode = ENCODERS[rounding]

        def store(storage, i, x, random_bits):
            storage[i] = encode(storage, x, random_bits)

        @overload(store)
        def _store(storage, i, x, random_bits):
            def impl(storage, i, x, random_bits):
                storage[i] = encode(storage, x, random_bits)

            return impl

        _storers[key] = store
    return _storers[key]


def states_storer(roundings: tuple):
    """``store(states, i, values, keys)``: ``values[k]`` into element ``i`` of
    ``states[k]``, rounded as ``roundings[k]`` says (nearest past the end of
    ``roundings``), with the random bits ``noise(keys, i, k)`` (see
    :mod:`fastopt.backends.bits`)."""
    padded = tuple(roundings) + ("nearest",) * (MAX_STATES - len(roundings))
    key = ("states", padded)
    if key in _storers:
        return _storers[key]
    e0, e1, e2, e3 = (ENCODERS[r] for r in padded[:MAX_STATES])

    def store(states, i, values, keys):
        for k, (storage, x) in enumerate(zip(states, values)):
            storage[i] = ENCODERS[padded[k]](storage, x, noise(keys, i, k))

    @overload(store)
    def _store(states, i, values, keys):
        n = len(states)
        if n != len(values):
            return None
        if n == 0:
            def store0(states, i, values, keys):
                pass

            return store0
        if n == 1:
            def store1(states, i, values, keys):
                states[0][i] = e0(states[0], values[0], noise(keys, i, 0))

            return store1
        if n == 2:
            def store2(states, i, values, keys):
                states[0][i] = e0(states[0], values[0], noise(keys, i, 0))
                states[1][i] = e1(states[1], values[1], noise(keys, i, 1))

            return store2
        if n == 3:
            def store3(states, i, values, keys):
                states[0][i] = e0(states[0], values[0], noise(keys, i, 0))
                states[1][i] = e1(states[1], values[1], noise(keys, i, 1))
                states[2][i] = e2(states[2], values[2], noise(keys, i, 2))

            return store3
        if n == 4:
            def store4(states, i, values, keys):
                states[0][i] = e0(states[0], values[0], noise(keys, i, 0))
                states[1][i] = e1(states[1], values[1], noise(keys, i, 1))
                states[2][i] = e2(states[2], values[2], noise(keys, i, 2))
                states[3][i] = e3(states[3], values[3], noise(keys, i, 3))

            return store4
        return None

    _storers[key] = store
    return store


store_states = states_storer(())
"""The storer that rounds every state to nearest."""


# -- host-side conversions (whole arrays, NumPy): allocation, state dicts, copies --------


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of an array of bfloat16 bits (uint16 or int16)."""
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16(values) -> np.ndarray:
    """bfloat16 bits (uint16) of ``values``, rounded to nearest, ties to even
    (NaN: the quiet NaN with its sign; overflow: inf), as :func:`encode` does
    element by element."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    b = (b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    out = b.astype(np.uint16)
    nan = np.isnan(x)
    out[nan] = (x.view(np.uint32)[nan] >> 16).astype(np.uint16) & 0x8000 | _QUIET_NAN
    return out


def to_numbers(array: np.ndarray) -> np.ndarray:
    """A host array's values as numbers (bfloat16 bits expanded; floats as they are)."""
    if array.dtype == BFLOAT16:
        return bfloat16_to_float32(array)
    return array


def from_numbers(values, dtype) -> np.ndarray:
    """A host array of ``dtype`` holding ``values`` (bfloat16: rounded to nearest)."""
    dtype = np.dtype(dtype)
    if dtype == BFLOAT16:
        return float32_to_bfloat16(values)
    return np.asarray(values, dtype=dtype)
