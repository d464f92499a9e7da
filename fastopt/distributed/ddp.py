"""Data parallel: every rank holds all params and all optimizer state; one
in-place allreduce of the flat gradient buffer per step."""

from __future__ import annotations

import time

from . import layout
from ._base import DistributedOptimizer, check_algorithm
from .ring import Ring


class DataParallel(DistributedOptimizer):
    """Data-parallel training over MPI with a fused fastopt update.

    Every rank computes gradients of its part of the batch into its flat grad
    buffer; :meth:`~fastopt.distributed.DataParallel.step` sums them over the ranks with one in-place
    allreduce (fastopt's ring, or ``MPI.Allreduce``: see ``algorithm``) and
    applies the update with the mean gradient: the
    ``1/world`` (and any ``grad_scale``, accumulation or clip factor) is
    folded into the update pass, so the step reads the gradients once. The
    grad buffer holds the summed gradients afterwards.

    Parameters
    ----------
    params : FlatParams or (param, grad) pair
        The model's flat buffers on this rank (host memory): a FlatParams, or
        one pair of flat arrays (NumPy, or a NumPy view of a torch flat
        buffer). The same size, dtype and layout on every rank.
    optimizer : fastopt optimizer class or registry name
        ``fastopt.Adam``, ``"adamw"``, ...
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    ranges : sequence of (start, stop), optional
        The tensors of a (param, grad) pair (a FlatParams knows its own).
        Per-tensor rules (LAMB) use them; default: the buffer is one tensor.
    algorithm : {"ring", "mpi"}, optional
        ``"ring"``: fastopt's ring allreduce over ``Sendrecv``
        (:mod:`fastopt.distributed.ring`): every rank gets bit-identical sums,
        and it moves what the cost model says. ``"mpi"``: one in-place
        ``MPI.Allreduce`` (the MPI library picks the algorithm). Default:
        "ring", or "mpi" with ``bucket_size``.
    bucket_size : int, optional
        With ``algorithm="mpi"``: reduce the gradients in buckets of this many elements with
        non-blocking ``Iallreduce``, all posted at once, and update each
        bucket as soon as its reduction completes (one inner optimizer per
        bucket). The update of a bucket can overlap the reduction of the next
        only where the MPI library progresses a collective in the background;
        with clipping, a non-finite guard or a per-tensor rule every bucket
        is waited for first. Default: one blocking ``Allreduce``. (On the
        2-core test machine, Open MPI over shared memory hardly overlapped:
        8 buckets were 1.8x slower than one ``Allreduce`` at 4e6 elements
        and 1.2x faster at 1e7, ``bench/results/mpi-scaling.md``.)
    max_grad_norm : float, optional
        Clip the global norm of the mean gradient (agreed by every rank).
    nonfinite : {"skip", "raise", "ignore"}, optional
        As :class:`fastopt.Optimizer`; a NaN/inf on any rank makes every rank
        skip (or raise) together.
    accumulate : int, optional
        Reduce and apply every ``accumulate``-th :meth:`~fastopt.distributed.DataParallel.step` (gradients
        accumulate locally in between, with no communication).
    broadcast : bool, optional
        Copy rank 0's params to every rank at construction (default True).
    **hyperparameters
        The optimizer's hyperparameters, plus ``max_grad_value`` and
        ``ema_decay`` (applied inside each rank's update).

    Raises
    ------
    RankMismatchError
        On every rank, when the ranks' buffer sizes, dtypes, tensors,
        optimizers or hyperparameters differ, or some rank's arguments are bad.
    """

    mode = "ddp"

    def __init__(self, params, optimizer, comm=None, *, algorithm=None, bucket_size=None, **kwargs):
        self._bucket_size = bucket_size
        self.algorithm = algorithm
        super().__init__(params, optimizer, comm, **kwargs)

    def _own_options(self) -> dict:
        return {"bucket_size": self._bucket_size, "algorithm": self.algorithm}

    def _plan(self) -> None:
        size = self._bucket_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"bucket_size must be an int >= 1 or None, got {size!r}")
        self.algorithm = check_algorithm(self.algorithm, "mpi" if size is not None else "ring")
        if size is not None and self.algorithm != "mpi":
            raise ValueError("bucket_size needs algorithm='mpi' (buckets are non-blocking MPI allreduces)")
        n, itemsize = self.data.size, self.data.itemsize
        self.layout = layout.Layout.make(n, self.world_size, itemsize, self.ranges)
        self.buckets = layout.chunks(0, n, size, itemsize)
        self._ring = Ring(self.comm, self.layout.bounds, self.data.dtype) if self.algorithm == "ring" else None

    def _build(self):
        if self.spec.segmented is not None or len(self.buckets) == 1:
            return [self._inner(self.data, self.grad, 0, self.data.size, 0)]
        return [self._inner(self.data, self.grad, a, b, 0) for a, b in self.buckets]

    @property
    def owned(self) -> tuple[int, int]:
        return 0, self.data.size

    def _reduce_and_update(self, scale, policy, guarded, warn) -> bool:
        MPI, comm, g = self._MPI, self.comm, self.grad
        t0 = time.perf_counter()
        if self._ring is not None:
            self._ring.allreduce(g)
            self.comm_seconds += time.perf_counter() - t0
        elif len(self.buckets) == 1:
            comm.Allreduce(MPI.IN_PLACE, g)
            self.comm_seconds += time.perf_counter() - t0
        else:
            requests = [comm.Iallreduce(MPI.IN_PLACE, g[a:b]) for a, b in self.buckets]
            if not guarded and len(self._optimizers) == len(requests):
                for request, inner in zip(requests, self._optimizers):
                    t1 = time.perf_counter()
                    request.Wait()
                    self.comm_seconds += time.perf_counter() - t1
                    self._update([inner], scale)
                return True
            MPI.Request.Waitall(requests)
            self.comm_seconds += time.perf_counter() - t0
        if guarded:
            a, b = self.layout.bounds[self.rank]  # each rank reduces its slice; one Allgather agrees
            scale = self._decide(g[a:b], scale, policy)
            if scale is None:
                return self._skip(policy, warn)
        self._update(self._optimizers, scale)
        return True
