"""Random data and tolerances for the kernel tests."""

from __future__ import annotations

import numpy as np


def random_problem(n: int, steps: int, seed: int):
    """Nonzero float64 params and one random gradient per step (never all zeros)."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) * (1 + rng.random()) for _ in range(steps)]
    return p0, grads


def tolerance(dtype, steps: int) -> tuple[float, float]:
    """(rtol, atol) for a trajectory of ``steps`` updates against float64 math:
    a few eps of the buffer dtype per step, relative to the values' magnitude."""
    eps = np.finfo(dtype).eps
    bound = 8 * eps * steps
    return bound, bound
