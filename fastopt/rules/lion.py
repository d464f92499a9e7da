"""Lion: sign of an interpolated momentum, with decoupled weight decay."""

from __future__ import annotations

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._spec import Spec, Variant, coefficient_record

LionCoefficients = coefficient_record("LionCoefficients", "decay lr b1 one_minus_b1 b2 one_minus_b2")


@element_jit
def lion(p, g, s, c):
    (m,) = s
    u = c.b1 * m + c.one_minus_b1 * g
    # lr * sign(u) by comparisons (u > -u iff u > 0; no literal, so float32
    # stays float32): sign(0) = 0 and a NaN stays NaN.
    if u > -u:
        step = c.lr
    elif u < -u:
        step = -c.lr
    else:
        step = c.lr * u
    return c.decay * p - step, (c.b2 * m + c.one_minus_b2 * g,)


VARIANT = Variant(lion, ("exp_avg",))


def _coefficients(h, step, carry):
    b1, b2 = h.betas
    return LionCoefficients(decay=1.0 - h.lr * h.weight_decay, lr=h.lr, b1=b1, one_minus_b1=1.0 - b1, b2=b2,
                            one_minus_b2=1.0 - b2), carry


DOC = r"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    .. math::

        c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        p &\leftarrow p\,(1 - \eta\lambda) - \eta\, \operatorname{sign}(c_t) \\
        m_t &= \beta_2 m_{t-1} + (1 - \beta_2) g

    with :math:`\eta` = ``lr``, :math:`\lambda` = ``weight_decay`` (decoupled),
    :math:`\operatorname{sign}(0) = 0`; a NaN gradient makes the parameter NaN.
    Defaults are the paper's: ``lr=1e-4``, ``betas=(0.9, 0.99)``; use a learning
    rate 3-10x smaller and a weight decay 3-10x larger than for AdamW. State:
    ``exp_avg``. torch.optim has no Lion.
    """

SPEC = Spec(
    name="lion",
    class_name="Lion",
    doc=DOC,
    defaults=dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: VARIANT,
    record=LionCoefficients,
    coefficients=_coefficients,
)
