"""Pieces shared by every optimizer rule and spec.

A *rule* is an ``@njit`` function ``rule(i, p, g, s, c)`` that updates element
``i`` of the parameter array ``p`` in place, reading the gradient ``g`` and the
tuple of state arrays ``s``; ``c`` is the tuple of per-step constants, already
cast to the buffer's dtype. Rules contain no loops, no allocation and no
CPU-only constructs, so the same function compiles for the CPU loop and as a
CUDA device function.

Every coefficient tuple starts with ``(grad_scale, grad_bound, l2)``:
``grad_scale`` folds the sign for ``maximize``, loss-scale unscaling, gradient
accumulation averaging and global-norm clipping into one multiply;
``grad_bound`` is the value-clipping bound (``inf`` when off); ``l2`` is the
coupled (torch-style) weight decay added to the gradient.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

rule_jit = njit(error_model="numpy", fastmath={"arcp", "afn", "nsz"})
"""Decorator for rules and their helpers: no ZeroDivisionError checks, so the
division in an update vectorises."""


@rule_jit
def effective_grad(g, p, scale, bound, l2):
    """Scaled, value-clipped gradient plus coupled weight decay.

    Comparisons (not min/max) so that a NaN gradient stays NaN.
    """
    g = scale * g
    if g > bound:
        g = bound
    elif g < -bound:
        g = -bound
    return g + l2 * p


@rule_jit
def adam_moments(g, p, m, v, scale, bound, l2, b1, one_minus_b1, b2, one_minus_b2):
    """The Adam family's shared start, on scalars: the effective gradient
    ``d`` and the updated first and second moments. Returns ``(d, m, v)``.
    (Scalars in and out, no arrays: the CUDA simulator cannot pass its arrays
    to an ``@njit`` helper.)"""
    d = effective_grad(g, p, scale, bound, l2)
    return d, b1 * m + one_minus_b1 * d, b2 * v + one_minus_b2 * d * d


@dataclass(frozen=True)
class Variant:
    """A compiled rule and the names of the state arrays it takes, in order."""

    rule: Any
    state_names: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """Everything the library needs to know about one optimizer.

    Attributes
    ----------
    name : str
        Lower-case registry name (``"adam"``).
    class_name : str
        Public class name (``"Adam"``).
    doc : str
        The class docstring, with the update equations.
    defaults : dict
        torch.optim's defaults; ``None`` marks a required hyperparameter.
    checks : dict
        Hyperparameter name -> checker ``f(name, value)`` raising ``ValueError``.
    variant : callable
        ``variant(h) -> Variant``: the rule and state layout for hyperparameters ``h``.
    coefficients : callable
        ``coefficients(h, step, state) -> tuple of float``: the per-step
        constants after the two leading gradient-transform entries (so it
        starts with ``l2``). ``state`` is the parameter's state dict, for the
        few optimizers that keep host-side scalars (NAdam's ``mu_product``).
    state_fill : dict
        State name -> ``f(h) -> float`` initial value (0 when absent).
    cross_check : callable or None
        ``f(h)`` for constraints between hyperparameters.
    host_state : tuple of str
        Names of host-side scalar entries that ``coefficients`` keeps in the
        per-parameter state dict (saved and restored with it).
    launcher : callable or None
        For optimizers whose step is not one element-wise rule (LAMB):
        ``launcher(backend, variant, n_coefficients, dtype, with_ema, segments)
        -> launch(p, g, states, values)``, built once per flat buffer;
        ``segments`` is that buffer's tensors as ``(start, stop)`` ranges (from
        a ``FlatParams``), or None when the buffer is one tensor. None: the
        backend's element-wise kernel runs ``variant.rule``.
    """

    name: str
    class_name: str
    doc: str
    defaults: dict
    checks: dict
    variant: Callable[[dict], Variant]
    coefficients: Callable[[dict, int], tuple]
    state_fill: dict = field(default_factory=dict)
    cross_check: Callable[[dict], None] | None = None
    host_state: tuple = ()
    launcher: Callable | None = None


def _as_float(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must not be NaN")
    if math.isinf(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def plain_floats(h: dict) -> dict:
    """``h`` with every real number as a Python ``float`` (pairs as tuples of
    floats; bools untouched). Kernels take their per-step values as a tuple of
    floats: a NumPy scalar or an int among them would change the tuple's type
    and compile another kernel."""
    out = {}
    for key, value in h.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, tuple, list)):
            out[key] = value
        elif isinstance(value, (tuple, list)):
            out[key] = tuple(float(v) for v in value)
        else:
            out[key] = float(value)
    return out


def nonnegative(name: str, value) -> None:
    """``value >= 0`` and finite."""
    if _as_float(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def unit_closed(name: str, value) -> None:
    """``0 <= value <= 1``."""
    x = _as_float(name, value)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def unit_half_open(name: str, value) -> None:
    """``0 <= value < 1``."""
    x = _as_float(name, value)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def beta_pair(name: str, value) -> None:
    """A pair of coefficients, each in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    for k, beta in enumerate(value):
        unit_half_open(f"{name}[{k}]", beta)


def boolean(name: str, value) -> None:
    """A plain bool (``np.bool_`` accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
