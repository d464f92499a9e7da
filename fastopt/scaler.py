"""Dynamic loss scaling for mixed-precision training, folded into the step."""

from __future__ import annotations

import math
from typing import Any


class LossScaler:
    """Scale the loss up before backward, unscale inside the fused update.

    Semantics of ``torch.amp.GradScaler``: gradients arrive multiplied by
    :attr:`scale`; :meth:`step` applies the optimizer with the gradients
    divided by the scale (the division is folded into the update's first
    multiply, no extra pass) unless they hold NaN/inf, in which case the step
    is skipped with params and state untouched; :meth:`update` then halves
    the scale (``backoff_factor``) after a skipped step, or doubles it
    (``growth_factor``) after ``growth_interval`` consecutive good steps.

    Parameters
    ----------
    init_scale : float
        Starting scale (default 2**16).
    growth_factor : float
        Multiplier after ``growth_interval`` good steps (> 1).
    backoff_factor : float
        Multiplier after a non-finite step (in (0, 1)).
    growth_interval : int
        Good steps between growths.

    Examples
    --------
    >>> scaler = LossScaler()
    >>> # loss_scaled = scaler.scale(loss); backward(loss_scaled) -> grads
    >>> # scaler.step(optimizer); scaler.update()
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"init_scale must be positive and finite, got {init_scale!r}")
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval!r}")
        self.scale_value = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self._good_steps = 0
        self._found_nonfinite: bool | None = None

    def scale(self, loss: Any) -> Any:
        """The loss multiplied by the current scale (backpropagate this)."""
        return loss * self.scale_value

    def get_scale(self) -> float:
        """The current scale."""
        return self.scale_value

    def step(self, optimizer: Any) -> bool:
        """Apply ``optimizer``'s step with unscaled gradients; skip it (and
        return False) when they are not finite."""
        before = optimizer.skipped_steps
        applied = optimizer.apply_step(1.0 / self.scale_value, nonfinite="skip", warn=False)
        self._found_nonfinite = optimizer.skipped_steps > before
        return applied

    def update(self) -> None:
        """Adjust the scale after :meth:`step`, as torch's GradScaler does."""
        if self._found_nonfinite is None:
            return
        if self._found_nonfinite:
            self.scale_value *= self.backoff_factor
            self._good_steps = 0
        else:
            self._good_steps += 1
            if self._good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self._good_steps = 0
        self._found_nonfinite = None

    def state_dict(self) -> dict:
        return {"scale": self.scale_value, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "good_steps": self._good_steps}

    def load_state_dict(self, state: dict) -> None:
        scale = float(state["scale"])
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"state 'scale' must be positive and finite, got {scale!r}")
        self.scale_value = scale
        self.growth_factor = float(state.get("growth_factor", self.growth_factor))
        self.backoff_factor = float(state.get("backoff_factor", self.backoff_factor))
        self.growth_interval = int(state.get("growth_interval", self.growth_interval))
        self._good_steps = int(state.get("good_steps", 0))

