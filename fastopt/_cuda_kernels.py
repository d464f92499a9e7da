"""CUDA kernel sources built from the scalar rules, and their signatures.

Everything here is plain Python functions plus numba types: compiling them is
the backend's business (:mod:`fastopt._cuda`), and the PTX tests compile the
same sources with ``numba.cuda.compile_ptx`` on a machine without a GPU.

Every kernel is a grid-stride loop (``cuda.grid(1)``, ``cuda.gridsize(1)``),
so any grid size covers any buffer, and one launch per flat buffer suffices.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from ._numba_cuda import SIMULATOR, cuda


def _device_rule(rule):
    # Under the simulator kernels run as Python: the rule must too (a CPU
    # dispatcher cannot unbox the simulator's fake device arrays). Its
    # helpers stay CPU-compiled and get plain scalars, which is fine.
    return rule.py_func if SIMULATOR else rule


def update_source(rule, n_coefficients: int, with_ema: bool):
    """The Python function of the update kernel ``kernel(p, g, s, c)``.

    ``s`` is the tuple of state arrays, ``c`` the tuple of per-step constants
    in the buffer dtype. With ``with_ema`` the last array of ``s`` is the
    parameter EMA and ``c`` ends with ``(decay, 1 - decay)`` after the rule's
    ``n_coefficients`` constants.
    """
    rule = _device_rule(rule)
    if with_ema:
        def update(p, g, s, c):
            rule_states = s[:-1]
            e = s[-1]
            k = c[:n_coefficients]
            d = c[n_coefficients]
            one_minus_d = c[n_coefficients + 1]
            n = p.size
            i = cuda.grid(1)
            stride = cuda.gridsize(1)
            while i < n:
                rule(i, p, g, rule_states, k)
                e[i] = d * e[i] + one_minus_d * p[i]
                i += stride
    else:
        def update(p, g, s, c):
            # A while loop, not range(start, n, stride): range's trip count
            # costs a 64-bit division per thread.
            n = p.size
            i = cuda.grid(1)
            stride = cuda.gridsize(1)
            while i < n:
                rule(i, p, g, s, c)
                i += stride
    update.__name__ = f"{getattr(rule, '__name__', 'rule')}_{'ema_' if with_ema else ''}update"
    return update


def numba_dtype(dtype) -> types.Float:
    """The numba scalar type of a NumPy float dtype."""
    return types.float32 if np.dtype(dtype) == np.float32 else types.float64


def vector(dtype) -> types.Array:
    """The numba type of a 1-D C-contiguous array of ``dtype``."""
    return types.Array(numba_dtype(dtype), 1, "C")


def update_signature(dtype, n_states: int, n_values: int):
    """``void(p, g, states, values)`` for one dtype, state count and constant count.

    The constants are typed in the buffer dtype, so the launch casts the
    host's Python floats (one ``ctypes`` conversion each, no array, no copy)
    and the kernel does float32 math in float32 buffers.
    """
    arr = vector(dtype)
    states = types.UniTuple(arr, n_states) if n_states else types.Tuple(())
    return types.void(arr, arr, states, types.UniTuple(numba_dtype(dtype), n_values))


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


tree_sum = _tree_sum if SIMULATOR else cuda.jit(device=True)(_tree_sum)


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
