"""CPU backend: host (NumPy) buffers, the fused loops of
:mod:`fastopt.backends.cpu_loops`, and the deterministic gradient reduction
used by clipping and the non-finite guard."""

from __future__ import annotations

import os

import numpy as np
from numba import prange

from ..config import reduction_jit
from . import cpu_blocks, cpu_loops, threads
from .codecs import BFLOAT16, bfloat16_to_float32, decode, float32_to_bfloat16
from .host_arrays import aligned_zeros, param_grad_pair
from .segments import BLOCK, block_plan, normalise_segments

SPINNING_SERIAL_BELOW = 16384
"""Where the parallel loop starts to win while idle OpenMP threads spin (the
default wait policy). Measured with bench/calibrate_threshold.py: 2^14 float32
elements for Adam and Adagrad, 2^15 for SGD on a 2-core Xeon; 2^15 (Adam) and
2^16 (SGD) on a 2-core EPYC. Below that the wake-up (~2-3 us) costs more than
the second thread saves."""

SLEEPING_SERIAL_BELOW = 1 << 19
"""The same crossover under ``OMP_WAIT_POLICY=PASSIVE``, where idle threads
sleep and waking them costs about 50 us per parallel loop, so the parallel
loop wins once the serial one takes about 100 us: measured on the 2-core
EPYC, Adam's parallel step ran at 0.38x the serial one at 2^17 elements,
0.71x at 3e5, 0.95x at 2^19 and 1.23-1.36x at 1e6 (SGD 1.17x at 2^20)."""

BLOCK_FLOAT_WORK = 8
"""Serial time per element of an 8-bit block-float step over a float32 one
(Adam on the EPYC: 1.57 ns against 0.20 ns): such a step goes parallel at
1/8 of :data:`SERIAL_BELOW` elements (under PASSIVE its crossover measured
between 3e4 and 1e5 elements; at 1e6 the parallel loop is 2.35x faster)."""

BFLOAT16_WORK = 1.5
"""The same ratio for a step with bfloat16 states or params (Adam: 0.28 ns
against 0.20 ns; crossover between 3e5 and 1e6 under PASSIVE)."""


