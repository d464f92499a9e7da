"""CUDA kernel sources built from the scalar rules, and their signatures.

Everything here is plain Python functions plus numba types: compiling them is
the backend's business (:mod:`fastopt.backends.cuda`), and the PTX tests
compile the same sources with ``numba.cuda.compile_ptx`` on a machine
without a GPU.

The update kernels take the tuple of state storages with the parameter EMA
appended when the layout keeps one (a kernel argument cannot be None), and
the per-step values typed in the buffer dtype: ``HEAD`` wrapper values
(gradient scale, clipping bound, EMA decay and its complement), then the
rule's coefficient record.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from ..bits import noise, stream_keys
from ..codecs import MAX_STATES, load_states, load_value, rounds, states_storer, store_value, value_storer
from ..cpu_loops import HEAD, clip_value, ema_update
from .generated import row_reader
from .runtime import SIMULATOR, cuda
from .vectors import (
    VEC,
    lane,
    load_states_vector,
    load_vector,
    load_vector_readonly,
    states_vector_storer,
    vector_storer,
)


def _device(function):
    # Under the simulator kernels run as Python, and so must what they call.
    return function.py_func if SIMULATOR and hasattr(function, "py_func") else function


def _device_function(function):
    # Also under the simulator: its device functions see the simulated
    # ``cuda`` module (thread indices, syncthreads) in their globals.
    return cuda.jit(device=True)(function)


def elementwise_source(rule, record, with_ema: bool, vectorized: bool = True, device_values: bool = False,
                       dtype=np.float32, with_mirror: bool = False, roundings: tuple = (),
                       mirror_rounding: str = "nearest"):
    """The Python function of the update kernel.

    ``kernel(p, g, s, c)``: ``s`` is the tuple of state storages, followed by
    the parameter EMA when ``with_ema`` and by the params' low-precision mirror
    when ``with_mirror`` (see :func:`fastopt.backends.cpu_loops.elementwise_kernel`);
    ``c`` the tuple of per-step values in the buffer dtype; state ``k``
    rounds as ``roundings[k]`` says and the mirror as ``mirror_rounding``
    (see :func:`fastopt.backends.cpu_loops.elementwise_kernel`). With
    ``device_values`` the kernel is ``kernel(p, g, s, values, row)`` instead and
    reads its values from row ``row`` of the float64 device array ``values``
    (written there by the device prologue, :mod:`.device_steps`), doing
    nothing when the row's last entry (the skip flag) is set.

    ``vectorized`` (every storage aligned to its vector width): each thread
    takes ``VEC`` consecutive elements per trip of a grid-stride loop, with
    one vector load per array (128-bit for float32, the gradient through the
    read-only cache), all loads before the rule runs and before any store,
    and one vector store per written array; the last ``n % VEC`` elements go
    to the first threads, one each. Indices are unsigned throughout (no
    negative-index wrap-around code). Otherwise, one element per trip.
    """
    rule, clip, ema_of = _device(rule), _device(clip_value), _device(ema_update)
    load, keys_of, noise_of = _device(load_states), _device(stream_keys), _device(noise)
    load_one, store_one = _device(load_value), _device(store_value)
    store_states = states_storer(roundings)
    store_mirror = value_storer(mirror_rounding)
    store_states_vector = states_vector_storer(roundings)
    store_vector, store_mirror_vector = vector_storer("nearest"), vector_storer(mirror_rounding)
    n_values = HEAD + len(record._fields)
    n_extra = int(with_ema) + int(with_mirror)

    def split(s, p):
        """(states, ema or None, mirror or None) from the storages tuple."""
        if with_ema and with_mirror:
            return s[:-2], s[-2], s[-1]
        if with_ema:
            return s[:-1], s[-1], None
        if with_mirror:
            return s[:-1], None, s[-1]
        return s, None, None

    def element(i, p, g, states, e, mirror, rec, t, keys):
        pi, si = rule(load_one(p, i), clip(t[0] * load_one(g, i), t[1]), load(states, i), rec)
        store_states(states, i, si, keys)
        if with_ema:
            store_one(e, i, ema_of(load_one(e, i), pi, t[2], t[3]))
        store_one(p, i, pi)
        if with_mirror:
            store_mirror(mirror, i, pi, noise_of(keys, i, MAX_STATES))

    split, element = _device_function(split), _device_function(element)

    if vectorized:
        def body(p, g, s, c):
            rec = record(*c[HEAD:])
            scale, bound, decay, keep = c[0], c[1], c[2], c[3]
            keys = keys_of(c[4], c[5], c[6], c[7])
            states, e, mirror = split(s, p)
            n = np.uint64(p.size)
            vectors = n // np.uint64(VEC)
            thread = np.uint64(cuda.grid(1))
            stride = np.uint64(cuda.gridsize(1))
            j = thread
            # A while loop, not range(start, n, stride): range's trip count costs
            # a 64-bit division per thread.
            while j < vectors:
                base = j * np.uint64(VEC)
                pv = load_vector(p, base)
                gv = load_vector_readonly(g, base)
                sv = load_states_vector(states, base)
                if with_ema:
                    ev = load_vector(e, base)
                p0, s0 = rule(pv[0], clip(scale * gv[0], bound), lane(sv, 0), rec)
                p1, s1 = rule(pv[1], clip(scale * gv[1], bound), lane(sv, 1), rec)
                p2, s2 = rule(pv[2], clip(scale * gv[2], bound), lane(sv, 2), rec)
                p3, s3 = rule(pv[3], clip(scale * gv[3], bound), lane(sv, 3), rec)
                store_states_vector(states, base, s0, s1, s2, s3, keys)
                if with_ema:
                    store_vector(e, base, (ema_of(ev[0], p0, decay, keep), ema_of(ev[1], p1, decay, keep),
                                           ema_of(ev[2], p2, decay, keep), ema_of(ev[3], p3, decay, keep)),
                                 keys, MAX_STATES + 1)
                store_vector(p, base, (p0, p1, p2, p3), keys, MAX_STATES + 1)
                if with_mirror:
                    store_mirror_vector(mirror, base, (p0, p1, p2, p3), keys, MAX_STATES)
                j += stride
            i = vectors * np.uint64(VEC) + thread
            if i < n:
                element(i, p, g, states, e, mirror, rec, c, keys)
    else:
        def body(p, g, s, c):
            rec = record(*c[HEAD:])
            keys = keys_of(c[4], c[5], c[6], c[7])
            states, e, mirror = split(s, p)
            n = np.uint64(p.size)
            i = np.uint64(cuda.grid(1))
            stride = np.uint64(cuda.gridsize(1))
            while i < n:
                element(i, p, g, states, e, mirror, rec, c, keys)
                i += stride

    if device_values:
        read = row_reader(n_values, np.dtype(dtype).name)
        body = _device_function(body)

        def update(p, g, s, values, row):
            if values[row, n_values] == 0.0:
                body(p, g, s, read(values, row))
    else:
        update = body

    update.__name__ = (f"{getattr(rule, '__name__', 'rule')}_{'ema_' if with_ema else ''}"
                       f"{'mirror_' if with_mirror else ''}{'vector' if vectorized else 'scalar'}_"
                       f"{'device_' if device_values else ''}update")
    assert n_extra <= 2
    return update


def vector_aligned(*arrays) -> bool:
    """Whether every array starts on its vector width (``VEC`` elements, at
    most 16 bytes), so the vectorized kernel may run on them."""
    for a in arrays:
        width = min(16, VEC * a.dtype.itemsize)
        if device_address(a) % width:
            return False
    return True


def device_address(a) -> int:
    """The device address of array ``a``'s first element."""
    interface = getattr(a, "__cuda_array_interface__", None)
    if interface is not None:
        return int(interface["data"][0])
    return int(a._ary.ctypes.data)  # the simulator's arrays wrap a NumPy array


