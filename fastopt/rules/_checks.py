"""Hyperparameter checks: each ``check(name, value)`` raises a ValueError or
TypeError naming the argument."""

from __future__ import annotations

import math
import numbers

import numpy as np


def as_float(name: str, value) -> float:
    """``value`` as a finite Python float; TypeError/ValueError naming ``name`` otherwise."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must not be NaN")
    if math.isinf(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def plain(value):
    """A hyperparameter as the kernels see it: reals as Python floats, pairs as
    tuples of floats, bools as bools. Kernels take their per-step values as a
    tuple of floats: a NumPy scalar or an int among them would change the
    tuple's type and compile another kernel."""
    if type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (tuple, list)):
        return tuple(float(v) for v in value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


_INF = math.inf


def nonnegative(name: str, value) -> None:
    """``value >= 0`` and finite."""
    if type(value) is float and 0.0 <= value < _INF:  # the common case, checked cheaply (every scheduled step)
        return
    if as_float(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def unit_closed(name: str, value) -> None:
    """``0 <= value <= 1``."""
    x = as_float(name, value)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def unit_half_open(name: str, value) -> None:
    """``0 <= value < 1``."""
    if type(value) is float and 0.0 <= value < 1.0:
        return
    x = as_float(name, value)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def beta_pair(name: str, value) -> None:
    """A pair of coefficients, each in [0, 1)."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is float and type(value[1]) is float \
            and 0.0 <= value[0] < 1.0 and 0.0 <= value[1] < 1.0:
        return
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    for k, beta in enumerate(value):
        unit_half_open(f"{name}[{k}]", beta)


def boolean(name: str, value) -> None:
    """A plain bool (``np.bool_`` accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
