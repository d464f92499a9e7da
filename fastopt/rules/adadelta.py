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


def _coefficients(h, step, state=None):
    rho = h["rho"]
    return (h["weight_decay"], h["lr"], rho, 1.0 - rho, h["eps"])


DOC = r"""Adadelta.

    .. math::

        g &\leftarrow g + \lambda p \\
        v_t &= \rho v_{t-1} + (1 - \rho) g^2 \\
        \Delta &= \sqrt{u_{t-1} + \epsilon} / \sqrt{v_t + \epsilon} \cdot g \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta^2 \\
        p &\leftarrow p - \eta \Delta

    Same defaults and semantics as ``torch.optim.Adadelta``.
    """

SPEC = Spec(
    class_name="Adadelta",
    doc=DOC,
    name="adadelta",
    defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, rho=unit_closed, eps=nonnegative, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: Variant(adadelta, ("square_avg", "acc_delta")),
    coefficients=_coefficients,
)