def numba_dtype(dtype):
    """The numba scalar type of a NumPy dtype."""
    from numba.np.numpy_support import from_dtype

    return from_dtype(np.dtype(dtype))


def vector(dtype) -> types.Array:
    """The numba type of a 1-D C-contiguous array of ``dtype``."""
    return types.Array(numba_dtype(dtype), 1, "C")


def storages_type(dtypes):
    """The numba type of a tuple of 1-D storages of these dtypes."""
    items = tuple(vector(d) for d in dtypes)
    if not items:
        return types.Tuple(())
    return types.UniTuple(items[0], len(items)) if len(set(items)) == 1 else types.Tuple(items)


def states_type(dtype, n_states: int):
    """The tuple of ``n_states`` storages of one dtype."""
    return storages_type([dtype] * n_states)


VALUES_ARRAY = types.Array(types.float64, 2, "C")
"""The device values of :mod:`.device_steps`: one row per buffer, the values
then the skip flag."""


def update_signature(dtype, storages, n_values: int, device_values: bool = False, grad_dtype=None):
    """``void(p, g, storages, values)`` for params of ``dtype``, the storages'
    dtypes (or their count, all of ``dtype``) and the value count. The values
    are typed in the params' dtype, so the launch casts the host's Python
    floats (one ``ctypes`` conversion each, no array, no copy) and the kernel
    does float32 math in float32 buffers. With ``device_values``:
    ``void(p, g, storages, values_array, row)``. ``grad_dtype`` defaults to
    ``dtype`` (bfloat16 gradients arrive as uint16 bits)."""
    dtypes = [dtype] * storages if isinstance(storages, int) else list(storages)
    arr, grad = vector(dtype), vector(grad_dtype if grad_dtype is not None else dtype)
    if device_values:
        return types.void(arr, grad, storages_type(dtypes), VALUES_ARRAY, types.int64)
    return types.void(arr, grad, storages_type(dtypes), types.UniTuple(numba_dtype(dtype), n_values))


