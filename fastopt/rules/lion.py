"""Lion: sign of an interpolated momentum, with decoupled weight decay."""

from __future__ import annotations

from ._common import Spec, Variant, beta_pair, boolean, effective_grad, nonnegative, rule_jit


@rule_jit
def lion(i, p, g, s, c):
    scale, bound, l2, decay, lr, b1, one_minus_b1, b2, one_minus_b2 = c
    (m,) = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    mi = m[i]
    u = b1 * mi + one_minus_b1 * d
    # lr * sign(u) by comparisons (u > -u iff u > 0; no literal, so float32
    # stays float32): sign(0) = 0 and a NaN stays NaN.
    if u > -u:
        step = lr
    elif u < -u:
        step = -lr
    else:
        step = lr * u
    p[i] = decay * p[i] - step
    m[i] = b2 * mi + one_minus_b2 * d


def _coefficients(h, step, state=None):
    b1, b2 = h["betas"]
    lr = h["lr"]
    return (0.0, 1.0 - lr * h["weight_decay"], lr, b1, 1.0 - b1, b2, 1.0 - b2)


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
    class_name="Lion",
    doc=DOC,
    name="lion",
    defaults=dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, weight_decay=nonnegative, maximize=boolean),
    variant=lambda h: Variant(lion, ("exp_avg",)),
    coefficients=_coefficients,
)
