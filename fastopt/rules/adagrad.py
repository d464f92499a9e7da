"""Adagrad with learning-rate decay."""

from __future__ import annotations

import math

from ..config import element_jit
from ._checks import boolean, nonnegative
from ._spec import Spec, Variant, coefficient_record

AdagradCoefficients = coefficient_record("AdagradCoefficients", "l2 lr eps")


@element_jit
def adagrad(p, g, s, c):
    (acc,) = s
    g = g + c.l2 * p
    acc = acc + g * g
    return p - c.lr * g / (math.sqrt(acc) + c.eps), (acc,)


VARIANT = Variant(adagrad, ("sum",))


def _coefficients(h, step, carry):
    lr = h.lr / (1.0 + (step - 1) * h.lr_decay)
    return AdagradCoefficients(l2=h.weight_decay, lr=lr, eps=h.eps), carry


DOC = r"""Adagrad.

    .. math::

        g &\leftarrow g + \lambda p \\
        \tilde\eta &= \eta / (1 + (t - 1)\,\text{lr\_decay}) \\
        s_t &= s_{t-1} + g^2 \quad (s_0 = \text{initial\_accumulator\_value}) \\
        p &\leftarrow p - \tilde\eta\, g / (\sqrt{s_t} + \epsilon)

    Same defaults and semantics as ``torch.optim.Adagrad``.
    """

SPEC = Spec(
    name="adagrad",
    class_name="Adagrad",
    doc=DOC,
    defaults=dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False),
    checks=dict(lr=nonnegative, lr_decay=nonnegative, weight_decay=nonnegative,
                initial_accumulator_value=nonnegative, eps=nonnegative, maximize=boolean),
    variant=lambda h: VARIANT,
    record=AdagradCoefficients,
    coefficients=_coefficients,
    state_fill={"sum": lambda h: h.initial_accumulator_value},
    torch_name="Adagrad",
    state_roles=dict(sum="sum"),
)