# -- the segmented driver (LAMB) ------------------------------------------------------

def segmented_sources(segmented, record, with_ema: bool, threads: int, device_values: bool = False,
                      dtype=np.float32, with_mirror: bool = False, roundings: tuple = (),
                      mirror_rounding: str = "nearest"):
    """``(pass_one, per_tensor, pass_two)``: the CUDA form of the CPU's
    two-pass segmented driver (:func:`fastopt.backends.cpu_loops.segmented_kernel`).

    ``pass_one(p, g, s, c, lo, hi, partial)``: each block takes whole chunks of
    the block plan (``lo[k]``, ``hi[k]``), updates their states and writes the
    chunk's float64 sums of ``p**2`` and ``r**2`` to ``partial[0, k]``,
    ``partial[1, k]``: thread ``t`` sums elements ``t, t + threads, ...`` in
    order, then a fixed tree combines the threads.
    ``per_tensor(partial, first, last, lr, factors)``: block ``k`` adds the
    partial sums of tensor ``k``'s chunks (``first[k]:last[k]``) in a fixed
    order and writes ``factors[k] = step_size(...)`` (float64 math).
    ``pass_two(p, s, c, lo, hi, tensor, factors)``: recomputes ``r`` from the
    stored states and applies ``p -= factors[tensor] * r`` (and the EMA).
    Every sum depends only on the data and ``threads``: bit-reproducible.

    With ``device_values``, ``c`` (and ``lr``) are replaced by ``values, row``
    as in :func:`elementwise_source`, and every kernel does nothing when the
    row's skip flag is set.
    """
    direction, recompute = _device(segmented.direction), _device(segmented.recompute)
    step_size = _device(segmented.step_size)
    clip, ema_of = _device(clip_value), _device(ema_update)
    load, keys_of = _device(load_states), _device(stream_keys)
    noise_of, load_one = _device(noise), _device(load_value)
    store, store_mirror = states_storer(roundings), value_storer(mirror_rounding)
    rounds_of = _device(rounds)
    n_values = HEAD + len(record._fields)
    lr_index = HEAD + record._fields.index("lr")
    n_extra = int(with_ema) + int(with_mirror)

    def one(p, g, s, c, lo, hi, partial):
        shared = cuda.shared.array((2, threads), np.float64)
        record_values = record(*c[HEAD:])
        scale, bound = c[0], c[1]
        keys = keys_of(c[4], c[5], c[6], c[7])
        t = cuda.threadIdx.x
        k = cuda.blockIdx.x
        if n_extra == 2:
            states = s[:-2]
        elif n_extra == 1:
            states = s[:-1]
        else:
            states = s
        while k < lo.size:
            acc_p = 0.0
            acc_r = 0.0
            i = lo[k] + t
            end = hi[k]
            while i < end:
                pi = load_one(p, i)
                ri, si = direction(pi, clip(scale * load_one(g, i), bound), load(states, i), record_values)
                store(states, i, si, keys)
                if rounds_of(states):
                    ri = recompute(pi, load(states, i), record_values)
                x = np.float64(pi)
                y = np.float64(ri)
                acc_p += x * x
                acc_r += y * y
                i += threads
            shared[0, t] = acc_p
            shared[1, t] = acc_r
            tree_sum_pair(shared, t, threads)
            if t == 0:
                partial[0, k] = shared[0, 0]
                partial[1, k] = shared[1, 0]
            cuda.syncthreads()
            k += cuda.gridDim.x

    def tensors(partial, first, last, lr, factors):
        shared = cuda.shared.array((2, threads), np.float64)
        t = cuda.threadIdx.x
        k = cuda.blockIdx.x
        while k < factors.size:
            acc_p = 0.0
            acc_r = 0.0
            j = first[k] + t
            while j < last[k]:
                acc_p += partial[0, j]
                acc_r += partial[1, j]
                j += threads
            shared[0, t] = acc_p
            shared[1, t] = acc_r
            tree_sum_pair(shared, t, threads)
            if t == 0:
                factors[k] = step_size(shared[0, 0], shared[1, 0], lr)
            cuda.syncthreads()
            k += cuda.gridDim.x

    def two(p, s, c, lo, hi, tensor, factors):
        record_values = record(*c[HEAD:])
        decay, keep = c[2], c[3]
        keys = keys_of(c[4], c[5], c[6], c[7])
        t = cuda.threadIdx.x
        k = cuda.blockIdx.x
        if with_ema and with_mirror:
            states, e, mirror = s[:-2], s[-2], s[-1]
        elif with_ema:
            states, e = s[:-1], s[-1]
        elif with_mirror:
            states, mirror = s[:-1], s[-1]
        else:
            states = s
        while k < lo.size:
            seg = tensor[k]
            i = lo[k] + t
            end = hi[k]
            factor = factors[max(seg, 0)]
            while i < end:
                pi = load_one(p, i)
                if seg >= 0:
                    pi = pi - factor * recompute(pi, load(states, i), record_values)
                    p[i] = pi
                if with_ema:
                    e[i] = ema_of(e[i], pi, decay, keep)
                if with_mirror:
                    store_mirror(mirror, i, pi, noise_of(keys, i, MAX_STATES))
                i += threads
            k += cuda.gridDim.x

    if not device_values:
        return one, tensors, two

    read = row_reader(n_values, np.dtype(dtype).name)
    one, tensors, two = (_device_function(f) for f in (one, tensors, two))

    def pass_one(p, g, s, values, row, lo, hi, partial):
        if values[row, n_values] == 0.0:
            one(p, g, s, read(values, row), lo, hi, partial)

    def per_tensor(partial, first, last, values, row, factors):
        if values[row, n_values] == 0.0:
            tensors(partial, first, last, values[row, lr_index], factors)

    def pass_two(p, s, values, row, lo, hi, tensor, factors):
        if values[row, n_values] == 0.0:
            two(p, s, read(values, row), lo, hi, tensor, factors)

    return pass_one, per_tensor, pass_two


