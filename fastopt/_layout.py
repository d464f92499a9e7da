"""The launch units of a param group: chains of buffers that one kernel
launch covers.

A buffer that is not part of a :class:`~fastopt.params.ParamChain` is a
chain of its own. A chain owns flat state arrays (and EMA, bfloat16 master
copy, 8-bit codes and scales) covering all its tensors; each tensor's entries
in ``optimizer.state`` are views of them, so the state is in torch's
per-parameter layout while a step stays one launch over the flat arrays.
When tensors of a chain are skipped (no gradient) or at different steps,
the chain launches over each run of consecutive tensors that step together.
"""

from __future__ import annotations

import numpy as np

from ._precision import MASTER, SCALE, allocate, allocate_blocks, allocate_state
from .backends.blockfloat import BLOCK
from .backends.codecs import BFLOAT16, bfloat16_to_float32


class Chain:
    """Consecutive buffers of a group over one flat param/grad buffer.

    Attributes
    ----------
    buffers : list of Buffer
    starts, stops : list of int
        Each buffer's range in the chain's flat arrays.
    p, g : array
        The flat param (bfloat16 params: their bits) and grad arrays.
    flat : dict
        State name (and ``"ema"``, ``MASTER``, ``name + SCALE``) -> flat array.
    entries : list of dict
        The buffers' entries of ``optimizer.state``.
    launchers : dict
        ``(i, j)`` -> ``launch(values)`` over buffers ``i..j-1``, and
        ``"scattered"`` -> :func:`scattered_launcher`'s, once built.
    full : callable or None
        The launcher over every buffer (the usual step), once built.
    """

    __slots__ = ("buffers", "starts", "stops", "p", "g", "flat", "entries", "launchers", "full")

    def __init__(self, buffers: list) -> None:
        self.buffers = buffers
        first = buffers[0]
        if first.chain is None:
            self.p, self.g = first.p, first.g
            self.starts, self.stops = [0], [first.p.size]
        else:
            self.p, self.g = first.chain[0], first.chain[1]
            self.starts = [b.chain[2] for b in buffers]
            self.stops = [b.chain[2] + b.p.size for b in buffers]
        self.flat: dict = {}
        self.entries: list = []
        self.launchers: dict = {}
        self.full = None

    @property
    def ids(self) -> list[int]:
        return [b.id for b in self.buffers]

    @property
    def span(self) -> tuple[int, int]:
        """The range of the flat arrays the chain's tensors cover."""
        return self.starts[0], self.stops[-1]

    def lockstep(self) -> bool:
        """Whether every tensor is at the same step (with the same carried scalars)."""
        first = self.entries[0]
        return all(st["step"] == first["step"] for st in self.entries[1:])

    def runs(self, active, carry_names: tuple):
        """``(i, j)`` of each run of consecutive buffers that step together:
        all active (``active`` None: all), same step, same carried scalars."""
        i, n = 0, len(self.buffers)
        while i < n:
            if active is not None and self.buffers[i].id not in active:
                i += 1
                continue
            key = _step_key(self.entries[i], carry_names)
            j = i + 1
            while j < n and (active is None or self.buffers[j].id in active) \
                    and _step_key(self.entries[j], carry_names) == key:
                j += 1
            yield i, j
            i = j


def _step_key(entry: dict, carry_names: tuple) -> tuple:
    return (entry["step"], *(entry[name] for name in carry_names))


def blockwise_size(buffer) -> int:
    """The size that decides whether ``buffer``'s state is 8-bit (see
    :meth:`fastopt._precision.Precision.blockwise`): its chain's flat buffer's."""
    return buffer.chain[0].size if buffer.chain is not None else buffer.p.size


def chains_of(buffers) -> list[Chain]:
    """The group's buffers, consecutive tensors of one ParamChain together."""
    chains: list[Chain] = []
    current: list = []
    for b in buffers:
        if current and b.chain is not None and current[-1].chain is not None \
                and b.chain[0] is current[-1].chain[0]:
            current.append(b)
            continue
        if current:
            chains.append(Chain(current))
        current = [b]
    chains.append(Chain(current))
    return chains


def _views(flat, chain: Chain):
    return [flat[a:b] for a, b in zip(chain.starts, chain.stops)]


