"""ZeRO stage 1: optimizer state sharded over the ranks."""

from __future__ import annotations

import time

import numpy as np

from ..backends.host_arrays import aligned_zeros
from . import layout
from ._base import DistributedOptimizer, check_algorithm
from .ring import Ring


class ZeRO1(DistributedOptimizer):
    """Data-parallel training with the optimizer state sharded over the ranks
    (ZeRO stage 1).

    Each rank owns a contiguous, 64-byte-aligned shard of the flat buffer and
    holds the optimizer state of that shard only (1/N of it per rank). A step
    is: a reduce-scatter of the gradients (each rank receives the sum of
    its shard), the fused update of the shard with the mean gradient (the
    ``1/world`` folded into the update), an allgather of the params (in
    place). Communication volume equals one allreduce; optimizer memory and
    update time drop by N.

    Per-tensor rules (LAMB's trust ratio needs each tensor whole) shard at
    tensor boundaries: ``boundaries="tensors"``, the default for them, keeps
    every tensor on one rank (shards are then as even as the tensor sizes
    allow); ``boundaries="aligned"`` with LAMB raises ValueError.

    Parameters
    ----------
    params, optimizer, comm, ranges, max_grad_norm, nonfinite, accumulate, broadcast, **hyperparameters
        As :class:`~fastopt.distributed.DataParallel`. ``ema_decay`` keeps the
        EMA sharded too (:meth:`~fastopt.distributed.ZeRO1.swap_ema` gathers it).
    boundaries : {"aligned", "tensors"}, optional
        How to cut the shards (see :mod:`fastopt.distributed.layout`).
        Default: "tensors" for per-tensor rules, else "aligned".
    algorithm : {"ring", "mpi"}, optional
        ``"ring"`` (default): fastopt's ring reduce-scatter and allgather
        over ``Sendrecv`` (:mod:`fastopt.distributed.ring`; the grad buffer
        is used as scratch and holds partial sums afterwards). ``"mpi"``:
        ``MPI.Reduce_scatter`` into a shard buffer and an in-place
        ``MPI.Allgatherv`` (the grad buffer is left as it was).

    Attributes
    ----------
    layout : Layout
        Every rank's shard; ``layout.bounds[rank]`` is this rank's.
    """

    mode = "zero1"

    def __init__(self, params, optimizer, comm=None, *, boundaries=None, algorithm=None, **kwargs):
        self._boundaries = boundaries
        self.algorithm = algorithm
        super().__init__(params, optimizer, comm, **kwargs)

    def _own_options(self) -> dict:
        return {"boundaries": self.boundaries, "algorithm": self.algorithm}

    def _plan(self) -> None:
        per_tensor = self.spec.segmented is not None
        boundaries = self._boundaries
        if boundaries is None:
            boundaries = "tensors" if per_tensor else "aligned"
        if boundaries not in layout.BOUNDARIES:
            raise ValueError(f"boundaries must be one of {layout.BOUNDARIES} or None, got {boundaries!r}")
        if per_tensor and boundaries == "aligned":
            raise ValueError(f"boundaries='aligned' would split tensors between ranks, and "
                             f"{self.optimizer_class.__name__}'s per-tensor trust ratio needs each tensor whole: "
                             "use boundaries='tensors' (the default for it)")
        self.boundaries = boundaries
        self.layout = layout.Layout.make(self.data.size, self.world_size, self.data.itemsize, self.ranges,
                                         boundaries)
        self._counts = self.layout.counts
        self._displacements = self.layout.displacements
        self.algorithm = check_algorithm(self.algorithm, "ring")
        self._ring = Ring(self.comm, self.layout.bounds, self.data.dtype) if self.algorithm == "ring" else None

    def _build(self):
        start, stop = self.layout.bounds[self.rank]
        if self._ring is not None:  # the ring's receive buffer ends up holding the reduced shard
            self.shard_grad = self._ring.tmp[:stop - start]
        else:
            self.shard_grad = aligned_zeros(stop - start, self.data.dtype)
        if stop == start:
            return []
        return [self._inner(self.data, self.shard_grad, start, stop, start)]

    @property
    def owned(self) -> tuple[int, int]:
        return self.layout.bounds[self.rank]

    def _mpi_type(self):
        from mpi4py.util.dtlib import from_numpy_dtype

        return from_numpy_dtype(self.data.dtype)

    def _reduce_and_update(self, scale, policy, guarded, warn) -> bool:
        MPI, comm = self._MPI, self.comm
        t0 = time.perf_counter()
        if self._ring is not None:
            self._ring.reduce_scatter(self.grad, out=self.shard_grad)
        else:
            comm.Reduce_scatter(self.grad, self.shard_grad, self._counts, MPI.SUM)
        self.comm_seconds += time.perf_counter() - t0
        if guarded:
            scale = self._decide(self.shard_grad, scale, policy)
            if scale is None:
                return self._skip(policy, warn)  # every rank skips: params and shards unchanged
        self._update(self._optimizers, scale)
        self._allgather_params()
        return True

    def _allgather_params(self) -> None:
        t0 = time.perf_counter()
        if self._ring is not None:
            self._ring.allgather(self.data)
        else:
            self.comm.Allgatherv(self._MPI.IN_PLACE,
                                 [self.data, self._counts, self._displacements, self._mpi_type()])
        self.comm_seconds += time.perf_counter() - t0

    def _after_swap(self) -> None:
        self._allgather_params()

    def local_state(self) -> dict:
        state = super().local_state()
        if not self._optimizers:  # an empty shard: empty arrays and the step every rank is at
            state["arrays"] = {k: np.zeros(0, self.data.dtype) for k in self.state_names()}
            state["scalars"] = None
        return state
