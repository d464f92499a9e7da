"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

from ._common import Spec, Variant, beta_pair, boolean, effective_grad, nonnegative, rule_jit


@rule_jit
def adamax(i, p, g, s, c):
    scale, bound, l2, b1, one_minus_b1, b2, eps, clr = c
    m, u = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    mi = b1 * m[i] + one_minus_b1 * d
    ui = b2 * u[i]
    a = abs(d) + eps
    # max(ui, a) by comparisons: a NaN on either side stays NaN (as torch.amax).
    if a > ui or a != a:
        ui = a
    m[i] = mi
    u[i] = ui
    p[i] = p[i] - clr * mi / ui


def _coefficients(h, step, state=None):
    b1, b2 = h["betas"]
    clr = h["lr"] / (1.0 - b1**step)
    return (h["weight_decay"], b1, 1.0 - b1, b2, h["eps"], clr)


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
    class_name="Adamax",
    doc=DOC,
    name="adamax",
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: Variant(adamax, ("exp_avg", "exp_inf")),
    coefficients=_coefficients,
)
