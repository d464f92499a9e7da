"""``torch.optim`` optimizers over one flat buffer: fastopt's fused steps for torch models.

Every optimizer of :data:`fastopt.rules.SPECS` is here as a real
``torch.optim.Optimizer`` subclass with torch's constructor, so that
``fastopt.torch.AdamW(model.parameters(), lr=1e-3)`` replaces
``torch.optim.AdamW(model.parameters(), lr=1e-3)`` in a training loop, with
torch's schedulers, ``GradScaler``, ``clip_grad_norm_``, DDP and
``ZeroRedundancyOptimizer`` unchanged. At construction the params of each
(param group, dtype, device) move into one contiguous, aligned buffer (each
``p.data`` becomes a view of it, and each ``p.grad`` a view of a twin
gradient buffer), and a step is one fused kernel call per buffer. See
:class:`fastopt.torch.Optimizer` for the details, and ``docs/torch.rst``.

Importing this module imports torch (the ``torch`` extra); ``import fastopt``
does not.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (the extra's presence is checked here, once)
except ImportError as exc:  # pragma: no cover - exercised where torch is missing
    raise ImportError('fastopt.torch needs PyTorch: pip install "fastopt[torch]" '
                      "(or install torch first, e.g. its CPU build)") from exc

from .optimizers import OPTIMIZERS, Optimizer

__all__ = ["OPTIMIZERS", "Optimizer", *sorted(cls.__name__ for cls in OPTIMIZERS.values())]

globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})


def __dir__():
    return __all__
