"""Standalone global-norm gradient clipping, with the meaning of
``torch.nn.utils.clip_grad_norm_``.

Inside an optimizer, prefer ``max_grad_norm=``: the clip factor is then folded
into the update pass instead of rescaling the gradients in a pass of its own.
"""

from __future__ import annotations

import math
from typing import Any

from . import backends
from ._guard import CLIP_EPS
from .params import FlatParams

__all__ = ["CLIP_EPS", "clip_grad_norm_", "global_norm"]

_ACCEPTED = ("torch parameters (their .grad is clipped, as torch.nn.utils.clip_grad_norm_), a FlatParams (its "
             "grad buffer), (param, grad) pairs, or gradient arrays (NumPy or GPU arrays, which have no .grad)")


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "grad")


def _gradients(parameters: Any) -> list:
    """The gradient arrays that ``parameters`` designates (see :func:`clip_grad_norm_`)."""
    if isinstance(parameters, FlatParams):
        return [parameters.grad]
    if _is_torch_tensor(parameters) or hasattr(parameters, "__array_interface__") \
            or hasattr(parameters, "__cuda_array_interface__"):
        parameters = [parameters]
    elif isinstance(parameters, tuple) and len(parameters) == 2 and not _is_torch_tensor(parameters[0]) \
            and all(hasattr(x, "shape") for x in parameters):
        parameters = [parameters]
    try:
        items = list(parameters)
    except TypeError:
        raise TypeError(f"parameters must be {_ACCEPTED}; got {type(parameters).__name__}") from None
    grads = []
    for k, item in enumerate(items):
        if isinstance(item, FlatParams):
            grads.append(item.grad)
        elif _is_torch_tensor(item):
            if item.grad is not None:  # torch skips parameters without a gradient
                grads.append(item.grad)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            grads.append(item[1])
        elif hasattr(item, "shape"):
            grads.append(item)
        else:
            raise TypeError(f"parameters[{k}] must be {_ACCEPTED}; got {type(item).__name__}")
    return grads


def _flat(grads: list) -> list:
    out = []
    for k, g in enumerate(grads):
        where = f"the gradient of parameters[{k}]"
        backend = backends.backend_for(g)
        try:
            flat, _ = backend.pair(g, g, where)
        except (TypeError, ValueError) as exc:  # the backends name a pair's "param"; here it is a gradient
            raise type(exc)(str(exc).replace(f"{where} param", where)) from None
        out.append((backend, flat))
    return out


def global_norm(parameters: Any) -> float:
    """The L2 norm of all gradients together (deterministic, float64)."""
    return math.sqrt(sum(backend.sum_of_squares(g) for backend, g in _flat(_gradients(parameters))))


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    parameters : torch parameters, FlatParams, (param, grad) pairs or gradient arrays
        What torch's function takes, with the same meaning: for torch tensors
        (a model's ``parameters()``), their ``.grad`` is clipped and tensors
        without a gradient are skipped. A FlatParams stands for its grad buffer;
        a ``(param, grad)`` pair for its grad. NumPy and GPU arrays, which carry
        no ``.grad``, are taken as the gradients themselves.
    max_norm : float
        Largest allowed norm (> 0).
    norm_type : float
        Only 2.0 (the L2 norm) is supported.
    error_if_nonfinite : bool
        Raise ``FloatingPointError`` (changing nothing) if the norm is NaN/inf.

    Returns
    -------
    float
        The norm before clipping. As in torch, the factor is
        ``min(1, max_norm / (norm + 1e-6))``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not (
            max_norm > 0 and math.isfinite(max_norm)):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    if norm_type != 2.0:
        raise ValueError(f"norm_type must be 2.0 (fastopt clips the L2 norm), got {norm_type!r}")
    flat = _flat(_gradients(parameters))
    norm = math.sqrt(sum(backend.sum_of_squares(g) for backend, g in flat))
    if not math.isfinite(norm) and error_if_nonfinite:
        raise FloatingPointError(f"the total norm of the gradients is {norm}; nothing was changed")
    factor = max_norm / (norm + CLIP_EPS)
    if factor < 1.0:
        for backend, g in flat:
            backend.scale_(g, factor)
    return norm
