"""SGD with optional momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from ._common import Spec, Variant, boolean, effective_grad, nonnegative, rule_jit


@rule_jit
def sgd(i, p, g, s, c):
    scale, bound, l2, lr, mu, damp, nest_g, nest_b = c
    d = effective_grad(g[i], p[i], scale, bound, l2)
    p[i] = p[i] - lr * d


@rule_jit
def sgd_momentum(i, p, g, s, c):
    scale, bound, l2, lr, mu, damp, nest_g, nest_b = c
    (buf,) = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    b = mu * buf[i] + damp * d
    buf[i] = b
    # Nesterov: d + mu*b; classical: b. Selected by (nest_g, nest_b) = (1, mu) or (0, 1).
    p[i] = p[i] - lr * (nest_g * d + nest_b * b)


def _variant(h):
    if h["momentum"] != 0:
        return Variant(sgd_momentum, ("momentum_buffer",))
    return Variant(sgd, ())


def _coefficients(h, step, state=None):
    mu = float(h["momentum"])
    # torch starts the buffer as a copy of the gradient: no decay, no dampening.
    mu_eff, damp_eff = (0.0, 1.0) if step == 1 else (mu, 1.0 - h["dampening"])
    nest_g, nest_b = (1.0, mu) if h["nesterov"] else (0.0, 1.0)
    return (h["weight_decay"], h["lr"], mu_eff, damp_eff, nest_g, nest_b)


def _cross_check(h):
    if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
        raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")


DOC = r"""Stochastic gradient descent with optional (Nesterov) momentum.

    Update for each element, with :math:`g` the gradient (negated if ``maximize``):

    .. math::

        g &\leftarrow g + \lambda p \\
        b_t &= \mu b_{t-1} + (1 - \tau) g \quad (b_1 = g) \\
        d &= g + \mu b_t \text{ if nesterov else } b_t \quad (d = g \text{ if } \mu = 0) \\
        p &\leftarrow p - \eta d

    with :math:`\eta` = ``lr``, :math:`\mu` = ``momentum``, :math:`\tau` =
    ``dampening``, :math:`\lambda` = ``weight_decay``. Same defaults and
    semantics as ``torch.optim.SGD``; see :class:`Optimizer` for ``params``.
    """

SPEC = Spec(
    class_name="SGD",
    doc=DOC,
    name="sgd",
    defaults=dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    checks=dict(lr=nonnegative, momentum=nonnegative, dampening=nonnegative,
                weight_decay=nonnegative, nesterov=boolean, maximize=boolean),
    variant=_variant,
    coefficients=_coefficients,
    cross_check=_cross_check,
)
