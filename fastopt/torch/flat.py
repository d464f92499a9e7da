"""One flat buffer per (param group, dtype, device): moving torch params into
it, and keeping their gradients there.

At construction the params of a group that share a dtype and a device are
copied into one contiguous buffer, each at an aligned offset, and each
``p.data`` becomes a view of its range (``p`` stays the same
``nn.Parameter``: the model, hooks and other references are untouched). A
twin buffer holds the gradients: a param that already has a ``.grad`` gets
a view of it holding the same values. torch accumulates ``backward()`` into
an existing ``.grad`` in place, so from then on the gradients land in the
flat buffer and a step reads them there, with one kernel launch per buffer.

When a ``.grad`` is not the view any more (``zero_grad(set_to_none=True)``,
torch's default, or a hook, DDP or the user replaced it), the next step
notices it by identity and copies it in (see :meth:`FlatBuffer.gather`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch

from ..backends.blockfloat import BLOCK
from ..params import ParamChain

ALIGN_BYTES = 64
"""Each tensor starts on a multiple of this many bytes (and of 16 elements):
whole cache lines, so the kernel's vector loads and torch's own kernels on
each param view start aligned (torch's CPU allocator aligns the buffer
itself to 64 bytes)."""

SUPPORTED = (torch.float32, torch.float64, torch.bfloat16)

_grad_of = operator.attrgetter("grad")


def alignment(dtype: torch.dtype, state_dtype: str | None) -> int:
    """Elements between tensor starts: 64 bytes and at least 16 elements;
    256 with ``state_dtype="int8"`` (an 8-bit block must not straddle two
    tensors)."""
    elements = max(16, ALIGN_BYTES // dtype.itemsize)
    return math.lcm(elements, BLOCK) if state_dtype == "int8" else elements


def check_param(p: Any, where: str) -> None:
    """Raise (naming ``where``) unless ``p`` is a tensor fastopt can step in a flat buffer."""
    if not isinstance(p, torch.Tensor):
        raise TypeError("optimizer can only optimize Tensors, but one of the params is " + torch.typename(p))
    if not (p.is_leaf or p.retains_grad):
        raise ValueError(f"can't optimize a non-leaf Tensor ({where})")
    if p.layout != torch.strided:
        raise TypeError(f"{where} is a {p.layout} tensor; fastopt.torch steps dense (strided) params")
    if p.is_complex():
        raise TypeError(f"{where} is a complex tensor ({p.dtype}); fastopt.torch steps real float32, float64 "
                        "or bfloat16 params")
    if p.dtype not in SUPPORTED:
        hint = "; keep float32 master weights, or use bfloat16 params" if p.dtype == torch.float16 else ""
        raise TypeError(f"{where} has dtype {p.dtype}; fastopt.torch steps float32, float64 and bfloat16 "
                        f"params{hint}")
    if p.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{where} is on device {p.device}; fastopt.torch steps CPU and CUDA tensors")
    if not _dense(p):
        raise ValueError(f"{where} is not dense (strides {tuple(p.stride())} for shape {tuple(p.shape)}: "
                         "overlapping or with holes); pass a contiguous param")


def check_grad(g: Any, p: torch.Tensor, where: str, optimizer_name: str) -> None:
    """Raise unless gradient ``g`` of ``p`` can be read into the flat buffer."""
    if g.layout != torch.strided:
        raise RuntimeError(f"{optimizer_name} does not support sparse gradients ({where} has a {g.layout} "
                           "gradient); fastopt.torch steps dense gradients")
    if g.is_complex():
        raise TypeError(f"{where} has a complex gradient ({g.dtype}); fastopt.torch steps real gradients")
    if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        raise ValueError(f"{where} has a gradient of shape {tuple(g.shape)}, {g.dtype}, on {g.device}; the "
                         f"param is {tuple(p.shape)}, {p.dtype}, on {p.device}")


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p``'s elements fill ``numel`` consecutive slots of its
    storage (contiguous, or a permutation such as channels-last)."""
    if p.is_contiguous() or p.numel() <= 1:
        return True
    dims = sorted((s, n) for s, n in zip(p.stride(), p.shape) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def storage_span(p: torch.Tensor) -> tuple[int, int, int]:
    """``(storage address, first byte, end byte)`` of the memory ``p`` covers."""
    if p.numel() == 0:
        return (0, 0, 0)
    storage = p.untyped_storage().data_ptr()
    start = storage + int(p.storage_offset()) * p.element_size()
    return storage, start, start + int(p.numel()) * p.element_size()


def check_disjoint(params: Sequence[torch.Tensor], labels: Sequence[str]) -> None:
    """Raise naming both when two params share memory (flattening would untie them)."""
    spans = sorted((storage_span(p)[1:], k) for k, p in enumerate(params) if p.numel())
    for ((_, end), k), ((start, _), j) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"{labels[k]} and {labels[j]} share memory; fastopt.torch moves each param into its "
                             "own range of a flat buffer, which would untie them (pass each tensor once, and "
                             "tie weights by using the same Parameter)")


