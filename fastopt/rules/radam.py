"""RAdam: Adam with a rectified (variance-corrected) adaptive learning rate."""

from __future__ import annotations

import math

from ._common import Spec, Variant, adam_moments, beta_pair, boolean, nonnegative, rule_jit

RHO_THRESHOLD = 5.0
"""The adaptive step is used once the SMA length ``rho_t`` exceeds this (as torch)."""


@rule_jit
def radam(i, p, g, s, c):
    scale, bound, l2, decay, b1, one_minus_b1, b2, one_minus_b2, c_adaptive, c_plain, eps = c
    m, v = s
    d, mi, vi = adam_moments(g[i], p[i], m[i], v[i], scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2)
    m[i] = mi
    v[i] = vi
    # One of c_adaptive, c_plain is zero (chosen on the host from rho_t): no
    # branch on the step here. In the plain phase eps carries an extra 1, so
    # the zero adaptive term never becomes 0/0.
    p[i] = decay * p[i] - mi * (c_adaptive / (math.sqrt(vi) + eps) + c_plain)


def rectification(b2: float, step: int) -> float | None:
    """RAdam's variance rectification factor ``r_t``, or None while
    ``rho_t <= 5`` (the un-adapted phase)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    b2t = b2**step
    rho_t = rho_inf - 2.0 * step * b2t / (1.0 - b2t)
    if not rho_t > RHO_THRESHOLD:
        return None
    return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


def _coefficients(h, step, state=None):
    b1, b2 = h["betas"]
    lr, wd, eps = h["lr"], h["weight_decay"], h["eps"]
    l2, decay = (0.0, 1.0 - lr * wd) if h["decoupled_weight_decay"] else (wd, 1.0)
    bc1 = 1.0 - b1**step
    rect = rectification(b2, step)
    if rect is None:
        c_adaptive, c_plain, eps = 0.0, lr / bc1, eps + 1.0
    else:
        c_adaptive, c_plain = lr * rect * math.sqrt(1.0 - b2**step) / bc1, 0.0
    return (l2, decay, b1, 1.0 - b1, b2, 1.0 - b2, c_adaptive, c_plain, eps)


DOC = r"""RAdam: Adam with a rectified adaptive learning rate (Liu et al. 2019).

    .. math::

        g &\leftarrow g + \lambda p \quad\text{or, with decoupled\_weight\_decay,}\quad
             p \leftarrow p\,(1 - \eta\lambda) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t) \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        p &\leftarrow p - \eta\, \hat m_t\, r_t \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}
             \quad\text{if } \rho_t > 5, \quad\text{else}\quad p \leftarrow p - \eta\, \hat m_t

    with :math:`\eta` = ``lr``, :math:`\lambda` = ``weight_decay``. The switch
    on :math:`\rho_t` is made on the host, per step. Same defaults and semantics
    as ``torch.optim.RAdam``.
    """

SPEC = Spec(
    class_name="RAdam",
    doc=DOC,
    name="radam",
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                  maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
                decoupled_weight_decay=boolean, maximize=boolean),
    variant=lambda h: Variant(radam, ("exp_avg", "exp_avg_sq")),
    coefficients=_coefficients,
)
