"""Moving optimizer state between fastopt and torch.optim.

A run can start in torch, continue in fastopt (or the reverse) and follow the
same trajectory: the state names and layout are torch's already, so the
conversion is tensors <-> arrays, the step counter, and torch-only options.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TORCH_ONLY_OPTIONS = ("foreach", "fused", "capturable", "differentiable")
"""torch.optim group options that choose an implementation, not the math."""


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError('torch interop needs PyTorch: pip install "fastopt[torch]"') from exc
    return torch


def to_torch_state_dict(optimizer: Any) -> dict:
    """``optimizer``'s state as a ``torch.optim`` state dict for the
    equivalent torch optimizer (load it with ``torch_opt.load_state_dict``)."""
    torch = _torch()
    sd = optimizer.state_dict()
    state = {}
    for i, entry in sd["state"].items():
        converted = {}
        for key, value in entry.items():
            if key == "ema":
                continue
            if key == "step":
                converted[key] = torch.tensor(float(value))
            elif isinstance(value, float):
                converted[key] = torch.tensor(value)
            else:
                converted[key] = torch.from_numpy(np.array(value))
        state[i] = converted
    groups = [{**group, **{k: (False if k in ("capturable", "differentiable") else None)
                          for k in TORCH_ONLY_OPTIONS}}
              for group in sd["param_groups"]]
    return {"state": state, "param_groups": groups}


def load_torch_state_dict(optimizer: Any, torch_state_dict: dict) -> None:
    """Continue from a ``torch.optim`` state dict (same optimizer kind, same
    params in the same order). Checked like :meth:`fastopt.Optimizer.load_state_dict`:
    a mismatch raises ``ValueError`` and changes nothing."""
    known = set(optimizer.spec.defaults)
    groups = []
    for gi, group in enumerate(torch_state_dict["param_groups"]):
        kept = {}
        for key, value in group.items():
            if key in TORCH_ONLY_OPTIONS:
                continue
            if key == "decoupled_weight_decay" and key not in known:
                # torch's Adam/AdamW carry this flag; ours are two classes.
                decoupled = optimizer.spec.name == "adamw"
                if bool(value) != decoupled:
                    raise ValueError(f"param_groups[{gi}] has decoupled_weight_decay={value}; load it into "
                                     f"fastopt.{'Adam' if decoupled else 'AdamW'}, not {type(optimizer).__name__}")
                continue
            kept[key] = tuple(value) if key == "betas" else value
        groups.append(kept)
    state = {}
    for i, entry in torch_state_dict["state"].items():
        converted = {}
        for key, value in entry.items():
            if value is None:
                continue
            if hasattr(value, "detach"):
                value = value.detach().cpu()
                value = value.item() if value.ndim == 0 else value.numpy().copy()
            converted[key] = value
        if "step" not in converted and len(converted):
            # torch.optim.SGD keeps no step: a momentum buffer means it is warm.
            converted["step"] = 1
        if "step" in converted:
            converted["step"] = int(converted["step"])
        state[i] = converted
    optimizer.load_state_dict({"optimizer": optimizer.spec.name, "state": state, "param_groups": groups})
