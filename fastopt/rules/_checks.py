"""Hyperparameter checks: each ``check(name, value)`` raises a ValueError or
TypeError naming the argument, and returns the value as the kernels see it
(reals as Python floats, pairs as tuples of floats, bools as bools: a NumPy
scalar or an int among the per-step values would change their type and
compile another kernel)."""

from __future__ import annotations

import math
import numbers

import numpy as np

_INF = math.inf


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
    """A hyperparameter as the kernels see it (see the module docs)."""
    kind = type(value)
    if kind is float:
        return value
    if kind is tuple and len(value) == 2 and type(value[0]) is float and type(value[1]) is float:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (tuple, list)):
        return tuple(float(v) for v in value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def nonnegative(name: str, value) -> float:
    """``value >= 0`` and finite."""
    if type(value) is float and 0.0 <= value < _INF:  # the common case, checked cheaply (every scheduled step)
        return value
    x = as_float(name, value)
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


def unit_closed(name: str, value) -> float:
    """``0 <= value <= 1``."""
    x = as_float(name, value)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return x


def unit_half_open(name: str, value) -> float:
    """``0 <= value < 1``."""
    if type(value) is float and 0.0 <= value < 1.0:
        return value
    x = as_float(name, value)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return x


def beta_pair(name: str, value) -> tuple[float, float]:
    """A pair of coefficients, each in [0, 1)."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is float and type(value[1]) is float \
            and 0.0 <= value[0] < 1.0 and 0.0 <= value[1] < 1.0:
        return value
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (unit_half_open(f"{name}[0]", value[0]), unit_half_open(f"{name}[1]", value[1]))


def boolean(name: str, value) -> bool:
    """A plain bool (``np.bool_`` accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)
