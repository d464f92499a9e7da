"""SGD with optional momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from ..config import element_jit
from ._checks import boolean, nonnegative
from ._spec import Spec, Variant, coefficient_record

SGDCoefficients = coefficient_record("SGDCoefficients", "l2 lr momentum keep nesterov_grad nesterov_buffer")


@element_jit
def sgd(p, g, s, c):
    g = g + c.l2 * p
    return p - c.lr * g, s


@element_jit
def sgd_momentum(p, g, s, c):
    (b,) = s
    g = g + c.l2 * p
    b = c.momentum * b + c.keep * g
    # Nesterov: g + mu*b; classical: b. Selected by (nesterov_grad, nesterov_buffer) = (1, mu) or (0, 1).
    return p - c.lr * (c.nesterov_grad * g + c.nesterov_buffer * b), (b,)


PLAIN = Variant(sgd, ())
MOMENTUM = Variant(sgd_momentum, ("momentum_buffer",))


def _variant(h):
    return MOMENTUM if h.momentum != 0 else PLAIN


def _coefficients(h, step, carry):
    mu = h.momentum
    # torch starts the buffer as a copy of the gradient: no decay, no dampening.
    mu_step, keep = (0.0, 1.0) if step == 1 else (mu, 1.0 - h.dampening)
    nesterov_grad, nesterov_buffer = (1.0, mu) if h.nesterov else (0.0, 1.0)
    return SGDCoefficients(l2=h.weight_decay, lr=h.lr, momentum=mu_step, keep=keep,
                           nesterov_grad=nesterov_grad, nesterov_buffer=nesterov_buffer), carry


def _cross_check(h):
    if h.nesterov and (h.momentum <= 0 or h.dampening != 0):
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
    semantics as ``torch.optim.SGD``; see :class:`~fastopt.Optimizer` for
    ``params`` and the training-loop options.
    """

SPEC = Spec(
    name="sgd",
    class_name="SGD",
    doc=DOC,
    defaults=dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    checks=dict(lr=nonnegative, momentum=nonnegative, dampening=nonnegative,
                weight_decay=nonnegative, nesterov=boolean, maximize=boolean),
    variant=_variant,
    record=SGDCoefficients,
    coefficients=_coefficients,
    cross_check=_cross_check,
    torch_name="SGD",
)
