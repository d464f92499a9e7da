"""``torch.amp.GradScaler`` and the fused step.

The optimizers set ``_step_supports_amp_scaling``, as torch's fused ones do:
``GradScaler.step(optimizer)`` then checks the gradients for inf/NaN itself
(one read of them, unless ``scaler.unscale_(optimizer)`` already did) and,
instead of unscaling them in a pass of their own, hands the optimizer two
attributes for that one step: ``grad_scale`` (the scale the gradients still
carry; None after ``unscale_``) and ``found_inf``. The step skips when
``found_inf`` is set, and otherwise folds ``1 / grad_scale`` into the fused
update (``apply_step(grad_scale=...)``): no pass writes the gradients.
"""

from __future__ import annotations

from typing import Any


def scaler_factor(optimizer: Any) -> float | None:
    """The gradient factor of this step: 1.0 outside a ``GradScaler``; under
    one, ``1 / grad_scale`` (1.0 when already unscaled), or None when the
    scaler found inf/NaN gradients (the step must change nothing)."""
    found_inf = getattr(optimizer, "found_inf", None)
    if found_inf is None:
        return 1.0
    if float(found_inf) != 0.0:
        return None
    grad_scale = getattr(optimizer, "grad_scale", None)
    return 1.0 if grad_scale is None else 1.0 / float(grad_scale)