def segmented_signatures(dtype, storages, n_values: int, device_values: bool = False, grad_dtype=None):
    """Signatures of :func:`segmented_sources`' three kernels (arguments as
    for :func:`update_signature`)."""
    arr, i64 = vector(dtype), types.Array(types.int64, 1, "C")
    grad = vector(grad_dtype if grad_dtype is not None else dtype)
    f64_2d = types.Array(types.float64, 2, "C")
    states = storages_type([dtype] * storages if isinstance(storages, int) else list(storages))
    if device_values:
        return (types.void(arr, grad, states, VALUES_ARRAY, types.int64, i64, i64, f64_2d),
                types.void(f64_2d, i64, i64, VALUES_ARRAY, types.int64, vector(dtype)),
                types.void(arr, states, VALUES_ARRAY, types.int64, i64, i64, i64, vector(dtype)))
    values = types.UniTuple(numba_dtype(dtype), n_values)
    return (types.void(arr, grad, states, values, i64, i64, f64_2d),
            types.void(f64_2d, i64, i64, types.float64, vector(dtype)),
            types.void(arr, states, values, i64, i64, i64, vector(dtype)))


# -- reductions and fills --------------------------------------------------------


def _tree_sum(shared, t, threads):
    """Fold ``shared[:threads]`` into ``shared[0]`` by a fixed pairwise tree
    (the same additions in the same order on every run). ``threads`` is a
    power of two; every thread of the block calls this."""
    cuda.syncthreads()
    half = threads // 2
    while half > 0:
        if t < half:
            shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2


