"""CPU backend: one fused, parallel pass per rule, with a serial branch for
small buffers (waking the thread pool costs more than the update itself), and
the deterministic gradient reduction used by clipping and the non-finite guard."""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from ._arrays import param_grad_pair
from ._cache import enable_cache
from .params import aligned_zeros

SERIAL_BELOW = 16384
"""Buffers with fewer elements run the serial loop. Measured on the 2-core
Xeon (bench/calibrate_threshold.py, results/calibrate-threshold.json): the
parallel loop wins from 2^14 float32 elements for Adam and Adagrad, 2^15 for
SGD; below that the thread wake-up (~2-3 us) costs more than it saves."""

FASTMATH = {"arcp", "afn", "nsz"}
"""Safe subset: no nnan/ninf (NaN checks must survive), no reassoc or contract
(the serial and parallel loops must give identical bits)."""

REDUCTION_BLOCK = 1 << 14
"""Elements per partial sum in the gradient reduction. Blocks are fixed by the
buffer size, never by the thread count, so the norm is bit-identical whatever
the number of threads."""

_kernels: dict = {}


def _build(rule, n_coefficients: int, with_ema: bool):
    n_values = n_coefficients + (2 if with_ema else 0)

    if with_ema:
        def update(p, g, s, values, serial_below):
            # The EMA buffer rides as the last state array, its decay as the
            # last two values: one pass updates the params and their average.
            buffer = np.empty(n_values, p.dtype)
            for k in range(n_values):
                buffer[k] = values[k]
            c = to_fixed_tuple(buffer, n_coefficients)
            d, one_minus_d = buffer[n_coefficients], buffer[n_coefficients + 1]
            rule_states = s[:-1]
            e = s[-1]
            n = p.size
            if n < serial_below:
                for i in range(n):
                    rule(i, p, g, rule_states, c)
                    e[i] = d * e[i] + one_minus_d * p[i]
            else:
                for i in prange(n):
                    rule(i, p, g, rule_states, c)
                    e[i] = d * e[i] + one_minus_d * p[i]
    else:
        def update(p, g, s, values, serial_below):
            # The per-step values arrive as a tuple of Python floats (the
            # cheapest thing to pass in) and are cast to the buffer's dtype
            # once, here: the loop then holds them in registers, and float32
            # math never meets a float64 constant.
            buffer = np.empty(n_values, p.dtype)
            for k in range(n_values):
                buffer[k] = values[k]
            c = to_fixed_tuple(buffer, n_coefficients)
            n = p.size
            if n < serial_below:
                for i in range(n):
                    rule(i, p, g, s, c)
            else:
                for i in prange(n):
                    rule(i, p, g, s, c)

    kernel = njit(parallel=True, error_model="numpy", fastmath=FASTMATH)(update)
    enable_cache(kernel, rule)
    return kernel


def cpu_kernel(rule, n_coefficients: int, with_ema: bool = False):
    """The compiled CPU kernel ``kernel(p, g, states, values, serial_below)``.

    ``p``, ``g`` and each array of the tuple ``states`` are 1-D, contiguous
    and of one dtype; ``values`` is a tuple of ``n_coefficients`` Python
    floats, the per-step constants (cast to the dtype inside). With
    ``with_ema`` the last state array is a parameter EMA and ``values``
    carries two more entries, ``(decay, 1 - decay)``. Built once per rule and process;
    compiled once per dtype (and loaded from the on-disk cache after the first
    process).
    """
    key = (rule, n_coefficients, with_ema)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _build(rule, n_coefficients, with_ema)
    return kernel


@njit(error_model="numpy", fastmath={"reassoc", "contract"}, cache=True)
def _sum_of_squares(g, lo, hi, zero):
    # Four interleaved streams (quarters of the block) keep more loads in
    # flight than one; accumulating in the type of `zero` (the buffer's dtype)
    # halves the vector work against widening every element. reassoc lets
    # each stream vectorise; the result depends only on the block's data and
    # the compiled code, never on which thread runs it.
    q = (hi - lo) // 4
    a0 = a1 = a2 = a3 = zero
    # `+ zero` widens each element when the accumulators are float64.
    for i in range(lo, lo + q):
        x0 = g[i] + zero
        x1 = g[i + q] + zero
        x2 = g[i + 2 * q] + zero
        x3 = g[i + 3 * q] + zero
        a0 += x0 * x0
        a1 += x1 * x1
        a2 += x2 * x2
        a3 += x3 * x3
    for i in range(lo + 4 * q, hi):
        x0 = g[i] + zero
        a0 += x0 * x0
    return (np.float64(a0) + np.float64(a1)) + (np.float64(a2) + np.float64(a3))


@njit(parallel=True, error_model="numpy", cache=True)
def _block_sums_of_squares(g, out, zero):
    n = g.size
    for b in prange(out.size):
        lo = b * REDUCTION_BLOCK
        hi = min(lo + REDUCTION_BLOCK, n)
        s = _sum_of_squares(g, lo, hi, zero)
        if s == np.inf:
            # float32 squares overflow above ~1.8e19: redo this block in float64.
            s = _sum_of_squares(g, lo, hi, 0.0)
        out[b] = s


class CPUBackend:
    """Array handling and kernel launches for host (NumPy) buffers."""

    name = "cpu"

    @staticmethod
    def pair(param, grad, where: str):
        return param_grad_pair(param, grad, where)

    @staticmethod
    def zeros(n: int, dtype, fill: float = 0.0) -> np.ndarray:
        out = aligned_zeros(n, dtype)
        if fill:
            out.fill(fill)
        return out

    @staticmethod
    def launcher(rule, n_coefficients: int, dtype, with_ema: bool = False):
        """``launch(p, g, states, values)``: one fused update with per-step
        constants ``values`` (a tuple of Python floats; the kernel casts them
        to the buffer's dtype)."""
        kernel = cpu_kernel(rule, n_coefficients, with_ema)

        def launch(p, g, states, values):
            kernel(p, g, states, values, SERIAL_BELOW)

        return launch

    @staticmethod
    def sum_of_squares(g: np.ndarray) -> float:
        """Deterministic sum of squares (inf or NaN when ``g`` holds a
        non-finite value). Blocks of ``REDUCTION_BLOCK`` elements sum in the
        buffer's dtype (relative error ~1e-6 in float32, as torch's norm) and
        combine in float64."""
        partial = np.empty(max(1, -(-g.size // REDUCTION_BLOCK)), np.float64)
        if g.size == 0:
            return 0.0
        _block_sums_of_squares(g, partial, g.dtype.type(0))
        return float(np.sum(partial))

    @staticmethod
    def all_finite(g: np.ndarray) -> bool:
        return bool(np.isfinite(g).all())

    @staticmethod
    def to_host(a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def copy_(dst: np.ndarray, src) -> None:
        np.copyto(dst, np.asarray(src).reshape(dst.shape))

    @staticmethod
    def fill_(a: np.ndarray, value: float) -> None:
        a.fill(value)

    @staticmethod
    def scale_(a: np.ndarray, factor: float) -> None:
        np.multiply(a, a.dtype.type(factor), out=a)


CPU = CPUBackend()
