"""CPU kernels: one fused, parallel pass per rule, with a serial branch for
small buffers (waking the thread pool costs more than the update itself)."""

from __future__ import annotations

from numba import njit, prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from ._cache import enable_cache

SERIAL_BELOW = 32768
"""Buffers with fewer elements run the serial loop. Measured on a 2-core Xeon
(bench/calibrate_threshold.py): the parallel loop wins from ~24K float32
Adam elements; below that the thread wake-up (~2-3 us) dominates."""

_kernels: dict = {}


def _build(rule, n_coefficients):
    def update(p, g, s, coefficients, serial_below):
        # A tuple of scalars, unpacked once: the loop then holds them in
        # registers (indexing the array inside the loop would reload it and
        # block vectorisation, since it might alias p).
        c = to_fixed_tuple(coefficients, n_coefficients)
        n = p.size
        if n < serial_below:
            for i in range(n):
                rule(i, p, g, s, c)
        else:
            for i in prange(n):
                rule(i, p, g, s, c)

    kernel = njit(parallel=True, error_model="numpy", fastmath={"arcp", "afn", "nsz"})(update)
    enable_cache(kernel, rule)
    return kernel


def cpu_kernel(rule, n_coefficients: int):
    """The compiled CPU kernel ``kernel(p, g, states, coefficients, serial_below)``.

    ``p``, ``g`` and each array of the tuple ``states`` are 1-D, contiguous
    and of one dtype; ``coefficients`` is an array of ``n_coefficients``
    per-step constants of that dtype. Built once per rule and process;
    compiled once per dtype (and loaded from the on-disk cache after the
    first process).
    """
    key = (rule, n_coefficients)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _build(rule, n_coefficients)
    return kernel
