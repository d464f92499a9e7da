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

from ..codecs import load_states, store_states
from ..cpu_loops import HEAD, clip_value, ema_update
from .runtime import SIMULATOR, cuda


def _device(function):
    # Under the simulator kernels run as Python, and so must what they call.
    return function.py_func if SIMULATOR and hasattr(function, "py_func") else function


def elementwise_source(rule, record, with_ema: bool):
    """The Python function of the update kernel ``kernel(p, g, s, c)``.

    ``s`` is the tuple of state storages, with the parameter EMA last when
    ``with_ema``; ``c`` the tuple of per-step values in the buffer dtype.
    """
    rule, clip, ema_of = _device(rule), _device(clip_value), _device(ema_update)
    load, store = _device(load_states), _device(store_states)

    def update(p, g, s, c):
        record_values = record(*c[HEAD:])
        scale, bound, decay, keep = c[0], c[1], c[2], c[3]
        n = p.size
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        if with_ema:
            states, e = s[:-1], s[-1]
        else:
            states = s
        # A while loop, not range(start, n, stride): range's trip count costs
        # a 64-bit division per thread.
        while i < n:
            pi, si = rule(p[i], clip(scale * g[i], bound), load(states, i), record_values)
            store(states, i, si)
            if with_ema:
                e[i] = ema_of(e[i], pi, decay, keep)
            p[i] = pi
            i += stride

    update.__name__ = f"{getattr(rule, '__name__', 'rule')}_{'ema_' if with_ema else ''}update"
    return update


def numba_dtype(dtype) -> types.Float:
    """The numba scalar type of a NumPy float dtype."""
    return types.float32 if np.dtype(dtype) == np.float32 else types.float64


def vector(dtype) -> types.Array:
    """The numba type of a 1-D C-contiguous array of ``dtype``."""
    return types.Array(numba_dtype(dtype), 1, "C")


def states_type(dtype, n_states: int):
    arr = vector(dtype)
    return types.UniTuple(arr, n_states) if n_states else types.Tuple(())


def update_signature(dtype, n_states: int, n_values: int):
    """``void(p, g, states, values)`` for one dtype, storage count (EMA
    included) and value count. The values are typed in the buffer dtype, so
    the launch casts the host's Python floats (one ``ctypes`` conversion each,
    no array, no copy) and the kernel does float32 math in float32 buffers."""
    arr = vector(dtype)
    return types.void(arr, arr, states_type(dtype, n_states), types.UniTuple(numba_dtype(dtype), n_values))


# -- the segmented driver (LAMB) ------------------------------------------------------

def segmented_sources(segmented, record, with_ema: bool, threads: int):
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
    """
    direction, recompute = _device(segmented.direction), _device(segmented.recompute)
    step_size = _device(segmented.step_size)
    clip, ema_of = _device(clip_value), _device(ema_update)
    load, store = _device(load_states), _device(store_states)

    def pass_one(p, g, s, c, lo, hi, partial):
        shared = cuda.shared.array((2, threads), np.float64)
        record_values = record(*c[HEAD:])
        scale, bound = c[0], c[1]
        t = cuda.threadIdx.x
        k = cuda.blockIdx.x
        if with_ema:
            states = s[:-1]
        else:
            states = s
        while k < lo.size:
            acc_p = 0.0
            acc_r = 0.0
            i = lo[k] + t
            end = hi[k]
            while i < end:
                pi = p[i]
                ri, si = direction(pi, clip(scale * g[i], bound), load(states, i), record_values)
                store(states, i, si)
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

    def per_tensor(partial, first, last, lr, factors):
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

    def pass_two(p, s, c, lo, hi, tensor, factors):
        record_values = record(*c[HEAD:])
        decay, keep = c[2], c[3]
        t = cuda.threadIdx.x
        k = cuda.blockIdx.x
        if with_ema:
            states, e = s[:-1], s[-1]
        else:
            states = s
        while k < lo.size:
            seg = tensor[k]
            i = lo[k] + t
            end = hi[k]
            if seg >= 0:
                factor = factors[seg]
                while i < end:
                    pi = p[i]
                    pi = pi - factor * recompute(pi, load(states, i), record_values)
                    p[i] = pi
                    if with_ema:
                        e[i] = ema_of(e[i], pi, decay, keep)
                    i += threads
            elif with_ema:
                while i < end:
                    e[i] = ema_of(e[i], p[i], decay, keep)
                    i += threads
            k += cuda.gridDim.x

    return pass_one, per_tensor, pass_two


def segmented_signatures(dtype, n_states: int, n_values: int):
    """Signatures of :func:`segmented_sources`' three kernels."""
    arr, i64 = vector(dtype), types.Array(types.int64, 1, "C")
    f64_2d = types.Array(types.float64, 2, "C")
    states, values = states_type(dtype, n_states), types.UniTuple(numba_dtype(dtype), n_values)
    return (types.void(arr, arr, states, values, i64, i64, f64_2d),
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


tree_sum = _tree_sum if SIMULATOR else cuda.jit(device=True)(_tree_sum)
tree_sum_pair = _tree_sum_pair if SIMULATOR else cuda.jit(device=True)(_tree_sum_pair)


def sum_of_squares_source(threads: int, chunk: int):
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
                x = np.float64(g[i])
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
        x = g[i]
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
    """``a[:] *= factor`` (``factor`` already in ``a``'s dtype)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        a[i] *= factor
        i += stride


def sum_of_squares_signatures(dtype):
    return types.void(vector(dtype), types.Array(types.float64, 1, "C"))


def combine_signature():
    f64 = types.Array(types.float64, 1, "C")
    return types.void(f64, f64)


def all_finite_signature(dtype):
    return types.void(vector(dtype), types.Array(types.int32, 1, "C"))


def fill_signature(dtype):
    """Also the signature of :func:`scale`."""
    return types.void(vector(dtype), numba_dtype(dtype))


def helper_kernels(dtype, threads: int = 256, chunk: int = 1 << 16) -> dict:
    """Every non-rule kernel as ``name -> (python function, signature)``."""
    return {
        "sum_of_squares": (sum_of_squares_source(threads, chunk), sum_of_squares_signatures(dtype)),
        "combine": (combine_source(threads), combine_signature()),
        "all_finite": (all_finite, all_finite_signature(dtype)),
        "fill": (fill, fill_signature(dtype)),
        "scale": (scale, fill_signature(dtype)),
    }
