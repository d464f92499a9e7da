"""Interleaved median timing: shared machines are noisy, so candidates are
timed in turns (round-robin) and compared by their medians."""

from __future__ import annotations

import math
import time

__all__ = ["interleaved_medians"]


def _calls_per_sample(fn, target: float) -> int:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return max(1, math.ceil(target / elapsed)) if elapsed < target else 1


def interleaved_medians(fns: dict, repeats: int = 21, target: float = 2e-4, warmup: int = 1) -> dict:
    """Median seconds per call of each function, sampled in interleaved rounds.

    Parameters
    ----------
    fns : dict of str -> callable
        Functions of no arguments to time (each is called many times).
    repeats : int, default 21
        Samples per function; the order within a round rotates every round.
    target : float, default 2e-4
        Seconds each sample should last: fast functions are called several
        times per sample so that the clock's resolution does not matter.
    warmup : int, default 1
        Untimed calls of each function first (compilation, page faults).

    Returns
    -------
    dict of str -> float
        Median seconds per call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    number = {name: _calls_per_sample(fns[name], target) for name in names}
    samples = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            fn, n = fns[name], number[name]
            start = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - start) / n)
    return {name: sorted(s)[len(s) // 2] for name, s in samples.items()}