def _block_view(codes, scales, a: int, b: int):
    return codes[a:a + -(-(b - a) // BLOCK) * BLOCK], scales[a // BLOCK: a // BLOCK + -(-(b - a) // BLOCK)]


def ensure_flat(backend, chain: Chain, state: dict, name: str, make, copy_in=None) -> None:
    """Make sure ``chain.flat[name]`` exists and every buffer's ``state`` entry
    ``name`` is its view: a fresh chain array from ``make(n)``, filled from
    entries the buffers already hold (after ``load_state_dict``) through
    ``copy_in(flat, a, b, value)``."""
    flat = chain.flat.get(name)
    entries = chain.entries
    if flat is not None and all(st.get(name) is view for st, view in zip(entries, _views(flat, chain))):
        return
    n = chain.stops[-1]
    new = make(n)
    for st, a, b in zip(entries, chain.starts, chain.stops):
        if name in st:
            (copy_in or _copy_range(backend))(new, a, b, st[name])
    chain.flat[name] = new
    for st, view in zip(entries, _views(new, chain)):
        st[name] = view


def _copy_range(backend):
    def copy(flat, a, b, value):
        if value is not None and getattr(value, "size", 0) == b - a:
            backend.copy_(flat[a:b], value)

    return copy


def lay_out_chain(opt, chain: Chain, plan, hyper, variant) -> None:
    """Allocate (or gather) the chain's flat state for ``variant`` and point
    every buffer's state entries at their views."""
    spec, backend, precision = opt.spec, plan.backend, opt.precision
    chain.entries = [opt.state[b.id] for b in chain.buffers]
    chain.launchers = {}
    chain.full = None
    first = chain.buffers[0]
    if len(chain.buffers) == 1 and first.chain is None:
        _lay_out_single(opt, chain, backend, hyper, variant)
        return
    n = chain.stops[-1]
    bf16 = chain.p.dtype == BFLOAT16
    compute_dtype = np.float32 if bf16 else chain.p.dtype
    if bf16:
        def master(size):  # the flat arrays may extend past the last tensor (padding): copy up to it
            m = backend.zeros(size, np.float32)
            backend.copy_(m, bfloat16_to_float32(backend.to_host(chain.p[:size])))
            return m

        ensure_flat(backend, chain, opt.state, MASTER, master)
    if opt.ema_decay is not None:
        def ema(size):
            e = backend.zeros(size, compute_dtype)
            backend.copy_(e, backend.to_host(chain.flat[MASTER] if bf16 else chain.p[:size]))
            return e

        ensure_flat(backend, chain, opt.state, "ema", ema)
    blockwise = precision.blockwise(chain.p.size) and bool(variant.state_names)  # no state: nothing to block
    if blockwise and any(a % BLOCK for a in chain.starts):
        raise ValueError(f"state_dtype='int8' needs every tensor of a ParamChain to start on a multiple of {BLOCK} "
                         "elements (8-bit blocks must not straddle two tensors)")
    for name in variant.state_names:
        fill = spec.state_fill.get(name)
        fill = fill(hyper) if fill else 0.0
        if blockwise:
            codes, scales = chain.flat.get(name), chain.flat.get(name + SCALE)
            if codes is None:
                codes, scales = allocate_blocks(backend, n, precision.format(name, spec), fill)
                chain.flat[name], chain.flat[name + SCALE] = codes, scales
            for st, a, b in zip(chain.entries, chain.starts, chain.stops):
                code_view, scale_view = _block_view(codes, scales, a, b)
                held = st.get(name)
                if held is not None and held is not code_view:  # loaded from a state dict: gather it
                    backend.copy_(code_view, held)
                    backend.copy_(scale_view, st[name + SCALE])
                st[name], st[name + SCALE] = code_view, scale_view
        else:
            dtype = precision.storage_dtype(name, chain.p.dtype, spec)
            ensure_flat(backend, chain, opt.state, name, lambda size, d=dtype, f=fill: allocate(backend, size, d, f))


def _lay_out_single(opt, chain: Chain, backend, hyper, variant) -> None:
    """A buffer of its own: its state entries are the flat arrays."""
    spec, precision = opt.spec, opt.precision
    b, st = chain.buffers[0], chain.entries[0]
    for name in variant.state_names:
        if name not in st:
            st.update(allocate_state(backend, precision, spec, hyper, name, b.p.size, b.p.dtype))
    chain.flat = {name: st[name] for name in st if name != "step" and not isinstance(st[name], (int, float))}


def launcher(opt, plan, chain: Chain, i: int, j: int, device_row=None):
    """``launch(values)`` over buffers ``i..j-1`` of ``chain`` (cached)."""
    key = (i, j)
    found = chain.launchers.get(key)
    if found is not None:
        return found
    spec, backend, precision, variant = opt.spec, plan.backend, opt.precision, plan.variant
    a, b = chain.starts[i], chain.stops[j - 1]
    whole = (a, b) == (0, chain.stops[-1]) and len(chain.buffers) == 1 and chain.buffers[0].chain is None
    bf16 = chain.p.dtype == BFLOAT16

    def cut(array):
        return array if whole else array[a:b]

    p = cut(chain.flat[MASTER]) if bf16 else cut(chain.p)
    g = cut(chain.g)
    mirror = cut(chain.p) if bf16 else None
    ema = cut(chain.flat["ema"]) if opt.ema_decay is not None else None
    names = variant.state_names
    scales = None
    segments = None
    if names and precision.blockwise(chain.p.size):  # a stateless step (SGD without momentum) has no blocks
        codes, block_scales = [], []
        for name in names:
            c, s = (chain.flat[name], chain.flat[name + SCALE]) if whole else _block_view(
                chain.flat[name], chain.flat[name + SCALE], a, b)
            codes.append(c)
            block_scales.append(s)
        states, scales = tuple(codes), tuple(block_scales)
    else:
        states = tuple(cut(chain.flat[name]) for name in names)
        if spec.segmented is not None:
            if whole:
                segments = chain.buffers[0].segments
            else:
                segments = tuple((chain.starts[m] - a, chain.stops[m] - a) for m in range(i, j))
    found = kernel_launcher(backend, spec, variant, precision, p, g, states, scales, ema, segments, mirror,
                            device_row)
    chain.launchers[key] = found
    return found


def scattered_launcher(opt, plan, chain: Chain):
    """``launch(values, grads)`` over every buffer of ``chain``, buffer ``m``
    reading its gradient at address ``grads[m]`` instead of from ``chain.g``
    (cached). Only for what :meth:`fastopt.optim.Optimizer.reads_grads_in_place`
    allows: element-wise rules, float states, float params, the CPU."""
    found = chain.launchers.get("scattered")
    if found is not None:
        return found
    spec, variant = opt.spec, plan.variant
    a, b = chain.span

    def cut(array):
        return array if (a, b) == (0, array.size) else array[a:b]

    ema = cut(chain.flat["ema"]) if opt.ema_decay is not None else None
    states = tuple(cut(chain.flat[name]) for name in variant.state_names)
    segments = tuple((start - a, stop - a) for start, stop in zip(chain.starts, chain.stops))
    found = plan.backend.scattered_launcher(
        variant.rule, spec.record, cut(chain.p), states, ema, segments,
        roundings=tuple(opt.precision.rounding(name, spec) for name in variant.state_names))
    chain.launchers["scattered"] = found
    return found


def kernel_launcher(backend, spec, variant, precision, p, g, states: tuple, scales: tuple | None = None, ema=None,
                    segments=None, mirror=None, device_row=None):
    """``launch(values)``: the kernel of ``variant`` over flat buffers, shared
    by the optimizer and :mod:`fastopt.functional`.

    ``states`` are the state storages in ``variant.state_names`` order, or,
    with ``scales`` (one block-scale array per state), their 8-bit codes: the
    blockwise kernel, formats from the states' roles. Otherwise each state
    rounds as ``precision.rounding`` says for its role, and a per-tensor rule
    (LAMB) runs its two-pass driver over ``segments`` (None: one tensor).
    ``mirror`` is the bfloat16 params written from a float32 master ``p``;
    ``device_row`` the device-resident values of a capturable GPU step.
    """
    names = variant.state_names
    options = {"mirror": mirror, "mirror_rounding": precision.mirror_rounding}
    if scales is not None:
        formats = tuple(precision.format(name, spec) for name in names)
        return backend.blockwise_launcher(variant.rule, spec.record, p, g, states, scales, ema, formats=formats,
                                          **options)
    if device_row is not None:
        options["device_values"] = device_row
    options["roundings"] = tuple(precision.rounding(name, spec) for name in names)
    if spec.segmented is not None:
        return backend.segmented_launcher(spec.segmented, spec.record, p, g, states, ema, segments, **options)
    return backend.elementwise_launcher(variant.rule, spec.record, p, g, states, ema, **options)
