"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._spec import Spec, Variant, coefficient_record

AdamaxCoefficients = coefficient_record("AdamaxCoefficients", "l2 b1 one_minus_b1 b2 eps lr")


@element_jit
def adamax(p, g, s, c):
    m, u = s
    g = g + c.l2 * p
    m = c.b1 * m + c.one_minus_b1 * g
    u = c.b2 * u
    a = abs(g) + c.eps
    # max(u, a) by comparisons: a NaN on either side stays NaN (as torch.amax).
    if a > u or a != a:
        u = a
    return p - c.lr * m / u, (m, u)


VARIANT = Variant(adamax, ("exp_avg", "exp_inf"))


def _coefficients(h, step, carry):
    b1, b2 = h.betas
    return AdamaxCoefficients(l2=h.weight_decay, b1=b1, one_minus_b1=1.0 - b1, b2=b2, eps=h.eps,
                              lr=h.lr / (1.0 - b1**step)), carry


DOC = r"""Adamax: Adam with an exponentially weighted infinity norm.

    .. math::

        g &\leftarrow g + \lambda p \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        u_t &= \max(\beta_2 u_{t-1},\ |g| + \epsilon) \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot \frac{m_t}{u_t}

    with :math:`\eta` = ``lr``, :math:`\lambda` = ``weight_decay``. A NaN
    gradient propagates to the state and the parameter. Same defaults and
    semantics as ``torch.optim.Adamax`` (state names ``exp_avg``, ``exp_inf``).
    """

SPEC = Spec(
    name="adamax",
    class_name="Adamax",
    doc=DOC,
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: VARIANT,
    record=AdamaxCoefficients,
    coefficients=_coefficients,
    torch_name="Adamax",
    state_roles=dict(exp_inf="decaying_max"),
)
