"""Scalar pieces shared by several rules."""

from __future__ import annotations

from numba.extending import register_jitable

from ..config import element_jit


@element_jit
def adam_moments(g, m, v, c):
    """The Adam family's moment update: ``(beta1 m + (1 - beta1) g,
    beta2 v + (1 - beta2) g^2)``, reading ``c.b1``, ``c.one_minus_b1``,
    ``c.b2``, ``c.one_minus_b2`` from any coefficient record that has them."""
    return c.b1 * m + c.one_minus_b1 * g, c.b2 * v + c.one_minus_b2 * g * g


@register_jitable
def decay_terms(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """``(l2, decay)``: coupled weight decay adds ``l2 * p`` to the gradient;
    decoupled weight decay multiplies the parameter by ``decay`` first."""
    if decoupled:
        return 0.0, 1.0 - lr * weight_decay
    return weight_decay, 1.0