def _tree_sum_pair(shared, t, threads):
    """:func:`_tree_sum` of both rows of a ``(2, threads)`` shared array."""
    cuda.syncthreads()
    half = threads // 2
    while half > 0:
        if t < half:
            shared[0, t] += shared[0, t + half]
            shared[1, t] += shared[1, t + half]
        cuda.syncthreads()
        half //= 2


tree_sum = cuda.jit(device=True)(_tree_sum)
tree_sum_pair = cuda.jit(device=True)(_tree_sum_pair)


def sum_of_squares_source(threads: int, chunk: int):
    load_one = _device(load_value)

    """``kernel(g, partial)``: ``partial[k]`` = float64 sum of ``g[i]**2`` over
    chunk ``k`` (elements ``[k * chunk, (k + 1) * chunk)``).

    Each block takes whole chunks, grid-stride over the chunks; within a chunk
    thread ``t`` sums elements ``t, t + threads, ...`` in order, then a fixed
    shared-memory tree combines the threads. So each partial depends only on
    the data and on ``(threads, chunk)``, never on the grid size or on
    scheduling: the result is bit-for-bit reproducible. ``threads`` must be a
    power of two.
    """
    def sum_of_squares(g, partial):
        shared = cuda.shared.array(threads, np.float64)
        t = cuda.threadIdx.x
        n = g.size
        k = cuda.blockIdx.x
        while k < partial.size:
            lo = k * chunk
            hi = min(lo + chunk, n)
            acc = 0.0
            i = lo + t
            while i < hi:
                x = np.float64(load_one(g, i))
                acc += x * x
                i += threads
            shared[t] = acc
            tree_sum(shared, t, threads)
            if t == 0:
                partial[k] = shared[0]
            cuda.syncthreads()
            k += cuda.gridDim.x

    return sum_of_squares


def combine_source(threads: int):
    """``kernel(partial, out)``, one block: ``out[0]`` = sum of ``partial`` in a
    fixed order (strided per-thread sums, then a fixed tree)."""
    def combine(partial, out):
        shared = cuda.shared.array(threads, np.float64)
        t = cuda.threadIdx.x
        acc = 0.0
        i = t
        while i < partial.size:
            acc += partial[i]
            i += threads
        shared[t] = acc
        tree_sum(shared, t, threads)
        if t == 0:
            out[0] = shared[0]

    return combine


def all_finite(g, flag):
    """Clear ``flag[0]`` if any element of ``g`` is NaN or infinite."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < g.size:
        x = load_value(g, i)
        if math.isinf(x) or math.isnan(x):
            flag[0] = 0
        i += stride


def fill(a, value):
    """``a[:] = value`` (``value`` already in ``a``'s dtype)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        a[i] = value
        i += stride


def scale(a, factor):
    """``a[:] *= factor`` (``factor`` a float32/float64; bfloat16 bits decoded and re-encoded)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        store_value(a, i, load_value(a, i) * factor)
        i += stride


def sum_of_squares_signatures(dtype):
    return types.void(vector(dtype), types.Array(types.float64, 1, "C"))


def combine_signature():
    f64 = types.Array(types.float64, 1, "C")
    return types.void(f64, f64)


def all_finite_signature(dtype):
    return types.void(vector(dtype), types.Array(types.int32, 1, "C"))


def fill_signature(dtype):
    """``void(array, value in the array's dtype)``."""
    return types.void(vector(dtype), numba_dtype(dtype))


def scale_signature(dtype):
    """``void(array, factor)``, the factor a float32 for bfloat16 bits."""
    factor = types.float32 if np.dtype(dtype).kind != "f" else numba_dtype(dtype)
    return types.void(vector(dtype), factor)


def helper_kernels(dtype, threads: int = 256, chunk: int = 1 << 16) -> dict:
    """Every non-rule kernel as ``name -> (python function, signature)``."""
    return {
        "sum_of_squares": (sum_of_squares_source(threads, chunk), sum_of_squares_signatures(dtype)),
        "combine": (combine_source(threads), combine_signature()),
        "all_finite": (all_finite, all_finite_signature(dtype)),
        "fill": (fill, fill_signature(dtype)),
        "scale": (scale, scale_signature(dtype)),
    }
