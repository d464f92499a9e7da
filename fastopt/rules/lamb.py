"""LAMB: Adam's direction scaled per parameter tensor by a trust ratio.

The element-wise part (moments and the Adam-style direction ``r``) is written
here once, as rule helpers; the two-pass driver that reduces ``||p||`` and
``||r||`` per tensor and then applies the step lives in :mod:`fastopt._lamb`.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import Spec, Variant, adam_moments, beta_pair, boolean, nonnegative, rule_jit

N_COEFFICIENTS = 12
"""Length of the full coefficient tuple (two gradient-transform entries + ten)."""

LR_INDEX = 11
"""Position of ``lr`` in the coefficient tuple; the driver reads it in float64
(the step ``lr * ratio`` is formed in float64, then cast)."""


@rule_jit
def lamb_direction(mi, vi, pi, c):
    """``r = m_hat / (sqrt(v_hat) + eps) + wd * p`` from updated moments."""
    scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2, inv_bc1, inv_bc2, eps, wd, lr = c
    return mi * inv_bc1 / (math.sqrt(vi * inv_bc2) + eps) + wd * pi


@rule_jit
def lamb_moments(i, p, g, s, c):
    """Update ``m``, ``v`` of element ``i`` in place and return its direction ``r``."""
    scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2, inv_bc1, inv_bc2, eps, wd, lr = c
    m, v = s
    d, mi, vi = adam_moments(g[i], p[i], m[i], v[i], scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2)
    m[i] = mi
    v[i] = vi
    return lamb_direction(mi, vi, p[i], c)


def _coefficients(h, step, state=None):
    b1, b2 = h["betas"]
    if h["bias_correction"]:
        inv_bc1, inv_bc2 = 1.0 / (1.0 - b1**step), 1.0 / (1.0 - b2**step)
    else:
        inv_bc1 = inv_bc2 = 1.0
    # l2 = 0: LAMB's weight decay is added to the direction r, not to the gradient.
    return (0.0, b1, 1.0 - b1, b2, 1.0 - b2, inv_bc1, inv_bc2, h["eps"], h["weight_decay"], h["lr"])


def launcher(backend, variant, n_coefficients, dtype, with_ema, segments):
    """``launch(p, g, states, values)`` for one flat buffer whose tensors are
    ``segments`` (``(start, stop)`` ranges; None: the whole buffer is one tensor).

    The hook the optimizer class calls instead of ``backend.launcher`` (see
    :func:`fastopt._lamb.launcher`); CPU only for now.
    """
    from .._lamb import launcher as cpu_launcher

    if backend.name != "cpu":
        raise NotImplementedError("LAMB has no CUDA kernel yet")
    return cpu_launcher(n_coefficients, dtype, with_ema, segments)


DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True, maximize=False)

CHECKS = dict(lr=nonnegative, betas=beta_pair, eps=nonnegative, weight_decay=nonnegative,
              bias_correction=boolean, maximize=boolean)


def lamb_step(p, g, m, v, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
              bias_correction=True, maximize=False, segments=None):
    """One LAMB step over flat arrays, in place.

    Parameters
    ----------
    p, g, m, v : numpy.ndarray
        Parameter, gradient, first and second moment: contiguous, one dtype
        (float32 or float64), one size, no shared memory. ``p``, ``m``, ``v``
        are updated in place (``m``, ``v`` start at zero).
    step : int
        Step number, 1 for the first.
    lr, betas, eps, weight_decay, bias_correction, maximize
        As in the :class:`LAMB` equations.
    segments : sequence of (int, int), optional
        Disjoint ``(start, stop)`` ranges of the flattened ``p``, one per tensor
        (e.g. the tensors of a :class:`~fastopt.FlatParams`): each gets its own
        trust ratio. Elements in no segment keep their value (their moments are
        still updated). Default: the whole array is one tensor.

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument, before any array is touched.
    """
    from .._arrays import check_disjoint, flat_view, param_grad_pair
    from .._lamb import launcher as cpu_launcher

    h = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction,
             maximize=maximize)
    for key, check in CHECKS.items():
        check(key, h[key])
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    pf, gf = param_grad_pair(p, g, "")
    states = []
    for label, arr in (("m", m), ("v", v)):
        a = flat_view(np.asarray(arr), label)
        if a.dtype != pf.dtype or a.size != pf.size:
            raise ValueError(f"{label} must have {pf.size} elements of {pf.dtype}, got {a.size} of {a.dtype}")
        states.append(a)
    check_disjoint([("p", pf), ("g", gf), ("m", states[0]), ("v", states[1])])
    launch = cpu_launcher(N_COEFFICIENTS, pf.dtype, False, segments, n=pf.size)
    head = (-1.0 if maximize else 1.0, math.inf)
    launch(pf, gf, tuple(states), head + _coefficients(h, int(step)))


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
    the thread count); the second applies the step. torch.optim has no LAMB.
    """

SPEC = Spec(
    class_name="LAMB",
    doc=DOC,
    name="lamb",
    defaults=DEFAULTS,
    checks=CHECKS,
    variant=lambda h: Variant(lamb_moments, ("exp_avg", "exp_avg_sq")),
    coefficients=_coefficients,
    launcher=launcher,
)
