"""What the benchmark runner needs from a device (CPU, CUDA GPU)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .timing import Contender, wall_timer

ContenderFactory = Callable[..., tuple[list[Contender], dict[str, str]]]
"""``(optimizer name, hyperparameters, p0, g[, state_dtype=...]) -> (contenders, {skipped name: why})``."""


def _always(*_: Any) -> bool:
    return True


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Device:
    """How to benchmark on one device.

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"cuda"``.
    contenders : callable
        Builds every contender for one optimizer and buffer (see
        :data:`ContenderFactory`); must include ``"fastopt"`` and the limit,
        ``"roofline"``.
    default_sizes, quick_sizes : tuple of int
        Buffer sizes of a full and of a ``quick`` run.
    timer : callable
        ``timer(run, k) -> seconds`` for :func:`.timing.interleaved`.
    check : callable
        Raises (ValueError or ImportError, naming the fix) when the device
        cannot run here; called before any work.
    fits : callable
        ``fits(name, h, n, dtype) -> bool``: whether one size's contenders fit
        in the device's memory (sizes that do not are left out and listed).
    extras : callable or None
        ``extras(dtype, quick) -> dict`` of device-specific measurements
        stored under ``result["extras"]`` (the GPU's host overhead per step).
    describe : callable
        ``describe() -> dict`` added to ``result["machine"]["device"]``.
    """

    name: str
    contenders: ContenderFactory
    default_sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    timer: Callable[[Callable[[int], None], int], float] = wall_timer
    check: Callable[[], None] = _nothing
    fits: Callable[[str, dict, int, Any], bool] = _always
    extras: Callable[[Any, bool], dict] | None = None
    describe: Callable[[], dict] = field(default=dict)
