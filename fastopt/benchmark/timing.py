"""Interleaved timing: every round runs each contender once, for a batch of
steps, so that a noisy neighbour slows all contenders of a round alike.

Times are per step. Ratios between contenders are taken round by round (both
measured seconds apart) and summarised by their median, which is what the
reports quote: absolute times on a shared machine drift, paired ratios much
less.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Contender:
    """One way of doing an optimizer step.

    Attributes
    ----------
    name : str
        Key in the results (``"numpy_naive"``, ``"torch_fused"``, ``"fastopt"``, ...).
    run : callable
        ``run(k)`` performs ``k`` consecutive steps.
    label : str
        Human-readable description for reports.
    """

    name: str
    run: Callable[[int], None]
    label: str = ""


Timer = Callable[[Callable[[int], None], int], float]
"""``timer(run, k) -> seconds`` taken by ``run(k)``."""


def wall_timer(run: Callable[[int], None], k: int) -> float:
    """Seconds taken by ``run(k)`` on the host clock (the CPU timer).

    A device backend passes its own timer with the same signature to
    :func:`interleaved` (e.g. one that records CUDA events around ``run(k)``
    and synchronises before reading them).
    """
    start = time.perf_counter()
    run(k)
    return time.perf_counter() - start


def batch_size(contender: Contender, target_s: float, max_batch: int, timer: Timer = wall_timer) -> int:
    """Steps per timed batch so that one batch lasts about ``target_s``
    (at least 1, at most ``max_batch``). Also warms the contender up."""
    one = min(timer(contender.run, 1) for _ in range(3))
    if one <= 0:
        return max_batch
    return int(min(max_batch, max(1, math.ceil(target_s / one))))


def interleaved(
    contenders: list[Contender],
    rounds: int,
    *,
    warmup: int = 2,
    target_s: float = 2e-3,
    max_batch: int = 2000,
    budget_s: float | None = None,
    min_rounds: int = 3,
    timer: Timer = wall_timer,
) -> dict:
    """Time the contenders in interleaved rounds.

    Parameters
    ----------
    contenders : list of Contender
    rounds : int
        Rounds to run (fewer if ``budget_s`` runs out first, never fewer than
        ``min_rounds``).
    warmup : int
        Untimed steps per contender before anything is measured (compilation,
        first-step special cases, page faults of fresh buffers).
    target_s : float
        Wanted duration of one contender's batch: small steps are repeated so
        that the clock's resolution and the call into the batch do not matter.
    max_batch : int
        Upper bound on steps per batch.
    budget_s : float, optional
        Time allowed for the timed rounds; caps ``rounds`` from the length of
        the first round.
    min_rounds : int
    timer : callable
        ``timer(run, k) -> seconds``; :func:`wall_timer` on the CPU.

    Returns
    -------
    dict
        ``{"times": {name: [seconds per step, one per round]},
        "batch": {name: steps per batch}, "rounds": int}``.
    """
    if not contenders:
        raise ValueError("no contenders to time")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must be unique, got {names}")
    for c in contenders:
        c.run(warmup)
    batches = {c.name: batch_size(c, target_s, max_batch, timer) for c in contenders}
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        done, started = 0, time.perf_counter()
        while done < rounds:
            for j in range(len(contenders)):
                # Rotate the order so that no contender always follows the same one.
                c = contenders[(done + j) % len(contenders)]
                k = batches[c.name]
                times[c.name].append(timer(c.run, k) / k)
            done += 1
            if budget_s is not None and done == 1:
                per_round = time.perf_counter() - started
                affordable = int(budget_s / per_round) if per_round > 0 else rounds
                rounds = max(min(rounds, min_rounds), min(rounds, affordable))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {"times": times, "batch": batches, "rounds": done}


def spread(values: Sequence[float] | np.ndarray) -> dict:
    """Median, quartiles and extremes of a sample."""
    a = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(a.min()), "max": float(a.max())}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """:func:`spread` of the round-by-round ratios ``numerator[i] / denominator[i]``."""
    return spread(np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float))


def medians(fns: dict[str, Callable[[], Any]], rounds: int = 21, *, target_s: float = 2e-4,
            warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each zero-argument function in ``fns``,
    timed in interleaved rounds (a convenience over :func:`interleaved`)."""

    def repeat(fn: Callable[[], Any]) -> Callable[[int], None]:
        def run(k: int) -> None:
            for _ in range(k):
                fn()

        return run

    result = interleaved([Contender(name, repeat(fn)) for name, fn in fns.items()], rounds,
                         warmup=warmup, target_s=target_s)
    return {name: spread(t)["median"] for name, t in result["times"].items()}
