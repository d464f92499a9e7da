"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

import math

from ._common import Spec, Variant, boolean, effective_grad, nonnegative, rule_jit


@rule_jit
def rmsprop(i, p, g, s, c):
    scale, bound, l2, lr, alpha, one_minus_alpha, eps, mu = c
    (sq,) = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    v = alpha * sq[i] + one_minus_alpha * d * d
    sq[i] = v
    p[i] = p[i] - lr * d / (math.sqrt(v) + eps)


@rule_jit
def rmsprop_momentum(i, p, g, s, c):
    scale, bound, l2, lr, alpha, one_minus_alpha, eps, mu = c
    sq, buf = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    v = alpha * sq[i] + one_minus_alpha * d * d
    sq[i] = v
    b = mu * buf[i] + d / (math.sqrt(v) + eps)
    buf[i] = b
    p[i] = p[i] - lr * b


@rule_jit
def rmsprop_centered(i, p, g, s, c):
    scale, bound, l2, lr, alpha, one_minus_alpha, eps, mu = c
    sq, avg = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    v = alpha * sq[i] + one_minus_alpha * d * d
    a = avg[i] + one_minus_alpha * (d - avg[i])
    sq[i] = v
    avg[i] = a
    p[i] = p[i] - lr * d / (math.sqrt(v - a * a) + eps)


@rule_jit
def rmsprop_centered_momentum(i, p, g, s, c):
    scale, bound, l2, lr, alpha, one_minus_alpha, eps, mu = c
    sq, buf, avg = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    v = alpha * sq[i] + one_minus_alpha * d * d
    a = avg[i] + one_minus_alpha * (d - avg[i])
    sq[i] = v
    avg[i] = a
    b = mu * buf[i] + d / (math.sqrt(v - a * a) + eps)
    buf[i] = b
    p[i] = p[i] - lr * b


def _variant(h):
    momentum, centered = h["momentum"] > 0, h["centered"]
    if momentum and centered:
        return Variant(rmsprop_centered_momentum, ("square_avg", "momentum_buffer", "grad_avg"))
    if centered:
        return Variant(rmsprop_centered, ("square_avg", "grad_avg"))
    if momentum:
        return Variant(rmsprop_momentum, ("square_avg", "momentum_buffer"))
    return Variant(rmsprop, ("square_avg",))


def _coefficients(h, step, state=None):
    alpha = h["alpha"]
    return (h["weight_decay"], h["lr"], alpha, 1.0 - alpha, h["eps"], h["momentum"])


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
    class_name="RMSprop",
    doc=DOC,
    name="rmsprop",
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    checks=dict(lr=nonnegative, alpha=nonnegative, eps=nonnegative, weight_decay=nonnegative,
                momentum=nonnegative, centered=boolean, maximize=boolean),
    variant=_variant,
    coefficients=_coefficients,
)
