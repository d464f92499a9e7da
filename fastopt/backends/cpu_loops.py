"""CPU loop factories: the only code that loads and stores optimizer values
on the host.

Every kernel takes its per-step values as one tuple of Python floats (the
cheapest thing to pass in) and casts them to the buffer's dtype once, before
the loop: the loop then holds them in registers and float32 math never meets
a float64 constant. The tuple is ``HEAD`` values for the wrappers around the
rule (gradient scale, value-clipping bound, EMA decay and its complement),
then the rule's coefficient record.

Each loop has a serial branch below a size threshold (waking the thread pool
costs more than the update itself) and a ``prange`` branch above it; both run
the same per-element function, so they give identical bits.
"""

from __future__ import annotations

import numpy as np
from numba import carray, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from ..config import element_jit, loop_jit, reduction_jit
from .bits import noise, stream_keys
from .cache import enable_cache, function_key
from .codecs import MAX_STATES, load_states, load_value, rounds, states_storer, store_value, value_storer

HEAD = 8
"""Values before the coefficient record: ``(grad_scale, grad_bound, ema_decay,
ema_keep, seed_low, seed_high, step_low, step_high)``. The stream seed and the
step, as 16-bit halves (exact in any float dtype), key the random bits of
stochastic rounding (see :mod:`fastopt.backends.bits`)."""


@element_jit
def clip_value(g, bound):
    """``g`` clamped to ``[-bound, bound]``. Comparisons, not min/max, so that
    a NaN gradient stays NaN."""
    if g > bound:
        return bound
    if g < -bound:
        return -bound
    return g


@element_jit
def ema_update(e, p, decay, keep):
    """The parameter EMA: ``decay * e + (1 - decay) * p``."""
    return decay * e + keep * p


_kernels: dict = {}


def canonical_roundings(roundings) -> tuple:
    """``roundings`` without its trailing ``"nearest"`` entries (the default),
    so that equal layouts share one kernel."""
    roundings = list(roundings)
    while roundings and roundings[-1] == "nearest":
        roundings.pop()
    return tuple(roundings)


def _cached(key, build):
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = build()
    return kernel


def elementwise_kernel(rule, record, roundings: tuple = (), mirror_rounding: str = "nearest"):
    """``kernel(p, g, states, ema, mirror, values, serial_below)``: one fused
    pass of ``rule`` over flat buffers.

    ``p`` is updated in place from ``g`` and the tuple of state storages
    ``states`` (updated in place too; state ``k`` rounds as ``roundings[k]``
    says when its codec rounds, nearest by default); ``ema`` is the parameter
    EMA's storage or None (compiled away); ``mirror`` is a low-precision copy
    of the params to write in the same pass (a bfloat16 model's weights when
    ``p`` is its float32 master copy), rounded as ``mirror_rounding`` says, or
    None. Built once per rule, roundings and process, compiled once per
    layout (the storages' types), loaded from the on-disk cache after the
    first process.
    """
    roundings = canonical_roundings(roundings)
    key = ("elementwise", rule, record, roundings, mirror_rounding)
    return _cached(key, lambda: _build_elementwise(rule, record, roundings, mirror_rounding))


def _build_elementwise(rule, record, roundings, mirror_rounding):
    n_values = HEAD + len(record._fields)
    element = _element_function(rule, record, roundings, mirror_rounding)

    def update(p, g, states, ema, mirror, values, serial_below):
        buffer, keys = _unpacked(values, n_values, p.dtype)
        t = to_fixed_tuple(buffer, n_values)
        n = p.size
        # Unsigned element indices: numba adds negative-index wrap-around code
        # to every access with a signed index, which can keep loops from vectorizing.
        if n < serial_below:
            for i in range(n):
                j = np.uint64(i)
                element(j, p, load_value(g, j), states, ema, mirror, t, keys)
        else:
            for i in prange(n):
                j = np.uint64(i)
                element(j, p, load_value(g, j), states, ema, mirror, t, keys)

    kernel = loop_jit()(update)
    enable_cache(kernel, f"elementwise|{function_key(rule)}|{record.__name__}|{roundings}|{mirror_rounding}")
    return kernel


