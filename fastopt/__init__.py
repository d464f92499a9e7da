"""fastopt: fused, in-place optimizer steps for NumPy (and GPU) buffers, compiled with Numba.

Submodules load on first use (PEP 562), so ``import fastopt`` does not pay for
importing Numba until an optimizer or kernel is actually needed. The
optimizer classes are generated from the registry :data:`fastopt.rules.SPECS`.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_ATTRIBUTES = {
    "OPTIMIZERS": "optim", "Optimizer": "optim", "NonFiniteGradientError": "optim",
    "FlatParams": "params", "ParamChain": "params", "LossScaler": "scaler", "clip_grad_norm_": "clip",
    "set_num_threads": "backends.threads", "get_num_threads": "backends.threads",
}
_SUBMODULES = ("checkpoint", "data", "distributed", "functional", "interop", "nn", "schedules", "rules")
_EXTRAS = ("torch",)
"""Submodules that need an extra (``fastopt.torch``: PyTorch); reachable as
attributes, left out of ``__all__`` so that a star import never imports them."""


def _class_names() -> tuple[str, ...]:
    # The registry's class names, read without importing numba.
    return ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Lion", "LAMB")


__all__ = sorted([*_class_names(), *_ATTRIBUTES, *_SUBMODULES, "__version__"])


def __getattr__(name: str):
    if name in _class_names():
        value = importlib.import_module(".optim", __name__).OPTIMIZERS[
            importlib.import_module(".rules", __name__).CLASS_NAMES[name]]
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(f".{_ATTRIBUTES[name]}", __name__), name)
    elif name in _SUBMODULES or name in _EXTRAS:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'fastopt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
