"""The gradient guard: the one read-only pass over the gradients that
clipping and the non-finite check need, folded into the update as a factor."""

from __future__ import annotations

import math

CLIP_EPS = 1e-6
"""Added to the norm before dividing, as torch.nn.utils.clip_grad_norm_ does."""

NONFINITE_POLICIES = ("skip", "raise", "ignore")


class NonFiniteGradientError(FloatingPointError):
    """Raised by ``step()`` with ``nonfinite="raise"``; nothing was changed."""


def sum_of_squares(grads) -> float:
    """Deterministic float64 sum of squares of ``(backend, gradient)`` pairs."""
    return sum(backend.sum_of_squares(g) for backend, g in grads)


def all_finite(grads) -> bool:
    return all(backend.all_finite(g) for backend, g in grads)


def guarded_scale(grads, scale: float, max_grad_norm: float | None, policy: str):
    """``(factor, norm)`` for the ``(backend, gradient)`` pairs ``grads``: the
    gradient factor for this step (``scale``, times the clip factor when the
    norm exceeds ``max_grad_norm``), and the global
    norm of the scaled gradients; ``factor`` is None when a non-finite
    gradient means the step must not be applied (``policy`` "skip"/"raise").
    With policy "ignore" and no clipping nothing is read: ``(scale, None)``."""
    if policy == "ignore" and max_grad_norm is None:
        return scale, None
    total = sum_of_squares(grads)
    # A non-finite sum is either a NaN/inf gradient or float64 overflow of
    # huge-but-finite ones; only the former skips.
    if not math.isfinite(total) and policy != "ignore" and not all_finite(grads):
        return None, math.nan
    norm = math.sqrt(total) * scale
    if max_grad_norm is not None and norm > max_grad_norm:
        scale *= max_grad_norm / (norm + CLIP_EPS)
    return scale, norm