def _element_function(rule, record, roundings, mirror_rounding):
    """``element(i, p, gi, states, ema, mirror, t, keys)``: ``rule`` at element
    ``i`` with gradient value ``gi``, every load and store around it."""
    store_states = states_storer(roundings)
    store_mirror = value_storer(mirror_rounding)

    # The record is built inside the per-element function from the plain
    # tuple (parfor outlining cannot carry a named tuple type); LLVM hoists it.
    @element_jit
    def element(i, p, gi, states, ema, mirror, t, keys):
        pi, si = rule(load_value(p, i), clip_value(t[0] * gi, t[1]), load_states(states, i), record(*t[HEAD:]))
        store_states(states, i, si, keys)
        if ema is not None:
            store_value(ema, i, ema_update(load_value(ema, i), pi, t[2], t[3]))
        store_value(p, i, pi)
        if mirror is not None:
            store_mirror(mirror, i, pi, noise(keys, i, MAX_STATES))

    return element


@element_jit
def _unpacked(values, n_values, dtype):
    """The per-step values cast to the buffer's dtype, as a fixed tuple, and
    the stochastic-rounding keys."""
    buffer = np.empty(n_values, dtype)
    for k in range(n_values):
        buffer[k] = values[k]
    return buffer, stream_keys(values[4], values[5], values[6], values[7])


def scattered_kernel(rule, record, roundings: tuple = (), mirror_rounding: str = "nearest"):
    """``kernel(p, grads, states, ema, mirror, values, serial_below, block_lo,
    block_hi, block_tensor, starts, sizes)``: :func:`elementwise_kernel`'s pass
    with each tensor's gradient read where it lies instead of from a flat
    twin of ``p``.

    ``grads[k]`` is the address of tensor ``k``'s gradient (``sizes[k]``
    contiguous elements of ``p``'s dtype), which updates ``p[starts[k]:
    starts[k] + sizes[k]]``; blocks come from
    :func:`fastopt.backends.segments.block_plan` (gaps between tensors, block
    tensor -1, are left alone). Each element runs the same per-element
    function as the flat kernel at the same index: the same bits, stochastic
    rounding included.
    """
    roundings = canonical_roundings(roundings)
    key = ("scattered", rule, record, roundings, mirror_rounding)
    return _cached(key, lambda: _build_scattered(rule, record, roundings, mirror_rounding))


def _build_scattered(rule, record, roundings, mirror_rounding):
    n_values = HEAD + len(record._fields)
    element = _element_function(rule, record, roundings, mirror_rounding)

    @element_jit
    def block(p, grads, states, ema, mirror, t, keys, lo, hi, k, starts, sizes):
        if k < 0:
            return
        g = carray(address_to_pointer(grads[k]), (sizes[k],), p.dtype)
        start = starts[k]
        for i in range(lo, hi):
            j = np.uint64(i)
            element(j, p, g[np.uint64(i - start)], states, ema, mirror, t, keys)

    def update(p, grads, states, ema, mirror, values, serial_below, block_lo, block_hi, block_tensor, starts,
               sizes):
        buffer, keys = _unpacked(values, n_values, p.dtype)
        t = to_fixed_tuple(buffer, n_values)
        if p.size < serial_below:
            for b in range(block_lo.size):
                block(p, grads, states, ema, mirror, t, keys, block_lo[b], block_hi[b], block_tensor[b], starts,
                      sizes)
        else:
            for b in prange(block_lo.size):
                block(p, grads, states, ema, mirror, t, keys, block_lo[b], block_hi[b], block_tensor[b], starts,
                      sizes)

    kernel = loop_jit()(update)
    enable_cache(kernel, f"scattered|{function_key(rule)}|{record.__name__}|{roundings}|{mirror_rounding}")
    return kernel


