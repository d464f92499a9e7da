"""Learning-rate schedules as pure functions of the step.

A schedule is a callable ``schedule(t) -> lr`` of the step (or epoch) counter
``t = 0, 1, 2, ...``; it keeps no state, so ``schedule(t)`` can be evaluated
in any order, plotted, or resumed from a checkpoint. :class:`Scheduler` drives
an optimizer with one: it writes ``schedule(t)`` into ``group["lr"]`` of every
parameter group (torch ``LRScheduler`` semantics: the lr for ``t = 0`` is set
on construction and each :meth:`Scheduler.step` advances ``t`` by one).
Changing ``group["lr"]`` never recompiles a fastopt kernel.

Examples
--------
>>> from fastopt import schedules
>>> s = schedules.get("step", lr=0.1, step_size=10, gamma=0.5)
>>> s(0), s(9), s(10), s(25)
(0.1, 0.1, 0.05, 0.025)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "SCHEDULES",
    "Constant",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LambdaSchedule",
    "OneCycle",
    "Schedule",
    "Scheduler",
    "StepDecay",
    "WarmupCosine",
    "get",
]


# -- argument checks ---------------------------------------------------------

def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _nonneg(name: str, value: Any) -> float:
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _step(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t must be a finite number >= 0, got {t!r}")
    return float(t)


# -- schedules ---------------------------------------------------------------

class Schedule:
    """Base class: a stateless map from step ``t >= 0`` to a learning rate.

    Subclasses implement :meth:`lr_at`; calling the schedule validates ``t``
    and returns a Python float.
    """

    _fields: tuple = ()

    def __call__(self, t: float) -> float:
        """Learning rate at step (or epoch) `t` (a number >= 0)."""
        return float(self.lr_at(_step(t)))

    def lr_at(self, t: float) -> float:  # pragma: no cover - abstract
        """Learning rate at a validated step `t`."""
        raise NotImplementedError

    def values(self, steps: int) -> list[float]:
        """List of ``[self(0), ..., self(steps - 1)]``."""
        return [self(t) for t in range(_int("steps", steps, 0))]

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr`` at every step.

    Parameters
    ----------
    lr : float
        Learning rate, >= 0.
    """

    _fields = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = _nonneg("lr", lr)

    def lr_at(self, t: float) -> float:
        return self.lr


class InverseTimeDecay(Schedule):
    """``lr / (1 + decay * t)``.

    Parameters
    ----------
    lr : float
        Initial learning rate, >= 0.
    decay : float
        Decay rate, >= 0.
    """

    _fields = ("lr", "decay")

    def __init__(self, lr: float, decay: float) -> None:
        self.lr = _nonneg("lr", lr)
        self.decay = _nonneg("decay", decay)

    def lr_at(self, t: float) -> float:
        return self.lr / (1.0 + self.decay * t)


class StepDecay(Schedule):
    """``lr * gamma ** (t // step_size)``: multiply by `gamma` every `step_size` steps.

    Parameters
    ----------
    lr : float
        Initial learning rate, >= 0.
    step_size : int
        Period of the decay, >= 1.
    gamma : float, default 0.1
        Multiplicative factor, > 0.
    """

    _fields = ("lr", "step_size", "gamma")

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.lr = _nonneg("lr", lr)
        self.step_size = _int("step_size", step_size, 1)
        self.gamma = _positive("gamma", gamma)

    def lr_at(self, t: float) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


class ExponentialDecay(Schedule):
    """``lr * gamma ** t``.

    Parameters
    ----------
    lr : float
        Initial learning rate, >= 0.
    gamma : float
        Multiplicative factor per step, > 0.
    """

    _fields = ("lr", "gamma")

    def __init__(self, lr: float, gamma: float) -> None:
        self.lr = _nonneg("lr", lr)
        self.gamma = _positive("gamma", gamma)

    def lr_at(self, t: float) -> float:
        return self.lr * self.gamma ** t


