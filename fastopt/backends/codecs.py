"""The state codec seam: how a stored value becomes a number and back.

Every load and store of a parameter, gradient or state value in a loop goes
through :func:`load_value` / :func:`store_value`, and the codec is chosen at
compile time by the storage's type (the kernel's signature is the layout). A
float32 or float64 array is read and written as it is; further codecs
(bfloat16, 8-bit blockwise) plug in here as new storage types, without
touching any rule.

Each function is plain Python too (its body), which is what runs under the
CUDA simulator; the ``@overload`` below is what the CPU and CUDA compilers
inline.
"""

from __future__ import annotations

from numba import types
from numba.extending import overload


def decode(storage, raw):
    """The number a raw element of ``storage`` stands for."""
    return raw


def encode(storage, x):
    """The raw element of ``storage`` that stands for number ``x``."""
    return x


def load_value(storage, i):
    """Element ``i`` of ``storage``, as a number."""
    return decode(storage, storage[i])


def store_value(storage, i, x):
    """Store number ``x`` as element ``i`` of ``storage``."""
    storage[i] = encode(storage, x)


def load_states(states, i):
    """The tuple of element ``i`` of every storage in ``states``."""
    return tuple(load_value(s, i) for s in states)


def store_states(states, i, values):
    """Store ``values[k]`` as element ``i`` of ``states[k]``, for every ``k``."""
    for s, x in zip(states, values):
        store_value(s, i, x)


def _is_float_array(storage) -> bool:
    return isinstance(storage, types.Array) and isinstance(storage.dtype, types.Float)


@overload(decode)
def _decode(storage, raw):
    if _is_float_array(storage):
        return lambda storage, raw: raw
    return None


@overload(encode)
def _encode(storage, x):
    if _is_float_array(storage):
        return lambda storage, x: x
    return None


@overload(load_value)
def _load_value(storage, i):
    return lambda storage, i: decode(storage, storage[i])


@overload(store_value)
def _store_value(storage, i, x):
    def store(storage, i, x):
        storage[i] = encode(storage, x)

    return store


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


@overload(store_states)
def _store_states(states, i, values):
    n = len(states)
    if n != len(values):
        return None
    if n == 0:
        def store0(states, i, values):
            pass

        return store0
    if n == 1:
        def store1(states, i, values):
            store_value(states[0], i, values[0])

        return store1
    if n == 2:
        def store2(states, i, values):
            store_value(states[0], i, values[0])
            store_value(states[1], i, values[1])

        return store2
    if n == 3:
        def store3(states, i, values):
            store_value(states[0], i, values[0])
            store_value(states[1], i, values[1])
            store_value(states[2], i, values[2])

        return store3
    if n == 4:
        def store4(states, i, values):
            store_value(states[0], i, values[0])
            store_value(states[1], i, values[1])
            store_value(states[2], i, values[2])
            store_value(states[3], i, values[3])

        return store4
    return None