@intrinsic
def address_to_pointer(typingctx, address):
    """The ``void*`` at integer ``address`` (for ``numba.carray``)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@reduction_jit()
def block_sum_of_squares(x, n):
    """float64 sum of squares of ``x[:n]`` (one fixed block). It may
    reassociate within the block (:data:`fastopt.config.REDUCTION_FASTMATH`),
    so it vectorises; the bits depend only on the block's values and the
    compiled code, never on which thread runs it or how many there are."""
    total = 0.0
    for k in range(n):
        y = np.float64(x[np.uint64(k)])
        total += y * y
    return total


def segmented_kernel(segmented, record, block: int, roundings: tuple = (), mirror_rounding: str = "nearest"):
    """``kernel(p, g, states, ema, mirror, values, serial_below, block_lo,
    block_hi, block_tensor, n_tensors)``: the two-pass driver of a rule whose step is
    scaled per tensor (see :class:`fastopt.rules.Segmented`).

    Pass one updates the states and sums ``p**2`` and ``r**2`` (``r`` the
    direction) per fixed block in float64; the block sums are added per
    tensor in block order, so the per-tensor factor, and every bit of the
    result, does not depend on the thread count. Pass two recomputes ``r``
    from the stored states (the same code on the same values: the same bits;
    no scratch buffer) and applies ``p -= factor[tensor] * r``. Blocks come
    from :func:`fastopt.backends.segments.block_plan`.
    """
    roundings = canonical_roundings(roundings)
    key = ("segmented", segmented, record, block, roundings, mirror_rounding)
    return _cached(key, lambda: _build_segmented(segmented, record, block, roundings, mirror_rounding))


def _build_segmented(segmented, record, block: int, roundings: tuple, mirror_rounding: str):
    direction, recompute, step_size = segmented.direction, segmented.recompute, segmented.step_size
    store_states = states_storer(roundings)
    store_mirror = value_storer(mirror_rounding)
    n_values = HEAD + len(record._fields)
    lr_index = HEAD + record._fields.index("lr")

    @element_jit
    def pass_one(p, g, states, t, keys, lo, hi, r):
        # Index from lo in a local loop over a block's scratch: r stays in cache.
        c = record(*t[HEAD:])
        for k in range(hi - lo):
            i = np.uint64(lo + k)
            pi = load_value(p, i)
            ri, si = direction(pi, clip_value(t[0] * load_value(g, i), t[1]), load_states(states, i), c)
            store_states(states, i, si, keys)
            if rounds(states):
                # The norm must be of the direction pass two will apply: the
                # one recomputed from the stored (rounded) states.
                ri = recompute(pi, load_states(states, i), c)
            r[k] = ri
        return block_sum_of_squares(p[lo:hi], hi - lo), block_sum_of_squares(r, hi - lo)

    @element_jit
    def pass_two(p, states, ema, mirror, t, keys, factor, apply, lo, hi):
        c = record(*t[HEAD:])
        decay, keep = t[2], t[3]
        for j in range(lo, hi):
            i = np.uint64(j)
            pi = load_value(p, i)
            if apply:
                pi = pi - factor * recompute(pi, load_states(states, i), c)
                store_value(p, i, pi)
            if ema is not None:
                store_value(ema, i, ema_update(load_value(ema, i), pi, decay, keep))
            if mirror is not None:
                store_mirror(mirror, i, pi, noise(keys, i, MAX_STATES))

    def update(p, g, states, ema, mirror, values, serial_below, block_lo, block_hi, block_tensor, n_tensors):
        buffer = np.empty(n_values, p.dtype)
        for k in range(n_values):
            buffer[k] = values[k]
        t = to_fixed_tuple(buffer, n_values)
        keys = stream_keys(values[4], values[5], values[6], values[7])
        lr = values[lr_index]  # the per-tensor factor is formed in float64, then cast
        nb = block_lo.size
        sums = np.empty((2, nb), np.float64)
        serial = p.size < serial_below
        if serial:
            r = np.empty(block, p.dtype)
            for b in range(nb):
                sp, sr = pass_one(p, g, states, t, keys, block_lo[b], block_hi[b], r)
                sums[0, b] = sp
                sums[1, b] = sr
        else:
            for b in prange(nb):
                r = np.empty(block, p.dtype)
                sp, sr = pass_one(p, g, states, t, keys, block_lo[b], block_hi[b], r)
                sums[0, b] = sp
                sums[1, b] = sr
        # No np.zeros/np.ones here: in a parallel=True function they become
        # parallel loops, which would wake the thread pool on every small step.
        tensor_p = np.empty(n_tensors, np.float64)
        tensor_r = np.empty(n_tensors, np.float64)
        for k in range(n_tensors):
            tensor_p[k] = 0.0
            tensor_r[k] = 0.0
        for b in range(nb):
            k = block_tensor[b]
            if k >= 0:
                tensor_p[k] += sums[0, b]
                tensor_r[k] += sums[1, b]
        factors = np.empty(max(n_tensors, 1), p.dtype)
        factors[0] = 1.0
        for k in range(n_tensors):
            factors[k] = step_size(tensor_p[k], tensor_r[k], lr)
        if serial:
            for b in range(nb):
                k = block_tensor[b]
                pass_two(p, states, ema, mirror, t, keys, factors[max(k, 0)], k >= 0, block_lo[b], block_hi[b])
        else:
            for b in prange(nb):
                k = block_tensor[b]
                pass_two(p, states, ema, mirror, t, keys, factors[max(k, 0)], k >= 0, block_lo[b], block_hi[b])

    kernel = loop_jit()(update)
    enable_cache(kernel, f"segmented|{function_key(direction)}|{record.__name__}|{block}|{roundings}|"
                         f"{mirror_rounding}")
    return kernel
