"""CPU driver for LAMB: two fused passes per flat buffer.

Pass A updates the moments and sums ``p**2`` and ``r**2`` (``r`` the Adam-style
direction) in float64, per fixed block of one tensor; the block sums are
combined per tensor in block order, so the norms, and hence every bit of the
result, do not depend on the thread count or on the serial/parallel branch.
Pass B recomputes ``r`` from the stored moments (the same code on the same
values: the same bits) and applies ``p -= lr * ratio[tensor] * r``. Recomputing
costs no more memory traffic than storing ``r`` and needs no scratch buffer.

The element math is :mod:`fastopt.rules.lamb`'s; this module only loops.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from . import _cpu
from ._cache import enable_cache
from .rules.lamb import LR_INDEX, N_COEFFICIENTS, lamb_direction, lamb_moments

BLOCK = 4096
"""Elements per partial sum. Blocks never straddle two tensors."""

_JIT = dict(parallel=True, error_model="numpy", fastmath=_cpu.FASTMATH)


@njit(error_model="numpy", fastmath=_cpu.FASTMATH)
def _sum_of_squares(x):
    """float64 sum of squares in a fixed order: eight lanes (element i goes to
    lane i % 8), then the lanes pairwise. No reassociation is needed for the
    lanes to run as SIMD registers, so the bits never depend on the compiler's
    choices between the serial and the parallel loop."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    n8 = x.size // 8
    for j in range(n8):
        i = 8 * j
        y0 = np.float64(x[i])
        y1 = np.float64(x[i + 1])
        y2 = np.float64(x[i + 2])
        y3 = np.float64(x[i + 3])
        y4 = np.float64(x[i + 4])
        y5 = np.float64(x[i + 5])
        y6 = np.float64(x[i + 6])
        y7 = np.float64(x[i + 7])
        a0 += y0 * y0
        a1 += y1 * y1
        a2 += y2 * y2
        a3 += y3 * y3
        a4 += y4 * y4
        a5 += y5 * y5
        a6 += y6 * y6
        a7 += y7 * y7
    for i in range(8 * n8, x.size):
        y0 = np.float64(x[i])
        a0 += y0 * y0
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@njit(error_model="numpy", fastmath=_cpu.FASTMATH)
def _pass_a_block(p, g, m, v, c, lo, hi):
    # Slices indexed from 0: the compiler knows no index is negative (no
    # wraparound select), so the element loop vectorises like the other rules.
    p, g, s = p[lo:hi], g[lo:hi], (m[lo:hi], v[lo:hi])
    r = np.empty(p.size, p.dtype)  # one block of directions, stays in cache
    for i in range(p.size):
        r[i] = lamb_moments(i, p, g, s, c)
    return _sum_of_squares(p), _sum_of_squares(r)


