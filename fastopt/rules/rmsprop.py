"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

import math

from ..config import element_jit
from ._checks import boolean, nonnegative
from ._spec import Spec, Variant, coefficient_record

RMSpropCoefficients = coefficient_record("RMSpropCoefficients", "l2 lr alpha one_minus_alpha eps momentum")


@element_jit
def rmsprop(p, g, s, c):
    (sq,) = s
    g = g + c.l2 * p
    sq = c.alpha * sq + c.one_minus_alpha * g * g
    return p - c.lr * g / (math.sqrt(sq) + c.eps), (sq,)


@element_jit
def rmsprop_momentum(p, g, s, c):
    sq, b = s
    g = g + c.l2 * p
    sq = c.alpha * sq + c.one_minus_alpha * g * g
    b = c.momentum * b + g / (math.sqrt(sq) + c.eps)
    return p - c.lr * b, (sq, b)


@element_jit
def rmsprop_centered(p, g, s, c):
    sq, avg = s
    g = g + c.l2 * p
    sq = c.alpha * sq + c.one_minus_alpha * g * g
    avg = avg + c.one_minus_alpha * (g - avg)
    return p - c.lr * g / (math.sqrt(sq - avg * avg) + c.eps), (sq, avg)


@element_jit
def rmsprop_centered_momentum(p, g, s, c):
    sq, b, avg = s
    g = g + c.l2 * p
    sq = c.alpha * sq + c.one_minus_alpha * g * g
    avg = avg + c.one_minus_alpha * (g - avg)
    b = c.momentum * b + g / (math.sqrt(sq - avg * avg) + c.eps)
    return p - c.lr * b, (sq, b, avg)


VARIANTS = {
    (False, False): Variant(rmsprop, ("square_avg",)),
    (True, False): Variant(rmsprop_momentum, ("square_avg", "momentum_buffer")),
    (False, True): Variant(rmsprop_centered, ("square_avg", "grad_avg")),
    (True, True): Variant(rmsprop_centered_momentum, ("square_avg", "momentum_buffer", "grad_avg")),
}
"""(momentum > 0, centered) -> variant."""


def _variant(h):
    return VARIANTS[h.momentum > 0, bool(h.centered)]


def _coefficients(h, step, carry):
    return RMSpropCoefficients(l2=h.weight_decay, lr=h.lr, alpha=h.alpha, one_minus_alpha=1.0 - h.alpha,
                               eps=h.eps, momentum=h.momentum), carry


DOC = r"""RMSprop, optionally centered and with momentum.

    .. math::

        g &\leftarrow g + \lambda p \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) g \quad \text{(centered only)} \\
        \tilde v &= v_t - \bar g_t^2 \text{ if centered else } v_t \\
        b_t &= \mu b_{t-1} + g / (\sqrt{\tilde v} + \epsilon) \quad \text{(if } \mu > 0) \\
        p &\leftarrow p - \eta\, b_t \text{ if } \mu > 0 \text{ else } p - \eta\, g / (\sqrt{\tilde v} + \epsilon)

    Same defaults and semantics as ``torch.optim.RMSprop``.
    """

SPEC = Spec(
    name="rmsprop",
    class_name="RMSprop",
    doc=DOC,
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    checks=dict(lr=nonnegative, alpha=nonnegative, eps=nonnegative, weight_decay=nonnegative,
                momentum=nonnegative, centered=boolean, maximize=boolean),
    variant=_variant,
    record=RMSpropCoefficients,
    coefficients=_coefficients,
    torch_name="RMSprop",
    state_roles=dict(square_avg="square"),
)