class WarmupCosine(Schedule):
    """Linear warm-up to `lr`, then cosine annealing to `min_lr`.

    For ``t < warmup_steps`` the rate is ``lr * t / warmup_steps`` (it starts
    at 0, as in Hugging Face's ``get_cosine_schedule_with_warmup``); then, with
    ``p = (t - warmup_steps) / (total_steps - warmup_steps)``, it is
    ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2``, and `min_lr` for
    ``t >= total_steps``. With ``warmup_steps=0`` this is torch's
    ``CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)`` up to ``t = total_steps``.

    Parameters
    ----------
    lr : float
        Peak learning rate, >= 0.
    total_steps : int
        Step at which the rate reaches `min_lr`, >= 1.
    warmup_steps : int, default 0
        Length of the linear warm-up, ``0 <= warmup_steps <= total_steps``.
    min_lr : float, default 0.0
        Final learning rate, ``0 <= min_lr <= lr``.
    """

    _fields = ("lr", "total_steps", "warmup_steps", "min_lr")

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> None:
        self.lr = _nonneg("lr", lr)
        self.total_steps = _int("total_steps", total_steps, 1)
        self.warmup_steps = _int("warmup_steps", warmup_steps, 0)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps must be <= total_steps ({self.total_steps}), got {warmup_steps!r}"
            )
        self.min_lr = _nonneg("min_lr", min_lr)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr ({self.lr!r}), got {min_lr!r}")

    def lr_at(self, t: float) -> float:
        if t < self.warmup_steps:
            return self.lr * t / self.warmup_steps
        if t >= self.total_steps:
            return self.min_lr
        p = (t - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * p)) / 2.0


class OneCycle(Schedule):
    """The 1cycle policy of torch's ``OneCycleLR`` (two phases, learning rate only).

    The rate rises from ``initial_lr = max_lr / div_factor`` to `max_lr` over
    steps ``0 .. pct_start * total_steps - 1``, then falls to
    ``min_lr = initial_lr / final_div_factor`` at step ``total_steps - 1``,
    annealing with ``end + (start - end) * (1 + cos(pi * pct)) / 2`` (or
    linearly). Values match torch's for ``t < total_steps``; later steps
    return `min_lr` (torch raises instead).

    Parameters
    ----------
    max_lr : float
        Peak learning rate, >= 0.
    total_steps : int
        Length of the cycle, >= 1.
    pct_start : float, default 0.3
        Fraction of the cycle spent increasing the rate, in [0, 1].
    div_factor : float, default 25.0
        ``initial_lr = max_lr / div_factor``, > 0.
    final_div_factor : float, default 1e4
        ``min_lr = initial_lr / final_div_factor``, > 0.
    anneal : {"cos", "linear"}, default "cos"
        Annealing strategy (torch's ``anneal_strategy``).
    """

    _fields = ("max_lr", "total_steps", "pct_start", "div_factor", "final_div_factor", "anneal")

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, anneal: str = "cos") -> None:
        self.max_lr = _nonneg("max_lr", max_lr)
        self.total_steps = _int("total_steps", total_steps, 1)
        self.pct_start = _real("pct_start", pct_start)
        if not 0.0 <= self.pct_start <= 1.0:
            raise ValueError(f"pct_start must lie in [0, 1], got {pct_start!r}")
        self.div_factor = _positive("div_factor", div_factor)
        self.final_div_factor = _positive("final_div_factor", final_div_factor)
        if anneal not in ("cos", "linear"):
            raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
        self.anneal = anneal
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor
        # Phase boundaries exactly as torch computes them.
        self._end_up = float(self.pct_start * self.total_steps) - 1
        self._end_down = self.total_steps - 1

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def lr_at(self, t: float) -> float:
        t = min(t, self._end_down)
        if t <= self._end_up:
            pct = t / self._end_up if self._end_up > 0 else 1.0
            return self._anneal(self.initial_lr, self.max_lr, pct)
        pct = (t - self._end_up) / (self._end_down - self._end_up)
        return self._anneal(self.max_lr, self.min_lr, pct)


class LambdaSchedule(Schedule):
    """``lr * fn(t)``, like torch's ``LambdaLR``.

    Parameters
    ----------
    lr : float
        Base learning rate, >= 0.
    fn : callable
        Multiplicative factor as a function of the step.
    """

    _fields = ("lr", "fn")

    def __init__(self, lr: float, fn: Callable[[float], float]) -> None:
        self.lr = _nonneg("lr", lr)
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {fn!r}")
        self.fn = fn

    def lr_at(self, t: float) -> float:
        return self.lr * self.fn(t)