def _region(flat: torch.Tensor, start: int, like: torch.Tensor) -> torch.Tensor:
    """The view of ``flat[start:start + like.numel()]`` with ``like``'s shape and strides."""
    if like.is_contiguous():
        return flat[start:start + like.numel()].view(like.shape)
    return flat.as_strided(like.shape, like.stride(), start)


class FlatBuffer:
    """The params of one (group, dtype, device) in one flat buffer.

    Attributes
    ----------
    params : list of torch.Tensor
        The params, in the group's order.
    labels : list of str
        Where each param was given (``param_groups[0]['params'][3]``), for errors.
    ids : list of int
        Each param's key in the engine's ``state``.
    data, grad : torch.Tensor
        The flat param and gradient buffers.
    views, grad_views : list of torch.Tensor
        Each param's ``.data`` and its gradient view.
    grad_strides : list of tuple
        Each gradient view's strides.
    chain : ParamChain
        What the engine launches over.
    """

    __slots__ = ("params", "labels", "ids", "ranges", "data", "grad", "views", "grad_views", "grad_strides", "pointers",
                 "chain")

    def __init__(self, params: list[torch.Tensor], labels: list[str], align: int) -> None:
        first = params[0]
        ranges, offset = [], 0
        for p in params:
            ranges.append((offset, offset + p.numel()))
            offset += -(-p.numel() // align) * align
        total = offset  # the last tensor is padded like the others
        self.params, self.labels, self.ranges = params, labels, ranges
        self.ids: list[int] = []
        # Zeros: the gaps between tensors stay zero (a launch covers them).
        self.data = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.views = [_region(self.data, a, p) for p, (a, _) in zip(params, ranges)]
        self.grad_views = [_region(self.grad, a, p) for p, (a, _) in zip(params, ranges)]
        self.grad_strides = [view.stride() for view in self.grad_views]
        self.pointers: list[int] = []
        self.chain = ParamChain(self.data, self.grad, ranges, [tuple(p.shape) for p in params], params=params)

    def adopt(self) -> list[tuple[torch.Tensor, torch.Tensor, Any]]:
        """Copy the params (and existing grads) in and point each ``p.data``
        (and ``p.grad``) at its view. Returns what :func:`undo` needs."""
        undo = []
        with torch.no_grad():
            for p, view, gview in zip(self.params, self.views, self.grad_views):
                view.copy_(p)
                if p.grad is not None:
                    gview.copy_(p.grad)
            for p, view, gview in zip(self.params, self.views, self.grad_views):
                undo.append((p, p.data, p.grad))
                p.data = view
                if p.grad is not None:
                    p.grad = gview
        self.pointers = [p.data_ptr() for p in self.params]
        return undo

    def intact(self) -> bool:
        """Whether every param still lives in the buffer and every grad is its view."""
        params = self.params
        return all(map(operator.is_, map(_grad_of, params), self.grad_views)) and self.params_in_place()

    def params_in_place(self) -> bool:
        """Whether every param's storage is still its view of the flat buffer."""
        return list(map(torch.Tensor.data_ptr, self.params)) == self.pointers

    def grad_addresses(self) -> list[int] | None:
        """Where each param's gradient lies, for a step that reads them in
        place (:meth:`fastopt.optim.Optimizer.apply_step`'s ``grads=``): the
        ``data_ptr`` of every ``.grad`` (its flat view, or a tensor torch's
        backward made), or None when one cannot be read so (None, sparse,
        another dtype, device or layout in memory than the param's view: the
        step then copies them in, as :meth:`gather` does)."""
        # torch itself keeps a .grad's shape, dtype and device those of its
        # param: only the layout and the strides can differ.
        addresses = []
        strided = torch.strided
        for g, view, strides in zip(map(_grad_of, self.params), self.grad_views, self.grad_strides):
            if g is None:
                return None
            if g is not view and (g.layout is not strided or g.stride() != strides):
                return None
            addresses.append(g.data_ptr())
        return addresses

    def moved(self) -> list[int]:
        """Indices of params whose storage is not the flat buffer any more."""
        return [k for k, (p, ptr) in enumerate(zip(self.params, self.pointers)) if p.data_ptr() != ptr]

    def gather(self, optimizer_name: str, repoint: bool = True) -> list[int]:
        """Bring every gradient into the flat buffer; return the indices of
        the params that have one (the others are skipped, as torch skips a
        param whose ``.grad`` is None).

        A gradient that is its view costs an identity check. Any other
        gradient tensor (a new one after ``zero_grad(set_to_none=True)``, or
        one a hook, DDP or the user put there) is copied in, all in one
        ``torch._foreach_copy_`` call, and with ``repoint`` ``p.grad`` then
        becomes the view (same values), so that a later in-place zeroing
        keeps the next step on the fast path.
        """
        active: list[int] = []
        sources, targets, repointed = [], [], []
        strided = torch.strided
        for k, (g, view) in enumerate(zip(map(_grad_of, self.params), self.grad_views)):
            if g is None:
                continue
            active.append(k)
            if g is not view:
                # torch itself keeps a .grad's shape, dtype and device those of its param;
                # only the layout can differ (sparse gradients, e.g. nn.Embedding(sparse=True)).
                if g.layout is not strided:
                    check_grad(g, self.params[k], self.labels[k], optimizer_name)
                sources.append(g)
                targets.append(view)
                repointed.append(k)
        if sources:
            with torch.no_grad():
                torch._foreach_copy_(targets, sources)
            if repoint:
                params, views = self.params, self.grad_views
                for k in repointed:
                    params[k].grad = views[k]
        return active

    def zero_grad(self) -> None:
        """``zero_grad(set_to_none=False)``: one fill of the flat gradient
        buffer; a gradient that is not its view is zeroed in place too (for
        whoever holds it) and replaced by the view."""
        with torch.no_grad():
            foreign = []
            for p, view in zip(self.params, self.grad_views):
                g = p.grad
                if g is not None and g is not view:
                    if g.grad_fn is not None:
                        g.detach_()
                    foreign.append(g)
                    p.grad = view
            if foreign:
                torch._foreach_zero_(foreign)
            self.grad.zero_()

    def refill(self, indices: list[int]) -> None:
        """Copy params ``indices`` (whose ``.data`` was replaced with a tensor
        of the same shape, dtype and device) back into the buffer and point
        them at their views again."""
        with torch.no_grad():
            for k in indices:
                p, view = self.params[k], self.views[k]
                view.copy_(p.data)
                p.data = view
                self.pointers[k] = p.data_ptr()


def undo(records: list[tuple[torch.Tensor, torch.Tensor, Any]]) -> None:
    """Point params and grads back at what they were before :meth:`FlatBuffer.adopt`."""
    with torch.no_grad():
        for p, data, grad in reversed(records):
            p.data = data
            p.grad = grad