def default_serial_below() -> int:
    """:data:`SLEEPING_SERIAL_BELOW` when the environment asks OpenMP's idle
    threads to sleep (``OMP_WAIT_POLICY=PASSIVE``), else :data:`SPINNING_SERIAL_BELOW`."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    return SLEEPING_SERIAL_BELOW if passive else SPINNING_SERIAL_BELOW


SERIAL_BELOW = default_serial_below()
"""Buffers with fewer elements run the serial loop (see
:func:`default_serial_below`; read when fastopt is imported)."""


def sleep_idle_threads() -> bool:
    """Ask OpenMP's idle threads to sleep (``OMP_WAIT_POLICY=PASSIVE`` in
    this process's environment) unless the user chose a policy or numba's
    pool has already started (it reads the policy once, when it starts); the
    threshold moves with it. Returns whether it applied. For processes that
    share their cores (MPI ranks, a benchmark timing torch beside fastopt)."""
    global SERIAL_BELOW
    if "OMP_WAIT_POLICY" in os.environ or threads._numba_pool_started():
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    SERIAL_BELOW = default_serial_below()
    return True


REDUCTION_BLOCK = 1 << 14
"""Elements per partial sum in the gradient reduction. Blocks are fixed by the
buffer size, never by the thread count, so the norm is bit-identical whatever
the number of threads."""


def serial_below() -> int:
    """The size from which loops run in parallel now: :data:`SERIAL_BELOW`,
    or never in a process forked from one whose OpenMP pool had started (see
    :mod:`fastopt.backends.threads`)."""
    return threads.NEVER_PARALLEL if threads.in_unsafe_fork() else SERIAL_BELOW


def threshold_for(n: int, work: float = 1.0) -> int:
    """The element count from which a loop over ``n`` elements runs in
    parallel: :func:`serial_below` divided by ``work``, the loop's serial time
    per element over a float32 step's (the thread wake-up is a fixed cost, so
    a costlier element pays it back sooner). The thread count is applied
    first when the loop is about to run in parallel."""
    threshold = serial_below()
    if work != 1.0 and threshold < threads.NEVER_PARALLEL:
        threshold = max(1, int(threshold / work))
    if n >= threshold:
        threads.apply_num_threads()
    return threshold


@reduction_jit()
def _sum_of_squares(g, lo, hi, zero):
    # Four interleaved streams (quarters of the block) keep more loads in
    # flight than one; accumulating in the type of `zero` (the buffer's dtype)
    # halves the vector work against widening every element. reassoc lets
    # each stream vectorise; the result depends only on the block's data and
    # the compiled code, never on which thread runs it.
    q = (hi - lo) // 4
    a0 = a1 = a2 = a3 = zero
    # `+ zero` widens each element when the accumulators are float64;
    # decode() reads bfloat16 gradients (identity for float ones).
    for i in range(lo, lo + q):
        x0 = decode(g, g[i]) + zero
        x1 = decode(g, g[i + q]) + zero
        x2 = decode(g, g[i + 2 * q]) + zero
        x3 = decode(g, g[i + 3 * q]) + zero
        a0 += x0 * x0
        a1 += x1 * x1
        a2 += x2 * x2
        a3 += x3 * x3
    for i in range(lo + 4 * q, hi):
        x0 = decode(g, g[i]) + zero
        a0 += x0 * x0
    return (np.float64(a0) + np.float64(a1)) + (np.float64(a2) + np.float64(a3))


@reduction_jit(parallel=True)
def _block_sums_of_squares(g, out, zero, serial):
    n = g.size
    if serial:
        for b in range(out.size):
            out[b] = _block_sum(g, b, n, zero)
    else:
        for b in prange(out.size):
            out[b] = _block_sum(g, b, n, zero)


@reduction_jit()
def _block_sum(g, b, n, zero):
    lo = b * REDUCTION_BLOCK
    hi = min(lo + REDUCTION_BLOCK, n)
    s = _sum_of_squares(g, lo, hi, zero)
    if s == np.inf:
        # float32 squares overflow above ~1.8e19: redo this block in float64.
        s = _sum_of_squares(g, lo, hi, 0.0)
    return s


def direct_call(kernel, args: tuple):
    """The compiled entry point of ``kernel`` for ``args``' types, called
    without numba's per-call type dispatch (which costs about as much as a
    small step): safe because a launch always passes the same arrays, and
    values of the same types. Falls back to the dispatcher itself."""
    try:
        signature = tuple(kernel.typeof_pyval(a) for a in args)
        return kernel.overloads[signature].entry_point
    except (AttributeError, KeyError):  # pragma: no cover - numba internals moved
        return kernel


def _launcher(kernel, n: int, args: tuple, extra: tuple = (), work: float = 1.0):
    """``launch(values)``: ``kernel(*args, values, threshold, *extra)``, via
    :func:`direct_call` after the first (compiling) call; ``work`` as in
    :func:`threshold_for`."""
    call = None

    def launch(values):
        nonlocal call
        threshold = threshold_for(n, work)
        if call is None:
            kernel(*args, values, threshold, *extra)
            call = direct_call(kernel, (*args, values, threshold, *extra))
        else:
            call(*args, values, threshold, *extra)

    return launch


def _element_work(p: np.ndarray, g: np.ndarray, states: tuple) -> float:
    """:data:`BFLOAT16_WORK` when any array of the step is bfloat16, else 1."""
    arrays = (p, g, *(s for s in states if isinstance(s, np.ndarray)))
    return BFLOAT16_WORK if any(a.dtype == BFLOAT16 for a in arrays) else 1.0


class CPUBackend:
    """Array handling and kernel launches for host (NumPy) buffers."""

    name = "cpu"

    @staticmethod
    def pair(param, grad, where: str):
        """Validate one (param, grad) pair; their flat views (same memory)."""
        return param_grad_pair(param, grad, where)

    @staticmethod
    def zeros(n: int, dtype, fill: float = 0.0) -> np.ndarray:
        """A new aligned buffer of ``n`` elements set to ``fill``."""
        out = aligned_zeros(n, dtype)
        if fill:
            out.fill(fill)
        return out

    @staticmethod
    def device_of(array) -> None:
        """Host buffers have no device index."""
        return None

    @staticmethod
    def elementwise_launcher(rule, record, p, g, states: tuple, ema, mirror=None, roundings=(),
                             mirror_rounding="nearest"):
        """``launch(values)``: one fused pass of ``rule`` over these buffers
        (see :func:`fastopt.backends.cpu_loops.elementwise_kernel`)."""
        kernel = cpu_loops.elementwise_kernel(rule, record, roundings, mirror_rounding)
        return _launcher(kernel, p.size, (p, g, states, ema, mirror), work=_element_work(p, g, states))

    @staticmethod
    def scattered_launcher(rule, record, p, states: tuple, ema, segments, mirror=None, roundings=(),
                           mirror_rounding="nearest"):
        """``launch(values, grads)``: :meth:`elementwise_launcher`'s pass with
        tensor ``k`` of ``segments`` (``(start, stop)`` ranges of ``p``) reading
        its gradient at address ``grads[k]`` (contiguous, ``p``'s dtype): a
        torch training loop's new ``.grad`` tensors, read where autograd put
        them instead of copied into a flat buffer first (see
        :func:`fastopt.backends.cpu_loops.scattered_kernel`)."""
        kernel = cpu_loops.scattered_kernel(rule, record, roundings, mirror_rounding)
        pairs = normalise_segments(p.size, segments)
        lo, hi, tensor, _ = block_plan(p.size, pairs)
        starts = np.array([a for a, _ in pairs], np.int64)
        sizes = np.array([b - a for a, b in pairs], np.int64)
        addresses = np.zeros(len(pairs), np.int64)
        launch = _launcher(kernel, p.size, (p, addresses, states, ema, mirror), (lo, hi, tensor, starts, sizes),
                           work=_element_work(p, p, states))

        def launch_with(values, grads):
            addresses[:] = grads
            launch(values)

        return launch_with

    @staticmethod
    def segmented_launcher(segmented, record, p, g, states: tuple, ema, segments, mirror=None, roundings=(),
                           mirror_rounding="nearest"):
        """``launch(values)``: the two-pass segmented driver over these
        buffers; ``segments`` are the tensors as ``(start, stop)`` ranges (None:
        the whole buffer is one tensor)."""
        kernel = cpu_loops.segmented_kernel(segmented, record, BLOCK, roundings, mirror_rounding)
        lo, hi, tensor, n_tensors = block_plan(p.size, normalise_segments(p.size, segments))
        return _launcher(kernel, p.size, (p, g, states, ema, mirror), (lo, hi, tensor, n_tensors))

    @staticmethod
    def blockwise_launcher(rule, record, p, g, codes: tuple, scales: tuple, ema, mirror=None, formats=(),
                           mirror_rounding="nearest"):
        """``launch(values)``: one fused pass of ``rule`` over these buffers with
        8-bit block-float states (see :func:`fastopt.backends.cpu_blocks.blockwise_kernel`)."""
        kernel = cpu_blocks.blockwise_kernel(rule, record, formats, mirror_rounding)
        return _launcher(kernel, p.size, (p, g, codes, scales, ema, mirror), work=BLOCK_FLOAT_WORK)

    @staticmethod
    def sum_of_squares(g: np.ndarray) -> float:
        """Deterministic sum of squares (inf or NaN when ``g`` holds a
        non-finite value). Blocks of ``REDUCTION_BLOCK`` elements sum in the
        buffer's dtype (relative error ~1e-6 in float32, as torch's norm) and
        combine in float64."""
        if g.size == 0:
            return 0.0
        partial = np.empty(-(-g.size // REDUCTION_BLOCK), np.float64)
        zero = np.float32(0) if g.dtype == BFLOAT16 else g.dtype.type(0)
        _block_sums_of_squares(g, partial, zero, g.size < threshold_for(g.size))
        return float(np.sum(partial))

    @staticmethod
    def all_finite(g: np.ndarray) -> bool:
        if g.dtype == BFLOAT16:  # exponent bits all set: inf or NaN
            return not bool(np.any((g & 0x7F80) == 0x7F80))
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
        if a.dtype == BFLOAT16:
            a[:] = float32_to_bfloat16(bfloat16_to_float32(a) * np.float32(factor))
        else:
            np.multiply(a, a.dtype.type(factor), out=a)


CPU = CPUBackend()

__all__ = ["CPU", "CPUBackend", "REDUCTION_BLOCK", "SERIAL_BELOW", "serial_below"]
