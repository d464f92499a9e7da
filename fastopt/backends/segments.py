"""Fixed blocks over a flat buffer holding several tensors, for reductions
per tensor (LAMB's trust ratio) that must not depend on the thread count.

Blocks never straddle two tensors; each block's partial sum is computed in a
fixed order and the partial sums of a tensor are added in block order, so a
per-tensor norm (and every bit of the step that uses it) is the same on one
thread or many, serial or parallel, CPU loop or CUDA grid.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BLOCK = 4096
"""Elements per partial sum."""


def normalise_segments(n: int, segments) -> tuple[tuple[int, int], ...]:
    """Checked, sorted ``(start, stop)`` pairs covering disjoint parts of ``[0, n)``
    (``None``: the whole buffer is one tensor)."""
    if segments is None:
        return ((0, n),)
    try:
        pairs = [(int(a), int(b)) for a, b in segments]
    except (TypeError, ValueError):
        raise TypeError(f"segments must be a sequence of (start, stop) int pairs, got {segments!r}") from None
    pairs.sort()
    end = 0
    for a, b in pairs:
        if not 0 <= a <= b <= n:
            raise ValueError(f"segments: ({a}, {b}) is not a range inside [0, {n}]")
        if a < end:
            raise ValueError(f"segments overlap at ({a}, {b})")
        end = b
    return tuple(pairs)


@lru_cache(maxsize=256)
def block_plan(n: int, segments: tuple, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(lo, hi, tensor, n_tensors)``: fixed blocks covering ``[0, n)``, each
    inside one tensor (``tensor`` = -1 for a gap between tensors). ``segments``
    must come from :func:`normalise_segments`. The arrays are read-only."""
    lo, hi, seg = [], [], []

    def add(a, b, k):
        for start in range(a, b, block):
            lo.append(start)
            hi.append(min(start + block, b))
            seg.append(k)

    end = 0
    for k, (a, b) in enumerate(segments):
        add(end, a, -1)
        add(a, b, k)
        end = b
    add(end, n, -1)
    arrays = tuple(np.array(x, dtype=np.int64) for x in (lo, hi, seg))
    for a in arrays:
        a.flags.writeable = False
    return arrays + (len(segments),)
