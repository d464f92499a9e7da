"""Ring collectives over point-to-point messages: reduce-scatter and
allgather of a flat buffer cut into the layout's shards (allreduce is the two
in a row).

Why fastopt has its own, next to MPI's: each shard is summed along the ring
in one fixed order (starting at the rank after its owner, ending at its
owner) and then copied, so every rank ends with bit-identical sums (the MPI
standard only advises this for ``Allreduce``; with recursive-doubling
algorithms the ranks can round differently and their params drift apart);
and on the 2-core test machine Open MPI's reduction path for buffers of
millions of elements runs 10-40x slower than its plain copies
(``bench/results/mpi-scaling.md``), while this ring moves the bytes the
alpha-beta model says: ``(p-1)/p`` of the buffer each way, ``p-1`` messages
per phase. The sums are NumPy adds of whole shards.
"""

from __future__ import annotations

import numpy as np


class Ring:
    """Ring reduce-scatter and allgather over ``bounds`` (one shard per rank).

    Parameters
    ----------
    comm : mpi4py communicator
    bounds : sequence of (start, stop)
        Shard of each rank, in rank order, tiling the buffer.
    dtype : numpy dtype
        Of the buffers (a receive buffer of the largest shard is kept).
    """

    def __init__(self, comm, bounds, dtype):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.bounds = tuple(bounds)
        self.left, self.right = (self.rank - 1) % self.size, (self.rank + 1) % self.size
        from ..backends.host_arrays import aligned_zeros

        self.tmp = aligned_zeros(max((b - a for a, b in self.bounds), default=0), dtype)
        """Receive buffer: as large as the largest shard."""

    def _shard(self, k: int) -> tuple[int, int]:
        return self.bounds[k % self.size]

    def reduce_scatter(self, g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sum ``g`` over the ranks, shard by shard: on return this rank's
        shard of the sum is in ``out`` (or in place in ``g``'s own shard when
        ``out`` is None). The other shards of ``g`` hold partial sums.
        ``out`` may be the start of :attr:`tmp`, the receive buffer (ZeRO-1
        keeps its reduced shard there: no buffer of its own)."""
        r, p = self.rank, self.size
        for s in range(p - 1):
            a, b = self._shard(r - s - 1)
            c, d = self._shard(r - s - 2)
            recv = self.tmp[:d - c]
            self.comm.Sendrecv(g[a:b], dest=self.right, recvbuf=recv, source=self.left)
            if s == p - 2 and out is not None:  # the last addition lands in the caller's buffer
                np.add(g[c:d], recv, out=out)
            else:
                np.add(g[c:d], recv, out=g[c:d])
        if p == 1 and out is not None:
            a, b = self.bounds[0]
            out[:] = g[a:b]
        a, b = self.bounds[r]
        return g[a:b] if out is None else out

    def allgather(self, x: np.ndarray) -> None:
        """In place: every rank's shard of ``x`` copied to every rank."""
        r, p = self.rank, self.size
        for s in range(p - 1):
            a, b = self._shard(r - s)
            c, d = self._shard(r - s - 1)
            self.comm.Sendrecv(x[a:b], dest=self.right, recvbuf=x[c:d], source=self.left)

    def allreduce(self, g: np.ndarray) -> None:
        """In place: ``g`` summed over the ranks, bit-identical on every rank."""
        self.reduce_scatter(g)
        self.allgather(g)
