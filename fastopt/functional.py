"""In-place optimizer updates over plain arrays with explicit state, for
embedding in training loops that keep their own bookkeeping.

Each ``<name>_(param, grad, state, *, step, **hyperparameters)`` applies step
number ``step`` (1 for the first) of optimizer ``<name>`` to ``param`` in place;
there is one for every optimizer of :data:`fastopt.rules.SPECS` (``adam_``,
``lamb_``...). ``state`` is a dict of arrays keyed by torch's state names
(plus carried scalars such as NAdam's ``mu_product``), made by
:func:`init_state` and updated in place. Hyperparameters take torch.optim's
names and defaults. LAMB's functions also take ``segments``: the tensors of a
flat buffer as ``(start, stop)`` ranges, each with its own trust ratio.

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

from ._plan import hyperparameters
from .backends.cpu import CPU
from .backends.host_arrays import aligned_zeros, check_disjoint, flat_view, param_grad_pair
from .rules import SPECS


def _spec(name: str):
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(SPECS)}")
    return SPECS[name]


def _hyper(spec, hyperparameters_: dict):
    unknown = set(hyperparameters_) - set(spec.defaults)
    if unknown:
        raise TypeError(f"{spec.name}: unknown hyperparameter(s) {sorted(unknown)}; "
                        f"accepted: {sorted(spec.defaults)}")
    h = {**spec.defaults, **hyperparameters_}
    for key, check in spec.checks.items():
        check(key, h[key])
    record = hyperparameters(spec, h)
    if spec.cross_check is not None:
        spec.cross_check(record)
    return record


def init_state(name: str, param, **hyperparameters_) -> dict:
    """Fresh state for optimizer ``name`` and these hyperparameters: arrays
    shaped like ``param`` (and carried scalars, if the optimizer has any)."""
    spec = _spec(name)
    h = _hyper(spec, hyperparameters_)
    p = np.asarray(param)
    state = {}
    for key in spec.variant(h).state_names:
        arr = aligned_zeros(p.size, p.dtype).reshape(p.shape)
        fill = spec.state_fill.get(key)
        if fill is not None:
            arr.fill(fill(h))
        state[key] = arr
    state.update(spec.carry)
    return state


def apply(name: str, param, grad, state: dict, *, step: int, segments=None, **hyperparameters_) -> None:
    """Apply step ``step`` of optimizer ``name`` to ``param`` in place.

    Raises ``ValueError``/``TypeError`` naming the bad argument, before
    touching any array.
    """
    spec = _spec(name)
    h = _hyper(spec, hyperparameters_)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    if segments is not None and spec.segmented is None:
        raise TypeError(f"{name} is element-wise; segments= is for per-tensor rules (lamb)")
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
    carry = tuple(float(state.get(key, initial)) for key, initial in spec.carry)
    check_disjoint([("param", p), ("grad", g)] + [(f"state[{k!r}]", a) for k, a in zip(variant.state_names, states)])
    if spec.segmented is not None:
        launch = CPU.segmented_launcher(spec.segmented, spec.record, p, g, tuple(states), None, segments)
    else:
        launch = CPU.elementwise_launcher(variant.rule, spec.record, p, g, tuple(states), None)
    record, carry = spec.coefficients(h, int(step), carry)
    launch((-1.0 if h.maximize else 1.0, math.inf, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0) + record)
    state.update(zip(spec.carry_names, carry))


def _named(name: str):
    def update(param, grad, state, *, step, **hyperparameters_):
        apply(name, param, grad, state, step=step, **hyperparameters_)

    update.__name__ = update.__qualname__ = f"{name}_"
    update.__doc__ = (f"In-place {SPECS[name].class_name} step (see :func:`apply` and the equations of "
                      f":class:`fastopt.{SPECS[name].class_name}`). Defaults: {SPECS[name].defaults}.")
    return update


globals().update({f"{name}_": _named(name) for name in SPECS})
__all__ = ["apply", "init_state"] + [f"{name}_" for name in SPECS]
