"""``optimizer.param_groups`` entries: plain dicts to torch code, which pass
every hyperparameter write on to the fused engine's group.

Every torch scheduler writes ``group["lr"]`` before every step (OneCycleLR
also ``group["betas"]`` or ``group["momentum"]``), and
``ZeroRedundancyOptimizer`` copies every key of every group before and after
each step. A write costs a dict store here; the value goes on to the engine
only when it differs from what the engine holds, and there a coefficient-only
value (lr, betas, eps, weight decay...) goes straight into the group's record
of floats: no re-plan, no check of the other keys.
"""

from __future__ import annotations

from typing import Any

import torch

from .checks import plain

_FLAGS = ("params", "differentiable", "decoupled_weight_decay")
"""Keys that are not hyperparameters but that the next step must look at."""

_MISSING = object()


def _same(old: Any, new: Any) -> bool:
    if old is new:
        return True
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(a is b for a, b in zip(old, new))
    return type(old) is type(new) and not isinstance(old, (list, torch.Tensor)) and old == new


class TorchGroup(dict):
    """One param group as torch sees it (``"params"``, the hyperparameters,
    torch's implementation flags and anything a scheduler adds, such as
    ``"initial_lr"``).

    Attributes
    ----------
    target : dict or None
        The engine's group (a :class:`fastopt._plan.ParamGroup`); None for a
        group without params, or while the optimizer is being built.
    keys_forwarded : frozenset
        The keys the engine knows (its hyperparameters).
    tensors : set
        Keys whose value is a Tensor: schedulers may ``fill_`` those in
        place, so the optimizer re-reads them before every step.
    """

    __slots__ = ("target", "keys_forwarded", "tensors", "on_flag")

    def __init__(self, values: dict, keys_forwarded: frozenset = frozenset(), on_flag: Any = None) -> None:
        super().__init__(values)
        self.target: dict | None = None
        self.keys_forwarded = keys_forwarded
        self.tensors = {k for k in keys_forwarded if _holds_tensor(values.get(k))}
        self.on_flag = on_flag

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in _FLAGS and self.on_flag is not None and _same(self.get(key, _MISSING), value):
            dict.__setitem__(self, key, value)  # ZeroRedundancyOptimizer re-writes every key every step
            return
        dict.__setitem__(self, key, value)
        if key in self.keys_forwarded:
            if _holds_tensor(value):
                self.tensors.add(key)
            else:
                self.tensors.discard(key)
            target = self.target
            if target is not None:
                old = target[key]
                if value is not old:
                    value = plain(value)
                    if value != old or type(value) is not type(old):
                        target[key] = value
        elif self.on_flag is not None and key in _FLAGS:
            self.on_flag(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TorchGroup:  # type: ignore[misc]
        self.update(other)
        return self

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def refresh_tensors(self) -> None:
        """Pass on the current values of Tensor hyperparameters (a scheduler
        may have written them in place)."""
        target = self.target
        if target is None:
            return
        for key in self.tensors:
            value = plain(dict.__getitem__(self, key))
            if value != target[key]:
                target[key] = value

    def __reduce__(self) -> tuple:
        return (dict, (dict(self),))


def _holds_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (
        type(value) is tuple and any(isinstance(v, torch.Tensor) for v in value))
