"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

import math

from numba.extending import register_jitable

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._math import adam_moments, decay_terms
from ._spec import Spec, Variant, coefficient_record

NAdamCoefficients = coefficient_record(
    "NAdamCoefficients", "l2 decay b1 one_minus_b1 b2 one_minus_b2 inv_bc2 eps grad_step avg_step")


@element_jit
def nadam(p, g, s, c):
    m, v = s
    g = g + c.l2 * p
    m, v = adam_moments(g, m, v, c)
    denom = math.sqrt(v * c.inv_bc2) + c.eps
    return c.decay * p - (c.grad_step * g + c.avg_step * m) / denom, (m, v)


VARIANT = Variant(nadam, ("exp_avg", "exp_avg_sq"))


@register_jitable
def _mu(b1: float, psi: float, t: int) -> float:
    """The momentum coefficient of step ``t`` (Dozat's schedule, as torch)."""
    return b1 * (1.0 - 0.5 * 0.96 ** (t * psi))


def _coefficients(h, step, carry):
    """Per-step constants; ``carry`` is ``(mu_product,)``, the running product
    of the momentum coefficients before this step."""
    b1, b2 = h.betas
    lr, psi = h.lr, h.momentum_decay
    l2, decay = decay_terms(lr, h.weight_decay, h.decoupled_weight_decay)
    mu, mu_next = _mu(b1, psi, step), _mu(b1, psi, step + 1)
    product = carry[0] * mu
    return NAdamCoefficients(l2=l2, decay=decay, b1=b1, one_minus_b1=1.0 - b1, b2=b2, one_minus_b2=1.0 - b2,
                             inv_bc2=1.0 / (1.0 - b2**step), eps=h.eps,
                             grad_step=lr * (1.0 - mu) / (1.0 - product),
                             avg_step=lr * mu_next / (1.0 - product * mu_next)), (product,)


DOC = r"""NAdam: Adam with Nesterov momentum (Dozat 2016), with momentum decay.

    .. math::

        g &\leftarrow g + \lambda p \quad\text{or, with decoupled\_weight\_decay,}\quad
             p \leftarrow p\,(1 - \eta\lambda) \\
        \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{t\psi}\right), \qquad
        \Pi_t = \prod_{k \le t} \mu_k \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        d &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        p &\leftarrow p - \eta \frac{1 - \mu_t}{1 - \Pi_t} \frac{g}{d}
             - \eta \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d}

    with :math:`\eta` = ``lr``, :math:`\lambda` = ``weight_decay``,
    :math:`\psi` = ``momentum_decay``. :math:`\Pi_t` is kept on the host as the
    float ``mu_product`` in each parameter's state (saved in ``state_dict``).
    Same defaults and semantics as ``torch.optim.NAdam``.
    """

SPEC = Spec(
    name="nadam",
    class_name="NAdam",
    doc=DOC,
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
                momentum_decay=nonnegative, decoupled_weight_decay=boolean, maximize=boolean),
    variant=lambda h: VARIANT,
    record=NAdamCoefficients,
    coefficients=_coefficients,
    carry=(("mu_product", 1.0),),
    torch_name="NAdam",
)
