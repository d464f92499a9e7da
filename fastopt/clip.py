"""Standalone global-norm gradient clipping (torch.nn.utils.clip_grad_norm_).

Inside an optimizer, prefer ``max_grad_norm=``: the clip factor is then folded
into the update pass instead of rescaling the gradients in a pass of its own.
"""

from __future__ import annotations

import math

from ._groups import backend_for
from .params import FlatParams

CLIP_EPS = 1e-6
"""Added to the norm before dividing, as torch.nn.utils.clip_grad_norm_ does."""


def _flat_grads(grads):
    if isinstance(grads, FlatParams):
        return [(grads.grad, "grads")]
    if not isinstance(grads, (list, tuple)):
        grads = [grads]
    out = []
    for k, g in enumerate(grads):
        backend = backend_for(g)
        flat, _ = backend.pair(g, g, f"grads[{k}]")
        out.append((flat, f"grads[{k}]"))
    return out


def global_norm(grads) -> float:
    """The L2 norm of all gradients together (deterministic, float64)."""
    return math.sqrt(sum(backend_for(g).sum_of_squares(g) for g, _ in _flat_grads(grads)))


def clip_grad_norm_(grads, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale ``grads`` in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : array, list of arrays, or FlatParams
        The gradients (for a FlatParams, its grad buffer).
    max_norm : float
        Largest allowed norm (> 0).
    error_if_nonfinite : bool
        Raise ``FloatingPointError`` (changing nothing) if the norm is NaN/inf.

    Returns
    -------
    float
        The norm before clipping. As in torch, the factor is
        ``min(1, max_norm / (norm + 1e-6))``.
    """
    if not (isinstance(max_norm, (int, float)) and max_norm > 0 and math.isfinite(max_norm)):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    flat = _flat_grads(grads)
    norm = math.sqrt(sum(backend_for(g).sum_of_squares(g) for g, _ in flat))
    if not math.isfinite(norm) and error_if_nonfinite:
        raise FloatingPointError(f"the total norm of the gradients is {norm}; nothing was changed")
    factor = max_norm / (norm + CLIP_EPS)
    if factor < 1.0:
        for g, _ in flat:
            backend_for(g).scale_(g, factor)
    return norm
