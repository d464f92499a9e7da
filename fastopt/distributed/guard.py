"""Global-norm clipping and the non-finite guard across ranks.

Each rank reduces only its own slice of the (already summed) gradients; the
ranks then exchange one ``(sum of squares, finite)`` pair each with a single
``Allgather`` and add the partial sums in rank order. Every rank therefore
computes the same norm from the same numbers and takes the same decision:
all apply the step with the same clip factor, or all skip it.
"""

from __future__ import annotations

import math

import numpy as np

from ..clip import CLIP_EPS


def partial(backend, g) -> tuple[float, bool]:
    """``(sum of squares, finite)`` of one rank's gradient slice ``g``."""
    total = backend.sum_of_squares(g) if g.size else 0.0
    return total, math.isfinite(total) or backend.all_finite(g)


def decide(comm, mine: tuple[float, bool], scale: float, max_grad_norm: float | None, policy: str):
    """``(factor, norm)`` agreed by every rank of ``comm``: the gradient factor
    (``scale``, times the clip factor when the global norm of the scaled
    gradients exceeds ``max_grad_norm``) and that norm; ``factor`` is None when
    some rank holds a NaN/inf gradient and ``policy`` is "skip" or "raise"."""
    parts = np.empty((comm.Get_size(), 2), np.float64)
    comm.Allgather(np.array([mine[0], 1.0 if mine[1] else 0.0]), parts)
    total = 0.0
    for value in parts[:, 0]:  # rank order: the same sum on every rank
        total += float(value)
    if policy != "ignore" and not parts[:, 1].all():
        return None, math.nan
    norm = math.sqrt(total) * scale
    if max_grad_norm is not None and norm > max_grad_norm:
        scale *= max_grad_norm / (norm + CLIP_EPS)
    return scale, norm
