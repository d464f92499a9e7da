"""Adadelta."""

from __future__ import annotations

import math

from ..config import element_jit
from ._checks import boolean, nonnegative, unit_closed
from ._spec import Spec, Variant, coefficient_record

AdadeltaCoefficients = coefficient_record("AdadeltaCoefficients", "l2 lr rho one_minus_rho eps")


@element_jit
def adadelta(p, g, s, c):
    sq, acc = s
    g = g + c.l2 * p
    sq = c.rho * sq + c.one_minus_rho * g * g
    # One square root of the quotient, not a quotient of square roots: under
    # the kernels' arcp fast-math, x / sqrt(y) compiles to a reciprocal
    # square root estimate plus a Newton step, with different estimate
    # instructions in vectorised loop bodies and scalar tails, which made the
    # bits depend on the element's position in a launch (and on the thread count).
    delta = math.sqrt((acc + c.eps) / (sq + c.eps)) * g
    acc = c.rho * acc + c.one_minus_rho * delta * delta
    return p - c.lr * delta, (sq, acc)


VARIANT = Variant(adadelta, ("square_avg", "acc_delta"))


def _coefficients(h, step, carry):
    return AdadeltaCoefficients(l2=h.weight_decay, lr=h.lr, rho=h.rho, one_minus_rho=1.0 - h.rho, eps=h.eps), carry


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
    name="adadelta",
    class_name="Adadelta",
    doc=DOC,
    defaults=dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, rho=unit_closed, eps=nonnegative, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: VARIANT,
    record=AdadeltaCoefficients,
    coefficients=_coefficients,
    torch_name="Adadelta",
    state_roles=dict(square_avg="square", acc_delta="square"),
)
