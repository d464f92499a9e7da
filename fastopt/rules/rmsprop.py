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


def _coefficients(h, step):
    alpha = h["alpha"]
    return (h["weight_decay"], h["lr"], alpha, 1.0 - alpha, h["eps"], h["momentum"])


SPEC = Spec(
    name="rmsprop",
    defaults=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    checks=dict(lr=nonnegative, alpha=nonnegative, eps=nonnegative, weight_decay=nonnegative,
                momentum=nonnegative, centered=boolean, maximize=boolean),
    variant=_variant,
    coefficients=_coefficients,
)
