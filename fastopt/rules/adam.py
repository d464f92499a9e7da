"""Adam and AdamW (coupled or decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

import math

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._math import adam_moments, decay_terms
from ._spec import Spec, Variant, coefficient_record

AdamCoefficients = coefficient_record(
    "AdamCoefficients", "l2 decay b1 one_minus_b1 b2 one_minus_b2 step_size bc2_sqrt eps")


@element_jit
def adam(p, g, s, c):
    m, v = s
    m, v = adam_moments(g + c.l2 * p, m, v, c)
    return c.decay * p - c.step_size * m / (math.sqrt(v) / c.bc2_sqrt + c.eps), (m, v)


@element_jit
def adam_amsgrad(p, g, s, c):
    m, v, vmax = s
    m, v = adam_moments(g + c.l2 * p, m, v, c)
    # Comparisons, not max(): a NaN on either side stays NaN, as torch.maximum.
    if v > vmax or v != v:
        vmax = v
    return c.decay * p - c.step_size * m / (math.sqrt(vmax) / c.bc2_sqrt + c.eps), (m, v, vmax)


PLAIN = Variant(adam, ("exp_avg", "exp_avg_sq"))
AMSGRAD = Variant(adam_amsgrad, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))


def _variant(h):
    return AMSGRAD if h.amsgrad else PLAIN


def _make_coefficients(decoupled: bool):
    def coefficients(h, step, carry):
        b1, b2 = h.betas
        l2, decay = decay_terms(h.lr, h.weight_decay, decoupled)
        return AdamCoefficients(l2=l2, decay=decay, b1=b1, one_minus_b1=1.0 - b1, b2=b2, one_minus_b2=1.0 - b2,
                                step_size=h.lr / (1.0 - b1**step), bc2_sqrt=math.sqrt(1.0 - b2**step),
                                eps=h.eps), carry

    return coefficients


_CHECKS = dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
               amsgrad=boolean, maximize=boolean)

DOC = r"""Adam (with L2 weight decay added to the gradient), optionally AMSGrad.

    .. math::

        g &\leftarrow g + \lambda p \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ if amsgrad else } v_t \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot
             \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Same defaults and semantics as ``torch.optim.Adam``.
    """

SPEC = Spec(
    name="adam",
    class_name="Adam",
    doc=DOC,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    checks=_CHECKS,
    variant=_variant,
    record=AdamCoefficients,
    coefficients=_make_coefficients(decoupled=False),
    torch_name="Adam",
    state_roles=dict(exp_avg_sq="square", max_exp_avg_sq="max_square"),
)

DOC_W = r"""AdamW: Adam with decoupled weight decay.

    .. math::

        p &\leftarrow p\,(1 - \eta\lambda) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot
             \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    (:math:`\hat v_t` as in :class:`Adam`.) Default ``weight_decay=1e-2``; same
    semantics as ``torch.optim.AdamW``.
    """

SPEC_W = Spec(
    name="adamw",
    class_name="AdamW",
    doc=DOC_W,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    checks=_CHECKS,
    variant=_variant,
    record=AdamCoefficients,
    coefficients=_make_coefficients(decoupled=True),
    torch_name="AdamW",
    state_roles=dict(exp_avg_sq="square", max_exp_avg_sq="max_square"),
)
