"""Adagrad with learning-rate decay."""

from __future__ import annotations

import math

from ._common import Spec, Variant, boolean, effective_grad, nonnegative, rule_jit


@rule_jit
def adagrad(i, p, g, s, c):
    scale, bound, l2, clr, eps = c
    (acc,) = s
    d = effective_grad(g[i], p[i], scale, bound, l2)
    a = acc[i] + d * d
    acc[i] = a
    p[i] = p[i] - clr * d / (math.sqrt(a) + eps)


def _coefficients(h, step, state=None):
    clr = h["lr"] / (1.0 + (step - 1) * h["lr_decay"])
    return (h["weight_decay"], clr, h["eps"])


DOC = r"""Adagrad.

    .. math::

        g &\leftarrow g + \lambda p \\
        \tilde\eta &= \eta / (1 + (t - 1)\,\text{lr\_decay}) \\
        s_t &= s_{t-1} + g^2 \quad (s_0 = \text{initial\_accumulator\_value}) \\
        p &\leftarrow p - \tilde\eta\, g / (\sqrt{s_t} + \epsilon)

    Same defaults and semantics as ``torch.optim.Adagrad``.
    """

SPEC = Spec(
    class_name="Adagrad",
    doc=DOC,
    name="adagrad",
    defaults=dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False),
    checks=dict(lr=nonnegative, lr_decay=nonnegative, weight_decay=nonnegative,
                initial_accumulator_value=nonnegative, eps=nonnegative, maximize=boolean),
    variant=lambda h: Variant(adagrad, ("sum",)),
    coefficients=_coefficients,
    state_fill={"sum": lambda h: h["initial_accumulator_value"]},
)
