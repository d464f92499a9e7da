"""Constructor checks with torch.optim's meaning: the same inputs raise the
same exception types with the same messages as the ``torch.optim`` class of
the same name (so code and tests written against torch see no difference),
before fastopt's own stricter checks (NaN, ranges torch does not check) run
on every group. Nothing here touches a parameter."""

from __future__ import annotations

from typing import Any

import torch

_NONNEGATIVE = {
    "lr": "Invalid learning rate: {}",
    "eps": "Invalid epsilon value: {}",
    "weight_decay": "Invalid weight_decay value: {}",
    "momentum": "Invalid momentum value: {}",
    "alpha": "Invalid alpha value: {}",
    "lr_decay": "Invalid lr_decay value: {}",
    "initial_accumulator_value": "Invalid initial_accumulator_value value: {}",
    "momentum_decay": "Invalid momentum_decay value: {}",
}

_TENSOR_HYPERPARAMETERS = ("Adam", "AdamW")
"""torch classes that take Tensor betas (and refuse Tensor lr/betas with
``foreach=True`` unless ``capturable``)."""

_FUSED = ("SGD", "Adagrad", "Adam", "AdamW")
"""torch classes with a ``fused`` implementation (and its argument checks)."""


def check_constructor(torch_name: str | None, kwargs: dict[str, Any]) -> None:
    """Raise as ``torch.optim.<torch_name>(params, **kwargs)`` would for these
    hyperparameters (torch validates the constructor's values only, not
    per-group overrides; fastopt checks those too, later)."""
    lr = kwargs.get("lr")
    if isinstance(lr, torch.Tensor):
        if torch_name in _TENSOR_HYPERPARAMETERS and kwargs.get("foreach") and not kwargs.get("capturable"):
            raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
    for key, message in _NONNEGATIVE.items():
        x = _number(kwargs.get(key))
        if x is not None and not 0.0 <= x:
            raise ValueError(message.format(kwargs[key]))
    rho = _number(kwargs.get("rho"))
    if rho is not None and not 0.0 <= rho <= 1.0:
        raise ValueError(f"Invalid rho value: {kwargs['rho']}")
    betas = kwargs.get("betas")
    if isinstance(betas, (tuple, list)) and len(betas) == 2 and torch_name is not None:
        for k in (0, 1):
            b = _number(betas[k])
            if b is not None and not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {k}: {betas[k]}")
        if torch_name in _TENSOR_HYPERPARAMETERS:
            tensors = [isinstance(b, torch.Tensor) for b in betas]
            if tensors[0] != tensors[1]:
                raise ValueError("betas must be either both floats or both Tensors")
            for k in (0, 1):
                if tensors[k]:
                    if kwargs.get("foreach") and not kwargs.get("capturable"):
                        raise ValueError(f"betas[{k}] as a Tensor is not supported for capturable=False and "
                                         "foreach=True")
                    if betas[k].numel() != 1:
                        raise ValueError(f"Tensor betas[{k}] must be 1-element")
    momentum, dampening = _number(kwargs.get("momentum", 0.0)) or 0.0, _number(kwargs.get("dampening", 0.0))
    if torch_name == "SGD" and kwargs.get("nesterov") and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def check_implementation(torch_name: str | None, kwargs: dict[str, Any]) -> None:
    """torch's checks of the implementation flags (after the params were
    read, as torch does), and fastopt's one refusal: ``differentiable=True``
    (a fused in-place step has no autograd graph)."""
    if torch_name in _FUSED and kwargs.get("fused"):
        if kwargs.get("differentiable"):
            raise RuntimeError("`fused` does not support `differentiable`")
        if kwargs.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if kwargs.get("differentiable"):
        raise ValueError("differentiable=True is not supported by fastopt.torch: its fused, in-place step "
                         "records no autograd graph (use torch.optim for differentiable optimizer steps)")


def _number(value: Any) -> float | None:
    """A hyperparameter as a float for range checks (1-element tensors read
    once, at construction); None when it is not a number (the fastopt checks
    then name it)."""
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() >= 1 else None
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plain(value: Any) -> Any:
    """A group value as fastopt's kernels take it: 1-element tensors as floats,
    pairs of tensors as a tuple of floats, anything else unchanged."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a Tensor hyperparameter must have 1 element, got shape {tuple(value.shape)}")
        return float(value.reshape(-1)[0])
    if type(value) is tuple and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(plain(v) for v in value)
    return value
