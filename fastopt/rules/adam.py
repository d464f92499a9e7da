"""Adam and AdamW (coupled or decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

import math

from ._common import Spec, Variant, adam_moments, beta_pair, boolean, nonnegative, rule_jit


@rule_jit
def adam(i, p, g, s, c):
    scale, bound, l2, decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps = c
    m, v = s
    d, mi, vi = adam_moments(g[i], p[i], m[i], v[i], scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2)
    m[i] = mi
    v[i] = vi
    p[i] = decay * p[i] - step_size * mi / (math.sqrt(vi) / bc2_sqrt + eps)


@rule_jit
def adam_amsgrad(i, p, g, s, c):
    scale, bound, l2, decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps = c
    m, v, vmax = s
    d, mi, vi = adam_moments(g[i], p[i], m[i], v[i], scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2)
    m[i] = mi
    v[i] = vi
    vm = vmax[i]
    if vi > vm:
        vm = vi
    vmax[i] = vm
    p[i] = decay * p[i] - step_size * mi / (math.sqrt(vm) / bc2_sqrt + eps)


def _variant(h):
    if h["amsgrad"]:
        return Variant(adam_amsgrad, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
    return Variant(adam, ("exp_avg", "exp_avg_sq"))


def _make_coefficients(decoupled: bool):
    def coefficients(h, step, state=None):
        b1, b2 = h["betas"]
        lr, wd = h["lr"], h["weight_decay"]
        l2, decay = (0.0, 1.0 - lr * wd) if decoupled else (wd, 1.0)
        step_size = lr / (1.0 - b1**step)
        bc2_sqrt = math.sqrt(1.0 - b2**step)
        return (l2, decay, b1, 1.0 - b1, b2, 1.0 - b2, step_size, bc2_sqrt, h["eps"])

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
    class_name="Adam",
    doc=DOC,
    name="adam",
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    checks=_CHECKS,
    variant=_variant,
    coefficients=_make_coefficients(decoupled=False),
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
    class_name="AdamW",
    doc=DOC_W,
    name="adamw",
    defaults=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    checks=_CHECKS,
    variant=_variant,
    coefficients=_make_coefficients(decoupled=True),
)
