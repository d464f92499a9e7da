"""``fastopt train --distributed ddp|zero1``: the training loop's hook for
data-parallel runs under ``mpiexec -n N``.

Every rank loads the same data and draws the same shuffled global batches
(same seed); each rank computes the gradient of its share of every global
batch, weighted so that the reduced gradient is the global batch's mean
gradient, exactly as one process computes it (up to float rounding). Only
rank 0 prints.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..nn import MLP
    from ..params import FlatParams

MODES = ("ddp", "zero1")


class DistributedRun:
    """The distributed optimizer of a run, and the per-batch split.

    Parameters
    ----------
    mode : {"ddp", "zero1"}
    optimizer : fastopt.Optimizer
        The single-process optimizer the command built (its class and
        hyperparameters are reused; it is not stepped).
    params : FlatParams
        The model's buffers.
    """

    def __init__(self, mode: str, optimizer: Any, params: FlatParams) -> None:
        from ..backends.cpu import sleep_idle_threads
        from ..distributed import DataParallel, ZeRO1

        # Ranks share the cores: an idle OpenMP pool that spins steals them
        # from the other ranks (set before the pool starts, at the first step).
        sleep_idle_threads()

        if mode not in MODES:
            raise ValueError(f"--distributed must be one of {', '.join(MODES)}, got {mode!r}")
        hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        self.mode = mode
        self.optimizer = {"ddp": DataParallel, "zero1": ZeRO1}[mode](params, type(optimizer), **hyper)
        self.comm = self.optimizer.comm
        self.rank, self.world = self.optimizer.rank, self.optimizer.world_size
        self.is_root = self.rank == 0

    def describe(self) -> str:
        return f"distributed: {self.mode} over {self.world} MPI rank(s), each global batch split between them"

    def quiet_unless_root(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which only rank 0's standard output is shown."""
        return contextlib.nullcontext() if self.is_root else contextlib.redirect_stdout(io.StringIO())

    def loss_and_grad(self, model: MLP, xb: np.ndarray, yb: np.ndarray) -> tuple[float, None]:
        """This rank's share of the global batch ``(xb, yb)``: its gradient,
        weighted by its share, in ``model.params.grad``; returns the global
        batch's mean loss (one scalar allreduce) and None."""
        n = len(xb)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        grad = model.params.grad
        if hi > lo:
            loss, _ = model.loss_and_grad(xb[lo:hi], yb[lo:hi])
            weight = (hi - lo) * self.world / n  # the optimizer divides the sum by world
            if weight != 1.0:
                grad *= grad.dtype.type(weight)
            local = loss * (hi - lo)
        else:  # fewer rows than ranks: this rank contributes nothing
            grad.fill(0)
            local = 0.0
        return self.comm.allreduce(local) / n, None