#: Schedule classes by the names :func:`get` accepts.
SCHEDULES = {
    "constant": Constant,
    "inverse_time": InverseTimeDecay,
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "cosine": WarmupCosine,
    "onecycle": OneCycle,
    "lambda": LambdaSchedule,
}

_ALIASES = {"one_cycle": "onecycle", "inverse": "inverse_time", "exp": "exponential"}


def get(name: str | Callable[[float], float], **kwargs: Any) -> Callable[[float], float]:
    """Build a schedule by name.

    Parameters
    ----------
    name : str or callable
        One of :data:`SCHEDULES` (``"constant"``, ``"inverse_time"``,
        ``"step"``, ``"exponential"``, ``"cosine"``, ``"onecycle"``,
        ``"lambda"``; case and ``-``/``_`` are ignored). A callable is
        returned unchanged (no keyword arguments allowed then).
    **kwargs
        Arguments of the schedule's class, e.g. ``lr=0.1, total_steps=1000``.

    Returns
    -------
    Schedule or callable
    """
    if callable(name):
        if kwargs:
            raise ValueError("name is already a schedule; no keyword arguments allowed")
        return name
    if not isinstance(name, str):
        raise ValueError(f"name must be a schedule name or callable, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise ValueError(f"name must be one of {sorted(SCHEDULES)}, got {name!r}")
    try:
        return SCHEDULES[key](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for schedule {name!r}: {exc}") from None


# -- driving an optimizer ----------------------------------------------------

class Scheduler:
    """Set an optimizer's learning rate from a schedule, torch-style.

    On construction every param group gets ``lr = schedule(0)``; each call of
    :meth:`step` (after ``optimizer.step()``) advances the counter and sets
    ``lr = schedule(last_step)``. Works with any object that has a
    ``param_groups`` list of dicts (fastopt and torch optimizers).

    Parameters
    ----------
    optimizer : object with ``param_groups``
    schedule : callable or sequence of callables
        One schedule for all groups, or one per group.
    last_step : int, default 0
        Counter to start from (to resume a run without a state dict).

    Attributes
    ----------
    last_step : int
        Step whose learning rate is currently set.
    """

    def __init__(self, optimizer: Any, schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_step: int = 0) -> None:
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, (list, tuple)) or not groups:
            raise ValueError("optimizer must have a non-empty param_groups list")
        if callable(schedule):
            schedules = [schedule] * len(groups)
        else:
            try:
                schedules = list(schedule)
            except TypeError:
                raise ValueError(
                    f"schedule must be callable or a sequence of callables, got {schedule!r}"
                ) from None
            if len(schedules) != len(groups) or not all(callable(s) for s in schedules):
                raise ValueError(
                    f"schedule must be one callable or {len(groups)} callables "
                    f"(one per param group), got {schedule!r}"
                )
        self.optimizer = optimizer
        self.schedules = schedules
        self.last_step = _int("last_step", last_step, 0)
        self._last_lr: list[float] = []
        self._apply()

    def _apply(self) -> None:
        lrs = []
        for s in self.schedules:
            lr = s(self.last_step)
            ok = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
            if not ok or not math.isfinite(lr) or lr < 0:
                raise ValueError(f"schedule returned an invalid lr {lr!r} at step {self.last_step}")
            lrs.append(float(lr))
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def step(self) -> None:
        """Advance one step and set the learning rate of every param group."""
        self.last_step += 1
        try:
            self._apply()
        except Exception:
            self.last_step -= 1
            raise

    def get_last_lr(self) -> list[float]:
        """List of the learning rates last set, one per param group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, int]:
        """The counter, as a dict (schedules are stateless)."""
        return {"last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counter from :meth:`state_dict` and set the learning rates."""
        if not isinstance(state_dict, dict) or "last_step" not in state_dict:
            raise ValueError("state_dict must be a dict with key 'last_step'")
        previous = self.last_step
        self.last_step = _int("last_step", state_dict["last_step"], 0)
        try:
            self._apply()
        except Exception:
            self.last_step = previous
            raise
