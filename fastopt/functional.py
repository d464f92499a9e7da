"""In-place optimizer updates over plain arrays with explicit state, for
embedding in training loops that keep their own bookkeeping.

Each ``<name>_(param, grad, state, *, step, **hyperparameters)`` applies step
number ``step`` (1 for the first) of optimizer ``<name>`` to ``param`` in place.
``state`` is a dict of arrays keyed by torch's state names, made by
:func:`init_state` and updated in place. Hyperparameters take torch.optim's
names and defaults.

Examples
--------
>>> import numpy as np
>>> from fastopt import functional as F
>>> p = np.ones(4, np.float32); g = np.full(4, 0.5, np.float32)
>>> state = F.init_state("adam", p)
>>> F.adam_(p, g, state, step=1, lr=0.1)
"""

from __future__ import annotations

import math

import numpy as np

from . import _cpu
from ._arrays import check_disjoint, flat_view, param_grad_pair
from .params import aligned_zeros
from .rules import SPECS
from .rules._common import plain_floats


def _hyper(name: str, hyperparameters: dict) -> dict:
    spec = SPECS[name]
    unknown = set(hyperparameters) - set(spec.defaults)
    if unknown:
        raise TypeError(f"{name}: unknown hyperparameter(s) {sorted(unknown)}; accepted: {sorted(spec.defaults)}")
    h = {**spec.defaults, **hyperparameters}
    for key, check in spec.checks.items():
        check(key, h[key])
    if spec.cross_check is not None:
        spec.cross_check(h)
    return plain_floats(h)


def init_state(name: str, param, **hyperparameters) -> dict:
    """Fresh state arrays for optimizer ``name`` and these hyperparameters."""
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(SPECS)}")
    spec = SPECS[name]
    h = _hyper(name, hyperparameters)
    p = np.asarray(param)
    state = {}
    for key in spec.variant(h).state_names:
        arr = aligned_zeros(p.size, p.dtype).reshape(p.shape)
        fill = spec.state_fill.get(key)
        if fill is not None:
            arr.fill(fill(h))
        state[key] = arr
    return state


def apply(name: str, param, grad, state: dict, *, step: int, **hyperparameters) -> None:
    """Apply step ``step`` of optimizer ``name`` to ``param`` in place.

    Raises ``ValueError``/``TypeError`` naming the bad argument, before
    touching any array.
    """
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(SPECS)}")
    spec = SPECS[name]
    h = _hyper(name, hyperparameters)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    p, g = param_grad_pair(param, grad, "")
    variant = spec.variant(h)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict of arrays, got {type(state).__name__}")
    states = []
    for key in variant.state_names:
        if key not in state:
            raise ValueError(f"state is missing {key!r} (make it with init_state({name!r}, param, ...))")
        arr = flat_view(np.asarray(state[key]), f"state[{key!r}]")
        if arr.dtype != p.dtype or arr.size != p.size:
            raise ValueError(f"state[{key!r}] must have {p.size} elements of {p.dtype}, "
                             f"got {arr.size} of {arr.dtype}")
        states.append(arr)
    check_disjoint([("param", p), ("grad", g)] + [(f"state[{k!r}]", a) for k, a in zip(variant.state_names, states)])
    scale = -1.0 if h["maximize"] else 1.0
    values = (scale, math.inf) + spec.coefficients(h, int(step), state)
    if spec.launcher is not None:
        launch = spec.launcher(_cpu.CPU, variant, len(values), p.dtype, False, None)
    else:
        launch = _cpu.CPU.launcher(variant.rule, len(values), p.dtype)
    launch(p, g, tuple(states), values)


def _named(name: str):
    def update(param, grad, state, *, step, **hyperparameters):
        apply(name, param, grad, state, step=step, **hyperparameters)

    update.__name__ = update.__qualname__ = f"{name}_"
    update.__doc__ = (f"In-place {name} step; see :func:`apply` and the equations in "
                      f"``fastopt.{name}``'s optimizer class. Defaults: {SPECS[name].defaults}.")
    return update


sgd_ = _named("sgd")
adagrad_ = _named("adagrad")
rmsprop_ = _named("rmsprop")
adadelta_ = _named("adadelta")
adam_ = _named("adam")
adamw_ = _named("adamw")

__all__ = ["apply", "init_state", "sgd_", "adagrad_", "rmsprop_", "adadelta_", "adam_", "adamw_"]
