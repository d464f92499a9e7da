"""fastopt: fused, in-place optimizer steps for NumPy (and GPU) buffers, compiled with Numba.

Submodules load on first use (PEP 562), so ``import fastopt`` does not pay for
importing Numba until an optimizer or kernel is actually needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_OPTIMIZER_NAMES = {
    "SGD": "sgd", "Adagrad": "adagrad", "RMSprop": "rmsprop", "Adadelta": "adadelta", "Adam": "adam",
    "AdamW": "adamw", "Adamax": "adamax", "NAdam": "nadam", "RAdam": "radam", "Lion": "lion",
    "LAMB": "lamb",
}
_ATTRIBUTES = {
    "OPTIMIZERS": "optim", "Optimizer": "optim", "NonFiniteGradientError": "optim",
    "FlatParams": "params", "LossScaler": "scaler", "clip_grad_norm_": "clip",
}
_SUBMODULES = ("checkpoint", "data", "functional", "interop", "nn", "schedules", "rules")

__all__ = sorted([*_OPTIMIZER_NAMES, *_ATTRIBUTES, *_SUBMODULES, "__version__"])


def __getattr__(name: str):
    if name in _OPTIMIZER_NAMES:
        value = importlib.import_module(".optim", __name__).OPTIMIZERS[_OPTIMIZER_NAMES[name]]
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(f".{_ATTRIBUTES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'fastopt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
