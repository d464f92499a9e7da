"""RAdam: Adam with a rectified (variance-corrected) adaptive learning rate."""

from __future__ import annotations

import math

from numba.extending import register_jitable

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._math import adam_moments, decay_terms
from ._spec import Spec, Variant, coefficient_record

RHO_THRESHOLD = 5.0
"""The adaptive step is used once the SMA length ``rho_t`` exceeds this (as torch)."""

RAdamCoefficients = coefficient_record(
    "RAdamCoefficients", "l2 decay b1 one_minus_b1 b2 one_minus_b2 adaptive plain eps")


@element_jit
def radam(p, g, s, c):
    m, v = s
    m, v = adam_moments(g + c.l2 * p, m, v, c)
    # One of adaptive, plain is zero (chosen on the host from rho_t): no
    # branch on the step here. In the plain phase eps carries an extra 1, so
    # the zero adaptive term never becomes 0/0.
    return c.decay * p - m * (c.adaptive / (math.sqrt(v) + c.eps) + c.plain), (m, v)


VARIANT = Variant(radam, ("exp_avg", "exp_avg_sq"))


@register_jitable
def rectification(b2: float, step: int) -> float:
    """RAdam's variance rectification factor ``r_t``, or 0.0 while
    ``rho_t <= 5`` (the un-adapted phase)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    b2t = b2**step
    rho_t = rho_inf - 2.0 * step * b2t / (1.0 - b2t)
    if not rho_t > RHO_THRESHOLD:
        return 0.0
    return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


def _coefficients(h, step, carry):
    b1, b2 = h.betas
    lr, eps = h.lr, h.eps
    l2, decay = decay_terms(lr, h.weight_decay, h.decoupled_weight_decay)
    bc1 = 1.0 - b1**step
    rect = rectification(b2, step)
    if rect == 0.0:
        adaptive, plain, eps = 0.0, lr / bc1, eps + 1.0
    else:
        adaptive, plain = lr * rect * math.sqrt(1.0 - b2**step) / bc1, 0.0
    return RAdamCoefficients(l2=l2, decay=decay, b1=b1, one_minus_b1=1.0 - b1, b2=b2, one_minus_b2=1.0 - b2,
                             adaptive=adaptive, plain=plain, eps=eps), carry


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
    name="radam",
    class_name="RAdam",
    doc=DOC,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                  maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
                decoupled_weight_decay=boolean, maximize=boolean),
    variant=lambda h: VARIANT,
    record=RAdamCoefficients,
    coefficients=_coefficients,
    torch_name="RAdam",
)
