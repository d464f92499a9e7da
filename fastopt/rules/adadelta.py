"""Adadelta."""

from __future__ import annotations

import math

from ._common import Spec, Variant, boolean, effective_grad, nonnegative, rule_jit, unit_closed


@rule_jit
def adadelta(i, p, g, s, c):
    scale, bound, l2, lr, rho, one_minus_rho, eps = c
    sq, acc = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    v = rho * sq[i] + one_minus_rho * d * d
    delta = math.sqrt(acc[i] + eps) / math.sqrt(v + eps) * d
    sq[i] = v
    acc[i] = rho * acc[i] + one_minus_rho * delta * delta
    p[i] = p[i] - lr * delta


def _coefficients(h, step):
    rho = h["rho"]
    return (h["weight_decay"], h["lr"], rho, 1.0 - rho, h["eps"])


SPEC = Spec(
    name="adadelta",
    defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, rho=unit_closed, eps=nonnegative, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: Variant(adadelta, ("square_avg", "acc_delta")),
    coefficients=_coefficients,
)
