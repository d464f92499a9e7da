"""What every contender is given: the same hyperparameters and the same data.

Keeping them in one place is what makes the comparison apples to apples: the
NumPy, torch and fastopt contenders and the roofline twin all start from the
arrays made here and apply the update defined by these hyperparameters.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from ..backends.host_arrays import aligned_empty
from ..rules import SPECS

BENCH_HYPERPARAMETERS: dict[str, dict] = {
    "sgd": dict(lr=1e-3, momentum=0.9),
    "adagrad": dict(lr=1e-2),
    "rmsprop": dict(lr=1e-2),
    "adadelta": dict(lr=1.0),
    "adam": dict(lr=1e-3),
    "adamw": dict(lr=1e-3, weight_decay=1e-2),
}
"""Overrides of each optimizer's (torch) defaults used by the benchmark; an
optimizer missing here runs with its defaults."""


def hyperparameters(name: str) -> dict:
    """The full hyperparameter dict of optimizer ``name`` for the benchmark."""
    if name not in SPECS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(SPECS)}")
    return {**SPECS[name].defaults, **BENCH_HYPERPARAMETERS.get(name, {})}


def state_names(name: str, h: dict) -> tuple[str, ...]:
    """The state arrays the optimizer's kernel reads and writes for ``h``."""
    return SPECS[name].variant_of(h).state_names


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` whose data starts on a cache-line boundary (as fastopt's
    own buffers do), so that no contender gains from alignment alone."""
    out = aligned_empty(a.size, a.dtype)
    out[:] = a.reshape(-1)
    return out


def make_data(n: int, dtype: DTypeLike = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Initial parameters and one gradient, both ``n`` random normals.

    The gradient is shared read-only by every contender; each contender copies
    the parameters so that its updates do not leak into another's.
    """
    if n < 1:
        raise ValueError(f"size must be >= 1, got {n}")
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    p0 = aligned_copy(rng.standard_normal(n, dtype=np.float32).astype(dtype, copy=False))
    g = aligned_copy(rng.standard_normal(n, dtype=np.float32).astype(dtype, copy=False))
    return p0, g
