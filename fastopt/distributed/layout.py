"""Where each rank's shard of a flat buffer starts and stops (NumPy only, no MPI).

A shard is a contiguous ``[start, stop)`` range of the flat buffer. Two ways
to cut it:

- ``"aligned"``: equal shards whose starts are multiples of
  :data:`ALIGN_BYTES` (so a 64-byte-aligned buffer gives 64-byte-aligned
  shards, as the fused loops like); the last shard takes the remainder.
- ``"tensors"``: cuts only at tensor boundaries, each cut at the boundary
  nearest to the equal split. Needed when the update reads whole tensors
  (LAMB's per-tensor trust ratio); shards are then as even as the tensor
  sizes allow.

Works on any flat buffer's length, so the same layout shards a FlatParams, a
NumPy view of a torch flat buffer, or any other contiguous array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN_BYTES = 64
"""Shard starts are multiples of this many bytes from the buffer's start."""

BOUNDARIES = ("aligned", "tensors")


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def aligned_bounds(n: int, world: int, itemsize: int = 4) -> tuple[tuple[int, int], ...]:
    """Equal, aligned shards of ``n`` elements of ``itemsize`` bytes over ``world`` ranks.

    Examples
    --------
    >>> aligned_bounds(100, 3)
    ((0, 48), (48, 96), (96, 100))
    """
    n = _check_count("n", n, 0)
    world = _check_count("world", world, 1)
    align = max(1, ALIGN_BYTES // _check_count("itemsize", itemsize, 1))
    chunk = -(-n // world)
    chunk = -(-chunk // align) * align
    return tuple((min(r * chunk, n), min((r + 1) * chunk, n)) for r in range(world))


def tensor_bounds(n: int, world: int, ranges) -> tuple[tuple[int, int], ...]:
    """Shards cut only at tensor boundaries (the ends of ``ranges``), each cut
    at the boundary nearest to ``r * n / world``.

    Examples
    --------
    >>> tensor_bounds(10, 2, [(0, 3), (3, 4), (4, 10)])
    ((0, 4), (4, 10))
    """
    n = _check_count("n", n, 0)
    world = _check_count("world", world, 1)
    cuts = sorted({0, n} | {int(b) for _, b in ranges if 0 < int(b) < n})
    bounds, start = [], 0
    for r in range(1, world):
        target = r * n / world
        cut = min((c for c in cuts if c >= start), key=lambda c: (abs(c - target), c))
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return tuple(bounds)


@dataclass(frozen=True)
class Layout:
    """The shards of one flat buffer over a communicator's ranks.

    Attributes
    ----------
    n : int
        Elements in the whole buffer.
    bounds : tuple of (start, stop)
        Shard of each rank, in rank order; together they cover ``[0, n)``.
    ranges : tuple of (start, stop)
        The tensors of the buffer (one ``(0, n)`` when it is a single tensor).
    """

    n: int
    bounds: tuple
    ranges: tuple

    @classmethod
    def make(cls, n: int, world: int, itemsize: int, ranges=None, boundaries: str = "aligned") -> Layout:
        """Cut ``n`` elements over ``world`` ranks (see the module docs for ``boundaries``)."""
        if boundaries not in BOUNDARIES:
            raise ValueError(f"boundaries must be one of {BOUNDARIES}, got {boundaries!r}")
        ranges = ((0, n),) if ranges is None else tuple((int(a), int(b)) for a, b in ranges)
        if boundaries == "tensors":
            bounds = tensor_bounds(n, world, ranges)
        else:
            bounds = aligned_bounds(n, world, itemsize)
        return cls(n, bounds, ranges)

    @property
    def counts(self) -> list[int]:
        """Elements per rank."""
        return [b - a for a, b in self.bounds]

    @property
    def displacements(self) -> list[int]:
        """First element of each rank's shard."""
        return [a for a, _ in self.bounds]

    def tensors_in(self, start: int, stop: int) -> tuple[tuple[int, int], ...]:
        """The tensors' ranges clipped to ``[start, stop)`` (empty pieces dropped),
        covering ``[start, stop)`` (gaps between tensors become pieces too)."""
        pieces, at = [], start
        for a, b in self.ranges:
            a, b = max(a, start), min(b, stop)
            if a >= b:
                continue
            if a > at:
                pieces.append((at, a))
            pieces.append((a, b))
            at = b
        if at < stop:
            pieces.append((at, stop))
        return tuple(pieces)

    def straddling(self) -> list[int]:
        """Indices of the tensors that more than one shard holds a part of."""
        cuts = [a for a, _ in self.bounds[1:]]
        return [k for k, (a, b) in enumerate(self.ranges) if any(a < c < b for c in cuts)]


def chunks(start: int, stop: int, size: int | None, itemsize: int) -> tuple[tuple[int, int], ...]:
    """``[start, stop)`` cut into pieces of ``size`` elements (rounded up to
    the alignment), the last one shorter; one piece when ``size`` is None."""
    if size is None or stop - start <= size:
        return ((start, stop),)
    align = max(1, ALIGN_BYTES // itemsize)
    size = -(-int(size) // align) * align
    return tuple((a, min(a + size, stop)) for a in range(start, stop, size))
