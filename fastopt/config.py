"""Every compile flag in one place. Rules, loop factories and reductions
import their decorators from here, so the numerics of every kernel are
decided by one file (and the on-disk cache key covers it).

This module is the bottom of the package: it imports nothing from fastopt.
"""

from __future__ import annotations

from numba import njit

FASTMATH = frozenset({"arcp", "afn", "nsz"})
"""The safe subset of fast-math: reciprocal and approximate functions, no
signed zeros. Not ``nnan``/``ninf`` (NaN checks must survive), not
``reassoc``/``contract`` (the serial and parallel loops must give identical
bits, and the CPU and CUDA kernels the same rounding of each operation)."""

ERROR_MODEL = "numpy"
"""Division by zero gives inf/NaN as in NumPy instead of raising: no branch
per division, so update loops vectorise."""

REDUCTION_FASTMATH = frozenset({"reassoc", "contract"})
"""Sums of squares may reassociate *within* one fixed block (so each block's
stream vectorises); block results combine in a fixed order, so a norm never
depends on the thread count."""

element_jit = njit(error_model=ERROR_MODEL, fastmath=set(FASTMATH))
"""Decorator of rules and scalar helpers: pure functions of scalars, compiled
for the CPU and, unchanged, as CUDA device functions."""


def loop_jit(parallel: bool = True):
    """Decorator of the CPU loop kernels (``prange`` loops when ``parallel``)."""
    return njit(parallel=parallel, error_model=ERROR_MODEL, fastmath=set(FASTMATH))


def reduction_jit(parallel: bool = False, cache: bool = True):
    """Decorator of the CPU reductions (see :data:`REDUCTION_FASTMATH`)."""
    return njit(parallel=parallel, error_model=ERROR_MODEL, fastmath=set(REDUCTION_FASTMATH), cache=cache)
