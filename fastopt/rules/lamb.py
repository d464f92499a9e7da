"""LAMB: Adam's direction scaled per parameter tensor by a trust ratio.

The element-wise pieces (moments and the Adam-style direction ``r``) and the
per-tensor trust ratio are written here; the backends' two-pass segmented
driver reduces ``||p||`` and ``||r||`` per tensor and applies the step.
"""

from __future__ import annotations

import math

from ..config import element_jit
from ._checks import beta_pair, boolean, nonnegative
from ._math import adam_moments
from ._spec import Segmented, Spec, Variant, coefficient_record

LAMBCoefficients = coefficient_record(
    "LAMBCoefficients", "b1 one_minus_b1 b2 one_minus_b2 inv_bc1 inv_bc2 eps weight_decay lr")


@element_jit
def lamb_recompute(p, s, c):
    """``r = m_hat / (sqrt(v_hat) + eps) + wd * p`` from the stored moments."""
    m, v = s
    return m * c.inv_bc1 / (math.sqrt(v * c.inv_bc2) + c.eps) + c.weight_decay * p


@element_jit
def lamb_direction(p, g, s, c):
    """The new moments of one element and its direction ``r``."""
    m, v = s
    m, v = adam_moments(g, m, v, c)
    return lamb_recompute(p, (m, v), c), (m, v)


@element_jit
def lamb_step_size(sum_p2, sum_r2, lr):
    """``lr * ||p|| / ||r||`` for one tensor (``lr`` when either norm is 0), in float64."""
    w_norm = math.sqrt(sum_p2)
    r_norm = math.sqrt(sum_r2)
    if w_norm > 0.0 and r_norm > 0.0:
        return lr * (w_norm / r_norm)
    return lr


VARIANT = Variant(lamb_direction, ("exp_avg", "exp_avg_sq"))


def _coefficients(h, step, carry):
    b1, b2 = h.betas
    if h.bias_correction:
        inv_bc1, inv_bc2 = 1.0 / (1.0 - b1**step), 1.0 / (1.0 - b2**step)
    else:
        inv_bc1 = inv_bc2 = 1.0
    return LAMBCoefficients(b1=b1, one_minus_b1=1.0 - b1, b2=b2, one_minus_b2=1.0 - b2, inv_bc1=inv_bc1,
                            inv_bc2=inv_bc2, eps=h.eps, weight_decay=h.weight_decay, lr=h.lr), carry


DOC = r"""LAMB: layer-wise adaptive moments (You et al. 2019, "Large Batch
    Optimization for Deep Learning").

    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \quad \hat v_t = v_t / (1 - \beta_2^t)
            \quad (\hat m_t = m_t,\ \hat v_t = v_t \text{ without bias\_correction}) \\
        r &= \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + \lambda p \\
        \phi &= \frac{\lVert p_S \rVert_2}{\lVert r_S \rVert_2}
            \quad (\phi = 1 \text{ if either norm is } 0) \\
        p_S &\leftarrow p_S - \eta\, \phi\, r_S

    for each tensor :math:`S` (each named tensor of a
    :class:`~fastopt.FlatParams`, else each param array), with :math:`\eta` =
    ``lr``, :math:`\lambda` = ``weight_decay``. Two passes over memory: the
    first updates the moments and sums :math:`p^2` and :math:`r^2` per tensor
    in float64 (fixed blocks, fixed combine order: bit-reproducible whatever
    the thread count); the second applies the step. Large-batch training
    typically uses a learning rate 10x that of Adam (``lr=1e-2`` trains the
    spiral MLP of ``fastopt train``). torch.optim has no LAMB.
    """

SPEC = Spec(
    name="lamb",
    class_name="LAMB",
    doc=DOC,
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
                bias_correction=boolean, maximize=boolean),
    variant=lambda h: VARIANT,
    record=LAMBCoefficients,
    coefficients=_coefficients,
    segmented=Segmented(direction=lamb_direction, recompute=lamb_recompute, step_size=lamb_step_size),
    state_roles=dict(exp_avg_sq="square"),
)