@njit(error_model="numpy", fastmath=_cpu.FASTMATH)
def _pass_b_block(p, m, v, c, step, lo, hi):
    p, m, v = p[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(p.size):
        pi = p[i]
        p[i] = pi - step * lamb_direction(m[i], v[i], pi, c)


@njit(error_model="numpy", fastmath=_cpu.FASTMATH)
def _ema_block(p, e, d, one_minus_d, lo, hi):
    p, e = p[lo:hi], e[lo:hi]
    for i in range(p.size):
        e[i] = d * e[i] + one_minus_d * p[i]


def _lamb(p, g, s, coefficients, lr, block_lo, block_hi, block_seg, n_seg, has_ema, ema_d, ema_1md,
          serial_below):
    c = to_fixed_tuple(coefficients, 12)
    m, v = s[0], s[1]
    e = s[-1]
    nb = block_lo.size
    sums = np.empty((2, nb), np.float64)
    if p.size < serial_below:
        for b in range(nb):
            sp, sr = _pass_a_block(p, g, m, v, c, block_lo[b], block_hi[b])
            sums[0, b] = sp
            sums[1, b] = sr
    else:
        for b in prange(nb):
            sp, sr = _pass_a_block(p, g, m, v, c, block_lo[b], block_hi[b])
            sums[0, b] = sp
            sums[1, b] = sr
    # Per-tensor norms: block sums added in block order (serial, fixed).
    seg_p = np.zeros(n_seg, np.float64)
    seg_r = np.zeros(n_seg, np.float64)
    for b in range(nb):
        k = block_seg[b]
        if k >= 0:
            seg_p[k] += sums[0, b]
            seg_r[k] += sums[1, b]
    steps = np.empty(n_seg, p.dtype)
    for k in range(n_seg):
        w_norm = math.sqrt(seg_p[k])
        r_norm = math.sqrt(seg_r[k])
        ratio = 1.0
        if w_norm > 0.0 and r_norm > 0.0:
            ratio = w_norm / r_norm
        steps[k] = lr * ratio
    if p.size < serial_below:
        for b in range(nb):
            k = block_seg[b]
            if k >= 0:
                _pass_b_block(p, m, v, c, steps[k], block_lo[b], block_hi[b])
            if has_ema:
                _ema_block(p, e, ema_d, ema_1md, block_lo[b], block_hi[b])
    else:
        for b in prange(nb):
            k = block_seg[b]
            if k >= 0:
                _pass_b_block(p, m, v, c, steps[k], block_lo[b], block_hi[b])
            if has_ema:
                _ema_block(p, e, ema_d, ema_1md, block_lo[b], block_hi[b])


assert N_COEFFICIENTS == 12  # the literal in to_fixed_tuple above
lamb_kernel = njit(**_JIT)(_lamb)
enable_cache(lamb_kernel, lamb_moments)


def normalise_segments(n: int, segments) -> tuple[tuple[int, int], ...]:
    """Checked, sorted ``(start, stop)`` pairs covering disjoint parts of ``[0, n)``."""
    if segments is None:
        return ((0, n),)
    try:
        pairs = [(int(a), int(b)) for a, b in segments]
    except (TypeError, ValueError):
        raise TypeError(f"segments must be a sequence of (start, stop) int pairs, got {segments!r}") from None
    pairs.sort()
    end = 0
    for a, b in pairs:
        if not 0 <= a <= b <= n:
            raise ValueError(f"segments: ({a}, {b}) is not a range inside [0, {n}]")
        if a < end:
            raise ValueError(f"segments overlap at ({a}, {b})")
        end = b
    return tuple(pairs)


@lru_cache(maxsize=256)
def plan(n: int, segments: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Fixed blocks ``(lo, hi, tensor index or -1 for a gap)`` covering ``[0, n)``.
    ``segments`` must come from :func:`normalise_segments`."""
    lo, hi, seg = [], [], []

    def add(a, b, k):
        for start in range(a, b, BLOCK):
            lo.append(start)
            hi.append(min(start + BLOCK, b))
            seg.append(k)

    end = 0
    for k, (a, b) in enumerate(segments):
        add(end, a, -1)
        add(a, b, k)
        end = b
    add(end, n, -1)
    arrays = tuple(np.array(x, dtype=np.int64) for x in (lo, hi, seg))
    for a in arrays:
        a.flags.writeable = False
    return arrays + (len(segments),)


def launcher(n_coefficients: int, dtype, with_ema: bool, segments, n: int | None = None):
    """``launch(p, g, states, values)``: one LAMB step over a flat buffer.

    ``states`` is ``(exp_avg, exp_avg_sq)`` (plus the parameter EMA last when
    ``with_ema``); ``values`` is the full coefficient tuple (Python floats:
    ``(grad_scale, grad_bound)`` + ``rules.lamb`` coefficients + the EMA's
    ``(decay, 1 - decay)`` when ``with_ema``). ``segments``: the buffer's tensors
    as ``(start, stop)`` ranges, or None for one tensor. When ``n`` is given the
    segments are checked now, else at the first launch.
    """
    if n_coefficients != N_COEFFICIENTS:
        raise ValueError(f"LAMB takes {N_COEFFICIENTS} coefficients, got {n_coefficients}")
    buffer = np.empty(N_COEFFICIENTS, dtype)
    cached = {}
    if n is not None:
        cached[n] = plan(n, normalise_segments(n, segments))

    def launch(p, g, states, values):
        size = p.size
        blocks = cached.get(size)
        if blocks is None:
            blocks = cached[size] = plan(size, normalise_segments(size, segments))
        lo, hi, seg, n_seg = blocks
        buffer[:] = values[:N_COEFFICIENTS]
        if with_ema:
            d, one_minus_d = values[N_COEFFICIENTS], values[N_COEFFICIENTS + 1]
        else:
            d = one_minus_d = 0.0
            states = states + (states[0],)  # placeholder EMA slot, never written
        lamb_kernel(p, g, states, buffer, float(values[LR_INDEX]), lo, hi, seg, n_seg, with_ema,
                    d, one_minus_d, _cpu.SERIAL_BELOW)

    return launch
