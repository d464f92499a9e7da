"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

import math

from ._common import Spec, Variant, adam_moments, beta_pair, boolean, nonnegative, rule_jit


@rule_jit
def nadam(i, p, g, s, c):
    scale, bound, l2, decay, b1, one_minus_b1, b2, one_minus_b2, inv_bc2, eps, c_grad, c_avg = c
    m, v = s
    d, mi, vi = adam_moments(g[i], p[i], m[i], v[i], scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2)
    m[i] = mi
    v[i] = vi
    denom = math.sqrt(vi * inv_bc2) + eps
    p[i] = decay * p[i] - (c_grad * d + c_avg * mi) / denom


def _mu(b1: float, psi: float, t: int) -> float:
    """The momentum coefficient of step ``t`` (Dozat's schedule, as torch)."""
    return b1 * (1.0 - 0.5 * 0.96 ** (t * psi))


def _coefficients(h, step, state):
    """Per-step constants. Advances the host-side scalar ``state["mu_product"]``
    (the running product of the momentum coefficients), so it must be called
    exactly once per applied step."""
    b1, b2 = h["betas"]
    lr, wd, psi = h["lr"], h["weight_decay"], h["momentum_decay"]
    l2, decay = (0.0, 1.0 - lr * wd) if h["decoupled_weight_decay"] else (wd, 1.0)
    mu, mu_next = _mu(b1, psi, step), _mu(b1, psi, step + 1)
    product = float(state.get("mu_product", 1.0)) * mu
    state["mu_product"] = product
    c_grad = lr * (1.0 - mu) / (1.0 - product)
    c_avg = lr * mu_next / (1.0 - product * mu_next)
    inv_bc2 = 1.0 / (1.0 - b2**step)
    return (l2, decay, b1, 1.0 - b1, b2, 1.0 - b2, inv_bc2, h["eps"], c_grad, c_avg)


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
    class_name="NAdam",
    doc=DOC,
    name="nadam",
    defaults=dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, maximize=False),
    checks=dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
                momentum_decay=nonnegative, decoupled_weight_decay=boolean, maximize=boolean),
    variant=lambda h: Variant(nadam, ("exp_avg", "exp_avg_sq")),
    coefficients=_coefficients,
    host_state=("mu_product",),
)
